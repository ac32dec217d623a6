//! Per-route request counts of one minute, as the proxies merge them into
//! the store (`strangler_route_usage`).

/// Counts of one route in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub requests: u64,
    /// Requests the decision meant for the service (fallbacks included).
    pub service_requests: u64,
    /// Of those: 5xx from the service, or failures that made the monolith answer.
    pub service_errors: u64,
    pub fallbacks: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.service_requests += o.service_requests;
        self.service_errors += o.service_errors;
        self.fallbacks += o.fallbacks;
    }

    /// Service errors per request meant for the service (0 when none).
    pub fn error_rate(&self) -> f64 {
        if self.service_requests == 0 {
            0.0
        } else {
            self.service_errors as f64 / self.service_requests as f64
        }
    }

    pub fn fallback_rate(&self) -> f64 {
        if self.service_requests == 0 {
            0.0
        } else {
            self.fallbacks as f64 / self.service_requests as f64
        }
    }
}
