//! Reading spanned TOML (`toml::de::DeTable`) with every problem collected:
//! unknown keys, wrong types, out-of-range numbers, each reported with its
//! key path and 1-based line. Getters return `None` after reporting, so the
//! caller just carries on and the whole file gets checked in one pass.

use crate::config::ConfigError;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub(crate) type Val<'a> = Spanned<DeValue<'a>>;
/// Entries of an inline map of strings, each value with its location.
pub(crate) type StringMap = Vec<(String, Loc<String>)>;

/// A value together with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Loc<T> {
    pub value: T,
    pub key: String,
    pub span: Range<usize>,
}

impl<T> Loc<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Loc<U> {
        Loc { value: f(self.value), key: self.key, span: self.span }
    }
}

pub(crate) struct Ctx<'b> {
    line_starts: Vec<usize>,
    pub errors: Vec<ConfigError>,
    pub base_dir: &'b Path,
}

impl<'b> Ctx<'b> {
    pub fn new(text: &str, base_dir: &'b Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ctx { line_starts, errors: Vec::new(), base_dir }
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    pub fn err(&mut self, key: &str, span: Option<&Range<usize>>, message: impl Into<String>) {
        let line = span.map(|s| self.line(s.start));
        self.errors.push(ConfigError { key: key.to_string(), line, message: message.into() });
    }

    pub fn err_at<T>(&mut self, loc: &Loc<T>, message: impl Into<String>) {
        let span = loc.span.clone();
        self.err(&loc.key, Some(&span), message);
    }

    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Resolves a file path key and checks that the file exists.
    pub fn existing_file(&mut self, loc: &Loc<String>) -> Option<PathBuf> {
        if loc.value.is_empty() {
            self.err_at(loc, "must not be empty");
            return None;
        }
        let path = self.resolve(&loc.value);
        if path.is_file() {
            Some(path)
        } else {
            self.err_at(loc, format!("file not found: {}", path.display()));
            None
        }
    }
}

/// Appends a key to a path, quoting it when it is not a bare TOML key.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::Table(_) => "table",
        DeValue::Array(_) => "array",
        other => other.type_str(),
    }
}

pub(crate) fn type_error(ctx: &mut Ctx<'_>, key: &str, v: &Val<'_>, expected: &str) {
    ctx.err(key, Some(&v.span()), format!("expected {expected}, found {}", type_name(v.get_ref())));
}

/// Integer value of a TOML integer (any radix), if it fits.
pub(crate) fn integer(v: &DeValue<'_>) -> Option<i128> {
    v.as_integer().and_then(|i| i128::from_str_radix(i.as_str(), i.radix()).ok())
}

pub(crate) fn as_string(ctx: &mut Ctx<'_>, key: String, v: &Val<'_>) -> Option<Loc<String>> {
    match v.get_ref().as_str() {
        Some(s) => Some(Loc { value: s.to_string(), key, span: v.span() }),
        None => {
            type_error(ctx, &key, v, "a string");
            None
        }
    }
}

/// One TOML table being read; unknown keys are reported when it is opened.
pub(crate) struct Tbl<'a> {
    pub path: String,
    /// Where the table starts (None for the document root).
    pub span: Option<Range<usize>>,
    /// None for an absent optional table (reads as empty).
    table: Option<&'a DeTable<'a>>,
}

impl<'a> Tbl<'a> {
    pub fn root(table: &'a DeTable<'a>, ctx: &mut Ctx<'_>, known: &[&str]) -> Tbl<'a> {
        let t = Tbl { path: String::new(), span: None, table: Some(table) };
        t.check_unknown(ctx, known);
        t
    }

    /// Opens `v` as a table at `path`, reporting a wrong type or unknown keys.
    /// `known = None` accepts any key (maps).
    pub fn open(ctx: &mut Ctx<'_>, path: String, v: &'a Val<'a>, known: Option<&[&str]>) -> Option<Tbl<'a>> {
        match v.get_ref() {
            DeValue::Table(table) => {
                let t = Tbl { path, span: Some(v.span()), table: Some(table) };
                if let Some(known) = known {
                    t.check_unknown(ctx, known);
                }
                Some(t)
            }
            _ => {
                type_error(ctx, &path, v, "a table");
                None
            }
        }
    }

    /// An absent optional table: every key reads as absent.
    pub fn absent(path: String) -> Tbl<'a> {
        Tbl { path, span: None, table: None }
    }

    fn iter(&self) -> impl Iterator<Item = (&'a Spanned<toml::de::DeString<'a>>, &'a Val<'a>)> + 'a {
        self.table.into_iter().flat_map(|t| t.iter())
    }

    fn check_unknown(&self, ctx: &mut Ctx<'_>, known: &[&str]) {
        for (k, _) in self.iter() {
            let name: &str = k.get_ref();
            if !known.contains(&name) {
                let hint = match known.iter().find(|c| close(name, c)) {
                    Some(c) => format!(" (did you mean `{c}`?)"),
                    None => format!(" (expected one of: {})", known.join(", ")),
                };
                ctx.err(&join(&self.path, name), Some(&k.span()), format!("unknown key `{name}`{hint}"));
            }
        }
    }

    pub fn key(&self, k: &str) -> String {
        join(&self.path, k)
    }

