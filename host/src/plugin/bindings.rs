//! Host-side bindings generated from `wit/rehost.wit`, one module per world.

pub mod fixer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "fixer",
        with: { "rehost:plugin/guest-fs.root": super::RootHandle },
    });
}

pub mod source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "source",
        with: {
            "rehost:plugin/types": super::fixer::rehost::plugin::types,
            "rehost:plugin/log": super::fixer::rehost::plugin::log,
        },
    });
}

pub mod packager {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "packager",
        with: {
            "rehost:plugin/types": super::fixer::rehost::plugin::types,
            "rehost:plugin/log": super::fixer::rehost::plugin::log,
        },
    });
}

/// The `guest-fs/root` resource: one per fixer call, standing for the guest root
/// the call's store was created for (the host state holds the real handle).
pub struct RootHandle;
