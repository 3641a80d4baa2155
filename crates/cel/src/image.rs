//! Kyverno's image reference library: `image(s)` (also spelled `parseImageReference(s)`), `isImage(s)` and, on a
//! `kyverno.Image`, `registry()`, `repository()`, `identifier()`, `tag()`, `digest()` and `containsDigest()`.
//!
//! References are read as container runtimes read them (the `distribution/reference` grammar, normalized):
//! `nginx:1.25` is registry `docker.io`, repository `library/nginx`, tag `1.25`; a first path component that holds a
//! `.` or a `:`, or is `localhost`, is the registry (`index.docker.io` is normalized to `docker.io`). `tag()` and
//! `digest()` are `""` when the reference has none (no `latest` is implied); `identifier()` is the digest when there
//! is one, else the tag. A reference that does not parse is an error of `image()` and `false` for `isImage()`.

use std::sync::{Arc, LazyLock};

use cel::common::types::{Type, STRING_TYPE};
use cel::common::value::CowVal;
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};
use regex::Regex;

use crate::args::{opaque_arg, out, take, text};

/// The CEL type name.
pub const TYPE_NAME: &str = "kyverno.Image";

/// The longest repository name (registry and path) the grammar allows.
const MAX_NAME: usize = 255;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    registry: String,
    repository: String,
    tag: String,
    digest: String,
}

impl Opaque for Image {
    fn runtime_type_name(&self) -> &str {
        TYPE_NAME
    }
}

/// `domain(:port)?/` components, path components, tag and digest of the reference grammar, anchored.
static GRAMMAR: LazyLock<Result<[Regex; 4], regex::Error>> = LazyLock::new(|| {
    Ok([
        // A registry: DNS labels separated by dots, or a bracketed IPv6 address, with an optional port.
        Regex::new(
            r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$",
        )?,
        Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")?,
        Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")?,
        Regex::new(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")?,
    ])
});

/// A reference that does not parse (at most its first 128 characters are shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {why}")]
pub struct InvalidImage {
    reference: String,
    why: String,
}

/// Why a reference does not parse.
fn invalid(reference: &str, why: &str) -> InvalidImage {
    InvalidImage {
        reference: reference.chars().take(128).collect(),
        why: why.to_string(),
    }
}

/// Parses a reference.
pub fn parse(reference: &str) -> Result<Image, InvalidImage> {
    let grammar = GRAMMAR
        .as_ref()
        .map_err(|e| invalid(reference, &format!("internal: image grammar: {e}")))?;
    let [registry_re, component_re, tag_re, digest_re] = grammar;
    if reference.is_empty() {
        return Err(invalid(reference, "empty"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => {
            if !digest_re.is_match(digest) {
                return Err(invalid(reference, "bad digest"));
            }
            (rest, digest)
        }
        None => (reference, ""),
    };
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], &rest[last_slash + i + 1..]),
        None => (rest, ""),
    };
    if !tag.is_empty() && !tag_re.is_match(tag) || tag.is_empty() && rest.len() != name.len() {
        return Err(invalid(reference, "bad tag"));
    }
    if name.len() > MAX_NAME {
        return Err(invalid(reference, "name longer than 255 characters"));
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, path.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    if !registry_re.is_match(registry) {
        return Err(invalid(reference, "bad registry"));
    }
    if path.is_empty() || !path.split('/').all(|c| component_re.is_match(c)) {
        return Err(invalid(
            reference,
            "bad repository (lowercase letters, digits and separators)",
        ));
    }
    let registry = if registry == "index.docker.io" {
        "docker.io"
    } else {
        registry
    };
    let repository = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok(Image {
        registry: registry.to_string(),
        repository,
        tag: tag.to_string(),
        digest: digest.to_string(),
    })
}

fn image_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let s = text("image", &s)?;
    let image = parse(&s).map_err(|e| ExecutionError::function_error("image", e.to_string()))?;
    out(Value::Opaque(Arc::new(image)))
}

fn is_image<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let s = text("isImage", &s)?;
    out(Value::Bool(parse(&s).is_ok()))
}

