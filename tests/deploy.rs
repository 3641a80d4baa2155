//! The kustomize install in `deploy/`: render it with `kubectl kustomize` and check the objects an operator relies
//! on: hardening, probes on the admin port, webhook exclusions and failure policies, RBAC, the policies ConfigMap
//! and both certificate overlays.
//!
//! kubectl (1.21 or later, for its built-in kustomize v4+) must be installed: without it these tests fail and say so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize DIR`, parsed into one JSON value per object.
fn kustomize(dir: &Path) -> Vec<Value> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not installed, and these tests render deploy/ with `kubectl kustomize`. Install kubectl \
             1.21 or later (its built-in kustomize must be v4 or later; Debian's kubernetes-client 1.20 is too old)"
        ),
        Err(err) => panic!("cannot run kubectl: {err}"),
    };
    if !output.status.success() {
        let version = Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .map(|v| String::from_utf8_lossy(&v.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "kubectl kustomize {} failed:\n{}\n(kubectl 1.21 or later is required; this one says: {})",
            dir.display(),
            String::from_utf8_lossy(&output.stderr),
            version.trim()
        );
    }
    let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).expect("kustomize output is YAML");
            serde_json::to_value(value).expect("YAML object converts to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

struct Rendered(Vec<Value>);

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.of_kind(kind);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {kind}, found {}",
            found.len()
        );
        found[0]
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .filter_map(|o| o["kind"].as_str().map(str::to_string))
            .collect()
    }
}

fn base() -> Rendered {
    Rendered(kustomize(&root().join("deploy")))
}

fn str_list(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The value of `--name=value` in a container's args.
fn flag<'a>(container: &'a Value, name: &str) -> &'a str {
    let prefix = format!("--{name}=");
    str_list(&container["args"])
        .into_iter()
        .find_map(|a| a.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("container args have no --{name}=...: {}", container["args"]))
}

fn container_port(container: &Value, name: &str) -> i64 {
    container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    container["volumeMounts"]
        .as_array()
        .and_then(|mounts| mounts.iter().find(|m| m["name"] == volume))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .and_then(|vols| vols.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn base_has_every_object() {
    let rendered = base();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ConfigMap",
    ] {
        assert!(
            rendered.kinds().contains(kind),
            "deploy/ renders no {kind}: {:?}",
            rendered.kinds()
        );
    }
    // Everything namespaced lives in the policyctl namespace.
    let ns = rendered.one("Namespace")["metadata"]["name"]
        .as_str()
        .expect("namespace name")
        .to_string();
    assert_eq!(ns, "policyctl");
    for object in &rendered.0 {
        let kind = object["kind"].as_str().unwrap_or_default();
        if matches!(
            kind,
            "Deployment" | "Service" | "ServiceAccount" | "PodDisruptionBudget" | "ConfigMap"
        ) {
            assert_eq!(
                object["metadata"]["namespace"],
                ns.as_str(),
                "{kind} is not in {ns}"
            );
        }
    }
    // No private key is ever part of the base.
    assert!(
        rendered.of_kind("Secret").is_empty(),
        "the base must not carry a Secret"
    );
}

#[test]
fn deployment_is_hardened_and_highly_available() {
    let rendered = base();
    let deployment = rendered.one("Deployment");
    let spec = &deployment["spec"];
    assert!(
        spec["replicas"].as_i64().unwrap_or(0) >= 2,
        "replicas must be at least 2: {}",
        spec["replicas"]
    );
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
        "a rollout must not drop below replicas"
    );

    let pod = &spec["template"]["spec"];
    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|c| c["topologyKey"] == "kubernetes.io/hostname"),
        "replicas must be spread over nodes"
    );
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for constraint in spread {
        for (key, value) in constraint["labelSelector"]["matchLabels"]
            .as_object()
            .expect("labelSelector")
        {
            assert_eq!(
                &pod_labels[key], value,
                "spread constraint selects other pods"
            );
        }
    }

    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    assert!(
        pod_security["runAsUser"].as_i64().unwrap_or(0) > 0,
        "numeric non-root user"
    );

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
    assert!(
        str_list(&security["capabilities"]["drop"]).contains(&"ALL"),
        "capabilities must drop ALL"
    );
    assert!(
        security["capabilities"]["add"].is_null(),
        "no capability may be added"
    );
    assert_ne!(security["privileged"], true);

    let resources = &container["resources"];
    assert!(
        resources["requests"]["cpu"].is_string() && resources["requests"]["memory"].is_string()
    );
    assert!(
        resources["limits"]["memory"].is_string(),
        "a memory limit is required"
    );
    assert!(
        resources["limits"]["cpu"].is_null(),
        "no CPU limit: throttling becomes admission latency"
    );
}

