//! Traffic routers: one file each, behind [`Router`]: what a router knows (its name, the
//! PromQL matchers that tell the versions apart in its data plane's metrics, how to set a
//! weight and how to reset). Adding a router means its file here, one line in [`for_spec`],
//! and its configuration with one line in the `routers!` list of [`crate::api::crd`].
//!
//! A router only moves traffic. The canary Service and the pinning of the stable Service to
//! the stable pods are shared by every router that needs them ([`services`]); replica
//! counts are the reconciler's.
//!
//! Every router is a thin I/O shell around a pure function that turns the object it read
//! into the object it writes; the pure functions carry the logic and the tests. Writes
//! replace the object with the `resourceVersion` that was read, so a concurrent change
//! fails with 409 Conflict ([`RouterError::is_conflict`]) and the caller retries.
//!
//! Mirroring ([`Router::mirror`]) sends the canary a copy of a share of stable's requests
//! and throws its responses away, so that the canary can be judged before it serves anyone.
//! What each data plane can sample and how its metrics show the copies is in
//! `docs/mirroring.md`; [`MirrorSupport`] and [`Router::mirror_matchers`] carry it in code.
//!
//! A/B conditions ([`Match`]) mean the same for every router: the entries of the list are
//! alternatives (any one routes the request to the canary), and within one entry the
//! header and the cookie must both hold. A header without `exact` or `regex` must have the
//! value `always`; with both, `exact` wins (as ingress-nginx ignores the pattern when a
//! value is set). A cookie must have the value `always`.

pub mod gateway;
pub mod istio;
pub mod nginx;
pub mod replicas;
pub mod selector;
pub mod services;
mod split;

use crate::api::crd::{ReleaseSpec, RouterSpec, Routing};
use crate::api::plan;
use crate::rollout::Match;
use crate::template::selector::Selector;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// What a router needs to know about the Release it serves.
#[derive(Clone)]
pub struct RouteContext {
    /// A client for the cluster.
    pub client: kube::Client,
    /// The Release's namespace (every object lives there).
    pub namespace: String,
    /// The Release's name.
    pub canary: String,
    /// The stable Service.
    pub service: String,
    /// The canary Service vigil manages.
    pub canary_service: String,
    /// The port to route to, when set in the Release.
    pub port: Option<i32>,
    /// Owner reference to the Release, for objects vigil creates (garbage-collected with it).
    pub owner: OwnerReference,
}

impl RouteContext {
    /// The names of the context, without the client: what the pure transformations need.
    pub fn names(&self) -> Names<'_> {
        Names {
            namespace: &self.namespace,
            canary: &self.canary,
            service: &self.service,
            canary_service: &self.canary_service,
            port: self.port,
            owner: &self.owner,
        }
    }
}

/// The names a router works with, borrowed from a [`RouteContext`]; built directly in tests.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The Release's namespace.
    pub namespace: &'a str,
    /// The Release's name.
    pub canary: &'a str,
    /// The stable Service.
    pub service: &'a str,
    /// The canary Service.
    pub canary_service: &'a str,
    /// The port to route to, when set in the Release.
    pub port: Option<i32>,
    /// Owner reference to the Release.
    pub owner: &'a OwnerReference,
}

impl Names<'_> {
    /// `Kind namespace/name` of an object in the Release's namespace, for messages.
    pub fn object(&self, kind: &str, name: &str) -> String {
        format!("{kind} {}/{name}", self.namespace)
    }

    /// Whether `meta` carries the owner reference of this Release (by uid).
    pub fn owns(&self, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
        meta.owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == self.owner.uid)
    }

    /// The error for an object vigil would manage that exists but is not this Release's.
    pub fn not_ours(&self, kind: &str, name: &str, hint: &str) -> RouterError {
        RouterError::Invalid {
            object: self.object(kind, name),
            message: format!(
                "exists but is not owned by Release {}/{}; delete it, or {hint}",
                self.namespace, self.canary
            ),
        }
    }
}

