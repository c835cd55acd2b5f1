//! Reads a template from YAML text, with file, line and field in every error.
//!
//! Parsing happens twice over the same text: once into the template model (serde reports
//! unknown fields and bad values with their position), and once into a skeleton of spans
//! that maps a field path such as `spec.metrics[1].query` to its line, so the checks in
//! [`super::validate`] can point at the line as well. When the first parse fails, each
//! metric, argument and the scoring is read again on its own, setting aside each field in
//! error, so that every such mistake is reported at once rather than the first.

use super::ReleaseAnalysis;
use super::validate::{Issue, validate};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;

/// One problem in a template file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, or another name for where the text came from.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// The field's path, e.g. `spec.metrics[1].tolerance`, when known.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// All problems of one template file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Parses and validates a template. `origin` names the source in messages.
pub fn parse(text: &str, origin: &str) -> Result<ReleaseAnalysis, Problems> {
    let template: ReleaseAnalysis = serde_saphyr::from_str(text).map_err(|e| {
        // What each metric, argument and the scoring has wrong, so that one run lists every
        // mistake; and the problem serde stopped at, unless one of those is it.
        let mut problems = other_problems(text, origin);
        let first = serde_problem(&e, text, origin);
        if !problems
            .iter()
            .any(|p| p.line.is_some() && p.line == first.line)
        {
            problems.push(first);
        }
        problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
        Problems(problems)
    })?;
    let issues = validate(&template);
    if issues.is_empty() {
        return Ok(template);
    }
    let locator = Locator::new(text);
    Err(Problems(
        issues
            .into_iter()
            .map(|Issue { path, message }| Problem {
                file: origin.to_string(),
                line: locator.line_of(&path),
                field: Some(path),
                message,
            })
            .collect(),
    ))
}

/// Problems of a template's parts found one part at a time: each metric, argument and the
/// scoring is read on its own, and a field in error is set aside to find the next, so that
/// problems serde would stop at the first of come out together. Best effort: a text that is
/// not even YAML gives none (the first problem says why).
fn other_problems(text: &str, origin: &str) -> Vec<Problem> {
    use serde_json::Value;
    let Ok(doc) = serde_saphyr::from_str::<Value>(text) else {
        return Vec::new();
    };
    let locator = Locator::new(text);
    let mut found: Vec<(String, String)> = Vec::new();
    let spec = &doc["spec"];
    for (list, name) in [("metrics", "metrics"), ("args", "args")] {
        for (i, item) in spec[list].as_array().into_iter().flatten().enumerate() {
            let base = format!("spec.{name}[{i}]");
            found.extend(match list {
                "metrics" => part_problems::<super::MetricSpec>(item, &base),
                _ => part_problems::<super::ArgSpec>(item, &base),
            });
        }
    }
    if let Some(offset) = spec.get("offset")
        && let Err(e) = super::units::PromDuration::deserialize(offset)
    {
        found.push(("spec.offset".into(), e.to_string()));
    }
    if spec["scoring"].is_object() {
        found.extend(part_problems::<super::Scoring>(
            &spec["scoring"],
            "spec.scoring",
        ));
    }
    found
        .into_iter()
        .map(|(path, message)| Problem {
            file: origin.to_string(),
            line: locator.line_of(&path),
            field: Some(path),
            message,
        })
        .collect()
}

/// Every (field path, message) deserializing `value` as a `T` meets, setting aside each
/// field in error to find the next; a field set aside is not then reported missing.
fn part_problems<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    base: &str,
) -> Vec<(String, String)> {
    let mut value = value.clone();
    let mut aside: Vec<String> = Vec::new();
    let mut found = Vec::new();
    // At most one problem per field, and a bound for safety.
    for _ in 0..64 {
        let Err(e) = serde_path_to_error::deserialize::<_, T>(value.clone()) else {
            break;
        };
        let message = e.inner().to_string();
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next());
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let key = match (unknown, missing) {
            (Some(k), _) => k.to_string(),
            (None, Some(k)) => {
                if !aside.iter().any(|a| a == k) {
                    found.push((base.to_string(), message));
                }
                break;
            }
            (None, None) => match e.path().iter().next() {
                Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
                _ => {
                    found.push((base.to_string(), message));
                    break;
                }
            },
        };
        let Some(object) = value.as_object_mut() else {
            break;
        };
        if object.remove(&key).is_none() {
            break;
        }
        found.push((format!("{base}.{key}"), message));
        aside.push(key);
    }
    found
}

/// The line of a field path such as `spec.metrics[1].query` in a template's text.
pub fn line_of(text: &str, path: &str) -> Option<u64> {
    Locator::new(text).line_of(path)
}

