//! Certificates for the webhook: a CA and a serving certificate signed by it (rcgen, ECDSA P-256).
//!
//! The CA's private key is not kept: rotating means generating a new pair and a new `caBundle` (or letting
//! cert-manager do it). `policyctl certs` writes the files; `policyctl serve` without `--tls-*` uses a throwaway pair.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A DNS name is not usable in a certificate.
    #[error("invalid DNS name {0:?}: {1}")]
    InvalidName(String, #[source] DnsNameError),
    /// A validity of zero.
    #[error("the validity of the {0} must be at least one day")]
    Validity(&'static str),
    /// A file would be overwritten and overwriting was not asked for.
    #[error(
        "{0} already exists: pass --force to replace the keys and certificates in this directory"
    )]
    Exists(PathBuf),
    /// No subject name was given.
    #[error("at least one --dns name or --ip address is required")]
    NoNames,
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A CA and a serving certificate, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CA certificate (`ca.crt`), for the webhook's `caBundle`.
    pub ca_pem: String,
    /// The serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// The serving certificate's private key (`tls.key`), PKCS#8.
    pub key_pem: String,
}

impl Generated {
    /// The `caBundle` value of a webhook configuration: the CA PEM, base64-encoded.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }
}

/// Paths of written certificate files.
#[derive(Debug, Clone)]
pub struct Written {
    /// `ca.crt`.
    pub ca: PathBuf,
    /// `tls.crt`.
    pub cert: PathBuf,
    /// `tls.key`.
    pub key: PathBuf,
}