fn image_arg(function: &str, args: Vec<CowVal<'_, '_>>) -> Result<Image, ExecutionError> {
    let [i] = take(args)?;
    opaque_arg(function, &i, "expected an image")
}

fn part<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    get: fn(&Image) -> &str,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let i = image_arg(function, args)?;
    out(Value::String(get(&i).to_string().into()))
}

fn registry<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("registry", args, |i| &i.registry)
}

fn repository<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("repository", args, |i| &i.repository)
}

fn tag<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("tag", args, |i| &i.tag)
}

fn digest<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("digest", args, |i| &i.digest)
}

fn identifier<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    part("identifier", args, |i| {
        if i.digest.is_empty() {
            &i.tag
        } else {
            &i.digest
        }
    })
}

fn contains_digest<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let i = image_arg("containsDigest", args)?;
    out(Value::Bool(!i.digest.is_empty()))
}

/// Registers the type and its functions (Kyverno dialect).
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let t = || Type::new_opaque_type(TYPE_NAME);
    env.add_type(t())?;
    env.add_overload("image", "kyverno_image_string", vec![STRING_TYPE], image_fn)?;
    env.add_overload(
        "parseImageReference",
        "kyverno_parse_image_reference_string",
        vec![STRING_TYPE],
        image_fn,
    )?;
    env.add_overload(
        "isImage",
        "kyverno_is_image_string",
        vec![STRING_TYPE],
        is_image,
    )?;
    env.add_member_overload("registry", "kyverno_image_registry", t(), vec![], registry)?;
    env.add_member_overload(
        "repository",
        "kyverno_image_repository",
        t(),
        vec![],
        repository,
    )?;
    env.add_member_overload("tag", "kyverno_image_tag", t(), vec![], tag)?;
    env.add_member_overload("digest", "kyverno_image_digest", t(), vec![], digest)?;
    env.add_member_overload(
        "identifier",
        "kyverno_image_identifier",
        t(),
        vec![],
        identifier,
    )?;
    env.add_member_overload(
        "containsDigest",
        "kyverno_image_contains_digest",
        t(),
        vec![],
        contains_digest,
    )
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::{Dialect, Value};

    fn eval(src: &str) -> Result<Value, crate::EvalError> {
        crate::eval_on_for(
            Dialect::Kyverno,
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "a", "image": "corp.reg.com/team/app:1.2"},
                                        {"name": "b", "image": "nginx"}]}}),
            src,
        )
    }

    #[test]
    fn references_are_normalized_as_container_runtimes_read_them() {
        let i = parse("nginx").expect("parses");
        assert_eq!(
            (i.registry.as_str(), i.repository.as_str(), i.tag.as_str()),
            ("docker.io", "library/nginx", "")
        );
        let i = parse("localhost:5000/a/b:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
            .expect("parses");
        assert_eq!(i.registry, "localhost:5000");
        assert_eq!(i.repository, "a/b");
        assert_eq!(i.tag, "v1");
        assert!(i.digest.starts_with("sha256:"));
        assert_eq!(
            parse("index.docker.io/x").expect("parses").repository,
            "library/x"
        );
        assert_eq!(
            parse("bitnami/redis:7").expect("parses").registry,
            "docker.io"
        );
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx@sha256:short",
            "a//b",
            "nginx:bad tag",
            "-nginx",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn the_cel_functions_read_the_parts() {
        for src in [
            "image(object.spec.containers[0].image).registry() == 'corp.reg.com'",
            "image(object.spec.containers[0].image).repository() == 'team/app'",
            "image(object.spec.containers[0].image).tag() == '1.2'",
            "image(object.spec.containers[0].image).identifier() == '1.2'",
            "!image(object.spec.containers[1].image).containsDigest()",
            "image(object.spec.containers[1].image).digest() == ''",
            "object.spec.containers.map(c, image(c.image).registry()) == ['corp.reg.com', 'docker.io']",
            "parseImageReference('ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef').containsDigest()",
            "image('ghcr.io/o/r:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef').identifier().startsWith('sha256:')",
            "isImage('nginx:1.25') && !isImage('NGINX')",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let e = eval("image('Not An Image').registry() == ''").expect_err("bad reference");
        assert!(e.to_string().contains("invalid image reference"), "{e}");
    }
}
