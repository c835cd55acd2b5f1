//! Several controller replicas sharing one cluster: the Releases are split into `N` shards
//! by a stable hash of `namespace/name`, each shard is a `coordination.k8s.io/v1` Lease, and
//! a replica reconciles the Releases of the shards whose Leases it holds.
//!
//! # How it works
//! Every replica runs one [`ShardManager`]. Every `retry_period` it:
//! 1. renews its **member Lease** `<lease-name>-member-<identity>`, which says it is alive;
//! 2. lists the group's Leases (label `vigil.dev/shards=<lease-name>`) in one request and
//!    notes every record, so that expiry is judged by its own monotonic clock from when it
//!    first saw a record, exactly as [`super::leader`] does;
//! 3. counts the live members (a member Lease renewed within its duration) and works out its
//!    **fair share**: with `m` members sorted by identity, the one at rank `r` may hold
//!    `N / m` shards, plus one when `r < N % m` ([`quota`]), so the shares add up to `N`;
//! 4. renews the **shard Leases** `<lease-name>-<i>` it holds; a shard it could not renew
//!    for `renew_deadline`, or that another replica took over, is lost (the process goes on);
//! 5. gives up shards beyond its share: it stops reconciling them at once and releases their
//!    Leases (empty holder, as [`super::leader::LeaderElector::release`] does) one period
//!    later, so that a reconcile in flight finishes first and another replica takes them at
//!    its next attempt;
//! 6. takes free shards up to its share: missing, released, or expired ones (a dead
//!    replica's, `lease_duration` after it last renewed them).
//!
//! Each shard Lease is driven by its own [`LeaderElector`]: the same reads, the same
//! resourceVersion-guarded writes and the same clock rules as single-leader election.
//!
//! # Guarantees
//! - At most one replica believes it holds a shard at any version of its Lease, by the API
//!   server's optimistic concurrency; a replica that cannot renew stops reconciling the shard
//!   before another may take it over (under [`super::leader`]'s clock assumption).
//! - The reconciler checks ownership before it reconciles a Release and again right before
//!   every write (world and status), and its status write carries the resourceVersion it
//!   read: a replica that lost the shard mid-reconcile does not write, and a stale write is
//!   refused with 409.
//! - A replica that dies has its shards taken over by the others after `lease_duration`
//!   (plus up to one `retry_period`): its member Lease expires at the same time, the others'
//!   shares grow, and they take the expired shard Leases.
//! - A replica that starts or stops gracefully moves shards at once (release, not expiry).
//!
//! Changing `N` moves most Releases to another shard: run every replica with the same `N`.

use super::leader::{LeaderConfig, LeaderElector, LeaderError, Observed};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The label naming a Lease's group (the shards' `--lease-name`).
pub const GROUP_LABEL: &str = "vigil.dev/shards";
/// The label telling shard Leases (`shard`) from member Leases (`member`).
pub const ROLE_LABEL: &str = "vigil.dev/lease-role";
/// The most shards: enough for any cluster, few enough to renew every period.
pub const MAX_SHARDS: u32 = 256;
/// The longest `--lease-name` with shards: it is a label value (63 characters at most) and
/// leaves room for the suffixes of the Leases' names.
pub const MAX_GROUP_NAME: usize = 50;

/// The shard of the Release `namespace/name` among `shards` (at least 1): the first 8 bytes
/// of the SHA-256 of `namespace/name`, big-endian, modulo `shards`. SHA-256 is specified
/// (FIPS 180-4), so the assignment is the same on every platform and in every version.
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> u32 {
    let key = format!("{namespace}/{name}");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    let shards = u64::from(shards.max(1));
    // The remainder is below `shards`, a u32.
    (u64::from_be_bytes(first) % shards) as u32
}

/// The fair share of the member `me` among `members` (live identities, sorted, without
/// repeats): `shards / m`, plus one for the first `shards % m` members, so that the shares
/// add up to `shards`. A member missing from the list counts as the last.
pub fn quota(shards: u32, members: &[String], me: &str) -> u32 {
    let m = u32::try_from(members.len()).unwrap_or(u32::MAX).max(1);
    let rank = members
        .iter()
        .position(|x| x == me)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(m - 1);
    shards / m + u32::from(rank < shards % m)
}

