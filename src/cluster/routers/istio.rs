//! Istio: the route weights of a VirtualService (`networking.istio.io/v1`, read and written
//! as JSON).
//!
//! In every HTTP route that sends to the stable Service's host (or, when `routes` names
//! some, in those), the stable destination gets weight `100 - w` and is followed by a copy
//! with the canary Service's host, written in the same form as the stable one (`web` →
//! `web-canary`, `web.shop.svc.cluster.local` → `web-canary.shop.svc.cluster.local`), with
//! weight `w`. A `subset` of the stable destination is not copied: DestinationRule subsets
//! belong to the stable host. The stable weights as they were are recorded in the
//! annotation [`super::STABLE_WEIGHTS_ANNOTATION`] so that reset restores them exactly.
//! Only `http` routes are split; `tcp` and `tls` routes are left alone.
//!
//! For A/B conditions every such route gets a companion route, named
//! `vigil-<canary>-ab-<position>`, inserted right before it (Istio takes the first route
//! that matches): it copies the route with the conditions added to each of its matches and
//! sends everything to the canary. Header names are lower-cased, as Istio requires; a header
//! condition is `{exact: v}` or `{regex: r}` (RE2, matched against the whole value), and a
//! cookie `C` is `cookie: {regex: ...}` ([`super::cookie_regex`]).
//!
//! Mirroring appends an entry to `mirrors` of every such route: the canary's destination
//! (host in the stable one's form, its port, no subset) and `percentage: {value: N}`, left
//! out at 100 (Istio's default: every request). `mirrors` (Istio 1.20+) rather than the
//! older single `mirror` with `mirrorPercentage`: a list holds the user's own mirrors beside
//! vigil's, and vigil's entry is removed exactly. Istio refuses a route with both fields,
//! so a route that mirrors with `mirror` is an error saying to move it into `mirrors`. An
//! older CRD drops `mirrors`, so a mirror is written only when a dry run keeps it. The mirror
//! applies to every request of the route, also those it sends to other destinations; reset
//! removes it with the rest.

use super::split::{
    Dialect, mirror, mirror_object, object_name, reset_object, set_object, split, unsplit,
};
use super::{
    Condition, MatcherNames, MirrorSupport, Names, RouteContext, Router, RouterError, ValueMatch,
    cookie_regex,
};
use crate::api::crd::IstioRouting;
use crate::rollout::Match;
use futures::future::BoxFuture;
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The router of `routing.istio`.
#[derive(Debug, Clone)]
pub struct IstioRouter {
    /// The VirtualService.
    pub virtual_service: String,
    /// The names of the HTTP routes to split; empty: every route sending to the Service.
    pub routes: Vec<String>,
}

impl IstioRouter {
    /// The router for this configuration.
    pub fn new(config: &IstioRouting) -> Self {
        IstioRouter {
            virtual_service: config.virtual_service.clone(),
            routes: config.routes.clone(),
        }
    }
}

/// The API resource of `networking.istio.io/v1` VirtualService.
pub fn virtual_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

impl Router for IstioRouter {
    fn name(&self) -> &'static str {
        "istio"
    }

    /// Istio's `destination_workload` is the Deployment (`web` vs `web-canary`).
    fn default_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        Ok((
            format!(r#"destination_workload="{}""#, names.target),
            format!(r#"destination_workload="{}""#, names.canary_deployment),
        ))
    }

    fn set<'a>(
        &'a self,
        ctx: &'a RouteContext,
        weight: u8,
        matches: &'a [Match],
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(set_object(
            ctx,
            virtual_service_resource(),
            &self.virtual_service,
            "spec.routing.istio.virtualService",
            matches,
            move |names, vs, conds| split_virtual_service(names, vs, &self.routes, weight, conds),
        ))
    }

    fn reset<'a>(&'a self, ctx: &'a RouteContext) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(reset_object(
            ctx,
            virtual_service_resource(),
            &self.virtual_service,
            reset_virtual_service,
        ))
    }

    fn mirror<'a>(
        &'a self,
        ctx: &'a RouteContext,
        percent: Option<u8>,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let dialect = VirtualService {
                routes: &self.routes,
            };
            mirror_object(
                ctx,
                self,
                virtual_service_resource(),
                &self.virtual_service,
                "spec.routing.istio.virtualService",
                &dialect,
                percent,
                |names, vs, percent| mirror_virtual_service(names, vs, &self.routes, percent),
            )
            .await
        })
    }

    fn mirror_support(&self) -> MirrorSupport {
        MirrorSupport::Percent
    }

    /// The canary's sidecar counts the copies it gets (`reporter="destination"`); the
    /// caller's side (`reporter="source"`, gateways, waypoints) does not count them at all,
    /// and no standard label marks a request as mirrored. With the canary at weight 0 the
    /// canary's requests are the copies.
    fn mirror_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        Ok((
            format!(
                r#"reporter="destination", destination_workload="{}""#,
                names.target
            ),
            format!(
                r#"reporter="destination", destination_workload="{}""#,
                names.canary_deployment
            ),
        ))
    }
}

