//! The bridge from the reconciler to the dispatcher: each reconcile's events become
//! notifications for the cluster-wide receivers and the Release's own.

use crate::api::crd::Release;
use crate::cluster::reconciler::Observer;
use crate::notify::Notification;
use crate::notify::config::Rule;
use crate::notify::dispatcher::Dispatcher;
use crate::rollout::Decision;
use chrono::Utc;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;

/// Turns `decision.events` into notifications and queues them; never waits.
pub struct NotifyObserver {
    dispatcher: Dispatcher,
    cluster: Vec<Rule>,
}

impl NotifyObserver {
    /// Sends to `cluster` receivers (from `--notify-config`) and each Release's
    /// `spec.notifications`, through `dispatcher`.
    pub fn new(dispatcher: Dispatcher, cluster: Vec<Rule>) -> Self {
        NotifyObserver {
            dispatcher,
            cluster,
        }
    }

    /// The receivers of one Release: the cluster-wide ones, then its own.
    pub fn rules(&self, canary: &Release) -> Vec<Rule> {
        let namespace = canary.namespace().unwrap_or_default();
        self.cluster
            .iter()
            .cloned()
            .chain(canary.spec.notifications.iter().map(|n| n.rule(&namespace)))
            .collect()
    }
}

impl Observer for NotifyObserver {
    fn reconciled(&self, canary: &Release, decision: &Decision) {
        if decision.events.is_empty() {
            return;
        }
        let rules = self.rules(canary);
        if rules.is_empty() {
            return;
        }
        let namespace = canary.namespace().unwrap_or_default();
        let name = canary.name_any();
        let report = canary.status.as_ref().and_then(|s| s.report.as_deref());
        let now = Utc::now();
        for event in &decision.events {
            let notification =
                Notification::new(&namespace, &name, event, &decision.state, report, now);
            for rule in rules.iter().filter(|r| r.filter.matches(&notification)) {
                self.dispatcher
                    .enqueue(rule.target.clone(), notification.clone());
            }
        }
    }
}

/// Tells several observers, in order.
pub struct FanOut(pub Vec<Arc<dyn Observer>>);

impl Observer for FanOut {
    fn reconciled(&self, canary: &Release, decision: &Decision) {
        for o in &self.0 {
            o.reconciled(canary, decision);
        }
    }

    fn done(&self, elapsed: Duration, error: Option<&str>) {
        for o in &self.0 {
            o.done(elapsed, error);
        }
    }

    fn analysed(&self, canary: &Release, verdict: &str, scores: &[(String, f64)], took: Duration) {
        for o in &self.0 {
            o.analysed(canary, verdict, scores, took);
        }
    }

    fn deleted(&self, canary: &Release) {
        for o in &self.0 {
            o.deleted(canary);
        }
    }

    fn watch_failed(&self, kind: &str) {
        for o in &self.0 {
            o.watch_failed(kind);
        }
    }

    fn decided(
        &self,
        canary: &Release,
        plan: &crate::rollout::Plan,
        decision: &Decision,
        judged: &[crate::analysis::Judged],
        now: chrono::DateTime<Utc>,
    ) {
        for o in &self.0 {
            o.decided(canary, plan, decision, judged, now);
        }
    }
}
