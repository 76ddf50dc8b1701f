//! xen-console: Xen guests log in on hvc0 (systemd) or xvc0 (SysV init). Neither
//! console exists under KVM or VirtualBox, so the seed removes those gettys; this
//! fixer does that and puts gettys on the serial port and the first VT instead.

use rehost_sdk::files::inittab::{Entry, Inittab};
use rehost_sdk::fixer::{config, FixContext, Fixer, Guest, Report};
use rehost_sdk::Result;
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

/// Consoles that only exist under Xen.
const XEN_CONSOLES: &[&str] = &["hvc0", "xvc0"];

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The serial console to log in on ("" for none).
    pub serial: String,
    pub speed: u32,
    /// Also make sure a getty runs on tty1 (the VirtualBox window).
    pub tty1: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            serial: "ttyS0".into(),
            speed: 115200,
            tty1: true,
        }
    }
}

pub struct XenConsole;

impl Fixer for XenConsole {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()> {
        let cfg: Config = config(ctx)?;
        if guest.exists("/etc/inittab")? {
            fix_inittab(guest, &cfg, report)?;
        }
        if guest.exists("/etc/systemd/system")? {
            fix_systemd(guest, &cfg, report)?;
        }
        if !cfg.serial.is_empty() && guest.exists("/etc/securetty")? {
            allow_root_login_on(guest, &cfg.serial, report)?;
        }
        Ok(())
    }
}

fn fix_inittab(guest: &dyn Guest, cfg: &Config, report: &mut Report) -> Result<()> {
    let mut inittab = Inittab::parse(&guest.read_string("/etc/inittab")?);
    let mut changes = Vec::new();
    for tty in XEN_CONSOLES {
        if inittab.remove_where(|e| e.runs_getty_on(tty)) > 0 {
            changes.push(format!(
                "/etc/inittab: removed the getty on {tty} (a Xen-only console)"
            ));
        }
    }
    if !cfg.serial.is_empty() && inittab.gettys_on(&cfg.serial).next().is_none() {
        let agetty = if guest.exists("/sbin/agetty")? {
            "/sbin/agetty"
        } else {
            "/sbin/getty"
        };
        let id = serial_id(&cfg.serial);
        let process = format!("{agetty} -L {} {} vt100", cfg.speed, cfg.serial);
        if inittab.add(Entry::new(&id, "2345", "respawn", &process)) {
            changes.push(format!("/etc/inittab: added a getty on {}", cfg.serial));
        }
    }
    if !changes.is_empty() {
        guest.write_string("/etc/inittab", &inittab.render())?;
        changes.into_iter().for_each(|c| report.changed(c));
    }
    Ok(())
}

/// inittab ids are at most 4 characters: ttyS0 -> S0.
fn serial_id(tty: &str) -> String {
    let id = tty.strip_prefix("tty").unwrap_or(tty);
    id.chars().take(4).collect()
}

fn fix_systemd(guest: &dyn Guest, cfg: &Config, report: &mut Report) -> Result<()> {
    // Enabled units are symlinks in /etc/systemd/system/*.wants/.
    for dir in guest.list_dir("/etc/systemd/system")? {
        if !dir.ends_with(".wants") {
            continue;
        }
        let wants = format!("/etc/systemd/system/{dir}");
        for unit in guest.list_dir(&wants)? {
            if XEN_CONSOLES
                .iter()
                .any(|tty| unit.ends_with(&format!("@{tty}.service")))
            {
                guest.remove(&format!("{wants}/{unit}"))?;
                report.changed(format!("disabled {unit} (a Xen-only console)"));
            }
        }
    }
    let Some(unit_dir) = systemd_unit_dir(guest)? else {
        report.warn("no systemd unit directory found; no getty enabled");
        return Ok(());
    };
    if !cfg.serial.is_empty() {
        enable_getty(guest, unit_dir, "serial-getty", &cfg.serial, report)?;
    }
    if cfg.tty1 {
        enable_getty(guest, unit_dir, "getty", "tty1", report)?;
    }
    Ok(())
}

