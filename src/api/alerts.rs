//! Which in-flight Releases an Alertmanager notification aborts, and why: a pure function of
//! the webhook payload and the Releases (no I/O). `POST /v1/alerts` (src/server/alerts.rs)
//! feeds it and writes the aborts with [`crate::cluster::ops::abort`].
//!
//! A firing alert matches a Release whose release is in flight (phase `Progressing`,
//! `Paused` or `Promoting`: until the stable Deployment has rolled, an abort still sends
//! traffic back to the old version) when either
//!
//! - **default matching** ([`Matching`], `vigil run --alert-*-label`): the alert's
//!   `namespace` label is the Release's namespace, and its `canary` label is the Release's
//!   name or its `service` label is `spec.service.name`; or
//! - **`spec.abortOnAlerts.matchLabels`**: the alert carries every one of those labels,
//!   whatever its namespace.
//!
//! Resolved alerts never abort anything.

use super::crd::Release;
use crate::rollout::Phase;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only payload version this receiver understands.
pub const VERSION: &str = "4";

/// Whether an alert (or a group) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Firing: it may abort releases.
    Firing,
    /// Resolved: ignored.
    Resolved,
}

/// Alertmanager's webhook payload (`webhook_config`), version "4".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The payload version: "4".
    pub version: String,
    /// The key of the alert group.
    #[serde(default)]
    pub group_key: String,
    /// Alerts the notification left out (max_alerts).
    #[serde(default)]
    pub truncated_alerts: u64,
    /// The group's status.
    pub status: AlertStatus,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the group has.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert of the group has.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a [`Webhook`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Its labels (`alertname` among them).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (RFC 3339).
    #[serde(default)]
    pub starts_at: String,
    /// When it resolved (RFC 3339; year 1 while firing).
    #[serde(default)]
    pub ends_at: String,
    /// The URL of the rule that fired it.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's identity of the alert.
    #[serde(default)]
    pub fingerprint: String,
}

impl Alert {
    /// The `alertname` label, or `unnamed`.
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map_or("unnamed", String::as_str)
    }

    /// The abort reason naming the alert, e.g. `alert HighErrorRate firing (namespace=shop,
    /// service=web, severity=critical): 5xx above 5%`: its other labels, then its `summary`
    /// (or `description`) annotation.
    pub fn reason(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut reason = format!("alert {} firing", self.name());
        if !labels.is_empty() {
            reason.push_str(&format!(" ({})", labels.join(", ")));
        }
        if let Some(summary) = self
            .annotations
            .get("summary")
            .or_else(|| self.annotations.get("description"))
            .filter(|s| !s.trim().is_empty())
        {
            reason.push_str(": ");
            reason.push_str(summary.trim());
        }
        // Status messages and event notes are short; the whole alert is in Alertmanager.
        crate::judge::words::truncate_bytes(&reason, 480)
    }
}

/// The alert labels default matching compares (`vigil run --alert-namespace-label`,
/// `--alert-canary-label`, `--alert-service-label`); an empty name turns that label off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    /// The label holding the Release's namespace; default `namespace`. Empty turns default
    /// matching off (only `spec.abortOnAlerts` matches then).
    pub namespace_label: String,
    /// The label holding the Release's name; default `canary`.
    pub canary_label: String,
    /// The label holding the Release's `spec.service.name`; default `service`.
    pub service_label: String,
}

impl Default for Matching {
    fn default() -> Self {
        Matching {
            namespace_label: "namespace".into(),
            canary_label: "canary".into(),
            service_label: "service".into(),
        }
    }
}

impl Matching {
    /// Whether default matching ties `alert` to `canary`.
    fn default_match(&self, alert: &Alert, canary: &Release) -> bool {
        let label = |name: &str| (!name.is_empty()).then(|| alert.labels.get(name)).flatten();
        let Some(namespace) = label(&self.namespace_label) else {
            return false;
        };
        if canary.namespace().as_deref() != Some(namespace.as_str()) {
            return false;
        }
        label(&self.canary_label).is_some_and(|n| *n == canary.name_any())
            || label(&self.service_label).is_some_and(|s| *s == canary.spec.service.name)
    }

    /// Whether `alert` (whatever its status) is for `canary`, by default matching or by
    /// the Release's `spec.abortOnAlerts`.
    pub fn matches(&self, alert: &Alert, canary: &Release) -> bool {
        let selected = canary.spec.abort_on_alerts.as_ref().is_some_and(|s| {
            !s.match_labels.is_empty()
                && s.match_labels
                    .iter()
                    .all(|(k, v)| alert.labels.get(k) == Some(v))
        });
        selected || self.default_match(alert, canary)
    }
}

/// A Release to abort, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Abort {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The reason written to `status.request` (the first matching alert's, plus how many
    /// more matched).
    pub reason: String,
    /// The names of the alerts that matched it.
    pub alerts: Vec<String>,
}

