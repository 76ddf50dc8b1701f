//! HTTP for sources (ureq, blocking). Redirects are never followed by the client:
//! each hop's host must be granted, so the caller follows them itself.

use std::time::Duration;

use ureq::http::{self, Request, Response};
use ureq::Agent;

/// Default limit of one API request, and of connecting and receiving response
/// headers in a download (whose body may take as long as it takes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// API responses are read into memory up to this size.
pub const MAX_BODY: u64 = 16 << 20;

/// An agent for one request: statuses are responses, not errors.
fn agent(timeout: Duration, whole_request: bool) -> Agent {
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout));
    let config = if whole_request {
        config.timeout_global(Some(timeout))
    } else {
        config
    };
    config.build().into()
}

/// Builds the request; the error says which part is malformed.
pub fn build(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
) -> Result<Request<Vec<u8>>, String> {
    let mut builder = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder
        .body(body.unwrap_or_default())
        .map_err(|e| format!("malformed request {method} {url}: {e}"))
}

/// The host a URL names (checked against the grants before connecting).
pub fn host_of(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("malformed URL {url}: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) => {
            Ok(host.trim_start_matches('[').trim_end_matches(']').into())
        }
        _ => Err(format!("URL {url} must be http:// or https:// with a host")),
    }
}

/// A whole response.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Sends a request and reads the whole response.
pub fn exchange(request: Request<Vec<u8>>, timeout: Duration) -> Result<Reply, String> {
    let what = format!("{} {}", request.method(), request.uri());
    let mut response = agent(timeout, true)
        .run(request)
        .map_err(|e| format!("{what}: {e}"))?;
    let headers = headers_of(&response);
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| format!("{what}: reading the response: {e}"))?;
    Ok(Reply {
        status: response.status().as_u16(),
        headers,
        body,
    })
}

/// Sends a request whose body will be streamed by the caller.
pub fn open(request: Request<Vec<u8>>, timeout: Duration) -> Result<Response<ureq::Body>, String> {
    let what = format!("{} {}", request.method(), request.uri());
    agent(timeout, false)
        .run(request)
        .map_err(|e| format!("{what}: {e}"))
}

pub fn headers_of<B>(response: &Response<B>) -> Vec<(String, String)> {
    response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Where a redirect points, resolved against the URL that answered.
pub fn redirect_target(base: &str, location: &str) -> Result<String, String> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let uri: http::Uri = base
        .parse()
        .map_err(|e| format!("malformed URL {base}: {e}"))?;
    let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
        (Some(s), Some(a)) => (s, a.as_str()),
        _ => return Err(format!("cannot resolve redirect {location} against {base}")),
    };
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    let dir = uri.path().rsplit_once('/').map_or("", |(d, _)| d);
    Ok(format!("{scheme}://{authority}{dir}/{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_redirects() {
        assert_eq!(host_of("http://127.0.0.1:5000/v3").unwrap(), "127.0.0.1");
        assert_eq!(host_of("https://[::1]/x").unwrap(), "::1");
        assert!(host_of("file:///etc/passwd").is_err());
        assert_eq!(
            redirect_target("http://a:1/v2/images/x/file", "/swift/obj").unwrap(),
            "http://a:1/swift/obj"
        );
        assert_eq!(
            redirect_target("http://a/v2/images/x/file", "http://b/o").unwrap(),
            "http://b/o"
        );
    }
}
