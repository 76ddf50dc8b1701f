//! Kernels, initrds and bootloader configurations in a guest's /boot.

use serde::Serialize;

use super::files::GuestFiles;

/// A kernel image in /boot and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// e.g. `6.1.0-18-cloud-amd64`, `2.6.18-348.el5xen`.
    pub version: String,
    /// Guest path of the image, e.g. `/boot/vmlinuz-6.1.0-18-cloud-amd64`.
    pub image: String,
    /// Guest path of the matching initrd, if there is one.
    pub initrd: Option<String>,
    /// Built to run only as a Xen guest (see [`xen_only`]).
    pub xen_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootloaderKind {
    GrubLegacy,
    Grub2,
    Extlinux,
}

/// A bootloader configuration found in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bootloader {
    pub kind: BootloaderKind,
    pub path: String,
}

/// Image name prefixes; the rest of the name is the kernel version.
const KERNEL_PREFIXES: &[&str] = &["vmlinuz-", "vmlinux-"];

pub(super) fn kernels(files: &dyn GuestFiles) -> Vec<Kernel> {
    let Some(names) = files.list_dir("/boot") else {
        return Vec::new();
    };
    let mut kernels: Vec<Kernel> = names
        .iter()
        .filter_map(|name| {
            let version = KERNEL_PREFIXES.iter().find_map(|p| name.strip_prefix(p))?;
            let initrd = initrd_names(version)
                .into_iter()
                .find(|candidate| names.contains(candidate))
                .map(|found| format!("/boot/{found}"));
            Some(Kernel {
                version: version.to_string(),
                image: format!("/boot/{name}"),
                initrd,
                xen_only: xen_only(files, version),
            })
        })
        .collect();
    kernels.sort_by(|a, b| a.version.cmp(&b.version));
    kernels
}

/// Debian/Ubuntu, Red Hat 5-6, Red Hat 6+/Fedora, SUSE.
fn initrd_names(version: &str) -> [String; 4] {
    [
        format!("initrd.img-{version}"),
        format!("initrd-{version}.img"),
        format!("initramfs-{version}.img"),
        format!("initrd-{version}"),
    ]
}

/// Whether a kernel can only run as a Xen guest. The rule, kept simple:
/// - its version ends in `xen` (Red Hat 5's `el5xen`, SUSE's `-xen` flavours): these
///   are "xenified" kernels that do not boot on bare hardware or KVM; or
/// - its /boot/config-VERSION has `CONFIG_XEN=y` but neither `CONFIG_ATA` nor
///   `CONFIG_SATA_AHCI` (built in or as module): a kernel built for Xen with no
///   driver for the SATA disk a VM gives it.
///
/// Modern pv-ops kernels have CONFIG_XEN=y alongside native drivers, so they pass.
fn xen_only(files: &dyn GuestFiles, version: &str) -> bool {
    if version.ends_with("xen") {
        return true;
    }
    let Some(config) = files.read(&format!("/boot/config-{version}")) else {
        return false;
    };
    let config = String::from_utf8_lossy(&config);
    let set = |option: &str| {
        config.lines().any(|l| {
            l.strip_prefix(option)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| v == "y" || v == "m")
        })
    };
    set("CONFIG_XEN") && !set("CONFIG_ATA") && !set("CONFIG_SATA_AHCI")
}

const BOOTLOADER_CONFIGS: &[(&str, BootloaderKind)] = &[
    ("/boot/grub/grub.conf", BootloaderKind::GrubLegacy),
    ("/boot/grub/menu.lst", BootloaderKind::GrubLegacy),
    ("/boot/grub/grub.cfg", BootloaderKind::Grub2),
    ("/boot/grub2/grub.cfg", BootloaderKind::Grub2),
];

pub(super) fn bootloaders(files: &dyn GuestFiles) -> Vec<Bootloader> {
    let mut found: Vec<Bootloader> = BOOTLOADER_CONFIGS
        .iter()
        .filter(|(path, _)| files.read(path).is_some())
        .map(|(path, kind)| Bootloader {
            kind: *kind,
            path: path.to_string(),
        })
        .collect();
    // extlinux keeps its config (and itself) in a directory.
    if files.list_dir("/boot/extlinux").is_some() {
        found.push(Bootloader {
            kind: BootloaderKind::Extlinux,
            path: "/boot/extlinux".to_string(),
        });
    }
    found
}
