//! Finding plugins by name: stock plugins embedded in the binary, or a component
//! file given by path. (Registry installs extend this with the lock file.)

use std::path::Path;

use serde::Serialize;

use super::manifest::{Kind, Manifest};
use super::runtime::{LoadedPlugin, Runtime};
use super::{stock, PluginError};

/// Where a plugin comes from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Stock,
    File(String),
}

/// A plugin's manifest without compiling it (for listings).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub manifest: Manifest,
    pub origin: Origin,
}

/// Every stock plugin's manifest, in name order.
pub fn stock_entries() -> Result<Vec<Entry>, PluginError> {
    let mut entries = stock::STOCK
        .iter()
        .map(|(name, bytes)| {
            Ok(Entry {
                manifest: Manifest::from_wasm(bytes, &format!("stock plugin {name}"))?,
                origin: Origin::Stock,
            })
        })
        .collect::<Result<Vec<_>, PluginError>>()?;
    entries.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    Ok(entries)
}

/// True when `spec` names a file rather than a plugin.
pub fn is_path(spec: &str) -> bool {
    spec.ends_with(".wasm") || spec.contains('/')
}

/// Reads a plugin's manifest from a name or a path, without compiling it.
pub fn manifest_of(spec: &str) -> Result<Entry, PluginError> {
    let (bytes, origin) = bytes_of(spec)?;
    let manifest = Manifest::from_wasm(&bytes, spec)?;
    Ok(Entry { manifest, origin })
}

/// Loads (compiling on first use) a plugin by name or path.
pub fn load(runtime: &Runtime, spec: &str) -> Result<LoadedPlugin, PluginError> {
    let (bytes, _) = bytes_of(spec)?;
    runtime.load(&bytes, spec)
}

/// Loads a plugin and checks it is of the expected kind.
pub fn load_kind(runtime: &Runtime, spec: &str, kind: Kind) -> Result<LoadedPlugin, PluginError> {
    let plugin = load(runtime, spec)?;
    if plugin.manifest.kind != kind {
        return Err(PluginError::WrongKind {
            plugin: plugin.manifest.name.clone(),
            expected: kind,
            actual: plugin.manifest.kind,
        });
    }
    Ok(plugin)
}

fn bytes_of(spec: &str) -> Result<(std::borrow::Cow<'static, [u8]>, Origin), PluginError> {
    if is_path(spec) {
        let bytes = std::fs::read(Path::new(spec)).map_err(|e| PluginError::Config {
            plugin: spec.into(),
            message: format!("cannot read the component file: {e}"),
        })?;
        return Ok((bytes.into(), Origin::File(spec.into())));
    }
    match stock::find(spec) {
        Some(bytes) => Ok((bytes.into(), Origin::Stock)),
        None => Err(PluginError::Unknown {
            name: spec.into(),
            known: stock::STOCK
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
