//! vigil: decides from metrics whether a canary release is safe to roll out, and acts on it.
//!
//! The library is layered; each layer imports only the layers below it, and the top-level
//! modules import one another without a cycle (the test `layers` below checks both):
//!
//! | layer | modules | may import |
//! |---|---|---|
//! | core: pure, no I/O, no Kubernetes, no terminal | `stats`, `template`, `data`, `judge`, `rollout` | the core |
//! | adapters: metric sources, analyses, notifications, reports, replays, benchmarks, the fake Kubernetes API server of tests and benchmarks | `source`, `analysis`, `signature`, `notify`, `report`, `replay`, `bench`, `fake_kube` | the core, other adapters |
//! | Kubernetes API types and the pure logic over them | `api` | the above |
//! | Kubernetes I/O: reconcile, world apply, routers, gates, leader election, operator commands | `cluster` | the above |
//! | the runtime of `vigil run`: controller loop, HTTP server, metrics, notification wiring | `runtime` | the above |
//!
//! The command line is the binary's (`src/main.rs`, `src/cli/`). `docs/architecture.md`
//! says where a new router, metric source, notifier or command goes.

pub mod analysis;
pub mod api;
pub mod bench;
pub mod cluster;
pub mod data;
pub mod fake_kube;
pub mod judge;
pub mod notify;
pub mod replay;
pub mod report;
pub mod rollout;
pub mod runtime;
pub mod signature;
pub mod source;
pub mod stats;
pub mod template;

#[cfg(test)]
mod layers {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Each top-level module's layer, bottom first.
    const LAYERS: &[&[&str]] = &[
        &["stats", "template", "data", "judge", "rollout"],
        &[
            "source",
            "analysis",
            "signature",
            "notify",
            "report",
            "replay",
            "bench",
            "fake_kube",
        ],
        &["api"],
        &["cluster"],
        &["runtime"],
    ];

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// The code of a file without comments and without its tests.
    fn code(text: &str) -> String {
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The top-level modules a file's code names as `crate::module`.
    fn imports(code: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let name = item.trim().split("::").next().unwrap_or_default();
                    out.insert(name.to_string());
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
        out
    }

    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }

    /// Top-level module -> the top-level modules it imports.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let relative = file.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap();
            let top = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if matches!(top.as_str(), "main" | "lib" | "cli") {
                continue;
            }
            let imported = imports(&code(&std::fs::read_to_string(&file).unwrap()));
            let entry = graph.entry(top.clone()).or_default();
            entry.extend(imported.into_iter().filter(|m| *m != top));
        }
        graph
    }

    #[test]
    fn every_module_imports_only_its_own_layer_or_those_below() {
        let graph = graph();
        let mut wrong = Vec::new();
        for (module, imported) in &graph {
            let Some(own) = layer(module) else {
                wrong.push(format!(
                    "{module} is in no layer: add it to LAYERS and lib.rs's table"
                ));
                continue;
            };
            for target in imported {
                match layer(target) {
                    Some(l) if l <= own => {}
                    Some(_) => wrong.push(format!(
                        "{module} (layer {own}) imports {target}, a layer above it"
                    )),
                    None => wrong.push(format!("{module} imports {target}, which is in no layer")),
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_top_level_modules_import_one_another_without_a_cycle() {
        let graph = graph();
        // Kahn's algorithm: whatever cannot be ordered lies on a cycle.
        let mut pending: BTreeMap<&str, BTreeSet<&str>> = graph
            .iter()
            .map(|(m, i)| {
                let deps = i
                    .iter()
                    .map(String::as_str)
                    .filter(|d| graph.contains_key(*d))
                    .collect();
                (m.as_str(), deps)
            })
            .collect();
        loop {
            let ready: Vec<&str> = pending
                .iter()
                .filter(|(_, deps)| deps.is_empty())
                .map(|(m, _)| *m)
                .collect();
            if ready.is_empty() {
                break;
            }
            for m in ready {
                pending.remove(m);
                for deps in pending.values_mut() {
                    deps.remove(m);
                }
            }
        }
        assert!(pending.is_empty(), "import cycles among: {pending:?}");
    }

    #[test]
    fn imports_are_read_from_paths_and_groups_but_not_comments() {
        let text = "use crate::{judge::words, stats};\n// crate::runtime\nlet x = crate::rollout::Phase::Waiting;\n#[cfg(test)]\nuse crate::cluster;";
        let found = imports(&code(text));
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["judge", "rollout", "stats"]
        );
    }
}
