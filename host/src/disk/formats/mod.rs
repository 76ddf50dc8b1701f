//! Output disk formats, written natively from a raw sparse disk: qcow2 (plain or
//! compressed), streamOptimized VMDK, VDI and sparse raw, plus the tar writer OVA
//! archives are built with.
//!
//! Every writer reads the source only through its data extents (never through holes)
//! and skips all-zero clusters/grains/blocks found inside them, so the cost follows the
//! data, not the apparent size. Compression runs on every core through a bounded
//! pipeline, so memory stays flat whatever the disk size.
//!
//! An image is written into `out` from `base_offset` on: a file of its own (offset 0)
//! or a member of a tar being built (see [`TarWriter::begin_member`]). The image owns
//! the file from `base_offset` on: anything after it is truncated first.
//!
//! Sizes: qcow2, VMDK and VDI images get the source size rounded up to a multiple of
//! 512 (the tail reads as zeros), as qemu-img does; a raw copy keeps the exact size.

mod compress;
mod control;
mod output;
mod pipeline;
mod qcow2;
mod raw;
mod source;
mod tar;
mod vdi;
mod vmdk;

use std::fmt;
use std::fs::File;
use std::io;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;

pub use tar::TarWriter;

use control::Control;
use output::Output;

/// An output disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Sparse raw copy: holes stay holes.
    Raw,
    /// qcow2 v3, 64 KiB clusters; `compressed` deflates every cluster that shrinks.
    Qcow2 { compressed: bool },
    /// VMDK streamOptimized in VirtualBox's layout (the disk format of an OVA).
    VmdkStreamOptimized,
    /// VirtualBox VDI 1.1, dynamic, 1 MiB blocks.
    Vdi,
}

impl Format {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Format; 5] = [
        Format::Raw,
        Format::Qcow2 { compressed: false },
        Format::Qcow2 { compressed: true },
        Format::VmdkStreamOptimized,
        Format::Vdi,
    ];

    /// The name [`Format::from_str`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 { compressed: false } => "qcow2",
            Format::Qcow2 { compressed: true } => "qcow2-compressed",
            Format::VmdkStreamOptimized => "vmdk",
            Format::Vdi => "vdi",
        }
    }

    /// The usual file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 { .. } => "qcow2",
            Format::VmdkStreamOptimized => "vmdk",
            Format::Vdi => "vdi",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| FormatError::UnknownFormat(s.to_string()))
    }
}

/// How to write: parallelism, progress, cancellation, digest.
#[derive(Clone, Copy, Default)]
pub struct WriteOptions<'a> {
    /// Compression threads; 0 means one per core.
    pub threads: usize,
    /// Called as `(done, total)` source data bytes while the image is written.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
    /// When set, the writer stops between chunks and returns [`FormatError::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Compute the sha256 of the written image (for an OVA manifest). It is free for
    /// VMDK (hashed as written); the other formats are read back, so `out` must be
    /// open for reading too.
    pub sha256: bool,
    /// The image's file name, recorded where the format keeps one: a VMDK
    /// descriptor names its extent after it, as VirtualBox's exports do.
    pub file_name: Option<&'a str>,
}

/// What [`write_disk`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Length of the image in `out`, from `base_offset`.
    pub bytes: u64,
    /// sha256 of those bytes, when [`WriteOptions::sha256`] asked for it.
    pub sha256: Option<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("disk image writing was cancelled")]
    Cancelled,
    #[error("reading the source disk at byte {offset}: {source}")]
    Read { offset: u64, source: io::Error },
    #[error(
        "writing the output image at byte {offset}: {source} (is the output filesystem full?)"
    )]
    Write { offset: u64, source: io::Error },
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
    #[error("a {format} image cannot hold this disk: {what}; choose another format")]
    TooLarge { format: &'static str, what: String },
    #[error("the source disk is empty (0 bytes); there is nothing to write")]
    EmptyDisk,
    #[error("unknown disk format {0:?}; use one of raw, qcow2, qcow2-compressed, vmdk, vdi")]
    UnknownFormat(String),
    #[error("tar member name {0:?} is longer than 100 bytes; use a shorter file name")]
    NameTooLong(String),
    #[error("tar member name {0:?} is not plain ASCII; use an ASCII file name")]
    NameNotAscii(String),
    #[error("tar archive misuse: {0} (a bug in the caller)")]
    TarState(&'static str),
    #[error("a compression thread stopped unexpectedly")]
    WorkerLost,
}

/// Writes the first `size` bytes of the raw disk `source` as a `format` image into
/// `out` at `base_offset` (truncating `out` there first).
pub fn write_disk(
    format: Format,
    source: &File,
    size: u64,
    out: &File,
    base_offset: u64,
    opts: &WriteOptions,
) -> Result<Written, FormatError> {
    if size == 0 {
        return Err(FormatError::EmptyDisk);
    }
    let ctl = Control::new(opts.progress, opts.cancel);
    let out = Output::new(out, base_offset)?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (bytes, sha256) = match format {
        Format::Raw => (raw::write(source, size, out, &ctl)?, None),
        Format::Qcow2 { compressed } => {
            let compression = compressed.then_some(threads);
            (qcow2::write(source, size, out, compression, &ctl)?, None)
        }
        Format::Vdi => (vdi::write(source, size, out, &ctl)?, None),
        Format::VmdkStreamOptimized => vmdk::write(
            source,
            size,
            out,
            threads,
            &ctl,
            opts.sha256,
            opts.file_name,
        )?,
    };
    let sha256 = match sha256 {
        None if opts.sha256 => Some(out.sha256(bytes)?),
        digest => digest,
    };
    Ok(Written { bytes, sha256 })
}
