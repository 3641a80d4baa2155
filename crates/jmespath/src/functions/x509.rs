//! Kyverno's `x509_decode`: a PEM certificate or certificate signing request, as the JSON Go's `encoding/json` makes
//! of the parsed `x509.Certificate` / `x509.CertificateRequest` (the fields policies read; see [`decode`]).

use base64::Engine as _;
use serde_json::{json, Map, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use super::{Args, Function};
use crate::eval::Interp;
use crate::JmesError;

pub(crate) static FUNCTIONS: &[Function] = &[Function::new("x509_decode", 1, Some(1), x509_decode)];

fn x509_decode(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    decode(a.string(0)?).map_err(|e| a.error(e.to_string()))
}

/// Why `x509_decode` failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The text has no PEM block.
    #[error("invalid certificate: no PEM block")]
    NoPem,
    /// The CERTIFICATE block is not a certificate.
    #[error("invalid certificate: {0}")]
    Certificate(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The CERTIFICATE REQUEST block is not a certificate request.
    #[error("invalid certificate request: {0}")]
    Request(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// A PEM block of another kind.
    #[error("invalid certificate: PEM block {0:?} is neither CERTIFICATE nor CERTIFICATE REQUEST")]
    Label(String),
}

/// Decode the first PEM block of `text`: `CERTIFICATE` or `CERTIFICATE REQUEST`. The object has Go's field names:
/// `Raw` (base64 DER), `Version`, `Subject` (and for certificates `Issuer`) as `pkix.Name` (`CommonName`,
/// `Organization`, ..., `Names`), `DNSNames`, `EmailAddresses`, `IPAddresses`, `URIs` (strings),
/// `SignatureAlgorithm` and `PublicKeyAlgorithm` (Go's enum numbers); certificates also `SerialNumber` (a number, or
/// a decimal string past 2^64), `NotBefore`/`NotAfter` (RFC 3339), `KeyUsage`, `ExtKeyUsage`,
/// `BasicConstraintsValid`, `IsCA`, `MaxPathLen`.
pub(crate) fn decode(text: &str) -> Result<Value, DecodeError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|_| DecodeError::NoPem)?;
    match pem.label.as_str() {
        "CERTIFICATE" => {
            let (_, cert) =
                X509Certificate::from_der(&pem.contents).map_err(DecodeError::Certificate)?;
            Ok(certificate(&cert, &pem.contents))
        }
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
            let (_, csr) =
                X509CertificationRequest::from_der(&pem.contents).map_err(DecodeError::Request)?;
            Ok(request(&csr, &pem.contents))
        }
        other => Err(DecodeError::Label(other.to_string())),
    }
}

fn certificate(cert: &X509Certificate<'_>, der: &[u8]) -> Value {
    let tbs = &cert.tbs_certificate;
    let mut out = Map::new();
    out.insert("Raw".into(), raw(der));
    // Go stores the version as 1 + the encoded value (a v3 certificate is Version 3).
    out.insert("Version".into(), json!(tbs.version.0 + 1));
    let serial = tbs.serial.to_string();
    out.insert(
        "SerialNumber".into(),
        serial
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or(Value::String(serial)),
    );
    out.insert("Issuer".into(), name(&tbs.issuer));
    out.insert("Subject".into(), name(&tbs.subject));
    out.insert(
        "NotBefore".into(),
        time(tbs.validity.not_before.timestamp()),
    );
    out.insert("NotAfter".into(), time(tbs.validity.not_after.timestamp()));
    out.insert(
        "SignatureAlgorithm".into(),
        json!(signature_algorithm(&cert.signature_algorithm.algorithm)),
    );
    out.insert(
        "PublicKeyAlgorithm".into(),
        json!(public_key_algorithm(&tbs.subject_pki)),
    );
    let mut key_usage = 0u32;
    let mut ext_key_usage: Vec<u32> = Vec::new();
    let mut basic = (false, false, -1i64);
    let mut sans = Sans::default();
    for ext in tbs.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(k) => {
                let bits = [
                    k.digital_signature(),
                    k.non_repudiation(),
                    k.key_encipherment(),
                    k.data_encipherment(),
                    k.key_agreement(),
                    k.key_cert_sign(),
                    k.crl_sign(),
                    k.encipher_only(),
                    k.decipher_only(),
                ];
                key_usage = bits
                    .iter()
                    .enumerate()
                    .filter(|(_, set)| **set)
                    .fold(0, |acc, (i, _)| acc | (1 << i));
            }
            ParsedExtension::ExtendedKeyUsage(e) => {
                // Go's ExtKeyUsage numbers.
                for (set, n) in [
                    (e.any, 0),
                    (e.server_auth, 1),
                    (e.client_auth, 2),
                    (e.code_signing, 3),
                    (e.email_protection, 4),
                    (e.time_stamping, 8),
                    (e.ocsp_signing, 9),
                ] {
                    if set {
                        ext_key_usage.push(n);
                    }
                }
            }
            ParsedExtension::BasicConstraints(b) => {
                basic = (
                    true,
                    b.ca,
                    b.path_len_constraint.map(i64::from).unwrap_or(-1),
                );
            }
            ParsedExtension::SubjectAlternativeName(san) => sans.add(&san.general_names),
            _ => {}
        }
    }
    out.insert("KeyUsage".into(), json!(key_usage));
    out.insert("ExtKeyUsage".into(), strings_or_null(ext_key_usage));
    out.insert("BasicConstraintsValid".into(), json!(basic.0));
    out.insert("IsCA".into(), json!(basic.1));
    out.insert("MaxPathLen".into(), json!(basic.2));
    sans.insert_into(&mut out);
    Value::Object(out)
}

