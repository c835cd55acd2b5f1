//! The detection benchmark runner: every detector on the same simulated rollouts.
//!
//! Each rollout is simulated once, from a seed derived from the base seed, the scenario's
//! index in [`scenarios`] and the rollout's index, and fed interval by interval to a fresh
//! detector of every factory; a detector's answer for the rollout is the first interval at
//! which it aborts, if any. Rollouts run in parallel on scoped threads; the results do not
//! depend on the number of threads.
//!
//! Per scenario and detector it reports the share of rollouts aborted (the false-abort rate
//! in A/A scenarios, the detection power in regression scenarios) and, among aborted
//! rollouts, the median and 90th percentile of the time to abort in minutes (interval index
//! + 1 times the interval length).

use super::flagger::FlaggerFactory;
use super::kayenta::KayentaFactory;
use super::oracle::OracleFactory;
use super::sim::{Kind, Scenario, SimConfig, Step, rollout_seed, scenarios, simulate};
use super::vigil::VigilFactory;
use super::{DetectorFactory, Tolerances};
use crate::stats::summary::quantile_sorted;
use comfy_table::{CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The default false-abort bound of the sequential detectors.
pub const DEFAULT_ALPHA: f64 = 0.01;

/// Rollouts a worker takes at a time.
const CHUNK: usize = 8;

/// Every detector the benchmark compares, in table order: the one place detectors are
/// registered.
pub fn detectors(alpha: f64, tolerances: Tolerances) -> Vec<Box<dyn DetectorFactory>> {
    vec![
        Box::new(VigilFactory { alpha, tolerances }),
        // The oracle tests against "no change", the null of vigil's abort test.
        Box::new(OracleFactory {
            alpha,
            tolerances: Tolerances {
                errors: 0.0,
                latency: 0.0,
            },
        }),
        Box::new(KayentaFactory { tolerances }),
        Box::new(FlaggerFactory::default()),
    ]
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Rollouts per scenario.
    pub rollouts: usize,
    /// Base seed.
    pub seed: u64,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Names of the scenarios to run; empty means all.
    pub scenarios: Vec<String>,
    /// How rollouts are simulated.
    pub sim: SimConfig,
    /// Tolerances given to every detector.
    pub tolerances: Tolerances,
    /// False-abort bound of the sequential detectors.
    pub alpha: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rollouts: 1000,
            seed: 1,
            threads: 2,
            scenarios: Vec::new(),
            sim: SimConfig::default(),
            tolerances: Tolerances::default(),
            alpha: DEFAULT_ALPHA,
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
    /// A worker thread panicked.
    #[error("a benchmark worker thread panicked")]
    Worker,
}

/// One scenario's numbers for one detector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// A/A or regression.
    pub kind: Kind,
    /// Detector name.
    pub detector: String,
    /// Rollouts simulated.
    pub rollouts: usize,
    /// Rollouts the detector aborted.
    pub aborted: usize,
    /// Share aborted in an A/A scenario; `None` in a regression scenario.
    pub false_abort_rate: Option<f64>,
    /// Share aborted in a regression scenario; `None` in an A/A scenario.
    pub power: Option<f64>,
    /// Median minutes to abort among aborted rollouts.
    pub median_minutes_to_abort: Option<f64>,
    /// 90th percentile of minutes to abort among aborted rollouts.
    pub p90_minutes_to_abort: Option<f64>,
}

/// The configuration as recorded with the results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedConfig {
    /// Rollouts per scenario.
    pub rollouts: usize,
    /// Base seed.
    pub seed: u64,
    /// Rollout steps.
    pub steps: Vec<Step>,
    /// The whole simulation configuration.
    pub simulation: SimConfig,
    /// Tolerances given to every detector.
    pub tolerances: Tolerances,
    /// False-abort bound of the sequential detectors.
    pub alpha: f64,
    /// The scenarios run, with their true parameters.
    pub scenarios: Vec<Scenario>,
    /// The detectors compared.
    pub detectors: Vec<String>,
}

/// Everything a benchmark run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results {
    /// What was run.
    pub config: RecordedConfig,
    /// One row per scenario and detector, scenario-major.
    pub rows: Vec<Row>,
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

/// For each rollout of one scenario, the interval at which each factory's detector aborted.
type Outcomes = Vec<Vec<Option<usize>>>;

/// Runs one rollout through every detector.
fn run_rollout(
    scenario: &Scenario,
    scenario_index: usize,
    rollout: usize,
    config: &Config,
    factories: &[Box<dyn DetectorFactory>],
) -> Vec<Option<usize>> {
    let intervals = simulate(
        scenario,
        &config.sim,
        rollout_seed(config.seed, scenario_index, rollout),
    );
    factories
        .iter()
        .map(|f| {
            let mut detector = f.make(&scenario.truth);
            intervals.iter().position(|i| detector.observe(i))
        })
        .collect()
}

/// Runs the benchmark with the detectors of [`detectors`].
pub fn run(config: &Config) -> Result<Results, Error> {
    run_with(config, &detectors(config.alpha, config.tolerances))
}

/// Runs the benchmark with the detectors of [`detectors`], calling `done(n)` from the worker
/// threads each time `n` more rollouts are finished, out of [`total_rollouts`].
pub fn run_observed(config: &Config, done: &(dyn Fn(usize) + Sync)) -> Result<Results, Error> {
    run_with_observed(config, &detectors(config.alpha, config.tolerances), done)
}

