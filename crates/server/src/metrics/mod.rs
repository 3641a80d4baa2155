//! Prometheus metrics (prometheus-client), served as text on the admin listener's `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `policyctl_admission_requests_total` | counter | `webhook`, `operation`, `kind`, `decision` |
//! | `policyctl_admission_request_duration_seconds` | histogram | `webhook` |
//! | `policyctl_policy_evaluation_duration_seconds` | histogram | `policy`, `engine` |
//! | `policyctl_policy_results_total` | counter | `policy`, `engine`, `result` (`skip` when the policy did not apply, `pass`, `deny`, `warn`, `audit`, `mutate`, `error`, `timeout`) |
//! | `policyctl_policy_set_generation` | gauge | |
//! | `policyctl_policy_set_info` | gauge (always 1) | `hash` (of the active set's sources) |
//! | `policyctl_policies` | gauge | |
//! | `policyctl_policy_load_errors_total` | counter | |
//! | `policyctl_tls_certificate_expiry_timestamp_seconds` | gauge | |
//! | `policyctl_connections` | gauge | `listener` (`webhook`, `admin`) |
//! | `policyctl_connections_rejected_total` | counter | `listener` |
//! | `policyctl_connection_timeouts_total` | counter | `listener`, `phase` (`handshake`, `headers`, `body`, `idle`) |
//! | `policyctl_inline_attempts_total` | counter | `result` (`answered`, `handed_off`, `not_tried`): reviews first tried on the async worker that received them (`--inline-budget`) |
//! | `policyctl_cluster_sync_errors_total` | counter | `sync` (`namespaces`, `configmaps`, `policy configmaps NS`, `inventory GV KIND`) |
//! | `policyctl_cluster_sync_failing` | gauge | `sync`: 1 while its latest attempt failed |
//! | `policyctl_audit_runs_total` | counter | `outcome` (`complete`, `failed`) |
//! | `policyctl_audit_last_run_timestamp_seconds` | gauge | `outcome`: when the last run with that outcome ended |
//! | `policyctl_audit_duration_seconds` | gauge | duration of the last complete audit |
//! | `policyctl_audit_resources` | gauge | resources scanned by the last complete audit |
//! | `policyctl_audit_results` | gauge | `result` (`pass`, `fail`, `warn`, `error`, `skip`) of the last complete audit |
//! | `policyctl_audit_violations` | gauge | `policy`, `engine`: failed results of the last complete audit |
//! | `policyctl_audit_errors_total` | counter | `stage` (`discovery`, `list`, `write`, `cleanup`) |
//! | `policyctl_log_lines_dropped_total` | counter | log lines dropped because stderr was not read fast enough |
//!
//! `decision` is `allow`, `warn`, `deny`, `invalid` (a 4xx answer: unreadable or malformed review, wrong media type,
//! body over the limit) or `unavailable` (no policy set yet).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::decide::Decision;
use crate::pipeline::Webhook;
use crate::policy::Policy;
use crate::server::conn::Phase;

/// Labels of `policyctl_admission_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `validate` or `mutate`.
    pub webhook: &'static str,
    /// `CREATE`, `UPDATE`, ... (empty for unreadable requests).
    pub operation: &'static str,
    /// The request's kind.
    pub kind: String,
    /// The decision.
    pub decision: &'static str,
}

/// Labels of the request duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `validate` or `mutate`.
    pub webhook: &'static str,
}

/// Labels of the per-policy duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy's name.
    pub policy: String,
    /// Its engine.
    pub engine: &'static str,
}

/// Labels of `policyctl_policy_set_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicySetLabels {
    /// Hex SHA-256 of the active set's sources.
    pub hash: String,
}

/// Labels of the per-policy result counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyResultLabels {
    /// The policy's name.
    pub policy: String,
    /// Its engine.
    pub engine: &'static str,
    /// `pass`, `deny`, `warn`, `audit`, `mutate` or `error`.
    pub result: &'static str,
}

/// Labels of the connection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `webhook` or `admin`.
    pub listener: &'static str,
}

/// Labels of `policyctl_connection_timeouts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `webhook` or `admin`.
    pub listener: &'static str,
    /// `handshake`, `headers`, `body` or `idle`.
    pub phase: &'static str,
}

/// Labels of the cluster sync metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// What is synced.
    pub sync: String,
}

/// Labels of the inline attempt counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `answered`, `handed_off` or `not_tried`.
    pub result: &'static str,
}

/// Labels of the audit run counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `complete` or `failed`.
    pub outcome: &'static str,
}

