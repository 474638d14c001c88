//! Prometheus metrics in the text exposition format, kept with atomics and one small
//! map (no metrics dependency).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the decision-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// The gatekeeper's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency_counts: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    audit_failures: AtomicU64,
}

impl Metrics {
    /// Counts one decided request.
    pub fn record(
        &self,
        operation: &str,
        decision: &'static str,
        code: &'static str,
        latency_us: u64,
    ) {
        let op = match operation {
            "GET" | "HEAD" | "PUT" | "LIST" | "AUDIT" => operation.to_owned(),
            _ => "OTHER".to_owned(),
        };
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((op, decision, code)).or_default() += 1;
        }
        let secs = latency_us as f64 / 1e6;
        for (bound, counter) in LATENCY_BUCKETS.iter().zip(&self.latency_counts) {
            if secs <= *bound {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
    }

    /// Counts stored bytes.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts served bytes.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a failed audit write (a request refused to fail closed).
    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP countersign_requests_total Requests decided, by operation, decision and error code.\n");
        out.push_str("# TYPE countersign_requests_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((op, decision, code), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "countersign_requests_total{{operation=\"{op}\",decision=\"{decision}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP countersign_bytes_in_total Object bytes stored.\n# TYPE countersign_bytes_in_total counter\ncountersign_bytes_in_total {}",
            load(&self.bytes_in)
        );
        let _ = writeln!(
            out,
            "# HELP countersign_bytes_out_total Object bytes served.\n# TYPE countersign_bytes_out_total counter\ncountersign_bytes_out_total {}",
            load(&self.bytes_out)
        );
        let _ = writeln!(
            out,
            "# HELP countersign_audit_failures_total Requests refused because the audit log could not be written.\n# TYPE countersign_audit_failures_total counter\ncountersign_audit_failures_total {}",
            load(&self.audit_failures)
        );
        out.push_str("# HELP countersign_decision_seconds Time from arrival to decision.\n# TYPE countersign_decision_seconds histogram\n");
        for (bound, counter) in LATENCY_BUCKETS.iter().zip(&self.latency_counts) {
            let _ = writeln!(
                out,
                "countersign_decision_seconds_bucket{{le=\"{bound}\"}} {}",
                load(counter)
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "countersign_decision_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "countersign_decision_seconds_sum {}",
            load(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "countersign_decision_seconds_count {count}");
        out
    }
}
