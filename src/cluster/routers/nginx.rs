//! ingress-nginx, the way Alibaba Cloud ACK does gray releases: vigil manages a canary
//! Ingress `<stable ingress>-canary`, cloned from the stable Ingress with every backend that
//! points at the stable Service pointing at the canary Service instead, and carrying the
//! `nginx.ingress.kubernetes.io/canary*` annotations.
//!
//! What ingress-nginx does with them (its annotations documentation, "Canary"):
//! - `canary-weight` of `canary-weight-total` (default 100) random requests go to the
//!   canary; vigil writes both, the total always `100`.
//! - `canary-by-header: H` alone routes requests whose header H is `always` to the canary
//!   and those where it is `never` to stable, whatever the weight; with
//!   `canary-by-header-value: V` the value V routes to the canary; with
//!   `canary-by-header-pattern: R` (ignored when a value is set) values matching the PCRE
//!   R do. Other values fall through to the cookie and the weight.
//! - `canary-by-cookie: C` is the same for cookie C with `always`/`never`.
//! - Precedence: header, then cookie, then weight.
//! - One canary Ingress per host and path: vigil refuses to add a second one.
//!
//! So a [`Match`] maps as follows: a header without a value becomes `canary-by-header`
//! alone (which also honours `never`), an exact value `canary-by-header-value`, a regex
//! `canary-by-header-pattern`, a cookie `canary-by-cookie`. ingress-nginx cannot express
//! more than one header and one cookie, nor a header and a cookie that must both hold:
//! such matches are errors.
//!
//! The canary Ingress copies only the paths (and default backend) that point at the stable
//! Service: a path to another Service would otherwise take that path's one canary slot.
//! It copies the stable Ingress's annotations, since ingress-nginx inherits most of them
//! from the stable Ingress anyway and uses the canary's own `load-balance`,
//! `upstream-hash-by` and session-affinity ones, which must match, except those in
//! [`NOT_COPIED`]: the canary annotations themselves, and annotations that would make
//! another tool act on the copy as if it were the original. Labels are not copied for the
//! same reason (Argo CD tracks by `app.kubernetes.io/instance`); the copy carries only
//! `vigil.dev/canary-name`.
//!
//! Mirroring uses ingress-nginx's `mirror-target` annotation (its annotations
//! documentation, "Mirror"), written on the stable Ingress itself: the controller copies
//! every request of every path of that Ingress to the target URL, in a subrequest whose
//! response it throws away. vigil's target is the canary Service's in-cluster URL,
//! `http://<canary service>.<ns>.svc.cluster.local:<port>$request_uri` (`https` when the
//! Ingress's `backend-protocol` is `HTTPS`): nginx resolves a target with variables at
//! request time, without the search domains, hence the full name. `mirror-host` is the
//! request's own `$host` (or the Ingress's `upstream-vhost`), so that the canary sees the
//! Host header stable sees. There is no sampling: every request or none. vigil refuses
//! (rather than mirroring something else than what stable gets) an Ingress with
//! `rewrite-target` (the mirror gets the original URI), with a path or default backend to
//! another Service (it would be mirrored too), with another `backend-protocol`, or with
//! mirror annotations of the user's own (an Ingress has one mirror target). vigil's mirror
//! is recognised by its target naming the canary Service, and removed exactly; the mirror
//! annotations are not copied to the canary Ingress.

