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

use super::{
    Condition, MatcherNames, Names, RouteContext, Router, RouterError, ValueMatch, conditions,
    is_not_found,
};
use crate::api::crd::{NginxRouting, OWNER_LABEL};
use crate::rollout::Match;
use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::{
    HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use std::collections::BTreeMap;

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

/// Annotation prefixes not copied from the stable Ingress to the canary Ingress:
/// - ingress-nginx's canary annotations (vigil sets its own);
/// - `kubectl.kubernetes.io/` (`last-applied-configuration` describes the stable object);
/// - `cert-manager.io/`, `acme.cert-manager.io/` (cert-manager would issue a second
///   Certificate into the same TLS Secret; the copy reuses the stable one's Secret);
/// - `external-dns.alpha.kubernetes.io/` (external-dns would manage the same records from
///   two sources);
/// - `meta.helm.sh/`, `argocd.argoproj.io/` (Helm and Argo CD would count the copy as part
///   of a release or application that does not contain it, and prune or adopt it).
pub const NOT_COPIED: &[&str] = &[
    "nginx.ingress.kubernetes.io/canary",
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
        Box::pin(self.remove(ctx))
    }
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
