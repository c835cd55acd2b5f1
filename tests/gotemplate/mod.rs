//! A renderer for the subset of Helm's Go templates that `deploy/helm/vigil` uses, so the
//! chart can be rendered and checked without `helm` (which is not installable here).
//!
//! Supported, with Go's semantics: text and `{{ ... }}` actions with `{{-` / `-}}`
//! whitespace trimming; `{{/* comments */}}`; `{{ if PIPELINE }}`, `{{ else }}`, `{{ end }}`;
//! fields `.Values.a.b`, `.Release.Name|Namespace|Service`, `.Chart.Name|Version|AppVersion`;
//! string and integer literals; parentheses; pipes; the functions `quote`, `toYaml`,
//! `nindent`, `indent`, `required`, `or`, `and`, `not`, `gt`, `int`.
//! Anything else is an error naming what is unsupported, so the chart cannot silently grow
//! beyond what this checks. Unlike Helm, printing a missing value is an error too.
//!
//! Like Helm (sigs.k8s.io/yaml), numbers from values files are floats: `gt` on a value needs
//! `int`, exactly as in Helm, where `gt 2.0 1` fails with "incompatible types".

use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::Path;

/// A template value.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A map or a list from values.
    Tree(Value),
}

impl V {
    fn from_json(v: &Value) -> V {
        match v {
            Value::Null => V::Null,
            Value::Bool(b) => V::Bool(*b),
            // Helm reads values through JSON: every number is a float64.
            Value::Number(n) => V::Float(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => V::Str(s.clone()),
            Value::Array(_) | Value::Object(_) => V::Tree(v.clone()),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(*b),
            V::Int(i) => Value::from(*i),
            V::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::from(*f as i64),
            V::Float(f) => Value::from(*f),
            V::Str(s) => Value::String(s.clone()),
            V::Tree(t) => t.clone(),
        }
    }

    /// Go template truthiness: false, 0, nil and empty strings, maps and lists are false.
    fn truthy(&self) -> bool {
        match self {
            V::Null => false,
            V::Bool(b) => *b,
            V::Int(i) => *i != 0,
            V::Float(f) => *f != 0.0,
            V::Str(s) => !s.is_empty(),
            V::Tree(Value::Array(a)) => !a.is_empty(),
            V::Tree(Value::Object(o)) => !o.is_empty(),
            V::Tree(_) => true,
        }
    }

    /// As Go's `fmt.Sprint` prints it.
    fn print(&self) -> Result<String, String> {
        Ok(match self {
            V::Null => return Err("printing a missing or null value".into()),
            V::Bool(b) => b.to_string(),
            V::Int(i) => i.to_string(),
            V::Float(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", *f as i64),
            V::Float(f) => f.to_string(),
            V::Str(s) => s.clone(),
            V::Tree(_) => return Err("printing a map or list: use toYaml".into()),
        })
    }
}

#[derive(Debug)]
enum Arg {
    Field(Vec<String>),
    Str(String),
    Int(i64),
    Bool(bool),
    Func(String),
    Paren(Pipeline),
}

type Command = Vec<Arg>;
type Pipeline = Vec<Command>;

#[derive(Debug)]
enum Node {
    Text(String),
    Print(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
}

enum Action {
    Print(Pipeline),
    If(Pipeline),
    Else,
    End,
}

/// Text, or an action with its line.
enum Piece {
    Text(String),
    Action(Action, usize),
}

/// Splits a template into text and actions, applying the trim markers.
fn lex(src: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let (text, action) = match rest.find("{{") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let mut text = if trim_next { text.trim_start() } else { text };
        let Some(after) = action else {
            out.push(Piece::Text(text.to_string()));
            break;
        };
        let close = after
            .find("}}")
            .ok_or_else(|| "an action `{{` is never closed".to_string())?;
        let mut inner = &after[..close];
        if let Some(s) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = s;
        } else if inner.starts_with('-') && inner[1..].starts_with(char::is_whitespace) {
            text = text.trim_end();
            inner = &inner[1..];
        }
        trim_next = false;
        if let Some(s) = inner.strip_suffix(" -") {
            trim_next = true;
            inner = s;
        } else if inner.ends_with('-') && inner[..inner.len() - 1].ends_with(char::is_whitespace) {
            trim_next = true;
            inner = &inner[..inner.len() - 1];
        }
        out.push(Piece::Text(text.to_string()));
        let offset = src.len() - after.len();
        let line = src[..offset].matches('\n').count() + 1;
        let inner = inner.trim();
        if inner.starts_with("/*") && inner.ends_with("*/") {
            // a comment
        } else {
            let action = parse_action(inner).map_err(|e| format!("line {line}: {e}"))?;
            out.push(Piece::Action(action, line));
        }
        rest = &after[close + 2..];
    }
    Ok(out)
}

fn parse_action(s: &str) -> Result<Action, String> {
    match s.split_whitespace().next() {
        Some("end") if s == "end" => Ok(Action::End),
        Some("else") if s == "else" => Ok(Action::Else),
        Some("if") => Ok(Action::If(parse_pipeline(&tokens(&s[2..])?)?)),
        Some(kw @ ("range" | "with" | "define" | "include" | "template" | "block")) => {
            Err(format!(
                "`{kw}` is not supported by this renderer; keep the chart to if/else/end and fields"
            ))
        }
        _ => Ok(Action::Print(parse_pipeline(&tokens(s)?)?)),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Pipe,
    Word(String),
    Str(String),
}

fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '|' => {
                chars.next();
                out.push(Tok::Pipe);
            }
            '"' => {
                chars.next();
                let mut lit = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => lit.push('\n'),
                            Some('t') => lit.push('\t'),
                            Some(c @ ('"' | '\\')) => lit.push(c),
                            other => return Err(format!("unsupported escape \\{other:?}")),
                        },
                        Some(c) => lit.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Tok::Str(lit));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()|\"".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Tok::Word(word));
            }
        }
    }
    Ok(out)
}

