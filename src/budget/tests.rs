use super::*;

const LIMITS: BufferLimits = BufferLimits { total: 100, per_tenant: 60 };

#[test]
fn a_tenant_over_its_share_is_refused_and_another_admitted() {
    let b = Budget::new();
    let mut a1 = b.reservation("a");
    a1.grow(50, &LIMITS).unwrap();
    let mut a2 = b.reservation("a");
    // 50 + 20 > 60: the tenant's share, nothing charged.
    assert_eq!(a2.grow(20, &LIMITS), Err(Refused::TenantShare));
    assert_eq!(a2.bytes(), 0);
    assert_eq!(b.tenant_held("a"), 50);
    assert_eq!(b.held(), 50);
    // Another tenant is admitted up to what is left of the total.
    let mut other = b.reservation("b");
    other.grow(50, &LIMITS).unwrap();
    assert_eq!(b.held(), 100);
    // Both within their shares, the total taken: overloaded.
    assert_eq!(a2.grow(5, &LIMITS), Err(Refused::Total));
    assert_eq!(b.tenant_held("a"), 50, "a refused charge is undone for the tenant too");
    assert_eq!(ProxyError::from(Refused::TenantShare).reason(), "memory_limited");
    assert_eq!(ProxyError::from(Refused::Total).reason(), "overloaded");
}

#[test]
fn dropping_a_reservation_releases_its_bytes() {
    let b = Budget::new();
    {
        let mut r = b.reservation("a");
        r.grow(30, &LIMITS).unwrap();
        r.grow_to(60, &LIMITS).unwrap();
        assert_eq!(r.bytes(), 60);
        assert_eq!(r.grow(1, &LIMITS), Err(Refused::TenantShare));
        r.shrink_to(10);
        assert_eq!((b.held(), b.tenant_held("a")), (10, 10));
        r.grow_to(5, &LIMITS).unwrap();
        assert_eq!(r.bytes(), 10, "grow_to never shrinks");
    }
    assert_eq!((b.held(), b.tenant_held("a")), (0, 0));
    // The share is whole again.
    b.reservation("a").grow(60, &LIMITS).unwrap();
    assert_eq!(b.held(), 0);
}

#[test]
fn limits_are_those_of_each_charge() {
    let b = Budget::new();
    let mut r = b.reservation("a");
    r.grow(60, &LIMITS).unwrap();
    // A reload lowered the share: held bytes stay, new ones are refused.
    let lower = BufferLimits { total: 100, per_tenant: 40 };
    assert_eq!(r.grow(1, &lower), Err(Refused::TenantShare));
    assert_eq!(r.bytes(), 60);
    let mut r2 = b.reservation("b");
    assert_eq!(r2.grow(41, &lower), Err(Refused::TenantShare));
    r2.grow(40, &lower).unwrap();
}

#[test]
fn a_charge_near_u64_max_is_refused_not_wrapped() {
    let b = Budget::new();
    let max = BufferLimits { total: u64::MAX, per_tenant: u64::MAX };
    let mut r = b.reservation("a");
    r.grow(u64::MAX - 1, &max).unwrap();
    assert_eq!(b.reservation("a").grow(2, &max), Err(Refused::TenantShare));
    assert_eq!(b.reservation("b").grow(2, &max), Err(Refused::Total));
}

#[test]
fn idle_tenant_counters_are_pruned() {
    let b = Budget::new();
    let held = {
        let mut r = b.reservation("keeps-bytes");
        r.grow(1, &LIMITS).unwrap();
        r
    };
    for i in 0..3 * PRUNE_AT {
        drop(b.reservation(&format!("t{i}")));
    }
    assert!(b.tenants_tracked() <= PRUNE_AT + 1, "{}", b.tenants_tracked());
    // The counter in use survived, with its bytes.
    assert_eq!(b.tenant_held("keeps-bytes"), 1);
    drop(held);
    assert_eq!(b.held(), 0);
}

#[test]
fn concurrent_charges_never_pass_the_limits() {
    let b = Budget::new();
    let limits = BufferLimits { total: 1000, per_tenant: 600 };
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let b = b.clone();
            std::thread::spawn(move || {
                let tenant = if i % 2 == 0 { "a" } else { "b" };
                for _ in 0..2000 {
                    let mut r = b.reservation(tenant);
                    if r.grow(150, &limits).is_ok() {
                        assert!(b.held() <= 1000);
                        assert!(b.tenant_held(tenant) <= 600);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!((b.held(), b.tenant_held("a"), b.tenant_held("b")), (0, 0, 0));
}

/// The per-request cost of the budget on the hot path (one reservation,
/// three growths, the drop). Run with `cargo test --release --lib
/// budget_cost -- --ignored --nocapture`.
#[test]
#[ignore = "micro-benchmark; run in release"]
fn budget_cost() {
    let b = Budget::new();
    let limits = BufferLimits { total: 64 << 20, per_tenant: 32 << 20 };
    for t in 0..100 {
        drop(b.reservation(&format!("tenant{t}")));
    }
    let n = 1_000_000u32;
    let start = std::time::Instant::now();
    for i in 0..n {
        let mut r = b.reservation(["tenant1", "tenant2", "tenant3"][(i % 3) as usize]);
        r.grow(2000, &limits).unwrap();
        r.grow(4000, &limits).unwrap();
        r.shrink_to(2100);
        std::hint::black_box(&r);
    }
    let per = start.elapsed() / n;
    println!("budget: {per:?} per request (reservation, 2 growths, shrink, drop)");
}
