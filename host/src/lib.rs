//! rehost: turns a cloud instance's root filesystem into a VM that boots on its own.
//!
//! The stages of `pipeline` run in order; `plugin` hosts the sandboxed WebAssembly
//! plugins, `guest` gives safe access to the guest root, `disk` does every disk
//! operation, `check` verifies a finished disk, `boot_test` boots it.

pub mod boot_test;
pub mod check;
pub mod cli;
pub mod disk;
pub mod guest;
pub mod pipeline;
pub mod plugin;
pub mod target;
