//! Reading guest files whatever holds them (an unmounted image through debugfs, or a
//! mounted directory), with symlinks followed the way the guest itself would: absolute
//! targets start at the guest root and `..` never climbs above it.

use std::fs;
use std::path::PathBuf;

/// Read access to a guest's files. Paths are absolute guest paths ("/etc/fstab").
/// `None` means absent, the wrong kind of file, or unreadable.
pub trait GuestFiles {
    /// The contents of a regular file, symlinks followed.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    /// The names in a directory (without `.` and `..`), symlinks followed.
    fn list_dir(&self, path: &str) -> Option<Vec<String>>;
    /// The target of the symlink `path` (its last component is not followed).
    fn readlink(&self, path: &str) -> Option<String>;
}

/// What one path names, its last component not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Dir,
    File,
    Symlink(String),
    Other,
}

/// Links followed before giving up, as the kernel's MAXSYMLINKS.
const MAX_LINK_HOPS: usize = 40;

/// Resolves `path` below the guest root. `node` says what a path names; it is only
/// asked about paths whose parents are real directories. With `follow_last` false, a
/// final symlink is returned as such. Returns the resolved path and what it names.
pub(super) fn resolve(
    path: &str,
    follow_last: bool,
    node: impl Fn(&str) -> Option<Node>,
) -> Option<(String, Node)> {
    let mut pending: Vec<String> = components(path).rev().collect(); // a stack
    let mut resolved: Vec<String> = Vec::new();
    let mut last = Node::Dir; // the root
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            last = Node::Dir;
            continue;
        }
        let candidate = join(&resolved, &name);
        match node(&candidate)? {
            Node::Symlink(target) if follow_last || !pending.is_empty() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return None;
                }
                if target.starts_with('/') {
                    resolved.clear();
                }
                last = Node::Dir;
                pending.extend(components(&target).rev());
            }
            found => {
                if found != Node::Dir && !pending.is_empty() {
                    return None; // a file used as a directory
                }
                resolved.push(name);
                last = found;
            }
        }
    }
    Some((join(&resolved, ""), last))
}

/// The meaningful components of a path: no empty ones, no `.`.
fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
}

fn join(dirs: &[String], name: &str) -> String {
    let mut path = String::from("/");
    for dir in dirs {
        path.push_str(dir);
        path.push('/');
    }
    path.push_str(name);
    if path.len() > 1 && name.is_empty() {
        path.pop();
    }
    path
}

/// A guest tree in a host directory (a mounted guest root, or a plain tree).
#[derive(Debug, Clone)]
pub struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirFiles { root: root.into() }
    }

    /// The host path of a guest path that holds no symlink before its last component.
    fn host_path(&self, guest: &str) -> PathBuf {
        self.root.join(guest.trim_start_matches('/'))
    }

    fn node(&self, guest: &str) -> Option<Node> {
        let host = self.host_path(guest);
        let meta = host.symlink_metadata().ok()?;
        let kind = meta.file_type();
        Some(if kind.is_symlink() {
            Node::Symlink(fs::read_link(&host).ok()?.to_str()?.to_string())
        } else if kind.is_dir() {
            Node::Dir
        } else if kind.is_file() {
            Node::File
        } else {
            Node::Other
        })
    }

    fn resolve(&self, path: &str, follow_last: bool) -> Option<(PathBuf, Node)> {
        let (resolved, node) = resolve(path, follow_last, |p| self.node(p))?;
        Some((self.host_path(&resolved), node))
    }
}

impl GuestFiles for DirFiles {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.resolve(path, true)? {
            (host, Node::File) => fs::read(host).ok(),
            _ => None,
        }
    }

    fn list_dir(&self, path: &str) -> Option<Vec<String>> {
        let (host, Node::Dir) = self.resolve(path, true)? else {
            return None;
        };
        let mut names: Vec<String> = fs::read_dir(host)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tree(entries: &[(&str, Node)]) -> HashMap<String, Node> {
        entries
            .iter()
            .map(|(p, n)| (p.to_string(), n.clone()))
            .collect()
    }

    #[test]
    fn follows_links_chroot_style() {
        let t = tree(&[
            ("/bin", Node::Symlink("usr/bin".into())),
            ("/usr", Node::Dir),
            ("/usr/bin", Node::Dir),
            ("/usr/bin/sh", Node::Symlink("dash".into())),
            ("/usr/bin/dash", Node::File),
            ("/etc", Node::Dir),
            ("/etc/escape", Node::Symlink("../../../usr/bin/dash".into())),
            ("/etc/abs", Node::Symlink("/bin/sh".into())),
            ("/etc/loop", Node::Symlink("/etc/loop".into())),
        ]);
        let node = |p: &str| t.get(p).cloned();
        let r = |p, follow| resolve(p, follow, node).map(|(path, _)| path);
        assert_eq!(r("/bin/sh", true).as_deref(), Some("/usr/bin/dash"));
        assert_eq!(r("/bin/sh", false).as_deref(), Some("/usr/bin/sh"));
        assert_eq!(r("/etc/escape", true).as_deref(), Some("/usr/bin/dash"));
        assert_eq!(r("/etc/abs", true).as_deref(), Some("/usr/bin/dash"));
        assert_eq!(
            r("/etc/./../etc/abs", true).as_deref(),
            Some("/usr/bin/dash")
        );
        assert_eq!(r("/", true).as_deref(), Some("/"));
        assert_eq!(r("/etc/loop", true), None);
        assert_eq!(r("/usr/bin/dash/x", true), None);
        assert_eq!(r("/nope", true), None);
    }
}
