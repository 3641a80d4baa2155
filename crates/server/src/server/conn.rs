//! Time limits on every phase of a connection, and a cap on open connections.
//!
//! A [`Guard`] acceptor wraps a listener's acceptor (TLS for the webhook, none for the admin port):
//!
//! - **cap**: a connection over [`ConnectionLimits::max_connections`] is closed at once, before any TLS work;
//! - **TLS handshake**: it must complete within [`ConnectionLimits::tls_handshake_timeout`];
//! - **request headers**: a new connection must deliver its first request within
//!   [`ConnectionLimits::header_read_timeout`]; on HTTP/1.1 so must every later request, counted from its first byte;
//! - **request body**: the whole body within [`ConnectionLimits::body_read_timeout`] of the head (enforced by the
//!   handler, which answers 408);
//! - **idle**: a connection with no request in flight is closed [`ConnectionLimits::idle_timeout`] after its last
//!   answer (HTTP/2 pings do not keep it open). A request in flight is never cut by these timers: its own deadline
//!   bounds it.
//!
//! The connection's stream ([`Guarded`]) and its service ([`Tracked`]) share one [`ConnState`]: the service counts the
//! requests in flight, the stream sets the timer that applies and closes the connection (an I/O error to hyper) when
//! it fires.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::http::Request;
use axum_server::accept::Accept;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// Time limits and the connection cap of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Longest wait for a request's head: a new connection's first request, and on HTTP/1.1 every request from its
    /// first byte.
    pub header_read_timeout: Duration,
    /// Longest wait for a whole request body, from the head.
    pub body_read_timeout: Duration,
    /// How long a connection with no request in flight stays open after its last answer.
    pub idle_timeout: Duration,
    /// Most connections open at once; more are closed on arrival.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// 10 s for the handshake, the headers and the body; 120 s idle (longer than the 90 s after which Go clients such
    /// as the API server drop an idle connection themselves, so the client closes first and never races a request
    /// against our close); 512 connections (the API server multiplexes requests over a few HTTP/2 connections).
    fn default() -> Self {
        ConnectionLimits {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 512,
        }
    }
}

/// The connection phase a timer ended (the `phase` label of `policyctl_connection_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TLS handshake.
    Handshake,
    /// Waiting for a request head.
    Headers,
    /// Reading a request body.
    Body,
    /// No request in flight.
    Idle,
}

impl Phase {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::Headers => "headers",
            Phase::Body => "body",
            Phase::Idle => "idle",
        }
    }
}

/// The metrics of one listener.
#[derive(Clone, Debug)]
struct ListenerMetrics {
    open: Gauge,
    rejected: Counter,
    timeouts: [Counter; 4],
}

impl ListenerMetrics {
    fn new(metrics: &Metrics, listener: &'static str) -> Self {
        let phases = [Phase::Handshake, Phase::Headers, Phase::Body, Phase::Idle];
        ListenerMetrics {
            open: metrics.connections_open(listener),
            rejected: metrics.connections_rejected(listener),
            timeouts: phases.map(|phase| metrics.connection_timeouts(listener, phase)),
        }
    }

    fn timed_out(&self, phase: Phase) {
        let index = match phase {
            Phase::Handshake => 0,
            Phase::Headers => 1,
            Phase::Body => 2,
            Phase::Idle => 3,
        };
        self.timeouts[index].inc();
    }
}

/// An acceptor that applies [`ConnectionLimits`] around an inner acceptor (TLS or none).
#[derive(Clone, Debug)]
pub struct Guard<A> {
    inner: A,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    metrics: ListenerMetrics,
}

impl<A> Guard<A> {
    /// Guard the connections of `listener` (`webhook` or `admin`, the metrics label) accepted by `inner`.
    pub fn new(
        inner: A,
        limits: ConnectionLimits,
        metrics: &Metrics,
        listener: &'static str,
    ) -> Self {
        Guard {
            inner,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            metrics: ListenerMetrics::new(metrics, listener),
        }
    }
}

impl<A, I, S> Accept<I, S> for Guard<A>
where
    A: Accept<I, S> + Clone + Send + 'static,
    A::Future: Send,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send,
    A::Service: Send,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Guarded<A::Stream>;
    type Service = Tracked<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        // Taken before any TLS work: a connection over the cap costs nothing but its accept.
        let slot = self.slots.clone().try_acquire_owned();
        let inner = self.inner.clone();
        let limits = self.limits;
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let Ok(permit) = slot else {
                metrics.rejected.inc();
                return Err(io::Error::other("over the connection limit"));
            };
            let slot = Slot::new(permit, metrics.open.clone());
            let accepted =
                tokio::time::timeout(limits.tls_handshake_timeout, inner.accept(stream, service))
                    .await;
            let (stream, service) = match accepted {
                Ok(accepted) => accepted?,
                Err(_) => {
                    metrics.timed_out(Phase::Handshake);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    ));
                }
            };
            let state = Arc::new(ConnState::new(limits));
            let sleep = Box::pin(tokio::time::sleep_until(
                Instant::now() + limits.header_read_timeout,
            ));
            Ok((
                Guarded {
                    inner: stream,
                    state: state.clone(),
                    sleep,
                    expired: None,
                    metrics,
                    _slot: slot,
                },
                Tracked {
                    inner: service,
                    state,
                },
            ))
        })
    }
}

