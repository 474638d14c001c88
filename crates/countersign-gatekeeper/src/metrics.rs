//! Prometheus metrics in the text exposition format (version 0.0.4), kept with
//! atomics and two small maps: no metrics dependency, the exposition is a few
//! `writeln!`s (`docs/API.md`, "Metrics", lists every series).
//!
//! Every label value is bounded: operations are a fixed set, buckets are the
//! configured ones (anything else is counted under `bucket=""`), error codes are
//! [`ErrorCode`]s, and the denied client networks are capped at
//! [`MAX_DENIED_NETWORKS`] series (later networks are counted under
//! `network="other"`), so an attacker cannot grow the scrape without bound.

use countersign_core::ErrorCode;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the decision-latency histogram buckets.
const DECISION_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Upper bounds (seconds) of the audit-append latency histogram buckets: a group
/// commit takes about a millisecond; the database deadline (default 3 s) is below
/// the top bucket.
const APPEND_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Most distinct client networks counted by `countersign_denied_by_network_total`; denials from
/// further networks are counted under `network="other"` (until the process restarts).
pub const MAX_DENIED_NETWORKS: usize = 1000;

/// A cumulative histogram of durations.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe_us(&self, us: u64) {
        let secs = us as f64 / 1e6;
        for (bound, counter) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *bound {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, counter) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The labels of one decision series.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DecisionLabels {
    operation: &'static str,
    bucket: String,
    decision: &'static str,
    code: &'static str,
}

/// The audit log's progress, read from the database at scrape time (so that every
/// instance sharing a database reports the same values, whichever one integrates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogProgress {
    /// Entries appended (the next sequence number).
    pub entries: u64,
    /// The tree size of the newest signed checkpoint (0 without one).
    pub checkpoint_size: u64,
    /// When the newest entry that checkpoint covers was appended (Unix ms).
    pub checkpoint_newest_ms: Option<u64>,
    /// When the oldest entry no checkpoint covers yet was appended (Unix ms).
    pub oldest_unintegrated_ms: Option<u64>,
    /// With witnesses configured, when the newest checkpoint with a full quorum got
    /// its quorum (the time of its quorum-th newest cosignature, Unix ms), `None`
    /// inside if no checkpoint has a quorum yet; `None` without witnesses.
    pub witness_quorum_ms: Option<Option<u64>>,
}

/// The gatekeeper's counters.
#[derive(Debug)]
pub struct Metrics {
    decisions: Mutex<BTreeMap<DecisionLabels, u64>>,
    denied_networks: Mutex<BTreeMap<String, u64>>,
    /// Denials by code, in [`ErrorCode::ALL`]'s order: every code is exported from
    /// the start (at 0), so an alert sees the very first one (`increase()` cannot
    /// see the first value of a series that appears only when it is 1).
    denied_codes: Vec<AtomicU64>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    decision_latency: Histogram,
    append_latency: Histogram,
    audit_failures: AtomicU64,
    checkpoint_publish_failures: AtomicU64,
    checkpoint_published_size: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            decisions: Mutex::default(),
            denied_networks: Mutex::default(),
            denied_codes: ErrorCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            decision_latency: Histogram::new(&DECISION_BUCKETS),
            append_latency: Histogram::new(&APPEND_BUCKETS),
            audit_failures: AtomicU64::new(0),
            checkpoint_publish_failures: AtomicU64::new(0),
            checkpoint_published_size: AtomicU64::new(0),
        }
    }
}

/// The network a client address is counted under: its /24 (IPv4) or /64 (IPv6).
pub fn client_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::MAX >> 64);
            format!("{}/64", std::net::Ipv6Addr::from(bits))
        }
    }
}

