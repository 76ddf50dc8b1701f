//! Boot entries: found in the guest's GRUB configuration when the caller gives
//! none, then checked: kernel and initrd exist, the kernel is not a Xen-only
//! build, and `root=` names the new filesystem.

use super::findings::{Finding, Report};
use super::kernel::{initrd_rebuild_hint, is_xen_only, release};
use super::resolve::{GuestRoot, ResolveError};
use super::root_spec::{describe_new_root, is_xen_device, names_new_root};
use super::{BootEntry, Context};

/// GRUB 2 configurations, then GRUB legacy ones (CentOS 5 keeps grub.conf).
const GRUB2_CONFIGS: [&str; 2] = ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
const LEGACY_CONFIGS: [&str; 2] = ["/boot/grub/grub.conf", "/boot/grub/menu.lst"];

/// The entries of the first GRUB configuration in the guest that has any:
/// `menuentry` blocks of a GRUB 2 grub.cfg, else `title` blocks of a legacy
/// grub.conf or menu.lst.
pub fn discover_boot_entries(guest: &GuestRoot) -> Result<Vec<BootEntry>, ResolveError> {
    for (configs, parse) in [
        (&GRUB2_CONFIGS, parse_grub2 as fn(&str) -> Vec<BootEntry>),
        (&LEGACY_CONFIGS, parse_legacy),
    ] {
        for config in configs {
            if let Some(text) = guest.read_text(config)? {
                let entries = parse(&text);
                if !entries.is_empty() {
                    return Ok(entries);
                }
            }
        }
    }
    Ok(Vec::new())
}

/// Discovered entries, or a finding saying why there are none.
pub(super) fn discover_or_report(guest: &GuestRoot, report: &mut Report) -> Vec<BootEntry> {
    match discover_boot_entries(guest) {
        Ok(entries) if !entries.is_empty() => entries,
        Ok(_) => {
            report.push(Finding::error(
                "boot.entries",
                "no boot entry: no /boot/grub/grub.cfg, /boot/grub2/grub.cfg, \
                 /boot/grub/grub.conf or /boot/grub/menu.lst with a kernel line",
                "install the bootloader (rehost convert does) or pass the boot entries to check",
            ));
            Vec::new()
        }
        Err(e) => {
            report.push(Finding::error(
                "boot.entries",
                format!("cannot read the GRUB configuration: {e}"),
                "check the guest's /boot/grub directory",
            ));
            Vec::new()
        }
    }
}

pub(super) fn check(cx: &Context, report: &mut Report) {
    for entry in &cx.entries {
        check_entry(cx, entry, report);
    }
}

fn check_entry(cx: &Context, entry: &BootEntry, report: &mut Report) {
    let what = format!("boot entry {:?}", entry.title);
    let mut fine = true;
    match cx.guest.resolve(&entry.kernel) {
        Ok(Some(host)) => {
            let release = release(&host);
            if let Some(release) = release.as_deref().filter(|r| is_xen_only(r)) {
                fine = false;
                report.push(Finding::error(
                    "boot.xen-kernel",
                    format!(
                        "{what}: kernel {} ({release}) is built for Xen paravirtual guests only \
                         and cannot boot on {}",
                        entry.kernel,
                        cx.input.target.name()
                    ),
                    "install the distribution's standard kernel in the guest (e.g. `yum install kernel`) \
                     and boot that one",
                ));
            }
            if let Some(initrd) = &entry.initrd {
                fine &= check_initrd(cx, &what, initrd, release.as_deref(), report);
            }
        }
        Ok(None) => {
            fine = false;
            report.push(Finding::error(
                "boot.kernel",
                format!(
                    "{what}: kernel {} does not exist in the guest",
                    entry.kernel
                ),
                format!(
                    "point the entry at an installed kernel ({}) or install one",
                    installed_kernels(&cx.guest)
                ),
            ));
        }
        Err(e) => {
            fine = false;
            report.push(unreadable("boot.kernel", &what, &e));
        }
    }
    fine &= check_root_arg(cx, &what, &entry.cmdline, report);
    if fine {
        let initrd = match &entry.initrd {
            Some(initrd) => format!("initrd {initrd}"),
            None => "no initrd".to_owned(),
        };
        report.push(Finding::ok(
            "boot.entry",
            format!(
                "{what}: kernel {} and {initrd} present, root= names the new filesystem",
                entry.kernel
            ),
        ));
    }
}

