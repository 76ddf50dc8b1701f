//! Safe access to a guest root tree from the host.
//!
//! Guest trees are full of absolute symlinks (`/etc/localtime`, alternatives,
//! `/vmlinuz`) that must resolve inside the guest, never on the host. Every path is
//! resolved chroot-style with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! below the root directory's file descriptor, so neither `..` nor an absolute link
//! can escape it. Operations on a path's last component (lstat, remove, rename,
//! symlink, readlink) open the parent that way and act on the name with the `*at`
//! calls, never following it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{
    fchmod, fchown, fstat, mkdirat, openat2, readlinkat, renameat, statat, symlinkat, unlinkat,
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Uid,
};
use rustix::io::Errno;

/// A guest-absolute path that passed validation: starts with `/`, no `..`, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPath(String);

/// Why a guest path was refused before touching the disk.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("guest path {0:?} is not absolute (guest paths start with '/')")]
    NotAbsolute(String),
    #[error("guest path {0:?} contains '..' (path traversal is refused)")]
    Traversal(String),
    #[error("guest path {0:?} contains a NUL byte")]
    Nul(String),
}

impl GuestPath {
    /// Validates and normalises (`//` and `.` collapsed, no trailing `/`).
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.contains('\0') {
            return Err(PathError::Nul(path.into()));
        }
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute(path.into()));
        }
        let mut out = String::with_capacity(path.len());
        for comp in path.split('/') {
            match comp {
                "" | "." => {}
                ".." => return Err(PathError::Traversal(path.into())),
                c => {
                    out.push('/');
                    out.push_str(c);
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The parent directory and the last component ("/" has neither).
    fn split(&self) -> Option<(&str, &str)> {
        if self.is_root() {
            return None;
        }
        let idx = self.0.rfind('/').unwrap_or(0);
        let parent = if idx == 0 { "/" } else { &self.0[..idx] };
        Some((parent, &self.0[idx + 1..]))
    }

    /// Relative form for the `*at` calls below the root fd.
    fn relative(&self) -> &str {
        if self.is_root() {
            "."
        } else {
            &self.0[1..]
        }
    }
}

impl std::fmt::Display for GuestPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a file is, as seen by lstat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Other,
}

/// lstat of a guest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub link_target: Option<String>,
}

/// Mode and ownership for a write; `None` keeps the existing file's value.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The guest root: a directory fd every path is resolved below.
#[derive(Debug)]
pub struct GuestRoot {
    dir: OwnedFd,
    host_path: PathBuf,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl GuestRoot {
    /// Opens the directory that is the guest's `/`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let host_path = path.canonicalize()?;
        let dir = rustix::fs::open(
            &host_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { dir, host_path })
    }

    /// Where the guest root is on the host (for commands run inside the guest).
    pub fn host_path(&self) -> &Path {
        &self.host_path
    }

    fn open_in_root(&self, path: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let rel = if path == "/" {
            "."
        } else {
            path.trim_start_matches('/')
        };
        loop {
            match openat2(&self.dir, rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
                // openat2 asks callers to retry when a rename raced the lookup.
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                other => return other.map_err(Into::into),
            }
        }
    }

