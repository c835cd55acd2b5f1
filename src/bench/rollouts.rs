//! The closed-loop rollout benchmark: every detector drives simulated releases through the
//! real rollout state machine ([`crate::rollout::machine`], the same as the controller's and
//! `replay`'s).
//!
//! Each rollout: the machine sets the weight; the simulator ([`Simulation`]) splits the next
//! interval's traffic by it and scales the canary's pods; at each analysis the detector
//! answers pass, hold or fail, and the machine acts on it as the controller would (a pass
//! advances the step, a hold keeps it, a fail aborts). The release is promoted when the
//! machine starts promoting, aborted when it rolls back, and held when neither happened by
//! the deadline. Every detector meets the same pods and drift in a rollout (the same seed);
//! the traffic differs once their decisions differ, as it would.
//!
//! Per scenario and detector it reports the shares promoted, aborted and held; minutes to
//! promote and to abort (median, p90); and the harm: failed requests and requests slower
//! than the stable's p99 bound that the canary served beyond what stable would have served
//! with the same requests, until the rollout's end. For a promoted canary the harm goes on
//! after the decision: the new version then serves all the traffic, so the expected excess
//! at full traffic is added up to the deadline (zero for a healthy canary).

use super::flagger::FlaggerFactory;
use super::kayenta::KayentaFactory;
use super::oracle::OracleFactory;
use super::sim::{Excess, Scenario, SimConfig, Simulation, rollout_seed, scenarios};
use super::vigil::VigilFactory;
use super::{Answer, DetectorFactory, Look, Tolerances};
use crate::rollout::machine::{analysis_due, decide};
use crate::rollout::{AnalysisOutcome, Observation, Phase, Plan, State};
use crate::stats::summary::quantile_sorted;
use chrono::{DateTime, TimeZone, Utc};
use comfy_table::{CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// vigil's default false-abort level.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// vigil's default promotion error level: the template's.
pub use crate::template::DEFAULT_BETA;
/// vigil's default guard, as a multiple of each metric's tolerance: the template's.
pub use crate::template::DEFAULT_GUARD_FACTOR;

/// Rollouts a worker takes at a time.
const CHUNK: usize = 8;
/// Replicas of the simulated target Deployment.
const REPLICAS: i32 = 10;

/// Every detector the benchmark compares, in table order: the one place detectors are
/// registered.
pub fn detectors(config: &Config) -> Vec<Box<dyn DetectorFactory>> {
    vec![
        Box::new(VigilFactory {
            alpha: config.alpha,
            beta: config.beta,
            guard_factor: config.guard_factor,
            tolerances: config.tolerances,
        }),
        Box::new(OracleFactory {
            alpha: config.alpha,
            beta: config.beta,
            guard_factor: config.guard_factor,
            tolerances: config.tolerances,
        }),
        Box::new(KayentaFactory {
            tolerances: config.tolerances,
        }),
        Box::new(FlaggerFactory::default()),
    ]
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Rollouts per scenario.
    pub rollouts: usize,
    /// Base seed.
    pub seed: u64,
    /// Worker threads (at least 1).
    #[serde(skip)]
    pub threads: usize,
    /// Names of the scenarios to run; empty means all.
    pub scenarios: Vec<String>,
    /// The canary weights of the steps, in percent.
    pub weights: Vec<u8>,
    /// Minutes between analyses (the length of a simulated interval).
    pub interval_minutes: f64,
    /// Minutes after the first traffic at which an undecided rollout counts as held.
    pub deadline_minutes: f64,
    /// How traffic is simulated.
    pub sim: SimConfig,
    /// Tolerances given to every detector (a scenario may set its own).
    pub tolerances: Tolerances,
    /// False-abort level of the sequential detectors.
    pub alpha: f64,
    /// Promotion error level of the sequential detectors.
    pub beta: f64,
    /// Guard of vigil's promotion rule (and the oracle's H1) as a multiple of the tolerance.
    pub guard_factor: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rollouts: 1000,
            seed: 1,
            threads: 2,
            scenarios: Vec::new(),
            weights: vec![10, 50, 100],
            interval_minutes: 1.0,
            deadline_minutes: 60.0,
            sim: SimConfig::default(),
            tolerances: Tolerances::default(),
            alpha: DEFAULT_ALPHA,
            beta: DEFAULT_BETA,
            guard_factor: DEFAULT_GUARD_FACTOR,
        }
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A `--scenario` name that does not exist.
    #[error("unknown scenario {name:?}; the scenarios are: {known}")]
    UnknownScenario {
        /// The name given.
        name: String,
        /// The valid names, comma-separated.
        known: String,
    },
    /// A plan the state machine refuses.
    #[error("{0}")]
    Plan(String),
    /// A worker thread panicked.
    #[error("a benchmark worker thread panicked")]
    Worker,
}

