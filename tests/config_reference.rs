//! The configuration reference cannot drift from the parser.
//!
//! `tenantgate::config::known_keys()` is built from the key lists the parser
//! checks unknown keys against (docs/reference.md §3: "Unknown keys are errors"). Here:
//! - the tables of "## Configuration reference" in docs/configuration.md list
//!   exactly those keys (every accepted key documented, no documented key the
//!   parser refuses);
//! - the annotated `config.toml` shows every key, set or in a comment;
//! - the parser really accepts each listed key, and refuses a sibling it
//!   does not list (so `known_keys` itself cannot drift from the parser).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tenantgate::config::{known_keys, parse_str};

const TENANT_PREFIX: &str = "tenants.<id>.";
const DEFAULTS_PREFIX: &str = "tenant_defaults.";

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn known() -> BTreeSet<String> {
    known_keys().into_iter().collect()
}

/// The text of the `## Configuration reference` section of
/// docs/configuration.md.
fn reference_section(doc: &str) -> &str {
    let start = doc.find("\n## Configuration reference\n").expect("docs/configuration.md has no `## Configuration reference` section");
    let body = &doc[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    &body[..end]
}

/// The first cell of a markdown table row (`| a | b |` -> ` a `), honouring
/// escaped pipes.
fn first_cell(row: &str) -> Option<&str> {
    let rest = row.trim_start().strip_prefix('|')?;
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => return Some(&rest[..i]),
            _ => i += 1,
        }
    }
    None
}

/// Code spans (`` `x` ``) in a piece of markdown.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Keys documented in the reference tables: the code spans of the first
/// cell of every table row (header and separator rows have none). Each
/// key with the row it was found in, for messages.
fn reference_keys() -> BTreeMap<String, String> {
    let doc = repo_file("docs/configuration.md");
    let section = reference_section(&doc);
    let mut out = BTreeMap::new();
    let mut rows = 0;
    for line in section.lines().filter(|l| l.trim_start().starts_with('|')) {
        let Some(cell) = first_cell(line) else { continue };
        let spans = code_spans(cell);
        if spans.is_empty() {
            continue;
        }
        rows += 1;
        let cells = line.matches(" | ").count() + 1;
        assert!(cells >= 4, "a reference row needs key, type, default and meaning: {line}");
        for key in spans {
            if let Some(prev) = out.insert(key.to_string(), line.to_string()) {
                panic!("`{key}` is documented twice in the reference:\n{prev}\n{line}");
            }
        }
    }
    assert!(rows > 20, "the reference table looks empty ({rows} rows)");
    out
}

#[test]
fn config_reference_lists_every_key_the_parser_accepts() {
    let documented = reference_keys();
    let missing: Vec<String> = known().into_iter().filter(|k| !documented.contains_key(k)).collect();
    assert!(
        missing.is_empty(),
        "keys the parser accepts but docs/configuration.md \"## Configuration reference\" does not list: {missing:#?}"
    );
}

#[test]
fn config_reference_lists_no_key_the_parser_refuses() {
    let known = known();
    let extra: Vec<(String, String)> = reference_keys().into_iter().filter(|(k, _)| !known.contains(k)).collect();
    assert!(extra.is_empty(), "docs/configuration.md \"## Configuration reference\" documents keys the parser refuses: {extra:#?}");
}

#[test]
fn config_reference_gives_tenant_keys_in_both_forms_on_one_row() {
    // A policy key is one row: `tenant_defaults.X` and `tenants.<id>.X`
    // (except keys valid in [tenant_defaults] only, and keys valid in
    // [tenants.<id>] only, which the parser accepts in one form).
    let documented = reference_keys();
    let known = known();
    for (key, row) in &documented {
        if let Some(rest) = key.strip_prefix(TENANT_PREFIX) {
            let other = format!("{DEFAULTS_PREFIX}{rest}");
            if !known.contains(&other) {
                continue;
            }
            assert_eq!(documented.get(&other), Some(row), "`{key}` and `{other}` belong on one row");
        }
    }
}

/// Flattens a parsed TOML table into key paths (every table level is a
/// path too; arrays are leaves). `tenants.NAME` becomes `tenants.<id>`.
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else if prefix == "tenants" {
            "tenants.<id>".to_string()
        } else {
            format!("{prefix}.{k}")
        };
        out.insert(path.clone());
        if let toml::Value::Table(t) = v {
            flatten(&path, t, out);
        }
    }
}

/// Normalises a table header path (`tenants.acme.rate_limit` ->
/// `tenants.<id>.rate_limit`).
fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').map(str::trim).collect();
    match parts.as_slice() {
        ["tenants", _, rest @ ..] => std::iter::once("tenants.<id>").chain(rest.iter().copied()).collect::<Vec<_>>().join("."),
        _ => parts.join("."),
    }
}

/// Every key path `config.toml` shows: set keys (parsed, inline tables
/// included) and keys in comments (`# key = value` under the table header in
/// force, commented headers such as `#   [tenants.acme.static_credentials]`
/// included).
fn config_toml_keys() -> BTreeSet<String> {
    let text = repo_file("config.toml");
    let mut out = BTreeSet::new();
    let doc: toml::Table = text.parse().expect("config.toml parses as TOML");
    flatten("", &doc, &mut out);

    let mut table = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        let (commented, content) = match line.strip_prefix('#') {
            Some(c) => (true, c.trim()),
            None => (false, line),
        };
        if let Some(header) = content.strip_prefix('[').and_then(|h| h.split(']').next()) {
            if !header.starts_with('[') && !header.is_empty() {
                table = normalise(header);
                continue;
            }
        }
        if !commented {
            continue;
        }
        // A commented assignment: parse it as TOML when it is one (inline
        // tables give their keys), else take the bare key before `=`.
        let Some((key, _)) = content.split_once('=') else { continue };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let path = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
        out.insert(path);
        if let Ok(t) = content.parse::<toml::Table>() {
            let mut inner = BTreeSet::new();
            flatten("", &t, &mut inner);
            for k in inner {
                out.insert(if table.is_empty() { k } else { format!("{table}.{k}") });
            }
        }
    }
    out
}

