//! `rehost fix DIR --fixer NAME`: runs fixers against a guest root that is a plain
//! directory, so a fixer is developed and tried without building disks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::guest::root::GuestRoot;
use crate::plugin::fixer_host::{
    call_fixer, FixContext, NewRoot, NoCommands, OsInfo, TargetHardware,
};
use crate::plugin::{catalog, CommandRunner, FixerCall, Grants, Kind};

#[derive(clap::Args)]
pub struct Args {
    /// The guest root directory.
    root: PathBuf,
    /// Fixers to run, in order (stock name or FILE.wasm).
    #[arg(long = "fixer", required = true)]
    fixers: Vec<String>,
    #[arg(long, value_enum, default_value = "virtualbox")]
    target: TargetArg,
    /// A TOML file with one table per fixer (`[fixer.NAME]`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The guest's os-release ID and VERSION_ID as the fixer should see them.
    #[arg(long, default_value = "debian")]
    os_id: String,
    #[arg(long, default_value = "12")]
    os_version: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TargetArg {
    Virtualbox,
    Kvm,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let tables = fixer_tables(args.config.as_deref())?;
    let root = Arc::new(
        GuestRoot::open(&args.root)
            .with_context(|| format!("opening guest root {}", args.root.display()))?,
    );
    // Commands need a mounted guest with /proc and friends; this mode only edits files.
    let commands: Arc<dyn CommandRunner> = Arc::new(NoCommands);
    for name in &args.fixers {
        let plugin = catalog::load_kind(&runtime, name, Kind::Fixer)?;
        let grants = Grants::effective(&plugin.manifest.capabilities, None, None)?;
        let context = FixContext {
            os: OsInfo {
                id: args.os_id.clone(),
                version_id: args.os_version.clone(),
                pretty_name: String::new(),
                id_like: vec![],
                arch: "x86_64".into(),
            },
            target: match args.target {
                TargetArg::Virtualbox => TargetHardware::Virtualbox,
                TargetArg::Kvm => TargetHardware::Kvm,
            },
            kernels: vec![],
            root: NewRoot {
                uuid: String::new(),
                label: None,
                fs_type: "ext4".into(),
                device: "/dev/sda1".into(),
            },
            config: tables
                .get(&plugin.manifest.name)
                .cloned()
                .unwrap_or_default(),
            dry_run: false,
        };
        let call = FixerCall {
            root: root.clone(),
            context,
            grants,
            commands: &commands,
            command_timeout: Duration::from_secs(600),
        };
        let outcome = call_fixer(&runtime, &plugin, call)?;
        println!("{}:", plugin.manifest.name);
        for c in &outcome.report.changes {
            println!("  changed: {c}");
        }
        for w in &outcome.report.warnings {
            println!("  warning: {w}");
        }
        for e in &outcome.report.boot_entries {
            println!("  boot: {} {} {}", e.title, e.kernel, e.cmdline);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `[fixer.NAME]` tables of a pipeline file, each as TOML text for its fixer.
pub fn fixer_tables(path: Option<&std::path::Path>) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = BTreeMap::new();
    if let Some(toml::Value::Table(fixers)) = doc.get("fixer") {
        for (name, table) in fixers {
            let table = table
                .as_table()
                .with_context(|| format!("{}: [fixer.{name}] must be a table", path.display()))?;
            out.insert(name.clone(), toml::to_string(table)?);
        }
    }
    Ok(out)
}
