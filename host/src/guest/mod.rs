//! The guest: its root filesystem mounted through a loop device, safe path access
//! below it, commands run inside it, and inspection of what it is.

pub mod exec;
pub mod inspect;
pub mod mount;
pub mod namespace;
pub mod overlay;
pub mod root;