use super::{
    Condition, MatcherNames, MirrorSupport, Names, RouteContext, Router, RouterError, ValueMatch,
    checked_mirror, conditions, is_not_found,
};
use crate::api::crd::{NginxRouting, OWNER_LABEL};
use crate::rollout::Match;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{
    HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use std::collections::{BTreeMap, BTreeSet};

/// The prefix of ingress-nginx's annotations.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// Marks an Ingress as a canary.
pub const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
/// The canary's share of `canary-weight-total`.
pub const WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
/// The total of the weights.
pub const WEIGHT_TOTAL: &str = "nginx.ingress.kubernetes.io/canary-weight-total";
/// The header that routes to the canary.
pub const BY_HEADER: &str = "nginx.ingress.kubernetes.io/canary-by-header";
/// The exact header value that routes to the canary.
pub const BY_HEADER_VALUE: &str = "nginx.ingress.kubernetes.io/canary-by-header-value";
/// A PCRE the header value must match to route to the canary.
pub const BY_HEADER_PATTERN: &str = "nginx.ingress.kubernetes.io/canary-by-header-pattern";
/// The cookie that routes to the canary.
pub const BY_COOKIE: &str = "nginx.ingress.kubernetes.io/canary-by-cookie";

/// The prefix of ingress-nginx's mirror annotations.
pub const MIRROR_PREFIX: &str = "nginx.ingress.kubernetes.io/mirror-";
/// The URL requests are mirrored to.
pub const MIRROR_TARGET: &str = "nginx.ingress.kubernetes.io/mirror-target";
/// The Host header of mirrored requests.
pub const MIRROR_HOST: &str = "nginx.ingress.kubernetes.io/mirror-host";
/// Rewrites the path sent to the backend (the mirror gets the original).
pub const REWRITE_TARGET: &str = "nginx.ingress.kubernetes.io/rewrite-target";
/// The protocol spoken to the backend.
pub const BACKEND_PROTOCOL: &str = "nginx.ingress.kubernetes.io/backend-protocol";
/// The Host header sent to the backend.
pub const UPSTREAM_VHOST: &str = "nginx.ingress.kubernetes.io/upstream-vhost";
/// The cluster's DNS domain in the mirror target's URL.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Annotation prefixes not copied from the stable Ingress to the canary Ingress:
/// - ingress-nginx's canary annotations (vigil sets its own);
/// - its mirror annotations (a canary Ingress inherits the stable one's, and vigil's mirror
///   would otherwise change the copy at every mirror step);
/// - `kubectl.kubernetes.io/` (`last-applied-configuration` describes the stable object);
/// - `cert-manager.io/`, `acme.cert-manager.io/` (cert-manager would issue a second
///   Certificate into the same TLS Secret; the copy reuses the stable one's Secret);
/// - `external-dns.alpha.kubernetes.io/` (external-dns would manage the same records from
///   two sources);
/// - `meta.helm.sh/`, `argocd.argoproj.io/` (Helm and Argo CD would count the copy as part
///   of a release or application that does not contain it, and prune or adopt it).
pub const NOT_COPIED: &[&str] = &[
    "nginx.ingress.kubernetes.io/canary",
    MIRROR_PREFIX,
    "kubectl.kubernetes.io/",
    "cert-manager.io/",
    "acme.cert-manager.io/",
    "external-dns.alpha.kubernetes.io/",
    "meta.helm.sh/",
    "argocd.argoproj.io/",
];

/// The router of `routing.nginx`.
#[derive(Debug, Clone)]
pub struct NginxRouter {
    /// The stable Ingress.
    pub ingress: String,
    /// Extra annotations for the canary Ingress.
    pub additional_annotations: BTreeMap<String, String>,
}

impl NginxRouter {
    /// The router for this configuration.
    pub fn new(config: &NginxRouting) -> Self {
        NginxRouter {
            ingress: config.ingress.clone(),
            additional_annotations: config.additional_annotations.clone(),
        }
    }

    /// The name of the canary Ingress: `<stable ingress>-canary`.
    pub fn canary_name(&self) -> String {
        canary_name(&self.ingress)
    }

    async fn apply(
        &self,
        ctx: &RouteContext,
        weight: u8,
        matches: &[Match],
    ) -> Result<(), RouterError> {
        let names = ctx.names();
        let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let stable_object = names.object("Ingress", &self.ingress);
        let stable = api
            .get_opt(&self.ingress)
            .await
            .map_err(RouterError::api(stable_object.clone()))?
            .ok_or_else(|| RouterError::Invalid {
                object: stable_object,
                message: "not found; create it, or correct spec.routing.nginx.ingress".into(),
            })?;
        let conds = conditions(&names, matches)?;
        let desired = canary_ingress(
            &names,
            &stable,
            &self.additional_annotations,
            weight,
            &conds,
        )?;
        let name = self.canary_name();
        let object = names.object("Ingress", &name);
        let all = api
            .list(&ListParams::default())
            .await
            .map_err(RouterError::api(format!(
                "Ingresses in namespace {}",
                ctx.namespace
            )))?;
        if let Some(conflict) = conflicting_canary(&names, &desired, &all.items) {
            return Err(conflict);
        }
        match all
            .items
            .iter()
            .find(|i| i.metadata.name.as_deref() == Some(name.as_str()))
        {
            None => {
                api.create(&PostParams::default(), &desired)
                    .await
                    .map_err(RouterError::api(object))?;
            }
            Some(existing) => {
                if let Some(updated) = updated_canary_ingress(&names, existing, &desired)? {
                    api.replace(&name, &PostParams::default(), &updated)
                        .await
                        .map_err(RouterError::api(object))?;
                }
            }
        }
        Ok(())
    }

    async fn remove(&self, ctx: &RouteContext) -> Result<(), RouterError> {
        let names = ctx.names();
        let name = self.canary_name();
        let object = names.object("Ingress", &name);
        let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let Some(existing) = api
            .get_opt(&name)
            .await
            .map_err(RouterError::api(object.clone()))?
        else {
            return Ok(());
        };
        if !names.owns(&existing.metadata) {
            // Not vigil's: there is no canary routing of ours to remove.
            return Ok(());
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: existing.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RouterError::api(object)(e)),
        }
    }

    /// Sets or removes vigil's mirror on the stable Ingress ([`mirrored_ingress`]).
    async fn apply_mirror(
        &self,
        ctx: &RouteContext,
        percent: Option<u8>,
    ) -> Result<(), RouterError> {
        let names = ctx.names();
        let percent = checked_mirror(self, &names, percent)?;
        let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let object = names.object("Ingress", &self.ingress);
        let Some(stable) = api
            .get_opt(&self.ingress)
            .await
            .map_err(RouterError::api(object.clone()))?
        else {
            if percent.is_none() {
                return Ok(());
            }
            return Err(RouterError::Invalid {
                object,
                message: "not found; create it, or correct spec.routing.nginx.ingress".into(),
            });
        };
        // The Service tells the number of a port the Ingress names.
        let service = if percent.is_some() && ctx.port.is_none() {
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            services
                .get_opt(&ctx.service)
                .await
                .map_err(RouterError::api(names.object("Service", &ctx.service)))?
        } else {
            None
        };
        if let Some(updated) = mirrored_ingress(&names, &stable, service.as_ref(), percent)? {
            api.replace(&self.ingress, &PostParams::default(), &updated)
                .await
                .map_err(RouterError::api(object))?;
        }
        Ok(())
    }
}

