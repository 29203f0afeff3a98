//! `[credentials]` (docs/reference.md §6).

use super::reader::{Ctx, Loc, Tbl};
use crate::config::{AssumeRoleConfig, CredentialsConfig};
use crate::template::Template;

pub(super) const KEYS: &[&str] = &[
    "source",
    "role_arn",
    "session_name",
    "session_tags",
    "source_identity",
    "duration_secs",
    "refresh_before_secs",
    "session_policy_file",
    "external_id",
];
const ASSUME_ROLE_ONLY: &[&str] = &[
    "role_arn",
    "session_name",
    "session_tags",
    "source_identity",
    "duration_secs",
    "refresh_before_secs",
    "session_policy_file",
    "external_id",
];
pub(crate) const DEFAULT_SESSION_NAME: &str = "tenantgate-{tenant}";
/// STS limits: 50 session tags, keys up to 128 characters.
const MAX_TAGS: usize = 50;

/// Compiles a template value, reporting a malformed one at its key.
pub(crate) fn template(ctx: &mut Ctx<'_>, loc: &Loc<String>) -> Option<Template> {
    match Template::compile(&loc.value) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.err_at(loc, format!("invalid template: {e}"));
            None
        }
    }
}

pub(crate) fn credentials(root: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<CredentialsConfig> {
    let Some(v) = root.get("credentials") else {
        ctx.err(
            "credentials",
            None,
            "missing required table [credentials] (source = \"assume_role\" with role_arn, or source = \"static\")",
        );
        return None;
    };
    let t = Tbl::open(ctx, "credentials".into(), v, Some(KEYS))?;
    let source = t.string(ctx, "source");
    match source.as_ref().map(|s| s.value.as_str()) {
        None | Some("assume_role") => assume_role(&t, ctx).map(CredentialsConfig::AssumeRole),
        Some("static") => {
            t.forbid(ctx, ASSUME_ROLE_ONLY, "is only valid with source = \"assume_role\"");
            Some(CredentialsConfig::Static)
        }
        Some(other) => {
            if let Some(s) = &source {
                ctx.err_at(s, format!("unknown source {other:?} (expected \"assume_role\" or \"static\")"));
            }
            None
        }
    }
}

fn assume_role(t: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<AssumeRoleConfig> {
    let role_arn = match t.text(ctx, "role_arn") {
        Some(r) if !r.value.starts_with("arn:") => {
            ctx.err_at(&r, format!("{:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)", r.value));
            None
        }
        Some(r) => template(ctx, &r),
        None => {
            if !t.has("role_arn") {
                t.missing(ctx, "role_arn");
            }
            None
        }
    };
    let session_name = match t.text(ctx, "session_name") {
        Some(s) => template(ctx, &s).filter(|tpl| {
            let ok = tpl.literals().all(|l| l.chars().all(is_session_name_char));
            if !ok {
                ctx.err_at(&s, "STS session names may contain only letters, digits and +=,.@-_");
            }
            ok
        }),
        None if t.has("session_name") => None,
        None => Template::compile(DEFAULT_SESSION_NAME).ok(),
    };
    let session_tags = match t.string_map(ctx, "session_tags") {
        Some(map) => {
            if map.value.len() > MAX_TAGS {
                ctx.err_at(&map, format!("at most {MAX_TAGS} session tags"));
            }
            let mut tags = Vec::new();
            for (k, v) in &map.value {
                if k.is_empty() || k.chars().count() > 128 || k.to_ascii_lowercase().starts_with("aws:") {
                    ctx.err_at(v, format!("{k:?} is not a valid tag key (1-128 characters, not starting with aws:)"));
                }
                if let Some(tpl) = template(ctx, v) {
                    tags.push((k.clone(), tpl));
                }
            }
            tags
        }
        None if t.has("session_tags") => Vec::new(),
        None => Template::compile("{tenant}").map(|tpl| vec![("TenantID".to_string(), tpl)]).unwrap_or_default(),
    };
    let source_identity = t.text(ctx, "source_identity").and_then(|s| template(ctx, &s));
    let duration = t.uint(ctx, "duration_secs", 900, 43_200);
    let refresh = t.uint(ctx, "refresh_before_secs", 0, 43_200);
    let duration_secs = duration.as_ref().map_or(3600, |l| l.value);
    let refresh_before_secs = refresh.as_ref().map_or(300, |l| l.value);
    if refresh_before_secs >= duration_secs && (duration.is_some() || refresh.is_some()) {
        let at = refresh.as_ref().or(duration.as_ref());
        if let Some(at) = at {
            ctx.err(
                &t.key("refresh_before_secs"),
                Some(&at.span),
                format!(
                    "refresh_before_secs ({refresh_before_secs}) must be less than duration_secs ({duration_secs})"
                ),
            );
        }
    }
    let session_policy = t.text(ctx, "session_policy_file").and_then(|f| {
        let path = ctx.existing_file(&f)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                ctx.err_at(&f, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        match Template::compile_json_document(&text) {
            Ok(tpl) => Some(tpl),
            Err(e) => {
                ctx.err_at(&f, format!("{}: {e}", path.display()));
                None
            }
        }
    });
    let external_id = t.text(ctx, "external_id").map(|l| l.value);
    Some(AssumeRoleConfig {
        role_arn: role_arn?,
        session_name: session_name?,
        session_tags,
        source_identity,
        duration_secs: u32::try_from(duration_secs).unwrap_or(3600),
        refresh_before_secs,
        session_policy,
        external_id,
    })
}

fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@-_".contains(c)
}
