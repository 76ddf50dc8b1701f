//! What a check found, and how a report of findings prints.

use std::fmt;

use serde::Serialize;

/// How bad a finding is. `Ok` findings are information: what was checked and found fine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

impl Severity {
    /// Marker and fixed-width word, so a terminal column lines up and `grep ERROR` works.
    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "✔ OK   ",
            Severity::Warning => "⚠ WARN ",
            Severity::Error => "✘ ERROR",
        }
    }

    /// ANSI colour (green, yellow, red).
    fn colour(self) -> &'static str {
        match self {
            Severity::Ok => "\x1b[32m",
            Severity::Warning => "\x1b[33m",
            Severity::Error => "\x1b[1;31m",
        }
    }
}

/// One result of one check: what is wrong (or fine) and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable dotted name of the check, e.g. `fstab.root`.
    pub id: &'static str,
    pub severity: Severity,
    /// What was found, naming the guest file and line.
    pub message: String,
    /// What to do about it; `None` for `Ok` findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(id: &'static str, message: impl Into<String>) -> Self {
        Finding {
            id,
            severity: Severity::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub fn warning(id: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            id,
            severity: Severity::Warning,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn error(id: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            id,
            severity: Severity::Error,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// The finding for an e2fsck run (the caller runs e2fsck on the partition).
    /// e2fsck's exit code is a bit mask: 1 and 2 mean errors were corrected,
    /// 4 and up mean errors were left or e2fsck itself failed.
    pub fn from_fsck(exit_code: i32, output: &str) -> Self {
        const ID: &str = "fsck";
        let tail = last_lines(output, 3);
        let detail = if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        };
        match exit_code {
            0 => Finding::ok(ID, "e2fsck: the filesystem is clean"),
            1..=3 => Finding::warning(
                ID,
                format!("e2fsck corrected errors in the filesystem (exit {exit_code}){detail}"),
                "run `e2fsck -f` on the partition again to confirm it is clean now",
            ),
            code if code > 0 && code & 4 != 0 => Finding::error(
                ID,
                format!("e2fsck left errors uncorrected (exit {code}){detail}"),
                "run `e2fsck -f -y` on the partition and read its output; \
                 if errors remain, the source image is damaged: take a new copy of the instance",
            ),
            code => Finding::error(
                ID,
                format!("e2fsck did not complete (exit {code}){detail}"),
                "run `e2fsck -f -n` on the partition by hand to see why it fails",
            ),
        }
    }
}

/// The last `n` non-empty lines of `text`, joined with " / ".
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// All findings of one check run, in the order the checks ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds a finding unless the same one is already there (boot menus repeat a
    /// kernel in normal and recovery entries; one finding is enough).
    pub fn push(&mut self, finding: Finding) {
        if !self.findings.contains(&finding) {
            self.findings.push(finding);
        }
    }

    /// True when no finding is an error.
    pub fn is_ok(&self) -> bool {
        self.count(Severity::Error) == 0
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Findings with this id, for callers and tests that look for one check.
    pub fn with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.id == id)
    }

    /// The human rendering: one line per finding (marker, severity, id, message),
    /// the fix indented on the next line, and a summary line. `colour` adds ANSI
    /// colours for a terminal.
    pub fn render(&self, colour: bool) -> String {
        let id_width = self.findings.iter().map(|f| f.id.len()).max().unwrap_or(0);
        let (reset, dim) = if colour {
            ("\x1b[0m", "\x1b[2m")
        } else {
            ("", "")
        };
        let mut out = String::new();
        for f in &self.findings {
            let paint = if colour { f.severity.colour() } else { "" };
            out.push_str(&format!(
                "{paint}{}{reset} {:<id_width$}  {}\n",
                f.severity.label(),
                f.id,
                f.message
            ));
            if let Some(fix) = &f.fix {
                let indent = " ".repeat(7 + 1 + id_width + 2);
                out.push_str(&format!("{indent}{dim}fix: {fix}{reset}\n"));
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// "check: 2 errors, 1 warning, 9 ok".
    pub fn summary(&self) -> String {
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        format!(
            "check: {}, {}, {} ok",
            plural(self.count(Severity::Error), "error"),
            plural(self.count(Severity::Warning), "warning"),
            self.count(Severity::Ok)
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsck_exit_codes_map_to_severities() {
        assert_eq!(Finding::from_fsck(0, "").severity, Severity::Ok);
        assert_eq!(Finding::from_fsck(1, "").severity, Severity::Warning);
        let bad = Finding::from_fsck(4, "Pass 1\n\nroot: ***** FILE SYSTEM WAS MODIFIED *****\n");
        assert_eq!(bad.severity, Severity::Error);
        assert!(
            bad.message.contains("FILE SYSTEM WAS MODIFIED"),
            "{}",
            bad.message
        );
        assert_eq!(Finding::from_fsck(8, "").severity, Severity::Error);
    }

    #[test]
    fn report_dedupes_and_renders_one_line_per_finding_plus_fix() {
        let mut report = Report::default();
        report.push(Finding::ok("a.b", "fine"));
        report.push(Finding::error("long.id", "/etc/x:3: broken", "mend it"));
        report.push(Finding::error("long.id", "/etc/x:3: broken", "mend it"));
        assert!(!report.is_ok());
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("✔ OK    a.b      fine"), "{text}");
        assert!(
            lines[1].starts_with("✘ ERROR long.id  /etc/x:3: broken"),
            "{text}"
        );
        assert_eq!(lines[2].trim_start(), "fix: mend it");
        assert_eq!(lines[3], "check: 1 error, 0 warnings, 1 ok");
    }
}