/// Labels of the audit results gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `pass`, `fail`, `warn`, `error` or `skip`.
    pub result: &'static str,
}

/// Labels of the audit error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `discovery`, `list`, `write` or `cleanup`.
    pub stage: &'static str,
}

/// What one complete audit found, for [`Metrics::record_audit`].
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// How long it took.
    pub duration: Duration,
    /// Resources scanned.
    pub resources: usize,
    /// Results by outcome.
    pub results: Vec<(&'static str, usize)>,
    /// Failed results per policy: `(policy, engine, count)`.
    pub violations: Vec<(String, &'static str, usize)>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every `result` label of `policyctl_policy_results_total` (what [`crate::pipeline::Outcome::labels`] returns).
const POLICY_RESULTS: [&str; 8] = [
    "skip", "pass", "deny", "warn", "audit", "mutate", "error", "timeout",
];

/// One policy's series of the per-policy metrics, each looked up in its family (and created there, exactly as a
/// direct `get_or_create` would) the first time it is used, then kept: a review records every policy it ran, and
/// looking the series up by label set each time costs a clone of the policy's name and a hash of it per series.
/// The handles share their values with the families' series (prometheus-client metrics are reference-counted).
#[derive(Debug)]
struct PolicySeries {
    /// The labels, to check that a cached entry belongs to the policy asking for it.
    policy: String,
    engine: &'static str,
    duration: OnceLock<Histogram>,
    results: [OnceLock<Counter>; POLICY_RESULTS.len()],
}

impl PolicySeries {
    fn new(policy: &str, engine: &'static str) -> PolicySeries {
        PolicySeries {
            policy: policy.to_string(),
            engine,
            duration: OnceLock::new(),
            results: Default::default(),
        }
    }

    fn is_for(&self, policy: &str, engine: &'static str) -> bool {
        self.engine == engine && self.policy == policy
    }
}

/// Cached [`PolicySeries`] by policy (the address of its shared allocation, confirmed by its labels on every use, so
/// a reused address can never record under another policy's labels). Emptied when a new policy set is recorded and
/// bounded, so that it only holds the policies of the recent sets.
#[derive(Debug, Default)]
struct SeriesCache {
    by_policy: RwLock<HashMap<usize, Arc<PolicySeries>>>,
}

/// More cached policies than this (many sets in a row without a [`Metrics::record_policy_set`]): start over.
const MAX_CACHED_POLICIES: usize = 16_384;

impl SeriesCache {
    fn key(policy: &Arc<dyn Policy>) -> usize {
        Arc::as_ptr(policy).cast::<()>() as usize
    }

    /// The cached series of `policy`, or a new entry for it.
    fn get(&self, policy: &Arc<dyn Policy>) -> Arc<PolicySeries> {
        let info = policy.info();
        let key = Self::key(policy);
        if let Ok(map) = self.by_policy.read() {
            if let Some(series) = map.get(&key) {
                if series.is_for(&info.name, info.engine) {
                    return series.clone();
                }
            }
        }
        let series = Arc::new(PolicySeries::new(&info.name, info.engine));
        if let Ok(mut map) = self.by_policy.write() {
            if map.len() >= MAX_CACHED_POLICIES {
                map.clear();
            }
            map.insert(key, series.clone());
        }
        series
    }

    fn clear(&self) {
        if let Ok(mut map) = self.by_policy.write() {
            map.clear();
        }
    }
}

fn request_histogram() -> Histogram {
    // 100 µs .. ~15 s
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

fn policy_histogram() -> Histogram {
    // 5 µs .. ~5 s
    Histogram::new(exponential_buckets(0.000_005, 4.0, 11))
}

/// Every metric of the process, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<WebhookLabels>,
    policy_duration: HistogramFamily<PolicyLabels>,
    policy_results: Family<PolicyResultLabels, Counter>,
    policy_series: SeriesCache,
    /// Generation of the active policy set.
    pub policy_set_generation: Gauge,
    /// Number of policies in the active set.
    pub policies: Gauge,
    /// Failed policy loads.
    pub policy_load_errors: Counter,
    policy_set_info: Family<PolicySetLabels, Gauge>,
    /// `notAfter` of the served TLS certificate, seconds since the Unix epoch (0 until known).
    pub tls_certificate_expiry: Gauge,
    connections: Family<ListenerLabels, Gauge>,
    connections_rejected: Family<ListenerLabels, Counter>,
    connection_timeouts: Family<TimeoutLabels, Counter>,
    inline_attempts: Family<AttemptLabels, Counter>,
    cluster_sync_errors: Family<SyncLabels, Counter>,
    cluster_sync_failing: Family<SyncLabels, Gauge>,
    audit_runs: Family<OutcomeLabels, Counter>,
    audit_last_run: Family<OutcomeLabels, Gauge>,
    audit_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    audit_resources: Gauge,
    audit_results: Family<ResultLabels, Gauge>,
    audit_violations: Family<PolicyLabels, Gauge>,
    audit_errors: Family<StageLabels, Counter>,
    log_lines_dropped: Counter,
    log_drops: std::sync::OnceLock<LogDrops>,
}

/// Reads how many log lines the process has dropped so far (the log writer's own count).
#[derive(Clone)]
pub struct LogDrops(pub Arc<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for LogDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LogDrops").field(&(self.0)()).finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("policyctl");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests answered",
            requests.clone(),
        );
        let request_duration: HistogramFamily<WebhookLabels> =
            Family::new_with_constructor(request_histogram as fn() -> Histogram);
        registry.register(
            "admission_request_duration_seconds",
            "Time to answer an admission request, from the arrival of its head to the response",
            request_duration.clone(),
        );
        let policy_duration: HistogramFamily<PolicyLabels> =
            Family::new_with_constructor(policy_histogram as fn() -> Histogram);
        registry.register(
            "policy_evaluation_duration_seconds",
            "Time to evaluate one policy on one request",
            policy_duration.clone(),
        );
        let policy_results = Family::<PolicyResultLabels, Counter>::default();
        registry.register(
            "policy_results",
            "Policy evaluation results",
            policy_results.clone(),
        );
        let policy_set_generation: Gauge = Gauge::default();
        registry.register(
            "policy_set_generation",
            "Generation of the active policy set (0 before the first load)",
            policy_set_generation.clone(),
        );
        let policies: Gauge = Gauge::default();
        registry.register(
            "policies",
            "Policies in the active policy set",
            policies.clone(),
        );
        let policy_load_errors = Counter::default();
        registry.register(
            "policy_load_errors",
            "Policy loads rejected because of errors",
            policy_load_errors.clone(),
        );
        let policy_set_info = Family::<PolicySetLabels, Gauge>::default();
        registry.register(
            "policy_set_info",
            "The active policy set: 1 for the hash of its sources",
            policy_set_info.clone(),
        );
        let tls_certificate_expiry: Gauge = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate expires (notAfter), in seconds since the Unix epoch",
            tls_certificate_expiry.clone(),
        );
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register("connections", "Open connections", connections.clone());
        let connections_rejected = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections_rejected",
            "Connections closed on arrival because the listener had --max-connections open",
            connections_rejected.clone(),
        );
        let inline_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "inline_attempts",
            "Reviews first tried on the async worker that received them, by what became of the attempt",
            inline_attempts.clone(),
        );
        let connection_timeouts = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "connection_timeouts",
            "Connections (phase handshake, headers, idle) or requests (phase body, answered 408) ended by a timeout",
            connection_timeouts.clone(),
        );
        let cluster_sync_errors = Family::<SyncLabels, Counter>::default();
        registry.register(
            "cluster_sync_errors",
            "Failed lists and watches of the cluster context and the policy ConfigMaps",
            cluster_sync_errors.clone(),
        );
        let cluster_sync_failing = Family::<SyncLabels, Gauge>::default();
        registry.register(
            "cluster_sync_failing",
            "1 while a cluster context sync's latest attempt failed (forbidden, not served or other)",
            cluster_sync_failing.clone(),
        );
        let audit_runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "audit_runs",
            "Cluster audits run (policyctl audit --cluster)",
            audit_runs.clone(),
        );
        let audit_last_run = Family::<OutcomeLabels, Gauge>::default();
        registry.register(
            "audit_last_run_timestamp_seconds",
            "When the last cluster audit with this outcome ended, in seconds since the Unix epoch",
            audit_last_run.clone(),
        );
        let audit_duration = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "audit_duration_seconds",
            "Duration of the last complete cluster audit",
            audit_duration.clone(),
        );
        let audit_resources: Gauge = Gauge::default();
        registry.register(
            "audit_resources",
            "Resources scanned by the last complete cluster audit",
            audit_resources.clone(),
        );
        let audit_results = Family::<ResultLabels, Gauge>::default();
        registry.register(
            "audit_results",
            "Report results of the last complete cluster audit, by result",
            audit_results.clone(),
        );
        let audit_violations = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "audit_violations",
            "Failed results per policy in the last complete cluster audit",
            audit_violations.clone(),
        );
        let audit_errors = Family::<StageLabels, Counter>::default();
        registry.register(
            "audit_errors",
            "Cluster audit errors: discovery, a kind that could not be listed, a report that could not be written or deleted",
            audit_errors.clone(),
        );
        let log_lines_dropped: Counter = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was not read fast enough",
            log_lines_dropped.clone(),
        );
        // Every connection series exists from the start (at 0), so rates and alerts see them before the first event.
        for listener in ["webhook", "admin"] {
            let _ = connections.get_or_create(&ListenerLabels { listener });
            let _ = connections_rejected.get_or_create(&ListenerLabels { listener });
            for phase in [Phase::Handshake, Phase::Headers, Phase::Body, Phase::Idle] {
                let _ = connection_timeouts.get_or_create(&TimeoutLabels {
                    listener,
                    phase: phase.as_str(),
                });
            }
        }
        Metrics {
            registry,
            requests,
            request_duration,
            policy_duration,
            policy_results,
            policy_series: SeriesCache::default(),
            policy_set_generation,
            policies,
            policy_load_errors,
            policy_set_info,
            tls_certificate_expiry,
            connections,
            connections_rejected,
            connection_timeouts,
            inline_attempts,
            cluster_sync_errors,
            cluster_sync_failing,
            audit_runs,
            audit_last_run,
            audit_duration,
            audit_resources,
            audit_results,
            audit_violations,
            audit_errors,
            log_lines_dropped,
            log_drops: std::sync::OnceLock::new(),
        }
    }

    /// Start the audit series at 0 (a process that audits calls it once, so rates and alerts see them before the
    /// first run ends).
    pub fn init_audit(&self) {
        for outcome in ["complete", "failed"] {
            let _ = self.audit_runs.get_or_create(&OutcomeLabels { outcome });
        }
        for stage in ["discovery", "list", "write", "cleanup"] {
            let _ = self.audit_errors.get_or_create(&StageLabels { stage });
        }
    }

    /// Count an audit error at `stage` (`discovery`, `list`, `write`, `cleanup`).
    pub fn audit_error(&self, stage: &'static str) {
        self.audit_errors
            .get_or_create(&StageLabels { stage })
            .inc();
    }

    /// Record the end of an audit run; a complete one replaces the last audit's gauges (policies no longer in the
    /// set lose their series).
    pub fn record_audit(&self, record: Option<&AuditRecord>) {
        let outcome = if record.is_some() {
            "complete"
        } else {
            "failed"
        };
        self.audit_runs
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.audit_last_run
            .get_or_create(&OutcomeLabels { outcome })
            .set(i64::try_from(now).unwrap_or(i64::MAX));
        let Some(record) = record else {
            return;
        };
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.audit_duration.set(record.duration.as_secs_f64());
        self.audit_resources.set(count(record.resources));
        for (result, n) in &record.results {
            self.audit_results
                .get_or_create(&ResultLabels { result })
                .set(count(*n));
        }
        self.audit_violations.clear();
        for (policy, engine, n) in &record.violations {
            self.audit_violations
                .get_or_create(&PolicyLabels {
                    policy: policy.clone(),
                    engine,
                })
                .set(count(*n));
        }
    }

    /// The failure counter of the cluster sync `sync`.
    pub fn cluster_sync_errors(&self, sync: &str) -> Counter {
        self.cluster_sync_errors
            .get_or_create(&SyncLabels {
                sync: sync.to_string(),
            })
            .clone()
    }

    /// The failing gauge of the cluster sync `sync`.
    pub fn cluster_sync_failing(&self, sync: &str) -> Gauge {
        self.cluster_sync_failing
            .get_or_create(&SyncLabels {
                sync: sync.to_string(),
            })
            .clone()
    }

    /// Drop the series of a sync that stopped.
    pub fn remove_cluster_sync(&self, sync: &str) {
        let labels = SyncLabels {
            sync: sync.to_string(),
        };
        self.cluster_sync_errors.remove(&labels);
        self.cluster_sync_failing.remove(&labels);
    }

    /// The open-connections gauge of `listener`.
    pub fn connections_open(&self, listener: &'static str) -> Gauge {
        self.connections
            .get_or_create(&ListenerLabels { listener })
            .clone()
    }

    /// The rejected-connections counter of `listener`.
    pub fn connections_rejected(&self, listener: &'static str) -> Counter {
        self.connections_rejected
            .get_or_create(&ListenerLabels { listener })
            .clone()
    }

    /// The counter of inline attempts with this `result` (see [`crate::server::inline::Tried::label`]).
    pub fn inline_attempt(&self, result: &'static str) -> Counter {
        self.inline_attempts
            .get_or_create(&AttemptLabels { result })
            .clone()
    }

    /// The time-out counter of `listener` and `phase`.
    pub fn connection_timeouts(&self, listener: &'static str, phase: Phase) -> Counter {
        self.connection_timeouts
            .get_or_create(&TimeoutLabels {
                listener,
                phase: phase.as_str(),
            })
            .clone()
    }

    /// Record a newly active policy set: its generation, size and source hash.
    pub fn record_policy_set(&self, generation: u64, policies: usize, hash: &str) {
        self.policy_set_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.policies
            .set(i64::try_from(policies).unwrap_or(i64::MAX));
        self.policy_series.clear();
        self.policy_set_info.clear();
        self.policy_set_info
            .get_or_create(&PolicySetLabels {
                hash: hash.to_string(),
            })
            .set(1);
    }

    /// Record an answered review: the request counter, its duration, and every policy's run.
    pub fn record_decision(
        &self,
        webhook: Webhook,
        operation: &'static str,
        kind: &str,
        decision: &Decision,
        elapsed: Duration,
    ) {
        self.record_request(
            webhook,
            operation,
            kind,
            decision.verdict().as_str(),
            elapsed,
        );
        for run in &decision.runs {
            let series = self.policy_series.get(&run.policy);
            series
                .duration
                .get_or_init(|| {
                    self.policy_duration
                        .get_or_create(&PolicyLabels {
                            policy: series.policy.clone(),
                            engine: series.engine,
                        })
                        .clone()
                })
                .observe(run.duration.as_secs_f64());
            for result in run.outcome.labels() {
                let labels = || PolicyResultLabels {
                    policy: series.policy.clone(),
                    engine: series.engine,
                    result,
                };
                match POLICY_RESULTS.iter().position(|known| *known == result) {
                    Some(i) => series.results[i]
                        .get_or_init(|| self.policy_results.get_or_create(&labels()).clone())
                        .inc(),
                    None => self.policy_results.get_or_create(&labels()).inc(),
                };
            }
        }
    }

    /// Record a request that got no decision (`invalid`, `unavailable`).
    pub fn record_request(
        &self,
        webhook: Webhook,
        operation: &'static str,
        kind: &str,
        decision: &'static str,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                webhook: webhook.as_str(),
                operation,
                kind: kind.to_string(),
                decision,
            })
            .inc();
        self.request_duration
            .get_or_create(&WebhookLabels {
                webhook: webhook.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Count the log lines `drops` says were dropped (read at every encoding). The first source set stays.
    pub fn watch_log_drops(&self, drops: LogDrops) {
        let _ = self.log_drops.set(drops);
    }

    /// The metrics in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        if let Some(drops) = self.log_drops.get() {
            let (total, seen) = ((drops.0)(), self.log_lines_dropped.get());
            if total > seen {
                self.log_lines_dropped.inc_by(total - seen);
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::pipeline::{Outcome, PolicyRun};
    use crate::policy::inert::Inert;
    use crate::policy::{EvalError, Evaluation, Violation};

    #[test]
    fn dropped_log_lines_are_read_from_the_log_writer_at_every_encoding() {
        let metrics = Metrics::new();
        let line = |n: u64| format!("policyctl_log_lines_dropped_total {n}");
        assert!(
            metrics.encode().lines().any(|l| l == line(0)),
            "present at 0"
        );
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let source = dropped.clone();
        metrics.watch_log_drops(LogDrops(Arc::new(move || {
            source.load(std::sync::atomic::Ordering::Relaxed)
        })));
        dropped.store(5, std::sync::atomic::Ordering::Relaxed);
        assert!(metrics.encode().lines().any(|l| l == line(5)));
        dropped.store(12, std::sync::atomic::Ordering::Relaxed);
        let text = metrics.encode();
        assert!(text.lines().any(|l| l == line(12)), "{text}");
        assert!(
            metrics.encode().lines().any(|l| l == line(12)),
            "not counted twice"
        );
    }

    fn policy(name: &str) -> Arc<dyn Policy> {
        Inert::policy(name, None)
    }

    fn run(policy: &Arc<dyn Policy>, outcome: Outcome) -> PolicyRun {
        PolicyRun {
            policy: policy.clone(),
            outcome,
            duration: Duration::from_micros(20),
        }
    }

    fn record(metrics: &Metrics, runs: Vec<PolicyRun>) {
        let decision = Decision {
            runs,
            ..Decision::default()
        };
        metrics.record_decision(
            Webhook::Validate,
            "CREATE",
            "Pod",
            &decision,
            Duration::from_millis(1),
        );
    }

    fn results(encoded: &str, policy: &str, result: &str) -> Option<u64> {
        let prefix =
            format!("policyctl_policy_results_total{{policy=\"{policy}\",engine=\"test\",result=\"{result}\"}} ");
        encoded
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.trim().parse().ok())
    }

    fn evaluations(encoded: &str, policy: &str) -> Option<u64> {
        let prefix = format!(
            "policyctl_policy_evaluation_duration_seconds_count{{policy=\"{policy}\",engine=\"test\"}} "
        );
        encoded
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.trim().parse().ok())
    }

    /// The per-policy series are cached per policy: they count every run, only the results that happened have a
    /// series, a new set with a policy of the same name continues its series, and the cache never records under
    /// another policy's name.
    #[test]
    fn cached_policy_series_count_like_direct_lookups() {
        let metrics = Metrics::new();
        metrics.record_policy_set(1, 2, "h1");
        let (a, b) = (policy("a"), policy("b"));
        for _ in 0..3 {
            record(
                &metrics,
                vec![
                    run(
                        &a,
                        Outcome::from_evaluation(Evaluation::found(vec![
                            Violation::deny("no"),
                            Violation::warn("careful"),
                        ])),
                    ),
                    run(&b, Outcome::default()),
                ],
            );
        }
        record(
            &metrics,
            vec![run(
                &b,
                Outcome::failed(EvalError::Timeout(Duration::from_secs(1))),
            )],
        );
        let encoded = metrics.encode();
        assert_eq!(results(&encoded, "a", "deny"), Some(3), "{encoded}");
        assert_eq!(results(&encoded, "a", "warn"), Some(3), "{encoded}");
        assert_eq!(results(&encoded, "b", "skip"), Some(3), "{encoded}");
        assert_eq!(results(&encoded, "b", "timeout"), Some(1), "{encoded}");
        for (policy, result) in [("a", "pass"), ("a", "skip"), ("b", "deny"), ("b", "pass")] {
            assert_eq!(results(&encoded, policy, result), None, "{encoded}");
        }
        assert_eq!(evaluations(&encoded, "a"), Some(3), "{encoded}");
        assert_eq!(evaluations(&encoded, "b"), Some(4), "{encoded}");

        // A new set: new policy objects, one with the name of an old one.
        metrics.record_policy_set(2, 2, "h2");
        let (a2, c) = (policy("a"), policy("c"));
        record(
            &metrics,
            vec![
                run(
                    &a2,
                    Outcome::from_evaluation(Evaluation::found(vec![Violation::deny("no")])),
                ),
                run(&c, Outcome::from_evaluation(Evaluation::found(vec![]))),
            ],
        );
        let encoded = metrics.encode();
        assert_eq!(results(&encoded, "a", "deny"), Some(4), "{encoded}");
        assert_eq!(results(&encoded, "c", "pass"), Some(1), "{encoded}");
        assert_eq!(evaluations(&encoded, "a"), Some(4), "{encoded}");
        assert_eq!(evaluations(&encoded, "c"), Some(1), "{encoded}");
        // Still counted after the cache was used without a new set (the old policy object too).
        record(&metrics, vec![run(&a, Outcome::default())]);
        assert_eq!(results(&metrics.encode(), "a", "skip"), Some(1));
    }

    /// An entry cached under a policy's key but for other labels (an address reused by another policy) is replaced,
    /// never used.
    #[test]
    fn a_cached_entry_for_other_labels_is_not_used() {
        let metrics = Metrics::new();
        let a = policy("a");
        if let Ok(mut map) = metrics.policy_series.by_policy.write() {
            map.insert(
                SeriesCache::key(&a),
                Arc::new(PolicySeries::new("someone-else", "test")),
            );
        }
        record(&metrics, vec![run(&a, Outcome::default())]);
        let encoded = metrics.encode();
        assert_eq!(results(&encoded, "a", "skip"), Some(1), "{encoded}");
        assert_eq!(results(&encoded, "someone-else", "skip"), None, "{encoded}");
        assert_eq!(evaluations(&encoded, "someone-else"), None, "{encoded}");
    }
}
