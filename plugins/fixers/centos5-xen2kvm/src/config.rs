//! The fixer's table in the pipeline file: every change of the seed can be
//! switched off or tuned here.

use rehost_sdk::fixer::FixContext;
use rehost_sdk::{Error, Result};
use serde::Deserialize;

/// No `Debug`: the table may hold the root password.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The default runlevel to set (the seed sets 5, X11); unset keeps the guest's.
    /// 5 only takes effect when a desktop is installed or `desktop` asks for one.
    pub runlevel: Option<u8>,
    /// Replace the Xen driver aliases of /etc/modprobe.conf.
    pub modprobe: bool,
    /// Point the root entry of /etc/fstab at the new root and handle other Xen disks.
    pub fstab: bool,
    /// How fstab and grub.conf name the root filesystem.
    pub root_spec: RootSpec,
    /// What happens to fstab entries on Xen disks other than the root.
    pub xen_devices: XenDevices,
    /// The new root password, stored as a SHA-512 crypt hash.
    pub root_password: Option<String>,
    /// Or the crypt(3) hash to store as is.
    pub root_password_hash: Option<String>,
    /// `yum install kernel mkinitrd grub` when the guest has only Xen kernels.
    pub install_kernel: bool,
    /// `yum groupinstall` the X Window System and GNOME.
    pub desktop: bool,
    /// Rebuild the booted kernel's initrd with the virtio (and SATA) drivers.
    pub mkinitrd: bool,
    pub selinux: Selinux,
    /// Write /boot/grub/grub.conf and its menu.lst and grub.cfg links, and make
    /// kernel updates default to the native kernel (/etc/sysconfig/kernel).
    pub grub_conf: bool,
    /// Comment out the cloud metadata calls of /etc/rc.local.
    pub rc_local: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootSpec {
    /// `UUID=...`: survives any disk controller.
    Uuid,
    /// `LABEL=...` (the filesystem must have a label).
    Label,
    /// The target's device name, `/dev/sda1` or `/dev/vda1`, as the seed writes it.
    Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XenDevices {
    /// Remove the entry (the converted disk has only the root partition).
    Drop,
    /// Rename `/dev/xvdXN` to the target's `/dev/sdXN` or `/dev/vdXN`.
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selinux {
    /// `SELINUX=disabled`, as the seed does until the VM boots.
    Disabled,
    /// `SELINUX=permissive`: denials are logged, not enforced.
    Permissive,
    /// Relabel every file on first boot (`/.autorelabel`).
    Relabel,
    /// Leave SELinux as it is.
    Keep,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            runlevel: None,
            modprobe: true,
            fstab: true,
            root_spec: RootSpec::Uuid,
            xen_devices: XenDevices::Drop,
            root_password: None,
            root_password_hash: None,
            install_kernel: true,
            desktop: false,
            mkinitrd: true,
            selinux: Selinux::Disabled,
            grub_conf: true,
            rc_local: true,
        }
    }
}

/// The new root password, in the form the config gave it.
pub enum Password<'a> {
    Plain(&'a str),
    Hash(&'a str),
}

impl Config {
    /// Refuses settings that contradict each other or cannot be right.
    pub fn validate(&self) -> Result<()> {
        if let Some(level) = self.runlevel {
            if !(1..=5).contains(&level) {
                return Err(invalid(format!(
                    "runlevel = {level}: the default runlevel must be 1 to 5 \
                     (0 halts and 6 reboots on every boot)"
                )));
            }
        }
        if self.root_password.is_some() && self.root_password_hash.is_some() {
            return Err(invalid(
                "give root_password or root_password_hash, not both".to_string(),
            ));
        }
        Ok(())
    }

    pub fn password(&self) -> Option<Password<'_>> {
        match (&self.root_password, &self.root_password_hash) {
            (Some(plain), _) => Some(Password::Plain(plain)),
            (None, Some(hash)) => Some(Password::Hash(hash)),
            (None, None) => None,
        }
    }

    /// The root filesystem as fstab and the kernel command line name it.
    pub fn root(&self, ctx: &FixContext) -> Result<String> {
        let root = &ctx.root;
        match self.root_spec {
            RootSpec::Uuid if root.uuid.is_empty() => Err(invalid(
                "root_spec = \"uuid\" but the new root filesystem's UUID is unknown; \
                 use root_spec = \"device\""
                    .to_string(),
            )),
            RootSpec::Uuid => Ok(format!("UUID={}", root.uuid)),
            RootSpec::Label => match root.label.as_deref() {
                Some(label) if !label.is_empty() => Ok(format!("LABEL={label}")),
                _ => Err(invalid(
                    "root_spec = \"label\" but the root filesystem has no label; \
                     use \"uuid\", or label it (e2label) before converting"
                        .to_string(),
                )),
            },
            RootSpec::Device => Ok(root.device.clone()),
        }
    }
}

fn invalid(message: String) -> Error {
    Error::Invalid(format!("centos5-xen2kvm config: {message}"))
}
