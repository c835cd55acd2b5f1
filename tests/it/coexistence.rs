//! vigil beside Flagger and Argo Rollouts in one cluster: no kind, plural, singular or short
//! name of vigil's is also one of theirs, and `kubectl` (the Debian client), run against the
//! fake API server holding all three CRD sets, resolves every name of vigil's and every
//! command the docs show to the resources meant.
//!
//! The peers' CRDs are tests/fixtures/crds/{flagger,argo-rollouts}.yaml, made from their
//! repositories by tests/fixtures/crds/make_peer_crds.py (names as published, open schemas),
//! which also makes the CRDs of the traffic kinds the examples route with (Istio's
//! VirtualService, the Gateway API's HTTPRoute), installed so that the examples apply.

use crate::common::fake_kube::FakeKube;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const VIGIL_CRDS: &str = "deploy/crds/vigil.dev_crds.yaml";
const FLAGGER_CRDS: &str = "tests/fixtures/crds/flagger.yaml";
const ARGO_CRDS: &str = "tests/fixtures/crds/argo-rollouts.yaml";
/// The traffic kinds of the examples, as a cluster with Istio and the Gateway API has them.
const ROUTING_CRDS: [&str; 2] = [
    "tests/fixtures/crds/istio-virtualservice.yaml",
    "tests/fixtures/crds/gateway-api-httproute.yaml",
];

/// The CRDs of a multi-document YAML file.
fn crds(relative: &str) -> Vec<CustomResourceDefinition> {
    let text = std::fs::read_to_string(root().join(relative)).unwrap();
    text.split("\n---")
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .collect()
}

/// The names kubectl resolves a resource type by: kind, plural, singular and short names,
/// lower case.
fn names(crd: &CustomResourceDefinition) -> BTreeSet<String> {
    let n = &crd.spec.names;
    let mut all: BTreeSet<String> = [Some(n.kind.clone()), Some(n.plural.clone())]
        .into_iter()
        .chain([n.singular.clone()])
        .flatten()
        .chain(n.short_names.clone().unwrap_or_default())
        .map(|s| s.to_lowercase())
        .collect();
    all.retain(|s| !s.is_empty());
    all
}

/// Each group's names: (group, every name of its kinds).
fn names_by_group() -> Vec<(String, BTreeSet<String>)> {
    [VIGIL_CRDS, FLAGGER_CRDS, ARGO_CRDS]
        .iter()
        .map(|file| {
            let crds = crds(file);
            let group = crds[0].spec.group.clone();
            assert!(
                crds.iter().all(|c| c.spec.group == group),
                "{file}: one group"
            );
            (group, crds.iter().flat_map(names).collect())
        })
        .collect()
}

#[test]
fn no_name_of_vigils_is_flaggers_or_argos() {
    let groups = names_by_group();
    let (vigil_group, vigil) = &groups[0];
    assert_eq!(vigil_group, "vigil.dev");
    // The fixtures really are the peers' (a renamed fixture would prove nothing).
    assert!(groups[1].1.contains("canary") && groups[1].0 == "flagger.app");
    assert!(groups[2].1.contains("at") && groups[2].0 == "argoproj.io");
    for (group, theirs) in &groups[1..] {
        let shared: Vec<_> = vigil.intersection(theirs).collect();
        assert!(shared.is_empty(), "vigil and {group} both use {shared:?}");
    }
    // `kubectl get vigil` lists vigil's kinds and nothing of theirs.
    for crd in crds(VIGIL_CRDS) {
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["vigil".to_string()][..]),
            "{}",
            crd.spec.names.kind
        );
    }
}

