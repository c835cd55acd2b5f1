//! `deploy/`: the committed CRDs equal `vigil crd`, the Helm chart passes the real `helm lint`
//! and `helm template` with its defaults and with every documented value and refuses bad
//! values by name, the plain manifests equal the chart rendered with its defaults, the
//! rendered objects have the structure the controller needs (restricted security context,
//! probes, exactly the RBAC it uses), and every example deserializes into vigil's and
//! Kubernetes' types and refers to objects that exist.
//!
//! The chart tests run `helm` (or `$VIGIL_HELM`); `./test.sh` installs it when missing.
//!
//! `VIGIL_REGENERATE=1 cargo test --test deploy` rewrites the generated files instead of
//! comparing them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use vigil::api::crd::Release;

const REGENERATE: &str = "VIGIL_REGENERATE=1 cargo test --test deploy";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn regenerating() -> bool {
    std::env::var_os("VIGIL_REGENERATE").is_some_and(|v| v == "1")
}

/// Compares a generated file with what it should hold, ignoring trailing whitespace; under
/// `VIGIL_REGENERATE=1` writes it instead.
fn check_generated(relative: &str, expected: &str, how: &str) {
    let path = root().join(relative);
    if regenerating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{relative}: {e}. Generate it with `{how}`.");
    });
    let lines = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s.lines().map(|l| l.trim_end().to_string()).collect();
        while v.last().is_some_and(String::is_empty) {
            v.pop();
        }
        v
    };
    let (a, e) = (lines(&actual), lines(expected));
    if a != e {
        let i = a.iter().zip(&e).take_while(|(x, y)| x == y).count();
        panic!(
            "{relative} is out of date (first difference at line {}: committed {:?}, expected \
             {:?}). Regenerate it with `{how}` and commit the result.",
            i + 1,
            a.get(i),
            e.get(i),
        );
    }
}

// ---------------------------------------------------------------------------------------
// CRDs

const CRD_FILES: [&str; 2] = [
    "deploy/crds/vigil.dev_crds.yaml",
    "deploy/helm/vigil/crds/vigil.dev_crds.yaml",
];

#[test]
fn committed_crds_equal_vigil_crd() {
    let yaml = vigil::api::crd::crds_yaml().expect("the CRDs serialize");
    for file in CRD_FILES {
        check_generated(
            file,
            &yaml,
            &format!("cargo run -q -- crd > {file}` (or `{REGENERATE}"),
        );
    }
}

#[test]
fn crds_parse_and_name_every_kind() {
    let text = std::fs::read_to_string(root().join(CRD_FILES[0])).unwrap();
    let crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        split_documents(&text)
            .iter()
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "releases.vigil.dev",
            "releaseanalyses.vigil.dev",
            "clusterreleaseanalyses.vigil.dev"
        ]
    );
    // The requirement: the schema validates weights (0-100) and durations.
    assert!(
        text.contains("maximum: 100"),
        "weights carry an OpenAPI maximum"
    );
    assert!(text.contains("pattern: ^([0-9]+(ms|s|m|h|d|w|y))+$"));
}

// ---------------------------------------------------------------------------------------
// The chart and the plain manifests

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/vigil")
}

/// The plain manifests' release: `helm template vigil deploy/helm/vigil -n vigil-system`.
const RELEASE: &str = "vigil";
const NAMESPACE: &str = "vigil-system";

/// The helm binary: `$VIGIL_HELM`, else `helm` on PATH.
fn helm_bin() -> PathBuf {
    std::env::var_os("VIGIL_HELM").map_or_else(|| PathBuf::from("helm"), PathBuf::from)
}

/// Runs helm with `args`; its stdout, or its stderr when it fails. Panics when helm cannot be
/// run at all: a missing helm fails the tests, it does not skip them.
fn helm(args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let bin = helm_bin();
    let out = std::process::Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): the chart tests need the real helm (4.x). `./test.sh` \
                 installs it into target/helm; or put helm on PATH, or set VIGIL_HELM to its path.",
                bin.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        // `helm lint` reports on stdout, the other commands on stderr.
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `helm <command> deploy/helm/vigil ...` with `overrides` as an extra values file (`-f`).
fn helm_chart(command: &[&str], overrides: &Value) -> Result<String, String> {
    let values = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(values.path(), overrides.to_string()).unwrap();
    let chart = chart_dir();
    let mut args: Vec<&std::ffi::OsStr> = command.iter().map(|a| a.as_ref()).collect();
    args.extend([
        chart.as_os_str(),
        "--namespace".as_ref(),
        NAMESPACE.as_ref(),
        "--values".as_ref(),
        values.path().as_os_str(),
    ]);
    helm(&args)
}

/// `helm template` with `overrides`: the manifests as helm prints them, or helm's error.
fn try_template(overrides: &Value) -> Result<String, String> {
    helm_chart(&["template", RELEASE], overrides)
}

