//! `[policy]` and `[tenants.ID.policy]` (docs/reference.md §12): Cedar
//! policy files (relative to the configuration file) and inline text, the
//! claims exposed on the principal and their types. The policies are
//! compiled here, so `check` and a reload report every policy error with
//! its file and line, and a broken file keeps the configuration in force.

use super::reader::{index, Ctx, Tbl};
use crate::decide::cedar::{ClaimDecl, ClaimType, Policies, PolicySource, DEFAULT_DECISION_CACHE};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) const KEYS: &[&str] = &["files", "inline", "claims", "claim_types", "decision_cache"];
pub(crate) const TENANT_KEYS: &[&str] = &["files", "inline"];

/// What the configuration holds of policies.
#[derive(Debug, Default, Clone)]
pub struct PolicyConfig {
    /// The compiled policies; None when no file or inline text is configured.
    pub policies: Option<Arc<Policies>>,
    /// The claims exposed on the principal (for `tenantgate policy-schema`).
    pub claims: Vec<ClaimDecl>,
    /// Every policy file read, so a reload sees a changed policy file.
    pub files: Vec<PathBuf>,
}

/// Where each policy source was configured: its origin, key and span.
type Origins = Vec<(String, String, Range<usize>)>;

/// Reads the sources of one `policy` table: its files, then its inline text.
fn sources(t: &Tbl<'_>, ctx: &mut Ctx<'_>, files: &mut Vec<PathBuf>, origins: &mut Origins) -> Vec<PolicySource> {
    let mut out = Vec::new();
    if let Some(list) = t.string_list(ctx, "files") {
        for (i, f) in list.value.iter().enumerate() {
            let Some(path) = ctx.existing_file(f) else { continue };
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    files.push(path);
                    origins.push((f.value.clone(), index(&list.key, i), f.span.clone()));
                    out.push(PolicySource { origin: f.value.clone(), text });
                }
                Err(e) => ctx.err_at(f, format!("cannot read {}: {e}", path.display())),
            }
        }
    }
    if let Some(inline) = t.string(ctx, "inline") {
        origins.push((inline.key.clone(), inline.key.clone(), inline.span.clone()));
        out.push(PolicySource { origin: inline.key.clone(), text: inline.value });
    }
    out
}

pub(crate) fn policy(root: &Tbl<'_>, ctx: &mut Ctx<'_>) -> PolicyConfig {
    let (mut files, mut origins) = (Vec::new(), Vec::new());
    let errors_before = ctx.errors.len();
    let t = root.sub_or_empty(ctx, "policy", KEYS).unwrap_or_else(|| Tbl::absent("policy".into()));
    let global = sources(&t, ctx, &mut files, &mut origins);
    let mut claims: Vec<ClaimDecl> = Vec::new();
    let types = t.string_map(ctx, "claim_types");
    if let Some(list) = t.string_list(ctx, "claims") {
        for c in &list.value {
            if c.value.is_empty() {
                ctx.err_at(c, "a claim name must not be empty");
                continue;
            }
            if claims.iter().any(|d| d.name == c.value) {
                ctx.err_at(c, format!("claim {:?} is listed twice", c.value));
                continue;
            }
            claims.push(ClaimDecl { name: c.value.clone(), ty: ClaimType::String });
        }
    }
    if let Some(types) = &types {
        for (name, ty) in types.value.iter() {
            let Some(decl) = claims.iter_mut().find(|d| &d.name == name) else {
                ctx.err_at(ty, format!("claim {name:?} is not listed in policy.claims"));
                continue;
            };
            match ClaimType::parse(&ty.value) {
                Some(t) => decl.ty = t,
                None => ctx.err_at(ty, format!("unknown claim type {:?} (expected String, Long, Bool or Set<String>)", ty.value)),
            }
        }
    }
    let mut per_tenant: BTreeMap<String, Vec<PolicySource>> = BTreeMap::new();
    if let Some(Some(tenants)) = root.get("tenants").map(|v| Tbl::open(&mut Ctx::new("", ctx.base_dir), "tenants".into(), v, None)) {
        for (id, _, value) in tenants.entries() {
            let Some(tt) = Tbl::open(&mut Ctx::new("", ctx.base_dir), tenants.key(id), value, None) else { continue };
            if let Some(pt) = tt.sub(ctx, "policy", TENANT_KEYS) {
                per_tenant.insert(id.to_string(), sources(&pt, ctx, &mut files, &mut origins));
            }
        }
    }
    let cache = t.uint(ctx, "decision_cache", 0, 10_000_000).map_or(DEFAULT_DECISION_CACHE, |c| c.value as usize);
    if ctx.errors.len() > errors_before {
        return PolicyConfig { policies: None, claims, files };
    }
    let policies = match Policies::load(claims.clone(), &global, &per_tenant) {
        Ok(p) => p.map(|mut p| {
            p.set_decision_cache(cache);
            Arc::new(p)
        }),
        Err(errors) => {
            for e in errors {
                match origins.iter().find(|(o, _, _)| *o == e.origin) {
                    Some((_, key, span)) => ctx.err(key, Some(span), e.to_string()),
                    None => ctx.err("policy.claims", t.get("claims").map(|v| v.span()).as_ref(), e.to_string()),
                }
            }
            None
        }
    };
    PolicyConfig { policies, claims, files }
}
