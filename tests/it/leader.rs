//! Leader election (`vigil::cluster::leader`) against the fake API server: candidates on one
//! Lease, with short durations (lease 1 s, renew deadline 0.6 s, retry 0.2 s).

use crate::common::fake_kube::{FakeKube, Res};
use k8s_openapi::api::coordination::v1::Lease;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vigil::cluster::leader::{Ended, LeaderConfig, LeaderElector};

const LEASE: &str = "vigil-test";
const LEASE_DURATION: Duration = Duration::from_millis(1000);
const RENEW_DEADLINE: Duration = Duration::from_millis(600);
const RETRY_PERIOD: Duration = Duration::from_millis(200);
/// Allowance for request latency, the 20 % acquire jitter and a loaded machine.
const SLACK: Duration = Duration::from_millis(400);

fn config(identity: &str) -> LeaderConfig {
    let mut c = LeaderConfig::new(LEASE, "default", identity);
    c.lease_duration = LEASE_DURATION;
    c.renew_deadline = RENEW_DEADLINE;
    c.retry_period = RETRY_PERIOD;
    c
}

fn elector(fake: &FakeKube, identity: &str) -> LeaderElector {
    LeaderElector::new(fake.client(), config(identity)).expect("valid config")
}

fn lease(fake: &FakeKube) -> Option<Lease> {
    fake.get_as::<Lease>("default", LEASE)
}

