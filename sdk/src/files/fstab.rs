//! `/etc/fstab`: find, re-point and drop mount entries.
//!
//! ```
//! use rehost_sdk::files::fstab::Fstab;
//! let mut fstab = Fstab::parse("/dev/xvda1 / ext3 defaults 1 1\n");
//! fstab.set_spec("/", "UUID=0b9f2c4e-8a4e-4c8e-9a57-2f1d0c6c1e11");
//! assert_eq!(fstab.render(), "UUID=0b9f2c4e-8a4e-4c8e-9a57-2f1d0c6c1e11 / ext3 defaults 1 1\n");
//! ```

use super::{Document, Record, Words};

/// An fstab file; lines that are not entries are kept verbatim.
pub type Fstab = Document<Entry>;

/// One mount entry: `spec file vfstype options [freq [passno]]` (fstab(5) field names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    words: Words,
}

impl Entry {
    /// The device: `/dev/xvda1`, `UUID=...`, `LABEL=...`, `proc`, ...
    pub fn spec(&self) -> &str {
        self.field(0)
    }

    /// The mount point (`none` or `swap` for swap).
    pub fn file(&self) -> &str {
        self.field(1)
    }

    /// The filesystem type.
    pub fn vfstype(&self) -> &str {
        self.field(2)
    }

    /// The mount options, comma-separated as written.
    pub fn options(&self) -> &str {
        self.field(3)
    }

    /// The dump frequency; 0 when the field is missing.
    pub fn freq(&self) -> u32 {
        self.number(4)
    }

    /// The fsck pass; 0 when the field is missing.
    pub fn passno(&self) -> u32 {
        self.number(5)
    }

    /// Whether the device is a Xen paravirtual disk (`/dev/xvd*`), which KVM guests do not have.
    pub fn is_xen_device(&self) -> bool {
        self.spec().starts_with("/dev/xvd")
    }

    fn field(&self, index: usize) -> &str {
        self.words.get(index).unwrap_or_default()
    }

    fn number(&self, index: usize) -> u32 {
        self.words
            .get(index)
            .and_then(|w| w.parse().ok())
            .unwrap_or(0)
    }
}

impl Record for Entry {
    fn parse(text: &str) -> Option<Self> {
        let words = Words::parse(text);
        let numbers_ok = words.iter().skip(4).all(|w| w.parse::<u32>().is_ok());
        let is_entry =
            (4..=6).contains(&words.len()) && !words.get(0)?.starts_with('#') && numbers_ok;
        is_entry.then_some(Entry { words })
    }

    fn render(&self) -> String {
        self.words.to_string()
    }
}

impl Document<Entry> {
    /// The first entry mounted at `mount_point`.
    pub fn find(&self, mount_point: &str) -> Option<&Entry> {
        self.records().find(|e| e.file() == mount_point)
    }

    /// Sets the device of every entry mounted at `mount_point`; false if there is none.
    pub fn set_spec(&mut self, mount_point: &str, spec: &str) -> bool {
        self.update_where(
            |e| e.file() == mount_point,
            |e| {
                e.words.set(0, spec);
            },
        ) > 0
    }

    /// Renames a device everywhere it appears (swap lines included); returns how many entries changed.
    pub fn replace_spec(&mut self, old: &str, new: &str) -> usize {
        self.update_where(
            |e| e.spec() == old,
            |e| {
                e.words.set(0, new);
            },
        )
    }

    /// Removes every entry mounted at `mount_point`; returns how many went.
    pub fn remove_mount(&mut self, mount_point: &str) -> usize {
        self.remove_where(|e| e.file() == mount_point)
    }

