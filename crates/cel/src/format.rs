//! The Kubernetes format library (Kubernetes 1.31): `format.named(name)` (an optional `kubernetes.NamedFormat`,
//! none for an unknown name), the constructors `format.dns1123Label()`, `format.dns1123Subdomain()`,
//! `format.dns1035Label()`, `format.qualifiedName()`, `format.dns1123LabelPrefix()`,
//! `format.dns1123SubdomainPrefix()`, `format.dns1035LabelPrefix()`, `format.labelValue()`, `format.uri()`,
//! `format.uuid()`, `format.byte()`, `format.date()`, `format.datetime()`, and `<format>.validate(s)`: none when `s`
//! is valid, else the list of what is wrong. The rules are apimachinery's (length limits and character classes); the
//! wording of the messages follows it but is not guaranteed to be identical.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use cel::common::types::{CelOptional, Type, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};
use regex::Regex;

use crate::args::{opaque_arg, take, text};

/// The CEL type name.
pub const TYPE_NAME: &str = "kubernetes.NamedFormat";

/// The formats, by name.
pub const NAMES: [&str; 13] = [
    "dns1123Label",
    "dns1123Subdomain",
    "dns1035Label",
    "qualifiedName",
    "dns1123LabelPrefix",
    "dns1123SubdomainPrefix",
    "dns1035LabelPrefix",
    "labelValue",
    "uri",
    "uuid",
    "byte",
    "date",
    "datetime",
];

/// A named format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(&'static str);

impl Opaque for Format {
    fn runtime_type_name(&self) -> &str {
        TYPE_NAME
    }
}

const LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const LABEL_1035: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

fn anchored(pattern: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).ok()
}

fn regexes() -> Option<&'static [Regex; 5]> {
    static RE: OnceLock<Option<[Regex; 5]>> = OnceLock::new();
    RE.get_or_init(|| {
        Some([
            anchored(LABEL)?,
            anchored(&format!("{LABEL}(\\.{LABEL})*"))?,
            anchored(LABEL_1035)?,
            anchored(QUALIFIED)?,
            anchored(
                "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            )?,
        ])
    })
    .as_ref()
}

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(too_long(63));
    }
    if !regexes().is_some_and(|r| r[0].is_match(s)) {
        out.push(format!("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{LABEL}')"));
    }
    out
}

fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push(too_long(253));
    }
    if !regexes().is_some_and(|r| r[1].is_match(s)) {
        out.push(format!("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{LABEL}(\\.{LABEL})*')"));
    }
    out
}

fn dns1035_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(too_long(63));
    }
    if !regexes().is_some_and(|r| r[2].is_match(s)) {
        out.push(format!("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{LABEL_1035}')"));
    }
    out
}

/// A name prefix (`generateName`): a trailing `-` is allowed.
fn prefix(s: &str) -> String {
    match s.strip_suffix('-') {
        Some(rest) if !rest.is_empty() => format!("{rest}a"),
        _ => s.to_string(),
    }
}

fn qualified_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if s.matches('/').count() > 1 {
        out.push(format!("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
        return out;
    }
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push(format!("name part {}", too_long(63)));
        }
        if !regexes().is_some_and(|r| r[3].is_match(name)) {
            out.push(format!("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED}')"));
        }
    }
    out
}

fn label_value(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(too_long(63));
    }
    if !s.is_empty() && !regexes().is_some_and(|r| r[3].is_match(s)) {
        out.push(format!("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(({QUALIFIED})?'"));
    }
    out
}

fn check(ok: bool, message: &str) -> Vec<String> {
    if ok {
        Vec::new()
    } else {
        vec![message.to_string()]
    }
}

/// What is wrong with `s` in `format` (empty: valid).
pub fn validate(format: &str, s: &str) -> Vec<String> {
    match format {
        "dns1123Label" => dns1123_label(s),
        "dns1123Subdomain" => dns1123_subdomain(s),
        "dns1035Label" => dns1035_label(s),
        "qualifiedName" => qualified_name(s),
        "dns1123LabelPrefix" => dns1123_label(&prefix(s)),
        "dns1123SubdomainPrefix" => dns1123_subdomain(&prefix(s)),
        "dns1035LabelPrefix" => dns1035_label(&prefix(s)),
        "labelValue" => label_value(s),
        "uri" => check(crate::urls::parse(s).is_some(), "invalid URI"),
        "uuid" => check(
            regexes().is_some_and(|r| r[4].is_match(s)),
            "does not match the UUID format",
        ),
        "byte" => check(
            base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
            "invalid base64",
        ),
        "date" => check(
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10,
            "invalid date",
        ),
        "datetime" => check(
            chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            "invalid datetime",
        ),
        _ => vec![format!("unknown format {format}")],
    }
}

fn format_value(name: &'static str) -> Result<Box<dyn Val + 'static>, ExecutionError> {
    Value::Opaque(Arc::new(Format(name))).try_into()
}

/// `format.named(name)`.
fn named<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [name] = take(args)?;
    let name = text("format.named", &name)?;
    let found = NAMES.iter().find(|n| **n == name);
    Ok(CowVal::Owned(Box::new(match found {
        Some(n) => CelOptional::of(format_value(n)?),
        None => CelOptional::none(),
    })))
}

