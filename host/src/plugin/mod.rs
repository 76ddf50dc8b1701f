//! Sandboxed WebAssembly plugins: the runtime (engine, precompile cache, limits),
//! manifests, grants, and the host side of each WIT world.

mod bindings;
pub mod catalog;
pub mod fixer_host;
pub mod grants;
mod host_log;
pub mod journal;
pub mod lockfile;
pub mod manifest;
pub mod packager_host;
pub mod registry;
pub mod runtime;
pub(crate) mod sandbox;
pub mod source_host;
pub mod stock;

pub use fixer_host::{CommandRunner, FixerCall, FixerOutcome};
pub use grants::Grants;
pub use manifest::{Kind, Manifest};
pub use runtime::{Limits, LoadedPlugin, Runtime};

/// Everything that can go wrong loading or calling a plugin. Each names the plugin
/// (or file) and the call.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot start the WebAssembly engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error("{origin}: cannot compile the component: {source:#}")]
    Compile {
        origin: String,
        source: wasmtime::Error,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("plugin {plugin} is a {actual}, not a {expected}")]
    WrongKind {
        plugin: String,
        expected: Kind,
        actual: Kind,
    },
    #[error("plugin {plugin}: cannot instantiate: {source:#}")]
    Instantiate {
        plugin: String,
        source: wasmtime::Error,
    },
    #[error("plugin {plugin}: `{call}` ran past its deadline of {secs} s and was stopped")]
    Deadline {
        plugin: String,
        call: String,
        secs: u64,
    },
    #[error("plugin {plugin}: `{call}` exceeded its memory limit of {mib} MiB and was stopped")]
    Memory {
        plugin: String,
        call: String,
        mib: usize,
    },
    #[error("plugin {plugin}: `{call}` trapped: {reason}")]
    Trap {
        plugin: String,
        call: String,
        reason: String,
    },
    #[error("plugin {plugin}: `{call}` failed: {message}")]
    Failed {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("unknown plugin {name:?}; known plugins: {known}")]
    Unknown { name: String, known: String },
    #[error("plugin {plugin}: {message}")]
    Config { plugin: String, message: String },
}
