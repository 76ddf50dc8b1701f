//! Sparse copies: only a source's data extents are read and written, so a 10 GiB
//! image holding 1 GiB of data costs 1 GiB of I/O and 1 GiB of disk, and the
//! destination keeps the holes. The source is only ever read.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

use crate::disk::extents::{data_extents, Extent};

/// Bytes moved per step: progress is reported and cancellation checked between steps.
const CHUNK: u64 = 8 << 20;
/// Buffer size of the read/write fallback.
const BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("copy cancelled")]
    Cancelled,
    #[error(
        "{path} is {len} bytes long but the range to copy ends at byte {end}: the source \
         is truncated (re-fetch it)"
    )]
    SourceTooShort { path: PathBuf, len: u64, end: u64 },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |source| CopyError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Progress reporting and cancellation for a long copy.
#[derive(Default, Clone, Copy)]
pub struct Control<'a> {
    /// Called after each step with (data bytes copied so far, data bytes in total).
    pub progress: Option<&'a dyn Fn(u64, u64)>,
    /// When another thread (a Ctrl-C handler) sets it, the copy stops with
    /// `CopyError::Cancelled` before its next step.
    pub cancel: Option<&'a AtomicBool>,
}

impl Control<'_> {
    fn check_cancel(&self) -> Result<(), CopyError> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(CopyError::Cancelled),
            _ => Ok(()),
        }
    }
}

/// Copies `length` bytes of `src` starting at `src_offset` to `dst` at
/// `dst_offset`: the whole of a bare filesystem image, or one partition of a
/// partitioned one. The paths only name the files in errors.
///
/// The destination range must already read as zeros (a new file, or past its old
/// end): holes of the source are skipped, not written. The destination is
/// extended to `dst_offset + length` when shorter, never shrunk.
pub struct RangeCopy<'a> {
    pub src: &'a File,
    pub src_path: &'a Path,
    pub src_offset: u64,
    pub length: u64,
    pub dst: &'a File,
    pub dst_path: &'a Path,
    pub dst_offset: u64,
}

impl RangeCopy<'_> {
    /// Returns the number of data bytes copied.
    pub fn run(&self, control: &Control) -> Result<u64, CopyError> {
        let end = self.src_offset + self.length;
        let src_len = self
            .src
            .metadata()
            .map_err(io_error("reading the size of", self.src_path))?
            .len();
        if src_len < end {
            return Err(CopyError::SourceTooShort {
                path: self.src_path.to_owned(),
                len: src_len,
                end,
            });
        }
        let extents = self.extents_in_range()?;
        let total: u64 = extents.iter().map(|e| e.length).sum();

        let dst_len = self
            .dst
            .metadata()
            .map_err(io_error("reading the size of", self.dst_path))?
            .len();
        if dst_len < self.dst_offset + self.length {
            self.dst
                .set_len(self.dst_offset + self.length)
                .map_err(io_error("extending", self.dst_path))?;
        }

        let mut mover = Mover {
            job: self,
            use_copy_file_range: true,
            buffer: Vec::new(),
        };
        let mut done = 0;
        for extent in &extents {
            let mut pos = extent.offset;
            while pos < extent.end() {
                control.check_cancel()?;
                let step = CHUNK.min(extent.end() - pos);
                mover.copy(pos, self.dst_offset + (pos - self.src_offset), step)?;
                pos += step;
                done += step;
                if let Some(report) = control.progress {
                    report(done, total);
                }
            }
        }
        Ok(done)
    }

    /// The source's data extents clipped to the range.
    fn extents_in_range(&self) -> Result<Vec<Extent>, CopyError> {
        let end = self.src_offset + self.length;
        let all = data_extents(self.src, end)
            .map_err(io_error("finding the data extents of", self.src_path))?;
        Ok(all
            .into_iter()
            .filter_map(|e| {
                let start = e.offset.max(self.src_offset);
                let stop = e.end().min(end);
                (start < stop).then(|| Extent {
                    offset: start,
                    length: stop - start,
                })
            })
            .collect())
    }
}

/// Moves bytes with copy_file_range (in-kernel, and a reflink where the
/// filesystem can), falling back to pread/pwrite when the kernel refuses it
/// (across filesystems, on old kernels, on some file systems).
struct Mover<'a> {
    job: &'a RangeCopy<'a>,
    use_copy_file_range: bool,
    buffer: Vec<u8>,
}

