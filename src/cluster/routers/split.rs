//! Weighted splitting of the routes of a JSON object, shared by the routers whose objects
//! have no Rust types: Gateway API HTTPRoutes (`spec.rules[].backendRefs[]`) and Istio
//! VirtualServices (`spec.http[].route[]`). A [`Dialect`] says where the routes and their
//! backends are and how a backend names a Service; the splitting, the A/B routes, the
//! record of the original weights and the exact reset are the same for both.
//!
//! In every selected route that has a backend to the stable Service, that backend gets
//! weight `100 - w` and is followed by a copy pointing at the canary with weight `w`.
//! Other backends of the route keep their weights. For A/B conditions each such route gets
//! a companion route, named `vigil-<canary>-ab-<position>`, that copies it with the
//! conditions added to its matches and sends everything to the canary. Routes vigil added
//! are recognised by that name, or by having only canary backends (which the user's own
//! routes cannot: the canary Service is vigil's), so they are removed even where the name
//! field does not exist (Gateway API before v1.2 drops `rules[].name`).

use super::{
    Condition, Names, RouteContext, RouterError, STABLE_WEIGHTS_ANNOTATION, ab_prefix, conditions,
    put_weight, recorded_weights, set_annotation,
};
use crate::rollout::Match;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Map, Value, json};

/// Where a kind of object keeps its routes and backends.
pub(crate) trait Dialect {
    /// The kind, for messages.
    const KIND: &'static str;
    /// The JSON pointer of the list of routes.
    const ROUTES: &'static str;
    /// The key of a route's list of backends.
    const BACKENDS: &'static str;
    /// Whether the A/B route goes right before its source route (order matters: Istio) or
    /// at the end (precedence by specificity: Gateway API).
    const AB_BEFORE_SOURCE: bool;

