//! Reads a template from YAML text, with file, line and field in every error.
//!
//! Parsing happens twice over the same text: once into the template model (serde reports
//! unknown fields and bad values with their position), and once into a skeleton of spans
//! that maps a field path such as `spec.metrics[1].query` to its line, so the checks in
//! [`super::validate`] can point at the line as well. When the first parse fails, each
//! metric, argument, the scoring and the top level is read again on its own, setting aside
//! each field in error, and what remains is validated too ([`from_value`]), so that every
//! mistake is reported at once rather than the first. Only a text that is not YAML stops
//! at its first problem, and says so.

use super::ReleaseAnalysis;
use super::validate::{Issue, validate};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
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
    let template: ReleaseAnalysis = serde_saphyr::from_str(text)
        .map_err(|e| Problems(problems_after_serde(&e, text, origin)))?;
    let issues = validate(&template);
    if issues.is_empty() {
        return Ok(template);
    }
    let locator = Locator::new(text);
    Err(Problems(located(issues, &locator, origin)))
}

/// Issues as problems of `origin`, each at its field's line.
fn located(issues: Vec<Issue>, locator: &Locator, origin: &str) -> Vec<Problem> {
    issues
        .into_iter()
        .map(|Issue { path, message }| Problem {
            file: origin.to_string(),
            line: locator.line_of(&path),
            field: Some(path),
            message,
        })
        .collect()
}

/// Every problem of a text that does not read as a template: what each part has wrong
/// (see [`from_value`]), and the problem serde stopped at, unless one of those is it. A
/// text that is not even YAML gives that one problem, which then says that nothing after
/// it was checked.
fn problems_after_serde(e: &serde_saphyr::Error, text: &str, origin: &str) -> Vec<Problem> {
    let first = serde_problem(e, text, origin);
    let doc = match serde_saphyr::from_str::<Value>(text) {
        Ok(doc) => doc,
        Err(not_yaml) => {
            // Not YAML at all: its own error says where and why (the template's types
            // would only say what was expected there).
            let mut problem = serde_problem(&not_yaml, text, origin);
            problem.message = format!(
                "not valid YAML: {}; nothing after this point was checked: fix it and run \
                 again to see the rest",
                problem.message
            );
            return vec![problem];
        }
    };
    let locator = Locator::new(text);
    let mut problems = match from_value(&doc) {
        Ok(_) => Vec::new(),
        Err(issues) => located(issues, &locator, origin),
    };
    if !problems
        .iter()
        .any(|p| p.line.is_some() && p.line == first.line)
    {
        problems.push(first);
    }
    problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
    problems
}

/// Reads a template from a document already parsed (a YAML text's tree, or an object read
/// from a cluster) and validates it, listing every problem at once: each metric, argument,
/// the scoring and the top-level fields are read on their own, a field in error set aside
/// to find the next; then the parts that read are validated together (names used twice,
/// queries, fields that do not apply), so that one run lists serde's problems and the
/// checks' alike. A part that cannot be read even without its bad fields (a metric without
/// a `type`) is left out of the checks that span parts, such as duplicate names.
pub fn from_value(doc: &Value) -> Result<ReleaseAnalysis, Vec<Issue>> {
    match serde_json::from_value::<ReleaseAnalysis>(doc.clone()) {
        Ok(template) => {
            let issues = validate(&template);
            if issues.is_empty() {
                Ok(template)
            } else {
                Err(issues)
            }
        }
        Err(e) => {
            let found = salvage(doc);
            Err(if found.is_empty() {
                vec![Issue {
                    path: String::new(),
                    message: e.to_string(),
                }]
            } else {
                found
            })
        }
    }
}

