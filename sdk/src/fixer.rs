//! The fixer side of the SDK: the [`Fixer`] trait, the [`Guest`] a fixer edits, and
//! a native [`DirGuest`] so fixer logic is unit-tested without building a component.

use crate::bindings::fixer::rehost::plugin::{guest_exec, guest_fs, log};
use crate::{BootEntry, Error, Result};

pub use crate::bindings::fixer::rehost::plugin::fixer_types::{FixContext, FixReport, NewRoot};
pub use crate::bindings::fixer::rehost::plugin::guest_fs::{FileKind, FileStat, WriteOptions};
pub use crate::TargetHardware;

/// What a command run inside the guest returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// The guest as a fixer sees it: files below the guest root and commands inside it.
/// Paths are guest-absolute; the host checks every one against the plugin's grants.
pub trait Guest {
    fn read(&self, path: &str) -> Result<Vec<u8>>;
    fn write(&self, path: &str, data: &[u8], options: WriteOptions) -> Result<()>;
    fn stat(&self, path: &str) -> Result<FileStat>;
    fn exists(&self, path: &str) -> Result<bool>;
    fn list_dir(&self, path: &str) -> Result<Vec<String>>;
    fn mkdir_p(&self, path: &str, mode: u32) -> Result<()>;
    fn remove(&self, path: &str) -> Result<()>;
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    fn symlink(&self, target: &str, link: &str) -> Result<()>;
    fn readlink(&self, path: &str) -> Result<String>;
    fn chmod(&self, path: &str, mode: u32) -> Result<()>;
    fn chown(&self, path: &str, uid: u32, gid: u32) -> Result<()>;
    /// Names of the kernel modules packed in the initramfs at `path` (`virtio_blk`,
    /// `-` written `_`), read and decompressed by the host.
    fn initrd_modules(&self, path: &str) -> Result<Vec<String>>;
    /// Runs argv inside the guest (argv[0] must be granted).
    fn run(&self, argv: &[&str], env: &[(&str, &str)], timeout_secs: u32) -> Result<Output>;