/// What a notification asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Decision {
    /// The Releases to abort, in the order given.
    pub abort: Vec<Abort>,
    /// Firing alerts that match no Release in flight (by name).
    pub unmatched: Vec<String>,
    /// Resolved alerts, which abort nothing.
    pub resolved: usize,
}

/// Whether a Release's release is in flight, so that an alert can abort it.
pub fn abortable(canary: &Release) -> bool {
    let phase = canary
        .status
        .as_ref()
        .map_or(Phase::Initializing, |s| s.state.phase);
    phase.in_flight()
}

/// Which of `canaries` the firing alerts of `webhook` abort.
pub fn decide(webhook: &Webhook, canaries: &[Release], matching: &Matching) -> Decision {
    let mut decision = Decision::default();
    for alert in &webhook.alerts {
        if alert.status == AlertStatus::Resolved {
            decision.resolved += 1;
            continue;
        }
        let mut matched = false;
        for canary in canaries
            .iter()
            .filter(|c| abortable(c) && matching.matches(alert, c))
        {
            matched = true;
            let namespace = canary.namespace().unwrap_or_default();
            let name = canary.name_any();
            match decision
                .abort
                .iter_mut()
                .find(|a| a.namespace == namespace && a.name == name)
            {
                Some(a) => a.alerts.push(alert.name().to_string()),
                None => decision.abort.push(Abort {
                    namespace,
                    name,
                    reason: alert.reason(),
                    alerts: vec![alert.name().to_string()],
                }),
            }
        }
        if !matched {
            decision.unmatched.push(alert.name().to_string());
        }
    }
    for a in &mut decision.abort {
        if a.alerts.len() > 1 {
            a.reason
                .push_str(&format!(" (and {} more alerts)", a.alerts.len() - 1));
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::{AlertSelector, ReleaseSpec, ReleaseStatus};
    use crate::api::status::StateV1alpha1;
    use serde_json::json;

    fn canary(ns: &str, name: &str, service: &str, phase: Phase) -> Release {
        let spec: ReleaseSpec = serde_json::from_value(json!({
            "targetRef": {"name": name},
            "service": {"name": service},
            "routing": {"replicas": {}},
        }))
        .expect("spec");
        let mut c = Release::new(name, spec);
        c.metadata.namespace = Some(ns.into());
        c.status = Some(ReleaseStatus {
            state: StateV1alpha1 {
                phase,
                ..StateV1alpha1::default()
            },
            ..ReleaseStatus::default()
        });
        c
    }

    fn alert(status: AlertStatus, labels: &[(&str, &str)]) -> Alert {
        Alert {
            status,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::from([("summary".into(), "5xx above 5%".into())]),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: String::new(),
        }
    }

    fn webhook(alerts: Vec<Alert>) -> Webhook {
        Webhook {
            version: VERSION.into(),
            group_key: "{}:{}".into(),
            truncated_alerts: 0,
            status: AlertStatus::Firing,
            receiver: "vigil".into(),
            group_labels: BTreeMap::new(),
            common_labels: BTreeMap::new(),
            common_annotations: BTreeMap::new(),
            external_url: String::new(),
            alerts,
        }
    }

    const FIRING: AlertStatus = AlertStatus::Firing;

    #[test]
    fn the_reason_names_the_alert_its_labels_and_summary() {
        let a = alert(
            FIRING,
            &[
                ("alertname", "HighErrorRate"),
                ("severity", "critical"),
                ("namespace", "shop"),
                ("service", "web"),
            ],
        );
        assert_eq!(
            a.reason(),
            "alert HighErrorRate firing (namespace=shop, service=web, severity=critical): 5xx above 5%"
        );
        let mut bare = alert(FIRING, &[]);
        bare.annotations.clear();
        assert_eq!(bare.reason(), "alert unnamed firing");
        let mut long = alert(FIRING, &[("alertname", "X")]);
        long.annotations.insert("summary".into(), "é".repeat(400));
        assert!(long.reason().len() <= 483 && long.reason().ends_with('…'));
    }

    #[test]
    fn default_matching_needs_the_namespace_and_the_canary_or_service() {
        let m = Matching::default();
        let web = canary("shop", "web", "web-svc", Phase::Progressing);
        let by_service = alert(FIRING, &[("namespace", "shop"), ("service", "web-svc")]);
        let by_canary = alert(FIRING, &[("namespace", "shop"), ("canary", "web")]);
        let other_ns = alert(FIRING, &[("namespace", "blog"), ("canary", "web")]);
        let no_ns = alert(FIRING, &[("canary", "web")]);
        let other_service = alert(FIRING, &[("namespace", "shop"), ("service", "web")]);
        assert!(m.matches(&by_service, &web));
        assert!(m.matches(&by_canary, &web));
        assert!(!m.matches(&other_ns, &web));
        assert!(!m.matches(&no_ns, &web));
        assert!(!m.matches(&other_service, &web));
        // Configured labels.
        let custom = Matching {
            namespace_label: "kubernetes_namespace".into(),
            canary_label: String::new(),
            service_label: "app".into(),
        };
        let a = alert(
            FIRING,
            &[("kubernetes_namespace", "shop"), ("app", "web-svc")],
        );
        assert!(custom.matches(&a, &web));
        assert!(!custom.matches(&by_canary, &web));
        let off = Matching {
            namespace_label: String::new(),
            ..Matching::default()
        };
        assert!(!off.matches(&by_canary, &web));
    }

    #[test]
    fn abort_on_alerts_matches_every_label_in_any_namespace() {
        let m = Matching::default();
        let mut web = canary("shop", "web", "web", Phase::Paused);
        let db = alert(
            FIRING,
            &[("alertname", "DatabaseDown"), ("team", "payments")],
        );
        assert!(!m.matches(&db, &web));
        web.spec.abort_on_alerts = Some(AlertSelector {
            match_labels: BTreeMap::from([
                ("alertname".into(), "DatabaseDown".into()),
                ("team".into(), "payments".into()),
            ]),
        });
        assert!(m.matches(&db, &web));
        let partial = alert(FIRING, &[("alertname", "DatabaseDown")]);
        assert!(!m.matches(&partial, &web));
        web.spec.abort_on_alerts = Some(AlertSelector::default());
        assert!(!m.matches(&db, &web), "an empty selector matches nothing");
    }

    #[test]
    fn only_firing_alerts_abort_canaries_in_flight() {
        let labels = [
            ("alertname", "HighErrorRate"),
            ("namespace", "shop"),
            ("service", "web"),
        ];
        let canaries: Vec<Release> = [
            Phase::Progressing,
            Phase::Paused,
            Phase::Promoting,
            Phase::Waiting,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Initializing,
        ]
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let mut c = canary("shop", &format!("c{i}"), "web", p);
            c.metadata.namespace = Some("shop".into());
            c
        })
        .collect();
        let d = decide(
            &webhook(vec![
                alert(FIRING, &labels),
                alert(AlertStatus::Resolved, &labels),
                alert(FIRING, &[("alertname", "Elsewhere"), ("namespace", "blog")]),
            ]),
            &canaries,
            &Matching::default(),
        );
        let names: Vec<&str> = d.abort.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["c0", "c1", "c2"]);
        assert!(d.abort[0].reason.starts_with("alert HighErrorRate firing"));
        assert_eq!(d.unmatched, ["Elsewhere"]);
        assert_eq!(d.resolved, 1);
        // A resolved group aborts nothing.
        let d = decide(
            &webhook(vec![alert(AlertStatus::Resolved, &labels)]),
            &canaries,
            &Matching::default(),
        );
        assert!(d.abort.is_empty() && d.unmatched.is_empty());
    }

    #[test]
    fn several_alerts_for_one_canary_make_one_abort() {
        let web = canary("shop", "web", "web", Phase::Progressing);
        let d = decide(
            &webhook(vec![
                alert(
                    FIRING,
                    &[("alertname", "A"), ("namespace", "shop"), ("canary", "web")],
                ),
                alert(
                    FIRING,
                    &[
                        ("alertname", "B"),
                        ("namespace", "shop"),
                        ("service", "web"),
                    ],
                ),
            ]),
            &[web],
            &Matching::default(),
        );
        assert_eq!(d.abort.len(), 1);
        assert_eq!(d.abort[0].alerts, ["A", "B"]);
        assert!(
            d.abort[0].reason.starts_with("alert A firing")
                && d.abort[0].reason.ends_with("(and 1 more alerts)"),
            "{}",
            d.abort[0].reason
        );
    }

    #[test]
    fn the_payload_parses_from_alertmanager_json() {
        let text = r#"{"receiver":"vigil","status":"firing","alerts":[{"status":"firing",
            "labels":{"alertname":"HighErrorRate","namespace":"shop","service":"web"},
            "annotations":{"summary":"5xx"},"startsAt":"2026-01-01T00:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p/graph","fingerprint":"1a"}],
            "groupLabels":{"alertname":"HighErrorRate"},"commonLabels":{},"commonAnnotations":{},
            "externalURL":"http://am:9093","version":"4","groupKey":"{}:{}","truncatedAlerts":0}"#;
        let w: Webhook = serde_json::from_str(text).expect("parses");
        assert_eq!(w.alerts[0].name(), "HighErrorRate");
        assert_eq!(w.external_url, "http://am:9093");
        assert!(
            serde_json::from_str::<Webhook>(r#"{"version":"4","status":"pending","alerts":[]}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Webhook>(r#"{"version":"4","status":"firing"}"#).is_err());
    }
}
