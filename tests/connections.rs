//! Slow, silent and too many clients over real sockets on loopback: every connection phase has a timeout (TLS
//! handshake, request headers, request body, idle), a request in flight is never cut by them, keep-alive connections
//! are reused, and connections over the cap are closed on arrival.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use policyctl::server::ConnectionLimits;
use serde_json::{json, Value};
use support::{
    admin_get, client_config, connect, fixture, pod_review, read_response, request, TestServer,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const V1: &str = "admission.k8s.io/v1";
/// Bound on waiting for the server to act on a timer of a few hundred milliseconds: it separates "closed by the
/// timer" from "held open", with a wide margin for a loaded machine.
const WITHIN: Duration = Duration::from_secs(10);

/// Short timers for the phase under test; the others long, so that they cannot be what closed a connection.
fn limits(adjust: impl FnOnce(&mut ConnectionLimits)) -> ConnectionLimits {
    let mut limits = ConnectionLimits {
        tls_handshake_timeout: Duration::from_secs(60),
        header_read_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_connections: 64,
    };
    adjust(&mut limits);
    limits
}

/// Whether the peer closes `stream` within [`WITHIN`] (end of stream or an error), reading and discarding anything.
async fn closed_by_server<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(WITHIN, read).await.is_ok()
}

/// Write one byte every 100 ms until a write fails (the server closed the connection), for at most [`WITHIN`].
async fn trickle<S: AsyncWrite + Unpin>(stream: &mut S, byte: u8) -> bool {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while tokio::time::Instant::now() < deadline {
        if stream.write_all(&[byte]).await.is_err() || stream.flush().await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_cut_at_every_phase() {
    let server = TestServer::start_with(&fixture("rego"), |config| {
        config.connections = limits(|l| {
            l.tls_handshake_timeout = Duration::from_millis(300);
            l.header_read_timeout = Duration::from_millis(500);
            l.body_read_timeout = Duration::from_millis(500);
        });
    })
    .await;
    server.wait_ready(200).await;

    // Handshake: a TCP connection that says nothing, and one that starts a ClientHello and stops.
    let mut silent = TcpStream::connect(server.addr).await.expect("tcp");
    assert!(
        closed_by_server(&mut silent).await,
        "a silent TCP connection was held open"
    );
    let mut stalled = TcpStream::connect(server.addr).await.expect("tcp");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00])
        .await
        .expect("write");
    assert!(
        closed_by_server(&mut stalled).await,
        "a stalled handshake was held open"
    );

    // Headers: a TLS connection that never sends a request.
    let mut quiet = server.connect().await;
    assert!(
        closed_by_server(&mut quiet).await,
        "a connection without a request was held open"
    );

    // Headers: a head sent one byte every 100 ms (slowloris).
    let mut slow = server.connect().await;
    slow.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    assert!(
        trickle(&mut slow, b'a').await,
        "a trickled head kept its connection"
    );

    // Headers, on a kept-alive connection: after an answer, a new head that stops half-way.
    let mut kept = server.connect().await;
    let answered = request(
        &mut kept,
        "POST",
        "/validate",
        &pod_review(V1, "k", "p", json!({"team": "a"}), "x:1"),
    )
    .await;
    assert_eq!(answered.status, 200);
    kept.write_all(b"POST /validate HTTP/1.1\r\nHost: loc")
        .await
        .expect("write");
    assert!(
        closed_by_server(&mut kept).await,
        "a half head after an answer was held open"
    );

    // Body: a complete head, then a body that trickles in; answered 408.
    let review = pod_review(V1, "slow-body", "p", json!({"team": "a"}), "x:1");
    let stream = server.connect().await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        review.len()
    );
    writer.write_all(head.as_bytes()).await.expect("head");
    writer
        .write_all(&review[..10])
        .await
        .expect("start of body");
    let trickler = tokio::spawn(async move { trickle(&mut writer, b' ').await });
    let response = tokio::time::timeout(WITHIN, read_response(&mut reader))
        .await
        .expect("answered while the body trickles");
    assert_eq!(response.status, 408, "{}", response.text());
    assert!(
        response.text().contains("did not arrive within 500ms"),
        "{}",
        response.text()
    );
    assert!(
        trickler.await.expect("trickler"),
        "the connection was closed after the 408"
    );

    // Body, over HTTP/2: a stream whose body stops; answered 408, the connection stays usable.
    let tls = connect(server.addr, &client_config(&[&server.ca_pem], &[b"h2"]))
        .await
        .expect("tls");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let stalled_request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(StreamBody::new(Box::pin(body)))
        .expect("request");
    tx.send(Bytes::from_static(b"{\"kind\":"))
        .await
        .expect("send");
    let response = tokio::time::timeout(WITHIN, sender.send_request(stalled_request))
        .await
        .expect("answered while the body is missing")
        .expect("a response");
    assert_eq!(response.status(), 408);
    drop(tx);

    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    for (line, at_least) in [
        (
            r#"policyctl_connection_timeouts_total{listener="webhook",phase="handshake"}"#,
            2.0,
        ),
        (
            r#"policyctl_connection_timeouts_total{listener="webhook",phase="headers"}"#,
            3.0,
        ),
        (
            r#"policyctl_connection_timeouts_total{listener="webhook",phase="body"}"#,
            2.0,
        ),
    ] {
        let value = metric(&metrics, line).unwrap_or_else(|| panic!("no {line} in\n{metrics}"));
        assert!(
            value >= at_least,
            "{line} {value}, want at least {at_least}"
        );
    }
    assert_eq!(
        metric(
            &metrics,
            r#"policyctl_connection_timeouts_total{listener="webhook",phase="idle"}"#
        ),
        Some(0.0),
        "nothing here waited for the idle timer"
    );
    server.stop().await;
}

