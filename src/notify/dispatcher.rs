//! Delivery, apart from reconciliation.
//!
//! [`Dispatcher::enqueue`] is synchronous and never waits: it de-duplicates, then
//! `try_send`s into a bounded queue; a full queue drops the notification with a log line
//! and `vigil_notifications_total{outcome="dropped"}`. A background task drains the queue
//! and delivers each notification in its own task (at most `concurrency` at once), reading
//! the receiver's secrets, then POSTing with a timeout and retrying connection errors,
//! timeouts, 408, 429 and 5xx with exponential backoff and jitter, a bounded number of
//! times. A receiver that hangs or fails therefore costs a delivery slot, never a reconcile.

use super::config::{Target, resolve};
use super::{HttpRequest, Notification, Verdict};
use crate::stats::random::Rng;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// How deliveries run.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Notifications waiting at most; more are dropped.
    pub queue: usize,
    /// Deliveries in flight at most.
    pub concurrency: usize,
    /// The time one HTTP attempt may take, answer included.
    pub timeout: Duration,
    /// Attempts per notification, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles after each failed attempt.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// The same event of a Release to the same receiver is sent once within this window.
    pub dedup_window: Duration,
}

impl Default for DeliveryConfig {
    /// 256 queued, 8 in flight, 5s timeout, 5 attempts, backoff 1s doubling up to 30s,
    /// 10 minutes of de-duplication: a dead receiver is given up within about a minute.
    fn default() -> Self {
        DeliveryConfig {
            queue: 256,
            concurrency: 8,
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            dedup_window: Duration::from_secs(600),
        }
    }
}

/// What [`Dispatcher::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued for delivery.
    Queued,
    /// The same notification went to this receiver within the de-duplication window.
    Deduplicated,
    /// The queue was full (or the delivery task gone): dropped.
    Dropped,
}

struct Job {
    target: Target,
    notification: Notification,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DedupKey {
    target: Target,
    namespace: String,
    name: String,
    event: super::EventName,
    message: String,
}

/// Counts delivery outcomes, e.g. into the controller's `vigil_notifications_total`.
pub trait DeliveryCounter: Send + Sync {
    /// One notification to `provider` (`slack`, ...) ended as `outcome` (`sent`, `failed`,
    /// `dropped` or `deduplicated`).
    fn count(&self, provider: &str, outcome: &str);
}

struct Shared {
    config: DeliveryConfig,
    client: reqwest::Client,
    kube: Option<kube::Client>,
    metrics: Option<Arc<dyn DeliveryCounter>>,
    seed: Mutex<Rng>,
}

impl Shared {
    fn count(&self, provider: &str, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.count(provider, outcome);
        }
    }
}

/// Sends notifications in the background. Cheap to clone; the delivery task ends when the
/// last clone is dropped and the queue is drained.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Job>,
    seen: Arc<Mutex<HashMap<DedupKey, Instant>>>,
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// Starts the delivery task on the current tokio runtime. `kube` reads the Secrets of
    /// per-Release receivers; `metrics` counts outcomes in `vigil_notifications_total`.
    pub fn start(
        config: DeliveryConfig,
        kube: Option<kube::Client>,
        metrics: Option<Arc<dyn DeliveryCounter>>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client for notifications: {e}"))?;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        let shared = Arc::new(Shared {
            config,
            client,
            kube,
            metrics,
            seed: Mutex::new(Rng::new(seed)),
        });
        tokio::spawn(drain(rx, shared.clone()));
        Ok(Dispatcher {
            tx,
            seen: Arc::default(),
            shared,
        })
    }

    /// Queues `notification` for `target` without waiting. Never blocks, whatever the
    /// receiver does.
    pub fn enqueue(&self, target: Target, notification: Notification) -> Enqueued {
        let provider = target.provider.as_str();
        let key = DedupKey {
            target: target.clone(),
            namespace: notification.namespace.clone(),
            name: notification.name.clone(),
            event: notification.event,
            message: notification.message.clone(),
        };
        let window = self.shared.config.dedup_window;
        let now = Instant::now();
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < window)
            {
                self.shared.count(provider, "deduplicated");
                return Enqueued::Deduplicated;
            }
        }
        let canary = format!("{}/{}", notification.namespace, notification.name);
        let event = notification.event.as_str();
        let described = target.describe();
        match self.tx.try_send(Job {
            target,
            notification,
        }) {
            Ok(()) => {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.len() >= 1024 {
                    seen.retain(|_, at| now.duration_since(*at) < window);
                }
                seen.insert(key, now);
                Enqueued::Queued
            }
            Err(e) => {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the notification queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the delivery task has stopped",
                };
                tracing::warn!(provider, canary, event, receiver = %described, "notification dropped: {why}");
                self.shared.count(provider, "dropped");
                Enqueued::Dropped
            }
        }
    }
}

