//! Kubernetes Events (`events.k8s.io/v1`) about Releases, with repeats folded into a
//! series.
//!
//! kube's `Recorder` folds an event into the previous one with the same reason, note and
//! object seen in the last 6 minutes, and for that keeps every event it published in those
//! 6 minutes in one map, whose table never shrinks. At 1,000 Releases that map was the
//! controller's largest allocation (17.7 MB of a 41.8 MB heap peak in `vigil bench
//! controller`), and its 6 minutes are wall-clock time, so an accelerated clock made it
//! hold a whole rollout's events. This recorder keeps only the last event of each
//! Release: the repeats worth folding are consecutive (the same analysis error every
//! minute during a Prometheus outage, the same stall), and the memory is one small entry
//! per Release, dropped when the Release is deleted. The 6 minutes run on the controller's
//! [`Clock`].

use super::clock::Clock;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

/// How long after an event the same event is counted in its series rather than recorded
/// anew (kube's and client-go's choice).
pub const SERIES_WINDOW: chrono::Duration = chrono::Duration::minutes(6);

/// The last event recorded about one object.
#[derive(Debug, Clone)]
struct Last {
    /// What the event says (type, reason, action, note), hashed.
    what: u64,
    /// The Event object's name.
    name: String,
    /// Occurrences so far.
    count: i32,
    /// When it last occurred, on the controller's clock.
    at: DateTime<Utc>,
}

/// Publishes Events about the controller's objects.
pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    clock: Clock,
    /// By the object's namespace, name and uid.
    last: Mutex<HashMap<(String, String, String), Last>>,
}

fn what(event: &Event) -> u64 {
    let mut h = DefaultHasher::new();
    matches!(event.type_, EventType::Warning).hash(&mut h);
    event.reason.hash(&mut h);
    event.action.hash(&mut h);
    event.note.hash(&mut h);
    event
        .secondary
        .as_ref()
        .map(|s| (&s.namespace, &s.name, &s.uid))
        .hash(&mut h);
    h.finish()
}

fn key(reference: &ObjectReference) -> (String, String, String) {
    (
        reference.namespace.clone().unwrap_or_default(),
        reference.name.clone().unwrap_or_default(),
        reference.uid.clone().unwrap_or_default(),
    )
}

impl Recorder {
    /// A recorder that signs its events with `reporter` and times series on `clock`.
    pub fn new(client: kube::Client, reporter: Reporter, clock: Clock) -> Self {
        Self {
            client,
            reporter,
            clock,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The last event of each object, whatever a panic elsewhere left in them (at worst an
    /// Event recorded anew instead of counted).
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), Last>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn events(&self, reference: &ObjectReference) -> Api<K8sEvent> {
        let ns = reference.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.client.clone(), ns)
    }

    /// Records `event` about the object `reference` names: as one more occurrence of the
    /// object's last event when it is the same and at most [`SERIES_WINDOW`] old, else as a
    /// new Event.
    pub async fn publish(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = key(reference);
        let what = what(event);
        let now = self.clock.now();
        let previous = self
            .entries()
            .get(&key)
            .filter(|l| l.what == what && now - l.at <= SERIES_WINDOW)
            .cloned();
        let recorded = match previous {
            Some(last) => match self.repeat(reference, &last).await {
                // The Event is gone (the API server expires Events after an hour by
                // default, or it was deleted): record it anew.
                Err(kube::Error::Api(e)) if e.code == 404 => None,
                Err(e) => return Err(e),
                Ok(()) => Some(Last {
                    count: last.count + 1,
                    at: now,
                    ..last
                }),
            },
            None => None,
        };
        let recorded = match recorded {
            Some(r) => r,
            None => Last {
                what,
                name: self.create(event, reference).await?,
                count: 1,
                at: now,
            },
        };
        self.entries().insert(key, recorded);
        Ok(())
    }

    async fn create(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<String, kube::Error> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let controller = &self.reporter.controller;
        let name = format!(
            "{}.{:x}",
            reference.name.as_deref().unwrap_or(controller),
            now.as_nanosecond()
        );
        let object = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: reference.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            ..K8sEvent::default()
        };
        self.events(reference)
            .create(&PostParams::default(), &object)
            .await?;
        Ok(name)
    }

    async fn repeat(&self, reference: &ObjectReference, last: &Last) -> Result<(), kube::Error> {
        let series = EventSeries {
            count: last.count + 1,
            last_observed_time: MicroTime(k8s_openapi::jiff::Timestamp::now()),
        };
        let patch = serde_json::json!({ "series": series });
        self.events(reference)
            .patch(&last.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Forgets a deleted object.
    pub fn forget(&self, reference: &ObjectReference) {
        self.entries().remove(&key(reference));
    }

    /// How many objects' last events are kept.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no object's last event is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