    /// Whether a backend points at the stable Service.
    fn is_stable(&self, names: &Names<'_>, backend: &Value) -> bool;
    /// Whether a backend points at the canary Service.
    fn is_canary(&self, names: &Names<'_>, backend: &Value) -> bool;
    /// A stable backend pointed at the canary Service (weight untouched).
    fn canary_of(&self, names: &Names<'_>, stable: &Value) -> Value;
    /// Whether vigil splits this route (the user may restrict it to some routes).
    fn selected(&self, _route: &Value) -> bool {
        true
    }
    /// A match of the route with the A/B conditions `entry` added, or an error when they
    /// conflict with its own conditions.
    fn add_conditions(
        &self,
        object: &str,
        route_match: &Value,
        entry: &[Condition],
    ) -> Result<Value, RouterError>;
    /// The key of a route's list of matches.
    const MATCHES: &'static str;
    /// What to do when no route sends to the stable Service.
    fn missing_hint(&self) -> String;
}

/// `metadata.name` of a JSON object.
pub(crate) fn object_name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether a route is one vigil added for A/B conditions.
fn is_vigil_route<D: Dialect>(d: &D, names: &Names<'_>, route: &Value) -> bool {
    let named = route
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with(&ab_prefix(names.canary)));
    let backends = route.get(D::BACKENDS).and_then(Value::as_array);
    let only_canary =
        backends.is_some_and(|b| !b.is_empty() && b.iter().all(|x| d.is_canary(names, x)));
    named || only_canary
}

/// The user's routes of `obj` (vigil's A/B routes left out).
fn user_routes<D: Dialect>(
    d: &D,
    names: &Names<'_>,
    object: &str,
    obj: &Value,
) -> Result<Vec<Value>, RouterError> {
    let routes = obj
        .pointer(D::ROUTES)
        .and_then(Value::as_array)
        .ok_or_else(|| RouterError::Invalid {
            object: object.into(),
            message: format!("has no {} list; {}", D::ROUTES, d.missing_hint()),
        })?;
    Ok(routes
        .iter()
        .filter(|r| !is_vigil_route(d, names, r))
        .cloned()
        .collect())
}

/// `obj` with its routes replaced.
fn with_routes<D: Dialect>(obj: &Value, routes: Vec<Value>) -> Value {
    let mut obj = obj.clone();
    if let Some(slot) = obj.pointer_mut(D::ROUTES) {
        *slot = Value::Array(routes);
    }
    obj
}

/// `obj` with `weight` percent of the traffic of its selected routes to the stable Service
/// sent to the canary, and the A/B conditions `conds` (see the module documentation).
pub(crate) fn split<D: Dialect>(
    d: &D,
    names: &Names<'_>,
    obj: &Value,
    weight: u8,
    conds: &[Vec<Condition>],
) -> Result<Value, RouterError> {
    let object = names.object(D::KIND, object_name(obj));
    let mut recorded = recorded_weights(&object, obj)?;
    let w = i64::from(weight.min(100));
    let mut out = Vec::new();
    let mut appended = Vec::new();
    let mut found = false;
    for (i, route) in user_routes(d, names, &object, obj)?.into_iter().enumerate() {
        let backends = route.get(D::BACKENDS).and_then(Value::as_array);
        let first_stable = backends
            .and_then(|b| b.iter().find(|x| d.is_stable(names, x)))
            .cloned();
        let Some(first_stable) = first_stable.filter(|_| d.selected(&route)) else {
            out.push(route);
            continue;
        };
        found = true;
        let already_split = backends.is_some_and(|b| b.iter().any(|x| d.is_canary(names, x)));
        let mut new_backends = Vec::new();
        let others = backends
            .into_iter()
            .flatten()
            .filter(|x| !d.is_canary(names, x));
        for (j, backend) in others.enumerate() {
            if !d.is_stable(names, backend) {
                new_backends.push(backend.clone());
                continue;
            }
            let key = format!("{i}/{j}");
            if !already_split && !recorded.contains_key(&key) {
                recorded.insert(key, backend.get("weight").cloned().unwrap_or(Value::Null));
            }
            let mut stable = backend.clone();
            put_weight(&mut stable, json!(100 - w));
            let mut canary = d.canary_of(names, backend);
            put_weight(&mut canary, json!(w));
            new_backends.push(stable);
            new_backends.push(canary);
        }
        let ab = if conds.is_empty() {
            None
        } else {
            Some(ab_route(
                d,
                names,
                &object,
                &route,
                &first_stable,
                i,
                conds,
            )?)
        };
        let mut route = route;
        if let Some(r) = route.as_object_mut() {
            r.insert(D::BACKENDS.into(), Value::Array(new_backends));
        }
        match ab {
            Some(ab) if D::AB_BEFORE_SOURCE => out.push(ab),
            Some(ab) => appended.push(ab),
            None => {}
        }
        out.push(route);
    }
    // Where order does not matter, A/B routes go after all of the user's routes.
    out.extend(appended);
    if !found {
        return Err(RouterError::Invalid {
            object,
            message: format!(
                "no route sends traffic to Service {}; {}",
                names.service,
                d.missing_hint()
            ),
        });
    }
    let mut obj = with_routes::<D>(obj, out);
    let record = (!recorded.is_empty()).then(|| Value::Object(recorded).to_string());
    set_annotation(&mut obj, STABLE_WEIGHTS_ANNOTATION, record);
    Ok(obj)
}

/// The A/B companion of user route number `index`.
fn ab_route<D: Dialect>(
    d: &D,
    names: &Names<'_>,
    object: &str,
    route: &Value,
    stable: &Value,
    index: usize,
    conds: &[Vec<Condition>],
) -> Result<Value, RouterError> {
    let own: Vec<Value> = match route.get(D::MATCHES).and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({})],
    };
    let mut matches = Vec::new();
    for m in &own {
        for entry in conds {
            matches.push(d.add_conditions(object, m, entry)?);
        }
    }
    let mut canary = d.canary_of(names, stable);
    put_weight(&mut canary, Value::Null);
    let mut ab: Map<String, Value> = route.as_object().cloned().unwrap_or_default();
    ab.insert(
        "name".into(),
        Value::String(format!("{}{index}", ab_prefix(names.canary))),
    );
    ab.insert(D::MATCHES.into(), Value::Array(matches));
    ab.insert(D::BACKENDS.into(), json!([canary]));
    Ok(Value::Object(ab))
}

