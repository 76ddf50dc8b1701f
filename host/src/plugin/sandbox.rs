//! What every plugin call's store holds besides its world's own state: a resource
//! table, a WASI context that gives std nothing but stderr and clocks, and the
//! memory limit; and the fresh store each call runs in.

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits};
use wasmtime_wasi::WasiCtx;

use super::Limits;

pub(crate) struct Sandbox {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    limits: StoreLimits,
}

impl Sandbox {
    /// No preopens, no environment, no sockets: a plugin reaches the outside only
    /// through its world's host interfaces, each checked against its grants.
    pub fn new(limits: &Limits) -> Self {
        Self {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().inherit_stderr().build(),
            limits: limits.store_limits(),
        }
    }
}

/// A world's store state: it owns a [`Sandbox`] (and gets `WasiView` from
/// [`sandboxed!`]).
pub(crate) trait Sandboxed: 'static {
    fn sandbox(&mut self) -> &mut Sandbox;
}

/// A fresh store for one call, with the memory limit and the epoch deadline set.
pub(crate) fn store<T: Sandboxed>(engine: &Engine, state: T, limits: &Limits) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.sandbox().limits);
    store.set_epoch_deadline(limits.deadline_ticks());
    store.epoch_deadline_trap();
    store
}

/// Implements [`Sandboxed`] and `WasiView` for a state with a `sandbox` field
/// (a blanket impl of the foreign `WasiView` is not allowed).
macro_rules! sandboxed {
    ($state:ty) => {
        impl $crate::plugin::sandbox::Sandboxed for $state {
            fn sandbox(&mut self) -> &mut $crate::plugin::sandbox::Sandbox {
                &mut self.sandbox
            }
        }

        impl wasmtime_wasi::WasiView for $state {
            fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
                wasmtime_wasi::WasiCtxView {
                    ctx: &mut self.sandbox.wasi,
                    table: &mut self.sandbox.table,
                }
            }
        }
    };
}
pub(crate) use sandboxed;
