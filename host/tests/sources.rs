//! The stock sources end to end: real components run by the real runtime, the host
//! moving real bytes from a loop device, a real sshd and HTTP servers on
//! 127.0.0.1 speaking the cloud APIs. Every failure must be a clear error that
//! leaves no work image (and no temporary file) behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use md5::Md5;
use rehost::plugin::source_host::{self, FetchOptions, SourceOutcome, SshConfig};
use rehost::plugin::{Limits, PluginError, Runtime};
use sha2::{Digest, Sha256, Sha512};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One compile cache for every test: compiling each component once is enough.
fn runtime() -> Runtime {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sources-plugin-cache");
    Runtime::new(cache, Limits::default()).unwrap()
}

fn table(pairs: &[(&str, &str)]) -> toml::Table {
    let opts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    source_host::table_from_options(&opts).unwrap()
}

fn fetch(dir: &Path, source: &str, options: &FetchOptions) -> Result<SourceOutcome, PluginError> {
    let work = dir.join("work.img");
    let result = source_host::fetch(
        &runtime(),
        source,
        options,
        &work,
        Arc::new(AtomicBool::new(false)),
    );
    if result.is_err() {
        assert_no_work_left(dir);
    }
    result
}

/// Neither the work image nor a temporary part of it may survive a failure.
fn assert_no_work_left(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("work.img"))
        .collect();
    assert!(left.is_empty(), "left behind after a failure: {left:?}");
}

fn sha256_file(path: &Path) -> String {
    let mut sha = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut sha).unwrap();
    hex::encode(sha.finalize())
}

fn metadata(outcome: &SourceOutcome, key: &str) -> String {
    outcome
        .report
        .metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key} in {:?}", outcome.report.metadata))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file of `size` bytes: data at the start, a hole, data near the end.
fn sparse_image(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0x5a; 70_000], 0).unwrap();
    f.write_all_at(b"the end of the instance", size - 4096)
        .unwrap();
}

// ---------------------------------------------------------------------------
// Guards: every loop device, mount, server and sshd is released, even on panic.

struct LoopDevice(String);

impl LoopDevice {
    fn attach(file: &Path) -> Self {
        Self(run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

struct Mount(PathBuf);

impl Mount {
    fn new(args: &[&str], at: &Path) -> Self {
        run(Command::new("mount").args(args).arg(at));
        Self(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A request as the test servers saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler sends back: status, headers, body, and how many body bytes to
/// actually send before dropping the connection (None: all).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    cut_after: Option<usize>,
}

impl Reply {
    fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
            cut_after: None,
        }
    }

    fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: text.as_bytes().to_vec(),
            cut_after: None,
        }
    }
}

type Handler = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A tiny HTTP/1.1 server on 127.0.0.1: one request per connection, stopped and
/// joined when dropped.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &handler, &seen),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m.to_string(), p.to_string()),
        _ => return,
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = Seen {
        method,
        path,
        headers,
        body,
    };
    let reply = handler(&request);
    seen.lock().unwrap().push(request);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body = &reply.body[..reply.cut_after.unwrap_or(reply.body.len())];
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
    let _ = out.flush();
}

// ---------------------------------------------------------------------------
// local-file, and grants

#[test]
fn local_file_copies_sparsely_with_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("instance.img");
    sparse_image(&src, 16 << 20);
    let src_str = src.to_str().unwrap();
    let options = FetchOptions {
        config: table(&[("path", src_str)]),
        grant_devices: vec![src_str.into()],
        ..FetchOptions::default()
    };
    let outcome = fetch(dir.path(), "local-file", &options).unwrap();
    assert_eq!(outcome.bytes, 16 << 20);
    assert_eq!(outcome.sha256, sha256_file(&src));
    assert_eq!(sha256_file(&outcome.work), sha256_file(&src));
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&outcome.work).unwrap().blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "the hole was filled: {allocated} bytes"
    );
}