/// Why a router could not apply a change. The message names the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A Kubernetes API call failed.
    #[error("{object}: {source}")]
    Api {
        /// Kind/namespace/name of the object.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The object exists but cannot be used as configured.
    #[error("{object}: {message}")]
    Invalid {
        /// Kind/namespace/name of the object.
        object: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl RouterError {
    /// Whether the error is a 409 Conflict: the object changed (or appeared) between read
    /// and write. Retrying the whole operation is the remedy.
    pub fn is_conflict(&self) -> bool {
        matches!(self, RouterError::Api { source, .. } if status_code(source) == Some(409))
    }

    /// Wraps a client error with the object it concerns.
    pub fn api(object: String) -> impl FnOnce(kube::Error) -> RouterError {
        move |source| RouterError::Api { object, source }
    }
}

/// The HTTP status of an API error, if the server answered.
fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Whether a client error is a 404 Not Found.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    status_code(e) == Some(404)
}

/// Moves traffic between the stable and the canary Service.
pub trait Router: Send + Sync {
    /// The router's name, for logs and metrics.
    fn name(&self) -> &'static str;

    /// Makes `weight` percent of traffic (and requests matching `matches`) go to the canary.
    /// Idempotent: applying the same weight twice changes nothing.
    fn set<'a>(
        &'a self,
        ctx: &'a RouteContext,
        weight: u8,
        matches: &'a [Match],
    ) -> BoxFuture<'a, Result<(), RouterError>>;

    /// Removes everything vigil put on the traffic objects: canary routing (all traffic to
    /// stable) and the mirror of [`Router::mirror`], so that nothing is left behind after an
    /// abort or a finished release. Idempotent; succeeds when there is nothing to remove.
    fn reset<'a>(&'a self, ctx: &'a RouteContext) -> BoxFuture<'a, Result<(), RouterError>>;

    /// Mirrors (shadows) requests to the canary Service. With `Some(p)` a copy of `p` percent
    /// (1 to 100) of the requests the router's objects send to the stable Service also goes
    /// to the canary Service, and the canary's responses are thrown away; with `None` nothing
    /// of vigil's is mirrored. The router's own mirrors of other targets are kept, or refused
    /// when they cannot coexist with vigil's.
    ///
    /// Only the mirror changes: [`Router::set`] leaves it as it is and [`Router::reset`]
    /// removes it too. So a mirror step, where users are served by stable alone, is
    /// `set(ctx, 0, &[])` then `mirror(ctx, Some(p))`, not `reset` then `mirror` (which would
    /// remove and re-add the mirror at every apply); a weight or A/B step is `set` then
    /// `mirror(ctx, None)`; weight 0 without a mirror is `reset`. Idempotent: applying the
    /// same percent twice writes nothing; `None` succeeds when there is nothing to remove. A
    /// percent [`Router::mirror_support`] refuses is an error.
    fn mirror<'a>(
        &'a self,
        ctx: &'a RouteContext,
        percent: Option<u8>,
    ) -> BoxFuture<'a, Result<(), RouterError>>;

    /// Which shares of requests this router can mirror.
    fn mirror_support(&self) -> MirrorSupport;

    /// Whether this router sends traffic to a separate canary Service (and so needs the
    /// stable Service pinned to stable pods).
    fn uses_services(&self) -> bool {
        true
    }

    /// Whether at `weight` the router sets the stable Service's selector itself, so that
    /// the pin of the Service to the stable pods must not be applied.
    fn sets_selector(&self, _weight: u8) -> bool {
        false
    }

    /// The PromQL label matchers (stable, canary) that tell the versions' requests apart
    /// in the metrics of this router's data plane, unless the Release sets its own.
    fn default_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String>;

    /// The PromQL label matchers (stable, canary) for a mirror step: the requests stable
    /// serves and the copies the canary gets, where the data plane's metrics tell them
    /// apart. An error says why they do not, and that the Release must set
    /// `analysis.stableMatchers`/`canaryMatchers` to the application's own metrics.
    fn mirror_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String>;
}

/// Which shares of requests a router's data plane can mirror to the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorSupport {
    /// No mirroring at all; the text says why.
    Unsupported(&'static str),
    /// Every request or none: only percent 100.
    AllRequests,
    /// Any share from 1 to 100 percent.
    Percent,
}

impl MirrorSupport {
    /// Whether router `router` can mirror `percent` percent of the requests; the error is
    /// the plan's message, saying what to change.
    pub fn check(self, router: &str, percent: u8) -> Result<(), String> {
        if !(1..=100).contains(&percent) {
            return Err(format!(
                "mirror percent must be 1 to 100, not {percent}; drop the mirror step to mirror nothing"
            ));
        }
        match self {
            MirrorSupport::Unsupported(why) => Err(format!(
                "the {router} router cannot mirror requests: {why}; remove the mirror steps"
            )),
            MirrorSupport::AllRequests if percent < 100 => Err(format!(
                "the {router} router mirrors every request or none, not {percent} percent: set \
                 the mirror step's percent to 100, or route with the Gateway API or Istio, \
                 which sample"
            )),
            MirrorSupport::AllRequests | MirrorSupport::Percent => Ok(()),
        }
    }
}