/// A connection's place under the cap, counted in the open-connections gauge while it lives.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, open: Gauge) -> Self {
        open.inc();
        Slot {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// What one connection is doing, shared by its stream and its service.
#[derive(Debug)]
pub struct ConnState {
    limits: ConnectionLimits,
    inner: Mutex<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    in_flight: usize,
    /// When the connection is closed unless a request arrives first, and which phase that ends. `None` while a
    /// request is in flight.
    deadline: Option<(Instant, Phase)>,
    /// Whether the client speaks HTTP/2 (known from its first bytes).
    http2: Option<bool>,
    /// The connection task, woken when the deadline changes from elsewhere.
    waker: Option<Waker>,
}

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl ConnState {
    fn new(limits: ConnectionLimits) -> Self {
        ConnState {
            limits,
            inner: Mutex::new(StateInner {
                in_flight: 0,
                // The first request must arrive within the header timeout.
                deadline: Some((Instant::now() + limits.header_read_timeout, Phase::Headers)),
                http2: None,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StateInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived. On an idle HTTP/1.1 connection they start a request head, which must be complete within the
    /// header timeout. (On HTTP/2, bytes between requests may be pings or settings: the idle timer keeps running.)
    fn on_read(&self, bytes: &[u8]) {
        let mut state = self.lock();
        let http2 = *state.http2.get_or_insert_with(|| {
            let n = bytes.len().min(H2_PREFACE.len());
            H2_PREFACE.starts_with(&bytes[..n])
        });
        if http2 || state.in_flight > 0 {
            return;
        }
        if let Some((at, Phase::Idle)) = state.deadline {
            let headers_by = Instant::now() + self.limits.header_read_timeout;
            state.deadline = Some((at.min(headers_by), Phase::Headers));
        }
    }

    fn request_started(&self) {
        let mut state = self.lock();
        state.in_flight += 1;
        state.deadline = None;
    }

    fn request_finished(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.deadline = Some((Instant::now() + self.limits.idle_timeout, Phase::Idle));
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        }
    }
}

/// A guarded connection stream: closes the connection (an I/O error) when the phase timer of its [`ConnState`]
/// fires.
pub struct Guarded<T> {
    inner: T,
    state: Arc<ConnState>,
    sleep: Pin<Box<Sleep>>,
    expired: Option<Phase>,
    metrics: ListenerMetrics,
    _slot: Slot,
}

impl<T> Guarded<T> {
    /// Called when the inner stream is not ready: `Some(error)` once the current deadline has passed.
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if let Some(phase) = self.expired {
            return Some(timed_out(phase));
        }
        let deadline = {
            let mut state = self.state.lock();
            state.waker = Some(cx.waker().clone());
            state.deadline
        };
        let (at, phase) = deadline?;
        if self.sleep.deadline() != at {
            self.sleep.as_mut().reset(at);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return None;
        }
        self.expired = Some(phase);
        self.metrics.timed_out(phase);
        tracing::debug!(
            phase = phase.as_str(),
            "closing a connection: its timer ran out"
        );
        Some(timed_out(phase))
    }
}

fn timed_out(phase: Phase) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("connection {} timeout", phase.as_str()),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(phase) = this.expired {
            return Poll::Ready(Err(timed_out(phase)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    this.state.on_read(read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.check(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            // A client that stops reading its answers is cut by the same timer.
            Poll::Pending => match this.check(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => match this.check(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => match this.check(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A connection's service, counting its requests in flight in the shared [`ConnState`].
#[derive(Clone, Debug)]
pub struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

/// A request in flight; finished when dropped (answered, failed or cancelled).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>) -> Self {
        state.request_started();
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

impl<S, B> tower_service::Service<Request<B>> for Tracked<S>
where
    S: tower_service::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_flight = InFlight::start(self.state.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let _in_flight = in_flight;
            answer.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(100),
            ..ConnectionLimits::default()
        }
    }

    fn phase(state: &ConnState) -> Option<Phase> {
        state.lock().deadline.map(|(_, phase)| phase)
    }

    #[tokio::test(start_paused = true)]
    async fn http1_bytes_after_an_answer_start_the_header_timer() {
        let state = ConnState::new(limits());
        assert_eq!(phase(&state), Some(Phase::Headers), "first request");
        state.on_read(b"POST /validate HTTP/1.1\r\n");
        state.request_started();
        assert_eq!(phase(&state), None, "in flight: no timer");
        state.request_finished();
        assert_eq!(phase(&state), Some(Phase::Idle));
        tokio::time::advance(Duration::from_secs(50)).await;
        state.on_read(b"P");
        let (at, phase) = state.lock().deadline.expect("a deadline");
        assert_eq!(phase, Phase::Headers);
        assert_eq!(at, Instant::now() + Duration::from_secs(10));
        // More bytes do not extend it.
        tokio::time::advance(Duration::from_secs(5)).await;
        state.on_read(b"OST");
        assert_eq!(state.lock().deadline.map(|(at, _)| at), Some(at));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_between_requests_keep_the_idle_timer() {
        let state = ConnState::new(limits());
        state.on_read(H2_PREFACE);
        state.request_started();
        state.request_started();
        state.request_finished();
        assert_eq!(phase(&state), None, "one stream still in flight");
        state.request_finished();
        let idle = state.lock().deadline;
        assert_eq!(idle.map(|(_, phase)| phase), Some(Phase::Idle));
        state.on_read(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00ping....");
        assert_eq!(
            state.lock().deadline,
            idle,
            "a ping does not reset or shorten it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadline_never_extends_a_shorter_one() {
        let state = ConnState::new(ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(5),
            ..ConnectionLimits::default()
        });
        state.request_started();
        state.request_finished();
        let idle = state.lock().deadline.map(|(at, _)| at);
        state.on_read(b"GET");
        assert_eq!(state.lock().deadline.map(|(at, _)| at), idle);
    }
}
