//! The controller's Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `vigil_canary_phase` | gauge, 1 for the current phase and 0 for the others | `namespace`, `name`, `phase` |
//! | `vigil_canary_weight` | gauge, the canary's traffic share in percent | `namespace`, `name` |
//! | `vigil_canary_step` | gauge, the current step, 1-based (0 before the first) | `namespace`, `name` |
//! | `vigil_analysis_total` | counter of analyses by verdict | `namespace`, `name`, `verdict` |
//! | `vigil_analysis_score` | gauge, the last score of a template's analysis | `namespace`, `name`, `template` |
//! | `vigil_reconcile_errors_total` | counter of failed reconciles | `reason` |
//! | `vigil_reconcile_duration_seconds` | histogram of reconcile durations | |
//! | `vigil_analysis_duration_seconds` | histogram of analysis durations (queries and judgement) | |
//! | `vigil_leader` | gauge, 1 while this replica leads | |
//! | `vigil_shards_held` | gauge, the shards this replica holds (`vigil run --shards`) | |
//! | `vigil_shard_transitions_total` | counter of shard transitions (`acquired`, `released`, `lost`) | `transition` |
//! | `vigil_kube_api_errors_total` | counter of failed Kubernetes API calls, each attempt apart (`throttled`: 429, `server_error`: 5xx, `timeout`: no answer within `--kube-timeout`, `connection`) | `kind` |
//! | `vigil_kube_watch_errors_total` | counter of watch failures, each followed by a restart of the watch (`expired`: 410 Gone, a relist; `dropped`: the stream broke; `read_failed`, `start_failed`, `list_failed`, `other`) | `kind` |
//! | `vigil_metric_source_errors_total` | counter of failed metric queries (after the source's retries) by kind (`unreachable`, `timeout`, `query`, `http`, `malformed`, `other`) | `kind` |
//! | `vigil_tokio_tasks` | gauge, the tasks alive in the process's runtime when scraped | |
//! | `vigil_notifications_total` | counter of notifications by receiving service and outcome (`sent`, `failed`, `dropped`, `deduplicated`) | `provider`, `outcome` |
//!
//! Label values that come from code (verdicts, error reasons) are folded into a small fixed
//! set so that a bug cannot blow up the number of series; a Release's series are removed by
//! [`Metrics::forget_canary`] when it is deleted. A labelled family appears in the output
//! once it has a series.

use crate::rollout::{Phase, State};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The verdicts `vigil_analysis_total` knows; anything else is counted as `other`.
pub const VERDICTS: [&str; 4] = ["pass", "fail", "inconclusive", "error"];

/// The reasons `vigil_reconcile_errors_total` knows (the reconciler's error kinds); anything
/// else is counted as `other`.
pub const ERROR_REASONS: [&str; 5] = crate::cluster::reconciler::ERROR_KINDS;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    namespace: String,
    name: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabels {
    namespace: String,
    name: String,
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    provider: String,
    outcome: String,
}

