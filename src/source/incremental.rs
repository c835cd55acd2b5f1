//! Range queries that fetch only what an earlier analysis has not seen.
//!
//! A rollout's analyses query the same queries over a window whose start stays put (the
//! step's or the rollout's first traffic) and whose end is now. Re-reading the whole window
//! every time makes an analysis at minute 300 read 300 points per series where the one at
//! minute 5 read 5. [`Incremental`] wraps any [`MetricSource`] and keeps, per query, the
//! points it has *committed*: those at least `lag` older than the end of the window they
//! were fetched for, which late samples can no longer change. The next analysis of the same
//! query fetches only from the last committed point on and puts the committed points in
//! front, so the judge sees exactly what a query of the whole window would return, at a
//! cost that does not grow with the rollout's age.
//!
//! The committed points are a [`QueryCache`], a plain value the controller keeps per
//! Release and stores (serde) so that an analysis after a restart fetches no more than one
//! without a restart would.
//!
//! What `lag` must cover: a point at time `t` is computed from samples up to `t`; it is
//! final once every sample up to `t` is in the source. With Prometheus scraping directly
//! that is a scrape interval plus the rule evaluation interval for recorded series;
//! remote-write pipelines (Grafana Agent, Mimir, Thanos Receive) and out-of-order ingestion
//! add their own delay. A point judged before it was final is fetched again (the lag
//! window is always re-read), so a short lag costs correctness only for samples that
//! arrive later than the lag.

use super::{MetricSource, SourceError};
use crate::data::{QueryRequest, QueryResult, Series, Window};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

/// The committed points of one Release's queries, by query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryCache {
    entries: BTreeMap<String, Entry>,
}

/// One query's committed points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    /// The time (Unix ms) of the last committed point; the window's start while nothing is
    /// committed. Points are evaluated one step apart from one step after the start, so
    /// this is always on that grid.
    committed: i64,
    /// The step (ms).
    step: i64,
    /// The series, in the order of the last answer.
    series: Vec<CachedSeries>,
}

/// One series' committed points, on the query's grid: 8 bytes a point in memory (a whole
/// rollout's points are held for every Release in flight), stored as [`SeriesWire`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "SeriesWire", into = "SeriesWire")]
struct CachedSeries {
    labels: Labels,
    /// The time (Unix ms) of the first value.
    from: i64,
    /// One value per step from `from` on (0 where the series had no point).
    values: Vec<f64>,
    /// The indexes in `values` where the series had no point, in order (few or none).
    gaps: Vec<u32>,
}

/// Equal when they hold the same points (a NaN value equals a NaN value).
impl PartialEq for CachedSeries {
    fn eq(&self, other: &Self) -> bool {
        self.labels == other.labels
            && self.from == other.from
            && self.gaps == other.gaps
            && self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
    }
}

/// A series' labels, sorted by name, held compactly: a `BTreeMap<String, String>` of one
/// label (`le`) allocates a whole B-tree node of about 540 bytes, which made the labels of a
/// Release's few dozen committed series weigh more than their points.
#[derive(Debug, Clone, PartialEq)]
struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    fn of(map: &BTreeMap<String, String>) -> Self {
        Self(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }

    /// Whether these are `map`'s labels.
    fn is(&self, map: &BTreeMap<String, String>) -> bool {
        self.0.len() == map.len()
            && self
                .0
                .iter()
                .zip(map)
                .all(|((k, v), (mk, mv))| **k == **mk && **v == **mv)
    }

    fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl CachedSeries {
    /// The values, `None` where the series had no point.
    fn get(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        let mut gaps = self.gaps.iter().peekable();
        (0u32..).zip(&self.values).map(move |(i, v)| {
            if gaps.next_if_eq(&&i).is_some() {
                None
            } else {
                Some(*v)
            }
        })
    }
}

/// How a [`CachedSeries`] is written in the ConfigMap: one JSON value per step, `null`
/// where the series had no point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeriesWire {
    labels: BTreeMap<String, String>,
    from: i64,
    values: Vec<Option<Value>>,
}

