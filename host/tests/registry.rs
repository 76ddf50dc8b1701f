//! `rehost plugin publish|install|update|remove|verify` against a real registry:
//! Debian's docker-registry on 127.0.0.1 (scripts/registry.sh), storage in a temp
//! dir, stopped by a guard even when a test fails. Every failure must leave nothing
//! installed: no lock file change, no stored component.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rehost::plugin::lockfile::{self, Installation};
use semver::VersionReq;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/registry.sh");

fn wasm(file: &str) -> PathBuf {
    Path::new(rehost::plugin::stock::WASM_DIR).join(file)
}

/// A registry process with its storage; stopped on drop.
struct LocalRegistry {
    dir: tempfile::TempDir,
    addr: String,
}

impl LocalRegistry {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// `args` as for `registry.sh start DIR` (`--user USER:PASSWORD`).
    fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(SCRIPT)
            .arg("start")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "registry.sh start: {}",
            text(&out.stderr)
        );
        let addr = text(&out.stdout).trim().to_string();
        Self { dir, addr }
    }

    /// The stored bytes of a blob, as the filesystem driver lays them out.
    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A user: XDG dirs in a temp dir; the precompile cache is shared by the tests
/// (it is keyed by component digest) so each component compiles once per run.
struct User {
    home: tempfile::TempDir,
}

impl User {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rehost"));
        cmd.arg("plugin")
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env(
                "XDG_CACHE_HOME",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("registry-test-cache"),
            )
            .env_remove("REHOST_REGISTRY_USER")
            .env_remove("REHOST_REGISTRY_PASSWORD")
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rehost plugin {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs, expects failure, and that nothing about the installation changed.
    fn fails(&self, args: &[&str]) -> String {
        let before = self.state();
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "rehost plugin {args:?} should have failed: {}",
            text(&out.stdout)
        );
        assert_eq!(
            self.state(),
            before,
            "rehost plugin {args:?} changed the installation"
        );
        text(&out.stderr)
    }

