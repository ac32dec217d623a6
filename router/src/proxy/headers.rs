//! What the proxy stamps on every request before it goes upstream: a
//! request id and W3C trace context (kept when the client sent valid ones,
//! created when not) and the client's address appended to
//! `X-Forwarded-For`. Done before shadow planning, so a shadow copy
//! carries the same ids as the request it copies.

use std::net::IpAddr;

use pingora_error::Result;
use pingora_http::RequestHeader;

use crate::access_log;

const REQUEST_ID: &str = "x-request-id";
const TRACEPARENT: &str = "traceparent";

/// The ids a request travels with.
pub struct Ids {
    pub request_id: String,
    pub trace_id: String,
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy;
/// then, reading `X-Forwarded-For` from the right, the first address that
/// is not trusted (nginx's `real_ip_recursive on`); when every one is, the
/// leftmost. An entry that is not an address ends the walk there.
pub fn real_client(
    peer: Option<IpAddr>,
    xff: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for hop in xff.unwrap_or("").rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// Stamps `req` and returns its ids.
/// `peer` (the connection's address) is appended to `X-Forwarded-For`.
/// With `span` (tracing on), the request's own server span becomes the
/// parent named in `traceparent`.
pub fn stamp(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    span: Option<&opentelemetry::trace::SpanContext>,
) -> Result<Ids> {
    let request_id = match req.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => {
            let id = access_log::new_request_id();
            req.insert_header(REQUEST_ID, &id)?;
            id
        }
    };
    let trace_id = match (
        span,
        req.headers
            .get(TRACEPARENT)
            .and_then(|v| access_log::trace_id_of(v.as_bytes())),
    ) {
        (Some(span), _) => {
            req.insert_header(TRACEPARENT, crate::traces::traceparent(span))?;
            span.trace_id().to_string()
        }
        (None, Some(trace)) => trace.to_string(),
        (None, None) => {
            let (tp, trace) = access_log::new_traceparent();
            req.insert_header(TRACEPARENT, &tp)?;
            trace
        }
    };
    if let Some(ip) = peer {
        let xff = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        };
        req.insert_header("x-forwarded-for", xff)?;
    }
    Ok(Ids {
        request_id,
        trace_id,
    })
}

#[cfg(test)]
mod tests {
    use super::real_client;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_client_is_the_last_untrusted_hop_behind_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net"),
        ];
        let t = &trusted;
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            real_client(Some(ip("203.0.113.9")), Some("1.2.3.4"), t),
            Some(ip("203.0.113.9"))
        );
        // Behind a trusted balancer: the last address it saw.
        assert_eq!(
            real_client(Some(ip("10.1.1.1")), Some("198.51.100.7"), t),
            Some(ip("198.51.100.7"))
        );
        // A client's own forged entry on the left is not believed.
        assert_eq!(
            real_client(
                Some(ip("10.1.1.1")),
                Some("6.6.6.6, 198.51.100.7, 10.2.2.2"),
                t
            ),
            Some(ip("198.51.100.7"))
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            real_client(Some(ip("::1")), Some("10.9.9.9, 10.2.2.2"), t),
            Some(ip("10.9.9.9"))
        );
        // No header, or garbage: the trusted peer itself, or the last good hop.
        assert_eq!(
            real_client(Some(ip("10.1.1.1")), None, t),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(
            real_client(Some(ip("10.1.1.1")), Some("junk, 10.3.3.3"), t),
            Some(ip("10.3.3.3"))
        );
        // Nothing trusted: the peer.
        assert_eq!(
            real_client(Some(ip("10.1.1.1")), Some("198.51.100.7"), &[]),
            Some(ip("10.1.1.1"))
        );
    }
}

/// The body length a request declares (`Content-Length`), if it does.
pub fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
