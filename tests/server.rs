//! The webhook over real TLS sockets on loopback: admission answers, bad input, readiness, metrics, certificate
//! rotation and SIGTERM drain.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{
    admin_get, client_config, connect, fixture, pod_review, read_response, request, TestServer,
};
use tokio::io::AsyncWriteExt;

const V1: &str = "admission.k8s.io/v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_allows_denies_and_warns() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;

    let allowed = server
        .post(
            "/validate",
            &pod_review(V1, "u-allow", "good", json!({"team": "a"}), "nginx:1.27"),
        )
        .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("content-type"), Some("application/json"));
    let body = allowed.json();
    assert_eq!(body["apiVersion"], V1);
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], "u-allow");
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("warnings").is_none());

    let denied = server
        .post(
            "/validate",
            &pod_review(V1, "u-deny", "bad", json!({}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(denied["response"]["uid"], "u-deny");
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(denied["response"]["status"]["code"], 403);
    assert_eq!(
        denied["response"]["status"]["message"],
        "[fixtures.admission] pod bad must have a team label"
    );

    let warned = server
        .post(
            "/validate",
            &pod_review(V1, "u-warn", "w", json!({"team": "a"}), "nginx:latest"),
        )
        .await;
    let warned = warned.json();
    assert_eq!(warned["response"]["allowed"], true);
    assert_eq!(warned["response"]["status"]["code"], 299);
    assert_eq!(
        warned["response"]["warnings"],
        json!(["[fixtures.admission] container app uses a :latest image"])
    );

    // v1beta1 is answered in v1beta1.
    let beta = server
        .post(
            "/validate",
            &pod_review("admission.k8s.io/v1beta1", "u-beta", "b", json!({}), "x"),
        )
        .await;
    let beta = beta.json();
    assert_eq!(beta["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(beta["response"]["uid"], "u-beta");
    assert_eq!(beta["response"]["allowed"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_answers_with_a_base64_json_patch() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;
    let review = pod_review(V1, "u-mut", "m", json!({"team": "a"}), "nginx:1.27");
    let body = server.post("/mutate", &review).await.json();
    let response = &body["response"];
    assert_eq!(response["uid"], "u-mut");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(
            response["patch"]
                .as_str()
                .expect("patch is a base64 string"),
        )
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).expect("a JSON patch");

    // Applying the patch to the original object gives the expected object.
    let original: Value =
        serde_json::from_slice::<Value>(&review).expect("json")["request"]["object"].clone();
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &patch).expect("patch applies");
    let mut expected = original;
    expected["metadata"]["labels"]["policyctl.dev/checked"] = json!("true");
    assert_eq!(patched, expected);

    // An object that needs no change gets no patch.
    let done = pod_review(
        V1,
        "u-done",
        "d",
        json!({"team": "a", "policyctl.dev/checked": "true"}),
        "x:1",
    );
    let body = server.post("/mutate", &done).await.json();
    assert!(body["response"].get("patch").is_none());
    assert!(body["response"].get("patchType").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_answers() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/validate", b"{not json".to_vec(), 400, "body is not valid JSON"),
        ("POST", "/validate", b"[]".to_vec(), 400, "body is not a JSON object"),
        ("POST", "/validate", br#"{"kind":"Pod","apiVersion":"v1"}"#.to_vec(), 400, "kind must be AdmissionReview"),
        ("POST", "/mutate", br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.to_vec(), 400, "has no request"),
        (
            "POST",
            "/validate",
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"x","operation":"CREATE"}}"#
                .to_vec(),
            400,
            "invalid request: missing field `kind`",
        ),
        ("GET", "/validate", Vec::new(), 405, ""),
        ("PUT", "/mutate", Vec::new(), 405, ""),
        ("POST", "/nope", Vec::new(), 404, "not found"),
    ];
    for (method, path, body, status, text) in cases {
        let mut stream = server.connect().await;
        let response = request(&mut stream, method, path, &body).await;
        assert_eq!(
            response.status,
            status,
            "{method} {path}: {}",
            response.text()
        );
        assert!(
            response.text().contains(text),
            "{method} {path}: {:?} lacks {text:?}",
            response.text()
        );
        assert!(
            response.text().trim_end().lines().count() <= 1,
            "one line: {:?}",
            response.text()
        );
    }
    // Over the limit: refused from the declared length, before the body is read; the client's write may fail once the
    // server closes the connection, the answer is there to read.
    let mut stream = server.connect().await;
    let body = vec![b' '; 3 * 1024 * 1024 + 1];
    let mut bytes = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.flush().await;
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(
        response.text().contains("exceeds the limit"),
        "{}",
        response.text()
    );

    // The server is still answering.
    let ok = server
        .post(
            "/validate",
            &pod_review(V1, "u", "p", json!({"team": "a"}), "x:1"),
        )
        .await;
    assert_eq!(ok.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_policy_set() {
    // A directory whose only policy is broken never yields a set: not ready, and reviews get 503.
    let broken = TestServer::start(&fixture("broken")).await;
    assert_eq!(
        admin_get(broken.admin, "/healthz").await,
        (200, "ok\n".to_string())
    );
    // Give the background load time to fail; readiness must stay false throughout.
    for _ in 0..20 {
        let (status, text) = admin_get(broken.admin, "/readyz").await;
        assert_eq!(status, 503, "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let review = broken
        .post("/validate", &pod_review(V1, "u", "p", json!({}), "x:1"))
        .await;
    assert_eq!(review.status, 503);
    assert!(review.text().contains("no policy set"), "{}", review.text());
    broken.stop().await;

    let good = TestServer::start(&fixture("rego")).await;
    let text = good.wait_ready(200).await;
    assert!(text.contains("generation 1"), "{text}");
    good.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;
    server
        .post("/validate", &pod_review(V1, "a", "p1", json!({}), "x:1"))
        .await;
    server
        .post("/validate", &pod_review(V1, "b", "p2", json!({}), "x:1"))
        .await;
    server
        .post(
            "/validate",
            &pod_review(V1, "c", "p3", json!({"team": "t"}), "x:1"),
        )
        .await;
    server
        .post(
            "/mutate",
            &pod_review(V1, "d", "p4", json!({"team": "t"}), "x:1"),
        )
        .await;
    server.post("/validate", b"garbage").await;

    let (status, text) = admin_get(server.admin, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"policyctl_admission_requests_total{webhook="validate",operation="CREATE",kind="Pod",decision="deny"} 2"#,
        r#"policyctl_admission_requests_total{webhook="validate",operation="CREATE",kind="Pod",decision="allow"} 1"#,
        r#"policyctl_admission_requests_total{webhook="mutate",operation="CREATE",kind="Pod",decision="allow"} 1"#,
        r#"policyctl_admission_requests_total{webhook="validate",operation="",kind="",decision="invalid"} 1"#,
        r#"policyctl_policy_results_total{policy="fixtures.admission",engine="rego",result="deny"} 2"#,
        r#"policyctl_policy_results_total{policy="fixtures.admission",engine="rego",result="mutate"} 1"#,
        r#"policyctl_admission_request_duration_seconds_count{webhook="validate"} 4"#,
        r#"policyctl_policy_evaluation_duration_seconds_count{policy="fixtures.admission",engine="rego"} 4"#,
        "policyctl_policy_set_generation 1",
        "policyctl_policies 1",
        "policyctl_policy_load_errors_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_offers_h2_and_http1_and_rotates_certificates_without_dropping_connections() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;

    // ALPN: h2 is negotiated when offered, http/1.1 otherwise.
    let h2 = connect(
        server.addr,
        &client_config(&[&server.ca_pem], &[b"h2", b"http/1.1"]),
    )
    .await
    .expect("tls");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let first_cert = h2.get_ref().1.peer_certificates().expect("certs")[0].clone();
    drop(h2);

    // Keep an HTTP/1.1 connection open across the rotation.
    let mut open = server.connect().await;
    let before = request(
        &mut open,
        "POST",
        "/validate",
        &pod_review(V1, "1", "p", json!({"team": "a"}), "x:1"),
    )
    .await;
    assert_eq!(before.status, 200);

    // Rotate: a new CA and certificate, written the way a Secret volume update lands (new files, then rename).
    let (new_generated, new_written) = support::write_certs(server.dir.path(), "rotated");
    std::fs::copy(&new_written.key, server.key_path.with_extension("key.tmp")).expect("stage key");
    std::fs::copy(
        &new_written.cert,
        server.cert_path.with_extension("crt.tmp"),
    )
    .expect("stage cert");
    std::fs::rename(server.key_path.with_extension("key.tmp"), &server.key_path).expect("swap key");
    std::fs::rename(
        server.cert_path.with_extension("crt.tmp"),
        &server.cert_path,
    )
    .expect("swap cert");

    // New handshakes see the new certificate (wait, bounded, for the poller).
    let both = client_config(&[&server.ca_pem, &new_generated.ca_pem], &[b"http/1.1"]);
    let new_cert =
        rustls::pki_types::CertificateDer::from(rustls_pem_first(&new_generated.cert_pem));
    let mut rotated = false;
    for _ in 0..200 {
        let conn = connect(server.addr, &both).await.expect("tls");
        let presented = conn.get_ref().1.peer_certificates().expect("certs")[0].clone();
        if presented == new_cert {
            rotated = true;
            break;
        }
        assert_eq!(presented, first_cert);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(rotated, "the new certificate was never served");

    // A client that only trusts the new CA connects now.
    let only_new = client_config(&[&new_generated.ca_pem], &[b"http/1.1"]);
    let mut fresh = connect(server.addr, &only_new)
        .await
        .expect("handshake with the new certificate");
    let response = request(
        &mut fresh,
        "POST",
        "/validate",
        &pod_review(V1, "2", "p", json!({}), "x:1"),
    )
    .await;
    assert_eq!(response.status, 200);

    // The connection opened before the rotation still works.
    let after = request(
        &mut open,
        "POST",
        "/validate",
        &pod_review(V1, "3", "p", json!({}), "x:1"),
    )
    .await;
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["response"]["uid"], "3");
    server.stop().await;
}

fn rustls_pem_first(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM")
        .to_vec()
}

/// SIGTERM on the real binary: readiness turns false, new connections are refused, a request already in flight is
/// answered, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (generated, written) = support::write_certs(dir.path(), "tls");
    let mut child = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&written.cert)
        .arg("--tls-key")
        .arg(&written.key)
        .arg("--policies")
        .arg(fixture("rego"))
        .args(["--drain-timeout", "10s"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start policyctl");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if let (Some(w), Some(a)) =
                        (event["webhook_addr"].as_str(), event["admin_addr"].as_str())
                    {
                        let _ = tx.send((w.to_string(), a.to_string()));
                        sent = true;
                    }
                }
            }
        }
    });
    let (webhook, admin) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server logs its addresses");
    let webhook: std::net::SocketAddr = webhook.parse().expect("addr");
    let admin: std::net::SocketAddr = admin.parse().expect("addr");
    let mut ready = false;
    for _ in 0..400 {
        if admin_get(admin, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "never ready");

    // A request in flight: headers and half of the body sent.
    let config = client_config(&[&generated.ca_pem], &[b"http/1.1"]);
    let mut in_flight = connect(webhook, &config).await.expect("tls");
    let body = pod_review(V1, "in-flight", "p", json!({}), "x:1");
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.expect("head");
    in_flight
        .write_all(&body[..body.len() / 2])
        .await
        .expect("half body");
    in_flight.flush().await.expect("flush");
    // Let the server read the head, so the request is in flight (not an idle connection, which a graceful shutdown
    // closes at once) when the signal arrives; under load the head could otherwise still be in the socket.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    // Shutdown has begun once readiness says so.
    let mut draining = false;
    for _ in 0..400 {
        let (status, text) = admin_get(admin, "/readyz").await;
        if status == 503 && text.contains("shutting down") {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(draining, "readiness never reported the shutdown");

    // No new connections are accepted (allow the accept loop a moment to close).
    let mut refused = false;
    for _ in 0..200 {
        if connect(webhook, &config).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "new connections were still accepted during the drain"
    );

    // The in-flight request completes and is answered.
    in_flight
        .write_all(&body[body.len() / 2..])
        .await
        .expect("rest of body");
    in_flight.flush().await.expect("flush");
    let response = read_response(&mut in_flight).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["response"]["uid"], "in-flight");
    drop(in_flight);

    let mut exit = None;
    for _ in 0..400 {
        if let Some(status) = child.try_wait().expect("wait") {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let exit = match exit {
        Some(exit) => exit,
        None => {
            let _ = child.kill();
            panic!("policyctl did not exit after SIGTERM");
        }
    };
    assert!(exit.success(), "exit status {exit:?}");
}

/// The kubelet's atomic writer: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`; an update writes a new
/// timestamped directory and renames a `..data_tmp` symlink over `..data`.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_follows_a_secret_volume_symlink_swap() {
    use std::os::unix::fs::symlink;

    let volume = tempfile::tempdir().expect("tempdir");
    let root = volume.path();
    let (first, first_files) = support::write_certs(root, "..2026_11_23_01");
    let _ = first_files;
    symlink("..2026_11_23_01", root.join("..data")).expect("..data");
    symlink("..data/tls.crt", root.join("tls.crt")).expect("tls.crt");
    symlink("..data/tls.key", root.join("tls.key")).expect("tls.key");

    let server = TestServer::start_with(&fixture("rego"), |config| {
        config.tls_cert = root.join("tls.crt");
        config.tls_key = root.join("tls.key");
    })
    .await;
    server.wait_ready(200).await;
    let trust_first = client_config(&[&first.ca_pem], &[b"http/1.1"]);
    let mut open = connect(server.addr, &trust_first)
        .await
        .expect("handshake with the first certificate");

    let (second, _) = support::write_certs(root, "..2026_11_23_02");
    symlink("..2026_11_23_02", root.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("atomic swap");
    std::fs::remove_dir_all(root.join("..2026_11_23_01")).expect("old dir removed");

    let trust_second = client_config(&[&second.ca_pem], &[b"http/1.1"]);
    let mut swapped = false;
    for _ in 0..200 {
        if connect(server.addr, &trust_second).await.is_ok() {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        swapped,
        "the certificate behind the swapped ..data link was never served"
    );
    let response = request(
        &mut open,
        "POST",
        "/validate",
        &pod_review(V1, "kept", "p", json!({}), "x:1"),
    )
    .await;
    assert_eq!(
        response.json()["response"]["uid"],
        "kept",
        "the connection from before the swap still works"
    );
    server.stop().await;
}

/// The API server speaks HTTP/2 to webhooks when ALPN allows it: a real h2 exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_http2() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;
    let tls = connect(server.addr, &client_config(&[&server.ca_pem], &[b"h2"]))
        .await
        .expect("tls");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    for uid in ["h2-a", "h2-b"] {
        let body = pod_review(V1, uid, "p", json!({}), "x:1");
        let request = hyper::Request::post("https://localhost/validate")
            .header("content-type", "application/json")
            .body(Full::new(bytes_of(body)))
            .expect("request");
        let response = sender.send_request(request).await.expect("h2 response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let review: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(review["response"]["uid"], uid);
        assert_eq!(review["response"]["allowed"], false);
    }
    server.stop().await;
}

fn bytes_of(body: Vec<u8>) -> hyper::body::Bytes {
    hyper::body::Bytes::from(body)
}

/// `policyctl_policy_results_total` tells "complied" (`pass`) from "not in scope" (`skip`): a policy for one namespace
/// selected by a Pod elsewhere did not apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_results_tell_skip_from_pass() {
    let policies = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        policies.path().join("prod-only.yaml"),
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: prod-team-label
spec:
  validationFailureAction: Enforce
  rules:
  - name: team
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaces: [prod]
    validate:
      message: "prod pods need a team label"
      pattern:
        metadata:
          labels:
            team: "?*"
"#,
    )
    .expect("policy");
    let server = TestServer::start(policies.path()).await;
    server.wait_ready(200).await;
    let in_namespace = |uid: &str, namespace: &str, labels: Value| {
        let mut review: Value =
            serde_json::from_slice(&pod_review(V1, uid, uid, labels, "x:1")).expect("json");
        review["request"]["namespace"] = json!(namespace);
        review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
        serde_json::to_vec(&review).expect("json")
    };
    for (uid, namespace, labels, allowed) in [
        ("prod-ok", "prod", json!({"team": "a"}), true),
        ("prod-bad", "prod", json!({}), false),
        ("dev-1", "dev", json!({}), true),
        ("dev-2", "dev", json!({}), true),
    ] {
        let answer = server
            .post("/validate", &in_namespace(uid, namespace, labels))
            .await
            .json();
        assert_eq!(answer["response"]["allowed"], allowed, "{uid}: {answer}");
    }
    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    for (result, count) in [("pass", 1), ("deny", 1), ("skip", 2)] {
        let line = format!(
            r#"policyctl_policy_results_total{{policy="prod-team-label",engine="kyverno",result="{result}"}} {count}"#
        );
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    server.stop().await;
}
