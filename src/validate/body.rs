//! A parsed body against its input shape. The happy path allocates nothing:
//! member lookups are binary searches over the structure's sorted member
//! names, and the JSON path of a failure is collected only as it unwinds.

use super::model::{Kind, Location, Models, ShapeId};
use super::{Seg, ValidationError, ValidationErrorKind};
use base64::Engine;
use serde_json::Value;

/// A failure with its path in reverse (innermost segment first).
pub(crate) struct Fail {
    kind: ValidationErrorKind,
    rev_path: Vec<Seg>,
    message: String,
}

impl Fail {
    fn new(kind: ValidationErrorKind, message: String) -> Box<Fail> {
        Box::new(Fail { kind, rev_path: Vec::new(), message })
    }

    /// Takes the box `check` fails with (kept boxed so its `Result` stays
    /// one word on the hot path), for `map_err`.
    #[allow(clippy::boxed_local)]
    pub(crate) fn into_error(fail: Box<Fail>) -> ValidationError {
        let Fail { kind, mut rev_path, message } = *fail;
        rev_path.reverse();
        ValidationError::new(kind, rev_path, message)
    }
}

fn at(seg: impl FnOnce() -> Seg) -> impl FnOnce(Box<Fail>) -> Box<Fail> {
    move |mut f| {
        f.rev_path.push(seg());
        f
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(kind: &Kind) -> &'static str {
    match kind {
        Kind::Structure { .. } | Kind::Map(_) => "an object",
        Kind::List(_) => "an array",
        Kind::Document => "any JSON value",
        Kind::String => "a string",
        Kind::Blob => "a base64 string",
        Kind::Boolean => "a boolean",
        Kind::Integral { .. } => "an integer",
        Kind::Number => "a number",
        Kind::Timestamp => "a number or a string (timestamp)",
    }
}

pub(crate) fn check(m: &Models, id: ShapeId, v: &Value) -> Result<(), Box<Fail>> {
    let shape = m.shape(id);
    match (&shape.kind, v) {
        (_, Value::Null) => Err(Fail::new(ValidationErrorKind::Null, "null is not a valid value".into())),
        (Kind::Document, _) => Ok(()),
        (Kind::Structure { members, union }, Value::Object(o)) => {
            for (key, value) in o {
                let Ok(i) = members.binary_search_by(|mem| mem.name.as_ref().cmp(key.as_str())) else {
                    return Err(Fail::new(
                        ValidationErrorKind::UnknownMember,
                        format!("not a member of {}", shape.name),
                    ))
                    .map_err(at(|| Seg::Key(key.clone())));
                };
                let member = &members[i];
                if member.location != Location::Body {
                    return Err(Fail::new(
                        ValidationErrorKind::NotABodyMember,
                        format!("a member of {} that belongs in {}, not in the body", shape.name, member.location.describe()),
                    ))
                    .map_err(at(|| Seg::Key(key.clone())));
                }
                check(m, member.shape, value).map_err(at(|| Seg::Key(key.clone())))?;
            }
            if *union && o.len() != 1 {
                let set = if o.is_empty() {
                    "none is".to_string()
                } else {
                    let names: Vec<&str> = o.keys().map(String::as_str).collect();
                    format!("{} are: {}", o.len(), names.join(", "))
                };
                return Err(Fail::new(
                    ValidationErrorKind::Union,
                    format!("{} is a union: exactly one member must be set, {set}", shape.name),
                ));
            }
            Ok(())
        }
        (Kind::List(item), Value::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                check(m, *item, x).map_err(at(|| Seg::Index(i)))?;
            }
            Ok(())
        }
        (Kind::Map(value), Value::Object(o)) => {
            for (key, x) in o {
                check(m, *value, x).map_err(at(|| Seg::Key(key.clone())))?;
            }
            Ok(())
        }
        (Kind::String, Value::String(_)) | (Kind::Boolean, Value::Bool(_)) | (Kind::Number, Value::Number(_)) => Ok(()),
        (Kind::Timestamp, Value::Number(_) | Value::String(_)) => Ok(()),
        (Kind::Integral { min, max }, Value::Number(n)) => match n.as_i64() {
            Some(i) if (*min..=*max).contains(&i) => Ok(()),
            Some(_) => Err(Fail::new(ValidationErrorKind::WrongType, format!("out of range for {} ({min}..={max})", shape.name))),
            None if n.is_u64() => Err(Fail::new(ValidationErrorKind::WrongType, format!("out of range for {} ({min}..={max})", shape.name))),
            None => Err(Fail::new(ValidationErrorKind::WrongType, format!("expected an integer ({}), found {n}", shape.name))),
        },
        (Kind::Blob, Value::String(s)) if is_base64(s.as_bytes()) => Ok(()),
        (Kind::Blob, Value::String(_)) => Err(Fail::new(ValidationErrorKind::WrongType, "not valid base64 (blob)".into())),
        (kind, v) => Err(Fail::new(
            ValidationErrorKind::WrongType,
            format!("expected {} ({}), found {}", expected(kind), shape.name, json_type(v)),
        )),
    }
}

/// Standard base64 with canonical padding, as the SDKs send blobs. Decoded
/// in slices into a stack buffer: nothing is allocated, however large.
pub(crate) fn is_base64(s: &[u8]) -> bool {
    const IN: usize = 4096;
    let mut buf = [0u8; IN / 4 * 3];
    if !s.len().is_multiple_of(4) {
        return false;
    }
    s.chunks(IN).all(|c| base64::engine::general_purpose::STANDARD.decode_slice(c, &mut buf).is_ok())
}
