//! The work image: every write goes to a temporary file beside it, which becomes
//! the work image only when the whole fetch succeeded. Data is written sparsely
//! (all-zero blocks stay holes) while every byte is hashed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use tempfile::{NamedTempFile, TempPath};

/// Holes are made per block of this size.
const BLOCK: usize = 4096;
/// Bytes read per step: progress is reported and cancellation checked between steps.
pub const CHUNK: usize = 1 << 20;

/// The work image being produced.
pub struct Work {
    path: PathBuf,
    dir: PathBuf,
    /// The last complete image written, still under its temporary name.
    ready: Option<(TempPath, Written)>,
}

impl Work {
    pub fn new(path: &Path) -> io::Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Renaming over a device node or directory would be a nasty surprise.
        if let Ok(md) = std::fs::symlink_metadata(path) {
            if !md.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} exists and is not a regular file", path.display()),
                ));
            }
        }
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the work image's directory {} does not exist",
                    dir.display()
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            ready: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new temporary file beside the work image (removed when dropped).
    pub fn scratch(&self) -> io::Result<NamedTempFile> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "work".into());
        tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".part")
            .tempfile_in(&self.dir)
    }

    /// A finished image replaces any earlier one (which is deleted).
    pub fn accept(&mut self, file: TempPath, written: Written) {
        self.ready = Some((file, written));
    }

    /// Renames the last accepted image to the work image's name.
    pub fn finish(self) -> io::Result<Option<Written>> {
        match self.ready {
            Some((file, written)) => {
                file.persist(&self.path).map_err(|e| e.error)?;
                Ok(Some(written))
            }
            None => Ok(None),
        }
    }
}

/// What one copy wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

/// Digests computed while writing, beyond the sha256 always kept.
#[derive(Default)]
pub struct Extra {
    pub md5: Option<Md5>,
    pub sha512: Option<Sha512>,
}

/// Writes a stream at increasing offsets, skipping all-zero blocks.
pub struct SparseWriter<'a> {
    file: &'a File,
    path: &'a Path,
    pos: u64,
    sha256: Sha256,
    pub extra: Extra,
}