/// Runs kubectl against the fake (blocking: call from a blocking thread); the output, or the
/// failure with stderr.
fn kubectl(kubeconfig: &Path, args: &[String]) -> Result<String, String> {
    let output = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(root())
        .output()
        .expect("kubectl is needed for this test: ./test.sh installs Debian's kubernetes-client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.success() && stderr.trim().is_empty() {
        true => Ok(stdout),
        false => Err(format!("kubectl {}: {stderr}{stdout}", args.join(" "))),
    }
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// The `kubectl` commands the docs show: lines of shell blocks and inline code in README.md,
/// docs/ and deploy/, each with the file it is in. Plugins (`kubectl argo ...`, `kubectl
/// vigil ...`) are not kubectl's to resolve.
fn documented_commands() -> Vec<(String, Vec<String>)> {
    let mut files = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs"), root().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    let mut commands = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let relative = file.strip_prefix(root()).unwrap().display().to_string();
        let mut block: Option<&str> = None;
        for line in text.lines() {
            if let Some(info) = line.trim_start().strip_prefix("```") {
                block = match block {
                    Some(_) => None,
                    None => Some(info.trim()),
                };
                continue;
            }
            // The whole line in a shell block; inline code spans outside blocks.
            let spans: Vec<&str> = match block {
                Some("sh" | "bash" | "shell") => vec![line],
                Some(_) => continue,
                None => line.split('`').skip(1).step_by(2).collect(),
            };
            for span in spans {
                let Some(start) = span.find("kubectl ") else {
                    continue;
                };
                let command = span[start..].split('#').next().unwrap_or_default();
                let command = command.split(['|', ';', ')']).next().unwrap_or_default();
                let args: Vec<String> = words(command).into_iter().skip(1).collect();
                let plugin = matches!(args.first().map(String::as_str), Some("argo" | "vigil"));
                // `-f -` reads what a pipe gives it (`vigil crd | kubectl apply -f -`).
                let piped = args.windows(2).any(|w| w[0] == "-f" && w[1] == "-");
                if !plugin && !piped && !args.is_empty() && !command.contains("...") {
                    commands.push((relative.clone(), args));
                }
            }
        }
    }
    commands
}

/// The API group in a line of `kubectl get -o name`: `release.vigil.dev/web` -> `vigil.dev`.
fn group_of_name(line: &str) -> String {
    let kind = line.split('/').next().unwrap_or_default();
    kind.split_once('.')
        .map(|(_, g)| g)
        .unwrap_or_default()
        .to_string()
}