/// `obj` without canary routing: vigil's A/B routes removed, canary backends removed, the
/// stable weights restored as recorded, the record removed. A route without a canary
/// backend is left as it is.
pub(crate) fn unsplit<D: Dialect>(
    d: &D,
    names: &Names<'_>,
    obj: &Value,
) -> Result<Value, RouterError> {
    let object = names.object(D::KIND, object_name(obj));
    let recorded = recorded_weights(&object, obj)?;
    let Some(routes) = obj.pointer(D::ROUTES).and_then(Value::as_array) else {
        return Ok(obj.clone());
    };
    let mut out = Vec::new();
    for (i, route) in routes
        .iter()
        .filter(|r| !is_vigil_route(d, names, r))
        .enumerate()
    {
        let backends = route.get(D::BACKENDS).and_then(Value::as_array);
        if !backends.is_some_and(|b| b.iter().any(|x| d.is_canary(names, x))) {
            out.push(route.clone());
            continue;
        }
        let restored: Vec<Value> = backends
            .into_iter()
            .flatten()
            .filter(|x| !d.is_canary(names, x))
            .enumerate()
            .map(|(j, backend)| {
                let mut backend = backend.clone();
                if d.is_stable(names, &backend)
                    && let Some(w) = recorded.get(&format!("{i}/{j}"))
                {
                    put_weight(&mut backend, w.clone());
                }
                backend
            })
            .collect();
        let mut route = route.clone();
        if let Some(r) = route.as_object_mut() {
            r.insert(D::BACKENDS.into(), Value::Array(restored));
        }
        out.push(route);
    }
    let mut obj = with_routes::<D>(obj, out);
    set_annotation(&mut obj, STABLE_WEIGHTS_ANNOTATION, None);
    Ok(obj)
}

/// Applies a split (`transform` of the names, the object and the A/B conditions) to the
/// object `name` of resource `ar`; a missing object is an error pointing at `field`, the
/// Release's field naming it.
pub(crate) async fn set_object(
    ctx: &RouteContext,
    ar: ApiResource,
    name: &str,
    field: &str,
    matches: &[Match],
    transform: impl FnOnce(&Names<'_>, &Value, &[Vec<Condition>]) -> Result<Value, RouterError>,
) -> Result<(), RouterError> {
    let names = ctx.names();
    let conds = conditions(&names, matches)?;
    let missing = |object| {
        Some(RouterError::Invalid {
            object,
            message: format!("not found; create it, or correct {field}"),
        })
    };
    update_object(ctx, &ar, name, missing, |obj| {
        transform(&names, obj, &conds)
    })
    .await
}

/// Applies a reset (`transform` of the names and the object) to the object `name` of
/// resource `ar`; a missing object has nothing to reset.
pub(crate) async fn reset_object(
    ctx: &RouteContext,
    ar: ApiResource,
    name: &str,
    transform: impl FnOnce(&Names<'_>, &Value) -> Result<Value, RouterError>,
) -> Result<(), RouterError> {
    let names = ctx.names();
    update_object(ctx, &ar, name, |_| None, |obj| transform(&names, obj)).await
}

/// Reads the object `name` of resource `ar`, transforms it, and replaces it when the
/// transformation changed it, with the resourceVersion read (so a concurrent change is a
/// 409). A missing object is `None` from `missing`, or its error.
async fn update_object(
    ctx: &RouteContext,
    ar: &ApiResource,
    name: &str,
    missing: impl FnOnce(String) -> Option<RouterError>,
    transform: impl FnOnce(&Value) -> Result<Value, RouterError>,
) -> Result<(), RouterError> {
    let object = ctx.names().object(&ar.kind, name);
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, ar);
    let Some(current) = api
        .get_opt(name)
        .await
        .map_err(RouterError::api(object.clone()))?
    else {
        return missing(object).map_or(Ok(()), Err);
    };
    let json_error = |e: serde_json::Error| RouterError::Invalid {
        object: object.clone(),
        message: format!("cannot be read as JSON ({e}); check the object's schema"),
    };
    let before = serde_json::to_value(&current).map_err(json_error)?;
    let after = transform(&before)?;
    if after == before {
        return Ok(());
    }
    let updated: DynamicObject = serde_json::from_value(after).map_err(json_error)?;
    api.replace(name, &PostParams::default(), &updated)
        .await
        .map_err(RouterError::api(object.clone()))?;
    Ok(())
}
