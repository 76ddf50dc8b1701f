//! `rehost plan INPUT [--fixer ...] [--json]`: what each fixer would change, as
//! unified diffs and a list of commands, from a run on a throwaway view.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::pipeline::{self, OutputSpec, Request};
use crate::target::Target;

#[derive(clap::Args)]
pub struct Args {
    input: PathBuf,
    #[arg(long, value_enum, default_value = "virtualbox")]
    target: Target,
    #[arg(long = "fixer")]
    fixers: Vec<String>,
    /// Pipeline file (TOML) with `[fixer.NAME]` tables.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => super::convert::load(path)?,
        None => Default::default(),
    };
    let request = Request {
        input: args.input,
        // Plan writes nothing: there is no output.
        output: PathBuf::new(),
        output_spec: OutputSpec {
            packager: "raw".into(),
            config: String::new(),
            memory_mb: 512,
            cpus: 1,
        },
        source: None,
        target: args.target,
        size: None,
        fixers: if args.fixers.is_empty() {
            file.fixers.clone()
        } else {
            args.fixers
        },
        fixer_config: file.fixer_tables()?,
        allowed: file.grants.clone(),
        allow_check_errors: true,
    };
    super::enter_namespace()?;
    let runtime = super::runtime()?;
    let plan = pipeline::plan(&request, &runtime, &super::cancel_flag())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render(&plan.fixers));
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan as text: a header per fixer, then its diffs and commands.
pub fn render(fixers: &[pipeline::FixerRun]) -> String {
    let mut out = String::new();
    for run in fixers {
        out.push_str(&format!("### fixer {} {}\n", run.name, run.version));
        if run.plan.is_empty() {
            out.push_str("(no changes)\n");
        }
        out.push_str(&run.plan);
        for w in &run.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
    }
    out
}
