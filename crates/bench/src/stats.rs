//! Percentiles from exact samples (a sorted `Vec`: a run records at most a few tens of
//! thousands of values, so no histogram approximation is needed) and the
//! median/min/max used across repetitions.

use serde::{Deserialize, Serialize};

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Summary {
    /// Summarises samples given in nanoseconds; `None` when there are none.
    pub fn from_nanos(mut samples: Vec<u64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let us = |ns: u64| round1(ns as f64 / 1000.0);
        let sum: u128 = samples.iter().map(|&v| u128::from(v)).sum();
        Some(Self {
            count: samples.len() as u64,
            min_us: us(samples[0]),
            mean_us: round1(sum as f64 / samples.len() as f64 / 1000.0),
            p50_us: us(percentile(&samples, 50.0)),
            p90_us: us(percentile(&samples, 90.0)),
            p99_us: us(percentile(&samples, 99.0)),
            max_us: us(samples[samples.len() - 1]),
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Rounds to one decimal.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Median, minimum and maximum of repeated measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

impl Spread {
    /// `None` when there are no values.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            values: values.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        let s = Summary::from_nanos(vec![3000, 1000, 2000]).unwrap();
        assert_eq!(s.p50_us, 2.0);
        assert_eq!(s.max_us, 3.0);
        assert_eq!(s.mean_us, 2.0);
        assert_eq!(Summary::from_nanos(Vec::new()), None);
    }

    #[test]
    fn spread() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0]).unwrap().median, 1.5);
        assert!(Spread::of(&[]).is_none());
    }
}
