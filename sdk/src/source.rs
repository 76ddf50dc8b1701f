//! The source side of the SDK: a [`Source`] decides what to fetch and asks the
//! host, through [`host`], to move the bytes into the work image. Every request is
//! checked against the plugin's grants; credentials stay with the host (write
//! `{{secret:NAME}}` where one belongs and the host fills it in).

pub use crate::bindings::source::rehost::plugin::types::Error;

/// Result type of source code (a source's own [`Error`], not the fixers').
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a source's own failure.
pub fn fail(message: impl Into<String>) -> Error {
    Error::Failed(message.into())
}

use crate::bindings::source::rehost::plugin::log;
pub use crate::bindings::source::rehost::plugin::source_host::{
    self as host, CopyReport, Digest, DigestAlgorithm, HttpRequest, HttpResponse, ImageFormat,
    SshOutput, SshTarget,
};
pub use crate::bindings::source::rehost::plugin::source_types::SourceReport;

/// A source plugin.
pub trait Source {
    /// Fills the work image; `config` is the source's table as TOML text.
    fn fetch(config: &str) -> Result<SourceReport>;
}

/// Parses the source's config table ("" gives the defaults).
pub fn config<T: serde::de::DeserializeOwned + Default>(text: &str) -> Result<T> {
    crate::config::parse("source config", text).map_err(Error::Invalid)
}

/// Logs through the host (native builds print to stderr).
pub fn info(message: &str) {
    emit(log::Level::Info, message);
}

pub fn warn(message: &str) {
    emit(log::Level::Warn, message);
}

pub fn debug(message: &str) {
    emit(log::Level::Debug, message);
}

fn emit(level: log::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

impl HttpRequest {
    /// A request without body, headers or timeout of its own.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_secs: 0,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl SshOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
