//! `policyctl serve`: the HTTPS admission webhook and its plain-HTTP admin listener.
//!
//! [`Server::bind`] opens both sockets and loads the certificate (so a test can learn the ports); [`Server::run`]
//! starts the policy [`sources`](crate::sources) (which load the policies and follow their changes), serves until
//! the shutdown future completes, then stops accepting and drains in-flight requests for up to the drain timeout.

pub mod admin;
pub mod conn;
pub mod evaluator;
pub mod inline;
pub mod memory;
pub mod tls;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::Semaphore;

use crate::engine::LoadOptions;
use crate::metrics::Metrics;
use crate::pipeline::Settings;
use crate::policy::loader;
use crate::policy::store::PolicyStore;
use crate::policy::{FailurePolicy, NoCluster};
use crate::sources::{Publisher, Sources, SourcesConfig, SourcesStatus};

pub use conn::ConnectionLimits;

/// Everything `serve` needs, already validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address of the HTTPS webhook listener.
    pub addr: SocketAddr,
    /// Address of the plain-HTTP admin listener.
    pub admin_addr: SocketAddr,
    /// PEM certificate (chain) file.
    pub tls_cert: PathBuf,
    /// PEM private key file.
    pub tls_key: PathBuf,
    /// How often the certificate files are re-read.
    pub tls_reload_interval: Duration,
    /// The policy directory (the default directory source; see [`Server::with_sources`]).
    pub policies: PathBuf,
    /// Failure policy for policies without their own.
    pub failure_policy: FailurePolicy,
    /// Evaluations running at once; more requests wait.
    pub max_concurrency: usize,
    /// Time limit of one policy evaluation (a cap inside the request's deadline).
    pub eval_timeout: Duration,
    /// Run the Rego of Gatekeeper templates that carry both Rego and CEL ([`LoadOptions::prefer_rego`]).
    pub prefer_rego: bool,
    /// Deadline of one request, from its arrival.
    pub request_timeout: Duration,
    /// The budget of a review's first attempt on an async worker (`None`: every review goes to an evaluation thread;
    /// see [`inline`]).
    pub inline_budget: Option<Duration>,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub drain_timeout: Duration,
    /// Time limits of every connection phase and the connection cap (both listeners).
    pub connections: ConnectionLimits,
    /// Whether `/readyz` also waits for every cluster context sync to have listed (and none to be failing).
    pub ready_after_syncs: bool,
    /// Where `policyctl_log_lines_dropped_total` reads the log writer's count of dropped lines (`None`: stays 0).
    pub log_drops: Option<crate::metrics::LogDrops>,
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("{listener} listener failed: {source}")]
    Serve {
        /// `webhook` or `admin`.
        listener: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The evaluation threads could not start.
    #[error("cannot start the evaluation threads: {0}")]
    EvaluationThreads(#[source] std::io::Error),
    /// The policy sources could not start.
    #[error(transparent)]
    Sources(#[from] crate::sources::SourceError),
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The active policy set.
    pub store: Arc<PolicyStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The evaluation slots: `webhook::router` starts one evaluation thread per permit (the server passes its own
    /// evaluation threads, one per `max_concurrency`); without evaluation threads, evaluations hold a permit.
    pub limiter: Arc<Semaphore>,
    /// Pipeline settings.
    pub settings: Settings,
    /// Set when shutdown starts (readiness turns false).
    pub draining: Arc<AtomicBool>,
    /// What the policy sources are doing (admin `/status`).
    pub sources: Arc<SourcesStatus>,
    /// Connection limits; the handler enforces the body timeout.
    pub limits: ConnectionLimits,
    /// Whether readiness waits for every cluster context sync.
    pub ready_after_syncs: bool,
    /// Gives memory back after large requests.
    pub reclaim: Arc<memory::Reclaim>,
    /// First attempts on the async workers (used with evaluation threads only).
    pub inline: Arc<inline::Inline>,
}

/// A bound, not yet running server.
pub struct Server {
    config: ServeConfig,
    webhook_listener: std::net::TcpListener,
    admin_listener: std::net::TcpListener,
    cert: Arc<tls::ReloadingCert>,
    state: AppState,
    sources: Sources,
}

impl Server {
    /// Load the certificate and bind both listeners.
    pub fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        let cert = tls::ReloadingCert::load(&config.tls_cert, &config.tls_key)?;
        let webhook_listener = bind(config.addr)?;
        let admin_listener = bind(config.admin_addr)?;
        let metrics = Metrics::new();
        if let Some(drops) = &config.log_drops {
            metrics.watch_log_drops(drops.clone());
        }
        let state = AppState {
            store: Arc::new(PolicyStore::new()),
            metrics: Arc::new(metrics),
            limiter: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            settings: Settings {
                request_timeout: config.request_timeout,
                cluster: Arc::new(NoCluster),
                failure_policy: config.failure_policy,
            },
            draining: Arc::new(AtomicBool::new(false)),
            sources: Arc::new(SourcesStatus::new()),
            limits: config.connections,
            ready_after_syncs: config.ready_after_syncs,
            reclaim: memory::Reclaim::new(),
            // One fewer attempt slot than the runtime has workers: one worker always stays free.
            inline: Arc::new(inline::Inline::for_workers(
                config.inline_budget,
                tokio::runtime::Handle::try_current()
                    .map(|h| h.metrics().num_workers())
                    .unwrap_or(1),
            )),
        };
        let sources = Sources::new(SourcesConfig::directory(config.policies.clone()));
        Ok(Server {
            config,
            webhook_listener,
            admin_listener,
            cert,
            state,
            sources,
        })
    }

    /// Replace the policy sources (by default: the `policies` directory of the config, polled).
    pub fn with_sources(mut self, sources: Sources) -> Server {
        self.sources = sources;
        self
    }

    /// The webhook listener's address (useful when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.webhook_listener
            .local_addr()
            .unwrap_or(self.config.addr)
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.config.admin_addr)
    }

    /// The handlers' shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` completes, then drain and return.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            config,
            webhook_listener,
            admin_listener,
            cert,
            state,
            sources,
        } = self;
        let webhook_addr = webhook_listener.local_addr().unwrap_or(config.addr);
        let admin_addr = admin_listener.local_addr().unwrap_or(config.admin_addr);

        let publisher = Publisher::new(
            state.store.clone(),
            state.metrics.clone(),
            LoadOptions {
                eval_timeout: config.eval_timeout,
                prefer_rego: config.prefer_rego,
                ..LoadOptions::default()
            },
        );
        let sources = sources.start(publisher, state.sources.clone()).await?;
        let mut state = state;
        if let Some(cluster) = sources.cluster() {
            state.settings.cluster = cluster;
        }
        let expiry = state.metrics.tls_certificate_expiry.clone();
        expiry.set(cert.not_after().unwrap_or(0));
        let cert_watch = tokio::spawn(cert.clone().watch_with(
            config.tls_reload_interval,
            move |cert| {
                expiry.set(cert.not_after().unwrap_or(0));
            },
        ));

        let reclaim = tokio::spawn(state.reclaim.clone().run(memory::INTERVAL));

        let rustls_config = RustlsConfig::from_config(Arc::new(cert.server_config()?));
        let handle = axum_server::Handle::new();
        let limits = config.connections;
        // TCP_NODELAY: answers are small and latency-bound; never wait on Nagle. The guard bounds every phase of a
        // connection (its own handshake timer runs first; rustls's is only a backstop).
        let tls = axum_server::tls_rustls::RustlsAcceptor::new(rustls_config)
            .handshake_timeout(limits.tls_handshake_timeout.saturating_mul(2))
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        let acceptor = conn::Guard::new(tls, limits, &state.metrics, "webhook");
        let mut webhook_server = axum_server::from_tcp(webhook_listener)
            .map_err(|source| ServeError::Bind {
                addr: webhook_addr,
                source,
            })?
            .acceptor(acceptor)
            .handle(handle.clone());
        // hyper's own header timer also runs on idle keep-alive connections (it would close them after the header
        // timeout): the guard times the headers instead.
        webhook_server
            .http_builder()
            .http1()
            .header_read_timeout(None);
        // One evaluation thread per evaluation slot.
        let evaluator = evaluator::Evaluator::new(config.max_concurrency.max(1))
            .map_err(ServeError::EvaluationThreads)?;
        let router = webhook::router_with(state.clone(), Some(Arc::new(evaluator)));
        let webhook_task = tokio::spawn(webhook_server.serve(router.into_make_service()));

        let admin = Admin::spawn(admin_listener, state.clone())?;

        let sources_text: Vec<String> = state
            .sources
            .snapshot()
            .into_iter()
            .map(|s| s.description)
            .collect();
        tracing::info!(%webhook_addr, %admin_addr, sources = ?sources_text, "serving");
        shutdown.await;

        tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down: draining in-flight requests");
        state.draining.store(true, Ordering::SeqCst);
        handle.graceful_shutdown(Some(config.drain_timeout));
        let webhook_result = webhook_task.await;
        let admin_result = admin.stop().await;
        cert_watch.abort();
        reclaim.abort();
        sources.stop();
        flatten("webhook", webhook_result)?;
        admin_result?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A running admin listener (`/healthz`, `/readyz`, `/metrics`, `/status`), with the connection guard of
