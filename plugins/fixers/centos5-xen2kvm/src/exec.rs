//! Commands in the guest, failing with what ran and what it said.

use rehost_sdk::fixer::Guest;
use rehost_sdk::{fail, Result};

/// How much of a failed command's stderr goes into the error (yum's last lines say why).
const STDERR_LINES: usize = 20;

/// Runs `argv` in the guest with the host's default timeout; fails, naming the
/// command and quoting its stderr, when it exits non-zero.
pub fn run(guest: &dyn Guest, argv: &[&str]) -> Result<()> {
    let out = guest.run(argv, &[], 0)?;
    if !out.success() {
        return Err(fail(format!(
            "`{}` failed in the guest (exit status {}): {}",
            argv.join(" "),
            out.status,
            last_lines(&out.stderr, STDERR_LINES)
        )));
    }
    Ok(())
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let first = lines.len().saturating_sub(count);
    match lines[first..].join("\n") {
        tail if tail.is_empty() => "(no error output)".to_string(),
        tail => tail,
    }
}
