//! root-password: an organisation's policy for the password a converted VM
//! starts with (the seed's `passwd root`: the cloud set a random one). The plain
//! password is only ever hashed; it never reaches a log, an error or the report.

use std::time::SystemTime;

use rehost_sdk::files::shadow::{epoch_day, hash_password, Shadow};
use rehost_sdk::fixer::{config, FixContext, Fixer, Guest, Report};
use rehost_sdk::{fail, Error, Result};
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

const SHADOW: &str = "/etc/shadow";

/// No `Debug`: the table holds a password.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The password in plain text, stored as a SHA-512 crypt hash.
    pub password: Option<String>,
    /// Or a crypt(3) hash (`openssl passwd -6`) to store as is.
    pub hash: Option<String>,
    pub user: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            password: None,
            hash: None,
            user: "root".into(),
        }
    }
}

impl Config {
    /// The hash to store: exactly one of `password` and `hash` must be given.
    fn hash(&self) -> Result<String> {
        match (&self.password, &self.hash) {
            (Some(plain), None) => hash_password(plain).map_err(|e| fail(e.to_string())),
            (None, Some(hash)) => Ok(hash.clone()),
            (Some(_), Some(_)) => Err(invalid("give password or hash, not both")),
            (None, None) => Err(invalid(
                "no password: set password (plain text, hashed here) or hash (a crypt(3) string)",
            )),
        }
    }
}

fn invalid(message: &str) -> Error {
    Error::Invalid(format!("root-password config: {message}"))
}

pub struct RootPassword;

impl Fixer for RootPassword {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()> {
        let cfg: Config = config(ctx)?;
        let hash = cfg.hash()?;
        let mut shadow = Shadow::parse(&guest.read_string(SHADOW)?);
        // As passwd does: today is the last change, so aging rules start afresh.
        let today = epoch_day(SystemTime::now());
        shadow
            .set_password_hash(&cfg.user, &hash, Some(today))
            .map_err(|e| fail(e.to_string()))?;
        guest.write_string(SHADOW, &shadow.render())?;
        report.changed(format!("{SHADOW}: new password for {}", cfg.user));
        Ok(())
    }
}

rehost_sdk::export_fixer!(RootPassword);

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::files::shadow::verify_password;
    use rehost_sdk::fixer::DirGuest;
    use rehost_sdk::TargetHardware;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const SHADOW_TEXT: &str = "\
root:$1$centos5$5zKGg2EN4uF5JcfDHj/Od0:15000:0:99999:7:::
nobody:*:15000:0:99999:7:::
ec2-user:!!:15000:0:99999:7:::
";

    fn ctx(config: &str) -> FixContext {
        rehost_sdk::testing::fix_context("centos", "5.11", TargetHardware::Virtualbox, config)
    }

    fn guest_with_shadow() -> (tempfile::TempDir, DirGuest) {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("etc")).unwrap();
        let shadow = tmp.path().join("etc/shadow");
        fs::write(&shadow, SHADOW_TEXT).unwrap();
        fs::set_permissions(&shadow, fs::Permissions::from_mode(0o400)).unwrap();
        let guest = DirGuest::new(tmp.path());
        (tmp, guest)
    }

    fn line(dir: &std::path::Path, user: &str) -> Vec<String> {
        fs::read_to_string(dir.join("etc/shadow"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap()
            .split(':')
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn hashes_the_plain_password_for_root() {
        let (tmp, guest) = guest_with_shadow();
        let before = epoch_day(SystemTime::now());
        let mut report = Report::default();
        RootPassword::fix(&guest, &ctx("password = \"correct horse\""), &mut report).unwrap();
        let after = epoch_day(SystemTime::now());
        let root = line(tmp.path(), "root");
        assert!(root[1].starts_with("$6$"), "{}", root[1]);
        assert!(verify_password("correct horse", &root[1]));
        let day: u32 = root[2].parse().unwrap();
        assert!((before..=after).contains(&day));
        assert_eq!(root[3..], ["0", "99999", "7", "", "", ""]);
        let text = fs::read_to_string(tmp.path().join("etc/shadow")).unwrap();
        assert!(text.ends_with("nobody:*:15000:0:99999:7:::\nec2-user:!!:15000:0:99999:7:::\n"));
        let mode = fs::metadata(tmp.path().join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400, "mode kept");
        assert_eq!(report.changes, ["/etc/shadow: new password for root"]);
    }

    #[test]
    fn stores_a_given_hash_for_another_user() {
        let (tmp, guest) = guest_with_shadow();
        let hash = "$6$Zq3rT7xWc9LmP2sD$3pkK2oDCv0tVeEgKCNQfNJ1KZqiTaq2QPJV2bgHdCWiyhDYb6PX2cMLDg.R4djKGxvOjmlGZO.m0qSBcwLLz80";
        let config = format!("user = \"ec2-user\"\nhash = \"{hash}\"\n");
        RootPassword::fix(&guest, &ctx(&config), &mut Report::default()).unwrap();
        assert_eq!(line(tmp.path(), "ec2-user")[1], hash);
        assert!(verify_password("correct horse battery staple", hash));
        assert_eq!(
            line(tmp.path(), "root")[1],
            "$1$centos5$5zKGg2EN4uF5JcfDHj/Od0"
        );
    }

    #[test]
    fn refuses_bad_configs_without_echoing_the_password() {
        let (tmp, guest) = guest_with_shadow();
        for (config, says) in [
            ("", "no password"),
            ("password = \"hunter2\"\nhash = \"x\"\n", "not both"),
            ("password = \"hunter2\"\nuser = \"nosuch\"\n", "nosuch"),
            ("hash = \"a:b\"\n", "':'"),
            ("pasword = \"hunter2\"\n", "pasword"),
        ] {
            let err = RootPassword::fix(&guest, &ctx(config), &mut Report::default()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(says), "{config}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert_eq!(
            fs::read_to_string(tmp.path().join("etc/shadow")).unwrap(),
            SHADOW_TEXT
        );
    }
}