/// How many rollouts [`run`] simulates in all: for each chosen scenario, `config.rollouts`.
pub fn total_rollouts(config: &Config) -> Result<usize, Error> {
    Ok(select(&config.scenarios)?.len() * config.rollouts)
}

/// Runs the benchmark with the given detectors.
pub fn run_with(config: &Config, factories: &[Box<dyn DetectorFactory>]) -> Result<Results, Error> {
    run_with_observed(config, factories, &|_| {})
}

/// Runs the benchmark with the given detectors, reporting progress as [`run_observed`] does.
fn run_with_observed(
    config: &Config,
    factories: &[Box<dyn DetectorFactory>],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Results, Error> {
    let chosen = select(&config.scenarios)?;
    let rollouts = config.rollouts;
    let jobs = chosen.len() * rollouts;
    // outcomes[scenario position][rollout][detector]
    let outcomes: Mutex<Vec<Outcomes>> = Mutex::new(vec![vec![Vec::new(); rollouts]; chosen.len()]);
    let next = AtomicUsize::new(0);
    let threads = config.threads.max(1);
    let worker = || -> Result<(), Error> {
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= jobs {
                return Ok(());
            }
            let end = (start + CHUNK).min(jobs);
            let done: Vec<(usize, usize, Vec<Option<usize>>)> = (start..end)
                .map(|job| {
                    let (position, rollout) = (job / rollouts, job % rollouts);
                    let (index, scenario) = &chosen[position];
                    let result = run_rollout(scenario, *index, rollout, config, factories);
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
    let minutes = config.sim.interval_seconds / 60.0;
    let mut rows = Vec::new();
    for ((_, scenario), per_rollout) in chosen.iter().zip(&outcomes) {
        for (d, factory) in factories.iter().enumerate() {
            let mut times: Vec<f64> = per_rollout
                .iter()
                .filter_map(|r| r.get(d).copied().flatten())
                .map(|i| (i + 1) as f64 * minutes)
                .collect();
            times.sort_by(f64::total_cmp);
            let aborted = times.len();
            let rate = (rollouts > 0).then(|| aborted as f64 / rollouts as f64);
            rows.push(Row {
                scenario: scenario.name.to_string(),
                kind: scenario.kind,
                detector: factory.name(),
                rollouts,
                aborted,
                false_abort_rate: rate.filter(|_| scenario.kind == Kind::AA),
                power: rate.filter(|_| scenario.kind == Kind::Regression),
                median_minutes_to_abort: quantile_sorted(&times, 0.5),
                p90_minutes_to_abort: quantile_sorted(&times, 0.9),
            });
        }
    }
    Ok(Results {
        config: RecordedConfig {
            rollouts,
            seed: config.seed,
            steps: config.sim.steps.clone(),
            simulation: config.sim.clone(),
            tolerances: config.tolerances,
            alpha: config.alpha,
            scenarios: chosen.into_iter().map(|(_, s)| s).collect(),
            detectors: factories.iter().map(|f| f.name()).collect(),
        },
        rows,
    })
}

/// The results as a table, one row per scenario and detector.
pub fn table(results: &Results) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(vec![
            "scenario",
            "detector",
            "false aborts",
            "power",
            "median min to abort",
            "p90 min to abort",
        ]);
    let percent = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let minutes = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
    for row in &results.rows {
        t.add_row(vec![
            row.scenario.clone(),
            row.detector.clone(),
            percent(row.false_abort_rate),
            percent(row.power),
            minutes(row.median_minutes_to_abort),
            minutes(row.p90_minutes_to_abort),
        ]);
    }
    for column in 2..6 {
        if let Some(c) = t.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(threads: usize, seed: u64) -> Config {
        Config {
            rollouts: 24,
            seed,
            threads,
            scenarios: vec!["errors-x2".into(), "aa-low".into()],
            ..Config::default()
        }
    }

    #[test]
    fn same_seed_same_results_whatever_the_threads() {
        let a = run(&small(1, 7)).unwrap_or_else(|e| panic!("{e}"));
        let b = run(&small(3, 7)).unwrap_or_else(|e| panic!("{e}"));
        let c = run(&small(2, 8)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
        assert_ne!(a.rows, c.rows);
        // Scenarios come in catalogue order, detectors in registration order.
        assert_eq!(
            a.rows.len(),
            2 * detectors(0.01, Tolerances::default()).len()
        );
        assert_eq!(a.rows[0].scenario, "aa-low");
        assert!(a.rows[0].power.is_none() && a.rows[0].false_abort_rate.is_some());
        assert!(a.rows.last().is_some_and(|r| r.power.is_some()));
    }

    #[test]
    fn unknown_scenarios_are_refused() {
        let config = Config {
            scenarios: vec!["nope".into()],
            ..Config::default()
        };
        assert!(matches!(run(&config), Err(Error::UnknownScenario { .. })));
    }

    #[test]
    fn table_and_json_carry_the_rows() {
        let results = run(&Config {
            rollouts: 4,
            ..small(2, 1)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let text = table(&results);
        assert!(text.contains("errors-x2") && text.contains("kayenta"));
        let json = serde_json::to_value(&results).unwrap_or_default();
        assert_eq!(json["config"]["alpha"], 0.01);
        assert_eq!(json["config"]["steps"][1]["canary_share"], 0.25);
        assert_eq!(json["rows"][0]["scenario"], "aa-low");
    }
}
