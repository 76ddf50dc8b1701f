//! Installing a verified component: precompile it, store it by digest, and record
//! it with the user's grants in the lock file. Each step can fail without leaving
//! anything behind: the lock file is written last, atomically, and a component it
//! does not name is removed again.

use semver::VersionReq;

use super::super::lockfile::{self, Installation, LockError, Locked};
use super::super::manifest::{Capabilities, Manifest};
use super::super::runtime::Runtime;
use super::super::{stock, PluginError};
use super::{Fetched, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(
        "plugin {name} has the name of a stock plugin; installing it would shadow the one \
         shipped with rehost in pinned pipelines. Pass --force if that is what you want"
    )]
    StockName { name: String },
    #[error("{source_ref} holds plugin {actual:?}, not {expected:?}; nothing was installed")]
    NameMismatch {
        source_ref: String,
        expected: String,
        actual: String,
    },
}

/// A component ready to be installed, verified, with where it came from.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub manifest: Manifest,
    pub wasm: Vec<u8>,
    /// A registry reference with its manifest digest, or `file:<absolute path>`.
    pub source: String,
    /// What `update` may move within; `None` for digests, tags and files.
    pub requirement: Option<VersionReq>,
}

impl Candidate {
    pub fn from_fetched(fetched: Fetched, requirement: Option<VersionReq>) -> Self {
        Self {
            manifest: fetched.published.manifest,
            source: fetched.published.reference.to_string(),
            wasm: fetched.wasm,
            requirement,
        }
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, InstallError> {
        let wasm = std::fs::read(path).map_err(|source| RegistryError::Read {
            path: path.into(),
            source,
        })?;
        let manifest =
            Manifest::from_wasm(&wasm, &path.display().to_string()).map_err(PluginError::from)?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.into());
        Ok(Self {
            manifest,
            wasm,
            source: format!("file:{}", absolute.display()),
            requirement: None,
        })
    }

    /// `sha256:…` of the component.
    pub fn digest(&self) -> String {
        lockfile::sha256(&self.wasm)
    }

    /// Refuses a candidate this host must not install: another plugin than the name
    /// asked for, a stock plugin's name (unless forced), or another host API.
    pub fn check(&self, expected_name: Option<&str>, force: bool) -> Result<(), InstallError> {
        let name = &self.manifest.name;
        if let Some(expected) = expected_name.filter(|e| *e != name) {
            return Err(InstallError::NameMismatch {
                source_ref: self.source.clone(),
                expected: expected.into(),
                actual: name.clone(),
            });
        }
        if !force && stock::find(name).is_some() {
            return Err(InstallError::StockName { name: name.clone() });
        }
        self.manifest.check_api().map_err(PluginError::from)?;
        Ok(())
    }
}

/// Installs a candidate with the capabilities the user granted; returns the lock
/// entry and the one it replaced.
pub fn commit(
    installation: &Installation,
    runtime: &Runtime,
    candidate: Candidate,
    granted: Capabilities,
) -> Result<(Locked, Option<Locked>), InstallError> {
    let origin = format!("{} {}", candidate.manifest.name, candidate.manifest.version);
    // Compiling first: a component wasmtime rejects is never stored or locked.
    runtime.precompile(&candidate.wasm, &origin)?;
    let mut lock = installation.lock()?;
    let locked = Locked {
        name: candidate.manifest.name.clone(),
        version: candidate.manifest.version.clone(),
        digest: candidate.digest(),
        source: candidate.source,
        requirement: candidate.requirement,
        granted,
    };
    let before = lock.clone();
    installation.store(&candidate.wasm)?;
    let replaced = lock.upsert(locked.clone());
    if let Err(e) = installation.save(&lock) {
        let _ = installation.discard_unused(&locked.digest, &before);
        return Err(e.into());
    }
    if let Some(old) = &replaced {
        installation.discard_unused(&old.digest, &lock)?;
    }
    Ok((locked, replaced))
}

/// Uninstalls a plugin: its lock entry, then its component.
pub fn remove(installation: &Installation, name: &str) -> Result<Option<Locked>, InstallError> {
    let mut lock = installation.lock()?;
    let Some(removed) = lock.remove(name) else {
        return Ok(None);
    };
    installation.save(&lock)?;
    installation.discard_unused(&removed.digest, &lock)?;
    Ok(Some(removed))
}

/// The result of re-hashing one installed plugin.
#[derive(Debug)]
pub struct Verified {
    pub locked: Locked,
    /// `None` when the component matches its locked digest.
    pub problem: Option<LockError>,
}

/// Re-hashes every installed component against the lock file.
pub fn verify(installation: &Installation) -> Result<Vec<Verified>, InstallError> {
    let lock = installation.lock()?;
    Ok(lock
        .plugins
        .into_iter()
        .map(|locked| Verified {
            problem: installation.component(&locked).err(),
            locked,
        })
        .collect())
}
