use std::time::{Duration, Instant};

use super::*;

fn limits(rps: f64, burst: u32) -> TenantRateLimit {
    TenantRateLimit {
        requests_per_second: rps,
        burst,
        max_concurrent: 1000,
        tokens_per_minute: 0,
        user_requests_per_second: None,
        user_burst: None,
    }
}

fn fake() -> (Arc<RateLimiter>, Clock) {
    let clock = Clock::fake();
    (RateLimiter::with_clock(clock.clone()), clock)
}

/// Admits `n` requests (dropping each permit) and returns how many passed.
fn admitted(rl: &RateLimiter, tenant: &str, user: &str, l: &TenantRateLimit, n: usize) -> usize {
    (0..n).filter(|_| rl.admit(tenant, user, l).is_ok()).count()
}

fn retry_after(e: ProxyError) -> Duration {
    match e {
        ProxyError::RateLimited { retry_after } | ProxyError::TokenBudgetExhausted { retry_after } => retry_after,
        other => panic!("expected a throttle with retry_after, got {other:?}"),
    }
}

#[test]
fn burst_then_rate_limited_with_truthful_retry_after() {
    let (rl, clock) = fake();
    let l = limits(2.0, 3); // one cell every 500 ms
    assert_eq!(admitted(&rl, "acme", "u", &l, 3), 3);
    let e = rl.admit("acme", "u", &l).unwrap_err();
    assert_eq!(e.reason(), "rate_limited");
    assert_eq!(retry_after(e), Duration::from_millis(500));

    clock.advance(Duration::from_millis(499));
    assert_eq!(retry_after(rl.admit("acme", "u", &l).unwrap_err()), Duration::from_millis(1));
    clock.advance(Duration::from_millis(1));
    assert!(rl.admit("acme", "u", &l).is_ok(), "admitted exactly when Retry-After said");
    assert!(rl.admit("acme", "u", &l).is_err());
}

#[test]
fn refusals_do_not_consume_rate() {
    let (rl, clock) = fake();
    let l = limits(1.0, 1);
    assert!(rl.admit("acme", "u", &l).is_ok());
    for _ in 0..100 {
        assert!(rl.admit("acme", "u", &l).is_err());
    }
    clock.advance(Duration::from_secs(1));
    assert!(rl.admit("acme", "u", &l).is_ok(), "a second later one cell is back despite 100 refusals");
}

#[test]
fn other_tenant_unaffected_by_exhausted_tenant() {
    let (rl, _) = fake();
    let l = TenantRateLimit { max_concurrent: 2, tokens_per_minute: 100, ..limits(1.0, 5) };
    let held: Vec<_> = (0..2).map(|_| rl.admit("noisy", "u", &l).unwrap()).collect();
    held[0].charge_tokens(1_000);
    assert_eq!(admitted(&rl, "noisy", "u", &l, 10), 0);
    let mut kept = Vec::new();
    for _ in 0..2 {
        kept.push(rl.admit("quiet", "u", &l).expect("quiet tenant has its own concurrency"));
    }
    drop(kept);
    assert_eq!(admitted(&rl, "quiet", "u", &l, 10), 3, "quiet tenant has its own full burst (5, 2 used)");
}

#[test]
fn per_user_limit_is_per_user_and_bounded_by_tenant() {
    let (rl, clock) = fake();
    let l = TenantRateLimit { user_requests_per_second: Some(1.0), user_burst: Some(2), ..limits(1.0, 5) };
    assert_eq!(admitted(&rl, "acme", "alice", &l, 2), 2);
    let e = rl.admit("acme", "alice", &l).unwrap_err();
    assert_eq!(e.reason(), "rate_limited");
    assert_eq!(retry_after(e), Duration::from_secs(1));
    // alice's refusal took nothing from the tenant: 3 of its 5 cells remain.
    assert_eq!(admitted(&rl, "acme", "bob", &l, 5), 2, "bob has his own user limit");
    assert_eq!(admitted(&rl, "acme", "carol", &l, 1), 1);
    // Tenant burst (5) now spent: dave is within his user limit but not the tenant's.
    let e = rl.admit("acme", "dave", &l).unwrap_err();
    assert_eq!(e.reason(), "rate_limited");
    assert_eq!(retry_after(e), Duration::from_secs(1));
    // Same user name in another tenant is another key.
    assert_eq!(admitted(&rl, "globex", "alice", &l, 3), 2);
    clock.advance(Duration::from_secs(1));
    assert!(rl.admit("acme", "alice", &l).is_ok());
}

