//! Commands in the guest, failing with what ran and what it said.

use rehost_sdk::fixer::{Guest, Output};
use rehost_sdk::{fail, Result};

/// How much of a failed command's stderr goes into the error (apt's last lines say why).
const STDERR_LINES: usize = 20;

/// Runs `argv` in the guest with `env`; fails, naming the command and quoting
/// its stderr, when it exits non-zero.
pub fn run(
    guest: &dyn Guest,
    argv: &[&str],
    env: &[(&str, &str)],
    timeout_secs: u32,
) -> Result<Output> {
    let out = guest.run(argv, env, timeout_secs)?;
    if !out.success() {
        return Err(fail(format!(
            "`{}` failed in the guest (exit status {}): {}",
            argv.join(" "),
            out.status,
            last_lines(&out.stderr, STDERR_LINES)
        )));
    }
    Ok(out)
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let first = lines.len().saturating_sub(count);
    match lines[first..].join("\n") {
        tail if tail.is_empty() => "(no error output)".to_string(),
        tail => tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("  \n", 2), "(no error output)");
    }
}
