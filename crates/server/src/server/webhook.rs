//! The admission endpoints: `POST /validate` and `POST /mutate`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use tracing::{field, Instrument, Span};

use super::conn::Phase;
use super::evaluator::{Evaluator, Started};
use super::AppState;
use crate::admission::{self, encode_response, Review, MAX_BODY_BYTES};
use crate::decide::Decision;
use crate::logtext;
use crate::pipeline::{self, Webhook};
use crate::policy::{EvalContext, EvalError, FailurePolicy, PolicySet};

/// The handlers' state: the server's, and the threads that evaluate.
#[derive(Clone)]
struct WebhookState {
    app: AppState,
    /// `None` only when no evaluation thread could be started: tokio's blocking pool evaluates instead.
    evaluator: Option<Arc<Evaluator>>,
}

/// The router of the TLS listener, with one evaluation thread per evaluation slot of `state.limiter`.
pub fn router(state: AppState) -> Router {
    let threads = state.limiter.available_permits();
    let evaluator = match Evaluator::new(threads) {
        Ok(evaluator) => Some(Arc::new(evaluator)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot start the evaluation threads: evaluating on the blocking pool");
            None
        }
    };
    router_with(state, evaluator)
}

/// The router of the TLS listener, evaluating on `evaluator` (`None`: on tokio's blocking pool).
pub fn router_with(state: AppState, evaluator: Option<Arc<Evaluator>>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .fallback(not_found)
        .with_state(WebhookState {
            app: state,
            evaluator,
        })
}

async fn validate(State(state): State<WebhookState>, request: Request) -> Response {
    handle(state, Webhook::Validate, request).await
}

async fn mutate(State(state): State<WebhookState>, request: Request) -> Response {
    handle(state, Webhook::Mutate, request).await
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

/// Why a request was answered before its body became a review.
enum Refusal {
    /// 415: the body is not declared as JSON.
    MediaType,
    /// 413: the body is (or is declared) larger than the limit.
    TooLarge,
    /// 400: the body could not be read.
    Unreadable(axum::Error),
    /// 408: the body did not arrive in time.
    Timeout(std::time::Duration),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable(_) => StatusCode::BAD_REQUEST,
            Refusal::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::MediaType => {
                "Content-Type must be application/json (an AdmissionReview)".to_string()
            }
            Refusal::TooLarge => {
                format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes")
            }
            Refusal::Unreadable(err) => format!("cannot read the request body: {err}"),
            Refusal::Timeout(limit) => {
                format!("the request body did not arrive within {limit:?}")
            }
        }
    }
}

/// `Content-Type: application/json`, parameters (`; charset=utf-8`) allowed, case-insensitive.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

/// The declared length, when there is one that parses.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