/// One rendered manifest.
struct Document {
    /// `vigil/templates/<file>`, from helm's `# Source:` comment.
    source: String,
    /// The document's kind.
    kind: String,
    /// Its content.
    value: Value,
}

fn render(overrides: Value) -> Vec<Document> {
    let stream = try_template(&overrides).unwrap_or_else(|e| panic!("helm template: {e}"));
    split_documents(&stream)
        .into_iter()
        .map(|doc| {
            let source = doc
                .lines()
                .find_map(|l| l.strip_prefix("# Source: "))
                .unwrap_or_else(|| panic!("no `# Source:` in\n{doc}"))
                .to_string();
            let value: Value = serde_saphyr::from_str(&doc)
                .unwrap_or_else(|e| panic!("{source}: rendered YAML does not parse: {e}\n{doc}"));
            let kind = value["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{source}: a document without kind"))
                .to_string();
            Document {
                source,
                kind,
                value,
            }
        })
        .collect()
}

/// Splits a YAML stream at `---` lines; drops documents that are only whitespace.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.into_iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

fn one<'a>(docs: &'a [Document], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|d| d.kind == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    &found[0].value
}

const MANIFEST_HEADER: &str = "\
# vigil: plain manifests, deploy/helm/vigil rendered by `helm template` with its default values
# (release `vigil`, namespace `vigil-system`; `managed-by: kubectl` instead of Helm), plus the
# Namespace. Generated: do not edit. Change the chart, then run
# `VIGIL_REGENERATE=1 cargo test --test deploy`.
#
# Install (CRDs first):
#   kubectl apply -f deploy/crds/vigil.dev_crds.yaml
#   kubectl apply -f deploy/manifests/vigil.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: vigil-system
  labels:
    app.kubernetes.io/name: vigil
    # The controller Pod meets the restricted Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
";

#[test]
fn plain_manifests_equal_the_rendered_chart() {
    let stream = try_template(&json!({})).unwrap_or_else(|e| panic!("helm template: {e}"));
    // What is applied with kubectl is not managed by Helm.
    let by_helm = "app.kubernetes.io/managed-by: Helm";
    assert!(stream.contains(by_helm), "{stream}");
    let stream = stream.replace(by_helm, "app.kubernetes.io/managed-by: kubectl");
    let expected = format!("{MANIFEST_HEADER}{stream}");
    check_generated("deploy/manifests/vigil.yaml", &expected, REGENERATE);
}

#[test]
fn chart_crds_are_the_committed_crds() {
    let a = std::fs::read_to_string(root().join(CRD_FILES[0])).unwrap();
    let b = std::fs::read_to_string(root().join(CRD_FILES[1])).unwrap();
    assert!(
        a == b,
        "{} and {} differ: {REGENERATE}",
        CRD_FILES[0],
        CRD_FILES[1]
    );
}

/// Deserializes into a typed object and checks that nothing was lost on the way: every
/// field of the YAML is still there after serializing the typed value back, so a misspelt
/// or misplaced field fails instead of being ignored.
fn typed<T: DeserializeOwned + Serialize>(value: &Value, what: &str) -> T {
    let t: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&t).unwrap();
    assert_subset(value, &back, what);
    t
}

fn assert_subset(original: &Value, typed: &Value, path: &str) {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                let tv = t.get(k).unwrap_or_else(|| panic!("{p}: unknown field"));
                assert_subset(v, tv, &p);
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            assert_eq!(o.len(), t.len(), "{path}");
            for (i, (a, b)) in o.iter().zip(t).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

/// The values deploy/README.md and values.yaml document, one set each (the examples in
/// values.yaml's comments included).
fn documented_values() -> Vec<(&'static str, Value)> {
    vec![
        ("the defaults", json!({})),
        (
            "leader election off",
            json!({"leaderElection": {"enabled": false}}),
        ),
        (
            "two replicas, another Lease",
            json!({"replicaCount": 2, "leaderElection": {"leaseName": "vigil-b"}}),
        ),
        (
            "three replicas sharing six shards",
            json!({"replicaCount": 3, "shards": 6}),
        ),
        (
            "a watch namespace, text logs",
            json!({"watchNamespace": "shop", "logFormat": "text"}),
        ),
        (
            "another Prometheus",
            json!({"prometheus": {"url": "https://thanos-query.monitoring.svc:10902"}}),
        ),
        (
            "cluster-wide notifications",
            json!({"notifications": {"secretName": "vigil-notify"}}),
        ),
        (
            "the API secret",
            json!({"api": {"existingSecret": "vigil-api", "tokenKey": "token",
                "hmacSecretKey": "hmac", "judgeConcurrency": 2}}),
        ),
        (
            "the API without auth",
            json!({"api": {"insecureNoAuth": true}}),
        ),
        (
            "the dashboard",
            json!({"api": {"existingSecret": "vigil-api", "readTokenKey": "read"},
                "dashboard": {"insecureNoAuth": true, "prometheusUiUrl": "https://prom.example"}}),
        ),
        (
            "extra args and env",
            json!({
                "extraArgs": ["--bearer-token-file", "/var/run/secrets/prometheus/token",
                    "--timeout", "30s"],
                "extraEnv": [{"name": "VIGIL_PROMETHEUS_BASIC_AUTH",
                    "valueFrom": {"secretKeyRef": {"name": "prom", "key": "auth"}}}],
            }),
        ),
        (
            "an image from a registry",
            json!({"image": {"repository": "registry.example.com/vigil", "tag": "0.1.1",
                "pullPolicy": "Always"},
                "imagePullSecrets": [{"name": "registry-credentials"}]}),
        ),
        (
            "the ServiceMonitor",
            json!({"serviceMonitor": {"enabled": true, "interval": "15s",
                "labels": {"release": "kube-prometheus-stack"}}}),
        ),
        (
            "scheduling, annotations, resources",
            json!({
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops",
                    "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch",
                        "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
                "podAnnotations": {"example.com/team": "platform"},
                "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/vigil"}},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "service": {"type": "ClusterIP"},
            }),
        ),
        (
            "the dashboard in Grafana's namespace, in a folder",
            json!({"grafanaDashboard": {"namespace": "monitoring",
                "annotations": {"grafana_folder": "vigil"}}}),
        ),
        (
            "no dashboard",
            json!({"grafanaDashboard": {"enabled": false}}),
        ),
    ]
}