/// The problems of a document that does not deserialize as a template (see [`from_value`]).
fn salvage(doc: &Value) -> Vec<Issue> {
    let mut found: Vec<Issue> = Vec::new();
    // A problem at a field that holds one already reported (the spec "missing" a metric
    // list whose items had problems) says nothing new.
    let report = |found: &mut Vec<Issue>, problems: Vec<(String, String)>| {
        for (path, message) in problems {
            if !found.iter().any(|f| is_under(&f.path, &path)) {
                found.push(Issue { path, message });
            }
        }
    };
    let Some(top) = doc.as_object() else {
        return found;
    };
    let mut top = top.clone();
    // Which of the original metrics and arguments the cleaned template holds, in order.
    let mut kept: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut dropped_args = false;
    if let Some(spec) = top.get_mut("spec").and_then(Value::as_object_mut) {
        for list in ["metrics", "args"] {
            let Some(items) = spec.get(list).and_then(Value::as_array) else {
                continue;
            };
            let mut indices = Vec::new();
            let mut clean = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let base = format!("spec.{list}[{i}]");
                let (problems, cleaned) = match list {
                    "metrics" => part_problems::<super::MetricSpec>(item, &base),
                    _ => part_problems::<super::ArgSpec>(item, &base),
                };
                report(&mut found, problems);
                match cleaned {
                    Some(value) => {
                        indices.push(i);
                        clean.push(value);
                    }
                    None => dropped_args |= list == "args",
                }
            }
            spec.insert(list.into(), Value::Array(clean));
            kept.push((list, indices));
        }
        if let Some(offset) = spec.get("offset")
            && let Err(e) = super::units::PromDuration::deserialize(offset)
        {
            report(&mut found, vec![("spec.offset".into(), e.to_string())]);
            spec.remove("offset");
        }
        if let Some(scoring) = spec.get("scoring").filter(|s| s.is_object()).cloned() {
            let (problems, cleaned) = part_problems::<super::Scoring>(&scoring, "spec.scoring");
            report(&mut found, problems);
            match cleaned {
                Some(value) => spec.insert("scoring".into(), value),
                None => spec.remove("scoring"),
            };
        }
        // What is left at the spec's own level: unknown fields, a list that is no list.
        let (problems, cleaned) =
            part_problems::<super::TemplateSpec>(&Value::Object(spec.clone()), "spec");
        report(&mut found, problems);
        if let Some(Value::Object(cleaned)) = cleaned {
            *spec = cleaned;
        }
    }
    // The top level: apiVersion, kind, metadata and unknown fields.
    let (problems, cleaned) = part_problems::<ReleaseAnalysis>(&Value::Object(top), "");
    report(&mut found, problems);
    let Some(template) = cleaned.and_then(|c| serde_json::from_value::<ReleaseAnalysis>(c).ok())
    else {
        return found;
    };
    let checked: Vec<Issue> = validate(&template)
        .into_iter()
        .map(|mut issue| {
            for (list, indices) in &kept {
                issue.path = renumber(&issue.path, list, indices);
            }
            issue
        })
        // A field already reported is not reported again (a bad value set aside is not
        // also "required"), and without a declared argument its uses are not wrong.
        .filter(|issue| {
            let reported = found.iter().any(|f| is_under(&issue.path, &f.path));
            let undeclared =
                dropped_args && issue.message.contains("but spec.args declares no argument");
            !reported && !undeclared
        })
        .collect();
    found.extend(checked);
    found
}

/// Whether the field at `path` is the one at `parent` or inside it.
fn is_under(path: &str, parent: &str) -> bool {
    parent.is_empty()
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `spec.{list}[j]...` with `j` replaced by `indices[j]`, the item's place in the text.
fn renumber(path: &str, list: &str, indices: &[usize]) -> String {
    let prefix = format!("spec.{list}[");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return path.to_string();
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return path.to_string();
    };
    match index.parse::<usize>().ok().and_then(|j| indices.get(j)) {
        Some(original) => format!("{prefix}{original}]{tail}"),
        None => path.to_string(),
    }
}

