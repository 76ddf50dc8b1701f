//! Installed plugins: the lock file (`$XDG_CONFIG_HOME/rehost/plugins.lock`, TOML)
//! records each one's name, version, digest, source and the capabilities the user
//! granted; the components themselves live content-addressed in
//! `$XDG_DATA_HOME/rehost/plugins/<sha256>.wasm`. Reading a component back always
//! re-hashes it, so a changed file is refused, never run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::{Capabilities, Manifest};
use super::stock;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: malformed lock file: {reason}; fix or remove it and reinstall the plugins", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "plugin {name}: the installed component {} does not match the lock file \
         (locked {expected}, found {actual}); reinstall it with `rehost plugin install`",
        path.display()
    )]
    Drift {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("plugin {name} is pinned to {req} but is not installed; run `rehost plugin install {name}@{req}`")]
    NotInstalled { name: String, req: VersionReq },
    #[error(
        "plugin {name} is pinned to {req} but {version} is installed; \
         run `rehost plugin install {name}@{req}`"
    )]
    PinMismatch {
        name: String,
        req: VersionReq,
        version: Version,
    },
}

/// One installed plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    pub name: String,
    pub version: Version,
    /// `sha256:<hex>` of the component bytes (the OCI layer digest).
    pub digest: String,
    /// Where it came from: a registry reference with its manifest digest, or
    /// `file:<absolute path>`.
    pub source: String,
    /// The requirement it was installed with (`update` stays within it); absent
    /// for installs pinned by digest and from files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<VersionReq>,
    /// What the user consented to.
    #[serde(default)]
    pub granted: Capabilities,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<Locked>,
}

impl LockFile {
    pub fn get(&self, name: &str) -> Option<&Locked> {
        self.plugins.iter().find(|p| p.name == name)
    }

    /// Adds or replaces the entry of the same name, keeping name order.
    pub fn upsert(&mut self, locked: Locked) -> Option<Locked> {
        let old = self.remove(&locked.name);
        self.plugins.push(locked);
        self.plugins.sort_by(|a, b| a.name.cmp(&b.name));
        old
    }

    pub fn remove(&mut self, name: &str) -> Option<Locked> {
        let index = self.plugins.iter().position(|p| p.name == name)?;
        Some(self.plugins.remove(index))
    }
}

/// Where installed plugins live.
#[derive(Debug, Clone)]
pub struct Installation {
    pub lock_path: PathBuf,
    pub store_dir: PathBuf,
}

impl Installation {
    /// The XDG locations (`~/.config` and `~/.local/share` when unset).
    pub fn from_env() -> Self {
        Self {
            lock_path: xdg_dir("XDG_CONFIG_HOME", ".config").join("rehost/plugins.lock"),
            store_dir: xdg_dir("XDG_DATA_HOME", ".local/share").join("rehost/plugins"),
        }
    }

