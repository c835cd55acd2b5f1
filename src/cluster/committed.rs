//! The points each Release's analyses have already fetched ([`QueryCache`]), kept in a
//! ConfigMap the Release owns, so that every analysis fetches only what it has not seen,
//! after a restart too (see [`crate::source::incremental`]).
//!
//! The ConfigMap `<release>-vigil-evidence` holds the cache as JSON under `points.json`,
//! with the Release's uid (a Release deleted and created again under the same name starts
//! afresh). It is written after each analysis that committed new points and deleted when
//! the rollout ends; it goes with the Release through its owner reference.
//!
//! The ConfigMap is where the points live between analyses: once they are stored, the
//! process lets go of them and the next analysis reads them back (one GET). The points a
//! controller holds are then those of the analyses running at the moment, not those of
//! every Release in flight: with 1,000 Releases an hour into their rollouts, that is the
//! difference between a few hundred kilobytes and 15 MB, and it does not grow with the
//! rollouts' age. Points that could not be stored stay in memory: after a failed write
//! (the next analysis writes again), and when they no longer fit a ConfigMap (an analysis
//! after a restart then reads the whole window once).

use crate::api::crd::Release;
use crate::rollout::Phase;
use crate::source::incremental::QueryCache;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key of the cache in the ConfigMap.
pub const POINTS_KEY: &str = "points.json";
/// The key of the owning Release's uid in the ConfigMap.
pub const UID_KEY: &str = "release-uid";
/// The most a ConfigMap stores (1 MiB in all, with room for metadata).
const MAX_BYTES: usize = 900 * 1024;
/// The default time before a point is final (see [`crate::source::incremental`]).
pub const DEFAULT_LAG: Duration = Duration::from_secs(120);

/// The ConfigMap of a Release's committed points.
pub fn config_map_name(canary: &str) -> String {
    format!("{canary}-vigil-evidence")
}

/// One Release's cache and what is known of its ConfigMap.
#[derive(Debug, Default)]
struct Slot {
    uid: String,
    /// The points while this process holds them: from the start of an analysis until they
    /// are stored, or for good when they cannot be. `None` when the ConfigMap holds them.
    cache: Option<Arc<Mutex<QueryCache>>>,
    /// A hash of what was last written (or read), to skip writing the same again (the text
    /// itself would double the memory held).
    stored: Option<u64>,
    /// Whether a ConfigMap may exist: unknown (`None`) until this process has read or
    /// written it.
    exists: Option<bool>,
}

/// Every Release's committed points, for one controller process.
#[derive(Debug)]
pub struct Committed {
    /// How old a point must be to be committed.
    pub lag: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Default for Committed {
    fn default() -> Self {
        Self::new(DEFAULT_LAG)
    }
}

fn key(canary: &Release) -> String {
    format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    )
}