/// `base.key`, or `key` at the top.
fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// Every (field path, message) deserializing `value` as a `T` meets, setting aside each
/// field in error to find the next; a field set aside is not then reported missing. Also
/// the value without the fields set aside, if that reads as a `T`.
fn part_problems<T: serde::de::DeserializeOwned>(
    value: &Value,
    base: &str,
) -> (Vec<(String, String)>, Option<Value>) {
    let mut value = value.clone();
    let mut aside: Vec<String> = Vec::new();
    let mut found = Vec::new();
    // At most one problem per field, and a bound for safety.
    for _ in 0..64 {
        let Err(e) = serde_path_to_error::deserialize::<_, T>(value.clone()) else {
            return (found, Some(value));
        };
        let message = e.inner().to_string();
        let path: Vec<String> = e
            .path()
            .iter()
            .map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => format!(".{key}"),
                serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
                serde_path_to_error::Segment::Enum { variant } => format!(".{variant}"),
                serde_path_to_error::Segment::Unknown => ".?".to_string(),
            })
            .collect();
        let at = join(base, path.concat().trim_start_matches('.'));
        // An unknown or missing field's error is at the mapping that holds it, a bad
        // value's at the value; either way the first key of the path is set aside.
        let key = match e.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
            _ => {
                let unknown = message
                    .strip_prefix("unknown field `")
                    .and_then(|m| m.split('`').next());
                let missing = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next());
                match (unknown, missing) {
                    (Some(k), _) => {
                        let k = k.to_string();
                        found.push((join(base, &k), message.clone()));
                        k
                    }
                    (None, Some(k)) => {
                        if !aside.iter().any(|a| a == k) {
                            found.push((join(base, k), message.clone()));
                        }
                        break;
                    }
                    (None, None) => {
                        found.push((base.to_string(), message));
                        break;
                    }
                }
            }
        };
        let Some(object) = value.as_object_mut() else {
            break;
        };
        if object.remove(&key).is_none() {
            break;
        }
        if found.last().is_none_or(|(p, _)| *p != join(base, &key)) {
            found.push((at, message));
        }
        aside.push(key);
    }
    (found, None)
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
    /// The line of each key written at the top level, the unknown ones included.
    #[serde(skip)]
    top: BTreeMap<String, u64>,
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
        let mut locator: Self = serde_saphyr::from_str(text).unwrap_or_default();
        for (number, line) in (1..).zip(text.lines()) {
            if let Some((key, _)) = line.split_once(':')
                && !key.is_empty()
                && !key.starts_with([' ', '\t', '#', '-'])
            {
                locator.top.entry(key.trim().to_string()).or_insert(number);
            }
        }
        locator
    }

    /// The line of a path like `spec.metrics[1].query`, or of its nearest known parent.
    fn line_of(&self, path: &str) -> Option<u64> {
        let top_line = |s: &Option<Spanned<IgnoredAny>>| s.as_ref().map(|s| s.referenced.line());
        let field_line = |fields: &Fields, key: &str| fields.get(key).map(|s| s.referenced.line());
        // A list field's item (`quantiles[1]`) is written on the field's lines.
        let mut parts = path.split('.').enumerate().map(|(i, part)| {
            if i >= 2 || (i == 1 && !path.starts_with("spec.")) {
                split_index(part).0
            } else {
                part
            }
        });
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
            other => self.top.get(other).copied(),
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

    /// Each problem's line and field.
    fn listed(err: &Problems) -> Vec<(Option<u64>, Option<&str>)> {
        err.0.iter().map(|p| (p.line, p.field.as_deref())).collect()
    }

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
        let listed = listed(&err);
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

    #[test]
    fn mistakes_serde_finds_and_the_checks_find_come_out_together() {
        // An unknown field and a bad percentage (serde), a name used twice and a bad
        // placeholder (the checks): every one, each with its line and field.
        let text = GOOD
            .replace("      critical: true", "      critcal: true")
            .replace("tolerance: 10%", "tolerance: ten percent")
            .replace("- name: latency", "- name: error-rate")
            .replace(
                "x_bucket{ {{ selector }} }[{{ interval }}]",
                "x_bucket{ {{ selector }} }[{{ intervl }}]",
            );
        let err = parse(&text, "t.yaml").unwrap_err();
        let listed = listed(&err);
        assert_eq!(
            listed,
            [
                (Some(12), Some("spec.metrics[0].tolerance")),
                (Some(13), Some("spec.metrics[0].critcal")),
                (Some(14), Some("spec.metrics[1].name")),
                (Some(16), Some("spec.metrics[1].query")),
            ],
            "{err}"
        );
        assert!(err.0[2].message.contains("defined twice"), "{err}");
        assert!(err.0[3].message.contains("intervl"), "{err}");
    }

    #[test]
    fn a_metric_that_cannot_be_read_keeps_the_others_at_their_places() {
        // The first metric has no type; the second's problem is still named as the second's.
        let text = GOOD
            .replace("      type: ratio\n", "")
            .replace("{{ interval }}]))\n", "{{ intervl }}]))\n");
        let err = parse(&text, "t.yaml").unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|p| p.field.as_deref() == Some("spec.metrics[0].type")
                    && p.message.contains("missing field")),
            "{err}"
        );
        assert!(
            err.0.iter().any(|p| p.line == Some(15)
                && p.field.as_deref() == Some("spec.metrics[1].query")
                && p.message.contains("intervl")),
            "{err}"
        );
    }

    #[test]
    fn top_level_mistakes_are_listed_with_the_spec_ones() {
        let text = GOOD
            .replace(
                "kind: ReleaseAnalysis\n",
                "kind: ReleaseAnalysis\ncolour: blue\n",
            )
            .replace("tolerance: 10%", "tolerance: lots");
        let err = parse(&text, "t.yaml").unwrap_err();
        let listed = listed(&err);
        assert_eq!(
            listed,
            [
                (Some(3), Some("colour")),
                (Some(13), Some("spec.metrics[0].tolerance")),
            ],
            "{err}"
        );
    }

    #[test]
    fn text_that_is_not_yaml_stops_there_and_says_so() {
        let text = GOOD.replace("metadata: {name: http-red}", "metadata: {name: [http-red}");
        let err = parse(&text, "t.yaml").unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.0[0].message.starts_with("not valid YAML: "), "{err}");
        assert!(
            err.0[0]
                .message
                .contains("nothing after this point was checked"),
            "{err}"
        );
        assert!(err.0[0].line.is_some(), "{err}");
    }

    #[test]
    fn a_stored_object_gets_every_problem_by_field() {
        // As the controller reads a ReleaseAnalysis from the cluster: no text, no lines.
        let doc = serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "ReleaseAnalysis",
            "metadata": {"name": "t"},
            "spec": {"metrics": [
                {"name": "a", "type": "series", "query": "up{ {{ selector }} }", "tolerance": "x%"},
                {"name": "a", "type": "series", "query": "up{ {{ selectr }} }", "colour": 1}
            ]}
        });
        let issues = from_value(&doc).unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.metrics[0].tolerance",
                "spec.metrics[1].colour",
                "spec.metrics[1].name",
                "spec.metrics[1].query",
            ],
            "{issues:?}"
        );
        let good: Value = serde_saphyr::from_str(GOOD).unwrap();
        assert_eq!(from_value(&good).unwrap(), parse(GOOD, "t.yaml").unwrap());
    }
}