fn parse_pipeline(toks: &[Tok]) -> Result<Pipeline, String> {
    let mut pos = 0;
    let p = pipeline(toks, &mut pos)?;
    if pos != toks.len() {
        return Err(format!("unexpected {:?}", toks[pos]));
    }
    Ok(p)
}

fn pipeline(toks: &[Tok], pos: &mut usize) -> Result<Pipeline, String> {
    let mut cmds = vec![Vec::new()];
    while let Some(t) = toks.get(*pos) {
        *pos += 1;
        let arg = match t {
            Tok::Close => {
                *pos -= 1;
                break;
            }
            Tok::Pipe => {
                cmds.push(Vec::new());
                continue;
            }
            Tok::Open => {
                let inner = pipeline(toks, pos)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err("missing `)`".into());
                }
                *pos += 1;
                Arg::Paren(inner)
            }
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Word(w) if w.starts_with('.') => {
                Arg::Field(w[1..].split('.').map(str::to_string).collect())
            }
            Tok::Word(w) if w == "true" || w == "false" => Arg::Bool(w == "true"),
            Tok::Word(w) if w.parse::<i64>().is_ok() => Arg::Int(w.parse().unwrap_or_default()),
            Tok::Word(w) if w.chars().all(|c| c.is_ascii_alphanumeric()) => Arg::Func(w.clone()),
            Tok::Word(w) => return Err(format!("unsupported token `{w}`")),
        };
        if let Some(last) = cmds.last_mut() {
            last.push(arg);
        }
    }
    if cmds.iter().any(Vec::is_empty) {
        return Err("empty command in pipeline".into());
    }
    Ok(cmds)
}

