//! An unmounted ext2/3/4 filesystem read through e2fsprogs' `debugfs`, opened
//! read-only and without bitmaps (`-c`), so inspecting an image never writes to it.
//! A filesystem inside a disk image is reached with `IMAGE?offset=N`, which debugfs
//! (unlike dumpe2fs) accepts.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde::Serialize;

use super::files::{resolve, GuestFiles, Node};
use super::{image_length, InspectError};
use crate::guest::mount::FsType;

/// What the superblock says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filesystem {
    pub fstype: FsType,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub block_size: u64,
    pub block_count: u64,
    /// e.g. `has_journal`, `extent`; `needs_recovery` means a dirty journal.
    pub features: Vec<String>,
    /// `clean`, `not clean`, `clean with errors`...
    pub state: String,
}

impl Filesystem {
    pub fn size_bytes(&self) -> u64 {
        self.block_size * self.block_count
    }
}

/// Features the ext3 driver does not know: any of them makes a filesystem ext4.
const EXT4_FEATURES: &[&str] = &[
    "extent",
    "64bit",
    "flex_bg",
    "huge_file",
    "dir_nlink",
    "extra_isize",
    "uninit_bg",
    "metadata_csum",
    "inline_data",
    "ea_inode",
    "large_dir",
    "encrypt",
    "casefold",
];

/// One directory entry of `debugfs ls -p`.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    mode: u32,
}

/// A guest filesystem read with debugfs. Directory listings are cached, since
/// following symlinks chroot-style looks at each directory on the way.
#[derive(Debug)]
pub struct DebugfsFiles {
    /// The name debugfs opens: the image, with `?offset=N` when not at 0.
    device: OsString,
    filesystem: Filesystem,
    listings: Mutex<HashMap<String, Option<Vec<Entry>>>>,
}

impl DebugfsFiles {
    /// Opens the filesystem at byte `offset` of `image`, checking that its superblock
    /// is sound and that the image holds all of its blocks.
    pub fn open(image: &Path, offset: u64) -> Result<Self, InspectError> {
        let image_len = File::open(image)
            .and_then(|file| image_length(&file))
            .map_err(|source| InspectError::Io {
                path: image.to_path_buf(),
                source,
            })?;
        let path = image.to_str().filter(|p| !p.contains('?')).ok_or_else(|| {
            InspectError::UnusablePath {
                path: image.to_path_buf(),
            }
        })?;
        let device = match offset {
            0 => path.into(),
            _ => format!("{path}?offset={offset}").into(),
        };
        let output = run_debugfs(&device, "stats -h").map_err(|source| InspectError::Debugfs {
            path: image.to_path_buf(),
            source,
        })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Some(problem) = stderr.lines().find(|l| l.contains("while trying to open")) {
            return Err(open_error(image, offset, problem));
        }
        let filesystem =
            parse_stats(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
                InspectError::Corrupt {
                    path: image.to_path_buf(),
                    offset,
                    detail: format!("debugfs printed no usable superblock: {}", stderr.trim()),
                }
            })?;
        let available = image_len.saturating_sub(offset);
        if filesystem.size_bytes() > available {
            return Err(InspectError::Truncated {
                path: image.to_path_buf(),
                offset,
                needed: filesystem.size_bytes(),
                available,
            });
        }
        Ok(DebugfsFiles {
            device,
            filesystem,
            listings: Mutex::new(HashMap::new()),
        })
    }

    pub fn filesystem(&self) -> &Filesystem {
        &self.filesystem
    }

    /// debugfs's stdout for one request on an already resolved path. debugfs reports
    /// failures on stderr with exit status 0, so callers only ask about paths they
    /// know exist.
    fn request(&self, command: &str, path: &str) -> Option<Vec<u8>> {
        let request = format!("{command} {}", quote(path)?);
        match run_debugfs(&self.device, &request) {
            Ok(output) => Some(output.stdout),
            Err(e) => {
                tracing::warn!("debugfs {request:?} on {:?}: {e}", self.device);
                None
            }
        }
    }

    fn listing(&self, dir: &str) -> Option<Vec<Entry>> {
        let mut cache = self.listings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = cache.get(dir) {
            return entries.clone();
        }
        let entries = self
            .request("ls -p", dir)
            .and_then(|out| parse_listing(&String::from_utf8_lossy(&out)));
        cache.insert(dir.to_string(), entries.clone());
        entries
    }

    fn node(&self, path: &str) -> Option<Node> {
        let (parent, name) = path.rsplit_once('/')?;
        let parent = if parent.is_empty() { "/" } else { parent };
        let entry = self.listing(parent)?.into_iter().find(|e| e.name == name)?;
        Some(match entry.mode & 0o170000 {
            0o040000 => Node::Dir,
            0o100000 => Node::File,
            0o120000 => Node::Symlink(self.link_target(path)?),
            _ => Node::Other,
        })
    }

    /// A fast symlink's target is in the inode (shown by `stat`); a longer one is in a
    /// data block (shown by `cat`).
    fn link_target(&self, path: &str) -> Option<String> {
        let stat = self.request("stat", path)?;
        let stat = String::from_utf8_lossy(&stat);
        let fast = stat.lines().find_map(|l| {
            let quoted = l.split_once("Fast link dest: ")?.1;
            Some(quoted.strip_prefix('"')?.strip_suffix('"')?.to_string())
        });
        match fast {
            Some(target) => Some(target),
            None => String::from_utf8(self.request("cat", path)?).ok(),
        }
    }

    fn resolve(&self, path: &str, follow_last: bool) -> Option<(String, Node)> {
        resolve(path, follow_last, |p| self.node(p))
    }
}

