//! rc.local: cloud images often fetch keys or user data from the metadata
//! service at boot. Off the cloud nothing answers, and the boot hangs until the
//! call times out (the seed's "remove any cloud-specific code from /etc/rc.local").

use std::collections::HashSet;

use super::findings::{Finding, Report};
use super::Context;

/// /etc/rc.local is often a link to /etc/rc.d/rc.local; each file is read once.
const RC_LOCALS: [&str; 2] = ["/etc/rc.local", "/etc/rc.d/rc.local"];

/// Text that marks a call to a cloud metadata service or cloud tool.
const METADATA_MARKERS: [&str; 6] = [
    "169.254.169.254",
    "instance-data",
    "/latest/meta-data",
    "/latest/user-data",
    "ec2-metadata",
    "euca-",
];

pub(super) fn check(cx: &Context, report: &mut Report) {
    let mut seen = HashSet::new();
    let mut clean = Vec::new();
    for path in RC_LOCALS {
        let text = match cx.guest.resolve(path) {
            Ok(Some(host)) => {
                if !seen.insert(host) {
                    continue;
                }
                cx.guest.read_text(path)
            }
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        let text = match text {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(e) => {
                report.push(Finding::error(
                    "rclocal.metadata",
                    format!("cannot read {e}"),
                    format!("check {path} in the guest"),
                ));
                continue;
            }
        };
        let calls = metadata_calls(&text);
        if calls.is_empty() {
            clean.push(path);
        }
        for (line, code) in calls {
            report.push(Finding::error(
                "rclocal.metadata",
                format!("{path}:{line}: calls the cloud metadata service, which hangs the boot off the cloud: {code}"),
                format!("comment out line {line} of {path}"),
            ));
        }
    }
    if !clean.is_empty() {
        report.push(Finding::ok(
            "rclocal.metadata",
            format!("{}: no cloud metadata calls", clean.join(", ")),
        ));
    }
}

/// Uncommented lines (1-based number, trimmed text) that mention a metadata marker.
fn metadata_calls(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let code = strip_comment(line).trim();
            if code.is_empty() {
                return None;
            }
            let lower = code.to_ascii_lowercase();
            METADATA_MARKERS
                .iter()
                .any(|marker| lower.contains(marker))
                .then(|| (index + 1, shorten(code)))
        })
        .collect()
}

/// The code part of a shell line: a `#` at the start of a word begins a comment,
/// as sh reads it (`: # disabled: curl ...` is a no-op). Quotes are respected.
fn strip_comment(line: &str) -> &str {
    let (mut quote, mut prev_blank) = (None, true);
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') if prev_blank => return &line[..i],
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        prev_blank = c.is_whitespace() || c == ';';
    }
    line
}

/// Long command lines are cut for the message; the line number says where.
fn shorten(code: &str) -> String {
    const MAX: usize = 100;
    match code.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &code[..cut]),
        None => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_uncommented_metadata_calls() {
        let text = "#!/bin/sh\n# curl http://169.254.169.254/ is commented\n\
                    touch /var/lock/subsys/local\n\
                    curl -m 600 -s http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key > /root/.ssh/authorized_keys\n\
                    \tEUCA-DESCRIBE-INSTANCES\n";
        let calls = metadata_calls(text);
        assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), [4, 5]);
        assert!(calls[0].1.starts_with("curl -m 600"));
    }

    #[test]
    fn a_line_disabled_with_a_no_op_and_a_comment_is_not_a_call() {
        let text = "  : # rehost: disabled off-cloud (metadata): curl http://169.254.169.254/x\n\
                    echo '#not a comment' http://169.254.169.254/\n";
        assert_eq!(
            metadata_calls(text).iter().map(|c| c.0).collect::<Vec<_>>(),
            [2]
        );
    }
}
