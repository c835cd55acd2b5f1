//! The report of a dry-run (shadow) Release: after each analysis, the same HTML and Markdown
//! report `vigil replay` writes (the latest judgement, its charts, and the analyses so far
//! marked on them) is stored in a ConfigMap beside the Release, which `status.report` names.
//! The ConfigMap is owned by the Release, so it goes when the Release goes.

use crate::analysis::Judged;
use crate::judge::words::truncate_bytes as truncate;
use crate::report::doc::{ChartData, Document, Mark, MarkKind, Section};
use crate::rollout::{AnalysisRecord, Event, EventKind, Plan, State};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use std::collections::BTreeMap;

use crate::api::crd::Release;

/// The key of the HTML report in the ConfigMap.
pub const HTML_KEY: &str = "report.html";
/// The key of the Markdown report in the ConfigMap.
pub const MARKDOWN_KEY: &str = "report.md";
/// ConfigMaps hold at most 1 MiB; past this the HTML (the larger) is left out.
const MAX_BYTES: usize = 900 * 1024;

/// The ConfigMap's name for a Release.
pub fn config_map_name(canary: &str) -> String {
    format!("{canary}-vigil-report")
}

/// What `status.report` says: where the report is and how to read it.
pub fn reference(namespace: &str, canary: &str, keys: &[&str]) -> String {
    let name = config_map_name(canary);
    let key = keys.first().copied().unwrap_or(MARKDOWN_KEY);
    format!(
        "ConfigMap {namespace}/{name} ({}): kubectl get configmap {name} -n {namespace} -o jsonpath='{{.data.{}}}' > {key}",
        keys.join(", "),
        key.replace('.', "\\.")
    )
}

fn record_mark(plan: &Plan, record: &AnalysisRecord) -> Mark {
    let kind = match record.verdict.as_str() {
        "pass" => MarkKind::Advance,
        "fail" | "error" => MarkKind::Warn,
        _ => MarkKind::Info,
    };
    Mark {
        at: record.at,
        step: format!(
            "step {}/{} ({}%)",
            plan.step_number(record.step),
            plan.steps.len(),
            record.weight
        ),
        weight: record.weight,
        text: truncate(
            &format!("analysis {}: {}", record.verdict, record.summary),
            300,
        ),
        kind,
    }
}

/// The analyses status keeps, then this reconcile's rollout events, as marks.
pub fn marks(
    plan: &Plan,
    state: &State,
    events: &[Event],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Mark> {
    let mut marks = analysis_marks(plan, state);
    marks.extend(event_marks(plan, state, events, now));
    marks
}

/// The analyses status keeps, as marks.
pub fn analysis_marks(plan: &Plan, state: &State) -> Vec<Mark> {
    state
        .analyses()
        .iter()
        .map(|r| record_mark(plan, r))
        .collect()
}

/// This reconcile's rollout events as marks, at `now`; the analysis events are left out
/// (their records in status say them).
pub fn event_marks(
    plan: &Plan,
    state: &State,
    events: &[Event],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Mark> {
    let mut marks = Vec::new();
    for event in events {
        let kind = match event.kind {
            EventKind::Aborted => MarkKind::Abort,
            EventKind::Promoting | EventKind::Succeeded => MarkKind::Promote,
            EventKind::StepAdvanced => MarkKind::Advance,
            // The analysis records say these already.
            EventKind::AnalysisFailed
            | EventKind::AnalysisInconclusive
            | EventKind::AnalysisError => continue,
            EventKind::Stalled => MarkKind::Warn,
            _ => MarkKind::Info,
        };
        marks.push(Mark {
            at: now,
            step: plan.step_label(state),
            weight: state.weight(),
            text: truncate(&event.message, 300),
            kind,
        });
    }
    marks
}

/// The dry-run report: one section per template judged.
pub fn document<'a>(
    title: &str,
    summary: &str,
    judged: &'a [Judged],
    marks: &'a [Mark],
) -> Document<'a> {
    Document {
        title: title.to_string(),
        sections: judged
            .iter()
            .map(|j| Section {
                title: format!("{title}: template {}", j.template.metadata.name),
                summary: summary.to_string(),
                report: &j.report,
                charts: Some(ChartData {
                    template: &j.template,
                    data: &j.data,
                }),
                marks,
            })
            .collect(),
    }
}

/// Writes the report ConfigMap (server-side apply, owned by the Release) and returns what
/// `status.report` should say.
pub async fn publish(
    client: &kube::Client,
    canary: &Release,
    doc: &Document<'_>,
) -> Result<String, kube::Error> {
    let namespace = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let markdown = crate::report::markdown_doc(doc);
    let html = crate::report::html::html(doc);
    let mut data = BTreeMap::from([(MARKDOWN_KEY.to_string(), markdown)]);
    let mut keys = vec![MARKDOWN_KEY];
    if html.len() + data[MARKDOWN_KEY].len() <= MAX_BYTES {
        data.insert(HTML_KEY.to_string(), html);
        keys.insert(0, HTML_KEY);
    }
    apply_owned_config_map(client, canary, &config_map_name(&name), data).await?;
    Ok(reference(&namespace, &name, &keys))
}

/// Writes ConfigMap `name` in `canary`'s namespace with `data` (server-side apply as
/// vigil), owned by the Release so that it goes with it.
pub async fn apply_owned_config_map(
    client: &kube::Client,
    canary: &Release,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let namespace = canary.namespace().unwrap_or_default();
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "vigil".to_string(),
            )])),
            owner_references: canary.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        name,
        &PatchParams::apply("vigil").force(),
        &Patch::Apply(&config_map),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Attempt, Stage};
    use chrono::TimeZone;

    #[test]
    fn the_reference_says_how_to_read_the_report() {
        let r = reference("shop", "web", &[HTML_KEY, MARKDOWN_KEY]);
        assert_eq!(
            r,
            "ConfigMap shop/web-vigil-report (report.html, report.md): kubectl get configmap \
             web-vigil-report -n shop -o jsonpath='{.data.report\\.html}' > report.html"
        );
    }

    #[test]
    fn analyses_and_rollout_events_become_marks() {
        let plan = Plan::from_weights(&[10, 50], std::time::Duration::from_secs(60));
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
            .unwrap();
        let release = Attempt {
            analyses: vec![AnalysisRecord {
                at,
                step: 1,
                weight: 50,
                verdict: "fail".into(),
                summary: "demo fail: error-rate high".into(),
            }],
            ..Attempt::new("r2", at, 4)
        };
        let state = State {
            stage: Stage::Failed {
                release,
                aborted_at: at,
                from_weight: 0,
            },
            ..State::default()
        };
        let events = [
            Event {
                kind: EventKind::AnalysisFailed,
                message: "said by the record already".into(),
            },
            Event {
                kind: EventKind::Aborted,
                message: "aborted at step 2/2".into(),
            },
        ];
        let marks = marks(&plan, &state, &events, at);
        assert_eq!(marks.len(), 2, "{marks:?}");
        assert_eq!(marks[0].step, "step 2/2 (50%)");
        assert_eq!(marks[0].kind, MarkKind::Warn);
        assert_eq!(marks[0].text, "analysis fail: demo fail: error-rate high");
        assert_eq!(marks[1].kind, MarkKind::Abort);
        assert_eq!(marks[1].text, "aborted at step 2/2");
    }
}