/// A review the `hostile` fixture takes until the request deadline to decide (a quadratic policy on 5000 containers).
fn slow_review(uid: &str) -> Vec<u8> {
    let containers: Vec<Value> = (0..5000)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("registry.example.com/app{i}:1.0")}))
        .collect();
    let mut review: Value =
        serde_json::from_slice(&pod_review(V1, uid, uid, json!({}), "x:1")).expect("json");
    review["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    serde_json::to_vec(&review).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_are_closed_and_busy_ones_are_not() {
    // The idle timer is shorter than an evaluation here: a request in flight must still be answered.
    let server = TestServer::start_with(&fixture("hostile"), |config| {
        config.request_timeout = Duration::from_millis(1500);
        config.eval_timeout = Duration::from_secs(30);
        config.connections = limits(|l| l.idle_timeout = Duration::from_millis(800));
    })
    .await;
    server.wait_ready(200).await;
    let quick = pod_review(V1, "quick", "p", json!({}), "x:1");

    // HTTP/1.1: after a quick answer (the idle timer starts), a slow request (it stops the timer) is answered, then
    // the idle connection is closed.
    let mut stream = server.connect().await;
    assert_eq!(
        request(&mut stream, "POST", "/validate", &quick)
            .await
            .status,
        200
    );
    let response = request(&mut stream, "POST", "/validate", &slow_review("busy-1")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["response"]["uid"], "busy-1");
    assert!(
        closed_by_server(&mut stream).await,
        "an idle HTTP/1.1 connection was held open"
    );

    // HTTP/2: the same.
    let tls = connect(server.addr, &client_config(&[&server.ca_pem], &[b"h2"]))
        .await
        .expect("tls");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let first = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(quick)))
        .expect("request");
    assert_eq!(
        sender.send_request(first).await.expect("quick").status(),
        200
    );
    let slow = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(slow_review(
            "busy-2",
        ))))
        .expect("request");
    let response = sender.send_request(slow).await.expect("answered, not cut");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let review: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(review["response"]["uid"], "busy-2");
    tokio::time::timeout(WITHIN, connection)
        .await
        .expect("an idle HTTP/2 connection was held open")
        .ok();

    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    let idle = metric(
        &metrics,
        r#"policyctl_connection_timeouts_total{listener="webhook",phase="idle"}"#,
    );
    assert!(idle.is_some_and(|n| n >= 2.0), "{idle:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_outlive_the_header_timer() {
    // hyper's own header timer would also run between requests; ours must not close an idle keep-alive connection
    // before the idle timeout.
    let server = TestServer::start_with(&fixture("rego"), |config| {
        config.connections = limits(|l| l.header_read_timeout = Duration::from_millis(200));
    })
    .await;
    server.wait_ready(200).await;
    let mut stream = server.connect().await;
    let review = pod_review(V1, "first", "p", json!({"team": "a"}), "x:1");
    assert_eq!(
        request(&mut stream, "POST", "/validate", &review)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = request(&mut stream, "POST", "/validate", &review).await;
    assert_eq!(second.status, 200, "the kept-alive connection is reused");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_on_arrival() {
    let server = TestServer::start_with(&fixture("rego"), |config| {
        config.connections = limits(|l| l.max_connections = 2);
    })
    .await;
    server.wait_ready(200).await;
    let config = client_config(&[&server.ca_pem], &[b"http/1.1"]);
    let mut first = connect(server.addr, &config).await.expect("first");
    let second = connect(server.addr, &config).await.expect("second");
    assert!(
        connect(server.addr, &config).await.is_err(),
        "a third connection was accepted over a cap of 2"
    );
    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    assert_eq!(
        metric(&metrics, r#"policyctl_connections{listener="webhook"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            r#"policyctl_connections_rejected_total{listener="webhook"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    // The open ones still work; once one closes, a new connection gets its place.
    let review = pod_review(V1, "capped", "p", json!({"team": "a"}), "x:1");
    assert_eq!(
        request(&mut first, "POST", "/validate", &review)
            .await
            .status,
        200
    );
    drop(second);
    let mut admitted = None;
    for _ in 0..200 {
        if let Ok(stream) = connect(server.addr, &config).await {
            admitted = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut admitted = admitted.expect("a place freed by a closed connection is reused");
    assert_eq!(
        request(&mut admitted, "POST", "/validate", &review)
            .await
            .status,
        200
    );
    server.stop().await;
}

/// The flags reach the server: `policyctl serve --max-connections 1 --header-read-timeout 300ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flags_set_the_limits() {
    let policies = fixture("rego");
    let binary = support::Binary::start(
        "json",
        &[],
        &[
            "--policies",
            policies.to_str().expect("utf-8 path"),
            "--max-connections",
            "1",
            "--header-read-timeout",
            "300ms",
        ],
    )
    .await;
    let config = client_config(&[&binary.ca_pem], &[b"http/1.1"]);
    let mut only = connect(binary.addr, &config)
        .await
        .expect("the one connection");
    assert!(
        connect(binary.addr, &config).await.is_err(),
        "--max-connections 1 let a second connection in"
    );
    // The one connection sends nothing: the 300 ms header timer closes it (the default would wait 10 s).
    let started = std::time::Instant::now();
    assert!(closed_by_server(&mut only).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}: --header-read-timeout was not applied",
        started.elapsed()
    );
    binary.stop().await;
}