#[test]
fn user_key_cannot_collide_across_tenant_boundaries() {
    let (rl, _) = fake();
    let l = TenantRateLimit { user_requests_per_second: Some(1.0), user_burst: Some(1), ..limits(100.0, 100) };
    assert!(rl.admit("ab", "c", &l).is_ok());
    assert!(rl.admit("a", "bc", &l).is_ok(), "(a, bc) is not (ab, c)");
    let long = "u".repeat(500); // past the stack buffer
    assert!(rl.admit("ab", &long, &l).is_ok());
    assert!(rl.admit("ab", &long, &l).is_err());
}

#[test]
fn concurrency_limit_then_drop_frees_a_slot() {
    let (rl, _) = fake();
    let l = TenantRateLimit { max_concurrent: 3, ..limits(1000.0, 1000) };
    let mut permits: Vec<_> = (0..3).map(|_| rl.admit("acme", "u", &l).unwrap()).collect();
    let e = rl.admit("acme", "u", &l).unwrap_err();
    assert_eq!(e.reason(), "concurrency_limited");
    assert!(matches!(e, ProxyError::ConcurrencyLimited));
    permits.pop();
    let again = rl.admit("acme", "u", &l).expect("a dropped permit frees its slot");
    assert!(rl.admit("acme", "u", &l).is_err());
    drop(again);
    drop(permits);
    assert_eq!(admitted(&rl, "acme", "u", &l, 3), 3);
}

#[test]
fn concurrency_refusal_consumes_no_rate_cell() {
    let (rl, _) = fake();
    let l = TenantRateLimit { max_concurrent: 1, user_requests_per_second: Some(1.0), user_burst: Some(3), ..limits(1.0, 3) };
    let p = rl.admit("acme", "u", &l).unwrap();
    for _ in 0..20 {
        assert_eq!(rl.admit("acme", "u", &l).unwrap_err().reason(), "concurrency_limited");
    }
    drop(p);
    assert_eq!(admitted(&rl, "acme", "u", &l, 5), 2, "burst 3 minus the one admitted");
}

#[test]
fn rate_refusal_gives_the_concurrency_slot_back() {
    let (rl, _) = fake();
    let l = TenantRateLimit { max_concurrent: 1, ..limits(1.0, 1) };
    assert!(rl.admit("acme", "u", &l).is_ok());
    for _ in 0..5 {
        assert_eq!(rl.admit("acme", "u", &l).unwrap_err().reason(), "rate_limited");
    }
    assert_eq!(rl.core.tenants.get_or_make(b"acme", 0, |_| true, |_| unreachable!()).in_flight.load(Ordering::SeqCst), 0);
}

#[test]
fn token_budget_debt_refuses_with_retry_after_and_refills() {
    let (rl, clock) = fake();
    let l = TenantRateLimit { tokens_per_minute: 600, ..limits(1000.0, 1000) }; // 10 tokens/s
    let p = rl.admit("acme", "u", &l).unwrap();
    p.charge_tokens(900); // balance 600 - 900 = -300
    drop(p);
    let e = rl.admit("acme", "u", &l).unwrap_err();
    assert_eq!(e.reason(), "token_budget_exhausted");
    assert_eq!(retry_after(e), Duration::from_secs(30) + Duration::from_nanos(1), "-300 at 10/s: positive just after 30 s");

    clock.advance(Duration::from_secs(30)); // balance exactly 0: not above zero
    assert_eq!(rl.admit("acme", "u", &l).unwrap_err().reason(), "token_budget_exhausted");
    clock.advance(Duration::from_millis(100)); // balance 1
    let p = rl.admit("acme", "u", &l).expect("admitted once the balance is above zero");
    p.charge_tokens(1);
    assert!(rl.admit("acme", "u", &l).is_err(), "balance 0 again");

    // Refill caps at the capacity: after a long idle only 600 tokens are there.
    clock.advance(Duration::from_secs(3600));
    let p = rl.admit("acme", "u", &l).unwrap();
    p.charge_tokens(599);
    let p = rl.admit("acme", "u", &l).expect("1 token left");
    p.charge_tokens(1);
    let e = rl.admit("acme", "u", &l).unwrap_err();
    assert_eq!(retry_after(e), Duration::from_nanos(1), "balance exactly 0: positive at once (header says 1 s)");
}

#[test]
fn token_budget_zero_is_unlimited() {
    let (rl, _) = fake();
    let l = limits(1000.0, 1000); // tokens_per_minute = 0
    for _ in 0..3 {
        rl.admit("acme", "u", &l).unwrap().charge_tokens(u64::MAX);
    }
    assert!(rl.admit("acme", "u", &l).is_ok());
}

