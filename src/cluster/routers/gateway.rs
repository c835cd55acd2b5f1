//! Gateway API: the weights of an HTTPRoute's backendRefs (`gateway.networking.k8s.io/v1`,
//! read and written as JSON, since k8s-openapi has no types for it).
//!
//! In every rule with a backendRef to the stable Service, that backendRef gets weight
//! `100 - w` and is followed by a copy pointing at the canary Service (same port, kind,
//! group, namespace and filters) with weight `w`. The weights the stable backendRefs had are
//! recorded in the annotation [`super::STABLE_WEIGHTS_ANNOTATION`], so that reset restores
//! them exactly (an absent weight stays absent).
//!
//! For A/B conditions every such rule gets a companion rule named
//! `vigil-<canary>-ab-<position>`, added after the user's rules: it copies the rule with the
//! conditions added to each of its matches, and sends everything to the canary. Gateway API
//! orders rules by specificity, not position, and the companion has more header matches than
//! its source, so it wins for the requests it matches. A header condition is an `Exact` or
//! `RegularExpression` header match; a cookie `C` is a `RegularExpression` match on the
//! `Cookie` header, [`super::cookie_regex`], which finds `C=always` anywhere in it. The
//! regular-expression dialect is the implementation's (Envoy-based ones use RE2).
//!
//! Mirroring appends a `RequestMirror` filter to every rule with a backendRef to the stable
//! Service: its backendRef is the canary Service (with the stable backendRef's port and
//! namespace), and `percent` is the share, left out at 100 (the specification's default:
//! every request). `percent` is in the Standard channel since Gateway API v1.3 (Experimental
//! since v1.2); an older CRD drops it, which would mirror every request, so a mirror with a
//! percent is written only when a dry run keeps it. The filter applies to every request of
//! the rule, also those it sends to its other backendRefs. Filters of the user's, other
//! mirrors included (RequestMirror may be repeated), stay as they are; reset removes the
//! mirror with the rest.

use super::split::{Dialect, mirror, mirror_object, reset_object, set_object, split, unsplit};
use super::{
    Condition, MatcherNames, MirrorSupport, Names, RouteContext, Router, RouterError, ValueMatch,
    cookie_regex,
};
use crate::api::crd::GatewayRouting;
use crate::rollout::Match;
use futures::future::BoxFuture;
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The router of `routing.gatewayAPI`.
#[derive(Debug, Clone)]
pub struct GatewayRouter {
    /// The HTTPRoute.
    pub http_route: String,
}

impl GatewayRouter {
    /// The router for this configuration.
    pub fn new(config: &GatewayRouting) -> Self {
        GatewayRouter {
            http_route: config.http_route.clone(),
        }
    }
}

/// The API resource of `gateway.networking.k8s.io/v1` HTTPRoute.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

impl Router for GatewayRouter {
    fn name(&self) -> &'static str {
        "gateway-api"
    }

    /// Envoy's cluster of the stable backend (index 0) and of the canary backend vigil
    /// appends (index 1) in the route's first rule.
    fn default_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        let route = format!(
            "httproute/{}/{}/rule/0/backend",
            names.namespace, self.http_route
        );
        Ok((
            format!(r#"envoy_cluster_name="{route}/0""#),
            format!(r#"envoy_cluster_name="{route}/1""#),
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
            http_route_resource(),
            &self.http_route,
            "spec.routing.gatewayAPI.httpRoute",
            matches,
            move |names, route, conds| split_route(names, route, weight, conds),
        ))
    }

    fn reset<'a>(&'a self, ctx: &'a RouteContext) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(reset_object(
            ctx,
            http_route_resource(),
            &self.http_route,
            reset_route,
        ))
    }

    fn mirror<'a>(
        &'a self,
        ctx: &'a RouteContext,
        percent: Option<u8>,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(mirror_object(
            ctx,
            self,
            http_route_resource(),
            &self.http_route,
            "spec.routing.gatewayAPI.httpRoute",
            &HttpRoute,
            percent,
            mirror_route,
        ))
    }

    fn mirror_support(&self) -> MirrorSupport {
        MirrorSupport::Percent
    }

    /// Envoy Gateway names the cluster of a `RequestMirror` filter
    /// `httproute/<ns>/<route>/rule/<rule>-mirror-<filter>`, apart from the rule's own
    /// cluster (`.../rule/<rule>`, or `.../rule/<rule>/backend/<n>` when it builds one per
    /// backendRef); both in the route's first rule, like [`Router::default_matchers`].
    fn mirror_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        let rule = format!("httproute/{}/{}/rule/0", names.namespace, self.http_route);
        Ok((
            format!(r#"envoy_cluster_name=~"{rule}(/backend/0)?""#),
            format!(r#"envoy_cluster_name=~"{rule}-mirror-[0-9]+""#),
        ))
    }
}

