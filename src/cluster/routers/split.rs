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
//!
//! Mirroring adds one entry of vigil's to a list of each selected route that sends to the
//! stable Service (Gateway API: a `RequestMirror` filter in `filters`; Istio: an entry of
//! `mirrors`), pointing at the canary Service. Entries that point at the canary Service are
//! vigil's (the canary Service is), so they are found and removed exactly, whatever else the
//! list holds; a list vigil emptied is removed. A/B routes never carry the mirror: the
//! requests they route go to the canary already.

use super::{
    Condition, Names, RouteContext, Router, RouterError, STABLE_WEIGHTS_ANNOTATION, ab_prefix,
    checked_mirror, conditions, put_weight, recorded_weights, set_annotation,
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

    /// The key of the list of a route that holds its mirrors.
    const MIRRORS: &'static str;
    /// What to do when the API server drops vigil's mirror or its percent (a CRD older than
    /// the field).
    const MIRROR_DROPPED: &'static str;
    /// vigil's mirror entry of `percent` percent to the canary, for a route whose first
    /// stable backend is `stable`.
    fn mirror_entry(&self, names: &Names<'_>, stable: &Value, percent: u8) -> Value;
    /// Whether an entry of the mirrors list is vigil's: one that mirrors to the canary.
    fn is_our_mirror(&self, names: &Names<'_>, entry: &Value) -> bool;
    /// The percent field of an entry of vigil's (`Null` when absent: every request).
    fn mirror_percent<'v>(&self, entry: &'v Value) -> &'v Value;
    /// Why the route cannot carry vigil's mirror beside what it has, if it cannot.
    fn mirror_conflict(&self, _route: &Value) -> Option<String> {
        None
    }
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
        return Err(no_stable_route(d, names, object));
    }
    let mut obj = with_routes::<D>(obj, out);
    let record = (!recorded.is_empty()).then(|| Value::Object(recorded).to_string());
    set_annotation(&mut obj, STABLE_WEIGHTS_ANNOTATION, record);
    Ok(obj)
}

/// The error for an object none of whose routes sends traffic to the stable Service.
fn no_stable_route<D: Dialect>(d: &D, names: &Names<'_>, object: String) -> RouterError {
    RouterError::Invalid {
        object,
        message: format!(
            "no route sends traffic to Service {}; {}",
            names.service,
            d.missing_hint()
        ),
    }
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
    let mut ab: Map<String, Value> = without_mirror(d, names, route)
        .as_object()
        .cloned()
        .unwrap_or_default();
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

/// `route` without vigil's mirror entries; a list they emptied is removed.
fn without_mirror<D: Dialect>(d: &D, names: &Names<'_>, route: &Value) -> Value {
    let mut route = route.clone();
    if let Some(r) = route.as_object_mut()
        && let Some(list) = r.get_mut(D::MIRRORS).and_then(Value::as_array_mut)
    {
        let before = list.len();
        list.retain(|e| !d.is_our_mirror(names, e));
        if list.len() != before && list.is_empty() {
            r.remove(D::MIRRORS);
        }
    }
    route
}

/// `obj` with vigil's mirror of `percent` percent to the canary on each selected route to the
/// stable Service (see the module documentation), or with `None` without any mirror of
/// vigil's. Idempotent; another percent replaces the previous one.
pub(crate) fn mirror<D: Dialect>(
    d: &D,
    names: &Names<'_>,
    obj: &Value,
    percent: Option<u8>,
) -> Result<Value, RouterError> {
    let object = names.object(D::KIND, object_name(obj));
    let Some(routes) = obj.pointer(D::ROUTES).and_then(Value::as_array) else {
        return match percent {
            None => Ok(obj.clone()),
            Some(_) => Err(RouterError::Invalid {
                object,
                message: format!("has no {} list; {}", D::ROUTES, d.missing_hint()),
            }),
        };
    };
    let mut found = false;
    let mut out = Vec::with_capacity(routes.len());
    for route in routes {
        let mut route = without_mirror(d, names, route);
        let stable = route
            .get(D::BACKENDS)
            .and_then(Value::as_array)
            .and_then(|b| b.iter().find(|x| d.is_stable(names, x)))
            .cloned();
        if let (Some(p), Some(stable)) = (percent, stable)
            && d.selected(&route)
            && !is_vigil_route(d, names, &route)
        {
            found = true;
            if let Some(message) = d.mirror_conflict(&route) {
                return Err(RouterError::Invalid { object, message });
            }
            let entry = d.mirror_entry(names, &stable, p);
            let Some(r) = route.as_object_mut() else {
                continue;
            };
            match r
                .entry(D::MIRRORS)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(list) => list.push(entry),
                _ => {
                    return Err(RouterError::Invalid {
                        object,
                        message: format!(
                            "a route's {} is not a list; correct the object",
                            D::MIRRORS
                        ),
                    });
                }
            }
        }
        out.push(route);
    }
    if percent.is_some() && !found {
        return Err(no_stable_route(d, names, object));
    }
    Ok(with_routes::<D>(obj, out))
}

