//! Host-side bindings generated from `wit/rehost.wit`, one module per world.

pub mod fixer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "fixer",
        with: { "rehost:plugin/guest-fs/root": crate::plugin::bindings::GuestRootHandle },
        trappable_imports: false,
    });
}

/// Placeholder resource type until the guest root lands.
pub struct GuestRootHandle;
