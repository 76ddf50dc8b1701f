//! The stock plugins, built from `plugins/` by build.rs and embedded in the binary,
//! so the seed's whole job runs with no registry.

include!(concat!(env!("OUT_DIR"), "/stock_plugins.rs"));

/// The component bytes of a stock plugin by crate name.
pub fn find(name: &str) -> Option<&'static [u8]> {
    STOCK
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Where build.rs put every plugin component, test plugins included.
pub const WASM_DIR: &str = env!("REHOST_WASM_DIR");
