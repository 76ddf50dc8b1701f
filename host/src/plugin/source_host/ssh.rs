//! ssh and scp through the system OpenSSH client: batch mode (never a password
//! prompt), the user's own keys, agent and ~/.ssh/config. The plugin only names
//! the host, user and command; it never sees a credential.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use super::process::{self, Output};

/// Host-side ssh settings (never the plugin's to choose).
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    /// An ssh_config file used instead of ~/.ssh/config (`-F`).
    pub config_file: Option<PathBuf>,
}

/// A validated destination.
pub struct Target {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
}

impl Target {
    /// Refuses names that ssh would read as options or that smuggle a user in.
    pub fn new(host: &str, port: Option<u16>, user: Option<&str>) -> Result<Self, String> {
        let bad =
            |s: &str| s.is_empty() || s.starts_with('-') || s.contains(['@', ' ', '\n', '\t', '/']);
        if bad(host) {
            return Err(format!("bad ssh host {host:?}"));
        }
        if let Some(u) = user.filter(|u| bad(u) || u.contains(':')) {
            return Err(format!("bad ssh user {u:?}"));
        }
        Ok(Self {
            host: host.into(),
            port,
            user: user.map(String::from),
        })
    }

    fn destination(&self, bracket_v6: bool) -> String {
        let host = if bracket_v6 && self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.user {
            Some(u) => format!("{u}@{host}"),
            None => host,
        }
    }
}

fn base(program: &str, config: &SshConfig, port: Option<(&str, u16)>) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-o", "BatchMode=yes"]);
    if let Some(file) = &config.config_file {
        cmd.arg("-F").arg(file);
    }
    if let Some((flag, port)) = port {
        cmd.arg(flag).arg(port.to_string());
    }
    cmd
}

/// Runs argv on the target; each argument is quoted for the remote shell.
pub fn run(
    config: &SshConfig,
    target: &Target,
    argv: &[String],
    cancel: &AtomicBool,
) -> Result<Output, String> {
    let mut cmd = base("ssh", config, target.port.map(|p| ("-p", p)));
    let remote = argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
    cmd.arg("--").arg(target.destination(false)).arg(remote);
    process::run(cmd, &format!("ssh {}", target.destination(false)), cancel)
}

/// Copies a remote file to `dst` with scp.
pub fn copy(
    config: &SshConfig,
    target: &Target,
    remote: &str,
    dst: &Path,
    cancel: &AtomicBool,
) -> Result<(), String> {
    if remote.is_empty() || remote.contains('\n') {
        return Err(format!("bad remote path {remote:?}"));
    }
    let source = format!("{}:{remote}", target.destination(true));
    let mut cmd = base("scp", config, target.port.map(|p| ("-P", p)));
    cmd.arg("-q").arg("--").arg(&source).arg(dst);
    let out = process::run(cmd, &format!("scp {source}"), cancel)?;
    if out.status != 0 {
        return Err(format!(
            "scp {source} failed (status {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Single-quotes a word for a POSIX shell unless it is plainly safe.
fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_targets() {
        assert_eq!(quote("--list-nodes"), "--list-nodes");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert!(Target::new("-oProxyCommand=x", None, None).is_err());
        assert!(Target::new("host", None, Some("a@b")).is_err());
        let t = Target::new("::1", Some(22), Some("root")).unwrap();
        assert_eq!(t.destination(true), "root@[::1]");
    }
}
