//! Label matchers that pick one version, e.g. `version="v1", pod=~"web-canary-.*"`.
//!
//! Users give matchers without braces on the command line or in a rollout. They are parsed
//! here and printed back in canonical form, so nothing but label matchers can ever reach a
//! query through `{{ selector }}`.

use std::fmt;
use std::str::FromStr;

/// A label matching operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }
}

/// One label matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The operator.
    pub op: MatchOp,
    /// The unescaped value.
    pub value: String,
}

/// A non-empty list of label matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    matchers: Vec<Matcher>,
}

/// Why a selector could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid label matchers {input:?}: {why} at character {position} \
     (expected e.g. version=\"v1\" or app=\"web\", pod=~\"web-canary-.*\")"
)]
pub struct SelectorError {
    input: String,
    why: String,
    position: usize,
}

impl Selector {
    /// The matchers, in the order given.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }
}

/// Escapes a value for a double-quoted PromQL string.
pub fn escape_promql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Is `name` a valid Prometheus label name?
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{}{}\"{}\"",
                m.name,
                m.op.as_str(),
                escape_promql_string(&m.value)
            )?;
        }
        Ok(())
    }
}

struct Cursor<'a> {
    input: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }
    fn fail(&self, why: impl Into<String>) -> SelectorError {
        SelectorError {
            input: self.input.to_string(),
            why: why.into(),
            position: self.input[..self.pos].chars().count() + 1,
        }
    }

    fn label_name(&mut self) -> Result<String, SelectorError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        let name = &self.input[start..self.pos];
        if !is_label_name(name) {
            self.pos = start;
            return Err(self.fail("expected a label name"));
        }
        Ok(name.to_string())
    }

    fn op(&mut self) -> Result<MatchOp, SelectorError> {
        let rest = &self.input[self.pos..];
        let (op, len) = if rest.starts_with("=~") {
            (MatchOp::Regex, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::NotRegex, 2)
        } else if rest.starts_with("!=") {
            (MatchOp::NotEqual, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Equal, 1)
        } else {
            return Err(self.fail("expected one of =, !=, =~, !~"));
        };
        self.pos += len;
        Ok(op)
    }

    /// A PromQL string literal: "..." or '...' with escapes, or `...` raw.
    fn string(&mut self) -> Result<String, SelectorError> {
        let quote = match self.peek() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.fail("expected a quoted value")),
        };
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(self.fail("the quoted value is not closed")),
                Some(c) if c == quote => return Ok(value),
                Some('\\') if quote != '`' => match self.bump() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some(c @ ('\\' | '"' | '\'')) => value.push(c),
                    _ => return Err(self.fail("unsupported escape in the quoted value")),
                },
                Some('\n') if quote != '`' => {
                    return Err(self.fail("a line break inside the quoted value"));
                }
                Some(c) => value.push(c),
            }
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut cur = Cursor { input, pos: 0 };
        let mut matchers = Vec::new();
        cur.skip_spaces();
        if cur.peek() == Some('{') {
            return Err(cur.fail("give the matchers without braces"));
        }
        while cur.peek().is_some() {
            let name = cur.label_name()?;
            cur.skip_spaces();
            let op = cur.op()?;
            cur.skip_spaces();
            let value = cur.string()?;
            matchers.push(Matcher { name, op, value });
            cur.skip_spaces();
            match cur.peek() {
                None => break,
                Some(',') => {
                    cur.bump();
                    cur.skip_spaces();
                }
                Some(_) => return Err(cur.fail("expected a comma between matchers")),
            }
        }
        if matchers.is_empty() {
            return Err(cur.fail("no matcher given"));
        }
        Ok(Self { matchers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        let s: Selector = r#"version="v1",  pod=~'web-.*' , x!=`a\b`"#.parse().unwrap();
        assert_eq!(s.to_string(), r#"version="v1", pod=~"web-.*", x!="a\\b""#);
        assert_eq!(s.matchers().len(), 3);
    }

    #[test]
    fn escapes_survive_round_trip() {
        let s: Selector = r#"a="x\"y""#.parse().unwrap();
        assert_eq!(s.matchers()[0].value, "x\"y");
        assert_eq!(s.to_string(), r#"a="x\"y""#);
    }

    #[test]
    fn rejects_what_is_not_a_matcher() {
        for bad in [
            "",
            "{version=\"v1\"}",
            "version=v1",
            "version=\"v1\"} or vector(1",
            "version=\"v1\" x=\"y\"",
            "1abc=\"x\"",
            "a==\"x\"",
            "a=\"open",
        ] {
            let err = bad.parse::<Selector>().unwrap_err();
            assert!(
                err.to_string().contains("invalid label matchers"),
                "{bad}: {err}"
            );
        }
    }
}