/// A Lease name made of `identity`: lower case, characters other than `a-z`, `0-9`, `-` and
/// `.` turned into `-`, trimmed to 200 characters and to letters or digits at both ends.
fn name_part(identity: &str) -> String {
    let mapped: String = identity
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "x".to_string()
    } else {
        trimmed.to_string()
    }
}

/// One shard as the reconciler sees it.
#[derive(Debug, Default)]
struct Slot {
    /// Held: its Releases may be reconciled.
    held: AtomicBool,
    /// Reconciles of its Releases in flight.
    busy: AtomicUsize,
}

/// Which Releases this replica may reconcile, and which reconciles are in flight. Cheap to
/// clone; shared by the [`ShardManager`] that sets it and the reconciler that reads it.
#[derive(Clone, Debug)]
pub struct Ownership {
    /// One slot per shard; `None` when not sharded (everything is owned).
    held: Option<Arc<[Slot]>>,
}

/// A reconcile in flight of a Release of a held shard (see [`Ownership::begin`]); the
/// shard's Lease is not released while it lasts (up to `renew_deadline`).
#[derive(Debug)]
pub struct Busy {
    slots: Option<Arc<[Slot]>>,
    shard: usize,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(slot) = self.slots.as_ref().and_then(|s| s.get(self.shard)) {
            slot.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Ownership {
    /// Not sharded: every Release is owned (one replica, or the leader of a single Lease).
    pub fn everything() -> Self {
        Ownership { held: None }
    }

    /// `shards` shards, none held yet.
    fn sharded(shards: u32) -> Self {
        Ownership {
            held: Some((0..shards).map(|_| Slot::default()).collect()),
        }
    }

    /// The number of shards; `None` when not sharded.
    pub fn shards(&self) -> Option<u32> {
        self.held
            .as_ref()
            .map(|h| u32::try_from(h.len()).unwrap_or(u32::MAX))
    }

    fn slot(&self, namespace: &str, name: &str) -> Option<(usize, &Slot)> {
        let held = self.held.as_ref()?;
        let n = u32::try_from(held.len()).unwrap_or(u32::MAX);
        let shard = shard_of(namespace, name, n) as usize;
        held.get(shard).map(|slot| (shard, slot))
    }

    /// Whether this replica may reconcile (and write for) the Release `namespace/name` now.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        self.held.is_none()
            || self
                .slot(namespace, name)
                .is_some_and(|(_, slot)| slot.held.load(Ordering::SeqCst))
    }

    /// Starts a reconcile of the Release `namespace/name` if this replica holds its shard:
    /// while the guard lives, a shard given up is not released, so that the replica taking
    /// it over does not reconcile the Release at the same time. `None`: not held.
    pub fn begin(&self, namespace: &str, name: &str) -> Option<Busy> {
        let Some((shard, slot)) = self.slot(namespace, name) else {
            return self.held.is_none().then_some(Busy {
                slots: None,
                shard: 0,
            });
        };
        // Counted before the flag is read, and the manager clears the flag before it reads
        // the count: one of the two sees the other.
        slot.busy.fetch_add(1, Ordering::SeqCst);
        let busy = Busy {
            slots: self.held.clone(),
            shard,
        };
        slot.held.load(Ordering::SeqCst).then_some(busy)
    }

    fn busy(&self, shard: usize) -> usize {
        self.held
            .as_ref()
            .and_then(|h| h.get(shard))
            .map_or(0, |slot| slot.busy.load(Ordering::SeqCst))
    }

    /// The shards held now, in order.
    pub fn held(&self) -> Vec<u32> {
        self.held.as_ref().map_or_else(Vec::new, |held| {
            (0u32..)
                .zip(held.iter())
                .filter(|(_, slot)| slot.held.load(Ordering::SeqCst))
                .map(|(i, _)| i)
                .collect()
        })
    }

    fn set(&self, shard: u32, held: bool) {
        if let Some(slot) = self.held.as_ref().and_then(|h| h.get(shard as usize)) {
            slot.held.store(held, Ordering::SeqCst);
        }
    }
}

/// A change of the shards a replica holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The shard's Lease was acquired: its Releases are reconciled from now on.
    Acquired,
    /// The shard is given up (beyond the fair share, or on shutdown): its Releases are no
    /// longer reconciled here, and its Lease is released.
    Released,
    /// The shard's Lease could not be renewed in time, or another replica holds it.
    Lost,
}

