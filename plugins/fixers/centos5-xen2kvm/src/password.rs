//! The root password in /etc/shadow (the seed's `passwd root`). The password
//! itself never reaches a log, an error or the report.

use std::time::SystemTime;

use rehost_sdk::files::shadow::{epoch_day, hash_password, Shadow};
use rehost_sdk::fixer::{Guest, Report};
use rehost_sdk::{fail, Result};

use crate::config::Password;

const SHADOW: &str = "/etc/shadow";

pub fn set(
    guest: &dyn Guest,
    user: &str,
    password: Password<'_>,
    report: &mut Report,
) -> Result<()> {
    let hash = match password {
        Password::Plain(plain) => hash_password(plain).map_err(|e| fail(e.to_string()))?,
        Password::Hash(hash) => hash.to_string(),
    };
    let mut shadow = Shadow::parse(&guest.read_string(SHADOW)?);
    // As passwd does: today is the last change, so aging rules start afresh.
    let today = epoch_day(SystemTime::now());
    shadow
        .set_password_hash(user, &hash, Some(today))
        .map_err(|e| fail(e.to_string()))?;
    guest.write_string(SHADOW, &shadow.render())?;
    report.changed(format!("{SHADOW}: new password for {user}"));
    Ok(())
}
