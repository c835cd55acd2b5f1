//! Durations (`interval`, `lookback`, `offset`, ...) and percentages (`tolerance`, `guard`, ...):
//! no panic, and what is read prints back as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::template::units::{Fraction, PromDuration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = text.parse::<PromDuration>() {
        let printed = d.to_string();
        let again: PromDuration = printed.parse().unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert_eq!(d, again, "{text:?} -> {printed:?}");
    }
    if let Ok(f) = text.parse::<Fraction>() {
        assert!(f.0.is_finite() && f.0 >= 0.0, "{text:?} read as {}", f.0);
        let printed = f.to_string();
        let again: Fraction = printed.parse().unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        let tolerance = 1e-9 * f.0.max(1e-300);
        assert!(
            (again.0 - f.0).abs() <= tolerance,
            "{text:?} -> {printed:?} -> {}",
            again.0
        );
    }
});