#[test]
fn probes_hit_the_admin_port() {
    let rendered = base();
    let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(str_list(&container["args"]).first(), Some(&"serve"));
    let admin_port = container_port(container, "admin");
    assert!(
        flag(container, "admin-addr").ends_with(&format!(":{admin_port}")),
        "--admin-addr and the admin port differ"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = &get["port"];
        assert!(
            port == "admin" || port.as_i64() == Some(admin_port),
            "{probe} must use the admin port, not {port}"
        );
        assert!(
            get["scheme"].is_null() || get["scheme"] == "HTTP",
            "the admin port is plain HTTP"
        );
    }
    // Shutdown: the grace period covers preStop and the drain timeout.
    let drain: u64 = flag(container, "drain-timeout")
        .trim_end_matches('s')
        .parse()
        .expect("drain timeout in seconds");
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > drain + pre_stop,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain {drain}"
    );
}

#[test]
fn volumes_feed_the_server_flags() {
    let rendered = base();
    let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    let tls_dir = mount_path(container, "tls");
    assert_eq!(flag(container, "tls-cert"), format!("{tls_dir}/tls.crt"));
    assert_eq!(flag(container, "tls-key"), format!("{tls_dir}/tls.key"));
    assert_eq!(volume(pod, "tls")["secret"]["secretName"], "policyctl-tls");

    assert_eq!(
        flag(container, "policies"),
        mount_path(container, "policies")
    );
    let config_map = rendered.one("ConfigMap");
    assert_eq!(
        volume(pod, "policies")["configMap"]["name"],
        config_map["metadata"]["name"],
        "the policies volume must mount the generated ConfigMap"
    );
    // Every volume is read-only except scratch space.
    for mount in container["volumeMounts"].as_array().expect("mounts") {
        if mount["name"] != "tmp" {
            assert_eq!(mount["readOnly"], true, "{mount}");
        }
    }
}

