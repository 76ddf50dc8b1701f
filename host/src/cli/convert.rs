//! `rehost convert INPUT -o OUTPUT`: the whole job. A pipeline file (TOML) can say
//! everything the flags say; flags win.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::pipeline::{self, OutputSpec, Request, SourceSpec};
use crate::plugin::lockfile;
use crate::plugin::manifest::Capabilities;
use crate::plugin::packager_host::DEFAULT_MEMORY_MB;
use crate::plugin::source_host::{self, FetchOptions};
use crate::target::Target;

#[derive(clap::Args)]
pub struct Args {
    /// The cloud instance: a bare ext2/3/4 image or a partitioned disk image
    /// (not needed with --source).
    input: Option<PathBuf>,
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// ova, qcow2, qcow2-compressed, vdi or raw (default: from the output's extension).
    #[arg(long)]
    format: Option<String>,
    /// A packager plugin to write the output instead (stock name or FILE.wasm).
    #[arg(long, conflicts_with = "format")]
    packager: Option<String>,
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// Disk size, e.g. 10G (default: the source filesystem plus 1 GiB).
    #[arg(long)]
    size: Option<String>,
    /// VM memory in MB for descriptors such as the OVF (default 512, as the seed).
    #[arg(long)]
    memory: Option<u32>,
    #[arg(long)]
    cpus: Option<u32>,
    /// Fixers to run, in order (default: xen-console plus the guest's distro fixer).
    #[arg(long = "fixer")]
    fixers: Vec<String>,
    /// Fetch the instance with a source plugin (local-file, aws-dd, euca-scp, glance).
    #[arg(long)]
    source: Option<String>,
    /// A source setting (repeatable), as for `rehost fetch`.
    #[arg(long = "source-opt", value_name = "KEY=VALUE")]
    source_opts: Vec<String>,
    /// Let the source reach this host (repeatable), where its manifest allows.
    #[arg(long = "grant-host", value_name = "HOST")]
    grant_hosts: Vec<String>,
    /// Let the source read this device or file (repeatable), where its manifest allows.
    #[arg(long = "grant-device", value_name = "PATH")]
    grant_devices: Vec<String>,
    /// Pipeline file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the output even when the final check finds errors.
    #[arg(long)]
    allow_check_errors: bool,
    /// Also write the plan of what the fixers did (diffs, commands) to this file.
    #[arg(long)]
    plan_out: Option<PathBuf>,
    /// Print what was done as JSON.
    #[arg(long)]
    json: bool,
}

/// The pipeline file: the flags' keys, plus `[fixer.NAME]`, `[packager]` and
/// `[source]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    format: Option<String>,
    target: Option<String>,
    size: Option<String>,
    memory: Option<u32>,
    cpus: Option<u32>,
    #[serde(default)]
    pub fixers: Vec<String>,
    #[serde(default)]
    fixer: BTreeMap<String, toml::Table>,
    /// `name = "..."` picks the packager; the rest is its config.
    packager: Option<toml::Table>,
    /// `name = "..."` picks the source; the rest is its config.
    source: Option<toml::Table>,
    /// Pinned plugin versions (`debian-cloud2kvm = "^1.2"`): the lock file must
    /// satisfy them, with the locked digests, or the conversion is refused.
    #[serde(default)]
    plugins: BTreeMap<String, semver::VersionReq>,
    /// What the pipeline allows each plugin (`[grants.NAME] guest_write = [...]`).
    #[serde(default)]
    pub grants: BTreeMap<String, Capabilities>,
    #[serde(default)]
    allow_check_errors: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => load(path)?,
        None => PipelineFile::default(),
    };
    let fixer_config = file.fixer_tables()?;
    if !file.plugins.is_empty() {
        // Refuses drift: every pinned plugin is re-hashed against its locked digest.
        let pinned =
            lockfile::pinned_components(&lockfile::Installation::from_env(), &file.plugins)?;
        for p in &pinned {
            tracing::info!("pinned {} {} ({})", p.name, p.version, p.digest);
        }
    }
    let source = source_spec(
        args.source,
        args.source_opts,
        args.grant_hosts,
        args.grant_devices,
        file.source.clone(),
    )?;
    let input = match (args.input.or(file.input), &source) {
        (Some(input), None) => input,
        (None, Some(_)) => PathBuf::new(),
        (Some(_), Some(_)) => bail!("give either INPUT or a source, not both"),
        (None, None) => {
            bail!("no INPUT given (argument, `input` in the pipeline file, or --source)")
        }
    };
    let output = args
        .output
        .or(file.output)
        .context("no output given (-o or `output` in the pipeline file)")?;
    let mut packager_table = file.packager.clone().unwrap_or_default();
    let packager_name = packager_table
        .remove("name")
        .and_then(|v| v.as_str().map(String::from));
    let (packager, compressed) = match (args.packager, packager_name, args.format.or(file.format)) {
        (Some(p), _, _) | (None, Some(p), None) => (p, false),
        (None, _, Some(format)) => packager_for(&format)?,
        (None, None, None) => packager_for_extension(&output)?,
    };
    if compressed {
        packager_table.insert("compressed".into(), true.into());
    }
    let target = match (args.target, file.target) {
        (Some(t), _) => t,
        (None, Some(t)) => t.parse().map_err(anyhow::Error::msg)?,
        (None, None) => Target::Virtualbox,
    };
    let size = args
        .size
        .or(file.size)
        .map(|s| parse_size(&s))
        .transpose()?;
    if output.exists() {
        bail!(
            "{} already exists; remove it or choose another output",
            output.display()
        );
    }
    let request = Request {
        input,
        output,
        output_spec: OutputSpec {
            packager,
            config: toml::to_string(&packager_table)?,
            memory_mb: args.memory.or(file.memory).unwrap_or(DEFAULT_MEMORY_MB),
            cpus: args.cpus.or(file.cpus).unwrap_or(1),
        },
        source,
        target,
        size,
        fixer_config,
        allowed: file.grants.clone(),
        fixers: if args.fixers.is_empty() {
            file.fixers
        } else {
            args.fixers
        },
        allow_check_errors: args.allow_check_errors || file.allow_check_errors,
    };
    super::enter_namespace()?;
    let runtime = super::runtime()?;
    let outcome = pipeline::convert(&request, &runtime, &super::cancel_flag())?;
    if let Some(path) = &args.plan_out {
        std::fs::write(path, super::plan::render(&outcome.fixers))
            .with_context(|| format!("writing the plan to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        for run in &outcome.fixers {
            println!("{} {}:", run.name, run.version);
            run.changes.iter().for_each(|c| println!("  changed: {c}"));
            run.warnings.iter().for_each(|w| println!("  warning: {w}"));
        }
        print!("{}", outcome.check);
        println!(
            "wrote {} ({}, {} MiB disk)",
            outcome.output.display(),
            outcome.packager,
            outcome.disk_bytes >> 20
        );
    }
    Ok(ExitCode::SUCCESS)
}

