//! Request ids, W3C trace context and the JSON access log.
//!
//! Access-log lines go through a channel to one writer thread that batches
//! them into stdout, so no request waits on a write system call.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

/// One access-log line: what was asked, how it was routed, how it ended.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub client: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub stage: Option<&'a str>,
    /// Why the target was chosen (`stage`, `canary_in`, `forced`, …).
    pub decision: &'a str,
    pub target: &'a str,
    pub fallback: Option<&'a str>,
    pub status: u16,
    pub elapsed: std::time::Duration,
    pub error: Option<String>,
}

impl Entry<'_> {
    /// The JSON line.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "ts": strangler_state::store::rfc3339(strangler_state::store::now_ms()),
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "client": self.client.map(|ip| ip.to_string()),
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "stage": self.stage,
            "decision": self.decision,
            "target": self.target,
            "fallback": self.fallback,
            "status": self.status,
            "duration_ms": (self.elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "error": self.error,
        })
        .to_string()
    }
}

/// A new random request id (32 hex digits).
pub fn new_request_id() -> String {
    let mut id = String::with_capacity(32);
    push_hex(&mut id, fastrand::u64(..));
    push_hex(&mut id, fastrand::u64(..));
    id
}

/// Appends `v` as 16 lower-case hex digits (every request makes a few ids:
/// no formatting machinery).
fn push_hex(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((v >> (shift * 4)) & 0xf) as usize] as char);
    }
}

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id_of(traceparent: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(traceparent).ok()?;
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

/// A new `traceparent` (sampled) and its trace id.
pub fn new_traceparent() -> (String, String) {
    let mut tp = String::with_capacity(55);
    tp.push_str("00-");
    push_hex(&mut tp, fastrand::u64(1..));
    push_hex(&mut tp, fastrand::u64(..));
    tp.push('-');
    push_hex(&mut tp, fastrand::u64(1..));
    tp.push_str("-01");
    let trace = tp[3..35].to_string();
    (tp, trace)
}

/// Queues one access-log line (a JSON object, without newline). When the
/// writer falls behind by more than 64k lines, lines are dropped rather
/// than slowing requests down.
pub fn write_line(line: String) {
    static SENDER: OnceLock<SyncSender<String>> = OnceLock::new();
    let tx = SENDER.get_or_init(|| {
        let (tx, rx) = sync_channel(65_536);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx))
            .map_err(|e| tracing::error!(error = %e, "cannot start the access-log writer"))
            .ok();
        tx
    });
    if let Err(TrySendError::Full(_)) = tx.try_send(line) {
        tracing::warn!("access log is behind; a line was dropped");
    }
}

fn writer(rx: Receiver<String>) {
    let stdout = std::io::stdout();
    while let Ok(first) = rx.recv() {
        let mut out = stdout.lock();
        let mut write = |l: &str| writeln!(out, "{l}");
        let mut ok = write(&first).is_ok();
        while let Ok(next) = rx.try_recv() {
            ok &= write(&next).is_ok();
        }
        ok &= out.flush().is_ok();
        if !ok {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_validated() {
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            trace_id_of(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id_of(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of(b"garbage"), None);
        let (tp, trace) = new_traceparent();
        assert_eq!(trace_id_of(tp.as_bytes()), Some(trace.as_str()));
        assert_eq!(tp.len(), 55);
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let mut s = String::new();
        push_hex(&mut s, 0x0123_4567_89ab_cdef);
        assert_eq!(s, "0123456789abcdef");
        assert_eq!(new_request_id().len(), 32);
    }
}
