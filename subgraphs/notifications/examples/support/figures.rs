//! Figures the benchmark commands print.

#![allow(dead_code)]

use std::time::Duration;

/// The value at fraction `p` (0..=1) of `sorted`; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `p50 …, p95 …, max …` of `samples` (sorted here), in milliseconds.
pub fn spread(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ms(percentile(samples, 0.50)),
        ms(percentile(samples, 0.95)),
        ms(percentile(samples, 1.0)),
    )
}
