//! Hostile and broken traffic over real TLS sockets on loopback: malformed reviews, wrong media types and oversized
//! bodies get a clear 4xx over HTTP/1.1 and HTTP/2 and are never decided.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use support::{
    admin_get, client_config, connect, fixture, pod_review, read_response, request,
    request_with_headers, TestServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V1: &str = "admission.k8s.io/v1";
const LIMIT: usize = 3 * 1024 * 1024;
/// Bound on waiting for an answer the server must give without the client finishing its request. Generous: it only
/// separates "answered" from "held open".
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A review of `operation` whose request members are replaced by `members` (`null` values stay null; members named
/// in `absent` are removed).
fn review_with(operation: &str, members: Value, absent: &[&str]) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(&pod_review(
        V1,
        "u-1",
        "p",
        json!({"team": "a"}),
        "nginx:1.27",
    ))
    .expect("json");
    let request = review["request"].as_object_mut().expect("request");
    request.insert("operation".into(), json!(operation));
    if let Value::Object(members) = members {
        for (key, value) in members {
            request.insert(key, value);
        }
    }
    for key in absent {
        request.remove(*key);
    }
    serde_json::to_vec(&review).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_get_400_and_are_never_decided() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            review_with("CREATE", json!({"object": "a string"}), &[]),
            "object must be an object on CREATE, got a string",
        ),
        (
            review_with("CREATE", json!({"object": [1]}), &[]),
            "got an array",
        ),
        (
            review_with("CREATE", json!({"object": 3}), &[]),
            "got a number",
        ),
        (
            review_with("CREATE", json!({"object": null}), &[]),
            "object must be an object on CREATE, got null",
        ),
        (
            review_with("CREATE", json!({}), &["object"]),
            "object must be an object on CREATE, got nothing",
        ),
        (
            review_with("UPDATE", json!({"oldObject": "x"}), &[]),
            "oldObject must be an object or null on UPDATE, got a string",
        ),
        (
            review_with("DELETE", json!({"object": null}), &["oldObject"]),
            "oldObject must be an object on DELETE, got nothing",
        ),
        (
            review_with("CREATE", json!({}), &["uid"]),
            "uid must be a non-empty string",
        ),
        (
            review_with("CREATE", json!({"uid": ""}), &[]),
            "uid must be a non-empty string",
        ),
        (
            review_with("CREATE", json!({"uid": "x".repeat(100_000)}), &[]),
            "at most 256 bytes, got a longer one",
        ),
        (
            review_with("CREATE", json!({"uid": 7}), &[]),
            "invalid type: integer",
        ),
    ];
    let invalid = cases.len();
    for (body, reason) in cases {
        let response = server.post("/validate", &body).await;
        assert_eq!(response.status, 400, "{reason}: {}", response.text());
        assert!(
            response.text().contains(reason),
            "{:?} lacks {reason:?}",
            response.text()
        );
        assert!(response.text().len() < 300, "short: {}", response.text());
    }
    // The operations that allow a missing object are decided.
    let delete = review_with("DELETE", json!({"object": null, "oldObject": pod}), &[]);
    let answer = server.post("/validate", &delete).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["response"]["uid"], "u-1");
    let connect_review = review_with("CONNECT", json!({}), &["object", "oldObject"]);
    assert_eq!(server.post("/validate", &connect_review).await.status, 200);

    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    let line = format!(
        r#"policyctl_admission_requests_total{{webhook="validate",operation="",kind="",decision="invalid"}} {invalid}"#
    );
    assert!(
        metrics.lines().any(|l| l == line),
        "missing {line:?} in\n{metrics}"
    );
    // Only the two valid reviews reached the policy.
    assert!(
        metrics.lines().any(|l| l
            == r#"policyctl_policy_evaluation_duration_seconds_count{policy="fixtures.admission",engine="rego"} 2"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_json_bodies_are_read() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;
    let body = pod_review(V1, "ct", "p", json!({"team": "a"}), "nginx:1.27");
    let length = format!("Content-Length: {}", body.len());
    for (content_type, status) in [
        (Some("Content-Type: application/json"), 200),
        (Some("Content-Type: application/json; charset=utf-8"), 200),
        (Some("content-type: Application/JSON ; charset=UTF-8"), 200),
        (Some("Content-Type: text/plain"), 415),
        (Some("Content-Type: application/jsonx"), 415),
        (Some("Content-Type: application/x-www-form-urlencoded"), 415),
        (None, 415),
    ] {
        let mut headers = vec![length.as_str()];
        headers.extend(content_type);
        let mut stream = server.connect().await;
        let response =
            request_with_headers(&mut stream, "POST", "/validate", &headers, &body).await;
        assert_eq!(
            response.status,
            status,
            "{content_type:?}: {}",
            response.text()
        );
        if status == 415 {
            assert!(
                response
                    .text()
                    .contains("Content-Type must be application/json"),
                "{}",
                response.text()
            );
        } else {
            assert_eq!(response.json()["response"]["uid"], "ct");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_early_over_http1() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;

    // A declared length over the limit is refused from the head alone: the client never sends the rest.
    let mut stream = server.connect().await;
    let head = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 99999999999\r\n\r\n{\"kind\":";
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.flush().await.expect("flush");
    let response = tokio::time::timeout(ANSWER_WITHIN, read_response(&mut stream))
        .await
        .expect("answered without the body");
    assert_eq!(response.status, 413);
    assert!(
        response.text().contains("exceeds the limit"),
        "{}",
        response.text()
    );
    // The connection is closed afterwards (its body was never read).
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(ANSWER_WITHIN, stream.read(&mut rest))
        .await
        .expect("closed, not held");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    // Without a declared length (chunked), the body is refused once it passes the limit.
    let mut stream = server.connect().await;
    let head = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    let writer = async {
        while sent <= LIMIT {
            let size = format!("{:x}\r\n", chunk.len());
            if stream.write_all(size.as_bytes()).await.is_err()
                || stream.write_all(&chunk).await.is_err()
                || stream.write_all(b"\r\n").await.is_err()
            {
                break;
            }
            sent += chunk.len();
        }
        let _ = stream.flush().await;
        stream
    };
    let mut stream = tokio::time::timeout(ANSWER_WITHIN, writer)
        .await
        .expect("the server keeps reading up to the limit");
    let response = tokio::time::timeout(ANSWER_WITHIN, read_response(&mut stream))
        .await
        .expect("answered");
    assert_eq!(response.status, 413);

    // An exact-limit body is read (and then fails to decode: it is only spaces).
    let mut stream = server.connect().await;
    let response = request(&mut stream, "POST", "/validate", &vec![b' '; LIMIT]).await;
    assert_eq!(response.status, 400, "{}", response.text());
    server.stop().await;
}

type H2Sender<B> = hyper::client::conn::http2::SendRequest<B>;

async fn h2_client<B>(server: &TestServer) -> H2Sender<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = connect(server.addr, &client_config(&[&server.ca_pem], &[b"h2"]))
        .await
        .expect("tls");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

async fn h2_text<B>(response: hyper::Response<B>) -> (u16, String)
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_over_http2_too() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;

    // A whole body one byte over the limit.
    let mut sender = h2_client::<Full<Bytes>>(&server).await;
    let request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(vec![b' '; LIMIT + 1])))
        .expect("request");
    let response = tokio::time::timeout(ANSWER_WITHIN, sender.send_request(request))
        .await
        .expect("answered")
        .expect("a response, not a stream reset");
    let (status, text) = h2_text(response).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("exceeds the limit"), "{text}");

    // The same connection still serves reviews: only the stream was ended.
    let review = pod_review(V1, "after", "p", json!({"team": "a"}), "x:1");
    let request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(review)))
        .expect("request");
    let (status, text) = h2_text(sender.send_request(request).await.expect("response")).await;
    assert_eq!(status, 200, "{text}");

    // A declared length over the limit, with a body that never comes: answered from the headers.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let mut sender = h2_client::<StreamBody<_>>(&server).await;
    let request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .header("content-length", "99999999999")
        .body(StreamBody::new(Box::pin(stream)))
        .expect("request");
    tx.send(Bytes::from_static(b"{\"kind\":"))
        .await
        .expect("send");
    let response = tokio::time::timeout(ANSWER_WITHIN, sender.send_request(request))
        .await
        .expect("answered without the body")
        .expect("a response, not a stream reset");
    let (status, text) = h2_text(response).await;
    assert_eq!(status, 413, "{text}");
    drop(tx);

    // A wrong media type over HTTP/2 gets its 415 too (the unread body is not reset before the answer).
    let mut sender = h2_client::<Full<Bytes>>(&server).await;
    let request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(vec![b'x'; 512 * 1024])))
        .expect("request");
    let response = tokio::time::timeout(ANSWER_WITHIN, sender.send_request(request))
        .await
        .expect("answered")
        .expect("a response, not a stream reset");
    assert_eq!(h2_text(response).await.0, 415);
    server.stop().await;
}

