//! The fixer's table in the pipeline file.

use rehost_sdk::{Error, Result};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The kernel package apt installs when no kernel in /boot has the target's
    /// drivers; empty picks one for the distro and architecture.
    pub kernel_package: String,
    /// Comment out fstab entries on Xen disks (`/dev/xvd*`) other than the root.
    pub drop_xen_devices: bool,
    /// Turn cloud-init off entirely instead of pointing it at NoCloud.
    pub disable_cloud_init: bool,
    /// Modules to add to /etc/initramfs-tools/modules besides the target's.
    pub extra_modules: Vec<String>,
    /// Kernel arguments to add to the boot entry.
    pub extra_cmdline: String,
    /// When to run update-initramfs on the boot kernel.
    pub rebuild_initrd: RebuildInitrd,
}

/// When the boot kernel's initrd is rebuilt.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildInitrd {
    /// Only when it is missing, or lacks a driver the target needs that the kernel
    /// has as a module (a rebuild is seconds of compression inside the guest).
    #[default]
    WhenNeeded,
    /// Every time, as the manual procedure does.
    Always,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kernel_package: String::new(),
            drop_xen_devices: true,
            disable_cloud_init: false,
            extra_modules: Vec::new(),
            extra_cmdline: String::new(),
            rebuild_initrd: RebuildInitrd::default(),
        }
    }
}

impl Config {
    /// Refuses values that would end up as something other than what they claim
    /// to be: an apt option instead of a package, a line break in a file.
    pub fn validate(&self) -> Result<()> {
        let package = &self.kernel_package;
        if !package.is_empty() && !is_package_name(package) {
            return Err(invalid(format!(
                "kernel_package {package:?} is not a Debian package name \
                 (lowercase letters, digits, '+', '-', '.'; starting with a letter or digit)"
            )));
        }
        if let Some(module) = self.extra_modules.iter().find(|m| !is_module_name(m)) {
            return Err(invalid(format!(
                "extra_modules: {module:?} is not a kernel module name (letters, digits, '_', '-')"
            )));
        }
        if self.extra_cmdline.chars().any(char::is_control) {
            return Err(invalid(
                "extra_cmdline must be one line of kernel arguments".to_string(),
            ));
        }
        Ok(())
    }
}

fn invalid(message: String) -> Error {
    Error::Invalid(format!("fixer config: {message}"))
}

/// Debian policy 5.6.1: at least two characters, starting alphanumeric.
fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::default();
        assert!(cfg.drop_xen_devices && !cfg.disable_cloud_init);
        cfg.validate().unwrap();
    }

    #[test]
    fn refuses_options_posing_as_names() {
        let bad = |cfg: Config| cfg.validate().unwrap_err().to_string();
        let err = bad(Config {
            kernel_package: "-oAPT::Get::Trivial-Only=1".into(),
            ..Config::default()
        });
        assert!(err.contains("kernel_package"), "{err}");
        let err = bad(Config {
            extra_modules: vec!["ahci".into(), "ahci nomodeset".into()],
            ..Config::default()
        });
        assert!(err.contains("ahci nomodeset"), "{err}");
        let err = bad(Config {
            extra_cmdline: "quiet\ninit=/bin/sh".into(),
            ..Config::default()
        });
        assert!(err.contains("extra_cmdline"), "{err}");
        Config {
            kernel_package: "linux-image-5.10.0-28-amd64".into(),
            extra_modules: vec!["virtio-scsi".into()],
            extra_cmdline: "quiet splash".into(),
            ..Config::default()
        }
        .validate()
        .unwrap();
    }
}
