//! Traces of Xen (and of the cloud around it) that break or hang a guest booted
//! elsewhere: Xen disk names, Xen consoles, Xen driver aliases, metadata service calls.

use serde::Serialize;

use super::files::GuestFiles;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum XenIsmKind {
    /// A /dev/xvd* device in /etc/fstab: no such disk under KVM or VirtualBox.
    XvdDevice,
    /// A getty on the Xen console (hvc0, xvc0).
    XenConsole,
    /// A module alias to a Xen paravirtual driver (xenblk, xennet...).
    XenDriverAlias,
    /// A call to the cloud's metadata service or tools in rc.local: hangs off-cloud.
    MetadataCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XenIsm {
    pub kind: XenIsmKind,
    /// The guest file (for systemd and upstart consoles, the unit itself).
    pub file: String,
    /// 1-based line number, for findings inside a file.
    pub line: Option<usize>,
    /// The offending line, or the unit's link target.
    pub text: String,
}

const XEN_CONSOLES: &[&str] = &["hvc0", "xvc0"];
const XEN_DRIVERS: &[&str] = &[
    "xenblk",
    "xennet",
    "xen-blkfront",
    "xen-netfront",
    "xen_blkfront",
    "xen_netfront",
];
const METADATA_MARKERS: &[&str] = &["169.254.169.254", "ec2-", "euca-"];

pub(super) fn find(files: &dyn GuestFiles) -> Vec<XenIsm> {
    let mut found = Vec::new();
    scan(
        files,
        "/etc/fstab",
        XenIsmKind::XvdDevice,
        &mut found,
        |line| {
            line.split_whitespace()
                .next()
                .is_some_and(|device| device.starts_with("/dev/xvd"))
        },
    );
    scan(
        files,
        "/etc/inittab",
        XenIsmKind::XenConsole,
        &mut found,
        |line| {
            line.split(|c: char| c == ':' || c.is_whitespace())
                .any(|word| XEN_CONSOLES.contains(&word))
        },
    );
    upstart_consoles(files, &mut found);
    systemd_consoles(files, &mut found);
    for file in modprobe_files(files) {
        scan(
            files,
            &file,
            XenIsmKind::XenDriverAlias,
            &mut found,
            |line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.len() >= 3 && words[0] == "alias" && XEN_DRIVERS.contains(&words[2])
            },
        );
    }
    let metadata = |line: &str| METADATA_MARKERS.iter().any(|m| line.contains(m));
    scan(
        files,
        "/etc/rc.local",
        XenIsmKind::MetadataCall,
        &mut found,
        metadata,
    );
    // Red Hat keeps the real file here and /etc/rc.local links to it.
    if files.read("/etc/rc.d/rc.local") != files.read("/etc/rc.local") {
        scan(
            files,
            "/etc/rc.d/rc.local",
            XenIsmKind::MetadataCall,
            &mut found,
            metadata,
        );
    }
    found
}

/// Adds a finding for each non-comment line of `path` that `matches`.
fn scan(
    files: &dyn GuestFiles,
    path: &str,
    kind: XenIsmKind,
    found: &mut Vec<XenIsm>,
    matches: impl Fn(&str) -> bool,
) {
    let Some(bytes) = files.read(path) else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || !matches(trimmed) {
            continue;
        }
        found.push(XenIsm {
            kind,
            file: path.to_string(),
            line: Some(index + 1),
            text: trimmed.to_string(),
        });
    }
}

/// /etc/modprobe.conf (Red Hat 5) and every file of /etc/modprobe.d.
fn modprobe_files(files: &dyn GuestFiles) -> Vec<String> {
    let mut paths = vec!["/etc/modprobe.conf".to_string()];
    if let Some(names) = files.list_dir("/etc/modprobe.d") {
        paths.extend(names.iter().map(|n| format!("/etc/modprobe.d/{n}")));
    }
    paths
}

/// Ubuntu's upstart runs a getty from /etc/init/hvc0.conf on Xen.
fn upstart_consoles(files: &dyn GuestFiles, found: &mut Vec<XenIsm>) {
    for console in XEN_CONSOLES {
        let path = format!("/etc/init/{console}.conf");
        if files.read(&path).is_some() {
            found.push(XenIsm {
                kind: XenIsmKind::XenConsole,
                file: path,
                line: None,
                text: format!("upstart job for a getty on {console}"),
            });
        }
    }
}

/// Enabled getty units on a Xen console: links such as
/// /etc/systemd/system/getty.target.wants/serial-getty@hvc0.service.
fn systemd_consoles(files: &dyn GuestFiles, found: &mut Vec<XenIsm>) {
    let base = "/etc/systemd/system";
    let Some(entries) = files.list_dir(base) else {
        return;
    };
    for wants in entries.iter().filter(|e| e.ends_with(".wants")) {
        let dir = format!("{base}/{wants}");
        for unit in files.list_dir(&dir).unwrap_or_default() {
            let on_xen_console = XEN_CONSOLES
                .iter()
                .any(|c| unit.ends_with(&format!("getty@{c}.service")));
            if on_xen_console {
                let file = format!("{dir}/{unit}");
                found.push(XenIsm {
                    kind: XenIsmKind::XenConsole,
                    text: files.readlink(&file).unwrap_or_else(|| unit.clone()),
                    file,
                    line: None,
                });
            }
        }
    }
}