impl From<SeriesWire> for CachedSeries {
    fn from(wire: SeriesWire) -> Self {
        let mut values = Vec::with_capacity(wire.values.len());
        let mut gaps = Vec::new();
        for v in wire.values {
            if v.is_none() {
                // A ConfigMap holds at most about 10^5 points: an index fits a u32.
                gaps.push(u32::try_from(values.len()).unwrap_or(u32::MAX));
            }
            values.push(v.map_or(0.0, Value::get));
        }
        Self {
            labels: Labels::of(&wire.labels),
            from: wire.from,
            values,
            gaps,
        }
    }
}

impl From<CachedSeries> for SeriesWire {
    fn from(series: CachedSeries) -> Self {
        let values = series.get().map(|v| v.map(Value::of)).collect();
        Self {
            labels: series.labels.to_map(),
            from: series.from,
            values,
        }
    }
}

/// A sample value; non-finite ones (Prometheus answers `NaN`, `+Inf`) kept as words, since
/// JSON numbers cannot hold them. Read by [`ValueVisitor`]: every analysis reads its
/// Release's points back from the ConfigMap, and an untagged enum would buffer each value
/// before trying its variants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
enum Value {
    Finite(f64),
    Word(NonFinite),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
enum NonFinite {
    #[serde(rename = "NaN")]
    NaN,
    #[serde(rename = "+Inf")]
    Inf,
    #[serde(rename = "-Inf")]
    NegInf,
}

struct ValueVisitor;

impl serde::de::Visitor<'_> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"a number, "NaN", "+Inf" or "-Inf""#)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Finite(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Finite(v as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Finite(v as f64))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        match v {
            "NaN" => Ok(Value::Word(NonFinite::NaN)),
            "+Inf" => Ok(Value::Word(NonFinite::Inf)),
            "-Inf" => Ok(Value::Word(NonFinite::NegInf)),
            _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl Value {
    fn of(v: f64) -> Self {
        if v.is_finite() {
            Value::Finite(v)
        } else if v.is_nan() {
            Value::Word(NonFinite::NaN)
        } else if v > 0.0 {
            Value::Word(NonFinite::Inf)
        } else {
            Value::Word(NonFinite::NegInf)
        }
    }

    fn get(self) -> f64 {
        match self {
            Value::Finite(v) => v,
            Value::Word(NonFinite::NaN) => f64::NAN,
            Value::Word(NonFinite::Inf) => f64::INFINITY,
            Value::Word(NonFinite::NegInf) => f64::NEG_INFINITY,
        }
    }
}

/// What to fetch for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetch {
    /// Nothing is committed for this query: the whole window.
    Whole,
    /// The window from the last committed point on (its first point is one step later).
    From(Window),
    /// Every point of the window is committed.
    Nothing,
}