    fn parent_dir(&self, path: &GuestPath) -> io::Result<(OwnedFd, String)> {
        let (parent, name) = path
            .split()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the guest root itself"))?;
        let fd = self.open_in_root(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((fd, name.to_owned()))
    }

    /// The guest path a host fd refers to, from /proc/self/fd (the kernel's own
    /// resolution, so grant checks see where a symlink really led).
    fn guest_path_of(&self, fd: &OwnedFd) -> io::Result<GuestPath> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        let rel = link.strip_prefix(&self.host_path).map_err(|_| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "resolved outside the guest root",
            )
        })?;
        let s = format!("/{}", rel.to_string_lossy());
        GuestPath::parse(&s).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// Where `path` really is inside the guest once every symlink is followed
    /// (for a missing last component: its resolved parent plus the name). Grant
    /// checks use this as well as the requested path.
    pub fn resolve(&self, path: &GuestPath) -> io::Result<GuestPath> {
        match self.open_in_root(path.as_str(), OFlags::PATH, Mode::empty()) {
            Ok(fd) => self.guest_path_of(&fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !path.is_root() => {
                let (dir, name) = self.parent_dir(path)?;
                let parent = self.guest_path_of(&dir)?;
                let parent = parent.as_str().trim_end_matches('/');
                // A dangling symlink as last component: report where it points.
                let joined = match readlinkat(&dir, name.as_str(), Vec::new()) {
                    Ok(target) => {
                        let target = target.to_string_lossy().into_owned();
                        if target.starts_with('/') {
                            target
                        } else {
                            format!("{parent}/{target}")
                        }
                    }
                    Err(_) => format!("{parent}/{name}"),
                };
                GuestPath::parse(&joined)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Where `path` is once its parent directories are resolved, its last component
    /// not followed: the object that remove, rename, lstat and readlink act on.
    pub fn resolve_parent(&self, path: &GuestPath) -> io::Result<GuestPath> {
        let Some((_, name)) = path.split() else {
            return Ok(path.clone());
        };
        let (dir, _) = self.parent_dir(path)?;
        let parent = self.guest_path_of(&dir)?;
        let joined = format!("{}/{}", parent.as_str().trim_end_matches('/'), name);
        GuestPath::parse(&joined)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// Whole file contents, following symlinks inside the guest.
    pub fn read(&self, path: &GuestPath) -> io::Result<Vec<u8>> {
        let mut file = self.open_file(path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// A regular file opened for reading, following symlinks inside the guest.
    /// Anything else is refused before a read: a FIFO or device planted in the
    /// guest would otherwise block the host (O_NONBLOCK keeps the open itself
    /// from blocking on a FIFO).
    pub fn open_file(&self, path: &GuestPath) -> io::Result<File> {
        let fd = self.open_in_root(
            path.as_str(),
            OFlags::RDONLY | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// Atomically replaces (or creates) a file: a temporary file beside it, then a
    /// rename, so a crash never leaves a half-written config in the guest. A symlink
    /// is followed and its target replaced, as editors do.
    pub fn write(&self, path: &GuestPath, data: &[u8], opts: WriteOptions) -> io::Result<()> {
        let real = self.resolve(path)?;
        let (dir, name) = self.parent_dir(&real)?;
        let dir = reopen_dir(&dir)?;
        let existing = match statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(e.into()),
        };
        let mode = opts
            .mode
            .or(existing.as_ref().map(|s| s.st_mode & 0o7777))
            .unwrap_or(0o644);
        let uid = opts
            .uid
            .or(existing.as_ref().map(|s| s.st_uid))
            .unwrap_or(0);
        let gid = opts
            .gid
            .or(existing.as_ref().map(|s| s.st_gid))
            .unwrap_or(0);

        let tmp = format!(
            ".{name}.rehost-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fd = rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let result = (|| -> io::Result<()> {
            let mut file = File::from(fd.try_clone()?);
            file.write_all(data)?;
            // chown before chmod: chown clears set-id bits.
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
            fchmod(&fd, Mode::from_raw_mode(mode))?;
            file.sync_data()?;
            renameat(&dir, tmp.as_str(), &dir, name.as_str())?;
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// lstat: a symlink is reported as a symlink with its target text.
    pub fn lstat(&self, path: &GuestPath) -> io::Result<Metadata> {
        let (st, link_target) = if path.is_root() {
            (fstat(&self.dir)?, None)
        } else {
            let (dir, name) = self.parent_dir(path)?;
            let st = statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            let target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                Some(
                    readlinkat(&dir, name.as_str(), Vec::new())?
                        .to_string_lossy()
                        .into_owned(),
                )
            } else {
                None
            };
            (st, target)
        };
        Ok(metadata(&st, link_target))
    }

    /// True when the path exists (a dangling symlink exists).
    pub fn exists(&self, path: &GuestPath) -> io::Result<bool> {
        match self.lstat(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Entry names, sorted, without `.` and `..`.
    pub fn list_dir(&self, path: &GuestPath) -> io::Result<Vec<String>> {
        let fd = self.open_in_root(
            path.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Creates the directory and any missing parents (each resolved inside the root).
    pub fn mkdir_p(&self, path: &GuestPath, mode: u32) -> io::Result<()> {
        let mut current = String::new();
        for comp in path.as_str().split('/').filter(|c| !c.is_empty()) {
            let parent = if current.is_empty() {
                "/".to_owned()
            } else {
                current.clone()
            };
            current.push('/');
            current.push_str(comp);
            match self.open_in_root(&current, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let dir = self.open_in_root(
                        &parent,
                        OFlags::PATH | OFlags::DIRECTORY,
                        Mode::empty(),
                    )?;
                    match mkdirat(&dir, comp, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes a file, symlink or empty directory (the link itself, never its target).
    pub fn remove(&self, path: &GuestPath) -> io::Result<()> {
        let (dir, name) = self.parent_dir(path)?;
        match unlinkat(&dir, name.as_str(), AtFlags::empty()) {
            Err(Errno::ISDIR) => {
                unlinkat(&dir, name.as_str(), AtFlags::REMOVEDIR).map_err(Into::into)
            }
            other => other.map_err(Into::into),
        }
    }

    pub fn rename(&self, from: &GuestPath, to: &GuestPath) -> io::Result<()> {
        let (from_dir, from_name) = self.parent_dir(from)?;
        let (to_dir, to_name) = self.parent_dir(to)?;
        renameat(&from_dir, from_name.as_str(), &to_dir, to_name.as_str()).map_err(Into::into)
    }

    /// Creates `link` holding the text `target` (not resolved: it is the guest's own).
    pub fn symlink(&self, target: &str, link: &GuestPath) -> io::Result<()> {
        let (dir, name) = self.parent_dir(link)?;
        symlinkat(target, &dir, name.as_str()).map_err(Into::into)
    }

    pub fn readlink(&self, path: &GuestPath) -> io::Result<String> {
        let (dir, name) = self.parent_dir(path)?;
        Ok(readlinkat(&dir, name.as_str(), Vec::new())?
            .to_string_lossy()
            .into_owned())
    }

    /// chmod, following symlinks inside the guest.
    pub fn chmod(&self, path: &GuestPath, mode: u32) -> io::Result<()> {
        let fd = self.open_in_root(path.as_str(), OFlags::PATH, Mode::empty())?;
        // fchmod refuses O_PATH fds; the /proc link of our own fd is the usual way.
        rustix::fs::chmod(
            format!("/proc/self/fd/{}", fd.as_raw_fd()),
            Mode::from_raw_mode(mode),
        )
        .map_err(Into::into)
    }

    /// chown, following symlinks inside the guest.
    pub fn chown(&self, path: &GuestPath, uid: u32, gid: u32) -> io::Result<()> {
        let fd = self.open_in_root(path.as_str(), OFlags::PATH, Mode::empty())?;
        rustix::fs::chownat(
            &fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )
        .map_err(Into::into)
    }

    /// Host path of a guest path's resolved location, for tools that need one
    /// (commands run by the host itself, never by plugins).
    pub fn host_path_of(&self, path: &GuestPath) -> io::Result<PathBuf> {
        let real = self.resolve(path)?;
        Ok(self
            .host_path
            .join(OsStr::from_bytes(real.relative().as_bytes())))
    }
}

/// Re-opens an O_PATH directory fd so it can be used for creating files in it.
fn reopen_dir(dir: &OwnedFd) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Into::into)
}

fn metadata(st: &Stat, link_target: Option<String>) -> Metadata {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Directory,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    Metadata {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        link_target,
    }
}

impl AsFd for GuestRoot {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn p(s: &str) -> GuestPath {
        GuestPath::parse(s).unwrap()
    }

    fn guest() -> (tempfile::TempDir, GuestRoot) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/fstab"),
            "/dev/xvda1 / ext4 defaults 0 1\n",
        )
        .unwrap();
        let root = GuestRoot::open(tmp.path()).unwrap();
        (tmp, root)
    }

    #[test]
    fn paths_are_validated() {
        assert_eq!(p("//etc/./fstab").as_str(), "/etc/fstab");
        assert_eq!(p("/").as_str(), "/");
        assert!(matches!(
            GuestPath::parse("../../etc/passwd"),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            GuestPath::parse("/etc/../../passwd"),
            Err(PathError::Traversal(_))
        ));
        assert!(matches!(GuestPath::parse("/etc\0"), Err(PathError::Nul(_))));
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_guest() {
        let (tmp, root) = guest();
        let host_secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host_secret.path(), "host secret").unwrap();
        symlink(host_secret.path(), tmp.path().join("etc/evil")).unwrap();
        // The host file must never be reached through the guest's link.
        let err = root.read(&p("/etc/evil")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // Links to guest files work as the guest sees them.
        symlink("/etc/fstab", tmp.path().join("etc/fstab.link")).unwrap();
        assert!(root
            .read(&p("/etc/fstab.link"))
            .unwrap()
            .starts_with(b"/dev/xvda1"));
        assert_eq!(
            root.resolve(&p("/etc/fstab.link")).unwrap(),
            p("/etc/fstab")
        );
        // A relative link climbing above / is clamped at the guest root.
        symlink("../../../../etc/fstab", tmp.path().join("etc/up")).unwrap();
        assert_eq!(root.resolve(&p("/etc/up")).unwrap(), p("/etc/fstab"));
    }

    #[test]
    fn write_is_atomic_and_keeps_mode_and_owner() {
        let (tmp, root) = guest();
        let host = tmp.path().join("etc/fstab");
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&host, Some(12), Some(34)).unwrap();
        root.write(&p("/etc/fstab"), b"new\n", WriteOptions::default())
            .unwrap();
        let md = std::fs::metadata(&host).unwrap();
        assert_eq!(std::fs::read(&host).unwrap(), b"new\n");
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o600, 12, 34));
        root.write(
            &p("/etc/new"),
            b"x",
            WriteOptions {
                mode: Some(0o755),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(tmp.path().join("etc/new"))
                .unwrap()
                .mode()
                & 0o7777,
            0o755
        );
        // No temporary files are left beside it.
        assert_eq!(root.list_dir(&p("/etc")).unwrap(), vec!["fstab", "new"]);
    }

    #[test]
    fn write_through_a_symlink_replaces_its_target() {
        let (tmp, root) = guest();
        symlink("/etc/fstab", tmp.path().join("etc/link")).unwrap();
        root.write(&p("/etc/link"), b"via link", WriteOptions::default())
            .unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join("etc/fstab")).unwrap(),
            b"via link"
        );
        assert!(root.lstat(&p("/etc/link")).unwrap().kind == Kind::Symlink);
    }

    #[test]
    fn tree_operations() {
        let (tmp, root) = guest();
        root.mkdir_p(&p("/a/b/c"), 0o755).unwrap();
        assert!(tmp.path().join("a/b/c").is_dir());
        root.symlink("/a/b", &p("/lnk")).unwrap();
        assert_eq!(root.readlink(&p("/lnk")).unwrap(), "/a/b");
        let st = root.lstat(&p("/lnk")).unwrap();
        assert_eq!(
            (st.kind, st.link_target.as_deref()),
            (Kind::Symlink, Some("/a/b"))
        );
        // mkdir -p through an absolute symlink stays inside the guest.
        root.mkdir_p(&p("/lnk/d"), 0o700).unwrap();
        assert!(tmp.path().join("a/b/d").is_dir());
        root.rename(&p("/etc/fstab"), &p("/a/fstab")).unwrap();
        assert!(!root.exists(&p("/etc/fstab")).unwrap());
        root.chmod(&p("/a/fstab"), 0o640).unwrap();
        root.chown(&p("/a/fstab"), 5, 6).unwrap();
        let st = root.lstat(&p("/a/fstab")).unwrap();
        assert_eq!((st.mode, st.uid, st.gid), (0o640, 5, 6));
        root.remove(&p("/lnk")).unwrap();
        assert!(
            tmp.path().join("a/b").is_dir(),
            "remove must not follow the link"
        );
        root.remove(&p("/a/b/d")).unwrap();
        assert!(!tmp.path().join("a/b/d").exists());
        assert_eq!(root.lstat(&p("/")).unwrap().kind, Kind::Directory);
    }
}
