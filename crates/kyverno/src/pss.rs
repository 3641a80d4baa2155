//! `validate.podSecurity`: the Pod Security Standards (Kubernetes' pod-security-admission levels `baseline` and
//! `restricted`, per version) checked in Rust, with Kyverno's exclusions (`controlName`, `images`,
//! `restrictedField` + `values`).
//!
//! Each control inspects the pod (a Pod, or the pod template of a controller) and reports *offenses*: the field, the
//! container (for container-level fields) and the offending value. An exclusion excuses the offenses of its control,
//! limited to containers whose image matches `images` when it has them, and to one field and its allowed `values`
//! when it names a `restrictedField`. A control with an offense left fails the rule.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::scalar::wildcard;

/// A Pod Security level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No checks.
    Privileged,
    /// Known privilege escalations are prevented.
    Baseline,
    /// Hardening best practices on top of baseline.
    Restricted,
}

/// A Kubernetes minor version of the standards (`v1.X`), or `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(u32);

impl Version {
    const LATEST: Version = Version(u32::MAX);

    fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

/// One `exclude` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exclusion {
    /// The control's name, as the standards name it (`Capabilities`, `Host Namespaces`, ...).
    pub control_name: String,
    /// Container images (wildcards) whose container-level offenses are excused.
    #[serde(default)]
    pub images: Vec<String>,
    /// The one field excused (`spec.containers[*].securityContext.capabilities.add`).
    #[serde(default)]
    pub restricted_field: Option<String>,
    /// The values of `restricted_field` that are excused.
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    level: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    exclude: Vec<Exclusion>,
}

/// A compiled `podSecurity` block.
#[derive(Debug, Clone)]
pub struct PodSecurity {
    level: Level,
    version: Version,
    level_name: String,
    version_name: String,
    exclude: Vec<Exclusion>,
}

/// Every control name the standards define (what `exclude[].controlName` may say).
pub const CONTROL_NAMES: &[&str] = &[
    "HostProcess",
    "Host Namespaces",
    "Privileged Containers",
    "Capabilities",
    "HostPath Volumes",
    "Host Ports",
    "AppArmor",
    "SELinux",
    "/proc Mount Type",
    "Seccomp",
    "Sysctls",
    "Volume Types",
    "Privilege Escalation",
    "Running as Non-root",
    "Running as Non-root user",
];

impl PodSecurity {
    /// Compile `validate.podSecurity`; the error is `(field under podSecurity, message)`.
    pub fn compile(raw: &Value) -> Result<PodSecurity, (String, String)> {
        let spec: Spec = serde_json::from_value(raw.clone())
            .map_err(|e| (String::new(), format!("invalid podSecurity: {e}")))?;
        let level = match spec.level.as_str() {
            "privileged" => Level::Privileged,
            "baseline" => Level::Baseline,
            "restricted" => Level::Restricted,
            other => {
                return Err((
                    "level".into(),
                    format!("unknown level {other:?}: privileged, baseline or restricted"),
                ))
            }
        };
        let version_name = spec.version.unwrap_or_else(|| "latest".into());
        let version = if version_name == "latest" {
            Version::LATEST
        } else {
            let minor = version_name
                .strip_prefix("v1.")
                .and_then(|m| m.parse::<u32>().ok())
                .ok_or_else(|| {
                    (
                        "version".to_string(),
                        format!("invalid version {version_name:?}: latest or v1.<minor>"),
                    )
                })?;
            Version(minor)
        };
        if let Some((field, message)) = exclusion_errors(&spec.exclude) {
            return Err((format!("exclude{field}"), message));
        }
        Ok(PodSecurity {
            level,
            version,
            level_name: spec.level,
            version_name,
            exclude: spec.exclude,
        })
    }

    /// The same check with more exclusions (a PolicyException's `podSecurity` controls).
    pub fn with_exclusions(&self, more: &[Exclusion]) -> PodSecurity {
        let mut out = self.clone();
        out.exclude.extend(more.iter().cloned());
        out
    }

