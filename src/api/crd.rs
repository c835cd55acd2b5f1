//! The custom resources of group `vigil.dev`, version `v1alpha1`, generated from these types:
//! `Release`, `ReleaseAnalysis` and `ClusterReleaseAnalysis`. `vigil crd` prints them.
//!
//! Names follow Flagger and Argo Rollouts where they mean the same thing (`targetRef`,
//! `service`, `steps`, `stepWeights`, `analysis.interval`, `failureLimit`,
//! `inconclusiveLimit`, `consecutiveErrorLimit`, `progressDeadline`, `abortScaleDownDelay`,
//! `skipAnalysis`), so that their users feel at home.

// kube-derive repeats `type_ = "string"` across printcolumns, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use crate::api::status::StateV1alpha1;
use crate::rollout::{GateKind, Match, Request};
use crate::template::TemplateSpec;
use chrono::{DateTime, Utc};
use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group.
pub const GROUP: &str = "vigil.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";
/// The label that canary pods carry and stable pods do not.
pub const CANARY_LABEL: &str = "vigil.dev/canary";
/// The label on objects vigil creates, naming the Release that owns them.
pub const OWNER_LABEL: &str = "vigil.dev/canary-name";
/// The annotation on the target Deployment recording that vigil adopted it.
pub const ADOPTED_ANNOTATION: &str = "vigil.dev/adopted-by";

/// The duration pattern accepted in the schema: PromQL-style units, largest first.
const DURATION_RULE: &str = "self.matches('^([0-9]+(ms|s|m|h|d|w|y))+$')";
/// The same pattern as an OpenAPI `pattern`, so that schema-only validators (kubeconform,
/// editors) check durations too, not only the API server's CEL.
const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d|w|y))+$";

/// A canary release of one Deployment: its traffic is moved to the new version step by
/// step and judged against the stable version at every interval.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "Release",
    plural = "releases",
    shortname = "rel",
    category = "vigil",
    namespaced,
    status = "ReleaseStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.weight"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.stepLabel"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.lastVerdict"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.steps) && size(self.steps) > 0 && has(self.stepWeights) && size(self.stepWeights) > 0)").message("set steps or stepWeights, not both"))]
#[x_kube(validation = Rule::new("!has(self.blueGreen) || ((!has(self.steps) || size(self.steps) == 0) && (!has(self.stepWeights) || size(self.stepWeights) == 0))").message("blueGreen replaces steps and stepWeights: set one of them"))]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// The Deployment to roll out.
    pub target_ref: TargetRef,
    /// The Service in front of the Deployment.
    pub service: ServiceRef,
    /// How traffic is split between the versions: exactly one router.
    pub routing: Routing,
    /// The steps of the rollout, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ReleaseStep>,
    /// Shorthand for `steps`: one weight step per entry, e.g. `[10, 50, 100]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(w, w >= 0 && w <= 100)").message("weights are percentages, 0 to 100"))]
    #[schemars(inner(range(min = 0, max = 100)))]
    pub step_weights: Vec<i32>,
    /// A blue-green release instead of steps: the new version comes up at full size behind
    /// a preview Service, is judged there, and takes all traffic at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenSpec>,
    /// Background analysis, judged at every interval while the canary has traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSettings>,
    /// Scale the canary's replicas with its traffic share.
    #[serde(default)]
    pub scale_canary_with_weight: bool,
    /// Judge, report and notify, but never touch traffic or replicas (shadow mode).
    #[serde(default)]
    pub dry_run: bool,
    /// Hold the rollout where it is.
    #[serde(default)]
    pub paused: bool,
    /// Advance on time alone, without analysis.
    #[serde(default)]
    pub skip_analysis: bool,
    /// How long the canary (or the promoted stable Deployment) may take to become available
    /// before the rollout is aborted (or reported stalled). Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub progress_deadline: Option<String>,
    /// How long an aborted canary keeps its replicas, for debugging, before it scales to
    /// zero. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub abort_scale_down_delay: Option<String>,
    /// Watch the new version after the promotion, against the old version's requests
    /// before the release; a regression rolls the Deployment back to the previous revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<BakeSpec>,
    /// How an abort hands traffic back to stable: at once (the default), or in steps so
    /// that stable's pods warm up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortSpec>,
    /// Release gates: webhooks asked before a canary starts, before the first traffic
    /// shift, at every interval, before each weight increase, before promotion, after the
    /// end, and on each event (see `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<GateWebhook>,
    /// Where to send this Release's rollout events (besides the cluster-wide receivers of
    /// `vigil run --notify-config`). URLs and signing secrets come from a Secret in the
    /// Release's namespace, never from the Release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::notify::config::ReleaseNotification>,
    /// Abort the release in flight when a firing Alertmanager alert carries all these
    /// labels (`POST /v1/alerts`), in addition to the controller's default matching
    /// (the alert's `namespace` and its `canary` or `service` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_on_alerts: Option<AlertSelector>,
}