#[test]
fn helm_lint_passes_with_the_defaults_and_every_documented_value() {
    for (what, values) in documented_values() {
        let out = helm_chart(&["lint", "--strict"], &values)
            .unwrap_or_else(|e| panic!("helm lint --strict with {what} ({values}): {e}"));
        assert!(out.contains("0 chart(s) failed"), "{what}: {out}");
    }
}

/// Every object of the chart rendered with every documented value deserializes into its
/// Kubernetes type without losing a field, and carries the recommended labels.
#[test]
fn every_rendered_object_has_known_fields() {
    for (what, values) in documented_values() {
        for doc in render(values) {
            let what = format!("{what}: {} ({})", doc.source, doc.kind);
            match doc.kind.as_str() {
                "ServiceAccount" => drop(typed::<ServiceAccount>(&doc.value, &what)),
                "ClusterRole" => drop(typed::<ClusterRole>(&doc.value, &what)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&doc.value, &what)),
                "Role" => drop(typed::<Role>(&doc.value, &what)),
                "RoleBinding" => drop(typed::<RoleBinding>(&doc.value, &what)),
                "Service" => drop(typed::<Service>(&doc.value, &what)),
                "Deployment" => drop(typed::<Deployment>(&doc.value, &what)),
                "ConfigMap" => drop(typed::<ConfigMap>(&doc.value, &what)),
                "ServiceMonitor" => {
                    assert_eq!(doc.value["apiVersion"], "monitoring.coreos.com/v1");
                    assert_eq!(doc.value["spec"]["endpoints"][0]["port"], "http");
                    assert_eq!(doc.value["spec"]["endpoints"][0]["path"], "/metrics");
                }
                other => panic!("{what}: unexpected kind {other}"),
            }
            let labels = &doc.value["metadata"]["labels"];
            for label in ["name", "instance", "version", "managed-by"] {
                assert!(
                    labels.get(format!("app.kubernetes.io/{label}")).is_some(),
                    "{what}: label app.kubernetes.io/{label}"
                );
            }
        }
    }
}

