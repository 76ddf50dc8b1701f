//! GRUB legacy `grub.conf` / `menu.lst`: global settings, `title` stanzas and
//! kernel command lines.
//!
//! ```
//! use rehost_sdk::files::grub_legacy::GrubConf;
//! let mut conf = GrubConf::parse(
//!     "default=0\ntimeout=5\ntitle CentOS\n\troot (hd0,0)\n\tkernel /vmlinuz root=/dev/xvda1 console=hvc0\n",
//! );
//! conf.edit_kernel(0, |kernel| {
//!     kernel.set_arg("root", "/dev/sda1");
//!     kernel.remove_arg("console=hvc0");
//!     kernel.add_arg("console=ttyS0,115200");
//! });
//! assert_eq!(conf.stanzas()[0].kernel_args(), ["root=/dev/sda1", "console=ttyS0,115200"]);
//! ```

use std::ops::Range;

use super::{Document, Line, Record, Words};

/// A GRUB legacy configuration; comments and blank lines are kept verbatim.
pub type GrubConf = Document<Command>;

/// One command line: `keyword value` or `keyword=value` (`default=0`, `kernel /vmlinuz ro`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    indent: String,
    keyword: String,
    /// What joins keyword and value: spaces, `=`, or nothing (`hiddenmenu`).
    separator: String,
    args: Words,
}

impl Command {
    /// A new unindented `keyword value` command (just `keyword` when `value` is empty).
    pub fn new(keyword: &str, value: &str) -> Self {
        let separator = if value.is_empty() { "" } else { " " };
        Command {
            indent: String::new(),
            keyword: keyword.to_string(),
            separator: separator.to_string(),
            args: Words::parse(value),
        }
    }

    /// The command name (`default`, `title`, `kernel`...).
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// Everything after the keyword as written, without trailing whitespace.
    pub fn value(&self) -> String {
        self.args.to_string().trim_end().to_string()
    }

    /// The whitespace-separated words of the value (for `kernel`: the path, then the arguments).
    pub fn args(&self) -> impl Iterator<Item = &str> {
        self.args.iter()
    }

    /// For `kernel`: the value of argument `key` (`root` in `root=/dev/sda1`).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.kernel_args()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// For `kernel`: sets `key=value`, replacing the first such argument and dropping later ones.
    pub fn set_arg(&mut self, key: &str, value: &str) {
        let word = format!("{key}={value}");
        let prefix = format!("{key}=");
        let matches = self.arg_indices(|w| w == key || w.starts_with(&prefix));
        match matches.split_first() {
            Some((&first, rest)) => {
                for &index in rest.iter().rev() {
                    self.args.remove(index);
                }
                self.args.set(first, &word);
            }
            None => self.args.push(&word),
        }
    }

    /// For `kernel`: appends `word` (`console=ttyS0,115200`) unless it is already there.
    pub fn add_arg(&mut self, word: &str) {
        if !self.kernel_args().any(|w| w == word) {
            self.args.push(word);
        }
    }

    /// For `kernel`: removes `word` exactly, or every `word=...` when it has no `=`; returns how many.
    pub fn remove_arg(&mut self, word: &str) -> usize {
        let prefix = format!("{word}=");
        let matches =
            self.arg_indices(|w| w == word || (!word.contains('=') && w.starts_with(&prefix)));
        for &index in matches.iter().rev() {
            self.args.remove(index);
        }
        matches.len()
    }

    /// The kernel arguments: the words after the kernel path.
    fn kernel_args(&self) -> impl Iterator<Item = &str> {
        self.args.iter().skip(1)
    }

    /// Indices (into `args`) of the kernel arguments matching `pred`.
    fn arg_indices(&self, pred: impl Fn(&str) -> bool) -> Vec<usize> {
        self.args
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, w)| pred(w))
            .map(|(i, _)| i)
            .collect()
    }
}