impl Mover<'_> {
    fn copy(&mut self, mut src_pos: u64, mut dst_pos: u64, length: u64) -> Result<(), CopyError> {
        let end = src_pos + length;
        while src_pos < end {
            let want = (end - src_pos) as usize;
            let moved = if self.use_copy_file_range {
                let (mut from, mut to) = (src_pos, dst_pos);
                match rustix::fs::copy_file_range(
                    self.job.src,
                    Some(&mut from),
                    self.job.dst,
                    Some(&mut to),
                    want,
                ) {
                    Ok(n) => n,
                    Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                        self.use_copy_file_range = false;
                        continue;
                    }
                    Err(e) => {
                        return Err(io_error("copying data into", self.job.dst_path)(e.into()))
                    }
                }
            } else {
                self.read_write(src_pos, dst_pos, want)?
            };
            if moved == 0 {
                // The source shrank under us.
                return Err(CopyError::SourceTooShort {
                    path: self.job.src_path.to_owned(),
                    len: src_pos,
                    end,
                });
            }
            src_pos += moved as u64;
            dst_pos += moved as u64;
        }
        Ok(())
    }

    fn read_write(&mut self, src_pos: u64, dst_pos: u64, want: usize) -> Result<usize, CopyError> {
        self.buffer.resize(BUFFER, 0);
        let want = want.min(BUFFER);
        let n = self
            .job
            .src
            .read_at(&mut self.buffer[..want], src_pos)
            .map_err(io_error("reading", self.job.src_path))?;
        self.job
            .dst
            .write_all_at(&self.buffer[..n], dst_pos)
            .map_err(io_error("writing", self.job.dst_path))?;
        Ok(n)
    }
}

/// Turns the bare filesystem file `bare` into the disk file `disk` (which must not
/// exist) holding the same bytes at `offset`, `disk_len` bytes long. Where the
/// filesystem under them supports it (ext4, XFS), `bare` is renamed and its extents
/// shifted up with FALLOC_FL_INSERT_RANGE, so no data is copied; elsewhere (tmpfs,
/// or an offset that is not a multiple of the block size) its data extents are
/// copied into a new `disk` and `bare` removed. The bytes below `offset` are a hole.
/// Returns `disk`, open for writing (the caller puts a partition table there).
pub fn shift_into_disk(
    bare: &Path,
    disk: &Path,
    offset: u64,
    disk_len: u64,
    control: &Control,
) -> Result<File, CopyError> {
    control.check_cancel()?;
    let len = std::fs::metadata(bare)
        .map_err(io_error("reading the size of", bare))?
        .len();
    if offset > 0 && offset < len {
        if let Some(file) = try_insert_range(bare, disk, offset)? {
            file.set_len(disk_len)
                .map_err(io_error("extending", disk))?;
            return Ok(file);
        }
    }
    let src = File::open(bare).map_err(io_error("opening", bare))?;
    let dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(disk)
        .map_err(io_error("creating", disk))?;
    dst.set_len(disk_len).map_err(io_error("sizing", disk))?;
    let copied = RangeCopy {
        src: &src,
        src_path: bare,
        src_offset: 0,
        length: len,
        dst: &dst,
        dst_path: disk,
        dst_offset: offset,
    }
    .run(control);
    if let Err(e) = copied {
        drop(dst);
        let _ = std::fs::remove_file(disk);
        return Err(e);
    }
    std::fs::remove_file(bare).map_err(io_error("removing", bare))?;
    Ok(dst)
}

/// Renames `bare` to `disk` and inserts `offset` bytes of hole at its start.
/// Returns `None`, with `bare` back in place, when the filesystem cannot.
fn try_insert_range(bare: &Path, disk: &Path, offset: u64) -> Result<Option<File>, CopyError> {
    use rustix::fs::{fallocate, FallocateFlags};
    if disk.exists() {
        let exists = io::Error::from(io::ErrorKind::AlreadyExists);
        return Err(io_error("creating", disk)(exists));
    }
    std::fs::rename(bare, disk).map_err(io_error("renaming", bare))?;
    let inserted = OpenOptions::new().write(true).open(disk).and_then(|file| {
        fallocate(&file, FallocateFlags::INSERT_RANGE, 0, offset)?;
        Ok(file)
    });
    match inserted {
        Ok(file) => Ok(Some(file)),
        Err(e) => {
            std::fs::rename(disk, bare).map_err(io_error("renaming back", disk))?;
            match Errno::from_io_error(&e) {
                // Not supported by this filesystem, or not block-aligned here.
                Some(Errno::OPNOTSUPP | Errno::INVAL) => Ok(None),
                _ => Err(io_error("shifting the filesystem in", disk)(e)),
            }
        }
    }
}

