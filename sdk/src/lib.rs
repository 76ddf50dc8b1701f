//! rehost-sdk: write rehost plugins in plain Rust.
//!
//! A fixer is a type implementing [`fixer::Fixer`], exported with
//! [`export_fixer!`], with its manifest embedded by [`manifest!`]:
//!
//! ```ignore
//! use rehost_sdk::fixer::{Fixer, FixContext, Report, Guest};
//! rehost_sdk::manifest!("../rehost.toml");
//! struct MyFixer;
//! impl Fixer for MyFixer {
//!     fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> rehost_sdk::Result<()> {
//!         let fstab = guest.read_string("/etc/fstab")?;
//!         // ... edit with rehost_sdk::files::fstab ...
//!         Ok(())
//!     }
//! }
//! rehost_sdk::export_fixer!(MyFixer);
//! ```
//!
//! The logic only sees the [`fixer::Guest`] trait, so it can be unit-tested natively
//! against a plain directory with [`fixer::DirGuest`].

mod config;
pub mod files;
pub mod fixer;
pub mod packager;
pub mod source;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// Generated bindings, one module per world. Plugin code uses the facades instead.
#[doc(hidden)]
pub mod bindings {
    pub mod fixer {
        wit_bindgen::generate!({
            path: "../wit",
            world: "fixer",
            pub_export_macro: true,
            export_macro_name: "export_fixer_world",
            default_bindings_module: "rehost_sdk::bindings::fixer",
        });
    }

    pub mod packager {
        wit_bindgen::generate!({
            path: "../wit",
            world: "packager",
            pub_export_macro: true,
            export_macro_name: "export_packager_world",
            default_bindings_module: "rehost_sdk::bindings::packager",
            // Nothing shared with the fixer bindings: code using them would make a
            // packager component import the whole fixer world (guest-fs included).
        });
    }

    pub mod source {
        wit_bindgen::generate!({
            path: "../wit",
            world: "source",
            pub_export_macro: true,
            export_macro_name: "export_source_world",
            default_bindings_module: "rehost_sdk::bindings::source",
            // Its own types and log: source code never calls into the fixer
            // bindings (`rehost_sdk::source::{Error, Result}`).
        });
    }
}

pub use bindings::fixer::rehost::plugin::types::{
    BootEntry, Error, KernelInfo, OsInfo, TargetHardware,
};

/// Result type of plugin code.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a plugin's own failure.
pub fn fail(message: impl Into<String>) -> Error {
    Error::Failed(message.into())
}

/// Embeds the plugin's manifest (TOML) as the `rehost-manifest` custom section, so
/// the host can read it without running the plugin. The path is relative to the
/// file invoking the macro, as with `include_bytes!`.
#[macro_export]
macro_rules! manifest {
    ($path:literal) => {
        #[cfg(target_arch = "wasm32")]
        #[link_section = "rehost-manifest"]
        #[used]
        static __REHOST_MANIFEST: [u8; include_bytes!($path).len()] = *include_bytes!($path);
    };
}

/// Exports a [`packager::Packager`] implementation as the component's
/// `package-disk` function.
#[macro_export]
macro_rules! export_packager {
    ($packager:ty) => {
        #[doc(hidden)]
        pub struct __RehostPackagerExport;
        impl $crate::bindings::packager::Guest for __RehostPackagerExport {
            fn package_disk(
                settings: $crate::packager::VmSettings,
            ) -> ::core::result::Result<$crate::packager::PackageReport, $crate::packager::Error>
            {
                $crate::packager::run::<$packager>(settings)
            }
        }
        $crate::bindings::packager::export_packager_world!(__RehostPackagerExport with_types_in $crate::bindings::packager);
    };
}

/// Exports a [`source::Source`] implementation as the component's `fetch` function.
#[macro_export]
macro_rules! export_source {
    ($source:ty) => {
        #[doc(hidden)]
        pub struct __RehostSourceExport;
        impl $crate::bindings::source::Guest for __RehostSourceExport {
            fn fetch(
                config: ::std::string::String,
            ) -> ::core::result::Result<$crate::source::SourceReport, $crate::source::Error> {
                <$source as $crate::source::Source>::fetch(&config)
            }
        }
        $crate::bindings::source::export_source_world!(__RehostSourceExport with_types_in $crate::bindings::source);
    };
}

/// Exports a [`fixer::Fixer`] implementation as the component's `fix` function.
#[macro_export]
macro_rules! export_fixer {
    ($fixer:ty) => {
        #[doc(hidden)]
        pub struct __RehostFixerExport;
        impl $crate::bindings::fixer::Guest for __RehostFixerExport {
            fn fix(
                root: $crate::bindings::fixer::rehost::plugin::guest_fs::Root,
                context: $crate::fixer::FixContext,
            ) -> ::core::result::Result<$crate::fixer::FixReport, $crate::Error> {
                $crate::fixer::run::<$fixer>(root, context)
            }
        }
        $crate::bindings::fixer::export_fixer_world!(__RehostFixerExport with_types_in $crate::bindings::fixer);
    };
}
