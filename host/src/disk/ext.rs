//! ext2/3/4: the superblock read directly (for inspection, without any tool), and
//! thin wrappers around e2fsck, resize2fs and tune2fs that capture the tools'
//! output into typed results and errors.
//!
//! e2fsck and tune2fs reach a filesystem inside a disk image as `FILE?offset=N`;
//! resize2fs must never be given that form (disk-formats.md §9: it ignores the
//! offset when sizing and truncating), so `grow` only takes a bare image.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SUPERBLOCK_AT: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;
const MAGIC: u16 = 0xEF53;
/// e2fsprogs' limit: 64 KiB blocks.
const MAX_LOG_BLOCK_SIZE: u32 = 6;

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_BTREE_DIR: u32 = 0x4;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// The features each older type understands (libblkid's EXT2/EXT3_FEATURE_*_SUPP):
/// anything beyond them makes the filesystem ext4.
const EXT2_INCOMPAT: u32 = INCOMPAT_FILETYPE | INCOMPAT_META_BG;
const EXT3_INCOMPAT: u32 = EXT2_INCOMPAT | INCOMPAT_RECOVER;
const EXT2_3_RO_COMPAT: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;

/// Feature names as e2fsprogs prints them, by (set, bit value).
const FEATURE_NAMES: &[(FeatureSet, u32, &str)] = &[
    (FeatureSet::Compat, 0x1, "dir_prealloc"),
    (FeatureSet::Compat, 0x2, "imagic_inodes"),
    (FeatureSet::Compat, 0x4, "has_journal"),
    (FeatureSet::Compat, 0x8, "ext_attr"),
    (FeatureSet::Compat, 0x10, "resize_inode"),
    (FeatureSet::Compat, 0x20, "dir_index"),
    (FeatureSet::Compat, 0x40, "lazy_bg"),
    (FeatureSet::Compat, 0x100, "snapshot_bitmap"),
    (FeatureSet::Compat, 0x200, "sparse_super2"),
    (FeatureSet::Compat, 0x400, "fast_commit"),
    (FeatureSet::Compat, 0x800, "stable_inodes"),
    (FeatureSet::Compat, 0x1000, "orphan_file"),
    (FeatureSet::Incompat, 0x1, "compression"),
    (FeatureSet::Incompat, 0x2, "filetype"),
    (FeatureSet::Incompat, 0x4, "needs_recovery"),
    (FeatureSet::Incompat, 0x8, "journal_dev"),
    (FeatureSet::Incompat, 0x10, "meta_bg"),
    (FeatureSet::Incompat, 0x40, "extent"),
    (FeatureSet::Incompat, 0x80, "64bit"),
    (FeatureSet::Incompat, 0x100, "mmp"),
    (FeatureSet::Incompat, 0x200, "flex_bg"),
    (FeatureSet::Incompat, 0x400, "ea_inode"),
    (FeatureSet::Incompat, 0x1000, "dirdata"),
    (FeatureSet::Incompat, 0x2000, "metadata_csum_seed"),
    (FeatureSet::Incompat, 0x4000, "large_dir"),
    (FeatureSet::Incompat, 0x8000, "inline_data"),
    (FeatureSet::Incompat, 0x10000, "encrypt"),
    (FeatureSet::Incompat, 0x20000, "casefold"),
    (FeatureSet::RoCompat, 0x1, "sparse_super"),
    (FeatureSet::RoCompat, 0x2, "large_file"),
    (FeatureSet::RoCompat, 0x8, "huge_file"),
    (FeatureSet::RoCompat, 0x10, "uninit_bg"),
    (FeatureSet::RoCompat, 0x20, "dir_nlink"),
    (FeatureSet::RoCompat, 0x40, "extra_isize"),
    (FeatureSet::RoCompat, 0x100, "quota"),
    (FeatureSet::RoCompat, 0x200, "bigalloc"),
    (FeatureSet::RoCompat, 0x400, "metadata_csum"),
    (FeatureSet::RoCompat, 0x800, "replica"),
    (FeatureSet::RoCompat, 0x1000, "read-only"),
    (FeatureSet::RoCompat, 0x2000, "project"),
    (FeatureSet::RoCompat, 0x4000, "shared_blocks"),
    (FeatureSet::RoCompat, 0x8000, "verity"),
    (FeatureSet::RoCompat, 0x10000, "orphan_present"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeatureSet {
    Compat,
    Incompat,
    RoCompat,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    #[error("{0} is not an ext2/3/4 filesystem (no 0xEF53 magic in the superblock at byte 1024)")]
    NotExt(FsLocation),
    #[error("{0} is an external ext3/4 journal device, not a filesystem")]
    JournalDevice(FsLocation),
    #[error(
        "the superblock of {location} is corrupt ({reason}); `e2fsck -f -y` can rebuild \
         it from a backup superblock"
    )]
    Corrupt {
        location: FsLocation,
        reason: String,
    },
    #[error(
        "{location} has room for {available} bytes but its filesystem spans {fs_bytes}: \
         the image is truncated (copy it again, completely)"
    )]
    Truncated {
        location: FsLocation,
        fs_bytes: u64,
        available: u64,
    },
    #[error("{op} {location}: {source}")]
    Io {
        op: &'static str,
        location: FsLocation,
        source: io::Error,
    },
    #[error("{path}: e2fsprogs cannot open a file whose name contains '?'; rename it")]
    UnusablePath { path: PathBuf },
    #[error("{tool} is not installed (install the e2fsprogs package)")]
    ToolMissing { tool: &'static str },
    #[error("running {tool}: {source}")]
    ToolStart {
        tool: &'static str,
        source: io::Error,
    },
    #[error("{tool} failed on {location} ({status}): {output}")]
    ToolFailed {
        tool: &'static str,
        location: FsLocation,
        status: std::process::ExitStatus,
        /// The end of its stdout and stderr.
        output: String,
    },
    #[error("e2fsck on {location}: {meaning} (exit code {code}); its report:\n{output}")]
    Fsck {
        location: FsLocation,
        code: i32,
        meaning: &'static str,
        output: String,
    },
    #[error(
        "cannot resize {location} to {requested} bytes: only growing to a multiple of \
         the block size ({block_size}) is supported, and it is {current} bytes now"
    )]
    BadNewSize {
        location: FsLocation,
        current: u64,
        requested: u64,
        block_size: u64,
    },
}