/// `percent` checked against what `router` supports, as the error a router returns (naming
/// the Release) when the plan let it through.
pub(crate) fn checked_mirror(
    router: &dyn Router,
    names: &Names<'_>,
    percent: Option<u8>,
) -> Result<Option<u8>, RouterError> {
    if let Some(p) = percent {
        router
            .mirror_support()
            .check(router.name(), p)
            .map_err(|message| RouterError::Invalid {
                object: names.object("Release", names.canary),
                message,
            })?;
    }
    Ok(percent)
}

/// What the default matchers are made of.
#[derive(Debug, Clone, Copy)]
pub struct MatcherNames<'a> {
    /// The Release's namespace.
    pub namespace: &'a str,
    /// The stable Deployment.
    pub target: &'a str,
    /// The canary Deployment.
    pub canary_deployment: &'a str,
    /// The canary Service.
    pub canary_service: &'a str,
    /// The port routed to: the Release's `service.port`, else the Service's first port.
    pub port: Option<i32>,
}

/// The router of a configuration: one line per router.
pub fn for_spec(spec: RouterSpec<'_>) -> Box<dyn Router> {
    match spec {
        RouterSpec::Nginx(c) => Box::new(nginx::NginxRouter::new(c)),
        RouterSpec::GatewayApi(c) => Box::new(gateway::GatewayRouter::new(c)),
        RouterSpec::Istio(c) => Box::new(istio::IstioRouter::new(c)),
        RouterSpec::Replicas(_) => Box::new(replicas::ReplicasRouter),
        RouterSpec::Selector(_) => Box::new(selector::SelectorRouter),
    }
}

/// The PromQL matchers that tell the stable version from the canary: the Release's
/// `analysis.stableMatchers`/`canaryMatchers`, or its router's defaults.
pub fn matchers(
    spec: &ReleaseSpec,
    namespace: &str,
    service_port: Option<i32>,
) -> Result<(Selector, Selector), String> {
    matchers_with(spec, namespace, service_port, |r, n| r.default_matchers(n))
}

/// The PromQL matchers of a mirror step: the Release's `analysis.stableMatchers`/
/// `canaryMatchers`, or its router's [`Router::mirror_matchers`] (an error where its data
/// plane does not count the mirrored requests apart).
pub fn mirror_matchers(
    spec: &ReleaseSpec,
    namespace: &str,
    service_port: Option<i32>,
) -> Result<(Selector, Selector), String> {
    matchers_with(spec, namespace, service_port, |r, n| r.mirror_matchers(n))
}

/// The Release's matchers, or those `pick` takes from its router.
fn matchers_with(
    spec: &ReleaseSpec,
    namespace: &str,
    service_port: Option<i32>,
    pick: impl FnOnce(&dyn Router, &MatcherNames<'_>) -> Result<(String, String), String>,
) -> Result<(Selector, Selector), String> {
    if let Some(set) = plan::matchers_set(spec)? {
        return Ok(set);
    }
    let router = for_spec(spec.routing.spec()?);
    let canary_deployment = plan::canary_deployment_name(&spec.target_ref.name);
    let canary_service = plan::canary_service_name(spec);
    let (stable, canary) = pick(
        router.as_ref(),
        &MatcherNames {
            namespace,
            target: &spec.target_ref.name,
            canary_deployment: &canary_deployment,
            canary_service: &canary_service,
            port: spec.service.port.or(service_port),
        },
    )?;
    Ok((
        plan::parse_matchers("stableMatchers", &stable)?,
        plan::parse_matchers("canaryMatchers", &canary)?,
    ))
}

/// The router a Release's `routing` selects; `None` unless exactly one router is set (the
/// CRD's validation rule guarantees one for objects the API server accepted).
pub fn for_routing(routing: &Routing) -> Option<Box<dyn Router>> {
    routing.spec().ok().map(for_spec)
}

/// How a header value is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    /// The value equals this.
    Exact(String),
    /// The value matches this regular expression.
    Regex(String),
}

/// One condition of an A/B match entry, with the defaults of [`Match`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A request header.
    Header {
        /// The header's name.
        name: String,
        /// How its value is matched.
        value: ValueMatch,
    },
    /// A cookie whose value must be `always`.
    Cookie {
        /// The cookie's name.
        name: String,
    },
}

