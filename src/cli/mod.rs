//! Command-line arguments (clap derive). Parsing only: [`crate::commands`] runs them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::policy::FailurePolicy;
use crate::telemetry::LogFormat;

/// Policy-as-code admission webhook for Kubernetes: Gatekeeper, Kyverno and Rego policies in one fast webhook.
#[derive(Debug, Parser)]
#[command(name = "policyctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Logging options, accepted by every command.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "POLICYCTL_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `policyctl=debug,info` (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info", env = "POLICYCTL_LOG")]
    pub log_level: String,
}

/// The commands.
// Parsed once at start-up: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS) and its admin listener (HTTP).
    Serve(ServeArgs),
    /// Generate a CA and a serving certificate for the webhook.
    Certs(CertsArgs),
    /// Run policy tests: gator Suites, kyverno tests and *_test.rego files.
    Test(TestArgs),
    /// Evaluate manifests or AdmissionReviews against policies, offline.
    Eval(EvalArgs),
    /// Load and compile every policy and report every problem.
    Lint(LintArgs),
    /// Measure what policies cost per review, on the webhook's own path: latency percentiles, throughput and a
    /// per-policy breakdown; save a baseline and fail CI on a regression.
    Bench(BenchArgs),
    /// Evaluate resources as they exist (rendered manifests, `kubectl get -o yaml` output) and report PolicyReports;
    /// exit 1 when an enforcing policy fails.
    Audit(AuditArgs),
}

/// How policies are loaded (shared by `serve`, `test`, `eval`, `bench`, `audit` and `lint`).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct EngineArgs {
    /// Run the Rego of Gatekeeper ConstraintTemplates that carry both Rego and CEL (`K8sNativeValidation`). By
    /// default their CEL runs, as Gatekeeper's default driver does; a CEL-only template runs its CEL either way.
    #[arg(long, env = "POLICYCTL_PREFER_REGO")]
    pub prefer_rego: bool,
}

impl EngineArgs {
    /// The loader options these flags select (`eval_timeout` is the loader's default; `serve` sets its own).
    pub fn load_options(&self) -> crate::engine::LoadOptions {
        crate::engine::LoadOptions {
            prefer_rego: self.prefer_rego,
            ..crate::engine::LoadOptions::default()
        }
    }
}

/// `policyctl audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Directory of policy files.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Manifest files or directories of them (`*.yaml`, `*.yml`, `*.json`, several documents per file, `List`
    /// items expanded); `-` reads stdin.
    #[arg(required_unless_present = "cluster", conflicts_with = "cluster")]
    pub files: Vec<String>,
    /// Output: a table, or the PolicyReports as JSON (a `List`) or YAML (one document per report).
    #[arg(long, short, value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
    /// Time limit of one resource's evaluation.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
    /// How policies are loaded.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Audit the cluster (kubeconfig or in-cluster service account): list the resources the policies can match,
    /// page by page, and write the PolicyReports through the API server (stale ones deleted).
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: audit again every interval (e.g. `1h`), serving /metrics and /healthz on --admin-addr,
    /// until SIGTERM; without it, audit once and exit.
    #[arg(long, value_parser = positive_duration)]
    pub interval: Option<Duration>,
    /// With --cluster: objects per list request (`limit`); the audit holds at most one page of objects at a time.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// With --cluster: results per report at most; a namespace with more gets `policyctl-NS-2`, ... (an API object
    /// must stay under the API server's size limit).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_results_per_report: u64,
    /// With --cluster: evaluate and print, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --cluster --interval: address of the plain-HTTP admin listener (/healthz, /readyz, /metrics, /status).
    #[arg(long, default_value = "0.0.0.0:9090", env = "POLICYCTL_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
}

impl AuditArgs {
    /// Check what clap cannot: the cluster-only options are not given without `--cluster` (clap's `requires` is
    /// satisfied by a flag's default value).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.cluster {
            return Ok(());
        }
        let given: Vec<&str> = [
            ("--interval", self.interval.is_some()),
            ("--dry-run", self.dry_run),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if given.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{} only apply with --cluster", given.join(", "))
        }
    }
}

