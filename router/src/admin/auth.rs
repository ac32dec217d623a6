//! Who calls the admin API, and what they may do.
//!
//! Credentials come from `proxy.admin_tokens_file` (named tokens with a
//! role, stored as SHA-256 digests), `proxy.admin_token_env` (one token,
//! role approver, named `admin-token`) and, with `proxy.oidc_jwks_url`,
//! JWTs from an identity provider (`oidc.rs`). Roles are ordered: a
//! `viewer` reads; an `operator` also sets, promotes, rolls back and
//! resumes; an `approver` also forces a move past failed gates. Without
//! any credential configured the API is open (loopback by default) and
//! every caller is `admin-api` with every role.
//!
//! ```toml
//! [[tokens]]
//! name = "alice"          # the actor the audit log records
//! role = "operator"       # viewer | operator | approver
//! sha256 = "9f86d0…"      # hex SHA-256 of the bearer token
//! ```

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use strangler_config::ProxyConfig;

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    role: Role,
    sha256: String,
}

/// The credentials the admin API accepts.
#[derive(Debug, Default)]
pub struct Credentials {
    tokens: Vec<([u8; 32], Identity)>,
    /// JWT bearer tokens from an identity provider.
    pub oidc: Option<std::sync::Arc<super::oidc::Oidc>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Credentials {
    /// `None` when the admin API is open (no credential configured).
    pub fn load(
        proxy: &ProxyConfig,
        env_token: Option<&str>,
    ) -> Result<Option<Credentials>, String> {
        let mut creds = Credentials::default();
        if let Some(path) = &proxy.admin_tokens_file {
            creds.tokens = read_file(path)?;
        }
        if let Some(t) = env_token {
            creds.tokens.push((
                digest(t),
                Identity {
                    name: "admin-token".into(),
                    role: Role::Approver,
                },
            ));
        }
        creds.oidc = proxy
            .oidc
            .clone()
            .map(|o| std::sync::Arc::new(super::oidc::Oidc::new(o)));
        Ok(
            (!creds.tokens.is_empty() || proxy.admin_tokens_file.is_some() || creds.oidc.is_some())
                .then_some(creds),
        )
    }

    /// The identity a bearer token belongs to: a named token, or a JWT
    /// from the identity provider; the error says why a JWT was refused.
    pub async fn identify(&self, bearer: &str) -> Result<Identity, String> {
        if let Some(id) = self.identify_token(bearer) {
            return Ok(id);
        }
        match &self.oidc {
            Some(o) if bearer.matches('.').count() == 2 => o.identify(bearer).await,
            _ => Err("unknown token".into()),
        }
    }

    /// The identity a named token belongs to.
    pub fn identify_token(&self, bearer: &str) -> Option<Identity> {
        let given = digest(bearer);
        // Compare every entry in full so timing does not tell which matched.
        let mut found = None;
        for (d, id) in &self.tokens {
            let same = d.iter().zip(&given).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
            if same && found.is_none() {
                found = Some(id.clone());
            }
        }
        found
    }
}

fn read_file(path: &Path) -> Result<Vec<([u8; 32], Identity)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("proxy.admin_tokens_file {}: {e}", path.display()))?;
    let file: TokensFile = toml::from_str(&text).map_err(|e| {
        format!(
            "proxy.admin_tokens_file {}: {}",
            path.display(),
            e.message()
        )
    })?;
    let mut out = Vec::new();
    for (i, t) in file.tokens.into_iter().enumerate() {
        let Some(d) = parse_hex(&t.sha256.to_ascii_lowercase()) else {
            return Err(format!(
                "proxy.admin_tokens_file {}: tokens[{i}] ({:?}): sha256 must be 64 hex digits (the SHA-256 of the token, e.g. `printf %s TOKEN | sha256sum`)",
                path.display(),
                t.name
            ));
        };
        if t.name.trim().is_empty() {
            return Err(format!(
                "proxy.admin_tokens_file {}: tokens[{i}]: name is empty",
                path.display()
            ));
        }
        out.push((
            d,
            Identity {
                name: t.name,
                role: t.role,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_identify_their_owner_and_role() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.toml");
        let hex: String = digest("s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(
            &path,
            format!("[[tokens]]\nname = \"vic\"\nrole = \"viewer\"\nsha256 = \"{hex}\"\n"),
        )
        .expect("write");
        let tokens = read_file(&path).expect("read");
        let creds = Credentials { tokens, oidc: None };
        assert_eq!(
            creds.identify_token("s3cret"),
            Some(Identity {
                name: "vic".into(),
                role: Role::Viewer
            })
        );
        assert_eq!(creds.identify_token("s3cret "), None);
        std::fs::write(
            &path,
            "[[tokens]]\nname = \"x\"\nrole = \"viewer\"\nsha256 = \"zz\"\n",
        )
        .expect("write");
        assert!(read_file(&path).unwrap_err().contains("tokens[0] (\"x\")"));
        std::fs::write(
            &path,
            "[[tokens]]\nname = \"x\"\nrole = \"boss\"\nsha256 = \"zz\"\n",
        )
        .expect("write");
        assert!(read_file(&path).unwrap_err().contains("boss"));
    }
}
