//! Registry addresses and artifact references (`host[:port]/repo[:tag][@sha256:…]`).
//!
//! Registries on the loopback are plain HTTP (as `docker-registry` runs by default);
//! everything else is HTTPS unless the address says `http://` explicitly.

use std::fmt;

use super::RegistryError;

/// A registry server: where its `/v2/` API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `host[:port]`, as written in references and docker credentials.
    pub host: String,
    pub https: bool,
}

impl Registry {
    /// Parses `host[:port]`, `http://host[:port]` or `https://host[:port]` (a
    /// trailing `/` is ignored).
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let text = text.trim().trim_end_matches('/');
        let (host, https) = if let Some(rest) = text.strip_prefix("https://") {
            (rest, Some(true))
        } else if let Some(rest) = text.strip_prefix("http://") {
            (rest, Some(false))
        } else {
            (text, None)
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(RegistryError::BadReference {
                reference: text.into(),
                reason: "a registry is `host[:port]`, optionally with http:// or https://".into(),
            });
        }
        let https = https.unwrap_or_else(|| !is_loopback(host));
        Ok(Self {
            host: host.into(),
            https,
        })
    }

    /// `http(s)://host[:port]`, the base of every API URL.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.host
        )
    }
}

impl fmt::Display for Registry {
    /// The scheme is written only when it is not the one `parse` would infer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.https, is_loopback(&self.host)) {
            (true, true) => write!(f, "https://{}", self.host),
            (false, false) => write!(f, "http://{}", self.host),
            _ => f.write_str(&self.host),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

/// One artifact (or, without tag and digest, a repository) in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: Registry,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>` of the OCI manifest.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `[scheme://]host[:port]/repo/path[:tag][@sha256:hex]`.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let bad = |reason: &str| RegistryError::BadReference {
            reference: text.into(),
            reason: reason.into(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(check_digest(digest).map_err(|r| bad(&r))?)),
            None => (text, None),
        };
        let after_scheme = rest.find("://").map(|i| i + 3).unwrap_or(0);
        let slash = rest[after_scheme..]
            .find('/')
            .map(|i| i + after_scheme)
            .ok_or_else(|| bad("expected host[:port]/repository[:tag]"))?;
        let registry = Registry::parse(&rest[..slash])?;
        let path = &rest[slash + 1..];
        // A ':' after the last '/' starts the tag (one before it is a port).
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (path, None),
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if repository.is_empty() || !repository.chars().all(valid) {
            return Err(bad(
                "the repository must be lowercase letters, digits, '.', '_', '-' and '/'",
            ));
        }
        Ok(Self {
            registry,
            repository: repository.into(),
            tag,
            digest,
        })
    }

    /// The repository alone, without tag or digest.
    pub fn repository_ref(&self) -> Reference {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// The tag or digest to ask the registry for (the digest wins: it is exact).
    pub fn manifest_ref(&self) -> Option<&str> {
        self.digest.as_deref().or(self.tag.as_deref())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Accepts `sha256:` followed by 64 lowercase hex digits.
pub fn check_digest(digest: &str) -> Result<String, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(digest.into())
        }
        _ => Err(format!(
            "digest {digest:?} is not `sha256:` followed by 64 lowercase hex digits"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn loopback_is_http_elsewhere_https() {
        let local = Registry::parse("127.0.0.1:5000").unwrap();
        assert_eq!(local.base_url(), "http://127.0.0.1:5000");
        assert_eq!(local.to_string(), "127.0.0.1:5000");
        let remote = Registry::parse("ghcr.io/").unwrap();
        assert_eq!(remote.base_url(), "https://ghcr.io");
        let plain = Registry::parse("http://build:5000").unwrap();
        assert_eq!(plain.to_string(), "http://build:5000");
        assert_eq!(Registry::parse(&plain.to_string()).unwrap(), plain);
    }

    #[test]
    fn references_round_trip() {
        let text = format!("localhost:5000/rehost-plugins/demo:1.0.0@{D}");
        let r = Reference::parse(&text).unwrap();
        assert_eq!(r.registry.host, "localhost:5000");
        assert_eq!(r.repository, "rehost-plugins/demo");
        assert_eq!(r.tag.as_deref(), Some("1.0.0"));
        assert_eq!(r.manifest_ref(), Some(D));
        assert_eq!(r.to_string(), text);
        let repo = Reference::parse("http://reg:5000/a/b").unwrap();
        assert_eq!((repo.tag, repo.digest), (None, None));
        assert!(!repo.registry.https);
    }

    #[test]
    fn bad_references_say_why() {
        let err = Reference::parse("demo@sha256:1234")
            .unwrap_err()
            .to_string();
        assert!(err.contains("64 lowercase hex"), "{err}");
        let err = Reference::parse("just-a-name").unwrap_err().to_string();
        assert!(err.contains("host[:port]/repository"), "{err}");
        assert!(Reference::parse("reg:5000/Upper/Case").is_err());
    }
}
