//! `vigil demo`: two whole rollouts over simulated traffic, in accelerated time, through the
//! controller's state machine and judge; then a report.

use super::exit::{EXIT_CANNOT_RUN, EXIT_PASS, Failure, usage};
use super::output::{OutputFormat, check_report_paths, write_document};
use super::rollout_view::Live;
use chrono::{DateTime, TimeZone, Utc};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use vigil::api::crd::Release;
use vigil::replay::{self, ReplayInput, ReplayObserver, ReplayOutcome, report};
use vigil::report::doc::{Document, Mark};
use vigil::rollout::State;
use vigil::source::simulated::{SimulatedSource, VersionModel, WeightLog};
use vigil::template::{ReleaseAnalysis, load};

/// The template the demo judges with (embedded in the binary).
const DEMO_TEMPLATE: &str = include_str!("../../analysis-templates/demo.yaml");
/// The Release the demo rolls out (embedded in the binary).
const DEMO_CANARY: &str = include_str!("demo-release.yaml");
/// The blue-green Release of `--strategy blue-green` (embedded in the binary).
const DEMO_BLUE_GREEN: &str = include_str!("demo-blue-green.yaml");
/// The share (percent) of the simulated requests testers send to a blue-green preview.
const PREVIEW_TEST_SHARE: u8 = 10;

/// How the demo's releases move traffic.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Canary steps: 10% -> 50% -> 100%.
    Canary,
    /// Blue-green: the new version judged behind a preview Service on testers' requests,
    /// then all traffic at once, watched while the old version stays scaled.
    BlueGreen,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green release",
        }
    }

    fn steps(self) -> &'static str {
        match self {
            Strategy::Canary => "10% -> 50% -> 100%",
            Strategy::BlueGreen => "preview, then all at once",
        }
    }
}

/// A simulated release.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The canary behaves exactly like stable: promoted 10% -> 50% -> 100%.
    Healthy,
    /// The canary has x4 the error rate and +60% latency: aborted and rolled back.
    Faulty,
    /// The router sends the canary nothing: held as inconclusive, never promoted.
    NoTraffic,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Faulty => "faulty",
            Scenario::NoTraffic => "no-traffic",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Healthy => "A healthy canary",
            Scenario::Faulty => "A faulty canary (x4 errors, +60% latency)",
            Scenario::NoTraffic => "A canary that receives no traffic",
        }
    }
}

/// The examples of `vigil demo --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil demo                                  # both rollouts, then vigil-demo-report.html\n  \
    vigil demo --speed 0 --output json          # as fast as possible, one JSON document\n  \
    vigil demo --scenario no-traffic --report demo.md\n  \
    vigil demo --strategy blue-green            # preview, switch, post-promotion analysis\n\n\
    The same against a real Prometheus: `vigil replay` walks your Release's steps over a \
    past release with the same state machine and judge, e.g. with --release release.yaml \
    --template analysis-templates/demo.yaml --prometheus http://localhost:9090 \
    --stable 'version=\"v1\"' --canary-matchers 'version=\"v2\"' --from 2026-11-20T10:00:00Z \
    --to 2026-11-20T13:00:00Z --report replay.html (more in `vigil replay --help`). In a \
    cluster, `vigil run` does it live; a Release with dryRun: true only judges and reports.";

/// Arguments of `vigil demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Which simulated releases to roll out, in order; repeat for more.
    #[arg(long = "scenario", value_enum, default_values_t = [Scenario::Healthy, Scenario::Faulty])]
    scenarios: Vec<Scenario>,
    /// Simulated seconds per real second; 0 runs as fast as it can.
    #[arg(long, default_value_t = 300.0)]
    speed: f64,
    /// Where to write the HTML report (.html), or Markdown (.md).
    #[arg(long, value_name = "FILE", default_value = "vigil-demo-report.html")]
    report: PathBuf,
    /// Output on standard output: the timelines (table), Markdown, or JSON.
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Canary steps, or a blue-green release.
    #[arg(long, value_enum, default_value = "canary")]
    strategy: Strategy,
}

/// Follows the canary's weight into the simulation, as a router would, prints the decisions
/// and paces the rollout.
struct Simulated {
    weights: Arc<WeightLog>,
    speed: f64,
    live: Live,
    /// Testers' share of the requests while a blue-green preview runs without users.
    preview_share: Option<u8>,
}

impl ReplayObserver for Simulated {
    fn reconciled(&mut self, now: DateTime<Utc>, state: &State) {
        // The new version's share of the simulated requests: the users' weight, or before a
        // blue-green switch the testers' requests to the preview.
        let share = match (self.preview_share, state.weight(), state.flight()) {
            (Some(testers), 0, Some(_)) => testers,
            (_, weight, _) => weight,
        };
        self.weights.set(now.timestamp() as f64, share);
        self.live.reconciled(now, state);
    }

    fn marked(&mut self, mark: &Mark) {
        self.live.marked(mark);
    }

    fn pace(&mut self, simulated: chrono::Duration) -> std::time::Duration {
        if self.speed <= 0.0 {
            return std::time::Duration::ZERO;
        }
        let seconds = simulated.num_milliseconds() as f64 / 1000.0 / self.speed;
        std::time::Duration::from_secs_f64(seconds.clamp(0.0, 5.0))
    }
}