fn serde_problem(e: &serde_saphyr::Error, text: &str, origin: &str) -> Problem {
    let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
    let message = e.without_snippet().to_string();
    // serde-saphyr prefixes the position; keep only the message after it.
    let message = strip_position(&message).trim().to_string();
    // A missing field is reported where its parent ends, so the key on that line is not it.
    let field = if message.starts_with("missing field") {
        None
    } else {
        line.and_then(|l| field_at_line(text, l))
    };
    Problem {
        file: origin.to_string(),
        line,
        field,
        message,
    }
}

/// Removes the position serde-saphyr adds ("... at line 9, column 18"), since the problem
/// already names the line.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at)
            if message[at + 9..].chars().all(|c| {
                c.is_ascii_digit() || matches!(c, ',' | ' ' | 'c' | 'o' | 'l' | 'u' | 'm' | 'n')
            }) =>
        {
            &message[..at]
        }
        _ => message,
    }
}

/// The YAML key written on a line, as a hint to the field in error (`tolerance` in
/// `  tolerance: 10x`).
fn field_at_line(text: &str, line: u64) -> Option<String> {
    let source = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let trimmed = source.trim_start().trim_start_matches("- ");
    let (key, _) = trimmed.split_once(':')?;
    let key = key.trim();
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    .then(|| key.to_string())
}

/// The value span of every key of a mapping.
type Fields = BTreeMap<String, Spanned<IgnoredAny>>;

/// Where each field of a template stands in its text.
#[derive(Debug, Default, Deserialize)]
struct Locator {
    #[serde(default)]
    metadata: Option<Spanned<Fields>>,
    #[serde(default)]
    spec: Option<Spanned<LocSpec>>,
    #[serde(default, rename = "apiVersion")]
    api_version: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    kind: Option<Spanned<IgnoredAny>>,
}

#[derive(Debug, Default, Deserialize)]
struct LocSpec {
    #[serde(default)]
    args: Option<Spanned<Vec<Spanned<Fields>>>>,
    #[serde(default)]
    metrics: Option<Spanned<Vec<Spanned<Fields>>>>,
    #[serde(default)]
    scoring: Option<Spanned<Fields>>,
    #[serde(default)]
    offset: Option<Spanned<IgnoredAny>>,
}

impl Locator {
    fn new(text: &str) -> Self {
        serde_saphyr::from_str(text).unwrap_or_default()
    }

    /// The line of a path like `spec.metrics[1].query`, or of its nearest known parent.
    fn line_of(&self, path: &str) -> Option<u64> {
        let top_line = |s: &Option<Spanned<IgnoredAny>>| s.as_ref().map(|s| s.referenced.line());
        let field_line = |fields: &Fields, key: &str| fields.get(key).map(|s| s.referenced.line());
        let mut parts = path.split('.');
        let head = parts.next()?;
        let line = match head {
            "apiVersion" => top_line(&self.api_version),
            "kind" => top_line(&self.kind),
            "metadata" => self.metadata.as_ref().map(|m| {
                parts
                    .next()
                    .and_then(|k| field_line(&m.value, k))
                    .unwrap_or(m.referenced.line())
            }),
            "spec" => {
                let spec = self.spec.as_ref()?;
                let Some(second) = parts.next() else {
                    return Some(spec.referenced.line());
                };
                let (name, index) = split_index(second);
                let rest = parts.next();
                let list = match name {
                    "offset" => {
                        return Some(
                            top_line(&spec.value.offset).unwrap_or(spec.referenced.line()),
                        );
                    }
                    "args" => spec.value.args.as_ref(),
                    "metrics" => spec.value.metrics.as_ref(),
                    "scoring" => {
                        return spec.value.scoring.as_ref().map(|s| {
                            rest.and_then(|k| field_line(&s.value, k))
                                .unwrap_or(s.referenced.line())
                        });
                    }
                    _ => None,
                };
                match (list, index) {
                    (Some(list), Some(i)) => list.value.get(i).map(|item| {
                        rest.and_then(|k| field_line(&item.value, k))
                            .unwrap_or(item.referenced.line())
                    }),
                    (Some(list), None) => Some(list.referenced.line()),
                    (None, _) => Some(spec.referenced.line()),
                }
            }
            _ => None,
        };
        line.filter(|l| *l > 0)
    }
}