impl Metrics {
    /// Counts one decided request. `bucket` must be a configured bucket's name (or
    /// `audit`, or empty): never a name taken from an unverified request. A denial
    /// the client caused (any code answered with a 4xx status) is also counted
    /// under the client's network.
    pub fn record(
        &self,
        operation: &str,
        bucket: &str,
        code: Option<ErrorCode>,
        client: IpAddr,
        latency_us: u64,
    ) {
        let operation = match operation {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "PUT" => "PUT",
            "LIST" => "LIST",
            "AUDIT" => "AUDIT",
            _ => "OTHER",
        };
        let labels = DecisionLabels {
            operation,
            bucket: bucket.to_owned(),
            decision: if code.is_some() { "deny" } else { "allow" },
            code: code.map_or("", ErrorCode::as_str),
        };
        if let Ok(mut map) = self.decisions.lock() {
            *map.entry(labels).or_default() += 1;
        }
        if let Some(counter) = code
            .and_then(|c| ErrorCode::ALL.iter().position(|a| *a == c))
            .and_then(|i| self.denied_codes.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(code) = code
            && crate::error::status_of(code).is_client_error()
            && let Ok(mut map) = self.denied_networks.lock()
        {
            let network = client_network(client);
            if map.contains_key(&network) || map.len() < MAX_DENIED_NETWORKS {
                *map.entry(network).or_default() += 1;
            } else {
                *map.entry("other".to_owned()).or_default() += 1;
            }
        }
        self.decision_latency.observe_us(latency_us);
    }

    /// Times one audit append (successful or not).
    pub fn audit_append(&self, latency_us: u64) {
        self.append_latency.observe_us(latency_us);
    }

    /// Counts stored bytes.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts served bytes.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a failed audit append (its request was refused: fail closed).
    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed round of publishing checkpoints to `[log.publish_bucket]`.
    pub fn checkpoint_publish_failure(&self) {
        self.checkpoint_publish_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records the largest tree size published to `[log.publish_bucket]`.
    pub fn checkpoint_published(&self, size: u64) {
        self.checkpoint_published_size
            .fetch_max(size, Ordering::Relaxed);
    }

    /// The text exposition. `progress` is the audit log's state read from the
    /// database now (`None`: it could not be read, and `countersign_audit_log_up` is
    /// 0); `now_ms` is the current Unix time in milliseconds.
    pub fn render(&self, progress: Option<&LogProgress>, now_ms: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP countersign_requests_total Requests decided, by operation, bucket, decision and error code.\n# TYPE countersign_requests_total counter\n");
        if let Ok(map) = self.decisions.lock() {
            for (l, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "countersign_requests_total{{operation=\"{}\",bucket=\"{}\",decision=\"{}\",code=\"{}\"}} {n}",
                    l.operation, l.bucket, l.decision, l.code
                );
            }
        }
        out.push_str("# HELP countersign_denied_total Requests denied, by error code (every code is present from the start).\n# TYPE countersign_denied_total counter\n");
        for (code, n) in ErrorCode::ALL.iter().zip(&self.denied_codes) {
            let _ = writeln!(
                out,
                "countersign_denied_total{{code=\"{}\"}} {}",
                code.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP countersign_denied_by_network_total Requests denied for a reason the client caused (4xx), by client network (/24 for IPv4, /64 for IPv6; at most {MAX_DENIED_NETWORKS} networks, then \"other\").\n# TYPE countersign_denied_by_network_total counter"
        );
        if let Ok(map) = self.denied_networks.lock() {
            for (network, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "countersign_denied_by_network_total{{network=\"{network}\"}} {n}"
                );
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "countersign_bytes_in_total",
            "Object bytes stored.",
            load(&self.bytes_in),
        );
        counter(
            "countersign_bytes_out_total",
            "Object bytes served.",
            load(&self.bytes_out),
        );
        counter(
            "countersign_audit_failures_total",
            "Audit appends that failed (each refused its request: fail closed).",
            load(&self.audit_failures),
        );
        counter(
            "countersign_checkpoint_publish_failures_total",
            "Rounds of publishing checkpoints to the checkpoint bucket that failed (retried at the next tick).",
            load(&self.checkpoint_publish_failures),
        );
        let _ = writeln!(
            out,
            "# HELP countersign_checkpoint_published_size Tree size of the newest checkpoint in the checkpoint bucket (0 before the first or without a bucket).\n# TYPE countersign_checkpoint_published_size gauge\ncountersign_checkpoint_published_size {}",
            load(&self.checkpoint_published_size)
        );
        self.decision_latency.render(
            &mut out,
            "countersign_decision_seconds",
            "Time from arrival to decision.",
        );
        self.append_latency.render(
            &mut out,
            "countersign_audit_append_seconds",
            "Time to append a request's audit entry durably (group commit included).",
        );
        render_progress(&mut out, progress, now_ms);
        out
    }
}

fn render_progress(out: &mut String, progress: Option<&LogProgress>, now_ms: u64) {
    let mut gauge = |name: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "countersign_audit_log_up",
        "1 if the audit log's state could be read from the database for this scrape, else 0.",
        &u8::from(progress.is_some()),
    );
    let Some(p) = progress else {
        return;
    };
    let age = |ms: Option<u64>| ms.map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1e3);
    gauge(
        "countersign_audit_entries",
        "Entries appended to the audit log.",
        &p.entries,
    );
    gauge(
        "countersign_checkpoint_size",
        "Entries covered by the newest signed checkpoint.",
        &p.checkpoint_size,
    );
    gauge(
        "countersign_integration_lag_entries",
        "Entries appended but not yet covered by a signed checkpoint.",
        &p.entries.saturating_sub(p.checkpoint_size),
    );
    gauge(
        "countersign_integration_lag_seconds",
        "Age of the oldest entry not yet covered by a signed checkpoint (0 when every entry is).",
        &age(p.oldest_unintegrated_ms),
    );
    gauge(
        "countersign_checkpoint_age_seconds",
        "Seconds since the newest entry covered by the newest signed checkpoint was appended: an upper bound of the checkpoint's age (0 without a checkpoint; it grows while the log is idle, since checkpoints are signed only over new entries).",
        &age(p.checkpoint_newest_ms),
    );
    if let Some(quorum) = p.witness_quorum_ms {
        gauge(
            "countersign_witness_cosignature_age_seconds",
            "Age of the newest checkpoint with a full witness quorum, from the time of its quorum-th newest cosignature (witnesses re-cosign an unchanged checkpoint every 10 minutes); NaN until a checkpoint has a quorum, absent without witnesses.",
            &quorum.map_or(f64::NAN, |t| now_ms.saturating_sub(t) as f64 / 1e3),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        assert_eq!(
            client_network("203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            client_network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn denied_networks_are_capped_and_server_failures_not_counted() {
        let m = Metrics::default();
        for i in 0..(MAX_DENIED_NETWORKS as u32 + 5) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from((10 << 24) | (i << 8) | 1));
            m.record("GET", "", Some(ErrorCode::IpDenied), ip, 10);
        }
        let local: IpAddr = "10.0.0.9".parse().unwrap();
        m.record("GET", "b", Some(ErrorCode::AuditUnavailable), local, 10);
        m.record("GET", "b", None, local, 10);
        let text = m.render(None, 0);
        let series = text
            .lines()
            .filter(|l| l.starts_with("countersign_denied_by_network_total{"))
            .count();
        assert_eq!(series, MAX_DENIED_NETWORKS + 1);
        assert!(text.contains("countersign_denied_by_network_total{network=\"other\"} 5\n"));
        assert!(text.contains("countersign_denied_by_network_total{network=\"10.0.0.0/24\"} 1\n"));
        assert!(text.contains(
            "countersign_requests_total{operation=\"GET\",bucket=\"b\",decision=\"deny\",code=\"audit_unavailable\"} 1\n"
        ));
        assert!(text.contains("countersign_audit_log_up 0\n"));
        assert!(text.contains("countersign_denied_total{code=\"ip_denied\"} 1005\n"));
        assert!(text.contains("countersign_denied_total{code=\"replayed\"} 0\n"));
        assert!(!text.contains("countersign_integration_lag_entries"));
        assert!(!text.contains("countersign_witness_cosignature_age_seconds"));
    }

    #[test]
    fn progress_gauges() {
        let m = Metrics::default();
        let p = LogProgress {
            entries: 10,
            checkpoint_size: 7,
            checkpoint_newest_ms: Some(1_000),
            oldest_unintegrated_ms: Some(4_500),
            witness_quorum_ms: None,
        };
        let text = m.render(Some(&p), 10_000);
        assert!(!text.contains("countersign_witness_cosignature_age_seconds"));
        let no_quorum = LogProgress {
            witness_quorum_ms: Some(None),
            ..p
        };
        assert!(
            m.render(Some(&no_quorum), 10_000)
                .contains("countersign_witness_cosignature_age_seconds NaN\n")
        );
        let p = LogProgress {
            witness_quorum_ms: Some(Some(2_500)),
            ..p
        };
        let text = m.render(Some(&p), 10_000);
        for line in [
            "countersign_audit_log_up 1",
            "countersign_integration_lag_entries 3",
            "countersign_integration_lag_seconds 5.5",
            "countersign_checkpoint_age_seconds 9",
            "countersign_checkpoint_size 7",
            "countersign_witness_cosignature_age_seconds 7.5",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}\n{text}");
        }
    }
}
