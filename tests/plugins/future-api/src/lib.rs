//! A fixer whose manifest asks for host API ^2: every current host must refuse it.

use rehost_sdk::fixer::{FixContext, Fixer, Guest, Report};

rehost_sdk::manifest!("../rehost.toml");

struct FutureApi;

impl Fixer for FutureApi {
    fn fix(_: &dyn Guest, _: &FixContext, _: &mut Report) -> rehost_sdk::Result<()> {
        Ok(())
    }
}

rehost_sdk::export_fixer!(FutureApi);
