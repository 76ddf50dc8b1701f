//! The journal of what a fixer did to the guest: every guest-fs change (with the
//! content before and after) and every command, in order. `rehost plan` renders it
//! from a dry run on a copy-on-write view; `convert --plan-out` from the real run.

use serde::Serialize;

/// One change a fixer made, or a command it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    Write {
        path: String,
        #[serde(skip)]
        before: Option<Vec<u8>>,
        #[serde(skip)]
        after: Vec<u8>,
    },
    Remove {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Symlink {
        target: String,
        link: String,
    },
    Mkdir {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Chown {
        path: String,
        uid: u32,
        gid: u32,
    },
    Run {
        argv: Vec<String>,
    },
}

/// Renders changes as a plan: unified diffs for file edits, one line for the rest.
pub fn render(changes: &[Change]) -> String {
    let mut out = String::new();
    for change in changes {
        match change {
            Change::Write {
                path,
                before,
                after,
            } => out.push_str(&diff(path, before.as_deref(), after)),
            Change::Remove { path } => out.push_str(&format!("remove {path}\n")),
            Change::Rename { from, to } => out.push_str(&format!("rename {from} -> {to}\n")),
            Change::Symlink { target, link } => {
                out.push_str(&format!("symlink {link} -> {target}\n"))
            }
            Change::Mkdir { path } => out.push_str(&format!("mkdir -p {path}\n")),
            Change::Chmod { path, mode } => out.push_str(&format!("chmod {mode:o} {path}\n")),
            Change::Chown { path, uid, gid } => {
                out.push_str(&format!("chown {uid}:{gid} {path}\n"))
            }
            Change::Run { argv } => out.push_str(&format!("run {}\n", shell_words(argv))),
        }
    }
    out
}

/// The unified diff of one file (binary files are named, not shown).
pub fn diff(path: &str, before: Option<&[u8]>, after: &[u8]) -> String {
    let old = before.map(String::from_utf8_lossy).unwrap_or_default();
    let new = String::from_utf8_lossy(after);
    if before.is_some_and(|b| b.contains(&0)) || after.contains(&0) {
        return format!("binary file {path} changed\n");
    }
    let old_name = if before.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".into()
    };
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &format!("b{path}"))
        .to_string()
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_diffs_and_commands() {
        let changes = vec![
            Change::Write {
                path: "/etc/fstab".into(),
                before: Some(
                    b"/dev/xvda1 / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n".to_vec(),
                ),
                after: b"UUID=abc / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n".to_vec(),
            },
            Change::Write {
                path: "/etc/new".into(),
                before: None,
                after: b"x\n".to_vec(),
            },
            Change::Run {
                argv: vec![
                    "/usr/bin/yum".into(),
                    "-y".into(),
                    "groupinstall".into(),
                    "X Window System".into(),
                ],
            },
            Change::Remove {
                path: "/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service".into(),
            },
        ];
        let text = render(&changes);
        assert!(
            text.contains("--- a/etc/fstab\n+++ b/etc/fstab\n"),
            "{text}"
        );
        assert!(
            text.contains("-/dev/xvda1 / ext4 defaults 0 1\n+UUID=abc / ext4 defaults 0 1\n"),
            "{text}"
        );
        assert!(text.contains("--- /dev/null\n+++ b/etc/new\n"), "{text}");
        assert!(
            text.contains("run /usr/bin/yum -y groupinstall 'X Window System'\n"),
            "{text}"
        );
        assert!(text
            .contains("remove /etc/systemd/system/getty.target.wants/serial-getty@hvc0.service\n"));
    }
}
