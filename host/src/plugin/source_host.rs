//! The host side of the `source` world: a source plugin decides what to fetch; the
//! host checks each request against the plugin's grants and moves the bytes into a
//! work image written under a temporary name, renamed into place only when the
//! whole fetch succeeded. Credentials stay here (see [`secrets`]).

mod http;
mod process;
mod secrets;
mod ssh;
mod work;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha512};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceType};
use wasmtime::Engine;

use super::bindings::fixer::rehost::plugin::{log, types};
use super::bindings::source::rehost::plugin::{source_host as wit, source_types};
use super::bindings::source::Source;
use super::fixer_host::{describe, trap_error};
use super::manifest::Capabilities;
use super::runtime::{LoadedPlugin, Runtime};
use super::sandbox::{self, sandboxed, Sandbox};
use super::{catalog, Grants, Kind, PluginError};
use secrets::Secrets;
use work::{SparseWriter, Work, Written};

pub use source_types::SourceReport;
pub use ssh::SshConfig;

/// A source call may run as long as its transfers take; each transfer has its
/// own timeouts and the run can be cancelled. A manifest may ask for less.
const SOURCE_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Redirects followed by one download.
const MAX_REDIRECTS: usize = 5;

/// One source call's inputs.
pub struct SourceCall {
    /// The source's table as TOML text (secrets already taken out).
    pub config: String,
    /// Where the work image goes; nothing is left there unless the fetch succeeds.
    pub work: PathBuf,
    pub grants: Grants,
    /// Values for `{{secret:NAME}}` placeholders (the environment is the fallback).
    pub secrets: BTreeMap<String, String>,
    pub ssh: SshConfig,
    pub cancel: Arc<AtomicBool>,
}

/// What a fetch produced.
#[derive(Debug, Clone)]
pub struct SourceOutcome {
    pub report: SourceReport,
    pub work: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// What `rehost fetch` / `rehost convert --source` hand to [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// The source's table: `--source-opt k=v` pairs (see [`table_from_options`]) or
    /// the pipeline file's `[source]` table. A `secrets` sub-table is kept by the
    /// host for `{{secret:NAME}}` and never shown to the plugin.
    pub config: toml::Table,
    /// Hosts and devices the user grants, bounded by the manifest (whose `*`
    /// means "whatever the user grants").
    pub grant_hosts: Vec<String>,
    pub grant_devices: Vec<String>,
    pub ssh: SshConfig,
}

/// Runs the source step: loads source plugin `spec` (stock name or .wasm path) and
/// fills `work`.
pub fn fetch(
    runtime: &Runtime,
    spec: &str,
    options: &FetchOptions,
    work: &Path,
    cancel: Arc<AtomicBool>,
) -> Result<SourceOutcome, PluginError> {
    let plugin = catalog::load_kind(runtime, spec, Kind::Source)?;
    let name = plugin.manifest.name.clone();
    let config_error = |message: String| PluginError::Config {
        plugin: name.clone(),
        message,
    };
    let mut config = options.config.clone();
    let secrets = match config.remove("secrets") {
        None => BTreeMap::new(),
        Some(toml::Value::Table(t)) => t
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => Ok((k, s)),
                _ => Err(config_error(format!("secret {k} must be a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(config_error("`secrets` must be a table".into())),
    };
    let grants = source_grants(
        &plugin.manifest.capabilities,
        &options.grant_hosts,
        &options.grant_devices,
    )
    .map_err(|e| config_error(format!("bad grant: {e}")))?;
    let call = SourceCall {
        config: toml::to_string(&config).map_err(|e| config_error(e.to_string()))?,
        work: work.to_path_buf(),
        grants,
        secrets,
        ssh: options.ssh.clone(),
        cancel,
    };
    call_source(runtime, &plugin, call)
}

/// A source's grants: the manifest's own hosts and devices, plus those the user
/// grants where the manifest allows them (listed, or `*`).
pub fn source_grants(
    manifest: &Capabilities,
    hosts: &[String],
    devices: &[String],
) -> Result<Grants, globset::Error> {
    let concrete = |list: &[String], extra: &[String]| -> Vec<String> {
        list.iter()
            .filter(|x| *x != "*")
            .chain(extra)
            .cloned()
            .collect()
    };
    let requested = Capabilities {
        network: concrete(&manifest.network, hosts),
        devices: concrete(&manifest.devices, devices),
        ..Capabilities::default()
    };
    Grants::effective(&requested, Some(manifest), None)
}

/// `k=v` options as a table: values that read as TOML (numbers, booleans) keep
/// their type, anything else is a string; `a.b=v` makes a sub-table.
pub fn table_from_options(options: &[String]) -> Result<toml::Table, String> {
    let mut table = toml::Table::new();
    for option in options {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("source option {option:?} must be KEY=VALUE"))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table())
            .unwrap_or_else(|| toml::Value::String(value.into()));
        let mut at = &mut table;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if part.is_empty() {
                return Err(format!("source option {option:?}: empty key"));
            }
            if parts.peek().is_none() {
                at.insert(part.into(), value.clone());
                break;
            }
            let entry = at
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry
                .as_table_mut()
                .ok_or_else(|| format!("source option {option:?}: {part} is not a table"))?;
        }
    }
    Ok(table)
}