/// vigil's mirror entries of `obj`, route by route, as their percent fields.
fn our_mirrors<D: Dialect>(d: &D, names: &Names<'_>, obj: &Value) -> Vec<Vec<Value>> {
    obj.pointer(D::ROUTES)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|route| {
            route
                .get(D::MIRRORS)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| d.is_our_mirror(names, e))
                .map(|e| d.mirror_percent(e).clone())
                .collect()
        })
        .collect()
}

/// An error when `stored`, the object as the API server would store `written`, lost vigil's
/// mirror entries or their percent: a CRD older than the field drops it without a word, and
/// a dropped percent would mirror every request.
pub(crate) fn mirror_kept<D: Dialect>(
    d: &D,
    names: &Names<'_>,
    written: &Value,
    stored: &Value,
) -> Result<(), RouterError> {
    if our_mirrors(d, names, written) == our_mirrors(d, names, stored) {
        return Ok(());
    }
    Err(RouterError::Invalid {
        object: names.object(D::KIND, object_name(written)),
        message: D::MIRROR_DROPPED.into(),
    })
}

/// Applies `router`'s mirror of `percent` ([`Router::mirror`]: `transform` of the names and
/// the object) to the object `name` of resource `ar`. Setting one (`percent` given) on a
/// missing object is an error pointing at `field`; a change that sets one is first tried as
/// a dry run, and refused when the API server would drop it ([`mirror_kept`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn mirror_object<D: Dialect>(
    ctx: &RouteContext,
    router: &dyn Router,
    ar: ApiResource,
    name: &str,
    field: &str,
    d: &D,
    percent: Option<u8>,
    transform: impl FnOnce(&Names<'_>, &Value, Option<u8>) -> Result<Value, RouterError>,
) -> Result<(), RouterError> {
    let names = ctx.names();
    let percent = checked_mirror(router, &names, percent)?;
    let missing = |object| {
        percent.map(|_| RouterError::Invalid {
            object,
            message: format!("not found; create it, or correct {field}"),
        })
    };
    let check = |written: &Value, stored: &Value| mirror_kept(d, &names, written, stored);
    update_object(
        ctx,
        &ar,
        name,
        missing,
        |obj| transform(&names, obj, percent),
        percent.map(|_| check),
    )
    .await
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
    update_object(
        ctx,
        &ar,
        name,
        missing,
        |obj| transform(&names, obj, &conds),
        NO_CHECK,
    )
    .await
}

/// A check of what the API server would store that is not made.
type Check = fn(&Value, &Value) -> Result<(), RouterError>;
const NO_CHECK: Option<Check> = None;

/// Applies a reset (`transform` of the names and the object) to the object `name` of
/// resource `ar`; a missing object has nothing to reset.
pub(crate) async fn reset_object(
    ctx: &RouteContext,
    ar: ApiResource,
    name: &str,
    transform: impl FnOnce(&Names<'_>, &Value) -> Result<Value, RouterError>,
) -> Result<(), RouterError> {
    let names = ctx.names();
    update_object(
        ctx,
        &ar,
        name,
        |_| None,
        |obj| transform(&names, obj),
        NO_CHECK,
    )
    .await
}

/// Reads the object `name` of resource `ar`, transforms it, and replaces it when the
/// transformation changed it, with the resourceVersion read (so a concurrent change is a
/// 409). A missing object is `None` from `missing`, or its error. With `check`, the
/// replacement is first made as a dry run, and `check` of the object written and the one the
/// API server would store must pass.
async fn update_object(
    ctx: &RouteContext,
    ar: &ApiResource,
    name: &str,
    missing: impl FnOnce(String) -> Option<RouterError>,
    transform: impl FnOnce(&Value) -> Result<Value, RouterError>,
    check: Option<impl FnOnce(&Value, &Value) -> Result<(), RouterError>>,
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
    let updated: DynamicObject = serde_json::from_value(after.clone()).map_err(json_error)?;
    if let Some(check) = check {
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let stored = api
            .replace(name, &dry_run, &updated)
            .await
            .map_err(RouterError::api(object.clone()))?;
        check(&after, &serde_json::to_value(&stored).map_err(json_error)?)?;
    }
    api.replace(name, &PostParams::default(), &updated)
        .await
        .map_err(RouterError::api(object.clone()))?;
    Ok(())
}
