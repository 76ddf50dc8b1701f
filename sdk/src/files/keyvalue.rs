//! Shell-style `KEY=VALUE` files: `/etc/selinux/config`, `/etc/sysconfig/*`,
//! `/etc/default/grub`, `os-release`.
//!
//! Only literal assignments are understood; expansions (`$VAR`, backquotes) are
//! returned as written, not evaluated. Lines that are not a plain assignment
//! (`A=1; B=2`, multi-line values) are kept as text; since the shell lets the
//! last assignment win, `set` then appends one that overrides them.
//!
//! ```
//! use rehost_sdk::files::keyvalue::KeyValue;
//! let mut selinux = KeyValue::parse("# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n");
//! selinux.set("SELINUX", "disabled");
//! assert_eq!(selinux.render(), "# comment\nSELINUX=disabled\nSELINUXTYPE=targeted\n");
//! ```

use std::collections::BTreeMap;

use super::{Document, Record};

/// A `KEY=VALUE` file; comments and other lines are kept verbatim.
pub type KeyValue = Document<Assignment>;

/// How a value is quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    /// `KEY=value`
    Bare,
    /// `KEY="value"`
    Double,
    /// `KEY='value'`
    Single,
}

/// One `KEY=VALUE` line (optionally indented, `export`ed, or followed by a `# comment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Indentation and `export `, kept as written.
    prefix: String,
    key: String,
    value: String,
    quote: Quote,
    /// Trailing whitespace and comment, kept as written.
    suffix: String,
}

/// Characters a bare value may hold without quotes.
fn is_bare_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-./:,+=@%^".contains(c)
}

fn is_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads a double-quoted value after its opening quote; returns it and the rest after the closing quote.
fn read_double(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('$' | '`' | '"' | '\\'))) => value.push(e),
                Some((_, e)) => {
                    value.push('\\');
                    value.push(e);
                }
                None => return None,
            },
            _ => value.push(c),
        }
    }
    None
}

impl Assignment {
    /// A new bare assignment; `render` quotes the value if it needs it.
    pub fn new(key: &str, value: &str) -> Self {
        Assignment {
            prefix: String::new(),
            key: key.to_string(),
            value: value.to_string(),
            quote: Quote::Bare,
            suffix: String::new(),
        }
    }

    /// The variable name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value with its quotes removed.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// How the value was quoted.
    pub fn quote(&self) -> Quote {
        self.quote
    }

    /// The quoting `render` uses: the line's own unless the value cannot be written that way.
    fn effective_quote(&self) -> Quote {
        match self.quote {
            Quote::Bare if !self.value.chars().all(is_bare_safe) => Quote::Double,
            Quote::Single if self.value.contains('\'') => Quote::Double,
            quote => quote,
        }
    }
}

impl Record for Assignment {
    fn parse(text: &str) -> Option<Self> {
        let body = text.trim_start();
        let after_export = body
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(body, str::trim_start);
        let prefix = &text[..text.len() - after_export.len()];
        let (key, rest) = after_export.split_once('=')?;
        if !is_key(key) {
            return None;
        }
        let (value, quote, suffix) = if let Some(inner) = rest.strip_prefix('"') {
            let (value, suffix) = read_double(inner)?;
            (value, Quote::Double, suffix)
        } else if let Some(inner) = rest.strip_prefix('\'') {
            let (value, suffix) = inner.split_once('\'')?;
            (value.to_string(), Quote::Single, suffix)
        } else {
            let end = rest.find([' ', '\t']).unwrap_or(rest.len());
            let value = &rest[..end];
            if !value.chars().all(|c| is_bare_safe(c) || c == '#') {
                return None;
            }
            (value.to_string(), Quote::Bare, &rest[end..])
        };
        // Anything after the value must be whitespace or a comment, else this is
        // more shell than an assignment.
        let tail = suffix.trim_start();
        let plain_end = tail.is_empty() || (tail.starts_with('#') && tail.len() < suffix.len());
        plain_end.then(|| Assignment {
            prefix: prefix.to_string(),
            key: key.to_string(),
            value,
            quote,
            suffix: suffix.to_string(),
        })
    }

