//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller
//! replicas exactly one acts on the cluster. kube-runtime has none; this follows client-go's
//! `leaderelection` package, whose semantics operators already know.
//!
//! # How it works
//! Every candidate reads the Lease every `retry_period`:
//! - missing: it creates it with itself as holder (`leaseTransitions` 0);
//! - held by itself: it renews it (`renewTime` = now);
//! - held by nobody (`holderIdentity` empty, as a released Lease is): it takes it over at once;
//! - held by another: it takes it over only once it has seen the *same* record for the
//!   record's `leaseDurationSeconds`, incrementing `leaseTransitions`.
//!
//! Every write is a replace carrying the `resourceVersion` that was read, so when two
//! candidates race for the same record the API server accepts one write and answers the
//! other with 409 Conflict: only one of them becomes leader.
//!
//! The leader renews every `retry_period`. When it has not managed to renew for
//! `renew_deadline` (counted from the start of its last successful renewal), or when it reads
//! the Lease held by someone else, it stops leading. On a graceful shutdown it releases the
//! Lease (empty `holderIdentity`, `leaseDurationSeconds` 1), so that another candidate takes
//! over at its next attempt instead of waiting for the lease to expire, as client-go's
//! `ReleaseOnCancel` does.
//!
//! # Clocks
//! Expiry is judged by the **local monotonic clock** of each candidate, from the moment it
//! last *observed* the record change, never from the `renewTime` written by another machine:
//! the wall clocks of the nodes may disagree by any amount without harm. What is assumed is
//! that clocks *run at about the same rate*: the leader gives up after `renew_deadline`
//! without a renewal, while the others wait `lease_duration` after seeing its last renewal;
//! the difference (`lease_duration - renew_deadline`, 5 s by default) is the margin for rate
//! differences, for the leader's work to notice that it lost, and for request latency.
//! `renewTime` and `acquireTime` are written for people (`kubectl get lease`) only.
//!
//! # Guarantees
//! - At most one candidate believes it holds a given record version: the API server's
//!   optimistic concurrency serialises the writes.
//! - A leader that cannot renew (API server unreachable, network partition) stops leading
//!   before any other candidate can take over, under the clock assumption above.
//! - Leadership is not guaranteed to be exclusive *in real time* beyond that assumption: a
//!   process paused (stopped by a debugger, swapped out) for longer than the margin may act
//!   as leader for a moment after another took over. The controller therefore exits the
//!   process as soon as leadership is lost, as client-go's users do, and its writes stay
//!   idempotent functions of the Release's status.
//!
//! # Use
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), vigil::cluster::leader::LeaderError> {
//! use vigil::cluster::leader::{Ended, LeaderConfig, LeaderElector};
//! let config = LeaderConfig::new("vigil-controller", "vigil-system", LeaderConfig::default_identity());
//! let elector = LeaderElector::new(client, config)?;
//! let ended = elector
//!     .run(async { let _ = tokio::signal::ctrl_c().await; }, |leading| async move {
//!         // Reconcile here until the future ends; `leading` turns false when leadership is lost.
//!         let _ = leading;
//!     })
//!     .await;
//! if ended == Ended::Lost {
//!     std::process::exit(1);
//! }
//! # Ok(())
//! # }
//! ```

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The settings of one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This candidate's identity, unique among the candidates and across restarts (see
    /// [`LeaderConfig::default_identity`]).
    pub identity: String,
    /// How long the others wait, after last seeing the record change, before taking it
    /// over. Default 15 s.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading. Default 10 s.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew. Default 2 s.
    pub retry_period: Duration,
    /// Labels the Lease is created with (the shards' Leases carry theirs, so that they can
    /// be listed together); none by default.
    pub labels: BTreeMap<String, String>,
}

impl LeaderConfig {
    /// A configuration with client-go's default durations: 15 s, 10 s and 2 s.
    pub fn new(
        lease_name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderConfig {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            labels: BTreeMap::new(),
        }
    }

