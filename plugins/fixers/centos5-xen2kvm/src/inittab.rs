//! /etc/inittab: the default runlevel. The gettys are the xen-console fixer's
//! job (it runs first); this only checks it has run.

use rehost_sdk::files::inittab::Inittab;
use rehost_sdk::fixer::{Guest, Report};
use rehost_sdk::Result;

const INITTAB: &str = "/etc/inittab";
/// X11: only useful when a desktop is there to start.
const GRAPHICAL: u8 = 5;

/// Sets the default runlevel to `wanted` (5 only with a desktop), and warns if
/// the Xen console getty is still configured.
pub fn fix(
    guest: &dyn Guest,
    wanted: Option<u8>,
    desktop: bool,
    report: &mut Report,
) -> Result<()> {
    let Some(text) = guest.read_optional(INITTAB)? else {
        return Ok(());
    };
    let mut inittab = Inittab::parse(&text);
    if inittab.gettys_on("xvc0").next().is_some() {
        report.warn(
            "/etc/inittab still runs a getty on xvc0, a console only Xen has: \
             run the xen-console fixer before centos5-xen2kvm",
        );
    }
    let Some(level) = wanted else {
        return Ok(());
    };
    let current = inittab.default_runlevel().unwrap_or("none").to_string();
    if level == GRAPHICAL && !desktop {
        report.warn(format!(
            "/etc/inittab: kept default runlevel {current}: runlevel 5 starts X11, and no \
             desktop is installed (set desktop = true to install one)"
        ));
        return Ok(());
    }
    let level = level.to_string();
    if current != level {
        inittab.set_default_runlevel(&level);
        guest.write_string(INITTAB, &inittab.render())?;
        report.changed(format!(
            "/etc/inittab: default runlevel {level} (was {current})"
        ));
    }
    Ok(())
}
