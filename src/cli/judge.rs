//! `vigil judge`: a canary against stable over a time window, from Prometheus.

use super::exit::{EXIT_CANNOT_RUN, EXIT_FAIL, EXIT_PASS, EXIT_UNDECIDED, Failure, usage};
use super::input::{
    ConnectionArgs, parse_args, parse_duration, parse_time, prometheus_config, read_template,
};
use super::output::{OutputFormat, is_document, write_document};
use super::progress::Progress;
use chrono::Utc;
use clap::Args;
use std::path::PathBuf;
use vigil::analysis::{self, AnalysisRequest, Baseline, BaselineError, PlanError};
use vigil::data::{QueryRequest, QueryResult, Window};
use vigil::judge::{Outcome, Report, Verdict};
use vigil::report::{self, Format};
use vigil::source::prometheus::Prometheus;
use vigil::source::{MetricSource, SourceError};
use vigil::template::load;
use vigil::template::selector::Selector;

/// The examples of `vigil judge --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil judge --prometheus http://prometheus.monitoring:9090 \\\n      \
        --template analysis-templates/http-prometheus-client.yaml --arg job=checkout \\\n      \
        --stable 'version=\"v1.4.2\"' --canary 'version=\"v1.5.0\"' --last 30m\n  \
    vigil judge --prometheus http://prometheus.istio-system:9090 \\\n      \
        --template analysis-templates/istio.yaml --arg namespace=bookinfo \\\n      \
        --stable 'destination_app=\"reviews\", destination_version=\"v1\"' \\\n      \
        --canary 'destination_app=\"reviews\", destination_version=\"v2\"' \\\n      \
        --start 2026-11-28T10:00:00Z --end 2026-11-28T11:00:00Z --output json --report review.md\n  \
    vigil judge --prometheus https://mimir.example.com/prometheus --header \"X-Scope-OrgID: team-a\" \\\n      \
        --bearer-token-file /var/run/secrets/kubernetes.io/serviceaccount/token \\\n      \
        --template analysis-templates/ingress-nginx.yaml --arg namespace=shop --arg ingress=web \\\n      \
        --stable 'canary=\"\"' --canary 'canary=\"shop-web-canary-80\"' --last 15m --step 30s\n\n\
    Exit status: 0 pass, 1 fail, 3 marginal or inconclusive, 4 the analysis could not run, \
    2 usage error.";

/// Arguments of `vigil judge`.
#[derive(Args)]
pub struct JudgeArgs {
    /// Prometheus (or Thanos, Mimir, VictoriaMetrics) base URL.
    #[arg(long, env = "VIGIL_PROMETHEUS_URL")]
    prometheus: String,
    /// The ReleaseAnalysis file.
    #[arg(long)]
    template: PathBuf,
    /// A template argument, NAME=VALUE; repeat for more.
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    args: Vec<String>,
    /// Label matchers of the stable version, without braces, e.g. version="v1".
    #[arg(long, value_name = "MATCHERS")]
    stable: String,
    /// Label matchers of the canary, without braces, e.g. version="v2".
    #[arg(long, value_name = "MATCHERS")]
    canary: String,
    /// Judge before/after: what --canary selects over the window against what --stable
    /// selected over an earlier window of the same length that ends by TIME, when the new
    /// version began (or the template's spec.offset earlier). RFC 3339 or Unix seconds; the
    /// window must start at or after it. --stable may then equal --canary.
    #[arg(long, value_name = "TIME")]
    baseline_before: Option<String>,
    /// Window start: RFC 3339 or Unix seconds.
    #[arg(long, requires = "end", conflicts_with = "last")]
    start: Option<String>,
    /// Window end: RFC 3339 or Unix seconds.
    #[arg(long, requires = "start", conflicts_with = "last")]
    end: Option<String>,
    /// Judge the last DURATION up to now, e.g. 30m.
    #[arg(long, value_name = "DURATION", required_unless_present = "start")]
    last: Option<String>,
    /// Step between points, and the value of {{ interval }}.
    #[arg(long, default_value = "1m")]
    step: String,
    /// Output format on standard output.
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// Also write the report to FILE (.json, .html with charts, .md, or anything else for a table).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Judges once and prints the report; the exit status is the verdict.
pub async fn run(args: JudgeArgs) -> Result<u8, Failure> {
    let (template, text, origin) =
        read_template(&args.template).map_err(|p| usage(p.to_string()))?;
    let stable: Selector = args
        .stable
        .parse()
        .map_err(|e| usage(format!("--stable: {e}{}", braces_hint(&args.stable))))?;
    let canary: Selector = args
        .canary
        .parse()
        .map_err(|e| usage(format!("--canary: {e}{}", braces_hint(&args.canary))))?;
    let step = parse_duration(&args.step, "--step")?;
    let (start, end) = match (&args.start, &args.end, &args.last) {
        (Some(s), Some(e), _) => (parse_time(s, "--start")?, parse_time(e, "--end")?),
        (_, _, Some(last)) => {
            let length = parse_duration(last, "--last")?;
            let end = Utc::now();
            let millis = i64::try_from(length.as_millis()).map_err(|_| {
                usage("--last is too long: give a shorter one, or --start and --end")
            })?;
            (end - chrono::Duration::milliseconds(millis), end)
        }
        _ => return Err(usage("give --start and --end, or --last")),
    };
    let window = Window::new(start, end, step).map_err(|e| usage(e.to_string()))?;
    let baseline = match &args.baseline_before {
        Some(began) => Baseline::Before {
            began: parse_time(began, "--baseline-before")?,
        },
        None => Baseline::Concurrent,
    };
    let config = prometheus_config(&args.prometheus, &args.connection)?;
    let concurrency = args.connection.concurrency;
    let source = Prometheus::new(config).map_err(|e| usage(e.to_string()))?;
    let request = AnalysisRequest {
        look: 1,
        position: vigil::judge::Position::one_off(),
        template: &template,
        args: parse_args(&args.args)?,
        stable,
        canary,
        window,
        baseline,
    };
    let locate = |e: PlanError| usage(locate_plan_error(&e, &template, &text, &origin));
    // A bar of the queries on a terminal: a long window on a slow server takes a while. In
    // pipes the judgement is quiet, as scripts expect.
    let queries: usize = analysis::plan(&request)
        .map_err(&locate)?
        .iter()
        .map(Vec::len)
        .sum();
    let progress = Progress::on_terminal(queries as u64, "queries");
    let counted = Counted {
        inner: &source,
        progress: progress.as_ref(),
    };
    let (report, data) = analysis::run_with_data(&counted, &request, concurrency)
        .await
        .map_err(&locate)?;
    if let Some(progress) = &progress {
        progress.finish_and_clear();
    }
    // .html and .md report files are documents with the data's charts; others go to finish.
    let file = args.report.as_deref();
    if let Some(path) = file.filter(|p| is_document(p)) {
        let charts = report::ChartData {
            template: &template,
            data: &data,
        };
        write_document(&report::single(&report, Some(charts)), path)?;
    }
    finish(
        &report,
        args.output.into(),
        file.filter(|p| !is_document(p)),
    )
}

/// A source that counts its finished queries on a progress bar.
struct Counted<'a, S> {
    /// The source.
    inner: &'a S,
    /// Where to count (none: just pass through).
    progress: Option<&'a Progress>,
}