    /// The file as UTF-8 (lossy: config files with stray bytes still edit).
    fn read_string(&self, path: &str) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.read(path)?).into_owned())
    }

    /// Replaces a file's text, keeping its mode and owner.
    fn write_string(&self, path: &str, text: &str) -> Result<()> {
        self.write(
            path,
            text.as_bytes(),
            WriteOptions {
                mode: None,
                uid: None,
                gid: None,
            },
        )
    }

    /// Reads a file if it exists.
    fn read_optional(&self, path: &str) -> Result<Option<String>> {
        if self.exists(path)? {
            self.read_string(path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Applies `edit` to a file's text and writes it back only if it changed.
    /// Returns whether it changed.
    fn edit(&self, path: &str, edit: &mut dyn FnMut(&str) -> Result<String>) -> Result<bool> {
        let before = self.read_string(path)?;
        let after = edit(&before)?;
        if after == before {
            return Ok(false);
        }
        self.write_string(path, &after)?;
        Ok(true)
    }

    /// Runs a command and fails with its stderr when it exits non-zero.
    fn run_checked(&self, argv: &[&str]) -> Result<Output> {
        let out = self.run(argv, &[], 0)?;
        if !out.success() {
            return Err(Error::Failed(format!(
                "`{}` exited with status {}: {}",
                argv.join(" "),
                out.status,
                out.stderr.trim()
            )));
        }
        Ok(out)
    }
}

/// What a fixer reports back: changes, warnings and the boot entries it wants.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
    pub boot_entries: Vec<BootEntry>,
}

impl Report {
    pub fn changed(&mut self, what: impl Into<String>) {
        let what = what.into();
        info(&what);
        self.changes.push(what);
    }

    pub fn warn(&mut self, what: impl Into<String>) {
        let what = what.into();
        warn(&what);
        self.warnings.push(what);
    }

    pub fn boot(&mut self, entry: BootEntry) {
        self.boot_entries.push(entry);
    }
}

/// A guest fixer.
pub trait Fixer {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()>;
}

/// Runs a fixer against the host's guest (used by [`crate::export_fixer!`]).
#[doc(hidden)]
pub fn run<F: Fixer>(root: guest_fs::Root, ctx: FixContext) -> Result<FixReport> {
    let guest = WitGuest { root };
    let mut report = Report::default();
    F::fix(&guest, &ctx, &mut report)?;
    Ok(FixReport {
        changes: report.changes,
        warnings: report.warnings,
        boot_entries: report.boot_entries,
    })
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

/// The host's guest, through the WIT imports.
struct WitGuest {
    root: guest_fs::Root,
}

impl Guest for WitGuest {
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.root.read(path)
    }
    fn write(&self, path: &str, data: &[u8], options: WriteOptions) -> Result<()> {
        self.root.write(path, data, options)
    }
    fn stat(&self, path: &str) -> Result<FileStat> {
        self.root.stat(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.root.exists(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        self.root.list_dir(path)
    }
    fn mkdir_p(&self, path: &str, mode: u32) -> Result<()> {
        self.root.mkdir_p(path, mode)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.root.remove(path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.root.rename(from, to)
    }
    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        self.root.symlink(target, link)
    }
    fn readlink(&self, path: &str) -> Result<String> {
        self.root.readlink(path)
    }
    fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        self.root.chmod(path, mode)
    }
    fn chown(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.root.chown(path, uid, gid)
    }
    fn initrd_modules(&self, path: &str) -> Result<Vec<String>> {
        self.root.initrd_modules(path)
    }
    fn run(&self, argv: &[&str], env: &[(&str, &str)], timeout_secs: u32) -> Result<Output> {
        let out = guest_exec::run(&guest_exec::ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stdin: None,
            timeout_secs,
        })?;
        Ok(Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A guest that is a plain host directory, for native unit tests of fixer logic.
/// Commands are recorded, not run, and answer with `command_output`.
#[cfg(not(target_arch = "wasm32"))]
pub struct DirGuest {
    root: std::path::PathBuf,
    pub commands: std::cell::RefCell<Vec<Vec<String>>>,
    pub command_output: Output,
}

#[cfg(not(target_arch = "wasm32"))]
impl DirGuest {
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Self {
            root: root.into(),
            commands: Default::default(),
            command_output: Output {
                status: 0,
                stdout: String::new(),
                stderr: String::new(),
            },
        }
    }

    /// Host path of a guest path. Test trees are trusted, so no chroot resolution.
    fn host(&self, path: &str) -> std::path::PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn io_err(path: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(path.to_string()),
        _ => Error::Io(format!("{path}: {e}")),
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Guest for DirGuest {
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        std::fs::read(self.host(path)).map_err(|e| io_err(path, e))
    }
    fn write(&self, path: &str, data: &[u8], options: WriteOptions) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let host = self.host(path);
        std::fs::write(&host, data).map_err(|e| io_err(path, e))?;
        if let Some(mode) = options.mode {
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_err(path, e))?;
        }
        Ok(())
    }
    fn stat(&self, path: &str) -> Result<FileStat> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::symlink_metadata(self.host(path)).map_err(|e| io_err(path, e))?;
        let kind = if md.is_symlink() {
            FileKind::Symlink
        } else if md.is_dir() {
            FileKind::Directory
        } else if md.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        let link_target = md
            .is_symlink()
            .then(|| std::fs::read_link(self.host(path)).ok())
            .flatten()
            .map(|p| p.to_string_lossy().into_owned());
        Ok(FileStat {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            link_target,
        })
    }
    fn exists(&self, path: &str) -> Result<bool> {
        Ok(std::fs::symlink_metadata(self.host(path)).is_ok())
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.host(path))
            .map_err(|e| io_err(path, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }
    fn mkdir_p(&self, path: &str, _mode: u32) -> Result<()> {
        std::fs::create_dir_all(self.host(path)).map_err(|e| io_err(path, e))
    }
    fn remove(&self, path: &str) -> Result<()> {
        let host = self.host(path);
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.is_dir() => std::fs::remove_dir(&host),
            _ => std::fs::remove_file(&host),
        }
        .map_err(|e| io_err(path, e))
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        std::fs::rename(self.host(from), self.host(to)).map_err(|e| io_err(from, e))
    }
    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        std::os::unix::fs::symlink(target, self.host(link)).map_err(|e| io_err(link, e))
    }
    fn readlink(&self, path: &str) -> Result<String> {
        std::fs::read_link(self.host(path))
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| io_err(path, e))
    }
    fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.host(path), std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(path, e))
    }
    fn chown(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        std::os::unix::fs::chown(self.host(path), Some(uid), Some(gid)).map_err(|e| io_err(path, e))
    }
    /// Test trees hold uncompressed cpio initrds (see [`crate::testing::newc_archive`]):
    /// the decompressors live in the host.
    fn initrd_modules(&self, path: &str) -> Result<Vec<String>> {
        let data = self.read(path)?;
        let members =
            crate::testing::newc_members(&data).map_err(|e| Error::Io(format!("{path}: {e}")))?;
        let names: std::collections::BTreeSet<String> = members
            .iter()
            .filter_map(|m| crate::files::kmod::module_name(m))
            .collect();
        Ok(names.into_iter().collect())
    }
    fn run(&self, argv: &[&str], _env: &[(&str, &str)], _timeout_secs: u32) -> Result<Output> {
        self.commands
            .borrow_mut()
            .push(argv.iter().map(|s| s.to_string()).collect());
        Ok(self.command_output.clone())
    }
}

/// The fixer's table from the pipeline file, parsed into its own config type
/// (defaults when the table is absent).
pub fn config<T: serde::de::DeserializeOwned + Default>(ctx: &FixContext) -> Result<T> {
    crate::config::parse("fixer config", &ctx.config).map_err(Error::Invalid)
}
