//! The wasmtime side of plugins: one Engine for the process, components
//! precompiled once and cached on disk, and per-call limits (memory, epoch deadline).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, StoreLimits, StoreLimitsBuilder};

use super::manifest::Manifest;
use super::PluginError;

/// How often the epoch advances; deadlines are counted in these ticks.
const TICK: Duration = Duration::from_millis(10);

/// The longest deadline a manifest can ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(2 * 3600);

/// Limits applied to each plugin call (see [`Limits::for_manifest`]).
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: usize,
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            deadline: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Memory: the manifest may only lower the host's limit. Time: the manifest's
    /// `time_secs` is the plugin's own deadline (a fixer that installs packages runs
    /// commands for minutes inside one call), capped at [`MAX_DEADLINE`].
    pub fn for_manifest(&self, manifest: &Manifest) -> Limits {
        let caps = &manifest.capabilities;
        Limits {
            memory_bytes: caps
                .memory_mb
                .map(|mb| (mb as usize).saturating_mul(1 << 20).min(self.memory_bytes))
                .unwrap_or(self.memory_bytes),
            deadline: caps
                .time_secs
                .map(|s| Duration::from_secs(s).min(MAX_DEADLINE))
                .unwrap_or(self.deadline),
        }
    }

    /// For a call that runs as long as its work takes (a source's transfers, a
    /// packager's disk), with `deadline` instead of the per-call default. The
    /// manifest's `time_secs` may only lower it; memory is as [`Self::for_manifest`].
    pub fn for_long_call(&self, manifest: &Manifest, deadline: Duration) -> Limits {
        Limits {
            deadline: manifest
                .capabilities
                .time_secs
                .map_or(deadline, |s| Duration::from_secs(s).min(deadline)),
            ..self.for_manifest(manifest)
        }
    }

    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .trap_on_grow_failure(true)
            .build()
    }

    pub fn deadline_ticks(&self) -> u64 {
        (self.deadline.as_millis() / TICK.as_millis()).max(1) as u64
    }
}

/// A component ready to instantiate, with the manifest read from it.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub manifest: Manifest,
    pub component: Component,
    /// sha256 of the component bytes, hex.
    pub digest: String,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("digest", &self.digest)
            .finish()
    }
}

/// The process-wide plugin runtime.
pub struct Runtime {
    engine: Engine,
    cache_dir: PathBuf,
    pub limits: Limits,
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
    /// Linked, type-checked instance templates per (world, component digest): the
    /// linker with all of WASI is built once, so a call only instantiates.
    instance_pres: Mutex<HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>>,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Runtime {
    /// `cache_dir` holds precompiled components (see [`default_cache_dir`]).
    pub fn new(cache_dir: PathBuf, limits: Limits) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(PluginError::Engine)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rehost-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Engine(e.into()))?
        };
        Ok(Self {
            engine,
            cache_dir,
            limits,
            loaded: Mutex::default(),
            instance_pres: Mutex::default(),
            ticker: Some((stop, ticker)),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component: reads its manifest, checks the API range, and returns the
    /// compiled component from the cache (compiling and caching it on first use).
    pub fn load(&self, wasm: &[u8], origin: &str) -> Result<LoadedPlugin, PluginError> {
        let digest = hex::encode(Sha256::digest(wasm));
        if let Some(hit) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
        {
            return Ok(hit.clone());
        }
        let manifest = Manifest::from_wasm(wasm, origin)?;
        manifest.check_api()?;
        let component = self.compiled(wasm, &digest, origin)?;
        let plugin = LoadedPlugin {
            manifest,
            component,
            digest: digest.clone(),
        };
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest, plugin.clone());
        Ok(plugin)
    }

    /// The instance template `P` of a component, built by `build` on first use.
    pub fn instance_pre<P, E>(
        &self,
        digest: &str,
        build: impl FnOnce() -> Result<P, E>,
    ) -> Result<P, E>
    where
        P: Clone + Send + Sync + 'static,
    {
        let key = (TypeId::of::<P>(), digest.to_string());
        let cached = self
            .instance_pres
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(pre) = cached.and_then(|p| p.downcast_ref::<P>().cloned()) {
            return Ok(pre);
        }
        let pre = build()?;
        self.instance_pres
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::new(pre.clone()));
        Ok(pre)
    }

    /// Precompiles a component into the cache without loading it (plugin install).
    pub fn precompile(&self, wasm: &[u8], origin: &str) -> Result<PathBuf, PluginError> {
        let digest = hex::encode(Sha256::digest(wasm));
        self.compiled(wasm, &digest, origin)?;
        Ok(self.cache_path(&digest))
    }

    /// Where the precompiled artifact for a digest lives: keyed by the component's
    /// sha256 and the engine's compatibility hash, so a wasmtime upgrade or a
    /// different CPU feature set never loads a stale artifact.
    pub fn cache_path(&self, digest: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        self.cache_dir
            .join(format!("{digest}-{:016x}.cwasm", h.finish()))
    }

    fn compiled(&self, wasm: &[u8], digest: &str, origin: &str) -> Result<Component, PluginError> {
        let path = self.cache_path(digest);
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine
            // with the same compatibility hash, into the user's own cache directory.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!("ignoring unusable cache entry {}: {e:#}", path.display()),
            }
        }
        let compile = |e: wasmtime::Error| PluginError::Compile {
            origin: origin.into(),
            source: e,
        };
        let bytes = self.engine.precompile_component(wasm).map_err(compile)?;
        if let Err(e) = write_atomically(&path, &bytes) {
            tracing::warn!("cannot cache compiled plugin at {}: {e}", path.display());
        }
        // SAFETY: these bytes were just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &bytes) }.map_err(compile)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

/// `$XDG_CACHE_HOME/rehost/plugins`, else `~/.cache/rehost/plugins`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("rehost/plugins")
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(capabilities: &str) -> Manifest {
        let text = format!(
            "name = \"p\"\nversion = \"0.1.0\"\nkind = \"source\"\ndescription = \"d\"\n\
             api = \"^0.1\"\n[capabilities]\n{capabilities}"
        );
        Manifest::parse(&text, "test").unwrap()
    }

    #[test]
    fn manifests_may_lower_memory_and_set_their_deadline_within_bounds() {
        let host = Limits::default();
        let asked = host.for_manifest(&manifest("memory_mb = 64\ntime_secs = 1800\n"));
        assert_eq!(asked.memory_bytes, 64 << 20);
        assert_eq!(asked.deadline, Duration::from_secs(1800));
        let greedy = host.for_manifest(&manifest("memory_mb = 4096\ntime_secs = 999999\n"));
        assert_eq!(greedy.memory_bytes, host.memory_bytes);
        assert_eq!(greedy.deadline, MAX_DEADLINE);
    }

    #[test]
    fn long_calls_take_their_deadline_and_manifests_only_lower_it() {
        let host = Limits::default();
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(host.for_long_call(&manifest(""), day).deadline, day);
        let lower = host.for_long_call(&manifest("time_secs = 60\nmemory_mb = 32\n"), day);
        assert_eq!(lower.deadline, Duration::from_secs(60));
        assert_eq!(lower.memory_bytes, 32 << 20);
        let higher = host.for_long_call(&manifest("time_secs = 999999\n"), day);
        assert_eq!(higher.deadline, day);
    }
}
