//! A plugin's table from the pipeline file, parsed into the plugin's own type.

use serde::de::DeserializeOwned;

/// Parses `text` (defaults when it is empty). An error says where, as "line 2,
/// rebuild_initrd: …": the key whose value is wrong, never the line itself, since
/// the value may be a password. `what` starts the message ("fixer config").
pub(crate) fn parse<T: DeserializeOwned + Default>(what: &str, text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| where_in(text, span.start));
        format!("{what}: {}{}", at.unwrap_or_default(), e.message())
    })
}

/// "line 2, key: " for byte `at` of `text`, or "line 2: " outside a `key = value`.
fn where_in(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..at].matches('\n').count() + 1;
    match text[line_start..at].split_once('=') {
        Some((key, _)) => format!("line {line}, {}: ", key.trim()),
        None => format!("line {line}: "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[allow(dead_code)]
    struct Secret {
        mode: u32,
        password: String,
    }

    fn error(text: &str) -> String {
        parse::<Secret>("fixer config", text).unwrap_err()
    }

    #[test]
    fn config_errors_name_the_key_without_quoting_the_line() {
        let err = error("mode = 1\npassword = 42\n");
        assert!(err.contains("line 2, password: invalid type"), "{err}");
        let err = error("pasword = \"hunter2\"\n");
        assert!(err.contains("line 1: unknown field `pasword`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
