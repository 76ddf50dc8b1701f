//! glance: STEP 0 "using glance". Authenticates to Keystone v3 with the usual OS_*
//! settings (the password stays with the host), snapshots a server with Nova's
//! `createImage` (or takes an existing image), waits for Glance to report the image
//! active, and has the host stream its data into the work image, verifying
//! Glance's `checksum` (md5) and `os_hash_value`.

use std::time::{Duration, Instant};

use rehost_sdk::source::{
    config, fail, host, info, Digest, DigestAlgorithm, Error, HttpRequest, HttpResponse,
    ImageFormat, Result, Source, SourceReport,
};
use serde::Deserialize;
use serde_json::{json, Value};

rehost_sdk::manifest!("../rehost.toml");

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Snapshot this server (Nova `createImage`)...
    pub server: Option<String>,
    /// ...or download this existing image.
    pub image: Option<String>,
    /// The snapshot's name (default: rehost-SERVER).
    pub snapshot_name: Option<String>,
    /// Keystone and scope; each defaults to its OS_* variable.
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub project_name: Option<String>,
    pub user_domain_name: Option<String>,
    pub project_domain_name: Option<String>,
    pub region: Option<String>,
    /// Which catalog endpoints to use (public, internal, admin).
    pub interface: Option<String>,
    /// The secret holding the password (environment or pipeline file secrets).
    pub password_secret: String,
    /// Seconds between status polls, and before giving up on the snapshot.
    pub poll_secs: u64,
    pub timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: None,
            image: None,
            snapshot_name: None,
            auth_url: None,
            username: None,
            project_name: None,
            user_domain_name: None,
            project_domain_name: None,
            region: None,
            interface: None,
            password_secret: "OS_PASSWORD".into(),
            poll_secs: 5,
            timeout_secs: 3600,
        }
    }
}

/// A config value, else its OS_* variable, else a default.
fn setting(value: &Option<String>, var: &str, default: Option<&str>) -> Result<String> {
    if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
        return Ok(v.clone());
    }
    if let Some(v) = host::setting(var)?.filter(|v| !v.is_empty()) {
        return Ok(v);
    }
    default.map(String::from).ok_or_else(|| {
        Error::Invalid(format!(
            "glance needs {var} (set it, or give it in the source config)"
        ))
    })
}

/// A Keystone session: the token and the endpoints it was issued with.
struct Session {
    token: String,
    catalog: Vec<Value>,
    region: Option<String>,
    interface: String,
}

impl Session {
    fn login(cfg: &Config) -> Result<Self> {
        let auth_url = setting(&cfg.auth_url, "OS_AUTH_URL", None)?;
        let user = setting(&cfg.username, "OS_USERNAME", None)?;
        let project = setting(&cfg.project_name, "OS_PROJECT_NAME", None)?;
        let user_domain = setting(
            &cfg.user_domain_name,
            "OS_USER_DOMAIN_NAME",
            Some("Default"),
        )?;
        let project_domain = setting(
            &cfg.project_domain_name,
            "OS_PROJECT_DOMAIN_NAME",
            Some("Default"),
        )?;
        let base = auth_url.trim_end_matches('/');
        let base = if base.ends_with("/v3") {
            base.to_string()
        } else {
            format!("{base}/v3")
        };
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user,
                "domain": {"name": user_domain},
                "password": format!("{{{{secret:{}}}}}", cfg.password_secret),
            }}},
            "scope": {"project": {"name": project, "domain": {"name": project_domain}}},
        }});
        let resp = host::http(&json_request(
            "POST",
            format!("{base}/auth/tokens"),
            None,
            &body,
        ))?;
        if resp.status == 401 {
            return Err(Error::Denied(format!(
                "Keystone at {base} refused the credentials of user {user} (domain \
                 {user_domain}) for project {project} (HTTP 401: {}); check OS_USERNAME, \
                 {} and the project",
                api_message(&resp),
                cfg.password_secret
            )));
        }
        let reply = expect_json(&resp, "Keystone authentication", &[201])?;
        let token = resp
            .header("X-Subject-Token")
            .ok_or_else(|| fail("Keystone answered without an X-Subject-Token header"))?
            .to_string();
        let catalog = reply["token"]["catalog"]
            .as_array()
            .cloned()
            .ok_or_else(|| fail("Keystone's token has no service catalog"))?;
        Ok(Self {
            token,
            catalog,
            region: setting(&cfg.region, "OS_REGION_NAME", Some(""))
                .ok()
                .filter(|r| !r.is_empty()),
            interface: setting(&cfg.interface, "OS_INTERFACE", Some("public"))?,
        })
    }

    /// The catalog URL of a service type ("compute", "image").
    fn endpoint(&self, service: &str) -> Result<String> {
        self.catalog
            .iter()
            .filter(|s| s["type"] == service)
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
            .find(|e| {
                e["interface"] == self.interface.as_str()
                    && self
                        .region
                        .as_ref()
                        .is_none_or(|r| e["region_id"] == r.as_str() || e["region"] == r.as_str())
            })
            .and_then(|e| e["url"].as_str())
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "the service catalog has no {} {service} endpoint{}",
                    self.interface,
                    self.region
                        .as_ref()
                        .map(|r| format!(" in region {r}"))
                        .unwrap_or_default()
                ))
            })
    }

    fn get(&self, url: String) -> HttpRequest {
        HttpRequest::new("GET", url).header("X-Auth-Token", &self.token)
    }
}