/// Returns whether the initrd is there.
fn check_initrd(
    cx: &Context,
    what: &str,
    initrd: &str,
    release: Option<&str>,
    report: &mut Report,
) -> bool {
    match cx.guest.resolve(initrd) {
        Ok(Some(_)) => true,
        Ok(None) => {
            let fix = match release {
                Some(release) => initrd_rebuild_hint(&cx.guest, initrd, release, &[]),
                None => format!("create {initrd} with the guest's initramfs tool"),
            };
            report.push(Finding::error(
                "boot.initrd",
                format!("{what}: initrd {initrd} does not exist in the guest"),
                fix,
            ));
            false
        }
        Err(e) => {
            report.push(unreadable("boot.initrd", what, &e));
            false
        }
    }
}

/// The kernel's `root=` must name the new filesystem, or the initrd waits for a
/// disk that never appears ("could not find filesystem '/dev/root'").
/// Returns whether it does.
fn check_root_arg(cx: &Context, what: &str, cmdline: &str, report: &mut Report) -> bool {
    let input = cx.input;
    let fix = format!("boot with root=UUID={}", input.fs_uuid);
    // The kernel takes the last root= it is given.
    let Some(root) = cmdline
        .split_whitespace()
        .rev()
        .find_map(|arg| arg.strip_prefix("root="))
    else {
        report.push(Finding::warning(
            "boot.root-arg",
            format!("{what}: the kernel command line has no root= (only an initrd that has the root device built in can boot)"),
            fix,
        ));
        return false;
    };
    if names_new_root(input, root) {
        return true;
    }
    let why = if is_xen_device(root) {
        format!("a Xen disk that does not exist on {}", input.target.name())
    } else {
        "not the new root filesystem".to_owned()
    };
    report.push(Finding::error(
        "boot.root-arg",
        format!(
            "{what}: root={root} is {why} (the new root is {})",
            describe_new_root(input)
        ),
        fix,
    ));
    false
}

fn unreadable(id: &'static str, what: &str, e: &ResolveError) -> Finding {
    Finding::error(
        id,
        format!("{what}: cannot look up {e}"),
        "check the path in the guest",
    )
}

/// "vmlinuz-a, vmlinuz-b" from /boot, for fixes.
fn installed_kernels(guest: &GuestRoot) -> String {
    let kernels: Vec<String> = guest
        .list_dir("/boot")
        .unwrap_or_default()
        .into_iter()
        .filter(|name| name.starts_with("vmlinuz") || name.starts_with("vmlinux"))
        .map(|name| format!("/boot/{name}"))
        .collect();
    if kernels.is_empty() {
        "/boot has none".to_owned()
    } else {
        format!("installed: {}", kernels.join(", "))
    }
}