/// What tells a changed cache from the one stored; a collision would only skip one write,
/// which costs a longer read after a restart, never a wrong point.
fn digest(text: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Committed {
    /// No points yet; points are committed once `lag` old.
    pub fn new(lag: Duration) -> Self {
        Self {
            lag,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// How many Releases' points this process holds in memory, and how many points.
    pub fn size(&self) -> (usize, usize) {
        let slots = lock(&self.slots);
        let held: Vec<_> = slots.values().filter_map(|s| s.cache.as_ref()).collect();
        let points = held.iter().map(|c| lock(c).points()).sum();
        (held.len(), points)
    }

    /// The cache of `canary`'s analyses: from memory, else from its ConfigMap, else empty.
    /// Held in memory until [`Committed::store`] has stored it.
    pub async fn cache(&self, client: &kube::Client, canary: &Release) -> Arc<Mutex<QueryCache>> {
        let uid = canary.uid().unwrap_or_default();
        let stored_here = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(&key(canary)).filter(|s| s.uid == uid) {
                Some(slot) => match (&slot.cache, slot.exists) {
                    (Some(cache), _) => return cache.clone(),
                    // Known to have no ConfigMap: nothing to read.
                    (None, Some(false)) => {
                        let cache = Arc::new(Mutex::new(QueryCache::new()));
                        slot.cache = Some(cache.clone());
                        return cache;
                    }
                    (None, exists) => exists == Some(true),
                },
                None => false,
            }
        };
        let (cache, stored, exists) = match load(client, canary, &uid).await {
            Ok(Some((cache, text))) => (cache, Some(digest(&text)), Some(true)),
            Ok(None) => {
                if stored_here {
                    tracing::warn!(canary = %canary.name_any(), namespace = %canary.namespace().unwrap_or_default(),
                        "ConfigMap {} with the committed points is gone (deleted by hand?): this analysis fetches its whole window",
                        config_map_name(&canary.name_any()));
                }
                (QueryCache::new(), None, None)
            }
            Err(e) => {
                tracing::warn!(canary = %canary.name_any(), namespace = %canary.namespace().unwrap_or_default(),
                    "cannot read the committed points, fetching the whole window: {e}");
                (QueryCache::new(), None, None)
            }
        };
        let cache = Arc::new(Mutex::new(cache));
        lock(&self.slots).insert(
            key(canary),
            Slot {
                uid,
                cache: Some(cache.clone()),
                stored,
                exists,
            },
        );
        cache
    }

    /// Stores `canary`'s cache in its ConfigMap when it changed since it was last stored,
    /// and lets go of it once the ConfigMap holds it.
    pub async fn store(&self, client: &kube::Client, canary: &Release) {
        let text = {
            let mut slots = lock(&self.slots);
            let Some(slot) = slots.get_mut(&key(canary)) else {
                return;
            };
            let Some(cache) = &slot.cache else {
                return;
            };
            let text = match serde_json::to_string(&*lock(cache)) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("cannot encode the committed points: {e}");
                    return;
                }
            };
            if slot.stored == Some(digest(&text)) {
                slot.cache = None;
                return;
            }
            text
        };
        let name = canary.name_any();
        let ns = canary.namespace().unwrap_or_default();
        if text.len() > MAX_BYTES {
            tracing::info!(canary = %name, namespace = %ns, bytes = text.len(),
                "the committed points no longer fit a ConfigMap: kept in memory only (after a restart the next analysis reads its whole window once)");
            return;
        }
        let hash = digest(&text);
        let data = BTreeMap::from([
            (POINTS_KEY.to_string(), text),
            (UID_KEY.to_string(), canary.uid().unwrap_or_default()),
        ]);
        match super::report::apply_owned_config_map(client, canary, &config_map_name(&name), data)
            .await
        {
            Ok(_) => {
                if let Some(slot) = lock(&self.slots).get_mut(&key(canary)) {
                    slot.stored = Some(hash);
                    slot.exists = Some(true);
                    slot.cache = None;
                }
            }
            // The points stay in memory; only a restart would cost a whole-window read.
            Err(e) => tracing::warn!(canary = %name, namespace = %ns,
                "cannot store the committed points in ConfigMap {}: {e}", config_map_name(&name)),
        }
    }

    /// Forgets `canary`'s points once its rollout is over (any phase in which no analysis
    /// runs), deleting the ConfigMap if it may exist.
    pub async fn settle(&self, client: &kube::Client, canary: &Release, phase: Phase) {
        let running = matches!(
            phase,
            Phase::Progressing | Phase::Paused | Phase::Promoting | Phase::Baking
        );
        if running {
            return;
        }
        let exists = {
            let mut slots = lock(&self.slots);
            let slot = slots.entry(key(canary)).or_default();
            let exists = slot.exists;
            *slot = Slot {
                uid: canary.uid().unwrap_or_default(),
                exists: Some(false),
                ..Slot::default()
            };
            exists
        };
        if exists == Some(false) {
            return;
        }
        let ns = canary.namespace().unwrap_or_default();
        let name = config_map_name(&canary.name_any());
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(namespace = %ns, "cannot delete ConfigMap {name}: {e}");
                if let Some(slot) = lock(&self.slots).get_mut(&key(canary)) {
                    slot.exists = None;
                }
            }
        }
    }

    /// Forgets a deleted Release (its ConfigMap goes with it).
    pub fn forget(&self, canary: &Release) {
        lock(&self.slots).remove(&key(canary));
    }
}

/// The stored cache and its text, if the ConfigMap exists for this Release (same uid).
async fn load(
    client: &kube::Client,
    canary: &Release,
    uid: &str,
) -> Result<Option<(QueryCache, String)>, String> {
    let ns = canary.namespace().unwrap_or_default();
    let name = config_map_name(&canary.name_any());
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let found = api
        .get_opt(&name)
        .await
        .map_err(|e| format!("ConfigMap {ns}/{name}: {e}"))?;
    let Some(data) = found.and_then(|c| c.data) else {
        return Ok(None);
    };
    if data.get(UID_KEY).map(String::as_str) != Some(uid) {
        return Ok(None);
    }
    let Some(text) = data.get(POINTS_KEY) else {
        return Ok(None);
    };
    let cache = serde_json::from_str(text)
        .map_err(|e| format!("ConfigMap {ns}/{name} key {POINTS_KEY}: {e}"))?;
    Ok(Some((cache, text.clone())))
}