/// The conditions of each match entry (all of an entry's conditions must hold). An entry
/// with neither a header nor a cookie is an error: it would send every request to the
/// canary.
pub fn conditions(
    names: &Names<'_>,
    matches: &[Match],
) -> Result<Vec<Vec<Condition>>, RouterError> {
    matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut entry = Vec::new();
            if let Some(h) = &m.header {
                let value = match (&h.exact, &h.regex) {
                    (Some(v), _) => ValueMatch::Exact(v.clone()),
                    (None, Some(r)) => ValueMatch::Regex(r.clone()),
                    (None, None) => ValueMatch::Exact("always".into()),
                };
                entry.push(Condition::Header { name: h.name.clone(), value });
            }
            if let Some(c) = &m.cookie {
                entry.push(Condition::Cookie { name: c.clone() });
            }
            if entry.is_empty() {
                return Err(RouterError::Invalid {
                    object: names.object("Release", names.canary),
                    message: format!(
                        "match entry {} has neither a header nor a cookie; give it one or remove it",
                        i + 1
                    ),
                });
            }
            Ok(entry)
        })
        .collect()
}

/// A regular expression matching a `Cookie` header in which cookie `name` has the value
/// `always`, anchored at both ends so that it means the same to engines that match the
/// whole value (Envoy's RE2) and to those that search in it (PCRE).
pub fn cookie_regex(name: &str) -> String {
    format!("^(?:.*;\\s*)?{}=always(?:;.*)?$", regex_escape(name))
}

/// `s` with the regular-expression metacharacters escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The prefix of the names of the routes (Istio) and rules (Gateway API) vigil adds for A/B
/// conditions: `vigil-<canary>-ab-`, with dots in the Release's name replaced so that it is
/// a valid Gateway API section name.
pub fn ab_prefix(canary: &str) -> String {
    format!("vigil-{}-ab-", canary.replace('.', "-"))
}

/// The annotation recording the stable backend weights as they were before vigil first
/// split a route, so that reset restores them exactly: a JSON object from the position of
/// the route or rule (counting only the user's, not vigil's A/B ones) to its weight (`null`
/// when it had none).
pub const STABLE_WEIGHTS_ANNOTATION: &str = "vigil.dev/stable-weights";

/// The recorded stable weights of a JSON object (HTTPRoute, VirtualService): see
/// [`STABLE_WEIGHTS_ANNOTATION`]. Keys are `<route>/<backend>` positions.
pub(crate) fn recorded_weights(
    object: &str,
    obj: &serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, RouterError> {
    let Some(text) = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(STABLE_WEIGHTS_ANNOTATION))
        .and_then(|v| v.as_str())
    else {
        return Ok(serde_json::Map::new());
    };
    serde_json::from_str(text).map_err(|e| RouterError::Invalid {
        object: object.into(),
        message: format!(
            "annotation {STABLE_WEIGHTS_ANNOTATION} is not a JSON object ({e}); remove it (reset then \
             leaves the stable weights as they are)"
        ),
    })
}

/// Sets (or with `None` removes) an annotation of a JSON object, dropping an emptied map.
pub(crate) fn set_annotation(obj: &mut serde_json::Value, key: &str, value: Option<String>) {
    let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) else {
        return;
    };
    match value {
        Some(v) => {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(key.into(), serde_json::Value::String(v));
            }
        }
        None => {
            let emptied = match meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                Some(a) => {
                    a.remove(key);
                    a.is_empty()
                }
                None => false,
            };
            if emptied {
                meta.remove("annotations");
            }
        }
    }
}