/// Per-call store state.
struct State {
    plugin: String,
    grants: Grants,
    secrets: Secrets,
    ssh: SshConfig,
    cancel: Arc<AtomicBool>,
    work: Work,
    sandbox: Sandbox,
}

sandboxed!(State);

/// Calls a source's `fetch` in a fresh store; on success the work image is in place.
pub fn call_source(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    call: SourceCall,
) -> Result<SourceOutcome, PluginError> {
    let name = plugin.manifest.name.clone();
    if plugin.manifest.kind != Kind::Source {
        return Err(PluginError::WrongKind {
            plugin: name,
            expected: Kind::Source,
            actual: plugin.manifest.kind,
        });
    }
    let limits = runtime
        .limits
        .for_long_call(&plugin.manifest, SOURCE_DEADLINE);
    let work = Work::new(&call.work).map_err(|e| PluginError::Config {
        plugin: name.clone(),
        message: format!("work image {}: {e}", call.work.display()),
    })?;
    let instantiate = |e| PluginError::Instantiate {
        plugin: name.clone(),
        source: e,
    };
    let mut linker: Linker<State> = Linker::new(runtime.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(instantiate)?;
    Source::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(instantiate)?;
    stub_other_worlds(&mut linker, &plugin.component, runtime.engine()).map_err(instantiate)?;

    let state = State {
        plugin: name.clone(),
        grants: call.grants,
        secrets: Secrets::new(call.secrets),
        ssh: call.ssh,
        cancel: call.cancel,
        work,
        sandbox: Sandbox::new(&limits),
    };
    let mut store = sandbox::store(runtime.engine(), state, &limits);

    let source =
        Source::instantiate(&mut store, &plugin.component, &linker).map_err(instantiate)?;
    let result = source.call_fetch(&mut store, &call.config);
    let state = store.into_data();
    let failed = |message: String| PluginError::Failed {
        plugin: name.clone(),
        call: "fetch".into(),
        message,
    };
    let report = match result {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Err(failed(state.secrets.redact(&describe(&e)))),
        Err(trap) => return Err(trap_error(&name, "fetch", trap, &limits)),
    };
    let work_path = state.work.path().to_path_buf();
    match state.work.finish() {
        Ok(Some(written)) => Ok(SourceOutcome {
            report,
            work: work_path,
            bytes: written.bytes,
            sha256: written.sha256,
        }),
        Ok(None) => Err(failed(
            "the source finished without writing the work image".into(),
        )),
        Err(e) => Err(failed(format!(
            "cannot rename the finished work image to {}: {e}",
            work_path.display()
        ))),
    }
}

/// The interfaces of the source world (without package and version).
const SOURCE_WORLD: &[&str] = &["log", "source-host", "types", "source-types"];

/// A resource of another world, never created for a source.
struct OtherWorld;

/// The SDK links every world's bindings into a plugin, so a source component may
/// also import another world's interfaces (guest-fs) that it never calls. Those
/// are defined as functions that fail, so the component instantiates and any call
/// is refused.
fn stub_other_worlds(
    linker: &mut Linker<State>,
    component: &Component,
    engine: &Engine,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        let Some(interface) = name.strip_prefix("rehost:plugin/") else {
            continue;
        };
        let interface = interface.split('@').next().unwrap_or(interface);
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if SOURCE_WORLD.contains(&interface) {
            continue;
        }
        let mut stub = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stub.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("{what} is not available to a source plugin")
                    })?
                }
                ComponentItem::Resource(_) => {
                    stub.resource(export, ResourceType::host::<OtherWorld>(), |_, _| Ok(()))?
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Logs a long transfer's progress about every tenth of the way.
struct Progress<'a> {
    plugin: &'a str,
    what: &'a str,
    total: Option<u64>,
    next: u64,
}

