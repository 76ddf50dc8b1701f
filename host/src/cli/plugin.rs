//! `rehost plugin list|info|install|update|remove|verify|publish`.
//!
//! Installing asks for consent on the terminal after showing every capability the
//! plugin requests; `--yes` is the scripted consent. Without a terminal and without
//! `--yes` nothing is installed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::plugin::catalog::{self, Entry, Origin};
use crate::plugin::lockfile::{self, Installation};
use crate::plugin::manifest::Capabilities;
use crate::plugin::registry::install::{self, Candidate};
use crate::plugin::registry::{self, Reference, Settings, Spec};

#[derive(Subcommand)]
pub enum Command {
    /// Show stock and installed plugins with their versions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print a plugin's manifest (NAME, FILE.wasm or registry REF) without running it.
    Info {
        plugin: String,
        #[arg(long)]
        json: bool,
        /// Registry for names not installed (overrides the config file).
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
    },
    /// Install NAME[@REQ], NAME@sha256:…, a registry REF, or ./FILE.wasm.
    Install {
        plugin: String,
        /// Registry to install from (overrides `[registry] url` in the config file).
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// Grant the requested capabilities without asking (for scripts).
        #[arg(long, short)]
        yes: bool,
        /// Install even under the name of a stock plugin.
        #[arg(long)]
        force: bool,
    },
    /// Move installed plugins to the newest version their requirement allows.
    Update {
        /// Only this plugin (all when absent).
        plugin: Option<String>,
        /// Grant newly requested capabilities without asking.
        #[arg(long, short)]
        yes: bool,
    },
    /// Uninstall a plugin.
    Remove { plugin: String },
    /// Re-hash every installed component against the lock file (exit 1 on drift).
    Verify,
    /// Publish a component as <registry>/<prefix>/<name>:<version>.
    Publish {
        file: PathBuf,
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List { json } => list(json)?,
        Command::Info {
            plugin,
            json,
            registry,
        } => info(&plugin, json, registry.as_deref())?,
        Command::Install {
            plugin,
            registry,
            yes,
            force,
        } => install(&plugin, registry.as_deref(), yes, force)?,
        Command::Update { plugin, yes } => update(plugin.as_deref(), yes)?,
        Command::Remove { plugin } => remove(&plugin)?,
        Command::Verify => return verify(),
        Command::Publish { file, registry } => {
            let settings = Settings::load(&Settings::default_path(), registry.as_deref())?;
            let reference = registry::publish(&settings, &file)?;
            println!("published {reference}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(json: bool) -> anyhow::Result<()> {
    let entries = catalog::entries()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<9} {:<9} {:<9} DESCRIPTION",
        "NAME", "VERSION", "KIND", "ORIGIN"
    );
    for e in &entries {
        let m = &e.manifest;
        println!(
            "{:<20} {:<9} {:<9} {:<9} {}",
            m.name,
            m.version.to_string(),
            m.kind.to_string(),
            origin(e),
            m.description
        );
    }
    Ok(())
}

fn info(spec: &str, json: bool, registry: Option<&str>) -> anyhow::Result<()> {
    let settings = Settings::load(&Settings::default_path(), registry)?;
    // Names neither stock nor installed are looked up in the registry (the OCI
    // manifest only, nothing is downloaded); `NAME@REQ` always is.
    let entry = match Spec::parse(spec, &settings)? {
        Spec::File(_) => catalog::manifest_of(spec)?,
        // With no registry to ask, an unknown name is reported with the known ones.
        Spec::Name { name, .. } if name == spec && settings.registry.is_none() => {
            catalog::manifest_of(spec)?
        }
        Spec::Name { name, req } => {
            let local = if name == spec {
                local_entry(spec)?
            } else {
                None
            };
            match local {
                Some(entry) => entry,
                None => published_entry(registry::resolve(
                    &settings.repository(&name)?,
                    &name,
                    &req,
                )?),
            }
        }
        Spec::Ref { reference, .. } => published_entry(registry::describe(&reference)?),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&entry)?);
        return Ok(());
    }
    let from = match &entry.origin {
        Origin::Installed { source, digest } => {
            format!("installed from {source}, component {digest}")
        }
        Origin::Registry { reference, digest } => {
            format!("published as {reference}, component {digest}")
        }
        _ => origin(&entry).to_string(),
    };
    // The manifest as TOML is the most faithful rendering of what it asks.
    print!(
        "# {spec} ({from})\n{}",
        toml::to_string_pretty(&entry.manifest)?
    );
    if let Err(e) = entry.manifest.check_api() {
        println!("# warning: {e}");
    }
    Ok(())
}

