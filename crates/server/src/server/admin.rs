//! The plain-HTTP admin listener: `/healthz`, `/readyz`, `/metrics`, `/status`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// The router of the admin listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once a policy set is active (and, with `--ready-after-syncs`, every cluster sync has listed and none is
/// failing), and until shutdown starts.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match state.store.current() {
        Some(_) if state.ready_after_syncs && !waiting_for(&state).is_empty() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: waiting for cluster syncs: {}\n",
                waiting_for(&state).join(", ")
            ),
        )
            .into_response(),
        Some(set) => (
            StatusCode::OK,
            format!("ready: policy set generation {}\n", set.generation()),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no policy set loaded yet\n",
        )
            .into_response(),
    }
}

/// The cluster syncs readiness waits for (with `--ready-after-syncs`): every one not listed yet or failing, except a
/// kind the API server does not serve (a note, never a reason to stay unready).
fn waiting_for(state: &AppState) -> Vec<String> {
    state
        .sources
        .syncs()
        .into_iter()
        .filter(|sync| sync.state != "synced" && sync.state != "not served")
        .map(|sync| format!("{} ({})", sync.name, sync.state))
        .collect()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// The active policy set (generation, hash, policies), the last rejected load and the sources, as JSON.
async fn status(State(state): State<AppState>) -> Response {
    axum::Json(crate::sources::StatusReport::new(
        &state.store,
        &state.sources,
    ))
    .into_response()
}