/// The verb of a kubectl command line and the resource type it names, if any.
fn verb_and_type(args: &[String]) -> (String, Option<String>) {
    // Flags and the values of `-n NS`, `-f FILE`, `-o FORMAT` are not the verb or type.
    let mut plain = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "-n" || a == "--namespace" || a == "-f" || a == "-o" {
            skip = true;
            continue;
        }
        if !a.starts_with('-') {
            plain.push(a.clone());
        }
    }
    let verb = plain.first().cloned().unwrap_or_default();
    let kind = plain
        .get(1)
        .map(|t| t.split('/').next().unwrap_or(t).to_lowercase());
    (verb, kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_resolves_vigils_names_and_the_docs_commands_to_vigil() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let one_of_each = dir.path().join("one-of-each.yaml");

    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            kubectl(&kubeconfig, &args).unwrap_or_else(|e| panic!("{e}"))
        };
        // The three CRD sets, as `kubectl apply` installs them.
        for file in [VIGIL_CRDS, FLAGGER_CRDS, ARGO_CRDS].into_iter().chain(ROUTING_CRDS) {
            run(&["apply", "--validate=false", "-f", file]);
        }
        // An object `one` of every kind of the three (the fake needs no Namespace object);
        // the docs' commands below apply the examples besides.
        let objects: Vec<String> = [VIGIL_CRDS, FLAGGER_CRDS, ARGO_CRDS]
            .iter()
            .flat_map(|f| crds(f))
            .map(|crd| {
                let version = &crd.spec.versions[0].name;
                let namespace = match crd.spec.scope.as_str() {
                    "Namespaced" => "\n  namespace: shop",
                    _ => "",
                };
                format!(
                    "apiVersion: {}/{version}\nkind: {}\nmetadata:\n  name: one{namespace}\nspec: {{}}\n",
                    crd.spec.group, crd.spec.names.kind
                )
            })
            .collect();
        std::fs::write(&one_of_each, objects.join("---\n")).unwrap();
        run(&["apply", "--validate=false", "-f", &one_of_each.display().to_string()]);

        // The documented commands, in the order the docs give them (applies before reads).
        let vigil_names = &names_by_group()[0].1;
        let peers = names_by_group();
        let mut documented = documented_commands();
        documented.sort_by_key(|(_, args)| verb_and_type(args).0 != "apply");
        let mut checked = 0;
        for (file, mut args) in documented {
            let (verb, kind) = verb_and_type(&args);
            // Only what reads or writes vigil's or the peers' objects; the rest (create a
            // Secret, set an image) is plain Kubernetes.
            let owner = kind.as_ref().and_then(|k| {
                peers
                    .iter()
                    .find(|(g, n)| n.contains(k) || k.ends_with(&format!(".{g}")))
                    .map(|(g, _)| g.clone())
            });
            match verb.as_str() {
                "apply" => {
                    args.insert(1, "--validate=false".into());
                    kubectl(&kubeconfig, &args).unwrap_or_else(|e| panic!("{file}: {e}"));
                    checked += 1;
                    continue;
                }
                "get" | "describe" if owner.is_some() => {}
                _ => continue,
            }
            let (kind, owner) = (kind.unwrap(), owner.unwrap());
            // A doc may name Flagger's or Argo's kinds only in its own example.
            if owner != "vigil.dev" {
                let example = match owner.as_str() {
                    "flagger.app" => "deploy/examples/flagger/",
                    _ => "deploy/examples/argo-rollouts/",
                };
                assert!(
                    file.starts_with(example),
                    "{file}: `kubectl {}` names {owner}'s {kind:?}",
                    args.join(" ")
                );
            } else {
                assert!(vigil_names.contains(&kind) || kind.ends_with(".vigil.dev"));
            }
            args.retain(|a| a != "-w" && a != "--watch");
            // The examples' objects are in `shop`; a command for the current namespace
            // looks there.
            if !args
                .iter()
                .any(|a| ["-n", "--namespace", "-A"].contains(&a.as_str()))
            {
                args.extend(["-n".into(), "shop".into()]);
            }
            if verb == "get" {
                args.extend(["-o".into(), "name".into()]);
            }
            let out = kubectl(&kubeconfig, &args).unwrap_or_else(|e| panic!("{file}: {e}"));
            // `get -o name` says kind.group/name; `describe` says "API Version:  group/version".
            let groups: Vec<String> = match verb.as_str() {
                "get" => out.lines().map(group_of_name).collect(),
                _ => out
                    .lines()
                    .filter_map(|l| l.strip_prefix("API Version:"))
                    .map(|v| v.trim().split('/').next().unwrap_or_default().to_string())
                    .collect(),
            };
            assert!(
                !groups.is_empty() && groups.iter().all(|g| *g == owner),
                "{file}: `kubectl {}` should reach {owner}'s {kind}, got {out:?}",
                args.join(" ")
            );
            checked += 1;
        }
        assert!(
            checked >= 8,
            "only {checked} documented commands were checked"
        );

        // Every name of every kind, vigil's and theirs, reaches its own group's objects, with
        // no warning of an ambiguous name.
        for (group, names) in &peers {
            for name in names {
                let out = run(&["get", name, "-A", "-o", "name"]);
                let groups: Vec<String> = out.lines().map(group_of_name).collect();
                assert!(
                    !groups.is_empty() && groups.iter().all(|g| g == group),
                    "kubectl get {name}: expected {group}'s objects, got {out:?}"
                );
            }
        }
        // The fully qualified names, as the docs write them for clarity.
        for crd in crds(VIGIL_CRDS) {
            let qualified = format!("{}.{}", crd.spec.names.plural, crd.spec.group);
            let out = run(&["get", &qualified, "-A", "-o", "name"]);
            assert!(!out.trim().is_empty(), "kubectl get {qualified}: {out:?}");
        }
        // The category lists vigil's objects, one of each kind.
        let all = run(&["get", "vigil", "-A", "-o", "name"]);
        let kinds: BTreeSet<&str> = all.lines().filter_map(|l| l.split('/').next()).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                "clusterreleaseanalysis.vigil.dev",
                "release.vigil.dev",
                "releaseanalysis.vigil.dev"
            ]),
            "{all}"
        );
    })
    .await
    .unwrap();
}
