//! Prometheus's HTTP API answers, as any server (or a proxy in front of it) might send them:
//! no panic, whatever the status and body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::source::prometheus::parse_response;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the HTTP status; the rest is the body.
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) % 600, rest),
        _ => (200, data),
    };
    if let Ok(answer) = parse_response(status, body, "http://prometheus.fuzz/api/v1/query_range") {
        // Values may be NaN or infinite (Prometheus sends "NaN", "+Inf"), times never.
        for series in &answer.series {
            for (t, _) in &series.points {
                assert!(t.is_finite(), "a point at time {t}");
            }
        }
    }
});
