//! What a run prints and writes as JSON.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::target::{ReadConsistency, Target};

/// Latency figures in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// From a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// The histogram every run records latencies (nanoseconds) in.
pub fn new_histogram() -> Histogram<u64> {
    // 1 ns to 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub label: Option<String>,
    pub target: Target,
    pub workload: String,
    pub consistency: Option<ReadConsistency>,
    pub read_ratio: f64,
    pub clients: usize,
    pub conns: usize,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space: u64,
    pub reads: u64,
    pub writes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub cluster_pids: Vec<u32>,
    /// CPU seconds (user + system) all cluster processes used while measuring.
    pub cluster_cpu_s: Option<f64>,
    /// CPU seconds this load generator used meanwhile (it shares the machine).
    pub generator_cpu_s: Option<f64>,
    pub latency: Latency,
    /// Latency (ms) by percentile for plots, see [`crate::plot::curve_ms`].
    pub curve_ms: Vec<f64>,
    /// raftkv's counters over the run, summed over the nodes.
    pub server_counters: std::collections::BTreeMap<String, u64>,
}

impl Run {
    pub fn ops(&self) -> u64 {
        self.reads + self.writes
    }

    pub fn throughput_ops_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.ops() as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Cluster CPU microseconds per operation.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        let ops = self.ops();
        self.cluster_cpu_s
            .filter(|_| ops > 0)
            .map(|s| s * 1e6 / ops as f64)
    }

    pub fn title(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        let what = match (self.workload.as_str(), self.consistency) {
            ("put", _) => "put".to_string(),
            (w, Some(c)) => format!("{w} {c:?}").to_lowercase(),
            (w, None) => w.to_string(),
        };
        format!("{:?} {what}, {} clients", self.target, self.clients).to_lowercase()
    }

    pub fn summary(&self) -> String {
        let l = &self.latency;
        let cpu = match (self.cluster_cpu_s, self.cpu_us_per_op()) {
            (Some(s), Some(per)) => format!(
                "cluster CPU {s:.2} s ({per:.0} us/op, pids {:?})",
                self.cluster_pids
            ),
            _ => "cluster CPU unknown (no pids)".to_string(),
        };
        let gen = self
            .generator_cpu_s
            .map(|s| format!("; generator CPU {s:.2} s"))
            .unwrap_or_default();
        let errors = match &self.first_error {
            Some(e) => format!("{} errors (first: {e})", self.errors),
            None => "0 errors".to_string(),
        };
        format!(
            "{}: {} ops in {:.2} s = {:.0} ops/s; latency us: p50 {:.0} p90 {:.0} p99 {:.0} p99.9 {:.0} max {:.0} mean {:.0}; {cpu}{gen}; {errors}",
            self.title(),
            self.ops(),
            self.elapsed_s,
            self.throughput_ops_s(),
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            l.mean_us
        )
    }
}

impl Run {
    /// The run as JSON, with the derived figures added.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a Run serialises");
        let obj = v.as_object_mut().expect("a Run is an object");
        obj.insert("ops".into(), self.ops().into());
        obj.insert("throughput_ops_s".into(), self.throughput_ops_s().into());
        obj.insert("cpu_us_per_op".into(), self.cpu_us_per_op().into());
        obj.insert("title".into(), self.title().into());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let l = Latency::from_histogram(&h);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
    }
}