/// The outcomes `vigil_notifications_total` knows; anything else is counted as `other`.
pub const NOTIFICATION_OUTCOMES: [&str; 4] = ["sent", "failed", "dropped", "deduplicated"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// The kinds `vigil_kube_api_errors_total` knows; anything else is counted as `other`.
pub const KUBE_API_ERRORS: [&str; 4] = ["throttled", "server_error", "timeout", "connection"];

/// The kinds `vigil_kube_watch_errors_total` knows; anything else is counted as `other`.
pub const WATCH_ERRORS: [&str; 6] = crate::cluster::reconciler::WATCH_ERROR_KINDS;

/// The kinds `vigil_metric_source_errors_total` knows; anything else is counted as `other`.
pub const SOURCE_ERRORS: [&str; 6] = [
    "unreachable",
    "timeout",
    "query",
    "http",
    "malformed",
    "other",
];

/// Counts one of `known` in `family`, `other` for anything else.
fn count_kind(family: &Family<KindLabels, Counter>, known: &[&str], kind: &str) {
    let kind = known
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other");
    family
        .get_or_create(&KindLabels { kind: kind.into() })
        .inc();
}

/// The registry and every metric in it. Cheap to share behind an `Arc`: every method takes
/// `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    phase: Family<PhaseLabels, Gauge>,
    weight: Family<CanaryLabels, Gauge>,
    step: Family<CanaryLabels, Gauge>,
    analyses: Family<VerdictLabels, Counter>,
    score: Family<TemplateLabels, Gauge<f64, AtomicU64>>,
    /// Which templates each Release has a score series for, so they can be forgotten.
    templates: std::sync::Mutex<std::collections::BTreeMap<(String, String), Vec<String>>>,
    /// The Releases with series, so that those of a shard given up can be forgotten.
    canaries: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    analysis_duration: Histogram,
    leader: Gauge,
    shards_held: Gauge,
    shard_transitions: Family<TransitionLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    kube_api_errors: Family<KindLabels, Counter>,
    watch_errors: Family<KindLabels, Counter>,
    source_errors: Family<KindLabels, Counter>,
    tasks: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    transition: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and no series yet (`vigil_leader` is 0).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let phase = Family::<PhaseLabels, Gauge>::default();
        let weight = Family::<CanaryLabels, Gauge>::default();
        let step = Family::<CanaryLabels, Gauge>::default();
        let analyses = Family::<VerdictLabels, Counter>::default();
        let score = Family::<TemplateLabels, Gauge<f64, AtomicU64>>::default();
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        // 5 ms to ~41 s.
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        // 10 ms to ~82 s: every template's queries and the judgement.
        let analysis_duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let leader = Gauge::default();
        let shards_held = Gauge::default();
        let shard_transitions = Family::<TransitionLabels, Counter>::default();
        let notifications = Family::<NotificationLabels, Counter>::default();
        let kube_api_errors = Family::<KindLabels, Counter>::default();
        let watch_errors = Family::<KindLabels, Counter>::default();
        let source_errors = Family::<KindLabels, Counter>::default();
        let tasks = Gauge::default();
        registry.register(
            "vigil_canary_phase",
            "The rollout phase of a Release: 1 for the current phase, 0 for the others",
            phase.clone(),
        );
        registry.register(
            "vigil_canary_weight",
            "The canary's share of traffic in percent",
            weight.clone(),
        );
        registry.register(
            "vigil_canary_step",
            "The current step of the rollout, 1-based (0 before the first)",
            step.clone(),
        );
        registry.register(
            "vigil_analysis",
            "Analyses run, by verdict",
            analyses.clone(),
        );
        registry.register(
            "vigil_analysis_score",
            "The score of a template's last analysis",
            score.clone(),
        );
        registry.register(
            "vigil_reconcile_errors",
            "Reconciles that failed, by reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "vigil_reconcile_duration_seconds",
            "How long reconciles take",
            reconcile_duration.clone(),
        );
        registry.register(
            "vigil_analysis_duration_seconds",
            "How long analyses take: every template's Prometheus queries and the judgement",
            analysis_duration.clone(),
        );
        registry.register(
            "vigil_leader",
            "1 while this replica is the leader, else 0",
            leader.clone(),
        );
        registry.register(
            "vigil_shards_held",
            "The shards whose Leases this replica holds (vigil run --shards), whose Releases it reconciles",
            shards_held.clone(),
        );
        registry.register(
            "vigil_shard_transitions",
            "Shards this replica acquired, released (gave up to another replica, or on shutdown) or lost (could not renew)",
            shard_transitions.clone(),
        );
        registry.register(
            "vigil_notifications",
            "Notifications by receiving service and outcome: sent, failed (after retries, or refused), dropped (queue full), deduplicated",
            notifications.clone(),
        );
        registry.register(
            "vigil_kube_api_errors",
            "Kubernetes API calls that failed, each attempt apart, by kind: throttled (429), server_error (5xx), timeout (no answer within --kube-timeout), connection",
            kube_api_errors.clone(),
        );
        registry.register(
            "vigil_kube_watch_errors",
            "Watch failures, each followed by a restart of the watch, by kind: expired (410 Gone, a relist), dropped (the stream broke), read_failed, start_failed, list_failed, other",
            watch_errors.clone(),
        );
        registry.register(
            "vigil_metric_source_errors",
            "Metric queries that failed after the source's retries, by kind: unreachable, timeout, query, http, malformed, other",
            source_errors.clone(),
        );
        registry.register(
            "vigil_tokio_tasks",
            "The tasks alive in the process's async runtime when scraped",
            tasks.clone(),
        );
        // Every error series exists from the start, at 0: `rate()` and `increase()` over a
        // series that appears with its first error miss that error, and a dashboard panel
        // of errors would show no data rather than none.
        for reason in ERROR_REASONS.iter().chain(&["other"]) {
            drop(reconcile_errors.get_or_create(&ReasonLabels {
                reason: (*reason).into(),
            }));
        }
        for (family, kinds) in [
            (&kube_api_errors, &KUBE_API_ERRORS[..]),
            (&watch_errors, &WATCH_ERRORS[..]),
            (&source_errors, &SOURCE_ERRORS[..]),
        ] {
            for kind in kinds.iter().chain(&["other"]) {
                drop(family.get_or_create(&KindLabels {
                    kind: (*kind).into(),
                }));
            }
        }
        Metrics {
            registry,
            phase,
            weight,
            step,
            analyses,
            score,
            templates: std::sync::Mutex::default(),
            canaries: std::sync::Mutex::default(),
            reconcile_errors,
            reconcile_duration,
            analysis_duration,
            leader,
            shards_held,
            shard_transitions,
            notifications,
            kube_api_errors,
            watch_errors,
            source_errors,
            tasks,
        }
    }

    /// Counts one failed Kubernetes API call (one of [`KUBE_API_ERRORS`]).
    pub fn kube_api_error(&self, kind: &str) {
        count_kind(&self.kube_api_errors, &KUBE_API_ERRORS, kind);
    }

    /// Counts one watch failure (one of [`WATCH_ERRORS`]).
    pub fn watch_error(&self, kind: &str) {
        count_kind(&self.watch_errors, &WATCH_ERRORS, kind);
    }

    /// Counts one failed metric query (one of [`SOURCE_ERRORS`]).
    pub fn source_error(&self, kind: &str) {
        count_kind(&self.source_errors, &SOURCE_ERRORS, kind);
    }

    /// Records a Release's rollout state: its phase (one series per phase of [`Phase::ALL`]),
    /// step, and the canary's weight as the router was told (`weight`: the world's, which
    /// during a gradual abort is the step traffic is handed back through, not 0).
    pub fn set_canary(&self, namespace: &str, name: &str, state: &State, weight: u8) {
        if let Ok(mut canaries) = self.canaries.lock() {
            canaries.insert((namespace.to_string(), name.to_string()));
        }
        for phase in Phase::ALL {
            self.phase
                .get_or_create(&phase_labels(namespace, name, phase))
                .set(i64::from(phase == state.phase()));
        }
        let labels = canary_labels(namespace, name);
        self.weight.get_or_create(&labels).set(i64::from(weight));
        let step = if state.steps == 0 {
            0
        } else {
            (state.current_step().saturating_add(1)).min(state.steps)
        };
        self.step.get_or_create(&labels).set(i64::from(step));
    }

    /// Counts one analysis of a Release by `verdict` (`pass`, `fail`, `inconclusive`,
    /// `error`; anything else counts as `other`) and, when there is a score, records it as
    /// the last score of `template`.
    pub fn observe_analysis(
        &self,
        namespace: &str,
        name: &str,
        verdict: &str,
        template: &str,
        score: Option<f64>,
    ) {
        let verdict = VERDICTS
            .iter()
            .find(|v| v.eq_ignore_ascii_case(verdict))
            .copied()
            .unwrap_or("other");
        self.analyses
            .get_or_create(&VerdictLabels {
                namespace: namespace.into(),
                name: name.into(),
                verdict: verdict.into(),
            })
            .inc();
        if let Some(score) = score.filter(|s| s.is_finite()) {
            self.score
                .get_or_create(&TemplateLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    template: template.into(),
                })
                .set(score);
            if let Ok(mut templates) = self.templates.lock() {
                let list = templates
                    .entry((namespace.to_string(), name.to_string()))
                    .or_default();
                if !list.iter().any(|t| t == template) {
                    list.push(template.to_string());
                }
            }
        }
    }

    /// Records one reconcile: its duration and, when it failed, the reason (one of
    /// [`ERROR_REASONS`]; anything else counts as `other`).
    pub fn reconcile_done(&self, duration: Duration, error: Option<&str>) {
        self.reconcile_duration.observe(duration.as_secs_f64());
        if let Some(reason) = error {
            let reason = ERROR_REASONS
                .iter()
                .find(|r| r.eq_ignore_ascii_case(reason))
                .copied()
                .unwrap_or("other");
            self.reconcile_errors
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// Records how long one analysis took.
    pub fn analysis_done(&self, took: Duration) {
        self.analysis_duration.observe(took.as_secs_f64());
    }

    /// Sets `vigil_shards_held` and counts one `vigil_shard_transitions_total`
    /// (`transition`: `acquired`, `released` or `lost`).
    pub fn shard_transition(&self, held: usize, transition: &str) {
        self.shards_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        self.shard_transitions
            .get_or_create(&TransitionLabels {
                transition: transition.to_string(),
            })
            .inc();
    }

    /// Sets `vigil_leader`.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts one notification to `provider` (a provider name such as `slack`) by
    /// `outcome` (one of [`NOTIFICATION_OUTCOMES`]; anything else counts as `other`).
    pub fn notification(&self, provider: &str, outcome: &str) {
        let outcome = NOTIFICATION_OUTCOMES
            .iter()
            .find(|o| o.eq_ignore_ascii_case(outcome))
            .copied()
            .unwrap_or("other");
        self.notifications
            .get_or_create(&NotificationLabels {
                provider: provider.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Removes every series of a deleted Release.
    pub fn forget_canary(&self, namespace: &str, name: &str) {
        if let Ok(mut canaries) = self.canaries.lock() {
            canaries.remove(&(namespace.to_string(), name.to_string()));
        }
        for phase in Phase::ALL {
            self.phase.remove(&phase_labels(namespace, name, phase));
        }
        let labels = canary_labels(namespace, name);
        self.weight.remove(&labels);
        self.step.remove(&labels);
        for verdict in VERDICTS.iter().chain(&["other"]) {
            self.analyses.remove(&VerdictLabels {
                namespace: namespace.into(),
                name: name.into(),
                verdict: (*verdict).into(),
            });
        }
        let templates = self
            .templates
            .lock()
            .ok()
            .and_then(|mut t| t.remove(&(namespace.to_string(), name.to_string())))
            .unwrap_or_default();
        for template in templates {
            self.score.remove(&TemplateLabels {
                namespace: namespace.into(),
                name: name.into(),
                template,
            });
        }
    }

    /// Forgets the series of every Release (`namespace`, `name`) for which `which` holds,
    /// e.g. those of a shard this replica gave up: their new holder reports them.
    pub fn forget_canaries_where(&self, which: impl Fn(&str, &str) -> bool) {
        let chosen: Vec<(String, String)> = self
            .canaries
            .lock()
            .map(|c| c.iter().filter(|(ns, n)| which(ns, n)).cloned().collect())
            .unwrap_or_default();
        for (namespace, name) in chosen {
            self.forget_canary(&namespace, &name);
        }
    }

    /// The registry, to register more metrics next to these.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the OpenMetrics text format (content type [`CONTENT_TYPE`]), ending
    /// with `# EOF`.
    pub fn encode(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a label.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

impl crate::notify::dispatcher::DeliveryCounter for Metrics {
    fn count(&self, provider: &str, outcome: &str) {
        self.notification(provider, outcome);
    }
}

fn canary_labels(namespace: &str, name: &str) -> CanaryLabels {
    CanaryLabels {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn phase_labels(namespace: &str, name: &str, phase: Phase) -> PhaseLabels {
    PhaseLabels {
        namespace: namespace.into(),
        name: name.into(),
        phase: phase.as_str().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Attempt, Flight, Stage, Traffic};

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn faults_are_counted_by_kind_with_unknown_kinds_folded() {
        let m = Metrics::new();
        m.kube_api_error("throttled");
        m.kube_api_error("throttled");
        m.kube_api_error("teapot");
        m.watch_error("expired");
        m.source_error("unreachable");
        let text = m.encode();
        for want in [
            "vigil_kube_api_errors_total{kind=\"throttled\"} 2",
            "vigil_kube_api_errors_total{kind=\"other\"} 1",
            "vigil_kube_watch_errors_total{kind=\"expired\"} 1",
            "vigil_metric_source_errors_total{kind=\"unreachable\"} 1",
            "vigil_tokio_tasks 0",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }

    #[tokio::test]
    async fn the_task_gauge_counts_the_runtime_s_tasks_when_scraped() {
        let m = Metrics::new();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = stopped.await;
        });
        let text = m.encode();
        let tasks = line(&text, "vigil_tokio_tasks ")
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|n| n.parse::<i64>().ok());
        assert!(tasks.is_some_and(|n| n >= 1), "{text}");
        let _ = stop.send(());
        let _ = task.await;
    }

    #[test]
    fn every_metric_is_declared_once_it_has_a_series() {
        let empty = Metrics::new().encode();
        // Families without series are left out; the unlabelled metrics are always there.
        assert!(!empty.contains("vigil_canary_phase"), "{empty}");
        assert!(empty.contains("vigil_leader 0\n"), "{empty}");
        assert!(
            empty.contains("vigil_reconcile_duration_seconds_count 0"),
            "{empty}"
        );
        assert!(empty.ends_with("# EOF\n"), "{empty}");
        let m = Metrics::new();
        m.set_canary("shop", "web", &State::default(), 0);
        m.observe_analysis("shop", "web", "pass", "http", Some(1.0));
        m.reconcile_done(Duration::from_millis(1), Some("api"));
        let text = m.encode();
        for name in [
            "vigil_canary_phase gauge",
            "vigil_canary_weight gauge",
            "vigil_canary_step gauge",
            "vigil_analysis counter",
            "vigil_analysis_score gauge",
            "vigil_reconcile_errors counter",
            "vigil_reconcile_duration_seconds histogram",
            "vigil_leader gauge",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name}")),
                "{name} in\n{text}"
            );
        }
    }

    #[test]
    fn canary_phase_is_one_hot() {
        let m = Metrics::new();
        let release = Attempt {
            current_step: 1,
            ..Attempt::new("r2", chrono::DateTime::UNIX_EPOCH, 4)
        };
        let state = State {
            stage: Stage::Progressing(Flight {
                traffic: Traffic {
                    weight: 25,
                    matches: Vec::new(),
                    mirror: None,
                },
                ..Flight::new(release.clone())
            }),
            steps: 4,
            ..State::default()
        };
        m.set_canary("shop", "web", &state, state.weight());
        let text = m.encode();
        for phase in Phase::ALL {
            let want = if phase == Phase::Progressing { 1 } else { 0 };
            let series = format!(
                "vigil_canary_phase{{namespace=\"shop\",name=\"web\",phase=\"{}\"}} {want}",
                phase.as_str()
            );
            assert!(text.contains(&series), "{series} in\n{text}");
        }
        assert!(text.contains("vigil_canary_weight{namespace=\"shop\",name=\"web\"} 25"));
        assert!(text.contains("vigil_canary_step{namespace=\"shop\",name=\"web\"} 2"));

        m.set_canary(
            "shop",
            "web",
            &State {
                stage: Stage::Succeeded(release),
                ..state
            },
            0,
        );
        let text = m.encode();
        assert!(
            text.contains("name=\"web\",phase=\"Progressing\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("name=\"web\",phase=\"Succeeded\"} 1"),
            "{text}"
        );
        // A gradual abort hands traffic back in steps: the gauge shows the step, not the
        // Failed state's 0.
        m.set_canary(
            "shop",
            "web",
            &State {
                stage: Stage::Failed {
                    release: Attempt::new("r2", chrono::DateTime::UNIX_EPOCH, 4),
                    aborted_at: chrono::DateTime::UNIX_EPOCH,
                    from_weight: 50,
                },
                ..State::default()
            },
            10,
        );
        assert!(
            m.encode()
                .contains("vigil_canary_weight{namespace=\"shop\",name=\"web\"} 10")
        );
    }

    #[test]
    fn analyses_are_counted_by_verdict_with_scores() {
        let m = Metrics::new();
        m.observe_analysis("shop", "web", "pass", "http", Some(0.93));
        m.observe_analysis("shop", "web", "pass", "http", Some(0.5));
        m.observe_analysis("shop", "web", "Fail", "latency", None);
        m.observe_analysis("shop", "web", "weird\nvalue", "http", Some(f64::NAN));
        let text = m.encode();
        assert_eq!(
            line(
                &text,
                "vigil_analysis_total{namespace=\"shop\",name=\"web\",verdict=\"pass\"}"
            ),
            Some("vigil_analysis_total{namespace=\"shop\",name=\"web\",verdict=\"pass\"} 2")
        );
        assert!(text.contains("verdict=\"fail\"} 1"), "{text}");
        assert!(text.contains("verdict=\"other\"} 1"), "{text}");
        assert!(
            text.contains(
                "vigil_analysis_score{namespace=\"shop\",name=\"web\",template=\"http\"} 0.5"
            ),
            "{text}"
        );
        assert!(!text.contains("template=\"latency\""), "{text}");
    }

    #[test]
    fn reconciles_and_leadership() {
        let m = Metrics::new();
        m.reconcile_done(Duration::from_millis(12), None);
        m.reconcile_done(Duration::from_millis(30), Some("api"));
        m.reconcile_done(Duration::from_millis(30), Some("a long free text error"));
        m.set_leader(true);
        m.shard_transition(1, "acquired");
        m.shard_transition(2, "acquired");
        m.shard_transition(1, "lost");
        m.analysis_done(Duration::from_millis(150));
        let text = m.encode();
        assert!(
            text.contains("vigil_reconcile_duration_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("vigil_analysis_duration_seconds_count 1")
                && text.contains("vigil_analysis_duration_seconds_bucket{le=\"0.16\"} 1")
                && text.contains("vigil_analysis_duration_seconds_bucket{le=\"0.08\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("vigil_reconcile_errors_total{reason=\"api\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vigil_reconcile_errors_total{reason=\"other\"} 1"),
            "{text}"
        );
        assert!(text.contains("vigil_leader 1\n"), "{text}");
        assert!(text.contains("vigil_shards_held 1\n"), "{text}");
        assert!(
            text.contains("vigil_shard_transitions_total{transition=\"acquired\"} 2")
                && text.contains("vigil_shard_transitions_total{transition=\"lost\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn forgetting_a_canary_removes_its_series_only() {
        let m = Metrics::new();
        m.set_canary("shop", "web", &State::default(), 0);
        m.set_canary("shop", "api", &State::default(), 0);
        m.observe_analysis("shop", "web", "pass", "http", Some(1.0));
        m.observe_analysis("shop", "api", "pass", "http", Some(1.0));
        m.forget_canary("shop", "web");
        let text = m.encode();
        assert!(!text.contains("name=\"web\""), "{text}");
        assert!(text.contains("name=\"api\""), "{text}");
        // A shard given up: its Releases' series go, the others' stay.
        m.set_canary("shop", "web", &State::default(), 0);
        m.forget_canaries_where(|ns, name| ns == "shop" && name == "api");
        let text = m.encode();
        assert!(!text.contains("name=\"api\""), "{text}");
        assert!(text.contains("name=\"web\""), "{text}");
    }
}
