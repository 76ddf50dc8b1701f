//! Drivers for the target hardware: the initrd (or the kernel itself) must hold
//! the disk controller, disk and root filesystem drivers, or the root disk is
//! never found; the kernel must be able to load the NIC driver.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::findings::{Finding, Report};
use super::initrd::{self, Format, InitrdError};
use super::kernel::{initrd_rebuild_hint, is_xen_only, release, Driver, Modules};
use super::{Context, Target};

const AHCI: Driver = Driver {
    module: "ahci",
    config: "SATA_AHCI",
};
const ATA_PIIX: Driver = Driver {
    module: "ata_piix",
    config: "ATA_PIIX",
};
/// The SCSI disk driver: without it AHCI finds the disk but no /dev/sda appears.
const SD_MOD: Driver = Driver {
    module: "sd_mod",
    config: "BLK_DEV_SD",
};
const VIRTIO_BLK: Driver = Driver {
    module: "virtio_blk",
    config: "VIRTIO_BLK",
};
/// The virtio PCI transport: without it virtio_blk never sees the device.
const VIRTIO_PCI: Driver = Driver {
    module: "virtio_pci",
    config: "VIRTIO_PCI",
};
const E1000: Driver = Driver {
    module: "e1000",
    config: "E1000",
};
const VIRTIO_NET: Driver = Driver {
    module: "virtio_net",
    config: "VIRTIO_NET",
};
const EXT4: Driver = Driver {
    module: "ext4",
    config: "EXT4_FS",
};
const EXT3: Driver = Driver {
    module: "ext3",
    config: "EXT3_FS",
};
const EXT2: Driver = Driver {
    module: "ext2",
    config: "EXT2_FS",
};

impl Target {
    /// Every one of these must be available before the root is mounted.
    fn disk_drivers(self) -> &'static [Driver] {
        match self {
            Target::Virtualbox => &[AHCI, SD_MOD],
            Target::Kvm => &[VIRTIO_BLK, VIRTIO_PCI],
        }
    }

    fn nic_driver(self) -> Driver {
        match self {
            Target::Virtualbox => E1000,
            Target::Kvm => VIRTIO_NET,
        }
    }

    fn disk_name(self) -> &'static str {
        match self {
            Target::Virtualbox => "SATA (AHCI) disk",
            Target::Kvm => "virtio disk",
        }
    }
}

/// Any one of these mounts a root of `fs_type` (ext4 mounts ext2 and ext3 too).
fn root_fs_drivers(fs_type: Option<&str>) -> &'static [Driver] {
    match fs_type {
        Some("ext4") => &[EXT4],
        Some("ext3") => &[EXT3, EXT4],
        Some("ext2") => &[EXT2, EXT4],
        _ => &[EXT4, EXT3, EXT2],
    }
}

/// What a kernel has before the root is mounted: modules in its initrd, plus
/// what is built in.
struct EarlyDrivers<'a> {
    in_initrd: BTreeSet<String>,
    modules: &'a Modules,
}

impl EarlyDrivers<'_> {
    fn has(&self, driver: Driver) -> bool {
        self.in_initrd.contains(driver.module) || self.modules.is_builtin(driver)
    }
}

pub(super) fn check(cx: &Context, root_fs_type: Option<&str>, report: &mut Report) {
    // Recovery entries repeat the same kernel and initrd: check each pair once.
    let mut seen = HashSet::new();
    for entry in &cx.entries {
        // A missing kernel or initrd is reported by the boot check.
        let Ok(Some(kernel)) = cx.guest.resolve(&entry.kernel) else {
            continue;
        };
        let initrd = match &entry.initrd {
            Some(path) => match cx.guest.resolve(path) {
                Ok(Some(host)) => Some((path.as_str(), host)),
                _ => continue,
            },
            None => None,
        };
        let Some(release) = release(&kernel) else {
            report.push(Finding::warning(
                "drivers.kernel-release",
                format!(
                    "cannot tell the release of kernel {}: its drivers were not checked",
                    entry.kernel
                ),
                "name the kernel vmlinuz-<release>, as distribution packages do",
            ));
            continue;
        };
        // The boot check already says a Xen-only kernel cannot boot at all.
        if is_xen_only(&release) || !seen.insert((release.clone(), initrd.clone())) {
            continue;
        }
        check_kernel(cx, &release, initrd, root_fs_type, report);
    }
}