impl Transition {
    /// The label of the transition in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Transition::Acquired => "acquired",
            Transition::Released => "released",
            Transition::Lost => "lost",
        }
    }
}

/// Told about every shard transition (metrics, and reconciling a gained shard's Releases).
pub type OnTransition = Arc<dyn Fn(u32, Transition) + Send + Sync>;

/// The settings of the shards: `base` names the group (`lease_name`), the namespace, this
/// replica's identity and the durations, which every Lease of the group uses.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The group's settings.
    pub base: LeaderConfig,
    /// How many shards, 1 to [`MAX_SHARDS`].
    pub shards: u32,
}

impl ShardConfig {
    /// Checks the durations and names as [`LeaderConfig::validate`], and the shard count.
    pub fn validate(&self) -> Result<(), LeaderError> {
        self.base.validate()?;
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return Err(LeaderError::Config(format!(
                "the number of shards must be 1 to {MAX_SHARDS}, not {}",
                self.shards
            )));
        }
        let group = &self.base.lease_name;
        let valid = group.len() <= MAX_GROUP_NAME
            && group.starts_with(|c: char| c.is_ascii_alphanumeric())
            && group.ends_with(|c: char| c.is_ascii_alphanumeric())
            && group
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(LeaderError::Config(format!(
                "with shards, the lease name {group:?} must be at most {MAX_GROUP_NAME} lower-case \
                 letters, digits and '-', starting and ending with a letter or digit"
            )));
        }
        Ok(())
    }

    /// The name of shard `i`'s Lease: `<lease-name>-<i>`.
    pub fn shard_lease(&self, i: u32) -> String {
        format!("{}-{i}", self.base.lease_name)
    }

    /// The name of this replica's member Lease: `<lease-name>-member-<identity>`.
    pub fn member_lease(&self) -> String {
        format!(
            "{}-member-{}",
            self.base.lease_name,
            name_part(&self.base.identity)
        )
    }

    fn elector_config(&self, name: String, role: &str) -> LeaderConfig {
        LeaderConfig {
            lease_name: name,
            labels: BTreeMap::from([
                (GROUP_LABEL.to_string(), self.base.lease_name.clone()),
                (ROLE_LABEL.to_string(), role.to_string()),
            ]),
            ..self.base.clone()
        }
    }
}

/// Where one shard stands for this replica.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Not held.
    Free,
    /// Held; renewed successfully by an attempt that started then.
    Held { renewed: Instant },
    /// Given up at `since` (no longer reconciled), still renewed; the Lease is released
    /// at a later period once no reconcile of its Releases is in flight, or after
    /// `renew_deadline` whatever is.
    Draining { renewed: Instant, since: Instant },
}

impl Hold {
    fn renewed(&self) -> Option<Instant> {
        match self {
            Hold::Free => None,
            Hold::Held { renewed } | Hold::Draining { renewed, .. } => Some(*renewed),
        }
    }

    fn renewed_at(&mut self, at: Instant) {
        match self {
            Hold::Free => {}
            Hold::Held { renewed } | Hold::Draining { renewed, .. } => *renewed = at,
        }
    }
}

/// Takes, keeps and gives up this replica's shards; see the module documentation.
pub struct ShardManager {
    api: Api<Lease>,
    config: ShardConfig,
    member: LeaderElector,
    shards: Vec<(LeaderElector, Hold)>,
    /// The group's member Leases as last seen, by name.
    members: HashMap<String, Observed>,
    ownership: Ownership,
    on_transition: OnTransition,
    periods: u64,
}

