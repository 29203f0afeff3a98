//! The measurement schedule. Open loop: one-second slices interleaved across
//! the targets (in rotating order), so a burst of background load on a shared
//! machine lands on every target alike instead of on one target's tail. Then
//! one closed loop per target. Background load (CPU used by any other
//! process) is measured per target and reported next to its numbers.

use super::loadgen::{self, OpenLoop, OpenResult, Target};
use super::procs;
use super::report::Measured;
use std::time::{Duration, Instant};

pub struct Plan {
    pub secs: u64,
    pub rate: u32,
    pub conns: usize,
    pub quiet_wait: Duration,
}

/// A target and the pid whose CPU is counted (the proxy under test).
pub struct Subject {
    pub target: Target,
    pub cpu_pid: Option<u32>,
}

/// CPU time used by other processes over an interval: the machine's busy
/// time minus this process's and the proxy's.
struct Load {
    busy0: Option<u64>,
    mine0: Option<u64>,
    started: Instant,
}

impl Load {
    fn start() -> Load {
        Load {
            busy0: procs::machine_busy_us(),
            mine0: procs::cpu_us(std::process::id()),
            started: Instant::now(),
        }
    }

    /// (other processes' CPU µs, elapsed µs).
    fn stop(&self, proxy_us: u64) -> Option<(u64, u64)> {
        let busy = procs::machine_busy_us()?.checked_sub(self.busy0?)?;
        let mine = procs::cpu_us(std::process::id())?.checked_sub(self.mine0?)?;
        let other = busy.saturating_sub(mine).saturating_sub(proxy_us);
        Some((other, self.started.elapsed().as_micros() as u64))
    }
}

/// Waits (up to `max`) until other processes use under 10% of a core over
/// half a second, so a neighbour's build does not land in the measurement.
pub async fn wait_quiet(what: &str, max: Duration) {
    let start = Instant::now();
    loop {
        let load = Load::start();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some((other, elapsed)) = load.stop(0) else {
            return;
        };
        let share = other as f64 / elapsed.max(1) as f64;
        if share < 0.10 {
            return;
        }
        if start.elapsed() >= max {
            eprintln!(
                "bench: {what}: machine still busy ({:.0}% of a core used by others); going ahead",
                share * 100.0
            );
            return;
        }
        eprintln!(
            "bench: {what}: waiting for a quiet machine ({:.0}% of a core used by others)",
            share * 100.0
        );
    }
}

fn cpu(pid: Option<u32>) -> Option<u64> {
    pid.and_then(procs::cpu_us)
}

pub async fn measure_all(subjects: &[Subject], plan: &Plan) -> Vec<Measured> {
    let n = subjects.len();
    let slice = Duration::from_secs(1);
    let mut loops: Vec<OpenLoop> = subjects.iter().map(|s| OpenLoop::new(&s.target)).collect();
    let mut open = vec![OpenResult::default(); n];
    let mut open_cpu: Vec<Option<u64>> = subjects.iter().map(|s| s.cpu_pid.map(|_| 0)).collect();
    let mut other = vec![(0u64, 0u64); n];

    for l in &mut loops {
        l.run(plan.rate, slice, &mut OpenResult::default()).await; // warm-up
    }
    wait_quiet("open loop", plan.quiet_wait).await;
    eprintln!(
        "bench: open loop, {} req/s: {} one-second slices per target, interleaved",
        plan.rate, plan.secs
    );
    for round in 0..plan.secs as usize {
        for k in 0..n {
            let i = (k + round) % n;
            let (pid, cpu0, load) = (subjects[i].cpu_pid, cpu(subjects[i].cpu_pid), Load::start());
            loops[i].run(plan.rate, slice, &mut open[i]).await;
            let used = cpu(pid).zip(cpu0).map(|(b, a)| b - a);
            if let (Some(total), Some(u)) = (open_cpu[i].as_mut(), used) {
                *total += u;
            }
            if let Some((o, e)) = load.stop(used.unwrap_or(0)) {
                other[i].0 += o;
                other[i].1 += e;
            }
        }
    }
    drop(loops);

    let mut out = Vec::with_capacity(n);
    for (i, (subject, mut open)) in subjects.iter().zip(open).enumerate() {
        open.finish();
        let t = &subject.target;
        wait_quiet(t.name, plan.quiet_wait).await;
        eprintln!(
            "bench: {}: {} s closed loop, {} connections",
            t.name, plan.secs, plan.conns
        );
        let (load, proxy0) = (Load::start(), cpu(subject.cpu_pid));
        let mut edges = Vec::new();
        let secs = Duration::from_secs(plan.secs);
        let closed = loadgen::closed_loop(t, plan.conns, slice, secs, |_| {
            edges.push(cpu(subject.cpu_pid))
        })
        .await;
        let closed_cpu_us = match edges[..] {
            [Some(a), Some(b)] => Some(b - a),
            _ => None,
        };
        let proxy = cpu(subject.cpu_pid).zip(proxy0).map(|(b, a)| b - a);
        if let Some((o, e)) = load.stop(proxy.unwrap_or(0)) {
            other[i].0 += o;
            other[i].1 += e;
        }
        out.push(Measured {
            name: t.name,
            open,
            closed,
            closed_cpu_us,
            open_cpu_us: open_cpu[i],
            peak_rss_kb: subject.cpu_pid.and_then(|p| procs::status_kb(p, "VmHWM:")),
            background: (other[i].1 > 0).then(|| other[i].0 as f64 / other[i].1 as f64),
        });
    }
    out
}