impl PipelineFile {
    /// `[fixer.NAME]` tables as TOML text, one per fixer.
    pub fn fixer_tables(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.fixer
            .iter()
            .map(|(k, v)| Ok((k.clone(), toml::to_string(v)?)))
            .collect()
    }
}

pub fn load(path: &Path) -> anyhow::Result<PipelineFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid pipeline file", path.display()))
}

/// The stock packager for a format name, and whether it compresses.
fn packager_for(format: &str) -> anyhow::Result<(String, bool)> {
    Ok(match format {
        "ova" => ("virtualbox-ova".into(), false),
        "qcow2" => ("qcow2".into(), false),
        "qcow2-compressed" => ("qcow2".into(), true),
        "vdi" => ("vdi".into(), false),
        "raw" => ("raw".into(), false),
        other => {
            bail!("unknown format {other:?} (expected ova, qcow2, qcow2-compressed, vdi or raw)")
        }
    })
}

fn packager_for_extension(output: &Path) -> anyhow::Result<(String, bool)> {
    match output.extension().and_then(|e| e.to_str()) {
        Some("ova") => packager_for("ova"),
        Some("qcow2") => packager_for("qcow2"),
        Some("vdi") => packager_for("vdi"),
        Some("raw" | "img") => packager_for("raw"),
        _ => bail!(
            "cannot tell the format from {}; pass --format",
            output.display()
        ),
    }
}

/// The source step from the flags or the pipeline file's `[source]` table.
fn source_spec(
    name: Option<String>,
    opts: Vec<String>,
    grant_hosts: Vec<String>,
    grant_devices: Vec<String>,
    table: Option<toml::Table>,
) -> anyhow::Result<Option<SourceSpec>> {
    let mut config = table.unwrap_or_default();
    let from_file = config
        .remove("name")
        .and_then(|v| v.as_str().map(String::from));
    let Some(plugin) = name.or(from_file) else {
        return Ok(None);
    };
    for (k, v) in source_host::table_from_options(&opts).map_err(anyhow::Error::msg)? {
        config.insert(k, v);
    }
    Ok(Some(SourceSpec {
        plugin,
        options: FetchOptions {
            config,
            grant_hosts,
            grant_devices,
            ..Default::default()
        },
    }))
}

/// "10G", "512M", "2048K", "1T" or plain bytes (binary units).
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => bail!("size {text:?}: unknown unit {c:?} (use K, M, G or T)"),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("size {text:?} is not a number"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .with_context(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("10X").is_err());
        assert!(parse_size("G").is_err());
    }
}