impl Router for NginxRouter {
    fn name(&self) -> &'static str {
        "nginx"
    }

    /// ingress-nginx labels canary requests with the canary upstream,
    /// `canary="<namespace>-<canary service>-<port>"`, and stable ones with `canary=""`.
    fn default_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        let port = names.port.ok_or_else(|| {
            "cannot tell the canary upstream's port: set service.port, or analysis.stableMatchers and canaryMatchers".to_string()
        })?;
        Ok((
            r#"canary="""#.to_string(),
            format!(
                r#"canary="{}-{}-{port}""#,
                names.namespace, names.canary_service
            ),
        ))
    }

    fn set<'a>(
        &'a self,
        ctx: &'a RouteContext,
        weight: u8,
        matches: &'a [Match],
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(self.apply(ctx, weight, matches))
    }

    fn reset<'a>(&'a self, ctx: &'a RouteContext) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            self.remove(ctx).await?;
            self.apply_mirror(ctx, None).await
        })
    }

    fn mirror<'a>(
        &'a self,
        ctx: &'a RouteContext,
        percent: Option<u8>,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(self.apply_mirror(ctx, percent))
    }

    fn mirror_support(&self) -> MirrorSupport {
        MirrorSupport::AllRequests
    }

    /// None: ingress-nginx counts a request in its metrics in the log phase of the location
    /// that served it, and the mirror subrequest's internal location runs no metrics hook.
    fn mirror_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        Err(format!(
            "ingress-nginx does not count mirrored requests in its metrics \
             (nginx_ingress_controller_*: the mirror subrequest is not measured), so the canary \
             shows no requests there during a mirror step; set analysis.stableMatchers and \
             analysis.canaryMatchers to select the application's own metrics by pod, e.g. \
             'pod=~\"{}-[a-z0-9]+-[a-z0-9]+\"' and 'pod=~\"{}-[a-z0-9]+-[a-z0-9]+\"', with a \
             template on those metrics",
            names.target, names.canary_deployment
        ))
    }
}

/// Whether `target` is vigil's mirror target: a URL of the canary Service.
fn is_our_target(names: &Names<'_>, target: &str) -> bool {
    let host = format!("{}.{}.svc.", names.canary_service, names.namespace);
    ["http://", "https://"].iter().any(|scheme| {
        target
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.starts_with(&host))
    })
}

/// The backends of an Ingress: its paths' and its default backend.
fn backends(ingress: &Ingress) -> impl Iterator<Item = &IngressBackend> {
    let spec = ingress.spec.as_ref();
    spec.and_then(|s| s.rules.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|r| r.http.iter().flat_map(|h| &h.paths))
        .map(|p| &p.backend)
        .chain(spec.and_then(|s| s.default_backend.as_ref()))
}

/// The port of the stable Service the mirror goes to: the Release's, else the one the
/// Ingress's backends use (a named port looked up in `service`).
fn mirror_port(
    names: &Names<'_>,
    stable: &Ingress,
    service: Option<&Service>,
) -> Result<i32, RouterError> {
    if let Some(port) = names.port {
        return Ok(port);
    }
    let object = names.object(
        "Ingress",
        stable.metadata.name.as_deref().unwrap_or_default(),
    );
    let mut ports = BTreeSet::new();
    for port in backends(stable).filter_map(|b| b.service.as_ref()?.port.as_ref()) {
        let number = match (port.number, &port.name) {
            (Some(n), _) => n,
            (None, Some(name)) => service
                .and_then(|s| s.spec.as_ref()?.ports.as_ref())
                .into_iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.port)
                .ok_or_else(|| RouterError::Invalid {
                    object: object.clone(),
                    message: format!(
                        "routes to port {name} of Service {}, which has no port of that name; \
                         set spec.service.port",
                        names.service
                    ),
                })?,
            (None, None) => continue,
        };
        ports.insert(number);
    }
    match ports.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => Ok(*one),
        [] => Err(RouterError::Invalid {
            object,
            message: "names no port of the stable Service; set spec.service.port".into(),
        }),
        many => Err(RouterError::Invalid {
            object,
            message: format!(
                "routes to ports {many:?} of Service {}, and ingress-nginx mirrors an Ingress to \
                 one URL; set spec.service.port to the port to mirror to",
                names.service
            ),
        }),
    }
}