/// Where a filesystem is: a bare image file, or a partition inside a disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsLocation {
    pub path: PathBuf,
    /// Byte offset of the filesystem in the file.
    pub offset: u64,
    /// Bytes the filesystem may span; `None`: up to the end of the file.
    pub length: Option<u64>,
}

impl FsLocation {
    pub fn bare(path: impl Into<PathBuf>) -> Self {
        FsLocation {
            path: path.into(),
            offset: 0,
            length: None,
        }
    }

    pub fn partition(path: impl Into<PathBuf>, offset: u64, length: u64) -> Self {
        FsLocation {
            path: path.into(),
            offset,
            length: Some(length),
        }
    }

    /// The name e2fsck and tune2fs open: `FILE` or `FILE?offset=N`.
    fn tool_arg(&self) -> Result<OsString, ExtError> {
        // e2fsprogs splits any name at '?' into options (openfs.c).
        if self.path.as_os_str().as_encoded_bytes().contains(&b'?') {
            return Err(ExtError::UnusablePath {
                path: self.path.clone(),
            });
        }
        let mut arg = self.path.clone().into_os_string();
        if self.offset != 0 {
            arg.push(format!("?offset={}", self.offset));
        }
        Ok(arg)
    }
}

impl fmt::Display for FsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.offset != 0 {
            write!(f, " (filesystem at byte {})", self.offset)?;
        }
        Ok(())
    }
}

/// ext2, ext3 or ext4, decided from the feature flags the way blkid does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
        }
    }
}

/// What `s_errors` tells the kernel to do on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorBehavior {
    Continue,
    RemountReadOnly,
    Panic,
    Unknown(u16),
}