#[test]
fn config_toml_shows_every_key() {
    let shown = config_toml_keys();
    // A policy key counts as shown in either form (`tenant_defaults.X` or
    // `tenants.<id>.X`): config.toml explains that both take the same keys.
    let policy = |k: &str| k.strip_prefix(DEFAULTS_PREFIX).or_else(|| k.strip_prefix(TENANT_PREFIX)).map(str::to_string);
    let shown_policy: BTreeSet<String> = shown.iter().filter_map(|k| policy(k)).collect();
    let missing: Vec<String> = known()
        .into_iter()
        .filter(|k| !shown.contains(k) && !policy(k).is_some_and(|p| shown_policy.contains(&p)))
        .collect();
    assert!(missing.is_empty(), "config.toml shows neither as a set key nor in a comment: {missing:#?}");
}

// ---- known_keys() against the parser itself --------------------------------

/// A small valid config as a tree of tables; leaves are TOML values.
#[derive(Default)]
struct Doc(BTreeMap<String, Node>);

enum Node {
    Value(String),
    Table(Doc),
}

impl Doc {
    fn set(&mut self, path: &str, value: &str) {
        let parts: Vec<&str> = path.split('.').collect();
        let mut d = self;
        for p in &parts[..parts.len() - 1] {
            let node = d.0.entry(p.to_string()).or_insert_with(|| Node::Table(Doc::default()));
            if let Node::Value(_) = node {
                *node = Node::Table(Doc::default());
            }
            let Node::Table(next) = node else { unreachable!() };
            d = next;
        }
        d.0.insert(parts[parts.len() - 1].to_string(), Node::Value(value.to_string()));
    }

    fn write(&self, path: &str, out: &mut String) {
        let mut tables = Vec::new();
        for (k, n) in &self.0 {
            match n {
                Node::Value(v) => out.push_str(&format!("{k} = {v}\n")),
                Node::Table(t) => tables.push((k, t)),
            }
        }
        for (k, t) in tables {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            out.push_str(&format!("\n[{p}]\n"));
            t.write(&p, out);
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.write("", &mut s);
        s
    }
}

fn base() -> Doc {
    let mut d = Doc::default();
    d.set("identity.issuer", "\"https://issuer.example\"");
    d.set("identity.audiences", "[\"app\"]");
    d.set("identity.jwks_url", "\"https://issuer.example/jwks.json\"");
    d.set("aws.region", "\"us-east-1\"");
    d.set("credentials.role_arn", "\"arn:aws:iam::111122223333:role/pool\"");
    d.set("tenants.acme.models", "[]");
    d
}

fn concrete(key: &str) -> String {
    key.replace("<id>", "acme")
}

fn unknown_key_errors(text: &str) -> Vec<String> {
    match parse_str(text, Path::new("/nonexistent")) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().filter(|e| e.message.contains("unknown key")).map(|e| e.to_string()).collect(),
    }
}

#[test]
fn the_base_document_is_valid() {
    if let Err(e) = parse_str(&base().text(), Path::new("/nonexistent")) {
        panic!("{e:?}");
    }
}

#[test]
fn the_parser_accepts_every_known_key() {
    // Each key set (to a value of a deliberately unlikely type: an integer
    // wants to be reported as a type or range error, never as unknown).
    for key in known_keys() {
        let mut d = base();
        d.set(&concrete(&key), "987654321");
        let unknown = unknown_key_errors(&d.text());
        assert!(unknown.is_empty(), "`{key}` is in known_keys() but the parser says: {unknown:?}\n{}", d.text());
    }
}

#[test]
fn the_parser_refuses_what_known_keys_does_not_list() {
    // One unlisted key next to the keys of every table known_keys() walks.
    let mut parents: BTreeSet<String> = BTreeSet::new();
    for key in known_keys() {
        if let Some((parent, _)) = key.rsplit_once('.') {
            parents.insert(parent.to_string());
        }
    }
    parents.insert(String::new());
    for parent in parents {
        let probe = if parent.is_empty() { "no_such_key".to_string() } else { format!("{parent}.no_such_key") };
        let mut d = base();
        d.set(&concrete(&probe), "1");
        let unknown = unknown_key_errors(&d.text());
        assert!(
            unknown.iter().any(|e| e.contains(&concrete(&probe))),
            "`{probe}` is not in known_keys() but the parser accepts it ({unknown:?})\n{}",
            d.text()
        );
    }
    // And a key valid only in [tenant_defaults] is refused for a tenant.
    let mut d = base();
    d.set("tenants.acme.allow_unlisted", "true");
    let errors = parse_str(&d.text(), Path::new("/nonexistent")).expect_err("allow_unlisted on a tenant");
    assert!(errors.iter().any(|e| e.key == "tenants.acme.allow_unlisted"), "{errors:?}");
    assert!(!known().contains("tenants.<id>.allow_unlisted"));
}
