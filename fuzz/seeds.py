#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora to fuzz/seeds/<target>/ from the repository's own policies/ and tests/fixtures.

Needs PyYAML. The output is committed; run this again after adding fixtures worth seeding from.
"""
import hashlib
import json
import pathlib
import re
import shutil

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"
SOURCES = [ROOT / "policies", ROOT / "tests" / "fixtures"]
MAX_SEED = 64 * 1024


def files(*suffixes):
    for base in SOURCES:
        for path in sorted(base.rglob("*")):
            if path.is_file() and path.suffix in suffixes:
                yield path


def documents(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except Exception:
        return []


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > MAX_SEED:
        return
    directory = OUT / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def walk(value, key=None):
    yield key, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, key)


def review(obj, operation="CREATE"):
    meta = obj.get("metadata") or {}
    api_version = obj.get("apiVersion", "v1")
    group, _, version = api_version.rpartition("/")
    kind = obj.get("kind", "Pod")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "seed-" + str(meta.get("name", "x")),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", "default"),
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": obj if operation != "DELETE" else None,
            "oldObject": obj if operation in ("UPDATE", "DELETE") else None,
            "dryRun": False,
        },
    }


POLICY_KINDS = {"ConstraintTemplate", "ClusterPolicy", "Policy", "PolicyException", "ValidatingPolicy"}
EXTRA_EXPRESSIONS = [
    "request.object.metadata.labels.app",
    "request.object.spec.containers[].image",
    "request.object.spec.containers[?name=='app'].resources.limits.memory | [0]",
    "length(request.object.spec.containers)",
    "to_upper(request.object.metadata.name)",
    "split(request.object.metadata.name, '-')",
    "regex_match('^nginx', request.object.spec.containers[0].image)",
    "divide(`10`, `3`)",
    "truncate(request.object.metadata.name, `2`)",
    "time_since('', '2024-01-01T00:00:00Z', '')",
    "base64_decode(base64_encode('abc'))",
    "items(request.object.metadata.labels, 'key', 'value')",
    "parse_json('{\"a\": 1}').a",
    "request.object.metadata.annotations.\"a.example.com/b\" || 'none'",
    "@",
    "element.name",
    "[request.object.metadata.name, request.namespace]",
    "{n: request.object.metadata.name}",
    "multiply('128Mi', `2`)",
    "compare('a', 'b')",
]


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    expressions = set(EXTRA_EXPRESSIONS)
    reviews = 0
    for path in files(".yaml", ".yml"):
        text = path.read_text()
        write("policy_loader", text)
        for match in re.finditer(r"\{\{(.*?)\}\}", text):
            expressions.add(match.group(1).strip())
        for doc in documents(path):
            kind = doc.get("kind")
            if kind in POLICY_KINDS:
                for key, value in walk(doc):
                    if key == "pattern" and isinstance(value, (dict, list)):
                        write("kyverno_pattern", json.dumps(value) + "\0{}")
                    if key == "rego" and isinstance(value, str):
                        write("rego_loader", value)
                    if isinstance(value, str) and "{{" in value:
                        write("kyverno_variables", value)
            elif kind and "metadata" in doc:
                write("template_agreement", json.dumps(doc))
                reviews += 1
                operations = ("CREATE", "UPDATE", "DELETE") if reviews <= 10 else ("CREATE",)
                for operation in operations:
                    write("admission_decode", json.dumps(review(doc, operation)))
    # Patterns against each resource of the fixtures: pair every pattern with a few resources.
    resources = [doc for path in files(".yaml", ".yml") for doc in documents(path)
                 if doc.get("kind") not in POLICY_KINDS and "metadata" in doc][:8]
    patterns = [p.read_bytes().split(b"\0")[0].decode() for p in sorted((OUT / "kyverno_pattern").glob("*"))]
    for pattern in patterns:
        for resource in resources[:3]:
            write("kyverno_pattern", pattern + "\0" + json.dumps(resource))
    for path in files(".rego"):
        write("rego_loader", path.read_text())
    for expression in sorted(expressions):
        write("jmespath", expression)
        write("kyverno_variables", "{{ " + expression + " }}")
        write("kyverno_variables", "prefix-{{" + expression + "}}-suffix")
    for target in sorted(p.name for p in OUT.iterdir()):
        print(target, len(list((OUT / target).iterdir())))


main()
