//! OIDC bearer tokens: JWTs signed by a key of the identity provider's
//! JWKS (`proxy.oidc_jwks_url`), checked for expiry and, when configured,
//! issuer and audience. The identity is the `oidc_name_claim` (default
//! `sub`); the role the highest of `viewer`, `operator`, `approver` found
//! in the `oidc_roles_claim` (a string or a list; default `roles`).
//!
//! The key set is fetched at start, every ten minutes, and again (at most
//! every 30 s) when a token names a key id it does not hold, so a key
//! rotation at the provider needs no restart. Only asymmetric algorithms
//! are accepted (no `none`, no HMAC with a public key).

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use strangler_config::OidcConfig;

use super::auth::{Identity, Role};

/// How often the key set is fetched again on a miss.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// How often the key set is refreshed in the background.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);

/// The identity provider as the admin API sees it.
pub struct Oidc {
    config: OidcConfig,
    keys: RwLock<JwkSet>,
    /// When the key set was last fetched; held while fetching, so a request
    /// that misses a key waits for a fetch in flight instead of failing.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("jwks_url", &self.config.jwks_url)
            .finish()
    }
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Oidc {
        Oidc {
            config,
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            last_fetch: tokio::sync::Mutex::new(None),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Fetches the key set.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.last_fetch.lock().await;
        self.fetch(&mut last).await
    }

    /// Fetches the key set, the fetch lock held.
    async fn fetch(&self, last: &mut Option<Instant>) -> Result<usize, String> {
        *last = Some(Instant::now());
        let url = &self.config.jwks_url;
        let set: JwkSet = self
            .client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("JWKS {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("JWKS {url}: not a JWK set: {e}"))?;
        let n = set.keys.len();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
        Ok(n)
    }

    fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let jwk = match kid {
            Some(k) => keys.find(k),
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }?;
        DecodingKey::from_jwk(jwk).ok()
    }

    /// The identity a JWT carries, or why it is refused.
    pub async fn identify(&self, token: &str) -> Result<Identity, String> {
        let header = decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(format!("JWT algorithm {:?} is not accepted", header.alg));
        }
        let kid = header.kid.as_deref();
        let key = match self.key(kid) {
            Some(k) => k,
            None => {
                // Waits for a fetch in flight (the one at start, say).
                let mut last = self.last_fetch.lock().await;
                if self.key(kid).is_none()
                    && last.is_none_or(|t| t.elapsed() > REFETCH_AT_MOST_EVERY)
                {
                    if let Err(e) = self.fetch(&mut last).await {
                        tracing::warn!(error = %e, "cannot fetch the OIDC key set");
                    }
                }
                drop(last);
                self.key(kid)
                    .ok_or_else(|| format!("no key {:?} in the OIDC key set", kid.unwrap_or("")))?
            }
        };
        let mut v = Validation::new(header.alg);
        match &self.config.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.config.issuer {
            v.set_issuer(&[i]);
        }
        let claims = decode::<Value>(token, &key, &v)
            .map_err(|e| format!("JWT refused: {e}"))?
            .claims;
        let name = claims
            .get(&self.config.name_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("JWT has no {:?} claim", self.config.name_claim))?;
        let role = roles(claims.get(&self.config.roles_claim)).ok_or_else(|| {
            format!(
                "{name}: the JWT's {:?} claim names none of viewer, operator, approver",
                self.config.roles_claim
            )
        })?;
        Ok(Identity {
            name: name.to_string(),
            role,
        })
    }
}

/// The highest role a claim names.
fn roles(claim: Option<&Value>) -> Option<Role> {
    let names: Vec<&str> = match claim? {
        Value::String(s) => s.split_whitespace().collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    names
        .iter()
        .filter_map(|n| match *n {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "approver" => Some(Role::Approver),
            _ => None,
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_highest_named_role_wins() {
        assert_eq!(
            roles(Some(&json!(["viewer", "operator", "x"]))),
            Some(Role::Operator)
        );
        assert_eq!(roles(Some(&json!("approver viewer"))), Some(Role::Approver));
        assert_eq!(roles(Some(&json!(["admin"]))), None);
        assert_eq!(roles(None), None);
    }
}
