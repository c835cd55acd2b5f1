//! `cargo bench`: the cost of the statistics and of a whole judgement, in ns per operation.
//!
//! A plain timing harness (no extra crate): each case runs for about a second after a warm-up
//! and reports the median of five batches.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};
use vigil::analysis::{AnalysisRequest, Baseline, plan};
use vigil::data::Window;
use vigil::judge::{self, MetricData, RunInfo};
use vigil::source::simulated::{SimulatedSource, VersionModel};
use vigil::stats::Alternative;
use vigil::stats::mann_whitney::{hodges_lehmann, mann_whitney_u};
use vigil::stats::random::Rng;
use vigil::template::load::parse;
use vigil::template::units::PromDuration;

fn bench(name: &str, mut f: impl FnMut()) {
    // `cargo test --benches` runs this without `--bench`: check each case runs, time nothing.
    if !std::env::args().any(|a| a == "--bench") {
        f();
        println!("{name}: ran once (timings need `cargo bench`)");
        return;
    }
    // Warm up and find a batch size of about 200 ms.
    let mut batch = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        if start.elapsed() > Duration::from_millis(200) || batch > 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let mut per_op: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    println!("{name:<55} {:>14.0} ns/op", per_op[2]);
}

fn samples(seed: u64, n: usize, shift: f64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| 100.0 + shift + 10.0 * rng.normal())
        .collect()
}

const TEMPLATE: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: bench}
spec:
  metrics:
"#;

fn ten_metric_template() -> String {
    let mut text = TEMPLATE.to_string();
    for i in 0..4 {
        text.push_str(&format!(
            "    - name: errors-{i}\n      type: ratio\n      errors: e{{ {{{{ selector }}}} }}\n      total: t{{ {{{{ selector }}}} }}\n      tolerance: 50%\n"
        ));
    }
    for i in 0..3 {
        text.push_str(&format!(
            "    - name: latency-{i}\n      type: histogram\n      query: h{{ {{{{ selector }}}} }}\n      tolerance: 10%\n"
        ));
    }
    for i in 0..3 {
        text.push_str(&format!(
            "    - name: cpu-{i}\n      type: series\n      query: c{{ {{{{ selector }}}} }}\n      tolerance: 20%\n"
        ));
    }
    text
}

fn main() {
    let x = samples(1, 10_000, 0.5);
    let y = samples(2, 10_000, 0.0);
    bench("mann_whitney_u, 10,000 points per side", || {
        black_box(mann_whitney_u(
            black_box(&x),
            black_box(&y),
            Alternative::Greater,
        ));
    });
    bench("hodges_lehmann, 10,000 points per side (thinned)", || {
        black_box(hodges_lehmann(black_box(&x), black_box(&y), 0.99));
    });

    let template = parse(&ten_metric_template(), "bench").expect("bench template");
    let end = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time");
    let window = Window::new(
        end - chrono::Duration::hours(1),
        end,
        PromDuration::from_secs(60),
    )
    .expect("window");
    let request = AnalysisRequest {
        position: vigil::judge::Position::one_off(),
        look: 1,
        template: &template,
        args: BTreeMap::new(),
        stable: "version=\"v1\"".parse().expect("selector"),
        canary: "version=\"v2\"".parse().expect("selector"),
        window,
        baseline: Baseline::Concurrent,
    };
    let source = SimulatedSource::new(
        &template,
        VersionModel::default(),
        VersionModel {
            rps: 11.0,
            ..VersionModel::default()
        },
        7,
    );
    let data: Vec<MetricData> = plan(&request)
        .expect("plan")
        .iter()
        .map(|queries| {
            let mut d = MetricData::default();
            for q in queries {
                let answer = source.answer(q).expect("simulated answer");
                d.results.insert((q.role, q.part), answer);
                d.queries
                    .entry(q.role)
                    .or_default()
                    .insert(q.part, q.promql.clone());
            }
            d
        })
        .collect();
    let info = RunInfo {
        position: vigil::judge::Position::one_off(),
        window,
        baseline: None,
        source: "bench".into(),
        stable: "version=\"v1\"".into(),
        canary: "version=\"v2\"".into(),
        look: 1,
    };
    bench(
        "judge: 10 metrics (4 ratio, 3 histogram, 3 series), 60 steps",
        || {
            black_box(judge::judge(&template, black_box(&data), info.clone()));
        },
    );
}