#[test]
fn changed_limits_rebuild_state_unchanged_limits_keep_it() {
    let (rl, _) = fake();
    let l = TenantRateLimit { max_concurrent: 2, tokens_per_minute: 100, ..limits(1.0, 2) };
    let held = rl.admit("acme", "u", &l).unwrap();
    held.charge_tokens(500);
    // Reload with equal values (a new struct): state kept.
    let same = l.clone();
    assert_eq!(rl.admit("acme", "u", &same).unwrap_err().reason(), "token_budget_exhausted");

    // Only the rate changes: budget debt is kept.
    let faster = TenantRateLimit { requests_per_second: 5.0, ..l.clone() };
    assert_eq!(rl.admit("acme", "u", &faster).unwrap_err().reason(), "token_budget_exhausted");

    // Budget changes: fresh full budget; the rate GCRA (unchanged since
    // `faster`) keeps its state and the in-flight count is carried over.
    let more_tokens = TenantRateLimit { tokens_per_minute: 1000, ..faster.clone() };
    let second = rl.admit("acme", "u", &more_tokens).expect("new budget starts full");
    assert_eq!(rl.admit("acme", "u", &more_tokens).unwrap_err().reason(), "concurrency_limited", "held + second = 2");

    // Rate rebuilt by `faster` had burst 2 and one cell used by `second`.
    drop(second);
    assert!(rl.admit("acme", "u", &more_tokens).is_ok());
    assert_eq!(rl.admit("acme", "u", &more_tokens).unwrap_err().reason(), "rate_limited");

    // Raising max_concurrent counts the permit still held from before.
    let wider = TenantRateLimit { max_concurrent: 3, burst: 10, ..more_tokens.clone() };
    let a = rl.admit("acme", "u", &wider).unwrap();
    let b = rl.admit("acme", "u", &wider).unwrap();
    assert_eq!(rl.admit("acme", "u", &wider).unwrap_err().reason(), "concurrency_limited");
    drop((a, b, held));
}

#[test]
fn changed_user_limits_rebuild_user_state() {
    let (rl, _) = fake();
    let l = TenantRateLimit { user_requests_per_second: Some(1.0), user_burst: Some(1), ..limits(100.0, 100) };
    assert!(rl.admit("acme", "alice", &l).is_ok());
    assert!(rl.admit("acme", "alice", &l).is_err());
    assert!(rl.admit("acme", "alice", &l.clone()).is_err(), "unchanged: still spent");
    let l2 = TenantRateLimit { user_burst: Some(2), ..l };
    assert_eq!(admitted(&rl, "acme", "alice", &l2, 3), 2, "new user quota starts full");
}

#[test]
fn memory_is_bounded_and_idle_entries_are_evicted_first() {
    let clock = Clock::fake();
    let rl = RateLimiter::sized(clock.clone(), 1, 4, 4);
    let l = TenantRateLimit { user_requests_per_second: Some(1.0), user_burst: Some(1), ..limits(1.0, 1) };
    for i in 0..4 {
        assert!(rl.admit(&format!("t{i}"), "u", &l).is_ok());
    }
    assert_eq!(rl.tracked(), (4, 4));
    // t0 is active (refused, so recently seen); the others become idle.
    clock.advance(Duration::from_secs(10));
    assert!(rl.admit("t0", "u", &l).is_ok());
    assert!(rl.admit("t0", "u", &l).is_err());
    // A new tenant sweeps the three at-rest entries, keeps t0's spent state.
    assert!(rl.admit("t4", "u", &l).is_ok());
    assert_eq!(rl.tracked(), (2, 2));
    assert!(rl.admit("t0", "u", &l).is_err(), "t0 not evicted: its state was not at rest");

    // Nothing at rest: many new tenants never grow the table past its bound.
    for i in 5..100 {
        assert!(rl.admit(&format!("t{i}"), "u", &l).is_ok());
    }
    let (t, u) = rl.tracked();
    assert!(t <= 4 && u <= 4, "bounded: {t} tenants, {u} users");
}

#[test]
fn entries_in_flight_are_never_evicted() {
    let clock = Clock::fake();
    let rl = RateLimiter::sized(clock.clone(), 1, 2, 2);
    let l = TenantRateLimit { max_concurrent: 1, ..limits(1000.0, 1000) };
    let held = rl.admit("busy", "u", &l).unwrap();
    clock.advance(Duration::from_secs(100));
    for i in 0..10 {
        assert!(rl.admit(&format!("t{i}"), "u", &l).is_ok());
    }
    assert_eq!(rl.admit("busy", "u", &l).unwrap_err().reason(), "concurrency_limited");
    drop(held);
    assert!(rl.admit("busy", "u", &l).is_ok());
}