/// A blue-green release (`spec.blueGreen`), as an alternative to steps.
///
/// The new version runs at full size beside the old one, behind the preview Service, which
/// users do not reach; the pre-promotion analysis judges it there (on test or mirrored
/// traffic). On a pass (and, without `autoPromotion`, a `vigil promote`) all traffic switches
/// at once. The old version stays scaled for `scaleDownDelay`, during which the
/// post-promotion analysis may switch traffic straight back; then the stable Deployment
/// rolls to the new version.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenSpec {
    /// The Service that selects the new version's pods before the switch; default
    /// `<service>-preview`. vigil creates and removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Switch as soon as the pre-promotion analysis passes; `false` waits for
    /// `vigil promote`. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion: Option<bool>,
    /// How long the old version stays scaled after the switch, so that a rollback only
    /// moves traffic back; default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub scale_down_delay: Option<String>,
    /// Judged on the preview before the switch, until it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<StepAnalysis>,
    /// Copy this share of the users' requests to the preview while the pre-promotion
    /// analysis judges it (its answers are thrown away), instead of or besides test traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorStep>,
    /// Judged after the switch, during `scaleDownDelay`; a failure switches traffic back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<StepAnalysis>,
}

/// The bake after a promotion: `{duration: 30m, templates: [{name: http-prometheus-client}]}`.
///
/// Once the stable Deployment runs the new version, its metrics since the promotion are
/// judged every `analysis.interval` against the same selector's over a window as long before
/// the release began (or a template's `offset` earlier, to compare like times of day). A
/// failed analysis, a `vigil abort` or a matching alert puts the previous pod template back
/// into the Deployment (from its ReplicaSet history, as `kubectl rollout undo` does). Without
/// templates the bake only waits, for alerts and `vigil abort`.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BakeSpec {
    /// How long the promoted version is watched.
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: String,
    /// The templates; all must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateRef>,
    /// Argument values, added to (and overriding) the background analysis's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
}

/// A gradual abort: `{steps: [50, 10, 0], interval: 1m}`.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortSpec {
    /// The canary's weights on the way back, decreasing to 0; those at or above the weight
    /// when aborted are skipped.
    #[x_kube(validation = Rule::new("self.all(w, w >= 0 && w <= 100)").message("weights are percentages, 0 to 100"))]
    #[schemars(inner(range(min = 0, max = 100)))]
    pub steps: Vec<i32>,
    /// How long each step holds; default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
}

