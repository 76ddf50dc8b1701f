//! The plugin runtime.
mod bindings;