/// The HTTPRoute dialect of the shared splitting.
struct HttpRoute;

/// Whether a backendRef points at Service `service` in the route's namespace.
fn refers_to(names: &Names<'_>, backend: &Value, service: &str) -> bool {
    let field = |k: &str| backend.get(k).and_then(Value::as_str);
    field("name") == Some(service)
        && field("kind").is_none_or(|k| k == "Service")
        && field("group").is_none_or(str::is_empty)
        && field("namespace").is_none_or(|ns| ns == names.namespace)
}

impl Dialect for HttpRoute {
    const KIND: &'static str = "HTTPRoute";
    const ROUTES: &'static str = "/spec/rules";
    const BACKENDS: &'static str = "backendRefs";
    const MATCHES: &'static str = "matches";
    const AB_BEFORE_SOURCE: bool = false;

    fn is_stable(&self, names: &Names<'_>, backend: &Value) -> bool {
        refers_to(names, backend, names.service)
    }

    fn is_canary(&self, names: &Names<'_>, backend: &Value) -> bool {
        refers_to(names, backend, names.canary_service)
    }

    fn canary_of(&self, names: &Names<'_>, stable: &Value) -> Value {
        let mut canary = stable.clone();
        if let Some(c) = canary.as_object_mut() {
            c.insert("name".into(), Value::String(names.canary_service.into()));
            c.insert("kind".into(), Value::String("Service".into()));
        }
        canary
    }

    fn add_conditions(
        &self,
        object: &str,
        route_match: &Value,
        entry: &[Condition],
    ) -> Result<Value, RouterError> {
        let mut m = route_match.as_object().cloned().unwrap_or_default();
        let mut headers: Vec<Value> = m
            .get("headers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for cond in entry {
            let (name, kind, value) = match cond {
                Condition::Header {
                    name,
                    value: ValueMatch::Exact(v),
                } => (name.as_str(), "Exact", v.clone()),
                Condition::Header {
                    name,
                    value: ValueMatch::Regex(r),
                } => (name.as_str(), "RegularExpression", r.clone()),
                Condition::Cookie { name } => ("Cookie", "RegularExpression", cookie_regex(name)),
            };
            let taken = headers.iter().any(|h| {
                h.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            });
            if taken {
                return Err(RouterError::Invalid {
                    object: object.into(),
                    message: format!(
                        "a rule already matches on header {name}, which an A/B condition needs too; \
                         change the A/B match or the rule"
                    ),
                });
            }
            headers.push(json!({"type": kind, "name": name, "value": value}));
        }
        m.insert("headers".into(), Value::Array(headers));
        Ok(Value::Object(m))
    }

    fn missing_hint(&self) -> String {
        "add a rule with a backendRef to it, or correct spec.routing.gatewayAPI.httpRoute or \
         spec.service.name"
            .into()
    }

    const MIRRORS: &'static str = "filters";
    const MIRROR_DROPPED: &'static str = "the API server drops the percent of a RequestMirror \
        filter: this cluster's HTTPRoute CRD is older than Gateway API v1.3 (Standard channel) or \
        v1.2 (Experimental), and would mirror every request; install newer Gateway API CRDs, or \
        mirror 100 percent";

    fn mirror_entry(&self, names: &Names<'_>, stable: &Value, percent: u8) -> Value {
        // The CRD's defaults (group "", kind Service) are written out, so that the object
        // read back equals the one written and a second apply writes nothing.
        let mut backend = serde_json::Map::new();
        backend.insert("group".into(), json!(""));
        backend.insert("kind".into(), json!("Service"));
        backend.insert("name".into(), json!(names.canary_service));
        if let Some(ns) = stable.get("namespace") {
            backend.insert("namespace".into(), ns.clone());
        }
        if let Some(port) = stable
            .get("port")
            .cloned()
            .or_else(|| names.port.map(|p| json!(p)))
        {
            backend.insert("port".into(), port);
        }
        let mut filter = json!({"backendRef": backend});
        if percent < 100 {
            filter["percent"] = json!(percent);
        }
        json!({"type": "RequestMirror", "requestMirror": filter})
    }