#[test]
fn a_source_is_refused_what_it_was_not_granted() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("instance.img");
    sparse_image(&src, 1 << 20);
    // No --grant-device for the file.
    let options = FetchOptions {
        config: table(&[("path", src.to_str().unwrap())]),
        ..FetchOptions::default()
    };
    let err = fetch(dir.path(), "local-file", &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("denied") && err.contains("not granted") && err.contains("--grant-device"),
        "{err}"
    );

    // aws-dd may reach the metadata service, not a host the user did not grant.
    let imds = Server::start(Box::new(|_| Reply::text(200, "x")));
    let options = FetchOptions {
        config: table(&[("imds", &imds.url()), ("device", "/dev/xvda1")]),
        ..FetchOptions::default()
    };
    let err = fetch(dir.path(), "aws-dd", &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("connect to 127.0.0.1: host not granted"),
        "{err}"
    );
    assert!(imds.seen().is_empty(), "the host was contacted anyway");
}

// ---------------------------------------------------------------------------
// aws-dd

const IMDS_TOKEN: &str = "AQAEAFakeImdsV2SessionToken==";

/// IMDSv2: a token by PUT (with a TTL header), then GETs that must carry it.
fn imds_server() -> Server {
    Server::start(Box::new(|req| {
        if req.method == "PUT" && req.path == "/latest/api/token" {
            return match req.header("X-aws-ec2-metadata-token-ttl-seconds") {
                Some(_) => Reply::text(200, IMDS_TOKEN),
                None => Reply::text(400, "missing TTL"),
            };
        }
        if req.header("X-aws-ec2-metadata-token") != Some(IMDS_TOKEN) {
            return Reply::text(401, "");
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/latest/meta-data/instance-id") => Reply::text(200, "i-0abc1234def567890"),
            ("GET", "/latest/meta-data/ami-id") => Reply::text(200, "ami-0fedcba987654321"),
            ("GET", "/latest/meta-data/placement/region") => Reply::text(200, "eu-west-1"),
            _ => Reply::text(404, "Not Found"),
        }
    }))
}

/// A small ext4 image attached to a loop device: the instance's root device.
fn root_device(dir: &Path) -> (PathBuf, LoopDevice) {
    let image = dir.join("root.ext4");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "cloudimg-rootfs"])
        .arg(&image));
    let dev = LoopDevice::attach(&image);
    (image, dev)
}

fn aws_options(imds: &Server, device: &str) -> FetchOptions {
    FetchOptions {
        config: table(&[("imds", &imds.url()), ("device", device)]),
        grant_hosts: vec!["127.0.0.1".into()],
        grant_devices: vec![device.into()],
        ..FetchOptions::default()
    }
}

#[test]
fn aws_dd_copies_the_root_device_and_records_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (image, dev) = root_device(dir.path());
    let imds = imds_server();
    let outcome = fetch(dir.path(), "aws-dd", &aws_options(&imds, &dev.0)).unwrap();

    assert_eq!(outcome.sha256, sha256_file(&image));
    assert_eq!(sha256_file(&outcome.work), sha256_file(&image));
    assert_eq!(metadata(&outcome, "aws.instance-id"), "i-0abc1234def567890");
    assert_eq!(metadata(&outcome, "aws.ami-id"), "ami-0fedcba987654321");
    assert_eq!(metadata(&outcome, "aws.region"), "eu-west-1");
    assert_eq!(metadata(&outcome, "source.device"), dev.0);
    let seen = imds.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("PUT", "/latest/api/token")
    );
    // The copy is a real filesystem.
    run(Command::new("e2fsck").args(["-fn"]).arg(&outcome.work));
}

