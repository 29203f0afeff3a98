//! STS counters read at scrape time from the running credential provider,
//! kept monotonic across reloads (`tenantgate_sts_requests_total`,
//! `tenantgate_credentials_cached`).

use crate::aws::credentials::CredentialProvider;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

/// Where STS counters are read from: the credential provider (a fake in
/// tests). `([ok, error, timeout], cached sessions)`.
pub trait StsSource: Send + Sync + 'static {
    fn sts_counts(&self) -> ([u64; 3], u64);
}

impl StsSource for CredentialProvider {
    fn sts_counts(&self) -> ([u64; 3], u64) {
        match self.sts_stats() {
            Some((s, cached)) => (
                [
                    s.fetch_ok.load(Ordering::Relaxed),
                    s.fetch_error.load(Ordering::Relaxed),
                    s.fetch_timeout.load(Ordering::Relaxed),
                ],
                cached as u64,
            ),
            None => ([0; 3], 0),
        }
    }
}

/// STS totals across every credential provider the process has run: a
/// reload builds a new provider whose counters start at zero, so the
/// exported counters add up what each provider counted while it lived
/// (tracked by a `Weak`, forgotten once the last request using it ends).
pub(super) struct StsTotals<P: ?Sized = CredentialProvider> {
    /// ok, error, timeout.
    pub(super) total: [u64; 3],
    pub(super) cached: u64,
    pub(super) tracked: Vec<Tracked<P>>,
}

impl<P: ?Sized> Default for StsTotals<P> {
    fn default() -> Self {
        StsTotals { total: [0; 3], cached: 0, tracked: Vec::new() }
    }
}

pub(super) struct Tracked<P: ?Sized> {
    provider: Weak<P>,
    seen: [u64; 3],
}

impl<P: StsSource + ?Sized> StsTotals<P> {
    /// Folds what every tracked provider counted since the last look into
    /// the totals; starts tracking `current`; forgets providers gone. With
    /// `set_cached`, `current` is the running one and gives the gauge.
    pub(super) fn sync(&mut self, current: Option<&Arc<P>>, set_cached: bool) {
        if let Some(c) = current {
            if !self.tracked.iter().any(|t| std::ptr::addr_eq(t.provider.as_ptr(), Arc::as_ptr(c))) {
                self.tracked.push(Tracked { provider: Arc::downgrade(c), seen: [0; 3] });
            }
        }
        let total = &mut self.total;
        self.tracked.retain_mut(|t| {
            let Some(p) = t.provider.upgrade() else { return false };
            let (now, _) = p.sts_counts();
            for i in 0..3 {
                total[i] += now[i].saturating_sub(t.seen[i]);
                t.seen[i] = t.seen[i].max(now[i]);
            }
            true
        });
        if set_cached {
            self.cached = current.map(|c| c.sts_counts().1).unwrap_or(0);
        }
    }
}

/// Scrape-time families: `tenantgate_sts_requests_total{result}` and
/// `tenantgate_credentials_cached`.
pub(super) struct StsCollector(pub(super) Arc<Mutex<StsTotals>>);

impl std::fmt::Debug for StsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StsCollector")
    }
}

impl Collector for StsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (total, cached) = {
            let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
            (t.total, t.cached)
        };
        let mut m = encoder.encode_descriptor(
            "tenantgate_sts_requests",
            "STS AssumeRole calls by result (ok, error, timeout).",
            None,
            MetricType::Counter,
        )?;
        for (result, v) in ["ok", "error", "timeout"].into_iter().zip(total) {
            let labels = [("result", result)];
            ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
        }
        let m = encoder.encode_descriptor(
            "tenantgate_credentials_cached",
            "Tenant STS sessions held in the credentials cache.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(cached as i64).encode(m)?;
        Ok(())
    }
}