/// The stable Ingress with vigil's mirror to the canary Service (`Some(100)`; ingress-nginx
/// has no other share) or without it (`None`); `None` returned when nothing changes.
/// `service` is the stable Service, for a port the Ingress names. What is refused and why is
/// in the module documentation.
pub fn mirrored_ingress(
    names: &Names<'_>,
    stable: &Ingress,
    service: Option<&Service>,
    percent: Option<u8>,
) -> Result<Option<Ingress>, RouterError> {
    let stable_name = stable.metadata.name.as_deref().unwrap_or_default();
    let invalid = |message: String| RouterError::Invalid {
        object: names.object("Ingress", stable_name),
        message,
    };
    let current = stable.metadata.annotations.clone().unwrap_or_default();
    let ours = current
        .get(MIRROR_TARGET)
        .is_some_and(|t| is_our_target(names, t));
    let mut annotations = current.clone();
    match percent {
        None if ours => {
            annotations.remove(MIRROR_TARGET);
            annotations.remove(MIRROR_HOST);
        }
        None => return Ok(None),
        Some(p) => {
            MirrorSupport::AllRequests
                .check("nginx", p)
                .map_err(&invalid)?;
            if is_canary(stable) {
                return Err(invalid(format!(
                    "is itself a canary Ingress ({CANARY}: \"true\"); point \
                     spec.routing.nginx.ingress at the stable Ingress"
                )));
            }
            let own: Vec<&str> = current
                .keys()
                .filter(|k| k.starts_with(MIRROR_PREFIX))
                .map(String::as_str)
                .collect();
            if !ours && !own.is_empty() {
                return Err(invalid(format!(
                    "has mirror annotations of its own ({}), and ingress-nginx mirrors an Ingress \
                     to one target; remove them for the rollout, or drop the mirror steps",
                    own.join(", ")
                )));
            }
            if current.contains_key(REWRITE_TARGET) {
                return Err(invalid(format!(
                    "has {REWRITE_TARGET}, and ingress-nginx mirrors the original URI, so the \
                     canary would get other paths than stable; drop the mirror steps, or route \
                     with the Gateway API or Istio"
                )));
            }
            let mut to_stable = 0;
            for backend in backends(stable) {
                match backend.service.as_ref() {
                    Some(s) if s.name == names.service => to_stable += 1,
                    other => {
                        let what = other.map_or_else(
                            || "a resource backend".to_string(),
                            |s| format!("Service {}", s.name),
                        );
                        return Err(invalid(format!(
                            "routes to {what} too, and ingress-nginx mirrors every path of an \
                             Ingress, so the canary would get requests it does not serve; move \
                             the paths of Service {} to an Ingress of their own and name that \
                             one in spec.routing.nginx.ingress",
                            names.service
                        )));
                    }
                }
            }
            if to_stable == 0 {
                return Err(invalid(format!(
                    "has no backend pointing at Service {}; point a path at it, or correct \
                     spec.routing.nginx.ingress or spec.service.name",
                    names.service
                )));
            }
            let scheme = match current.get(BACKEND_PROTOCOL).map(String::as_str) {
                None => "http",
                Some(p) if p.eq_ignore_ascii_case("HTTP") => "http",
                Some(p) if p.eq_ignore_ascii_case("HTTPS") => "https",
                Some(p) => {
                    return Err(invalid(format!(
                        "has {BACKEND_PROTOCOL}: {p}, and ingress-nginx mirrors over HTTP(S) \
                         only; drop the mirror steps"
                    )));
                }
            };
            let port = mirror_port(names, stable, service)?;
            annotations.insert(
                MIRROR_TARGET.into(),
                format!(
                    "{scheme}://{}.{}.svc.{CLUSTER_DOMAIN}:{port}$request_uri",
                    names.canary_service, names.namespace
                ),
            );
            let host = current
                .get(UPSTREAM_VHOST)
                .cloned()
                .unwrap_or_else(|| "$host".into());
            annotations.insert(MIRROR_HOST.into(), host);
        }
    }
    if annotations == current {
        return Ok(None);
    }
    let mut updated = stable.clone();
    updated.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Ok(Some(updated))
}

/// The name of the canary Ingress of stable Ingress `stable`.
pub fn canary_name(stable: &str) -> String {
    format!("{stable}-canary")
}

/// Whether an Ingress carries `nginx.ingress.kubernetes.io/canary: "true"`.
fn is_canary(ingress: &Ingress) -> bool {
    ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CANARY))
        .is_some_and(|v| v == "true")
}

/// The backend pointed at the canary Service when it points at the stable one.
fn retarget(names: &Names<'_>, backend: &IngressBackend) -> Option<IngressBackend> {
    let service = backend
        .service
        .as_ref()
        .filter(|s| s.name == names.service)?;
    let mut service = service.clone();
    service.name = names.canary_service.into();
    if let Some(port) = names.port {
        service.port = Some(ServiceBackendPort {
            number: Some(port),
            name: None,
        });
    }
    Some(IngressBackend {
        service: Some(service),
        resource: None,
    })
}

/// The canary Ingress for `stable` at `weight` percent and A/B conditions `conds` (see the
/// module documentation for what is copied and how matches map to annotations).
pub fn canary_ingress(
    names: &Names<'_>,
    stable: &Ingress,
    additional: &BTreeMap<String, String>,
    weight: u8,
    conds: &[Vec<Condition>],
) -> Result<Ingress, RouterError> {
    let stable_name = stable.metadata.name.as_deref().unwrap_or_default();
    let stable_object = names.object("Ingress", stable_name);
    let name = canary_name(stable_name);
    if is_canary(stable) {
        return Err(RouterError::Invalid {
            object: stable_object,
            message: format!(
                "is itself a canary Ingress ({CANARY}: \"true\"); point spec.routing.nginx.ingress \
                 at the stable Ingress"
            ),
        });
    }
    let spec = stable.spec.clone().unwrap_or_default();
    let rules: Vec<IngressRule> = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|rule| {
            let paths: Vec<_> = rule
                .http
                .iter()
                .flat_map(|h| &h.paths)
                .filter_map(|p| {
                    let backend = retarget(names, &p.backend)?;
                    let mut p = p.clone();
                    p.backend = backend;
                    Some(p)
                })
                .collect();
            (!paths.is_empty()).then(|| IngressRule {
                host: rule.host.clone(),
                http: Some(HTTPIngressRuleValue { paths }),
            })
        })
        .collect();
    let default_backend = spec
        .default_backend
        .as_ref()
        .and_then(|b| retarget(names, b));
    if rules.is_empty() && default_backend.is_none() {
        return Err(RouterError::Invalid {
            object: stable_object,
            message: format!(
                "has no backend pointing at Service {}; point a path at it, or correct \
                 spec.routing.nginx.ingress or spec.service.name",
                names.service
            ),
        });
    }

    let mut annotations: BTreeMap<String, String> = stable
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ab = match_annotations(&names.object("Ingress", &name), conds)?;
    let replaced_by_ab = |k: &str| {
        (ab.contains_key(BY_HEADER) && k.starts_with(BY_HEADER))
            || (ab.contains_key(BY_COOKIE) && k == BY_COOKIE)
    };
    annotations.extend(
        additional
            .iter()
            .filter(|(k, _)| !replaced_by_ab(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    annotations.insert(CANARY.into(), "true".into());
    annotations.insert(WEIGHT.into(), weight.to_string());
    annotations.insert(WEIGHT_TOTAL.into(), "100".into());
    annotations.extend(ab);

    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(names.namespace.into()),
            labels: Some(BTreeMap::from([(OWNER_LABEL.into(), names.canary.into())])),
            annotations: Some(annotations),
            owner_references: Some(vec![names.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: spec.ingress_class_name,
            default_backend,
            rules: (!rules.is_empty()).then_some(rules),
            tls: spec.tls,
        }),
        status: None,
    })
}