/// The VirtualService dialect of the shared splitting, limited to the named routes.
struct VirtualService<'r> {
    routes: &'r [String],
}

/// What follows the Service's name in `host` when it names Service `service` of the
/// Release's namespace (`""`, `.ns`, `.ns.svc`, `.ns.svc.<cluster domain>`).
fn host_suffix<'h>(names: &Names<'_>, host: &'h str, service: &str) -> Option<&'h str> {
    let rest = host.strip_prefix(service)?;
    if rest.is_empty() {
        return Some(rest);
    }
    let after_ns = rest.strip_prefix('.')?.strip_prefix(names.namespace)?;
    (after_ns.is_empty() || after_ns == ".svc" || after_ns.starts_with(".svc.")).then_some(rest)
}

/// The destination host of a route destination.
fn host(backend: &Value) -> Option<&str> {
    backend.pointer("/destination/host").and_then(Value::as_str)
}

impl Dialect for VirtualService<'_> {
    const KIND: &'static str = "VirtualService";
    const ROUTES: &'static str = "/spec/http";
    const BACKENDS: &'static str = "route";
    const MATCHES: &'static str = "match";
    const AB_BEFORE_SOURCE: bool = true;

    fn is_stable(&self, names: &Names<'_>, backend: &Value) -> bool {
        host(backend).is_some_and(|h| host_suffix(names, h, names.service).is_some())
    }

    fn is_canary(&self, names: &Names<'_>, backend: &Value) -> bool {
        host(backend).is_some_and(|h| host_suffix(names, h, names.canary_service).is_some())
    }

    fn canary_of(&self, names: &Names<'_>, stable: &Value) -> Value {
        let mut canary = stable.clone();
        let suffix = host(stable)
            .and_then(|h| host_suffix(names, h, names.service))
            .unwrap_or_default();
        let canary_host = format!("{}{suffix}", names.canary_service);
        if let Some(d) = canary.get_mut("destination").and_then(Value::as_object_mut) {
            d.insert("host".into(), Value::String(canary_host));
            d.remove("subset");
        }
        canary
    }

    fn selected(&self, route: &Value) -> bool {
        self.routes.is_empty()
            || route
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| self.routes.iter().any(|r| r == n))
    }

    fn add_conditions(
        &self,
        object: &str,
        route_match: &Value,
        entry: &[Condition],
    ) -> Result<Value, RouterError> {
        let mut m = route_match.as_object().cloned().unwrap_or_default();
        let mut headers = m
            .get("headers")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for cond in entry {
            let (name, condition) = match cond {
                Condition::Header {
                    name,
                    value: ValueMatch::Exact(v),
                } => (name.to_ascii_lowercase(), json!({"exact": v})),
                Condition::Header {
                    name,
                    value: ValueMatch::Regex(r),
                } => (name.to_ascii_lowercase(), json!({"regex": r})),
                Condition::Cookie { name } => {
                    ("cookie".to_string(), json!({"regex": cookie_regex(name)}))
                }
            };
            if headers.keys().any(|k| k.eq_ignore_ascii_case(&name)) {
                return Err(RouterError::Invalid {
                    object: object.into(),
                    message: format!(
                        "an http route already matches on header {name}, which an A/B condition needs \
                         too; change the A/B match or the route"
                    ),
                });
            }
            headers.insert(name, condition);
        }
        m.insert("headers".into(), Value::Object(headers));
        Ok(Value::Object(m))
    }

    fn missing_hint(&self) -> String {
        "add an http route with a destination to it, or correct spec.routing.istio.virtualService \
         or spec.service.name"
            .into()
    }

    const MIRRORS: &'static str = "mirrors";
    const MIRROR_DROPPED: &'static str = "the API server drops http[].mirrors: this cluster's \
        VirtualService CRD is older than Istio 1.19, and vigil mirrors with `mirrors`, which \
        Istio follows from 1.20 on; upgrade Istio";

    fn mirror_entry(&self, names: &Names<'_>, stable: &Value, percent: u8) -> Value {
        let destination = self
            .canary_of(names, stable)
            .get("destination")
            .cloned()
            .unwrap_or_else(|| json!({"host": names.canary_service}));
        let mut entry = json!({"destination": destination});
        if percent < 100 {
            entry["percentage"] = json!({"value": percent});
        }
        entry
    }

    fn is_our_mirror(&self, names: &Names<'_>, entry: &Value) -> bool {
        entry
            .pointer("/destination/host")
            .and_then(Value::as_str)
            .is_some_and(|h| host_suffix(names, h, names.canary_service).is_some())
    }

    fn mirror_percent<'v>(&self, entry: &'v Value) -> &'v Value {
        entry.pointer("/percentage/value").unwrap_or(&Value::Null)
    }

    fn mirror_conflict(&self, route: &Value) -> Option<String> {
        let host = route.pointer("/mirror/host").and_then(Value::as_str)?;
        let name = route
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        Some(format!(
            "http route {name} mirrors to {host} with `mirror`, and Istio refuses `mirror` beside \
             `mirrors`, where vigil adds its mirror to the canary; move that mirror into `mirrors` \
             (with `percentage` for `mirrorPercentage`)"
        ))
    }
}

