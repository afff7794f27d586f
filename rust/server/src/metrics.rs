//! Counters for `/metrics` (Prometheus text format) and `/stats` (JSON).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub repos_open: AtomicU64,
    pub queue_bytes: AtomicU64,
    pub inbound_bytes: AtomicU64,
    pub pending_bytes: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub commits_accepted: AtomicU64,
    pub rejected_commits: AtomicU64,
    pub refused_handshakes: AtomicU64,
    pub forbidden_reads: AtomicU64,
    pub quota_refusals: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub resyncs: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    pub flush_micros_total: AtomicU64,
    pub flush_micros_max: AtomicU64,
    pub damaged_logs: AtomicU64,
    pub logins_sent: AtomicU64,
    pub login_failures: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn sub(c: &AtomicU64, n: u64) {
        c.fetch_sub(n, Relaxed);
    }

    pub fn flushed(&self, micros: u64) {
        Metrics::inc(&self.flushes);
        Metrics::add(&self.flush_micros_total, micros);
        self.flush_micros_max.fetch_max(micros, Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let g = |c: &AtomicU64| c.load(Relaxed);
        let rows: [(&str, &str, &str, u64); 22] = [
            ("ibex_connections", "gauge", "open connections", g(&self.connections)),
            ("ibex_connections_total", "counter", "connections accepted", g(&self.connections_total)),
            ("ibex_repositories_open", "gauge", "repositories open", g(&self.repos_open)),
            ("ibex_queue_bytes", "gauge", "bytes queued for sending, all connections", g(&self.queue_bytes)),
            ("ibex_inbound_bytes", "gauge", "bytes of received frames being processed", g(&self.inbound_bytes)),
            ("ibex_pending_bytes", "gauge", "bytes of commits waiting for unknown parents", g(&self.pending_bytes)),
            ("ibex_frames_in_total", "counter", "frames received", g(&self.frames_in)),
            ("ibex_frames_out_total", "counter", "frames sent", g(&self.frames_out)),
            ("ibex_commits_accepted_total", "counter", "commits accepted", g(&self.commits_accepted)),
            ("ibex_rejected_commits_total", "counter", "commits refused", g(&self.rejected_commits)),
            ("ibex_refused_handshakes_total", "counter", "handshakes refused", g(&self.refused_handshakes)),
            ("ibex_forbidden_reads_total", "counter", "reads refused by the rules", g(&self.forbidden_reads)),
            ("ibex_quota_refusals_total", "counter", "requests refused by a limit", g(&self.quota_refusals)),
            ("ibex_slow_disconnects_total", "counter", "connections closed for not reading", g(&self.slow_disconnects)),
            ("ibex_resyncs_total", "counter", "relays dropped for a slow reader (resync asked)", g(&self.resyncs)),
            ("ibex_flushes_total", "counter", "storage flushes", g(&self.flushes)),
            ("ibex_flush_failures_total", "counter", "storage flushes that failed", g(&self.flush_failures)),
            ("ibex_flush_seconds_total", "counter", "time spent flushing", g(&self.flush_micros_total)),
            ("ibex_flush_seconds_max", "gauge", "longest flush", g(&self.flush_micros_max)),
            ("ibex_damaged_logs_total", "counter", "damaged logs found (set aside or repaired)", g(&self.damaged_logs)),
            ("ibex_logins_sent_total", "counter", "login links sent", g(&self.logins_sent)),
            ("ibex_login_failures_total", "counter", "login links that could not be sent", g(&self.login_failures)),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in rows {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            if name.contains("seconds") {
                out.push_str(&format!("{name} {}\n", v as f64 / 1e6));
            } else {
                out.push_str(&format!("{name} {v}\n"));
            }
        }
        out
    }

    /// The security counters, as JSON (`/stats`).
    pub fn json(&self) -> String {
        let g = |c: &AtomicU64| c.load(Relaxed);
        format!(
            "{{\"rejectedCommits\":{},\"refusedHandshakes\":{},\"forbiddenReads\":{},\"quotaRefusals\":{},\"connections\":{},\"repositoriesOpen\":{},\"pendingBytes\":{},\"queueBytes\":{}}}",
            g(&self.rejected_commits),
            g(&self.refused_handshakes),
            g(&self.forbidden_reads),
            g(&self.quota_refusals),
            g(&self.connections),
            g(&self.repos_open),
            g(&self.pending_bytes),
            g(&self.queue_bytes)
        )
    }
}