fn json_request(method: &str, url: String, token: Option<&str>, body: &Value) -> HttpRequest {
    let req = HttpRequest::new(method, url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_string());
    match token {
        Some(t) => req.header("X-Auth-Token", t),
        None => req,
    }
}

/// The message of an OpenStack error body, or the body's start.
fn api_message(resp: &HttpResponse) -> String {
    let text = resp.text();
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v.as_object()?
                .values()
                .find_map(|e| e["message"].as_str().map(String::from))
        })
        .unwrap_or_else(|| text.chars().take(200).collect())
}

fn expect_json(resp: &HttpResponse, what: &str, ok: &[u16]) -> Result<Value> {
    if !ok.contains(&resp.status) {
        return Err(fail(format!(
            "{what}: HTTP {}: {}",
            resp.status,
            api_message(resp)
        )));
    }
    serde_json::from_slice(&resp.body)
        .map_err(|e| fail(format!("{what}: the response is not JSON: {e}")))
}

/// Glance's v2 API root from its catalog URL (with or without the version).
fn images_url(glance: &str) -> String {
    let base = glance.trim_end_matches("/v2");
    format!("{base}/v2/images")
}

/// Nova `createImage`: returns the new image's id.
fn snapshot(session: &Session, server: &str, name: &str) -> Result<String> {
    let nova = session.endpoint("compute")?;
    let body = json!({"createImage": {"name": name, "metadata": {}}});
    let url = format!("{nova}/servers/{server}/action");
    let resp = host::http(&json_request("POST", url, Some(&session.token), &body))?;
    if resp.status == 404 {
        return Err(Error::NotFound(format!(
            "Nova has no server {server} ({})",
            api_message(&resp)
        )));
    }
    if resp.status != 202 {
        return Err(fail(format!(
            "Nova createImage on server {server}: HTTP {}: {}",
            resp.status,
            api_message(&resp)
        )));
    }
    // Microversion 2.45 and later answer with the id; older ones in Location.
    let from_body = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v["image_id"].as_str().map(String::from));
    from_body
        .or_else(|| {
            resp.header("Location")
                .and_then(|l| l.rsplit('/').next())
                .map(String::from)
        })
        .filter(|id| !id.is_empty())
        .ok_or_else(|| fail("Nova accepted createImage but named no image"))
}