    /// Runs a shell command line on a pseudo-terminal (util-linux `script`),
    /// typing `input`; the terminal's output is in stdout.
    fn on_terminal(&self, line: &str, input: &str) -> Output {
        let env = self.command(&[]);
        let mut child = Command::new("script")
            .args(["-qec", line, "/dev/null"])
            .envs(env.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn installation(&self) -> Installation {
        Installation {
            lock_path: self.home.path().join("config/rehost/plugins.lock"),
            store_dir: self.home.path().join("data/rehost/plugins"),
        }
    }

    /// The lock file's text and the stored component files.
    fn state(&self) -> (Option<String>, Vec<String>) {
        let inst = self.installation();
        let lock = std::fs::read_to_string(&inst.lock_path).ok();
        let mut stored: Vec<String> = std::fs::read_dir(&inst.store_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        stored.sort();
        (lock, stored)
    }

    fn write_config(&self, text: &str) {
        let dir = self.home.path().join("config/rehost");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), text).unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Publishes a component and returns the printed reference (with its digest).
fn publish(user: &User, registry: &LocalRegistry, file: &str) -> String {
    let path = wasm(file);
    let out = user.ok(&[
        "publish",
        path.to_str().unwrap(),
        "--registry",
        &registry.addr,
    ]);
    out.trim()
        .strip_prefix("published ")
        .unwrap_or_else(|| panic!("unexpected publish output {out:?}"))
        .to_string()
}

#[test]
fn publish_install_update_list_verify_remove() {
    let registry = LocalRegistry::start();
    let user = User::new();
    user.write_config(&format!("[registry]\nurl = \"{}\"\n", registry.addr));

    let v1 = publish(&user, &registry, "registry_demo_v1.wasm");
    assert!(
        v1.starts_with(&format!(
            "{}/rehost-plugins/registry-demo:1.0.0@sha256:",
            registry.addr
        )),
        "{v1}"
    );
    // Publishing the same bytes again is a no-op.
    assert_eq!(publish(&user, &registry, "registry_demo_v1.wasm"), v1);

    let out = user.ok(&["install", "registry-demo@^1", "--yes"]);
    assert!(out.contains("installed registry-demo 1.0.0"), "{out}");
    let lock = user.installation().lock().unwrap();
    let locked = lock.get("registry-demo").unwrap();
    assert_eq!(locked.version.to_string(), "1.0.0");
    assert_eq!(locked.source, v1);
    assert_eq!(locked.requirement, Some(VersionReq::parse("^1").unwrap()));
    assert_eq!(locked.granted.guest_read, vec!["/etc/motd".to_string()]);
    assert!(locked.granted.guest_write.is_empty());
    let stored = user.installation().component_path(&locked.digest);
    assert_eq!(
        lockfile::sha256(&std::fs::read(&stored).unwrap()),
        lockfile::sha256(&std::fs::read(wasm("registry_demo_v1.wasm")).unwrap())
    );

    let list = user.ok(&["list"]);
    assert!(
        list.lines().any(|l| l.starts_with("registry-demo")
            && l.contains("1.0.0")
            && l.contains("installed")),
        "{list}"
    );
    assert!(list.contains("xen-console"), "{list}");
    let info = user.ok(&["info", "registry-demo"]);
    assert!(
        info.contains("installed from") && info.contains("guest_read"),
        "{info}"
    );

    // 1.1.0 also wants to write /etc/motd: no terminal and no --yes, no update.
    publish(&user, &registry, "registry_demo_v2.wasm");
    let info = user.ok(&["info", "registry-demo@1.1"]);
    let info_remote = user.ok(&[
        "info",
        &format!("{}/rehost-plugins/registry-demo:1.1.0", registry.addr),
    ]);
    assert!(
        info.contains("guest_write"),
        "info shows the new request before download: {info}"
    );
    assert!(info_remote.contains("published as"), "{info_remote}");
    let err = user.fails(&["update"]);
    assert!(
        err.contains("write guest files:") && err.contains("/etc/motd"),
        "{err}"
    );
    assert!(err.contains("pass --yes"), "{err}");

    let out = user.ok(&["update", "--yes"]);
    assert!(
        out.contains("updated registry-demo 1.0.0 -> 1.1.0"),
        "{out}"
    );
    let lock = user.installation().lock().unwrap();
    let locked = lock.get("registry-demo").unwrap();
    assert_eq!(locked.version.to_string(), "1.1.0");
    assert_eq!(locked.granted.guest_write, vec!["/etc/motd".to_string()]);
    assert!(!stored.exists(), "the replaced component is removed");
    assert_eq!(user.state().1.len(), 1);
    let out = user.ok(&["update"]);
    assert!(out.contains("registry-demo 1.1.0: up to date"), "{out}");

    let out = user.ok(&["verify"]);
    assert!(out.contains("1 installed plugin(s) match"), "{out}");

    let out = user.ok(&["remove", "registry-demo"]);
    assert!(out.contains("removed registry-demo 1.1.0"), "{out}");
    assert_eq!(user.installation().lock().unwrap().plugins.len(), 0);
    assert!(
        user.state().1.is_empty(),
        "the component is removed: {:?}",
        user.state()
    );
    let err = user.fails(&["remove", "registry-demo"]);
    assert!(err.contains("not installed"), "{err}");
    let err = user.fails(&["remove", "xen-console"]);
    assert!(err.contains("stock plugin"), "{err}");
}

#[test]
fn install_by_requirement_and_by_digest_then_pin() {
    let registry = LocalRegistry::start();
    let user = User::new();
    let v1 = publish(&user, &registry, "registry_demo_v1.wasm");
    publish(&user, &registry, "registry_demo_v2.wasm");
    let r = ["--registry", registry.addr.as_str(), "--yes"];

    let out = user.ok(&[&["install", "registry-demo@~1.0"][..], &r].concat());
    assert!(out.contains("installed registry-demo 1.0.0"), "{out}");
    let by_tag = format!("{}/rehost-plugins/registry-demo:1.1.0", registry.addr);
    let out = user.ok(&["install", &by_tag, "--yes"]);
    assert!(
        out.contains("installed registry-demo 1.1.0 (was 1.0.0)"),
        "{out}"
    );
    let out = user.ok(&[&["install", "registry-demo"][..], &r].concat());
    assert!(out.contains("installed registry-demo 1.1.0\n"), "{out}");

    // Pinned by digest: exactly that artifact, and `update` leaves it alone.
    let digest = v1.rsplit_once('@').unwrap().1;
    let out = user.ok(&[&["install", &format!("registry-demo@{digest}")][..], &r].concat());
    assert!(
        out.contains("installed registry-demo 1.0.0 (was 1.1.0)"),
        "{out}"
    );
    let locked = user
        .installation()
        .lock()
        .unwrap()
        .get("registry-demo")
        .unwrap()
        .clone();
    assert!(locked.source.ends_with(digest), "{}", locked.source);
    assert_eq!(locked.requirement, None);
    let out = user.ok(&["update"]);
    assert!(out.contains("left as is"), "{out}");

    // What a pipeline pinning `registry-demo = "^1.0"` gets: the locked bytes.
    let inst = user.installation();
    let pins = BTreeMap::from([(
        "registry-demo".to_string(),
        VersionReq::parse("^1.0").unwrap(),
    )]);
    let pinned = lockfile::pinned_components(&inst, &pins).unwrap();
    assert_eq!(pinned[0].digest, locked.digest);
    assert_eq!(lockfile::sha256(&pinned[0].wasm), locked.digest);
    assert_eq!(pinned[0].granted.as_ref(), Some(&locked.granted));
    let pins = BTreeMap::from([(
        "registry-demo".to_string(),
        VersionReq::parse("^1.1").unwrap(),
    )]);
    let err = lockfile::pinned_components(&inst, &pins)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pinned to ^1.1 but 1.0.0 is installed"),
        "{err}"
    );

    // Drift: the stored component changed after install.
    std::fs::write(inst.component_path(&locked.digest), b"\0asm tampered").unwrap();
    let out = user.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("does not match the lock file"),
        "{}",
        text(&out.stdout)
    );
    let pins = BTreeMap::from([("registry-demo".to_string(), VersionReq::STAR)]);
    let err = lockfile::pinned_components(&inst, &pins)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match the lock file"), "{err}");
}

#[test]
fn failures_install_nothing() {
    let registry = LocalRegistry::start();
    let user = User::new();
    let v1 = publish(&user, &registry, "registry_demo_v1.wasm");
    publish(&user, &registry, "future_api.wasm");
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--registry".to_string(), registry.addr.clone()]);
        all
    };
    let fails =
        |args: Vec<String>| user.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let err = fails(with(&["install", "no-such-plugin", "--yes"]));
    assert!(err.contains("unknown plugin \"no-such-plugin\""), "{err}");

