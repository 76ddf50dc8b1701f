//! `/etc/rc.local` (or any boot shell script): disable the lines that call the
//! cloud's metadata service, which hang or fail off-cloud.
//!
//! A disabled line becomes `: # rehost: disabled off-cloud (REASON): ORIGINAL`.
//! The `:` no-op keeps an `if`/`while` body that held only that line valid shell.
//! Detection is a heuristic on the code part of each line (comments ignored),
//! not a shell parser.
//!
//! ```
//! use rehost_sdk::files::rc_local::RcLocal;
//! let mut script = RcLocal::parse("touch /var/lock/subsys/local\nec2-metadata -i\n");
//! assert_eq!(script.disable_cloud_calls(), 1);
//! assert_eq!(
//!     script.render(),
//!     "touch /var/lock/subsys/local\n: # rehost: disabled off-cloud (cloud tool ec2-metadata): ec2-metadata -i\n",
//! );
//! ```

use super::{Document, Record};

/// A shell script; only the lines that call cloud metadata are records.
pub type RcLocal = Document<CloudCall>;

/// Texts that only appear in calls to a cloud metadata service, with why they are disabled.
const METADATA_NEEDLES: [(&str, &str); 5] = [
    ("169.254.169.254", "cloud metadata address 169.254.169.254"),
    ("fd00:ec2::254", "cloud metadata address fd00:ec2::254"),
    ("//instance-data", "cloud metadata host instance-data"),
    ("/latest/meta-data", "cloud metadata path /latest/meta-data"),
    (
        "/latest/user-data",
        "cloud user-data path /latest/user-data",
    ),
];

/// Prefixes of cloud command-line tools (EC2 API/AMI tools, ec2-metadata, euca2ools).
const CLOUD_TOOLS: [&str; 2] = ["ec2-", "euca-"];

/// Words after which the shell still expects a command name.
const COMMAND_PREFIXES: [&str; 13] = [
    "if", "then", "else", "elif", "while", "until", "do", "!", "time", "exec", "sudo", "nohup",
    "env",
];

/// A logical line (continuations included) that calls cloud metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudCall {
    text: String,
    reason: String,
}

impl CloudCall {
    /// Why the line counts as a cloud call (`cloud tool ec2-metadata`).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The replacement text: the first line behind `: #` with the note, later lines behind `#`.
    fn disabled(&self) -> String {
        let mut physical = self.text.split('\n');
        let first = physical.next().unwrap_or_default();
        let code = first.trim_start();
        let indent = &first[..first.len() - code.len()];
        let mut out = format!(
            "{indent}: # rehost: disabled off-cloud ({}): {code}",
            self.reason
        );
        for line in physical {
            out.push_str("\n#");
            out.push_str(line);
        }
        out
    }
}

/// `text` with its shell comments removed (a `#` starting a word, outside quotes, up to the newline).
fn strip_comments(text: &str) -> String {
    let mut code = String::new();
    let (mut single, mut double, mut comment) = (false, false, false);
    // Whether the previous character is an unquoted backslash; whether a word may start here.
    let (mut escaped, mut word_start) = (false, true);
    for c in text.chars() {
        if comment {
            comment = c != '\n';
        } else if c == '#' && word_start && !escaped && !single && !double {
            comment = true;
        } else if !escaped {
            if c == '\'' && !double {
                single = !single;
            } else if c == '"' && !single {
                double = !double;
            }
        }
        if !comment || c == '\n' {
            code.push(c);
        }
        let backslash = c == '\\' && !escaped && !single;
        if !backslash {
            // A backslash-newline vanishes; any other escaped character is part of a word.
            word_start = if escaped {
                c == '\n' && word_start
            } else {
                c.is_whitespace() || ";&|(".contains(c)
            };
        }
        escaped = backslash;
    }
    code
}