fn split_index(segment: &str) -> (&str, Option<usize>) {
    match segment.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
        None => (segment, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: http-red}
spec:
  args:
    - name: job
  metrics:
    - name: error-rate
      type: ratio
      errors: sum(increase(http_requests_total{job="{{ args.job }}", code=~"5..", {{ selector }}}[{{ interval }}]))
      total: sum(increase(http_requests_total{job="{{ args.job }}", {{ selector }}}[{{ interval }}]))
      tolerance: 10%
      critical: true
    - name: latency
      type: histogram
      query: sum by (le) (increase(x_bucket{ {{ selector }} }[{{ interval }}]))
"#;

    #[test]
    fn parses_a_good_template() {
        let t = parse(GOOD, "t.yaml").unwrap();
        assert_eq!(t.metadata.name, "http-red");
        assert_eq!(t.spec.metrics.len(), 2);
        assert!((t.spec.metrics[0].tolerance.0 - 0.1).abs() < 1e-12);
    }

    #[test]
    fn the_old_and_argos_kind_are_named_as_such() {
        let old = GOOD.replace("kind: ReleaseAnalysis", "kind: AnalysisTemplate");
        let err = parse(&old, "t.yaml").unwrap_err();
        assert_eq!(err.0[0].line, Some(2), "{err}");
        assert!(err.to_string().contains("vigil's old name"), "{err}");
        assert!(err.to_string().contains("kind: ReleaseAnalysis"), "{err}");
        let argo = old.replace("vigil.dev/v1alpha1", "argoproj.io/v1alpha1");
        let err = parse(&argo, "t.yaml").unwrap_err();
        assert!(err.to_string().contains("Argo Rollouts' kind"), "{err}");
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = GOOD.replace("      critical: true", "      critcal: true");
        let err = parse(&text, "t.yaml").unwrap_err();
        let p = &err.0[0];
        assert_eq!(p.line, Some(13), "{err}");
        assert!(p.message.contains("critcal"), "{err}");
        assert!(
            err.to_string()
                .starts_with("t.yaml:13: spec.metrics[0].critcal: "),
            "{err}"
        );
    }

    #[test]
    fn every_mistake_is_listed_at_once_each_with_its_line() {
        let text = GOOD
            .replace("      critical: true", "      critcal: true")
            .replace("tolerance: 10%", "tolerance: ten percent")
            .replace("type: histogram", "type: histo");
        let err = parse(&text, "t.yaml").unwrap_err();
        let listed: Vec<(Option<u64>, Option<&str>)> =
            err.0.iter().map(|p| (p.line, p.field.as_deref())).collect();
        assert_eq!(
            listed,
            [
                (Some(12), Some("spec.metrics[0].tolerance")),
                (Some(13), Some("spec.metrics[0].critcal")),
                (Some(15), Some("spec.metrics[1].type")),
            ],
            "{err}"
        );
        // A field set aside for a bad value is not also reported missing.
        assert!(!err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn bad_percentage_names_line_and_field() {
        let text = GOOD.replace("tolerance: 10%", "tolerance: ten percent");
        let err = parse(&text, "t.yaml").unwrap_err();
        assert_eq!(err.0[0].line, Some(12), "{err}");
        assert_eq!(
            err.0[0].field.as_deref(),
            Some("spec.metrics[0].tolerance"),
            "{err}"
        );
        assert!(err.0[0].message.contains("ten percent"), "{err}");
        assert!(!err.0[0].message.contains("at line"), "{err}");
    }

    #[test]
    fn offset_is_read_and_a_bad_one_named_with_its_line() {
        let with = |offset: &str| GOOD.replace("spec:\n", &format!("spec:\n  offset: {offset}\n"));
        let t = parse(&with("1w"), "t.yaml").unwrap();
        assert_eq!(t.spec.offset.map(|o| o.to_string()), Some("1w".into()));
        assert_eq!(parse(GOOD, "t.yaml").unwrap().spec.offset, None);
        for bad in ["0s", "yesterday"] {
            let err = parse(&with(bad), "t.yaml").unwrap_err();
            assert_eq!(err.0.len(), 1, "{err}");
            assert_eq!(err.0[0].line, Some(5), "{err}");
            assert_eq!(err.0[0].field.as_deref(), Some("spec.offset"), "{err}");
            assert!(err.0[0].message.contains(bad), "{err}");
        }
        // A zero offset built in code, which no text can give, is refused by validation.
        let mut t = parse(GOOD, "t.yaml").unwrap();
        t.spec.offset = Some(super::super::units::PromDuration::from_millis(0));
        let issues = validate(&t);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].path, "spec.offset");
        assert!(issues[0].message.contains("longer than zero"), "{issues:?}");
    }

    #[test]
    fn validation_problems_point_at_the_field_line() {
        let text = GOOD.replace(
            "{{ args.job }}\", {{ selector }}}[{{ interval }}]))\n",
            "{{ args.jobb }}\", {{ selector }}}[{{ interval }}]))\n",
        );
        let err = parse(&text, "t.yaml").unwrap_err();
        let p = &err.0[0];
        assert_eq!(p.line, Some(11), "{err}");
        assert_eq!(p.field.as_deref(), Some("spec.metrics[0].total"));
        assert!(p.message.contains("jobb"), "{err}");

        let text = GOOD.replace("{{ interval }}]))\n", "{{ intervl }}]))\n");
        let err = parse(&text, "t.yaml").unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|p| p.line == Some(16) && p.message.contains("intervl")),
            "{err}"
        );
    }
}
