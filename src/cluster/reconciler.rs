//! The reconciler: observe the Release and its Deployments, run the analysis that is due,
//! ask the state machine, converge the cluster, then record status and events.
//!
//! Status is written with the resourceVersion read at the start, so a concurrent change
//! (an operator's request, another controller) makes the write fail with 409 and the
//! reconcile runs again from fresh state. Because the world is derived from status alone
//! and applied idempotently, running again repeats nothing.

use super::analysis::{self, AnalysisInput};
use super::clock::Clock;
use super::events::Recorder;
use super::report;
use super::routers::{self, RouteContext};
use super::shards::Ownership;
use super::world::{self, ApplyError, Targets, api_err};
use crate::api::crd::{Condition, Release, ReleaseStatus};
use crate::api::plan::{self, canary_deployment_name, canary_service_name};
use crate::api::status::StateV1alpha1;
use crate::rollout::machine::{analysis_due, decide, gates_due};
use crate::rollout::{Decision, Observation, Plan, State, StepAt};
use crate::source::MetricSource;
use crate::source::incremental::Incremental;
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every reconcile shares.
pub struct Context<S> {
    /// The cluster.
    pub client: kube::Client,
    /// Where metrics come from.
    pub source: S,
    /// Records Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus queries in flight at most, per analysis.
    pub concurrency: usize,
    /// Hooks for metrics and notifications.
    pub observer: Arc<dyn Observer>,
    /// The time.
    pub clock: Clock,
    /// The HTTP client for release gates.
    pub http: reqwest::Client,
    /// Which Releases this replica reconciles: all of them, or those of the shards it holds
    /// (see [`super::shards`]).
    pub ownership: Ownership,
    /// The points each Release's analyses have fetched, so that the next fetches only what
    /// is new (see [`super::committed`]).
    pub committed: super::committed::Committed,
    /// Reconciles running at once at most (a Release is never reconciled twice at once);
    /// 0 for no bound.
    pub workers: u16,
}

impl<S> Context<S> {
    /// Whether this replica may still write for `canary`: checked right before the world
    /// and status writes, so that a replica that lost the Release's shard mid-reconcile
    /// leaves it to the new holder. Logs when it may not.
    fn may_write(&self, canary: &Release) -> bool {
        let ns = canary.namespace().unwrap_or_default();
        let name = canary.name_any();
        let owned = self.ownership.owns(&ns, &name);
        if !owned {
            tracing::info!(canary = %name, namespace = %ns, "the Release's shard was given up mid-reconcile: not writing");
        }
        owned
    }
}

/// Reconciles at once by default (`vigil run --workers`): enough to keep a thousand
/// Releases on 1-minute intervals moving (a reconcile mostly waits on the API server and
/// Prometheus), few enough that their buffers do not pile up when many are due together.
pub const DEFAULT_WORKERS: u16 = 32;

/// Told about every reconcile, for metrics and notifications.
pub trait Observer: Send + Sync {
    /// A Release's new state and the events of this reconcile.
    fn reconciled(&self, canary: &Release, decision: &Decision) {
        let _ = (canary, decision);
    }
    /// A reconcile finished, with its duration and error kind if it failed.
    fn done(&self, elapsed: Duration, error: Option<&str>) {
        let _ = (elapsed, error);
    }
    /// An analysis ran: its verdict, each template's score, and how long it took.
    fn analysed(&self, canary: &Release, verdict: &str, scores: &[(String, f64)], took: Duration) {
        let _ = (canary, verdict, scores, took);
    }
    /// A Release is being deleted: forget what is kept about it.
    fn deleted(&self, canary: &Release) {
        let _ = canary;
    }
    /// A watch of the controller failed (one of [`WATCH_ERROR_KINDS`]); it restarts by
    /// itself, after a back-off.
    fn watch_failed(&self, kind: &str) {
        let _ = kind;
    }
    /// A reconcile's decision under `plan`, at the controller's time `now`, with the
    /// reports of the analysis it ran (empty when none ran): what the dashboard keeps.
    fn decided(
        &self,
        canary: &Release,
        plan: &Plan,
        decision: &Decision,
        judged: &[crate::analysis::Judged],
        now: chrono::DateTime<Utc>,
    ) {
        let _ = (canary, plan, decision, judged, now);
    }
}

/// An observer that does nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Why a reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes call failed, or the world could not be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Adding or removing the finalizer failed, or the clean-up did.
    #[error(transparent)]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
}