/// How one rollout ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    /// Promoted this many minutes after the first traffic.
    Promoted(f64),
    /// Aborted this many minutes after the first traffic.
    Aborted(f64),
    /// Neither by the deadline.
    Held,
}

/// One rollout of one detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// How it ended.
    pub end: End,
    /// The harm the canary did (see the module's documentation).
    pub harm: Excess,
    /// Minutes from the first traffic to the onset of a late regression, if it came.
    pub onset: Option<f64>,
    /// The detector found the traffic split off at some analysis.
    pub split_named: bool,
}

/// A median and a 90th percentile; `None` with nothing to measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// The median.
    pub median: Option<f64>,
    /// The 90th percentile.
    pub p90: Option<f64>,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        Self {
            median: quantile_sorted(&values, 0.5),
            p90: quantile_sorted(&values, 0.9),
        }
    }
}

/// One scenario's numbers for one detector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Detector name.
    pub detector: String,
    /// Share of rollouts promoted (0..1).
    pub promoted: f64,
    /// Share aborted.
    pub aborted: f64,
    /// Share held at the deadline.
    pub held: f64,
    /// Minutes from the first traffic to the promotion, among promoted rollouts.
    pub promote_minutes: Spread,
    /// Minutes from the first traffic to the abort, among aborted rollouts.
    pub abort_minutes: Spread,
    /// Excess failed requests served by the canary.
    pub harm_errors: Spread,
    /// Excess slow requests served by the canary.
    pub harm_slow: Spread,
    /// Late scenarios: minutes from the onset to the abort, among rollouts aborted after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_onset_minutes: Option<Spread>,
    /// Share of rollouts in which the detector found the traffic split off (and so held).
    pub split_named: f64,
}

/// Everything a run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results {
    /// Rollouts per scenario.
    pub rollouts: usize,
    /// What was run.
    pub config: Config,
    /// The scenarios run, with their true parameters.
    pub scenarios: Vec<Scenario>,
    /// One row per scenario and detector, scenario-major.
    pub results: Vec<Row>,
}