    fn render(&self) -> String {
        let value = match self.effective_quote() {
            Quote::Bare => self.value.clone(),
            Quote::Single => format!("'{}'", self.value),
            Quote::Double => {
                let mut quoted = String::from("\"");
                for c in self.value.chars() {
                    if matches!(c, '$' | '`' | '"' | '\\') {
                        quoted.push('\\');
                    }
                    quoted.push(c);
                }
                quoted.push('"');
                quoted
            }
        };
        format!("{}{}={}{}", self.prefix, self.key, value, self.suffix)
    }
}

impl Document<Assignment> {
    /// The value the shell would see (the last assignment of `key`), unquoted.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.records()
            .filter(|a| a.key == key)
            .last()
            .map(Assignment::value)
    }

    /// Sets `key` in its last assignment, keeping its quoting and comment; appends it if absent.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.rposition(|a| a.key == key) {
            Some(index) => {
                self.update(index, |a| a.value = value.to_string());
            }
            None => self.push(Assignment::new(key, value)),
        }
    }

    /// Removes every assignment of `key`; returns how many went.
    pub fn remove(&mut self, key: &str) -> usize {
        self.remove_where(|a| a.key == key)
    }

    /// Turns every assignment of `key` into a comment (`#KEY=...`); returns how many.
    pub fn comment_out(&mut self, key: &str) -> usize {
        let targets: Vec<usize> = (0..self.lines().len())
            .filter(|&i| self.lines()[i].record().is_some_and(|a| a.key == key))
            .collect();
        for &i in &targets {
            let commented = format!("#{}", self.lines()[i].text());
            self.set_text(i, commented);
        }
        targets.len()
    }

    /// Every key with the value the shell would see.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.records()
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect()
    }
}