/// The drivers of one kernel release booted with `initrd` (guest path, host path).
fn check_kernel(
    cx: &Context,
    release: &str,
    initrd: Option<(&str, PathBuf)>,
    root_fs_type: Option<&str>,
    report: &mut Report,
) {
    let modules = match Modules::load(&cx.guest, release) {
        Ok(modules) => modules,
        Err(e) => {
            report.push(Finding::error(
                "drivers.modules",
                format!("cannot read the modules of kernel {release}: {e}"),
                format!("check /lib/modules/{release} in the guest"),
            ));
            return;
        }
    };
    // The NIC need not be in the initrd: it is loaded from the root later.
    check_nic(cx, release, &modules, report);
    let initrd_path = initrd.as_ref().map(|(path, _)| *path);
    let in_initrd = match &initrd {
        Some((path, host)) => match read_initrd(cx, path, host, release, report) {
            Some(names) => names,
            None => return,
        },
        None => BTreeSet::new(),
    };
    let early = EarlyDrivers {
        in_initrd,
        modules: &modules,
    };
    check_disk(cx, initrd_path, release, &early, report);
    check_root_fs(cx, initrd_path, release, root_fs_type, &early, report);
    if cx.input.target == Target::Virtualbox {
        note_ide(initrd_path, release, &early, report);
    }
}

/// The module names in the initrd, or `None` (with a finding) when it cannot
/// be read.
fn read_initrd(
    cx: &Context,
    path: &str,
    host: &Path,
    release: &str,
    report: &mut Report,
) -> Option<BTreeSet<String>> {
    match initrd::read(host) {
        Ok(image) => {
            if image.formats.contains(&Format::Lz4Frame) {
                report.push(Finding::error(
                    "drivers.initrd",
                    format!(
                        "initrd {path} is compressed in the LZ4 frame format, which the kernel \
                         cannot unpack (it reads only the legacy format)"
                    ),
                    format!(
                        "recompress it with `lz4 -l`, or {}",
                        initrd_rebuild_hint(&cx.guest, path, release, &[])
                    ),
                ));
            }
            Some(image.module_names())
        }
        Err(InitrdError::Unsupported { format, .. }) => {
            report.push(Finding::warning(
                "drivers.initrd",
                format!("initrd {path} is compressed with {format}, which rehost cannot read: its drivers were not checked"),
                format!(
                    "check by hand that it holds {} (lsinitrd or lsinitramfs in the guest)",
                    module_list(cx.input.target.disk_drivers())
                ),
            ));
            None
        }
        Err(e) => {
            report.push(Finding::error(
                "drivers.initrd",
                format!("initrd {path} cannot be unpacked: {e}"),
                initrd_rebuild_hint(&cx.guest, path, release, &[]),
            ));
            None
        }
    }
}

fn check_disk(
    cx: &Context,
    initrd: Option<&str>,
    release: &str,
    early: &EarlyDrivers,
    report: &mut Report,
) {
    let target = cx.input.target;
    let wanted = target.disk_drivers();
    let missing: Vec<Driver> = wanted.iter().copied().filter(|d| !early.has(*d)).collect();
    let source = match initrd {
        Some(path) => format!("initrd {path} (kernel {release})"),
        None => format!("kernel {release} (booted without an initrd)"),
    };
    if missing.is_empty() {
        report.push(Finding::ok(
            "drivers.disk",
            format!(
                "{source} has the {} drivers: {}",
                target.name(),
                module_list(wanted)
            ),
        ));
        return;
    }
    report.push(Finding::error(
        "drivers.disk",
        format!(
            "{source} lacks {} and the kernel does not build {} in: the {} {} holding / will not be found at boot",
            module_list(&missing),
            if missing.len() == 1 { "it" } else { "them" },
            target.name(),
            target.disk_name()
        ),
        add_modules_fix(cx, initrd, release, &missing, early.modules),
    ));
}