    let err = fails(with(&["install", "registry-demo@^2", "--yes"]));
    assert!(
        err.contains("no published version matches ^2 (published: 1.0.0)"),
        "{err}"
    );

    let err = fails(with(&["install", "future-api", "--yes"]));
    assert!(
        err.contains("needs host API ^2, but this rehost implements 0.1.0"),
        "{err}"
    );

    // No terminal, no --yes: the capabilities are shown, nothing is installed.
    let err = fails(with(&["install", "registry-demo"]));
    assert!(
        err.contains("read guest files:") && err.contains("/etc/motd"),
        "{err}"
    );
    assert!(err.contains("no terminal to ask on"), "{err}");

    // A terminal whose user answers "n" (util-linux `script` provides the pty).
    let before = user.state();
    let line = format!(
        "{} plugin install registry-demo --registry {}",
        env!("CARGO_BIN_EXE_rehost"),
        registry.addr
    );
    let out = user.on_terminal(&line, "n\n");
    let shown = text(&out.stdout);
    assert!(shown.contains("[y/N]"), "{shown}");
    assert!(shown.contains("consent declined"), "{shown}");
    assert!(!out.status.success());
    assert_eq!(user.state(), before);

    // A stock plugin's name is not taken over without --force.
    let stock = wasm("xen_console.wasm");
    let err = user.fails(&["install", stock.to_str().unwrap(), "--yes"]);
    assert!(
        err.contains("name of a stock plugin") && err.contains("--force"),
        "{err}"
    );

    // A registry that is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let err = user.fails(&["install", "registry-demo", "--yes", "--registry", &down]);
    assert!(
        err.contains(&format!("cannot reach the registry {down}")),
        "{err}"
    );

    // A tampered blob: the registry serves other bytes than the digest names.
    let layer = lockfile::sha256(&std::fs::read(wasm("registry_demo_v1.wasm")).unwrap());
    let blob = registry.blob_path(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let err = fails(with(&["install", "registry-demo", "--yes"]));
    assert!(
        err.contains("digest mismatch") && err.contains(&layer),
        "{err}"
    );
    let err = fails(with(&["install", &v1, "--yes"]));
    assert!(err.contains("digest mismatch"), "{err}");

    assert_eq!(user.state(), (None, vec![]), "nothing was ever installed");
}

#[test]
fn basic_auth_from_env_or_docker_config() {
    let registry = LocalRegistry::start_with(&["--user", "alice:s3cret"]);
    let user = User::new();
    user.write_config(&format!("[registry]\nurl = \"{}\"\n", registry.addr));
    let file = wasm("registry_demo_v1.wasm");
    let file = file.to_str().unwrap();

    let err = user.fails(&["publish", file]);
    assert!(
        err.contains(&format!("registry {} refused access", registry.addr))
            && err.contains("REHOST_REGISTRY_USER"),
        "{err}"
    );
    let out = user
        .command(&["publish", file])
        .env("REHOST_REGISTRY_USER", "alice")
        .env("REHOST_REGISTRY_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("refused the credentials"),
        "{}",
        text(&out.stderr)
    );
    let out = user
        .command(&["publish", file])
        .env("REHOST_REGISTRY_USER", "alice")
        .env("REHOST_REGISTRY_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A docker client's login: `auths` in $DOCKER_CONFIG/config.json.
    let docker = user.home.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "YWxpY2U6czNjcmV0"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let out = user
        .command(&["install", "registry-demo", "--yes"])
        .env("DOCKER_CONFIG", &docker)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("installed registry-demo 1.0.0"));
}