/// The ingress-nginx annotations expressing A/B conditions (see the module documentation).
fn match_annotations(
    object: &str,
    conds: &[Vec<Condition>],
) -> Result<BTreeMap<String, String>, RouterError> {
    let invalid = |message: &str| RouterError::Invalid {
        object: object.into(),
        message: message.into(),
    };
    let mut out = BTreeMap::new();
    for entry in conds {
        let [cond] = entry.as_slice() else {
            return Err(invalid(
                "ingress-nginx cannot require a header and a cookie together; make them separate \
                 match entries (either one then routes to the canary), or use another router",
            ));
        };
        match cond {
            Condition::Header { name, value } => {
                if out.contains_key(BY_HEADER) {
                    return Err(invalid(
                        "ingress-nginx routes by one header per canary Ingress; keep one header match",
                    ));
                }
                out.insert(BY_HEADER.to_string(), name.clone());
                match value {
                    // Without a value ingress-nginx routes `always` to the canary (and `never`
                    // away from it), which is what a header match without a value means.
                    ValueMatch::Exact(v) if v == "always" => {}
                    ValueMatch::Exact(v) => {
                        out.insert(BY_HEADER_VALUE.into(), v.clone());
                    }
                    ValueMatch::Regex(r) => {
                        out.insert(BY_HEADER_PATTERN.into(), r.clone());
                    }
                }
            }
            Condition::Cookie { name } => {
                if out.contains_key(BY_COOKIE) {
                    return Err(invalid(
                        "ingress-nginx routes by one cookie per canary Ingress; keep one cookie match",
                    ));
                }
                out.insert(BY_COOKIE.into(), name.clone());
            }
        }
    }
    Ok(out)
}

/// The existing canary Ingress updated to `desired`; `None` when nothing changes. An
/// existing Ingress the Release does not own is an error.
pub fn updated_canary_ingress(
    names: &Names<'_>,
    existing: &Ingress,
    desired: &Ingress,
) -> Result<Option<Ingress>, RouterError> {
    let name = existing.metadata.name.as_deref().unwrap_or_default();
    if !names.owns(&existing.metadata) {
        return Err(names.not_ours(
            "Ingress",
            name,
            "rename it: vigil names the canary copy of the stable Ingress `<stable>-canary`",
        ));
    }
    let mut updated = existing.clone();
    updated.metadata.labels = desired.metadata.labels.clone();
    updated.metadata.annotations = desired.metadata.annotations.clone();
    updated.metadata.owner_references = desired.metadata.owner_references.clone();
    updated.spec = desired.spec.clone();
    Ok((updated != *existing).then_some(updated))
}

/// The host/path pairs an Ingress routes (`None` host: every host; default backend: `*`).
fn host_paths(ingress: &Ingress) -> Vec<(Option<String>, String)> {
    let spec = ingress.spec.as_ref();
    let mut out: Vec<_> = spec
        .and_then(|s| s.rules.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r.http
                .iter()
                .flat_map(|h| &h.paths)
                .map(|p| (r.host.clone(), p.path.clone().unwrap_or_else(|| "/".into())))
        })
        .collect();
    if spec.and_then(|s| s.default_backend.as_ref()).is_some() {
        out.push((None, "*".into()));
    }
    out
}