fn build(items: Vec<Piece>) -> Result<Vec<Node>, String> {
    // A stack of open ifs: (condition, then-branch, else-branch, in-else, line).
    type Open = (Pipeline, Vec<Node>, Vec<Node>, bool, usize);
    let mut stack: Vec<Open> = Vec::new();
    let mut top: Vec<Node> = Vec::new();
    fn current<'a>(top: &'a mut Vec<Node>, stack: &'a mut [Open]) -> &'a mut Vec<Node> {
        match stack.last_mut() {
            Some((_, _, els, true, _)) => els,
            Some((_, then, _, false, _)) => then,
            None => top,
        }
    }
    for item in items {
        match item {
            Piece::Text(text) => current(&mut top, &mut stack).push(Node::Text(text)),
            Piece::Action(Action::Print(p), _) => {
                current(&mut top, &mut stack).push(Node::Print(p))
            }
            Piece::Action(Action::If(p), line) => {
                stack.push((p, Vec::new(), Vec::new(), false, line))
            }
            Piece::Action(Action::Else, line) => match stack.last_mut() {
                Some(open) if !open.3 => open.3 = true,
                _ => return Err(format!("line {line}: `else` without `if`")),
            },
            Piece::Action(Action::End, line) => {
                let (cond, then, els, _, _) = stack
                    .pop()
                    .ok_or_else(|| format!("line {line}: `end` without `if`"))?;
                current(&mut top, &mut stack).push(Node::If(cond, then, els));
            }
        }
    }
    if let Some((_, _, _, _, line)) = stack.last() {
        return Err(format!("line {line}: `if` without `end`"));
    }
    Ok(top)
}

fn lookup(root: &Value, path: &[String]) -> V {
    let mut v = root;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return V::Null,
        }
    }
    V::from_json(v)
}

fn eval_pipeline(root: &Value, p: &Pipeline) -> Result<V, String> {
    let mut prev: Option<V> = None;
    for cmd in p {
        prev = Some(eval_command(root, cmd, prev.take())?);
    }
    prev.ok_or_else(|| "empty pipeline".into())
}

fn eval_arg(root: &Value, arg: &Arg) -> Result<V, String> {
    match arg {
        Arg::Field(path) => Ok(lookup(root, path)),
        Arg::Str(s) => Ok(V::Str(s.clone())),
        Arg::Int(i) => Ok(V::Int(*i)),
        Arg::Bool(b) => Ok(V::Bool(*b)),
        Arg::Paren(p) => eval_pipeline(root, p),
        Arg::Func(f) => call(f, Vec::new()),
    }
}

