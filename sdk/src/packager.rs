//! The packager side of the SDK: a [`Packager`] decides the output's layout and asks
//! the host, through [`Output`], to write disk images and small files into it. The
//! host owns the output file and writes every disk format natively; the packager
//! never sees a host path.
//!
//! Either the output is one file (write it under [`Output::name`], e.g. with
//! [`Output::write_output_disk`]), or [`Output::begin_archive`] makes it a ustar
//! archive whose members are added in the order they are written.

use crate::bindings::packager::rehost::plugin::log;
pub use crate::bindings::packager::rehost::plugin::packager_host::{
    self as host, DiskFormat, Extent, Written,
};
pub use crate::bindings::packager::rehost::plugin::packager_types::{PackageReport, VmSettings};
pub use crate::bindings::packager::rehost::plugin::types::{Error, OsInfo, TargetHardware};

/// Result type of packager code (a packager's own [`Error`], not the fixers').
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a packager's own failure.
pub fn fail(message: impl Into<String>) -> Error {
    Error::Failed(message.into())
}

/// A packager plugin.
pub trait Packager {
    fn package(settings: &VmSettings, output: &mut Output) -> Result<()>;
}

/// The output being built, and the finished disk it is built from (read-only).
#[derive(Debug, Default)]
pub struct Output {
    files: Vec<String>,
}

impl Output {
    /// The output's file name, without directory (e.g. "web.ova").
    pub fn name(&self) -> String {
        host::output_name()
    }

    /// The disk's size in bytes.
    pub fn disk_size(&self) -> u64 {
        host::disk_size()
    }

    /// The disk's data runs; everything else reads as zeros.
    pub fn disk_extents(&self) -> Vec<Extent> {
        host::disk_extents()
    }

    /// Makes the output an archive; must come before any write.
    pub fn begin_archive(&mut self) -> Result<()> {
        host::begin_archive()
    }

    /// Writes the disk as `format`, as the archive member `name` (or as the output
    /// itself when `name` is [`Output::name`] and no archive was begun).
    pub fn write_disk(&mut self, format: DiskFormat, name: &str) -> Result<Written> {
        let written = host::write_disk(format, name)?;
        self.files.push(written.name.clone());
        Ok(written)
    }

    /// Writes a small file (descriptor, manifest) the same way.
    pub fn write_file(&mut self, name: &str, data: &[u8]) -> Result<Written> {
        let written = host::write_file(name, data)?;
        self.files.push(written.name.clone());
        Ok(written)
    }

    /// Writes the disk as `format` as the whole output.
    pub fn write_output_disk(&mut self, format: DiskFormat) -> Result<Written> {
        self.write_disk(format, &self.name())
    }
}

/// Runs a packager against the host's output (used by [`crate::export_packager!`]).
#[doc(hidden)]
pub fn run<P: Packager>(settings: VmSettings) -> Result<PackageReport> {
    let mut output = Output::default();
    P::package(&settings, &mut output)?;
    Ok(PackageReport {
        files: output.files,
    })
}

/// The packager's table from the pipeline file, parsed into its own config type
/// (defaults when the table is absent).
pub fn config<T: serde::de::DeserializeOwned + Default>(settings: &VmSettings) -> Result<T> {
    crate::config::parse("packager config", &settings.config).map_err(Error::Invalid)
}

/// Logs through the host (native builds print to stderr).
pub fn info(message: &str) {
    emit(log::Level::Info, message);
}

pub fn warn(message: &str) {
    emit(log::Level::Warn, message);
}

pub fn debug(message: &str) {
    emit(log::Level::Debug, message);
}

fn emit(level: log::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}