    /// Check `resource` (a Pod, or a controller with a pod template): `None` when it passes, else the failure
    /// message in Kyverno's form.
    pub fn check(&self, rule: &str, resource: &Value) -> Option<String> {
        let pod = Pod::of(resource)?;
        let failures: Vec<String> = controls(self.level, self.version)
            .filter_map(|control| {
                let offenses: Vec<Offense> = (control.check)(&pod, self.version)
                    .into_iter()
                    .filter(|o| !self.excused(control.name, o))
                    .collect();
                if offenses.is_empty() {
                    None
                } else {
                    Some(format!(
                        "{{Allowed:false ForbiddenReason:{} ForbiddenDetail:{}}}",
                        control.reason,
                        detail(&offenses)
                    ))
                }
            })
            .collect();
        if failures.is_empty() {
            return None;
        }
        Some(format!(
            "Validation rule '{rule}' failed. It violates PodSecurity \"{}:{}\": ({})",
            self.level_name,
            self.version_name,
            failures.join(", ")
        ))
    }

    fn excused(&self, control: &str, offense: &Offense) -> bool {
        self.exclude.iter().any(|e| {
            if e.control_name != control {
                return false;
            }
            if !e.images.is_empty() {
                match &offense.container {
                    Some(c) if e.images.iter().any(|p| wildcard(p, &c.image)) => {}
                    _ => return false,
                }
            }
            match &e.restricted_field {
                None => true,
                Some(field) => {
                    field == offense.field && e.values.iter().any(|v| v == &offense.value)
                }
            }
        })
    }
}

/// The first mistake in a list of exclusions: `([i].field, message)`.
pub fn exclusion_errors(list: &[Exclusion]) -> Option<(String, String)> {
    for (i, e) in list.iter().enumerate() {
        if !CONTROL_NAMES.contains(&e.control_name.as_str()) {
            let close =
                crate::policy::strict::suggest(&e.control_name, CONTROL_NAMES.iter().copied());
            return Some((
                format!("[{i}].controlName"),
                match close {
                    Some(c) => {
                        format!("unknown control {:?} (did you mean {c:?}?)", e.control_name)
                    }
                    None => format!(
                        "unknown control {:?}; the controls are: {}",
                        e.control_name,
                        CONTROL_NAMES.join(", ")
                    ),
                },
            ));
        }
        if e.restricted_field.is_some() == e.values.is_empty() {
            return Some((
                format!("[{i}]"),
                "restrictedField and values go together".into(),
            ));
        }
    }
    None
}

/// The pod a resource carries: its metadata and spec.
struct Pod<'a> {
    metadata: Option<&'a Value>,
    spec: &'a Map<String, Value>,
}

/// A container with the list it is in.
struct Container<'a> {
    list: &'static str,
    name: String,
    image: String,
    value: &'a Value,
}

/// What a control found.
struct Offense {
    /// The field, as Kyverno's `restrictedField` names it.
    field: &'static str,
    /// The container, for container-level fields.
    container: Option<ContainerRef>,
    /// The offending value, as text (`true`, `SYS_ADMIN`, `80`, `hostPath`, ...).
    value: String,
    /// What the detail line says about it.
    says: String,
}

struct ContainerRef {
    image: String,
}

impl<'a> Pod<'a> {
    fn of(resource: &'a Value) -> Option<Pod<'a>> {
        let template = match resource.get("kind").and_then(Value::as_str) {
            Some("Pod") => resource,
            _ => resource
                .pointer("/spec/template")
                .or_else(|| resource.pointer("/spec/jobTemplate/spec/template"))?,
        };
        Some(Pod {
            metadata: template.get("metadata"),
            spec: template.get("spec")?.as_object()?,
        })
    }

    fn field(&self, path: &str) -> Option<&'a Value> {
        let mut current = self.spec.get(path.split('.').next()?)?;
        for key in path.split('.').skip(1) {
            current = current.get(key)?;
        }
        Some(current)
    }