/// A stock or installed plugin's entry; `None` when there is none of that name.
fn local_entry(name: &str) -> anyhow::Result<Option<Entry>> {
    match catalog::manifest_of(name) {
        Ok(entry) => Ok(Some(entry)),
        Err(crate::plugin::PluginError::Unknown { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn published_entry(published: registry::Published) -> Entry {
    Entry {
        origin: Origin::Registry {
            reference: published.reference.to_string(),
            digest: published.layer_digest().to_string(),
        },
        manifest: published.manifest,
    }
}

fn install(spec: &str, registry: Option<&str>, yes: bool, force: bool) -> anyhow::Result<()> {
    let settings = Settings::load(&Settings::default_path(), registry)?;
    let (candidate, expected_name) = match Spec::parse(spec, &settings)? {
        Spec::File(path) => (Candidate::from_file(&path)?, None),
        Spec::Name { name, req } => {
            let published = registry::resolve(&settings.repository(&name)?, &name, &req)?;
            let fetched = registry::fetch(published)?;
            (Candidate::from_fetched(fetched, Some(req)), Some(name))
        }
        Spec::Ref { name, reference } => {
            let published = registry::describe(&reference)?;
            // Refused before the download, like a version resolved by requirement.
            published.manifest.check_api()?;
            let fetched = registry::fetch(published)?;
            (Candidate::from_fetched(fetched, None), name)
        }
    };
    candidate.check(expected_name.as_deref(), force)?;
    let manifest = &candidate.manifest;
    let what = format!("{} {}", manifest.name, manifest.version);
    eprintln!("{what} from {}", candidate.source);
    eprintln!("  {}", manifest.description);
    eprintln!("  component {}", candidate.digest());
    eprint!(
        "{}",
        describe_capabilities("asks for", &manifest.capabilities)
    );
    ask(&format!("Install {what} with these capabilities?"), yes)?;
    let granted = manifest.capabilities.clone();
    let (locked, replaced) = install::commit(
        &Installation::from_env(),
        &super::runtime()?,
        candidate,
        granted,
    )?;
    match replaced {
        Some(old) if old.version != locked.version => {
            println!(
                "installed {} {} (was {})",
                locked.name, locked.version, old.version
            )
        }
        _ => println!("installed {} {}", locked.name, locked.version),
    }
    Ok(())
}

fn update(only: Option<&str>, yes: bool) -> anyhow::Result<()> {
    let installation = Installation::from_env();
    let lock = installation.lock()?;
    if let Some(name) = only.filter(|n| lock.get(n).is_none()) {
        bail!("plugin {name} is not installed; see `rehost plugin list`");
    }
    let runtime = super::runtime()?;
    for locked in lock
        .plugins
        .iter()
        .filter(|l| only.is_none_or(|n| n == l.name))
    {
        let Some(req) = &locked.requirement else {
            println!(
                "{} {}: installed from {} (a file, tag or digest), left as is",
                locked.name, locked.version, locked.source
            );
            continue;
        };
        let repository = Reference::parse(&locked.source)
            .with_context(|| format!("plugin {}: the lock file's source", locked.name))?;
        let published = registry::resolve(&repository, &locked.name, req)?;
        if published.manifest.version <= locked.version {
            println!("{} {}: up to date", locked.name, locked.version);
            continue;
        }
        let candidate = Candidate::from_fetched(registry::fetch(published)?, Some(req.clone()));
        candidate.check(Some(&locked.name), true)?;
        let requested = &candidate.manifest.capabilities;
        let granted = match lockfile::beyond(requested, &locked.granted) {
            None => locked.granted.clone(),
            Some(more) => {
                eprintln!(
                    "{} {} -> {} from {}",
                    locked.name, locked.version, candidate.manifest.version, candidate.source
                );
                eprint!(
                    "{}",
                    describe_capabilities("asks for more than you granted", &more)
                );
                ask(
                    &format!(
                        "Update {} to {} with these capabilities?",
                        locked.name, candidate.manifest.version
                    ),
                    yes,
                )?;
                requested.clone()
            }
        };
        let (new, _) = install::commit(&installation, &runtime, candidate, granted)?;
        println!("updated {} {} -> {}", new.name, locked.version, new.version);
    }
    Ok(())
}

fn remove(name: &str) -> anyhow::Result<()> {
    match install::remove(&Installation::from_env(), name)? {
        Some(removed) => println!("removed {} {}", removed.name, removed.version),
        None if crate::plugin::stock::find(name).is_some() => {
            bail!("{name} is a stock plugin, shipped inside rehost; it cannot be removed")
        }
        None => bail!("plugin {name} is not installed; see `rehost plugin list`"),
    }
    Ok(())
}

fn verify() -> anyhow::Result<ExitCode> {
    let results = install::verify(&Installation::from_env())?;
    let mut drift = false;
    for v in &results {
        match &v.problem {
            None => println!(
                "ok     {} {} {}",
                v.locked.name, v.locked.version, v.locked.digest
            ),
            Some(problem) => {
                drift = true;
                println!("DRIFT  {problem}");
            }
        }
    }
    if drift {
        eprintln!("error: installed plugins differ from the lock file; reinstall them");
        return Ok(ExitCode::from(1));
    }
    println!("{} installed plugin(s) match the lock file", results.len());
    Ok(ExitCode::SUCCESS)
}

/// Consent: `--yes`, or "y" typed on a terminal. Anything else installs nothing.
fn ask(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "not installing without consent: there is no terminal to ask on; \
             review the capabilities above and pass --yes to grant them"
        );
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("consent declined: nothing was installed or changed")
    }
}

/// One line per kind of capability, `none` spelled out so nothing hides.
fn describe_capabilities(title: &str, caps: &Capabilities) -> String {
    let line = |label: &str, items: &[String]| {
        let items = if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        };
        format!("    {label:<22} {items}\n")
    };
    let limit = |value: Option<u64>, unit: &str| {
        value.map_or("host default".to_string(), |v| format!("{v} {unit}"))
    };
    let mut out = format!("  {title}:\n");
    out += &line("read guest files:", &caps.guest_read);
    out += &line("write guest files:", &caps.guest_write);
    out += &line("run guest commands:", &caps.commands);
    out += &line("network:", &caps.network);
    out += &line("host devices:", &caps.devices);
    out += &format!(
        "    {:<22} memory {}, time per call {}\n",
        "limits:",
        limit(caps.memory_mb, "MiB"),
        limit(caps.time_secs, "s")
    );
    out
}

fn origin(e: &Entry) -> &str {
    match &e.origin {
        Origin::Stock => "stock",
        Origin::File(_) => "file",
        Origin::Installed { .. } => "installed",
        Origin::Registry { .. } => "registry",
    }
}