/// values.schema.json: helm refuses bad values before rendering, naming the value.
#[test]
fn bad_values_are_refused_naming_the_value() {
    let cases = [
        (json!({"prometheus": {"url": ""}}), "at '/prometheus/url'"),
        (
            json!({"prometheus": {"url": "prometheus:9090"}}),
            "at '/prometheus/url'",
        ),
        (
            json!({"logFormat": "yaml"}),
            "at '/logFormat': value must be one of 'json', 'text'",
        ),
        (
            json!({"replicaCount": "two"}),
            "at '/replicaCount': got string, want integer",
        ),
        (
            json!({"api": {"judgeConcurrency": 0}}),
            "at '/api/judgeConcurrency'",
        ),
        // A misspelt value is an error, not silently ignored.
        (
            json!({"serviceMonitor": {"enable": true}}),
            "at '/serviceMonitor': additional properties 'enable' not allowed",
        ),
        (
            json!({"leaderElection": {"enabled": "no"}}),
            "at '/leaderElection/enabled'",
        ),
    ];
    for (values, message) in cases {
        let err = try_template(&values)
            .err()
            .unwrap_or_else(|| panic!("helm template accepted {values}"));
        assert!(
            err.contains(message),
            "{values}: expected {message:?} in {err}"
        );
        let err = helm_chart(&["lint", "--strict"], &values)
            .err()
            .unwrap_or_else(|| panic!("helm lint accepted {values}"));
        assert!(
            err.contains(message),
            "{values}: expected {message:?} in {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The Grafana dashboard

const DASHBOARD: &str = "deploy/grafana/vigil.json";
const CHART_DASHBOARD: &str = "deploy/helm/vigil/dashboards/vigil.json";

/// The chart can only read files inside itself (`.Files.Get`), so the dashboard lives there;
/// deploy/grafana/vigil.json is the same file for those who import it by hand.
#[test]
fn grafana_dashboard_is_the_charts_and_ships_as_a_configmap() {
    let text = std::fs::read_to_string(root().join(CHART_DASHBOARD)).unwrap();
    check_generated(
        DASHBOARD,
        &text,
        &format!("cp {CHART_DASHBOARD} {DASHBOARD}"),
    );
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");

    // Self-contained: every query goes to the ${datasource} variable, nothing is fetched.
    assert!(dashboard.get("__inputs").is_none() && dashboard.get("__requires").is_none());
    assert_eq!(dashboard["links"], json!([]));
    assert!(
        !text.contains("http://") && !text.contains("https://"),
        "{DASHBOARD}: a URL"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert_eq!(variables[0]["name"], "datasource");
    assert_eq!(variables[0]["query"], "prometheus");
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = &panel["title"];
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(t["expr"].as_str().unwrap().contains("vigil_"), "{title}");
        }
    }

    // A ConfigMap for the sidecar, by default in the release namespace.
    let docs = render(json!({}));
    let cm: ConfigMap = typed(one(&docs, "ConfigMap"), "ConfigMap");
    assert_eq!(cm.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        cm.metadata.labels.unwrap()["grafana_dashboard"],
        "1",
        "the label kube-prometheus-stack's sidecar looks for"
    );
    let data = cm.data.unwrap();
    assert_eq!(data["vigil.json"].trim_end(), text.trim_end());

    let docs = render(json!({"grafanaDashboard": {"namespace": "monitoring"}}));
    let cm = one(&docs, "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    let off = render(json!({"grafanaDashboard": {"enabled": false}}));
    assert!(!off.iter().any(|d| d.kind == "ConfigMap"));
}

/// What the controller calls, and nothing more: (API group, resource) -> verbs.
const CLUSTER_RULES: &[(&str, &str, &[&str])] = &[
    (
        "vigil.dev",
        "releases",
        &["get", "list", "watch", "update", "patch"],
    ),
    ("vigil.dev", "releases/status", &["get", "update", "patch"]),
    ("vigil.dev", "releaseanalyses", &["get", "list", "watch"]),
    (
        "vigil.dev",
        "clusterreleaseanalyses",
        &["get", "list", "watch"],
    ),
    (
        "apps",
        "deployments",
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    ),
    ("apps", "replicasets", &["get", "list", "watch"]),
    ("autoscaling", "horizontalpodautoscalers", &["list"]),
    (
        "",
        "services",
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    ),
    (
        "networking.k8s.io",
        "ingresses",
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    ),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        &["get", "list", "watch", "update", "patch"],
    ),
    (
        "networking.istio.io",
        "virtualservices",
        &["get", "list", "watch", "update", "patch"],
    ),
    // Notification receivers' URLs and signing secrets, read by name at send time.
    ("", "secrets", &["get"]),
    // Dry-run reports and the points analyses fetched, by server-side apply; the points
    // are read back after a restart and deleted when the rollout ends.
    ("", "configmaps", &["get", "create", "patch", "delete"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("", "events", &["create", "patch"]),
];

type Grants = BTreeMap<(String, String), BTreeSet<String>>;

fn grants(rules: &[PolicyRule], what: &str) -> Grants {
    let mut out = Grants::new();
    for rule in rules {
        assert!(rule.resource_names.is_none(), "{what}: resourceNames");
        assert!(rule.non_resource_urls.is_none(), "{what}: nonResourceURLs");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "{what}: wildcard verb");
                    assert!(
                        out.entry((group.clone(), resource.clone()))
                            .or_default()
                            .insert(verb.clone()),
                        "{what}: {group}/{resource} {verb} granted twice"
                    );
                }
            }
        }
    }
    out
}

