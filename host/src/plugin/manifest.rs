//! Plugin manifests: what a plugin is and every capability it asks for.
//!
//! The manifest is TOML embedded in the component as the `rehost-manifest` custom
//! section (by `rehost_sdk::manifest!`), so it is read without running the plugin.

use std::fmt;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

/// The custom section holding the manifest.
pub const SECTION: &str = "rehost-manifest";

/// The plugin API this host implements (the WIT package version).
pub const HOST_API: Version = Version::new(0, 1, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Source,
    Fixer,
    Packager,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Source => "source",
            Kind::Fixer => "fixer",
            Kind::Packager => "packager",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: Version,
    pub kind: Kind,
    pub description: String,
    /// The host API range the plugin was built for.
    pub api: VersionReq,
    /// Guests the plugin applies to (fixers); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applies_to: Vec<AppliesTo>,
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// A distro the plugin applies to, with an optional version requirement on its
/// VERSION_ID ("12" and "5.11" compare as 12.0.0 and 5.11.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliesTo {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<VersionReq>,
}

/// Everything a plugin may ask for. Anything absent is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Guest path globs the plugin may read (`*` stays in one directory, `**` crosses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_read: Vec<String>,
    /// Guest path globs the plugin may create, change or remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_write: Vec<String>,
    /// Commands (argv[0], as a guest path or bare name) it may run inside the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// Network hosts it may reach (sources), or `*` for commands in the guest that
    /// need the network (package installs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
    /// Host block devices or files it may read (sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Memory limit in MiB (the host's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Wall-clock limit per call in seconds (the host's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{origin}: not a WebAssembly component ({reason})")]
    NotWasm { origin: String, reason: String },
    #[error("{origin}: no rehost manifest (custom section `{SECTION}`); build it with rehost_sdk::manifest!")]
    Missing { origin: String },
    #[error("{origin}: malformed manifest: {reason}")]
    Malformed { origin: String, reason: String },
    #[error(
        "plugin {name} {version} needs host API {api}, but this rehost implements {HOST_API}; \
         use a {name} release built for API {HOST_API}"
    )]
    ApiMismatch {
        name: String,
        version: Version,
        api: VersionReq,
    },
}

impl Manifest {
    /// Parses manifest TOML; `origin` names the file or plugin in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Malformed {
            origin: origin.into(),
            reason: e.message().to_string(),
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    /// Reads the embedded manifest of a component without instantiating it.
    pub fn from_wasm(wasm: &[u8], origin: &str) -> Result<Self, ManifestError> {
        let text = embedded_section(wasm, origin)?.ok_or_else(|| ManifestError::Missing {
            origin: origin.into(),
        })?;
        let text = std::str::from_utf8(&text).map_err(|_| ManifestError::Malformed {
            origin: origin.into(),
            reason: "the manifest is not UTF-8".into(),
        })?;
        Self::parse(text, origin)
    }

    fn validate(&self, origin: &str) -> Result<(), ManifestError> {
        let bad = |reason: String| ManifestError::Malformed {
            origin: origin.into(),
            reason,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad(format!(
                "name {:?} must be lowercase letters, digits and '-'",
                self.name
            )));
        }
        for glob in self
            .capabilities
            .guest_read
            .iter()
            .chain(&self.capabilities.guest_write)
        {
            if !glob.starts_with('/') || glob.split('/').any(|c| c == "..") {
                return Err(bad(format!(
                    "guest path pattern {glob:?} must be absolute and must not contain '..'"
                )));
            }
            globset::Glob::new(glob)
                .map_err(|e| bad(format!("guest path pattern {glob:?}: {e}")))?;
        }
        Ok(())
    }

    /// Refuses a plugin built for another host API.
    pub fn check_api(&self) -> Result<(), ManifestError> {
        if self.api.matches(&HOST_API) {
            Ok(())
        } else {
            Err(ManifestError::ApiMismatch {
                name: self.name.clone(),
                version: self.version.clone(),
                api: self.api.clone(),
            })
        }
    }

    /// Whether a fixer applies to a guest (`id`, `VERSION_ID`, ID_LIKE).
    pub fn applies_to(&self, id: &str, id_like: &[String], version_id: &str) -> bool {
        if self.applies_to.is_empty() {
            return true;
        }
        let version = lenient_version(version_id);
        self.applies_to.iter().any(|a| {
            (a.id == id || id_like.contains(&a.id))
                && match (&a.versions, &version) {
                    (None, _) => true,
                    (Some(req), Some(v)) => req.matches(v),
                    (Some(_), None) => false,
                }
        })
    }
}