    /// An identity unique to this process: the pod's name (`POD_NAME`, else `HOSTNAME`, else
    /// `vigil`) followed by a random suffix, so that a restarted pod with the same name is a
    /// new candidate and never mistakes the previous incarnation's lease for its own.
    pub fn default_identity() -> String {
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "vigil".to_string());
        format!("{host}_{:08x}", random_u64() as u32)
    }

    /// Checks the durations as client-go does: `lease_duration > renew_deadline >
    /// 1.2 × retry_period`, and every name non-empty.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let bad = |m: String| Err(LeaderError::Config(m));
        if self.lease_name.is_empty() || self.namespace.is_empty() || self.identity.is_empty() {
            return bad("the lease name, namespace and identity must not be empty".into());
        }
        if self.retry_period.is_zero() {
            return bad("retry_period must be positive".into());
        }
        if self.lease_duration <= self.renew_deadline {
            return bad(format!(
                "lease_duration ({:?}) must be longer than renew_deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return bad(format!(
                "renew_deadline ({:?}) must be longer than 1.2 × retry_period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }
}

/// What can go wrong in leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The configuration is invalid.
    #[error("invalid leader election settings: {0}")]
    Config(String),
    /// A request to the API server failed.
    #[error("lease request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Why [`LeaderElector::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The shutdown future completed; the Lease was released if this candidate held it.
    Shutdown,
    /// The `lead` future completed; the Lease was released.
    Finished,
    /// Leadership was lost (renewals failed for `renew_deadline`, or another candidate holds
    /// the Lease). The caller should exit the process.
    Lost,
}

/// A Lease record as last seen, and when (local monotonic clock) it was first seen: what
/// expiry is judged by (see the module's *Clocks*). Shared with [`super::shards`], which
/// judges the liveness of its members' Leases the same way.
#[derive(Debug, Clone)]
pub struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

impl Observed {
    /// A record seen now for the first time.
    pub fn new(spec: LeaseSpec) -> Self {
        Observed {
            spec,
            at: Instant::now(),
        }
    }

    /// Notes the record read now: the clock restarts only when it differs from the last.
    /// Returns whether it changed.
    pub fn update(&mut self, spec: LeaseSpec) -> bool {
        if self.spec == spec {
            return false;
        }
        *self = Observed::new(spec);
        true
    }

    /// The holder named by the record, if any (a released record names nobody).
    pub fn holder(&self) -> Option<&str> {
        self.spec
            .holder_identity
            .as_deref()
            .filter(|h| !h.is_empty())
    }

    /// When the record expires by the local clock: its `leaseDurationSeconds` (`default`
    /// when absent) after it was first seen.
    pub fn expires(&self, default: Duration) -> Instant {
        let duration = self
            .spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(default, Duration::from_secs);
        self.at + duration
    }

    /// Whether the record has not expired by the local clock.
    pub fn valid(&self, default: Duration) -> bool {
        self.expires(default) > Instant::now()
    }
}

/// One candidate of one election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
    leading: watch::Sender<bool>,
}

impl LeaderElector {
    /// A candidate using `client`; fails when the configuration is invalid.
    pub fn new(client: kube::Client, config: LeaderConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            leading: watch::channel(false).0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// A receiver that is `true` while this candidate leads (as far as it knows), for
    /// metrics or for work that should stop as soon as leadership is lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Whether this candidate currently leads.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// The holder of the record last observed, if any.
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed.as_ref().and_then(Observed::holder)
    }

    /// Notes the Lease as read elsewhere (`None`: it does not exist), e.g. by one LIST of
    /// many Leases, so that its expiry is judged from when it was first seen, without a
    /// request of this elector's own.
    pub fn observe_lease(&mut self, lease: Option<&Lease>) {
        match lease {
            None => self.observed = None,
            Some(lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                match &mut self.observed {
                    Some(o) => {
                        o.update(spec);
                    }
                    None => self.observe(spec),
                }
            }
        }
    }

