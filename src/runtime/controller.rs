//! `vigil run`: the controller process. It serves /metrics, /healthz and /readyz, elects a
//! leader when asked to, and runs the reconciler while it leads; or, with shards, runs the
//! reconciler all along for the Releases of the shards it holds (see
//! [`crate::cluster::shards`]).

use super::metrics::Metrics;
use crate::api::crd::Release;
use crate::cluster::clock::Clock;
use crate::cluster::committed::Committed;
use crate::cluster::events::Recorder;
use crate::cluster::leader::{Ended, LeaderConfig, LeaderElector};
use crate::cluster::reconciler::{self, Context, Observer};
use crate::cluster::shards::{Ownership, ShardConfig, ShardManager, Transition, shard_of};
use crate::notify::config::NotifyConfig;
use crate::notify::dispatcher::{DeliveryConfig, Dispatcher};
use crate::rollout::Decision;
use crate::runtime::dashboard::Dashboard;
use crate::runtime::dashboard::store::{Evidence, EvidenceObserver, watch_releases};
use crate::runtime::notifications::{FanOut, NotifyObserver};
use crate::runtime::server::{self, ApiOptions, ApiState, ServerState};
use crate::source::prometheus::{Prometheus, PrometheusConfig};
use futures::StreamExt;
use kube::ResourceExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How the controller runs.
pub struct RunConfig {
    /// Where Prometheus is, and how to talk to it.
    pub prometheus: PrometheusConfig,
    /// Where /metrics, /healthz and /readyz are served.
    pub listen: SocketAddr,
    /// Watch one namespace only; `None` watches all.
    pub watch_namespace: Option<String>,
    /// Elect a leader on this Lease; `None` runs without election (one replica only).
    pub leader: Option<LeaderConfig>,
    /// Split the Releases into shards, one Lease each, between the replicas; takes the
    /// place of `leader` when set.
    pub shards: Option<ShardConfig>,
    /// Prometheus queries in flight per analysis.
    pub concurrency: usize,
    /// Reconciles running at once at most (0: no bound).
    pub workers: u16,
    /// How long a Kubernetes API request may wait for its answer before it fails.
    pub kube_timeout: Duration,
    /// How old a point must be to be final: analyses fetch only what follows the last
    /// final point (see [`crate::source::incremental`]).
    pub query_lag: Duration,
    /// The cluster-wide notification receivers (`--notify-config`); per-Release receivers
    /// are sent to either way.
    pub notify_config: Option<std::path::PathBuf>,
    /// The `/v1` API (alerts, canary actions, judge) served beside /metrics.
    pub api: ApiOptions,
    /// The live dashboard at `/`.
    pub dashboard: DashboardOptions,
}

/// The dashboard's settings (`vigil run --dashboard-*`, `--prometheus-ui-url`).
#[derive(Debug, Clone, Default)]
pub struct DashboardOptions {
    /// Show the pages without a credential (read-only unless the API is open too).
    pub insecure_no_auth: bool,
    /// Prometheus's web UI, for links to its graph page.
    pub prometheus_ui: Option<String>,
}

/// Feeds reconciles into the metrics.
struct MetricsObserver(Arc<Metrics>);

impl Observer for MetricsObserver {
    fn reconciled(&self, canary: &Release, decision: &Decision) {
        let ns = canary.namespace().unwrap_or_default();
        self.0.set_canary(
            &ns,
            &canary.name_any(),
            &decision.state,
            decision.world.weight,
        );
    }

    fn done(&self, elapsed: Duration, error: Option<&str>) {
        self.0.reconcile_done(elapsed, error);
    }

    fn analysed(&self, canary: &Release, verdict: &str, scores: &[(String, f64)], took: Duration) {
        self.0.analysis_done(took);
        let ns = canary.namespace().unwrap_or_default();
        let name = canary.name_any();
        if scores.is_empty() {
            self.0.observe_analysis(&ns, &name, verdict, "", None);
        }
        for (template, score) in scores {
            self.0
                .observe_analysis(&ns, &name, verdict, template, Some(*score));
        }
    }

    fn deleted(&self, canary: &Release) {
        self.0
            .forget_canary(&canary.namespace().unwrap_or_default(), &canary.name_any());
    }