fn request(csr: &X509CertificationRequest<'_>, der: &[u8]) -> Value {
    let info = &csr.certification_request_info;
    let mut out = Map::new();
    out.insert("Raw".into(), raw(der));
    out.insert("Version".into(), json!(info.version.0));
    out.insert("Subject".into(), name(&info.subject));
    out.insert(
        "SignatureAlgorithm".into(),
        json!(signature_algorithm(&csr.signature_algorithm.algorithm)),
    );
    out.insert(
        "PublicKeyAlgorithm".into(),
        json!(public_key_algorithm(&info.subject_pki)),
    );
    let mut sans = Sans::default();
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                sans.add(&san.general_names);
            }
        }
    }
    sans.insert_into(&mut out);
    Value::Object(out)
}

fn raw(der: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(der))
}

fn time(seconds: i64) -> Value {
    match chrono::DateTime::from_timestamp(seconds, 0) {
        Some(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        None => Value::Null,
    }
}

/// Go marshals a nil slice as `null`.
fn strings_or_null<T: Into<Value>>(items: Vec<T>) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

/// A `pkix.Name`: the attributes Go lifts into fields, and every attribute in `Names`.
fn name(n: &X509Name<'_>) -> Value {
    const FIELDS: &[(&str, &str)] = &[
        ("2.5.4.6", "Country"),
        ("2.5.4.10", "Organization"),
        ("2.5.4.11", "OrganizationalUnit"),
        ("2.5.4.7", "Locality"),
        ("2.5.4.8", "Province"),
        ("2.5.4.9", "StreetAddress"),
        ("2.5.4.17", "PostalCode"),
    ];
    let mut lists: Vec<Vec<String>> = vec![Vec::new(); FIELDS.len()];
    let mut serial = String::new();
    let mut common_name = String::new();
    let mut names = Vec::new();
    for attr in n.iter_rdn().flat_map(|rdn| rdn.iter()) {
        let oid = attr.attr_type().to_id_string();
        let value = attr.as_str().map(str::to_string).unwrap_or_default();
        let arcs: Vec<Value> = attr
            .attr_type()
            .iter()
            .map(|it| it.map(Value::from).collect())
            .unwrap_or_default();
        names.push(json!({"Type": arcs, "Value": value}));
        if let Some(i) = FIELDS.iter().position(|(o, _)| *o == oid) {
            lists[i].push(value);
        } else if oid == "2.5.4.3" {
            common_name = value;
        } else if oid == "2.5.4.5" {
            serial = value;
        }
    }
    let mut out = Map::new();
    for ((_, field), values) in FIELDS.iter().zip(lists) {
        out.insert((*field).to_string(), strings_or_null(values));
    }
    out.insert("SerialNumber".into(), Value::String(serial));
    out.insert("CommonName".into(), Value::String(common_name));
    out.insert("Names".into(), strings_or_null(names));
    out.insert("ExtraNames".into(), Value::Null);
    Value::Object(out)
}

#[derive(Default)]
struct Sans {
    dns: Vec<String>,
    email: Vec<String>,
    ip: Vec<String>,
    uri: Vec<String>,
}

impl Sans {
    fn add(&mut self, names: &[GeneralName<'_>]) {
        for n in names {
            match n {
                GeneralName::DNSName(s) => self.dns.push((*s).to_string()),
                GeneralName::RFC822Name(s) => self.email.push((*s).to_string()),
                GeneralName::URI(s) => self.uri.push((*s).to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    self.ip.extend(ip);
                }
                _ => {}
            }
        }
    }

    fn insert_into(self, out: &mut Map<String, Value>) {
        out.insert("DNSNames".into(), strings_or_null(self.dns));
        out.insert("EmailAddresses".into(), strings_or_null(self.email));
        out.insert("IPAddresses".into(), strings_or_null(self.ip));
        out.insert("URIs".into(), strings_or_null(self.uri));
    }
}

/// Go's `x509.SignatureAlgorithm` number for an algorithm OID (0: unknown).
fn signature_algorithm(oid: &Oid<'_>) -> u32 {
    match oid.to_id_string().as_str() {
        "1.2.840.113549.1.1.2" => 1,
        "1.2.840.113549.1.1.4" => 2,
        "1.2.840.113549.1.1.5" => 3,
        "1.2.840.113549.1.1.11" => 4,
        "1.2.840.113549.1.1.12" => 5,
        "1.2.840.113549.1.1.13" => 6,
        "1.2.840.10040.4.3" => 7,
        "2.16.840.1.101.3.4.3.2" => 8,
        "1.2.840.10045.4.1" => 9,
        "1.2.840.10045.4.3.2" => 10,
        "1.2.840.10045.4.3.3" => 11,
        "1.2.840.10045.4.3.4" => 12,
        "1.2.840.113549.1.1.10" => 13,
        "1.3.101.112" => 16,
        _ => 0,
    }
}

/// Go's `x509.PublicKeyAlgorithm` number (0: unknown).
fn public_key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> u32 {
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => 1,
        "1.2.840.10040.4.1" => 2,
        "1.2.840.10045.2.1" => 3,
        "1.3.101.112" => 4,
        _ => 0,
    }
}
