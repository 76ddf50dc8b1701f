//! Helpers for the guest configuration files fixers edit.
//!
//! Every helper works on text, with no I/O: read the file through the guest
//! handle, `parse` it, edit it, `render` it and write the string back. Lines a
//! helper does not touch (comments, blanks, lines it cannot parse) come back
//! byte for byte, including a missing final newline.

mod document;
mod words;

pub use document::{Document, Line, Record};
pub use words::Words;

pub mod fstab;
pub mod grub_legacy;
pub mod inittab;
pub mod keyvalue;
pub mod kmod;
pub mod modprobe;
pub mod rc_local;
pub mod shadow;
