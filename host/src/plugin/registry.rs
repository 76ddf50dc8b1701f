//! Plugins from OCI registries: publishing a component, resolving `NAME[@REQ]` to
//! the highest tag this host can run, and fetching it verified by digest.
//!
//! NAME maps to `<registry>/<prefix>/NAME`; the registry and prefix come from
//! `[registry]` in `$XDG_CONFIG_HOME/rehost/config.toml`, `--registry` overriding.
//! Everything here only reads from registries and returns verified bytes; the
//! consent and the install itself are in [`install`].

use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};
use serde::Deserialize;

use super::manifest::{Manifest, ManifestError, HOST_API};

mod artifact;
mod auth;
mod client;
pub mod install;
pub mod reference;

pub use artifact::{CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_ANNOTATION};
pub use reference::{Reference, Registry};

use artifact::Descriptor;
use client::Client;

pub const DEFAULT_PREFIX: &str = "rehost-plugins";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error(
        "no registry configured: pass --registry URL or set `[registry] url = \"...\"` in {}",
        config.display()
    )]
    NoRegistry { config: PathBuf },
    #[error("{}: cannot read registry credentials: {reason}", path.display())]
    Credentials { path: PathBuf, reason: String },
    #[error("bad reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("cannot reach the registry {registry} ({url}): {reason}; is it running, and is the address right?")]
    Unreachable {
        registry: String,
        url: String,
        reason: String,
    },
    #[error(
        "registry {registry} refused access to {url}: {reason}{}",
        if *had_credentials { "" } else {
            "; set REHOST_REGISTRY_USER and REHOST_REGISTRY_PASSWORD, or log in with a docker client"
        }
    )]
    Unauthorized {
        registry: String,
        url: String,
        reason: String,
        had_credentials: bool,
    },
    #[error("registry: cannot {op} {url}: HTTP {status} {detail}")]
    Status {
        op: String,
        url: String,
        status: u16,
        detail: String,
    },
    #[error("registry {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}; the registry content was altered or corrupted, nothing was installed")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("unknown plugin {name:?}: the registry has no repository {reference}")]
    UnknownPlugin { name: String, reference: String },
    #[error("{reference} is not a rehost plugin: {reason}")]
    NotAPlugin { reference: String, reason: String },
    #[error("plugin {name}: no published version matches {req} (published: {published})")]
    NoMatchingVersion {
        name: String,
        req: VersionReq,
        published: String,
    },
    #[error(
        "plugin {name}: {version}, the newest version matching {req}, needs host API {api}, \
         but this rehost implements {HOST_API}; upgrade rehost or ask for an older version"
    )]
    NeedsNewerApi {
        name: String,
        req: VersionReq,
        version: Version,
        api: VersionReq,
    },
    #[error("{reference}: the component's embedded manifest differs from the one published with it ({field}); refusing it")]
    ManifestDiffers { reference: String, field: String },
    #[error(
        "{reference} is already published with other content; published versions never \
         change: bump the version in the plugin's rehost.toml"
    )]
    AlreadyPublished { reference: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where plugins are published and installed from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub registry: Option<Registry>,
    pub prefix: String,
    /// The config file these came from (named in errors).
    pub config_path: PathBuf,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    registry: Option<RegistrySection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrySection {
    url: Option<String>,
    prefix: Option<String>,
}

impl Settings {
    /// Reads `[registry]` from the rehost config file (other sections belong to
    /// other parts of rehost); `registry` overrides its `url`.
    pub fn load(config_path: &Path, registry: Option<&str>) -> Result<Self, RegistryError> {
        let config_err = |reason: String| RegistryError::Config {
            path: config_path.into(),
            reason,
        };
        let file: ConfigFile = match std::fs::read_to_string(config_path) {
            Ok(text) => toml::from_str(&text).map_err(|e| config_err(e.message().to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(config_err(format!("cannot read: {e}"))),
        };
        let section = file.registry.unwrap_or(RegistrySection {
            url: None,
            prefix: None,
        });
        let url = registry.map(str::to_string).or(section.url);
        let prefix = section
            .prefix
            .unwrap_or_else(|| DEFAULT_PREFIX.into())
            .trim_matches('/')
            .to_string();
        Ok(Self {
            registry: url.as_deref().map(Registry::parse).transpose()?,
            prefix,
            config_path: config_path.into(),
        })
    }

    /// `$XDG_CONFIG_HOME/rehost/config.toml` (else `~/.config/...`).
    pub fn default_path() -> PathBuf {
        super::lockfile::Installation::from_env()
            .lock_path
            .with_file_name("config.toml")
    }

    /// The repository a plugin name maps to.
    pub fn repository(&self, name: &str) -> Result<Reference, RegistryError> {
        let registry = self
            .registry
            .clone()
            .ok_or_else(|| RegistryError::NoRegistry {
                config: self.config_path.clone(),
            })?;
        let repository = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        };
        Ok(Reference {
            registry,
            repository,
            tag: None,
            digest: None,
        })
    }
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A component file.
    File(PathBuf),
    /// `NAME[@REQ]`: the highest matching version.
    Name { name: String, req: VersionReq },
    /// A full reference, or `NAME@sha256:…` (pinned by digest).
    Ref {
        name: Option<String>,
        reference: Reference,
    },
}

impl Spec {
    /// A file (`*.wasm`, or a path starting with `/`, `./` or `../`), `NAME`,
    /// `NAME@REQ`, `NAME@sha256:…`, or `host[:port]/repo[:tag][@sha256:…]`.
    pub fn parse(text: &str, settings: &Settings) -> Result<Self, RegistryError> {
        let is_file =
            text.ends_with(".wasm") || ["/", "./", "../"].iter().any(|p| text.starts_with(p));
        if is_file {
            return Ok(Spec::File(text.into()));
        }
        if text.contains('/') {
            return Ok(Spec::Ref {
                name: None,
                reference: Reference::parse(text)?,
            });
        }
        let (name, version) = text.split_once('@').unwrap_or((text, ""));
        if version.starts_with("sha256:") {
            let mut reference = settings.repository(name)?;
            reference.digest = Some(reference::check_digest(version).map_err(|reason| {
                RegistryError::BadReference {
                    reference: text.into(),
                    reason,
                }
            })?);
            return Ok(Spec::Ref {
                name: Some(name.into()),
                reference,
            });
        }
        let req = if version.is_empty() {
            VersionReq::STAR
        } else {
            VersionReq::parse(version).map_err(|e| RegistryError::BadReference {
                reference: text.into(),
                reason: format!("{version:?} is not a semver requirement: {e}"),
            })?
        };
        Ok(Spec::Name {
            name: name.into(),
            req,
        })
    }
}

/// A published plugin as its OCI manifest describes it (nothing downloaded yet).
#[derive(Debug, Clone)]
pub struct Published {
    /// With tag (when known) and the manifest digest.
    pub reference: Reference,
    pub manifest: Manifest,
    layer: Descriptor,
}

impl Published {
    /// `sha256:…` of the component, as the registry describes it.
    pub fn layer_digest(&self) -> &str {
        &self.layer.digest
    }
}

/// A component fetched from a registry and verified against its digest and its
/// published manifest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub published: Published,
    pub wasm: Vec<u8>,
}

/// Reads one artifact's OCI manifest (by its tag or digest).
pub fn describe(reference: &Reference) -> Result<Published, RegistryError> {
    let client = Client::new(&reference.registry)?;
    describe_with(&client, reference)
}

fn describe_with(client: &Client, reference: &Reference) -> Result<Published, RegistryError> {
    let wanted = reference
        .manifest_ref()
        .ok_or_else(|| RegistryError::BadReference {
            reference: reference.to_string(),
            reason: "name a tag (`:1.2.0`) or a digest (`@sha256:…`)".into(),
        })?;
    let (bytes, digest) = client
        .manifest(&reference.repository, wanted)?
        .ok_or_else(|| RegistryError::NotAPlugin {
            reference: reference.to_string(),
            reason: "the registry has no such tag or digest".into(),
        })?;
    let (oci, manifest) = artifact::parse(&bytes, &reference.to_string()).map_err(|reason| {
        RegistryError::NotAPlugin {
            reference: reference.to_string(),
            reason,
        }
    })?;
    let layer = artifact::check_layout(&oci)
        .map_err(|reason| RegistryError::NotAPlugin {
            reference: reference.to_string(),
            reason,
        })?
        .clone();
    Ok(Published {
        reference: Reference {
            digest: Some(digest),
            ..reference.clone()
        },
        manifest,
        layer,
    })
}

/// The highest version of plugin `name` published in `repository` that matches
/// `req` and whose API this host implements. Only OCI manifests are read, newest
/// first, until one fits.
pub fn resolve(
    repository: &Reference,
    name: &str,
    req: &VersionReq,
) -> Result<Published, RegistryError> {
    let repository = repository.repository_ref();
    let client = Client::new(&repository.registry)?;
    let tags =
        client
            .tags(&repository.repository)?
            .ok_or_else(|| RegistryError::UnknownPlugin {
                name: name.into(),
                reference: repository.to_string(),
            })?;
    let mut versions: Vec<(Version, String)> = tags
        .iter()
        .filter_map(|t| {
            Version::parse(t.trim_start_matches('v'))
                .ok()
                .map(|v| (v, t.clone()))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    let mut newest_too_new = None;
    for (version, tag) in versions.iter().filter(|(v, _)| req.matches(v)) {
        let published = describe_with(
            &client,
            &Reference {
                tag: Some(tag.clone()),
                ..repository.clone()
            },
        )?;
        if published.manifest.api.matches(&HOST_API) {
            return Ok(published);
        }
        newest_too_new.get_or_insert((version.clone(), published.manifest.api));
    }
    match newest_too_new {
        Some((version, api)) => Err(RegistryError::NeedsNewerApi {
            name: name.into(),
            req: req.clone(),
            version,
            api,
        }),
        None => Err(RegistryError::NoMatchingVersion {
            name: name.into(),
            req: req.clone(),
            published: if tags.is_empty() {
                "none".into()
            } else {
                versions
                    .iter()
                    .map(|(v, _)| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

/// Downloads the component, checks its sha256 against the descriptor, and checks
/// that its embedded manifest is the one published with it (the consent prompt
/// shows the embedded one: it is what the host enforces).
pub fn fetch(published: Published) -> Result<Fetched, RegistryError> {
    let reference = &published.reference;
    let client = Client::new(&reference.registry)?;
    let wasm = client.blob(
        &reference.repository,
        &published.layer.digest,
        published.layer.size,
    )?;
    let embedded = Manifest::from_wasm(&wasm, &reference.to_string())?;
    if embedded != published.manifest {
        let field = if embedded.name != published.manifest.name {
            "name"
        } else if embedded.version != published.manifest.version {
            "version"
        } else if embedded.capabilities != published.manifest.capabilities {
            "capabilities"
        } else {
            "description, kind or api"
        };
        return Err(RegistryError::ManifestDiffers {
            reference: reference.to_string(),
            field: field.into(),
        });
    }
    Ok(Fetched { published, wasm })
}

/// Publishes a component as `<registry>/<prefix>/<name>:<version>`. Publishing the
/// same bytes again is a no-op; other bytes under an existing version are refused.
pub fn publish(settings: &Settings, file: &Path) -> Result<Reference, RegistryError> {
    let wasm = std::fs::read(file).map_err(|source| RegistryError::Read {
        path: file.into(),
        source,
    })?;
    let manifest = Manifest::from_wasm(&wasm, &file.display().to_string())?;
    let manifest_toml = toml::to_string(&manifest).map_err(|e| RegistryError::Protocol {
        url: file.display().to_string(),
        reason: format!("cannot render the manifest: {e}"),
    })?;
    let mut reference = settings.repository(&manifest.name)?;
    reference.tag = Some(manifest.version.to_string());
    let client = Client::new(&reference.registry)?;
    let repo = &reference.repository;
    let layer_digest = client::sha256(&wasm);

    let tag = manifest.version.to_string();
    if let Some((bytes, digest)) = client.manifest(repo, &tag)? {
        let same = artifact::parse(&bytes, &reference.to_string())
            .is_ok_and(|(oci, _)| oci.layers[0].digest == layer_digest);
        if !same {
            return Err(RegistryError::AlreadyPublished {
                reference: reference.to_string(),
            });
        }
        reference.digest = Some(digest);
        return Ok(reference);
    }
    client.push_blob(repo, &wasm)?;
    let config = artifact::config_blob(&layer_digest, &manifest_toml);
    let config_digest = client.push_blob(repo, &config)?;
    let oci = artifact::oci_manifest(
        &manifest,
        &manifest_toml,
        Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: config_digest,
            size: config.len() as u64,
        },
        Descriptor {
            media_type: LAYER_MEDIA_TYPE.into(),
            digest: layer_digest,
            size: wasm.len() as u64,
        },
    );
    let bytes = serde_json::to_vec(&oci).map_err(|e| RegistryError::Protocol {
        url: reference.to_string(),
        reason: format!("cannot render the OCI manifest: {e}"),
    })?;
    let digest = client.push_manifest(repo, &tag, &bytes)?;
    reference.digest = Some(digest);
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, text: &str, flag: Option<&str>) -> Result<Settings, RegistryError> {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(&path, flag)
    }

    #[test]
    fn config_file_and_flag() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(
            dir.path(),
            "[registry]\nurl = \"reg.example\"\nprefix = \"org/plugins/\"\n[other]\nx = 1\n",
            None,
        )
        .unwrap();
        assert_eq!(
            s.repository("demo").unwrap().to_string(),
            "reg.example/org/plugins/demo"
        );
        let s = settings(dir.path(), "", Some("127.0.0.1:5000")).unwrap();
        assert_eq!(
            s.repository("demo").unwrap().to_string(),
            "127.0.0.1:5000/rehost-plugins/demo"
        );
        let s = settings(dir.path(), "", None).unwrap();
        let err = s.repository("demo").unwrap_err().to_string();
        assert!(err.contains("pass --registry URL"), "{err}");
        let err = settings(dir.path(), "[registry]\nurl = 5\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.toml"), "{err}");
    }

    #[test]
    fn specs() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), "", Some("localhost:5000")).unwrap();
        assert_eq!(
            Spec::parse("./x.wasm", &s).unwrap(),
            Spec::File("./x.wasm".into())
        );
        assert_eq!(
            Spec::parse("/opt/plugins/fixer", &s).unwrap(),
            Spec::File("/opt/plugins/fixer".into())
        );
        assert_eq!(
            Spec::parse("demo@^1.2", &s).unwrap(),
            Spec::Name {
                name: "demo".into(),
                req: VersionReq::parse("^1.2").unwrap()
            }
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        match Spec::parse(&format!("demo@{digest}"), &s).unwrap() {
            Spec::Ref { name, reference } => {
                assert_eq!(name.as_deref(), Some("demo"));
                assert_eq!(reference.repository, "rehost-plugins/demo");
                assert_eq!(reference.digest, Some(digest));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Spec::parse("reg:5000/p/demo:1.0.0", &s).unwrap(),
            Spec::Ref { name: None, .. }
        ));
        let err = Spec::parse("demo@one", &s).unwrap_err().to_string();
        assert!(err.contains("not a semver requirement"), "{err}");
    }
}
