//! Medians and percentiles of timings.

use std::time::Duration;

/// Summary of a sample of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: Duration,
    pub p90: Duration,
    pub min: Duration,
    pub runs: usize,
}

/// Summarises `xs` (must not be empty).
pub fn summarize(xs: &[Duration]) -> Summary {
    let mut v = xs.to_vec();
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Summary {
        median: at(0.5),
        p90: at(0.9),
        min: v[0],
        runs: v.len(),
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        let xs: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let s = summarize(&xs);
        assert_eq!(s.median, Duration::from_millis(6));
        assert_eq!(s.p90, Duration::from_millis(9));
        assert_eq!(s.min, Duration::from_millis(1));
    }
}