/// Every label [`Error::kind`] gives, for the metrics that count failed reconciles.
pub const ERROR_KINDS: [&str; 5] = ["conflict", "api", "router", "apply", "finalizer"];

impl Error {
    /// Whether the error is a 409 Conflict, whose remedy is a quick retry.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Apply(e) => e.is_conflict(),
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.is_conflict(),
                _ => false,
            },
        }
    }

    /// A short label for metrics, one of [`ERROR_KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Apply(e) if e.is_conflict() => "conflict",
            Error::Apply(ApplyError::Api { .. }) => "api",
            Error::Apply(ApplyError::Router(_)) => "router",
            Error::Apply(_) => "apply",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.kind(),
                _ => "finalizer",
            },
        }
    }
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str, old: &[Condition]) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = old.iter().find(|c| c.type_ == type_);
    let since = match previous {
        Some(p) if p.status == status => p.last_transition_time,
        _ => Some(Utc::now()),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
    }
}

/// Writes status with the resourceVersion that was read: a concurrent change gives 409.
async fn write_status(
    api: &Api<Release>,
    canary: &Release,
    status: ReleaseStatus,
) -> Result<(), Error> {
    if canary.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = canary.clone();
    updated.status = Some(status);
    updated.metadata.managed_fields = None;
    api.replace_status(&canary.name_any(), &PostParams::default(), &updated)
        .await
        .map_err(api_err(format!(
            "Release {}/{}",
            canary.namespace().unwrap_or_default(),
            canary.name_any()
        )))?;
    Ok(())
}

/// [`write_status`] after the world was changed for it: an API error that may pass (5xx,
/// a timeout, a lost connection; 429s are already retried by the client) is tried again,
/// twice, 0.5 s and 1 s later. The router is then a step ahead of the stored status, and
/// the next reconcile, deciding from the older status, would move the traffic back a step
/// (70% -> 40% -> 70%) until its analysis passed again: the soak test's API faults showed
/// it. A 409 is not retried (the Release changed: the next reconcile decides afresh).
/// An abort, recorded before the world is changed for it, is tried again the same way: a
/// lost abort would be decided afresh, and delayed if the next analysis found no data.
async fn write_status_after_world(
    api: &Api<Release>,
    canary: &Release,
    status: ReleaseStatus,
) -> Result<(), Error> {
    let mut attempt = 0u32;
    loop {
        match write_status(api, canary, status.clone()).await {
            Err(e) if attempt < 2 && is_transient(&e) => {
                attempt += 1;
                tracing::warn!(
                    canary = %canary.name_any(),
                    namespace = %canary.namespace().unwrap_or_default(),
                    attempt,
                    "the status write after a change of the world failed, trying again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500) * attempt).await;
            }
            result => return result,
        }
    }
}

/// Whether a failed Kubernetes call may succeed if made again: a 5xx or 429 answer, or no
/// answer at all (a timeout, a lost connection).
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Apply(ApplyError::Api { source, .. }) => match source {
            kube::Error::Api(status) => status.code >= 500 || status.code == 429,
            kube::Error::Service(_) | kube::Error::HyperError(_) => true,
            _ => false,
        },
        _ => false,
    }
}

