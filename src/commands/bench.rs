//! `policyctl bench`: what policies cost per review, measured on the webhook's own path (the same loader, decoder and
//! pipeline): setup time, latency percentiles and throughput of whole reviews, the decode-only floor, and a
//! per-policy breakdown. `--save` writes a JSON baseline; `--compare` fails on a regression of the median.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::inputs;
use crate::admission;
use crate::cli::{BenchArgs, BenchOutput, BenchWebhook};
use crate::pipeline::{self, Settings, Webhook};
use crate::policy::{Policy, PolicySet};

/// Latency statistics, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Fastest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            us(samples[index.min(samples.len() - 1)])
        };
        let total: Duration = samples.iter().sum();
        Latency {
            min_us: us(samples[0]),
            mean_us: us(total) / samples.len() as f64,
            p50_us: at(0.50),
            p95_us: at(0.95),
            p99_us: at(0.99),
            max_us: us(samples[samples.len() - 1]),
        }
    }
}

/// One policy's share of the cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyCost {
    /// Policy name.
    pub name: String,
    /// Engine.
    pub engine: String,
    /// Median time per review it ran on, in microseconds.
    pub p50_us: f64,
    /// Mean time per review it ran on, in microseconds.
    pub mean_us: f64,
    /// How many evaluations were measured.
    pub runs: usize,
}

/// A bench report (the JSON of `--output json` and `--save`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The policy directory.
    pub policies: String,
    /// Policies loaded.
    pub policy_count: usize,
    /// Reviews per round.
    pub reviews: usize,
    /// `validate` or `mutate`.
    pub webhook: String,
    /// Measured rounds.
    pub iterations: usize,
    /// Threads.
    pub concurrency: usize,
    /// Loading and compiling the policies, in milliseconds.
    pub setup_ms: f64,
    /// One review: decode + the webhook's pipeline.
    pub review: Latency,
    /// Decoding the AdmissionReview alone: the floor every review pays.
    pub decode_floor: Latency,
    /// Median review cost as a multiple of the median decode floor.
    pub ratio_to_floor: f64,
    /// Reviews per second across all threads.
    pub throughput_per_s: f64,
    /// Per policy, costliest first.
    pub per_policy: Vec<PolicyCost>,
    /// Resident memory once the policies are loaded and compiled (Linux: `VmRSS` of /proc/self/status), in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_after_setup_kib: Option<u64>,
    /// Peak resident memory of the whole run (Linux: `VmHWM`), in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let concurrency = args.concurrency.max(1);
    let iterations = args.iterations.max(1);
    let started = Instant::now();
    let (set, _) = inputs::policy_set(
        std::slice::from_ref(&args.policies),
        &args.engine.load_options(),
    )?;
    let setup = started.elapsed();
    let rss_after_setup_kib = memory_kib("VmRSS");
    let reviews = inputs::reviews(&args.files, args.operation.into())?;
    if reviews.is_empty() {
        anyhow::bail!("no resource to review in {}", args.files.join(", "));
    }
    // Each review as the bytes the API server would send: every measured round decodes them, as the webhook does.
    let bodies: Vec<Vec<u8>> = reviews
        .iter()
        .map(|(_, review)| serde_json::to_vec(review.document()))
        .collect::<Result<_, _>>()
        .context("encoding the reviews")?;
    let webhook = match args.webhook {
        BenchWebhook::Validate => Webhook::Validate,
        BenchWebhook::Mutate => Webhook::Mutate,
    };
    let settings = Settings::default();
    for _ in 0..args.warmup {
        for body in &bodies {
            review_once(&set, body, webhook, &settings)?;
        }
    }
    let floor = measure_floor(&bodies, iterations)?;
    let (samples, per_policy, wall) =
        measure(&set, &bodies, webhook, &settings, iterations, concurrency)?;
    let count = samples.len();
    let review = Latency::of(samples);
    let report = Report {
        policies: args.policies.display().to_string(),
        policy_count: set.policies().len(),
        reviews: bodies.len(),
        webhook: webhook.as_str().to_string(),
        iterations,
        concurrency,
        setup_ms: setup.as_secs_f64() * 1e3,
        ratio_to_floor: review.p50_us / floor.p50_us.max(1e-9),
        decode_floor: floor,
        review,
        throughput_per_s: count as f64 / wall.as_secs_f64().max(1e-9),
        per_policy,
        rss_after_setup_kib,
        peak_rss_kib: memory_kib("VmHWM"),
    };
    match args.output {
        BenchOutput::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        BenchOutput::Table => print_table(&report),
    }
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.compare {
        let baseline = read_report(path)?;
        let regressed = compare(&baseline, &report, args.threshold);
        return Ok(if regressed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// One review through decode and the pipeline; the decision's runs (for the per-policy breakdown).
fn review_once(
    set: &PolicySet,
    body: &[u8],
    webhook: Webhook,
    settings: &Settings,
) -> anyhow::Result<Vec<pipeline::PolicyRun>> {
    let review = admission::decode(body).context("decoding a review")?;
    Ok(pipeline::run(set, &review, webhook, settings).runs)
}

fn measure_floor(bodies: &[Vec<u8>], iterations: usize) -> anyhow::Result<Latency> {
    let mut samples = Vec::with_capacity(iterations * bodies.len());
    for _ in 0..iterations {
        for body in bodies {
            let start = Instant::now();
            let review =
                admission::decode(std::hint::black_box(body)).context("decoding a review")?;
            samples.push(start.elapsed());
            drop(std::hint::black_box(review));
        }
    }
    Ok(Latency::of(samples))
}

/// A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`), in KiB; `None` where there is no
/// procfs.
fn memory_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field)
}

/// The value of `field` (a line `Field:   1234 kB`) in the text of a /proc status file.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

