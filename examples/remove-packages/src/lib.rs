//! remove-packages: an in-house policy, as an example of writing one. Some
//! organisations must not ship certain packages in an exported VM (the seed's
//! author had to remove realvnc-vnc-server and openldap). This removes the
//! installed ones with the guest's own package manager. Place it BEFORE any
//! fixer that installs a desktop, or the removal takes the desktop's
//! dependencies with it (see README.md).

use rehost_sdk::fixer::{config, info, FixContext, Fixer, Guest, Report};
use rehost_sdk::{fail, Error, Result};
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Package names (not versions), e.g. `["realvnc-vnc-server", "openldap"]`.
    pub packages: Vec<String>,
}

/// The guest's package manager: how to ask whether a package is installed and how to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    /// Red Hat family.
    Yum,
    /// Debian family.
    Apt,
}

const RPM: &str = "/bin/rpm";
const YUM: &str = "/usr/bin/yum";
const DPKG_QUERY: &str = "/usr/bin/dpkg-query";
const APT_GET: &str = "/usr/bin/apt-get";

impl Manager {
    fn detect(guest: &dyn Guest) -> Result<Self> {
        if guest.exists(RPM)? && guest.exists(YUM)? {
            return Ok(Manager::Yum);
        }
        if guest.exists(DPKG_QUERY)? && guest.exists(APT_GET)? {
            return Ok(Manager::Apt);
        }
        Err(fail(format!(
            "no package manager this policy knows in the guest: it needs {RPM} and {YUM}, \
             or {DPKG_QUERY} and {APT_GET}"
        )))
    }

    fn name(self) -> &'static str {
        match self {
            Manager::Yum => "yum",
            Manager::Apt => "apt-get",
        }
    }

    fn is_installed(self, guest: &dyn Guest, package: &str) -> Result<bool> {
        match self {
            // Exit status 0 only for an installed package.
            Manager::Yum => Ok(guest.run(&[RPM, "-q", package], &[], 0)?.success()),
            Manager::Apt => {
                let out = guest.run(&[DPKG_QUERY, "-W", "-f=${Status}", package], &[], 0)?;
                // "install ok installed"; a removed package keeps "deinstall ok config-files".
                Ok(out.success() && out.stdout.trim_end().ends_with(" installed"))
            }
        }
    }

    fn remove(self, guest: &dyn Guest, packages: &[&str]) -> Result<()> {
        let (argv, env): (Vec<&str>, &[(&str, &str)]) = match self {
            Manager::Yum => ([YUM, "-y", "remove"].to_vec(), &[]),
            Manager::Apt => (
                [APT_GET, "-y", "purge"].to_vec(),
                &[("DEBIAN_FRONTEND", "noninteractive")],
            ),
        };
        let argv: Vec<&str> = argv.into_iter().chain(packages.iter().copied()).collect();
        let out = guest.run(&argv, env, 0)?;
        if !out.success() {
            return Err(fail(format!(
                "`{}` failed in the guest (exit status {}): {}",
                argv.join(" "),
                out.status,
                out.stderr.trim()
            )));
        }
        Ok(())
    }
}

/// A package name, not an option or a version spec: rpm and dpkg names use
/// letters, digits and `+-._`, and start with a letter or digit.
fn is_package_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

pub struct RemovePackages;

impl Fixer for RemovePackages {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()> {
        let cfg: Config = config(ctx)?;
        if let Some(bad) = cfg.packages.iter().find(|p| !is_package_name(p)) {
            return Err(Error::Invalid(format!(
                "remove-packages config: {bad:?} is not a package name \
                 (letters, digits and +-._, starting with a letter or digit)"
            )));
        }
        if cfg.packages.is_empty() {
            report.warn("no packages configured: set packages = [...] in [fixer.remove-packages]");
            return Ok(());
        }
        let manager = Manager::detect(guest)?;
        let mut installed = Vec::new();
        for package in &cfg.packages {
            if manager.is_installed(guest, package)? {
                installed.push(package.as_str());
            } else {
                info(&format!("{package} is not installed; nothing to remove"));
            }
        }
        if installed.is_empty() {
            return Ok(());
        }
        manager.remove(guest, &installed)?;
        for package in installed {
            report.changed(format!("removed {package} with {}", manager.name()));
        }
        Ok(())
    }
}