impl Record for Command {
    fn parse(text: &str) -> Option<Self> {
        let body = text.trim_start_matches([' ', '\t']);
        if body.is_empty() || body.starts_with('#') {
            return None;
        }
        let keyword_len = body.find([' ', '\t', '=']).unwrap_or(body.len());
        let after_keyword = &body[keyword_len..];
        // GRUB legacy accepts `keyword value`, `keyword=value` and `keyword = value`.
        let spaced = after_keyword.trim_start_matches([' ', '\t']);
        let value = spaced.strip_prefix('=').unwrap_or(spaced);
        let value = value.trim_start_matches([' ', '\t']);
        Some(Command {
            indent: text[..text.len() - body.len()].to_string(),
            keyword: body[..keyword_len].to_string(),
            separator: after_keyword[..after_keyword.len() - value.len()].to_string(),
            args: Words::parse(value),
        })
    }

    fn render(&self) -> String {
        // A bare keyword (`hiddenmenu`) that gained a value needs a space before it.
        let separator = match self.separator.as_str() {
            "" if !self.args.is_empty() => " ",
            separator => separator,
        };
        format!("{}{}{separator}{}", self.indent, self.keyword, self.args)
    }
}

/// One `title` stanza: the title line and the lines up to the next title.
#[derive(Clone, Copy, Debug)]
pub struct Stanza<'a> {
    lines: &'a [Line<Command>],
}

impl<'a> Stanza<'a> {
    /// The menu title.
    pub fn title(&self) -> String {
        self.command("title")
            .map(Command::value)
            .unwrap_or_default()
    }

    /// The first command of this stanza named `keyword`.
    pub fn command(&self, keyword: &str) -> Option<&'a Command> {
        self.lines
            .iter()
            .filter_map(Line::record)
            .find(|c| c.keyword == keyword)
    }

    /// The `root` device (`(hd0,0)`).
    pub fn root(&self) -> Option<&'a str> {
        self.command("root")?.args().next()
    }

    /// The `kernel` line.
    pub fn kernel(&self) -> Option<&'a Command> {
        self.command("kernel")
    }

    /// The kernel image path (`/boot/vmlinuz-2.6.18-348.3.1.el5`).
    pub fn kernel_path(&self) -> Option<&'a str> {
        self.kernel()?.args().next()
    }

    /// The kernel command line arguments (`root=/dev/sda1`, `ro`...).
    pub fn kernel_args(&self) -> Vec<&'a str> {
        self.kernel()
            .map(|k| k.kernel_args().collect())
            .unwrap_or_default()
    }

    /// The `initrd` image path.
    pub fn initrd(&self) -> Option<&'a str> {
        self.command("initrd")?.args().next()
    }
}

/// One boot entry for [`new_config`].
#[derive(Clone, Copy, Debug)]
pub struct BootEntry<'a> {
    /// Menu title, e.g. `CentOS (2.6.18-348.3.1.el5)`.
    pub title: &'a str,
    /// GRUB device of `/boot`'s filesystem, e.g. `(hd0,0)`.
    pub root: &'a str,
    /// Kernel image path, e.g. `/boot/vmlinuz-2.6.18-348.3.1.el5`.
    pub kernel: &'a str,
    /// Kernel command line, e.g. `root=/dev/sda1 ro`.
    pub args: &'a str,
    /// Initial ramdisk path, if the kernel needs one.
    pub initrd: Option<&'a str>,
}