/// `policyctl audit` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// One line per failing, warning or erroring result, and a summary.
    Table,
    /// The reports as a JSON `List`.
    Json,
    /// The reports as YAML documents.
    Yaml,
}

/// `policyctl bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory of policy files.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Manifests (YAML or JSON, several documents per file) or AdmissionReviews; `-` reads stdin. Every document is
    /// one review of each round.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Operation of the review synthesized for plain manifests.
    #[arg(long, value_enum, default_value_t = OperationArg::Create)]
    pub operation: OperationArg,
    /// Which webhook path to measure: decode + validate, or decode + mutate.
    #[arg(long, value_enum, default_value_t = BenchWebhook::Validate)]
    pub webhook: BenchWebhook,
    /// Rounds over every review before measuring.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// Measured rounds over every review.
    #[arg(long, default_value_t = 500)]
    pub iterations: usize,
    /// Threads evaluating at once (each takes its share of the rounds); throughput is measured across them.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = BenchOutput::Table)]
    pub output: BenchOutput,
    /// Write the results as JSON to this file (a baseline for `--compare`).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Compare with a baseline written by `--save`: exit 1 when the median review got slower by more than
    /// `--threshold` percent.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Regression threshold for `--compare`, in percent of the baseline's median.
    #[arg(long, default_value_t = 10.0)]
    pub threshold: f64,
    /// How policies are loaded.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The webhook path `policyctl bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchWebhook {
    /// `/validate`.
    Validate,
    /// `/mutate`.
    Mutate,
}

/// `policyctl bench` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchOutput {
    /// An aligned table.
    Table,
    /// JSON.
    Json,
}