/// The fields of an ext superblock that rehost uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub block_size: u64,
    pub blocks_count: u64,
    pub free_blocks: u64,
    pub inodes_count: u32,
    pub free_inodes: u32,
    pub uuid: uuid::Uuid,
    /// Empty when the filesystem has no label.
    pub label: String,
    /// Where it was last mounted, e.g. "/" (empty when never recorded).
    pub last_mounted: String,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    /// Raw `s_state`: bit 0 cleanly unmounted, bit 1 errors detected.
    pub state: u16,
    pub errors: ErrorBehavior,
}

impl Superblock {
    /// Parses the 1024-byte superblock (the bytes at 1024..2048 of the filesystem).
    /// `Err` carries the reason it is corrupt; `Ok(None)` means no ext magic.
    fn parse(sb: &[u8; SUPERBLOCK_LEN]) -> Result<Option<Self>, String> {
        let le16 = |at: usize| u16::from_le_bytes([sb[at], sb[at + 1]]);
        let le32 = |at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().unwrap());
        let hi32 = |at: usize| u64::from(le32(at)) << 32;
        let text = |range: std::ops::Range<usize>| {
            let raw = &sb[range];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        };

        if le16(0x38) != MAGIC {
            return Ok(None);
        }
        let feature_incompat = le32(0x60);
        let feature_ro_compat = le32(0x64);
        if feature_ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
            let stored = le32(0x3FC);
            let computed = crc32c(&sb[..0x3FC]);
            if stored != computed {
                return Err(format!(
                    "checksum {stored:#010x} does not match its contents ({computed:#010x})"
                ));
            }
        }
        let log_block_size = le32(0x18);
        if log_block_size > MAX_LOG_BLOCK_SIZE {
            return Err(format!("block size 2^(10+{log_block_size}) is impossible"));
        }
        let block_size = 1024u64 << log_block_size;
        let wide = feature_incompat & INCOMPAT_64BIT != 0;
        let blocks_count = u64::from(le32(0x04)) | if wide { hi32(0x150) } else { 0 };
        let free_blocks = u64::from(le32(0x0C)) | if wide { hi32(0x158) } else { 0 };
        let inodes_count = le32(0x00);
        let free_inodes = le32(0x10);
        if blocks_count == 0 || inodes_count == 0 {
            return Err("it counts zero blocks or inodes".into());
        }
        if le32(0x20) == 0 || le32(0x28) == 0 {
            return Err("it has zero blocks or inodes per group".into());
        }
        if free_blocks > blocks_count || free_inodes > inodes_count {
            return Err("it has more free blocks or inodes than it has".into());
        }
        let rev_level = le32(0x4C);
        if rev_level > 1 {
            return Err(format!("revision {rev_level} is unknown"));
        }
        let inode_size = u64::from(le16(0x58));
        if rev_level == 1
            && (inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size)
        {
            return Err(format!("inode size {inode_size} is impossible"));
        }
        let errors = match le16(0x3C) {
            1 => ErrorBehavior::Continue,
            2 => ErrorBehavior::RemountReadOnly,
            3 => ErrorBehavior::Panic,
            other => ErrorBehavior::Unknown(other),
        };
        Ok(Some(Superblock {
            block_size,
            blocks_count,
            free_blocks,
            inodes_count,
            free_inodes,
            uuid: uuid::Uuid::from_bytes(sb[0x68..0x78].try_into().unwrap()),
            label: text(0x78..0x88),
            last_mounted: text(0x88..0xC8),
            feature_compat: le32(0x5C),
            feature_incompat,
            feature_ro_compat,
            state: le16(0x3A),
            errors,
        }))
    }

    pub fn fs_bytes(&self) -> u64 {
        self.blocks_count * self.block_size
    }

    pub fn fs_type(&self) -> FsType {
        let beyond_ext3 = self.feature_incompat & !EXT3_INCOMPAT != 0
            || self.feature_ro_compat & !EXT2_3_RO_COMPAT != 0;
        if beyond_ext3 {
            FsType::Ext4
        } else if self.feature_compat & COMPAT_HAS_JOURNAL != 0 {
            FsType::Ext3
        } else if self.feature_incompat & !EXT2_INCOMPAT != 0 {
            // The journal recovery flag without a journal: nothing ext2 knows.
            FsType::Ext4
        } else {
            FsType::Ext2
        }
    }

    /// Feature names as `tune2fs -l` prints them (unknown bits as FEATURE_C12 etc.).
    pub fn feature_names(&self) -> Vec<String> {
        let sets = [
            (FeatureSet::Compat, self.feature_compat, 'C'),
            (FeatureSet::Incompat, self.feature_incompat, 'I'),
            (FeatureSet::RoCompat, self.feature_ro_compat, 'R'),
        ];
        let mut names = Vec::new();
        for (set, flags, letter) in sets {
            for bit in 0..32 {
                let value = 1u32 << bit;
                if flags & value == 0 {
                    continue;
                }
                let known = FEATURE_NAMES
                    .iter()
                    .find(|(s, v, _)| *s == set && *v == value);
                names.push(match known {
                    Some((_, _, name)) => (*name).to_owned(),
                    None => format!("FEATURE_{letter}{bit}"),
                });
            }
        }
        names
    }

    /// Cleanly unmounted and without recorded errors.
    pub fn is_clean(&self) -> bool {
        self.state & 0x1 != 0 && self.state & 0x2 == 0
    }

    /// The journal holds transactions that were never written back.
    pub fn needs_recovery(&self) -> bool {
        self.feature_incompat & INCOMPAT_RECOVER != 0
    }
}

