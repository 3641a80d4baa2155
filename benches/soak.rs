//! Soak run: the real `policyctl serve` binary with the bundled policies under steady TLS load for a bounded time,
//! with policy reloads (files written into its policy directory, some of them broken for a while), certificate
//! rotation (its certificate files replaced by ones from a new CA), malformed requests and large reviews mixed in.
//!
//! `cargo bench --bench soak -- [--seconds 600] [--rate 100] [--connections 8] [--reload-every 30]
//! [--rotate-every 60]` (release build; `cargo test --release --bench soak -- ...` is the same). Reports, per
//! minute, the well-formed requests, their errors (anything but a correct answer), p50/p99/max latency and the
//! server's resident set; then the totals. Exits non-zero when a well-formed request failed, a malformed one got an
//! unexpected answer, a reload or a rotation was never picked up. Not a CI test: the figures go in
//! docs/operations.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policyctl::certs;
use rustls::ClientConfig;
use serde_json::{json, Value};
use support::{admin_get, client_config, connect, request, request_with_headers, Binary};
use tokio::io::AsyncWriteExt;

struct Options {
    seconds: u64,
    rate: u64,
    connections: usize,
    reload_every: u64,
    rotate_every: u64,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            seconds: 600,
            rate: 100,
            connections: 8,
            reload_every: 30,
            rotate_every: 60,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || -> u64 {
                args.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{} needs a number", args[i]))
            };
            match args[i].as_str() {
                "--seconds" => options.seconds = value(),
                "--rate" => options.rate = value().max(1),
                "--connections" => options.connections = value().max(1) as usize,
                "--reload-every" => options.reload_every = value().max(1),
                "--rotate-every" => options.rotate_every = value().max(1),
                // `cargo bench` passes --bench; anything else unknown is ignored too.
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        options
    }
}

/// What happened in one minute of the run.
#[derive(Default)]
struct Minute {
    latencies: Vec<Duration>,
    errors: u64,
    malformed: u64,
    malformed_unexpected: u64,
    large: u64,
    rss_kib: Vec<u64>,
}

struct Shared {
    start: Instant,
    end: Instant,
    minutes: Mutex<Vec<Minute>>,
    /// Every CA so far: clients trust all of them, so a connection made while the server still has the old
    /// certificate (before it picks up the new files) is not an error.
    client: Mutex<Arc<ClientConfig>>,
    cas: Mutex<Vec<String>>,
    first_errors: Mutex<Vec<String>>,
    reloads: AtomicU64,
    reload_misses: AtomicU64,
    reload_slowest_ms: AtomicU64,
    rotations: AtomicU64,
    rotation_misses: AtomicU64,
    rotation_slowest_ms: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn with_minute(&self, at: Instant, f: impl FnOnce(&mut Minute)) {
        let index = (at.saturating_duration_since(self.start).as_secs() / 60) as usize;
        let mut minutes = self.minutes.lock().expect("minutes");
        if minutes.len() <= index {
            minutes.resize_with(index + 1, Minute::default);
        }
        f(&mut minutes[index]);
    }

    fn error(&self, at: Instant, what: String) {
        self.with_minute(at, |m| m.errors += 1);
        let mut first = self.first_errors.lock().expect("errors");
        if first.len() < 20 {
            first.push(what);
        }
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst) && Instant::now() < self.end
    }

    fn client(&self) -> Arc<ClientConfig> {
        self.client.lock().expect("client").clone()
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn pod(uid: &str, privileged: bool, annotations: Value) -> Vec<u8> {
    let mut container = json!({"name": "app", "image": "nginx:1.27"});
    if privileged {
        container["securityContext"] = json!({"privileged": true});
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "soak",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "soak", "namespace": "default", "labels": {"team": "a"},
                             "annotations": annotations},
                "spec": {"containers": [container]}
            },
            "oldObject": null,
            "dryRun": false
        }
    }))
    .expect("json")
}

/// Check an answer to a well-formed review: 200, the same uid, the expected decision.
fn check(response: &support::HttpResponse, uid: &str, allowed: bool) -> Result<(), String> {
    if response.status != 200 {
        return Err(format!(
            "{uid}: status {}: {}",
            response.status,
            response.text()
        ));
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|e| format!("{uid}: {e}"))?;
    if body["response"]["uid"] != uid {
        return Err(format!("{uid}: answered uid {}", body["response"]["uid"]));
    }
    if body["response"]["allowed"] != allowed {
        return Err(format!(
            "{uid}: allowed {} (expected {allowed}): {}",
            body["response"]["allowed"], body["response"]["status"]["message"]
        ));
    }
    Ok(())
}