/// The level of a log line in either format.
fn level(line: &str) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(event) => event["level"].as_str().unwrap_or_default().to_string(),
        Err(_) => line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string(),
    }
}

/// A review whose request fields try to forge log lines and whose object (and so the policies' messages) carries
/// markers that must stay out of the logs at info.
fn forging_review(uid: &str, name: &str, namespace: &str, user: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": user},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "OBJNAME-MARKER", "namespace": "default"},
                "spec": {"containers": [{"name": "CONTAINER-MARKER", "image": "x:1"}]}
            }
        }
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_cannot_be_forged_in_any_format() {
    let policies = fixture("logsafe");
    let policies = policies.to_str().expect("utf-8 path");
    for format in ["text", "json"] {
        let binary = support::Binary::start(
            format,
            &["--log-level", "info,policyctl_server=debug"],
            &["--policies", policies],
        )
        .await;
        let forged = binary
            .post(
                "/validate",
                &forging_review(
                    "forge-1",
                    "evil\nINFO policyctl_server: forged=true \u{1b}[31mred",
                    "ns\u{1b}]0;title\u{7}",
                    "mallory\r\nWARN forged \u{202e}txt.exe",
                ),
            )
            .await;
        assert_eq!(forged.status, 200, "{}", forged.text());
        assert_eq!(forged.json()["response"]["allowed"], false);
        let long_name = "n".repeat(1_000_000);
        let long = binary
            .post(
                "/validate",
                &forging_review("long-1", &long_name, "default", &"u".repeat(100_000)),
            )
            .await;
        assert_eq!(long.status, 200, "{}", long.text());
        let lines = binary.stop().await;

        let mut saw_escaped_name = false;
        let mut saw_cut = false;
        let mut saw_markers_at_debug = false;
        let mut saw_failure_warning = false;
        for raw in &lines {
            let line = String::from_utf8_lossy(raw);
            let body = raw.strip_suffix(b"\n").unwrap_or(raw);
            assert!(
                !body
                    .iter()
                    .any(|b| matches!(b, 0x1b | 0x07 | b'\r' | b'\n')),
                "[{format}] a raw control character reached the log: {line:?}"
            );
            assert!(
                !line.contains('\u{202e}'),
                "[{format}] raw bidi override: {line:?}"
            );
            assert!(
                raw.len() <= 16 * 1024,
                "[{format}] a {}-byte line: the request fields are not bounded",
                raw.len()
            );
            match format {
                "json" => assert!(
                    serde_json::from_str::<Value>(&line).is_ok(),
                    "[json] not one JSON object: {line:?}"
                ),
                _ => assert!(
                    line.starts_with(|c: char| c.is_ascii_digit()),
                    "[text] a line that does not start with a timestamp (forged?): {line:?}"
                ),
            }
            saw_escaped_name |=
                line.contains(r"evil\\u{a}INFO policyctl_server: forged=true \\u{1b}[31mred");
            saw_cut |= line.contains(&format!("...[+{} bytes]", 1_000_000 - 256));
            let level = level(&line);
            let quotes_object = ["OBJNAME-MARKER", "CONTAINER-MARKER", "multiple outputs"]
                .iter()
                .any(|marker| line.contains(marker));
            if level == "DEBUG" {
                saw_markers_at_debug |= quotes_object;
            } else {
                assert!(
                    !quotes_object,
                    "[{format}] object content logged at {level}: {line:?}"
                );
            }
            saw_failure_warning |= level == "WARN"
                && line.contains("fixtures.failing")
                && line.contains("policy evaluation failed");
        }
        assert!(saw_escaped_name, "[{format}] the escaped name is logged");
        assert!(saw_cut, "[{format}] the long name is cut with a marker");
        assert!(
            saw_markers_at_debug,
            "[{format}] messages are at debug level"
        );
        assert!(
            saw_failure_warning,
            "[{format}] the failing policy is named at warn"
        );
    }
}
