//! How much of the machine's CPU went to work other than the benchmark
//! during a measurement. On a shared machine (a developer's, CI's) that is
//! what makes figures slow and scattered; reporting it tells a reader which
//! figures to trust. Linux only (`/proc`); elsewhere nothing is reported.

use std::fs;

/// CPU time counters at one moment, in clock ticks.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// All CPUs' ticks, busy or idle.
    total: u64,
    /// Ticks not idle (including time the hypervisor stole).
    busy: u64,
    /// Ticks used by each of the benchmark's own processes, in the order
    /// they were given.
    per_process: Vec<u64>,
}

/// Clock ticks per second in `/proc` (`USER_HZ`): 100 on every Linux ABI.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

impl Sample {
    /// Reads the counters; `pids` are the benchmark's processes (this one
    /// and its servers).
    pub(crate) fn now(pids: &[u32]) -> Option<Sample> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = cpu
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already counted in user).
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        let per_process = pids
            .iter()
            .map(|&pid| process_ticks(pid).unwrap_or(0))
            .collect();
        Some(Sample {
            total,
            busy: total.saturating_sub(idle),
            per_process,
        })
    }

    /// The share (0 to 1) of all CPU time between `self` and `later` that
    /// went to other processes, the kernel's work for them, or the
    /// hypervisor.
    pub(crate) fn others_share(&self, later: &Sample) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        if total == 0 {
            return None;
        }
        let busy = later.busy.saturating_sub(self.busy);
        let own = self.used(later, |_| true) as u64;
        Some(busy.saturating_sub(own) as f64 / total as f64)
    }

    /// CPU seconds that the processes at the positions `which` selects used
    /// between `self` and `later`.
    pub(crate) fn cpu_seconds(&self, later: &Sample, which: impl Fn(usize) -> bool) -> f64 {
        self.used(later, which) / TICKS_PER_SECOND
    }

    fn used(&self, later: &Sample, which: impl Fn(usize) -> bool) -> f64 {
        self.per_process
            .iter()
            .zip(&later.per_process)
            .enumerate()
            .filter(|(i, _)| which(*i))
            .map(|(_, (b, a))| a.saturating_sub(*b) as f64)
            .sum()
    }
}

/// User plus system ticks of a process, all threads.
pub(crate) fn process_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields are
    // counted after its closing parenthesis, starting with the state (3rd).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The resident set size of a process (`VmRSS` in `/proc/<pid>/status`),
/// in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_counted_as_own() {
        let Some(before) = Sample::now(&[std::process::id()]) else {
            return; // not Linux
        };
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = Sample::now(&[std::process::id()]).expect("read once, reads again");
        let spun = before.cpu_seconds(&after, |_| true);
        assert!(spun > 0.05, "200 ms of spinning counted as {spun} s");
        let share = before.others_share(&after).expect("time passed");
        assert!((0.0..=1.0).contains(&share), "{share}");
    }

    #[test]
    fn this_process_has_a_resident_set() {
        if std::fs::metadata("/proc/self/status").is_err() {
            return; // not Linux
        }
        let kib = rss_kib(std::process::id()).expect("VmRSS of this process");
        // A test binary maps at least its code and a stack.
        assert!(kib > 100, "{kib} KiB");
    }
}