/// Polls the image until it is active.
fn wait_active(session: &Session, images: &str, id: &str, cfg: &Config) -> Result<Value> {
    let start = Instant::now();
    loop {
        let resp = host::http(&session.get(format!("{images}/{id}")))?;
        let image = expect_json(&resp, &format!("Glance image {id}"), &[200])?;
        let status = image["status"].as_str().unwrap_or("");
        match status {
            "active" => return Ok(image),
            "killed" | "deleted" | "pending_delete" | "deactivated" => {
                return Err(fail(format!(
                    "Glance image {id} is {status}: the snapshot failed or the image was \
                     removed; check the server and Glance's logs, then retry"
                )))
            }
            _ => {}
        }
        if start.elapsed() >= Duration::from_secs(cfg.timeout_secs) {
            return Err(fail(format!(
                "Glance image {id} is still {status} after {} s (raise timeout_secs)",
                cfg.timeout_secs
            )));
        }
        info(&format!("image {id} is {status}; waiting"));
        std::thread::sleep(Duration::from_secs(cfg.poll_secs));
    }
}

/// The digests Glance published for the image's data.
fn digests(image: &Value) -> Vec<Digest> {
    let mut out = Vec::new();
    if let Some(md5) = image["checksum"].as_str() {
        out.push(Digest {
            algorithm: DigestAlgorithm::Md5,
            hex: md5.into(),
        });
    }
    let algorithm = match image["os_hash_algo"].as_str() {
        Some("sha512") => Some(DigestAlgorithm::Sha512),
        Some("sha256") => Some(DigestAlgorithm::Sha256),
        Some(other) => {
            rehost_sdk::source::warn(&format!("cannot verify os_hash_algo {other}"));
            None
        }
        None => None,
    };
    if let (Some(algorithm), Some(hex)) = (algorithm, image["os_hash_value"].as_str()) {
        out.push(Digest {
            algorithm,
            hex: hex.into(),
        });
    }
    out
}

fn format_of(image: &Value, id: &str) -> Result<ImageFormat> {
    let container = image["container_format"].as_str().unwrap_or("bare");
    if container != "bare" {
        return Err(Error::Invalid(format!(
            "Glance image {id} has container_format {container}; only bare images are supported"
        )));
    }
    match image["disk_format"].as_str() {
        Some("raw") => Ok(ImageFormat::Raw),
        Some("qcow2") => Ok(ImageFormat::Qcow2),
        other => Err(Error::Invalid(format!(
            "Glance image {id} has disk_format {}; raw and qcow2 are supported (convert it \
             in Glance, or download and convert it yourself and use local-file)",
            other.unwrap_or("(none)")
        ))),
    }
}

pub struct Glance;

impl Source for Glance {
    fn fetch(text: &str) -> Result<SourceReport> {
        let cfg: Config = config(text)?;
        let session = Session::login(&cfg)?;
        let images = images_url(&session.endpoint("image")?);
        let (id, server) = match (&cfg.image, &cfg.server) {
            (Some(image), None) => (image.clone(), None),
            (None, Some(server)) => {
                let name = cfg
                    .snapshot_name
                    .clone()
                    .unwrap_or_else(|| format!("rehost-{server}"));
                let id = snapshot(&session, server, &name)?;
                info(&format!("snapshot {id} of server {server} requested"));
                (id, Some(server.clone()))
            }
            _ => {
                return Err(Error::Invalid(
                    "glance needs exactly one of `server` (to snapshot) or `image`".into(),
                ))
            }
        };
        let image = wait_active(&session, &images, &id, &cfg)?;
        let format = format_of(&image, &id)?;
        let expect = digests(&image);
        if expect.is_empty() {
            return Err(fail(format!(
                "Glance image {id} publishes no checksum; refusing to download it unverified"
            )));
        }
        let copied =
            host::download_into_work(&session.get(format!("{images}/{id}/file")), &expect, format)?;
        let mut metadata = vec![
            ("glance.image-id".to_string(), id.clone()),
            (
                "glance.disk-format".into(),
                image["disk_format"].as_str().unwrap_or("").into(),
            ),
            ("source.sha256".into(), copied.sha256),
        ];
        if let Some(name) = image["name"].as_str() {
            metadata.push(("glance.name".into(), name.into()));
        }
        if let Some(server) = &server {
            metadata.push(("nova.server-id".into(), server.clone()));
        }
        Ok(SourceReport {
            origin: match server {
                Some(s) => format!("OpenStack server {s} (snapshot {id})"),
                None => format!("Glance image {id}"),
            },
            metadata,
        })
    }
}

rehost_sdk::export_source!(Glance);
