//! What an instance image is (`rehost inspect IMAGE`), read without mounting it: its
//! layout, filesystem, OS, kernels, bootloader configs and Xen-isms.
//!
//! Guest files are read through [`GuestFiles`]: [`DebugfsFiles`] reads an unmounted
//! image with debugfs (so a source image is never touched), [`DirFiles`] a mounted
//! root or plain tree; [`inspect_guest`] works over either.

mod boot;
mod debugfs;
mod files;
mod layout;
mod os;
mod xen;

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use boot::{Bootloader, BootloaderKind, Kernel};
pub use debugfs::{DebugfsFiles, Filesystem};
pub use files::{DirFiles, GuestFiles};
pub use layout::{Layout, LayoutKind};
pub use os::OsInfo;
pub use xen::{XenIsm, XenIsmKind};

use layout::{Partition, Start, PROBE_LEN};

/// Everything `rehost inspect` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    pub layout: Layout,
    pub filesystem: Filesystem,
    pub os: OsInfo,
    pub kernels: Vec<Kernel>,
    pub bootloaders: Vec<Bootloader>,
    pub xen_isms: Vec<XenIsm>,
}

/// What the guest's files say, whatever holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestReport {
    pub os: OsInfo,
    pub kernels: Vec<Kernel>,
    pub bootloaders: Vec<Bootloader>,
    pub xen_isms: Vec<XenIsm>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("reading {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{} (at byte {offset}) is not an ext2/3/4 filesystem, nor an MBR disk holding one: {detail}",
        path.display()
    )]
    NotFilesystem {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error(
        "{} is truncated: the filesystem at byte {offset} needs {needed} bytes but only \
         {available} follow (an incomplete copy? copy the instance again)",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error(
        "{}: the ext filesystem at byte {offset} is corrupt: {detail} (check a copy with `e2fsck -fn`)",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{} has a GPT partition table; rehost reads bare filesystems and MBR disks", path.display())]
    Gpt { path: PathBuf },
    #[error("no partition of {} holds an ext filesystem with an /etc directory", path.display())]
    NoRoot { path: PathBuf },
    #[error(
        "{}: e2fsprogs cannot open a path that contains '?' or is not UTF-8; rename the \
         image or point a symlink at it",
        path.display()
    )]
    UnusablePath { path: PathBuf },
    #[error("running debugfs on {}: {source} (is e2fsprogs installed?)", path.display())]
    Debugfs { path: PathBuf, source: io::Error },
}

/// Inspects an image file (bare filesystem or MBR disk) without mounting or writing it.
pub fn inspect_image(image: &Path) -> Result<Inspection, InspectError> {
    let io_error = |source| InspectError::Io {
        path: image.to_path_buf(),
        source,
    };
    let file = File::open(image).map_err(io_error)?;
    let image_len = image_length(&file).map_err(io_error)?;
    let (layout, files) = match layout::classify(&probe(&file, 0).map_err(io_error)?) {
        Start::ExtSuperblock => {
            let layout = Layout {
                kind: LayoutKind::Bare,
                root_partition: None,
                offset: 0,
                length: image_len,
            };
            (layout, DebugfsFiles::open(image, 0)?)
        }
        Start::Mbr(partitions) => find_root(image, &file, &partitions)?,
        Start::Gpt => {
            return Err(InspectError::Gpt {
                path: image.to_path_buf(),
            })
        }
        Start::Unknown => {
            return Err(InspectError::NotFilesystem {
                path: image.to_path_buf(),
                offset: 0,
                detail: "no ext superblock and no partition table".to_string(),
            })
        }
    };
    let guest = inspect_guest(&files);
    Ok(Inspection {
        layout,
        filesystem: files.filesystem().clone(),
        os: guest.os,
        kernels: guest.kernels,
        bootloaders: guest.bootloaders,
        xen_isms: guest.xen_isms,
    })
}

/// Inspects a guest's files: OS, kernels, bootloader configs, Xen-isms.
pub fn inspect_guest(files: &dyn GuestFiles) -> GuestReport {
    GuestReport {
        os: os::identify(files),
        kernels: boot::kernels(files),
        bootloaders: boot::bootloaders(files),
        xen_isms: xen::find(files),
    }
}

/// The root partition: the first ext filesystem with an /etc directory.
fn find_root(
    image: &Path,
    file: &File,
    partitions: &[Partition],
) -> Result<(Layout, DebugfsFiles), InspectError> {
    let mut first_error = None;
    for part in partitions.iter().filter(|p| !p.is_extended()) {
        let start = probe(file, part.offset).map_err(|source| InspectError::Io {
            path: image.to_path_buf(),
            source,
        })?;
        if !layout::has_ext_magic(&start) {
            continue;
        }
        let files = match DebugfsFiles::open(image, part.offset) {
            Ok(files) => files,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        if files.filesystem().size_bytes() > part.length {
            first_error.get_or_insert(InspectError::Corrupt {
                path: image.to_path_buf(),
                offset: part.offset,
                detail: format!(
                    "the filesystem ({} bytes) is larger than partition {} ({} bytes)",
                    files.filesystem().size_bytes(),
                    part.number,
                    part.length
                ),
            });
            continue;
        }
        if files.list_dir("/etc").is_some() {
            let layout = Layout {
                kind: LayoutKind::Mbr,
                root_partition: Some(part.number),
                offset: part.offset,
                length: part.length,
            };
            return Ok((layout, files));
        }
    }
    Err(first_error.unwrap_or_else(|| InspectError::NoRoot {
        path: image.to_path_buf(),
    }))
}

/// The size of an image file (or of a block device, whose metadata says 0).
fn image_length(mut file: &File) -> io::Result<u64> {
    file.seek(SeekFrom::End(0))
}

/// The first bytes at `offset` (fewer at the end of the file).
fn probe(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; PROBE_LEN];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}
