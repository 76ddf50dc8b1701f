//! Which distribution and architecture a guest is.

use serde::Serialize;

use super::files::GuestFiles;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// os-release style id: `debian`, `centos`, `rhel`, `ubuntu`...
    pub id: Option<String>,
    /// `12`, `5.11`, `22.04`...
    pub version: Option<String>,
    /// A human name, e.g. `CentOS release 5.11 (Final)`.
    pub pretty_name: Option<String>,
    /// The guest file the identity came from.
    pub source: Option<String>,
    /// From the ELF header of /bin/sh or /sbin/init: `x86_64`, `i386`, `aarch64`...
    pub arch: Option<String>,
}

pub(super) fn identify(files: &dyn GuestFiles) -> OsInfo {
    let mut info = from_os_release(files)
        .or_else(|| from_redhat_release(files))
        .or_else(|| from_debian_version(files))
        .unwrap_or_default();
    info.arch = ["/bin/sh", "/sbin/init"]
        .iter()
        .find_map(|p| elf_arch(&files.read(p)?));
    info
}

fn read_text(files: &dyn GuestFiles, path: &str) -> Option<String> {
    Some(String::from_utf8_lossy(&files.read(path)?).into_owned())
}

fn from_os_release(files: &dyn GuestFiles) -> Option<OsInfo> {
    let (source, text) = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| Some((*p, read_text(files, p)?)))?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(unquote)
            .filter(|v| !v.is_empty())
    };
    Some(OsInfo {
        id: value("ID"),
        version: value("VERSION_ID"),
        pretty_name: value("PRETTY_NAME").or_else(|| value("NAME")),
        source: Some(source.to_string()),
        arch: None,
    })
}

/// os-release values are shell words: optionally quoted, backslash escapes in "...".
fn unquote(value: &str) -> String {
    let value = value.trim();
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// "CentOS release 5.11 (Final)", "Red Hat Enterprise Linux Server release 6.10
/// (Santiago)", "CentOS Linux release 7.9.2009 (Core)".
fn from_redhat_release(files: &dyn GuestFiles) -> Option<OsInfo> {
    let source = "/etc/redhat-release";
    let text = read_text(files, source)?;
    let line = text.lines().next()?.trim();
    let (name, rest) = line.split_once(" release ")?;
    Some(OsInfo {
        id: Some(redhat_id(name)),
        version: rest.split_whitespace().next().map(str::to_string),
        pretty_name: Some(line.to_string()),
        source: Some(source.to_string()),
        arch: None,
    })
}

/// The os-release id of a Red Hat family product name.
fn redhat_id(name: &str) -> String {
    let lower = name.to_lowercase();
    let known = [
        ("centos", "centos"),
        ("red hat", "rhel"),
        ("fedora", "fedora"),
        ("scientific", "scientific"),
        ("oracle", "ol"),
        ("enterprise linux", "ol"),
        ("rocky", "rocky"),
        ("alma", "almalinux"),
    ];
    known
        .iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(_, id)| id.to_string())
        .unwrap_or_else(|| lower.split_whitespace().next().unwrap_or("").to_string())
}

fn from_debian_version(files: &dyn GuestFiles) -> Option<OsInfo> {
    let source = "/etc/debian_version";
    let version = read_text(files, source)?.trim().to_string();
    Some(OsInfo {
        id: Some("debian".to_string()),
        pretty_name: Some(format!("Debian GNU/Linux {version}")),
        version: Some(version),
        source: Some(source.to_string()),
        arch: None,
    })
}

/// The architecture named by an ELF header's e_machine.
fn elf_arch(elf: &[u8]) -> Option<String> {
    if elf.get(..4)? != b"\x7fELF" {
        return None;
    }
    let bytes = [*elf.get(18)?, *elf.get(19)?];
    let machine = match elf[5] {
        2 => u16::from_be_bytes(bytes),
        _ => u16::from_le_bytes(bytes),
    };
    let is_64 = elf[4] == 2;
    Some(match (machine, is_64) {
        (3, _) => "i386".to_string(),
        (62, _) => "x86_64".to_string(),
        (40, _) => "arm".to_string(),
        (183, _) => "aarch64".to_string(),
        (21, true) => "ppc64".to_string(),
        (22, true) => "s390x".to_string(),
        (243, true) => "riscv64".to_string(),
        (other, _) => format!("elf-machine-{other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values() {
        assert_eq!(
            unquote("\"Debian GNU/Linux 12 (bookworm)\""),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(unquote("'a b'"), "a b");
        assert_eq!(unquote("\"say \\\"hi\\\"\""), "say \"hi\"");
        assert_eq!(unquote("debian"), "debian");
    }

    #[test]
    fn redhat_names() {
        assert_eq!(redhat_id("CentOS"), "centos");
        assert_eq!(redhat_id("CentOS Linux"), "centos");
        assert_eq!(redhat_id("Red Hat Enterprise Linux Server"), "rhel");
        assert_eq!(redhat_id("Frobnix Linux"), "frobnix");
    }

    #[test]
    fn elf_machines() {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2;
        header[5] = 1;
        header[18] = 62;
        assert_eq!(elf_arch(&header).as_deref(), Some("x86_64"));
        header[4] = 1;
        header[18] = 3;
        assert_eq!(elf_arch(&header).as_deref(), Some("i386"));
        assert_eq!(elf_arch(b"#!/bin/sh\n"), None);
    }
}