fn holder(fake: &FakeKube) -> Option<String> {
    lease(fake)
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

fn transitions(fake: &FakeKube) -> i32 {
    lease(fake)
        .and_then(|l| l.spec)
        .and_then(|s| s.lease_transitions)
        .unwrap_or(-1)
}

/// Counts candidates whose `lead` future is running, and the most at once.
#[derive(Default)]
struct Leaders {
    now: AtomicUsize,
    most: AtomicUsize,
}

struct Leading(Arc<Leaders>);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A candidate running `LeaderElector::run` until its shutdown sender is used or dropped.
struct Candidate {
    identity: String,
    leading: watch::Receiver<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Ended>,
}

impl Candidate {
    fn start(fake: &FakeKube, identity: &str, leaders: &Arc<Leaders>) -> Self {
        let elector = elector(fake, identity);
        let leading = elector.subscribe();
        let (tx, rx) = oneshot::channel::<()>();
        let leaders = leaders.clone();
        let task = tokio::spawn(elector.run(
            async {
                let _ = rx.await;
            },
            move |_leading| async move {
                let n = leaders.now.fetch_add(1, Ordering::SeqCst) + 1;
                leaders.most.fetch_max(n, Ordering::SeqCst);
                let _guard = Leading(leaders);
                std::future::pending::<()>().await;
            },
        ));
        Candidate {
            identity: identity.to_string(),
            leading,
            shutdown: Some(tx),
            task,
        }
    }

    fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    async fn stop(mut self) -> Ended {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic")
    }
}

/// Waits until exactly one candidate leads; returns its index.
async fn one_leader(fake: &FakeKube, candidates: &[Candidate], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let leading: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].is_leader())
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if let [i] = leading[..]
            && holder(fake).as_deref() == Some(candidates[i].identity.as_str())
        {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "no leader within {within:?}; lease holder {:?}",
            holder(fake)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_three_leads_and_keeps_the_lease() {
    let fake = FakeKube::start().await;
    let leaders = Arc::new(Leaders::default());
    let candidates: Vec<Candidate> = ["a", "b", "c"]
        .iter()
        .map(|id| Candidate::start(&fake, id, &leaders))
        .collect();
    let first = one_leader(&fake, &candidates, Duration::from_secs(3)).await;
    // Several lease durations: the leader renews, nobody else takes over.
    let until = Instant::now() + 3 * LEASE_DURATION;
    while Instant::now() < until {
        assert_eq!(
            one_leader(&fake, &candidates, Duration::from_secs(1)).await,
            first
        );
        assert!(leaders.now.load(Ordering::SeqCst) <= 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leaders.most.load(Ordering::SeqCst), 1);
    assert_eq!(transitions(&fake), 0, "created once, never taken over");
    let spec = lease(&fake).and_then(|l| l.spec).expect("lease spec");
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert!(spec.renew_time.is_some() && spec.acquire_time.is_some());
    for c in candidates {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once() {
    let fake = FakeKube::start().await;
    let leaders = Arc::new(Leaders::default());
    let mut candidates: Vec<Candidate> = ["a", "b"]
        .iter()
        .map(|id| Candidate::start(&fake, id, &leaders))
        .collect();
    let first = one_leader(&fake, &candidates, Duration::from_secs(3)).await;
    let leader = candidates.remove(first);
    let stopped = Instant::now();
    assert_eq!(leader.stop().await, Ended::Shutdown);
    // Released: empty holder, so the other need not wait for the lease to expire.
    let next = one_leader(&fake, &candidates, Duration::from_secs(3)).await;
    let took = stopped.elapsed();
    assert!(
        took < RETRY_PERIOD + SLACK && took < LEASE_DURATION,
        "took over {took:?} after the release"
    );
    assert_eq!(transitions(&fake), 1);
    assert_eq!(leaders.most.load(Ordering::SeqCst), 1);
    assert_eq!(candidates.remove(next).stop().await, Ended::Shutdown);
    assert_eq!(holder(&fake), None, "the last leader released too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_renewing_is_replaced_after_the_lease_duration() {
    let fake = FakeKube::start().await;
    let leaders = Arc::new(Leaders::default());
    let mut candidates: Vec<Candidate> = ["a", "b", "c"]
        .iter()
        .map(|id| Candidate::start(&fake, id, &leaders))
        .collect();
    let first = one_leader(&fake, &candidates, Duration::from_secs(3)).await;
    let crashed = candidates.remove(first);
    let old_holder = crashed.identity.clone();
    // A crash: the task is gone without releasing anything.
    crashed.task.abort();
    let stopped = Instant::now();
    assert_eq!(holder(&fake).as_deref(), Some(old_holder.as_str()));
    let next = one_leader(&fake, &candidates, Duration::from_secs(5)).await;
    let took = stopped.elapsed();
    assert_ne!(candidates[next].identity, old_holder);
    assert!(
        took <= LEASE_DURATION + RETRY_PERIOD + SLACK,
        "took over {took:?} after the leader stopped"
    );
    // Not before the lease could have expired: the others saw its last renewal at most one
    // retry period before it stopped.
    assert!(
        took >= LEASE_DURATION - RETRY_PERIOD - Duration::from_millis(50),
        "took over after only {took:?}"
    );
    assert_eq!(transitions(&fake), 1);
    for c in candidates {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_gives_up_before_the_lease_expires() {
    let fake = FakeKube::start().await;
    let leaders = Arc::new(Leaders::default());
    let candidate = Candidate::start(&fake, "a", &leaders);
    one_leader(
        &fake,
        std::slice::from_ref(&candidate),
        Duration::from_secs(3),
    )
    .await;
    // Every renewal fails from now on, as in a partition from the API server.
    fake.faults().fail_next("PUT", "leases", None, 500, 1000);
    let broken = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), candidate.task)
        .await
        .expect("run returns")
        .expect("no panic");
    let took = broken.elapsed();
    assert_eq!(ended, Ended::Lost);
    assert!(!*candidate.leading.borrow(), "is_leader turned false");
    assert_eq!(leaders.now.load(Ordering::SeqCst), 0, "lead was dropped");
    // It stopped before another candidate, having seen its last renewal, could take over.
    assert!(
        took < LEASE_DURATION,
        "gave up only {took:?} after the renewals began to fail"
    );
    assert!(
        took >= RENEW_DEADLINE - RETRY_PERIOD,
        "gave up after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_candidates_never_both_win() {
    let fake = FakeKube::start().await;
    // Creation race: both read 404 and create; one gets 409 AlreadyExists.
    let mut a = elector(&fake, "a");
    let mut b = elector(&fake, "b");
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert!(ra ^ rb, "exactly one wins the creation: a {ra}, b {rb}");
    // Takeover races on a released Lease: both may read the same resourceVersion and replace
    // with it; the API server accepts one write and answers the other 409.
    for round in 0..10 {
        let winner = if holder(&fake).as_deref() == Some("a") {
            &mut a
        } else {
            &mut b
        };
        assert!(winner.release().await.expect("release"), "round {round}");
        assert_eq!(holder(&fake), None);
        let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
        let (ra, rb) = (ra.expect("a"), rb.expect("b"));
        assert!(ra ^ rb, "round {round}: exactly one wins: a {ra}, b {rb}");
        let expected = if ra { "a" } else { "b" };
        assert_eq!(holder(&fake).as_deref(), Some(expected));
    }
    // A deterministic conflict: the write of a candidate taking over a released lease is
    // answered 409, so it does not lead, and no error surfaces.
    let current = holder(&fake).expect("held");
    let (winner, other) = if current == "a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(winner.release().await.expect("release"));
    fake.faults().fail_next("PUT", "leases", None, 409, 1);
    assert!(
        !other
            .try_acquire_or_renew()
            .await
            .expect("409 is not an error")
    );
    assert_eq!(holder(&fake), None);
    assert!(other.try_acquire_or_renew().await.expect("acquire"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_is_respected_until_it_expires() {
    let fake = FakeKube::start().await;
    let mut a = elector(&fake, "a");
    let mut b = elector(&fake, "b");
    assert!(a.try_acquire_or_renew().await.expect("a"));
    // b has just seen the record: it must wait a whole lease duration from now, whatever
    // renewTime says.
    assert!(!b.try_acquire_or_renew().await.expect("b"));
    assert_eq!(b.observed_holder(), Some("a"));
    tokio::time::sleep(LEASE_DURATION / 2).await;
    assert!(!b.try_acquire_or_renew().await.expect("b"));
    tokio::time::sleep(LEASE_DURATION / 2 + Duration::from_millis(100)).await;
    assert!(b.try_acquire_or_renew().await.expect("b takes over"));
    assert_eq!(holder(&fake).as_deref(), Some("b"));
    assert_eq!(transitions(&fake), 1);
    // a now reads b's record and does not take it back.
    assert!(!a.try_acquire_or_renew().await.expect("a"));
    assert!(!a.release().await.expect("release"), "a does not hold it");
    // The Lease is a plain object: another client may read it.
    assert!(fake.get(&Res::of::<Lease>(), "default", LEASE).is_some());
}