/// Another canary Ingress in `others` for a host and path of `desired`, as an error:
/// ingress-nginx applies at most one canary Ingress per host and path.
pub fn conflicting_canary(
    names: &Names<'_>,
    desired: &Ingress,
    others: &[Ingress],
) -> Option<RouterError> {
    let ours = desired.metadata.name.as_deref();
    let wanted = host_paths(desired);
    others
        .iter()
        .filter(|o| o.metadata.name.as_deref() != ours && is_canary(o))
        .find_map(|o| {
            let (host, path) = host_paths(o).into_iter().find(|hp| wanted.contains(hp))?;
            let other = o.metadata.name.as_deref().unwrap_or_default();
            Some(RouterError::Invalid {
                object: names.object("Ingress", other),
                message: format!(
                    "is already a canary Ingress for host {} path {path}, and ingress-nginx allows \
                     one canary Ingress per host and path; remove its {CANARY} annotation or \
                     finish that rollout first",
                    host.as_deref().unwrap_or("*")
                ),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::routers::testing::{cookie, header, names};
    use crate::rollout::HeaderMatch;
    use serde_json::json;

    fn stable() -> Ingress {
        serde_json::from_value(json!({
            "metadata": {
                "name": "shop", "namespace": "shop", "resourceVersion": "11",
                "labels": {"app.kubernetes.io/instance": "shop"},
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/rewrite-target": "/",
                    "nginx.ingress.kubernetes.io/upstream-hash-by": "$request_uri",
                    "nginx.ingress.kubernetes.io/canary-weight": "99",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "cert-manager.io/cluster-issuer": "letsencrypt",
                    "external-dns.alpha.kubernetes.io/hostname": "shop.example.com",
                    "meta.helm.sh/release-name": "shop",
                    "argocd.argoproj.io/tracking-id": "shop:networking.k8s.io/Ingress:shop/shop"
                }
            },
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["shop.example.com", "api.example.com"], "secretName": "shop-tls"}],
                "rules": [
                    {"host": "shop.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                        {"path": "/static", "pathType": "Prefix",
                         "backend": {"service": {"name": "cdn", "port": {"number": 80}}}}
                    ]}},
                    {"host": "api.example.com", "http": {"paths": [
                        {"path": "/web", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
                    ]}},
                    {"host": "other.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "other", "port": {"number": 80}}}}
                    ]}}
                ]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
        }))
        .unwrap()
    }

    fn annotations(i: &Ingress) -> &BTreeMap<String, String> {
        i.metadata.annotations.as_ref().unwrap()
    }

    fn build(weight: u8, matches: &[Match]) -> Result<Ingress, RouterError> {
        let n = names();
        let conds = conditions(&n, matches)?;
        canary_ingress(&n, &stable(), &BTreeMap::new(), weight, &conds)
    }

    #[test]
    fn the_canary_ingress_points_the_stable_paths_at_the_canary_service() {
        let c = build(10, &[]).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("shop-canary"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            c.metadata.labels,
            Some(BTreeMap::from([(
                OWNER_LABEL.to_string(),
                "web".to_string()
            )]))
        );
        assert_eq!(
            c.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        assert_eq!(c.metadata.resource_version, None);
        assert!(c.status.is_none());
        let got = serde_json::to_value(c.spec.as_ref().unwrap()).unwrap();
        assert_eq!(
            got,
            json!({
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["shop.example.com", "api.example.com"], "secretName": "shop-tls"}],
                "rules": [
                    {"host": "shop.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}
                    ]}},
                    {"host": "api.example.com", "http": {"paths": [
                        {"path": "/web", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-canary", "port": {"name": "http"}}}}
                    ]}}
                ]
            })
        );
    }

    #[test]
    fn the_port_of_the_canary_overrides_the_backend_port() {
        let mut n = names();
        n.port = Some(8080);
        let c = canary_ingress(&n, &stable(), &BTreeMap::new(), 10, &[]).unwrap();
        for rule in c.spec.unwrap().rules.unwrap() {
            for p in rule.http.unwrap().paths {
                let port = p.backend.service.unwrap().port.unwrap();
                assert_eq!((port.number, port.name), (Some(8080), None));
            }
        }
    }

    #[test]
    fn annotations_are_copied_except_canary_and_tool_ones() {
        let c = build(10, &[]).unwrap();
        let a = annotations(&c);
        let expected: BTreeMap<String, String> = [
            ("kubernetes.io/ingress.class", "nginx"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            (
                "nginx.ingress.kubernetes.io/upstream-hash-by",
                "$request_uri",
            ),
            (CANARY, "true"),
            (WEIGHT, "10"),
            (WEIGHT_TOTAL, "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(a, &expected);
    }

    #[test]
    fn the_weight_is_written_as_given() {
        for w in [0u8, 10, 50, 100] {
            let c = build(w, &[]).unwrap();
            assert_eq!(annotations(&c)[WEIGHT], w.to_string());
            assert_eq!(annotations(&c)[WEIGHT_TOTAL], "100");
        }
    }

    #[test]
    fn header_matches_map_to_ingress_nginx_annotations() {
        let c = build(0, &[header("x-canary", None, None)]).unwrap();
        assert_eq!(annotations(&c)[BY_HEADER], "x-canary");
        assert!(!annotations(&c).contains_key(BY_HEADER_VALUE));
        assert!(!annotations(&c).contains_key(BY_HEADER_PATTERN));

        let c = build(0, &[header("x-canary", Some("beta"), None)]).unwrap();
        assert_eq!(annotations(&c)[BY_HEADER], "x-canary");
        assert_eq!(annotations(&c)[BY_HEADER_VALUE], "beta");

        let c = build(0, &[header("x-user", None, Some("^(alice|bob)$"))]).unwrap();
        assert_eq!(annotations(&c)[BY_HEADER], "x-user");
        assert_eq!(annotations(&c)[BY_HEADER_PATTERN], "^(alice|bob)$");
        assert!(!annotations(&c).contains_key(BY_HEADER_VALUE));

        let c = build(
            20,
            &[header("x-canary", Some("beta"), None), cookie("canary")],
        )
        .unwrap();
        assert_eq!(annotations(&c)[BY_HEADER_VALUE], "beta");
        assert_eq!(annotations(&c)[BY_COOKIE], "canary");
        assert_eq!(annotations(&c)[WEIGHT], "20");
    }

    #[test]
    fn matches_ingress_nginx_cannot_express_are_errors_naming_the_canary_ingress() {
        for matches in [
            vec![header("a", None, None), header("b", None, None)],
            vec![cookie("a"), cookie("b")],
            vec![Match {
                header: Some(HeaderMatch {
                    name: "a".into(),
                    exact: None,
                    regex: None,
                }),
                cookie: Some("c".into()),
            }],
        ] {
            let msg = build(0, &matches).unwrap_err().to_string();
            assert!(
                msg.starts_with("Ingress shop/shop-canary: ingress-nginx"),
                "{msg}"
            );
        }
    }

    #[test]
    fn additional_annotations_are_added_but_do_not_override_vigils() {
        let n = names();
        let additional: BTreeMap<String, String> = [
            ("nginx.ingress.kubernetes.io/proxy-body-size", "8m"),
            (WEIGHT, "77"),
            (BY_HEADER, "x-from-spec"),
            (BY_HEADER_VALUE, "yes"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = canary_ingress(&n, &stable(), &additional, 5, &[]).unwrap();
        let a = annotations(&c);
        assert_eq!(a["nginx.ingress.kubernetes.io/proxy-body-size"], "8m");
        assert_eq!(a[WEIGHT], "5");
        assert_eq!(a[BY_HEADER], "x-from-spec");
        assert_eq!(a[BY_HEADER_VALUE], "yes");
        // A header match replaces the spec's header annotations entirely.
        let conds = conditions(&n, &[header("x-user", None, Some("a.*"))]).unwrap();
        let c = canary_ingress(&n, &stable(), &additional, 5, &conds).unwrap();
        let a = annotations(&c);
        assert_eq!(a[BY_HEADER], "x-user");
        assert_eq!(a[BY_HEADER_PATTERN], "a.*");
        assert!(!a.contains_key(BY_HEADER_VALUE));
    }

    #[test]
    fn an_ingress_without_the_stable_service_is_an_error_that_says_what_to_do() {
        let mut n = names();
        n.service = "nope";
        let msg = canary_ingress(&n, &stable(), &BTreeMap::new(), 10, &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("Ingress shop/shop: has no backend pointing at Service nope"),
            "{msg}"
        );
        assert!(msg.contains("spec.routing.nginx.ingress"), "{msg}");
    }

    #[test]
    fn a_default_backend_to_the_stable_service_is_retargeted_and_others_dropped() {
        let n = names();
        let mut s = stable();
        let spec = s.spec.as_mut().unwrap();
        spec.rules = None;
        spec.default_backend = Some(
            serde_json::from_value(json!({"service": {"name": "web", "port": {"number": 80}}}))
                .unwrap(),
        );
        let c = canary_ingress(&n, &s, &BTreeMap::new(), 10, &[]).unwrap();
        let spec = c.spec.unwrap();
        assert_eq!(spec.rules, None);
        assert_eq!(
            spec.default_backend.unwrap().service.unwrap().name,
            "web-canary"
        );

        let mut s = stable();
        s.spec.as_mut().unwrap().default_backend = Some(
            serde_json::from_value(json!({"service": {"name": "cdn", "port": {"number": 80}}}))
                .unwrap(),
        );
        let c = canary_ingress(&n, &s, &BTreeMap::new(), 10, &[]).unwrap();
        assert_eq!(c.spec.unwrap().default_backend, None);
    }

    #[test]
    fn a_stable_ingress_marked_canary_is_refused() {
        let n = names();
        let mut s = stable();
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(CANARY.into(), "true".into());
        let msg = canary_ingress(&n, &s, &BTreeMap::new(), 10, &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("Ingress shop/shop: is itself a canary Ingress"),
            "{msg}"
        );
    }

    #[test]
    fn updating_is_idempotent_and_keeps_the_resource_version() {
        let n = names();
        let desired = build(10, &[]).unwrap();
        let mut existing = desired.clone();
        existing.metadata.resource_version = Some("5".into());
        existing.metadata.uid = Some("ing-uid".into());
        assert_eq!(
            updated_canary_ingress(&n, &existing, &desired).unwrap(),
            None
        );
        let next = build(50, &[]).unwrap();
        let updated = updated_canary_ingress(&n, &existing, &next)
            .unwrap()
            .unwrap();
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("5"));
        assert_eq!(updated.metadata.uid.as_deref(), Some("ing-uid"));
        assert_eq!(annotations(&updated)[WEIGHT], "50");
        assert_eq!(updated_canary_ingress(&n, &updated, &next).unwrap(), None);
    }

    #[test]
    fn a_foreign_ingress_with_the_canary_name_is_not_taken_over() {
        let n = names();
        let desired = build(10, &[]).unwrap();
        let mut foreign = desired.clone();
        foreign.metadata.owner_references = None;
        let msg = updated_canary_ingress(&n, &foreign, &desired)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(
                "Ingress shop/shop-canary: exists but is not owned by Release shop/web"
            ),
            "{msg}"
        );
    }

    /// A stable Ingress that routes only to Service `web`, on port 80 and a named port.
    fn web_only() -> Ingress {
        let mut s = stable();
        let spec = s.spec.as_mut().unwrap();
        let rules = spec.rules.as_mut().unwrap();
        rules.truncate(2);
        rules[0].http.as_mut().unwrap().paths.truncate(1);
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(REWRITE_TARGET);
        s
    }

    fn web_service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_mirror_annotations_point_at_the_canary_service() {
        let n = names();
        let got = mirrored_ingress(&n, &web_only(), Some(&web_service()), Some(100))
            .unwrap()
            .unwrap();
        let a = annotations(&got);
        assert_eq!(
            a[MIRROR_TARGET],
            "http://web-canary.shop.svc.cluster.local:80$request_uri"
        );
        assert_eq!(a[MIRROR_HOST], "$host");
        // Everything else is as it was, the resourceVersion included.
        let mut back = got.clone();
        let b = back.metadata.annotations.as_mut().unwrap();
        b.remove(MIRROR_TARGET);
        b.remove(MIRROR_HOST);
        assert_eq!(back, web_only());
        assert_eq!(got.metadata.resource_version.as_deref(), Some("11"));
    }

    #[test]
    fn mirroring_is_idempotent_and_none_removes_exactly_what_vigil_wrote() {
        let n = names();
        let svc = web_service();
        let got = mirrored_ingress(&n, &web_only(), Some(&svc), Some(100))
            .unwrap()
            .unwrap();
        assert!(
            mirrored_ingress(&n, &got, Some(&svc), Some(100))
                .unwrap()
                .is_none()
        );
        let removed = mirrored_ingress(&n, &got, None, None).unwrap().unwrap();
        assert_eq!(removed, web_only());
        assert!(
            mirrored_ingress(&n, &web_only(), None, None)
                .unwrap()
                .is_none()
        );
        // The canary Ingress does not copy the mirror: set is the same with or without it.
        let copy = |i: &Ingress| canary_ingress(&n, i, &BTreeMap::new(), 0, &[]).unwrap();
        assert_eq!(copy(&got), copy(&web_only()));
    }

    #[test]
    fn the_port_scheme_and_host_follow_the_release_and_the_ingress() {
        let mut n = names();
        let mut i = web_only();
        let a = i.metadata.annotations.as_mut().unwrap();
        a.insert(BACKEND_PROTOCOL.into(), "HTTPS".into());
        a.insert(UPSTREAM_VHOST.into(), "web.internal".into());
        // Ports 80 and "http" (80) agree.
        let got = mirrored_ingress(&n, &i, Some(&web_service()), Some(100))
            .unwrap()
            .unwrap();
        assert_eq!(
            annotations(&got)[MIRROR_TARGET],
            "https://web-canary.shop.svc.cluster.local:80$request_uri"
        );
        assert_eq!(annotations(&got)[MIRROR_HOST], "web.internal");
        // Without the Service the named port is unknown; the Release's port settles it.
        let msg = mirrored_ingress(&n, &i, None, Some(100))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("set spec.service.port"), "{msg}");
        n.port = Some(8443);
        let got = mirrored_ingress(&n, &i, None, Some(100)).unwrap().unwrap();
        assert!(annotations(&got)[MIRROR_TARGET].contains(":8443$request_uri"));
        // Two ports of the Service: which one is the Release's to say.
        let mut two = web_only();
        two.spec.as_mut().unwrap().rules.as_mut().unwrap()[1]
            .http
            .as_mut()
            .unwrap()
            .paths[0]
            .backend
            .service
            .as_mut()
            .unwrap()
            .port = Some(ServiceBackendPort {
            name: Some("admin".into()),
            number: None,
        });
        let msg = mirrored_ingress(&names(), &two, Some(&web_service()), Some(100))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("routes to ports [80, 9000]"), "{msg}");
    }

    #[test]
    fn what_ingress_nginx_would_mirror_wrongly_is_refused_with_what_to_do() {
        let n = names();
        let svc = web_service();
        let refused = |i: &Ingress, p: u8| {
            mirrored_ingress(&n, i, Some(&svc), Some(p))
                .unwrap_err()
                .to_string()
        };
        // Paths to other Services would be mirrored to the canary too.
        let msg = refused(&stable(), 100);
        assert!(msg.starts_with("Ingress shop/shop: "), "{msg}");
        let mut other = web_only();
        other.spec.as_mut().unwrap().default_backend = Some(
            serde_json::from_value(json!({"service": {"name": "cdn", "port": {"number": 80}}}))
                .unwrap(),
        );
        let msg = refused(&other, 100);
        assert!(msg.contains("routes to Service cdn too"), "{msg}");
        // The mirror gets the URI before rewrite-target.
        let mut rewrite = web_only();
        rewrite
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REWRITE_TARGET.into(), "/".into());
        assert!(refused(&rewrite, 100).contains(REWRITE_TARGET));
        // gRPC is not mirrored.
        let mut grpc = web_only();
        grpc.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(BACKEND_PROTOCOL.into(), "GRPC".into());
        assert!(refused(&grpc, 100).contains("backend-protocol: GRPC"));
        // No sampling.
        let msg = refused(&web_only(), 10);
        assert!(msg.contains("every request or none"), "{msg}");
        // A mirror of the user's own is not replaced; removing ours leaves it alone.
        let mut theirs = web_only();
        theirs.metadata.annotations.as_mut().unwrap().insert(
            MIRROR_TARGET.into(),
            "https://test.example.com$request_uri".into(),
        );
        let msg = refused(&theirs, 100);
        assert!(
            msg.contains(
                "has mirror annotations of its own (nginx.ingress.kubernetes.io/mirror-target)"
            ),
            "{msg}"
        );
        assert!(mirrored_ingress(&n, &theirs, None, None).unwrap().is_none());
        // Only the stable Ingress carries the mirror.
        let mut canary = web_only();
        canary
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(CANARY.into(), "true".into());
        assert!(refused(&canary, 100).contains("is itself a canary Ingress"));
    }

    #[test]
    fn nginx_mirrors_everything_and_its_metrics_do_not_show_the_copies() {
        let r = NginxRouter {
            ingress: "shop".into(),
            additional_annotations: BTreeMap::new(),
        };
        assert_eq!(r.mirror_support(), MirrorSupport::AllRequests);
        assert!(r.mirror_support().check("nginx", 100).is_ok());
        let msg = r
            .mirror_matchers(&crate::cluster::routers::testing::matcher_names())
            .unwrap_err();
        assert!(
            msg.starts_with("ingress-nginx does not count mirrored requests"),
            "{msg}"
        );
        assert!(
            msg.contains(r#"'pod=~"web-canary-[a-z0-9]+-[a-z0-9]+"'"#),
            "{msg}"
        );
        let msg = checked_mirror(&r, &names(), Some(50))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("Release shop/web: the nginx router mirrors every request"),
            "{msg}"
        );
    }

    #[test]
    fn another_canary_for_the_same_host_and_path_is_a_conflict() {
        let n = names();
        let desired = build(10, &[]).unwrap();
        let mut other = desired.clone();
        other.metadata.name = Some("someone-elses".into());
        // Our own canary Ingress and the stable one are no conflict.
        assert!(conflicting_canary(&n, &desired, &[desired.clone(), stable()]).is_none());
        let msg = conflicting_canary(&n, &desired, &[other.clone()])
            .unwrap()
            .to_string();
        assert!(msg.starts_with("Ingress shop/someone-elses: is already a canary Ingress for host shop.example.com path /"), "{msg}");
        // Not a canary: no conflict.
        other.metadata.annotations = None;
        assert!(conflicting_canary(&n, &desired, &[other]).is_none());
    }
}
