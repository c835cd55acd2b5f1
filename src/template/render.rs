//! Safe rendering of query placeholders: `{{ args.NAME }}`, `{{ selector }}`, `{{ interval }}`.
//!
//! The query is scanned the way PromQL is lexed, so each placeholder is known to stand inside
//! a string literal or outside one. An argument inside a string is escaped for that string, so
//! `"` or `\` in a value cannot end the string and change the query. An argument outside a
//! string may only be a bare token (a number, a duration, a name). The selector is always
//! rendered from parsed label matchers and may not stand inside a string.

use super::selector::{Selector, escape_promql_string};
use super::units::PromDuration;
use std::collections::BTreeMap;

/// A placeholder found in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// `{{ args.NAME }}`
    Arg(String),
    /// `{{ selector }}`: the label matchers of the version being queried.
    Selector,
    /// `{{ interval }}`: the step of the analysis, as a PromQL duration.
    Interval,
}

/// A piece of a scanned query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal query text.
    Text(&'a str),
    /// A placeholder, with the quote character of the string literal it stands in, if any.
    Hole {
        /// Which placeholder.
        placeholder: Placeholder,
        /// `Some('"')`, `Some('\'')` or `Some('`')` inside a string literal; `None` outside.
        quote: Option<char>,
    },
}

/// Why a query could not be scanned or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `{{ ... }}` that is not one of the known placeholders.
    #[error(
        "unknown placeholder {{{{ {0} }}}}: use {{{{ args.NAME }}}}, {{{{ selector }}}} or {{{{ interval }}}}"
    )]
    UnknownPlaceholder(String),
    /// `{{` without a closing `}}`.
    #[error("a placeholder opened with {{{{ is not closed with }}}}")]
    Unclosed,
    /// A placeholder refers to an argument that has no value.
    #[error("argument {0:?} has no value: pass it with --arg {0}=VALUE or give it a default")]
    MissingArg(String),
    /// `{{ selector }}` inside a string literal.
    #[error(
        "{{{{ selector }}}} stands inside a quoted string; put it between the braces of a metric selector, e.g. metric{{{{{{ selector }}}}}}"
    )]
    SelectorInString,
    /// An argument outside quotes whose value is not a bare token.
    #[error(
        "argument {name:?} stands outside quotes, so its value may only contain letters, digits, \
         '_', '.' and ':', but it is {value:?}; quote it in the query to use any text"
    )]
    UnsafeBareArg {
        /// The argument.
        name: String,
        /// Its value.
        value: String,
    },
    /// An argument inside a raw (backtick) string whose value holds a backtick.
    #[error("argument {0:?} stands inside a `raw` string and its value contains a backtick")]
    BacktickInRawString(String),
}

/// Splits a query into text and placeholders.
pub fn scan(query: &str) -> Result<Vec<Piece<'_>>, RenderError> {
    let mut pieces = Vec::new();
    let bytes = query.as_bytes();
    let mut quote: Option<char> = None;
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // Three or more braces: the first ones are PromQL's own.
        if b == b'{' && bytes.get(i + 1) == Some(&b'{') && bytes.get(i + 2) != Some(&b'{') {
            let Some(close) = query[i + 2..].find("}}") else {
                return Err(RenderError::Unclosed);
            };
            let inner = query[i + 2..i + 2 + close].trim();
            let placeholder = parse_placeholder(inner)?;
            if text_start < i {
                pieces.push(Piece::Text(&query[text_start..i]));
            }
            pieces.push(Piece::Hole { placeholder, quote });
            i += 2 + close + 2;
            text_start = i;
            continue;
        }
        match quote {
            Some(q) if b == b'\\' && q != '`' => i += 1, // skip the escaped byte
            Some(q) if b == q as u8 => quote = None,
            None if matches!(b, b'"' | b'\'' | b'`') => quote = Some(b as char),
            None if b == b'#' => {
                // A comment runs to the end of the line.
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if text_start < query.len() {
        pieces.push(Piece::Text(&query[text_start..]));
    }
    Ok(pieces)
}

fn parse_placeholder(inner: &str) -> Result<Placeholder, RenderError> {
    match inner {
        "selector" => Ok(Placeholder::Selector),
        "interval" => Ok(Placeholder::Interval),
        _ => match inner.strip_prefix("args.") {
            Some(name) if is_arg_name(name) => Ok(Placeholder::Arg(name.to_string())),
            _ => Err(RenderError::UnknownPlaceholder(inner.to_string())),
        },
    }
}

/// Is `name` a valid argument name (letters, digits, `_` and `-`, starting with a letter)?
pub fn is_arg_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_bare_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'))
}

