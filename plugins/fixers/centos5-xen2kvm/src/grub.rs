//! /boot/grub/grub.conf as the seed's sample, for the chosen kernel, with the
//! seed's tip: menu.lst and grub.cfg as symlinks to it. (The host replaces the
//! grub.cfg link with its own GRUB 2 menu, which offers grub.conf as well.)

use rehost_sdk::files::grub_legacy::{new_config, BootEntry};
use rehost_sdk::fixer::{FileKind, Guest, Report};
use rehost_sdk::Result;

const GRUB_DIR: &str = "/boot/grub";
const GRUB_CONF: &str = "/boot/grub/grub.conf";
const LINKS: [&str; 2] = ["/boot/grub/menu.lst", "/boot/grub/grub.cfg"];
/// The converted disk's only partition holds /boot.
const GRUB_ROOT: &str = "(hd0,0)";
const SPLASH: &str = "/boot/grub/splash.xpm.gz";
const TIMEOUT_SECS: u32 = 3;

pub struct Stanza<'a> {
    pub title: &'a str,
    pub kernel: &'a str,
    pub initrd: &'a str,
    /// The root filesystem as the kernel's `root=` names it.
    pub root: &'a str,
}

pub fn write(guest: &dyn Guest, stanza: &Stanza<'_>, report: &mut Report) -> Result<()> {
    guest.mkdir_p(GRUB_DIR, 0o755)?;
    let splash = guest
        .exists(SPLASH)?
        .then(|| format!("{GRUB_ROOT}{SPLASH}"));
    let args = format!("root={} ro", stanza.root);
    let entry = BootEntry {
        title: stanza.title,
        root: GRUB_ROOT,
        kernel: stanza.kernel,
        args: &args,
        initrd: Some(stanza.initrd),
    };
    let text = new_config(TIMEOUT_SECS, splash.as_deref(), &[entry]).render();
    if guest.read_optional(GRUB_CONF)?.as_deref() != Some(text.as_str()) {
        guest.write_string(GRUB_CONF, &text)?;
        report.changed(format!("{GRUB_CONF}: boots {} ({args})", stanza.kernel));
    }
    for link in LINKS {
        link_to_grub_conf(guest, link, report)?;
    }
    Ok(())
}

fn link_to_grub_conf(guest: &dyn Guest, link: &str, report: &mut Report) -> Result<()> {
    let target = "grub.conf";
    if guest.exists(link)? {
        let stat = guest.stat(link)?;
        if stat.kind == FileKind::Symlink && stat.link_target.as_deref() == Some(target) {
            return Ok(());
        }
        guest.remove(link)?;
    }
    guest.symlink(target, link)?;
    report.changed(format!("{link}: symlink to {target}"));
    Ok(())
}