    fn is_our_mirror(&self, names: &Names<'_>, entry: &Value) -> bool {
        entry.get("type").and_then(Value::as_str) == Some("RequestMirror")
            && entry
                .pointer("/requestMirror/backendRef")
                .is_some_and(|b| refers_to(names, b, names.canary_service))
    }

    fn mirror_percent<'v>(&self, entry: &'v Value) -> &'v Value {
        entry
            .pointer("/requestMirror/percent")
            .unwrap_or(&Value::Null)
    }
}

/// The HTTPRoute `route` (a whole object, as JSON) with `weight` percent of the traffic of
/// its rules to the stable Service sent to the canary Service, and A/B rules for `conds`.
/// Idempotent; applying another weight or other conditions replaces the previous ones.
pub fn split_route(
    names: &Names<'_>,
    route: &Value,
    weight: u8,
    conds: &[Vec<Condition>],
) -> Result<Value, RouterError> {
    split(&HttpRoute, names, route, weight, conds)
}

/// The HTTPRoute `route` without vigil's routing: canary backendRefs and A/B rules removed,
/// stable weights restored as they were before the first [`split_route`], and vigil's
/// mirror removed.
pub fn reset_route(names: &Names<'_>, route: &Value) -> Result<Value, RouterError> {
    mirror(&HttpRoute, names, &unsplit(&HttpRoute, names, route)?, None)
}