impl<S: MetricSource> MetricSource for Counted<'_, S> {
    async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
        let answer = self.inner.query_range(request).await;
        if let Some(progress) = self.progress {
            progress.inc(1);
        }
        answer
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// What to do about label matchers given in braces, which `--stable` and `--canary` take
/// without them.
fn braces_hint(matchers: &str) -> &'static str {
    if matchers.trim_start().starts_with('{') {
        "; give the matchers without the braces"
    } else {
        ""
    }
}

/// A setup error prefixed with the file, line and field it concerns, where there is one.
fn locate_plan_error(
    error: &PlanError,
    template: &vigil::template::ReleaseAnalysis,
    text: &str,
    origin: &str,
) -> String {
    let path = match error {
        PlanError::MissingArg { name, .. } => template
            .spec
            .args
            .iter()
            .position(|a| &a.name == name)
            .map(|i| format!("spec.args[{i}]")),
        PlanError::Render { metric, field, .. } => template
            .spec
            .metrics
            .iter()
            .position(|m| &m.name == metric)
            .map(|i| format!("spec.metrics[{i}].{field}")),
        PlanError::Baseline {
            problem:
                BaselineError::OffsetNotWholeSteps { .. } | BaselineError::OffsetTooShort { .. },
            ..
        } => Some("spec.offset".to_string()),
        PlanError::UnknownArg { .. } | PlanError::SameSelectors(_) | PlanError::Baseline { .. } => {
            None
        }
    };
    match path {
        Some(path) => match load::line_of(text, &path) {
            Some(line) => format!("{origin}:{line}: {path}: {error}"),
            None => format!("{origin}: {path}: {error}"),
        },
        None => error.to_string(),
    }
}

/// Prints the report, writes the report file, and picks the exit status.
fn finish(report: &Report, format: Format, file: Option<&std::path::Path>) -> Result<u8, Failure> {
    let errors: Vec<&str> = report
        .metrics
        .iter()
        .filter(|m| m.outcome == Outcome::Error)
        .map(|m| m.reason.as_str())
        .collect();
    let all_failed = !report.metrics.is_empty() && errors.len() == report.metrics.len();
    if !(all_failed && format == Format::Table) {
        print!("{}", report::render(report, format));
        if format == Format::Json {
            println!();
        }
    }
    if let Some(path) = file {
        let file_format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            Some("md" | "markdown") => Format::Markdown,
            _ => Format::Table,
        };
        std::fs::write(path, report::render(report, file_format)).map_err(|e| Failure {
            code: EXIT_CANNOT_RUN,
            message: format!(
                "cannot write the report to {}: {e}: give --report a path in a writable directory",
                path.display()
            ),
        })?;
    }
    if report.verdict == Verdict::Fail {
        return Ok(EXIT_FAIL);
    }
    if !errors.is_empty() {
        let mut message = if all_failed {
            "the analysis could not run: no metric could be fetched".to_string()
        } else {
            format!(
                "the analysis could not run completely: {} of {} metrics failed",
                errors.len(),
                report.metrics.len()
            )
        };
        // The same cause (e.g. an unreachable server) is worth saying once.
        let mut seen = std::collections::BTreeSet::new();
        for e in errors {
            if seen.insert(e) {
                message.push_str("\n  ");
                message.push_str(&e.replace('\n', "\n  "));
            }
        }
        return Err(Failure {
            code: EXIT_CANNOT_RUN,
            message,
        });
    }
    Ok(match report.verdict {
        Verdict::Pass => EXIT_PASS,
        Verdict::Fail => EXIT_FAIL,
        Verdict::Marginal | Verdict::Inconclusive => EXIT_UNDECIDED,
    })
}

#[cfg(test)]
mod tests {
    use super::braces_hint;

    #[test]
    fn matchers_in_braces_are_told_to_drop_them() {
        assert_eq!(
            braces_hint(" {version=\"v1\"}"),
            "; give the matchers without the braces"
        );
        assert_eq!(braces_hint("version=\"v1\""), "");
    }
}