impl<'a> SparseWriter<'a> {
    pub fn new(file: &'a File, path: &'a Path) -> Self {
        Self {
            file,
            path,
            pos: 0,
            sha256: Sha256::new(),
            extra: Extra::default(),
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.sha256.update(data);
        if let Some(h) = &mut self.extra.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.extra.sha512 {
            h.update(data);
        }
        for (i, block) in data.chunks(BLOCK).enumerate() {
            if block.iter().any(|&b| b != 0) {
                let at = self.pos + (i * BLOCK) as u64;
                self.file
                    .write_all_at(block, at)
                    .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
            }
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Sets the length (trailing holes included) and flushes to disk.
    pub fn finish(self) -> Result<(Written, Extra), String> {
        let fail = |e: io::Error| format!("finishing {}: {e}", self.path.display());
        self.file.set_len(self.pos).map_err(fail)?;
        self.file.sync_all().map_err(fail)?;
        Ok((
            Written {
                bytes: self.pos,
                sha256: hex::encode(self.sha256.finalize()),
            },
            self.extra,
        ))
    }
}

/// Hashes a file another program wrote densely (scp) and punches a hole wherever a
/// block is all zeroes, so the work image is as sparse as a streamed one and later
/// stages copy only data.
pub fn hash_and_punch_zeros(path: &Path, cancel: &AtomicBool) -> Result<Written, String> {
    use rustix::fs::{fallocate, FallocateFlags};
    let fail = |e: io::Error| format!("{}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(fail)?;
    let mut sha256 = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err("cancelled".into());
        }
        let n = read_full(&mut &file, &mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
            if block.iter().all(|&b| b == 0) {
                let at = pos + (i * BLOCK) as u64;
                fallocate(
                    &file,
                    FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                    at,
                    block.len() as u64,
                )
                .map_err(|e| fail(e.into()))?;
            }
        }
        pos += n as u64;
    }
    Ok(Written {
        bytes: pos,
        sha256: hex::encode(sha256.finalize()),
    })
}

/// Streams `reader` into `writer`, checking `cancel` between chunks and calling
/// `progress(done)` after each.
pub fn pump(
    reader: &mut dyn Read,
    writer: &mut SparseWriter,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
    what: &str,
) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err("cancelled".into());
        }
        let n = read_full(reader, &mut buf).map_err(|e| format!("reading {what}: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        writer.write(&buf[..n])?;
        progress(writer.position());
    }
}

/// Reads until the buffer is full or the stream ends, so zero blocks line up.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The size of a regular file or block device.
pub fn source_size(file: &mut File, path: &Path) -> Result<u64, String> {
    file.seek(SeekFrom::End(0))
        .and_then(|size| file.seek(SeekFrom::Start(0)).map(|_| size))
        .map_err(|e| format!("reading the size of {}: {e}", path.display()))
}

/// Refuses a copy whose work image would land on the device being copied (the
/// copy would overwrite its own source) or on a filesystem without room for it.
pub fn check_target(source: &Path, size: u64, work_dir: &Path) -> Result<(), String> {
    let src = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let dir = std::fs::metadata(work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;
    if src.file_type().is_block_device() && on_device(dir.dev(), src.rdev()) {
        return Err(format!(
            "the work image's directory {} is on {}, the device being copied; write the \
             work image to another volume (an attached EBS volume)",
            work_dir.display(),
            source.display()
        ));
    }
    let fs = rustix::fs::statvfs(work_dir)
        .map_err(|e| format!("checking free space in {}: {e}", work_dir.display()))?;
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    if free < size {
        return Err(format!(
            "{} needs {size} bytes but {} has only {free} bytes free; use a larger volume",
            source.display(),
            work_dir.display()
        ));
    }
    Ok(())
}

/// Whether a filesystem on device `fs_dev` lives on block device `dev`: the device
/// itself, or one of its partitions.
fn on_device(fs_dev: u64, dev: u64) -> bool {
    if fs_dev == dev {
        return true;
    }
    let (major, minor) = (rustix::fs::major(fs_dev), rustix::fs::minor(fs_dev));
    // A partition's sysfs directory sits inside its disk's, next to the disk's `dev`.
    let parent = Path::new("/sys/dev/block")
        .join(format!("{major}:{minor}"))
        .join("../dev");
    std::fs::read_to_string(parent).is_ok_and(|text| {
        text.trim() == format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev))
    })
}

/// The block device mounted at `mount_point`, from /proc/mounts (the last mount
/// there wins, as it is the one visible).
pub fn mounted_device(mounts: &str, mount_point: &str) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?, fields.next()?))
        })
        .filter(|(dev, at)| unescape(at) == mount_point && dev.starts_with("/dev/"))
        .map(|(dev, _)| unescape(dev))
        .next_back()
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_root_device() {
        let mounts = "sysfs /sys sysfs rw 0 0\n/dev/xvda1 / ext4 rw 0 0\n\
                      /dev/xvdf /mnt/my\\040vol ext4 rw 0 0\noverlay / overlay rw 0 0\n";
        assert_eq!(mounted_device(mounts, "/").as_deref(), Some("/dev/xvda1"));
        assert_eq!(
            mounted_device(mounts, "/mnt/my vol").as_deref(),
            Some("/dev/xvdf")
        );
        assert_eq!(mounted_device(mounts, "/srv"), None);
    }

    #[test]
    fn sparse_writer_keeps_holes_and_hashes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.img");
        let file = File::create(&path).unwrap();
        let mut data = vec![0u8; 3 * CHUNK];
        data[CHUNK + 5] = 7;
        let mut w = SparseWriter::new(&file, &path);
        let cancel = AtomicBool::new(false);
        pump(&mut &data[..], &mut w, &cancel, &mut |_| {}, "test").unwrap();
        let (written, _) = w.finish().unwrap();
        assert_eq!(written.bytes, data.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // One 4 KiB block of data; the rest are holes.
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 <= 64 * 1024);
    }
}