/// The HTTPRoute `route` with a `RequestMirror` filter of `percent` percent to the canary
/// Service on every rule to the stable Service, or with `None` without vigil's filters (see
/// the module documentation). Idempotent; another percent replaces the previous one.
pub fn mirror_route(
    names: &Names<'_>,
    route: &Value,
    percent: Option<u8>,
) -> Result<Value, RouterError> {
    mirror(&HttpRoute, names, route, percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::routers::split::mirror_kept;
    use crate::cluster::routers::testing::{conds, cookie, header, names};
    use crate::cluster::routers::{STABLE_WEIGHTS_ANNOTATION, ab_prefix};
    use crate::rollout::HeaderMatch;

    fn route() -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": "shop", "resourceVersion": "42"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["shop.example.com"],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "backendRefs": [{"name": "web", "port": 80}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                     "backendRefs": [{"name": "cdn", "port": 80}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}},
                                 {"method": "POST"}],
                     "filters": [{"type": "RequestHeaderModifier",
                                  "requestHeaderModifier": {"add": [{"name": "x-api", "value": "1"}]}}],
                     "backendRefs": [{"group": "", "kind": "Service", "name": "web", "port": 8080, "weight": 3},
                                     {"name": "legacy", "port": 80, "weight": 1}]}
                ]
            },
            "status": {"parents": []}
        })
    }

    #[test]
    fn weights_split_every_rule_to_the_stable_service() {
        for w in [0u8, 10, 50, 100] {
            let got = split_route(&names(), &route(), w, &[]).unwrap();
            let s = 100 - i64::from(w);
            let w = i64::from(w);
            assert_eq!(
                got["spec"]["rules"][0]["backendRefs"],
                json!([{"name": "web", "port": 80, "weight": s},
                       {"name": "web-canary", "kind": "Service", "port": 80, "weight": w}])
            );
            assert_eq!(
                got["spec"]["rules"][2]["backendRefs"],
                json!([{"group": "", "kind": "Service", "name": "web", "port": 8080, "weight": s},
                       {"group": "", "kind": "Service", "name": "web-canary", "port": 8080, "weight": w},
                       {"name": "legacy", "port": 80, "weight": 1}])
            );
            // The rule to another Service is untouched, and so is the rest.
            assert_eq!(got["spec"]["rules"][1], route()["spec"]["rules"][1]);
            assert_eq!(
                got["spec"]["rules"][2]["filters"],
                route()["spec"]["rules"][2]["filters"]
            );
            assert_eq!(got["spec"]["rules"].as_array().unwrap().len(), 3);
            assert_eq!(got["metadata"]["resourceVersion"], "42");
            assert_eq!(got["status"], route()["status"]);
        }
    }

    #[test]
    fn splitting_is_idempotent_and_a_new_weight_replaces_the_old() {
        let n = names();
        let once = split_route(&n, &route(), 10, &[]).unwrap();
        assert_eq!(split_route(&n, &once, 10, &[]).unwrap(), once);
        let fifty = split_route(&n, &once, 50, &[]).unwrap();
        assert_eq!(fifty, split_route(&n, &route(), 50, &[]).unwrap());
    }

    #[test]
    fn the_original_weights_are_recorded_and_reset_restores_exactly() {
        let n = names();
        let split = split_route(&n, &route(), 10, &[]).unwrap();
        let record: Value = serde_json::from_str(
            split["metadata"]["annotations"][STABLE_WEIGHTS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record, json!({"0/0": null, "2/0": 3}));
        let moved = split_route(&n, &split, 60, &conds(&[header("x-canary", None, None)])).unwrap();
        assert_eq!(reset_route(&n, &moved).unwrap(), route());
        assert_eq!(reset_route(&n, &split).unwrap(), route());
        // Reset of an untouched route changes nothing.
        assert_eq!(reset_route(&n, &route()).unwrap(), route());
    }

    #[test]
    fn other_annotations_survive_split_and_reset() {
        let n = names();
        let mut r = route();
        r["metadata"]["annotations"] = json!({"team": "a"});
        let split = split_route(&n, &r, 10, &[]).unwrap();
        assert_eq!(split["metadata"]["annotations"]["team"], "a");
        assert_eq!(reset_route(&n, &split).unwrap(), r);
    }

    #[test]
    fn an_ab_header_match_adds_a_named_rule_copying_the_matches() {
        let n = names();
        let got = split_route(&n, &route(), 0, &conds(&[header("x-canary", None, None)])).unwrap();
        let rules = got["spec"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 5);
        assert_eq!(
            rules[3],
            json!({
                "name": format!("{}0", ab_prefix("web")),
                "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                             "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]}],
                "backendRefs": [{"name": "web-canary", "kind": "Service", "port": 80}]
            })
        );
        assert_eq!(
            rules[4],
            json!({
                "name": "vigil-web-ab-2",
                "matches": [
                    {"path": {"type": "PathPrefix", "value": "/api"},
                     "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]},
                    {"method": "POST",
                     "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]}
                ],
                "filters": route()["spec"]["rules"][2]["filters"],
                "backendRefs": [{"group": "", "kind": "Service", "name": "web-canary", "port": 8080}]
            })
        );
    }

    #[test]
    fn ab_regex_and_cookie_matches_are_regular_expression_header_matches() {
        let n = names();
        let matches = [
            header("x-user", None, Some("^(alice|bob)$")),
            cookie("beta"),
            Match {
                header: Some(HeaderMatch {
                    name: "x-a".into(),
                    exact: Some("1".into()),
                    regex: None,
                }),
                cookie: Some("beta".into()),
            },
        ];
        let got = split_route(&n, &route(), 0, &conds(&matches)).unwrap();
        let ab = &got["spec"]["rules"][3];
        let headers: Vec<&Value> = ab["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["headers"])
            .collect();
        assert_eq!(
            headers,
            [
                &json!([{"type": "RegularExpression", "name": "x-user", "value": "^(alice|bob)$"}]),
                &json!([{"type": "RegularExpression", "name": "Cookie", "value": cookie_regex("beta")}]),
                &json!([{"type": "Exact", "name": "x-a", "value": "1"},
                        {"type": "RegularExpression", "name": "Cookie", "value": cookie_regex("beta")}]),
            ]
        );
    }

    #[test]
    fn the_next_step_removes_the_ab_rules() {
        let n = names();
        let ab = split_route(&n, &route(), 0, &conds(&[header("x-canary", None, None)])).unwrap();
        assert_eq!(
            split_route(&n, &ab, 20, &[]).unwrap(),
            split_route(&n, &route(), 20, &[]).unwrap()
        );
        assert_eq!(
            split_route(&n, &ab, 0, &conds(&[header("x-canary", None, None)])).unwrap(),
            ab
        );
    }

    #[test]
    fn ab_rules_without_names_are_still_recognised() {
        // Gateway API before v1.2 prunes rules[].name.
        let n = names();
        let mut ab =
            split_route(&n, &route(), 0, &conds(&[header("x-canary", None, None)])).unwrap();
        for rule in ab["spec"]["rules"].as_array_mut().unwrap() {
            rule.as_object_mut().unwrap().remove("name");
        }
        assert_eq!(reset_route(&n, &ab).unwrap(), route());
    }

    #[test]
    fn an_ab_header_the_rule_already_matches_is_an_error() {
        let n = names();
        let mut r = route();
        r["spec"]["rules"][0]["matches"][0]["headers"] =
            json!([{"name": "X-Canary", "value": "1"}]);
        let msg = split_route(&n, &r, 0, &conds(&[header("x-canary", None, None)]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("HTTPRoute shop/shop: a rule already matches on header x-canary"),
            "{msg}"
        );
    }

    #[test]
    fn a_route_without_the_stable_service_is_an_error_that_says_what_to_do() {
        let mut n = names();
        n.service = "nope";
        let msg = split_route(&n, &route(), 10, &[]).unwrap_err().to_string();
        assert!(
            msg.starts_with("HTTPRoute shop/shop: no route sends traffic to Service nope"),
            "{msg}"
        );
        assert!(msg.contains("spec.routing.gatewayAPI.httpRoute"), "{msg}");
        let mut r = route();
        r["spec"].as_object_mut().unwrap().remove("rules");
        let msg = split_route(&names(), &r, 10, &[]).unwrap_err().to_string();
        assert!(
            msg.starts_with("HTTPRoute shop/shop: has no /spec/rules list"),
            "{msg}"
        );
    }

    #[test]
    fn backends_in_other_namespaces_or_of_other_kinds_are_not_the_stable_service() {
        let n = names();
        let mut r = route();
        r["spec"]["rules"][0]["backendRefs"] =
            json!([{"name": "web", "namespace": "other", "port": 80}]);
        r["spec"]["rules"][2]["backendRefs"] =
            json!([{"group": "example.com", "kind": "Bucket", "name": "web"}]);
        assert!(split_route(&n, &r, 10, &[]).is_err());
        r["spec"]["rules"][0]["backendRefs"] =
            json!([{"name": "web", "namespace": "shop", "port": 80}]);
        assert!(split_route(&n, &r, 10, &[]).is_ok());
    }

    fn mirror_filter(port: i64, percent: Option<i64>) -> Value {
        let mut m = json!({"backendRef": {"group": "", "kind": "Service", "name": "web-canary", "port": port}});
        if let Some(p) = percent {
            m["percent"] = json!(p);
        }
        json!({"type": "RequestMirror", "requestMirror": m})
    }

    #[test]
    fn a_mirror_filter_goes_on_every_rule_to_the_stable_service() {
        let n = names();
        let got = mirror_route(&n, &route(), Some(10)).unwrap();
        assert_eq!(
            got["spec"]["rules"][0]["filters"],
            json!([mirror_filter(80, Some(10))])
        );
        // The user's filters stay, in front of vigil's.
        let mut filters = route()["spec"]["rules"][2]["filters"].clone();
        filters
            .as_array_mut()
            .unwrap()
            .push(mirror_filter(8080, Some(10)));
        assert_eq!(got["spec"]["rules"][2]["filters"], filters);
        // Backends, the rule to another Service and the rest are untouched.
        assert_eq!(got["spec"]["rules"][1], route()["spec"]["rules"][1]);
        for i in [0, 2] {
            assert_eq!(
                got["spec"]["rules"][i]["backendRefs"],
                route()["spec"]["rules"][i]["backendRefs"]
            );
        }
        assert_eq!(got["metadata"], route()["metadata"]);
        // Every request: no percent, as the specification's default.
        let all = mirror_route(&n, &route(), Some(100)).unwrap();
        assert_eq!(
            all["spec"]["rules"][0]["filters"],
            json!([mirror_filter(80, None)])
        );
    }

    #[test]
    fn mirroring_is_idempotent_a_new_percent_replaces_the_old_and_none_removes_it() {
        let n = names();
        let ten = mirror_route(&n, &route(), Some(10)).unwrap();
        assert_eq!(mirror_route(&n, &ten, Some(10)).unwrap(), ten);
        let fifty = mirror_route(&n, &ten, Some(50)).unwrap();
        assert_eq!(fifty, mirror_route(&n, &route(), Some(50)).unwrap());
        assert_eq!(mirror_route(&n, &fifty, None).unwrap(), route());
        assert_eq!(mirror_route(&n, &route(), None).unwrap(), route());
    }

    #[test]
    fn the_users_own_mirrors_are_kept() {
        let n = names();
        let mut r = route();
        let theirs = json!({"type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "recorder", "port": 80}}});
        r["spec"]["rules"][0]["filters"] = json!([theirs]);
        let got = mirror_route(&n, &r, Some(5)).unwrap();
        assert_eq!(
            got["spec"]["rules"][0]["filters"],
            json!([theirs, mirror_filter(80, Some(5))])
        );
        assert_eq!(mirror_route(&n, &got, None).unwrap(), r);
        assert_eq!(reset_route(&n, &got).unwrap(), r);
    }

    #[test]
    fn mirror_and_weights_coexist_and_reset_removes_both() {
        let n = names();
        let mirrored = mirror_route(&n, &route(), Some(20)).unwrap();
        // Weight 0 during a mirror step: the split leaves the mirror alone.
        let split = split_route(&n, &mirrored, 0, &[]).unwrap();
        assert_eq!(
            split["spec"]["rules"][0]["filters"],
            mirrored["spec"]["rules"][0]["filters"]
        );
        assert_eq!(mirror_route(&n, &split, Some(20)).unwrap(), split);
        // A/B rules route to the canary already: they do not carry the mirror.
        let ab = split_route(&n, &split, 0, &conds(&[header("x-canary", None, None)])).unwrap();
        assert!(ab["spec"]["rules"][3].get("filters").is_none(), "{ab}");
        assert_eq!(
            ab["spec"]["rules"][4]["filters"],
            route()["spec"]["rules"][2]["filters"]
        );
        assert_eq!(mirror_route(&n, &ab, Some(20)).unwrap(), ab);
        assert_eq!(reset_route(&n, &ab).unwrap(), route());
        assert_eq!(reset_route(&n, &mirrored).unwrap(), route());
    }

    #[test]
    fn the_mirror_keeps_the_stable_backends_namespace_and_a_route_without_it_is_an_error() {
        let mut n = names();
        let mut r = route();
        r["spec"]["rules"][0]["backendRefs"] =
            json!([{"name": "web", "namespace": "shop", "port": 80}]);
        let got = mirror_route(&n, &r, Some(10)).unwrap();
        assert_eq!(
            got["spec"]["rules"][0]["filters"][0]["requestMirror"]["backendRef"]["namespace"],
            "shop"
        );
        n.service = "nope";
        let msg = mirror_route(&n, &route(), Some(10))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("HTTPRoute shop/shop: no route sends traffic to Service nope"),
            "{msg}"
        );
        // Removing finds nothing to remove, and that is fine.
        assert_eq!(mirror_route(&n, &route(), None).unwrap(), route());
    }

    #[test]
    fn a_dropped_percent_is_an_error_that_names_the_crd() {
        let n = names();
        let written = mirror_route(&n, &route(), Some(10)).unwrap();
        assert!(mirror_kept(&HttpRoute, &n, &written, &written).is_ok());
        let mut stored = written.clone();
        for i in [0, 2] {
            let f = stored["spec"]["rules"][i]["filters"]
                .as_array_mut()
                .unwrap();
            let last = f.len() - 1;
            f[last]["requestMirror"]
                .as_object_mut()
                .unwrap()
                .remove("percent");
        }
        let msg = mirror_kept(&HttpRoute, &n, &written, &stored)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("HTTPRoute shop/shop: the API server drops the percent"),
            "{msg}"
        );
        assert!(msg.contains("v1.3"), "{msg}");
    }

    #[test]
    fn mirror_matchers_tell_the_mirror_cluster_from_the_rules_own() {
        let r = GatewayRouter {
            http_route: "shop".into(),
        };
        let (s, c) = r
            .mirror_matchers(&crate::cluster::routers::testing::matcher_names())
            .unwrap();
        assert_eq!(
            s,
            r#"envoy_cluster_name=~"httproute/shop/shop/rule/0(/backend/0)?""#
        );
        assert_eq!(
            c,
            r#"envoy_cluster_name=~"httproute/shop/shop/rule/0-mirror-[0-9]+""#
        );
        assert_eq!(r.mirror_support(), MirrorSupport::Percent);
        assert!(r.mirror_support().check("gateway-api", 1).is_ok());
    }

    #[test]
    fn a_broken_record_is_an_error_naming_the_annotation() {
        let n = names();
        let mut r = split_route(&n, &route(), 10, &[]).unwrap();
        r["metadata"]["annotations"][STABLE_WEIGHTS_ANNOTATION] = json!("[");
        let msg = reset_route(&n, &r).unwrap_err().to_string();
        assert!(
            msg.starts_with("HTTPRoute shop/shop: annotation vigil.dev/stable-weights"),
            "{msg}"
        );
    }
}
