//! `vigil replay`: what vigil would have done in a past release, from Prometheus' history.

use super::exit::{EXIT_CANNOT_RUN, EXIT_FAIL, EXIT_PASS, EXIT_UNDECIDED, Failure, usage};
use super::input::{ConnectionArgs, parse_time, prometheus_config, read_template};
use super::output::{OutputFormat, check_report_paths, write_document};
use super::rollout_view::Live;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use vigil::api::crd::Release;
use vigil::api::plan;
use vigil::replay::{self, End, ReplayInput, ReplayObserver, report};
use vigil::report::doc::Mark;
use vigil::source::prometheus::Prometheus;
use vigil::template::ReleaseAnalysis;
use vigil::template::selector::Selector;

/// The examples of `vigil replay --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil replay --release deploy/examples/nginx-gray-release/release.yaml \\\n    \
    --template analysis-templates/ingress-nginx.yaml --prometheus http://localhost:9090 \\\n    \
    --from 2026-11-20T10:00:00Z --to 2026-11-20T13:00:00Z --report replay.html\n  \
    vigil replay --release release.yaml --template t.yaml --prometheus http://localhost:9090 \\\n    \
    --stable 'version=\"v1\"' --canary-matchers 'version=\"v2\"' --from 1789990000 --to 1790000000 --output json\n\n\
    The release starts at --from; the replay stops when the rollout ends or at --to. \
    Exit status: 0 promoted, 1 aborted, 3 unfinished at --to, 2 usage, 4 Prometheus unusable.";

/// Arguments of `vigil replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// The Release file (YAML), as applied to the cluster.
    #[arg(long = "release", alias = "canary", value_name = "FILE")]
    canary: PathBuf,
    /// An ReleaseAnalysis file the Release names; repeat for more.
    #[arg(long = "template", value_name = "FILE", required = true)]
    templates: Vec<PathBuf>,
    /// Prometheus (or Thanos, Mimir, VictoriaMetrics) base URL.
    #[arg(long, env = "VIGIL_PROMETHEUS_URL")]
    prometheus: String,
    /// Label matchers of the stable version, without braces, e.g. version="v1"
    /// (default: the Release's analysis.stableMatchers, or its router's).
    #[arg(long, value_name = "MATCHERS")]
    stable: Option<String>,
    /// Label matchers of the canary, without braces, e.g. version="v2"
    /// (default: the Release's analysis.canaryMatchers, or its router's).
    #[arg(long = "canary-matchers", value_name = "MATCHERS")]
    canary_matchers: Option<String>,
    /// When the release started: RFC 3339 or Unix seconds.
    #[arg(long)]
    from: String,
    /// When to stop at the latest: RFC 3339 or Unix seconds.
    #[arg(long)]
    to: String,
    /// Output on standard output: the timeline (table), Markdown, or JSON.
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// Also write the report to FILE (.html or .md); repeat for both.
    #[arg(long = "report", value_name = "FILE")]
    reports: Vec<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Reads and checks a Release file.
pub fn read_release(path: &std::path::Path) -> Result<Release, Failure> {
    let origin = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("--release {origin}: cannot read it: {e}")))?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Type {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
    }
    let kind: Type = serde_saphyr::from_str(&text)
        .map_err(|e| usage(format!("--release {origin}: not a valid Release: {e}")))?;
    if let Err(e) = vigil::api::crd::check_release_type(&kind.api_version, &kind.kind) {
        return Err(usage(format!("--release {origin}: {e}")));
    }
    let canary: Release = serde_saphyr::from_str(&text).map_err(|e| {
        usage(format!(
            "--release {origin}: not a valid Release: {e}; see deploy/examples/ for Releases that are"
        ))
    })?;
    if let Err(e) = plan::plan(&canary.spec) {
        return Err(usage(format!("--release {origin}: spec.{e}")));
    }
    Ok(canary)
}

/// Reads the template files, by name.
pub fn read_templates(paths: &[PathBuf]) -> Result<BTreeMap<String, ReleaseAnalysis>, Failure> {
    let mut templates = BTreeMap::new();
    for path in paths {
        let (template, _, origin) = read_template(path).map_err(|p| usage(p.to_string()))?;
        if templates.contains_key(&template.metadata.name) {
            return Err(usage(format!(
                "--template {origin}: a template named {:?} was already given",
                template.metadata.name
            )));
        }
        templates.insert(template.metadata.name.clone(), template);
    }
    Ok(templates)
}