fn expected(rules: &[(&str, &str, &[&str])]) -> Grants {
    rules
        .iter()
        .map(|(g, r, verbs)| {
            (
                (g.to_string(), r.to_string()),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_what_the_controller_uses() {
    let docs = render(json!({}));
    let role: ClusterRole = typed(one(&docs, "ClusterRole"), "ClusterRole");
    assert_eq!(
        grants(role.rules.as_deref().unwrap_or_default(), "ClusterRole"),
        expected(CLUSTER_RULES)
    );
    let lease: Role = typed(one(&docs, "Role"), "Role");
    assert_eq!(lease.metadata.namespace.as_deref(), Some("vigil-system"));
    assert_eq!(
        grants(lease.rules.as_deref().unwrap_or_default(), "Role"),
        expected(&[(
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"]
        )])
    );

    // Both bindings bind their role to the controller's ServiceAccount.
    let account: ServiceAccount = typed(one(&docs, "ServiceAccount"), "ServiceAccount");
    let sa = account.metadata.name.unwrap();
    let crb: ClusterRoleBinding = typed(one(&docs, "ClusterRoleBinding"), "ClusterRoleBinding");
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(Some(crb.role_ref.name), role.metadata.name);
    let rb: RoleBinding = typed(one(&docs, "RoleBinding"), "RoleBinding");
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(Some(rb.role_ref.name), lease.metadata.name);
    for subjects in [crb.subjects.unwrap(), rb.subjects.unwrap()] {
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, sa);
        assert_eq!(subjects[0].namespace.as_deref(), Some("vigil-system"));
    }
}

fn deployment(overrides: Value) -> Deployment {
    typed(one(&render(overrides), "Deployment"), "Deployment")
}

fn args(d: &Deployment) -> Vec<String> {
    let spec = d.spec.template.spec.as_ref().unwrap();
    spec.containers[0].args.clone().unwrap()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    Some(args.get(i + 1).map(String::as_str).unwrap_or(""))
}

#[test]
fn deployment_runs_the_controller_restricted_and_probed() {
    let d = deployment(json!({}));
    let spec = &d.spec;
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("vigil"));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    // The name deploy/image/build gives the image it builds (tests/it/image.rs builds it).
    assert_eq!(
        c.image.as_deref(),
        Some(concat!("localhost/vigil:", env!("CARGO_PKG_VERSION")))
    );

    let a = args(&d);
    assert_eq!(a[0], "run");
    assert_eq!(
        flag(&a, "--prometheus"),
        Some("http://prometheus-operated.monitoring.svc:9090")
    );
    assert_eq!(flag(&a, "--listen"), Some("0.0.0.0:8080"));
    assert!(a.contains(&"--leader-elect".to_string()));
    assert_eq!(flag(&a, "--lease-namespace"), Some("$(POD_NAMESPACE)"));
    assert_eq!(flag(&a, "--lease-name"), Some("vigil-controller"));
    assert_eq!(flag(&a, "--log-format"), Some("json"));
    assert_eq!(flag(&a, "--watch-namespace"), None);

    // POD_NAME (the identity) and POD_NAMESPACE from the downward API.
    let env = c.env.as_ref().unwrap();
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env.iter().find(|e| e.name == name).unwrap();
        let field = e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, path);
    }

    // The restricted Pod Security Standard.
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );

    // Port 8080 named http; probes on it.
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("http"), 8080)
    );
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
    }
    let resources = c.resources.as_ref().unwrap();
    assert!(
        resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("memory"))
    );
    assert!(
        resources
            .limits
            .as_ref()
            .is_some_and(|r| r.contains_key("memory"))
    );

    // The Pod's labels are what the Deployment and the Service select.
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let docs = render(json!({}));
    let service: Service = typed(one(&docs, "Service"), "Service");
    let s = service.spec.unwrap();
    assert!(
        s.selector
            .unwrap()
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    );
    let sp = &s.ports.unwrap()[0];
    assert_eq!((sp.name.as_deref(), sp.port), (Some("http"), 8080));
}

#[test]
fn leader_election_follows_the_values() {
    let strategy = |d: &Deployment| d.spec.strategy.as_ref().unwrap().type_.clone().unwrap();
    let off = deployment(json!({"leaderElection": {"enabled": false}}));
    assert!(!args(&off).contains(&"--leader-elect".to_string()));
    assert_eq!(flag(&args(&off), "--lease-name"), None);
    assert_eq!(strategy(&off), "Recreate");

    // More than one replica needs a leader whatever the value says.
    let two = deployment(json!({"leaderElection": {"enabled": false}, "replicaCount": 2}));
    assert!(args(&two).contains(&"--leader-elect".to_string()));
    assert_eq!(two.spec.replicas, Some(2));
    assert_eq!(strategy(&two), "RollingUpdate");

    // Shards take the place of the single leader: every replica acts on its shards.
    let sharded = deployment(json!({"replicaCount": 3, "shards": 6,
        "leaderElection": {"enabled": false, "leaseName": "vigil-b"}}));
    let a = args(&sharded);
    assert!(!a.contains(&"--leader-elect".to_string()), "{a:?}");
    assert_eq!(flag(&a, "--shards"), Some("6"));
    assert_eq!(flag(&a, "--lease-name"), Some("vigil-b"));
    assert_eq!(flag(&a, "--lease-namespace"), Some("$(POD_NAMESPACE)"));
    assert_eq!(sharded.spec.replicas, Some(3));
    assert_eq!(strategy(&sharded), "RollingUpdate");
    for bad in [
        json!({"shards": -1}),
        json!({"shards": 257}),
        json!({"shards": "6"}),
    ] {
        let refused = try_template(&bad).expect_err("refused");
        assert!(refused.contains("shards"), "{bad}: {refused}");
    }
}

