//! /etc/rc.local: calls to the cloud's metadata service hang the boot off-cloud
//! (the seed's troubleshooting), so they are commented out with a note.

use rehost_sdk::files::rc_local::RcLocal;
use rehost_sdk::fixer::{FileKind, Guest, Report};
use rehost_sdk::Result;

const RC_LOCAL: &str = "/etc/rc.local";

pub fn fix(guest: &dyn Guest, report: &mut Report) -> Result<()> {
    if !guest.exists(RC_LOCAL)? {
        return Ok(());
    }
    let path = script_path(guest)?;
    let mut script = RcLocal::parse(&guest.read_string(&path)?);
    let disabled = script.disable_cloud_calls();
    if disabled > 0 {
        guest.write_string(&path, &script.render())?;
        report.changed(format!(
            "{path}: commented out {disabled} cloud metadata call(s)"
        ));
    }
    Ok(())
}

/// The script itself: CentOS links /etc/rc.local to rc.d/rc.local, and writing
/// through the link's name would replace the link with a file.
fn script_path(guest: &dyn Guest) -> Result<String> {
    if guest.stat(RC_LOCAL)?.kind != FileKind::Symlink {
        return Ok(RC_LOCAL.to_string());
    }
    let target = guest.readlink(RC_LOCAL)?;
    Ok(match target.starts_with('/') {
        true => target,
        false => format!("/etc/{target}"),
    })
}