#[test]
fn aws_dd_refuses_a_target_on_the_copied_device_or_without_room() {
    let dir = tempfile::tempdir().unwrap();
    let (_image, dev) = root_device(dir.path());
    let imds = imds_server();

    let on_root = dir.path().join("on-root");
    std::fs::create_dir(&on_root).unwrap();
    let _mounted = Mount::new(&[&dev.0], &on_root);
    let err = fetch(&on_root, "aws-dd", &aws_options(&imds, &dev.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the device being copied"), "{err}");

    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let _tmpfs = Mount::new(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"], &small);
    let err = fetch(&small, "aws-dd", &aws_options(&imds, &dev.0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs 33554432 bytes") && err.contains("use a larger volume"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// euca-scp

/// Debian's sshd on 127.0.0.1 (scripts/sshd-test.sh), stopped when dropped.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
}

impl Sshd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(WORKSPACE).join("scripts/sshd-test.sh");
        let fixtures = Path::new(WORKSPACE).join("tests/fixtures/bin");
        let config = run(Command::new(&script)
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .arg(fixtures.canonicalize().unwrap()));
        Self {
            dir,
            port,
            config: config.into(),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let script = Path::new(WORKSPACE).join("scripts/sshd-test.sh");
        let _ = Command::new(script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn euca_options(sshd: &Sshd, root: &Path, instance: &str) -> FetchOptions {
    let path = format!("{}/{{user}}/{{instance}}/root", root.display());
    let port = sshd.port.to_string();
    FetchOptions {
        config: table(&[
            ("controller", "127.0.0.1"),
            ("instance", instance),
            ("user", "admin"),
            ("port", &port),
            ("path", &path),
        ]),
        grant_hosts: vec!["127.0.0.1".into()],
        ssh: SshConfig {
            config_file: Some(sshd.config.clone()),
        },
        ..FetchOptions::default()
    }
}

#[test]
fn euca_scp_copies_the_instance_from_its_node() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("eucalyptus");
    let instance_dir = root.join("admin/i-3E8C4A1B");
    std::fs::create_dir_all(&instance_dir).unwrap();
    let disk = instance_dir.join("root");
    sparse_image(&disk, 8 << 20);

    let work_dir = dir.path().join("work");
    std::fs::create_dir(&work_dir).unwrap();
    let outcome = fetch(
        &work_dir,
        "euca-scp",
        &euca_options(&sshd, &root, "i-3E8C4A1B"),
    )
    .unwrap();
    assert_eq!(sha256_file(&outcome.work), sha256_file(&disk));
    assert_eq!(outcome.sha256, sha256_file(&disk));
    assert_eq!(metadata(&outcome, "euca.node"), "127.0.0.1");
    // scp wrote all 8 MiB; the zero blocks became holes again.
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&outcome.work).unwrap().blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "the work image is dense: {allocated} bytes"
    );

    // Failures get a fresh work directory each, to show they leave nothing.
    let fresh = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    };
    // An instance no node runs.
    let err = fetch(
        &fresh("unknown"),
        "euca-scp",
        &euca_options(&sshd, &root, "i-00000000"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no node controller lists instance i-00000000"),
        "{err}"
    );

    // Listed on a node, but its disk is not where the path says.
    std::fs::remove_file(&disk).unwrap();
    let err = fetch(
        &fresh("missing"),
        "euca-scp",
        &euca_options(&sshd, &root, "i-3E8C4A1B"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("scp 127.0.0.1:") && err.contains("failed"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// glance

const PASSWORD: &str = "s3cret-Passw0rd";
const TOKEN: &str = "gAAAAABfakeKeystoneTokenValue";
const IMAGE: &str = "5f2d3c44-7a1b-4e8c-9d2f-0a1b2c3d4e5f";

/// How the fake cloud behaves.
#[derive(Clone)]
struct Cloud {
    /// The status the image ends in after queued and saving.
    final_status: &'static str,
    disk_format: &'static str,
    data: Vec<u8>,
    /// Published md5 (the real one unless a test corrupts it).
    md5: String,
    /// Send only this many bytes of the data, then drop the connection.
    cut_after: Option<usize>,
}

impl Cloud {
    fn new(data: Vec<u8>, disk_format: &'static str) -> Self {
        Self {
            final_status: "active",
            disk_format,
            md5: hex::encode(Md5::digest(&data)),
            data,
            cut_after: None,
        }
    }
}

/// Keystone v3, Nova and Glance v2 on one port, as their API references document.
fn cloud_server(cloud: Cloud) -> Server {
    let polls = Arc::new(Mutex::new(0u32));
    let base = Arc::new(Mutex::new(String::new()));
    let base_for_handler = base.clone();
    let server = Server::start(Box::new(move |req| {
        let base = base_for_handler.lock().unwrap().clone();
        if req.method == "POST" && req.path == "/identity/v3/auth/tokens" {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            let user = &body["auth"]["identity"]["password"]["user"];
            if user["password"] != PASSWORD || user["name"] != "demo" {
                return Reply::json(
                    401,
                    serde_json::json!({"error": {"code": 401, "title": "Unauthorized",
                        "message": "The request you have made requires authentication."}}),
                );
            }
            let mut reply = Reply::json(
                201,
                serde_json::json!({"token": {
                "methods": ["password"],
                "project": {"name": "demo", "domain": {"name": "Default"}},
                "catalog": [
                    {"type": "compute", "name": "nova", "endpoints": [
                        {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                         "url": format!("{base}/compute/v2.1")}]},
                    {"type": "image", "name": "glance", "endpoints": [
                        {"interface": "internal", "region": "RegionOne", "region_id": "RegionOne",
                         "url": "http://10.0.0.1:9292"},
                        {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                         "url": format!("{base}/image")}]}
                ]}}),
            );
            reply.headers.push(("X-Subject-Token".into(), TOKEN.into()));
            return reply;
        }
        if req.header("X-Auth-Token") != Some(TOKEN) {
            return Reply::json(401, serde_json::json!({"error": {"message": "bad token"}}));
        }
        let image_path = format!("/image/v2/images/{IMAGE}");
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/compute/v2.1/servers/srv-1/action") => {
                Reply::json(202, serde_json::json!({"image_id": IMAGE}))
            }
            ("GET", p) if p == image_path => {
                let mut n = polls.lock().unwrap();
                *n += 1;
                let status = match *n {
                    1 => "queued",
                    2 => "saving",
                    _ => cloud.final_status,
                };
                Reply::json(
                    200,
                    serde_json::json!({
                        "id": IMAGE, "name": "rehost-srv-1", "status": status,
                        "disk_format": cloud.disk_format, "container_format": "bare",
                        "size": cloud.data.len(),
                        "checksum": if status == "active" { Some(&cloud.md5) } else { None },
                        "os_hash_algo": "sha512",
                        "os_hash_value": hex::encode(Sha512::digest(&cloud.data)),
                    }),
                )
            }
            ("GET", p) if p == format!("{image_path}/file") => Reply {
                status: 200,
                headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                body: cloud.data.clone(),
                cut_after: cloud.cut_after,
            },
            _ => Reply::json(
                404,
                serde_json::json!({"itemNotFound": {"message": "no such thing"}}),
            ),
        }
    }));
    *base.lock().unwrap() = server.url();
    server
}

fn glance_options(server: &Server, password: &str) -> FetchOptions {
    let auth_url = format!("{}/identity/v3", server.url());
    let mut config = table(&[
        ("server", "srv-1"),
        ("auth_url", &auth_url),
        ("username", "demo"),
        ("project_name", "demo"),
        ("poll_secs", "0"),
    ]);
    config.insert(
        "secrets".into(),
        toml::Value::Table(toml::Table::from_iter([(
            "OS_PASSWORD".to_string(),
            toml::Value::String(password.into()),
        )])),
    );
    FetchOptions {
        config,
        grant_hosts: vec!["127.0.0.1".into()],
        ..FetchOptions::default()
    }
}

fn raw_data() -> Vec<u8> {
    let mut data = vec![0u8; 3 << 20];
    data[..5000].fill(0xab);
    data[(2 << 20)..(2 << 20) + 10].copy_from_slice(b"glancedata");
    data
}

#[test]
fn glance_snapshots_and_downloads_a_verified_raw_image() {
    let dir = tempfile::tempdir().unwrap();
    let data = raw_data();
    let server = cloud_server(Cloud::new(data.clone(), "raw"));
    let outcome = fetch(dir.path(), "glance", &glance_options(&server, PASSWORD)).unwrap();
    assert_eq!(std::fs::read(&outcome.work).unwrap(), data);
    assert_eq!(outcome.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(metadata(&outcome, "glance.image-id"), IMAGE);
    assert_eq!(metadata(&outcome, "nova.server-id"), "srv-1");

    let seen = server.seen();
    let auth = &seen[0];
    assert_eq!(auth.path, "/identity/v3/auth/tokens");
    let body: serde_json::Value = serde_json::from_slice(&auth.body).unwrap();
    assert_eq!(
        body["auth"]["scope"]["project"]["domain"]["name"],
        "Default"
    );
    let create: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(create["createImage"]["name"], "rehost-srv-1");
    // Polled until active, then the data.
    assert!(seen.last().unwrap().path.ends_with("/file"));
}

#[test]
fn glance_converts_qcow2_to_raw() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, raw_data()).unwrap();
    let qcow2 = dir.path().join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2));
    let server = cloud_server(Cloud::new(std::fs::read(&qcow2).unwrap(), "qcow2"));
    let outcome = fetch(dir.path(), "glance", &glance_options(&server, PASSWORD)).unwrap();
    assert_eq!(sha256_file(&outcome.work), sha256_file(&raw));
    // qemu-img, as an independent checker, sees the same disk.
    run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "raw"])
        .arg(&outcome.work)
        .arg(&raw));
}