/// CRC-32C as ext4 computes it: seed ~0, no final inversion.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// Reads and checks the superblock of the filesystem at `location`, without
/// running any tool. The file is only read.
pub fn read_superblock(location: &FsLocation) -> Result<Superblock, ExtError> {
    let io_err = |op| {
        let location = location.clone();
        move |source| ExtError::Io {
            op,
            location,
            source,
        }
    };
    let file = File::open(&location.path).map_err(io_err("opening"))?;
    let file_len = file
        .metadata()
        .map_err(io_err("reading the size of"))?
        .len();
    let available = match location.length {
        Some(length) => length.min(file_len.saturating_sub(location.offset)),
        None => file_len.saturating_sub(location.offset),
    };
    let mut raw = [0u8; SUPERBLOCK_LEN];
    if available < SUPERBLOCK_AT + SUPERBLOCK_LEN as u64 {
        return Err(ExtError::NotExt(location.clone()));
    }
    file.read_exact_at(&mut raw, location.offset + SUPERBLOCK_AT)
        .map_err(io_err("reading the superblock of"))?;
    let superblock = match Superblock::parse(&raw) {
        Ok(Some(sb)) => sb,
        Ok(None) => return Err(ExtError::NotExt(location.clone())),
        Err(reason) => {
            return Err(ExtError::Corrupt {
                location: location.clone(),
                reason,
            })
        }
    };
    if superblock.feature_incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Err(ExtError::JournalDevice(location.clone()));
    }
    if superblock.fs_bytes() > available {
        return Err(ExtError::Truncated {
            location: location.clone(),
            fs_bytes: superblock.fs_bytes(),
            available,
        });
    }
    Ok(superblock)
}

/// What e2fsck may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckMode {
    /// `-f -y`: check everything, fix every problem without asking.
    Repair,
    /// `-f -n`: check everything, change nothing (the image may be read-only).
    CheckOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckOutcome {
    /// Exit 0.
    Clean,
    /// Exit 1: problems were found and fixed.
    Corrected,
    /// Exit 2: fixed, and e2fsck asks for a reboot. That matters only for a mounted
    /// root filesystem, so for an image it means the same as `Corrected`.
    CorrectedRebootAdvised,
}

#[derive(Debug, Clone)]
pub struct FsckReport {
    pub outcome: FsckOutcome,
    /// e2fsck's stdout and stderr, for the log.
    pub output: String,
}

/// Lines of tool output kept in an error: enough for the cause, short enough to read.
const OUTPUT_TAIL_LINES: usize = 40;