    fn watch_failed(&self, kind: &str) {
        self.0.watch_error(kind);
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Runs the controller until SIGINT/SIGTERM, or until leadership is lost (an error: the
/// process should exit and restart as a candidate).
pub async fn run(config: RunConfig) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    let client = super::kube_client::client(config.kube_timeout, metrics.clone()).await?;
    let prometheus = config.prometheus.url.clone();
    // The API's judgements get their own client, so the reconciler's stays its own.
    let api_source = Prometheus::new(config.prometheus.clone())
        .map_err(|e| format!("cannot set up the Prometheus client for {prometheus}: {e}"))?;
    let source = Prometheus::new(config.prometheus)
        .map_err(|e| format!("cannot set up the Prometheus client for {prometheus}: {e}"))?;
    let source = super::source::Observed::new(source, metrics.clone());
    let cluster_receivers = match &config.notify_config {
        Some(path) => NotifyConfig::load(path)?.rules(),
        None => Vec::new(),
    };
    let dispatcher = Dispatcher::start(
        DeliveryConfig::default(),
        Some(client.clone()),
        Some(metrics.clone()),
    )?;
    if !config.api.auth.configured() && !config.api.auth.insecure_no_auth {
        tracing::warn!(
            "the /v1 API answers 503: give --api-token-file (or VIGIL_API_TOKEN) or --api-hmac-secret-file to enable it"
        );
    }
    let auth = config.api.auth.clone();
    let mut api = ApiState::new(client.clone(), Arc::new(api_source), Default::default())
        .with_options(config.api);
    api.watch_namespace = config.watch_namespace.clone();
    api.judge_queries = config.concurrency.max(1);
    let evidence = Arc::new(Evidence::new());
    let dashboard = Dashboard {
        releases: watch_releases(
            client.clone(),
            config.watch_namespace.as_deref(),
            Some(metrics.clone()),
        ),
        evidence: Some(evidence.clone()),
        auth,
        insecure_no_auth: config.dashboard.insecure_no_auth,
        prometheus_ui: config.dashboard.prometheus_ui.clone(),
        clock: Clock::wall(),
        poll_ms: crate::runtime::dashboard::pages::POLL_MS,
    };
    let state = ServerState::new(metrics.clone())
        .with_api(api)
        .with_dashboard(dashboard);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        server::router(state.clone()),
        async move {
            let _ = server_stopped.await;
        },
    ));
    tracing::info!(listen = %config.listen, prometheus = %prometheus, "vigil controller starting");

