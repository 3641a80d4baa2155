//! Load benchmark: the webhook over TLS on loopback, with the bundled policies, against a baseline measured in the
//! same run — the same server with an empty policy set (TLS, HTTP, decode, encode, no evaluation).
//!
//! `cargo bench --bench load` (or `-- CONNECTIONS REQUESTS_PER_CONNECTION`). Prints requests per second, latency
//! percentiles, and the ratio of the two throughputs. No assertion: numbers go in notes, not tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{pod_review, request, TestServer};

struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
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

    fn line(&self, label: &str) -> String {
        format!(
            "{label:<28} {:>9.0} req/s   p50 {:>7.1} µs   p99 {:>7.1} µs   ({} requests)",
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e6,
            self.percentile(0.99).as_secs_f64() * 1e6,
            self.requests
        )
    }
}

async fn load(server: &TestServer, connections: usize, per_connection: usize) -> Run {
    // Warm up: one request per connection before timing.
    let mut streams = Vec::new();
    for i in 0..connections {
        let mut stream = server.connect().await;
        let body = pod_review(
            "admission.k8s.io/v1",
            &format!("warm-{i}"),
            "p",
            json!({"team": "a"}),
            "nginx:1.27",
        );
        let _ = request(&mut stream, "POST", "/validate", &body).await;
        streams.push(stream);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut stream) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_connection);
            for i in 0..per_connection {
                // Alternate a compliant Pod and a privileged one so both the allow and the deny path are exercised.
                let mut review: serde_json::Value = serde_json::from_slice(&pod_review(
                    "admission.k8s.io/v1",
                    &format!("{c}-{i}"),
                    "p",
                    json!({"team": "a"}),
                    "nginx:1.27",
                ))
                .unwrap_or_default();
                if i % 2 == 1 {
                    review["request"]["object"]["spec"]["containers"][0]["securityContext"] =
                        json!({"privileged": true});
                }
                let body = serde_json::to_vec(&review).unwrap_or_default();
                let sent = Instant::now();
                let response = request(&mut stream, "POST", "/validate", &body).await;
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
    Run {
        requests: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let connections = args.first().copied().unwrap_or(8);
    let per_connection = args.get(1).copied().unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let empty = tempfile::tempdir().expect("tempdir");
        let baseline_server = TestServer::start_with(empty.path(), |c| c.max_concurrency = 2).await;
        baseline_server.wait_ready(200).await;
        let baseline = load(&baseline_server, connections, per_connection).await;
        baseline_server.stop().await;

        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let server = TestServer::start_with(&policies, |c| c.max_concurrency = 2).await;
        server.wait_ready(200).await;
        let measured = load(&server, connections, per_connection).await;
        server.stop().await;

        println!(
            "load: {connections} keep-alive TLS connections x {per_connection} requests, loopback"
        );
        println!("{}", baseline.line("baseline (no policies)"));
        println!("{}", measured.line("bundled policies/"));
        println!(
            "ratio (policies / baseline throughput): {:.2}",
            measured.rate() / baseline.rate()
        );
    });
}
