//! Packages through the guest's own yum, as the seed runs it in the chroot.

use rehost_sdk::fixer::{Guest, Report};
use rehost_sdk::Result;

use crate::exec;

const YUM: &str = "/usr/bin/yum";
/// The seed's desktop.
pub const DESKTOP_GROUPS: [&str; 2] = ["X Window System", "GNOME Desktop Environment"];
/// What a guest that was booted by Xen lacks: a native kernel, the tool to build
/// its initrd, and a bootloader.
const BOOT_PACKAGES: [&str; 3] = ["kernel", "mkinitrd", "grub"];
/// Files only a desktop install brings (the X server, the GNOME login screen).
const DESKTOP_FILES: [&str; 2] = ["/usr/bin/Xorg", "/usr/sbin/gdm"];

pub fn install_desktop(guest: &dyn Guest, report: &mut Report) -> Result<()> {
    let mut argv = vec![YUM, "-y", "groupinstall"];
    argv.extend(DESKTOP_GROUPS);
    exec::run(guest, &argv)?;
    report.changed(format!(
        "yum groupinstall: {}",
        DESKTOP_GROUPS.map(|g| format!("\"{g}\"")).join(", ")
    ));
    Ok(())
}

pub fn install_boot_packages(guest: &dyn Guest, report: &mut Report) -> Result<()> {
    let mut argv = vec![YUM, "-y", "install"];
    argv.extend(BOOT_PACKAGES);
    exec::run(guest, &argv)?;
    report.changed(format!(
        "yum install {}: the guest had only Xen kernels",
        BOOT_PACKAGES.join(" ")
    ));
    Ok(())
}

pub fn desktop_installed(guest: &dyn Guest) -> Result<bool> {
    for file in DESKTOP_FILES {
        if guest.exists(file)? {
            return Ok(true);
        }
    }
    Ok(false)
}