impl GuestFiles for DebugfsFiles {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.resolve(path, true)? {
            (resolved, Node::File) => self.request("cat", &resolved),
            _ => None,
        }
    }

    fn list_dir(&self, path: &str) -> Option<Vec<String>> {
        let (resolved, Node::Dir) = self.resolve(path, true)? else {
            return None;
        };
        let mut names: Vec<String> = self
            .listing(&resolved)?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        Some(names)
    }

    fn readlink(&self, path: &str) -> Option<String> {
        match self.resolve(path, false)? {
            (_, Node::Symlink(target)) => Some(target),
            _ => None,
        }
    }
}

/// Runs `debugfs -c -R REQUEST DEVICE` (read-only: no `-w`). debugfs lives in /sbin,
/// which is not always on PATH.
fn run_debugfs(device: &OsString, request: &str) -> io::Result<Output> {
    let mut last = None;
    for program in ["debugfs", "/usr/sbin/debugfs", "/sbin/debugfs"] {
        let run = Command::new(program)
            .args(["-c", "-R", request])
            .arg(device)
            .output();
        match run {
            Err(e) if e.kind() == io::ErrorKind::NotFound => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("at least one candidate was tried"))
}

/// Quotes a path for debugfs's request parser, which groups "..." and reads `""`
/// inside quotes as one quote. A newline cannot be passed at all.
fn quote(path: &str) -> Option<String> {
    if path.contains('\n') {
        return None;
    }
    Some(format!("\"{}\"", path.replace('"', "\"\"")))
}

fn open_error(image: &Path, offset: u64, problem: &str) -> InspectError {
    let path: PathBuf = image.to_path_buf();
    // "debugfs: Bad magic number in super-block while trying to open IMAGE"
    let detail = problem
        .trim_start_matches("debugfs: ")
        .split(" while trying to open")
        .next()
        .unwrap_or(problem)
        .to_string();
    if detail.contains("Bad magic number") || detail.contains("short read") {
        InspectError::NotFilesystem {
            path,
            offset,
            detail,
        }
    } else {
        InspectError::Corrupt {
            path,
            offset,
            detail,
        }
    }
}

/// Parses `debugfs -R 'stats -h'` ("Key:   value" lines).
fn parse_stats(text: &str) -> Option<Filesystem> {
    let fields: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let named = |key: &str| {
        fields
            .get(key)
            .filter(|v| !v.is_empty() && **v != "<none>")
            .map(|v| v.to_string())
    };
    let features: Vec<String> = fields
        .get("Filesystem features")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let fstype = if features.iter().any(|f| EXT4_FEATURES.contains(&f.as_str())) {
        FsType::Ext4
    } else if features.iter().any(|f| f == "has_journal") {
        FsType::Ext3
    } else {
        FsType::Ext2
    };
    Some(Filesystem {
        fstype,
        uuid: named("Filesystem UUID"),
        label: named("Filesystem volume name"),
        block_size: fields.get("Block size")?.parse().ok()?,
        block_count: fields.get("Block count")?.parse().ok()?,
        features,
        state: named("Filesystem state").unwrap_or_default(),
    })
}

/// Parses `ls -p` lines: `/INODE/MODE/UID/GID/NAME/SIZE/` (names cannot hold '/').
/// `None` when there is no `.` entry, i.e. no such directory.
fn parse_listing(text: &str) -> Option<Vec<Entry>> {
    let entries: Vec<Entry> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('/').collect();
            if fields.len() < 7 || !fields[0].is_empty() {
                return None;
            }
            Some(Entry {
                mode: u32::from_str_radix(fields[2], 8).ok()?,
                name: fields[5].to_string(),
            })
        })
        .collect();
    entries.iter().any(|e| e.name == ".").then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines() {
        let text = "/16/040755/0/0/.//\n/2/040755/0/0/..//\n\
                    /17/120777/0/0/os-release/21/\n/15/100644/0/0/a \"b\"/3/\n\n";
        let entries = parse_listing(text).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".", "..", "os-release", "a \"b\""]);
        assert_eq!(entries[2].mode, 0o120777);
        assert!(parse_listing("").is_none());
    }

    #[test]
    fn fstype_from_features() {
        let stats = |features: &str| {
            format!(
                "Filesystem volume name:   <none>\nFilesystem UUID:  u\n\
                 Filesystem features:      {features}\nBlock count: 8\nBlock size: 1024\n"
            )
        };
        let fs = |f| parse_stats(&stats(f)).unwrap().fstype;
        assert_eq!(
            fs("ext_attr resize_inode dir_index filetype sparse_super"),
            FsType::Ext2
        );
        assert_eq!(
            fs("has_journal ext_attr filetype needs_recovery"),
            FsType::Ext3
        );
        assert_eq!(fs("has_journal extent 64bit flex_bg"), FsType::Ext4);
        assert_eq!(parse_stats(&stats("has_journal")).unwrap().label, None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/a b/c\"d").unwrap(), "\"/a b/c\"\"d\"");
        assert!(quote("/a\nb").is_none());
    }
}