/// Checks a query's placeholders without values: each must be known, and
/// `{{ selector }}` may not stand in a string. Returns the placeholders found.
pub fn check(query: &str) -> Result<Vec<Placeholder>, RenderError> {
    let mut found = Vec::new();
    for piece in scan(query)? {
        if let Piece::Hole { placeholder, quote } = piece {
            if placeholder == Placeholder::Selector && quote.is_some() {
                return Err(RenderError::SelectorInString);
            }
            found.push(placeholder);
        }
    }
    Ok(found)
}

/// The values placeholders are filled with.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// Argument values by name, defaults already applied.
    pub args: &'a BTreeMap<String, String>,
    /// The version's label matchers.
    pub selector: &'a Selector,
    /// The analysis step.
    pub interval: PromDuration,
}

/// Fills a query's placeholders.
pub fn render(query: &str, ctx: &RenderContext<'_>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(query.len() + 64);
    for piece in scan(query)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Hole { placeholder, quote } => match placeholder {
                Placeholder::Selector => {
                    if quote.is_some() {
                        return Err(RenderError::SelectorInString);
                    }
                    out.push_str(&ctx.selector.to_string());
                }
                Placeholder::Interval => out.push_str(&ctx.interval.to_string()),
                Placeholder::Arg(name) => {
                    let value = ctx
                        .args
                        .get(&name)
                        .ok_or_else(|| RenderError::MissingArg(name.clone()))?;
                    match quote {
                        Some('"') => out.push_str(&escape_promql_string(value)),
                        Some('\'') => {
                            out.push_str(&value.replace('\\', "\\\\").replace('\'', "\\'"))
                        }
                        Some(_) => {
                            if value.contains('`') {
                                return Err(RenderError::BacktickInRawString(name));
                            }
                            out.push_str(value);
                        }
                        None => {
                            if !is_bare_token(value) {
                                return Err(RenderError::UnsafeBareArg {
                                    name,
                                    value: value.clone(),
                                });
                            }
                            out.push_str(value);
                        }
                    }
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_render(query: &str, args: &[(&str, &str)]) -> Result<String, RenderError> {
        let args: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let selector: Selector = "version=\"v2\"".parse().unwrap();
        render(
            query,
            &RenderContext {
                args: &args,
                selector: &selector,
                interval: PromDuration::from_secs(60),
            },
        )
    }

    #[test]
    fn fills_all_placeholders() {
        let q =
            r#"sum(rate(x{job="{{ args.job }}", {{selector}}}[{{ interval }}])) > {{ args.n }}"#;
        assert_eq!(
            ctx_render(q, &[("job", "api"), ("n", "0.5")]).unwrap(),
            r#"sum(rate(x{job="api", version="v2"}[1m])) > 0.5"#
        );
    }

    #[test]
    fn quote_in_argument_cannot_escape_the_string() {
        let q = r#"x{job="{{ args.job }}", {{ selector }}}"#;
        let out = ctx_render(q, &[("job", r#"api"} or vector(1) or x{a=""#)]).unwrap();
        assert_eq!(
            out,
            r#"x{job="api\"} or vector(1) or x{a=\"", version="v2"}"#
        );
        let out = ctx_render(q, &[("job", r"a\")]).unwrap();
        assert_eq!(out, r#"x{job="a\\", version="v2"}"#);
    }

    #[test]
    fn bare_arguments_must_be_tokens() {
        let q = "x[{{ args.window }}]";
        assert_eq!(ctx_render(q, &[("window", "5m")]).unwrap(), "x[5m]");
        assert!(matches!(
            ctx_render(q, &[("window", "5m]) or vector(1")]),
            Err(RenderError::UnsafeBareArg { .. })
        ));
    }

    #[test]
    fn triple_braces_keep_promql_braces() {
        assert_eq!(
            ctx_render("up{{{ selector }}}", &[]).unwrap(),
            r#"up{version="v2"}"#
        );
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(
            ctx_render("x{{{ selectr }}}", &[]),
            Err(RenderError::UnknownPlaceholder("selectr".into()))
        );
        assert_eq!(ctx_render("x{{ selector", &[]), Err(RenderError::Unclosed));
        assert_eq!(
            ctx_render("x{{{ args.job }}}", &[]),
            Err(RenderError::MissingArg("job".into()))
        );
        assert_eq!(
            check(r#"x{a="{{ selector }}"}"#),
            Err(RenderError::SelectorInString)
        );
    }

    #[test]
    fn braces_in_strings_and_comments_are_text() {
        let q = "x{a=\"}}\"} # {{ not a placeholder\n+ y{{{ selector }}}";
        assert_eq!(check(q).unwrap(), vec![Placeholder::Selector]);
    }
}
