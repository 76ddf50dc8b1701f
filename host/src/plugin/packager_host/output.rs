//! The packager's output file: one disk or small file written as the output itself,
//! or a ustar archive whose members are added in order. Runs on a thread of its own
//! (see [`serve`]) because the tar writer borrows the file, and a wasmtime store
//! cannot hold borrows.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::disk::formats::{self, Format, FormatError, TarWriter, WriteOptions};

/// Longest member name ustar holds without a prefix field.
const MAX_NAME: usize = 100;
/// Read-back chunk for digests.
const CHUNK: usize = 1 << 20;

/// What the packager asked for.
pub enum Request {
    BeginArchive,
    Disk { format: Format, name: String },
    File { name: String, data: Vec<u8> },
}

/// What one write put into the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub name: String,
    pub bytes: u64,
    pub sha1: String,
    pub sha256: String,
}

/// Why a request was refused or failed; `Invalid` is the packager's mistake.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0}")]
    Invalid(String),
    #[error("writing {name}: {source}")]
    Format { name: String, source: FormatError },
    #[error("reading back {name} for its digests: {source}")]
    ReadBack {
        name: String,
        source: std::io::Error,
    },
}

/// The answer to a request: what a write wrote (nothing for begin-archive).
pub type Reply = Sender<Result<Option<Written>, OutputError>>;

/// The disk being packaged.
#[derive(Clone, Copy)]
pub struct Disk<'a> {
    pub file: &'a File,
    pub size: u64,
}

enum Mode<'a> {
    Empty,
    /// The output is one file, already written.
    Single,
    Archive {
        tar: Box<TarWriter<'a>>,
        names: Vec<String>,
    },
}

struct Output<'a> {
    file: &'a File,
    name: &'a str,
    disk: Disk<'a>,
    cancel: &'a AtomicBool,
    mode: Mode<'a>,
}

/// Answers requests until the sender is dropped, then completes the output: the
/// archive's end marker, and a check that something was written at all.
pub fn serve(
    file: &File,
    name: &str,
    disk: Disk<'_>,
    cancel: &AtomicBool,
    requests: Receiver<(Request, Reply)>,
) -> Result<(), OutputError> {
    let mut out = Output {
        file,
        name,
        disk,
        cancel,
        mode: Mode::Empty,
    };
    for (request, reply) in requests {
        // The packager may have trapped meanwhile; then nobody reads the reply.
        let _ = reply.send(out.handle(request));
    }
    match out.mode {
        Mode::Empty => Err(OutputError::Invalid(
            "the packager finished without writing anything".into(),
        )),
        Mode::Single => Ok(()),
        Mode::Archive { tar, .. } => tar
            .finish()
            .map(drop)
            .map_err(|source| OutputError::Format {
                name: out.name.into(),
                source,
            }),
    }
}