/// Records a problem that needs a person (bad spec, missing target) in status, and looks
/// again later.
async fn not_ready<S>(
    ctx: &Context<S>,
    api: &Api<Release>,
    canary: &Release,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    if !ctx.may_write(canary) {
        return Ok(Action::await_change());
    }
    let mut status = canary.status.clone().unwrap_or_default();
    status.conditions = vec![condition(
        "Ready",
        false,
        reason,
        &message,
        &status.conditions,
    )];
    status.state.message = message;
    status.observed_generation = canary.metadata.generation;
    write_status(api, canary, status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The finalizer that lets vigil undo its changes when a Release is deleted.
pub const FINALIZER: &str = "vigil.dev/cleanup";

/// One reconcile of one Release.
pub async fn reconcile<S: MetricSource>(
    canary: Arc<Release>,
    ctx: Arc<Context<S>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = canary.namespace().unwrap_or_default();
    // Another replica's shard: nothing to do here (not even the finalizer). Gaining the
    // shard reconciles its Releases again. While `_busy` lives, a shard given up meanwhile
    // keeps its Lease, so the next holder does not start before this reconcile ends.
    let Some(_busy) = ctx.ownership.begin(&ns, &canary.name_any()) else {
        return Ok(Action::await_change());
    };
    let api: Api<Release> = Api::namespaced(ctx.client.clone(), &ns);
    let result = kube::runtime::finalizer::finalizer(&api, FINALIZER, canary, |event| async {
        match event {
            kube::runtime::finalizer::Event::Apply(c) => reconcile_inner(&c, &ctx).await,
            kube::runtime::finalizer::Event::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.observer
        .done(started.elapsed(), result.as_ref().err().map(Error::kind));
    result
}

/// The HorizontalPodAutoscaler scaling Deployment `target`, if one does (see
/// [`crate::api::autoscaler`]).
async fn autoscaler(
    client: &kube::Client,
    ns: &str,
    target: &str,
    target_replicas: i32,
) -> Result<Option<crate::rollout::Autoscaler>, Error> {
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let list = hpas
        .list(&Default::default())
        .await
        .map_err(api_err(format!("HorizontalPodAutoscalers in {ns}")))?;
    Ok(crate::api::autoscaler::of_target(
        &list.items,
        target,
        target_replicas,
    ))
}

/// A deleted Release: traffic back to stable, the stable Service unpinned, the canary's
/// objects removed, and the Deployment handed back to Kubernetes, un-paused, unless its
/// template is a release vigil has not judged (then it stays paused, with a log line, so
/// deleting a Release never rolls out an unjudged version).
async fn cleanup<S: MetricSource>(cached: &Release, ctx: &Context<S>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    ctx.observer.deleted(cached);
    ctx.committed.forget(cached);
    ctx.recorder.forget(&cached.object_ref(&()));
    if cached.spec.dry_run {
        return Ok(Action::await_change());
    }
    // The watch cache can still hold a Release whose clean-up already ran and whose
    // finalizer is gone: cleaning up again would re-adopt the Deployment (world::apply)
    // for a moment before handing it back. Only the API server's copy tells; it is also
    // the one with a status (the cache keeps none, see [`slim_for_reconcile`]).
    let canaries: Api<Release> = Api::namespaced(ctx.client.clone(), &ns);
    let current = canaries
        .get_opt(&name)
        .await
        .map_err(api_err(format!("Release {ns}/{name}")))?;
    // The same Release (not one created again under its name since), still ours to clean.
    let Some(current) = current
        .filter(|c| c.uid() == cached.uid() && c.finalizers().iter().any(|f| f == FINALIZER))
    else {
        return Ok(Action::await_change());
    };
    let canary = &current;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let target_name = &canary.spec.target_ref.name;
    let target = deployments
        .get_opt(target_name)
        .await
        .map_err(api_err(format!("Deployment {ns}/{target_name}")))?;
    let service = services
        .get_opt(&canary.spec.service.name)
        .await
        .map_err(api_err(format!(
            "Service {ns}/{}",
            canary.spec.service.name
        )))?;
    let (Some(target), Some(service), Some(router)) =
        (target, service, routers::for_routing(&canary.spec.routing))
    else {
        // Nothing of ours to undo there; owned objects go with the Release.
        return Ok(Action::await_change());
    };
    let state = stored_state(canary);
    let template_revision =
        plan::revision(&serde_json::to_value(&target.spec.template).unwrap_or_default());
    let judged = state.stable_revision.as_deref() == Some(template_revision.as_str());
    if !judged {
        tracing::warn!(
            canary = %name, namespace = %ns,
            "Release deleted while Deployment {target_name} has an unjudged template: it stays paused; \
             run `kubectl rollout resume deployment/{target_name} -n {ns}` to roll it out anyway"
        );
    }
    // The replica count the release started with goes back, unless an autoscaler owns it.
    let replicas = target.spec.replicas.unwrap_or(1);
    let autoscaled = autoscaler(&ctx.client, &ns, target_name, replicas)
        .await?
        .is_some();
    let world = crate::rollout::World {
        stable_paused: !judged,
        stable_replicas: state
            .release()
            .and_then(|r| r.stable_replicas)
            .filter(|_| canary.spec.routing.replicas.is_some() && !autoscaled),
        canary: None,
        weight: 0,
        matches: Vec::new(),
        mirror: None,
        pin_stable: false,
        restore: None,
    };
    let canary_dep = deployments
        .get_opt(&canary_deployment_name(target_name))
        .await
        .map_err(api_err(format!(
            "Deployment {ns}/{}",
            canary_deployment_name(target_name)
        )))?;
    let route = route_context(ctx, canary);
    let targets = Targets {
        canary,
        target: &target,
        target_revision: &template_revision,
        canary_deployment: canary_dep.as_ref(),
        stable_service: &service,
        router: router.as_ref(),
        route: &route,
    };
    if !ctx.may_write(canary) {
        return Ok(Action::await_change());
    }
    world::apply(&targets, &world).await?;
    let unadopt = serde_json::json!({"metadata": {"annotations": {crate::api::crd::ADOPTED_ANNOTATION: null}}});
    deployments
        .patch(
            target_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&unadopt),
        )
        .await
        .map_err(api_err(format!("Deployment {ns}/{target_name}")))?;
    tracing::info!(canary = %name, namespace = %ns, "Release deleted: traffic, Services and the Deployment are handed back");
    Ok(Action::await_change())
}

fn route_context<S>(ctx: &Context<S>, canary: &Release) -> RouteContext {
    RouteContext {
        client: ctx.client.clone(),
        namespace: canary.namespace().unwrap_or_default(),
        canary: canary.name_any(),
        service: canary.spec.service.name.clone(),
        canary_service: canary_service_name(&canary.spec),
        port: canary.spec.service.port,
        owner: canary.controller_owner_ref(&()).unwrap_or_default(),
    }
}

async fn reconcile_inner<S: MetricSource>(
    cached: &Release,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<Release> = Api::namespaced(ctx.client.clone(), &ns);
    // Read the Release afresh: the watch cache can lag behind this controller's own last
    // status write, and a world derived from an older status would briefly undo the last
    // step (e.g. move traffic back to a weight already left behind) before the status
    // write's 409 caught it.
    let fresh = api
        .get_opt(&name)
        .await
        .map_err(api_err(format!("Release {ns}/{name}")))?;
    let Some(fresh) = fresh else {
        return Ok(Action::await_change());
    };
    let canary = &fresh;
    let plan = match plan::plan(&canary.spec) {
        Ok(p) => p,
        Err(message) => {
            return not_ready(
                ctx,
                &api,
                canary,
                "InvalidSpec",
                format!("Release {ns}/{name}: {message}"),
            )
            .await;
        }
    };
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let target_name = &canary.spec.target_ref.name;
    let get = |n: String| {
        let deployments = deployments.clone();
        let ns = ns.clone();
        async move {
            deployments
                .get_opt(&n)
                .await
                .map_err(api_err(format!("Deployment {ns}/{n}")))
        }
    };
    let Some(target) = get(target_name.clone()).await? else {
        return not_ready(
            ctx,
            &api,
            canary,
            "TargetNotFound",
            format!(
                "Deployment {ns}/{target_name} not found: create it or fix spec.targetRef.name"
            ),
        )
        .await;
    };
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let service = services
        .get_opt(&canary.spec.service.name)
        .await
        .map_err(api_err(format!(
            "Service {ns}/{}",
            canary.spec.service.name
        )))?;
    let Some(router) = routers::for_routing(&canary.spec.routing) else {
        // plan() has checked that exactly one router is set.
        return not_ready(
            ctx,
            &api,
            canary,
            "InvalidSpec",
            format!("Release {ns}/{name}: routing needs exactly one router"),
        )
        .await;
    };
    let Some(service) = service else {
        return not_ready(
            ctx,
            &api,
            canary,
            "ServiceNotFound",
            format!(
                "Service {ns}/{} not found: create it or fix spec.service.name",
                canary.spec.service.name
            ),
        )
        .await;
    };
    let canary_dep = get(canary_deployment_name(target_name)).await?;

    let old = canary.status.clone().unwrap_or_default();
    let state = stored_state(canary);
    let now = ctx.clock.now();
    let template_json = serde_json::to_value(&target.spec.template).unwrap_or_default();
    let template_revision = plan::revision(&template_json);
    let target_replicas = target.spec.replicas.unwrap_or(1);
    let autoscaler = autoscaler(&ctx.client, &ns, target_name, target_replicas).await?;
    let dry_run = canary.spec.dry_run;
    let (canary_available, stable_rolled) = if dry_run {
        // Shadow mode touches nothing, so it takes the world to be as the plan says.
        (i32::MAX, true)
    } else {
        (
            world::canary_available(canary_dep.as_ref(), state.canary_revision()),
            world::rolled(&target)
                && match &state.stage {
                    // A bake rolling back waits for the previous template.
                    crate::rollout::Stage::Baking(b) if b.rollback.is_some() => {
                        b.previous == template_revision
                    }
                    _ => state.canary_revision() == Some(template_revision.as_str()),
                },
        )
    };

    let mut analysis = None;
    let mut judged = Vec::new();
    if let Some(due) = analysis_due(&plan, &state, now) {
        let port = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map(|p| p.port);
        // While requests are mirrored, the canary's are the copies: the router's matchers
        // for them, where its data plane tells them apart.
        // A bake judges the stable Deployment, which runs the new version, against its own
        // past (before/after): the stable matchers on both sides.
        let matchers = match (due.scope, state.traffic().and_then(|t| t.mirror)) {
            (crate::rollout::AnalysisScope::Bake, _) => routers::matchers(&canary.spec, &ns, port)
                .map(|(stable, _)| (stable.clone(), stable)),
            (_, Some(_)) => routers::mirror_matchers(&canary.spec, &ns, port),
            (_, None) => routers::matchers(&canary.spec, &ns, port),
        };
        let outcome = match matchers {
            Err(message) => crate::rollout::AnalysisOutcome::Error {
                message: format!("Release {ns}/{name}: {message}"),
            },
            Ok((stable, canary_matchers)) => {
                let interval = plan.interval_at(state.current_step() as usize);
                let input = AnalysisInput {
                    canary,
                    plan: &plan,
                    due,
                    interval,
                    stable: &stable,
                    canary_matchers: &canary_matchers,
                    baseline: crate::analysis::Baseline::of(&due),
                    concurrency: ctx.concurrency,
                };
                // Wall time (not the controller's clock): what the analysis costs.
                let started = std::time::Instant::now();
                // Only the points earlier analyses have not committed are fetched.
                let cache = ctx.committed.cache(&ctx.client, canary).await;
                let source = Incremental::new(&ctx.source, &cache, ctx.committed.lag);
                let (outcome, reports) = analysis::run(&ctx.client, &source, &input).await;
                source.finish();
                let took = started.elapsed();
                if ctx.may_write(canary) {
                    ctx.committed.store(&ctx.client, canary).await;
                } else {
                    // The replica that holds the shard now reads the stored points; these
                    // would only stay in memory here (and be older than its, should the
                    // shard come back).
                    ctx.committed.forget(canary);
                }
                let scores: Vec<(String, f64)> = reports
                    .iter()
                    .map(|j| (j.report.template.clone(), j.report.score))
                    .collect();
                ctx.observer
                    .analysed(canary, outcome.verdict(), &scores, took);
                judged = reports;
                outcome
            }
        };
        analysis = Some((due, outcome));
    }

    let mut observation = Observation {
        now,
        template_revision: template_revision.clone(),
        target_replicas,
        autoscaler,
        canary_available,
        stable_rolled,
        paused: canary.spec.paused,
        request: old.request.clone(),
        analysis,
        gates: Vec::new(),
    };
    for kind in gates_due(&plan, &state, &observation) {
        let result = super::gates::ask(&ctx.http, canary, &state, kind).await;
        observation.gates.push(result);
    }
    let decision = decide(&plan, &state, &observation);

    if !ctx.may_write(canary) {
        return Ok(Action::await_change());
    }
    let route = route_context(ctx, canary);
    let targets = Targets {
        canary,
        target: &target,
        target_revision: &template_revision,
        canary_deployment: canary_dep.as_ref(),
        stable_service: &service,
        router: router.as_ref(),
        route: &route,
    };
    // Most decisions change the world first and then record it, so that the status never
    // claims a step the router has not taken. A decision that takes the release back
    // (abort, bake rollback) is recorded first: were its world writes to fail half-way, the
    // next reconcile would otherwise decide afresh from the step before, and an analysis
    // that then finds no data (Prometheus down) would hold that step and hand the canary
    // its traffic back. Recorded, the abort stands, and that reconcile finishes it. Later
    // decisions of a release already taken back (a gradual abort's steps down, the end of a
    // rollback) go world first again.
    let record_first = decision.state.withdraws() && !state.withdraws();
    if !dry_run && !record_first {
        world::apply(&targets, &decision.world).await?;
    }

    let mut status = ReleaseStatus {
        state: StateV1alpha1 {
            // The share the router gives the canary: while a gradual abort steps traffic
            // back, its step's (the core's state says 0 from the abort on).
            weight: decision.world.weight,
            ..StateV1alpha1::from(&decision.state)
        },
        step_label: Some(step_column(&plan, &decision.state)),
        observed_generation: canary.metadata.generation,
        request: if decision.request_done {
            None
        } else {
            old.request.clone()
        },
        conditions: vec![condition("Ready", true, "Reconciled", "", &old.conditions)],
        report: old.report.clone(),
    };
    // A message of this reconcile says it is a dry run; a stored one already does.
    if dry_run && decision.new_message {
        status.state.message = format!("dry run: {}", status.state.message);
    }
    if dry_run && !judged.is_empty() {
        let marks = report::marks(&plan, &decision.state, &decision.events, now);
        let title = format!("Dry run of Release {ns}/{name}");
        let doc = report::document(&title, &status.state.message, &judged, &marks);
        match report::publish(&ctx.client, canary, &doc).await {
            Ok(reference) => status.report = Some(reference),
            // The report is a convenience: the rollout's state is in status either way.
            Err(e) => {
                tracing::warn!(canary = %name, namespace = %ns, error = %e, "cannot write the dry-run report")
            }
        }
    }
    if !ctx.may_write(canary) {
        return Ok(Action::await_change());
    }
    write_status_after_world(&api, canary, status).await?;
    let applied = if !dry_run && record_first {
        if !ctx.may_write(canary) {
            return Ok(Action::await_change());
        }
        world::apply(&targets, &decision.world).await
    } else {
        Ok(())
    };
    ctx.committed
        .settle(&ctx.client, canary, decision.state.phase())
        .await;

    ctx.observer.reconciled(canary, &decision);
    ctx.observer.decided(canary, &plan, &decision, &judged, now);
    if decision.events.iter().any(|e| {
        matches!(
            e.kind,
            crate::rollout::EventKind::Succeeded | crate::rollout::EventKind::Aborted
        )
    }) {
        super::gates::post_rollout(ctx.http.clone(), canary.clone(), decision.state.clone());
    }
    super::gates::events(
        ctx.http.clone(),
        canary.clone(),
        decision.state.clone(),
        decision.events.clone(),
    );
    let reference = canary.object_ref(&());
    for event in &decision.events {
        let published = ctx
            .recorder
            .publish(
                &KubeEvent {
                    type_: if event.kind.is_warning() {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.kind.reason().into(),
                    note: Some(crate::judge::words::truncate_bytes(&event.message, 1000)),
                    action: "Rollout".into(),
                    secondary: None,
                },
                &reference,
            )
            .await;
        if let Err(e) = published {
            tracing::warn!(canary = %name, namespace = %ns, error = %e, "cannot record an event");
        }
        tracing::info!(canary = %name, namespace = %ns, reason = event.kind.reason(), "{}", event.message);
    }
    // The events went out with the status that recorded them; a world write that failed
    // after it is tried again by the error policy's retry.
    applied?;
    Ok(Action::requeue(ctx.clock.real(decision.requeue)))
}

/// The rollout state a Release's status stores: the edge where the `v1alpha1` wire form
/// becomes the core's typed state (and [`StateV1alpha1::from`] the way back).
fn stored_state(canary: &Release) -> State {
    canary
        .status
        .as_ref()
        .map(|s| State::from(&s.state))
        .unwrap_or_default()
}

/// `N/M` for the printer column: 0 before the release, M from the promotion on.
pub fn step_column(plan: &Plan, state: &State) -> String {
    let total = plan.steps.len();
    let current = match plan.step_at(state) {
        StepAt::Before => 0,
        StepAt::Step(number) => number,
        StepAt::Promotion | StepAt::Bake => total,
    };
    format!("{current}/{total}")
}

/// How long to wait after a failed reconcile: soon after a conflict, longer otherwise.
pub fn error_policy<S>(canary: Arc<Release>, error: &Error, ctx: Arc<Context<S>>) -> Action {
    let ns = canary.namespace().unwrap_or_default();
    if error.is_conflict() {
        tracing::debug!(canary = %canary.name_any(), namespace = %ns, "conflict, retrying: {error}");
        return Action::requeue(Duration::from_millis(500));
    }
    tracing::warn!(canary = %canary.name_any(), namespace = %ns, "reconcile failed: {error}");
    Action::requeue(
        ctx.clock
            .real(Duration::from_secs(5))
            .max(Duration::from_millis(200)),
    )
}

/// Runs the controller until `shutdown` resolves: watches Releases, the canary Deployments
/// they own, and the target Deployments they point at. `on_ready` is called once the
/// Release cache has synced.
pub async fn run<S: MetricSource + 'static>(
    ctx: Arc<Context<S>>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    on_ready: Box<dyn FnOnce() + Send>,
) {
    run_triggered(
        ctx,
        namespace,
        shutdown,
        on_ready,
        futures::stream::pending(),
    )
    .await;
}

/// As [`run`], and reconciles every Release each time `reconcile_all` yields (when this
/// replica gains a shard, whose Releases it has so far left alone).
pub async fn run_triggered<S: MetricSource + 'static>(
    ctx: Arc<Context<S>>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    on_ready: Box<dyn FnOnce() + Send>,
    reconcile_all: impl futures::Stream<Item = ()> + Send + 'static,
) {
    let client = ctx.client.clone();
    let (canaries, deployments): (Api<Release>, Api<Deployment>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // A Release's changes reach the reconciler through `needs_reconcile`: this controller's
    // own status writes do not (each would cost a reconcile that finds nothing to do);
    // what is next for the Release is in the requeue its reconcile returned.
    let (reader, writer) = kube::runtime::reflector::store();
    let watched = watcher(canaries, watcher::Config::default()).modify(slim_for_reconcile);
    let releases = kube::runtime::reflector(writer, watched)
        .applied_objects()
        .predicate_filter(needs_reconcile, kube::runtime::PredicateConfig::default());
    let controller = Controller::for_stream(releases, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.workers));
    let store = controller.store();
    let synced = store.clone();
    tokio::spawn(async move {
        if synced.wait_until_ready().await.is_ok() {
            on_ready();
        }
    });
    controller
        .owns(deployments.clone(), watcher::Config::default())
        .watches(
            deployments,
            watcher::Config::default(),
            move |d: Deployment| {
                let ns = d.namespace();
                let name = d.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|c| c.namespace() == ns && c.spec.target_ref.name == name)
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_all_on(reconcile_all)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::QueueError(e)) = &result {
                let kind = watch_error_kind(e);
                tracing::warn!(kind, "a watch failed and restarts: {e}");
                ctx.observer.watch_failed(kind);
            } else if let Err(e) = result {
                tracing::debug!("controller: {e}");
            }
            futures::future::ready(())
        })
        .await;
}

/// Drops what a cached Release does not need: its `managedFields`, which the API server
/// keeps per field manager and which, with a status as detailed as a Release's, can weigh as
/// much as the rest of the object. Nothing reads them from a cache (each reconcile reads its
/// Release afresh); with 1,000 Releases in each of the controller's and the dashboard's
/// caches, they would be most of both.
pub fn slim(release: &mut Release) {
    release.managed_fields_mut().clear();
}

/// What the controller's own cache keeps of a Release: [`slim`], and of the status only the
/// operator's request, which [`needs_reconcile`] reads. A reconcile and a clean-up each read
/// their Release afresh, so the cached status (the state, conditions, the last analyses in
/// words, a few kilobytes a Release) was read by nothing; heaptrack put the whole cache at
/// about 4 MB with 1,000 Releases.
pub fn slim_for_reconcile(release: &mut Release) {
    slim(release);
    if let Some(status) = &mut release.status {
        *status = ReleaseStatus {
            request: status.request.take(),
            ..ReleaseStatus::default()
        };
    }
}

/// What of a Release asks for a reconcile when it changes: everything but the status this
/// controller writes. The spec (its generation), a deletion, the finalizers, labels and
/// annotations, and an operator's request in `status.request` (`vigil promote|abort`, the
/// API, an alert). A status write of the controller's own changes none of these, so it does
/// not trigger a reconcile that would find nothing to do; the reconcile that wrote it asked
/// to be run again when the state machine has something due ([`Action::requeue`]).
pub fn needs_reconcile(canary: &Release) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = &canary.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0)
        .hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    canary
        .status
        .as_ref()
        .and_then(|s| s.request.as_ref())
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Every label of a watch failure: those [`watch_error_kind`] gives, and `dropped` (a
/// stream that broke mid-way, which kube resumes without an error: the client counts it).
pub const WATCH_ERROR_KINDS: [&str; 6] = [
    "expired",
    "dropped",
    "read_failed",
    "start_failed",
    "list_failed",
    "other",
];

/// A short label for a watch failure: `expired` (410 Gone: the watch's resourceVersion is
/// too old, and the watcher lists everything again), `read_failed` (the events could not
/// be read), `start_failed`, `list_failed` (the initial list), `other`.
pub fn watch_error_kind(error: &watcher::Error) -> &'static str {
    match error {
        watcher::Error::WatchError(status) if status.code == 410 => "expired",
        watcher::Error::WatchFailed(_) => "read_failed",
        watcher::Error::WatchStartFailed(_) => "start_failed",
        watcher::Error::InitialListFailed(_) => "list_failed",
        _ => "other",
    }
}

