//! The template loader (YAML documents as users and the API send them): no panic, and a
//! template that loads renders, for each version, only queries that carry that version's
//! matchers and never the other's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use vigil::analysis::{AnalysisRequest, Baseline, plan};
use vigil::data::{Role, Window};
use vigil::judge::Position;
use vigil::template::load::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = parse(text, "fuzz.yaml") else {
        return;
    };
    let stable = "vigil_fuzz_role=\"stable\""
        .parse()
        .expect("valid matchers");
    let canary = "vigil_fuzz_role=\"canary\""
        .parse()
        .expect("valid matchers");
    let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).expect("a valid time");
    let window = Window::new(
        at(1_800_000_000),
        at(1_800_003_600),
        "1m".parse().expect("a duration"),
    )
    .expect("a valid window");
    let request = AnalysisRequest {
        template: &template,
        args: BTreeMap::new(),
        stable,
        canary,
        window,
        baseline: Baseline::Concurrent,
        look: 1,
        position: Position::one_off(),
    };
    // Arguments without defaults are missing here: such a template plans nothing.
    let Ok(metrics) = plan(&request) else {
        return;
    };
    for query in metrics.iter().flatten() {
        let (own, other) = match query.role {
            Role::Stable => ("\"stable\"", "\"canary\""),
            Role::Canary => ("\"canary\"", "\"stable\""),
        };
        assert!(
            query.promql.contains(own),
            "the {:?} query of {} lacks its matchers: {}",
            query.role,
            query.metric,
            query.promql
        );
        assert!(
            !query.promql.contains(&format!("vigil_fuzz_role={other}")),
            "the {:?} query of {} carries the other version's matchers: {}",
            query.role,
            query.metric,
            query.promql
        );
    }
});
