//! debian-cloud2kvm: the stock fixer for Debian and Ubuntu cloud instances.
//!
//! It mounts the root by UUID and drops Xen disks from fstab, keeps rc.local and
//! cloud-init from waiting on the metadata service, names the NIC eth0, makes
//! sure a kernel with the target's disk and NIC drivers is installed (with the
//! guest's own apt when not), rebuilds its initrd when it lacks those drivers, and returns
//! it as the boot entry. Gettys are the xen-console fixer's job, which runs first.

mod cloud;
mod config;
mod exec;
mod fstab;
mod hardware;
mod initramfs;
mod kernel;
mod network;

use rehost_sdk::fixer::{config, FixContext, Fixer, Guest, Report};
use rehost_sdk::{BootEntry, Result};

pub use config::{Config, RebuildInitrd};
use hardware::Hardware;

rehost_sdk::manifest!("../rehost.toml");

/// The driver that mounts the root: ext4 also mounts ext2 and ext3 in every
/// kernel Debian 9+ and Ubuntu 16.04+ ship (ext3 has no module of its own).
const ROOT_FS_MODULE: &str = "ext4";

pub struct DebianCloud2Kvm;

impl Fixer for DebianCloud2Kvm {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()> {
        let cfg: Config = config(ctx)?;
        cfg.validate()?;
        let hardware = Hardware::of(ctx.target);

        fstab::fix(guest, &ctx.root.uuid, cfg.drop_xen_devices, report)?;
        cloud::disable_rc_local_calls(guest, report)?;
        cloud::quiet_cloud_init(guest, cfg.disable_cloud_init, report)?;
        network::ensure_eth0_dhcp(guest, cloud::cloud_init_runs(guest)?, report)?;

        // initramfs-tools is configured before any kernel install, so the initrd
        // the package's hook builds already has the drivers.
        let modules: Vec<String> = hardware
            .initrd_modules
            .iter()
            .map(|m| m.to_string())
            .chain([ROOT_FS_MODULE.to_string()])
            .chain(cfg.extra_modules.iter().cloned())
            .collect();
        initramfs::configure(guest, hardware.name, &modules, report)?;
        let Some(kernel) = kernel::ensure(guest, ctx, &cfg.kernel_package, &hardware, report)?
        else {
            return Ok(());
        };
        // The configuration above serves the guest's own future rebuilds; a rebuild
        // now is needed only when the initrd lacks a driver (or is asked for).
        let initrd = initramfs::initrd_path(&kernel.version);
        if cfg.rebuild_initrd == RebuildInitrd::Always
            || initramfs::needs_rebuild(guest, &kernel.version, &modules)?
        {
            initramfs::rebuild(guest, &kernel.version, report)?;
        }
        report.boot(boot_entry(ctx, &kernel.version, initrd, &cfg.extra_cmdline));
        Ok(())
    }
}

fn boot_entry(ctx: &FixContext, version: &str, initrd: String, extra_cmdline: &str) -> BootEntry {
    let name = match ctx.os.pretty_name.as_str() {
        "" => format!("{} {}", ctx.os.id, ctx.os.version_id),
        pretty => pretty.to_string(),
    };
    let cmdline = [network::CMDLINE, extra_cmdline.trim()]
        .iter()
        .filter(|arg| !arg.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    BootEntry {
        title: format!("{} ({version})", name.trim()),
        kernel: format!("/boot/vmlinuz-{version}"),
        initrd: Some(initrd),
        cmdline,
    }
}

rehost_sdk::export_fixer!(DebianCloud2Kvm);

#[cfg(test)]
mod tests;