#[test]
fn shards_may_list_and_delete_their_leases() {
    let docs = render(json!({"replicaCount": 3, "shards": 6}));
    let lease: Role = typed(one(&docs, "Role"), "Role");
    assert_eq!(
        grants(lease.rules.as_deref().unwrap_or_default(), "Role"),
        expected(&[(
            "coordination.k8s.io",
            "leases",
            &["get", "list", "create", "update", "delete"]
        )])
    );
}

#[test]
fn optional_values_render() {
    let d = deployment(json!({
        "watchNamespace": "shop",
        "logFormat": "text",
        "extraArgs": ["--timeout", "10s"],
        "extraEnv": [{"name": "X", "value": "1"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "podAnnotations": {"a": "b"},
    }));
    let a = args(&d);
    assert_eq!(flag(&a, "--watch-namespace"), Some("shop"));
    assert_eq!(flag(&a, "--log-format"), Some("text"));
    assert_eq!(a[a.len() - 2..], ["--timeout", "10s"]);
    let pod = d.spec.template;
    assert_eq!(pod.metadata.unwrap().annotations.unwrap()["a"], "b");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.node_selector.unwrap()["kubernetes.io/os"], "linux");
    assert!(
        spec.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "X")
    );

    // Cluster-wide notifications: the Secret is mounted and its notify.yaml passed.
    assert_eq!(flag(&args(&deployment(json!({}))), "--notify-config"), None);
    let notify = deployment(json!({"notifications": {"secretName": "vigil-notify"}}));
    assert_eq!(
        flag(&args(&notify), "--notify-config"),
        Some("/etc/vigil/notify/notify.yaml")
    );
    let spec = notify.spec.template.spec.unwrap();
    let volume = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "notify")
        .unwrap();
    assert_eq!(
        volume.secret.unwrap().secret_name.as_deref(),
        Some("vigil-notify")
    );
    let mount = spec.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "notify")
        .cloned()
        .unwrap();
    assert_eq!(mount.mount_path, "/etc/vigil/notify");
    assert_eq!(mount.read_only, Some(true));

    assert!(!render(json!({})).iter().any(|d| d.kind == "ServiceMonitor"));
    let docs = render(json!({"serviceMonitor": {"enabled": true, "labels": {"release": "kps"}}}));
    assert_eq!(
        one(&docs, "ServiceMonitor")["metadata"]["labels"]["release"],
        "kps"
    );

    // The /v1 API's credentials: a Secret mounted as files.
    let d = deployment(
        json!({"api": {"existingSecret": "vigil-api", "hmacSecretKey": "hmac", "judgeConcurrency": 2}}),
    );
    let a = args(&d);
    assert_eq!(flag(&a, "--api-token-file"), Some("/etc/vigil/api/token"));
    assert_eq!(
        flag(&a, "--api-hmac-secret-file"),
        Some("/etc/vigil/api/hmac")
    );
    assert_eq!(flag(&a, "--judge-concurrency"), Some("2"));
    assert!(!a.contains(&"--api-insecure-no-auth".to_string()));
    let spec = d.spec.template.spec.unwrap();
    let volume = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "api-credentials")
        .expect("the credentials volume");
    assert_eq!(
        volume.secret.unwrap().secret_name.as_deref(),
        Some("vigil-api")
    );
    let mount = spec.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "api-credentials")
        .cloned()
        .expect("mounted");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/etc/vigil/api", Some(true))
    );
    let a = args(&deployment(json!({"api": {"insecureNoAuth": true}})));
    assert!(a.contains(&"--api-insecure-no-auth".to_string()));
    assert_eq!(flag(&a, "--api-token-file"), None);

    // The dashboard's viewers' token and settings.
    let a = args(&deployment(json!({
        "api": {"existingSecret": "vigil-api", "readTokenKey": "read"},
        "dashboard": {"insecureNoAuth": true, "prometheusUiUrl": "https://prom.example"},
    })));
    assert_eq!(
        flag(&a, "--api-read-token-file"),
        Some("/etc/vigil/api/read")
    );
    assert_eq!(
        flag(&a, "--prometheus-ui-url"),
        Some("https://prom.example")
    );
    assert!(a.contains(&"--dashboard-insecure-no-auth".to_string()));
    assert!(!args(&deployment(json!({}))).contains(&"--dashboard-insecure-no-auth".to_string()));
}

// ---------------------------------------------------------------------------------------
// Examples

/// An example directory's objects by kind and name.
#[derive(Default)]
struct Objects {
    by_kind: BTreeMap<String, BTreeMap<String, Value>>,
    templates: BTreeMap<String, vigil::template::ReleaseAnalysis>,
    canaries: Vec<Release>,
}

