//! The query renderer: `{{ selector }}`, `{{ interval }}` and `{{ args.NAME }}` filled into a
//! query. Input: the query on the first line, then `NAME=VALUE` lines (the arguments).
//!
//! Invariants: no panic; the version's matchers appear exactly where `{{ selector }}` stands
//! (and wherever the query or an argument already spelt them); and an argument never escapes
//! the string literal it stands in: the rendered query has the same string literals, and ends
//! in the same state, as the query rendered with every argument `x`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use vigil::template::render::{Piece, Placeholder, RenderContext, render, scan};
use vigil::template::selector::Selector;

const SENTINEL: &str = "vigil_fuzz_sentinel";

/// String literals in PromQL text, and whether the text ends inside one (a mini lexer of
/// PromQL's quoting: "..." and '...' with backslash escapes, `...` raw, # comments).
fn literals(text: &str) -> (usize, bool) {
    let mut count = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' | '`' => {
                let mut closed = false;
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return (count, true);
                }
                count += 1;
            }
            _ => {}
        }
    }
    (count, false)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let query = lines.next().unwrap_or_default();
    let args: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let selector: Selector = format!("{SENTINEL}=\"v\"")
        .parse()
        .expect("a valid selector");
    let ctx = RenderContext {
        args: &args,
        selector: &selector,
        interval: "1m".parse().expect("a valid duration"),
    };
    let Ok(rendered) = render(query, &ctx) else {
        return;
    };
    let pieces = scan(query).expect("a query that renders scans");
    let mut expected = 0;
    for piece in &pieces {
        expected += match piece {
            Piece::Text(t) => t.matches(SENTINEL).count(),
            Piece::Hole {
                placeholder: Placeholder::Selector,
                ..
            } => 1,
            Piece::Hole {
                placeholder: Placeholder::Arg(name),
                ..
            } => args.get(name).map_or(0, |v| v.matches(SENTINEL).count()),
            Piece::Hole { .. } => 0,
        };
    }
    assert_eq!(
        rendered.matches(SENTINEL).count(),
        expected,
        "{query:?} -> {rendered:?}"
    );
    let neutral: BTreeMap<String, String> = args.keys().map(|k| (k.clone(), "x".into())).collect();
    let plain = render(
        query,
        &RenderContext {
            args: &neutral,
            ..ctx.clone()
        },
    )
    .expect("the same query with plain arguments renders");
    assert_eq!(
        literals(&rendered),
        literals(&plain),
        "an argument changed the query's strings: {query:?} -> {rendered:?} (plain: {plain:?})"
    );
});