/// One load connection: paced requests on a keep-alive connection, reconnecting every 200 requests (new TLS
/// handshakes, against whatever certificate the server has by then).
async fn load(shared: Arc<Shared>, addr: std::net::SocketAddr, index: usize, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    while shared.running() {
        let mut stream = match connect(addr, &shared.client()).await {
            Ok(stream) => stream,
            Err(err) => {
                shared.error(Instant::now(), format!("connect: {err}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for _ in 0..200 {
            ticks.tick().await;
            if !shared.running() {
                break;
            }
            sent += 1;
            let uid = format!("c{index}-{sent}");
            let privileged = sent.is_multiple_of(10);
            let body = pod(&uid, privileged, json!({}));
            let at = Instant::now();
            let response = tokio::time::timeout(
                Duration::from_secs(30),
                request(&mut stream, "POST", "/validate", &body),
            )
            .await;
            let took = at.elapsed();
            match response {
                Ok(response) => match check(&response, &uid, !privileged) {
                    Ok(()) => shared.with_minute(at, |m| m.latencies.push(took)),
                    Err(err) => shared.error(at, err),
                },
                Err(_) => {
                    shared.error(at, format!("{uid}: no answer within 30 s"));
                    break;
                }
            }
        }
    }
}

/// Malformed requests (each must get its own 4xx) and, every tenth, a large well-formed review (~1.5 MiB).
async fn hostile(shared: Arc<Shared>, addr: std::net::SocketAddr) {
    let valid = pod("m", false, json!({}));
    let as_string = String::from_utf8(valid.clone()).expect("utf-8").replacen(
        "\"object\":{",
        "\"object\":\"x\",\"was\":{",
        1,
    );
    let no_uid = String::from_utf8(valid.clone())
        .expect("utf-8")
        .replacen("\"uid\":\"m\",", "", 1);
    let mut annotations = serde_json::Map::new();
    for i in 0..24_000 {
        annotations.insert(format!("soak.example.com/k{i:06}"), json!("v".repeat(40)));
    }
    let large = pod("large", false, Value::Object(annotations));
    let mut n = 0u64;
    while shared.running() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        n += 1;
        let mut stream = match connect(addr, &shared.client()).await {
            Ok(stream) => stream,
            Err(err) => {
                shared.error(Instant::now(), format!("connect (hostile): {err}"));
                continue;
            }
        };
        let at = Instant::now();
        if n.is_multiple_of(10) {
            let response = request(&mut stream, "POST", "/validate", &large).await;
            match check(&response, "large", true) {
                Ok(()) => shared.with_minute(at, |m| m.large += 1),
                Err(err) => shared.error(at, err),
            }
            continue;
        }
        let (status, response) = match n % 6 {
            0 => (
                400,
                request(&mut stream, "POST", "/validate", b"{not json").await,
            ),
            1 => (
                415,
                request_with_headers(
                    &mut stream,
                    "POST",
                    "/validate",
                    &[
                        "Content-Type: text/plain",
                        &format!("Content-Length: {}", valid.len()),
                    ],
                    &valid,
                )
                .await,
            ),
            2 => (
                400,
                request(&mut stream, "POST", "/validate", as_string.as_bytes()).await,
            ),
            3 => (
                400,
                request(&mut stream, "POST", "/validate", no_uid.as_bytes()).await,
            ),
            4 => (
                413,
                request_with_headers(
                    &mut stream,
                    "POST",
                    "/validate",
                    &[
                        "Content-Type: application/json",
                        "Content-Length: 99999999999",
                    ],
                    b"{",
                )
                .await,
            ),
            _ => (404, request(&mut stream, "POST", "/nowhere", &valid).await),
        };
        let _ = stream.shutdown().await;
        shared.with_minute(at, |m| {
            m.malformed += 1;
            if response.status != status {
                m.malformed_unexpected += 1;
            }
        });
        if response.status != status {
            let mut first = shared.first_errors.lock().expect("errors");
            if first.len() < 20 {
                first.push(format!(
                    "malformed case {}: status {} (expected {status})",
                    n % 6,
                    response.status
                ));
            }
        }
    }
}

async fn generation(admin: std::net::SocketAddr) -> Option<u64> {
    let (status, body) = admin_get(admin, "/status").await;
    if status != 200 {
        return None;
    }
    serde_json::from_str::<Value>(&body).ok()?["active"]["generation"].as_u64()
}

fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Policy reloads: a new version of a Rego policy every `every`; every third one first broken for a few seconds
/// (the load is rejected and the previous set keeps answering), then fixed. Each good version must become active.
async fn reloads(shared: Arc<Shared>, admin: std::net::SocketAddr, dir: PathBuf, every: Duration) {
    let file = dir.join("soak.rego");
    let mut version = 0u64;
    while shared.running() {
        tokio::time::sleep(every).await;
        if !shared.running() {
            break;
        }
        version += 1;
        let before = generation(admin).await.unwrap_or(0);
        if version.is_multiple_of(3) {
            write_atomically(&file, "package soak\n\ndeny contains msg if {\n  msg := \n");
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let policy = format!(
            "package soak.v{version}\n\ndeny contains msg if {{\n    input.request.object.metadata.labels[\"soak-marker\"] == \"v{version}\"\n    msg := \"soak version {version}\"\n}}\n"
        );
        let written = Instant::now();
        write_atomically(&file, &policy);
        let mut applied = false;
        while written.elapsed() < Duration::from_secs(30) {
            if generation(admin).await.is_some_and(|g| g > before) {
                applied = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if applied {
            shared.reloads.fetch_add(1, Ordering::SeqCst);
            shared
                .reload_slowest_ms
                .fetch_max(written.elapsed().as_millis() as u64, Ordering::SeqCst);
        } else {
            shared.reload_misses.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Certificate rotation: new files from a new CA every `every`; a client trusting only the new CA must get through
/// (the server picked the files up).
async fn rotations(
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    tls_dir: PathBuf,
    every: Duration,
) {
    while shared.running() {
        tokio::time::sleep(every).await;
        if !shared.running() {
            break;
        }
        let generated = certs::generate(
            &["localhost".to_string()],
            &["127.0.0.1".parse().expect("ip")],
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
        .expect("certificates");
        {
            let mut cas = shared.cas.lock().expect("cas");
            cas.push(generated.ca_pem.clone());
            let all: Vec<&str> = cas.iter().map(String::as_str).collect();
            *shared.client.lock().expect("client") = client_config(&all, &[b"http/1.1"]);
        }
        // Key first, then the certificate: the server checks that they match and keeps the old pair until they do.
        write_atomically(&tls_dir.join("tls.key"), &generated.key_pem);
        write_atomically(&tls_dir.join("tls.crt"), &generated.cert_pem);
        let only_new = client_config(&[&generated.ca_pem], &[b"http/1.1"]);
        let written = Instant::now();
        let mut picked_up = false;
        while written.elapsed() < Duration::from_secs(30) {
            if connect(addr, &only_new).await.is_ok() {
                picked_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if picked_up {
            shared.rotations.fetch_add(1, Ordering::SeqCst);
            shared
                .rotation_slowest_ms
                .fetch_max(written.elapsed().as_millis() as u64, Ordering::SeqCst);
        } else {
            shared.rotation_misses.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let target = to.join(entry.path().strip_prefix(from).expect("prefix"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = Options::parse();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let work = tempfile::tempdir().expect("tempdir");
    let policies = work.path().join("policies");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        &policies,
    );
    // The "serving" line (the addresses) at info; the per-request lines off, the rest at warn.
    let filter = "warn,policyctl_server::server=info,policyctl_server::server::webhook=warn";
    let server = Binary::start(
        "json",
        &["--log-level", filter],
        &[
            "--policies",
            policies.to_str().expect("utf-8 path"),
            "--tls-reload-interval",
            "1s",
            // Room for the large reviews on a debug build of a busy machine; the defaults are 1 s and 10 s.
            "--eval-timeout",
            "5s",
            "--request-timeout",
            "10s",
        ],
    )
    .await;
    let pid = server.child.id();
    let tls_dir = server.dir.path().join("tls");
    eprintln!(
        "soak ({profile} build): {} s, {} req/s over {} connections, reload every {} s, rotation every {} s, pid {pid}",
        options.seconds, options.rate, options.connections, options.reload_every, options.rotate_every
    );
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        end: start + Duration::from_secs(options.seconds),
        minutes: Mutex::new(Vec::new()),
        client: Mutex::new(client_config(&[&server.ca_pem], &[b"http/1.1"])),
        cas: Mutex::new(vec![server.ca_pem.clone()]),
        first_errors: Mutex::new(Vec::new()),
        reloads: AtomicU64::new(0),
        reload_misses: AtomicU64::new(0),
        reload_slowest_ms: AtomicU64::new(0),
        rotations: AtomicU64::new(0),
        rotation_misses: AtomicU64::new(0),
        rotation_slowest_ms: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let rss_start = rss_kib(pid);
    let interval = Duration::from_secs_f64(options.connections as f64 / options.rate as f64);
    let mut tasks = Vec::new();
    for index in 0..options.connections {
        tasks.push(tokio::spawn(load(
            shared.clone(),
            server.addr,
            index,
            interval,
        )));
    }
    tasks.push(tokio::spawn(hostile(shared.clone(), server.addr)));
    tasks.push(tokio::spawn(reloads(
        shared.clone(),
        server.admin,
        policies.clone(),
        Duration::from_secs(options.reload_every),
    )));
    tasks.push(tokio::spawn(rotations(
        shared.clone(),
        server.addr,
        tls_dir,
        Duration::from_secs(options.rotate_every),
    )));
    let sampler = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while shared.running() {
                let rss = rss_kib(pid);
                shared.with_minute(Instant::now(), |m| m.rss_kib.push(rss));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };
    for task in tasks {
        task.await.expect("task");
    }
    shared.stop.store(true, Ordering::SeqCst);
    sampler.await.expect("sampler");
    // After the load: the resident set once large requests are over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_end = rss_kib(pid);
    let lines = server.stop().await;

    println!("\nsoak ({profile} build), {} s:", options.seconds);
    println!(
        "{:>6} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6} {:>10}",
        "minute",
        "requests",
        "errors",
        "p50 ms",
        "p99 ms",
        "max ms",
        "malformed",
        "large",
        "RSS MiB"
    );
    let minutes = shared.minutes.lock().expect("minutes");
    let (mut requests, mut errors, mut malformed, mut unexpected, mut large) = (0, 0, 0, 0, 0);
    let mut rss_peak = 0;
    let mut all = Vec::new();
    for (i, minute) in minutes.iter().enumerate() {
        let mut sorted = minute.latencies.clone();
        sorted.sort();
        let rss = minute
            .rss_kib
            .iter()
            .map(|kib| kib / 1024)
            .fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
        rss_peak = rss_peak.max(rss.1);
        println!(
            "{:>6} {:>9} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9} {:>6} {:>10}",
            i + 1,
            sorted.len(),
            minute.errors,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            minute.malformed,
            minute.large,
            if minute.rss_kib.is_empty() {
                "-".to_string()
            } else {
                format!("{}-{}", rss.0, rss.1)
            }
        );
        requests += sorted.len();
        errors += minute.errors;
        malformed += minute.malformed;
        unexpected += minute.malformed_unexpected;
        large += minute.large;
        all.extend(sorted);
    }
    all.sort();
    let reload_misses = shared.reload_misses.load(Ordering::SeqCst);
    let rotation_misses = shared.rotation_misses.load(Ordering::SeqCst);
    println!(
        "total: {requests} well-formed answered correctly ({large} of them ~1.5 MiB), {errors} errors; p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!("malformed: {malformed} sent, {unexpected} unexpected answers");
    println!(
        "reloads: {} applied (slowest {} ms), {reload_misses} never applied; rotations: {} picked up (slowest {} ms), \
         {rotation_misses} missed",
        shared.reloads.load(Ordering::SeqCst),
        shared.reload_slowest_ms.load(Ordering::SeqCst),
        shared.rotations.load(Ordering::SeqCst),
        shared.rotation_slowest_ms.load(Ordering::SeqCst),
    );
    println!(
        "RSS: {} MiB at the start, peak sample {rss_peak} MiB, {} MiB after the run; {} log lines",
        rss_start / 1024,
        rss_end / 1024,
        lines.len()
    );
    for error in shared.first_errors.lock().expect("errors").iter() {
        println!("  error: {error}");
    }
    if errors > 0 || unexpected > 0 || reload_misses > 0 || rotation_misses > 0 {
        std::process::exit(1);
    }
}
