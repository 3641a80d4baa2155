//! Load benchmark: the real `policyctl serve` binary (a child process, as deployed) driven over TLS on loopback with
//! a realistic review (a Pod CREATE with three containers and an init container, alternately compliant and
//! privileged, so both the allow and the deny path run), at several concurrencies. Each row is measured twice in the
//! same run: against a server with no policies (TLS, HTTP, decode, encode, no evaluation: the floor) and against the
//! policy directory under test. Reports requests per second, p50/p99 latency, the server's CPU time per request
//! (from /proc/<pid>/stat, Linux), the load client's own CPU time per request (client and server share the machine's
//! cores: a busy client slows the server down), the throughput ratio, and where the policy server evaluated its
//! reviews (on the async worker that received them, see `--inline-budget`, or on an evaluation thread).
//!
//! `cargo bench --bench load [-- [--policies DIR] [--requests N] [--binary PATH] [CONCURRENCY...]]` (defaults: the
//! bundled `policies/`, 2,000 requests per row, concurrencies 1 4 16, the policyctl built with the bench; `--binary`
//! measures another build, e.g. a copy of main's, with the same client). No assertion: numbers go in notes, not
//! tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{request, Binary};

/// The review: a Pod with three containers and an init container; `privileged` sets the first container
/// privileged (a violation of the Pod Security policies).
fn review(uid: &str, privileged: bool) -> Vec<u8> {
    let container = |name: &str, image: &str| {
        json!({
            "name": name,
            "image": image,
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
        })
    };
    let mut app = container("app", "registry.example.com/shop/web:1.4.2");
    if privileged {
        app["securityContext"]["privileged"] = json!(true);
    }
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "web", "team": "shop", "owner": "shop"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [container("init", "registry.example.com/shop/init:1.0.0")],
            "containers": [
                app,
                container("proxy", "registry.example.com/shop/proxy:2.0.1"),
                container("metrics", "registry.example.com/shop/metrics:0.9.0")
            ]
        }
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "name": "web",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:shop:deployer", "groups": ["system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false
        }
    }))
    .unwrap_or_default()
}

/// Where the policy server evaluated its reviews, from its `/metrics` (`policyctl_inline_attempts_total`): on the
/// async worker that received them (`--inline-budget`) or on an evaluation thread.
async fn inline_attempts(admin: std::net::SocketAddr) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else {
        return "(no /metrics)".to_string();
    };
    let metrics = request(&mut stream, "GET", "/metrics", b"").await.body;
    let metrics = String::from_utf8_lossy(&metrics);
    let count = |result: &str| {
        let prefix = format!("policyctl_inline_attempts_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or("0")
            .to_string()
    };
    format!(
        "on the async worker: {}, handed off: {}, not tried: {}",
        count("answered"),
        count("handed_off"),
        count("not_tried")
    )
}

/// User + system CPU time of a process so far (from /proc/<pid>/stat; zero where there is no procfs).
fn cpu_time(pid: u32) -> Duration {
    proc_cpu_time(&format!("/proc/{pid}/stat"))
}

/// User + system CPU time of this process (the load client) so far.
fn own_cpu_time() -> Duration {
    proc_cpu_time("/proc/self/stat")
}

