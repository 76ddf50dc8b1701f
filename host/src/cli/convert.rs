//! `rehost convert INPUT -o OUTPUT`: the whole job. A pipeline file (TOML) can say
//! everything the flags say; flags win.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::disk::formats::Format;
use crate::pipeline::{self, Request};
use crate::target::Target;

#[derive(clap::Args)]
pub struct Args {
    /// The cloud instance: a bare ext2/3/4 image or a partitioned disk image.
    input: Option<PathBuf>,
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// raw, qcow2, qcow2-compressed, vmdk or vdi (default: from the output's extension).
    #[arg(long)]
    format: Option<String>,
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// Disk size, e.g. 10G (default: the source filesystem plus 1 GiB).
    #[arg(long)]
    size: Option<String>,
    /// Fixers to run, in order (default: xen-console plus the guest's distro fixer).
    #[arg(long = "fixer")]
    fixers: Vec<String>,
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

/// The pipeline file: the flags' keys, plus `[fixer.NAME]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    format: Option<String>,
    target: Option<String>,
    size: Option<String>,
    #[serde(default)]
    pub fixers: Vec<String>,
    #[serde(default)]
    fixer: BTreeMap<String, toml::Table>,
    #[serde(default)]
    allow_check_errors: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => load(path)?,
        None => PipelineFile::default(),
    };
    let fixer_config = file.fixer_tables()?;
    let input = args
        .input
        .or(file.input)
        .context("no INPUT given (argument or `input` in the pipeline file)")?;
    let output = args
        .output
        .or(file.output)
        .context("no output given (-o or `output` in the pipeline file)")?;
    let format = match args.format.or(file.format) {
        Some(name) => name.parse::<Format>()?,
        None => format_from_extension(&output)?,
    };
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
        format,
        target,
        size,
        fixer_config,
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
            outcome.format,
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

fn format_from_extension(output: &Path) -> anyhow::Result<Format> {
    match output.extension().and_then(|e| e.to_str()) {
        Some("raw" | "img") => Ok(Format::Raw),
        Some("qcow2") => Ok(Format::Qcow2 { compressed: false }),
        Some("vmdk") => Ok(Format::VmdkStreamOptimized),
        Some("vdi") => Ok(Format::Vdi),
        _ => bail!(
            "cannot tell the format from {}; pass --format",
            output.display()
        ),
    }
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
