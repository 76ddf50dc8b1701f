//! Plugin load + call with a warm precompile cache: what every fixer call costs.
//! Target (README): under 5 ms per fixer call on a 2-core machine.
//!
//! "cold process" = a new Runtime (as in a fresh `rehost` run) loading the
//! precompiled component from the cache, then one call; "warm runtime" = a call
//! on an already-loaded plugin (fresh store and instance each time, as always).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rehost::guest::root::GuestRoot;
use rehost::plugin::fixer_host::{
    call_fixer, FixContext, NewRoot, NoCommands, OsInfo, TargetHardware,
};
use rehost::plugin::{stock, CommandRunner, FixerCall, Grants, Limits, Runtime};

fn guest_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/inittab"),
        "id:3:initdefault:\nxvc0:2345:respawn:/sbin/mingetty xvc0\n",
    )
    .unwrap();
    dir
}

fn context() -> FixContext {
    FixContext {
        os: OsInfo {
            id: "centos".into(),
            version_id: "5".into(),
            pretty_name: String::new(),
            id_like: vec![],
            arch: "x86_64".into(),
        },
        target: TargetHardware::Kvm,
        kernels: vec![],
        root: NewRoot {
            uuid: String::new(),
            label: None,
            fs_type: "ext3".into(),
            device: "/dev/vda1".into(),
        },
        config: String::new(),
        dry_run: false,
    }
}

fn call(rt: &Runtime, root: &Arc<GuestRoot>, commands: &Arc<dyn CommandRunner>) {
    let bytes = stock::find("xen-console").unwrap();
    let plugin = rt.load(bytes, "xen-console").unwrap();
    let grants = Grants::effective(&plugin.manifest.capabilities, None, None).unwrap();
    let call = FixerCall {
        root: root.clone(),
        context: context(),
        grants,
        commands,
        command_timeout: Duration::from_secs(5),
    };
    call_fixer(rt, &plugin, call).unwrap();
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let tree = guest_tree();
    let root = Arc::new(GuestRoot::open(tree.path()).unwrap());
    let commands: Arc<dyn CommandRunner> = Arc::new(NoCommands);
    // Warm the on-disk cache once, as `plugin install` or the first run does.
    call(
        &Runtime::new(cache.path().into(), Limits::default()).unwrap(),
        &root,
        &commands,
    );

    c.bench_function("fixer call, cold process, warm cache", |b| {
        b.iter(|| {
            let rt = Runtime::new(cache.path().into(), Limits::default()).unwrap();
            call(&rt, &root, &commands);
        })
    });
    let rt = Runtime::new(cache.path().into(), Limits::default()).unwrap();
    c.bench_function("fixer call, warm runtime", |b| {
        b.iter(|| call(&rt, &root, &commands))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(8));
    targets = bench
}
criterion_main!(benches);
