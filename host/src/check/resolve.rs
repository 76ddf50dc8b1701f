//! Guest paths resolved inside the guest root, the way the guest itself (or GRUB,
//! reading the filesystem) would see them.
//!
//! Guest trees are full of absolute symlinks (`/vmlinuz -> /boot/vmlinuz-...`,
//! `/lib -> usr/lib`). Opened from the host, such a link would point into the
//! host's own `/`, so every component is resolved here by hand: absolute targets
//! restart at the guest root and `..` never climbs above it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Linux's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("guest path {path}: more than {MAX_SYMLINKS} symbolic links (a link loop?)")]
    Loop { path: String },
    #[error("guest path {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// A mounted (or unpacked) guest root directory on the host.
#[derive(Clone, Debug)]
pub struct GuestRoot {
    root: PathBuf,
}

impl GuestRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        GuestRoot { root: root.into() }
    }

    /// The host path of `guest_path` with every symlink resolved inside the root,
    /// or `None` when some component does not exist in the guest (a dangling
    /// link, a missing file, a file used as a directory).
    pub fn resolve(&self, guest_path: &str) -> Result<Option<PathBuf>, ResolveError> {
        let io_err = |source| ResolveError::Io {
            path: guest_path.to_owned(),
            source,
        };
        let mut current = self.root.clone();
        let mut depth = 0usize;
        // Components still to walk, the next one last.
        let mut pending = components_reversed(Path::new(guest_path));
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                if depth > 0 {
                    current.pop();
                    depth -= 1;
                }
                continue;
            }
            current.push(&name);
            let meta = match fs::symlink_metadata(&current) {
                Ok(meta) => meta,
                Err(e) if is_absent(&e) => return Ok(None),
                Err(e) => return Err(io_err(e)),
            };
            if !meta.file_type().is_symlink() {
                depth += 1;
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(ResolveError::Loop {
                    path: guest_path.to_owned(),
                });
            }
            let target = fs::read_link(&current).map_err(io_err)?;
            current.pop();
            if target.is_absolute() {
                current = self.root.clone();
                depth = 0;
            }
            pending.extend(components_reversed(&target));
        }
        Ok(Some(current))
    }

    /// The text of a guest file, or `None` when it does not exist. Bytes that are
    /// not UTF-8 (old Latin-1 comments) are replaced, not refused.
    pub fn read_text(&self, guest_path: &str) -> Result<Option<String>, ResolveError> {
        let Some(host) = self.resolve(guest_path)? else {
            return Ok(None);
        };
        ensure_regular_file(&host).map_err(|source| ResolveError::Io {
            path: guest_path.to_owned(),
            source,
        })?;
        match fs::read(&host) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if is_absent(&e) => Ok(None),
            Err(source) => Err(ResolveError::Io {
                path: guest_path.to_owned(),
                source,
            }),
        }
    }

    /// The entry names of a guest directory, sorted. Empty when the directory
    /// does not exist.
    pub fn list_dir(&self, guest_path: &str) -> Result<Vec<String>, ResolveError> {
        let io_err = |source| ResolveError::Io {
            path: guest_path.to_owned(),
            source,
        };
        let Some(host) = self.resolve(guest_path)? else {
            return Ok(Vec::new());
        };
        let dir = match fs::read_dir(&host) {
            Ok(dir) => dir,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io_err(e)),
        };
        let mut names = Vec::new();
        for entry in dir {
            names.push(
                entry
                    .map_err(io_err)?
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        names.sort();
        Ok(names)
    }

    /// The target of the symlink at `guest_path` itself (only its directory is
    /// resolved), or `None` when there is no symlink there.
    pub fn link_target(&self, guest_path: &str) -> Result<Option<PathBuf>, ResolveError> {
        let path = Path::new(guest_path);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(None);
        };
        let Some(dir) = self.resolve(&parent.to_string_lossy())? else {
            return Ok(None);
        };
        match fs::read_link(dir.join(name)) {
            Ok(target) => Ok(Some(target)),
            // InvalidInput: it exists but is not a symlink.
            Err(e) if is_absent(&e) || e.kind() == io::ErrorKind::InvalidInput => Ok(None),
            Err(source) => Err(ResolveError::Io {
                path: guest_path.to_owned(),
                source,
            }),
        }
    }

    /// True when the guest path exists (after resolving links).
    pub fn exists(&self, guest_path: &str) -> Result<bool, ResolveError> {
        Ok(self.resolve(guest_path)?.is_some())
    }
}

/// Guests hold device nodes and FIFOs (static /dev on old images); opening or
/// reading one could block or never end, so only regular files are read.
pub fn ensure_regular_file(host_path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(host_path)?.is_file() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// The normal and `..` components of `path`, last first (so `pop` walks it in order).
fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    names.reverse();
    names
}

/// Errors that mean "not there" for a lookup: missing, or a file used as a directory.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, GuestRoot) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/modules/6.1")).unwrap();
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::write(root.join("boot/vmlinuz-6.1"), b"kernel").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/boot/vmlinuz-6.1", root.join("vmlinuz")).unwrap();
        symlink(
            "../../../../boot/vmlinuz-6.1",
            root.join("usr/lib/modules/6.1/k"),
        )
        .unwrap();
        symlink("/loop-b", root.join("loop-a")).unwrap();
        symlink("/loop-a", root.join("loop-b")).unwrap();
        let guest = GuestRoot::new(root);
        (dir, guest)
    }

    #[test]
    fn absolute_and_relative_links_stay_inside_the_root() {
        let (dir, guest) = tree();
        let kernel = dir.path().join("boot/vmlinuz-6.1");
        assert_eq!(guest.resolve("/vmlinuz").unwrap(), Some(kernel.clone()));
        // `..` past the root is clamped there, as in the guest.
        assert_eq!(
            guest.resolve("/lib/modules/6.1/k").unwrap(),
            Some(kernel.clone())
        );
        assert_eq!(
            guest.resolve("/../../boot/./vmlinuz-6.1").unwrap(),
            Some(kernel)
        );
        assert_eq!(guest.resolve("/boot/missing").unwrap(), None);
        assert_eq!(guest.resolve("/boot/vmlinuz-6.1/x").unwrap(), None);
    }

    #[test]
    fn link_targets_are_read_not_followed() {
        let (_dir, guest) = tree();
        let target = guest.link_target("/boot/../vmlinuz").unwrap();
        assert_eq!(target, Some(PathBuf::from("/boot/vmlinuz-6.1")));
        // As in Linux, `..` after a link is taken from the link's target: /usr.
        assert_eq!(guest.link_target("/lib/../vmlinuz").unwrap(), None);
        assert_eq!(guest.link_target("/boot/vmlinuz-6.1").unwrap(), None);
        assert_eq!(guest.link_target("/boot/missing").unwrap(), None);
    }

    #[test]
    fn only_regular_files_are_read() {
        let (dir, guest) = tree();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("boot/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .expect("mkfifo");
        let err = guest.read_text("/boot/fifo").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(guest.read_text("/boot").is_err());
    }

    #[test]
    fn link_loops_are_an_error() {
        let (_dir, guest) = tree();
        assert!(matches!(
            guest.resolve("/loop-a"),
            Err(ResolveError::Loop { .. })
        ));
    }
}