/// Read the whole body, refusing it as soon as it is known to be larger than the limit: from a declared
/// `Content-Length` before reading anything, else once the bytes read pass the limit.
///
/// An unread body is simply dropped: HTTP/1.1 closes the connection after the answer; HTTP/2 sends the answer and then
/// ends the stream with `RST_STREAM(NO_ERROR)` (RFC 9113 §8.1), the connection stays usable.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Refusal> {
    if !is_json(headers) {
        return Err(Refusal::MediaType);
    }
    let declared = content_length(headers);
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(Refusal::TooLarge);
    }
    let capacity = declared.map_or(0, |len| usize::try_from(len).unwrap_or(0));
    let mut bytes = Vec::with_capacity(capacity.min(MAX_BODY_BYTES));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => return Err(Refusal::Unreadable(err)),
        };
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Refusal::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn handle(state: WebhookState, webhook: Webhook, request: Request) -> Response {
    let WebhookState {
        app: state,
        evaluator,
    } = state;
    // The request arrived when its head did: reading the body counts against its deadline.
    let start = Instant::now();
    let (parts, body) = request.into_parts();
    let limit = state.limits.body_read_timeout;
    let read = tokio::time::timeout(limit, read_body(&parts.headers, body))
        .await
        .unwrap_or_else(|_| {
            state
                .metrics
                .connection_timeouts("webhook", Phase::Body)
                .inc();
            Err(Refusal::Timeout(limit))
        });
    // Held until the request is answered: memory goes back to the system after large ones (see `memory`).
    let _large = match &read {
        Ok(body) => state.reclaim.large(body.len()),
        Err(Refusal::TooLarge) => state.reclaim.large(MAX_BODY_BYTES),
        Err(_) => None,
    };
    let body = match read {
        Ok(body) => body,
        Err(refusal) => {
            state
                .metrics
                .record_request(webhook, "", "", "invalid", start.elapsed());
            tracing::debug!(status = refusal.status().as_u16(), "refused a request body");
            return text(refusal.status(), refusal.message());
        }
    };
    let small = body.len() <= super::inline::MAX_BODY_BYTES;
    let review = match admission::decode(&body) {
        Ok(review) => review,
        Err(err) => {
            state
                .metrics
                .record_request(webhook, "", "", "invalid", start.elapsed());
            // A parse error can quote the body: bounded and escaped like any request text.
            let reason = err.to_string();
            let reason = logtext::message(&reason);
            tracing::debug!(
                error = reason.as_ref(),
                "rejected an unreadable AdmissionReview"
            );
            return text(StatusCode::BAD_REQUEST, reason);
        }
    };
    // Every request-derived field goes through `logtext` and is recorded as a string (never `%` Display): bounded,
    // escaped, and quoted by each log format. Nothing from the object itself is in the span.
    let span = tracing::info_span!(
        "admission",
        webhook = webhook.as_str(),
        uid = logtext::field(&review.uid).as_ref(),
        kind = logtext::field(&review.kind.kind).as_ref(),
        namespace = logtext::field(review.namespace.as_deref().unwrap_or("")).as_ref(),
        name = logtext::field(&review.name).as_ref(),
        user = logtext::field(&review.user_info.username).as_ref(),
        operation = review.operation_str(),
        decision = field::Empty,
        generation = field::Empty,
    );
    answer(state, evaluator, webhook, review, small, start)
        .instrument(span)
        .await
}