fn millis(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

fn step_ms(window: &Window) -> i64 {
    i64::try_from(window.step.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// The query's identity: everything that decides its answer except the window's end.
fn key(request: &QueryRequest) -> String {
    format!(
        "{}|{}|{}|{}",
        request.window.start.timestamp_millis(),
        step_ms(&request.window),
        request.shift.map_or(0, |s| s.as_millis()),
        request.promql
    )
}

impl QueryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many queries have committed points.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is committed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many points are committed over all queries and series.
    pub fn points(&self) -> usize {
        self.entries
            .values()
            .flat_map(|e| &e.series)
            .map(|s| s.values.len())
            .sum()
    }

    /// What `request` still has to fetch.
    pub fn plan(&self, request: &QueryRequest) -> Fetch {
        let Some(entry) = self.entries.get(&key(request)) else {
            return Fetch::Whole;
        };
        let window = request.window;
        let next = entry.committed.saturating_add(entry.step);
        if next > window.end.timestamp_millis() {
            return Fetch::Nothing;
        }
        match chrono::DateTime::from_timestamp_millis(entry.committed) {
            Some(start) => Fetch::From(Window { start, ..window }),
            None => Fetch::Whole,
        }
    }

    /// The answer to `request`: the committed points followed by `fetched` (what
    /// [`QueryCache::plan`] said to fetch; `None` when it said nothing), and commits the
    /// points at least `lag` before the window's end.
    pub fn merge(
        &mut self,
        request: &QueryRequest,
        fetched: Option<QueryResult>,
        lag: Duration,
    ) -> QueryResult {
        let key = key(request);
        let window = request.window;
        let step = step_ms(&window);
        let start = window.start.timestamp_millis();
        let entry = self.entries.remove(&key);
        let committed = entry.as_ref().map_or(start, |e| e.committed);
        let mut cached: Vec<CachedSeries> = entry.map(|e| e.series).unwrap_or_default();
        let fetched = fetched.unwrap_or_default();
        let mut series: Vec<Series> = Vec::with_capacity(fetched.series.len() + cached.len());
        for s in fetched.series {
            let mut points = match cached.iter().position(|c| c.labels.is(&s.labels)) {
                Some(i) => expand(&cached.remove(i), step),
                None => Vec::new(),
            };
            points.extend(s.points.into_iter().filter(|(t, _)| millis(*t) > committed));
            series.push(Series {
                labels: s.labels,
                points,
            });
        }
        series.extend(cached.iter().map(|c| Series {
            labels: c.labels.to_map(),
            points: expand(c, step),
        }));
        let answer = QueryResult {
            series,
            warnings: fetched.warnings,
        };
        // The last point on the grid that is at least `lag` old.
        let lag = i64::try_from(lag.as_millis()).unwrap_or(i64::MAX);
        let ripe = window.end.timestamp_millis().saturating_sub(lag);
        let last = if ripe >= start {
            start + (ripe - start) / step * step
        } else {
            start
        };
        let commit = last.max(committed);
        if let Some(series) = compact(&answer.series, start, step, commit) {
            self.entries.insert(
                key,
                Entry {
                    committed: commit,
                    step,
                    series,
                },
            );
        }
        answer
    }

    /// Forgets every query not in `keep` (those of the analysis just run): a new step's
    /// window, or a template's changed query, leaves the old entries unused.
    fn retain(&mut self, keep: &BTreeSet<String>) {
        self.entries.retain(|k, _| keep.contains(k));
    }
}

/// A series' committed points as (Unix seconds, value) pairs.
fn expand(c: &CachedSeries, step: i64) -> Vec<(f64, f64)> {
    (0i64..)
        .zip(c.get())
        .filter_map(|(i, v)| v.map(|v| ((c.from + i * step) as f64 / 1000.0, v)))
        .collect()
}

/// The points up to `commit` of each series, on the grid `start + k * step` (k >= 1);
/// `None` when a point lies off the grid or out of order (a source that does not evaluate
/// at the steps), whose query is then not cached at all.
fn compact(series: &[Series], start: i64, step: i64, commit: i64) -> Option<Vec<CachedSeries>> {
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let mut from = None;
        let mut values: Vec<f64> = Vec::with_capacity(s.points.len());
        let mut gaps: Vec<u32> = Vec::new();
        for &(t, v) in &s.points {
            let t = millis(t);
            if t > commit {
                break;
            }
            if t <= start || (t - start) % step != 0 {
                return None;
            }
            let first = *from.get_or_insert(t);
            let index = usize::try_from((t - first) / step).ok()?;
            if index < values.len() {
                return None;
            }
            for gap in values.len()..index {
                gaps.push(u32::try_from(gap).ok()?);
            }
            values.resize(index, 0.0);
            values.push(v);
        }
        if let Some(from) = from {
            // Held until the rollout ends: no spare capacity.
            values.shrink_to_fit();
            out.push(CachedSeries {
                labels: Labels::of(&s.labels),
                from,
                values,
                gaps,
            });
        }
    }
    Some(out)
}

/// A [`MetricSource`] that fetches through a [`QueryCache`]: only the points the cache has
/// not committed, plus the last `lag` of the window, which late samples may still change.
pub struct Incremental<'a, S> {
    inner: &'a S,
    cache: &'a Mutex<QueryCache>,
    lag: Duration,
    used: Mutex<BTreeSet<String>>,
}