#[test]
fn deployment_args_are_accepted_by_the_binary() {
    use clap::Parser;
    use policyctl::cli::{Cli, Command as CliCommand};

    let rendered = base();
    let container = &rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = str_list(&container["args"]);
    let cli = Cli::try_parse_from(std::iter::once("policyctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("the Deployment's args do not parse: {e}"));
    let CliCommand::Serve(serve) = cli.command else {
        panic!("the container must run `serve`")
    };
    assert_eq!(
        serve.tls_cert.as_deref(),
        Some(Path::new(flag(container, "tls-cert")))
    );
    assert_eq!(
        serve.policies,
        Some(PathBuf::from(mount_path(container, "policies")))
    );
    assert_eq!(serve.admin_addr.port(), 9090);
    assert_eq!(serve.addr.port(), 8443);
    assert_eq!(serve.failure_policy, policyctl::policy::FailurePolicy::Fail);
    assert!(
        serve.cluster_context,
        "policies get namespace labels (the RBAC allows exactly that)"
    );
}

#[test]
fn service_and_pdb_select_the_pods() {
    let rendered = base();
    let deployment = rendered.one("Deployment");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];

    let service = rendered.one("Service");
    for (key, value) in service["spec"]["selector"]
        .as_object()
        .expect("service selector")
    {
        assert_eq!(&pod_labels[key], value, "Service selector {key}");
    }
    let https = service["spec"]["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["port"] == 443))
        .expect("Service port 443");
    let target = &https["targetPort"];
    let webhook_port = container_port(container, "https");
    assert!(
        target == "https" || target.as_i64() == Some(webhook_port),
        "443 must reach the webhook port"
    );
    assert_eq!(webhook_port, 8443);
    assert!(flag(container, "addr").ends_with(":8443"));

    let pdb = rendered.one("PodDisruptionBudget");
    for (key, value) in pdb["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("pdb selector")
    {
        assert_eq!(&pod_labels[key], value, "PDB selector {key}");
    }
    let replicas = deployment["spec"]["replicas"].as_i64().expect("replicas");
    let allowed = match (
        pdb["spec"]["maxUnavailable"].as_i64(),
        pdb["spec"]["minAvailable"].as_i64(),
    ) {
        (Some(max), None) => max,
        (None, Some(min)) => replicas - min,
        other => panic!("PDB needs an integer maxUnavailable or minAvailable: {other:?}"),
    };
    assert!(
        allowed >= 1 && allowed < replicas,
        "the PDB must allow a drain and keep a pod: {allowed} of {replicas}"
    );
}

#[test]
fn rbac_is_read_only_on_configmaps_and_namespaces() {
    let rendered = base();
    let role = rendered.one("ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert_eq!(str_list(&rule["apiGroups"]).len(), 1, "one group per rule");
        assert!(rule["resourceNames"].is_null() && rule["nonResourceURLs"].is_null());
        for group in str_list(&rule["apiGroups"]) {
            for resource in str_list(&rule["resources"]) {
                for verb in str_list(&rule["verbs"]) {
                    granted.insert(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    let mut expected: BTreeSet<String> = ["configmaps", "namespaces"]
        .iter()
        .flat_map(|r| {
            ["get", "list", "watch"]
                .iter()
                .map(move |v| format!("/{r}:{v}"))
        })
        .collect();
    expected.insert("apiextensions.k8s.io/customresourcedefinitions:list".into());
    assert_eq!(
        granted, expected,
        "RBAC must be exactly get/list/watch on configmaps and namespaces, and list on CRDs"
    );

    let binding = rendered.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let account = rendered.one("ServiceAccount");
    let subjects = binding["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["name"], account["metadata"]["name"]);
    assert_eq!(subjects[0]["namespace"], account["metadata"]["namespace"]);
    assert_eq!(
        rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        account["metadata"]["name"]
    );
}

#[test]
fn webhooks_exclude_system_namespaces_and_choose_failure_policies() {
    let rendered = base();
    let service = rendered.one("Service");
    let namespace = service["metadata"]["namespace"]
        .as_str()
        .expect("namespace");
    for (kind, path, failure_policy) in [
        ("ValidatingWebhookConfiguration", "/validate", "Fail"),
        ("MutatingWebhookConfiguration", "/mutate", "Ignore"),
    ] {
        let configuration = rendered.one(kind);
        let webhooks = configuration["webhooks"].as_array().expect("webhooks");
        assert!(!webhooks.is_empty(), "{kind} has no webhook");
        for webhook in webhooks {
            assert_eq!(
                webhook["failurePolicy"], failure_policy,
                "{kind}: the documented failure policy"
            );
            assert_eq!(webhook["sideEffects"], "None", "{kind}");
            assert_eq!(
                str_list(&webhook["admissionReviewVersions"]),
                vec!["v1", "v1beta1"],
                "{kind}"
            );
            let timeout = webhook["timeoutSeconds"].as_i64().expect("timeoutSeconds");
            assert!(
                (1..=10).contains(&timeout),
                "{kind}: timeoutSeconds {timeout}"
            );

            let client = &webhook["clientConfig"]["service"];
            assert_eq!(client["name"], service["metadata"]["name"], "{kind}");
            assert_eq!(client["namespace"], namespace, "{kind}");
            assert_eq!(client["path"], path, "{kind}");
            assert_eq!(client["port"], 443, "{kind}");

            let expressions = webhook["namespaceSelector"]["matchExpressions"]
                .as_array()
                .expect("namespaceSelector");
            let excluded: Vec<&str> = expressions
                .iter()
                .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
                .flat_map(|e| str_list(&e["values"]))
                .collect();
            for must in ["kube-system", "kube-node-lease", namespace] {
                assert!(
                    excluded.contains(&must),
                    "{kind} must exclude namespace {must}: {excluded:?}"
                );
            }
            let conditions: Vec<&str> = webhook["matchConditions"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["expression"].as_str()).collect())
                .unwrap_or_default();
            for kept_off in [
                "'leases'",
                "'events'",
                "'authentication.k8s.io'",
                "'authorization.k8s.io'",
            ] {
                assert!(
                    conditions.iter().any(|e| e.contains(kept_off)),
                    "{kind}: matchConditions must keep {kept_off} off the webhook: {conditions:?}"
                );
            }
            let operations: Vec<&str> = webhook["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .flat_map(|r| str_list(&r["operations"]))
                .collect();
            assert!(
                operations.contains(&"CREATE") && operations.contains(&"UPDATE"),
                "{kind}: {operations:?}"
            );
        }
    }
}

/// Every policy file under policies/ (what the loader reads: not hidden, not a `_test.rego`), relative, sorted.
fn policy_files() -> Vec<String> {
    let dir = root().join("policies");
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(&dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.expect("readable policies/");
        if entry.file_type().is_file()
            && policyctl::policy::loader::is_policy_file(&entry.file_name().to_string_lossy())
        {
            let relative = entry.path().strip_prefix(&dir).expect("under policies/");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    out
}

#[test]
fn policies_config_map_holds_every_policy_file() {
    let rendered = base();
    let config_map = rendered.one("ConfigMap");
    let empty = serde_json::Map::new();
    let data = config_map["data"].as_object().unwrap_or(&empty);
    let mut missing = Vec::new();
    let mut expected_keys = BTreeSet::new();
    for relative in policy_files() {
        let key = relative.replace('/', "-");
        let content =
            std::fs::read_to_string(root().join("policies").join(&relative)).expect("policy file");
        match data.get(&key) {
            Some(value) => assert_eq!(
                value.as_str(),
                Some(content.as_str()),
                "ConfigMap key {key} != {relative}"
            ),
            None => missing.push(format!("  - {key}={relative}")),
        }
        expected_keys.insert(key);
    }
    assert!(
        missing.is_empty(),
        "policy files missing from the ConfigMap; add them to policies/Kustomization under `files:`:\n{}",
        missing.join("\n")
    );
    let extra: Vec<&String> = data
        .keys()
        .filter(|k| !expected_keys.contains(*k))
        .collect();
    assert!(
        extra.is_empty(),
        "policies/Kustomization lists files the loader would not read: {extra:?}"
    );
}

#[test]
fn policies_config_map_loads_as_mounted() {
    // The pods see the ConfigMap's keys as files in one directory: that flat set must load without an error.
    let rendered = base();
    let config_map = rendered.one("ConfigMap");
    let mounted = tempfile::tempdir().expect("tempdir");
    let empty = serde_json::Map::new();
    let data = config_map["data"].as_object().unwrap_or(&empty);
    for (key, value) in data {
        std::fs::write(mounted.path().join(key), value.as_str().expect("text data"))
            .expect("write");
    }
    let compiled = policyctl::policy::loader::compile_dir(mounted.path(), &Default::default());
    let errors: Vec<String> = compiled
        .built
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "the mounted policies ConfigMap does not load:\n{}",
        errors.join("\n")
    );
    assert_eq!(
        compiled.files,
        data.len(),
        "every key is a policy file the loader reads"
    );
    assert!(
        !compiled.built.policies.is_empty() || data.is_empty(),
        "policies were built"
    );
}

#[test]
fn own_deployment_passes_the_bundled_policies() {
    // policyctl's own pods meet the Pod Security Standards (restricted) and the guardrails it ships, in both the
    // Gatekeeper and the Kyverno version; only the allowed-registries placeholder does not know our image.
    use policyctl::pipeline::{self, Settings, Webhook};

    let rendered = base();
    let mut deployment = rendered.one("Deployment").clone();
    deployment["metadata"]["namespace"] = Value::from("default");
    let set = policyctl::policy::loader::compile_dir(&root().join("policies"), &Default::default())
        .into_set(1)
        .expect("the bundled policies load");
    assert!(
        set.policies().len() >= 10,
        "the bundled library is loaded: {}",
        set.policies().len()
    );
    let review = policyctl::admission::Review::for_object(
        deployment,
        None,
        kube::core::admission::Operation::Create,
    );
    let decision = pipeline::run(&set, &review, Webhook::Validate, &Settings::default());
    let mut problems = Vec::new();
    let mut checked = 0;
    for run in &decision.runs {
        let name = run.policy.info().name.clone();
        checked += 1;
        if !name.contains("allowed-re") {
            problems.extend(
                run.outcome
                    .violations
                    .iter()
                    .map(|v| format!("[{name}] {}", v.message)),
            );
        }
        problems.extend(
            run.outcome
                .errors
                .iter()
                .map(|e| format!("[{name}] error: {}", e.error)),
        );
    }
    assert!(checked >= 10, "the Deployment met only {checked} policies");
    assert!(
        problems.is_empty(),
        "policyctl's Deployment violates the bundled policies:\n{}",
        problems.join("\n")
    );
}

/// Copy deploy/ and policies/ into a scratch directory, keeping their relative layout.
fn scratch_copy() -> tempfile::TempDir {
    let scratch = tempfile::tempdir().expect("tempdir");
    for top in ["deploy", "policies"] {
        let from = root().join(top);
        for entry in walkdir::WalkDir::new(&from) {
            let entry = entry.expect("readable");
            let relative = entry.path().strip_prefix(root()).expect("under the repo");
            let to = scratch.path().join(relative);
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&to).expect("mkdir");
            } else if entry.file_type().is_file() {
                std::fs::copy(entry.path(), &to).expect("copy");
            }
        }
    }
    scratch
}

#[test]
fn self_signed_overlay_carries_the_certs_and_their_ca_bundle() {
    let scratch = scratch_copy();
    let overlay = scratch.path().join("deploy/overlays/self-signed");
    let generated = policyctl::certs::generate(
        &["policyctl.policyctl.svc".to_string()],
        &[],
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(3600),
    )
    .expect("generates");
    policyctl::certs::write(&overlay.join("certs"), &generated).expect("writes");

    let rendered = Rendered(kustomize(&overlay));
    let secret = rendered.one("Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let deployment = rendered.one("Deployment");
    assert_eq!(
        volume(&deployment["spec"]["template"]["spec"], "tls")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let decode = |value: &Value| -> String {
        let compact: String = value
            .as_str()
            .expect("base64 string")
            .split_whitespace()
            .collect();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("base64"),
        )
        .expect("PEM")
    };
    assert_eq!(decode(&secret["data"]["tls.crt"]), generated.cert_pem);
    assert_eq!(decode(&secret["data"]["ca.crt"]), generated.ca_pem);
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        for webhook in rendered.one(kind)["webhooks"].as_array().expect("webhooks") {
            assert_eq!(
                decode(&webhook["clientConfig"]["caBundle"]),
                generated.ca_pem,
                "{kind} caBundle"
            );
        }
    }
}

#[test]
fn self_signed_overlay_without_certs_fails_clearly() {
    let scratch = scratch_copy();
    let overlay = scratch.path().join("deploy/overlays/self-signed");
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&overlay)
        .output()
        .expect("kubectl runs");
    assert!(
        !output.status.success(),
        "rendering without certs/ must fail, not produce an empty Secret"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("certs/"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn cert_manager_overlay_injects_the_ca_of_the_mounted_certificate() {
    let rendered = Rendered(kustomize(&root().join("deploy/overlays/cert-manager")));
    let service = rendered.one("Service");
    let service_dns = format!(
        "{}.{}.svc",
        service["metadata"]["name"].as_str().expect("name"),
        service["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
    );
    let deployment = rendered.one("Deployment");
    let secret_name =
        &volume(&deployment["spec"]["template"]["spec"], "tls")["secret"]["secretName"];
    let certificates = rendered.of_kind("Certificate");
    let serving = certificates
        .iter()
        .find(|c| &c["spec"]["secretName"] == secret_name)
        .expect("a Certificate writes the Secret the pods mount");
    assert!(
        str_list(&serving["spec"]["dnsNames"]).contains(&service_dns.as_str()),
        "serving cert names {service_dns}"
    );
    assert!(serving["spec"]["isCA"] != true);
    let issuer_name = &serving["spec"]["issuerRef"]["name"];
    let issuer = rendered
        .of_kind("Issuer")
        .into_iter()
        .find(|i| &i["metadata"]["name"] == issuer_name)
        .expect("the serving certificate's Issuer is part of the overlay");
    assert!(
        issuer["spec"]["ca"].is_object(),
        "serving certificates come from a stable CA issuer"
    );
    let ca = certificates
        .iter()
        .find(|c| c["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"])
        .expect("the CA Certificate is part of the overlay");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(
        ca["spec"]["privateKey"]["rotationPolicy"], "Never",
        "CA renewals must keep the key, or serving certificates signed before break until re-issued"
    );

    let inject = format!(
        "{}/{}",
        serving["metadata"]["namespace"]
            .as_str()
            .expect("namespace"),
        serving["metadata"]["name"].as_str().expect("name")
    );
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert_eq!(
            rendered.one(kind)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            inject.as_str(),
            "{kind} must get its caBundle from the serving Certificate"
        );
    }
}

#[test]
fn monitoring_kustomization_scrapes_the_service_and_ships_the_dashboard() {
    let monitoring = Rendered(kustomize(&root().join("deploy/monitoring")));
    let service_base = base();
    let service = service_base.one("Service");

    let monitors = monitoring.of_kind("ServiceMonitor");
    let monitor = *monitors
        .iter()
        .find(|m| m["metadata"]["name"] == "policyctl")
        .expect("the webhook's ServiceMonitor");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "ServiceMonitor selects the policyctl Service by {key}"
        );
    }
    let job_label = monitor["spec"]["jobLabel"].as_str().expect("jobLabel");
    assert_eq!(
        service["metadata"]["labels"][job_label], "policyctl",
        "the alerts expect job=\"policyctl\""
    );
    let ports: Vec<&str> = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
        let port = endpoint["port"].as_str().expect("named port");
        assert!(
            ports.contains(&port),
            "ServiceMonitor scrapes port {port}, the Service has {ports:?}"
        );
        assert_eq!(endpoint["path"], "/metrics");
    }

    let dashboard = monitoring.one("ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped = std::fs::read_to_string(root().join("deploy/monitoring/dashboard.json"))
        .expect("dashboard");
    assert_eq!(
        dashboard["data"]["policyctl.json"].as_str(),
        Some(shipped.as_str())
    );
    assert_eq!(
        monitoring.one("PrometheusRule")["metadata"]["namespace"],
        "policyctl"
    );
}

/// `path` relative to the directory `from` (both absolute): kustomize only takes relative paths.
fn relative(from: &Path, path: &Path) -> PathBuf {
    let mut relative = PathBuf::new();
    for _ in from.components().skip(1) {
        relative.push("..");
    }
    relative.join(path.strip_prefix("/").expect("absolute path"))
}

#[test]
fn synced_kinds_component_grants_list_and_watch_on_top_of_the_base() {
    let overlay = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let deploy = relative(overlay.path(), &root().join("deploy"));
    let component = relative(
        overlay.path(),
        &root().join("deploy/components/synced-kinds"),
    );
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {}\ncomponents:\n- {}\n",
            deploy.display(),
            component.display()
        ),
    )
    .expect("write overlay");
    let rendered = Rendered(kustomize(overlay.path()));
    let rules = rendered.one("ClusterRole")["rules"]
        .as_array()
        .expect("rules")
        .clone();
    assert_eq!(rules.len(), 3, "{rules:?}");
    assert_eq!(
        str_list(&rules[0]["resources"]),
        ["configmaps", "namespaces"]
    );
    assert_eq!(
        str_list(&rules[1]["resources"]),
        ["customresourcedefinitions"]
    );
    assert_eq!(str_list(&rules[2]["apiGroups"]), ["networking.k8s.io"]);
    assert_eq!(str_list(&rules[2]["resources"]), ["ingresses"]);
    assert_eq!(str_list(&rules[2]["verbs"]), ["get", "list", "watch"]);
}

/// An overlay of deploy/ with the audit component.
fn with_audit() -> Rendered {
    let overlay = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let deploy = relative(overlay.path(), &root().join("deploy"));
    let component = relative(overlay.path(), &root().join("deploy/components/audit"));
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {}\ncomponents:\n- {}\n",
            deploy.display(),
            component.display()
        ),
    )
    .expect("write overlay");
    Rendered(kustomize(overlay.path()))
}

fn named<'a>(rendered: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    rendered
        .of_kind(kind)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn audit_component_runs_one_writer_with_the_report_crds_and_least_privilege() {
    let rendered = with_audit();
    // One writer: a single replica, and Recreate so a rollout never runs two.
    let deployment = named(&rendered, "Deployment", "policyctl-audit");
    assert_eq!(deployment["metadata"]["namespace"], "policyctl");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "policyctl-audit");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let args = str_list(&container["args"]);
    assert_eq!(&args[..2], ["audit", "--cluster"]);
    assert_eq!(flag(container, "interval"), "1h");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "admin");
    }
    let admin: u16 = flag(container, "admin-addr")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("admin port");
    assert_eq!(container_port(container, "admin"), i64::from(admin));
    // The same generated policies ConfigMap as the webhook.
    let webhook = named(&rendered, "Deployment", "policyctl");
    assert_eq!(
        volume(pod, "policies")["configMap"]["name"],
        volume(&webhook["spec"]["template"]["spec"], "policies")["configMap"]["name"]
    );
    assert_eq!(
        mount_path(container, "policies"),
        flag(container, "policies")
    );
    // The binary accepts the arguments.
    let mut check = std::process::Command::new(env!("CARGO_BIN_EXE_policyctl"));
    check.args(&args).arg("--help");
    let status = check.output().expect("run policyctl");
    assert!(
        status.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );

    // The CRDs: both report kinds at wgpolicyk8s.io/v1alpha2, structural schemas.
    let crds = rendered.of_kind("CustomResourceDefinition");
    let mut kinds: Vec<(&str, &str)> = crds
        .iter()
        .map(|c| {
            (
                c["spec"]["names"]["kind"].as_str().expect("kind"),
                c["spec"]["scope"].as_str().expect("scope"),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("ClusterPolicyReport", "Cluster"),
            ("PolicyReport", "Namespaced")
        ]
    );
    for crd in crds {
        assert_eq!(crd["spec"]["group"], "wgpolicyk8s.io");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha2");
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
        let schema = &version["schema"]["openAPIV3Schema"];
        assert_eq!(schema["type"], "object");
        let result = &schema["properties"]["results"]["items"]["properties"];
        assert_eq!(
            str_list(&result["result"]["enum"]),
            ["pass", "fail", "warn", "error", "skip"]
        );
        assert_eq!(
            schema["properties"]["summary"]["properties"]["fail"]["type"],
            "integer"
        );
    }

    // RBAC: writes only on the reports; only list on the audited kinds; the cluster context's reads shared.
    let role = named(&rendered, "ClusterRole", "policyctl-audit");
    for rule in role["rules"].as_array().expect("rules") {
        let verbs = str_list(&rule["verbs"]);
        if str_list(&rule["apiGroups"]) == ["wgpolicyk8s.io"] {
            assert_eq!(
                str_list(&rule["resources"]),
                ["policyreports", "clusterpolicyreports"]
            );
            assert_eq!(verbs, ["list", "create", "patch", "delete"]);
        } else {
            assert_eq!(verbs, ["list"], "audited kinds are only listed: {rule}");
            assert!(!str_list(&rule["resources"]).contains(&"secrets"));
        }
    }
    let mut bindings: Vec<&str> = rendered
        .of_kind("ClusterRoleBinding")
        .into_iter()
        .filter(|b| b["subjects"][0]["name"] == "policyctl-audit")
        .map(|b| b["roleRef"]["name"].as_str().expect("role"))
        .collect();
    bindings.sort();
    assert_eq!(bindings, ["policyctl", "policyctl-audit"]);
    // The metrics Service selects the audit pod and only it.
    let service = named(&rendered, "Service", "policyctl-audit");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&labels[key], value);
    }
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "audit"
    );
}