rehost_sdk::export_fixer!(RemovePackages);

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::fixer::{DirGuest, Output};
    use rehost_sdk::TargetHardware;
    use std::fs;

    fn ctx(config: &str) -> FixContext {
        rehost_sdk::testing::fix_context("centos", "5.11", TargetHardware::Virtualbox, config)
    }

    const SEED_POLICY: &str = "packages = [\"realvnc-vnc-server\", \"openldap\"]\n";

    fn guest_with(tools: &[&str]) -> (tempfile::TempDir, DirGuest) {
        let tmp = tempfile::tempdir().unwrap();
        for tool in tools {
            let path = tmp.path().join(tool.trim_start_matches('/'));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
        let guest = DirGuest::new(tmp.path());
        (tmp, guest)
    }

    fn argvs(guest: &DirGuest) -> Vec<String> {
        guest
            .commands
            .borrow()
            .iter()
            .map(|c| c.join(" "))
            .collect()
    }

    #[test]
    fn removes_with_yum_on_red_hat_guests() {
        let (_tmp, guest) = guest_with(&[RPM, YUM]);
        let mut report = Report::default();
        RemovePackages::fix(&guest, &ctx(SEED_POLICY), &mut report).unwrap();
        assert_eq!(
            argvs(&guest),
            [
                "/bin/rpm -q realvnc-vnc-server",
                "/bin/rpm -q openldap",
                "/usr/bin/yum -y remove realvnc-vnc-server openldap",
            ]
        );
        assert_eq!(
            report.changes,
            [
                "removed realvnc-vnc-server with yum",
                "removed openldap with yum"
            ]
        );
    }

    #[test]
    fn purges_with_apt_on_debian_guests() {
        let (_tmp, mut guest) = guest_with(&[DPKG_QUERY, APT_GET]);
        guest.command_output = Output {
            status: 0,
            stdout: "install ok installed".into(),
            stderr: String::new(),
        };
        RemovePackages::fix(
            &guest,
            &ctx("packages = [\"openldap\"]"),
            &mut Report::default(),
        )
        .unwrap();
        assert_eq!(
            argvs(&guest),
            [
                "/usr/bin/dpkg-query -W -f=${Status} openldap",
                "/usr/bin/apt-get -y purge openldap",
            ]
        );
    }

    #[test]
    fn packages_that_are_not_installed_are_left_alone() {
        let (_tmp, mut guest) = guest_with(&[DPKG_QUERY, APT_GET]);
        guest.command_output = Output {
            status: 0,
            stdout: "deinstall ok config-files".into(),
            stderr: String::new(),
        };
        let mut report = Report::default();
        RemovePackages::fix(&guest, &ctx(SEED_POLICY), &mut report).unwrap();
        assert_eq!(
            argvs(&guest).len(),
            2,
            "only the queries: {:?}",
            argvs(&guest)
        );
        assert!(report.changes.is_empty());
    }

    #[test]
    fn refuses_options_posing_as_packages_and_unknown_guests() {
        let (_tmp, guest) = guest_with(&[RPM, YUM]);
        let err = RemovePackages::fix(
            &guest,
            &ctx("packages = [\"--setopt=x\"]"),
            &mut Report::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--setopt=x"), "{err}");
        let (_tmp, bare) = guest_with(&[]);
        let err =
            RemovePackages::fix(&bare, &ctx(SEED_POLICY), &mut Report::default()).unwrap_err();
        assert!(err.to_string().contains("package manager"), "{err}");
        assert!(guest.commands.borrow().is_empty() && bare.commands.borrow().is_empty());
    }
}
