//! selinux-mode: an organisation's policy for SELinux on converted VMs. The seed
//! disables it until the VM has booted once (or it may kill the boot); a relabel
//! on first boot fixes the labels of files a conversion wrote.

use rehost_sdk::files::keyvalue::KeyValue;
use rehost_sdk::fixer::{config, FixContext, Fixer, Guest, Report, WriteOptions};
use rehost_sdk::{Error, Result};
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

const CONFIG: &str = "/etc/selinux/config";
const AUTORELABEL: &str = "/.autorelabel";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Disabled,
    Permissive,
    Enforcing,
}

impl Mode {
    fn value(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::Permissive => "permissive",
            Mode::Enforcing => "enforcing",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub mode: Mode,
    /// Relabel every file on first boot (/.autorelabel).
    pub relabel: bool,
}

impl Default for Config {
    /// The seed's choice.
    fn default() -> Self {
        Self {
            mode: Mode::Disabled,
            relabel: false,
        }
    }
}

pub struct SelinuxMode;

impl Fixer for SelinuxMode {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()> {
        let cfg: Config = config(ctx)?;
        if cfg.relabel && cfg.mode == Mode::Disabled {
            return Err(Error::Invalid(
                "selinux-mode config: relabel = true does nothing with mode = \"disabled\" \
                 (only an enabled SELinux relabels); choose permissive or enforcing"
                    .into(),
            ));
        }
        let Some(text) = guest.read_optional(CONFIG)? else {
            if cfg.mode != Mode::Disabled {
                report.warn(format!(
                    "{CONFIG} is missing, so SELinux is not installed: SELINUX={} not set",
                    cfg.mode.value()
                ));
            }
            return Ok(());
        };
        let mut conf = KeyValue::parse(&text);
        let old = conf.get("SELINUX").unwrap_or("unset").to_string();
        if old != cfg.mode.value() {
            conf.set("SELINUX", cfg.mode.value());
            guest.write_string(CONFIG, &conf.render())?;
            report.changed(format!(
                "{CONFIG}: SELINUX={} (was {old})",
                cfg.mode.value()
            ));
        }
        if cfg.relabel && !guest.exists(AUTORELABEL)? {
            let options = WriteOptions {
                mode: Some(0o644),
                uid: Some(0),
                gid: Some(0),
            };
            guest.write(AUTORELABEL, b"", options)?;
            report.changed(format!(
                "{AUTORELABEL}: SELinux relabels every file on first boot"
            ));
        }
        Ok(())
    }
}

rehost_sdk::export_fixer!(SelinuxMode);

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::fixer::DirGuest;
    use rehost_sdk::TargetHardware;
    use std::fs;

    /// The CentOS 5 fixture's /etc/selinux/config.
    const SELINUX: &str = "\
# This file controls the state of SELinux on the system.
# SELINUX= can take one of these three values:
#       enforcing - SELinux security policy is enforced.
#       permissive - SELinux prints warnings instead of enforcing.
#       disabled - SELinux is fully disabled.
SELINUX=enforcing
# SELINUXTYPE= type of policy in use. Possible values are:
#       targeted - Only targeted network daemons are protected.
#       strict - Full SELinux protection.
SELINUXTYPE=targeted
";

    fn ctx(config: &str) -> FixContext {
        rehost_sdk::testing::fix_context("centos", "5.11", TargetHardware::Kvm, config)
    }

    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("etc/selinux")).unwrap();
        fs::write(tmp.path().join("etc/selinux/config"), SELINUX).unwrap();
        tmp
    }

    fn config_text(tmp: &tempfile::TempDir) -> String {
        fs::read_to_string(tmp.path().join("etc/selinux/config")).unwrap()
    }

    #[test]
    fn disables_by_default_as_the_seed_does() {
        let tmp = tree();
        let guest = DirGuest::new(tmp.path());
        let mut report = Report::default();
        SelinuxMode::fix(&guest, &ctx(""), &mut report).unwrap();
        assert_eq!(
            config_text(&tmp),
            SELINUX.replace("SELINUX=enforcing", "SELINUX=disabled")
        );
        assert_eq!(
            report.changes,
            ["/etc/selinux/config: SELINUX=disabled (was enforcing)"]
        );
        assert!(!tmp.path().join(".autorelabel").exists());
        let mut again = Report::default();
        SelinuxMode::fix(&guest, &ctx(""), &mut again).unwrap();
        assert!(again.changes.is_empty());
    }

    #[test]
    fn permissive_with_a_relabel() {
        let tmp = tree();
        let guest = DirGuest::new(tmp.path());
        let config = "mode = \"permissive\"\nrelabel = true\n";
        SelinuxMode::fix(&guest, &ctx(config), &mut Report::default()).unwrap();
        assert_eq!(
            config_text(&tmp),
            SELINUX.replace("SELINUX=enforcing", "SELINUX=permissive")
        );
        assert_eq!(fs::read(tmp.path().join(".autorelabel")).unwrap(), b"");
    }

    #[test]
    fn enforcing_is_kept() {
        let tmp = tree();
        let guest = DirGuest::new(tmp.path());
        let mut report = Report::default();
        SelinuxMode::fix(&guest, &ctx("mode = \"enforcing\""), &mut report).unwrap();
        assert_eq!(config_text(&tmp), SELINUX);
        assert!(report.changes.is_empty());
    }

    #[test]
    fn no_selinux_installed_is_a_warning_not_a_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let guest = DirGuest::new(tmp.path());
        let mut report = Report::default();
        SelinuxMode::fix(&guest, &ctx("mode = \"enforcing\""), &mut report).unwrap();
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(!tmp.path().join("etc/selinux/config").exists());
    }

    #[test]
    fn refuses_bad_configs() {
        let tmp = tree();
        let guest = DirGuest::new(tmp.path());
        for (config, says) in [
            ("relabel = true\n", "relabel"),
            ("mode = \"off\"\n", "off"),
            ("mod = \"disabled\"\n", "mod"),
        ] {
            let err = SelinuxMode::fix(&guest, &ctx(config), &mut Report::default()).unwrap_err();
            assert!(err.to_string().contains(says), "{config}: {err}");
        }
        assert_eq!(config_text(&tmp), SELINUX);
    }
}
