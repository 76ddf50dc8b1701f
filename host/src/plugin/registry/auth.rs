//! Registry credentials and the distribution API's auth challenges.
//!
//! Credentials come from REHOST_REGISTRY_USER/REHOST_REGISTRY_PASSWORD, else from the
//! docker client's config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
//! `auths` entries). With none, requests are anonymous. A `401` names the scheme:
//! `Basic` gets the credentials directly, `Bearer` trades them (or nothing) for a
//! token at the realm the registry names.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;

use super::RegistryError;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.user)
    }
}

impl Credentials {
    /// The credentials for a registry `host[:port]`, if any are configured.
    pub fn lookup(host: &str) -> Result<Option<Self>, RegistryError> {
        if let (Some(user), Some(password)) = (
            std::env::var_os("REHOST_REGISTRY_USER"),
            std::env::var_os("REHOST_REGISTRY_PASSWORD"),
        ) {
            return Ok(Some(Self {
                user: user.to_string_lossy().into_owned(),
                password: password.to_string_lossy().into_owned(),
            }));
        }
        let Some(path) = docker_config_path() else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RegistryError::Credentials {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        from_docker_config(&text, host)
            .map_err(|reason| RegistryError::Credentials { path, reason })
    }

    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.user, self.password))
        )
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The `auths` entry for `host`; keys may carry a scheme and a path
/// (`https://index.docker.io/v1/`), so they are compared by their host part.
fn from_docker_config(text: &str, host: &str) -> Result<Option<Credentials>, String> {
    let config: DockerConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let key_host = |key: &str| {
        let rest = key.split_once("://").map_or(key, |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_string()
    };
    let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| key_host(key) == host)
        .map(|(_, e)| e)
    else {
        return Ok(None);
    };
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            user: user.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = &entry.auth else {
        return Ok(None);
    };
    let decoded = BASE64
        .decode(auth.trim())
        .map_err(|e| format!("auths.{host:?}.auth is not base64: {e}"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| format!("auths.{host:?}.auth is not UTF-8 `user:password`"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("auths.{host:?}.auth is not `user:password`"))?;
    Ok(Some(Credentials {
        user: user.into(),
        password: password.into(),
    }))
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Self::Basic),
            "bearer" => {
                let params = auth_params(params);
                Some(Self::Bearer {
                    realm: params.get("realm")?.clone(),
                    service: params.get("service").cloned(),
                    scope: params.get("scope").cloned(),
                })
            }
            _ => None,
        }
    }
}

/// `key="value",key2="v,2"` into a map (quoted values may hold commas).
fn auth_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key, value.to_string());
        rest = tail.trim_start_matches(',');
    }
    params
}

/// The token in a token endpoint's JSON answer.
pub fn token_from_response(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let parsed: TokenResponse = serde_json::from_str(body).ok()?;
    parsed.token.or(parsed.access_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn docker_config_entries_by_host() {
        let auth = BASE64.encode("alice:s3cret:with-colon");
        let text = format!(
            r#"{{"auths": {{"https://reg.example:5000/v1/": {{"auth": "{auth}"}},
                "other": {{"username": "bob", "password": "pw"}}}}}}"#
        );
        let c = from_docker_config(&text, "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "s3cret:with-colon")
        );
        let c = from_docker_config(&text, "other").unwrap().unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(from_docker_config(&text, "nowhere").unwrap(), None);
        let err = from_docker_config(r#"{"auths": {"x": {"auth": "%%"}}}"#, "x").unwrap_err();
        assert!(err.contains("not base64"), "{err}");
    }

    #[test]
    fn token_answers() {
        assert_eq!(
            token_from_response(r#"{"token":"t1"}"#).as_deref(),
            Some("t1")
        );
        assert_eq!(
            token_from_response(r#"{"access_token":"t2"}"#).as_deref(),
            Some("t2")
        );
        assert_eq!(token_from_response("{}"), None);
    }
}