/// Sets or removes (`Null`) the `weight` of a backend (a JSON object).
pub(crate) fn put_weight(backend: &mut serde_json::Value, weight: serde_json::Value) {
    if let Some(b) = backend.as_object_mut() {
        if weight.is_null() {
            b.remove("weight");
        } else {
            b.insert("weight".into(), weight);
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::{Condition, Names, conditions};
    use crate::rollout::{HeaderMatch, Match};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::sync::LazyLock;

    /// The owner reference of the test Release.
    pub static OWNER: LazyLock<OwnerReference> = LazyLock::new(|| OwnerReference {
        api_version: "vigil.dev/v1alpha1".into(),
        kind: "Release".into(),
        name: "web".into(),
        uid: "uid-1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    });

    /// A header match.
    pub fn header(name: &str, exact: Option<&str>, regex: Option<&str>) -> Match {
        Match {
            header: Some(HeaderMatch {
                name: name.into(),
                exact: exact.map(Into::into),
                regex: regex.map(Into::into),
            }),
            cookie: None,
        }
    }

    /// A cookie match.
    pub fn cookie(name: &str) -> Match {
        Match {
            header: None,
            cookie: Some(name.into()),
        }
    }

    /// The conditions of matches of the test Release.
    pub fn conds(matches: &[Match]) -> Vec<Vec<Condition>> {
        conditions(&names(), matches).unwrap()
    }

    /// The matcher names of the test Release `shop/web` (Deployments `web`, `web-canary`).
    pub fn matcher_names() -> super::MatcherNames<'static> {
        super::MatcherNames {
            namespace: "shop",
            target: "web",
            canary_deployment: "web-canary",
            canary_service: "web-canary",
            port: None,
        }
    }

    /// The names of the test Release `shop/web`, serving Service `web` via `web-canary`.
    pub fn names() -> Names<'static> {
        Names {
            namespace: "shop",
            canary: "web",
            service: "web",
            canary_service: "web-canary",
            port: None,
            owner: &OWNER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::header;
    use super::*;
    use crate::rollout::HeaderMatch;

    use crate::api::plan::testing::canary;

    /// The plan tests' Release, with its steps.
    fn base() -> String {
        format!("{}  stepWeights: [10]\n", crate::api::plan::testing::BASE)
    }

    #[test]
    fn default_matchers_follow_the_router() {
        let spec = canary(&base());
        let (s, c) = matchers(&spec, "shop", None).unwrap();
        assert_eq!(s.to_string(), r#"canary="""#);
        assert_eq!(c.to_string(), r#"canary="shop-web-canary-80""#);
        let istio =
            canary(&base().replace("{nginx: {ingress: web}}", "{istio: {virtualService: web}}"));
        let (s, c) = matchers(&istio, "shop", None).unwrap();
        assert_eq!(s.to_string(), r#"destination_workload="web""#);
        assert_eq!(c.to_string(), r#"destination_workload="web-canary""#);
        let replicas = canary(&base().replace("{nginx: {ingress: web}}", "{replicas: {}}"));
        let (_, c) = matchers(&replicas, "shop", None).unwrap();
        assert_eq!(c.to_string(), r#"pod=~"web-canary-[a-z0-9]+-[a-z0-9]+""#);
        let custom = canary(&base().replace(
            "  stepWeights",
            "    stableMatchers: 'version=\"v1\"'\n    canaryMatchers: 'version=\"v2\"'\n  stepWeights",
        ));
        let (s, _) = matchers(&custom, "shop", None).unwrap();
        assert_eq!(s.to_string(), r#"version="v1""#);
    }

    #[test]
    fn matchers_are_set_both_or_neither_and_the_port_is_needed_for_nginx() {
        let one = canary(&base().replace(
            "  stepWeights",
            "    stableMatchers: 'version=\"v1\"'\n  stepWeights",
        ));
        let err = matchers(&one, "shop", None).unwrap_err();
        assert!(err.contains("set both"), "{err}");
        let no_port = canary(&base().replace("port: 80", "canaryName: web-c"));
        let err = matchers(&no_port, "shop", None).unwrap_err();
        assert!(err.contains("service.port"), "{err}");
        let (_, c) = matchers(&no_port, "shop", Some(8080)).unwrap();
        assert_eq!(c.to_string(), r#"canary="shop-web-c-8080""#);
        let gateway =
            canary(&base().replace("{nginx: {ingress: web}}", "{gatewayAPI: {httpRoute: r}}"));
        let (s, _) = matchers(&gateway, "shop", None).unwrap();
        assert_eq!(
            s.to_string(),
            r#"envoy_cluster_name="httproute/shop/r/rule/0/backend/0""#
        );
    }

    #[test]
    fn mirror_matchers_follow_the_router_or_the_release() {
        let istio =
            canary(&base().replace("{nginx: {ingress: web}}", "{istio: {virtualService: web}}"));
        let (_, c) = mirror_matchers(&istio, "shop", None).unwrap();
        assert_eq!(
            c.to_string(),
            r#"reporter="destination", destination_workload="web-canary""#
        );
        let gateway =
            canary(&base().replace("{nginx: {ingress: web}}", "{gatewayAPI: {httpRoute: r}}"));
        let (_, c) = mirror_matchers(&gateway, "shop", None).unwrap();
        assert_eq!(
            c.to_string(),
            r#"envoy_cluster_name=~"httproute/shop/r/rule/0-mirror-[0-9]+""#
        );
        let err = mirror_matchers(&canary(&base()), "shop", None).unwrap_err();
        assert!(err.starts_with("ingress-nginx does not count"), "{err}");
        // The Release's own matchers serve the mirror steps too.
        let custom = canary(&base().replace(
            "  stepWeights",
            "    stableMatchers: 'version=\"v1\"'\n    canaryMatchers: 'version=\"v2\"'\n  stepWeights",
        ));
        let (_, c) = mirror_matchers(&custom, "shop", None).unwrap();
        assert_eq!(c.to_string(), r#"version="v2""#);
    }

    #[test]
    fn mirror_support_refuses_what_the_data_plane_cannot_do() {
        for p in [0u8, 101] {
            let err = MirrorSupport::Percent.check("istio", p).unwrap_err();
            assert!(err.starts_with("mirror percent must be 1 to 100"), "{err}");
        }
        assert!(MirrorSupport::Percent.check("istio", 1).is_ok());
        assert!(MirrorSupport::AllRequests.check("nginx", 100).is_ok());
        let err = MirrorSupport::AllRequests.check("nginx", 99).unwrap_err();
        assert!(
            err.starts_with("the nginx router mirrors every request or none, not 99 percent"),
            "{err}"
        );
    }

    #[test]
    fn conditions_apply_the_defaults() {
        let n = testing::names();
        let got = conditions(
            &n,
            &[
                header("x-canary", None, None),
                header("x-a", Some("1"), Some("ignored")),
                header("x-b", None, Some("^b.*")),
                Match {
                    header: Some(HeaderMatch {
                        name: "x-c".into(),
                        exact: None,
                        regex: None,
                    }),
                    cookie: Some("c".into()),
                },
            ],
        )
        .unwrap();
        assert_eq!(
            got[0],
            vec![Condition::Header {
                name: "x-canary".into(),
                value: ValueMatch::Exact("always".into())
            }]
        );
        assert_eq!(
            got[1],
            vec![Condition::Header {
                name: "x-a".into(),
                value: ValueMatch::Exact("1".into())
            }]
        );
        assert_eq!(
            got[2],
            vec![Condition::Header {
                name: "x-b".into(),
                value: ValueMatch::Regex("^b.*".into())
            }]
        );
        assert_eq!(got[3].len(), 2);
    }

    #[test]
    fn an_empty_match_is_an_error_naming_the_canary() {
        let n = testing::names();
        let e = conditions(
            &n,
            &[Match {
                header: None,
                cookie: None,
            }],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("Release shop/web: match entry 1"), "{msg}");
    }

    #[test]
    fn the_cookie_regex_is_anchored_and_escaped() {
        assert_eq!(cookie_regex("a.b"), "^(?:.*;\\s*)?a\\.b=always(?:;.*)?$");
    }

    #[test]
    fn the_cookie_regex_finds_the_cookie_anywhere_and_nothing_else() {
        // The regex crate's syntax is RE2's, which Envoy (Istio, most Gateway API
        // implementations) uses.
        let re = regex::Regex::new(&cookie_regex("beta")).unwrap();
        for yes in [
            "beta=always",
            "a=1; beta=always",
            "beta=always; a=1",
            "a=1;beta=always;b=2",
        ] {
            assert!(re.is_match(yes), "{yes}");
        }
        for no in [
            "beta=never",
            "xbeta=always",
            "a=1; xbeta=always",
            "beta=alwaysx",
            "abeta=always; b=1",
            "",
        ] {
            assert!(!re.is_match(no), "{no}");
        }
        let dotted = regex::Regex::new(&cookie_regex("a.b")).unwrap();
        assert!(dotted.is_match("a.b=always"));
        assert!(!dotted.is_match("axb=always"));
    }

    #[test]
    fn the_router_follows_the_routing() {
        let r = Routing {
            replicas: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(for_routing(&r).map(|r| r.name()), Some("replicas"));
        assert!(for_routing(&Routing::default()).is_none());
        let both = Routing {
            replicas: Some(Default::default()),
            gateway_api: Some(crate::api::crd::GatewayRouting {
                http_route: "r".into(),
            }),
            ..Default::default()
        };
        assert!(for_routing(&both).is_none());
        let g = Routing {
            gateway_api: both.gateway_api.clone(),
            ..Default::default()
        };
        assert_eq!(for_routing(&g).map(|r| r.name()), Some("gateway-api"));
    }
}
