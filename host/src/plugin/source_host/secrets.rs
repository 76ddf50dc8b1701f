//! Secrets stay with the host: a plugin writes `{{secret:NAME}}` where a password
//! belongs and the host fills it in from the pipeline file or the environment.
//! Every value filled in or learnt (tokens in responses) is scrubbed from anything
//! the plugin logs or returns, and sensitive headers are never logged.

use std::collections::BTreeMap;

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

/// Shorter values are not scrubbed from text: "***" everywhere a one-letter
/// password happens to appear would make every message unreadable.
const MIN_REDACTED_LEN: usize = 4;

/// Headers whose values are credentials.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-auth-token",
    "x-subject-token",
    "x-aws-ec2-metadata-token",
    "cookie",
    "set-cookie",
];

/// Parts of a variable name that mark it as a secret a plugin may not read.
const SECRET_WORDS: &[&str] = &["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"];

#[derive(Debug, Default)]
pub struct Secrets {
    explicit: BTreeMap<String, String>,
    seen: Vec<String>,
}

impl Secrets {
    /// `explicit` (from the pipeline file) wins over the environment.
    pub fn new(explicit: BTreeMap<String, String>) -> Self {
        let seen = explicit.values().cloned().collect();
        Self { explicit, seen }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.explicit
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    /// Replaces every `{{secret:NAME}}`. An unknown name is an error that names
    /// the variable to set.
    pub fn fill(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = after
                .find(CLOSE)
                .ok_or_else(|| "unterminated {{secret:...}} placeholder".to_string())?;
            let name = &after[..end];
            let value = self.lookup(name).ok_or_else(|| {
                format!("secret {name} is not set (set the environment variable {name} or give it in the pipeline file's secrets)")
            })?;
            self.learn(&value);
            out.push_str(&value);
            rest = &after[end + CLOSE.len()..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Remembers a credential the host saw (a token in a response) for scrubbing.
    pub fn learn(&mut self, value: &str) {
        if value.len() >= MIN_REDACTED_LEN && !self.seen.iter().any(|s| s == value) {
            self.seen.push(value.to_string());
        }
    }

    /// The text with every known secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.seen.iter().filter(|s| s.len() >= MIN_REDACTED_LEN) {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

/// Whether a header carries a credential.
pub fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether an environment variable looks like a secret (plugins may not read it).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Headers as `name: value` with credentials shown as `***`, for logs.
pub fn describe_headers(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if is_sensitive_header(k) { "***" } else { v };
            format!("{k}: {v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_scrubs() {
        let mut s = Secrets::new(BTreeMap::from([("OS_PASSWORD".into(), "hunter22".into())]));
        let body = s.fill(r#"{"password": "{{secret:OS_PASSWORD}}"}"#).unwrap();
        assert_eq!(body, r#"{"password": "hunter22"}"#);
        assert_eq!(s.redact("login hunter22 failed"), "login *** failed");
        s.learn("gAAAAtoken");
        assert_eq!(s.redact("token gAAAAtoken"), "token ***");
        let err = s.fill("{{secret:REHOST_TEST_UNSET_SECRET}}").unwrap_err();
        assert!(err.contains("REHOST_TEST_UNSET_SECRET is not set"), "{err}");
    }

    #[test]
    fn secret_names_and_headers() {
        assert!(looks_secret("OS_PASSWORD"));
        assert!(looks_secret("aws_secret_access_key"));
        assert!(!looks_secret("OS_AUTH_URL"));
        assert_eq!(
            describe_headers(&[
                ("X-Auth-Token".into(), "abc".into()),
                ("Accept".into(), "application/json".into())
            ]),
            "X-Auth-Token: ***, Accept: application/json"
        );
    }
}
