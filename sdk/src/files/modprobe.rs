//! `/etc/modprobe.conf` and `/etc/modprobe.d/*.conf`: swap Xen driver aliases for KVM ones.
//!
//! ```
//! use rehost_sdk::files::modprobe::{Modprobe, XEN_MODULES};
//! let mut conf = Modprobe::parse("alias scsi_hostadapter xenblk\nalias eth0 xennet\n");
//! assert_eq!(conf.aliases_to(&XEN_MODULES).count(), 2);
//! conf.set_alias_module("eth0", "e1000");
//! conf.remove_alias("scsi_hostadapter");
//! assert_eq!(conf.render(), "alias eth0 e1000\n");
//! ```

use super::{Document, Record, Words};

/// A modprobe configuration file; comments are kept verbatim.
pub type Modprobe = Document<Directive>;

/// The Xen paravirtual drivers (old and new names) that KVM guests cannot use.
pub const XEN_MODULES: [&str; 4] = ["xenblk", "xennet", "xen-blkfront", "xen-netfront"];

/// One command: `alias`, `options`, `install`, `remove`, `blacklist`, `softdep`...; may span `\` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    words: Words,
}

/// Module names compare with `-` and `_` as the same character, as kmod does.
fn same_module(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

impl Directive {
    /// A new directive, e.g. `Directive::new("options", &["snd-card-0", "index=0"])`.
    pub fn new(command: &str, args: &[&str]) -> Self {
        let mut words = Words::parse(command);
        for arg in args {
            words.push(arg);
        }
        Directive { words }
    }

    /// The command word (`alias`, `options`, ...).
    pub fn command(&self) -> &str {
        self.words.get(0).unwrap_or_default()
    }

    /// The words after the command.
    pub fn args(&self) -> impl Iterator<Item = &str> {
        self.words.iter().skip(1)
    }

    /// For `alias NAME MODULE`: the name (`eth0`, `scsi_hostadapter`).
    pub fn alias_name(&self) -> Option<&str> {
        self.alias_word(1)
    }

    /// For `alias NAME MODULE`: the module (`xennet`, `e1000`).
    pub fn alias_module(&self) -> Option<&str> {
        self.alias_word(2)
    }

    fn alias_word(&self, index: usize) -> Option<&str> {
        (self.command() == "alias")
            .then(|| self.words.get(index))
            .flatten()
    }
}

impl Record for Directive {
    fn parse(text: &str) -> Option<Self> {
        let words = Words::parse(text);
        let first = words.get(0)?;
        (!first.starts_with('#')).then_some(Directive { words })
    }

    fn render(&self) -> String {
        self.words.to_string()
    }

    fn continues(line: &str) -> bool {
        line.ends_with('\\')
    }
}

impl Document<Directive> {
    /// All `alias` directives.
    pub fn aliases(&self) -> impl Iterator<Item = &Directive> {
        self.records().filter(|d| d.command() == "alias")
    }

    /// The aliases whose module is one of `modules` (`-`/`_` insensitive).
    pub fn aliases_to<'a>(&'a self, modules: &'a [&str]) -> impl Iterator<Item = &'a Directive> {
        self.aliases().filter(|d| {
            d.alias_module()
                .is_some_and(|m| modules.iter().any(|x| same_module(m, x)))
        })
    }

    /// Points every alias named `name` at `module`; returns how many changed.
    pub fn set_alias_module(&mut self, name: &str, module: &str) -> usize {
        self.update_where(
            |d| d.alias_name() == Some(name),
            |d| {
                d.words.set(2, module);
            },
        )
    }

    /// Removes every alias named `name`; returns how many went.
    pub fn remove_alias(&mut self, name: &str) -> usize {
        self.remove_where(|d| d.alias_name() == Some(name))
    }

    /// Adds `alias NAME MODULE` after the last alias (at the end if there is none).
    pub fn add_alias(&mut self, name: &str, module: &str) {
        let alias = Directive::new("alias", &[name, module]);
        match self.rposition(|d| d.command() == "alias") {
            Some(last) => self.insert(last + 1, alias),
            None => self.push(alias),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's ORIGINAL (XEN) SAMPLE of /etc/modprobe.conf.
    const SEED_XEN: &str = "alias scsi_hostadapter xenblk\nalias eth0 xennet\n";

    /// The seed's REPLACEMENT (KVM) SAMPLE, verbatim (the eth0 line's trailing space included).
    const SEED_KVM: &str = r#"# Necessary for KVM/OpenStack
alias eth0 e1000 
# All these below are for VirtualBox (SoundCard)
alias scsi_hostadapter ata_piix
alias scsi_hostadapter1 ahci
install pciehp /sbin/modprobe -q --ignore-install acpiphp; /bin/true
alias snd-card-0 snd-intel8x0
options snd-card-0 index=0
options snd-intel8x0 index=0
remove snd-intel8x0 { /usr/sbin/alsactl store 0 >/dev/null 2>&1 || : ; }; /sbin/modprobe -r --ignore-remove snd-intel8x0
"#;

    #[test]
    fn round_trips_the_seed_samples() {
        for sample in [SEED_XEN, SEED_KVM, SEED_KVM.trim_end_matches('\n')] {
            assert_eq!(Modprobe::parse(sample).render(), sample);
        }
    }

    #[test]
    fn finds_xen_aliases_in_the_seed_sample() {
        let conf = Modprobe::parse(SEED_XEN);
        let found: Vec<_> = conf
            .aliases_to(&XEN_MODULES)
            .map(|d| (d.alias_name(), d.alias_module()))
            .collect();
        assert_eq!(
            found,
            [
                (Some("scsi_hostadapter"), Some("xenblk")),
                (Some("eth0"), Some("xennet"))
            ]
        );
        assert_eq!(
            Modprobe::parse(SEED_KVM).aliases_to(&XEN_MODULES).count(),
            0
        );
        let underscored = Modprobe::parse("alias eth0 xen_netfront\n");
        assert_eq!(underscored.aliases_to(&XEN_MODULES).count(), 1);
    }

    #[test]
    fn seed_xen_sample_becomes_the_kvm_sample() {
        // Start from the XEN sample whose eth0 line carries the KVM sample's trailing space.
        let mut conf = Modprobe::parse("alias scsi_hostadapter xenblk\nalias eth0 xennet \n");
        assert_eq!(conf.remove_alias("scsi_hostadapter"), 1);
        assert_eq!(conf.set_alias_module("eth0", "e1000"), 1);
        conf.insert_text(0, "# Necessary for KVM/OpenStack");
        conf.add_alias("scsi_hostadapter", "ata_piix");
        conf.add_alias("scsi_hostadapter1", "ahci");
        let sound = conf
            .position(|d| d.alias_name() == Some("scsi_hostadapter"))
            .expect("alias just added");
        conf.insert_text(sound, "# All these below are for VirtualBox (SoundCard)");
        conf.push(Directive::new(
            "install",
            &[
                "pciehp",
                "/sbin/modprobe",
                "-q",
                "--ignore-install",
                "acpiphp;",
                "/bin/true",
            ],
        ));
        conf.push(Directive::new("alias", &["snd-card-0", "snd-intel8x0"]));
        conf.push(Directive::new("options", &["snd-card-0", "index=0"]));
        conf.push(Directive::new("options", &["snd-intel8x0", "index=0"]));
        conf.push_text("remove snd-intel8x0 { /usr/sbin/alsactl store 0 >/dev/null 2>&1 || : ; }; /sbin/modprobe -r --ignore-remove snd-intel8x0");
        assert_eq!(conf.render(), SEED_KVM);
    }

    #[test]
    fn replaces_aliases_in_place() {
        let mut conf = Modprobe::parse(SEED_XEN);
        assert_eq!(conf.set_alias_module("scsi_hostadapter", "ata_piix"), 1);
        assert_eq!(conf.set_alias_module("eth0", "e1000"), 1);
        assert_eq!(conf.set_alias_module("eth9", "e1000"), 0);
        assert_eq!(
            conf.render(),
            "alias scsi_hostadapter ata_piix\nalias eth0 e1000\n"
        );
    }

    #[test]
    fn adds_alias_after_the_last_alias() {
        let mut conf = Modprobe::parse("# head\nalias eth0 e1000\noptions e1000 x=1\n");
        conf.add_alias("scsi_hostadapter", "virtio_blk");
        assert_eq!(
            conf.render(),
            "# head\nalias eth0 e1000\nalias scsi_hostadapter virtio_blk\noptions e1000 x=1\n"
        );
        let mut empty = Modprobe::parse("# nothing yet");
        empty.add_alias("eth0", "virtio_net");
        assert_eq!(empty.render(), "# nothing yet\nalias eth0 virtio_net\n");
    }

    #[test]
    fn reads_every_directive_kind_and_continuations() {
        let text = "\
# comment
blacklist xen_blkfront
install foo /sbin/modprobe bar \\
    && /bin/true
alias  eth1\txennet
softdep ahci pre: libahci
";
        let mut conf = Modprobe::parse(text);
        assert_eq!(conf.render(), text);
        let commands: Vec<_> = conf.records().map(Directive::command).collect();
        assert_eq!(commands, ["blacklist", "install", "alias", "softdep"]);
        let install = conf.records().nth(1).expect("install directive");
        assert_eq!(install.args().last(), Some("/bin/true"));
        assert_eq!(install.alias_name(), None);
        assert_eq!(conf.set_alias_module("eth1", "virtio_net"), 1);
        assert_eq!(conf.render(), text.replace("xennet", "virtio_net"));
    }
}
