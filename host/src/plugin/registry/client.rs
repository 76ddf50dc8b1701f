//! A blocking client for the OCI distribution API (v2): tags, manifests, blobs and
//! monolithic blob uploads. Every blob read is checked against its digest here, so
//! nothing above ever sees unverified bytes.

use std::cell::RefCell;
use std::time::Duration;

use sha2::{Digest, Sha256};
use ureq::http::{Method, Request, Response};
use ureq::Body;

use super::auth::{token_from_response, Challenge, Credentials};
use super::reference::Registry;
use super::RegistryError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Components are a few MiB; anything past this is not a plugin.
const MAX_BLOB: u64 = 512 << 20;
const MAX_JSON: u64 = 4 << 20;

pub struct Client {
    registry: Registry,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    /// The `Authorization` header that last worked (a bearer token is reused).
    authorization: RefCell<Option<String>>,
}

impl Client {
    /// A client with the configured credentials for this registry (see [`Credentials::lookup`]).
    pub fn new(registry: &Registry) -> Result<Self, RegistryError> {
        Ok(Self::with_credentials(
            registry,
            Credentials::lookup(&registry.host)?,
        ))
    }

    pub fn with_credentials(registry: &Registry, credentials: Option<Credentials>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Self {
            credentials,
            registry: registry.clone(),
            agent,
            authorization: RefCell::new(None),
        }
    }

    /// The repository's tags; `None` when the repository does not exist.
    pub fn tags(&self, repository: &str) -> Result<Option<Vec<String>>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let url = self.url(&format!("/v2/{repository}/tags/list"));
        let mut resp = self.send(Method::GET, &url, &[], None)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.status_error("list the tags of", &url, resp)),
        }
        let body = read(&mut resp, MAX_JSON, &url)?;
        let tags: Tags = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            url: url.clone(),
            reason: format!("the tag list is not JSON: {e}"),
        })?;
        Ok(Some(tags.tags.unwrap_or_default()))
    }

    /// An OCI manifest by tag or digest, with the sha256 of its bytes; `None` when
    /// there is no such tag. A manifest asked for by digest is checked against it.
    pub fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let mut resp = self.send(Method::GET, &url, &[("Accept", OCI_MANIFEST)], None)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.status_error("fetch the manifest", &url, resp)),
        }
        let body = read(&mut resp, MAX_JSON, &url)?;
        let digest = sha256(&body);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {url}"),
                expected: reference.into(),
                actual: digest,
            });
        }
        Ok(Some((body, digest)))
    }

    /// A blob, verified against its digest and size.
    pub fn blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let mut resp = self.send(Method::GET, &url, &[], None)?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error("download the blob", &url, resp));
        }
        let body = read(&mut resp, MAX_BLOB, &url)?;
        let actual = sha256(&body);
        if actual != digest || body.len() as u64 != size {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {url} ({} bytes, {size} expected)", body.len()),
                expected: digest.into(),
                actual,
            });
        }
        Ok(body)
    }

    /// Uploads a blob unless the registry has it already; returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> Result<String, RegistryError> {
        let digest = sha256(bytes);
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let resp = self.send(Method::HEAD, &url, &[], None)?;
        if resp.status().as_u16() == 200 {
            return Ok(digest);
        }
        let start = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let resp = self.send(Method::POST, &start, &[("Content-Length", "0")], None)?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_error("start a blob upload", &start, resp));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                url: start.clone(),
                reason: "the upload answer has no Location header".into(),
            })?;
        let location = if location.starts_with('/') {
            self.url(location)
        } else {
            location.to_string()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let headers = [("Content-Type", "application/octet-stream")];
        let resp = self.send(Method::PUT, &put, &headers, Some(bytes))?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("upload the blob", &put, resp));
        }
        Ok(digest)
    }

    /// Stores a manifest under a tag; returns its digest.
    pub fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &[u8],
    ) -> Result<String, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{tag}"));
        let resp = self.send(
            Method::PUT,
            &url,
            &[("Content-Type", OCI_MANIFEST)],
            Some(manifest),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("store the manifest", &url, resp));
        }
        Ok(sha256(manifest))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.registry.base_url())
    }

    /// Sends a request; on a `401`, answers the challenge once and sends it again.
    fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response<Body>, RegistryError> {
        let resp = self.send_once(method.clone(), url, headers, body)?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        let authorization = match challenge {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => c.basic_header(),
                None => return Err(self.unauthorized(url, "it asks for a user and password")),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => format!("Bearer {}", self.token(&realm, service, scope)?),
            None => return Err(self.unauthorized(url, "its challenge is not Basic or Bearer")),
        };
        *self.authorization.borrow_mut() = Some(authorization);
        let resp = self.send_once(method, url, headers, body)?;
        if resp.status().as_u16() == 401 {
            return Err(self.unauthorized(url, "it refused the credentials"));
        }
        Ok(resp)
    }

    fn send_once(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(auth) = self.authorization.borrow().as_ref() {
            request = request.header("Authorization", auth);
        }
        let result = match body {
            Some(bytes) => request.body(bytes).map(|r| self.agent.run(r)),
            None => request.body(()).map(|r| self.agent.run(r)),
        };
        let result = result.map_err(|e| RegistryError::Protocol {
            url: url.into(),
            reason: format!("cannot build the request: {e}"),
        })?;
        result.map_err(|e| RegistryError::Unreachable {
            registry: self.registry.to_string(),
            url: url.into(),
            reason: e.to_string(),
        })
    }

    /// Trades the credentials (or nothing, for anonymous pulls) for a bearer token.
    fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String, RegistryError> {
        let mut url = realm.to_string();
        let params: Vec<String> = [("service", service), ("scope", scope)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", query_escape(&v))))
            .collect();
        if !params.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&params.join("&"));
        }
        let mut request = Request::builder().method(Method::GET).uri(&url);
        if let Some(c) = &self.credentials {
            request = request.header("Authorization", c.basic_header());
        }
        let request = request.body(()).map_err(|e| RegistryError::Protocol {
            url: url.clone(),
            reason: format!("cannot build the token request: {e}"),
        })?;
        let mut resp = self
            .agent
            .run(request)
            .map_err(|e| RegistryError::Unreachable {
                registry: self.registry.to_string(),
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if resp.status().as_u16() != 200 {
            return Err(self.unauthorized(
                &url,
                &format!("its token service answered {}", resp.status()),
            ));
        }
        let body = read(&mut resp, MAX_JSON, &url)?;
        token_from_response(&String::from_utf8_lossy(&body)).ok_or_else(|| {
            RegistryError::Protocol {
                url,
                reason: "the token answer holds no token".into(),
            }
        })
    }

    fn unauthorized(&self, url: &str, why: &str) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.to_string(),
            url: url.into(),
            reason: why.into(),
            had_credentials: self.credentials.is_some(),
        }
    }

    /// An unexpected status, with the registry's own error message when it sent one.
    fn status_error(&self, op: &str, url: &str, mut resp: Response<Body>) -> RegistryError {
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return self.unauthorized(url, &format!("it answered {status}"));
        }
        let detail = read(&mut resp, MAX_JSON, url)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_default();
        RegistryError::Status {
            op: op.into(),
            url: url.into(),
            status,
            detail,
        }
    }
}

