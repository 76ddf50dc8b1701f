//! SysV `/etc/inittab`: the default runlevel and the getty lines.
//!
//! ```
//! use rehost_sdk::files::inittab::{Entry, Inittab};
//! let mut inittab = Inittab::parse("id:3:initdefault:\nxvc0:2345:respawn:/sbin/mingetty xvc0\n");
//! inittab.remove_where(|e| e.runs_getty_on("xvc0"));
//! inittab.add(Entry::new("S0", "2345", "respawn", "/sbin/agetty -L 115200 ttyS0 vt100"));
//! assert_eq!(inittab.render(), "id:3:initdefault:\nS0:2345:respawn:/sbin/agetty -L 115200 ttyS0 vt100\n");
//! ```

use super::{Document, Record};

/// An inittab file; comments and blank lines are kept verbatim.
pub type Inittab = Document<Entry>;

/// One `id:runlevels:action:process` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    id: String,
    runlevels: String,
    action: String,
    process: String,
}

impl Entry {
    /// A new entry, e.g. `Entry::new("S0", "2345", "respawn", "/sbin/agetty -L 115200 ttyS0 vt100")`.
    pub fn new(id: &str, runlevels: &str, action: &str, process: &str) -> Self {
        Entry {
            id: id.to_string(),
            runlevels: runlevels.to_string(),
            action: action.to_string(),
            process: process.to_string(),
        }
    }

    /// The unique id (`id`, `si`, `1`, `xvc0`...).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The runlevels the entry applies to (`2345`; for `initdefault`, the default runlevel).
    pub fn runlevels(&self) -> &str {
        &self.runlevels
    }

    /// What init does (`respawn`, `wait`, `initdefault`...).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The command line init runs (may contain `:`).
    pub fn process(&self) -> &str {
        &self.process
    }

    /// Whether this entry runs a getty (mingetty, agetty, getty...) on `tty` (`ttyS0` or `/dev/ttyS0`).
    pub fn runs_getty_on(&self, tty: &str) -> bool {
        let mut words = self.process.split_whitespace();
        let is_getty = words
            .next()
            .is_some_and(|cmd| cmd.rsplit('/').next().unwrap_or(cmd).contains("getty"));
        let tty = tty.strip_prefix("/dev/").unwrap_or(tty);
        is_getty && words.any(|w| w.strip_prefix("/dev/").unwrap_or(w) == tty)
    }
}

impl Record for Entry {
    fn parse(text: &str) -> Option<Self> {
        if text.trim_start().starts_with('#') {
            return None;
        }
        let mut fields = text.splitn(4, ':');
        let id = fields.next()?;
        let runlevels = fields.next()?;
        let action = fields.next()?;
        // A missing process field (`id:3:initdefault`) is tolerated, as init does.
        let process = fields.next().unwrap_or_default();
        Some(Entry::new(id, runlevels, action, process))
    }

    fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.id, self.runlevels, self.action, self.process
        )
    }
}

impl Document<Entry> {
    /// The entry with this id.
    pub fn find(&self, id: &str) -> Option<&Entry> {
        self.records().find(|e| e.id == id)
    }

    /// The runlevel of the `initdefault` entry (`3` in `id:3:initdefault:`).
    pub fn default_runlevel(&self) -> Option<&str> {
        self.records()
            .find(|e| e.action == "initdefault")
            .map(Entry::runlevels)
    }

    /// Sets the default runlevel, adding `id:LEVEL:initdefault:` before the first entry if there is none.
    pub fn set_default_runlevel(&mut self, level: &str) {
        let changed = self.update_where(
            |e| e.action == "initdefault",
            |e| {
                e.runlevels = level.to_string();
            },
        );
        if changed == 0 {
            let entry = Entry::new("id", level, "initdefault", "");
            match self.position(|_| true) {
                Some(first) => self.insert(first, entry),
                None => self.push(entry),
            }
        }
    }

    /// Removes the entries with this id; returns how many went.
    pub fn remove_id(&mut self, id: &str) -> usize {
        self.remove_where(|e| e.id == id)
    }

    /// Appends `entry` unless one with the same id exists; returns whether it was added.
    pub fn add(&mut self, entry: Entry) -> bool {
        if self.find(&entry.id).is_some() {
            return false;
        }
        self.push(entry);
        true
    }