/// Runs e2fsck on `location`. Exit codes of 4 and above (errors left, operational
/// error, usage, cancelled) are `ExtError::Fsck` with e2fsck's report.
pub fn fsck(location: &FsLocation, mode: FsckMode) -> Result<FsckReport, ExtError> {
    let answer = match mode {
        FsckMode::Repair => "-y",
        FsckMode::CheckOnly => "-n",
    };
    let target = location.tool_arg()?;
    let output = run("e2fsck", &["-f".as_ref(), answer.as_ref(), &target])?;
    let text = combined_output(&output);
    let code = output.status.code().unwrap_or(-1);
    let outcome = match code {
        0 => FsckOutcome::Clean,
        1 => FsckOutcome::Corrected,
        2 | 3 => FsckOutcome::CorrectedRebootAdvised,
        _ => {
            return Err(ExtError::Fsck {
                location: location.clone(),
                code,
                meaning: fsck_failure_meaning(code),
                output: tail(&text, OUTPUT_TAIL_LINES),
            })
        }
    };
    Ok(FsckReport {
        outcome,
        output: text,
    })
}

/// e2fsck's exit code is a bit set (e2fsck(8)); name the most serious bit.
fn fsck_failure_meaning(code: i32) -> &'static str {
    if code < 0 {
        "killed by a signal"
    } else if code & 128 != 0 {
        "shared-library error"
    } else if code & 32 != 0 {
        "cancelled"
    } else if code & 16 != 0 {
        "usage or syntax error"
    } else if code & 8 != 0 {
        "operational error (could not open or read the filesystem)"
    } else {
        "errors were left uncorrected"
    }
}

/// Grows the bare filesystem image at `path` to `new_bytes` (a multiple of its
/// block size). Run `fsck` first: resize2fs refuses a filesystem that was not
/// checked since it was last mounted. Returns the new filesystem size, which
/// resize2fs may round down by a partial last block group; the file is
/// truncated to it.
pub fn grow(path: &Path, new_bytes: u64) -> Result<u64, ExtError> {
    let location = FsLocation::bare(path);
    let before = read_superblock(&location)?;
    let current = before.fs_bytes();
    if new_bytes < current || new_bytes % before.block_size != 0 {
        return Err(ExtError::BadNewSize {
            location,
            current,
            requested: new_bytes,
            block_size: before.block_size,
        });
    }
    if new_bytes == current {
        return Ok(current);
    }
    // Extend the file as a hole first: resize2fs would otherwise grow it by
    // writing one byte at the new end.
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(|source| ExtError::Io {
            op: "opening for writing",
            location: location.clone(),
            source,
        })?;
    file.set_len(new_bytes).map_err(|source| ExtError::Io {
        op: "extending",
        location: location.clone(),
        source,
    })?;
    drop(file);
    let target = location.tool_arg()?;
    let size = OsString::from(format!("{}K", new_bytes / 1024));
    let output = run("resize2fs", &[&target, &size])?;
    check_success("resize2fs", &location, &output)?;
    Ok(read_superblock(&location)?.fs_bytes())
}

/// `tune2fs -l`: the superblock as e2fsprogs reports it, e.g.
/// "Filesystem UUID" → "a4cc9a55-…", "Block count" → "65536".
pub fn tune2fs_list(location: &FsLocation) -> Result<BTreeMap<String, String>, ExtError> {
    let target = location.tool_arg()?;
    let output = run("tune2fs", &["-l".as_ref(), &target])?;
    check_success("tune2fs", location, &output)?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect())
}

/// Runs an e2fsprogs tool with no terminal and a predictable environment:
/// stdin closed (every mode used here is non-interactive: -y, -n, -l, or a
/// resize), C locale for parsable output, no host e2fsck.conf quirks, and the
/// sbin directories searched as well (they are not in a non-root user's PATH).
fn run(tool: &'static str, args: &[&OsStr]) -> Result<Output, ExtError> {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    path.push(":/usr/sbin:/sbin");
    Command::new(tool)
        .args(args)
        .env("PATH", path)
        .env("LC_ALL", "C")
        .env("E2FSCK_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ExtError::ToolMissing { tool },
            _ => ExtError::ToolStart { tool, source },
        })
}