/// A release gate: a webhook vigil POSTs a JSON payload to at a fixed point of the rollout.
/// A 2xx answer lets the rollout go on (for `rollback`: asks for a rollback).
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateWebhook {
    /// A name for messages and events.
    pub name: String,
    /// When it is asked: `confirm-rollout` (before a new revision's canary starts; a
    /// refusal holds it), `pre-rollout` (a failure aborts), `rollout` (at every interval;
    /// a failure counts as a failed check), `confirm-traffic-increase` and
    /// `confirm-promotion` (a failure holds and asks again next interval), `post-rollout`
    /// (after success or failure; informational), `rollback` (a passing answer aborts),
    /// `event` (on each rollout event; informational, never waited for). Only 200-202
    /// pass, as in Flagger.
    #[serde(rename = "type")]
    pub kind: GateKind,
    /// Where to POST.
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("url must be http:// or https://"))]
    pub url: String,
    /// How long one call may take; default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Retries after a connection error, a timeout, 429 or a 5xx other than 501; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: Option<i32>,
    /// Free-form values passed on in the payload's `metadata`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Which alerts abort a Release's release (`spec.abortOnAlerts`).
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSelector {
    /// An alert matches when it has every one of these labels with these values, whatever
    /// its namespace (e.g. `{alertname: DatabaseDown, team: payments}`). Empty matches none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// The Deployment a Release rolls out.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// `apps/v1`.
    #[serde(default = "default_apps_v1")]
    pub api_version: String,
    /// `Deployment`.
    #[serde(default = "default_deployment")]
    #[x_kube(validation = Rule::new("self == 'Deployment'").message("only Deployments can be rolled out"))]
    pub kind: String,
    /// The Deployment's name.
    #[x_kube(validation = Rule::new("size(self) > 0").message("targetRef.name is required"))]
    pub name: String,
}

fn default_apps_v1() -> String {
    "apps/v1".into()
}
fn default_deployment() -> String {
    "Deployment".into()
}

/// The Service in front of the Deployment.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// The stable Service's name. During a rollout vigil pins its selector to the stable
    /// pods, and restores it afterwards.
    #[x_kube(validation = Rule::new("size(self) > 0").message("service.name is required"))]
    pub name: String,
    /// The port the routers send traffic to; default the Service's first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// The name of the canary Service vigil manages; default `<name>-canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_name: Option<String>,
}

