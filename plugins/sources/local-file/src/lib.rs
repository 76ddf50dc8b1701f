//! local-file: the instance was already copied out (by hand, or by an earlier
//! run); this source only brings that image into the work image, sparsely and
//! with its sha256. A bare filesystem and a whole disk are both fine: later steps
//! tell them apart.

use rehost_sdk::source::{config, host, info, Error, Result, Source, SourceReport};
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The image file (or block device) to copy.
    pub path: String,
}

pub struct LocalFile;

impl Source for LocalFile {
    fn fetch(text: &str) -> Result<SourceReport> {
        let cfg: Config = config(text)?;
        if cfg.path.is_empty() {
            return Err(Error::Invalid(
                "local-file needs `path`, the image to copy (--source-opt path=FILE)".into(),
            ));
        }
        let copied = host::copy_into_work(&cfg.path)?;
        info(&format!("copied {} ({} bytes)", cfg.path, copied.bytes));
        Ok(SourceReport {
            origin: format!("file {}", cfg.path),
            metadata: vec![
                ("source.path".into(), cfg.path),
                ("source.sha256".into(), copied.sha256),
            ],
        })
    }
}

rehost_sdk::export_source!(LocalFile);