async fn answer(
    state: AppState,
    evaluator: Option<Arc<Evaluator>>,
    webhook: Webhook,
    review: Review,
    small: bool,
    start: Instant,
) -> Response {
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
    // One deadline for the whole request, counted from its arrival: queueing for a slot uses it up too.
    let ctx = state.settings.context(start);
    let failure_policy = state.settings.failure_policy;
    let deadline = tokio::time::Instant::from_std(ctx.deadline.instant());
    let (version, uid, kind) = (review.version, review.uid.clone(), review.kind.kind.clone());
    // Evaluate, record, log and encode on an evaluating thread: the review moves there and is answered and dropped
    // there, so the engines' copies of it are freed by the thread that made them and the async workers only carry
    // bytes.
    let span = Span::current();
    let task_state = state.clone();
    let evaluate = move |(set, review, ctx): (Arc<PolicySet>, Review, EvalContext)| {
        let _entered = span.enter();
        let decision = pipeline::run_with(&set, &review, webhook, &ctx, failure_policy);
        conclude(&task_state, webhook, &review, decision, start)
    };
    // A request that got no evaluation slot before its deadline is decided without evaluating: each policy it would
    // have reached reports a time-out, under its failure policy (cheap enough to do right here).
    let unevaluated = |(set, review, ctx): (Arc<PolicySet>, Review, EvalContext)| {
        tracing::warn!("no evaluation slot before the request deadline");
        let decision = pipeline::run_with(&set, &review, webhook, &ctx, failure_policy);
        conclude(&state, webhook, &review, decision, start)
    };
    let failed = |reason: &str| {
        failed_evaluation(
            &state, webhook, operation, &kind, version, &uid, start, reason,
        )
    };
    let encoded = match evaluator {
        // First, a short attempt right here (see `inline`): most reviews are decided well within its budget, without
        // two hand-offs between threads. An attempt that runs out of its budget or needs a blocking read is thrown
        // away and the review goes on to an evaluation thread.
        Some(evaluator) => {
            let tried = if small {
                let tried = state.inline.attempt(ctx.deadline.instant(), |cut| {
                    let attempt = EvalContext {
                        deadline: ctx.deadline.no_later_than(cut),
                        ..ctx.clone()
                    };
                    let decision =
                        pipeline::run_with(&set, &review, webhook, &attempt, failure_policy);
                    // Any error, not only a time-out: an engine's report of a deadline passed need not be
                    // classified as one for the attempt to be thrown away.
                    let in_doubt = decision.has_errors();
                    (decision, in_doubt)
                });
                state.metrics.inline_attempt(tried.label()).inc();
                tried.answered()
            } else {
                None
            };
            match tried {
                Some(decision) => conclude(&state, webhook, &review, decision, start),
                // Evaluations run on the evaluation threads, one per slot; waiting requests queue there, in order,
                // until their deadline.
                None => match evaluator
                    .run_before((set, review, ctx), deadline, evaluate)
                    .await
                {
                    Ok(Started::Done(encoded)) => encoded,
                    Ok(Started::NotStarted(payload)) => unevaluated(payload),
                    Err(err) => failed(&err.to_string()),
                },
            }
        }
        // Bound the evaluations running at once; waiting requests queue here, off the blocking pool, until their
        // deadline.
        None => {
            match tokio::time::timeout_at(deadline, state.limiter.clone().acquire_owned()).await {
                Ok(Ok(permit)) => {
                    let payload = (set, review, ctx);
                    let joined = tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        evaluate(payload)
                    })
                    .await;
                    match joined {
                        Ok(encoded) => encoded,
                        Err(err) => failed(&err.to_string()),
                    }
                }
                _ => unevaluated((set, review, ctx)),
            }
        }
    };
    match encoded {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// The evaluation task itself failed: answer under the server's failure policy, recorded and logged like any decision.
#[allow(clippy::too_many_arguments)]
fn failed_evaluation(
    state: &AppState,
    webhook: Webhook,
    operation: &'static str,
    kind: &str,
    version: admission::ReviewVersion,
    uid: &str,
    start: Instant,
    reason: &str,
) -> Result<Vec<u8>, admission::EncodeError> {
    let decision = internal_failure(state, reason);
    Span::current().record("decision", decision.verdict().as_str());
    state
        .metrics
        .record_decision(webhook, operation, kind, &decision, start.elapsed());
    log_decision(&decision);
    admission::encode_answer(version, uid, decision.response())
}

/// Record, log and encode the answer to `review`.
fn conclude(
    state: &AppState,
    webhook: Webhook,
    review: &Review,
    decision: Decision,
    start: Instant,
) -> Result<Vec<u8>, admission::EncodeError> {
    Span::current().record("decision", decision.verdict().as_str());
    state.metrics.record_decision(
        webhook,
        review.operation_str(),
        &review.kind.kind,
        &decision,
        start.elapsed(),
    );
    log_decision(&decision);
    encode_response(review, decision.response())
}

/// The evaluation task itself failed (it cannot panic: policies run contained). Follow the server's failure policy.
fn internal_failure(state: &AppState, reason: &str) -> Decision {
    tracing::error!(
        error = logtext::message(reason).as_ref(),
        "evaluation task failed"
    );
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

/// Log a decision. At `info` and above: which policies denied, which failed and how (`error` or `timeout`), and how
/// many audit-only violations; never a message that may quote the object (denials, warnings, audit findings, the
/// engines' error texts), which are at `debug`, bounded and escaped.
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
    for run in &decision.runs {
        let policy = run.policy.info().name.as_str();
        for failure in &run.outcome.errors {
            let result = failure.error.label();
            match &failure.error {
                // Our own words: no request content.
                EvalError::Timeout(_) | EvalError::MissingContext(_) => {
                    let error = failure.error.to_string();
                    tracing::warn!(
                        policy,
                        result,
                        error = error.as_str(),
                        "policy evaluation failed"
                    );
                }
                // An engine's or a panic's text can quote the object.
                _ => {
                    tracing::warn!(
                        policy,
                        result,
                        "policy evaluation failed (the error text is logged at debug level)"
                    );
                    let error = failure.error.to_string();
                    tracing::debug!(
                        policy,
                        error = logtext::message(&error).as_ref(),
                        "policy evaluation error"
                    );
                }
            }
        }
    }
    if !decision.audits.is_empty() {
        tracing::info!(
            violations = decision.audits.len(),
            "audit-only violations recorded"
        );
        for line in &decision.audits {
            tracing::debug!(
                violation = logtext::message(line).as_ref(),
                "audit violation"
            );
        }
    }
    tracing::debug!(
        denials = ?logtext::messages(&decision.denials),
        warnings = ?logtext::messages(&decision.warnings),
        "decision details"
    );
}
