//! The messages of the functions' errors reach rule responses and PolicyReports (inside `function <name>: ...`):
//! each variant's text is pinned here.

use serde_json::Value;

use super::encoding::YamlToJsonError;
use super::misc::{ImageError, RandomError, MAX_RANDOM_OUTPUT, MAX_RANDOM_PATTERN};
use super::time::LayoutError;
use super::x509::DecodeError;
use super::ArityError;
use crate::{search, Expression};

fn call_error(expr: &str) -> String {
    match search(expr, &Value::Null) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{expr} answered {v}"),
    }
}

#[test]
fn arity_error_text_is_kept() {
    let e = |expected: &str, given| ArityError {
        name: "f",
        expected: expected.to_string(),
        given,
    };
    assert_eq!(
        e("1", 2).to_string(),
        "function f() expects 1 argument, got 2"
    );
    assert_eq!(
        e("2", 1).to_string(),
        "function f() expects 2 arguments, got 1"
    );
    assert_eq!(
        e("1 to 2", 0).to_string(),
        "function f() expects 1 to 2 arguments, got 0"
    );
    assert_eq!(
        e("at least 1", 0).to_string(),
        "function f() expects at least 1 arguments, got 0"
    );
    assert_eq!(
        Expression::compile("to_upper(@, @)").map(|_| ()).map_err(|e| e.to_string()),
        Err(
            "invalid JMESPath expression \"to_upper(@, @)\": function to_upper() expects 1 argument, got 2"
                .to_string()
        )
    );
}

#[test]
fn yaml_to_json_error_text_is_kept() {
    assert_eq!(
        YamlToJsonError::Number(".nan".to_string()).to_string(),
        ".nan is not a JSON number"
    );
    assert_eq!(
        YamlToJsonError::Key.to_string(),
        "mapping keys must be scalars"
    );
    assert_eq!(
        call_error("parse_yaml('{[1]: 2}')"),
        "function parse_yaml: mapping keys must be scalars"
    );
}

#[test]
fn image_error_text_is_kept() {
    assert_eq!(
        ImageError::Patterns.to_string(),
        "internal error: reference patterns"
    );
    assert_eq!(
        ImageError::Invalid("A B".to_string()).to_string(),
        "invalid image reference \"A B\""
    );
    assert_eq!(
        call_error("image_normalize('a b')"),
        "function image_normalize: invalid image reference \"a b\""
    );
}

#[test]
fn random_error_text_is_kept() {
    assert_eq!(RandomError::Empty.to_string(), "no pattern provided");
    assert_eq!(
        RandomError::TooLong.to_string(),
        format!("pattern longer than {MAX_RANDOM_PATTERN} bytes")
    );
    assert_eq!(
        RandomError::TooExpensive.to_string(),
        "pattern too expensive to generate"
    );
    assert_eq!(
        RandomError::TooLongOutput.to_string(),
        format!("pattern generates more than {MAX_RANDOM_OUTPUT} bytes")
    );
    assert_eq!(
        RandomError::EmptyClass.to_string(),
        "pattern has an empty character class"
    );
    assert_eq!(
        RandomError::Repetition(5000).to_string(),
        "repetition {5000} too large"
    );
    let parse = regex_syntax::Parser::new()
        .parse("(")
        .expect_err("not a regex");
    let expected = format!("invalid pattern \"(\": {parse}");
    assert_eq!(
        RandomError::Invalid {
            pattern: "(".to_string(),
            source: Box::new(parse),
        }
        .to_string(),
        expected
    );
    assert_eq!(
        call_error("random('')"),
        "function random: no pattern provided"
    );
}

#[test]
fn decode_error_text_is_kept() {
    assert_eq!(
        DecodeError::NoPem.to_string(),
        "invalid certificate: no PEM block"
    );
    assert_eq!(
        DecodeError::Label("PRIVATE KEY".to_string()).to_string(),
        "invalid certificate: PEM block \"PRIVATE KEY\" is neither CERTIFICATE nor CERTIFICATE REQUEST"
    );
    let nom = x509_parser::nom::Err::Error(x509_parser::error::X509Error::InvalidVersion);
    assert_eq!(
        DecodeError::Certificate(nom.clone()).to_string(),
        format!("invalid certificate: {nom}")
    );
    assert_eq!(
        DecodeError::Request(nom.clone()).to_string(),
        format!("invalid certificate request: {nom}")
    );
    assert_eq!(
        call_error("x509_decode('hello')"),
        "function x509_decode: invalid certificate: no PEM block"
    );
}

#[test]
fn layout_error_text_is_kept() {
    let text = || "13:00PM".to_string();
    let cases = [
        (
            LayoutError::Mismatch {
                text: text(),
                layout: "15:04".to_string(),
            },
            "cannot parse \"13:00PM\" as \"15:04\"",
        ),
        (
            LayoutError::ExtraText {
                text: text(),
                layout: "15:04".to_string(),
                rest: "PM".to_string(),
            },
            "cannot parse \"13:00PM\" as \"15:04\": extra text \"PM\"",
        ),
        (
            LayoutError::Hour(text()),
            "hour out of range in \"13:00PM\"",
        ),
        (LayoutError::Day(text()), "day out of range in \"13:00PM\""),
        (
            LayoutError::Time(text()),
            "time out of range in \"13:00PM\"",
        ),
        (
            LayoutError::Offset(text()),
            "invalid zone offset in \"13:00PM\"",
        ),
        (LayoutError::Invalid(text()), "invalid time \"13:00PM\""),
    ];
    for (error, expected) in cases {
        assert_eq!(error.to_string(), expected);
    }
    assert_eq!(
        call_error("time_parse('15:04', '13:00PM')"),
        "function time_parse: cannot parse \"13:00PM\" as \"15:04\": extra text \"PM\""
    );
    assert_eq!(
        call_error("time_parse('3:04PM', '13:00PM')"),
        "function time_parse: hour out of range in \"13:00PM\""
    );
}