fn eval_command(root: &Value, cmd: &Command, piped: Option<V>) -> Result<V, String> {
    match &cmd[..] {
        [Arg::Func(f), args @ ..] => {
            let mut vals = args
                .iter()
                .map(|a| eval_arg(root, a))
                .collect::<Result<Vec<_>, _>>()?;
            vals.extend(piped);
            call(f, vals)
        }
        [single] if piped.is_none() => eval_arg(root, single),
        _ => Err("only a function can take arguments or a piped value".into()),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn to_yaml(v: &V) -> Result<String, String> {
    let text = serde_saphyr::to_string(&v.to_json()).map_err(|e| format!("toYaml: {e}"))?;
    Ok(text.trim_end_matches('\n').to_string())
}

fn indent(n: &V, s: &V) -> Result<String, String> {
    let n = match n {
        V::Int(n) if *n >= 0 => *n as usize,
        other => return Err(format!("indent width must be an integer, not {other:?}")),
    };
    let pad = " ".repeat(n);
    Ok(format!(
        "{pad}{}",
        s.print()?.replace('\n', &format!("\n{pad}"))
    ))
}

fn call(name: &str, args: Vec<V>) -> Result<V, String> {
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{name} takes {n} arguments, got {}", args.len()))
        }
    };
    match name {
        "quote" => Ok(V::Str(
            args.iter()
                .filter(|a| **a != V::Null)
                .map(|a| a.print().map(|s| quote(&s)))
                .collect::<Result<Vec<_>, _>>()?
                .join(" "),
        )),
        "toYaml" => {
            arity(1)?;
            Ok(V::Str(to_yaml(&args[0])?))
        }
        "indent" => {
            arity(2)?;
            Ok(V::Str(indent(&args[0], &args[1])?))
        }
        "nindent" => {
            arity(2)?;
            Ok(V::Str(format!("\n{}", indent(&args[0], &args[1])?)))
        }
        "required" => {
            arity(2)?;
            match &args[1] {
                V::Null => Err(format!("required: {}", args[0].print()?)),
                V::Str(s) if s.is_empty() => Err(format!("required: {}", args[0].print()?)),
                v => Ok(v.clone()),
            }
        }
        // Go's `or`/`and` return the deciding argument.
        "or" if !args.is_empty() => Ok(args
            .iter()
            .find(|a| a.truthy())
            .unwrap_or(&args[args.len() - 1])
            .clone()),
        "and" if !args.is_empty() => Ok(args
            .iter()
            .find(|a| !a.truthy())
            .unwrap_or(&args[args.len() - 1])
            .clone()),
        "not" => {
            arity(1)?;
            Ok(V::Bool(!args[0].truthy()))
        }
        "int" => {
            arity(1)?;
            match &args[0] {
                V::Int(i) => Ok(V::Int(*i)),
                V::Float(f) => Ok(V::Int(f.trunc() as i64)),
                V::Str(s) => Ok(V::Int(s.parse().unwrap_or(0))),
                V::Bool(b) => Ok(V::Int(i64::from(*b))),
                V::Null | V::Tree(_) => Ok(V::Int(0)),
            }
        }
        "gt" => {
            arity(2)?;
            match (&args[0], &args[1]) {
                (V::Int(a), V::Int(b)) => Ok(V::Bool(a > b)),
                (V::Float(a), V::Float(b)) => Ok(V::Bool(a > b)),
                (V::Str(a), V::Str(b)) => Ok(V::Bool(a > b)),
                (a, b) => Err(format!(
                    "gt: incompatible types for comparison ({a:?}, {b:?}); numbers from values \
                     are floats, use (int .Values.x)"
                )),
            }
        }
        other => Err(format!(
            "function `{other}` is not supported by this renderer"
        )),
    }
}

fn render_nodes(root: &Value, nodes: &[Node], out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print(p) => out.push_str(&eval_pipeline(root, p)?.print()?),
            Node::If(cond, then, els) => {
                let branch = if eval_pipeline(root, cond)?.truthy() {
                    then
                } else {
                    els
                };
                render_nodes(root, branch, out)?;
            }
        }
    }
    Ok(())
}

/// Renders one template with `root` (`{"Values": ..., "Release": ..., "Chart": ...}`).
pub fn render(template: &str, root: &Value) -> Result<String, String> {
    let nodes = build(lex(template)?)?;
    let mut out = String::new();
    render_nodes(root, &nodes, &mut out)?;
    Ok(out)
}

/// Where and how a chart is installed.
pub struct Release<'a> {
    /// The release name.
    pub name: &'a str,
    /// The release namespace.
    pub namespace: &'a str,
    /// `.Release.Service`: `Helm` under helm; what else applies the output otherwise.
    pub service: &'a str,
}

/// Helm's install order of the kinds this chart uses; other kinds go last, as in Helm.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
];

/// Merges `overrides` into `base`, as `helm --set`/`-f` do: maps merge, the rest replaces.
pub fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Reads a YAML file into JSON.
pub fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One rendered manifest.
pub struct Document {
    /// `<chart>/templates/<file>`, as `# Source:` names it.
    pub source: String,
    /// The document's kind.
    pub kind: String,
    /// Its YAML text, trimmed.
    pub text: String,
    /// Its content.
    pub value: Value,
}

