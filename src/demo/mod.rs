//! `tenantgate demo` (docs/reference.md §2): a self-contained end-to-end demonstration.
//! It starts the built-in AWS simulator (STS, Bedrock, Bedrock agents,
//! SageMaker) and the sidecar in this process, sends requests as the demo's
//! tenants through the real request path over HTTP, and prints what was
//! allowed, denied, rewritten, filtered, throttled and with which STS session
//! it was signed. It needs no AWS account and no network, and exits non-zero
//! if anything did not happen as the scenario says (e.g. a signature failed
//! to verify, or a denied request reached AWS).
//!
//! The sidecar's audit records are captured in memory and printed after the
//! table, exactly as `tenantgate run` writes them to stdout.

mod checks;
mod report;
mod runner;
mod scenario_list;
mod scenarios;
mod setup;
pub use tenantgate_sim::{sigv4_check, sim};

pub use setup::DEMO_TOML;

use crate::audit::{Audit, AuditRecord};
use crate::server::Sidecar;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Whole-demo limit: it takes well under a second; never hang.
const DEMO_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the demo and returns the process exit code.
/// The base secret as the simulator's own secret type.
fn sim_secret(s: &crate::secret::SecretString) -> tenantgate_sim::secret::SecretString {
    tenantgate_sim::secret::SecretString::new(s.expose().clone())
}

pub fn run() -> i32 {
    // Env vars (the sidecar's base AWS key, no other credential source) are
    // set before any other thread exists: the runtime is built afterwards.
    let env = match setup::DemoEnv::create() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tenantgate demo: {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tenantgate demo: cannot start runtime: {e}");
            return 1;
        }
    };
    let outcome = rt.block_on(async { tokio::time::timeout(DEMO_TIMEOUT, run_with(&env)).await });
    rt.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(Ok(out)) => {
            print!("{}", out.text);
            i32::from(!out.ok)
        }
        Ok(Err(e)) => {
            eprintln!("tenantgate demo: {e}");
            1
        }
        Err(_) => {
            eprintln!("tenantgate demo: did not finish within {DEMO_TIMEOUT:?}");
            1
        }
    }
}

/// The printed report and whether everything went as expected.
pub struct DemoOutput {
    pub text: String,
    pub ok: bool,
    // Read by the tests, which check the isolation invariants one by one.
    #[cfg_attr(not(test), allow(dead_code))]
    rows: Vec<runner::Row>,
    #[cfg_attr(not(test), allow(dead_code))]
    summary: report::Summary,
    /// Session tokens STS handed out: the tests check none is printed.
    #[cfg(test)]
    issued_tokens: Vec<String>,
}

async fn run_with(env: &setup::DemoEnv) -> Result<DemoOutput, String> {
    let sim = sim::Sim::start(sim::SimOptions {
        credentials: vec![(env.base.access_key_id.to_string(), sim_secret(&env.base.secret))],
        verify_signatures: true,
        record_limit: 1000,
    })
    .await
    .map_err(|e| format!("cannot start the AWS simulator: {e}"))?;
    let config =
        crate::config::parse_str(&env.config_text(&sim.url()), env.base_dir()).map_err(|errs| {
            let list: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
            format!("demo config rejected:\n{}", list.join("\n"))
        })?;
    let (audit, audit_records) = Audit::memory();
    let sidecar = Sidecar::start_with_audit(config, None, audit).await?;

    let mut text = report::header(
        &sidecar.proxy_addr.to_string(),
        &sidecar.admin_addr.to_string(),
        &sim.url(),
        env.base.access_key_id,
    );
    let runner = runner::Runner {
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build_http(),
        proxy: sidecar.proxy_addr,
        sim: &sim,
        env,
    };
    let mut rows = Vec::new();
    for s in scenario_list::all() {
        rows.push(runner.run(s).await);
    }
    drop(runner);
    let audit = wait_for_audit(&audit_records, rows.len()).await;
    sidecar.shutdown().await;

    let mut problems: Vec<String> = Vec::new();
    if audit.len() != rows.len() {
        problems.push(format!(
            "{} audit records for {} requests",
            audit.len(),
            rows.len()
        ));
    }
    for (i, (row, rec)) in rows.iter().zip(&audit).enumerate() {
        let want = if (200..300).contains(&row.status) {
            crate::audit::Decision::Allow
        } else {
            crate::audit::Decision::Deny
        };
        if let Some(names) = row.scenario.policies {
            let got: Vec<&str> = rec.policies.iter().flatten().map(String::as_str).collect();
            if got != names {
                problems.push(format!(
                    "audit record {} names the policies {got:?}, expected {names:?}",
                    i + 1
                ));
            }
        }
        if rec.decision != want || rec.status != row.status {
            problems.push(format!(
                "audit record {} says {} {}, the client saw {} {}",
                i + 1,
                rec.decision,
                rec.status,
                want,
                row.status
            ));
        }
    }
    let sessions = sim.sts_sessions();
    problems.extend(report::sts_problems(&sessions, env.base.access_key_id));
    // Denials made on AWS's answer (`withheld`) ask AWS once by design.
    let denied: Vec<_> = rows.iter().filter(|r| r.scenario.status >= 400 && !r.scenario.withheld).collect();
    let withheld = rows.iter().filter(|r| r.scenario.withheld).count();
    let stat = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let summary = report::Summary {
        scenarios: rows.len(),
        as_expected: rows.iter().filter(|r| r.problems.is_empty()).count(),
        upstream_requests: sim.records().len(),
        signatures_ok: stat(&sim.stats.signatures_ok),
        signatures_failed: stat(&sim.stats.signatures_failed),
        sts_signatures_ok: stat(&sim.stats.sts_signatures_ok),
        sts_signatures_failed: stat(&sim.stats.sts_signatures_failed),
        sts_sessions: report::session_lines(&sessions),
        denied: denied.len(),
        withheld,
        denied_reaching_upstream: denied.iter().map(|r| r.reached_upstream).sum(),
    };
    #[cfg(test)]
    let issued_tokens = sim.issued_tokens();
    sim.shutdown().await;

    text.push_str(&report::table(&rows));
    text.push('\n');
    text.push_str(&report::summary(&summary, env.base.access_key_id));
    for p in &problems {
        text.push_str(&format!("!! UNEXPECTED: {p}\n"));
    }
    text.push_str(
        "\nAudit log (what `tenantgate run` writes to stdout, one JSON line per request):\n",
    );
    text.push_str(&report::audit_lines(&audit));
    let ok = problems.is_empty()
        && summary.as_expected == summary.scenarios
        && summary.signatures_failed == 0
        && summary.sts_signatures_failed == 0
        && summary.denied_reaching_upstream == 0;
    text.push_str(if ok {
        "\nDemo OK: every decision, rewrite, filter and signature was as expected.\n"
    } else {
        "\nDemo FAILED: see the UNEXPECTED lines above.\n"
    });
    Ok(DemoOutput {
        text,
        ok,
        rows,
        summary,
        #[cfg(test)]
        issued_tokens,
    })
}

