//! What the dashboard reads, all of it held by the process already or kept as the controller
//! goes: no page view asks the API server or Prometheus anything.
//!
//! - [`watch_releases`]: one reflector of the Releases per process, shared by every viewer.
//!   The reconciler's own cache exists only while this replica leads (or holds shards), so
//!   the dashboard keeps its own: one more watch per replica, never one per request.
//! - [`Evidence`]: per Release, the reports and data of the latest analysis this process ran
//!   and the decisions of its reconciles, bounded ([`Evidence::CAPACITY`] Releases,
//!   [`Evidence::TIMELINE`] decisions each), fed by [`EvidenceObserver`].

use crate::analysis::Judged;
use crate::api::crd::Release;
use crate::cluster::reconciler::Observer;
use crate::report::Mark;
use crate::rollout::{Decision, Plan};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Starts the reflector of the Releases (of `namespace`, or all) and returns its store; the
/// watch runs until the process ends, retrying with backoff.
pub fn watch_releases(
    client: kube::Client,
    namespace: Option<&str>,
    metrics: Option<Arc<crate::runtime::metrics::Metrics>>,
) -> Store<Release> {
    let api: Api<Release> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let (reader, writer) = reflector::store();
    let watched = watcher(api, watcher::Config::default()).modify(crate::cluster::reconciler::slim);
    let stream = reflector::reflector(writer, watched)
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        stream
            .for_each(|event| {
                if let Err(e) = event {
                    let kind = crate::cluster::reconciler::watch_error_kind(&e);
                    tracing::warn!(
                        kind,
                        "a watch failed and restarts: the dashboard's watch of Releases: {e}"
                    );
                    if let Some(metrics) = &metrics {
                        metrics.watch_error(kind);
                    }
                }
                futures::future::ready(())
            })
            .await;
    });
    reader
}

/// What is kept of one Release.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// When (controller time) the latest analysis ran, if one ran in this process.
    pub analysed_at: Option<DateTime<Utc>>,
    /// Its reports, one per template, with the data fetched.
    pub judged: Arc<Vec<Judged>>,
    /// The decisions of the reconciles (rollout events), oldest first.
    pub timeline: VecDeque<Mark>,
    /// When it was last touched, for evicting the oldest.
    pub touched: Option<DateTime<Utc>>,
}

/// The latest evidence and decisions per Release, bounded.
#[derive(Debug, Default)]
pub struct Evidence {
    held: Mutex<HashMap<(String, String), Held>>,
}

impl Evidence {
    /// Releases kept at most; the least recently touched goes first.
    pub const CAPACITY: usize = 2000;
    /// Decisions kept per Release.
    pub const TIMELINE: usize = 100;

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Held>> {
        // A panic elsewhere while holding it leaves plain data: use it.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is kept of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Held> {
        self.lock()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Records a reconcile: its decisions as marks, and the reports when it analysed.
    pub fn record(
        &self,
        namespace: &str,
        name: &str,
        marks: Vec<Mark>,
        judged: &[Judged],
        now: DateTime<Utc>,
    ) {
        if marks.is_empty() && judged.is_empty() {
            return;
        }
        let mut held = self.lock();
        let key = (namespace.to_string(), name.to_string());
        if !held.contains_key(&key) && held.len() >= Self::CAPACITY {
            let oldest = held
                .iter()
                .min_by_key(|(_, h)| h.touched)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                held.remove(&oldest);
            }
        }
        let entry = held.entry(key).or_default();
        entry.touched = Some(now);
        if !judged.is_empty() {
            entry.analysed_at = Some(now);
            entry.judged = Arc::new(judged.to_vec());
        }
        entry.timeline.extend(marks);
        while entry.timeline.len() > Self::TIMELINE {
            entry.timeline.pop_front();
        }
    }

    /// Forgets `namespace/name` (deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// How many Releases are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Feeds the reconciler's decisions and analyses into an [`Evidence`].
pub struct EvidenceObserver(pub Arc<Evidence>);

impl Observer for EvidenceObserver {
    fn decided(
        &self,
        canary: &Release,
        plan: &Plan,
        decision: &Decision,
        judged: &[Judged],
        now: DateTime<Utc>,
    ) {
        let marks =
            crate::cluster::report::event_marks(plan, &decision.state, &decision.events, now);
        self.0.record(
            &canary.namespace().unwrap_or_default(),
            &canary.name_any(),
            marks,
            judged,
            now,
        );
    }

    fn deleted(&self, canary: &Release) {
        self.0
            .forget(&canary.namespace().unwrap_or_default(), &canary.name_any());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MarkKind;

    fn mark(text: &str) -> Mark {
        Mark {
            at: DateTime::UNIX_EPOCH,
            step: "step 1/2 (10%)".into(),
            weight: 10,
            text: text.into(),
            kind: MarkKind::Info,
        }
    }

    #[test]
    fn the_store_is_bounded_per_release_and_forgets_deleted_ones() {
        let evidence = Evidence::new();
        let at = |s: i64| DateTime::from_timestamp(s, 0).expect("time");
        for i in 0..(Evidence::TIMELINE + 5) {
            evidence.record("shop", "web", vec![mark(&format!("m{i}"))], &[], at(1));
        }
        let held = evidence.get("shop", "web").expect("held");
        assert_eq!(held.timeline.len(), Evidence::TIMELINE);
        assert_eq!(held.timeline[0].text, "m5", "the oldest go first");
        assert!(held.analysed_at.is_none() && held.judged.is_empty());
        evidence.record("shop", "api", vec![], &[], at(2));
        assert!(evidence.get("shop", "api").is_none(), "nothing to keep");
        evidence.forget("shop", "web");
        assert!(evidence.is_empty());
    }

    #[test]
    fn past_capacity_the_least_recently_touched_release_goes() {
        let evidence = Evidence::new();
        let at = |s: usize| DateTime::from_timestamp(s as i64, 0).expect("time");
        for i in 0..Evidence::CAPACITY {
            evidence.record("ns", &format!("r{i}"), vec![mark("x")], &[], at(i + 10));
        }
        evidence.record("ns", "r0", vec![mark("again")], &[], at(99_999));
        evidence.record("ns", "new", vec![mark("x")], &[], at(100_000));
        assert_eq!(evidence.len(), Evidence::CAPACITY);
        assert!(evidence.get("ns", "r0").is_some(), "touched lately");
        assert!(evidence.get("ns", "r1").is_none(), "the oldest went");
    }
}