/// A new grub.conf laid out like the seed's sample: `default=0`, `timeout`, optional `splashimage`, stanzas.
pub fn new_config(timeout: u32, splashimage: Option<&str>, entries: &[BootEntry<'_>]) -> GrubConf {
    let mut lines = vec!["default=0".to_string(), format!("timeout={timeout}")];
    lines.extend(splashimage.map(|splash| format!("splashimage={splash}")));
    for entry in entries {
        lines.push(format!("title {}", entry.title));
        lines.push(format!("    root {}", entry.root));
        let kernel = format!("    kernel {} {}", entry.kernel, entry.args);
        lines.push(kernel.trim_end().to_string());
        lines.extend(entry.initrd.map(|initrd| format!("    initrd {initrd}")));
    }
    GrubConf::parse(&(lines.join("\n") + "\n"))
}

/// Whether `line` starts a stanza.
fn is_title(line: &Line<Command>) -> bool {
    line.record().is_some_and(|c| c.keyword == "title")
}

impl Document<Command> {
    /// Line ranges of the stanzas: each `title` up to the next one.
    fn stanza_ranges(&self) -> Vec<Range<usize>> {
        let lines = self.lines();
        let starts: Vec<usize> = (0..lines.len()).filter(|&i| is_title(&lines[i])).collect();
        let ends = starts.iter().skip(1).copied().chain([lines.len()]);
        starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| start..end)
            .collect()
    }

    /// Line index of the global setting `keyword` (settings end at the first `title`).
    fn global_index(&self, keyword: &str) -> Option<usize> {
        self.lines()
            .iter()
            .take_while(|line| !is_title(line))
            .position(|line| line.record().is_some_and(|c| c.keyword == keyword))
    }

    /// The global setting `keyword` (`default`, `timeout`, `splashimage`, `hiddenmenu`, `serial`, `terminal`).
    pub fn global(&self, keyword: &str) -> Option<&Command> {
        self.lines()[self.global_index(keyword)?].record()
    }

    /// Sets a global setting's value in place, or adds `keyword value` before the first stanza.
    pub fn set_global(&mut self, keyword: &str, value: &str) {
        match self.global_index(keyword) {
            Some(index) => {
                self.update(index, |c| c.args = Words::parse(value));
            }
            None => {
                let first_title = self.lines().iter().take_while(|l| !is_title(l)).count();
                self.insert(first_title, Command::new(keyword, value));
            }
        }
    }

    /// Removes a global setting (`hiddenmenu`, `splashimage`...); returns how many lines went.
    pub fn remove_global(&mut self, keyword: &str) -> usize {
        let mut count = 0;
        while let Some(index) = self.global_index(keyword) {
            self.remove_line(index);
            count += 1;
        }
        count
    }

    /// The stanzas in menu order.
    pub fn stanzas(&self) -> Vec<Stanza<'_>> {
        self.stanza_ranges()
            .into_iter()
            .map(|range| Stanza {
                lines: &self.lines()[range],
            })
            .collect()
    }

    /// The stanza number `default` selects (`None` for `default saved` or no default).
    pub fn default_stanza(&self) -> Option<usize> {
        self.global("default")?.value().parse().ok()
    }

    /// Edits the `kernel` line of stanza number `stanza`; false if there is no such stanza or line.
    pub fn edit_kernel(&mut self, stanza: usize, edit: impl FnOnce(&mut Command)) -> bool {
        let Some(range) = self.stanza_ranges().into_iter().nth(stanza) else {
            return false;
        };
        let kernel = range.into_iter().find(|&i| {
            self.lines()[i]
                .record()
                .is_some_and(|c| c.keyword == "kernel")
        });
        kernel.is_some_and(|index| self.update(index, edit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's sample grub.conf, verbatim apart from the markdown indentation.
    const SEED: &str = "\
default=0
timeout=3
splashimage=(hd0,0)/boot/grub/splash.xpm.gz
title CentOS (<kernel_version>)
    root (hd0,0)
    kernel /boot/vmlinuz-<kernel_version> root=/dev/sda1 ro enforcing=0
    initrd /boot/<ramdisk_name>
";

    /// A CentOS 5 Xen guest's menu.lst as anaconda writes it (tabs), with serial settings.
    const XEN: &str = "\
# grub.conf generated by anaconda
#
# NOTICE:  You do not have a /boot partition.  This means that
#          all kernel and initrd paths are relative to /, eg.
#          root (hd0,0)
#          kernel /boot/vmlinuz-version ro root=/dev/xvda1
#boot=/dev/xvda
default=0
timeout=5
splashimage=(hd0,0)/boot/grub/splash.xpm.gz
hiddenmenu
serial --unit=0 --speed=115200
terminal --timeout=5 serial console
title CentOS (2.6.18-348.3.1.el5xen)
\troot (hd0,0)
\tkernel /boot/vmlinuz-2.6.18-348.3.1.el5xen ro root=/dev/xvda1 console=xvc0
\tinitrd /boot/initrd-2.6.18-348.3.1.el5xen.img

title CentOS (2.6.18-308.el5xen)
\troot (hd0,0)
\tkernel /boot/vmlinuz-2.6.18-308.el5xen ro root=LABEL=/ console=hvc0 console=tty0
\tinitrd /boot/initrd-2.6.18-308.el5xen.img
";

    fn seed_entry<'a>(version: &'a str, kernel: &'a str, initrd: &'a str) -> BootEntry<'a> {
        BootEntry {
            title: version,
            root: "(hd0,0)",
            kernel,
            args: "root=/dev/sda1 ro enforcing=0",
            initrd: Some(initrd),
        }
    }

    #[test]
    fn round_trips() {
        for text in [SEED, XEN, XEN.trim_end_matches('\n'), "timeout = 5\n"] {
            assert_eq!(GrubConf::parse(text).render(), text);
        }
    }

    #[test]
    fn builds_the_seed_sample() {
        let entry = seed_entry(
            "CentOS (<kernel_version>)",
            "/boot/vmlinuz-<kernel_version>",
            "/boot/<ramdisk_name>",
        );
        let conf = new_config(3, Some("(hd0,0)/boot/grub/splash.xpm.gz"), &[entry]);
        assert_eq!(conf.render(), SEED);
        assert_eq!(conf, GrubConf::parse(SEED));
    }

    #[test]
    fn builds_a_config_for_a_real_kernel() {
        let entry = seed_entry(
            "CentOS (2.6.18-348.3.1.el5)",
            "/boot/vmlinuz-2.6.18-348.3.1.el5",
            "/boot/initrd-2.6.18-348.3.1.el5.img",
        );
        let conf = new_config(3, None, &[entry]);
        let stanzas = conf.stanzas();
        assert_eq!(stanzas.len(), 1);
        assert_eq!(stanzas[0].title(), "CentOS (2.6.18-348.3.1.el5)");
        assert_eq!(
            stanzas[0].kernel_path(),
            Some("/boot/vmlinuz-2.6.18-348.3.1.el5")
        );
        assert_eq!(
            stanzas[0].initrd(),
            Some("/boot/initrd-2.6.18-348.3.1.el5.img")
        );
        assert_eq!(conf.global("splashimage"), None);
        let no_initrd = BootEntry {
            initrd: None,
            args: "",
            ..entry
        };
        assert_eq!(
            new_config(0, None, &[no_initrd]).render(),
            "default=0\ntimeout=0\ntitle CentOS (2.6.18-348.3.1.el5)\n    root (hd0,0)\n    kernel /boot/vmlinuz-2.6.18-348.3.1.el5\n"
        );
    }

    #[test]
    fn reads_globals() {
        let conf = GrubConf::parse(XEN);
        let value = |k: &str| conf.global(k).map(Command::value);
        assert_eq!(value("default").as_deref(), Some("0"));
        assert_eq!(value("timeout").as_deref(), Some("5"));
        assert_eq!(
            value("splashimage").as_deref(),
            Some("(hd0,0)/boot/grub/splash.xpm.gz")
        );
        assert_eq!(value("hiddenmenu").as_deref(), Some(""));
        assert_eq!(value("serial").as_deref(), Some("--unit=0 --speed=115200"));
        assert_eq!(
            value("terminal").as_deref(),
            Some("--timeout=5 serial console")
        );
        assert_eq!(
            value("root"),
            None,
            "root is a stanza command, not a global"
        );
        assert_eq!(conf.default_stanza(), Some(0));
        assert_eq!(GrubConf::parse("default saved\n").default_stanza(), None);
        assert_eq!(
            GrubConf::parse("timeout = 5\n")
                .global("timeout")
                .map(Command::value),
            Some("5".to_string())
        );
    }

    #[test]
    fn reads_stanzas() {
        let conf = GrubConf::parse(XEN);
        let stanzas = conf.stanzas();
        assert_eq!(stanzas.len(), 2);
        let first = stanzas[0];
        assert_eq!(first.title(), "CentOS (2.6.18-348.3.1.el5xen)");
        assert_eq!(first.root(), Some("(hd0,0)"));
        assert_eq!(
            first.kernel_path(),
            Some("/boot/vmlinuz-2.6.18-348.3.1.el5xen")
        );
        assert_eq!(
            first.kernel_args(),
            ["ro", "root=/dev/xvda1", "console=xvc0"]
        );
        assert_eq!(
            first.initrd(),
            Some("/boot/initrd-2.6.18-348.3.1.el5xen.img")
        );
        let second = stanzas[1].kernel().expect("kernel line");
        assert_eq!(second.arg("root"), Some("LABEL=/"));
        assert_eq!(second.arg("console"), Some("hvc0"));
        assert_eq!(second.arg("ro"), None, "flag, not key=value");
    }

    #[test]
    fn edits_kernel_args_in_place() {
        let mut conf = GrubConf::parse(XEN);
        assert!(conf.edit_kernel(0, |k| {
            k.set_arg("root", "/dev/sda1");
            assert_eq!(k.remove_arg("console"), 1);
            k.add_arg("console=ttyS0,115200");
            k.add_arg("console=ttyS0,115200");
        }));
        assert!(conf.edit_kernel(1, |k| {
            assert_eq!(k.remove_arg("console=hvc0"), 1);
            assert_eq!(k.remove_arg("quiet"), 0);
        }));
        assert!(!conf.edit_kernel(2, |k| k.add_arg("x")));
        let expected = XEN
            .replace(
                "ro root=/dev/xvda1 console=xvc0\n",
                "ro root=/dev/sda1 console=ttyS0,115200\n",
            )
            .replace(
                "root=LABEL=/ console=hvc0 console=tty0",
                "root=LABEL=/ console=tty0",
            );
        assert_eq!(conf.render(), expected);
    }

    #[test]
    fn set_arg_replaces_every_occurrence_once() {
        let mut kernel = Command::new("kernel", "/vmlinuz root=/dev/xvda1 ro root=/dev/xvda2");
        kernel.set_arg("root", "UUID=abc");
        assert_eq!(kernel.render(), "kernel /vmlinuz root=UUID=abc ro");
        kernel.set_arg("enforcing", "0");
        assert_eq!(
            kernel.render(),
            "kernel /vmlinuz root=UUID=abc ro enforcing=0"
        );
        assert_eq!(
            kernel.remove_arg("/vmlinuz"),
            0,
            "the path is not an argument"
        );
    }

    #[test]
    fn stanza_without_kernel_cannot_be_edited() {
        let mut conf = GrubConf::parse("title Other\n\trootnoverify (hd0,1)\n\tchainloader +1\n");
        assert!(!conf.edit_kernel(0, |k| k.add_arg("x")));
        assert_eq!(conf.stanzas()[0].kernel_args(), Vec::<&str>::new());
    }

    #[test]
    fn edits_globals() {
        let mut conf = GrubConf::parse(XEN);
        conf.set_global("timeout", "3");
        conf.set_global("fallback", "1");
        assert_eq!(conf.remove_global("hiddenmenu"), 1);
        assert_eq!(
            conf.remove_global("root"),
            0,
            "stanza lines are not globals"
        );
        let expected = XEN
            .replace("timeout=5\n", "timeout=3\n")
            .replace("hiddenmenu\n", "")
            .replace("console\ntitle", "console\nfallback 1\ntitle");
        assert_eq!(conf.render(), expected);

        let mut bare = GrubConf::parse("hiddenmenu\n");
        bare.set_global("hiddenmenu", "x");
        assert_eq!(bare.render(), "hiddenmenu x\n");
    }
}