impl<'a, S: MetricSource> Incremental<'a, S> {
    /// Fetches through `cache`, committing points `lag` old.
    pub fn new(inner: &'a S, cache: &'a Mutex<QueryCache>, lag: Duration) -> Self {
        Self {
            inner,
            cache,
            lag,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    /// Forgets the cache's queries that this analysis did not run. Call once the analysis is
    /// over.
    pub fn finish(self) {
        let used = self.used.into_inner().unwrap_or_else(|e| e.into_inner());
        lock(self.cache).retain(&used);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves a cache that is at worst stale; the
    // next analysis re-fetches what it lacks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: MetricSource> MetricSource for Incremental<'_, S> {
    async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
        lock(&self.used).insert(key(request));
        let plan = lock(self.cache).plan(request);
        let fetched = match plan {
            Fetch::Whole => Some(self.inner.query_range(request).await?),
            Fetch::From(window) => {
                let narrowed = QueryRequest {
                    window,
                    ..request.clone()
                };
                Some(self.inner.query_range(&narrowed).await?)
            }
            Fetch::Nothing => None,
        };
        Ok(lock(self.cache).merge(request, fetched, self.lag))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{self, AnalysisRequest, Baseline};
    use crate::judge::Position;
    use crate::source::simulated::{SimulatedSource, VersionModel};
    use crate::template::units::PromDuration;
    use crate::template::{QueryPart, ReleaseAnalysis, load};
    use chrono::{DateTime, TimeZone, Utc};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DEMO: &str = include_str!("../../analysis-templates/demo.yaml");
    const LAG: Duration = Duration::from_secs(120);

    /// The simulated source, counting the points it answers with.
    struct Counted {
        inner: SimulatedSource,
        points: AtomicUsize,
    }

    impl MetricSource for Counted {
        async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
            let answer = self
                .inner
                .answer(request)
                .map_err(|kind| SourceError::new(request, kind))?;
            let n: usize = answer.series.iter().map(|s| s.points.len()).sum();
            self.points.fetch_add(n, Ordering::Relaxed);
            Ok(answer)
        }
        fn describe(&self) -> String {
            "simulated".into()
        }
    }

    fn demo() -> (ReleaseAnalysis, Counted) {
        let template = load::parse(DEMO, "demo.yaml").unwrap();
        let stable = VersionModel {
            rps: 90.0,
            ..VersionModel::default()
        };
        let canary = VersionModel {
            rps: 10.0,
            ..stable
        };
        let inner = SimulatedSource::new(&template, stable, canary, 11);
        (
            template,
            Counted {
                inner,
                points: AtomicUsize::new(0),
            },
        )
    }

    fn began() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap()
    }

    fn request(template: &ReleaseAnalysis, minute: i64) -> AnalysisRequest<'_> {
        let window = Window::new(
            began(),
            began() + chrono::Duration::seconds(minute * 60 + 7),
            PromDuration::from_secs(60),
        )
        .unwrap();
        AnalysisRequest {
            template,
            args: BTreeMap::from([("job".to_string(), "checkout".to_string())]),
            stable: "version=\"v1\"".parse().unwrap(),
            canary: "version=\"v2\"".parse().unwrap(),
            window,
            baseline: Baseline::Concurrent,
            look: u32::try_from(minute).unwrap(),
            position: Position {
                next_weight: 0.5,
                step: 1,
                step_start: Some(began().timestamp()),
                weight: Some(0.1),
            },
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A report as JSON, for comparing two judgements field by field.
    fn json(report: &crate::judge::Report) -> serde_json::Value {
        serde_json::to_value(report).unwrap()
    }

    #[test]
    fn compact_labels_match_exactly_the_map_they_were_made_of() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let two = map(&[("le", "0.1"), ("version", "v2")]);
        let labels = Labels::of(&two);
        assert!(labels.is(&two));
        assert_eq!(labels.to_map(), two);
        assert!(!labels.is(&map(&[("le", "0.1")])), "fewer labels");
        assert!(
            !labels.is(&map(&[("le", "0.1"), ("version", "v1")])),
            "another value"
        );
        assert!(
            !labels.is(&map(&[("le", "0.1"), ("zone", "v2")])),
            "another name"
        );
        assert!(Labels::of(&BTreeMap::new()).is(&BTreeMap::new()));
    }

    #[test]
    fn an_incremental_analysis_judges_exactly_as_a_whole_one_at_a_constant_cost() {
        let (template, whole) = demo();
        let (_, part) = demo();
        let cache = Mutex::new(QueryCache::new());
        let mut fetched = Vec::new();
        for minute in 2..=90 {
            let request = request(&template, minute);
            let (expected, expected_data) =
                block_on(analysis::run_with_data(&whole, &request, 4)).unwrap();
            let before = part.points.load(Ordering::Relaxed);
            let source = Incremental::new(&part, &cache, LAG);
            let (report, data) = block_on(analysis::run_with_data(&source, &request, 4)).unwrap();
            source.finish();
            fetched.push(part.points.load(Ordering::Relaxed) - before);
            assert_eq!(json(&report), json(&expected), "minute {minute}");
            for (a, b) in data.iter().zip(&expected_data) {
                assert_eq!(a.results, b.results, "minute {minute}");
            }
        }
        // From the second analysis on, each fetches the lag and the new minute: the same
        // number of points at minute 10 as at minute 90.
        let steady = &fetched[8..];
        assert!(
            steady.iter().all(|n| *n == steady[0]),
            "points fetched per analysis: {fetched:?}"
        );
        let full = whole.points.load(Ordering::Relaxed) / fetched.len();
        assert!(steady[0] * 10 < full, "{} vs {full} on average", steady[0]);
    }

    #[test]
    fn a_restart_with_the_stored_cache_judges_as_no_restart_would() {
        let (template, whole) = demo();
        let (_, part) = demo();
        let mut stored = String::new();
        for minute in 2..=40 {
            // Every analysis runs in a "new process": the cache comes back from its stored
            // form, as the controller restores it from the Release's ConfigMap.
            let cache = if stored.is_empty() {
                QueryCache::new()
            } else {
                serde_json::from_str(&stored).unwrap()
            };
            let cache = Mutex::new(cache);
            let request = request(&template, minute);
            let source = Incremental::new(&part, &cache, LAG);
            let report = block_on(analysis::run(&source, &request, 4)).unwrap();
            source.finish();
            stored = serde_json::to_string(&cache.into_inner().unwrap()).unwrap();
            let expected = block_on(analysis::run(&whole, &request, 4)).unwrap();
            assert_eq!(json(&report), json(&expected), "minute {minute}");
        }
    }

    fn query(start: i64, end: i64, promql: &str) -> QueryRequest {
        QueryRequest {
            template: "t".into(),
            metric: "m".into(),
            part: QueryPart::Query,
            role: crate::data::Role::Canary,
            promql: promql.into(),
            window: Window {
                start: Utc.timestamp_opt(start, 0).unwrap(),
                end: Utc.timestamp_opt(end, 0).unwrap(),
                step: PromDuration::from_secs(60),
            },
            shift: None,
        }
    }

    fn answer(points: &[(i64, f64)]) -> QueryResult {
        QueryResult {
            series: vec![Series {
                labels: BTreeMap::from([("le".to_string(), "0.1".to_string())]),
                points: points.iter().map(|(t, v)| (*t as f64, *v)).collect(),
            }],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn points_within_the_lag_are_fetched_again_and_may_change() {
        let mut cache = QueryCache::new();
        let first = query(0, 300, "q");
        assert_eq!(cache.plan(&first), Fetch::Whole);
        // At 300 s with a 120 s lag, the points up to 180 s are final.
        let got = cache.merge(
            &first,
            Some(answer(&[
                (60, 1.0),
                (120, 2.0),
                (180, 3.0),
                (240, 4.0),
                (300, 5.0),
            ])),
            LAG,
        );
        assert_eq!(got.series[0].points.len(), 5);
        let second = query(0, 330, "q");
        let Fetch::From(w) = cache.plan(&second) else {
            panic!("{:?}", cache.plan(&second))
        };
        assert_eq!(w.first_point().timestamp(), 240);
        // A late sample changed the point at 240 s: the new answer wins.
        let got = cache.merge(&second, Some(answer(&[(240, 40.0), (300, 5.0)])), LAG);
        let points: Vec<(f64, f64)> = got.series[0].points.clone();
        assert_eq!(
            points,
            vec![
                (60.0, 1.0),
                (120.0, 2.0),
                (180.0, 3.0),
                (240.0, 40.0),
                (300.0, 5.0)
            ]
        );
        // Another query, or the same one over a window that starts elsewhere, is its own.
        assert_eq!(cache.plan(&query(0, 330, "other")), Fetch::Whole);
        assert_eq!(cache.plan(&query(60, 330, "q")), Fetch::Whole);
        // Nothing new on the grid yet: nothing to fetch, the committed points answer.
        let mut cache = QueryCache::new();
        cache.merge(
            &first,
            Some(answer(&[(60, 1.0), (120, 2.0)])),
            Duration::ZERO,
        );
        let third = query(0, 300, "q");
        assert_eq!(cache.plan(&third), Fetch::Nothing);
        assert_eq!(
            cache.merge(&third, None, Duration::ZERO).series[0]
                .points
                .len(),
            2
        );
    }

    #[test]
    fn gaps_and_values_json_cannot_hold_survive_storing() {
        let mut cache = QueryCache::new();
        let request = query(0, 600, "q");
        let points = [
            (60, f64::NAN),
            (180, f64::INFINITY),
            (240, f64::NEG_INFINITY),
            (300, 0.25),
        ];
        let first = cache.merge(&request, Some(answer(&points)), LAG);
        let text = serde_json::to_string(&cache).unwrap();
        // The ConfigMap's form: one value per step, null for the gap (what earlier versions
        // wrote, and read back after an upgrade).
        assert!(
            text.contains(r#""values":["NaN",null,"+Inf","-Inf",0.25]"#),
            "{text}"
        );
        let mut back: QueryCache = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cache);
        let again = back.merge(&query(0, 600, "q"), Some(QueryResult::default()), LAG);
        let show = |r: &QueryResult| format!("{:?}", r.series[0].points);
        assert_eq!(show(&again), show(&first));
        assert_eq!(back.points(), 5, "four values and the gap at 120 s");
        // Integers read as numbers; any other word is refused, naming what is expected.
        let ints = text.replace(r#""NaN",null,"+Inf","-Inf",0.25"#, "3,null,-2,7,1e3");
        let back: QueryCache = serde_json::from_str(&ints).unwrap();
        let values: Vec<Option<f64>> = back.entries.values().next().unwrap().series[0]
            .get()
            .collect();
        assert_eq!(
            values,
            vec![Some(3.0), None, Some(-2.0), Some(7.0), Some(1000.0)]
        );
        let bad = text.replace(r#""+Inf""#, r#""Inf""#);
        let e = serde_json::from_str::<QueryCache>(&bad).unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"expected a number, "NaN", "+Inf" or "-Inf""#),
            "{e}"
        );
    }

    #[test]
    fn a_source_off_the_grid_is_not_cached() {
        let mut cache = QueryCache::new();
        let request = query(0, 600, "q");
        cache.merge(&request, Some(answer(&[(60, 1.0), (90, 2.0)])), LAG);
        assert_eq!(cache.plan(&request), Fetch::Whole);
        assert!(cache.is_empty());
    }

    #[test]
    fn queries_an_analysis_no_longer_runs_are_forgotten() {
        let (template, source) = demo();
        let cache = Mutex::new(QueryCache::new());
        let run = |minute: i64, start_shift: i64| {
            let mut r = request(&template, minute);
            r.window.start += chrono::Duration::minutes(start_shift);
            let s = Incremental::new(&source, &cache, LAG);
            block_on(analysis::run(&s, &r, 4)).unwrap();
            s.finish();
        };
        run(20, 0);
        let queries = cache.lock().unwrap().len();
        assert!(queries > 0);
        // The next step's window starts later: its queries replace the old ones.
        run(30, 10);
        assert_eq!(cache.lock().unwrap().len(), queries);
        assert!(cache.lock().unwrap().entries.keys().all(|k| {
            k.starts_with(
                &(began() + chrono::Duration::minutes(10))
                    .timestamp_millis()
                    .to_string(),
            )
        }));
    }
}