    /// Whether an attempt ([`LeaderElector::try_acquire_or_renew`]) could succeed as far as
    /// the last observation tells: the Lease is missing, released, held by this candidate,
    /// or expired.
    pub fn may_acquire(&self) -> bool {
        self.observed_holder().is_none() || self.observed_self() || !self.observed_valid()
    }

    /// Whether the record last observed names this candidate.
    fn observed_self(&self) -> bool {
        self.observed_holder() == Some(self.config.identity.as_str())
    }

    /// Campaigns until this candidate leads, then runs `lead` while renewing the Lease.
    ///
    /// Returns when `shutdown` completes (releasing the Lease if held), when `lead` completes
    /// (releasing it), or when leadership is lost. In the last two cases `lead` is dropped,
    /// i.e. cancelled at its next `.await`; work it spawned elsewhere should watch the
    /// receiver it is given, which turns `false` first. API errors are logged and retried,
    /// never returned.
    pub async fn run<S, F, Fut>(mut self, shutdown: S, lead: F) -> Ended
    where
        S: Future<Output = ()>,
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let acquired = tokio::select! {
            biased;
            () = &mut shutdown => None,
            at = self.acquire() => Some(at),
        };
        let Some(acquired_at) = acquired else {
            // An attempt cancelled mid-flight may still have landed: release checks.
            self.release_logged().await;
            return Ended::Shutdown;
        };
        tracing::info!(
            lease = %self.config.lease_name,
            identity = %self.config.identity,
            "became leader"
        );
        self.leading.send_replace(true);
        let lead = lead(self.leading.subscribe());
        tokio::pin!(lead);
        let ended = {
            let renew = self.keep_leading(acquired_at);
            tokio::pin!(renew);
            tokio::select! {
                biased;
                () = &mut renew => Ended::Lost,
                () = &mut shutdown => Ended::Shutdown,
                () = &mut lead => Ended::Finished,
            }
        };
        self.leading.send_replace(false);
        if ended == Ended::Lost {
            tracing::error!(
                lease = %self.config.lease_name,
                identity = %self.config.identity,
                "leadership lost"
            );
        } else {
            self.release_logged().await;
        }
        ended
    }

    /// Tries every `retry_period` (with up to 20 % jitter, as client-go) until this
    /// candidate holds the Lease; returns when the successful attempt started.
    async fn acquire(&mut self) -> Instant {
        loop {
            let start = Instant::now();
            match tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(true)) => return start,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot acquire the lease; retrying"),
                Err(_) => tracing::warn!("acquiring the lease timed out; retrying"),
            }
            let jitter = self.config.retry_period.mul_f64(0.2 * unit_random());
            tokio::time::sleep(self.config.retry_period + jitter).await;
        }
    }

    /// Renews every `retry_period`; returns when leadership is lost.
    async fn keep_leading(&mut self, mut last_renewal: Instant) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = last_renewal + self.config.renew_deadline;
            loop {
                let start = Instant::now();
                if start >= deadline {
                    tracing::warn!("could not renew the lease within renew_deadline");
                    return;
                }
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => {
                        last_renewal = start;
                        break;
                    }
                    Ok(Ok(false)) if !self.observed_self() => {
                        tracing::warn!(holder = ?self.observed_holder(), "the lease was taken over");
                        return;
                    }
                    // A 409 on a record that still names this candidate: someone else
                    // touched the Lease (a label, say); read it again.
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the lease; retrying"),
                    Err(_) => {}
                }
                let now = Instant::now();
                tokio::time::sleep_until(deadline.min(now + self.config.retry_period)).await;
            }
        }
    }

    /// One attempt, as client-go's `tryAcquireOrRenew`: reads the Lease, and creates,
    /// renews or takes it over when this candidate may. `Ok(true)` when this candidate holds
    /// the Lease afterwards, `Ok(false)` when another validly holds it or won a race;
    /// errors are those of the API server other than 404 on read and 409 on write.
    ///
    /// Public so that callers can drive the election themselves; [`LeaderElector::run`]
    /// does it for you. It does not change [`LeaderElector::is_leader`].
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = now_micro();
        // Whole seconds, rounded up, so the others never wait less than configured.
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs_f64().ceil() as u64)
            .map_err(|_| LeaderError::Config("lease_duration is too long".into()))?
            .max(1);
        let Some(current) = self.api.get_opt(&self.config.lease_name).await? else {
            let spec = LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    labels: (!self.config.labels.is_empty()).then(|| self.config.labels.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(written) => {
                    self.observe(written.spec.unwrap_or(spec));
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let old = current.spec.clone().unwrap_or_default();
        self.observe_lease(Some(&current));
        let held_by_other = old
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty())
            && !self.observed_self();
        if held_by_other && self.observed_valid() {
            return Ok(false);
        }
        let mut spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: old.lease_transitions,
            ..old.clone()
        };
        if self.observed_self() {
            spec.acquire_time = old.acquire_time.clone();
        } else {
            spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        self.replace(current, spec).await
    }

    /// Replaces the Lease read as `lease` (so with its `resourceVersion`) by one with `spec`,
    /// and observes what the server stored (times truncated to microseconds). `Ok(false)` on
    /// 409 Conflict: the Lease changed since it was read.
    async fn replace(&mut self, mut lease: Lease, spec: LeaseSpec) -> Result<bool, LeaderError> {
        lease.spec = Some(spec.clone());
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(written.spec.unwrap_or(spec));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up if this candidate holds it, so that another takes over at once:
    /// reads it and, when it still names this candidate, replaces it (with the read
    /// `resourceVersion`) by an empty holder and a 1 s duration. `Ok(true)` when released,
    /// `Ok(false)` when it was not held by this candidate (or changed meanwhile).
    pub async fn release(&mut self) -> Result<bool, LeaderError> {
        let Some(lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(false);
        };
        let old = lease.spec.clone().unwrap_or_default();
        if old.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        let now = now_micro();
        let spec = LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..old
        };
        let released = self.replace(lease, spec).await?;
        if released {
            self.leading.send_replace(false);
        }
        Ok(released)
    }

    async fn release_logged(&mut self) {
        match tokio::time::timeout(self.config.renew_deadline, self.release()).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.config.lease_name, "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the lease; it will expire"),
            Err(_) => tracing::warn!("releasing the lease timed out; it will expire"),
        }
    }

    fn observe(&mut self, spec: LeaseSpec) {
        self.observed = Some(Observed::new(spec));
    }

    /// Whether the observed record has not expired by the local clock: it changed less than
    /// its `leaseDurationSeconds` ago (this candidate's `lease_duration` when absent).
    fn observed_valid(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| o.valid(self.config.lease_duration))
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// 64 random bits from the standard library's per-process hash keys (no extra crate).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A random number in [0, 1).
fn unit_random() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_client_go_s_and_valid() {
        let c = LeaderConfig::new("l", "ns", "me");
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn inconsistent_durations_are_refused() {
        let mut c = LeaderConfig::new("l", "ns", "me");
        c.renew_deadline = c.lease_duration;
        assert!(c.validate().is_err());
        let mut c = LeaderConfig::new("l", "ns", "me");
        c.retry_period = Duration::from_secs(9);
        assert!(c.validate().is_err());
        let c = LeaderConfig::new("l", "ns", "");
        assert!(c.validate().is_err());
    }

    #[test]
    fn default_identities_differ() {
        assert_ne!(
            LeaderConfig::default_identity(),
            LeaderConfig::default_identity()
        );
        assert!((0.0..1.0).contains(&unit_random()));
    }
}