/// The command names in `code`: the first word of each command, after `if`, `sudo`, `VAR=x`...
/// Quotes count as separators so `"$(ec2-metadata -i)"` is seen.
fn command_names(code: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut expect_command = true;
    // What was expected outside each open `(` or backquote, restored when it closes.
    let mut outer = Vec::new();
    let mut in_backquote = false;
    for (word, separator) in split_keep_separator(code) {
        let is_assignment = word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !word.is_empty() && expect_command && !COMMAND_PREFIXES.contains(&word) && !is_assignment
        {
            names.push(word);
            expect_command = false;
        }
        match separator {
            Some('(') => {
                outer.push(expect_command);
                expect_command = true;
            }
            Some('`') if !in_backquote => {
                in_backquote = true;
                outer.push(expect_command);
                expect_command = true;
            }
            Some('`') => {
                in_backquote = false;
                expect_command = outer.pop().unwrap_or(false);
            }
            Some(')') => expect_command = outer.pop().unwrap_or(false),
            Some(c) if ";&|{\n".contains(c) => expect_command = true,
            _ => {}
        }
    }
    names
}

/// Splits `code` at whitespace and shell punctuation, yielding each word with the separator after it.
fn split_keep_separator(code: &str) -> impl Iterator<Item = (&str, Option<char>)> {
    let is_separator = |c: char| c.is_whitespace() || ";&|()`{}<>\"'$".contains(c);
    let mut rest = code;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(is_separator).unwrap_or(rest.len());
        let word = &rest[..end];
        let separator = rest[end..].chars().next();
        rest = &rest[end + separator.map_or(0, char::len_utf8)..];
        Some((word, separator))
    })
}

/// Why `text` calls cloud metadata, if it does.
fn cloud_reason(text: &str) -> Option<String> {
    let code = strip_comments(text);
    if let Some((_, reason)) = METADATA_NEEDLES
        .iter()
        .find(|(needle, _)| code.contains(needle))
    {
        return Some(reason.to_string());
    }
    command_names(&code)
        .into_iter()
        .map(|name| name.rsplit('/').next().unwrap_or(name))
        .find(|name| CLOUD_TOOLS.iter().any(|tool| name.starts_with(tool)))
        .map(|name| format!("cloud tool {name}"))
}

impl Record for CloudCall {
    fn parse(text: &str) -> Option<Self> {
        cloud_reason(text).map(|reason| CloudCall {
            text: text.to_string(),
            reason,
        })
    }

    fn render(&self) -> String {
        self.text.clone()
    }

    fn continues(line: &str) -> bool {
        line.ends_with('\\')
    }
}

