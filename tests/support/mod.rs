//! Shared helpers of the integration tests: an in-process server on loopback, a TLS client that trusts the test CA,
//! and a minimal HTTP/1.1 client over it (raw, so a test controls exactly when bytes are sent).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use policyctl::certs;
use policyctl::policy::FailurePolicy;
use policyctl::server::{ConnectionLimits, ServeConfig, ServeError, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Path of a fixture directory under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A CA and serving certificate for localhost written to `dir/name/`.
pub fn write_certs(dir: &Path, name: &str) -> (certs::Generated, certs::Written) {
    let generated = certs::generate(
        &["localhost".to_string()],
        &["127.0.0.1".parse().expect("ip")],
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    )
    .expect("certificates");
    let written = certs::write(&dir.join(name), &generated).expect("write certificates");
    (generated, written)
}

/// A running in-process server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Start a server on loopback (port 0) serving the policies in `policies`.
    pub async fn start(policies: &Path) -> TestServer {
        Self::start_with(policies, |_| {}).await
    }

    /// Start with a chance to adjust the configuration.
    pub async fn start_with(policies: &Path, adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (generated, written) = write_certs(dir.path(), "tls");
        let mut config = ServeConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            admin_addr: "127.0.0.1:0".parse().expect("addr"),
            tls_cert: written.cert.clone(),
            tls_key: written.key.clone(),
            tls_reload_interval: Duration::from_millis(100),
            policies: policies.to_path_buf(),
            failure_policy: FailurePolicy::Fail,
            max_concurrency: 2,
            eval_timeout: Duration::from_secs(1),
            prefer_rego: false,
            request_timeout: Duration::from_secs(2),
            inline_budget: Some(Duration::from_millis(2)),
            drain_timeout: Duration::from_secs(5),
            connections: ConnectionLimits::default(),
            ready_after_syncs: false,
            log_drops: None,
        };
        adjust(&mut config);
        let server = Server::bind(config).expect("bind");
        let (addr, admin) = (server.addr(), server.admin_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            admin,
            ca_pem: generated.ca_pem,
            cert_path: written.cert,
            key_path: written.key,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Wait until `/readyz` answers `want` (bounded wait; the load runs in the background).
    pub async fn wait_ready(&self, want: u16) -> String {
        let mut last = (0, String::new());
        for _ in 0..200 {
            last = admin_get(self.admin, "/readyz").await;
            if last.0 == want {
                return last.1;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("/readyz never answered {want}; last answer {last:?}");
    }

    /// A TLS connection trusting the server's CA.
    pub async fn connect(&self) -> TlsStream<TcpStream> {
        connect(self.addr, &client_config(&[&self.ca_pem], &[b"http/1.1"]))
            .await
            .expect("TLS connection")
    }

    /// POST a body over a fresh connection.
    pub async fn post(&self, path: &str, body: &[u8]) -> HttpResponse {
        let mut stream = self.connect().await;
        request(&mut stream, "POST", path, body).await
    }

    /// Stop the server and wait for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// The real `policyctl serve` binary in a child process, its stderr collected line by line (raw bytes).
pub struct Binary {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    lines: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Binary {
    /// Start `policyctl --log-format <format> [global...] serve --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 <TLS> <serve...>`
    /// and wait (bounded) until it logs its addresses and is ready.
    pub async fn start(format: &str, global: &[&str], serve: &[&str]) -> Binary {
        Binary::start_program(env!("CARGO_BIN_EXE_policyctl"), format, global, serve).await
    }

    /// [`Binary::start`] with another policyctl executable (the load benchmark compares builds).
    pub async fn start_program(
        program: &str,
        format: &str,
        global: &[&str],
        serve: &[&str],
    ) -> Binary {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let (generated, written) = write_certs(dir.path(), "tls");
        let mut child = std::process::Command::new(program)
            .args(["--log-format", format])
            .args(global)
            .args([
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
            .args(serve)
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start policyctl");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
        let collected = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut stderr = std::io::BufReader::new(stderr);
            let mut sent = false;
            loop {
                let mut line = Vec::new();
                match stderr.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if !sent {
                    if let Some(addrs) = addresses(&String::from_utf8_lossy(&line)) {
                        let _ = tx.send(addrs);
                        sent = true;
                    }
                }
                collected.lock().expect("lines").push(line);
            }
        });
        let Ok((addr, admin)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("policyctl never logged its addresses");
        };
        let binary = Binary {
            child,
            addr: addr.parse().expect("webhook address"),
            admin: admin.parse().expect("admin address"),
            ca_pem: generated.ca_pem,
            dir,
            lines,
            reader: Some(reader),
        };
        for _ in 0..400 {
            if admin_get(binary.admin, "/readyz").await.0 == 200 {
                return binary;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("policyctl never became ready");
    }

    /// A TLS connection trusting the binary's CA.
    pub async fn connect(&self) -> TlsStream<TcpStream> {
        connect(self.addr, &client_config(&[&self.ca_pem], &[b"http/1.1"]))
            .await
            .expect("TLS connection")
    }

    /// POST a body over a fresh connection.
    pub async fn post(&self, path: &str, body: &[u8]) -> HttpResponse {
        let mut stream = self.connect().await;
        request(&mut stream, "POST", path, body).await
    }

    /// SIGTERM, wait (bounded) for a clean exit, and return every stderr line.
    pub async fn stop(mut self) -> Vec<Vec<u8>> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let mut exit = None;
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                exit = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let Some(exit) = exit else {
            let _ = self.child.kill();
            panic!("policyctl did not exit after SIGTERM");
        };
        assert!(exit.success(), "exit status {exit:?}");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        std::mem::take(&mut *self.lines.lock().expect("lines"))
    }
}

/// The webhook and admin addresses from the "serving" log line, in either format.
fn addresses(line: &str) -> Option<(String, String)> {
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
        return Some((
            event["webhook_addr"].as_str()?.to_string(),
            event["admin_addr"].as_str()?.to_string(),
        ));
    }
    let field = |name: &str| {
        let start = line.find(&format!("{name}="))? + name.len() + 1;
        let value = line[start..].split_whitespace().next()?;
        Some(value.trim_matches('"').to_string())
    };
    Some((field("webhook_addr")?, field("admin_addr")?))
}

/// A rustls client configuration trusting `cas` (PEM), offering `alpn`.
pub fn client_config(cas: &[&str], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Open a TLS connection to `addr` as `localhost`.
pub async fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send one HTTP/1.1 request on `stream` (kept alive) and read the response.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    body: &[u8],
) -> HttpResponse {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // One write: a request split over two small writes waits on Nagle and delayed ACKs.
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.expect("write request");
    stream.flush().await.expect("flush");
    read_response(stream).await
}

/// Send one HTTP/1.1 request with exactly these header lines (no Content-Type or Content-Length added) and read the
/// response.
pub async fn request_with_headers<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> HttpResponse {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for line in headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.expect("write request");
    stream.flush().await.expect("flush");
    read_response(stream).await
}

/// Read one HTTP/1.1 response (content-length or chunked body).
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> HttpResponse {
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(
            n > 0,
            "connection closed before the response headers; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut rest = buf[header_end + 4..].to_vec();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().expect("content-length");
        while rest.len() < len {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "connection closed in the body");
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            while find(&rest, b"\r\n").is_none() {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.expect("read chunk");
                assert!(n > 0, "connection closed in a chunk");
                rest.extend_from_slice(&chunk[..n]);
            }
            let line_end = find(&rest, b"\r\n").expect("chunk size line");
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .expect("size");
            while rest.len() < line_end + 2 + size + 2 {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.expect("read chunk");
                assert!(n > 0, "connection closed in a chunk");
                rest.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        Vec::new()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// GET on the plain-HTTP admin listener.
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("admin connection");
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let response = read_response(&mut stream).await;
    let text = response.text();
    (response.status, text)
}

/// An AdmissionReview for a Pod.
pub fn pod_review(
    version: &str,
    uid: &str,
    name: &str,
    labels: serde_json::Value,
    image: &str,
) -> Vec<u8> {
    let review = serde_json::json!({
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]}
            },
            "oldObject": null,
            "dryRun": false
        }
    });
    serde_json::to_vec(&review).expect("json")
}