/// `policyctl serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(long, default_value = "0.0.0.0:8443", env = "POLICYCTL_ADDR")]
    pub addr: SocketAddr,
    /// PEM certificate (chain). Without --tls-cert/--tls-key a throwaway localhost certificate is generated.
    #[arg(long, requires = "tls_key", env = "POLICYCTL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, requires = "tls_cert", env = "POLICYCTL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are re-read (they are swapped in when they change).
    #[arg(long, default_value = "10s", value_parser = duration, env = "POLICYCTL_TLS_RELOAD_INTERVAL")]
    pub tls_reload_interval: Duration,
    /// Directory of policy files (*.yaml, *.yml, *.rego), read recursively and followed for changes (also a
    /// ConfigMap mounted as a volume). Default: `policies`, unless --configmap-selector is given.
    #[arg(long, env = "POLICYCTL_POLICIES")]
    pub policies: Option<PathBuf>,
    /// How often the policy directory is checked for changes.
    #[arg(long, default_value = "200ms", value_parser = duration, env = "POLICYCTL_POLICIES_POLL_INTERVAL")]
    pub policies_poll_interval: Duration,
    /// Also (or instead) load policies from the ConfigMaps with these labels, watched through the Kubernetes API
    /// (kubeconfig or in-cluster service account), e.g. `policyctl.io/policies=true`. Every data key named *.yaml,
    /// *.yml or *.rego is a policy file.
    #[arg(long, value_parser = label_selector, env = "POLICYCTL_CONFIGMAP_SELECTOR")]
    pub configmap_selector: Option<String>,
    /// Namespace of the policy ConfigMaps (default: the client's namespace; in a pod, its own).
    #[arg(
        long,
        requires = "configmap_selector",
        env = "POLICYCTL_CONFIGMAP_NAMESPACE"
    )]
    pub configmap_namespace: Option<String>,
    /// Give policies read access to the cluster through the Kubernetes API: namespaces (namespaceSelector,
    /// namespaceObject) and ConfigMaps from cached watches, and time-limited, cached API reads (Kyverno apiCall).
    /// The first policy set is served once the namespaces have been listed.
    #[arg(long, env = "POLICYCTL_CLUSTER_CONTEXT")]
    pub cluster_context: bool,
    /// Let an update with no policies replace a policy set that has some. By default such an update (an emptied
    /// directory, deleted ConfigMaps) is rejected like a broken one and the active set keeps serving.
    #[arg(long, env = "POLICYCTL_ALLOW_EMPTY_POLICY_SET")]
    pub allow_empty_policy_set: bool,
    /// With --cluster-context: /readyz also waits until every sync (namespaces, cached ConfigMaps, each kind synced
    /// into data.inventory) has listed, and turns unready while one fails (e.g. forbidden by RBAC). A kind the API
    /// server does not serve never holds readiness back. Off: ready once a policy set is loaded.
    #[arg(long, env = "POLICYCTL_READY_AFTER_SYNCS")]
    pub ready_after_syncs: bool,
    /// Address of the plain-HTTP admin listener (/healthz, /readyz, /metrics, /status).
    #[arg(long, default_value = "0.0.0.0:9090", env = "POLICYCTL_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
    /// What a request gets when a policy cannot be evaluated and sets no failure policy of its own.
    #[arg(long, value_enum, default_value_t = FailurePolicy::Fail, env = "POLICYCTL_FAILURE_POLICY")]
    pub failure_policy: FailurePolicy,
    /// Evaluation threads: evaluations running at once (default: the number of CPUs); the first attempts of
    /// `--inline-budget` run on the async workers besides them.
    #[arg(long, env = "POLICYCTL_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,
    /// Time limit of one policy evaluation (a cap inside the request's deadline).
    #[arg(long, default_value = "1s", value_parser = duration, env = "POLICYCTL_EVAL_TIMEOUT")]
    pub eval_timeout: Duration,
    /// Deadline of one admission request, from its arrival to its answer, shared by every policy it reaches
    /// (queueing for an evaluation slot included). Keep it below the webhook's `timeoutSeconds`; a request that runs
    /// out is answered under the failure policy.
    #[arg(long, default_value = "2s", value_parser = duration, env = "POLICYCTL_REQUEST_TIMEOUT")]
    pub request_timeout: Duration,
    /// A review is first tried on the async worker that received it, for at most this long (and never waiting for the
    /// Kubernetes API); one that takes longer goes to an evaluation thread with the rest of its deadline. Saves the
    /// hand-off between threads on the common, cheap review. `0s` sends every review to an evaluation thread.
    #[arg(long, default_value = "2ms", value_parser = duration, env = "POLICYCTL_INLINE_BUDGET")]
    pub inline_budget: Duration,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, default_value = "25s", value_parser = duration, env = "POLICYCTL_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,
    /// Longest TLS handshake; a connection still handshaking after it is closed.
    #[arg(long, default_value = "10s", value_parser = positive_duration, env = "POLICYCTL_TLS_HANDSHAKE_TIMEOUT")]
    pub tls_handshake_timeout: Duration,
    /// Longest wait for a request's head: a new connection's first request, and on HTTP/1.1 every request from its
    /// first byte. A connection that sends no (complete) head in time is closed.
    #[arg(long, default_value = "10s", value_parser = positive_duration, env = "POLICYCTL_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Duration,
    /// Longest wait for a whole request body, from its head; a slower body is answered 408.
    #[arg(long, default_value = "10s", value_parser = positive_duration, env = "POLICYCTL_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Duration,
    /// How long a connection with no request in flight stays open after its last answer. Keep it above the client's
    /// own idle timeout (90 s for the API server) so that keep-alive connections are reused and closed by the client.
    #[arg(long, default_value = "120s", value_parser = positive_duration, env = "POLICYCTL_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,
    /// Most connections open at once per listener; more are closed on arrival (counted in
    /// policyctl_connections_rejected_total).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..), env = "POLICYCTL_MAX_CONNECTIONS")]
    pub max_connections: u32,
    /// How policies are loaded.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `policyctl certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// DNS names of the serving certificate, e.g. policyctl.policyctl.svc.
    #[arg(long, num_args = 1.., required_unless_present = "ip")]
    pub dns: Vec<String>,
    /// IP addresses of the serving certificate.
    #[arg(long, num_args = 1..)]
    pub ip: Vec<IpAddr>,
    /// Validity of the serving certificate, in days (at least 1).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Validity of the CA, in days (at least 1).
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..))]
    pub ca_days: u32,
    /// Replace ca.crt, tls.crt and tls.key when they already exist in --out (without it, existing keys are kept and
    /// the command fails).
    #[arg(long)]
    pub force: bool,
}