type Measured = (Vec<Duration>, Vec<PolicyCost>, Duration);

/// One thread's samples: review latencies, and (policy, engine, durations of its runs) per policy.
type ThreadSamples = (Vec<Duration>, Vec<(String, String, Vec<Duration>)>);

fn measure(
    set: &PolicySet,
    bodies: &[Vec<u8>],
    webhook: Webhook,
    settings: &Settings,
    iterations: usize,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let per_thread = iterations.div_ceil(concurrency);
    let started = Instant::now();
    let results: Vec<anyhow::Result<ThreadSamples>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| {
                    let mut samples = Vec::new();
                    // A policy's runs by the address of the policy (the set holds it for the whole bench), so a
                    // run costs one push: no names copied per run, and memory grows by one duration per run.
                    let mut policies: HashMap<usize, (Arc<dyn Policy>, Vec<Duration>)> =
                        HashMap::new();
                    for _ in 0..per_thread {
                        for body in bodies {
                            let start = Instant::now();
                            let runs = review_once(set, body, webhook, settings)?;
                            samples.push(start.elapsed());
                            for run in runs {
                                let key = Arc::as_ptr(&run.policy).cast::<()>().addr();
                                policies
                                    .entry(key)
                                    .or_insert_with(|| (Arc::clone(&run.policy), Vec::new()))
                                    .1
                                    .push(run.duration);
                            }
                        }
                    }
                    let policies = policies
                        .into_values()
                        .map(|(policy, durations)| {
                            let info = policy.info();
                            (info.name.clone(), info.engine.to_string(), durations)
                        })
                        .collect();
                    Ok((samples, policies))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a bench thread panicked")))
            })
            .collect()
    });
    let wall = started.elapsed();
    let mut samples = Vec::new();
    let mut by_policy: BTreeMap<(String, String), Vec<Duration>> = BTreeMap::new();
    for result in results {
        let (s, p) = result?;
        samples.extend(s);
        for (name, engine, durations) in p {
            by_policy
                .entry((name, engine))
                .or_default()
                .extend(durations);
        }
    }
    let mut per_policy: Vec<PolicyCost> = by_policy
        .into_iter()
        .map(|((name, engine), times)| {
            let runs = times.len();
            let latency = Latency::of(times);
            PolicyCost {
                name,
                engine,
                p50_us: latency.p50_us,
                mean_us: latency.mean_us,
                runs,
            }
        })
        .collect();
    per_policy.sort_by(|a, b| b.p50_us.total_cmp(&a.p50_us));
    Ok((samples, per_policy, wall))
}

fn print_table(r: &Report) {
    outln!(
        "{} policies from {}, {} review(s) x {} rounds, {} thread(s), /{}",
        r.policy_count,
        r.policies,
        r.reviews,
        r.iterations,
        r.concurrency,
        r.webhook
    );
    outln!("setup (load + compile): {:.1} ms", r.setup_ms);
    outln!(
        "{:<22} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "",
        "min",
        "mean",
        "p50",
        "p95",
        "p99",
        "max"
    );
    for (label, l) in [
        ("review (us)", &r.review),
        ("decode floor (us)", &r.decode_floor),
    ] {
        outln!(
            "{label:<22} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            l.min_us,
            l.mean_us,
            l.p50_us,
            l.p95_us,
            l.p99_us,
            l.max_us
        );
    }
    outln!(
        "median review = {:.1} x the decode floor; throughput {:.0} reviews/s",
        r.ratio_to_floor,
        r.throughput_per_s
    );
    if let (Some(setup), Some(peak)) = (r.rss_after_setup_kib, r.peak_rss_kib) {
        outln!(
            "memory: {:.1} MiB resident after setup, {:.1} MiB peak",
            setup as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    outln!(
        "{:<40} {:<11} {:>10} {:>10}",
        "policy",
        "engine",
        "p50 us",
        "mean us"
    );
    for p in &r.per_policy {
        outln!(
            "{:<40} {:<11} {:>10.1} {:>10.1}",
            p.name,
            p.engine,
            p.p50_us,
            p.mean_us
        );
    }
}

fn read_report(path: &Path) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a policyctl bench report", path.display()))
}

/// Print the comparison; `true` when the median review regressed by more than `threshold` percent.
fn compare(baseline: &Report, current: &Report, threshold: f64) -> bool {
    let change = |before: f64, after: f64| (after - before) / before.max(1e-9) * 100.0;
    let review = change(baseline.review.p50_us, current.review.p50_us);
    let regressed = review > threshold;
    outln!(
        "median review: {:.1} us -> {:.1} us ({review:+.1}%, threshold {threshold}%): {}",
        baseline.review.p50_us,
        current.review.p50_us,
        if regressed { "REGRESSION" } else { "ok" }
    );
    let before: BTreeMap<&str, &PolicyCost> = baseline
        .per_policy
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    for p in &current.per_policy {
        match before.get(p.name.as_str()) {
            Some(b) => outln!(
                "  {:<40} {:>10.1} -> {:>10.1} us ({:+.1}%)",
                p.name,
                b.p50_us,
                p.p50_us,
                change(b.p50_us, p.p50_us)
            ),
            None => outln!("  {:<40} new: {:.1} us", p.name, p.p50_us),
        }
    }
    regressed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let l = Latency::of(samples);
        assert_eq!((l.min_us, l.max_us), (1.0, 100.0));
        assert_eq!(l.p50_us, 51.0);
        assert_eq!(l.p95_us, 95.0);
        assert_eq!(l.p99_us, 99.0);
        assert!((l.mean_us - 50.5).abs() < 1e-9);
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }

    #[test]
    fn memory_figures_come_from_the_status_lines() {
        let status = "Name:\tpolicyctl\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nVmRSSx: 1 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(51200));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }
}