fn proc_cpu_time(path: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start at the state, field 3; utime and stime are
    // fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Duration,
    client_cpu: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn cpu_per_request_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }

    fn client_cpu_per_request_us(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// `requests` reviews over `connections` keep-alive TLS connections (each sends its share one after the other).
async fn load(server: &Binary, connections: usize, requests: usize) -> Run {
    let per_connection = requests.div_ceil(connections);
    let mut streams = Vec::new();
    for i in 0..connections {
        let mut stream = server.connect().await;
        // Warm up: a few requests per connection before timing.
        for w in 0..4 {
            let _ = request(
                &mut stream,
                "POST",
                "/validate",
                &review(&format!("warm-{i}-{w}"), w % 2 == 1),
            )
            .await;
        }
        streams.push(stream);
    }
    // The bodies are built before timing: the client's CPU competes with the server's.
    let bodies: Vec<Vec<Vec<u8>>> = (0..connections)
        .map(|c| {
            (0..per_connection)
                .map(|i| review(&format!("{c}-{i}"), i % 2 == 1))
                .collect()
        })
        .collect();
    let cpu_before = cpu_time(server.child.id());
    let client_before = own_cpu_time();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut stream, bodies) in streams.into_iter().zip(bodies) {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len());
            for body in &bodies {
                let sent = Instant::now();
                let response = request(&mut stream, "POST", "/validate", body).await;
                latencies.push(sent.elapsed());
                assert_eq!(response.status, 200, "{}", response.text());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    Run {
        requests: latencies.len(),
        elapsed,
        latencies,
        cpu: cpu_time(server.child.id()).saturating_sub(cpu_before),
        client_cpu: own_cpu_time().saturating_sub(client_before),
    }
}

struct Options {
    policies: PathBuf,
    requests: usize,
    concurrencies: Vec<usize>,
    binary: String,
}

fn options() -> Options {
    let mut out = Options {
        policies: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies"),
        requests: 2_000,
        concurrencies: Vec::new(),
        binary: env!("CARGO_BIN_EXE_policyctl").to_string(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--policies" => {
                if let Some(dir) = args.next() {
                    out.policies = PathBuf::from(dir);
                }
            }
            "--binary" => {
                if let Some(path) = args.next() {
                    out.binary = path;
                }
            }
            "--requests" => {
                if let Some(n) = args.next().and_then(|n| n.parse().ok()) {
                    out.requests = n;
                }
            }
            // `cargo bench` passes `--bench` to every bench binary.
            other => {
                if let Ok(n) = other.parse::<usize>() {
                    out.concurrencies.push(n.max(1));
                }
            }
        }
    }
    if out.concurrencies.is_empty() {
        out.concurrencies = vec![1, 4, 16];
    }
    out
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let empty = tempfile::tempdir().expect("tempdir");
        let empty_dir = empty.path().to_string_lossy().into_owned();
        let policy_dir = options.policies.to_string_lossy().into_owned();
        // The default log level: the harness waits for the "serving" line, and requests are not logged at info.
        let log: [&str; 0] = [];
        println!(
            "load: {} over TLS on loopback, {} requests per row; policies: {policy_dir}",
            options.binary, options.requests
        );
        println!(
            "{:>5}  {:<10} {:>9} {:>10} {:>10} {:>12} {:>12}",
            "conns", "server", "req/s", "p50 us", "p99 us", "CPU us/req", "client us/req"
        );
        for &connections in &options.concurrencies {
            let floor_server =
                Binary::start_program(&options.binary, "text", &log, &["--policies", &empty_dir])
                    .await;
            let floor = load(&floor_server, connections, options.requests).await;
            floor_server.stop().await;
            let server =
                Binary::start_program(&options.binary, "text", &log, &["--policies", &policy_dir])
                    .await;
            let measured = load(&server, connections, options.requests).await;
            let inline = inline_attempts(server.admin).await;
            server.stop().await;
            for (label, run) in [("no policy", &floor), ("policies", &measured)] {
                println!(
                    "{connections:>5}  {label:<10} {:>9.0} {:>10.1} {:>10.1} {:>12.1} {:>12.1}",
                    run.rate(),
                    run.percentile(0.50).as_secs_f64() * 1e6,
                    run.percentile(0.99).as_secs_f64() * 1e6,
                    run.cpu_per_request_us(),
                    run.client_cpu_per_request_us()
                );
            }
            println!(
                "{connections:>5}  throughput kept: {:.0}%   CPU per request: {:.1}x the floor   reviews {inline}",
                measured.rate() / floor.rate() * 100.0,
                measured.cpu_per_request_us() / floor.cpu_per_request_us().max(1e-9)
            );
        }
    });
}