/// "12" -> 12.0.0, "5.11" -> 5.11.0, "22.04" -> 22.4.0; None when not numeric.
pub fn lenient_version(text: &str) -> Option<Version> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().transpose().ok()?.unwrap_or(0);
    let patch = parts.next().transpose().ok()?.unwrap_or(0);
    Some(Version::new(major, minor, patch))
}

/// The manifest section's bytes, searched in the component and its nested modules.
fn embedded_section(wasm: &[u8], origin: &str) -> Result<Option<Vec<u8>>, ManifestError> {
    if !wasmparser::Parser::is_component(wasm) {
        let reason = if wasmparser::Parser::is_core_wasm(wasm) {
            "a core module; plugins are components built for wasm32-wasip2".to_string()
        } else {
            "bad magic number".to_string()
        };
        return Err(ManifestError::NotWasm {
            origin: origin.into(),
            reason,
        });
    }
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| ManifestError::NotWasm {
            origin: origin.into(),
            reason: e.to_string(),
        })?;
        if let wasmparser::Payload::CustomSection(reader) = payload {
            if reader.name() == SECTION {
                return Ok(Some(reader.data().to_vec()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "xen-console"
version = "0.1.0"
kind = "fixer"
description = "Xen consoles to serial"
api = "^0.1"
applies_to = [{ id = "debian", versions = ">=10" }, { id = "centos" }]
[capabilities]
guest_read = ["/etc/**"]
guest_write = ["/etc/inittab"]
"#;

    #[test]
    fn parses_and_checks_api() {
        let m = Manifest::parse(GOOD, "test").unwrap();
        assert_eq!(m.kind, Kind::Fixer);
        m.check_api().unwrap();
        let mut old = m.clone();
        old.api = VersionReq::parse("^1").unwrap();
        let err = old.check_api().unwrap_err().to_string();
        assert!(err.contains("needs host API ^1"), "{err}");
    }

    #[test]
    fn applies_to_by_id_and_version() {
        let m = Manifest::parse(GOOD, "test").unwrap();
        assert!(m.applies_to("debian", &[], "12"));
        assert!(!m.applies_to("debian", &[], "9"));
        assert!(m.applies_to("centos", &[], "5.11"));
        assert!(m.applies_to("raspbian", &["debian".into()], "11"));
        assert!(!m.applies_to("fedora", &[], "39"));
    }

    #[test]
    fn malformed_manifests_name_the_origin_and_field() {
        let err = Manifest::parse("name = \"x\"", "plug.wasm")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("plug.wasm: malformed manifest"), "{err}");
        let bad = GOOD.replace("/etc/inittab", "/etc/../shadow");
        let err = Manifest::parse(&bad, "p").unwrap_err().to_string();
        assert!(err.contains("must not contain '..'"), "{err}");
        let bad = GOOD.replace("kind = \"fixer\"", "kind = \"fixer\"\nsurprise = 1");
        assert!(Manifest::parse(&bad, "p").is_err());
    }

    #[test]
    fn not_a_component() {
        let err = Manifest::from_wasm(b"\0asm\x01\0\0\0", "core.wasm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("core module"), "{err}");
        let err = Manifest::from_wasm(b"hello", "x").unwrap_err().to_string();
        assert!(err.contains("bad magic"), "{err}");
    }

    #[test]
    fn lenient_versions() {
        assert_eq!(lenient_version("12"), Some(Version::new(12, 0, 0)));
        assert_eq!(lenient_version("5.11"), Some(Version::new(5, 11, 0)));
        assert_eq!(lenient_version("bookworm/sid"), None);
    }
}
