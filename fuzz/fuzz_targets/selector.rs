//! Label matchers (`--stable`, `--canary`, the Canary's matchers): whatever is read prints back
//! as matchers that read as the same selector, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::template::selector::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = text.parse::<Selector>() {
        let printed = selector.to_string();
        let again: Selector = printed.parse().unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert_eq!(selector, again, "{text:?} -> {printed:?}");
    }
});
