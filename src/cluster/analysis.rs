//! Runs the analysis the state machine asks for: fetches the templates from the cluster,
//! judges the canary against stable over the window, and sums the reports up as one
//! [`AnalysisOutcome`].

use crate::analysis::{self, Baseline, Judged};
use crate::api::crd::{self, Release};
use crate::data::Window;
use crate::judge::Report;
use crate::rollout::{AnalysisDue, AnalysisOutcome, Plan, TemplateUse};
use crate::source::MetricSource;
use crate::template::selector::Selector;
use crate::template::units::PromDuration;
use crate::template::{self, Metadata, ReleaseAnalysis};
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, ResourceExt};
use std::time::Duration;

/// Everything one analysis needs besides the cluster and the source.
pub struct AnalysisInput<'a> {
    /// The Release.
    pub canary: &'a Release,
    /// Its plan, which says what each analysis runs.
    pub plan: &'a Plan,
    /// Which analysis and window.
    pub due: AnalysisDue,
    /// The step size of range queries (the analysis interval).
    pub interval: Duration,
    /// Stable matchers.
    pub stable: &'a Selector,
    /// Canary matchers.
    pub canary_matchers: &'a Selector,
    /// What the canary is compared with: [`Baseline::Concurrent`] for stable beside it over
    /// the window; [`Baseline::Before`] for a bake or a post-promotion analysis, the version
    /// `canary_matchers` selects over the window against what `stable` selected over an
    /// earlier window ending no later than `began` (the two selectors may then be the same).
    pub baseline: Baseline,
    /// Queries in flight at most.
    pub concurrency: usize,
}

/// Fetches a template from the cluster and checks it. The object is read as it is stored,
/// not as the typed ReleaseAnalysis, so that a template with several mistakes gets them all
/// listed (field by field, see [`template::load::from_value`]) rather than the first one
/// the typed read stops at.
pub async fn fetch_template(
    client: &kube::Client,
    namespace: &str,
    reference: &TemplateUse,
) -> Result<ReleaseAnalysis, String> {
    let (kind, api) = if reference.cluster_scope {
        let resource = ApiResource::erase::<crd::ClusterReleaseAnalysis>(&());
        (
            "ClusterReleaseAnalysis",
            Api::<DynamicObject>::all_with(client.clone(), &resource),
        )
    } else {
        let resource = ApiResource::erase::<crd::ReleaseAnalysis>(&());
        (
            "ReleaseAnalysis",
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource),
        )
    };
    let where_ = if reference.cluster_scope {
        format!("{kind} {}", reference.name)
    } else {
        format!("{kind} {namespace}/{}", reference.name)
    };
    let object = match api.get_opt(&reference.name).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(format!(
                "{where_} not found: create it (kubectl apply -f the template) or fix the name in the Release"
            ));
        }
        Err(e) => return Err(format!("cannot read {where_}: {e}")),
    };
    let meta = &object.metadata;
    let document = serde_json::json!({
        "apiVersion": template::API_VERSION,
        "kind": template::KIND,
        "metadata": Metadata {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
        },
        "spec": object.data.get("spec").cloned().unwrap_or(serde_json::Value::Null),
    });
    template::load::from_value(&document).map_err(|issues| {
        let list: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        match list.as_slice() {
            [one] => format!("{where_} is not valid: {one}"),
            _ => format!(
                "{where_} is not valid, {} problems (fix them all, then apply it again): {}",
                list.len(),
                list.join("; ")
            ),
        }
    })
}

/// Runs the analysis and returns its outcome with the reports of every template judged.
pub async fn run<S: MetricSource>(
    client: &kube::Client,
    source: &S,
    input: &AnalysisInput<'_>,
) -> (AnalysisOutcome, Vec<Judged>) {
    let namespace = input.canary.namespace().unwrap_or_default();
    let setup = input.plan.analysis(input.due.scope);
    let step = PromDuration::from_millis(input.interval.as_millis() as u64);
    let window = match Window::new(input.due.from, input.due.to, step) {
        Ok(w) => w,
        Err(e) => {
            return (
                AnalysisOutcome::Error {
                    message: format!("the analysis window is not usable: {e}"),
                },
                Vec::new(),
            );
        }
    };
    let mut templates = Vec::new();
    let mut errors = Vec::new();
    for reference in &setup.templates {
        match fetch_template(client, &namespace, reference).await {
            Ok(t) => templates.push(t),
            Err(e) => errors.push(e),
        }
    }
    let (judged, failed) = analysis::run_templates(
        source,
        &templates,
        &setup.args,
        (input.stable, input.canary_matchers),
        (window, input.baseline),
        (input.due.look, analysis::position(&input.due)),
        input.concurrency,
    )
    .await;
    errors.extend(failed);
    let reports: Vec<Report> = judged.iter().map(|j| j.report.clone()).collect();
    (analysis::outcome(&reports, &errors), judged)
}
