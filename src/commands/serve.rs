//! `policyctl serve`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::certs;
use crate::cli::ServeArgs;
use crate::cluster::ClusterOptions;
use crate::server::{ConnectionLimits, ServeConfig, Server};
use crate::sources::{ConfigMapSelector, Sources, SourcesConfig};

pub fn run(args: ServeArgs, log_drops: crate::metrics::LogDrops) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        addr,
        tls_cert,
        tls_key,
        tls_reload_interval,
        policies,
        policies_poll_interval,
        configmap_selector,
        configmap_namespace,
        cluster_context,
        allow_empty_policy_set,
        ready_after_syncs,
        admin_addr,
        failure_policy,
        max_concurrency,
        eval_timeout,
        request_timeout,
        inline_budget,
        drain_timeout,
        tls_handshake_timeout,
        header_read_timeout,
        body_read_timeout,
        idle_timeout,
        max_connections,
        engine,
    } = args;
    let (tls_cert, tls_key) = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        _ => throwaway_certificate()?,
    };
    let max_concurrency = max_concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    // Without a ConfigMap selector the directory defaults to `policies`; with one, a directory is only read when given.
    let directory = match (&policies, &configmap_selector) {
        (Some(dir), _) => Some(dir.clone()),
        (None, None) => Some(PathBuf::from("policies")),
        (None, Some(_)) => None,
    };
    let sources = SourcesConfig {
        directory: directory.clone(),
        configmaps: configmap_selector.map(|labels| ConfigMapSelector {
            labels,
            namespace: configmap_namespace,
        }),
        poll_interval: policies_poll_interval,
        cluster_context: cluster_context.then(ClusterOptions::default),
        allow_empty_policy_set,
        ..SourcesConfig::default()
    };
    let config = ServeConfig {
        addr,
        admin_addr,
        tls_cert,
        tls_key,
        tls_reload_interval,
        policies: directory.unwrap_or_default(),
        failure_policy,
        max_concurrency,
        eval_timeout,
        prefer_rego: engine.prefer_rego,
        request_timeout,
        // Zero turns attempts off (`Inline::new`).
        inline_budget: Some(inline_budget),
        drain_timeout,
        connections: ConnectionLimits {
            tls_handshake_timeout,
            header_read_timeout,
            body_read_timeout,
            idle_timeout,
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        },
        ready_after_syncs,
        log_drops: Some(log_drops),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = runtime.block_on(async move {
        let server = Server::bind(config)?.with_sources(Sources::new(sources));
        server.run(shutdown_signal()).await
    });
    // Blocking evaluation threads end at their request's deadline; never wait past the drain time for one.
    runtime.shutdown_timeout(drain_timeout);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// A certificate for localhost in a fresh temporary directory, for trying the webhook out.
fn throwaway_certificate() -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("policyctl-{}", std::process::id()));
    let generated = certs::generate(
        &["localhost".to_string()],
        &["127.0.0.1".parse()?, "::1".parse()?],
        Duration::from_secs(7 * 24 * 3600),
        Duration::from_secs(7 * 24 * 3600),
    )?;
    let written = certs::write(&dir, &generated)?;
    tracing::warn!(
        cert = %written.cert.display(),
        ca = %written.ca.display(),
        "no --tls-cert/--tls-key given: serving a throwaway certificate for localhost; trust its CA to connect"
    );
    Ok((written.cert, written.key))
}

/// Completes on SIGTERM or SIGINT.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
