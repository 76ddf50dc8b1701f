//! SELinux: the seed disables it until the VM has booted once, or it may kill
//! the boot; permissive and a relabel on first boot are the other choices.

use rehost_sdk::files::keyvalue::KeyValue;
use rehost_sdk::fixer::{Guest, Report, WriteOptions};
use rehost_sdk::Result;

use crate::config::Selinux;

const CONFIG: &str = "/etc/selinux/config";
const AUTORELABEL: &str = "/.autorelabel";

pub fn fix(guest: &dyn Guest, mode: Selinux, report: &mut Report) -> Result<()> {
    let value = match mode {
        Selinux::Keep => return Ok(()),
        Selinux::Relabel => return relabel(guest, report),
        Selinux::Disabled => "disabled",
        Selinux::Permissive => "permissive",
    };
    let Some(text) = guest.read_optional(CONFIG)? else {
        // No policy installed: nothing enforces anything.
        return Ok(());
    };
    let mut conf = KeyValue::parse(&text);
    let old = conf.get("SELINUX").unwrap_or("unset").to_string();
    if old != value {
        conf.set("SELINUX", value);
        guest.write_string(CONFIG, &conf.render())?;
        report.changed(format!("{CONFIG}: SELINUX={value} (was {old})"));
    }
    Ok(())
}

/// /.autorelabel makes rc.sysinit relabel every file on the next boot.
fn relabel(guest: &dyn Guest, report: &mut Report) -> Result<()> {
    if !guest.exists(AUTORELABEL)? {
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