impl ShardManager {
    /// A manager using `client`; fails when the configuration is invalid.
    pub fn new(
        client: kube::Client,
        config: ShardConfig,
        on_transition: OnTransition,
    ) -> Result<Self, LeaderError> {
        config.validate()?;
        let member = LeaderElector::new(
            client.clone(),
            config.elector_config(config.member_lease(), "member"),
        )?;
        let shards = (0..config.shards)
            .map(|i| {
                LeaderElector::new(
                    client.clone(),
                    config.elector_config(config.shard_lease(i), "shard"),
                )
                .map(|e| (e, Hold::Free))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ShardManager {
            api: Api::namespaced(client, &config.base.namespace),
            ownership: Ownership::sharded(config.shards),
            config,
            member,
            shards,
            members: HashMap::new(),
            on_transition,
            periods: 0,
        })
    }

    /// Which Releases this replica may reconcile, kept up to date while [`Self::run`] runs.
    pub fn ownership(&self) -> Ownership {
        self.ownership.clone()
    }

    /// Runs until `shutdown` completes, then stops reconciling every shard, releases their
    /// Leases and deletes the member Lease, so that the other replicas take over at once.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let started = Instant::now();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = self.period() => {}
            }
            let next = started + self.config.base.retry_period;
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(next) => {}
            }
        }
        self.shut_down().await;
    }

    /// One period: membership, renewals, giving up and taking shards.
    async fn period(&mut self) {
        let timeout = self.config.base.renew_deadline;
        match tokio::time::timeout(timeout, self.member.try_acquire_or_renew()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::warn!(lease = %self.config.member_lease(), holder = ?self.member.observed_holder(), "the member Lease is held by another identity");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the member Lease; retrying"),
            Err(_) => tracing::warn!("renewing the member Lease timed out; retrying"),
        }
        let params =
            ListParams::default().labels(&format!("{GROUP_LABEL}={}", self.config.base.lease_name));
        let listed = match tokio::time::timeout(timeout, self.api.list(&params)).await {
            Ok(Ok(list)) => Some(list.items),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot list the shard Leases; renewing only");
                None
            }
            Err(_) => {
                tracing::warn!("listing the shard Leases timed out; renewing only");
                None
            }
        };
        self.renew().await;
        self.release_drained(false).await;
        let Some(listed) = listed else {
            return;
        };
        let by_name: HashMap<String, Lease> = listed
            .into_iter()
            .filter_map(|l| l.metadata.name.clone().map(|n| (n, l)))
            .collect();
        let members = self.live_members(&by_name).await;
        let share = quota(self.config.shards, &members, &self.config.base.identity);
        for (i, (elector, hold)) in self.shards.iter_mut().enumerate() {
            if matches!(hold, Hold::Free) {
                let name = self.config.shard_lease(i as u32);
                elector.observe_lease(by_name.get(&name));
            }
        }
        self.give_up_beyond(share);
        // The first period only announces this replica: the others started with it are seen
        // at the second, before anything is taken.
        if self.periods > 0 {
            self.take_up_to(share, &members).await;
        }
        self.periods += 1;
    }

    /// Renews every held shard at once; marks lost those that could not be renewed within
    /// `renew_deadline` or that another replica holds.
    async fn renew(&mut self) {
        let deadline = self.config.base.renew_deadline;
        let attempts = self
            .shards
            .iter_mut()
            .filter(|(_, hold)| hold.renewed().is_some())
            .map(|(elector, hold)| async move {
                let Some(renewed) = hold.renewed() else {
                    return;
                };
                let started = Instant::now();
                let outcome =
                    tokio::time::timeout_at(renewed + deadline, elector.try_acquire_or_renew())
                        .await;
                match outcome {
                    Ok(Ok(true)) => hold.renewed_at(started),
                    Ok(Ok(false)) if elector.observed_holder() != Some(identity(elector)) => {
                        tracing::warn!(lease = %elector.config().lease_name, holder = ?elector.observed_holder(), "the shard was taken over");
                        *hold = Hold::Free;
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %elector.config().lease_name, error = %e, "cannot renew the shard; retrying")
                    }
                    Err(_) => {}
                }
                if let Some(renewed) = hold.renewed()
                    && Instant::now() >= renewed + deadline
                {
                    tracing::warn!(lease = %elector.config().lease_name, "could not renew the shard within renew_deadline");
                    *hold = Hold::Free;
                }
            });
        futures::future::join_all(attempts).await;
        for i in 0..self.shards.len() {
            if matches!(self.shards[i].1, Hold::Free) && self.ownership.held().contains(&(i as u32))
            {
                self.ownership.set(i as u32, false);
                tracing::warn!(
                    shard = i,
                    "shard lost: its Releases are no longer reconciled here"
                );
                (self.on_transition)(i as u32, Transition::Lost);
            }
        }
    }

    /// Releases the Leases of the shards given up at an earlier period whose reconciles
    /// have finished (or that have waited `renew_deadline` for them); with `all`, those
    /// given up now too.
    async fn release_drained(&mut self, all: bool) {
        let timeout = self.config.base.renew_deadline;
        let now = Instant::now();
        for (i, (elector, hold)) in self.shards.iter_mut().enumerate() {
            let Hold::Draining { since, .. } = *hold else {
                continue;
            };
            let busy = self.ownership.busy(i);
            let waited = now.duration_since(since);
            if !all
                && (waited < self.config.base.retry_period / 2 || (busy > 0 && waited < timeout))
            {
                continue;
            }
            if busy > 0 {
                tracing::warn!(lease = %elector.config().lease_name, busy, "releasing the shard with reconciles still in flight");
            }
            match tokio::time::timeout(timeout, elector.release()).await {
                Ok(Ok(true)) => {
                    tracing::info!(lease = %elector.config().lease_name, "released the shard")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = %elector.config().lease_name, error = %e, "cannot release the shard; it will expire")
                }
                Err(_) => {
                    tracing::warn!(lease = %elector.config().lease_name, "releasing the shard timed out; it will expire")
                }
            }
            *hold = Hold::Free;
        }
    }

    /// The live members' identities, sorted, this replica among them; deletes member Leases
    /// expired for a second lease duration (crashed replicas'), guarded by resourceVersion.
    async fn live_members(&mut self, listed: &HashMap<String, Lease>) -> Vec<String> {
        let prefix = format!("{}-member-", self.config.base.lease_name);
        self.members.retain(|name, _| listed.contains_key(name));
        let mut live = vec![self.config.base.identity.clone()];
        let default = self.config.base.lease_duration;
        let mut stale = Vec::new();
        for (name, lease) in listed {
            if !name.starts_with(&prefix) {
                continue;
            }
            let spec = lease.spec.clone().unwrap_or_default();
            let observed = self
                .members
                .entry(name.clone())
                .and_modify(|o| {
                    o.update(spec.clone());
                })
                .or_insert_with(|| Observed::new(spec));
            if observed.valid(default) {
                live.extend(observed.holder().map(str::to_string));
            } else if observed.expires(default) + default <= Instant::now()
                && *name != self.config.member_lease()
            {
                stale.push((name.clone(), lease.metadata.resource_version.clone()));
            }
        }
        for (name, version) in stale {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: version,
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match self.api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(lease = %name, "deleted the member Lease of a replica gone for good")
                }
                Err(e) => {
                    tracing::debug!(lease = %name, error = %e, "did not delete an expired member Lease")
                }
            }
        }
        live.sort();
        live.dedup();
        live
    }

    /// Gives up the highest-numbered held shards beyond `share`: not reconciled from now
    /// on, released at the next period.
    fn give_up_beyond(&mut self, share: u32) {
        let mut held = self.held_count();
        for i in (0..self.shards.len()).rev() {
            if held <= share {
                break;
            }
            if let Hold::Held { renewed } = self.shards[i].1 {
                self.shards[i].1 = Hold::Draining {
                    renewed,
                    since: Instant::now(),
                };
                self.ownership.set(i as u32, false);
                held -= 1;
                tracing::info!(shard = i, share, "giving the shard up to another replica");
                (self.on_transition)(i as u32, Transition::Released);
            }
        }
    }

    /// Takes free shards until `share` are held, starting at an offset of this replica's
    /// own, so that replicas starting together try different shards first.
    async fn take_up_to(&mut self, share: u32, members: &[String]) {
        let n = self.shards.len();
        let rank = members
            .iter()
            .position(|m| *m == self.config.base.identity)
            .unwrap_or(0);
        let start = rank * n / members.len().max(1);
        let timeout = self.config.base.renew_deadline;
        for k in 0..n {
            if self.held_count() >= share {
                break;
            }
            let i = (start + k) % n;
            let (elector, hold) = &mut self.shards[i];
            if !matches!(hold, Hold::Free) || !elector.may_acquire() {
                continue;
            }
            let started = Instant::now();
            match tokio::time::timeout(timeout, elector.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {
                    *hold = Hold::Held { renewed: started };
                    self.ownership.set(i as u32, true);
                    tracing::info!(shard = i, share, "acquired the shard");
                    (self.on_transition)(i as u32, Transition::Acquired);
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = %elector.config().lease_name, error = %e, "cannot acquire the shard; retrying")
                }
                Err(_) => {}
            }
        }
    }

    fn held_count(&self) -> u32 {
        self.shards
            .iter()
            .filter(|(_, hold)| matches!(hold, Hold::Held { .. }))
            .count() as u32
    }

    async fn shut_down(&mut self) {
        for i in 0..self.shards.len() {
            if let Hold::Held { renewed } = self.shards[i].1 {
                self.shards[i].1 = Hold::Draining {
                    renewed,
                    since: Instant::now(),
                };
                self.ownership.set(i as u32, false);
                (self.on_transition)(i as u32, Transition::Released);
            }
        }
        self.release_drained(true).await;
        // A period cancelled by the shutdown may have acquired a shard it did not record:
        // release every other shard too (a read each; only those naming this replica are
        // written).
        let timeout = self.config.base.renew_deadline;
        let others = self.shards.iter_mut().map(|(elector, _)| async move {
            if let Ok(Ok(true)) = tokio::time::timeout(timeout, elector.release()).await {
                tracing::info!(lease = %elector.config().lease_name, "released a shard acquired as the shutdown began");
            }
        });
        futures::future::join_all(others).await;
        let name = self.config.member_lease();
        let deleted = tokio::time::timeout(timeout, async {
            let lease = self.api.get_opt(&name).await?;
            let Some(lease) = lease.filter(|l| {
                l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                    == Some(self.config.base.identity.as_str())
            }) else {
                return Ok::<bool, kube::Error>(false);
            };
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: lease.metadata.resource_version,
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            self.api.delete(&name, &params).await.map(|_| true)
        })
        .await;
        match deleted {
            Ok(Ok(true)) => tracing::info!(lease = %name, "deleted the member Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %name, error = %e, "cannot delete the member Lease; it will expire")
            }
            Err(_) => {
                tracing::warn!(lease = %name, "deleting the member Lease timed out; it will expire")
            }
        }
    }
}

