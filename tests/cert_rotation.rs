//! The rotation procedure of docs/certificates.md, end to end over TLS: while the `caBundle` trusts the old and the
//! new CA, replacing the certificate files never fails a handshake; the new certificate is served after the reload;
//! and the expiry gauge follows it.

mod support;

use std::time::Duration;

use policyctl::certs;
use support::{admin_get, client_config, connect, fixture, TestServer};

fn expiry(metrics: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("policyctl_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no expiry gauge in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_both_cas_trusted_never_fails_a_handshake() {
    let server = TestServer::start(&fixture("rego")).await;
    server.wait_ready(200).await;
    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    let old_expiry = expiry(&metrics);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        old_expiry > now,
        "the served certificate's notAfter ({old_expiry}) is in the future"
    );

    // The new pair, from a new CA, valid a day (the old one is valid an hour).
    let new = certs::generate(
        &["localhost".to_string()],
        &[],
        Duration::from_secs(24 * 3600),
        Duration::from_secs(48 * 3600),
    )
    .expect("new certificates");
    let both = client_config(&[&new.ca_pem, &server.ca_pem], &[b"http/1.1"]);
    let new_only = client_config(&[&new.ca_pem], &[b"http/1.1"]);
    assert!(
        connect(server.addr, &both).await.is_ok(),
        "the bundle trusts the old certificate"
    );
    assert!(
        connect(server.addr, &new_only).await.is_err(),
        "the new CA alone does not trust the old certificate"
    );

    // The Secret update: key and certificate files replaced (the server refuses a mismatched pair meanwhile).
    std::fs::write(&server.key_path, &new.key_pem).expect("write key");
    std::fs::write(&server.cert_path, &new.cert_pem).expect("write cert");

    // Every handshake with the two-CA bundle succeeds while the pods switch; the new CA alone is accepted once the
    // reload happened (bounded wait: the test server re-reads every 100 ms).
    let mut switched = false;
    for _ in 0..200 {
        let result = connect(server.addr, &both).await;
        assert!(
            result.is_ok(),
            "a handshake failed during rotation: {:?}",
            result.err()
        );
        if connect(server.addr, &new_only).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(switched, "the new certificate was never served");

    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    let new_expiry = expiry(&metrics);
    assert!(
        new_expiry > old_expiry + 12 * 3600,
        "the expiry gauge follows the new certificate: {old_expiry} -> {new_expiry}"
    );
    server.stop().await;
}