/// Audit records are written when a response body ends; give the last one a
/// moment, never more than a second.
async fn wait_for_audit(
    records: &std::sync::Mutex<Vec<AuditRecord>>,
    n: usize,
) -> Vec<AuditRecord> {
    for _ in 0..100 {
        if records.lock().map(|r| r.len() >= n).unwrap_or(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    records.lock().map(|r| r.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_demo() -> (setup::DemoEnv, DemoOutput) {
        let env = setup::DemoEnv::create().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let out = rt
            .block_on(async { tokio::time::timeout(DEMO_TIMEOUT, run_with(&env)).await })
            .expect("demo timed out")
            .expect("demo failed to start");
        (env, out)
    }

    /// Decisions, signing and "denied never reaches AWS", whatever else the
    /// scenarios check.
    #[test]
    fn demo_isolation_invariants_hold() {
        let (env, out) = run_demo();
        for r in &out.rows {
            let s = &r.scenario;
            assert_eq!(
                r.status,
                s.status,
                "{} {}\n{}",
                s.operation,
                s.caller.label(),
                out.text
            );
            if let Some(reason) = s.reason {
                assert_eq!(r.reason.as_deref(), Some(reason), "{}", out.text);
            }
            // Allowed: exactly once. Denied: never, except a denial made
            // on AWS's answer (asked once, answer withheld).
            let want = usize::from(s.status < 400 || s.withheld);
            assert_eq!(r.reached_upstream, want, "{}", out.text);
        }
        let sum = &out.summary;
        assert_eq!(sum.signatures_failed, 0, "{}", out.text);
        assert_eq!(sum.sts_signatures_failed, 0, "{}", out.text);
        assert_eq!(sum.denied_reaching_upstream, 0, "{}", out.text);
        assert_eq!(
            sum.signatures_ok as usize, sum.upstream_requests,
            "{}",
            out.text
        );
        // One STS session per configured tenant, each its own key.
        assert_eq!(sum.sts_sessions.len(), setup::TENANTS.len(), "{}", out.text);
        let mut keys: Vec<&str> = sum.sts_sessions.iter().map(|l| l.key.as_str()).collect();
        keys.dedup();
        assert_eq!(keys.len(), setup::TENANTS.len(), "{}", out.text);
        assert!(sum.sts_signatures_ok >= setup::TENANTS.len() as u64);
        // Nothing secret is printed: not the base key's secret, not a session
        // token, not the identity provider's key.
        assert!(!out.text.contains(env.base.secret.expose().as_str()));
        assert!(!out.issued_tokens.is_empty());
        for t in &out.issued_tokens {
            assert!(
                !out.text.contains(t.as_str()),
                "a session token was printed"
            );
        }
        // docs/reference.md §2: the demo shows what was redacted, and the id never
        // appears anywhere in what it prints.
        let table = out.text.split("\nAudit log").next().unwrap_or("");
        assert!(table.contains("identity id split across deltas redacted"), "{}", out.text);
        assert!(!out.text.contains("12345678-abcd-1234-462b-123456789abc"), "{}", out.text);
        // The answer a withheld denial got from AWS never reaches the client:
        // globex's job location is nowhere in the client-facing table.
        assert!(!table.contains("s3://media-out/globex/board-video/"), "{}", out.text);
        assert_eq!(sum.withheld, out.rows.iter().filter(|r| r.scenario.withheld).count());
    }

    #[test]
    fn demo_runs_clean_end_to_end() {
        let (_env, out) = run_demo();
        assert!(out.ok, "{}", out.text);
    }
}
