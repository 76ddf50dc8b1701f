//! /etc/fstab: the root entry must name the new filesystem, and no entry may
//! name a Xen disk (the seed's "could not find filesystem '/dev/root'" panic).

use super::findings::{Finding, Report};
use super::root_spec::{describe_new_root, is_xen_device, names_new_root};
use super::Context;

const FSTAB: &str = "/etc/fstab";

/// One fstab line: spec, mount point, type (1-based line number kept for messages).
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    line: usize,
    spec: String,
    mount_point: String,
    fs_type: String,
}

/// Checks the guest's fstab; returns the root entry's filesystem type, which
/// the driver check needs.
pub(super) fn check(cx: &Context, report: &mut Report) -> Option<String> {
    let text = match cx.guest.read_text(FSTAB) {
        Ok(Some(text)) => text,
        Ok(None) => {
            report.push(Finding::error(
                "fstab.root",
                format!("{FSTAB} does not exist: nothing mounts / read-write at boot"),
                format!(
                    "create {FSTAB} with a root line: UUID={} / ext4 defaults 0 1",
                    cx.input.fs_uuid
                ),
            ));
            return None;
        }
        Err(e) => {
            report.push(Finding::error(
                "fstab.root",
                format!("cannot read {e}"),
                format!("check {FSTAB} in the guest"),
            ));
            return None;
        }
    };
    let entries = parse(&text);
    check_root(cx, &entries, report);
    for entry in entries.iter().filter(|e| e.mount_point != "/") {
        if is_xen_device(&entry.spec) {
            report.push(Finding::warning(
                "fstab.xen-device",
                format!(
                    "{FSTAB}:{}: {} on {} is a Xen disk that will not exist on the new VM",
                    entry.line, entry.mount_point, entry.spec
                ),
                format!(
                    "remove line {} (or add `nofail` to its options if you attach such a disk yourself)",
                    entry.line
                ),
            ));
        }
    }
    entries
        .into_iter()
        .find(|e| e.mount_point == "/")
        .map(|e| e.fs_type)
}

fn check_root(cx: &Context, entries: &[Entry], report: &mut Report) {
    let input = cx.input;
    let want = describe_new_root(input);
    let fix = |line: usize| {
        format!(
            "set the first field of {FSTAB} line {line} to UUID={}",
            input.fs_uuid
        )
    };
    let Some(root) = entries.iter().find(|e| e.mount_point == "/") else {
        report.push(Finding::error(
            "fstab.root",
            format!("{FSTAB} has no entry for /"),
            format!(
                "add a root line: UUID={} / ext4 defaults 0 1",
                input.fs_uuid
            ),
        ));
        return;
    };
    let at = format!("{FSTAB}:{}", root.line);
    if names_new_root(input, &root.spec) {
        report.push(Finding::ok(
            "fstab.root",
            format!(
                "{at}: / is mounted from {}, the new root filesystem",
                root.spec
            ),
        ));
    } else if is_xen_device(&root.spec) {
        report.push(Finding::error(
            "fstab.root",
            format!(
                "{at}: / is mounted from {}, a Xen disk that does not exist on {} (the new root is {want})",
                root.spec,
                input.target.name()
            ),
            fix(root.line),
        ));
    } else {
        report.push(Finding::error(
            "fstab.root",
            format!(
                "{at}: / is mounted from {}, which is not the new root filesystem ({want})",
                root.spec
            ),
            fix(root.line),
        ));
    }
}

fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line_text = line.trim();
            if line_text.is_empty() || line_text.starts_with('#') {
                return None;
            }
            let mut fields = line_text.split_whitespace().map(unescape);
            Some(Entry {
                line: index + 1,
                spec: fields.next()?,
                mount_point: fields.next()?,
                fs_type: fields.next().unwrap_or_else(|| "auto".to_owned()),
            })
        })
        .collect()
}

/// fstab writes spaces and tabs in fields as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let digits = rest.get(pos + 1..pos + 4);
        match digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[pos + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_skipping_comments() {
        let text = "# comment\n\nUUID=abc / ext4 defaults 0 1\n/dev/xvdb\t/mnt/my\\040data ext3\nproc /proc\n";
        let entries = parse(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0],
            Entry {
                line: 3,
                spec: "UUID=abc".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into()
            }
        );
        assert_eq!(entries[1].mount_point, "/mnt/my data");
        assert_eq!(entries[2].fs_type, "auto");
    }
}