/// [`ServeConfig::connections`] taken from the state's limits. `policyctl serve` runs one next to the webhook;
/// `policyctl audit --cluster` runs one alone.
pub struct Admin {
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("addr", &self.addr).finish()
    }
}

impl Admin {
    /// Bind `addr` (port 0: any free port).
    pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
        bind(addr)
    }

    /// Serve the admin router on `listener` (bound by [`Admin::bind`]) on the current runtime.
    pub fn spawn(listener: std::net::TcpListener, state: AppState) -> Result<Admin, ServeError> {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let handle = axum_server::Handle::new();
        let acceptor = conn::Guard::new(
            axum_server::accept::DefaultAcceptor::new(),
            state.limits,
            &state.metrics,
            "admin",
        );
        let mut server = axum_server::from_tcp(listener)
            .map_err(|source| ServeError::Bind { addr, source })?
            .acceptor(acceptor)
            .handle(handle.clone());
        server.http_builder().http1().header_read_timeout(None);
        let task = tokio::spawn(server.serve(admin::router(state).into_make_service()));
        Ok(Admin { handle, task, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, give open requests a second, and return how serving ended.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        flatten("admin", self.task.await)
    }
}

fn flatten(
    listener: &'static str,
    joined: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    match joined {
        Ok(result) => result.map_err(|source| ServeError::Serve { listener, source }),
        Err(err) => Err(ServeError::Serve {
            listener,
            source: std::io::Error::other(err.to_string()),
        }),
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(listener)
}

/// Load the directory once, off the request path, and publish the result (no change tracking: [`Server::run`]
/// starts the [`sources`](crate::sources) instead).
pub async fn load_policies(state: AppState, dir: PathBuf, eval_timeout: Duration) {
    let publisher = Publisher::new(
        state.store.clone(),
        state.metrics.clone(),
        LoadOptions {
            eval_timeout,
            ..LoadOptions::default()
        },
    );
    let loaded = tokio::task::spawn_blocking(move || match loader::read_dir(&dir) {
        Ok(files) => publisher.publish_files(&files).map(|_| ()),
        Err(errors) => Err(publisher.reject(errors)),
    })
    .await;
    if let Err(err) = loaded {
        tracing::error!(error = %err, "policy load task failed");
        state.metrics.policy_load_errors.inc();
    }
}