impl ReplayObserver for Live {
    fn reconciled(&mut self, now: chrono::DateTime<chrono::Utc>, state: &vigil::rollout::State) {
        Live::reconciled(self, now, state);
    }

    fn marked(&mut self, mark: &Mark) {
        Live::marked(self, mark);
    }
}

fn matchers(args: &ReplayArgs, canary: &Release) -> Result<(Selector, Selector), Failure> {
    let namespace = canary.metadata.namespace.clone().unwrap_or_default();
    let defaults = || {
        vigil::cluster::routers::matchers(&canary.spec, &namespace, canary.spec.service.port)
            .map_err(|e| {
                usage(format!(
                    "the Release's default matchers: {e}; give --stable and --canary-matchers"
                ))
            })
    };
    let parse = |flag: &str, text: &str| {
        text.parse::<Selector>().map_err(|e| {
            usage(format!(
                "{flag}: {e}; give label matchers without braces, e.g. version=\"v1\""
            ))
        })
    };
    Ok(match (&args.stable, &args.canary_matchers) {
        (Some(s), Some(c)) => (parse("--stable", s)?, parse("--canary-matchers", c)?),
        (None, None) => defaults()?,
        (Some(s), None) => (parse("--stable", s)?, defaults()?.1),
        (None, Some(c)) => (defaults()?.0, parse("--canary-matchers", c)?),
    })
}

/// Replays the release and reports what vigil would have done.
pub async fn run(args: ReplayArgs) -> Result<u8, Failure> {
    check_report_paths(args.reports.iter().map(PathBuf::as_path))?;
    let canary = read_release(&args.canary)?;
    let templates = read_templates(&args.templates)?;
    let (stable, canary_matchers) = matchers(&args, &canary)?;
    let from = parse_time(&args.from, "--from")?;
    let to = parse_time(&args.to, "--to")?;
    let config = prometheus_config(&args.prometheus, &args.connection)?;
    let source = Prometheus::new(config).map_err(|e| usage(e.to_string()))?;
    let input = ReplayInput {
        plan: super::input::canary_plan(&canary)?,
        templates: &templates,
        stable,
        canary_matchers,
        from,
        to,
        concurrency: args.connection.concurrency,
    };
    let plan = replay::check(&input).map_err(|e| usage(e.to_string()))?;
    let table = matches!(args.output, OutputFormat::Table);
    let mut live = Live::new("replay", plan.steps.len(), table, "");
    let outcome = replay::run(&input, &source, &mut live)
        .await
        .map_err(|e| usage(e.to_string()))?;
    live.finish(outcome.end);
    if let Some(message) = source_down(&outcome) {
        return Err(Failure {
            code: EXIT_CANNOT_RUN,
            message,
        });
    }
    let charts = if args.reports.is_empty() && !matches!(args.output, OutputFormat::Markdown) {
        Vec::new()
    } else {
        report::chart_runs(&input, &outcome, plan, &source).await
    };
    let title = format!(
        "Replay of Release {}/{}",
        canary.metadata.namespace.as_deref().unwrap_or("default"),
        canary.metadata.name.as_deref().unwrap_or("")
    );
    let doc = report::document(&title, &outcome, &charts);
    match args.output {
        OutputFormat::Table => println!("{}", report::conclusion(&outcome)),
        OutputFormat::Markdown => print!("{}", vigil::report::markdown_doc(&doc)),
        OutputFormat::Json => println!("{:#}", report::json(&outcome, input.from, input.to)),
    }
    for path in &args.reports {
        write_document(&doc, path)?;
        if table {
            println!("report: {}", path.display());
        }
    }
    Ok(match outcome.end {
        End::Promoted => EXIT_PASS,
        End::Aborted => EXIT_FAIL,
        End::Unfinished => EXIT_UNDECIDED,
    })
}

/// When every analysis failed because Prometheus could not be used, the replay says nothing
/// about the release: that is an error, not a timeline.
fn source_down(outcome: &replay::ReplayOutcome) -> Option<String> {
    let all_errors = !outcome.analyses.is_empty()
        && outcome
            .analyses
            .iter()
            .all(|a| matches!(a.outcome, vigil::rollout::AnalysisOutcome::Error { .. }));
    all_errors.then(|| {
        let first = &outcome.analyses[0];
        // One metric's error says it (they share the cause); the summary has them all.
        let reason = replay::first_error(&first.reports).unwrap_or(first.outcome.summary());
        format!(
            "no analysis of the replay could run ({} tried); the first failed with:\n  {}",
            outcome.analyses.len(),
            reason.replace('\n', "\n  ")
        )
    })
}