fn load_example(dir: &Path) -> Objects {
    let mut objects = Objects::default();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no YAML files", dir.display());
    for file in files {
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, doc) in split_documents(&text).iter().enumerate() {
            let what = format!("{rel} (document {})", i + 1);
            let value: Value =
                serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{what}: {e}"));
            if value.is_null() {
                continue;
            }
            let kind = value["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: kind"))
                .to_string();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: metadata.name"))
                .to_string();
            match (
                value["apiVersion"].as_str().unwrap_or_default(),
                kind.as_str(),
            ) {
                ("vigil.dev/v1alpha1", "Release") => {
                    let c: Release = typed(&value, &what);
                    let direct: Release = serde_saphyr::from_str(doc).unwrap();
                    assert_eq!(c.spec, direct.spec);
                    objects.canaries.push(c);
                }
                ("vigil.dev/v1alpha1", "ReleaseAnalysis") => {
                    let t =
                        vigil::template::load::parse(doc, &what).unwrap_or_else(|e| panic!("{e}"));
                    // The same spec as the shipped template it is a copy of.
                    let shipped = root().join(format!("analysis-templates/{name}.yaml"));
                    let text = std::fs::read_to_string(&shipped).unwrap();
                    let shipped = vigil::template::load::parse(&text, "shipped").unwrap();
                    assert_eq!(t.spec, shipped.spec, "{what}: differs from {name}.yaml");
                    objects.templates.insert(name.clone(), t);
                }
                ("apps/v1", "Deployment") => drop(typed::<Deployment>(&value, &what)),
                ("v1", "Service") => drop(typed::<Service>(&value, &what)),
                ("networking.k8s.io/v1", "Ingress") => drop(typed::<Ingress>(&value, &what)),
                ("gateway.networking.k8s.io/v1", "HTTPRoute") => {
                    assert!(value["spec"]["rules"].is_array(), "{what}: spec.rules");
                }
                ("networking.istio.io/v1", "VirtualService") => {
                    assert!(value["spec"]["http"].is_array(), "{what}: spec.http");
                }
                // Argo Rollouts and Flagger calling vigil's judge: checked by
                // `integration_calls_the_judge`.
                ("argoproj.io/v1alpha1", "AnalysisTemplate" | "Rollout")
                | ("flagger.app/v1beta1", "Canary") => {
                    assert!(value["spec"].is_object(), "{what}: spec");
                }
                (api, kind) => panic!("{what}: unexpected {api} {kind}"),
            }
            let previous = objects
                .by_kind
                .entry(kind.clone())
                .or_default()
                .insert(name.clone(), value);
            assert!(previous.is_none(), "{what}: {kind} {name} defined twice");
        }
    }
    objects
}

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root().join("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn examples_deserialize_and_refer_to_their_objects() {
    let dirs = example_dirs();
    let names: Vec<_> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "argo-rollouts",
            "blue-green",
            "flagger",
            "gateway-api",
            "istio",
            "mirroring",
            "nginx-gray-release"
        ]
    );
    for dir in dirs {
        let name = dir.display().to_string();
        assert!(dir.join("README.md").is_file(), "{name}: README.md");
        let o = load_example(&dir);
        if o.canaries.is_empty() {
            // Another controller rolls out; vigil judges.
            integration_calls_the_judge(&name, &o);
            continue;
        }
        assert_eq!(o.canaries.len(), 1, "{name}: one Release");
        let canary = &o.canaries[0];
        let spec = &canary.spec;
        let has = |kind: &str, n: &str| o.by_kind.get(kind).is_some_and(|m| m.contains_key(n));
        assert!(
            has("Deployment", &spec.target_ref.name),
            "{name}: targetRef"
        );
        assert!(has("Service", &spec.service.name), "{name}: service");
        let r = &spec.routing;
        if let Some(n) = &r.nginx {
            assert!(has("Ingress", &n.ingress), "{name}: routing.nginx.ingress");
        }
        if let Some(g) = &r.gateway_api {
            assert!(
                has("HTTPRoute", &g.http_route),
                "{name}: routing.gatewayAPI.httpRoute"
            );
        }
        if let Some(i) = &r.istio {
            assert!(
                has("VirtualService", &i.virtual_service),
                "{name}: routing.istio"
            );
        }
        if let Err(e) = vigil::api::plan::plan(spec) {
            panic!("{name}: the Release's plan: {e}");
        }
        let analysis = spec
            .analysis
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: analysis"));
        // The templates of the background analysis, or of blue-green's two.
        let mut templates = analysis.templates.clone();
        let mut args = analysis.args.clone();
        for a in spec.blue_green.iter().flat_map(|bg| {
            [&bg.pre_promotion_analysis, &bg.post_promotion_analysis]
                .into_iter()
                .flatten()
        }) {
            templates.extend(a.templates.iter().cloned());
            args.extend(a.args.iter().cloned());
        }
        assert!(!templates.is_empty(), "{name}: no template");
        let given: BTreeSet<_> = args.iter().map(|a| a.name.as_str()).collect();
        for t in &templates {
            assert!(!t.cluster_scope);
            let template = o.templates.get(&t.name).unwrap_or_else(|| {
                panic!("{name}: ReleaseAnalysis {} is not in the example", t.name)
            });
            for arg in &template.spec.args {
                assert!(
                    arg.default.is_some() || given.contains(arg.name.as_str()),
                    "{name}: the Release does not give the template's required arg {}",
                    arg.name
                );
            }
        }
        // Everything in one namespace, the Release's.
        let ns = canary
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: namespace"));
        for (kind, objs) in &o.by_kind {
            for (n, v) in objs {
                assert_eq!(
                    v["metadata"]["namespace"].as_str(),
                    Some(ns),
                    "{name}: {kind} {n}"
                );
            }
        }
        // The Service selects the Deployment's Pods.
        let deploy = &o.by_kind["Deployment"][&spec.target_ref.name];
        let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
        let selector = o.by_kind["Service"][&spec.service.name]["spec"]["selector"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: Service selector"));
        assert!(
            selector.iter().all(|(k, v)| &pod_labels[k] == v),
            "{name}: selector"
        );
    }
}