/// Renders every template of the chart in `dir` with its values.yaml merged with
/// `overrides`, split into documents, empty ones dropped, in Helm's install order.
pub fn render_chart(
    dir: &Path,
    release: &Release,
    overrides: &Value,
) -> Result<Vec<Document>, String> {
    let chart = read_yaml(&dir.join("Chart.yaml"))?;
    let mut values = read_yaml(&dir.join("values.yaml"))?;
    merge(&mut values, overrides);
    let field = |k: &str| chart.get(k).cloned().unwrap_or(Value::Null);
    let chart_name = field("name");
    let mut root = Map::new();
    root.insert("Values".into(), values);
    root.insert(
        "Release".into(),
        serde_json::json!({
            "Name": release.name,
            "Namespace": release.namespace,
            "Service": release.service,
        }),
    );
    root.insert(
        "Chart".into(),
        serde_json::json!({
            "Name": chart_name,
            "Version": field("version"),
            "AppVersion": field("appVersion"),
        }),
    );
    let root = Value::Object(root);

    let templates = dir.join("templates");
    let mut files: Vec<_> = std::fs::read_dir(&templates)
        .map_err(|e| format!("{}: {e}", templates.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = format!(
            "{}/templates/{name}",
            chart_name.as_str().unwrap_or("chart")
        );
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{source}: {e}"))?;
        let rendered = render(&text, &root).map_err(|e| format!("{source}: {e}"))?;
        for doc in split_documents(&rendered) {
            let value: Value = serde_saphyr::from_str(&doc)
                .map_err(|e| format!("{source}: rendered YAML does not parse: {e}\n{doc}"))?;
            if value.is_null() {
                continue; // only comments
            }
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{source}: a document without kind:\n{doc}"))?
                .to_string();
            docs.push(Document {
                source: source.clone(),
                kind,
                text: doc,
                value,
            });
        }
    }
    let rank = |kind: &str| {
        KIND_ORDER
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(KIND_ORDER.len())
    };
    docs.sort_by_key(|d| rank(&d.kind));
    Ok(docs)
}

/// Splits a YAML stream at `---` lines; drops documents that are only whitespace.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.into_iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// The documents as one stream, as `helm template` prints them.
pub fn to_stream(docs: &[Document]) -> String {
    let mut out = String::new();
    for d in docs {
        let _ = write!(out, "---\n# Source: {}\n{}\n", d.source, d.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, values: Value) -> Result<String, String> {
        render(t, &json!({"Values": values, "Release": {"Name": "rel"}}))
    }

    #[test]
    fn fields_quote_and_trim() {
        assert_eq!(
            r("a: {{ .Values.x | quote }}\n  {{- if .Values.y }}\nb: {{ .Release.Name }}\n{{- end }}\n", json!({"x": "v", "y": true})).unwrap(),
            "a: \"v\"\nb: rel\n"
        );
        assert_eq!(r("{{- /* c */ -}}\n  x", json!({})).unwrap(), "x");
    }

    #[test]
    fn if_else_and_functions() {
        let t = "{{ if or .Values.on (gt (int .Values.n) 1) }}yes{{ else }}no{{ end }}";
        assert_eq!(r(t, json!({"on": false, "n": 2})).unwrap(), "yes");
        assert_eq!(r(t, json!({"on": false, "n": 1})).unwrap(), "no");
        assert_eq!(r(t, json!({"on": true, "n": 1})).unwrap(), "yes");
        // As in Helm: values numbers are floats.
        assert!(r("{{ gt .Values.n 1 }}", json!({"n": 2})).is_err());
        assert_eq!(r("{{ .Values.n }}", json!({"n": 2})).unwrap(), "2");
    }

    #[test]
    fn to_yaml_nindent_and_required() {
        assert_eq!(
            r(
                "k:\n  {{- toYaml .Values.m | nindent 2 }}",
                json!({"m": {"b": [1], "a": "x"}})
            )
            .unwrap(),
            "k:\n  a: x\n  b:\n  - 1"
        );
        assert!(
            r("{{ required \"need x\" .Values.x }}", json!({"x": ""}))
                .unwrap_err()
                .contains("need x")
        );
        assert!(r("{{ .Values.missing }}", json!({})).is_err());
        assert!(r("{{ range .Values.x }}{{ end }}", json!({})).is_err());
        assert!(r("{{ if .Values.x }}", json!({})).is_err());
    }
}