    /// The entries running a getty on `tty`.
    pub fn gettys_on<'a>(&'a self, tty: &'a str) -> impl Iterator<Item = &'a Entry> {
        self.records().filter(move |e| e.runs_getty_on(tty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's ORIGINAL (XEN) SAMPLE, verbatim (trailing spaces included).
    const SEED_XEN: &str = r#"# inittab       This file describes how the INIT process should set up
#               the system in a certain run-level.
#
# Author:       Miquel van Smoorenburg, <miquels@drinkel.nl.mugnet.org>
#               Modified for RHS Linux by Marc Ewing and Donnie Barnes
#
# Default runlevel. The runlevels used by RHS are:
#   0 - halt (Do NOT set initdefault to this)
#   1 - Single user mode
#   2 - Multiuser, without NFS (The same as 3, if you do not have networking)
#   3 - Full multiuser mode
#   4 - unused
#   5 - X11
#   6 - reboot (Do NOT set initdefault to this)
# 
id:3:initdefault:

# System initialization.
si::sysinit:/etc/rc.d/rc.sysinit

l0:0:wait:/etc/rc.d/rc 0
l1:1:wait:/etc/rc.d/rc 1
l2:2:wait:/etc/rc.d/rc 2
l3:3:wait:/etc/rc.d/rc 3
l4:4:wait:/etc/rc.d/rc 4
l5:5:wait:/etc/rc.d/rc 5
l6:6:wait:/etc/rc.d/rc 6

# Trap CTRL-ALT-DELETE
ca::ctrlaltdel:/sbin/shutdown -t3 -r now

# When our UPS tells us power has failed, assume we have a few minutes
# of power left.  Schedule a shutdown for 2 minutes from now.
# This does, of course, assume you have powerd installed and your
# UPS connected and working correctly.  
pf::powerfail:/sbin/shutdown -f -h +2 "Power Failure; System Shutting Down"

# If power was restored before the shutdown kicked in, cancel it.
pr:12345:powerokwait:/sbin/shutdown -c "Power Restored; Shutdown Cancelled"


# Run gettys in standard runlevels
1:2345:respawn:/sbin/mingetty tty1
2:2345:respawn:/sbin/mingetty tty2
3:2345:respawn:/sbin/mingetty tty3
4:2345:respawn:/sbin/mingetty tty4
5:2345:respawn:/sbin/mingetty tty5
6:2345:respawn:/sbin/mingetty tty6

# Run xdm in runlevel 5
x:5:respawn:/etc/X11/prefdm -nodaemon
xvc0:2345:respawn:/sbin/mingetty xvc0
"#;

    #[test]
    fn round_trips_the_seed_sample() {
        assert_eq!(Inittab::parse(SEED_XEN).render(), SEED_XEN);
        let no_newline = SEED_XEN.trim_end_matches('\n');
        assert_eq!(Inittab::parse(no_newline).render(), no_newline);
    }

    #[test]
    fn seed_xen_to_kvm() {
        let mut inittab = Inittab::parse(SEED_XEN);
        assert_eq!(inittab.default_runlevel(), Some("3"));
        inittab.set_default_runlevel("5");
        assert_eq!(inittab.remove_where(|e| e.runs_getty_on("xvc0")), 1);
        let expected = SEED_XEN
            .replace("id:3:initdefault:", "id:5:initdefault:")
            .replace("xvc0:2345:respawn:/sbin/mingetty xvc0\n", "");
        assert_eq!(inittab.render(), expected);
        assert_eq!(inittab.default_runlevel(), Some("5"));
    }

    #[test]
    fn parses_fields_and_keeps_colons_in_process() {
        let inittab = Inittab::parse(SEED_XEN);
        let pf = inittab.find("pf").expect("powerfail entry");
        assert_eq!((pf.runlevels(), pf.action()), ("", "powerfail"));
        assert_eq!(
            pf.process(),
            "/sbin/shutdown -f -h +2 \"Power Failure; System Shutting Down\""
        );
        let odd = Inittab::parse("x:5:respawn:/bin/sh -c 'a:b'\n");
        assert_eq!(odd.find("x").map(Entry::process), Some("/bin/sh -c 'a:b'"));
        assert_eq!(inittab.records().count(), 20);
    }

    #[test]
    fn finds_gettys_by_tty() {
        let inittab = Inittab::parse(SEED_XEN);
        let ids: Vec<_> = inittab.gettys_on("tty1").map(Entry::id).collect();
        assert_eq!(ids, ["1"]);
        assert_eq!(inittab.gettys_on("/dev/xvc0").count(), 1);
        assert_eq!(inittab.gettys_on("ttyS0").count(), 0);
        assert_eq!(inittab.gettys_on("tty").count(), 0, "whole tty names only");
        let x = inittab.find("x").expect("prefdm entry");
        assert!(!x.runs_getty_on("tty1"));
    }

    #[test]
    fn adds_a_serial_getty_once() {
        let mut inittab = Inittab::parse(SEED_XEN);
        let s0 = Entry::new(
            "S0",
            "2345",
            "respawn",
            "/sbin/agetty -L 115200 ttyS0 vt100",
        );
        assert!(inittab.add(s0.clone()));
        assert!(!inittab.add(s0));
        let expected = format!("{SEED_XEN}S0:2345:respawn:/sbin/agetty -L 115200 ttyS0 vt100\n");
        assert_eq!(inittab.render(), expected);
        assert_eq!(inittab.gettys_on("ttyS0").count(), 1);
    }

    #[test]
    fn removes_by_id() {
        let mut inittab = Inittab::parse(SEED_XEN);
        assert_eq!(inittab.remove_id("xvc0"), 1);
        assert_eq!(inittab.remove_id("xvc0"), 0);
        assert_eq!(
            inittab.render(),
            SEED_XEN.replace("xvc0:2345:respawn:/sbin/mingetty xvc0\n", "")
        );
    }

    #[test]
    fn adds_initdefault_when_missing() {
        let mut inittab = Inittab::parse("# header\n\nsi::sysinit:/etc/rc.d/rc.sysinit\n");
        assert_eq!(inittab.default_runlevel(), None);
        inittab.set_default_runlevel("3");
        assert_eq!(
            inittab.render(),
            "# header\n\nid:3:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n"
        );
        let mut empty = Inittab::parse("");
        empty.set_default_runlevel("2");
        assert_eq!(empty.render(), "id:2:initdefault:\n");
    }

    #[test]
    fn tolerates_the_seed_prose_form_without_trailing_colon() {
        // The seed's prose writes "id:3:initdefault" with no process field.
        let mut inittab = Inittab::parse("id:3:initdefault");
        assert_eq!(inittab.default_runlevel(), Some("3"));
        inittab.set_default_runlevel("5");
        assert_eq!(inittab.render(), "id:5:initdefault:");
        assert_eq!(Inittab::parse("no colons here\n").records().count(), 0);
    }
}