/// The reporter vigil's Events carry.
pub fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: "vigil".into(),
        instance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::ReleaseSpec;
    use crate::rollout::{Request, RequestAction};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn release() -> Release {
        let spec: ReleaseSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"name": "web"},
            "service": {"name": "web"},
            "routing": {"replicas": {}},
            "stepWeights": [10, 50, 100],
        }))
        .expect("spec");
        let mut c = Release::new("web", spec);
        c.metadata.namespace = Some("shop".into());
        c.metadata.generation = Some(1);
        c.metadata.finalizers = Some(vec![FINALIZER.into()]);
        c
    }

    #[test]
    fn cached_releases_keep_no_managed_fields() {
        let mut r = release();
        r.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("vigil".into()),
                operation: Some("Update".into()),
                subresource: Some("status".into()),
                ..Default::default()
            },
        ]);
        let spec = r.spec.clone();
        slim(&mut r);
        assert!(r.managed_fields().is_empty());
        assert_eq!(r.spec, spec);
    }

    #[test]
    fn the_controllers_cache_keeps_of_the_status_only_the_operators_request() {
        let mut r = release();
        let request = Request {
            action: RequestAction::Promote,
            reason: "on call".into(),
            at: chrono::DateTime::UNIX_EPOCH,
        };
        let mut status = ReleaseStatus {
            request: Some(request.clone()),
            report: Some("shop/web-report".into()),
            ..ReleaseStatus::default()
        };
        status.state.weight = 50;
        status.state.message = "step 2 of 3".into();
        r.status = Some(status);
        let mut expected = r.clone();
        slim(&mut expected);
        let hash = needs_reconcile(&r);
        slim_for_reconcile(&mut r);
        assert_eq!(
            needs_reconcile(&r),
            hash,
            "the request still asks for a reconcile"
        );
        assert_eq!(
            r.status,
            Some(ReleaseStatus {
                request: Some(request),
                ..ReleaseStatus::default()
            })
        );
        assert_eq!((r.spec, r.metadata), (expected.spec, expected.metadata));
        let mut r = release();
        let hash_without = needs_reconcile(&r);
        slim_for_reconcile(&mut r);
        assert_eq!(r.status, None);
        assert_eq!(needs_reconcile(&r), hash_without);
        assert_ne!(hash, hash_without);
    }

    #[test]
    fn the_controllers_own_status_writes_do_not_ask_for_a_reconcile() {
        let before = release();
        let mut written = before.clone();
        let mut status = ReleaseStatus::default();
        status.state.weight = 50;
        status.state.current_step = 1;
        status.state.message = "step 2 of 3".into();
        status.observed_generation = Some(1);
        written.status = Some(status);
        written.metadata.resource_version = Some("42".into());
        assert_eq!(needs_reconcile(&before), needs_reconcile(&written));
    }

    #[test]
    fn spec_deletion_finalizers_metadata_and_requests_ask_for_a_reconcile() {
        let base = release();
        let hash = needs_reconcile(&base);
        type Change = fn(&mut Release);
        let changes: Vec<(&str, Change)> = vec![
            ("a new generation", |c| c.metadata.generation = Some(2)),
            ("a deletion", |c| {
                c.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
            }),
            ("the finalizer gone", |c| c.metadata.finalizers = None),
            ("a label", |c| {
                c.metadata.labels = Some([("team".to_string(), "a".to_string())].into())
            }),
            ("an annotation", |c| {
                c.metadata.annotations = Some([("note".to_string(), "x".to_string())].into())
            }),
            ("an operator's request", |c| {
                c.status = Some(ReleaseStatus {
                    request: Some(Request {
                        action: RequestAction::Abort,
                        reason: "on call".into(),
                        at: chrono::DateTime::UNIX_EPOCH,
                    }),
                    ..ReleaseStatus::default()
                })
            }),
        ];
        for (what, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(needs_reconcile(&changed), hash, "{what}");
        }
    }
}