/// Output format of `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestOutput {
    /// A table.
    Table,
    /// One JSON object with a summary and the cases.
    Json,
    /// JUnit XML.
    Junit,
    /// One YAML document with a summary and the cases.
    Yaml,
}

/// `policyctl test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Files or directories to search for tests (recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = TestOutput::Table)]
    pub output: TestOutput,
    /// A YAML list of cases expected to fail, each with a reason; such a failure does not fail the run, and such a
    /// case passing does (so the list stays true).
    #[arg(long)]
    pub known_failures: Option<PathBuf>,
    /// Only run cases whose `test//case` matches this regular expression.
    #[arg(long)]
    pub run: Option<String>,
    /// List only the cases that failed or errored (the summary still counts every case).
    #[arg(long)]
    pub fail_only: bool,
    /// Print each case's whole reason (every line) under its row, not only the first line (table output).
    #[arg(long)]
    pub detailed: bool,
    /// How policies are loaded.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Output format of `eval` and `lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportOutput {
    /// Lines of text.
    Text,
    /// JSON.
    Json,
}

/// `policyctl eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Policy files or directories (repeat the option for several).
    #[arg(long, default_value = "policies")]
    pub policies: Vec<PathBuf>,
    /// Manifests (YAML or JSON, several documents per file) or AdmissionReviews, or directories of them (every
    /// `*.yaml`, `*.yml` and `*.json` file under them); `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Operation of the review synthesized for plain manifests.
    #[arg(long, value_enum, default_value_t = OperationArg::Create)]
    pub operation: OperationArg,
    /// The files are payloads, not Kubernetes manifests: each document is checked by the ValidatingPolicies of
    /// this `evaluation.mode` (JSON, HTTP or Envoy), and only by them.
    #[arg(long, value_enum)]
    pub payload: Option<PayloadArg>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = ReportOutput::Text)]
    pub output: ReportOutput,
    /// How policies are loaded.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// A ValidatingPolicy evaluation mode for payloads on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadArg {
    /// Any JSON document (`evaluation.mode: JSON`).
    Json,
    /// An HTTP authorization request (`evaluation.mode: HTTP`).
    Http,
    /// An Envoy CheckRequest (`evaluation.mode: Envoy`).
    Envoy,
}

impl From<PayloadArg> for crate::policy::PayloadMode {
    fn from(p: PayloadArg) -> Self {
        match p {
            PayloadArg::Json => crate::policy::PayloadMode::Json,
            PayloadArg::Http => crate::policy::PayloadMode::Http,
            PayloadArg::Envoy => crate::policy::PayloadMode::Envoy,
        }
    }
}

/// An admission operation on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum OperationArg {
    /// CREATE
    Create,
    /// UPDATE (the old object is the object itself)
    Update,
    /// DELETE (the object becomes oldObject)
    Delete,
}

/// `policyctl lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Policy files or directories to check, all loaded as one set (default: `policies`).
    pub paths: Vec<PathBuf>,
    /// Policy files or directories, like the positional paths (repeat the option for several).
    #[arg(long)]
    pub policies: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = ReportOutput::Text)]
    pub output: ReportOutput,
    /// How policies are loaded.
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        zero if zero.is_zero() => Err(format!(
            "{text:?}: must be more than zero (a zero timeout would close every connection)"
        )),
        positive => Ok(positive),
    }
}

fn label_selector(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "the selector must not be empty: it would load every ConfigMap of the namespace"
                .to_string(),
        );
    }
    Ok(text.to_string())
}