/// Declares the routers: one line each. From the list come the `routing` field of each
/// router, the [`RouterSpec`] it converts to, and the CEL rule and messages that demand
/// exactly one (they name the routers from [`ROUTERS`], in this order).
macro_rules! routers {
    ($($(#[$doc:meta])* $field:ident: $wire:literal => $variant:ident($config:ty),)+) => {
        /// How traffic is split: exactly one router.
        #[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[x_kube(validation = routing_rule())]
        pub struct Routing {
            $(
                $(#[$doc])*
                #[serde(default, rename = $wire, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$config>,
            )+
        }

        /// The router a Release's `routing` selects, with its configuration.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum RouterSpec<'a> {
            $(
                $(#[$doc])*
                $variant(&'a $config),
            )+
        }

        /// The routers' fields in `routing`, in order.
        pub const ROUTERS: &[&str] = &[$($wire),+];

        impl RouterSpec<'_> {
            /// The router's field in `routing`.
            pub fn field(&self) -> &'static str {
                match self {
                    $(RouterSpec::$variant(_) => $wire,)+
                }
            }
        }

        impl Routing {
            /// Every router set, in the order of [`ROUTERS`].
            fn set(&self) -> Vec<RouterSpec<'_>> {
                [$(self.$field.as_ref().map(RouterSpec::$variant),)+]
                    .into_iter()
                    .flatten()
                    .collect()
            }
        }
    };
}

routers! {
    /// ingress-nginx canary annotations on a canary Ingress cloned from the stable one.
    nginx: "nginx" => Nginx(NginxRouting),
    /// Weights of an HTTPRoute's backendRefs.
    gateway_api: "gatewayAPI" => GatewayApi(GatewayRouting),
    /// Route weights of an Istio VirtualService.
    istio: "istio" => Istio(IstioRouting),
    /// No router: the weight is approximated by the ratio of canary to stable replicas.
    replicas: "replicas" => Replicas(ReplicasRouting),
    /// No router: the Service's selector switches between the versions (all or nothing,
    /// for blue-green).
    selector: "selector" => Selector(SelectorRouting),
}

impl Routing {
    /// The router configured; the message says what is wrong unless exactly one is (the
    /// CRD's rule ensures one for objects the API server accepted).
    pub fn spec(&self) -> Result<RouterSpec<'_>, String> {
        match self.set().as_slice() {
            [one] => Ok(*one),
            [] => Err(format!("routing needs one of {}", ROUTERS.join(", "))),
            many => Err(format!(
                "routing has {}; choose exactly one",
                many.iter()
                    .map(RouterSpec::field)
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
}

/// The CEL rule of `routing`: exactly one router.
fn routing_rule() -> kube::core::Rule {
    let has: Vec<String> = ROUTERS.iter().map(|r| format!("has(self.{r})")).collect();
    kube::core::Rule::new(format!("[{}].filter(x, x).size() == 1", has.join(", "))).message(
        kube::core::Message::Message(format!(
            "routing needs exactly one of {}",
            ROUTERS.join(", ")
        )),
    )
}

/// ingress-nginx routing.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NginxRouting {
    /// The stable Ingress (the one without canary annotations).
    pub ingress: String,
    /// Extra annotations for the canary Ingress.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_annotations: BTreeMap<String, String>,
}

/// Gateway API routing.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouting {
    /// The HTTPRoute whose rules send traffic to the stable Service.
    pub http_route: String,
}

/// Istio routing.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioRouting {
    /// The VirtualService that routes to the stable Service.
    pub virtual_service: String,
    /// The names of the HTTP routes to split; default every route sending to the Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// Replica-count routing (no options).
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReplicasRouting {}

/// Selector routing (no options): the Service selects the stable pods, or at weight 100
/// the new version's.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SelectorRouting {}

/// One step. Exactly one of `weight`, `pause`, `analysis`, `replicas`, `match`.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.weight), has(self.pause), has(self.analysis), has(self.replicas), has(self.match), has(self.mirror)].filter(x, x).size() == 1").message("a step has exactly one of weight, pause, analysis, replicas, match, mirror"))]
pub struct ReleaseStep {
    /// Send this share of traffic (percent) to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("weight is a percentage, 0 to 100"))]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<i32>,
    /// Hold, for a duration or until a manual promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Run these templates until they pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<StepAnalysis>,
    /// Set the canary's replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas cannot be negative"))]
    pub replicas: Option<i32>,
    /// Route requests with these headers or cookies to the canary (A/B).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<Match>>,
    /// Copy a share of stable's requests to the canary (shadow traffic): its answers are
    /// thrown away and no user is served by it, while vigil judges it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorStep>,
    /// How often analyses run during this step; default `analysis.interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// The least time this step lasts; default one interval for weight and match steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub min_duration: Option<String>,
}

/// A mirror step: `{percent: 50}`.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorStep {
    /// The share of stable's requests copied to the canary, 1-100; default 100. ingress-nginx
    /// copies every request (100 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("mirror.percent is 1 to 100"))]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<i32>,
}

/// A pause step.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long; without it the rollout waits for `vigil promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: Option<String>,
}

/// The templates of an analysis step.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepAnalysis {
    /// The templates; all must pass.
    pub templates: Vec<TemplateRef>,
    /// Argument values, added to (and overriding) the background analysis's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
}

/// A reference to an ReleaseAnalysis or a ClusterReleaseAnalysis.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// The template's name.
    pub name: String,
    /// Refer to a ClusterReleaseAnalysis instead of an ReleaseAnalysis in the Release's
    /// namespace.
    #[serde(default)]
    pub cluster_scope: bool,
}