/// `{{ args.x }}` (Argo's placeholders) replaced by the argument's name, `x`.
fn without_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .map_or(rest.len(), |e| start + e + 2);
        let inner = rest[start + 2..end.saturating_sub(2).max(start + 2)].trim();
        out.push_str(inner.trim_start_matches("args."));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// An Argo Rollouts or Flagger example: every call to vigil's judge is a valid request for a
/// template of the example, giving its required args, with matchers that parse.
fn integration_calls_the_judge(name: &str, o: &Objects) {
    use vigil::runtime::server::judge::{
        FlaggerWebhook, JudgeRequest, TemplateSource, from_flagger,
    };
    let mut requests: Vec<JudgeRequest> = Vec::new();
    for (kind, objects) in &o.by_kind {
        for (n, v) in objects {
            assert_eq!(v["metadata"]["namespace"], "shop", "{name}: {kind} {n}");
            let api = v["apiVersion"].as_str().unwrap_or_default();
            if api == "argoproj.io/v1alpha1" && kind == "AnalysisTemplate" {
                for metric in v["spec"]["metrics"].as_array().expect("metrics") {
                    let web = &metric["provider"]["web"];
                    assert!(
                        web["url"].as_str().unwrap().ends_with("/v1/judge"),
                        "{name}: {n}"
                    );
                    assert_eq!(web["method"], "POST", "{name}: {n}");
                    assert_eq!(metric["successCondition"], "result.verdict == \"pass\"");
                    assert!(
                        web["headers"][0]["value"]
                            .as_str()
                            .unwrap()
                            .starts_with("Bearer "),
                        "{name}: {n}: the token"
                    );
                    let body = without_placeholders(&web["jsonBody"].to_string());
                    requests.push(
                        serde_json::from_str(&body)
                            .unwrap_or_else(|e| panic!("{name}: {n}: jsonBody: {e}")),
                    );
                }
            }
            if api == "flagger.app/v1beta1" && kind == "Canary" {
                let hooks = v["spec"]["analysis"]["webhooks"]
                    .as_array()
                    .expect("webhooks");
                for hook in hooks {
                    // Each hook asks the judge at the URL of its own kind.
                    let kind = hook["type"].as_str().unwrap_or("rollout");
                    assert!(
                        hook["url"]
                            .as_str()
                            .unwrap()
                            .ends_with(&format!("/v1/judge/flagger/{kind}")),
                        "{name}: {n}: {kind}"
                    );
                    let body = json!({"name": n, "namespace": "shop", "phase": "Progressing",
                        "checksum": "x", "metadata": hook["metadata"]});
                    let hook: FlaggerWebhook = serde_json::from_value(body).unwrap();
                    requests.push(from_flagger(&hook).unwrap_or_else(|e| panic!("{name}: {e:?}")));
                }
            }
        }
    }
    assert!(!requests.is_empty(), "{name}: no call to vigil's judge");
    for r in requests {
        let TemplateSource::Name(template) = &r.template else {
            panic!("{name}: the examples name their template");
        };
        let t = o
            .templates
            .get(template)
            .unwrap_or_else(|| panic!("{name}: ReleaseAnalysis {template} is not in the example"));
        for arg in &t.spec.args {
            assert!(
                arg.default.is_some() || r.args.contains_key(&arg.name),
                "{name}: the judge request does not give the template's required arg {}",
                arg.name
            );
        }
        for matchers in [&r.stable, &r.canary] {
            matchers
                .parse::<vigil::template::selector::Selector>()
                .unwrap_or_else(|e| panic!("{name}: {matchers}: {e}"));
        }
        assert_ne!(r.stable, r.canary, "{name}");
        assert!(r.lookback.is_some(), "{name}: a lookback");
    }
}
