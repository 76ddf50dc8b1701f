//! centos5-xen2kvm: the stock fixer for CentOS/RHEL 5 Xen instances, doing the
//! seed's STEP 1 in the seed's order: inittab's default runlevel, modprobe.conf's
//! driver aliases, fstab's root, the root password, then inside the guest yum
//! (a desktop, a native kernel) and mkinitrd, SELinux, grub.conf, and rc.local.
//! It returns the chosen kernel as the boot entry. Every step can be switched off
//! in its config; gettys are the xen-console fixer's job, which runs first.

mod config;
mod exec;
mod fstab;
mod grub;
mod inittab;
mod kernel;
mod modprobe;
mod packages;
mod password;
mod rc_local;
mod selinux;
mod target;

use rehost_sdk::fixer::{config, FixContext, Fixer, Guest, Report};
use rehost_sdk::{fail, BootEntry, Result};

pub use config::Config;
use target::Target;

rehost_sdk::manifest!("../rehost.toml");

pub struct Centos5Xen2Kvm;

impl Fixer for Centos5Xen2Kvm {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()> {
        let cfg: Config = config(ctx)?;
        cfg.validate()?;
        let target = Target::of(ctx.target);
        let root = cfg.root(ctx)?;

        let desktop = cfg.desktop || packages::desktop_installed(guest)?;
        inittab::fix(guest, cfg.runlevel, desktop, report)?;
        if cfg.modprobe {
            modprobe::fix(guest, &target, report)?;
        }
        if cfg.fstab {
            fstab::fix(guest, &root, cfg.xen_devices, &target, report)?;
        }
        if let Some(password) = cfg.password() {
            password::set(guest, "root", password, report)?;
        }
        // The seed's order: the desktop first, then the kernel.
        if cfg.desktop {
            packages::install_desktop(guest, report)?;
        }
        if cfg.install_kernel && ctx.kernels.iter().all(|k| k.xen_only) {
            packages::install_boot_packages(guest, report)?;
        }
        match kernel::newest_native(guest, ctx)? {
            Some(version) => boot(guest, ctx, &cfg, &target, &version, &root, report)?,
            // Under `rehost plan` yum is recorded, not run, so its kernel is not there.
            None if ctx.dry_run => report.changed(
                "would boot the kernel `yum install kernel` installs, with an initrd \
                 rebuilt by mkinitrd and a grub.conf for it (its version is known only \
                 after the install)",
            ),
            None => {
                return Err(fail(
                    "no kernel in /boot but Xen-only ones, which do not boot on KVM or \
                     VirtualBox: set install_kernel = true, or install CentOS's `kernel` \
                     package in the instance",
                ))
            }
        }
        selinux::fix(guest, cfg.selinux, report)?;
        if cfg.rc_local {
            rc_local::fix(guest, report)?;
        }
        Ok(())
    }
}

/// Rebuilds the kernel's initrd, writes grub.conf for it and returns it as the boot entry.
fn boot(
    guest: &dyn Guest,
    ctx: &FixContext,
    cfg: &Config,
    target: &Target,
    version: &str,
    root: &str,
    report: &mut Report,
) -> Result<()> {
    let kernel = format!("/boot/vmlinuz-{version}");
    let initrd = kernel::initrd_path(version);
    if cfg.mkinitrd {
        kernel::rebuild_initrd(guest, version, target, report)?;
    } else if !guest.exists(&initrd)? {
        report.warn(format!(
            "{initrd} is missing and mkinitrd = false: {version} cannot mount its root"
        ));
    }
    let title = format!("{} ({version})", distro_name(ctx));
    if cfg.grub_conf {
        let stanza = grub::Stanza {
            title: &title,
            kernel: &kernel,
            initrd: &initrd,
            root,
        };
        grub::write(guest, &stanza, report)?;
        kernel::default_to_native_updates(guest, report)?;
    }
    report.boot(BootEntry {
        title,
        kernel,
        initrd: Some(initrd),
        // The host adds root= and console=; nothing else is needed.
        cmdline: String::new(),
    });
    Ok(())
}

/// "CentOS", as the seed's menu titles say.
fn distro_name(ctx: &FixContext) -> String {
    match ctx.os.id.as_str() {
        "centos" => "CentOS".to_string(),
        "rhel" => "Red Hat Enterprise Linux".to_string(),
        _ if !ctx.os.pretty_name.is_empty() => ctx.os.pretty_name.clone(),
        id => id.to_string(),
    }
}

rehost_sdk::export_fixer!(Centos5Xen2Kvm);

#[cfg(test)]
mod tests;
