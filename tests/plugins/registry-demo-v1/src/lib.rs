//! Release 1.0.0 of the registry test plugin: reads /etc/motd, changes nothing.

use rehost_sdk::fixer::{FixContext, Fixer, Guest, Report};

rehost_sdk::manifest!("../rehost.toml");

struct RegistryDemo;

impl Fixer for RegistryDemo {
    fn fix(guest: &dyn Guest, _: &FixContext, report: &mut Report) -> rehost_sdk::Result<()> {
        report.changed(guest.read_string("/etc/motd")?);
        Ok(())
    }
}

rehost_sdk::export_fixer!(RegistryDemo);