    pub fn get(&self, k: &str) -> Option<&'a Val<'a>> {
        self.table?.get(k)
    }

    pub fn has(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// Opens sub-table `k`, or an empty one when absent.
    pub fn sub_or_empty(&self, ctx: &mut Ctx<'_>, k: &str, known: &[&str]) -> Option<Tbl<'a>> {
        match self.get(k) {
            Some(v) => Tbl::open(ctx, self.key(k), v, Some(known)),
            None => Some(Tbl::absent(self.key(k))),
        }
    }

    /// All entries: (name, key span, value).
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, Range<usize>, &'a Val<'a>)> + 'a {
        self.iter().map(|(k, v)| {
            let name: &'a str = k.get_ref();
            (name, k.span(), v)
        })
    }

    pub fn missing(&self, ctx: &mut Ctx<'_>, k: &str) {
        ctx.err(&self.key(k), self.span.as_ref(), format!("missing required key `{k}`"));
    }

    /// Reports every key of `keys` present in this table as not allowed here.
    pub fn forbid(&self, ctx: &mut Ctx<'_>, keys: &[&str], why: &str) {
        for (k, _) in self.iter() {
            let name: &str = k.get_ref();
            if keys.contains(&name) {
                ctx.err(&self.key(name), Some(&k.span()), format!("`{name}` {why}"));
            }
        }
    }

    pub fn sub(&self, ctx: &mut Ctx<'_>, k: &str, known: &[&str]) -> Option<Tbl<'a>> {
        Tbl::open(ctx, self.key(k), self.get(k)?, Some(known))
    }

    pub fn string(&self, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<String>> {
        as_string(ctx, self.key(k), self.get(k)?)
    }

    /// A string that must not be empty.
    pub fn text(&self, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<String>> {
        let s = self.string(ctx, k)?;
        if s.value.trim().is_empty() {
            ctx.err_at(&s, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn boolean(&self, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<bool>> {
        let v = self.get(k)?;
        match v.get_ref().as_bool() {
            Some(b) => Some(Loc { value: b, key: self.key(k), span: v.span() }),
            None => {
                type_error(ctx, &self.key(k), v, "a boolean");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn uint(&self, ctx: &mut Ctx<'_>, k: &str, min: u64, max: u64) -> Option<Loc<u64>> {
        let v = self.get(k)?;
        let key = self.key(k);
        let Some(n) = integer(v.get_ref()) else {
            if v.get_ref().is_integer() {
                ctx.err(&key, Some(&v.span()), "integer out of range");
            } else {
                type_error(ctx, &key, v, "an integer");
            }
            return None;
        };
        if n < i128::from(min) || n > i128::from(max) {
            let msg = if max >= u64::from(u32::MAX) {
                if n < i128::from(min) {
                    format!("must be at least {min}, got {n}")
                } else {
                    format!("must be at most {max}, got {n}")
                }
            } else {
                format!("must be between {min} and {max}, got {n}")
            };
            ctx.err(&key, Some(&v.span()), msg);
            return None;
        }
        Some(Loc { value: n as u64, key, span: v.span() })
    }

    /// A finite number (integer or float) greater than zero.
    pub fn positive_number(&self, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<f64>> {
        let v = self.get(k)?;
        let key = self.key(k);
        let n = match v.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(_) => integer(v.get_ref()).map(|n| n as f64),
            _ => {
                type_error(ctx, &key, v, "a number");
                return None;
            }
        };
        match n {
            Some(n) if n.is_finite() && n > 0.0 => Some(Loc { value: n, key, span: v.span() }),
            _ => {
                ctx.err(&key, Some(&v.span()), "must be a finite number greater than 0");
                None
            }
        }
    }

    /// An array of strings; each element carries its own `key[i]` location.
    pub fn string_list(&self, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<Vec<Loc<String>>>> {
        let v = self.get(k)?;
        let key = self.key(k);
        let Some(items) = v.get_ref().as_array() else {
            type_error(ctx, &key, v, "an array of strings");
            return None;
        };
        let out = items.iter().enumerate().filter_map(|(i, item)| as_string(ctx, index(&key, i), item)).collect();
        Some(Loc { value: out, key, span: v.span() })
    }

    /// A table of string values (an inline map such as `model_map`), in
    /// file order of keys as stored; each value carries its own location.
    pub fn string_map(&self, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<StringMap>> {
        let v = self.get(k)?;
        let t = Tbl::open(ctx, self.key(k), v, None)?;
        let mut out = Vec::new();
        for (name, _, item) in t.entries() {
            if let Some(s) = as_string(ctx, t.key(name), item) {
                out.push((name.to_string(), s));
            }
        }
        Some(Loc { value: out, key: t.path, span: v.span() })
    }
}

/// Close enough to be a typo: same length ±1 and at most two edits.
fn close(a: &str, b: &str) -> bool {
    a.len().abs_diff(b.len()) <= 2 && edit_distance(a, b) <= 2
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`: a usable environment variable name.
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads an env var name key, checking its syntax.
pub(crate) fn env_name(t: &Tbl<'_>, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<String>> {
    let s = t.string(ctx, k)?;
    if is_env_name(&s.value) {
        Some(s)
    } else {
        ctx.err_at(&s, format!("{:?} is not a valid environment variable name", s.value));
        None
    }
}
