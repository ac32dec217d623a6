//! The routing decision: a pure function of the compiled table and the
//! request, unit-tested without sockets. The Pingora service only wires it.

pub mod sticky;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Method};
use strangler_config::{PathTemplate, Route, Stage, Sticky};

use crate::shadow::RouteShadow;
use strangler_state::route_state::{Effective, Origin};

/// Index of an upstream in the routing snapshot; [`LEGACY_ID`] is the monolith.
pub type UpstreamId = usize;

/// The monolith's upstream id.
pub const LEGACY_ID: UpstreamId = 0;

/// Route name used in metrics and logs for requests no route matches.
pub const DEFAULT_ROUTE: &str = "default";

/// One route, compiled: its stage and percent are the effective ones (file or
/// run-time override).
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    pub name: Arc<str>,
    /// Empty: every method.
    pub methods: Vec<Method>,
    pub template: PathTemplate,
    pub service: Option<UpstreamId>,
    pub stage: Stage,
    pub percent: f64,
    pub sticky: Sticky,
    pub fallback: bool,
    pub origin: Origin,
    /// Position in the config file (for ties and for listing).
    pub file_index: usize,
    /// When the route's stored state last changed (0 without a row): the
    /// state its usage counts are made under.
    pub state_ms: i64,
    /// Shadow settings and compiled comparison rules.
    pub shadow: RouteShadow,
    /// Its rate limit, if it has one (`limits.rs`).
    pub rate_limit: Option<Arc<crate::limits::RouteLimiter>>,
    /// How long its upstream connections may stay without a byte read
    /// (`None`: the upstream's read timeout).
    pub idle_timeout: Option<std::time::Duration>,
    /// The upstream must start answering within this of the request's
    /// arrival.
    pub timeout: Option<std::time::Duration>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: Option<u64>,
    /// Its retry budget (`limits.rs`); set when the table is built.
    pub retry_budget: Option<Arc<crate::limits::RouteBudget>>,
}

impl CompiledRoute {
    /// Compiles a config route with its effective state.
    pub fn new(
        route: &Route,
        file_index: usize,
        service: Option<UpstreamId>,
        effective: Effective,
        shadow: RouteShadow,
    ) -> Self {
        CompiledRoute {
            name: Arc::from(route.name.as_str()),
            methods: route
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            template: route.path.clone(),
            service,
            stage: effective.stage,
            percent: effective.percent,
            sticky: route.sticky.clone(),
            fallback: route.fallback,
            origin: effective.origin,
            file_index,
            state_ms: 0,
            shadow,
            rate_limit: None,
            idle_timeout: route.idle_timeout,
            timeout: route.timeout,
            max_body_bytes: route.max_body_bytes,
            retry_budget: None,
        }
    }

    fn matches(&self, method: &Method, path: &strangler_config::SplitPath<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.template.matches_split(path)
    }
}

/// Routes in precedence order: the first match is the most specific.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
}

/// A tester's forced target (the override header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    Legacy,
    Service,
}

impl Forced {
    /// Parses the override header's value (`legacy` or `service`).
    pub fn parse(value: &[u8]) -> Option<Forced> {
        if value.eq_ignore_ascii_case(b"legacy") {
            Some(Forced::Legacy)
        } else if value.eq_ignore_ascii_case(b"service") {
            Some(Forced::Service)
        } else {
            None
        }
    }
}

/// What the decision needs to know about a request.
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    /// URI path, without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub client_ip: Option<IpAddr>,
    /// A uniformly random bucket in `0..BUCKETS`, used when the route's
    /// sticky key is `none` or absent from the request.
    pub random_bucket: u32,
    pub forced: Option<Forced>,
}

/// Where a request goes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into [`RouteTable::routes`]; `None`: the default route.
    pub route: Option<usize>,
    pub target: UpstreamId,
    pub why: Why,
}

/// Why the decision went where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// No route matched: the monolith.
    Unmatched,
    /// The route's stage sends everything to this target (legacy, shadow, migrated).
    Stage,
    /// Canary: the user's bucket is below the percent.
    CanaryIn,
    /// Canary: the user's bucket is at or above the percent.
    CanaryOut,
    /// The override header chose.
    Forced,
    /// The service is marked down by health checks; the monolith answers.
    ServiceDown,
}

impl Why {
    /// As the access log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Unmatched => "unmatched",
            Why::Stage => "stage",
            Why::CanaryIn => "canary_in",
            Why::CanaryOut => "canary_out",
            Why::Forced => "forced",
            Why::ServiceDown => "service_down",
        }
    }
}

impl RouteTable {
    /// Orders `routes` by precedence: more specific template first, then
    /// routes naming methods before catch-all-method routes, then file order.
    pub fn new(mut routes: Vec<CompiledRoute>) -> Self {
        routes.sort_by(|a, b| {
            a.template
                .specificity_cmp(&b.template)
                .then_with(|| a.methods.is_empty().cmp(&b.methods.is_empty()))
                .then_with(|| a.file_index.cmp(&b.file_index))
        });
        RouteTable { routes }
    }

    /// Routes in precedence order.
    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// The route called `name`.
    pub fn find(&self, name: &str) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| &*r.name == name)
    }

    /// The most specific route matching the request.
    pub fn lookup(&self, method: &Method, path: &str) -> Option<usize> {
        // Split once: a table of 50 routes would split the path 50 times.
        let path = strangler_config::SplitPath::new(path);
        self.routes.iter().position(|r| r.matches(method, &path))
    }

    /// Decides where the request goes. `is_up` tells whether an upstream is
    /// healthy (always true for upstreams without health checks).
    pub fn decide(&self, req: &RequestInfo<'_>, is_up: impl Fn(UpstreamId) -> bool) -> Decision {
        let Some(index) = self.lookup(req.method, req.path) else {
            return Decision {
                route: None,
                target: LEGACY_ID,
                why: Why::Unmatched,
            };
        };
        let route = &self.routes[index];
        let decision = |target, why| Decision {
            route: Some(index),
            target,
            why,
        };
        let Some(service) = route.service else {
            return decision(LEGACY_ID, Why::Stage);
        };
        let (wants_service, why) = match req.forced {
            Some(Forced::Legacy) => (false, Why::Forced),
            Some(Forced::Service) => (true, Why::Forced),
            None => match route.stage {
                Stage::Legacy | Stage::Shadow => (false, Why::Stage),
                Stage::Migrated => (true, Why::Stage),
                Stage::Canary => {
                    let bucket = sticky::key(&route.sticky, req.headers, req.client_ip)
                        .map_or(req.random_bucket, |k| {
                            sticky::bucket(&route.name, k.as_bytes())
                        });
                    if sticky::on_service(bucket, route.percent) {
                        (true, Why::CanaryIn)
                    } else {
                        (false, Why::CanaryOut)
                    }
                }
            },
        };
        if !wants_service {
            return decision(LEGACY_ID, why);
        }
        if why != Why::Forced && route.fallback && !is_up(service) {
            return decision(LEGACY_ID, Why::ServiceDown);
        }
        decision(service, why)
    }
}

#[cfg(test)]
mod tests;