fn check_root_fs(
    cx: &Context,
    initrd: Option<&str>,
    release: &str,
    fs_type: Option<&str>,
    early: &EarlyDrivers,
    report: &mut Report,
) {
    let candidates = root_fs_drivers(fs_type);
    let fs = fs_type.unwrap_or("ext2/3/4");
    let source = match initrd {
        Some(path) => format!("initrd {path} (kernel {release})"),
        None => format!("kernel {release} (booted without an initrd)"),
    };
    if let Some(found) = candidates.iter().find(|d| early.has(**d)) {
        report.push(Finding::ok(
            "drivers.rootfs",
            format!(
                "{source} can mount the {fs} root filesystem ({} driver)",
                found.module
            ),
        ));
        return;
    }
    report.push(Finding::error(
        "drivers.rootfs",
        format!(
            "{source} has no driver for the {fs} root filesystem ({}) and the kernel does not build one in",
            module_list(candidates)
        ),
        add_modules_fix(cx, initrd, release, &candidates[..1], early.modules),
    ));
}

/// VirtualBox can also attach the disk to an IDE (PIIX) controller; say whether
/// that would work, without making it a problem.
fn note_ide(initrd: Option<&str>, release: &str, early: &EarlyDrivers, report: &mut Report) {
    let source = initrd.unwrap_or("the kernel");
    let message = if early.has(ATA_PIIX) {
        format!("{source} (kernel {release}) also has ata_piix: the disk would work on an IDE controller too")
    } else {
        format!("{source} (kernel {release}) has no ata_piix: keep the disk on the SATA controller, not IDE")
    };
    report.push(Finding::ok("drivers.ide", message));
}

fn check_nic(cx: &Context, release: &str, modules: &Modules, report: &mut Report) {
    let target = cx.input.target;
    let nic = target.nic_driver();
    let how = if modules.is_builtin(nic) {
        "built in"
    } else if modules.has_module_file(nic) {
        "as a module"
    } else {
        let where_ = if modules.dir_found {
            format!("not under /lib/modules/{release}")
        } else {
            format!("and /lib/modules/{release} does not exist")
        };
        report.push(Finding::error(
            "drivers.nic",
            format!(
                "kernel {release} has no {} driver for the {} network card (not built in, {where_}): the VM will have no network",
                nic.module,
                target.name()
            ),
            format!(
                "install the modules package that matches kernel {release} \
                 (on Ubuntu also linux-modules-extra-{release}), or a kernel that has {}",
                nic.module
            ),
        ));
        return;
    };
    report.push(Finding::ok(
        "drivers.nic",
        format!(
            "kernel {release} has the {} network driver {} ({how})",
            target.name(),
            nic.module
        ),
    ));
}

/// How to get `missing` into the initrd: rebuild it when the kernel has the
/// modules, else install a kernel that has them.
fn add_modules_fix(
    cx: &Context,
    initrd: Option<&str>,
    release: &str,
    missing: &[Driver],
    modules: &Modules,
) -> String {
    let absent: Vec<Driver> = missing
        .iter()
        .copied()
        .filter(|d| !modules.has_module_file(*d))
        .collect();
    if !absent.is_empty() {
        return format!(
            "kernel {release} has no {} module at all: install a kernel that has it, then rebuild its initrd",
            module_list(&absent)
        );
    }
    let names: Vec<&str> = missing.iter().map(|d| d.module).collect();
    let default_initrd = format!("/boot/initrd.img-{release}");
    initrd_rebuild_hint(
        &cx.guest,
        initrd.unwrap_or(&default_initrd),
        release,
        &names,
    )
}

fn module_list(drivers: &[Driver]) -> String {
    drivers
        .iter()
        .map(|d| d.module)
        .collect::<Vec<_>>()
        .join(", ")
}
