//! The Kubernetes URL library: `url(s)`, `isURL(s)` and, on a `net.URL`, `getScheme()`, `getHost()`,
//! `getHostname()`, `getPort()`, `getEscapedPath()`, `getQuery()`. As Go's `url.ParseRequestURI`, a URL is absolute
//! (with a scheme) or an absolute path; the parts are returned as written (the `url` crate only validates).

use std::collections::BTreeMap;
use std::sync::Arc;

use cel::common::types::{Type, STRING_TYPE};
use cel::common::value::CowVal;
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::args::{opaque_arg, out, take, text};

/// The CEL type name.
pub const TYPE_NAME: &str = "net.URL";

/// A URL's parts, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        TYPE_NAME
    }
}

/// Parses an absolute URL or an absolute path.
pub fn parse(s: &str) -> Option<Url> {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    let (before_fragment, _) = s.split_once('#').unwrap_or((s, ""));
    let (rest, query) = before_fragment
        .split_once('?')
        .unwrap_or((before_fragment, ""));
    if rest.starts_with('/') {
        return Some(Url {
            path: rest.to_string(),
            query: query.to_string(),
            ..Url::default()
        });
    }
    // Absolute: the url crate must accept it.
    url::Url::parse(s).ok()?;
    let (scheme, after) = rest.split_once(':')?;
    let (host, path) = match after.strip_prefix("//") {
        Some(authority_and_path) => {
            let end = authority_and_path
                .find('/')
                .unwrap_or(authority_and_path.len());
            let (authority, path) = authority_and_path.split_at(end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (host.to_string(), path.to_string())
        }
        None => (String::new(), after.to_string()),
    };
    Some(Url {
        scheme: scheme.to_ascii_lowercase(),
        host,
        path,
        query: query.to_string(),
    })
}

impl Url {
    /// The host without the port, IPv6 addresses without brackets.
    fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split_once(']').map_or(rest, |(h, _)| h);
        }
        self.host.split_once(':').map_or(&self.host, |(h, _)| h)
    }

    fn port(&self) -> &str {
        let after = match self.host.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or("", |(_, p)| p),
            None => self.host.split_once(':').map_or("", |(_, p)| p),
        };
        after.strip_prefix(':').unwrap_or(after)
    }
}

fn url_arg(function: &str, args: Vec<CowVal<'_, '_>>) -> Result<Url, ExecutionError> {
    let [u] = take(args)?;
    opaque_arg(function, &u, "expected a URL")
}

fn url_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = match args.as_slice() {
        [s] => text("url", s)?,
        _ => return Err(ExecutionError::invalid_argument_count(1, args.len())),
    };
    let u = parse(&s).ok_or_else(|| {
        ExecutionError::function_error(
            "url",
            format!("URL parse error during conversion from string: {s:?}"),
        )
    })?;
    out(Value::Opaque(Arc::new(u)))
}

fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = match args.as_slice() {
        [s] => text("isURL", s)?,
        _ => return Err(ExecutionError::invalid_argument_count(1, args.len())),
    };
    out(Value::Bool(parse(&s).is_some()))
}

fn part<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    get: fn(&Url) -> &str,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let u = url_arg(function, args)?;
    out(Value::String(get(&u).to_string().into()))
}

fn scheme<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("getScheme", args, |u| &u.scheme)
}

fn host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("getHost", args, |u| &u.host)
}

fn hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("getHostname", args, Url::hostname)
}

fn port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("getPort", args, Url::port)
}

fn path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("getEscapedPath", args, |u| &u.path)
}

/// `map<string, list<string>>` of the decoded query parameters.
fn query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let u = url_arg("getQuery", args)?;
    let mut params: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(u.query.as_bytes()) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(serde_json::Value::String(v.into_owned()));
    }
    let json = serde_json::Value::Object(
        params
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::Array(v)))
            .collect(),
    );
    Ok(CowVal::Owned(Box::new(crate::bind::shared(&json))))
}

/// Registers the type and its functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let u = || Type::new_opaque_type(TYPE_NAME);
    env.add_type(u())?;
    env.add_overload("url", "url(string)", vec![STRING_TYPE], url_fn)?;
    env.add_overload("isURL", "isURL(string)", vec![STRING_TYPE], is_url)?;
    env.add_member_overload("getScheme", "url.getScheme()", u(), vec![], scheme)?;
    env.add_member_overload("getHost", "url.getHost()", u(), vec![], host)?;
    env.add_member_overload("getHostname", "url.getHostname()", u(), vec![], hostname)?;
    env.add_member_overload("getPort", "url.getPort()", u(), vec![], port)?;
    env.add_member_overload("getEscapedPath", "url.getEscapedPath()", u(), vec![], path)?;
    env.add_member_overload("getQuery", "url.getQuery()", u(), vec![], query)
}

#[cfg(test)]
mod tests {
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"endpoint": "https://user@api.example.com:8443/v1/items?x=1&x=2&y=z"}}),
            src,
        )
    }

    #[test]
    fn urls() {
        for src in [
            "url(object.data.endpoint).getScheme() == 'https'",
            "url(object.data.endpoint).getHost() == 'api.example.com:8443'",
            "url(object.data.endpoint).getHostname() == 'api.example.com'",
            "url(object.data.endpoint).getPort() == '8443'",
            "url(object.data.endpoint).getEscapedPath() == '/v1/items'",
            "url(object.data.endpoint).getQuery() == {'x': ['1', '2'], 'y': ['z']}",
            "url('https://[::1]:80/').getHostname() == '::1' && url('https://[::1]:80/').getHost() == '[::1]:80'",
            "url('http://example.com').getPort() == '' && url('http://example.com').getEscapedPath() == ''",
            "url('/absolute/path?q=1').getScheme() == '' && url('/absolute/path').getEscapedPath() == '/absolute/path'",
            "isURL('https://example.com') && !isURL('not a url') && !isURL('relative/path') && !isURL('')",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let e = eval("url('nope')").expect_err("bad url");
        assert!(e.to_string().contains("URL parse error"), "{e}");
    }
}