impl<'a> Progress<'a> {
    fn new(plugin: &'a str, what: &'a str, total: Option<u64>) -> Self {
        Self {
            plugin,
            what,
            total,
            next: 0,
        }
    }

    fn step(&self) -> u64 {
        self.total.map_or(256 << 20, |t| (t / 10).max(64 << 20))
    }

    fn update(&mut self, done: u64) {
        if done >= self.next {
            tracing::info!(plugin = %self.plugin, done, total = ?self.total, "{}", self.what);
            self.next = done + self.step();
        }
    }
}

impl State {
    fn denied(&self, d: super::grants::Denied, flag: &str) -> types::Error {
        types::Error::Denied(format!("{} (the user grants more with {flag})", d.0))
    }

    fn failed(&self, op: &str, message: impl AsRef<str>) -> types::Error {
        types::Error::Failed(self.secrets.redact(&format!(
            "plugin {}: {op}: {}",
            self.plugin,
            message.as_ref()
        )))
    }

    fn check_host(&self, host: &str) -> Result<(), types::Error> {
        self.grants
            .check_host(&self.plugin, host)
            .map_err(|d| self.denied(d, "--grant-host HOST"))
    }

    fn check_cancel(&self, op: &str) -> Result<(), types::Error> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(self.failed(op, "cancelled"));
        }
        Ok(())
    }

    /// Fills secrets into a request and builds it (the URL never holds secrets).
    fn prepare(
        &mut self,
        op: &str,
        request: &wit::HttpRequest,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<ureq::http::Request<Vec<u8>>, types::Error> {
        let host = http::host_of(url).map_err(types::Error::Invalid)?;
        self.check_host(&host)?;
        let mut filled = Vec::with_capacity(headers.len());
        for (k, v) in headers {
            let v = self.secrets.fill(v).map_err(|e| self.failed(op, e))?;
            filled.push((k.clone(), v));
        }
        let body = match &request.body {
            Some(b) => {
                let text = String::from_utf8_lossy(b);
                let filled = self.secrets.fill(&text).map_err(|e| self.failed(op, e))?;
                // Only text bodies carry placeholders; binary ones pass unchanged.
                Some(if filled == text {
                    b.clone()
                } else {
                    filled.into_bytes()
                })
            }
            None => None,
        };
        tracing::debug!(
            plugin = %self.plugin,
            "{op}: {} {url} [{}]",
            request.method,
            secrets::describe_headers(headers)
        );
        http::build(&request.method, url, &filled, body).map_err(types::Error::Invalid)
    }

    fn timeout(request: &wit::HttpRequest) -> Duration {
        match request.timeout_secs {
            0 => http::DEFAULT_TIMEOUT,
            s => Duration::from_secs(s.into()),
        }
    }

    /// Credentials the server hands back are scrubbed from then on.
    fn learn_tokens(&mut self, headers: &[(String, String)]) {
        for (k, v) in headers {
            if secrets::is_sensitive_header(k) {
                self.secrets.learn(v);
            }
        }
    }

    /// Streams a download into a new scratch file, returning it with its digests.
    fn download(
        &mut self,
        request: &wit::HttpRequest,
    ) -> Result<(tempfile::NamedTempFile, Written, work::Extra), types::Error> {
        let op = "download-into-work";
        let mut url = request.url.clone();
        let mut headers = request.headers.clone();
        for _ in 0..=MAX_REDIRECTS {
            self.check_cancel(op)?;
            let prepared = self.prepare(op, request, &url, &headers)?;
            let mut response =
                http::open(prepared, Self::timeout(request)).map_err(|e| self.failed(op, e))?;
            let status = response.status().as_u16();
            let response_headers = http::headers_of(&response);
            self.learn_tokens(&response_headers);
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| self.failed(op, format!("{url}: redirect without Location")))?;
                let next = http::redirect_target(&url, location).map_err(|e| self.failed(op, e))?;
                // Credentials are for the host they were meant for.
                if http::host_of(&next).ok() != http::host_of(&url).ok() {
                    headers.retain(|(k, _)| !secrets::is_sensitive_header(k));
                }
                tracing::info!(plugin = %self.plugin, "{url} redirects to {next}");
                url = next;
                continue;
            }
            if !response.status().is_success() {
                let excerpt = response
                    .body_mut()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                return Err(self.failed(
                    op,
                    format!(
                        "{} {url}: HTTP {status}: {}",
                        request.method,
                        excerpt.trim()
                    ),
                ));
            }
            let expected_len = response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let scratch = self
                .work
                .scratch()
                .map_err(|e| self.failed(op, e.to_string()))?;
            let mut writer = SparseWriter::new(scratch.as_file(), scratch.path());
            writer.extra.md5 = Some(Md5::new());
            writer.extra.sha512 = Some(Sha512::new());
            let mut reader = response.body_mut().as_reader();
            let what = format!("downloading {url}");
            let mut progress = Progress::new(&self.plugin, &what, expected_len);
            let pumped = work::pump(
                &mut reader,
                &mut writer,
                &self.cancel,
                &mut |d| progress.update(d),
                &url,
            );
            let got = writer.position();
            pumped.map_err(|e| {
                self.failed(
                    op,
                    format!("{e} (the connection broke after {got} bytes; retry the fetch)"),
                )
            })?;
            if let Some(len) = expected_len.filter(|&len| len != got) {
                return Err(self.failed(
                    op,
                    format!(
                        "{url}: the connection ended after {got} of {len} bytes; retry the fetch"
                    ),
                ));
            }
            let (written, extra) = writer.finish().map_err(|e| self.failed(op, e))?;
            return Ok((scratch, written, extra));
        }
        Err(self.failed(
            op,
            format!("more than {MAX_REDIRECTS} redirects from {}", request.url),
        ))
    }

    /// Compares the server's digests with what arrived.
    fn verify(
        &self,
        expect: &[wit::Digest],
        written: &Written,
        extra: work::Extra,
    ) -> Result<(), types::Error> {
        let md5 = extra.md5.map(|h| hex::encode(h.finalize()));
        let sha512 = extra.sha512.map(|h| hex::encode(h.finalize()));
        for digest in expect {
            let (name, actual) = match digest.algorithm {
                wit::DigestAlgorithm::Md5 => ("md5", md5.clone()),
                wit::DigestAlgorithm::Sha256 => ("sha256", Some(written.sha256.clone())),
                wit::DigestAlgorithm::Sha512 => ("sha512", sha512.clone()),
            };
            let actual = actual.unwrap_or_default();
            if !actual.eq_ignore_ascii_case(digest.hex.trim()) {
                return Err(self.failed(
                    "download-into-work",
                    format!(
                        "{name} mismatch: expected {}, received data has {actual}; the \
                         download is corrupt or incomplete, retry the fetch",
                        digest.hex.trim()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Converts a downloaded qcow2 to a raw scratch image with qemu-img.
    fn qcow2_to_raw(
        &self,
        qcow2: &Path,
    ) -> Result<(tempfile::NamedTempFile, Written), types::Error> {
        let op = "download-into-work";
        let raw = self
            .work
            .scratch()
            .map_err(|e| self.failed(op, e.to_string()))?;
        let mut cmd = std::process::Command::new("qemu-img");
        cmd.args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
            .arg(qcow2)
            .arg(raw.path());
        let out =
            process::run(cmd, "qemu-img convert", &self.cancel).map_err(|e| self.failed(op, e))?;
        if out.status != 0 {
            return Err(self.failed(
                op,
                format!(
                    "qemu-img convert of the downloaded qcow2 failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let written = self.hash_file(op, raw.path())?;
        Ok((raw, written))
    }

    /// The size and sha256 of a finished scratch file.
    fn hash_file(&self, op: &str, path: &Path) -> Result<Written, types::Error> {
        let mut file = File::open(path).map_err(|e| self.failed(op, e.to_string()))?;
        let mut sha = sha2::Sha256::new();
        let bytes = std::io::copy(&mut file, &mut sha)
            .map_err(|e| self.failed(op, format!("reading {}: {e}", path.display())))?;
        Ok(Written {
            bytes,
            sha256: hex::encode(sha.finalize()),
        })
    }

    fn ssh_target(&self, target: &wit::SshTarget) -> Result<ssh::Target, types::Error> {
        self.check_host(&target.host)?;
        ssh::Target::new(&target.host, target.port, target.user.as_deref())
            .map_err(types::Error::Invalid)
    }

    fn accept(&mut self, file: tempfile::NamedTempFile, written: Written) -> wit::CopyReport {
        let report = wit::CopyReport {
            bytes: written.bytes,
            sha256: written.sha256.clone(),
        };
        self.work.accept(file.into_temp_path(), written);
        report
    }
}

impl types::Host for State {}
impl source_types::Host for State {}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        super::host_log::log(&self.plugin, level, &self.secrets.redact(&message));
    }

    fn progress(&mut self, done: u64, total: u64, message: String) {
        super::host_log::progress(&self.plugin, done, total, &self.secrets.redact(&message));
    }
}

impl wit::Host for State {
    fn mounted_device(&mut self, mount_point: String) -> Result<String, types::Error> {
        let mounts = std::fs::read_to_string("/proc/mounts")
            .map_err(|e| self.failed("mounted-device", format!("reading /proc/mounts: {e}")))?;
        work::mounted_device(&mounts, &mount_point).ok_or_else(|| {
            types::Error::NotFound(format!(
                "plugin {}: no block device is mounted at {mount_point}",
                self.plugin
            ))
        })
    }

    fn copy_into_work(&mut self, path: String) -> Result<wit::CopyReport, types::Error> {
        let op = "copy-into-work";
        self.grants
            .check_device(&self.plugin, &path)
            .map_err(|d| self.denied(d, "--grant-device PATH"))?;
        let source = Path::new(&path);
        let mut file = File::open(source).map_err(|e| {
            let message = format!("plugin {}: {op}: opening {path}: {e}", self.plugin);
            match e.kind() {
                std::io::ErrorKind::NotFound => types::Error::NotFound(message),
                _ => types::Error::Io(message),
            }
        })?;
        let size = work::source_size(&mut file, source).map_err(|e| self.failed(op, e))?;
        work::check_target(source, size, self.work.dir()).map_err(|e| self.failed(op, e))?;
        tracing::info!(plugin = %self.plugin, "copying {path} ({size} bytes) into the work image");
        let scratch = self
            .work
            .scratch()
            .map_err(|e| self.failed(op, e.to_string()))?;
        let mut writer = SparseWriter::new(scratch.as_file(), scratch.path());
        let what = format!("copying {path}");
        let mut progress = Progress::new(&self.plugin, &what, Some(size));
        work::pump(
            &mut file,
            &mut writer,
            &self.cancel,
            &mut |d| progress.update(d),
            &path,
        )
        .map_err(|e| self.failed(op, e))?;
        let (written, _) = writer.finish().map_err(|e| self.failed(op, e))?;
        Ok(self.accept(scratch, written))
    }

    fn setting(&mut self, name: String) -> Result<Option<String>, types::Error> {
        if secrets::looks_secret(&name) {
            return Err(types::Error::Denied(format!(
                "plugin {}: setting {name}: looks like a secret; put {{{{secret:{name}}}}} \
                 in the request and the host fills it in",
                self.plugin
            )));
        }
        Ok(std::env::var(&name).ok())
    }

    fn http(&mut self, request: wit::HttpRequest) -> Result<wit::HttpResponse, types::Error> {
        self.check_cancel("http")?;
        let prepared = self.prepare("http", &request, &request.url, &request.headers)?;
        let http::Reply {
            status,
            headers,
            body,
        } = http::exchange(prepared, Self::timeout(&request))
            .map_err(|e| self.failed("http", e))?;
        self.learn_tokens(&headers);
        tracing::debug!(plugin = %self.plugin, "http: {} {} -> {status}", request.method, request.url);
        Ok(wit::HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn download_into_work(
        &mut self,
        request: wit::HttpRequest,
        expect: Vec<wit::Digest>,
        format: wit::ImageFormat,
    ) -> Result<wit::CopyReport, types::Error> {
        let (scratch, written, extra) = self.download(&request)?;
        self.verify(&expect, &written, extra)?;
        match format {
            wit::ImageFormat::Raw => Ok(self.accept(scratch, written)),
            wit::ImageFormat::Qcow2 => {
                let (raw, written) = self.qcow2_to_raw(scratch.path())?;
                Ok(self.accept(raw, written))
            }
        }
    }

    fn ssh_run(
        &mut self,
        target: wit::SshTarget,
        argv: Vec<String>,
    ) -> Result<wit::SshOutput, types::Error> {
        let dest = self.ssh_target(&target)?;
        tracing::info!(plugin = %self.plugin, "ssh {}: {}", target.host, argv.join(" "));
        let out = ssh::run(&self.ssh, &dest, &argv, &self.cancel)
            .map_err(|e| self.failed("ssh-run", e))?;
        Ok(wit::SshOutput {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn scp_into_work(
        &mut self,
        target: wit::SshTarget,
        remote_path: String,
    ) -> Result<wit::CopyReport, types::Error> {
        let op = "scp-into-work";
        let dest = self.ssh_target(&target)?;
        tracing::info!(plugin = %self.plugin, "scp {}:{remote_path} into the work image", target.host);
        let scratch = self
            .work
            .scratch()
            .map_err(|e| self.failed(op, e.to_string()))?;
        ssh::copy(&self.ssh, &dest, &remote_path, scratch.path(), &self.cancel)
            .map_err(|e| self.failed(op, e))?;
        // scp writes every byte, zeroes included.
        let written = work::hash_and_punch_zeros(scratch.path(), &self.cancel)
            .map_err(|e| self.failed(op, e))?;
        Ok(self.accept(scratch, written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_a_table() {
        let t = table_from_options(&[
            "instance=i-3E8C4A1B".into(),
            "port=2222".into(),
            "metadata=false".into(),
            "secrets.OS_PASSWORD=pw".into(),
        ])
        .unwrap();
        assert_eq!(t["instance"].as_str(), Some("i-3E8C4A1B"));
        assert_eq!(t["port"].as_integer(), Some(2222));
        assert_eq!(t["metadata"].as_bool(), Some(false));
        assert_eq!(t["secrets"]["OS_PASSWORD"].as_str(), Some("pw"));
        assert!(table_from_options(&["novalue".into()]).is_err());
    }

    #[test]
    fn user_grants_are_bounded_by_the_manifest() {
        let manifest = Capabilities {
            network: vec!["169.254.169.254".into(), "*".into()],
            devices: vec!["/dev/xvda1".into()],
            ..Capabilities::default()
        };
        let g = source_grants(&manifest, &["127.0.0.1".into()], &["/dev/loop0".into()]).unwrap();
        g.check_host("p", "169.254.169.254").unwrap();
        g.check_host("p", "127.0.0.1").unwrap();
        assert!(g.check_host("p", "example.org").is_err());
        g.check_device("p", "/dev/xvda1").unwrap();
        // The manifest lists devices and has no `*`: the user cannot add one.
        assert!(g.check_device("p", "/dev/loop0").is_err());
    }
}
