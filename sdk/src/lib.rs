//! rehost-sdk: everything a plugin author needs.
pub mod files;