#[test]
fn full_table_evicts_least_recent_then_sweeps_idle() {
    let clock = Clock::fake();
    let rl = RateLimiter::sized(clock.clone(), 1, 1, 1);
    let l = TenantRateLimit { tokens_per_minute: 60, ..limits(1.0, 2) };
    rl.admit("a", "u", &l).unwrap().charge_tokens(30);
    assert!(rl.admit("a", "u", &l).is_ok());
    assert!(rl.admit("b", "u", &l).is_ok()); // a is not at rest: LRU-evicted (bound 1)
    clock.advance(Duration::from_secs(3600));
    assert!(rl.admit("a", "u", &l).is_ok()); // b at rest: swept
    assert_eq!(rl.tracked().0, 1);
}

#[test]
fn permit_is_send_sync_and_limiter_is_shared() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Permit>();
    assert_send_sync::<Arc<RateLimiter>>();
}

#[test]
fn real_clock_smoke() {
    let rl = RateLimiter::new();
    let l = limits(1.0, 2);
    assert_eq!(admitted(&rl, "acme", "u", &l, 3), 2);
    let wait = retry_after(rl.admit("acme", "u", &l).unwrap_err());
    assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1), "{wait:?}");
}

/// `cargo test --release --lib ratelimit::tests::admit_cost -- --ignored --nocapture`
#[test]
#[ignore = "micro-benchmark; run in release"]
fn admit_cost_on_a_warm_key() {
    let rl = RateLimiter::new();
    let plain = TenantRateLimit { tokens_per_minute: 1 << 50, ..limits(1e9, 1_000_000) };
    let with_user = TenantRateLimit { user_requests_per_second: Some(1e9), user_burst: Some(1_000_000), ..plain.clone() };
    for (name, l) in [("tenant only", &plain), ("tenant + user", &with_user)] {
        for t in 0..1000 {
            let _ = rl.admit(&format!("tenant-{t}"), "user-1", l);
        }
        let n = 2_000_000;
        let start = Instant::now();
        for i in 0..n {
            let p = rl.admit("tenant-7", "user-1", l).unwrap();
            if i % 64 == 0 {
                p.charge_tokens(10);
            }
        }
        let per = start.elapsed() / n;
        println!("admit ({name}, warm key, permit dropped): {per:?}");
    }
}

#[test]
fn parallel_admits_never_exceed_burst_or_concurrency() {
    let (rl, _) = fake();
    let rate = TenantRateLimit { user_requests_per_second: Some(1.0), user_burst: Some(60), ..limits(1.0, 100) };
    let conc = TenantRateLimit { max_concurrent: 10, ..limits(1e6, 1_000_000) };
    let (by_rate, by_user, by_conc) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let rl = &rl;
                let (rate, conc) = (&rate, &conc);
                s.spawn(move || {
                    let r = admitted(rl, "rate", "shared", rate, 50);
                    let u = admitted(rl, "user", &format!("u{}", i % 2), rate, 50);
                    let held: Vec<_> = (0..50).filter_map(|_| rl.admit("conc", "u", conc).ok()).collect();
                    (r, u, held)
                })
            })
            .collect();
        let mut totals = (0, 0, Vec::new());
        for w in workers {
            let (r, u, held) = w.join().unwrap();
            totals.0 += r;
            totals.1 += u;
            totals.2.extend(held);
        }
        totals
    });
    assert_eq!(by_rate, 60, "user burst bounds the single shared user");
    assert_eq!(by_user, 100, "two users of 60 each, bounded by the tenant's 100");
    assert_eq!(by_conc.len(), 10);
}

#[test]
fn entry_sizes_match_the_documented_bound() {
    use std::mem::size_of;
    // Entry + Arc header, plus for tenants the Arc'd GCRA, budget and
    // in-flight count; plus the boxed key (tenant id <= 64 B, user id ~32 B)
    // and its map slot (16 B key + 8 B value, with slack).
    let tenant = size_of::<TenantEntry<Local>>() + 16 + size_of::<local::Gcra>() + 16 + 16 + 16 + 4 + 16 + 64 + 32;
    let user = size_of::<UserEntry<Local>>() + 16 + 4 + 64 + 32 + 32;
    println!("tenant entry ~{tenant} B, user entry ~{user} B (incl. Arc headers, key, map slot)");
    assert!(tenant <= 350 && user <= 250, "update the module docs: {tenant} / {user}");
}