/// Parses `/etc/os-release` (or `/usr/lib/os-release`) into `ID`, `VERSION_ID`, ... with quotes removed.
pub fn os_release(input: &str) -> BTreeMap<String, String> {
    KeyValue::parse(input).to_map()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELINUX: &str = "\n\
# This file controls the state of SELinux on the system.
# SELINUX= can take one of these three values:
#\tenforcing - SELinux security policy is enforced.
#\tpermissive - SELinux prints warnings instead of enforcing.
#\tdisabled - SELinux is fully disabled.
SELINUX=enforcing
# SELINUXTYPE= type of policy in use. Possible values are:
#\ttargeted - Only targeted network daemons are protected.
#\tstrict - Full SELinux protection.
SELINUXTYPE=targeted
";

    const GRUB_DEFAULT: &str = r#"GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX='console=hvc0 xen_emul_unplug=unnecessary'
#GRUB_TERMINAL=console
  export GRUB_GFXMODE=640x480   # trailing comment
A=1; B=2
"#;

    #[test]
    fn round_trips() {
        for text in [SELINUX, GRUB_DEFAULT, "K=v", "K=\"unterminated\nX=1\n"] {
            assert_eq!(KeyValue::parse(text).render(), text);
        }
    }

    #[test]
    fn seed_selinux_enforcing_to_disabled() {
        let mut conf = KeyValue::parse(SELINUX);
        assert_eq!(conf.get("SELINUX"), Some("enforcing"));
        conf.set("SELINUX", "disabled");
        assert_eq!(
            conf.render(),
            SELINUX.replace("SELINUX=enforcing", "SELINUX=disabled")
        );
    }

    #[test]
    fn gets_unquoted_values() {
        let conf = KeyValue::parse(GRUB_DEFAULT);
        assert_eq!(conf.get("GRUB_CMDLINE_LINUX_DEFAULT"), Some("quiet"));
        assert_eq!(
            conf.get("GRUB_CMDLINE_LINUX"),
            Some("console=hvc0 xen_emul_unplug=unnecessary")
        );
        assert_eq!(conf.get("GRUB_GFXMODE"), Some("640x480"));
        assert_eq!(conf.get("GRUB_TERMINAL"), None, "commented out");
        assert_eq!(conf.get("GRUB_DISTRIBUTOR"), None, "command substitution");
        assert_eq!(conf.get("A"), None, "two commands on one line");
        let escaped = KeyValue::parse("X=\"a \\\"b\\\" \\$c \\n\"\n");
        assert_eq!(escaped.get("X"), Some("a \"b\" $c \\n"));
    }

    #[test]
    fn set_keeps_each_lines_quoting_and_comment() {
        let mut conf = KeyValue::parse(GRUB_DEFAULT);
        conf.set("GRUB_CMDLINE_LINUX", "console=ttyS0,115200");
        conf.set("GRUB_CMDLINE_LINUX_DEFAULT", "quiet splash");
        conf.set("GRUB_GFXMODE", "1024x768");
        conf.set("GRUB_TIMEOUT", "a b");
        let expected = GRUB_DEFAULT
            .replace(
                "'console=hvc0 xen_emul_unplug=unnecessary'",
                "'console=ttyS0,115200'",
            )
            .replace("\"quiet\"", "\"quiet splash\"")
            .replace("640x480   #", "1024x768   #")
            .replace("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=\"a b\"");
        assert_eq!(conf.render(), expected);

        conf.set("GRUB_CMDLINE_LINUX", "it's $x");
        assert_eq!(conf.get("GRUB_CMDLINE_LINUX"), Some("it's $x"));
        assert!(conf.render().contains("GRUB_CMDLINE_LINUX=\"it's \\$x\"\n"));
    }

    #[test]
    fn set_appends_missing_keys_and_overrides_unparsed_ones() {
        let mut conf = KeyValue::parse("A=1; B=2");
        conf.set("A", "3");
        conf.set("GRUB_TERMINAL", "serial console");
        assert_eq!(
            conf.render(),
            "A=1; B=2\nA=3\nGRUB_TERMINAL=\"serial console\"\n"
        );
        assert_eq!(conf.get("A"), Some("3"));
    }

    #[test]
    fn last_assignment_wins() {
        let mut conf = KeyValue::parse("K=1\nK=2\n");
        assert_eq!(conf.get("K"), Some("2"));
        conf.set("K", "3");
        assert_eq!(conf.render(), "K=1\nK=3\n");
        assert_eq!(conf.to_map().get("K").map(String::as_str), Some("3"));
    }

    #[test]
    fn removes_and_comments_out() {
        let mut conf = KeyValue::parse(GRUB_DEFAULT);
        assert_eq!(conf.comment_out("GRUB_CMDLINE_LINUX"), 1);
        assert_eq!(conf.get("GRUB_CMDLINE_LINUX"), None);
        assert_eq!(conf.remove("GRUB_TIMEOUT"), 1);
        assert_eq!(conf.remove("GRUB_TIMEOUT"), 0);
        let expected = GRUB_DEFAULT
            .replace("GRUB_CMDLINE_LINUX='", "#GRUB_CMDLINE_LINUX='")
            .replace("GRUB_TIMEOUT=5\n", "");
        assert_eq!(conf.render(), expected);
    }

    #[test]
    fn parses_os_release() {
        let map = os_release(
            "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"\nHOME_URL=\"https://www.centos.org/\"\n",
        );
        assert_eq!(map.get("ID").map(String::as_str), Some("centos"));
        assert_eq!(map.get("VERSION_ID").map(String::as_str), Some("7"));
        assert_eq!(map.get("ID_LIKE").map(String::as_str), Some("rhel fedora"));
        assert_eq!(map.len(), 6);
        let debian = os_release("PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\nID=debian\n");
        assert_eq!(debian.get("ID").map(String::as_str), Some("debian"));
    }
}