/// An error when a name in `routes` names no HTTP route of `vs` to the stable Service.
fn check_named_routes(
    names: &Names<'_>,
    dialect: &VirtualService<'_>,
    vs: &Value,
) -> Result<(), RouterError> {
    let http = vs.pointer("/spec/http").and_then(Value::as_array);
    for wanted in dialect.routes {
        let found = http.into_iter().flatten().any(|r| {
            r.get("name").and_then(Value::as_str) == Some(wanted.as_str())
                && r.get("route")
                    .and_then(Value::as_array)
                    .is_some_and(|b| b.iter().any(|x| dialect.is_stable(names, x)))
        });
        if !found {
            return Err(RouterError::Invalid {
                object: names.object("VirtualService", object_name(vs)),
                message: format!(
                    "has no http route named {wanted} with a destination to Service {}; correct \
                     spec.routing.istio.routes",
                    names.service
                ),
            });
        }
    }
    Ok(())
}

/// The VirtualService `vs` (a whole object, as JSON) with `weight` percent of the traffic of
/// its HTTP routes to the stable Service (only those named in `routes`, when given) sent to
/// the canary Service, and A/B routes for `conds`. Idempotent; applying another weight or
/// other conditions replaces the previous ones. A name in `routes` that names no route to
/// the stable Service is an error.
pub fn split_virtual_service(
    names: &Names<'_>,
    vs: &Value,
    routes: &[String],
    weight: u8,
    conds: &[Vec<Condition>],
) -> Result<Value, RouterError> {
    let dialect = VirtualService { routes };
    check_named_routes(names, &dialect, vs)?;
    split(&dialect, names, vs, weight, conds)
}

/// The VirtualService `vs` without vigil's routing: canary destinations and A/B routes
/// removed, stable weights restored as they were before the first [`split_virtual_service`],
/// and vigil's mirror removed.
pub fn reset_virtual_service(names: &Names<'_>, vs: &Value) -> Result<Value, RouterError> {
    let all = VirtualService { routes: &[] };
    mirror(&all, names, &unsplit(&all, names, vs)?, None)
}