impl Output<'_> {
    fn handle(&mut self, request: Request) -> Result<Option<Written>, OutputError> {
        match request {
            Request::BeginArchive => self.begin_archive().map(|()| None),
            Request::Disk { format, name } => {
                let (disk, cancel) = (self.disk, self.cancel);
                // A large disk takes minutes: say how far along it is every tenth.
                let next = AtomicU64::new(0);
                let progress = |done: u64, total: u64| {
                    if done >= next.load(Ordering::Relaxed) {
                        next.store(done + (total / 10).max(1), Ordering::Relaxed);
                        tracing::info!(member = %name, done, total, "writing {format}");
                    }
                };
                self.write(&name, |file, at| {
                    let opts = WriteOptions {
                        cancel: Some(cancel),
                        progress: Some(&progress),
                        file_name: Some(&name),
                        ..WriteOptions::default()
                    };
                    formats::write_disk(format, disk.file, disk.size, file, at, &opts)
                        .map(|w| w.bytes)
                })
                .map(Some)
            }
            Request::File { name, data } => self
                .write(&name, |file, at| {
                    file.write_all_at(&data, at)
                        .map_err(|source| FormatError::Write { offset: at, source })?;
                    Ok(data.len() as u64)
                })
                .map(Some),
        }
    }

    fn begin_archive(&mut self) -> Result<(), OutputError> {
        if !matches!(self.mode, Mode::Empty) {
            return Err(OutputError::Invalid(
                "begin-archive must come before any write".into(),
            ));
        }
        let tar = TarWriter::new(self.file).map_err(|source| OutputError::Format {
            name: self.name.into(),
            source,
        })?;
        self.mode = Mode::Archive {
            tar: Box::new(tar),
            names: Vec::new(),
        };
        Ok(())
    }

    /// Runs `write(file, offset) -> length` at the place `name` goes, then digests
    /// what it wrote.
    fn write(
        &mut self,
        name: &str,
        write: impl FnOnce(&File, u64) -> Result<u64, FormatError>,
    ) -> Result<Written, OutputError> {
        let failed = |source| OutputError::Format {
            name: name.into(),
            source,
        };
        let (offset, bytes) = match &mut self.mode {
            Mode::Single => {
                return Err(OutputError::Invalid(format!(
                    "the output {} is already written; call begin-archive first to write \
                     several files",
                    self.name
                )))
            }
            Mode::Empty => {
                if name != self.name {
                    return Err(OutputError::Invalid(format!(
                        "without an archive the packager writes the output itself: name it \
                         {:?} (output-name), not {name:?}",
                        self.name
                    )));
                }
                let bytes = write(self.file, 0).map_err(failed)?;
                self.mode = Mode::Single;
                (0, bytes)
            }
            Mode::Archive { tar, names } => {
                check_member_name(name)?;
                if names.iter().any(|n| n == name) {
                    return Err(OutputError::Invalid(format!(
                        "archive member {name:?} is written twice"
                    )));
                }
                let offset = tar.begin_member(name, now()).map_err(failed)?;
                let bytes = write(self.file, offset).map_err(failed)?;
                tar.finish_member(bytes).map_err(failed)?;
                names.push(name.into());
                (offset, bytes)
            }
        };
        let (sha1, sha256) =
            digests(self.file, offset, bytes).map_err(|source| OutputError::ReadBack {
                name: name.into(),
                source,
            })?;
        Ok(Written {
            name: name.into(),
            bytes,
            sha1,
            sha256,
        })
    }
}

/// A member name every tar reader and VirtualBox accept: a plain ASCII file name.
fn check_member_name(name: &str) -> Result<(), OutputError> {
    let problem = if name.is_empty() || name == "." || name == ".." {
        Some("is not a file name")
    } else if name.len() > MAX_NAME {
        Some("is longer than 100 bytes")
    } else if !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Some("must be printable ASCII")
    } else if name.contains('/') || name.contains('\\') {
        Some("must not contain a path separator")
    } else {
        None
    };
    match problem {
        Some(p) => Err(OutputError::Invalid(format!(
            "archive member name {name:?} {p}"
        ))),
        None => Ok(()),
    }
}

/// sha1 and sha256 of `len` bytes of `file` from `offset`, hex.
fn digests(file: &File, offset: u64, len: u64) -> std::io::Result<(String, String)> {
    let (mut sha1, mut sha256) = (Sha1::new(), Sha256::new());
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset + done)?;
        sha1.update(&buf[..n]);
        sha256.update(&buf[..n]);
        done += n as u64;
    }
    Ok((hex::encode(sha1.finalize()), hex::encode(sha256.finalize())))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_plain_ascii_file_names() {
        for good in ["vm.ovf", "vm-disk001.vmdk", "a b.mf", &"x".repeat(100)] {
            assert!(check_member_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "é.ovf",
            "a\nb",
            &"x".repeat(101),
        ] {
            assert!(check_member_name(bad).is_err(), "{bad:?}");
        }
    }
}