/// `<format>.validate(s)`.
fn validate_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [f, s] = take(args)?;
    let format = opaque_arg::<Format>("validate", &f, "expected a format")?.0;
    let s = text("validate", &s)?;
    let errors = validate(format, &s);
    if errors.is_empty() {
        return Ok(CowVal::Owned(Box::new(CelOptional::none())));
    }
    let list: Box<dyn Val> = Value::List(Arc::new(
        errors
            .into_iter()
            .map(|e| Value::String(Arc::new(e)))
            .collect(),
    ))
    .try_into()?;
    Ok(CowVal::Owned(Box::new(CelOptional::of(list))))
}

macro_rules! constructor {
    ($fn:ident, $name:literal) => {
        fn $fn<'b, 'v>(_args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
            Ok(CowVal::Owned(format_value($name)?))
        }
    };
}

constructor!(dns1123_label_fn, "dns1123Label");
constructor!(dns1123_subdomain_fn, "dns1123Subdomain");
constructor!(dns1035_label_fn, "dns1035Label");
constructor!(qualified_name_fn, "qualifiedName");
constructor!(dns1123_label_prefix_fn, "dns1123LabelPrefix");
constructor!(dns1123_subdomain_prefix_fn, "dns1123SubdomainPrefix");
constructor!(dns1035_label_prefix_fn, "dns1035LabelPrefix");
constructor!(label_value_fn, "labelValue");
constructor!(uri_fn, "uri");
constructor!(uuid_fn, "uuid");
constructor!(byte_fn, "byte");
constructor!(date_fn, "date");
constructor!(datetime_fn, "datetime");

/// Registers the type and its functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let f = || Type::new_opaque_type(TYPE_NAME);
    env.add_type(f())?;
    env.add_overload(
        "format.named",
        "format.named(string)",
        vec![STRING_TYPE],
        named,
    )?;
    type Ctor = for<'b, 'v> fn(Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError>;
    let constructors: [(&str, Ctor); 13] = [
        ("dns1123Label", dns1123_label_fn),
        ("dns1123Subdomain", dns1123_subdomain_fn),
        ("dns1035Label", dns1035_label_fn),
        ("qualifiedName", qualified_name_fn),
        ("dns1123LabelPrefix", dns1123_label_prefix_fn),
        ("dns1123SubdomainPrefix", dns1123_subdomain_prefix_fn),
        ("dns1035LabelPrefix", dns1035_label_prefix_fn),
        ("labelValue", label_value_fn),
        ("uri", uri_fn),
        ("uuid", uuid_fn),
        ("byte", byte_fn),
        ("date", date_fn),
        ("datetime", datetime_fn),
    ];
    for (name, ctor) in constructors {
        let full = format!("format.{name}");
        env.add_overload(&full, &format!("{full}()"), vec![], ctor)?;
    }
    env.add_member_overload(
        "validate",
        "format.validate(string)",
        f(),
        vec![STRING_TYPE],
        validate_fn,
    )
}

#[cfg(test)]
mod tests {
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-pod"}}),
            src,
        )
    }

    fn yes(src: &str) {
        assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
    }

    #[test]
    fn named_formats_validate() {
        yes("!format.dns1123Label().validate(object.metadata.name).hasValue()");
        yes("format.dns1123Label().validate('My_Pod').hasValue()");
        let long = format!(
            "format.dns1123Label().validate('{}').value().size() == 1",
            "a".repeat(64)
        );
        yes(&long);
        yes("format.named('dns1123Subdomain').value().validate('example.com') == optional.none()");
        yes("format.named('dns1123Subdomain').value().validate('-bad.com').hasValue()");
        yes("!format.named('noSuchFormat').hasValue()");
        yes("!format.dns1035Label().validate('a1').hasValue() && format.dns1035Label().validate('1a').hasValue()");
        yes("!format.dns1123LabelPrefix().validate('web-').hasValue() && format.dns1123Label().validate('web-').hasValue()");
        yes("!format.qualifiedName().validate('example.com/My_Name').hasValue() && format.qualifiedName().validate('a/b/c').hasValue()");
        yes("!format.labelValue().validate('').hasValue() && format.labelValue().validate('-x').hasValue()");
        yes("!format.uuid().validate('123e4567-e89b-12d3-a456-426614174000').hasValue() && format.uuid().validate('nope').hasValue()");
        yes("!format.byte().validate('aGVsbG8=').hasValue() && format.byte().validate('***').hasValue()");
        yes("!format.date().validate('2024-02-29').hasValue() && format.date().validate('2023-02-29').hasValue()");
        yes("!format.datetime().validate('2024-01-01T00:00:00Z').hasValue() && format.datetime().validate('2024-01-01').hasValue()");
        yes("!format.uri().validate('https://example.com/x').hasValue() && format.uri().validate('relative').hasValue()");
    }

    #[test]
    fn lint_knows_the_format_library() {
        let p = crate::Program::compile("format.dns1123Labl().validate('x').hasValue()")
            .expect("compiles");
        let e = p.lint(crate::lint::KUBERNETES_VARIABLES).unwrap_err();
        assert!(
            e.to_string().contains("did you mean format.dns1123Label"),
            "{e}"
        );
    }
}
