//! Release 1.1.0 of the registry test plugin: also writes /etc/motd, the extra
//! capability that makes `rehost plugin update` ask for consent again.

use rehost_sdk::fixer::{FixContext, Fixer, Guest, Report};

rehost_sdk::manifest!("../rehost.toml");

struct RegistryDemo;

impl Fixer for RegistryDemo {
    fn fix(guest: &dyn Guest, _: &FixContext, report: &mut Report) -> rehost_sdk::Result<()> {
        let motd = guest.read_string("/etc/motd")?;
        guest.write_string("/etc/motd", &format!("{motd}converted by rehost\n"))?;
        report.changed("/etc/motd".to_string());
        Ok(())
    }
}

rehost_sdk::export_fixer!(RegistryDemo);