fn check_success(
    tool: &'static str,
    location: &FsLocation,
    output: &Output,
) -> Result<(), ExtError> {
    if output.status.success() {
        return Ok(());
    }
    let text = combined_output(output);
    Err(ExtError::ToolFailed {
        tool,
        location: location.clone(),
        status: output.status,
        output: tail(&text, OUTPUT_TAIL_LINES),
    })
}

fn combined_output(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock with the fields the parser checks, before the checksum.
    fn minimal(features: (u32, u32, u32)) -> [u8; SUPERBLOCK_LEN] {
        let mut sb = [0u8; SUPERBLOCK_LEN];
        let mut put32 = |at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put32(0x00, 2048); // inodes
        put32(0x04, 8192); // blocks
        put32(0x0C, 100); // free blocks
        put32(0x18, 2); // 4 KiB blocks
        put32(0x20, 32768); // blocks per group
        put32(0x28, 2048); // inodes per group
        put32(0x4C, 1); // dynamic revision
        put32(0x5C, features.0);
        put32(0x60, features.1);
        put32(0x64, features.2);
        sb[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        sb[0x3A] = 1; // clean
        sb[0x3C] = 2; // remount-ro
        sb[0x58..0x5A].copy_from_slice(&256u16.to_le_bytes());
        sb[0x78..0x7C].copy_from_slice(b"root");
        sb[0x88] = b'/';
        sb
    }

    #[test]
    fn fs_type_follows_blkid() {
        let ty = |f| Superblock::parse(&minimal(f)).unwrap().unwrap().fs_type();
        assert_eq!(ty((0x38, 0x2, 0x3)), FsType::Ext2);
        assert_eq!(ty((0x3C, 0x2, 0x3)), FsType::Ext3);
        assert_eq!(ty((0x3C, 0x6, 0x3)), FsType::Ext3);
        assert_eq!(ty((0x3C, 0x2C2, 0x7B)), FsType::Ext4);
        // Extents without a journal is still ext4.
        assert_eq!(ty((0x38, 0x42, 0x3)), FsType::Ext4);
    }

    #[test]
    fn parses_fields_and_names() {
        let sb = Superblock::parse(&minimal((0x3C, 0x2C2, 0x10_007B)))
            .unwrap()
            .unwrap();
        assert_eq!(sb.fs_bytes(), 8192 * 4096);
        assert_eq!(sb.label, "root");
        assert_eq!(sb.last_mounted, "/");
        assert_eq!(sb.errors, ErrorBehavior::RemountReadOnly);
        assert!(sb.is_clean());
        assert!(sb.feature_names().contains(&"has_journal".to_owned()));
        assert!(sb.feature_names().contains(&"extent".to_owned()));
        assert!(sb.feature_names().contains(&"FEATURE_R20".to_owned()));
    }

    #[test]
    fn checks_metadata_checksum_and_geometry() {
        let mut sb = minimal((0x3C, 0x2C2, RO_COMPAT_METADATA_CSUM | 0x3));
        let sum = crc32c(&sb[..0x3FC]);
        sb[0x3FC..].copy_from_slice(&sum.to_le_bytes());
        assert!(Superblock::parse(&sb).unwrap().is_some());
        sb[0x100] ^= 1;
        assert!(Superblock::parse(&sb).unwrap_err().contains("checksum"));

        let mut sb = minimal((0x3C, 0x2, 0x3));
        sb[0x18] = 20;
        assert!(Superblock::parse(&sb).unwrap_err().contains("block size"));
        let mut sb = minimal((0x3C, 0x2, 0x3));
        sb[0x38] = 0;
        assert_eq!(Superblock::parse(&sb).unwrap(), None);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 with the final inversion ext4 omits.
        assert_eq!(!crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn tool_arg_carries_the_offset_and_refuses_question_marks() {
        let loc = FsLocation::partition("/x/disk.raw", 1 << 20, 4096);
        assert_eq!(loc.tool_arg().unwrap(), "/x/disk.raw?offset=1048576");
        assert_eq!(FsLocation::bare("/x/a.img").tool_arg().unwrap(), "/x/a.img");
        assert!(matches!(
            FsLocation::bare("/x/a?.img").tool_arg(),
            Err(ExtError::UnusablePath { .. })
        ));
    }
}