/// The scenarios `names` selects (all when empty), with their indices in [`scenarios`].
fn select(names: &[String]) -> Result<Vec<(usize, Scenario)>, Error> {
    let all: Vec<(usize, Scenario)> = scenarios().into_iter().enumerate().collect();
    if names.is_empty() {
        return Ok(all);
    }
    let known = || {
        all.iter()
            .map(|(_, s)| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chosen: Vec<(usize, Scenario)> = Vec::new();
    for name in names {
        let Some(found) = all.iter().find(|(_, s)| s.name == name) else {
            return Err(Error::UnknownScenario {
                name: name.clone(),
                known: known(),
            });
        };
        if !chosen.iter().any(|(i, _)| *i == found.0) {
            chosen.push(found.clone());
        }
    }
    chosen.sort_by_key(|(i, _)| *i);
    Ok(chosen)
}

/// The plan every rollout follows.
pub fn plan(config: &Config) -> Result<Plan, Error> {
    let interval = Duration::from_secs_f64((config.interval_minutes * 60.0).max(1.0));
    let mut plan = Plan::from_weights(&config.weights, interval);
    // A canary that never becomes available is not simulated: the deadline is the
    // benchmark's own.
    plan.progress_deadline = Duration::from_secs_f64((config.deadline_minutes * 60.0).max(60.0));
    plan.check().map_err(Error::Plan)?;
    Ok(plan)
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 60_000.0
}

fn add(a: Excess, b: Excess) -> Excess {
    Excess {
        errors: a.errors + b.errors,
        slow: a.slow + b.slow,
    }
}

/// Runs one rollout of `scenario` judged by `factory`'s detector, through the state machine.
pub fn run_rollout(
    scenario: &Scenario,
    seed: u64,
    config: &Config,
    plan: &Plan,
    factory: &dyn DetectorFactory,
) -> Rollout {
    let tolerances = scenario.tolerances.unwrap_or(config.tolerances);
    let mut detector = factory.make(&scenario.truth, tolerances);
    let sim_config = SimConfig {
        interval_seconds: config.interval_minutes * 60.0,
        ..config.sim.clone()
    };
    let mut sim = Simulation::new(scenario, &sim_config, seed, config.deadline_minutes);
    // The minute before the release, when stable served everything.
    detector.baseline(&sim.baseline());
    let interval = chrono::Duration::milliseconds((config.interval_minutes * 60_000.0) as i64);
    let mut now = Utc
        .timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default();
    let mut state = State::default();
    let mut revision = "stable";
    // The start of the first traffic, and of the next interval to simulate.
    let mut first: Option<DateTime<Utc>> = None;
    let mut clock: Option<DateTime<Utc>> = None;
    let mut pending = Vec::new();
    let mut harm = Excess::default();
    let mut onset = None;
    let mut split_named = false;
    let deadline = config.deadline_minutes;
    let end = loop {
        if state.phase() == Phase::Waiting {
            revision = "canary";
        }
        let mut analysis = None;
        if let Some(due) = analysis_due(plan, &state, now) {
            let step = state.current_step() as usize;
            let next_weight = plan.weight_of(step + 1).map(|w| f64::from(w) / 100.0);
            let mut answer = Answer::Hold;
            for i in pending.drain(..) {
                let a = detector.analyse(&Look {
                    interval: &i,
                    step,
                    next_weight,
                });
                answer = if answer == Answer::Fail {
                    Answer::Fail
                } else {
                    a
                };
            }
            split_named |= detector.split_off();
            let reason = detector.reason().unwrap_or_default();
            let outcome = match answer {
                Answer::Pass => AnalysisOutcome::Pass { summary: reason },
                Answer::Hold => AnalysisOutcome::Inconclusive { summary: reason },
                Answer::Fail => AnalysisOutcome::Fail {
                    summary: reason,
                    critical: true,
                },
            };
            analysis = Some((due, outcome));
        }
        let observation = Observation {
            now,
            template_revision: revision.into(),
            target_replicas: REPLICAS,
            autoscaler: None,
            canary_available: REPLICAS,
            stable_rolled: state.phase() == Phase::Promoting,
            paused: false,
            request: None,
            analysis,
            gates: Vec::new(),
        };
        let decision = decide(plan, &state, &observation);
        state = decision.state;
        let began = first.unwrap_or(now);
        match state.phase() {
            Phase::Promoting | Phase::Succeeded => break End::Promoted(minutes(began, now)),
            Phase::Failed => break End::Aborted(minutes(began, now)),
            Phase::Waiting | Phase::Initializing => continue,
            _ => {}
        }
        if first.is_none() && state.weight() > 0 {
            first = Some(now);
            clock = Some(now);
        }
        let next = now + chrono::Duration::from_std(decision.requeue).unwrap_or(interval);
        let next = next.max(now + chrono::Duration::seconds(1));
        if let Some(c) = clock.as_mut() {
            while *c + interval <= next {
                let (i, excess) = sim.next(f64::from(state.weight()) / 100.0);
                harm = add(harm, excess);
                if onset.is_none() && scenario.truth.onset_weight.is_some() && sim.regressed() {
                    onset = Some(minutes(first.unwrap_or(*c), *c));
                }
                pending.push(i);
                *c += interval;
            }
        }
        now = next;
        if first.is_some_and(|f| minutes(f, now) > deadline) {
            break End::Held;
        }
    };
    if let End::Promoted(at) = end {
        // The promoted version serves everything from now on.
        let mut minute = at;
        while minute < deadline {
            let step = config.interval_minutes.min(deadline - minute);
            let full = sim.expected_excess_at_full(minute);
            harm = add(
                harm,
                Excess {
                    errors: full.errors * step / config.interval_minutes,
                    slow: full.slow * step / config.interval_minutes,
                },
            );
            minute += step;
        }
    }
    Rollout {
        end,
        harm,
        onset,
        split_named,
    }
}

/// How many rollouts [`run`] simulates per detector: for each chosen scenario,
/// `config.rollouts`.
pub fn total_rollouts(config: &Config) -> Result<usize, Error> {
    Ok(select(&config.scenarios)?.len() * config.rollouts)
}

/// Runs the benchmark with the detectors of [`detectors`].
pub fn run(config: &Config) -> Result<Results, Error> {
    run_observed(config, &|_| {})
}

/// Runs the benchmark with the detectors of [`detectors`], calling `done(n)` from the worker
/// threads each time `n` more rollouts (of every detector) are finished, out of
/// [`total_rollouts`].
pub fn run_observed(config: &Config, done: &(dyn Fn(usize) + Sync)) -> Result<Results, Error> {
    run_with(config, &detectors(config), done)
}

/// Runs the benchmark with the given detectors. The results do not depend on the number of
/// threads.
pub fn run_with(
    config: &Config,
    factories: &[Box<dyn DetectorFactory>],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Results, Error> {
    let chosen = select(&config.scenarios)?;
    let plan = plan(config)?;
    let rollouts = config.rollouts;
    let jobs = chosen.len() * rollouts;
    // outcomes[scenario position][rollout][detector]
    let outcomes: Mutex<Vec<Vec<Vec<Rollout>>>> =
        Mutex::new(vec![vec![Vec::new(); rollouts]; chosen.len()]);
    let next = AtomicUsize::new(0);
    let threads = config.threads.max(1);
    let worker = || -> Result<(), Error> {
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= jobs {
                return Ok(());
            }
            let end = (start + CHUNK).min(jobs);
            let done: Vec<(usize, usize, Vec<Rollout>)> = (start..end)
                .map(|job| {
                    let (position, rollout) = (job / rollouts, job % rollouts);
                    let (index, scenario) = &chosen[position];
                    let seed = rollout_seed(config.seed, *index, rollout);
                    let result = factories
                        .iter()
                        .map(|f| run_rollout(scenario, seed, config, &plan, f.as_ref()))
                        .collect();
                    (position, rollout, result)
                })
                .collect();
            let finished = done.len();
            let mut all = outcomes.lock().map_err(|_| Error::Worker)?;
            for (position, rollout, result) in done {
                all[position][rollout] = result;
            }
            drop(all);
            progress(finished);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| Error::Worker)?)
    })?;
    let outcomes = outcomes.into_inner().map_err(|_| Error::Worker)?;
    let mut results = Vec::new();
    for ((_, scenario), runs) in chosen.iter().zip(&outcomes) {
        for (d, factory) in factories.iter().enumerate() {
            let of: Vec<&Rollout> = runs.iter().filter_map(|r| r.get(d)).collect();
            results.push(row(scenario, factory.name(), &of));
        }
    }
    Ok(Results {
        rollouts,
        config: config.clone(),
        scenarios: chosen.into_iter().map(|(_, s)| s).collect(),
        results,
    })
}

