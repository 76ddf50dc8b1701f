//! What still expects the cloud at boot: rc.local calls to the metadata service,
//! and cloud-init probing for one.

use rehost_sdk::files::rc_local::RcLocal;
use rehost_sdk::fixer::{Guest, Report};
use rehost_sdk::Result;

const RC_LOCAL: &str = "/etc/rc.local";
const CLOUD_DIR: &str = "/etc/cloud";
const CLOUD_CFG_D: &str = "/etc/cloud/cloud.cfg.d";
const NOCLOUD_CFG: &str = "/etc/cloud/cloud.cfg.d/99-rehost-nocloud.cfg";
const DISABLED_MARKER: &str = "/etc/cloud/cloud-init.disabled";

/// Sorted after the image's own 90_dpkg.cfg, so its datasource_list wins.
const NOCLOUD_TEXT: &str = "\
# rehost: this VM no longer runs on the cloud it was made on. Without this, cloud-init
# probes the EC2/OpenStack metadata service at every boot and waits for it to time out.
# NoCloud reads a seed disk if you attach one; None runs without any datasource.
datasource_list: [ NoCloud, None ]
";

/// Comments out the rc.local lines that call the metadata service: off the cloud
/// nothing answers them, and the boot waits for rc.local (getty starts after it).
pub fn disable_rc_local_calls(guest: &dyn Guest, report: &mut Report) -> Result<()> {
    let Some(text) = guest.read_optional(RC_LOCAL)? else {
        return Ok(());
    };
    let mut script = RcLocal::parse(&text);
    let reasons: Vec<String> = script.records().map(|c| c.reason().to_string()).collect();
    if script.disable_cloud_calls() == 0 {
        return Ok(());
    }
    // write_string keeps the mode: rc.local stays executable.
    guest.write_string(RC_LOCAL, &script.render())?;
    report.changed(format!(
        "{RC_LOCAL}: commented out {} cloud metadata call(s) that would hang the boot off-cloud ({})",
        reasons.len(),
        reasons.join("; ")
    ));
    Ok(())
}

/// Keeps cloud-init, if installed, from waiting for a metadata service: points
/// it at NoCloud, or turns it off when `disable` is set.
pub fn quiet_cloud_init(guest: &dyn Guest, disable: bool, report: &mut Report) -> Result<()> {
    if !guest.exists(CLOUD_DIR)? {
        return Ok(());
    }
    if disable {
        if !guest.exists(DISABLED_MARKER)? {
            guest.write_string(DISABLED_MARKER, "")?;
            report.changed(format!("cloud-init: turned off ({DISABLED_MARKER})"));
        }
        return Ok(());
    }
    if guest.read_optional(NOCLOUD_CFG)?.as_deref() == Some(NOCLOUD_TEXT) {
        return Ok(());
    }
    guest.mkdir_p(CLOUD_CFG_D, 0o755)?;
    guest.write_string(NOCLOUD_CFG, NOCLOUD_TEXT)?;
    report.changed(format!(
        "cloud-init: no longer waits for the cloud's metadata service; it reads a NoCloud \
         seed disk if one is attached and otherwise runs without a datasource ({NOCLOUD_CFG})"
    ));
    Ok(())
}

/// Whether cloud-init will run at boot (and so write the network configuration
/// of what it sees as a new instance).
pub fn cloud_init_runs(guest: &dyn Guest) -> Result<bool> {
    Ok(guest.exists(CLOUD_DIR)? && !guest.exists(DISABLED_MARKER)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::fixer::DirGuest;
    use std::fs;

    #[test]
    fn disabling_cloud_init_writes_only_the_marker() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("etc/cloud")).unwrap();
        let guest = DirGuest::new(tmp.path());
        let mut report = Report::default();
        quiet_cloud_init(&guest, true, &mut report).unwrap();
        assert!(tmp.path().join("etc/cloud/cloud-init.disabled").exists());
        assert!(!tmp.path().join("etc/cloud/cloud.cfg.d").exists());
        assert!(!cloud_init_runs(&guest).unwrap());
        let mut again = Report::default();
        quiet_cloud_init(&guest, true, &mut again).unwrap();
        assert_eq!((report.changes.len(), again.changes.len()), (1, 0));
    }

    #[test]
    fn no_cloud_init_no_change() {
        let tmp = tempfile::tempdir().unwrap();
        let guest = DirGuest::new(tmp.path());
        let mut report = Report::default();
        quiet_cloud_init(&guest, false, &mut report).unwrap();
        disable_rc_local_calls(&guest, &mut report).unwrap();
        assert!(report.changes.is_empty());
        assert!(!cloud_init_runs(&guest).unwrap());
    }
}