fn systemd_unit_dir(guest: &dyn Guest) -> Result<Option<&'static str>> {
    for dir in ["/lib/systemd/system", "/usr/lib/systemd/system"] {
        if guest.exists(&format!("{dir}/getty@.service"))? {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// Enables `TEMPLATE@TTY.service` in getty.target.wants, unmasking it if masked.
fn enable_getty(
    guest: &dyn Guest,
    unit_dir: &str,
    template: &str,
    tty: &str,
    report: &mut Report,
) -> Result<()> {
    let unit = format!("{template}@{tty}.service");
    let mask = format!("/etc/systemd/system/{unit}");
    if guest
        .stat(&mask)
        .is_ok_and(|s| s.link_target.as_deref() == Some("/dev/null"))
    {
        guest.remove(&mask)?;
        report.changed(format!("unmasked {unit}"));
    }
    let wants = "/etc/systemd/system/getty.target.wants";
    let link = format!("{wants}/{unit}");
    if !guest.exists(&link)? {
        guest.mkdir_p(wants, 0o755)?;
        guest.symlink(&format!("{unit_dir}/{template}@.service"), &link)?;
        report.changed(format!("enabled {unit}"));
    }
    Ok(())
}

/// SysV login refuses root on terminals missing from /etc/securetty.
fn allow_root_login_on(guest: &dyn Guest, tty: &str, report: &mut Report) -> Result<()> {
    let text = guest.read_string("/etc/securetty")?;
    if text.lines().any(|l| l.trim() == tty) {
        return Ok(());
    }
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    guest.write_string("/etc/securetty", &format!("{text}{sep}{tty}\n"))?;
    report.changed(format!("/etc/securetty: root may log in on {tty}"));
    Ok(())
}

rehost_sdk::export_fixer!(XenConsole);

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::fixer::DirGuest;
    use rehost_sdk::TargetHardware;
    use std::fs;

    fn ctx(config: &str) -> FixContext {
        rehost_sdk::testing::fix_context("centos", "5.11", TargetHardware::Virtualbox, config)
    }

    #[test]
    fn sysv_xvc0_getty_becomes_ttys0() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::create_dir_all(dir.join("sbin")).unwrap();
        fs::write(dir.join("sbin/agetty"), "").unwrap();
        fs::write(
            dir.join("etc/inittab"),
            "id:3:initdefault:\n# gettys\n1:2345:respawn:/sbin/mingetty tty1\nxvc0:2345:respawn:/sbin/mingetty xvc0\n",
        )
        .unwrap();
        fs::write(dir.join("etc/securetty"), "console\ntty1\n").unwrap();
        let guest = DirGuest::new(dir);
        let mut report = Report::default();
        XenConsole::fix(&guest, &ctx(""), &mut report).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("etc/inittab")).unwrap(),
            "id:3:initdefault:\n# gettys\n1:2345:respawn:/sbin/mingetty tty1\nS0:2345:respawn:/sbin/agetty -L 115200 ttyS0 vt100\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("etc/securetty")).unwrap(),
            "console\ntty1\nttyS0\n"
        );
        assert_eq!(report.changes.len(), 3, "{:?}", report.changes);
        // Idempotent: a second run changes nothing.
        let mut again = Report::default();
        XenConsole::fix(&guest, &ctx(""), &mut again).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
    }

    #[test]
    fn systemd_hvc0_getty_becomes_ttys0_and_tty1() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("lib/systemd/system")).unwrap();
        fs::write(dir.join("lib/systemd/system/getty@.service"), "").unwrap();
        let wants = dir.join("etc/systemd/system/getty.target.wants");
        fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/serial-getty@.service",
            wants.join("serial-getty@hvc0.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/dev/null",
            dir.join("etc/systemd/system/getty@tty1.service"),
        )
        .unwrap();
        let guest = DirGuest::new(dir);
        let mut report = Report::default();
        XenConsole::fix(&guest, &ctx("serial = \"ttyS0\""), &mut report).unwrap();
        let mut links: Vec<_> = fs::read_dir(&wants)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        links.sort();
        assert_eq!(links, ["getty@tty1.service", "serial-getty@ttyS0.service"]);
        assert!(!dir.join("etc/systemd/system/getty@tty1.service").exists());
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let guest = DirGuest::new(dir);
        let err = XenConsole::fix(&guest, &ctx("seriall = 1"), &mut Report::default()).unwrap_err();
        assert!(err.to_string().contains("seriall"), "{err}");
    }
}
