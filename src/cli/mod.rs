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

/// `policyctl audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Directory of policy files.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Manifest files or directories of them (`*.yaml`, `*.yml`, `*.json`, several documents per file, `List`
    /// items expanded); `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Output: a table, or the PolicyReports as JSON (a `List`) or YAML (one document per report).
    #[arg(long, short, value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
    /// Time limit of one resource's evaluation.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
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
    /// Address of the plain-HTTP admin listener (/healthz, /readyz, /metrics, /status).
    #[arg(long, default_value = "0.0.0.0:9090", env = "POLICYCTL_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
    /// What a request gets when a policy cannot be evaluated and sets no failure policy of its own.
    #[arg(long, value_enum, default_value_t = FailurePolicy::Fail, env = "POLICYCTL_FAILURE_POLICY")]
    pub failure_policy: FailurePolicy,
    /// Evaluations running at once (default: the number of CPUs).
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
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, default_value = "25s", value_parser = duration, env = "POLICYCTL_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,
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
    /// Validity of the serving certificate, in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Validity of the CA, in days.
    #[arg(long, default_value_t = 3650)]
    pub ca_days: u32,
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
    /// Directory of policy files.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Manifests (YAML or JSON, several documents per file) or AdmissionReviews; `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Operation of the review synthesized for plain manifests.
    #[arg(long, value_enum, default_value_t = OperationArg::Create)]
    pub operation: OperationArg,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = ReportOutput::Text)]
    pub output: ReportOutput,
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
    /// Directory of policy files.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = ReportOutput::Text)]
    pub output: ReportOutput,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
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
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