impl Document<CloudCall> {
    /// Comments out every line that calls cloud metadata, with a note; returns how many.
    pub fn disable_cloud_calls(&mut self) -> usize {
        let mut count = 0;
        for index in 0..self.lines().len() {
            if let Some(disabled) = self.lines()[index].record().map(CloudCall::disabled) {
                self.set_text(index, disabled);
                count += 1;
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EC2 CentOS 5 rc.local of the kind the seed warns about, plus other cloud calls.
    const EC2_RC_LOCAL: &str = r##"#!/bin/sh
#
# This script will be executed *after* all the other init scripts.

touch /var/lock/subsys/local

# Get the root ssh key from the instance metadata (169.254.169.254)
if [ ! -d /root/.ssh ] ; then
        mkdir -p /root/.ssh
        chmod 700 /root/.ssh
fi
while [ ! -f /root/.ssh/authorized_keys ]; do
        curl -f http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key > /root/.ssh/authorized_keys
done
HOSTNAME=`ec2-metadata -h | cut -d' ' -f2`
hostname "$HOSTNAME"
wget -q -O /tmp/userdata http://instance-data/latest/user-data
sudo /usr/bin/euca-describe-instances > /var/log/euca.log 2>&1
/opt/ec2/tools/ec2-bundle-vol \
    -d /mnt -k key.pem
chown ec2-user /home/ec2-user   # ec2-user and ec2-bundle-vol are no calls here
echo "# curl http://169.254.169.254" > /dev/null
exit 0"##;

    const DISABLED: &str = r##"#!/bin/sh
#
# This script will be executed *after* all the other init scripts.

touch /var/lock/subsys/local

# Get the root ssh key from the instance metadata (169.254.169.254)
if [ ! -d /root/.ssh ] ; then
        mkdir -p /root/.ssh
        chmod 700 /root/.ssh
fi
while [ ! -f /root/.ssh/authorized_keys ]; do
        : # rehost: disabled off-cloud (cloud metadata address 169.254.169.254): curl -f http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key > /root/.ssh/authorized_keys
done
: # rehost: disabled off-cloud (cloud tool ec2-metadata): HOSTNAME=`ec2-metadata -h | cut -d' ' -f2`
hostname "$HOSTNAME"
: # rehost: disabled off-cloud (cloud metadata host instance-data): wget -q -O /tmp/userdata http://instance-data/latest/user-data
: # rehost: disabled off-cloud (cloud tool euca-describe-instances): sudo /usr/bin/euca-describe-instances > /var/log/euca.log 2>&1
: # rehost: disabled off-cloud (cloud tool ec2-bundle-vol): /opt/ec2/tools/ec2-bundle-vol \
#    -d /mnt -k key.pem
chown ec2-user /home/ec2-user   # ec2-user and ec2-bundle-vol are no calls here
: # rehost: disabled off-cloud (cloud metadata address 169.254.169.254): echo "# curl http://169.254.169.254" > /dev/null
exit 0"##;

    #[test]
    fn round_trips() {
        assert_eq!(RcLocal::parse(EC2_RC_LOCAL).render(), EC2_RC_LOCAL);
    }

    #[test]
    fn disables_cloud_calls_with_a_note() {
        let mut script = RcLocal::parse(EC2_RC_LOCAL);
        assert_eq!(script.disable_cloud_calls(), 6);
        assert_eq!(script.render(), DISABLED);
    }

    #[test]
    fn disabling_twice_changes_nothing() {
        let mut script = RcLocal::parse(DISABLED);
        assert_eq!(script.records().count(), 0);
        assert_eq!(script.disable_cloud_calls(), 0);
        assert_eq!(script.render(), DISABLED);
    }

    #[test]
    fn disabled_script_is_valid_shell() {
        let mut script = RcLocal::parse(EC2_RC_LOCAL);
        script.disable_cloud_calls();
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &script.render()])
            .status()
            .expect("sh runs");
        assert!(status.success(), "sh -n rejected the disabled script");
    }

    #[test]
    fn finds_command_names_only_in_command_position() {
        let names = |code: &str| command_names(code).join(" ");
        assert_eq!(names("a b; c | d && e"), "a c d e");
        assert_eq!(
            names("X=1 Y=\"$(ec2-metadata -i)\" run"),
            "ec2-metadata run"
        );
        assert_eq!(names("if ! sudo env ec2-x; then y; fi"), "ec2-x y fi");
        assert_eq!(names("chown ec2-user /home/ec2-user"), "chown");
        assert_eq!(names("echo $(a x) `b y` z"), "echo a b");
        assert_eq!(names("(a); b"), "a b");
        assert_eq!(names("x `a $(b) c` d; e"), "x a b e");
    }

    #[test]
    fn strips_comments_outside_quotes_only() {
        assert_eq!(strip_comments("a # b"), "a ");
        assert_eq!(strip_comments("a#b"), "a#b");
        assert_eq!(
            strip_comments("echo '#x' \"#y\" \\#z # w"),
            "echo '#x' \"#y\" \\#z "
        );
        assert_eq!(strip_comments("a \\\n# c\nd"), "a \\\n\nd");
        assert_eq!(strip_comments("a\\ #b \\\\ #c"), "a\\ #b \\\\ ");
    }

    #[test]
    fn reasons_name_what_was_found() {
        let reason = |line: &str| {
            RcLocal::parse(line)
                .records()
                .next()
                .map(|c| c.reason().to_string())
        };
        assert_eq!(
            reason("curl -s http://[fd00:ec2::254]/latest/api/token").as_deref(),
            Some("cloud metadata address fd00:ec2::254")
        );
        assert_eq!(
            reason("wget http://example/latest/meta-data/x").as_deref(),
            Some("cloud metadata path /latest/meta-data")
        );
        assert_eq!(reason("# curl http://169.254.169.254/"), None);
        assert_eq!(reason("curl http://example.com/"), None);
    }
}