async fn drain(mut rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
    while let Some(job) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            deliver(&shared, job).await;
            drop(permit);
        });
    }
}

/// The wait before attempt `attempt + 1`: the backoff doubled `attempt - 1` times, capped,
/// with "equal jitter" (half fixed, half random) so that receivers are not hit in waves.
fn backoff(config: &DeliveryConfig, attempt: u32, rng: &Mutex<Rng>) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let full = config
        .initial_backoff
        .saturating_mul(factor)
        .min(config.max_backoff);
    let random = rng.lock().map(|mut r| r.uniform()).unwrap_or(0.5);
    full / 2 + full.mul_f64(random.clamp(0.0, 1.0) / 2.0)
}

enum Answer {
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    Error(Verdict),
}

async fn send(client: &reqwest::Client, request: HttpRequest) -> Answer {
    let mut builder = client
        .post(request.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(request.body);
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.text().await.unwrap_or_default();
            Answer::Status {
                status,
                body,
                retry_after,
            }
        }
        // The URL carries the receiver's token: never let it into a message.
        Err(e) => {
            let retry = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
            let e = e.without_url();
            let text = format!("{e}{}", source_chain(&e));
            if retry {
                Answer::Error(Verdict::Retry(text))
            } else {
                Answer::Error(Verdict::Refused(text))
            }
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// Delivers one job, then logs and counts the outcome.
async fn deliver(shared: &Shared, job: Job) {
    let name = job.target.provider.as_str();
    let canary = format!("{}/{}", job.notification.namespace, job.notification.name);
    let event = job.notification.event.as_str();
    let receiver = job.target.describe();
    match attempts(shared, &job).await {
        Ok(attempt) => {
            tracing::debug!(provider = name, canary, event, attempt, "notification sent");
            shared.count(name, "sent");
        }
        Err(why) => {
            tracing::warn!(
                provider = name,
                canary,
                event,
                receiver,
                "notification not sent: {why}"
            );
            shared.count(name, "failed");
        }
    }
}

/// Reads the secrets, then tries until delivered (the attempt that succeeded), refused, or
/// out of attempts (why not).
async fn attempts(shared: &Shared, job: &Job) -> Result<u32, String> {
    let provider = job.target.provider.provider(job.target.format);
    let secrets = resolve(&job.target.secrets, shared.kube.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let config = &shared.config;
    let attempts = config.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        // Built again for each attempt: signatures carry the time of sending.
        let request = provider
            .request(&job.notification, &secrets, Utc::now())
            .map_err(|e| e.to_string())?;
        let (verdict, retry_after) =
            match tokio::time::timeout(config.timeout, send(&shared.client, request)).await {
                Err(_) => (
                    Verdict::Retry(format!("no answer within {:?}", config.timeout)),
                    None,
                ),
                Ok(Answer::Error(v)) => (v, None),
                Ok(Answer::Status {
                    status,
                    body,
                    retry_after,
                }) => (provider.judge(status, &body), retry_after),
            };
        match verdict {
            Verdict::Delivered => return Ok(attempt),
            Verdict::Refused(why) => return Err(format!("refused, not retried: {why}")),
            Verdict::Retry(why) if attempt >= attempts => {
                return Err(format!("giving up after {attempts} attempts: {why}"));
            }
            Verdict::Retry(why) => {
                let wait = retry_after
                    .map(|r| r.min(config.max_backoff))
                    .unwrap_or_else(|| backoff(config, attempt, &shared.seed));
                tracing::info!(
                    provider = provider.name(),
                    canary = format!("{}/{}", job.notification.namespace, job.notification.name),
                    event = job.notification.event.as_str(),
                    attempt,
                    "notification failed, retrying in {wait:?}: {why}"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let config = DeliveryConfig::default();
        let rng = Mutex::new(Rng::new(1));
        for attempt in 1..=8 {
            let full = Duration::from_secs(1)
                .saturating_mul(2u32.pow(attempt - 1))
                .min(Duration::from_secs(30));
            let wait = backoff(&config, attempt, &rng);
            assert!(wait >= full / 2 && wait <= full, "{attempt}: {wait:?}");
        }
    }
}