/// Generate a CA valid `ca_validity` and a serving certificate for `dns` names and `ips`, valid `validity`.
pub fn generate(
    dns: &[String],
    ips: &[IpAddr],
    validity: Duration,
    ca_validity: Duration,
) -> Result<Generated, CertError> {
    if dns.is_empty() && ips.is_empty() {
        return Err(CertError::NoNames);
    }
    for dns_name in dns {
        check_dns_name(dns_name)
            .map_err(|reason| CertError::InvalidName(dns_name.clone(), reason))?;
    }
    if validity.is_zero() {
        return Err(CertError::Validity("serving certificate"));
    }
    if ca_validity.is_zero() {
        return Err(CertError::Validity("CA"));
    }
    let now = OffsetDateTime::now_utc();
    let backdate = time::Duration::minutes(5);

    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.distinguished_name = name("policyctl webhook CA");
    ca_params.not_before = now - backdate;
    ca_params.not_after = now + to_time(ca_validity);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut sans = Vec::new();
    for dns_name in dns {
        let ia5 = dns_name
            .clone()
            .try_into()
            .map_err(|_| CertError::InvalidName(dns_name.clone(), DnsNameError::NotAscii))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.distinguished_name = name(dns.first().map(String::as_str).unwrap_or("policyctl"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - backdate;
    params.not_after = now + to_time(validity);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    Ok(Generated {
        ca_pem: ca.as_ref().pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether `name` is a DNS name a client can verify (RFC 1123, with an optional leading `*.` wildcard label): labels
/// of 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen, 253 characters at most.
pub fn check_dns_name(name: &str) -> Result<(), DnsNameError> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() {
        return Err(DnsNameError::Empty);
    }
    if name.len() > 253 {
        return Err(DnsNameError::TooLong);
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(DnsNameError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(DnsNameError::LabelTooLong(label.to_string()));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(DnsNameError::Character(label.to_string(), c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DnsNameError::HyphenAtEdge(label.to_string()));
        }
    }
    Ok(())
}

/// Why a name is not a DNS name a client can verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    /// Nothing (or only the `*.` wildcard).
    #[error("empty")]
    Empty,
    /// More than 253 characters.
    #[error("longer than 253 characters")]
    TooLong,
    /// Two dots, or a leading or trailing dot.
    #[error("empty label (two dots, or a leading or trailing dot)")]
    EmptyLabel,
    /// A label of more than 63 characters.
    #[error("label {0:?} is longer than 63 characters")]
    LabelTooLong(String),
    /// A label with a character other than letters, digits and `-`.
    #[error("label {0:?} has the character {1:?} (letters, digits and '-' only)")]
    Character(String, char),
    /// A label that starts or ends with `-`.
    #[error("label {0:?} starts or ends with '-'")]
    HyphenAtEdge(String),
    /// The certificate library does not take the name as an ASCII string.
    #[error("not ASCII")]
    NotAscii,
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
}

/// [`write`], refusing to replace any existing `ca.crt`, `tls.crt` or `tls.key` (`policyctl certs` without
/// `--force`): overwriting a serving key by mistake breaks every webhook configuration that trusts the old CA.
pub fn write_new(dir: &Path, generated: &Generated) -> Result<Written, CertError> {
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        let path = dir.join(file);
        if path.exists() {
            return Err(CertError::Exists(path));
        }
    }
    write(dir, generated)
}

/// Write `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it; existing files are replaced.
pub fn write(dir: &Path, generated: &Generated) -> Result<Written, CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let written = Written {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    write_file(&written.ca, generated.ca_pem.as_bytes(), false)?;
    write_file(&written.cert, generated.cert_pem.as_bytes(), false)?;
    write_file(&written.key, generated.key_pem.as_bytes(), true)?;
    Ok(written)
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_checked() {
        for good in [
            "policyctl.policyctl.svc",
            "*.example.com",
            "localhost",
            "a-b.c1",
        ] {
            assert_eq!(check_dns_name(good), Ok(()), "{good}");
        }
        let long_label = "x".repeat(64);
        for (bad, error, text) in [
            ("", DnsNameError::Empty, "empty".to_string()),
            ("*.", DnsNameError::Empty, "empty".to_string()),
            (
                "a..b",
                DnsNameError::EmptyLabel,
                "empty label (two dots, or a leading or trailing dot)".to_string(),
            ),
            (
                "-a.b",
                DnsNameError::HyphenAtEdge("-a".into()),
                r#"label "-a" starts or ends with '-'"#.to_string(),
            ),
            (
                "a_b.svc",
                DnsNameError::Character("a_b".into(), '_'),
                r#"label "a_b" has the character '_' (letters, digits and '-' only)"#.to_string(),
            ),
            (
                "exa mple.com",
                DnsNameError::Character("exa mple".into(), ' '),
                r#"label "exa mple" has the character ' ' (letters, digits and '-' only)"#
                    .to_string(),
            ),
            (
                "a.",
                DnsNameError::EmptyLabel,
                "empty label (two dots, or a leading or trailing dot)".to_string(),
            ),
            (
                long_label.as_str(),
                DnsNameError::LabelTooLong(long_label.clone()),
                format!("label {long_label:?} is longer than 63 characters"),
            ),
            (
                &format!("{}.a", ["abc"; 64].join(".")),
                DnsNameError::TooLong,
                "longer than 253 characters".to_string(),
            ),
        ] {
            let got = check_dns_name(bad);
            assert_eq!(got, Err(error), "{bad}");
            assert_eq!(got.map_err(|e| e.to_string()), Err(text), "{bad}");
        }
        let day = Duration::from_secs(86400);
        assert!(matches!(
            generate(&["bad_name".into()], &[], day, day),
            Err(CertError::InvalidName(..))
        ));
        assert!(matches!(
            generate(&["ok.svc".into()], &[], Duration::ZERO, day),
            Err(CertError::Validity(_))
        ));
    }

    #[test]
    fn write_new_refuses_to_replace_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = Duration::from_secs(86400);
        let generated = generate(&["ok.svc".into()], &[], day, day).expect("generates");
        write_new(dir.path(), &generated).expect("first write");
        let err = write_new(dir.path(), &generated).expect_err("refused");
        assert!(err.to_string().contains("--force"), "{err}");
        write(dir.path(), &generated).expect("replacing is explicit");
    }

    #[test]
    fn generates_a_ca_and_a_serving_certificate() {
        let generated = generate(
            &["policyctl.policyctl.svc".into()],
            &["127.0.0.1".parse().expect("ip")],
            Duration::from_secs(3600),
            Duration::from_secs(7200),
        )
        .expect("generates");
        assert!(generated.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(generated
            .cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(generated.key_pem.contains("PRIVATE KEY"));
        assert_ne!(generated.ca_pem, generated.cert_pem);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(generated.ca_bundle())
            .expect("base64");
        assert_eq!(decoded, generated.ca_pem.as_bytes());
    }

    #[test]
    fn refuses_no_names_and_bad_names() {
        assert!(matches!(
            generate(&[], &[], Duration::from_secs(1), Duration::from_secs(1)),
            Err(CertError::NoNames)
        ));
        assert!(generate(
            &["bad name\u{1F600}".into()],
            &[],
            Duration::from_secs(1),
            Duration::from_secs(1)
        )
        .is_err());
    }

    #[test]
    fn writes_the_key_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = generate(
            &["localhost".into()],
            &[],
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
        .expect("generates");
        let written = write(&dir.path().join("out"), &generated).expect("writes");
        assert_eq!(
            fs::read_to_string(&written.cert).expect("read"),
            generated.cert_pem
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&written.key)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