    /// The lock file; a missing one is an empty installation.
    pub fn lock(&self) -> Result<LockFile, LockError> {
        let text = match std::fs::read_to_string(&self.lock_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockFile::default()),
            Err(source) => {
                return Err(LockError::Io {
                    op: "read the lock file",
                    path: self.lock_path.clone(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| LockError::Malformed {
            path: self.lock_path.clone(),
            reason: e.message().to_string(),
        })
    }

    /// Replaces the lock file atomically: readers see the old or the new one, whole.
    pub fn save(&self, lock: &LockFile) -> Result<(), LockError> {
        let text = toml::to_string_pretty(lock).map_err(|e| LockError::Malformed {
            path: self.lock_path.clone(),
            reason: e.to_string(),
        })?;
        let text = format!("# Written by `rehost plugin`; `rehost plugin verify` checks the components against it.\n{text}");
        write_atomically(&self.lock_path, text.as_bytes()).map_err(|source| LockError::Io {
            op: "write the lock file",
            path: self.lock_path.clone(),
            source,
        })
    }

    /// Where the component with this digest is stored.
    pub fn component_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.store_dir.join(format!("{hex}.wasm"))
    }

    /// Stores component bytes under their digest; returns the path.
    pub fn store(&self, wasm: &[u8]) -> Result<PathBuf, LockError> {
        let path = self.component_path(&sha256(wasm));
        write_atomically(&path, wasm).map_err(|source| LockError::Io {
            op: "store the component",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Deletes a stored component no entry of `lock` refers to any more.
    pub fn discard_unused(&self, digest: &str, lock: &LockFile) -> Result<(), LockError> {
        if lock.plugins.iter().any(|p| p.digest == digest) {
            return Ok(());
        }
        let path = self.component_path(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LockError::Io {
                op: "remove the component",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The component of an installed plugin, re-hashed against the lock file.
    pub fn component(&self, locked: &Locked) -> Result<Vec<u8>, LockError> {
        let path = self.component_path(&locked.digest);
        let wasm = std::fs::read(&path).map_err(|source| LockError::Io {
            op: "read the installed component",
            path: path.clone(),
            source,
        })?;
        let actual = sha256(&wasm);
        if actual != locked.digest {
            return Err(LockError::Drift {
                name: locked.name.clone(),
                path,
                expected: locked.digest.clone(),
                actual,
            });
        }
        Ok(wasm)
    }
}

/// A pinned plugin's component, verified, with what the user granted it.
#[derive(Debug, Clone)]
pub struct PinnedComponent {
    pub name: String,
    pub version: Version,
    /// `sha256:<hex>` of `wasm`.
    pub digest: String,
    pub wasm: Vec<u8>,
    /// The grants recorded at install; `None` for a stock plugin, which no
    /// install narrowed (its manifest's requests stand).
    pub granted: Option<Capabilities>,
}

/// Checks a pipeline's pins (`name = "^1.2"`) against the lock file and returns the
/// pinned components: the locked ones re-hashed against their locked digests (a
/// component changed since install is refused), or, for a name the lock file does
/// not have, the stock plugin built into this binary. A pin nothing satisfies is
/// an error naming the install command that would.
pub fn pinned_components(
    installation: &Installation,
    pins: &BTreeMap<String, VersionReq>,
) -> Result<Vec<PinnedComponent>, LockError> {
    let lock = installation.lock()?;
    pins.iter()
        .map(|(name, req)| {
            let (version, wasm, granted) = match lock.get(name) {
                Some(locked) => (
                    locked.version.clone(),
                    installation.component(locked)?,
                    Some(locked.granted.clone()),
                ),
                None => {
                    let stock = stock::find(name)
                        .and_then(|wasm| Some((Manifest::from_wasm(wasm, name).ok()?, wasm)));
                    let (manifest, wasm) = stock.ok_or_else(|| LockError::NotInstalled {
                        name: name.clone(),
                        req: req.clone(),
                    })?;
                    (manifest.version, wasm.to_vec(), None)
                }
            };
            if !req.matches(&version) {
                return Err(LockError::PinMismatch {
                    name: name.clone(),
                    req: req.clone(),
                    version,
                });
            }
            Ok(PinnedComponent {
                name: name.clone(),
                version,
                digest: sha256(&wasm),
                wasm,
                granted,
            })
        })
        .collect()
}

/// What `requested` asks for beyond `granted` (list entries only: memory and time
/// can only lower the host's limits, never raise them), or `None` when nothing.
pub fn beyond(requested: &Capabilities, granted: &Capabilities) -> Option<Capabilities> {
    let extra = |r: &Vec<String>, g: &Vec<String>| -> Vec<String> {
        r.iter().filter(|x| !g.contains(x)).cloned().collect()
    };
    let more = Capabilities {
        guest_read: extra(&requested.guest_read, &granted.guest_read),
        guest_write: extra(&requested.guest_write, &granted.guest_write),
        commands: extra(&requested.commands, &granted.commands),
        network: extra(&requested.network, &granted.network),
        devices: extra(&requested.devices, &granted.devices),
        memory_mb: None,
        time_secs: None,
    };
    (more != Capabilities::default()).then_some(more)
}

/// `sha256:<hex>` of the bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn xdg_dir(var: &str, home_relative: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_relative)))
        .unwrap_or_else(std::env::temp_dir)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installation(dir: &Path) -> Installation {
        Installation {
            lock_path: dir.join("config/plugins.lock"),
            store_dir: dir.join("data/plugins"),
        }
    }

    fn locked(name: &str, version: &str, wasm: &[u8]) -> Locked {
        Locked {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            digest: sha256(wasm),
            source: "file:/x.wasm".into(),
            requirement: None,
            granted: Capabilities {
                guest_read: vec!["/etc/motd".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn lock_round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installation(dir.path());
        assert_eq!(inst.lock().unwrap(), LockFile::default());
        let mut lock = LockFile::default();
        lock.upsert(locked("zeta", "1.0.0", b"z"));
        lock.upsert(locked("alpha", "0.1.0", b"a"));
        inst.save(&lock).unwrap();
        let back = inst.lock().unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.plugins[0].name, "alpha");
        std::fs::write(&inst.lock_path, "[[plugin]]\nname = 1\n").unwrap();
        let err = inst.lock().unwrap_err().to_string();
        assert!(err.contains("malformed lock file"), "{err}");
    }

    #[test]
    fn pins_return_verified_components_and_refuse_drift() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installation(dir.path());
        let wasm = b"component bytes".to_vec();
        inst.store(&wasm).unwrap();
        let mut lock = LockFile::default();
        lock.upsert(locked("demo", "1.2.5", &wasm));
        inst.save(&lock).unwrap();

        let pin =
            |req: &str| BTreeMap::from([("demo".to_string(), VersionReq::parse(req).unwrap())]);
        let got = pinned_components(&inst, &pin("^1.2")).unwrap();
        assert_eq!((&got[0].wasm, &got[0].digest), (&wasm, &sha256(&wasm)));
        assert_eq!(got[0].granted.as_ref().unwrap().guest_read, ["/etc/motd"]);
        let err = pinned_components(&inst, &pin("^2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pinned to ^2 but 1.2.5 is installed"), "{err}");
        let other = BTreeMap::from([("other".to_string(), VersionReq::STAR)]);
        let err = pinned_components(&inst, &other).unwrap_err().to_string();
        assert!(err.contains("is not installed"), "{err}");

        std::fs::write(inst.component_path(&sha256(&wasm)), b"tampered").unwrap();
        let err = pinned_components(&inst, &pin("^1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match the lock file"), "{err}");
    }

    #[test]
    fn stock_plugins_satisfy_pins_without_an_install() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installation(dir.path());
        let (name, bytes) = stock::STOCK[0];
        let version = Manifest::from_wasm(bytes, name).unwrap().version;
        let pins = BTreeMap::from([(name.to_string(), VersionReq::STAR)]);
        let got = pinned_components(&inst, &pins).unwrap();
        assert_eq!(
            (got[0].version.clone(), got[0].granted.clone()),
            (version, None)
        );
        assert_eq!(got[0].wasm, bytes);
        let pins = BTreeMap::from([(name.to_string(), VersionReq::parse(">=99").unwrap())]);
        assert!(pinned_components(&inst, &pins).is_err());
    }

    #[test]
    fn beyond_lists_only_new_requests() {
        let granted = Capabilities {
            guest_read: vec!["/etc/motd".into()],
            ..Default::default()
        };
        let mut requested = granted.clone();
        requested.memory_mb = Some(16);
        assert_eq!(beyond(&requested, &granted), None);
        requested.guest_write.push("/etc/motd".into());
        let more = beyond(&requested, &granted).unwrap();
        assert_eq!(more.guest_write, vec!["/etc/motd".to_string()]);
        assert!(more.guest_read.is_empty());
    }

    #[test]
    fn discard_keeps_shared_components() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installation(dir.path());
        let path = inst.store(b"w").unwrap();
        let mut lock = LockFile::default();
        lock.upsert(locked("a", "1.0.0", b"w"));
        inst.discard_unused(&sha256(b"w"), &lock).unwrap();
        assert!(path.exists());
        lock.remove("a");
        inst.discard_unused(&sha256(b"w"), &lock).unwrap();
        assert!(!path.exists());
    }
}
