//! Shared by the example shop's monolith and extracted services: the JSON
//! error type, the response "noise" a real monolith has (`generated_at`,
//! `request_id`), id parsing, serving with graceful shutdown, and the
//! `serve --database-url --listen` command line.

mod error;
pub mod orders;
mod serve;

pub use error::{ApiError, ApiResult};
pub use serve::{connect, healthz, init_tracing, serve, shutdown_signal, ServeArgs};

use axum::extract::rejection::JsonRejection;
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Adds the noise every response body of the shop carries: when it was
/// generated and a fresh request id. Shadow comparison must learn to ignore
/// both.
pub fn with_noise(mut body: Value) -> Json<Value> {
    if let Value::Object(map) = &mut body {
        map.insert(
            "generated_at".into(),
            Value::String(chrono::Utc::now().to_rfc3339()),
        );
        map.insert(
            "request_id".into(),
            Value::String(format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                fastrand::u32(..),
                fastrand::u16(..),
                fastrand::u16(..0x1000),
                fastrand::u16(0x8000..0xc000),
                fastrand::u64(..1 << 48)
            )),
        );
    }
    Json(body)
}

/// A timestamp as every shop process writes it: RFC 3339, UTC, microseconds.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Parses a path id; a bad one is a 400 naming the parameter.
pub fn parse_id(name: &str, raw: &str) -> ApiResult<i64> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a positive integer, got {raw:?}"
        ))),
    }
}

/// A JSON body, with a 400/422 in the shop's error format when it is bad.
pub fn body<T: DeserializeOwned>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    match body {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::JsonDataError(e)) => Err(ApiError::unprocessable(e.body_text())),
        Err(e) => Err(ApiError::bad_request(e.body_text())),
    }
}

/// An integer query parameter within bounds, or the default.
pub fn int_param(
    q: &std::collections::HashMap<String, String>,
    name: &str,
    default: i64,
    min: i64,
    max: i64,
) -> ApiResult<i64> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "{name} must be an integer in {min}..={max}, got {v:?}"
            ))),
        },
    }
}