    let identity = config
        .shards
        .as_ref()
        .map(|s| &s.base)
        .or(config.leader.as_ref())
        .map(|l| l.identity.clone())
        .or_else(|| std::env::var("POD_NAME").ok());
    // With shards, the manager owns the Leases and tells which Releases are this replica's;
    // a shard gained asks for every Release to be reconciled (the others' are skipped).
    let (gained, reconcile_all) = tokio::sync::mpsc::unbounded_channel::<()>();
    let manager = match &config.shards {
        None => None,
        Some(shards) => {
            let group = format!("{}/{}-*", shards.base.namespace, shards.base.lease_name);
            let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = shards.shards;
            let gauge = metrics.clone();
            let on_transition = Arc::new(move |shard: u32, transition: Transition| {
                use std::sync::atomic::Ordering;
                let now = match transition {
                    Transition::Acquired => held.fetch_add(1, Ordering::SeqCst) + 1,
                    Transition::Released | Transition::Lost => {
                        held.fetch_sub(1, Ordering::SeqCst).saturating_sub(1)
                    }
                };
                gauge.shard_transition(now, transition.label());
                if transition != Transition::Acquired {
                    // The new holder reports these Releases; stale series here would show
                    // them stuck where this replica left them.
                    gauge.forget_canaries_where(|ns, name| shard_of(ns, name, count) == shard);
                }
                tracing::debug!(shard, transition = transition.label(), held = now, "shards");
                if transition == Transition::Acquired {
                    let _ = gained.send(());
                }
            });
            Some(
                ShardManager::new(client.clone(), shards.clone(), on_transition)
                    .map_err(|e| format!("shards on the Leases {group}: {e}"))?,
            )
        }
    };
    let ownership = manager
        .as_ref()
        .map_or_else(Ownership::everything, ShardManager::ownership);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            reconciler::reporter(identity),
            Clock::wall(),
        ),
        client: client.clone(),
        source,
        concurrency: config.concurrency.max(1),
        observer: Arc::new(FanOut(vec![
            Arc::new(MetricsObserver(metrics.clone())),
            Arc::new(NotifyObserver::new(dispatcher, cluster_receivers)),
            Arc::new(EvidenceObserver(evidence)),
        ])),
        clock: Clock::wall(),
        http: reqwest::Client::new(),
        ownership,
        committed: Committed::new(config.query_lag),
        workers: config.workers,
    });
    let ready = state.clone();
    // Runs the reconciler until `stop` turns false; `triggers` ask for every Release to be
    // reconciled (a shard gained).
    let controller = |stop: tokio::sync::watch::Receiver<bool>,
                      triggers: futures::stream::BoxStream<'static, ()>| {
        let ctx = ctx.clone();
        let namespace = config.watch_namespace.clone();
        async move {
            let mut stop = stop;
            reconciler::run_triggered(
                ctx,
                namespace,
                async move {
                    // Stop when leadership (or the process) ends.
                    while *stop.borrow_and_update() {
                        if stop.changed().await.is_err() {
                            break;
                        }
                    }
                },
                Box::new(move || ready.set_ready(true)),
                triggers,
            )
            .await;
        }
    };
    let no_triggers = || futures::stream::pending().boxed();
    let result = match (manager, config.leader) {
        (Some(manager), _) => {
            let (stop_manager, manager_stopped) = tokio::sync::oneshot::channel::<()>();
            let manager = tokio::spawn(manager.run(async move {
                let _ = manager_stopped.await;
            }));
            let (keep, stop) = tokio::sync::watch::channel(true);
            let mut reconcile_all = reconcile_all;
            let triggers = futures::stream::poll_fn(move |cx| reconcile_all.poll_recv(cx));
            let mut reconciler = tokio::spawn(controller(stop, triggers.boxed()));
            tokio::select! {
                _ = &mut reconciler => {}
                () = shutdown_signal() => {
                    // Reconciles in flight finish before the shards are released.
                    let _ = keep.send(false);
                    let _ = tokio::time::timeout(Duration::from_secs(10), &mut reconciler).await;
                }
            }
            reconciler.abort();
            let _ = stop_manager.send(());
            let _ = manager.await;
            Ok(())
        }
        (None, None) => {
            metrics.set_leader(true);
            let (keep, stop) = tokio::sync::watch::channel(true);
            tokio::select! {
                () = controller(stop, no_triggers()) => Ok(()),
                () = shutdown_signal() => {
                    let _ = keep.send(false);
                    Ok(())
                }
            }
        }
        (None, Some(leader)) => {
            let lease = format!("{}/{}", leader.namespace, leader.lease_name);
            let elector = LeaderElector::new(client, leader)
                .map_err(|e| format!("leader election on Lease {lease}: {e}"))?;
            let mut leading = elector.subscribe();
            let gauge = metrics.clone();
            tokio::spawn(async move {
                while leading.changed().await.is_ok() {
                    gauge.set_leader(*leading.borrow());
                }
            });
            let lead = |stop| controller(stop, no_triggers());
            match elector.run(shutdown_signal(), lead).await {
                Ended::Lost => Err(format!(
                    "lost the leadership of Lease {lease}; exiting so that a new candidate starts"
                )),
                Ended::Shutdown | Ended::Finished => Ok(()),
            }
        }
    };
    state.set_ready(false);
    let _ = stop_server.send(());
    let _ = server.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::ReleaseSpec;
    use crate::rollout::State;

    #[test]
    fn a_deleted_release_leaves_no_series_behind() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_canary("shop", "web", &State::default(), 10);
        metrics.set_canary("shop", "api", &State::default(), 0);
        let spec: ReleaseSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"name": "web"},
            "service": {"name": "web"},
            "routing": {"replicas": {}},
        }))
        .expect("spec");
        let mut web = Release::new("web", spec);
        web.metadata.namespace = Some("shop".into());
        MetricsObserver(metrics.clone()).deleted(&web);
        let text = metrics.encode();
        assert!(!text.contains("name=\"web\""), "{text}");
        assert!(text.contains("name=\"api\""), "{text}");
    }
}
