//! The admission endpoints: `POST /validate` and `POST /mutate`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tracing::{field, Instrument, Span};

use super::AppState;
use crate::admission::{self, encode_response, Review, MAX_BODY_BYTES};
use crate::decide::Decision;
use crate::pipeline::{self, Webhook};
use crate::policy::{EvalError, FailurePolicy};

/// The router of the TLS listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn validate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    handle(state, Webhook::Validate, body).await
}

async fn mutate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    handle(state, Webhook::Mutate, body).await
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found: the webhook serves POST /validate and POST /mutate",
    )
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut line = message.into();
    line.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        line,
    )
        .into_response()
}

async fn handle(
    state: AppState,
    webhook: Webhook,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            state
                .metrics
                .record_request(webhook, "", "", "invalid", start.elapsed());
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes")
            } else {
                format!("cannot read the request body: {}", rejection.body_text())
            };
            return text(status, message);
        }
    };
    let review = match admission::decode(&body) {
        Ok(review) => review,
        Err(err) => {
            state
                .metrics
                .record_request(webhook, "", "", "invalid", start.elapsed());
            tracing::debug!(error = %err, "rejected an unreadable AdmissionReview");
            return text(StatusCode::BAD_REQUEST, err.to_string());
        }
    };
    let span = tracing::info_span!(
        "admission",
        webhook = webhook.as_str(),
        uid = %review.uid,
        kind = %review.kind.kind,
        namespace = review.namespace.as_deref().unwrap_or(""),
        name = %review.name,
        operation = review.operation_str(),
        decision = field::Empty,
        generation = field::Empty,
    );
    answer(state, webhook, review, start).instrument(span).await
}

async fn answer(state: AppState, webhook: Webhook, review: Review, start: Instant) -> Response {
    let operation = review.operation_str();
    let Some(set) = state.store.current() else {
        state.metrics.record_request(
            webhook,
            operation,
            &review.kind.kind,
            "unavailable",
            start.elapsed(),
        );
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no policy set is loaded yet",
        );
    };
    Span::current().record("generation", set.generation());
    let review = Arc::new(review);
    // One deadline for the whole request, counted from its arrival: queueing for a slot uses it up too.
    let ctx = state.settings.context(start);
    let failure_policy = state.settings.failure_policy;
    let decision = {
        // Bound the evaluations running at once; waiting requests queue here, off the blocking pool, until their
        // deadline. One that gets no slot in time is decided without evaluating: each policy it would have reached
        // reports a time-out, under its failure policy (cheap enough to do right here).
        let deadline = tokio::time::Instant::from_std(ctx.deadline.instant());
        let acquired =
            tokio::time::timeout_at(deadline, state.limiter.clone().acquire_owned()).await;
        match acquired {
            Ok(Ok(permit)) => {
                let review = review.clone();
                let span = Span::current();
                let joined = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let _entered = span.enter();
                    pipeline::run_with(&set, &review, webhook, &ctx, failure_policy)
                })
                .await;
                match joined {
                    Ok(decision) => decision,
                    Err(err) => internal_failure(&state, &err.to_string()),
                }
            }
            _ => {
                tracing::warn!("no evaluation slot before the request deadline");
                pipeline::run_with(&set, &review, webhook, &ctx, failure_policy)
            }
        }
    };
    let verdict = decision.verdict();
    Span::current().record("decision", verdict.as_str());
    state.metrics.record_decision(
        webhook,
        operation,
        &review.kind.kind,
        &decision,
        start.elapsed(),
    );
    log_decision(&decision);
    match encode_response(&review, decision.response()) {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// The evaluation task itself failed (it cannot panic: policies run contained). Follow the server's failure policy.
fn internal_failure(state: &AppState, reason: &str) -> Decision {
    tracing::error!(error = %reason, "evaluation task failed");
    let line = format!("[policyctl] {}", EvalError::Panic(reason.to_string()));
    let fail_closed = state.settings.failure_policy == FailurePolicy::Fail;
    Decision {
        allowed: !fail_closed,
        denials: if fail_closed {
            vec![line.clone()]
        } else {
            Vec::new()
        },
        errors: vec![line],
        ..Decision::default()
    }
}

fn log_decision(decision: &Decision) {
    let denied_by: Vec<&str> = decision
        .runs
        .iter()
        .filter(|run| run.outcome.denies())
        .map(|run| run.policy.info().name.as_str())
        .collect();
    if !decision.allowed {
        tracing::info!(policies = ?denied_by, "denied");
    } else {
        tracing::debug!(warnings = decision.warnings.len(), "allowed");
    }
    for line in &decision.errors {
        tracing::warn!(error = %line, "policy evaluation failed");
    }
    if !decision.audits.is_empty() {
        tracing::info!(
            violations = decision.audits.len(),
            "audit-only violations recorded"
        );
        for line in &decision.audits {
            tracing::debug!(violation = %line, "audit violation");
        }
    }
    tracing::debug!(denials = ?decision.denials, warnings = ?decision.warnings, "decision details");
}