/// A template argument's value.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisArg {
    /// The argument's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// Background analysis.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSettings {
    /// The templates; all must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateRef>,
    /// Argument values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
    /// How often to judge; default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = DURATION_RULE)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Failed analyses that abort the rollout; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("failureLimit is at least 1"))]
    pub failure_limit: Option<i32>,
    /// Inconclusive analyses that abort the rollout; default 0, no limit (the step holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("inconclusiveLimit cannot be negative"))]
    pub inconclusive_limit: Option<i32>,
    /// Analyses in a row that could not run (Prometheus down) that abort it; default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("consecutiveErrorLimit is at least 1"))]
    pub consecutive_error_limit: Option<i32>,
    /// Check at every analysis that the canary receives the share of requests its weight
    /// says (a sample-ratio-mismatch test on the first `ratio` metric's request counts), and
    /// hold the step while it does not; default true. Turn it off when the request counts
    /// the templates read do not follow the router's split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_split: Option<bool>,
    /// PromQL label matchers selecting the stable version, e.g. `canary=""`. The default
    /// depends on the router (see the docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_matchers: Option<String>,
    /// PromQL label matchers selecting the canary version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_matchers: Option<String>,
}

/// Where the Release stands; all rollout state lives here.
#[derive(KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    /// The rollout state, in its `v1alpha1` wire form.
    #[serde(flatten)]
    pub state: StateV1alpha1,
    /// `N/M` for printing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_label: Option<String>,
    /// The generation of the spec this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A pending operator request (`vigil promote|abort`, the API, an alert). The
    /// controller clears it once handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// Standard conditions: `Ready` (the spec is valid and the target found) and
    /// `Promoted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the last analysis report can be read, when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// A status condition, as Kubernetes conventions describe it.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// In words.
    #[serde(default)]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
}

/// An ReleaseAnalysis stored in the cluster, in a namespace: the same document as a
/// template file.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "ReleaseAnalysis",
    plural = "releaseanalyses",
    shortname = "ra",
    category = "vigil",
    namespaced,
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ReleaseAnalysisSpec {
    /// The template body.
    #[serde(flatten)]
    pub spec: TemplateSpec,
}

/// A cluster-wide ReleaseAnalysis, usable from every namespace.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "ClusterReleaseAnalysis",
    plural = "clusterreleaseanalyses",
    shortname = "cra",
    category = "vigil",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ClusterReleaseAnalysisSpec {
    /// The template body.
    #[serde(flatten)]
    pub spec: TemplateSpec,
}

/// Checks that a document read from a file is a vigil `Release`, naming what it is instead:
/// vigil's kind before it was renamed (`Canary`), or Flagger's or Argo Rollouts' own kinds,
/// which share fields and names with it.
pub fn check_release_type(api_version: &str, kind: &str) -> Result<(), String> {
    let expected = format!("apiVersion: {GROUP}/{VERSION} and kind: Release");
    let vigil = api_version == format!("{GROUP}/{VERSION}");
    match (vigil, kind) {
        (true, "Release") => Ok(()),
        (true, "Canary") => Err(
            "kind is \"Canary\", vigil's old name for the Release (renamed \
             so as not to collide with Flagger's Canary); change the kind to Release"
                .to_string(),
        ),
        (false, "Canary") if api_version.starts_with("flagger.app/") => Err(format!(
            "this is Flagger's Canary ({api_version}); vigil reads a Release: {expected}"
        )),
        (false, "Rollout") if api_version.starts_with("argoproj.io/") => Err(format!(
            "this is an Argo Rollouts Rollout ({api_version}); vigil reads a Release: {expected}"
        )),
        _ => Err(format!(
            "apiVersion {api_version:?} and kind {kind:?}; a Release says {expected}"
        )),
    }
}

/// Every CRD of vigil, as YAML documents in a stable order.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        Release::crd(),
        ReleaseAnalysis::crd(),
        ClusterReleaseAnalysis::crd(),
    ]
}

/// Every CRD as one YAML stream, the output of `vigil crd` and the content of
/// `deploy/crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