fn embedded(strategy: Strategy) -> Result<(Release, ReleaseAnalysis), Failure> {
    let broken = |what: &str, e: String| Failure {
        code: EXIT_CANNOT_RUN,
        message: format!("the embedded demo {what} is invalid: {e}"),
    };
    let text = match strategy {
        Strategy::Canary => DEMO_CANARY,
        Strategy::BlueGreen => DEMO_BLUE_GREEN,
    };
    let canary: Release =
        serde_saphyr::from_str(text).map_err(|e| broken("Release", e.to_string()))?;
    let template = load::parse(DEMO_TEMPLATE, "analysis-templates/demo.yaml")
        .map_err(|p| broken("template", p.to_string()))?;
    Ok((canary, template))
}

/// One simulated release: the stable version and the canary share 2,000 requests per
/// second by the canary's weight.
async fn roll_out(
    scenario: Scenario,
    canary: &Release,
    template: &ReleaseAnalysis,
    args: &DemoArgs,
) -> Result<(ReplayOutcome, Vec<vigil::analysis::Judged>), Failure> {
    // The template's `cpu` is CPU seconds per request: about 4 ms, steady to a few percent
    // from one 2-minute step to the next (each step averages tens of thousands of requests).
    let stable = VersionModel {
        rps: 1800.0,
        cpu_mean: 0.004,
        cpu_sd: 0.0001,
        ..VersionModel::default()
    };
    let healthy = VersionModel {
        rps: 200.0,
        ..stable
    };
    let canary_model = match scenario {
        Scenario::Healthy => healthy,
        Scenario::Faulty => VersionModel {
            error_rate: stable.error_rate * 4.0,
            latency_median: stable.latency_median * 1.6,
            ..healthy
        },
        Scenario::NoTraffic => VersionModel { rps: 0.0, ..stable },
    };
    let weights = Arc::new(WeightLog::default());
    let mut source = SimulatedSource::new(template, stable, canary_model, args.seed);
    if scenario != Scenario::NoTraffic {
        source = source.following(weights.clone());
    }
    let templates = BTreeMap::from([(template.metadata.name.clone(), template.clone())]);
    let from = start()?;
    let input = ReplayInput {
        plan: super::input::canary_plan(canary)?,
        templates: &templates,
        stable: r#"version="v1""#.parse().map_err(|e| usage(format!("{e}")))?,
        canary_matchers: r#"version="v2""#.parse().map_err(|e| usage(format!("{e}")))?,
        from,
        to: from + chrono::Duration::hours(3),
        concurrency: 8,
    };
    let plan = replay::check(&input).map_err(|e| usage(e.to_string()))?;
    let mut observer = Simulated {
        weights,
        speed: args.speed,
        live: Live::new(
            &format!("{} {}", scenario.name(), args.strategy.name()),
            plan.steps.len(),
            matches!(args.output, OutputFormat::Table),
            "  ",
        ),
        preview_share: (args.strategy == Strategy::BlueGreen).then_some(PREVIEW_TEST_SHARE),
    };
    let outcome = replay::run(&input, &source, &mut observer)
        .await
        .map_err(|e| usage(e.to_string()))?;
    observer.live.finish(outcome.end);
    if matches!(args.output, OutputFormat::Table) {
        observer
            .live
            .line(&format!("  => {}\n", report::conclusion(&outcome)));
    }
    let charts = report::chart_runs(&input, &outcome, plan, &source).await;
    Ok((outcome, charts))
}

/// A fixed start, so that the demo tells the same story every time.
fn start() -> Result<DateTime<Utc>, Failure> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .ok_or_else(|| usage("bad demo time"))
}

/// Rolls out the scenarios, then writes the report.
pub async fn run(args: DemoArgs) -> Result<u8, Failure> {
    check_report_paths([args.report.as_path()])?;
    let (canary, template) = embedded(args.strategy)?;
    let table = matches!(args.output, OutputFormat::Table);
    let mut runs = Vec::new();
    for (i, &scenario) in args.scenarios.iter().enumerate() {
        if table {
            println!(
                "Rollout {}/{}: {} (Release shop/checkout, {}, simulated)",
                i + 1,
                args.scenarios.len(),
                scenario.title(),
                args.strategy.steps()
            );
        }
        let (outcome, charts) = roll_out(scenario, &canary, &template, &args).await?;
        runs.push((scenario, outcome, charts));
    }
    let mut doc = Document {
        title: "vigil demo: two simulated canary releases".into(),
        sections: Vec::new(),
    };
    for (scenario, outcome, charts) in &runs {
        doc.sections
            .extend(report::document(scenario.title(), outcome, charts).sections);
    }
    write_document(&doc, &args.report)?;
    let shown = std::fs::canonicalize(&args.report).unwrap_or_else(|_| args.report.clone());
    match args.output {
        OutputFormat::Table => println!("Report: {}", shown.display()),
        OutputFormat::Markdown => print!("{}", vigil::report::markdown_doc(&doc)),
        OutputFormat::Json => {
            let start = start()?;
            let rollouts: Vec<_> = runs
                .iter()
                .map(|(scenario, outcome, _)| {
                    let mut value =
                        report::json(outcome, start, start + chrono::Duration::hours(3));
                    value["scenario"] = json!(scenario.name());
                    value
                })
                .collect();
            println!(
                "{:#}",
                json!({
                    "schema": "vigil.dev/demo/v1",
                    "report": shown,
                    "rollouts": rollouts,
                })
            );
        }
    }
    Ok(EXIT_PASS)
}
