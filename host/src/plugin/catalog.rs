//! Finding plugins by name: stock plugins embedded in the binary, plugins installed
//! from a registry or a file (the lock file), or a component file given by path.
//!
//! Stock plugins come first: an installed plugin never shadows one by name (an
//! install under a stock name needs `--force` and is used only where a pipeline
//! pins it through the lock file).

use std::path::Path;

use serde::Serialize;

use super::lockfile::{Installation, Locked};
use super::manifest::{Capabilities, Kind, Manifest};
use super::runtime::{LoadedPlugin, Runtime};
use super::{stock, PluginError};

/// Where a plugin comes from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Stock,
    File(String),
    /// Installed: the lock file's source and component digest.
    Installed {
        source: String,
        digest: String,
    },
    /// Published in a registry, described by its OCI manifest (`plugin info`).
    Registry {
        reference: String,
        digest: String,
    },
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

/// Every installed plugin's manifest, read from its verified component, in name order.
pub fn installed_entries() -> Result<Vec<Entry>, PluginError> {
    let installation = Installation::from_env();
    let lock = installation
        .lock()
        .map_err(|e| lock_error("installed plugins", e))?;
    lock.plugins
        .iter()
        .map(|locked| {
            let wasm = installation
                .component(locked)
                .map_err(|e| lock_error(&locked.name, e))?;
            Ok(Entry {
                manifest: Manifest::from_wasm(&wasm, &locked.name)?,
                origin: installed_origin(locked),
            })
        })
        .collect()
}

/// Stock and installed plugins, in name order (stock first on equal names).
pub fn entries() -> Result<Vec<Entry>, PluginError> {
    let mut all = stock_entries()?;
    all.extend(installed_entries()?);
    all.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    Ok(all)
}

/// What the user granted an installed plugin at install time, for
/// `Grants::effective(requested, granted, allowed)`; `None` for stock plugins and
/// component files, whose requests are not narrowed by an install.
pub fn granted(spec: &str) -> Result<Option<Capabilities>, PluginError> {
    if is_path(spec) || stock::find(spec).is_some() {
        return Ok(None);
    }
    let lock = Installation::from_env()
        .lock()
        .map_err(|e| lock_error(spec, e))?;
    Ok(lock.get(spec).map(|l| l.granted.clone()))
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
    if let Some(bytes) = stock::find(spec) {
        return Ok((bytes.into(), Origin::Stock));
    }
    let installation = Installation::from_env();
    let lock = installation.lock().map_err(|e| lock_error(spec, e))?;
    if let Some(locked) = lock.get(spec) {
        let wasm = installation
            .component(locked)
            .map_err(|e| lock_error(spec, e))?;
        return Ok((wasm.into(), installed_origin(locked)));
    }
    let known: Vec<&str> = stock::STOCK
        .iter()
        .map(|(n, _)| *n)
        .chain(lock.plugins.iter().map(|l| l.name.as_str()))
        .collect();
    Err(PluginError::Unknown {
        name: spec.into(),
        known: known.join(", "),
    })
}

fn installed_origin(locked: &Locked) -> Origin {
    Origin::Installed {
        source: locked.source.clone(),
        digest: locked.digest.clone(),
    }
}

fn lock_error(plugin: &str, e: super::lockfile::LockError) -> PluginError {
    PluginError::Config {
        plugin: plugin.into(),
        message: e.to_string(),
    }
}