fn read(resp: &mut Response<Body>, limit: u64, url: &str) -> Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| RegistryError::Protocol {
            url: url.into(),
            reason: format!("cannot read the answer: {e}"),
        })
}

/// `sha256:<hex>` of some bytes, the OCI digest form.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Percent-encodes a query value (scopes hold ':' and ',').
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// A registry that wants a bearer token from its own token endpoint, which
    /// wants basic credentials; each request seen is sent back to the test.
    fn bearer_registry() -> (Registry, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                while reader.read_line(&mut head).unwrap_or(0) > 2 && !head.ends_with("\r\n\r\n") {}
                let target = head.split(' ').nth(1).unwrap_or("").to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or(l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_string();
                let _ = seen.send(format!("{target} [{auth}]"));
                let (status, extra, body) = if target.starts_with("/token?") {
                    if auth == "Basic YWxpY2U6cHc=" {
                        ("200 OK", String::new(), r#"{"token":"t0k"}"#)
                    } else {
                        ("401 Unauthorized", String::new(), "{}")
                    }
                } else if auth == "Bearer t0k" {
                    (
                        "200 OK",
                        String::new(),
                        r#"{"name":"p/demo","tags":["1.0.0"]}"#,
                    )
                } else {
                    (
                        "401 Unauthorized",
                        format!(
                            "WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"reg\",scope=\"repository:p/demo:pull\"\r\n"
                        ),
                        "{}",
                    )
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (Registry::parse(&addr.to_string()).unwrap(), requests)
    }

    #[test]
    fn bearer_token_flow_with_basic_credentials() {
        let (registry, requests) = bearer_registry();
        let alice = Credentials {
            user: "alice".into(),
            password: "pw".into(),
        };
        let client = Client::with_credentials(&registry, Some(alice));
        assert_eq!(
            client.tags("p/demo").unwrap(),
            Some(vec!["1.0.0".to_string()])
        );
        let seen: Vec<String> = requests.try_iter().collect();
        assert_eq!(seen[0], "/v2/p/demo/tags/list []");
        assert_eq!(
            seen[1],
            "/token?service=reg&scope=repository%3Ap%2Fdemo%3Apull [Basic YWxpY2U6cHc=]"
        );
        assert_eq!(seen[2], "/v2/p/demo/tags/list [Bearer t0k]");
        // The token is reused.
        client.tags("p/demo").unwrap();
        assert_eq!(
            requests.try_iter().collect::<Vec<_>>(),
            vec!["/v2/p/demo/tags/list [Bearer t0k]"]
        );

        let anonymous = Client::with_credentials(&registry, None);
        let err = anonymous.tags("p/demo").unwrap_err().to_string();
        assert!(err.contains("its token service answered 401"), "{err}");
        assert!(err.contains("REHOST_REGISTRY_USER"), "{err}");
    }
}