/// Copies the whole of `src` into a new sparse file `dst` (which must not exist),
/// e.g. the work copy of a source image. A partial `dst` is removed on failure
/// and on cancellation. Returns the number of data bytes copied.
pub fn copy_file_sparse(src: &Path, dst: &Path, control: &Control) -> Result<u64, CopyError> {
    let src_file = File::open(src).map_err(io_error("opening", src))?;
    let length = src_file
        .metadata()
        .map_err(io_error("reading the size of", src))?
        .len();
    let dst_file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(io_error("creating", dst))?;
    let copied = RangeCopy {
        src: &src_file,
        src_path: src,
        src_offset: 0,
        length,
        dst: &dst_file,
        dst_path: dst,
        dst_offset: 0,
    }
    .run(control);
    if copied.is_err() {
        // Best effort: the copy's own error is the one worth reporting.
        let _ = std::fs::remove_file(dst);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::AtomicU64;

    /// A 64 MiB file with data at 0, 32 MiB and the last 4 KiB.
    fn sparse_source(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("src.img");
        let f = File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 0).unwrap();
        f.write_all_at(&[2u8; 10 << 20], 32 << 20).unwrap();
        f.write_all_at(&[3u8; 4096], (64 << 20) - 4096).unwrap();
        path
    }

    #[test]
    fn copies_data_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = sparse_source(dir.path());
        let dst = dir.path().join("dst.img");
        let calls = AtomicU64::new(0);
        let report = |done: u64, total: u64| {
            assert!(done <= total);
            calls.fetch_add(1, Ordering::Relaxed);
        };
        let copied = copy_file_sparse(
            &src,
            &dst,
            &Control {
                progress: Some(&report),
                cancel: None,
            },
        )
        .unwrap();
        assert_eq!(copied, 4096 + (10 << 20) + 4096);
        assert!(calls.load(Ordering::Relaxed) >= 3);
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        let allocated = std::fs::metadata(&dst).unwrap().blocks() * 512;
        assert!(allocated < 12 << 20, "holes were filled: {allocated} bytes");
    }

    #[test]
    fn copies_a_range_to_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = sparse_source(dir.path());
        let src = File::open(&src_path).unwrap();
        let dst_path = dir.path().join("disk.img");
        let mut dst = File::create(&dst_path).unwrap();
        dst.write_all(b"header").unwrap();
        let copied = RangeCopy {
            src: &src,
            src_path: &src_path,
            src_offset: 32 << 20,
            length: 1 << 20,
            dst: &dst,
            dst_path: &dst_path,
            dst_offset: 1 << 20,
        }
        .run(&Control::default())
        .unwrap();
        assert_eq!(copied, 1 << 20);
        let out = std::fs::read(&dst_path).unwrap();
        assert_eq!(out.len(), 2 << 20);
        assert_eq!(&out[..6], b"header");
        assert!(out[1 << 20..].iter().all(|&b| b == 2));
    }

    #[test]
    fn read_write_fallback_copies_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = sparse_source(dir.path());
        let src = File::open(&src_path).unwrap();
        let dst_path = dir.path().join("fallback.img");
        let dst = File::create(&dst_path).unwrap();
        dst.set_len(64 << 20).unwrap();
        let job = RangeCopy {
            src: &src,
            src_path: &src_path,
            src_offset: 0,
            length: 64 << 20,
            dst: &dst,
            dst_path: &dst_path,
            dst_offset: 0,
        };
        let mut mover = Mover {
            job: &job,
            use_copy_file_range: false,
            buffer: Vec::new(),
        };
        mover.copy(32 << 20, 32 << 20, 10 << 20).unwrap();
        let (a, b) = (
            std::fs::read(&src_path).unwrap(),
            std::fs::read(&dst_path).unwrap(),
        );
        assert_eq!(a[32 << 20..42 << 20], b[32 << 20..42 << 20]);
    }

    #[test]
    fn short_source_and_cancel_are_errors_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = sparse_source(dir.path());
        let src = File::open(&src_path).unwrap();
        let dst_path = dir.path().join("short.img");
        let dst = File::create(&dst_path).unwrap();
        let err = RangeCopy {
            src: &src,
            src_path: &src_path,
            src_offset: 1 << 20,
            length: 64 << 20,
            dst: &dst,
            dst_path: &dst_path,
            dst_offset: 0,
        }
        .run(&Control::default())
        .unwrap_err();
        assert!(matches!(err, CopyError::SourceTooShort { .. }), "{err}");

        let cancelled = AtomicBool::new(true);
        let target = dir.path().join("cancelled.img");
        let err = copy_file_sparse(
            &src_path,
            &target,
            &Control {
                progress: None,
                cancel: Some(&cancelled),
            },
        )
        .unwrap_err();
        assert!(matches!(err, CopyError::Cancelled));
        assert!(!target.exists());
    }
}
