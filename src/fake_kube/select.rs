//! Label and field selectors, as the API server parses them from `labelSelector` and
//! `fieldSelector` query parameters.

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq)]
enum Label {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// One requirement of a field selector: a dotted path into the object, and the value it must
/// (or must not) have.
#[derive(Clone, Debug, PartialEq)]
struct Field {
    path: String,
    value: String,
    equal: bool,
}

/// A parsed pair of label and field selectors; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    labels: Vec<Label>,
    fields: Vec<Field>,
}

impl Selector {
    /// Parses the query parameters' selectors; the error is a message for a 400 Bad Request.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        fn terms<T>(
            text: Option<&str>,
            parse: fn(&str) -> Result<T, String>,
        ) -> Result<Vec<T>, String> {
            text.map_or(Ok(Vec::new()), |t| {
                split_terms(t).into_iter().map(parse).collect()
            })
        }
        let labels = terms(labels, parse_label)?;
        let fields = terms(fields, parse_field)?;
        Ok(Self { labels, fields })
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|req| match req {
            Label::Equals(k, v) => label(k) == Some(v.as_str()),
            Label::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Label::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Label::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Label::Exists(k) => label(k).is_some(),
            Label::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|f| {
                let actual = f
                    .path
                    .split('.')
                    .try_fold(object, |v, part| v.get(part))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default();
                (actual == f.value) == f.equal
            })
    }
}

/// Splits on commas that are not inside parentheses, dropping empty terms.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(text[start..].trim());
    terms.retain(|t| !t.is_empty());
    terms
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn parse_label(term: &str) -> Result<Label, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Label::NotExists(valid_key(key.trim())?));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, set)) = term.split_once(op) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("invalid label selector term {term:?}"))?;
            let values = inner.split(',').map(|v| v.trim().to_string()).collect();
            let key = valid_key(key.trim())?;
            return Ok(if negated {
                Label::NotIn(key, values)
            } else {
                Label::In(key, values)
            });
        }
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Label::NotEquals(
            valid_key(key.trim())?,
            value.trim().into(),
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Label::Equals(valid_key(key.trim())?, value.trim().into()));
    }
    Ok(Label::Exists(valid_key(term)?))
}

fn parse_field(term: &str) -> Result<Field, String> {
    let (path, value, equal) = if let Some((p, v)) = term.split_once("!=") {
        (p, v, false)
    } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        (p, v, true)
    } else {
        return Err(format!("invalid field selector term {term:?}"));
    };
    Ok(Field {
        path: path.trim().to_string(),
        value: value.trim().to_string(),
        equal,
    })
}