/// Sums up one scenario's rollouts of one detector.
fn row(scenario: &Scenario, detector: &str, runs: &[&Rollout]) -> Row {
    let n = runs.len().max(1) as f64;
    let share = |f: &dyn Fn(&Rollout) -> bool| runs.iter().filter(|r| f(r)).count() as f64 / n;
    let promote: Vec<f64> = runs
        .iter()
        .filter_map(|r| match r.end {
            End::Promoted(m) => Some(m),
            _ => None,
        })
        .collect();
    let abort: Vec<f64> = runs
        .iter()
        .filter_map(|r| match r.end {
            End::Aborted(m) => Some(m),
            _ => None,
        })
        .collect();
    let late = scenario.truth.onset_weight.is_some();
    let after_onset = late.then(|| {
        Spread::of(
            runs.iter()
                .filter_map(|r| match (r.end, r.onset) {
                    (End::Aborted(m), Some(o)) if m >= o => Some(m - o),
                    _ => None,
                })
                .collect(),
        )
    });
    Row {
        scenario: scenario.name.to_string(),
        detector: detector.to_string(),
        promoted: share(&|r| matches!(r.end, End::Promoted(_))),
        aborted: share(&|r| matches!(r.end, End::Aborted(_))),
        held: share(&|r| r.end == End::Held),
        promote_minutes: Spread::of(promote),
        abort_minutes: Spread::of(abort),
        harm_errors: Spread::of(runs.iter().map(|r| r.harm.errors).collect()),
        harm_slow: Spread::of(runs.iter().map(|r| r.harm.slow).collect()),
        after_onset_minutes: after_onset,
        split_named: share(&|r| r.split_named),
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn figure(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| format!("{v:.1}"))
}

/// The results as a table for the terminal.
pub fn table(results: &Results) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(vec![
            "scenario",
            "detector",
            "promoted",
            "aborted",
            "held",
            "promote min (median / p90)",
            "abort min (median / p90)",
            "harm errors (median / p90)",
            "harm slow (median / p90)",
            "after onset min",
            "split named",
        ]);
    for r in &results.results {
        let spread = |s: &Spread| {
            if s.median.is_none() {
                String::new()
            } else {
                format!("{} / {}", figure(s.median), figure(s.p90))
            }
        };
        table.add_row(vec![
            r.scenario.clone(),
            r.detector.clone(),
            percent(r.promoted),
            percent(r.aborted),
            percent(r.held),
            spread(&r.promote_minutes),
            spread(&r.abort_minutes),
            spread(&r.harm_errors),
            spread(&r.harm_slow),
            r.after_onset_minutes
                .as_ref()
                .map_or_else(String::new, spread),
            percent(r.split_named),
        ]);
    }
    for i in 2..table.column_count() {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sim::scenario;

    fn small(names: &[&str], rollouts: usize, threads: usize) -> Config {
        Config {
            rollouts,
            threads,
            scenarios: names.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    fn row<'a>(results: &'a Results, scenario: &str, detector: &str) -> &'a Row {
        results
            .results
            .iter()
            .find(|r| r.scenario == scenario && r.detector == detector)
            .unwrap_or_else(|| panic!("no row {scenario} {detector}"))
    }

    /// `rollouts` rollouts of `s` judged by vigil alone.
    fn vigil_runs(s: &Scenario, rollouts: usize) -> Vec<Rollout> {
        let config = Config::default();
        let plan = plan(&config).unwrap();
        let vigil = &detectors(&config)[0];
        assert_eq!(vigil.name(), "vigil");
        (0..rollouts)
            .map(|r| run_rollout(s, rollout_seed(41, 0, r), &config, &plan, vigil.as_ref()))
            .collect()
    }

    #[test]
    fn a_busy_healthy_canary_is_promoted_through_the_state_machine() {
        let results = run(&small(&["aa-2000rps"], 12, 2)).unwrap();
        assert_eq!(results.results.len(), 4);
        // Flagger advances at every passing check: 10% -> 50% -> 100% -> promoted, one
        // minute each, exactly as the state machine times the steps.
        let flagger = row(&results, "aa-2000rps", "flagger");
        assert_eq!(flagger.promoted, 1.0);
        assert_eq!(flagger.promote_minutes.median, Some(3.0));
        let vigil = row(&results, "aa-2000rps", "vigil");
        assert_eq!(vigil.promoted, 1.0);
        assert!(vigil.promote_minutes.median.is_some_and(|m| m <= 4.0));
        assert_eq!(vigil.abort_minutes.median, None);
        assert_eq!(row(&results, "aa-2000rps", "oracle").promoted, 1.0);
        // Nothing of a healthy canary's harm is systematic.
        assert!(vigil.harm_errors.median.is_some_and(|h| h.abs() < 60.0));
    }

    #[test]
    fn a_fivefold_error_rate_is_aborted_and_its_harm_counted() {
        let results = run(&small(&["errors-x5"], 12, 2)).unwrap();
        let vigil = row(&results, "errors-x5", "vigil");
        assert_eq!(vigil.aborted, 1.0);
        assert!(vigil.harm_errors.median.is_some_and(|h| h > 0.0));
        // Kayenta and Flagger promote some on their schedules; their harm goes on after the
        // promotion, so it is larger.
        for d in ["kayenta", "flagger"] {
            let r = row(&results, "errors-x5", d);
            assert!(r.harm_errors.p90 >= vigil.harm_errors.p90, "{d}");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_threads() {
        let one = run(&small(&["errors-x2", "aa-20rps"], 10, 1)).unwrap();
        let three = run(&small(&["errors-x2", "aa-20rps"], 10, 3)).unwrap();
        assert_eq!(one.results, three.results);
    }

    #[test]
    fn the_json_has_the_fields_the_issue_names() {
        let results = run(&small(&["late-errors-x3", "aa-2000rps"], 4, 2)).unwrap();
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json["rollouts"], 4);
        let rows = json["results"].as_array().unwrap();
        assert_eq!(rows.len(), 8);
        for r in rows {
            for key in [
                "scenario",
                "detector",
                "promoted",
                "aborted",
                "held",
                "promote_minutes",
                "abort_minutes",
                "harm_errors",
                "harm_slow",
            ] {
                assert!(r.get(key).is_some(), "{key} in {r}");
            }
            for key in [
                "promote_minutes",
                "abort_minutes",
                "harm_errors",
                "harm_slow",
            ] {
                assert!(r[key].get("median").is_some() && r[key].get("p90").is_some());
            }
            let share: f64 = ["promoted", "aborted", "held"]
                .iter()
                .map(|k| r[k].as_f64().unwrap())
                .sum();
            assert!((share - 1.0).abs() < 1e-9);
            let late = r["scenario"] == "late-errors-x3";
            assert_eq!(r.get("after_onset_minutes").is_some(), late, "{r}");
        }
        let names: Vec<&str> = rows[..4]
            .iter()
            .map(|r| r["detector"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["vigil", "oracle", "kayenta", "flagger"]);
        // Nothing to measure is null, not zero.
        let flagger = rows
            .iter()
            .find(|r| r["scenario"] == "aa-2000rps" && r["detector"] == "flagger")
            .unwrap();
        assert!(flagger["abort_minutes"]["median"].is_null());
    }

    #[test]
    fn an_unknown_scenario_or_plan_is_refused_with_the_choices() {
        let e = run(&small(&["aa-low"], 1, 1)).unwrap_err();
        assert!(e.to_string().contains("aa-20rps"), "{e}");
        let bad = Config {
            weights: vec![10, 150],
            ..small(&["aa-20rps"], 1, 1)
        };
        assert!(matches!(run(&bad), Err(Error::Plan(_))));
    }

    #[test]
    fn vigil_aborts_unchanged_canaries_at_most_alpha_of_the_time() {
        // 1000 healthy rollouts at 20 req/s: aborted at most alpha = 1%, with three standard
        // deviations of sampling slack (sqrt(1000 * 0.01 * 0.99) = 3.1).
        let s = scenario("aa-20rps").unwrap();
        let aborted = vigil_runs(&s, 1000)
            .iter()
            .filter(|r| matches!(r.end, End::Aborted(_)))
            .count();
        assert!(aborted <= 10 + 10, "{aborted} of 1000");
    }

    #[test]
    fn vigil_promotes_a_canary_at_its_guard_at_most_beta_of_the_time() {
        // Errors at exactly the default guard at full traffic (1 + 5 x the 20% tolerance:
        // twice stable's). Promoted at most beta = 2.5%, with three standard deviations of
        // slack (sqrt(1000 * 0.025 * 0.975) = 4.9).
        let mut s = scenario("errors-x2").unwrap();
        let tolerance = s.tolerances.unwrap_or(Config::default().tolerances).errors;
        s.truth.canary.error_rate =
            s.truth.stable.error_rate * (1.0 + DEFAULT_GUARD_FACTOR * tolerance);
        let promoted = vigil_runs(&s, 1000)
            .iter()
            .filter(|r| matches!(r.end, End::Promoted(_)))
            .count();
        assert!(promoted <= 25 + 15, "{promoted} of 1000");
    }
}
