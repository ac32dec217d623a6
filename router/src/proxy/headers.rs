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

/// Stamps `req` and returns its ids.
pub fn stamp(req: &mut RequestHeader, client_ip: Option<IpAddr>) -> Result<Ids> {
    let request_id = match req.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => {
            let id = access_log::new_request_id();
            req.insert_header(REQUEST_ID, &id)?;
            id
        }
    };
    let trace_id = match req
        .headers
        .get(TRACEPARENT)
        .and_then(|v| access_log::trace_id_of(v.as_bytes()))
    {
        Some(trace) => trace.to_string(),
        None => {
            let (tp, trace) = access_log::new_traceparent();
            req.insert_header(TRACEPARENT, &tp)?;
            trace
        }
    };
    if let Some(ip) = client_ip {
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