#[test]
fn glance_wrong_password_is_a_clear_401_that_does_not_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = cloud_server(Cloud::new(raw_data(), "raw"));
    let wrong = "not-the-Passw0rd";
    let err = fetch(dir.path(), "glance", &glance_options(&server, wrong))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused the credentials of user demo") && err.contains("HTTP 401"),
        "{err}"
    );
    assert!(!err.contains(wrong), "the password leaked: {err}");
}

#[test]
fn glance_image_that_goes_to_killed_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Cloud::new(raw_data(), "raw");
    cloud.final_status = "killed";
    let server = cloud_server(cloud);
    let err = fetch(dir.path(), "glance", &glance_options(&server, PASSWORD))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("Glance image {IMAGE} is killed")),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "the token leaked: {err}");
}

#[test]
fn glance_checksum_mismatch_discards_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Cloud::new(raw_data(), "raw");
    cloud.md5 = "0123456789abcdef0123456789abcdef".into();
    let server = cloud_server(cloud);
    let err = fetch(dir.path(), "glance", &glance_options(&server, PASSWORD))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("md5 mismatch: expected 0123456789abcdef0123456789abcdef"),
        "{err}"
    );
}

#[test]
fn glance_dropped_connection_leaves_no_work_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Cloud::new(raw_data(), "raw");
    cloud.cut_after = Some(1 << 20);
    let server = cloud_server(cloud);
    let err = fetch(dir.path(), "glance", &glance_options(&server, PASSWORD))
        .unwrap_err()
        .to_string();
    assert!(err.contains("retry the fetch"), "{err}");
    assert!(err.contains("1048576"), "{err}");
}

#[test]
fn secrets_in_options_stay_with_the_host() {
    // Only the host sees the secrets table: the plugin's config has no such key
    // (local-file denies unknown keys, so it would fail if it got one).
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("instance.img");
    sparse_image(&src, 1 << 20);
    let src_str = src.to_str().unwrap();
    let mut config = table(&[("path", src_str)]);
    config.insert(
        "secrets".into(),
        toml::Value::Table(
            BTreeMap::from([("X".to_string(), toml::Value::from("y"))])
                .into_iter()
                .collect(),
        ),
    );
    let options = FetchOptions {
        config,
        grant_devices: vec![src_str.into()],
        ..FetchOptions::default()
    };
    fetch(dir.path(), "local-file", &options).unwrap();
}
