//! `policyctl audit`: resources as they exist, evaluated by every policy with background semantics, reported as
//! PolicyReports; exit 1 when an enforcing policy fails (or cannot be evaluated), so rendered manifests can gate a
//! pipeline.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::inputs;
use crate::audit::cluster::{run_every, ClusterAuditOptions, ClusterAuditor};
use crate::audit::{audit, Audit};
use crate::cli::{AuditArgs, AuditOutput};
use crate::cluster::ClusterOptions;
use crate::engine::LoadOptions;
use crate::metrics::Metrics;
use crate::pipeline::Settings;
use crate::policy::store::PolicyStore;
use crate::policy::{NoCluster, PolicySet};
use crate::server::{Admin, AppState, ConnectionLimits};
use crate::sources::{Publisher, Sources, SourcesConfig, SourcesStatus};

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    args.check()?;
    if args.cluster {
        return cluster(args);
    }
    let (set, _) = inputs::policy_set(
        std::slice::from_ref(&args.policies),
        &args.engine.load_options(),
    )?;
    let objects = inputs::objects(&args.files)?;
    let audited = audit(&set, &objects, Arc::new(NoCluster), args.timeout);
    print(&audited, args.output)?;
    Ok(
        if audited.enforcing_failures > 0 || audited.enforcing_errors > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn print(audited: &Audit, output: AuditOutput) -> anyhow::Result<()> {
    match output {
        AuditOutput::Json => {
            let list =
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": audited.reports});
            outln!("{}", serde_json::to_string_pretty(&list)?);
        }
        AuditOutput::Yaml => {
            for report in &audited.reports {
                out!("---\n{}", serde_yaml::to_string(report)?);
            }
        }
        AuditOutput::Table => print_table(audited),
    }
    Ok(())
}

/// How long a one-shot cluster audit waits for the first policy set and for the cluster syncs.
const START_LIMIT: Duration = Duration::from_secs(60);

/// `policyctl audit --cluster`: once (print, write the reports, exit 0 when the run completed) or every
/// `--interval` with the admin listener.
fn cluster(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(cluster_async(args));
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn cluster_async(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(PolicyStore::new());
    let status = Arc::new(SourcesStatus::new());
    let publisher = Publisher::new(
        store.clone(),
        metrics.clone(),
        LoadOptions {
            eval_timeout: args.timeout,
            ..args.engine.load_options()
        },
    );
    let sources = Sources::new(SourcesConfig {
        directory: Some(args.policies.clone()),
        cluster_context: Some(ClusterOptions::default()),
        ..SourcesConfig::default()
    })
    .start(publisher, status.clone())
    .await?;
    let client = sources
        .client()
        .cloned()
        .context("the cluster audit has no Kubernetes client")?;
    let context = sources
        .cluster()
        .context("the cluster audit has no cluster context")?;
    let options = ClusterAuditOptions {
        page_size: args.page_size,
        timeout: args.timeout,
        max_results_per_report: usize::try_from(args.max_results_per_report).unwrap_or(usize::MAX),
        dry_run: args.dry_run,
    };
    let auditor = ClusterAuditor::new(client, metrics.clone(), options);
    let Some(interval) = args.interval else {
        let set = first_set(&store).await?;
        settle(&status).await;
        let done = auditor.run(set, context).await?;
        print(&done.audit, args.output)?;
        for (kind, why) in &done.skipped {
            eprintln!("skipped {kind}: {why}");
        }
        eprintln!(
            "{} kinds, {} resources in {} pages; {} reports written, {} stale reports deleted{}",
            done.kinds.len(),
            done.audit.resources,
            done.pages,
            done.written,
            done.deleted,
            if args.dry_run { " (dry run)" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    };
    let state = AppState {
        store: store.clone(),
        metrics,
        limiter: Arc::new(tokio::sync::Semaphore::new(1)),
        settings: Settings::default(),
        draining: Arc::new(AtomicBool::new(false)),
        sources: status.clone(),
        limits: ConnectionLimits::default(),
        ready_after_syncs: false,
        reclaim: crate::server::memory::Reclaim::new(),
        inline: Arc::new(crate::server::inline::Inline::off()),
    };
    let admin = Admin::spawn(Admin::bind(args.admin_addr)?, state)?;
    tracing::info!(admin_addr = %admin.addr(), ?interval, "auditing the cluster");
    let stop = super::serve::shutdown_signal();
    tokio::pin!(stop);
    let settled = tokio::select! {
        _ = &mut stop => false,
        _ = settle(&status) => true,
    };
    if settled {
        run_every(auditor, store, context, interval, stop).await;
    }
    admin.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// The first policy set, or the errors that kept it from loading.
async fn first_set(store: &PolicyStore) -> anyhow::Result<Arc<PolicySet>> {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(set) = store.current() {
            return Ok(set);
        }
        if let Some(failure) = store.last_error() {
            let errors: Vec<String> = failure.errors.iter().map(ToString::to_string).collect();
            anyhow::bail!("the policies did not load:\n{}", errors.join("\n"));
        }
        if start.elapsed() > START_LIMIT {
            anyhow::bail!(
                "no policy set loaded within {START_LIMIT:?} (the namespaces could not be listed?)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait (at most [`START_LIMIT`]) until every cluster sync (namespaces, `data.inventory` kinds) has listed or
/// failed, so the first audit sees the referential data.
async fn settle(status: &SourcesStatus) {
    let start = tokio::time::Instant::now();
    while status.syncs().iter().any(|sync| sync.state == "syncing") && start.elapsed() < START_LIMIT
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_table(audited: &Audit) {
    let total = audited.totals();
    for report in &audited.reports {
        for r in &report.results {
            if matches!(r.result, "fail" | "warn" | "error") {
                let resource = r.resources.first();
                let field = |key: &str| {
                    resource
                        .and_then(|v| v.get(key))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                };
                let namespace = field("namespace");
                let object = if namespace.is_empty() {
                    format!("{} {}", field("kind"), field("name"))
                } else {
                    format!("{} {namespace}/{}", field("kind"), field("name"))
                };
                let rule = if r.rule.is_empty() || r.rule == r.policy {
                    r.policy.clone()
                } else {
                    format!("{}/{}", r.policy, r.rule)
                };
                let enforcing = if r.enforcing { " (enforcing)" } else { "" };
                outln!(
                    "{:<5} {object}: {rule}{enforcing}: {}",
                    r.result.to_uppercase(),
                    r.message
                );
            }
        }
    }
    outln!(
        "{} resources: {} pass, {} fail, {} warn, {} error, {} skip; {} enforcing failures, {} enforcing errors",
        audited.resources,
        total.pass,
        total.fail,
        total.warn,
        total.error,
        total.skip,
        audited.enforcing_failures,
        audited.enforcing_errors
    );
}