/// `menuentry 'Title' ... {` blocks with `linux` and `initrd` lines.
fn parse_grub2(text: &str) -> Vec<BootEntry> {
    let mut entries = Vec::new();
    let mut current: Option<BootEntry> = None;
    for line in text.lines().map(str::trim) {
        let (command, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match command {
            "menuentry" => {
                finish(&mut entries, current.take());
                current = Some(new_entry(first_word_or_quoted(args)));
            }
            "linux" | "linux16" | "linuxefi" => set_kernel(current.as_mut(), args),
            "initrd" | "initrd16" | "initrdefi" => set_initrd(current.as_mut(), args),
            "}" => finish(&mut entries, current.take()),
            _ => {}
        }
    }
    finish(&mut entries, current);
    entries
}

/// `title` blocks with `kernel` and `initrd` lines (GRUB 0.97).
fn parse_legacy(text: &str) -> Vec<BootEntry> {
    let mut entries = Vec::new();
    let mut current: Option<BootEntry> = None;
    for line in text.lines().map(str::trim) {
        let (command, args) = line
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or((line, ""));
        match command {
            "title" => {
                finish(&mut entries, current.take());
                current = Some(new_entry(args.trim().to_owned()));
            }
            "kernel" => set_kernel(current.as_mut(), args),
            "initrd" => set_initrd(current.as_mut(), args),
            _ => {}
        }
    }
    finish(&mut entries, current);
    entries
}

fn new_entry(title: String) -> BootEntry {
    BootEntry {
        title,
        kernel: String::new(),
        initrd: None,
        cmdline: String::new(),
    }
}

/// Keeps an entry that has a kernel.
fn finish(entries: &mut Vec<BootEntry>, entry: Option<BootEntry>) {
    entries.extend(entry.filter(|e| !e.kernel.is_empty()));
}

fn set_kernel(entry: Option<&mut BootEntry>, args: &str) {
    let Some(entry) = entry else { return };
    let mut words = args.split_whitespace();
    if let Some(path) = words.next() {
        entry.kernel = strip_device(path).to_owned();
        entry.cmdline = words.collect::<Vec<_>>().join(" ");
    }
}

/// GRUB 2 may list several images (microcode first); the last is the main one.
fn set_initrd(entry: Option<&mut BootEntry>, args: &str) {
    if let (Some(entry), Some(path)) = (entry, args.split_whitespace().last()) {
        entry.initrd = Some(strip_device(path).to_owned());
    }
}

/// `(hd0,msdos1)/boot/vmlinuz` → `/boot/vmlinuz`: the disk is the one we check.
fn strip_device(path: &str) -> &str {
    match path.strip_prefix('(').and_then(|p| p.split_once(')')) {
        Some((_, rest)) => rest,
        None => path,
    }
}

/// The menuentry title: its first argument, quoted or not.
fn first_word_or_quoted(args: &str) -> String {
    let args = args.trim_start();
    for quote in ['\'', '"'] {
        if let Some(rest) = args.strip_prefix(quote) {
            return rest.split(quote).next().unwrap_or(rest).to_owned();
        }
    }
    args.split_whitespace().next().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub2_menuentries_including_submenus() {
        let cfg = r#"
set default=0
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple' {
	load_video
	insmod ext2
	linux	/boot/vmlinuz-6.1.0-18-amd64 root=UUID=abc ro quiet
	initrd	/boot/intel-ucode.img /boot/initrd.img-6.1.0-18-amd64
}
submenu 'Advanced options' {
	menuentry "Debian, recovery" {
		linux (hd0,msdos1)/vmlinuz root=/dev/sda1 ro single
	}
}
"#;
        let entries = parse_grub2(cfg);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            BootEntry {
                title: "Debian GNU/Linux".into(),
                kernel: "/boot/vmlinuz-6.1.0-18-amd64".into(),
                initrd: Some("/boot/initrd.img-6.1.0-18-amd64".into()),
                cmdline: "root=UUID=abc ro quiet".into(),
            }
        );
        assert_eq!(entries[1].title, "Debian, recovery");
        assert_eq!(entries[1].kernel, "/vmlinuz");
        assert_eq!(entries[1].initrd, None);
    }

    #[test]
    fn legacy_grub_conf() {
        let conf = "default=0\ntimeout=3\ntitle CentOS (2.6.18-348.3.1.el5)\n\troot (hd0,0)\n\
                    \tkernel /boot/vmlinuz-2.6.18-348.3.1.el5 root=/dev/sda1 ro enforcing=0\n\
                    \tinitrd /boot/initrd-2.6.18-348.3.1.el5.img\ntitle no kernel\n";
        let entries = parse_legacy(conf);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].title, "CentOS (2.6.18-348.3.1.el5)");
        assert_eq!(entries[0].kernel, "/boot/vmlinuz-2.6.18-348.3.1.el5");
        assert_eq!(entries[0].cmdline, "root=/dev/sda1 ro enforcing=0");
        assert_eq!(
            entries[0].initrd.as_deref(),
            Some("/boot/initrd-2.6.18-348.3.1.el5.img")
        );
    }
}