/// The VirtualService `vs` with a `mirrors` entry of `percent` percent to the canary Service
/// on every HTTP route to the stable Service (only those named in `routes`, when given), or
/// with `None` without vigil's entries (see the module documentation). Idempotent; another
/// percent replaces the previous one. A name in `routes` that names no route to the stable
/// Service is an error.
pub fn mirror_virtual_service(
    names: &Names<'_>,
    vs: &Value,
    routes: &[String],
    percent: Option<u8>,
) -> Result<Value, RouterError> {
    let dialect = VirtualService { routes };
    if percent.is_some() {
        check_named_routes(names, &dialect, vs)?;
    }
    mirror(&dialect, names, vs, percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::routers::split::mirror_kept;
    use crate::cluster::routers::testing::{conds, cookie, header, names};
    use crate::cluster::routers::{STABLE_WEIGHTS_ANNOTATION, ab_prefix};

    fn vs() -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "shop", "namespace": "shop", "resourceVersion": "9"},
            "spec": {
                "hosts": ["shop.example.com"],
                "gateways": ["shop-gw"],
                "http": [
                    {"name": "api",
                     "match": [{"uri": {"prefix": "/api"}}],
                     "timeout": "5s",
                     "route": [{"destination": {"host": "web.shop.svc.cluster.local", "port": {"number": 8080},
                                                "subset": "v1"}}]},
                    {"name": "static",
                     "match": [{"uri": {"prefix": "/static"}}],
                     "route": [{"destination": {"host": "cdn"}}]},
                    {"name": "default",
                     "route": [{"destination": {"host": "web"}, "weight": 90},
                               {"destination": {"host": "legacy"}, "weight": 10}]}
                ],
                "tcp": [{"route": [{"destination": {"host": "web"}}]}]
            }
        })
    }

    #[test]
    fn weights_split_every_route_to_the_stable_host() {
        for w in [0u8, 10, 50, 100] {
            let got = split_virtual_service(&names(), &vs(), &[], w, &[]).unwrap();
            let s = 100 - i64::from(w);
            let w = i64::from(w);
            assert_eq!(
                got["spec"]["http"][0]["route"],
                json!([
                    {"destination": {"host": "web.shop.svc.cluster.local", "port": {"number": 8080}, "subset": "v1"},
                     "weight": s},
                    {"destination": {"host": "web-canary.shop.svc.cluster.local", "port": {"number": 8080}},
                     "weight": w}
                ])
            );
            assert_eq!(
                got["spec"]["http"][2]["route"],
                json!([{"destination": {"host": "web"}, "weight": s},
                       {"destination": {"host": "web-canary"}, "weight": w},
                       {"destination": {"host": "legacy"}, "weight": 10}])
            );
            assert_eq!(got["spec"]["http"][0]["timeout"], "5s");
            assert_eq!(got["spec"]["http"][1], vs()["spec"]["http"][1]);
            assert_eq!(got["spec"]["tcp"], vs()["spec"]["tcp"]);
        }
    }

    #[test]
    fn only_the_named_routes_are_split() {
        let n = names();
        let got = split_virtual_service(&n, &vs(), &["default".into()], 30, &[]).unwrap();
        assert_eq!(got["spec"]["http"][0], vs()["spec"]["http"][0]);
        assert_eq!(
            got["spec"]["http"][2]["route"][1]["destination"]["host"],
            "web-canary"
        );
        assert_eq!(reset_virtual_service(&n, &got).unwrap(), vs());
    }

    #[test]
    fn a_named_route_that_is_missing_or_elsewhere_is_an_error() {
        let n = names();
        for wanted in ["nope", "static"] {
            let msg = split_virtual_service(&n, &vs(), &[wanted.into()], 30, &[])
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with(&format!(
                    "VirtualService shop/shop: has no http route named {wanted}"
                )),
                "{msg}"
            );
            assert!(msg.contains("spec.routing.istio.routes"), "{msg}");
        }
    }

    #[test]
    fn splitting_is_idempotent_and_reset_restores_exactly() {
        let n = names();
        let ten = split_virtual_service(&n, &vs(), &[], 10, &[]).unwrap();
        assert_eq!(split_virtual_service(&n, &ten, &[], 10, &[]).unwrap(), ten);
        let record: Value = serde_json::from_str(
            ten["metadata"]["annotations"][STABLE_WEIGHTS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record, json!({"0/0": null, "2/0": 90}));
        let ab =
            split_virtual_service(&n, &ten, &[], 50, &conds(&[header("X-Canary", None, None)]))
                .unwrap();
        assert_eq!(reset_virtual_service(&n, &ab).unwrap(), vs());
        assert_eq!(reset_virtual_service(&n, &ten).unwrap(), vs());
        assert_eq!(reset_virtual_service(&n, &vs()).unwrap(), vs());
    }

    #[test]
    fn ab_routes_go_right_before_their_source_route() {
        let n = names();
        let matches = [
            header("X-Canary", None, None),
            header("x-user", None, Some("^(alice|bob)$")),
            cookie("beta"),
        ];
        let got = split_virtual_service(&n, &vs(), &[], 0, &conds(&matches)).unwrap();
        let http = got["spec"]["http"].as_array().unwrap();
        let route_names: Vec<&str> = http.iter().map(|r| r["name"].as_str().unwrap()).collect();
        let p = ab_prefix("web");
        assert_eq!(
            route_names,
            [
                format!("{p}0").as_str(),
                "api",
                "static",
                &format!("{p}2"),
                "default"
            ]
        );
        assert_eq!(
            http[0],
            json!({
                "name": "vigil-web-ab-0",
                "match": [
                    {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "always"}}},
                    {"uri": {"prefix": "/api"}, "headers": {"x-user": {"regex": "^(alice|bob)$"}}},
                    {"uri": {"prefix": "/api"}, "headers": {"cookie": {"regex": cookie_regex("beta")}}}
                ],
                "timeout": "5s",
                "route": [{"destination": {"host": "web-canary.shop.svc.cluster.local", "port": {"number": 8080}}}]
            })
        );
        // A route without matches gets matches of the conditions alone.
        assert_eq!(
            http[3]["match"][0],
            json!({"headers": {"x-canary": {"exact": "always"}}})
        );
        assert_eq!(
            http[3]["route"],
            json!([{"destination": {"host": "web-canary"}}])
        );
        // The next step removes them.
        assert_eq!(
            split_virtual_service(&n, &got, &[], 20, &[]).unwrap(),
            split_virtual_service(&n, &vs(), &[], 20, &[]).unwrap()
        );
    }

    #[test]
    fn a_header_the_route_already_matches_is_an_error() {
        let n = names();
        let mut v = vs();
        v["spec"]["http"][0]["match"][0]["headers"] = json!({"cookie": {"exact": "x"}});
        let msg = split_virtual_service(&n, &v, &[], 0, &conds(&[cookie("beta")]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(
                "VirtualService shop/shop: an http route already matches on header cookie"
            ),
            "{msg}"
        );
    }

    #[test]
    fn hosts_of_other_namespaces_or_services_are_not_the_stable_service() {
        let n = names();
        for h in [
            "web.other",
            "web.other.svc.cluster.local",
            "webx",
            "web.shopx",
            "web-canary",
        ] {
            assert!(host_suffix(&n, h, "web").is_none(), "{h}");
        }
        for (h, s) in [
            ("web", ""),
            ("web.shop", ".shop"),
            ("web.shop.svc", ".shop.svc"),
            ("web.shop.svc.k8s.local", ".shop.svc.k8s.local"),
        ] {
            assert_eq!(host_suffix(&n, h, "web"), Some(s));
        }
    }

    #[test]
    fn a_mirrors_entry_goes_on_every_route_to_the_stable_host() {
        let n = names();
        let got = mirror_virtual_service(&n, &vs(), &[], Some(10)).unwrap();
        assert_eq!(
            got["spec"]["http"][0]["mirrors"],
            json!([{"destination": {"host": "web-canary.shop.svc.cluster.local",
                                    "port": {"number": 8080}},
                    "percentage": {"value": 10}}])
        );
        assert_eq!(
            got["spec"]["http"][2]["mirrors"],
            json!([{"destination": {"host": "web-canary"}, "percentage": {"value": 10}}])
        );
        // Destinations, other routes and the rest are untouched.
        assert_eq!(
            got["spec"]["http"][0]["route"],
            vs()["spec"]["http"][0]["route"]
        );
        assert_eq!(got["spec"]["http"][0]["timeout"], "5s");
        assert_eq!(got["spec"]["http"][1], vs()["spec"]["http"][1]);
        assert_eq!(got["spec"]["tcp"], vs()["spec"]["tcp"]);
        assert_eq!(got["metadata"], vs()["metadata"]);
        let all = mirror_virtual_service(&n, &vs(), &[], Some(100)).unwrap();
        assert_eq!(
            all["spec"]["http"][2]["mirrors"],
            json!([{"destination": {"host": "web-canary"}}])
        );
    }

    #[test]
    fn mirroring_is_idempotent_a_new_percent_replaces_the_old_and_none_removes_it() {
        let n = names();
        let ten = mirror_virtual_service(&n, &vs(), &[], Some(10)).unwrap();
        assert_eq!(
            mirror_virtual_service(&n, &ten, &[], Some(10)).unwrap(),
            ten
        );
        let fifty = mirror_virtual_service(&n, &ten, &[], Some(50)).unwrap();
        assert_eq!(
            fifty,
            mirror_virtual_service(&n, &vs(), &[], Some(50)).unwrap()
        );
        assert_eq!(mirror_virtual_service(&n, &fifty, &[], None).unwrap(), vs());
        assert_eq!(mirror_virtual_service(&n, &vs(), &[], None).unwrap(), vs());
    }

    #[test]
    fn only_the_named_routes_are_mirrored_and_all_are_unmirrored() {
        let n = names();
        let got = mirror_virtual_service(&n, &vs(), &["default".into()], Some(30)).unwrap();
        assert_eq!(got["spec"]["http"][0], vs()["spec"]["http"][0]);
        assert!(got["spec"]["http"][2]["mirrors"].is_array());
        assert_eq!(mirror_virtual_service(&n, &got, &[], None).unwrap(), vs());
        let msg = mirror_virtual_service(&n, &vs(), &["static".into()], Some(30))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("VirtualService shop/shop: has no http route named static"),
            "{msg}"
        );
    }

    #[test]
    fn the_users_own_mirrors_are_kept_and_a_single_mirror_is_an_error() {
        let n = names();
        let mut v = vs();
        let theirs = json!({"destination": {"host": "recorder"}, "percentage": {"value": 1}});
        v["spec"]["http"][2]["mirrors"] = json!([theirs]);
        let got = mirror_virtual_service(&n, &v, &[], Some(5)).unwrap();
        assert_eq!(
            got["spec"]["http"][2]["mirrors"],
            json!([theirs, {"destination": {"host": "web-canary"}, "percentage": {"value": 5}}])
        );
        assert_eq!(mirror_virtual_service(&n, &got, &[], None).unwrap(), v);
        assert_eq!(reset_virtual_service(&n, &got).unwrap(), v);

        let mut single = vs();
        single["spec"]["http"][2]["mirror"] = json!({"host": "recorder"});
        let msg = mirror_virtual_service(&n, &single, &[], Some(5))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("VirtualService shop/shop: http route default mirrors to recorder"),
            "{msg}"
        );
        assert!(msg.contains("move that mirror into `mirrors`"), "{msg}");
        // Nothing of vigil's to remove there.
        assert_eq!(
            mirror_virtual_service(&n, &single, &[], None).unwrap(),
            single
        );
    }

    #[test]
    fn mirror_and_weights_coexist_and_reset_removes_both() {
        let n = names();
        let mirrored = mirror_virtual_service(&n, &vs(), &[], Some(20)).unwrap();
        let split = split_virtual_service(&n, &mirrored, &[], 0, &[]).unwrap();
        assert_eq!(
            split["spec"]["http"][2]["mirrors"],
            mirrored["spec"]["http"][2]["mirrors"]
        );
        assert_eq!(
            mirror_virtual_service(&n, &split, &[], Some(20)).unwrap(),
            split
        );
        let ab = split_virtual_service(&n, &split, &[], 0, &conds(&[cookie("beta")])).unwrap();
        assert!(ab["spec"]["http"][0].get("mirrors").is_none(), "{ab}");
        assert!(ab["spec"]["http"][1]["mirrors"].is_array(), "{ab}");
        assert_eq!(mirror_virtual_service(&n, &ab, &[], Some(20)).unwrap(), ab);
        assert_eq!(reset_virtual_service(&n, &ab).unwrap(), vs());
        assert_eq!(reset_virtual_service(&n, &mirrored).unwrap(), vs());
    }

    #[test]
    fn a_dropped_mirrors_list_is_an_error_that_names_the_crd() {
        let n = names();
        let written = mirror_virtual_service(&n, &vs(), &[], Some(100)).unwrap();
        let dialect = VirtualService { routes: &[] };
        assert!(mirror_kept(&dialect, &n, &written, &written).is_ok());
        let msg = mirror_kept(&dialect, &n, &written, &vs())
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("VirtualService shop/shop: the API server drops http[].mirrors"),
            "{msg}"
        );
    }

    #[test]
    fn mirror_matchers_count_at_the_canarys_sidecar() {
        let r = IstioRouter {
            virtual_service: "shop".into(),
            routes: Vec::new(),
        };
        let (s, c) = r
            .mirror_matchers(&crate::cluster::routers::testing::matcher_names())
            .unwrap();
        assert_eq!(s, r#"reporter="destination", destination_workload="web""#);
        assert_eq!(
            c,
            r#"reporter="destination", destination_workload="web-canary""#
        );
        assert_eq!(r.mirror_support(), MirrorSupport::Percent);
    }

    #[test]
    fn a_virtual_service_without_the_stable_service_is_an_error_that_says_what_to_do() {
        let mut n = names();
        n.service = "nope";
        let msg = split_virtual_service(&n, &vs(), &[], 10, &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("VirtualService shop/shop: no route sends traffic to Service nope"),
            "{msg}"
        );
        assert!(msg.contains("spec.routing.istio.virtualService"), "{msg}");
    }
}