    /// The entries whose device is a Xen disk (`/dev/xvd*`), in file order.
    pub fn xen_entries(&self) -> impl Iterator<Item = &Entry> {
        self.records().filter(|e| e.is_xen_device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typical EC2 CentOS 5 fstab: tabs, spaces, comments, a missing passno.
    const EC2: &str = "\
#
# /etc/fstab
# Created by anaconda
#
/dev/xvda1\t/\text3\tdefaults,errors=remount-ro\t1 1
LABEL=ephemeral0   /mnt      ext3    defaults,nofail   0 2
/dev/xvda3  swap  swap  defaults  0
none            /proc           proc    defaults        0 0
none /dev/pts devpts gid=5,mode=620
this line is not an fstab entry at all
/dev/sda2 /data ext4 defaults 0 x
UUID=2d3c9b1e-41c4-4a22-9d5c-0f5d8a1e7c1a /boot ext2 defaults 1 2
";

    #[test]
    fn round_trips_untouched() {
        assert_eq!(Fstab::parse(EC2).render(), EC2);
        let no_newline = EC2.trim_end_matches('\n');
        assert_eq!(Fstab::parse(no_newline).render(), no_newline);
    }

    #[test]
    fn parses_fields_with_defaults_for_missing_numbers() {
        let fstab = Fstab::parse(EC2);
        let root = fstab.find("/").expect("root entry");
        assert_eq!(
            (root.spec(), root.vfstype(), root.options()),
            ("/dev/xvda1", "ext3", "defaults,errors=remount-ro")
        );
        assert_eq!((root.freq(), root.passno()), (1, 1));
        let swap = fstab.find("swap").expect("swap entry");
        assert_eq!((swap.freq(), swap.passno()), (0, 0));
        let pts = fstab.find("/dev/pts").expect("devpts entry");
        assert_eq!((pts.options(), pts.freq()), ("gid=5,mode=620", 0));
        assert_eq!(
            fstab.find("/mnt").map(Entry::spec),
            Some("LABEL=ephemeral0")
        );
        assert_eq!(fstab.find("/data"), None, "non-numeric passno is no entry");
        assert_eq!(fstab.records().count(), 6);
    }

    #[test]
    fn sets_root_spec_keeping_tabs() {
        let mut fstab = Fstab::parse(EC2);
        assert!(fstab.set_spec("/", "UUID=0b9f2c4e-8a4e-4c8e-9a57-2f1d0c6c1e11"));
        assert!(!fstab.set_spec("/nowhere", "x"));
        let expected = EC2.replace(
            "/dev/xvda1\t/\t",
            "UUID=0b9f2c4e-8a4e-4c8e-9a57-2f1d0c6c1e11\t/\t",
        );
        assert_eq!(fstab.render(), expected);
    }

    #[test]
    fn seed_root_line_becomes_sda1() {
        // The seed's note: "Ensure that root (/) is set to sda".
        let mut fstab = Fstab::parse(
            "/dev/xvda1         /             ext3     defaults,errors=remount-ro 0 0\n",
        );
        assert_eq!(fstab.replace_spec("/dev/xvda1", "/dev/sda1"), 1);
        assert_eq!(
            fstab.render(),
            "/dev/sda1         /             ext3     defaults,errors=remount-ro 0 0\n"
        );
    }

    #[test]
    fn lists_only_xen_devices() {
        let fstab = Fstab::parse(EC2);
        let xen: Vec<_> = fstab.xen_entries().map(Entry::file).collect();
        assert_eq!(xen, ["/", "swap"]);
        let kvm =
            Fstab::parse("/dev/sda1 / ext3 defaults 0 0\n/dev/xvde1 /mnt ext3 defaults 0 0\n");
        let xen: Vec<_> = kvm.xen_entries().map(Entry::spec).collect();
        assert_eq!(xen, ["/dev/xvde1"]);
    }

    #[test]
    fn removes_entries_by_mount_point() {
        let mut fstab = Fstab::parse(EC2);
        assert_eq!(fstab.remove_mount("/mnt"), 1);
        assert_eq!(fstab.remove_mount("/mnt"), 0);
        let expected = EC2.replace(
            "LABEL=ephemeral0   /mnt      ext3    defaults,nofail   0 2\n",
            "",
        );
        assert_eq!(fstab.render(), expected);
    }
}
