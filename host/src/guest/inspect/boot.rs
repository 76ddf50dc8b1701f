//! Kernels, initrds and bootloader configurations in a guest's /boot.

use std::cmp::Ordering;

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

/// The kernels in /boot, oldest first.
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
    kernels.sort_by(|a, b| version_order(&a.version, &b.version));
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

/// Disk drivers of the machines rehost targets (VirtualBox and KVM: AHCI, PIIX IDE,
/// virtio; NVMe), built in or as modules.
const NATIVE_DISK_DRIVERS: &[&str] = &[
    "CONFIG_SATA_AHCI",
    "CONFIG_ATA_PIIX",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_BLK_DEV_NVME",
];

/// Whether a kernel can only run as a Xen guest. The rule, kept simple:
/// - its version ends in `xen` (Red Hat 5's `el5xen`, SUSE's `-xen` flavours): these
///   are "xenified" kernels that do not boot on bare hardware or KVM; or
/// - its /boot/config-VERSION has `CONFIG_XEN=y` and none of the
///   [`NATIVE_DISK_DRIVERS`]: it could not find its root disk anywhere but on Xen.
///
/// Modern pv-ops kernels have CONFIG_XEN=y alongside native drivers, so they pass
/// (Debian's cloud kernel, say, has virtio but no AHCI: it is not Xen-only, though it
/// still cannot boot from VirtualBox's SATA disk).
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
    set("CONFIG_XEN") && !NATIVE_DISK_DRIVERS.iter().any(|d| set(d))
}

/// Orders kernel versions oldest first: runs of digits compare as numbers, so
/// 6.1.0-18 comes after 6.1.0-9.
fn version_order(a: &str, b: &str) -> Ordering {
    let mut a = chunks(a);
    let mut b = chunks(b);
    loop {
        let order = match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match (x.parse::<u64>(), y.parse::<u64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            },
        };
        if order != Ordering::Equal {
            return order;
        }
    }
}

/// Splits a version into runs of digits and runs of anything else.
fn chunks(version: &str) -> impl Iterator<Item = &str> {
    let mut rest = version;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest whose every /boot/config-* holds the same text.
    struct Config(&'static str);

    impl GuestFiles for Config {
        fn read(&self, path: &str) -> Option<Vec<u8>> {
            path.starts_with("/boot/config-")
                .then(|| self.0.as_bytes().to_vec())
        }
        fn list_dir(&self, _: &str) -> Option<Vec<String>> {
            None
        }
        fn readlink(&self, _: &str) -> Option<String> {
            None
        }
    }

    #[test]
    fn xen_only_kernels() {
        assert!(xen_only(&Config(""), "2.6.18-348.el5xen"));
        let pv_only = "CONFIG_XEN=y\nCONFIG_XEN_BLKDEV_FRONTEND=y\nCONFIG_ATA=m\n";
        assert!(xen_only(&Config(pv_only), "4.4.0-pv"));
        let cloud = "CONFIG_XEN=y\nCONFIG_VIRTIO_BLK=m\n# CONFIG_SATA_AHCI is not set\n";
        assert!(!xen_only(&Config(cloud), "6.1.0-18-cloud-amd64"));
        assert!(!xen_only(&Config("CONFIG_SATA_AHCI=y\n"), "6.1.0-18-amd64"));
    }

    #[test]
    fn versions_order_numerically() {
        let mut versions = vec![
            "6.1.0-18-cloud-amd64",
            "6.1.0-9-amd64",
            "2.6.18-348.el5xen",
            "6.1.0-18-amd64",
            "2.6.18-8.el5",
        ];
        versions.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            versions,
            [
                "2.6.18-8.el5",
                "2.6.18-348.el5xen",
                "6.1.0-9-amd64",
                "6.1.0-18-amd64",
                "6.1.0-18-cloud-amd64",
            ]
        );
    }
}