    fn containers(&self) -> impl Iterator<Item = Container<'a>> + '_ {
        ["containers", "initContainers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |list| {
                self.spec
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(move |c| Container {
                        list,
                        name: text(c.get("name")),
                        image: text(c.get("image")),
                        value: c,
                    })
            })
    }

    fn is_windows(&self) -> bool {
        self.spec
            .get("os")
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str)
            == Some("windows")
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        self.metadata?.get("annotations")?.get(key)?.as_str()
    }
}

impl Container<'_> {
    fn security(&self, path: &str) -> Option<&Value> {
        let mut current = self.value.get("securityContext")?;
        for key in path.split('.') {
            current = current.get(key)?;
        }
        Some(current)
    }

    fn offense(&self, field: &'static str, value: impl Into<String>, says: String) -> Offense {
        Offense {
            field,
            container: Some(ContainerRef {
                image: self.image.clone(),
            }),
            value: value.into(),
            says,
        }
    }

    /// The `restrictedField` form of a security context field of this container's list.
    fn field(&self, field: Field) -> &'static str {
        match self.list {
            "initContainers" => field.1,
            "ephemeralContainers" => field.2,
            _ => field.0,
        }
    }
}

/// A container-level field, as `restrictedField` names it in each container list.
type Field = (&'static str, &'static str, &'static str);

macro_rules! field {
    ($suffix:literal) => {
        (
            concat!("spec.containers[*].", $suffix),
            concat!("spec.initContainers[*].", $suffix),
            concat!("spec.ephemeralContainers[*].", $suffix),
        )
    };
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn pod_offense(field: &'static str, value: impl Into<String>, says: String) -> Offense {
    Offense {
        field,
        container: None,
        value: value.into(),
        says,
    }
}

/// The detail line: each offense once, in order.
fn detail(offenses: &[Offense]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for o in offenses {
        if !seen.contains(&o.says.as_str()) {
            seen.push(&o.says);
        }
    }
    seen.join("; ")
}

struct Control {
    name: &'static str,
    reason: &'static str,
    level: Level,
    /// First version it applies to.
    since: u32,
    check: fn(&Pod<'_>, Version) -> Vec<Offense>,
}

fn controls(level: Level, version: Version) -> impl Iterator<Item = &'static Control> {
    CONTROLS.iter().filter(move |c| {
        if level == Level::Privileged || c.level > level || !version.at_least(c.since) {
            return false;
        }
        // At restricted, the restricted form of a control replaces the baseline one from the version it exists.
        let replaced = level == Level::Restricted
            && c.level == Level::Baseline
            && CONTROLS.iter().any(|r| {
                r.level == Level::Restricted && r.name == c.name && version.at_least(r.since)
            });
        !replaced
    })
}

static CONTROLS: &[Control] = &[
    Control {
        name: "HostProcess",
        reason: "hostProcess",
        level: Level::Baseline,
        since: 0,
        check: host_process,
    },
    Control {
        name: "Host Namespaces",
        reason: "host namespaces",
        level: Level::Baseline,
        since: 0,
        check: host_namespaces,
    },
    Control {
        name: "Privileged Containers",
        reason: "privileged",
        level: Level::Baseline,
        since: 0,
        check: privileged,
    },
    Control {
        name: "Capabilities",
        reason: "non-default capabilities",
        level: Level::Baseline,
        since: 0,
        check: capabilities_baseline,
    },
    Control {
        name: "HostPath Volumes",
        reason: "hostPath volumes",
        level: Level::Baseline,
        since: 0,
        check: host_path_volumes,
    },
    Control {
        name: "Host Ports",
        reason: "hostPort",
        level: Level::Baseline,
        since: 0,
        check: host_ports,
    },
    Control {
        name: "AppArmor",
        reason: "forbidden AppArmor profile",
        level: Level::Baseline,
        since: 0,
        check: app_armor,
    },
    Control {
        name: "SELinux",
        reason: "seLinuxOptions",
        level: Level::Baseline,
        since: 0,
        check: se_linux,
    },
    Control {
        name: "/proc Mount Type",
        reason: "procMount",
        level: Level::Baseline,
        since: 0,
        check: proc_mount,
    },
    Control {
        name: "Seccomp",
        reason: "seccompProfile",
        level: Level::Baseline,
        since: 0,
        check: seccomp_baseline,
    },
    Control {
        name: "Sysctls",
        reason: "forbidden sysctls",
        level: Level::Baseline,
        since: 0,
        check: sysctls,
    },
    Control {
        name: "Volume Types",
        reason: "restricted volume types",
        level: Level::Restricted,
        since: 0,
        check: volume_types,
    },
    Control {
        name: "Privilege Escalation",
        reason: "allowPrivilegeEscalation != false",
        level: Level::Restricted,
        since: 8,
        check: privilege_escalation,
    },
    Control {
        name: "Running as Non-root",
        reason: "runAsNonRoot != true",
        level: Level::Restricted,
        since: 0,
        check: run_as_non_root,
    },
    Control {
        name: "Running as Non-root user",
        reason: "runAsUser=0",
        level: Level::Restricted,
        since: 23,
        check: run_as_user,
    },
    Control {
        name: "Seccomp",
        reason: "seccompProfile",
        level: Level::Restricted,
        since: 19,
        check: seccomp_restricted,
    },
    Control {
        name: "Capabilities",
        reason: "unrestricted capabilities",
        level: Level::Restricted,
        since: 22,
        check: capabilities_restricted,
    },
];

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// Offenses of one `securityContext` field set at pod level and in each container (`sub` under `securityContext`):
/// each value `forbidden` says is offending, described by `says(who, value)` (`who`: `pod` or `container "c"`).
fn pod_and_containers(
    pod: &Pod<'_>,
    sub: &str,
    fields: (&'static str, Field),
    forbidden: impl Fn(&Value) -> bool,
    says: impl Fn(&str, &str) -> String,
) -> Vec<Offense> {
    let mut out = Vec::new();
    if let Some(v) = pod
        .field(&format!("securityContext.{sub}"))
        .filter(|v| forbidden(v))
    {
        let value = text(Some(v));
        out.push(pod_offense(fields.0, value.clone(), says("pod", &value)));
    }
    for c in pod.containers() {
        if let Some(v) = c.security(sub).filter(|v| forbidden(v)) {
            let value = text(Some(v));
            let who = format!("container {:?}", c.name);
            out.push(c.offense(c.field(fields.1), value.clone(), says(&who, &value)));
        }
    }
    out
}

fn host_process(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    pod_and_containers(
        pod,
        "windowsOptions.hostProcess",
        (
            "spec.securityContext.windowsOptions.hostProcess",
            field!("securityContext.windowsOptions.hostProcess"),
        ),
        |v| v.as_bool() == Some(true),
        |who, _| format!("{who} must not set securityContext.windowsOptions.hostProcess=true"),
    )
}

fn host_namespaces(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    [
        ("hostNetwork", "spec.hostNetwork"),
        ("hostPID", "spec.hostPID"),
        ("hostIPC", "spec.hostIPC"),
    ]
    .into_iter()
    .filter(|(key, _)| is_true(pod.spec.get(*key)))
    .map(|(key, field)| pod_offense(field, "true", format!("{key}=true")))
    .collect()
}

fn privileged(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    pod.containers()
        .filter(|c| is_true(c.security("privileged")))
        .map(|c| {
            c.offense(
                c.field(field!("securityContext.privileged")),
                "true",
                format!(
                    "container {:?} must not set securityContext.privileged=true",
                    c.name
                ),
            )
        })
        .collect()
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities<'v>(c: &'v Container<'_>) -> impl Iterator<Item = String> + 'v {
    c.security("capabilities.add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| text(Some(v)))
}

fn capabilities_baseline(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    let mut out = Vec::new();
    for c in pod.containers() {
        for cap in added_capabilities(&c) {
            if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                out.push(c.offense(
                    c.field(field!("securityContext.capabilities.add")),
                    cap.clone(),
                    format!(
                        "container {:?} must not include {cap:?} in securityContext.capabilities.add",
                        c.name
                    ),
                ));
            }
        }
    }
    out
}

fn volumes<'a>(pod: &Pod<'a>) -> impl Iterator<Item = &'a Value> {
    pod.spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn host_path_volumes(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    volumes(pod)
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(|v| {
            let path = text(v.pointer("/hostPath/path"));
            pod_offense(
                "spec.volumes[*].hostPath",
                path,
                format!("volume {:?}", text(v.get("name"))),
            )
        })
        .collect()
}

fn host_ports(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    let mut out = Vec::new();
    for c in pod.containers() {
        let ports = c.value.get("ports").and_then(Value::as_array);
        for p in ports.into_iter().flatten() {
            match p.get("hostPort").and_then(Value::as_i64) {
                Some(0) | None => {}
                Some(port) => out.push(c.offense(
                    c.field(field!("ports[*].hostPort")),
                    port.to_string(),
                    format!("container {:?} uses hostPort {port}", c.name),
                )),
            }
        }
    }
    out
}

fn app_armor_allowed(kind: &str) -> bool {
    kind == "RuntimeDefault" || kind == "Localhost"
}

fn app_armor(pod: &Pod<'_>, version: Version) -> Vec<Offense> {
    let mut out = Vec::new();
    if let Some(annotations) = pod
        .metadata
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        for (key, value) in annotations {
            if let Some(container) =
                key.strip_prefix("container.apparmor.security.beta.kubernetes.io/")
            {
                let value = text(Some(value));
                if value != "runtime/default" && !value.starts_with("localhost/") {
                    out.push(pod_offense(
                        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/*]",
                        value.clone(),
                        format!("{key}={value:?} (container {container:?})"),
                    ));
                }
            }
        }
    }
    if version.at_least(30) {
        out.extend(pod_and_containers(
            pod,
            "appArmorProfile.type",
            (
                "spec.securityContext.appArmorProfile.type",
                field!("securityContext.appArmorProfile.type"),
            ),
            |v| v.as_str().is_some_and(|kind| !app_armor_allowed(kind)),
            |who, kind| {
                format!("{who} must not set securityContext.appArmorProfile.type to {kind:?}")
            },
        ));
    }
    out
}

fn se_linux(pod: &Pod<'_>, version: Version) -> Vec<Offense> {
    let allowed_type = |t: &str| {
        matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t"
        ) || (t == "container_engine_t" && version.at_least(31))
    };
    let mut out = Vec::new();
    let mut check = |options: Option<&Value>,
                     who: &str,
                     fields: (&'static str, &'static str, &'static str),
                     container: Option<&Container<'_>>| {
        let Some(options) = options else { return };
        let (type_field, user_field, role_field) = fields;
        let offense = |field: &'static str, value: String, says: String| match container {
            Some(c) => c.offense(field, value, says),
            None => pod_offense(field, value, says),
        };
        if let Some(t) = options.get("type").and_then(Value::as_str) {
            if !allowed_type(t) {
                out.push(offense(
                    type_field,
                    t.to_string(),
                    format!("{who} set forbidden securityContext.seLinuxOptions: type {t:?}"),
                ));
            }
        }
        for (key, field) in [("user", user_field), ("role", role_field)] {
            if let Some(v) = options
                .get(key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                out.push(offense(
                    field,
                    v.to_string(),
                    format!("{who} set forbidden securityContext.seLinuxOptions: {key} {v:?}"),
                ));
            }
        }
    };
    check(
        pod.field("securityContext.seLinuxOptions"),
        "pod",
        (
            "spec.securityContext.seLinuxOptions.type",
            "spec.securityContext.seLinuxOptions.user",
            "spec.securityContext.seLinuxOptions.role",
        ),
        None,
    );
    for c in pod.containers() {
        let fields = (
            c.field(field!("securityContext.seLinuxOptions.type")),
            c.field(field!("securityContext.seLinuxOptions.user")),
            c.field(field!("securityContext.seLinuxOptions.role")),
        );
        check(
            c.security("seLinuxOptions"),
            &format!("container {:?}", c.name),
            fields,
            Some(&c),
        );
    }
    out
}

fn proc_mount(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    pod.containers()
        .filter_map(|c| {
            let mount = c.security("procMount").and_then(Value::as_str)?;
            (mount != "Default").then(|| {
                c.offense(
                    c.field(field!("securityContext.procMount")),
                    mount,
                    format!(
                        "container {:?} must not set securityContext.procMount to {mount:?}",
                        c.name
                    ),
                )
            })
        })
        .collect()
}

fn seccomp_baseline(pod: &Pod<'_>, version: Version) -> Vec<Offense> {
    let mut out = Vec::new();
    if !version.at_least(19) {
        // Before 1.19 the profile was an annotation.
        if pod.annotation("seccomp.security.alpha.kubernetes.io/pod") == Some("unconfined") {
            out.push(pod_offense(
                "metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]",
                "unconfined",
                "seccomp.security.alpha.kubernetes.io/pod=\"unconfined\"".into(),
            ));
        }
        return out;
    }
    out.extend(pod_and_containers(
        pod,
        "seccompProfile.type",
        (
            "spec.securityContext.seccompProfile.type",
            field!("securityContext.seccompProfile.type"),
        ),
        |v| v.as_str() == Some("Unconfined"),
        |who, _| {
            format!("{who} must not set securityContext.seccompProfile.type to \"Unconfined\"")
        },
    ));
    out
}

fn sysctls(pod: &Pod<'_>, version: Version) -> Vec<Offense> {
    let allowed = |name: &str| {
        matches!(
            name,
            "kernel.shm_rmid_forced"
                | "net.ipv4.ip_local_port_range"
                | "net.ipv4.ip_unprivileged_port_start"
                | "net.ipv4.tcp_syncookies"
                | "net.ipv4.ping_group_range"
        ) || (version.at_least(27) && name == "net.ipv4.ip_local_reserved_ports")
            || (version.at_least(29)
                && matches!(
                    name,
                    "net.ipv4.tcp_keepalive_time"
                        | "net.ipv4.tcp_fin_timeout"
                        | "net.ipv4.tcp_keepalive_intvl"
                        | "net.ipv4.tcp_keepalive_probes"
                ))
    };
    pod.field("securityContext.sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| text(s.get("name")))
        .filter(|name| !allowed(name))
        .map(|name| pod_offense("spec.securityContext.sysctls[*].name", name.clone(), name))
        .collect()
}

const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn volume_types(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    let mut out = Vec::new();
    for v in volumes(pod) {
        let Some(fields) = v.as_object() else {
            continue;
        };
        for (key, value) in fields {
            if key == "name" || value.is_null() || RESTRICTED_VOLUME_TYPES.contains(&key.as_str()) {
                continue;
            }
            out.push(pod_offense(
                "spec.volumes[*]",
                key.clone(),
                format!(
                    "volume {:?} uses restricted volume type {key:?}",
                    text(v.get("name"))
                ),
            ));
        }
    }
    out
}

fn privilege_escalation(pod: &Pod<'_>, version: Version) -> Vec<Offense> {
    if version.at_least(25) && pod.is_windows() {
        return Vec::new();
    }
    pod.containers()
        .filter(|c| {
            c.security("allowPrivilegeEscalation")
                .and_then(Value::as_bool)
                != Some(false)
        })
        .map(|c| {
            let value = text(c.security("allowPrivilegeEscalation"));
            c.offense(
                c.field(field!("securityContext.allowPrivilegeEscalation")),
                if value.is_empty() {
                    "nil".into()
                } else {
                    value
                },
                format!(
                    "container {:?} must set securityContext.allowPrivilegeEscalation=false",
                    c.name
                ),
            )
        })
        .collect()
}

fn run_as_non_root(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    let pod_level = pod
        .field("securityContext.runAsNonRoot")
        .and_then(Value::as_bool);
    let mut out = Vec::new();
    if pod_level == Some(false) {
        out.push(pod_offense(
            "spec.securityContext.runAsNonRoot",
            "false",
            "pod must not set securityContext.runAsNonRoot=false".into(),
        ));
    }
    for c in pod.containers() {
        match c.security("runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => out.push(c.offense(
                c.field(field!("securityContext.runAsNonRoot")),
                "false",
                format!(
                    "container {:?} must not set securityContext.runAsNonRoot=false",
                    c.name
                ),
            )),
            None if pod_level != Some(true) => out.push(c.offense(
                c.field(field!("securityContext.runAsNonRoot")),
                "nil",
                format!(
                    "pod or container {:?} must set securityContext.runAsNonRoot=true",
                    c.name
                ),
            )),
            _ => {}
        }
    }
    out
}

fn run_as_user(pod: &Pod<'_>, _: Version) -> Vec<Offense> {
    pod_and_containers(
        pod,
        "runAsUser",
        (
            "spec.securityContext.runAsUser",
            field!("securityContext.runAsUser"),
        ),
        |v| v.as_i64() == Some(0),
        |who, _| format!("{who} must not set runAsUser=0"),
    )
}

fn seccomp_restricted(pod: &Pod<'_>, version: Version) -> Vec<Offense> {
    if version.at_least(25) && pod.is_windows() {
        return Vec::new();
    }
    let allowed = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
    let pod_type = pod
        .field("securityContext.seccompProfile.type")
        .and_then(Value::as_str);
    let mut out = Vec::new();
    if pod_type.is_some() && !allowed(pod_type) {
        let t = pod_type.unwrap_or_default();
        out.push(pod_offense(
            "spec.securityContext.seccompProfile.type",
            t,
            format!("pod must not set securityContext.seccompProfile.type to {t:?}"),
        ));
    }
    for c in pod.containers() {
        let own = c.security("seccompProfile.type").and_then(Value::as_str);
        let offending = match own {
            Some(_) => !allowed(own),
            None => !allowed(pod_type),
        };
        if offending {
            out.push(c.offense(
                c.field(field!("securityContext.seccompProfile.type")),
                own.unwrap_or("nil"),
                format!(
                    "pod or container {:?} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    c.name
                ),
            ));
        }
    }
    out
}

fn capabilities_restricted(pod: &Pod<'_>, version: Version) -> Vec<Offense> {
    if version.at_least(25) && pod.is_windows() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in pod.containers() {
        let drops_all = c
            .security("capabilities.drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v.as_str() == Some("ALL")));
        if !drops_all {
            out.push(c.offense(
                c.field(field!("securityContext.capabilities.drop")),
                "nil",
                format!(
                    "container {:?} must set securityContext.capabilities.drop=[\"ALL\"]",
                    c.name
                ),
            ));
        }
        for cap in added_capabilities(&c) {
            if cap != "NET_BIND_SERVICE" {
                out.push(c.offense(
                    c.field(field!("securityContext.capabilities.add")),
                    cap.clone(),
                    format!(
                        "container {:?} must not include {cap:?} in securityContext.capabilities.add",
                        c.name
                    ),
                ));
            }
        }
    }
    out
}
