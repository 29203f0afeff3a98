//! Route classification and canonical path encoding: arbitrary methods and
//! request targets into `route::classify`. Oracles:
//! - no panic; every refusal is a 4xx `ProxyError`;
//! - a classified route's ids are ones AWS could accept (no `/` outside
//!   model, guardrail, async-invocation and session ARNs, no empty, `.` or
//!   `..` segment);
//! - the path sent upstream (`Route::upstream_path`) classifies again to the
//!   same operation and ids, and encodes every id as one URI label (no raw
//!   `/`, `?`, `#` or `%` that is not an escape), so upstream can never see
//!   another path than the one authorised.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use tenantgate::route::{classify, encode_label};

const METHODS: [&str; 5] = ["POST", "GET", "PUT", "DELETE", "PATCH"];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let method = Method::from_bytes(METHODS[m as usize % METHODS.len()].as_bytes()).unwrap();
    let Ok(path) = std::str::from_utf8(rest) else { return };
    let route = match classify(&method, path) {
        Ok(r) => r,
        Err(e) => {
            assert!(e.status().is_client_error(), "{path:?}: {e:?}");
            return;
        }
    };
    for id in route.target.labels() {
        for seg in id.split('/') {
            assert!(!matches!(seg, "" | "." | ".."), "{path:?} -> {:?}", route.target);
        }
        if id.contains('/') {
            use tenantgate::route::Target;
            // ARNs: models, guardrails, async invocations; a session
            // identifier sent as an ARN (refused later as unsealed).
            let arn_label = matches!(
                route.target,
                Target::Model(_) | Target::Guardrail { .. } | Target::AsyncInvocation(_) | Target::Session { .. }
            );
            assert!(arn_label && id.starts_with("arn:"), "{path:?} -> {:?}", route.target);
        }
        let label = encode_label(id);
        assert!(!label.contains(['/', '?', '#']), "{label}");
    }
    let up = route.upstream_path();
    let again = classify(&method, &up).unwrap_or_else(|e| panic!("{path:?} -> {up:?} refused: {e:?}"));
    assert_eq!(again.op, route.op, "{path:?} -> {up:?}");
    assert_eq!(again.target, route.target, "{path:?} -> {up:?}");
    assert_eq!(again.upstream_path(), up);
});