fn identity(elector: &LeaderElector) -> &str {
    &elector.config().identity
}

/// How long, at most, a dead replica's shards stay unreconciled: the others wait
/// `lease_duration` after they last saw its renewal, which was at most one `retry_period`
/// before it died, and take the shard at their next period.
pub fn failover_bound(config: &LeaderConfig) -> Duration {
    config.lease_duration + config.retry_period
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_of_a_release_is_pinned() {
        // These values must never change, or every cluster's Releases would move between
        // replicas on an upgrade. SHA-256("shop/web") begins 0x97375646b1deb3d2.
        for (namespace, name, per_count) in [
            ("shop", "web", [0, 0, 1, 4, 5, 210]),
            ("default", "api", [0, 0, 1, 4, 5, 132]),
            ("team-a", "checkout", [0, 0, 1, 4, 2, 254]),
            ("shop", "web-2", [0, 0, 1, 4, 6, 96]),
        ] {
            for (shards, expected) in [1, 2, 3, 6, 7, 256].into_iter().zip(per_count) {
                assert_eq!(
                    shard_of(namespace, name, shards),
                    expected,
                    "{namespace}/{name} among {shards}"
                );
            }
        }
        assert_eq!(shard_of("shop", "web", 0), 0, "0 shards is taken as 1");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"abc");
        assert_eq!(
            &digest.as_ref()[..8],
            &[0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea],
            "SHA-256 of abc (FIPS 180-4's example)"
        );
    }

    #[test]
    fn shares_add_up_and_differ_by_one_at_most() {
        for shards in 1..=20u32 {
            for m in 1..=7usize {
                let members: Vec<String> = (0..m).map(|i| format!("r{i}")).collect();
                let shares: Vec<u32> = members
                    .iter()
                    .map(|me| quota(shards, &members, me))
                    .collect();
                assert_eq!(
                    shares.iter().sum::<u32>(),
                    shards,
                    "{shards} over {m}: {shares:?}"
                );
                let (lo, hi) = (shares.iter().min(), shares.iter().max());
                assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{shares:?}");
            }
        }
        let three: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(quota(6, &three, "a"), 2);
        assert_eq!(quota(4, &three, "a"), 2);
        assert_eq!(quota(4, &three, "b"), 1);
        assert_eq!(quota(4, &three, "c"), 1);
        assert_eq!(quota(2, &three, "c"), 0);
        // Not (yet) among the members: the last rank.
        assert_eq!(quota(4, &three, "z"), 1);
        assert_eq!(quota(5, &[], "a"), 5);
    }

    #[test]
    fn member_lease_names_are_valid() {
        let mut c = ShardConfig {
            base: LeaderConfig::new("vigil-controller", "ns", "Web_0A1b2C3d"),
            shards: 3,
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.member_lease(), "vigil-controller-member-web-0a1b2c3d");
        assert_eq!(c.shard_lease(2), "vigil-controller-2");
        c.base.identity = "_-_".into();
        assert_eq!(c.member_lease(), "vigil-controller-member-x");
        c.base.identity = "a".repeat(400);
        assert_eq!(
            c.member_lease().len(),
            "vigil-controller-member-".len() + 200
        );
        c.shards = 0;
        assert!(c.validate().is_err());
        c.shards = MAX_SHARDS + 1;
        assert!(c.validate().is_err());
        c.shards = 2;
        c.base.lease_name = "Vigil".into();
        assert!(c.validate().is_err());
        c.base.lease_name = "v".repeat(MAX_GROUP_NAME + 1);
        assert!(c.validate().is_err());
    }

    #[test]
    fn ownership_follows_the_flags() {
        assert!(Ownership::everything().owns("shop", "web"));
        assert_eq!(Ownership::everything().shards(), None);
        let o = Ownership::sharded(4);
        let shard = shard_of("shop", "web", 4);
        assert!(!o.owns("shop", "web"));
        o.set(shard, true);
        assert!(o.owns("shop", "web"));
        assert_eq!(o.held(), vec![shard]);
        o.clone().set(shard, false);
        assert!(!o.owns("shop", "web"), "clones share the flags");
        o.set(99, true);
        assert_eq!(o.held(), Vec::<u32>::new());
    }

    #[test]
    fn reconciles_in_flight_are_counted_until_they_end() {
        assert!(Ownership::everything().begin("shop", "web").is_some());
        let o = Ownership::sharded(4);
        let shard = shard_of("shop", "web", 4);
        assert!(o.begin("shop", "web").is_none(), "not held");
        assert_eq!(o.busy(shard as usize), 0, "a refused start is not counted");
        o.set(shard, true);
        let first = o.begin("shop", "web").expect("held");
        let second = o.begin("shop", "web").expect("held");
        assert_eq!(o.busy(shard as usize), 2);
        o.set(shard, false);
        assert!(
            o.begin("shop", "web").is_none(),
            "given up: no new reconcile"
        );
        drop(first);
        assert_eq!(o.busy(shard as usize), 1);
        drop(second);
        assert_eq!(o.busy(shard as usize), 0);
    }
}