/// Parse a duration written as a number and a unit: `250ms`, `2s`, `1.5s`, `5m`, `1h`. A bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 500ms, 2s, 1m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {text:?}: use ms, s, m or h"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["policyctl", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.addr.to_string(), "0.0.0.0:8443");
        assert_eq!(args.admin_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(args.policies, None);
        assert_eq!(args.policies_poll_interval, Duration::from_millis(200));
        assert_eq!(args.configmap_selector, None);
        assert_eq!(args.failure_policy, FailurePolicy::Fail);
        assert_eq!(args.eval_timeout, Duration::from_secs(1));
        assert_eq!(args.request_timeout, Duration::from_secs(2));
        assert_eq!(args.inline_budget, Duration::from_millis(2));
    }

    #[test]
    fn tls_flags_come_in_pairs() {
        assert!(Cli::try_parse_from(["policyctl", "serve", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from([
            "policyctl",
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem"
        ])
        .is_ok());
    }

    #[test]
    fn configmap_flags() {
        assert!(
            Cli::try_parse_from(["policyctl", "serve", "--configmap-namespace", "ns"]).is_err()
        );
        assert!(Cli::try_parse_from(["policyctl", "serve", "--configmap-selector", " "]).is_err());
        let cli = Cli::try_parse_from([
            "policyctl",
            "serve",
            "--configmap-selector",
            "policyctl.io/policies=true",
            "--configmap-namespace",
            "policyctl",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(
            args.configmap_selector.as_deref(),
            Some("policyctl.io/policies=true")
        );
        assert_eq!(args.configmap_namespace.as_deref(), Some("policyctl"));
    }

    #[test]
    fn certs_needs_a_name() {
        assert!(Cli::try_parse_from(["policyctl", "certs", "--out", "d"]).is_err());
        assert!(
            Cli::try_parse_from(["policyctl", "certs", "--out", "d", "--ip", "127.0.0.1"]).is_ok()
        );
    }

    #[test]
    fn connection_limits() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["policyctl", "serve"];
            args.extend_from_slice(extra);
            match Cli::try_parse_from(args).map(|cli| cli.command) {
                Ok(Command::Serve(args)) => Ok(args),
                Ok(_) => panic!("serve"),
                Err(err) => Err(err.to_string()),
            }
        };
        let defaults = parse(&[]).expect("defaults");
        assert_eq!(defaults.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.body_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.idle_timeout, Duration::from_secs(120));
        assert_eq!(defaults.max_connections, 512);
        let set = parse(&[
            "--tls-handshake-timeout",
            "2s",
            "--header-read-timeout",
            "3s",
            "--body-read-timeout",
            "500ms",
            "--idle-timeout",
            "5m",
            "--max-connections",
            "64",
        ])
        .expect("parses");
        assert_eq!(set.tls_handshake_timeout, Duration::from_secs(2));
        assert_eq!(set.header_read_timeout, Duration::from_secs(3));
        assert_eq!(set.body_read_timeout, Duration::from_millis(500));
        assert_eq!(set.idle_timeout, Duration::from_secs(300));
        assert_eq!(set.max_connections, 64);
        let zero = parse(&["--idle-timeout", "0s"]).expect_err("zero");
        assert!(zero.contains("must be more than zero"), "{zero}");
        assert!(parse(&["--max-connections", "0"]).is_err());
    }

    #[test]
    fn audit_needs_files_or_the_cluster() {
        let parse = |args: &[&str]| {
            let mut all = vec!["policyctl", "audit"];
            all.extend_from_slice(args);
            match Cli::try_parse_from(all).map(|cli| cli.command) {
                Ok(Command::Audit(args)) => args.check().map(|()| args).map_err(|e| e.to_string()),
                Ok(_) => panic!("audit"),
                Err(err) => Err(err.to_string()),
            }
        };
        assert!(parse(&[]).is_err(), "files or --cluster");
        assert!(parse(&["m.yaml"]).is_ok());
        assert!(parse(&["--cluster", "m.yaml"]).is_err(), "not both");
        let alone =
            parse(&["--interval", "1h", "--dry-run", "m.yaml"]).expect_err("needs --cluster");
        assert!(
            alone.contains("--interval, --dry-run only apply with --cluster"),
            "{alone}"
        );
        assert!(parse(&["--cluster", "--page-size", "0"]).is_err());
        let args = parse(&["--cluster", "--interval", "30m"]).expect("parses");
        assert!(args.cluster);
        assert_eq!(args.interval, Some(Duration::from_secs(1800)));
        assert_eq!(args.page_size, 500);
        assert_eq!(args.max_results_per_report, 1000);
        assert!(parse(&["--cluster", "--interval", "0s"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
