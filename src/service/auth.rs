//! Access control: bearer tokens (kept only as SHA-256 hashes), roles that grant actions
//! and column tags, and the check every protected handler makes first.
//!
//! Tokens come from `[[service.tokens]]` (hashes) and from an environment variable
//! (`name:role:token`, hashed on load). A presented token is hashed and compared against
//! every configured hash in constant time. Denials are logged with the route, the reason
//! and (for 403) the token's name and role, never the token.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::project::ServiceSection;

use super::ServiceError;

/// What a role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    TriggerRuns,
    ReadRuns,
    ReadProducts,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::TriggerRuns => "trigger_runs",
            Action::ReadRuns => "read_runs",
            Action::ReadProducts => "read_products",
        }
    }
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "trigger_runs" => Action::TriggerRuns,
            "read_runs" => Action::ReadRuns,
            "read_products" => Action::ReadProducts,
            _ => return None,
        })
    }
}

/// The column tag that guards personal data.
pub(crate) const PII_TAG: &str = "pii";

/// A role: its actions and the column tags it may receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub actions: Vec<Action>,
    pub tags: Vec<String>,
}

impl Role {
    pub fn may_see_pii(&self) -> bool {
        self.tags.iter().any(|t| t == PII_TAG)
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

#[derive(Clone)]
struct Token {
    name: String,
    hash: [u8; 32],
    role: String,
}

/// Never the hash: a debug print of the configuration must not help guess a token.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("hash", &"(redacted)")
            .finish()
    }
}

/// A configuration problem in `[service]` (tokens or roles).
#[derive(Debug, thiserror::Error)]
#[error("[service] {key}: {reason}")]
pub struct AuthConfigError {
    pub key: String,
    pub reason: String,
}

/// The validated token and role table.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<Token>,
    roles: BTreeMap<String, Role>,
}

fn builtin_roles() -> BTreeMap<String, Role> {
    use Action::*;
    let mut m = BTreeMap::new();
    for (name, actions, tags) in [
        (
            "admin",
            vec![TriggerRuns, ReadRuns, ReadProducts],
            vec![PII_TAG],
        ),
        (
            "operator",
            vec![TriggerRuns, ReadRuns, ReadProducts],
            vec![],
        ),
        ("marketing", vec![ReadProducts], vec![]),
    ] {
        m.insert(
            name.to_string(),
            Role {
                name: name.into(),
                actions,
                tags: tags.into_iter().map(String::from).collect(),
            },
        );
    }
    m
}

/// Splits one `name:role:token` entry of the tokens variable. The error never quotes a
/// field: when the role is wrong the fields may be swapped and any of them may be the
/// token, so it names only the entry's position (and its name once the role is right).
fn parse_env_entry<'a>(
    entry: &'a str,
    roles: &BTreeMap<String, Role>,
) -> Result<(&'a str, &'a str, &'a str), String> {
    let known = roles.keys().cloned().collect::<Vec<_>>().join(", ");
    let fields: Vec<&str> = entry.trim().splitn(3, ':').collect();
    let [name, role, token] = fields[..] else {
        return Err(format!(
            "has {} of the 3 fields; write name:role:token (the entry is not shown: it may hold a token)",
            fields.len()
        ));
    };
    let (name, role) = (name.trim(), role.trim());
    if !roles.contains_key(role) {
        let hint = if roles.contains_key(token.trim()) || roles.contains_key(name) {
            "the fields look swapped: the role is the second field"
        } else {
            "the second field is not a role"
        };
        return Err(format!(
            "{hint}; write name:role:token with a role among {known} (the entry is not shown: it may hold a token)"
        ));
    }
    if name.is_empty() {
        return Err("the name (first field) is empty; write name:role:token".into());
    }
    if token.trim().is_empty() {
        return Err(format!(
            "({name:?}) has an empty token (third field); write name:role:token"
        ));
    }
    Ok((name, role, token.trim()))
}

/// The default environment variable with extra tokens.
pub const DEFAULT_TOKENS_ENV: &str = "C360_SERVICE_TOKENS";

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Auth {
    /// Validates `[service]` tokens and roles; `env_tokens` is the value of the tokens
    /// environment variable, if set.
    pub fn from_config(
        section: Option<&ServiceSection>,
        env_tokens: Option<&str>,
    ) -> Result<Auth, AuthConfigError> {
        let err = |key: String, reason: String| AuthConfigError { key, reason };
        let mut roles = builtin_roles();
        let empty = ServiceSection::default();
        let s = section.unwrap_or(&empty);
        for (i, r) in s.roles.iter().enumerate() {
            let mut actions = Vec::new();
            for a in &r.actions {
                actions.push(Action::parse(a).ok_or_else(|| {
                    err(
                        format!("roles[{i}].actions"),
                        format!("unknown action {a:?} (trigger_runs, read_runs, read_products)"),
                    )
                })?);
            }
            for t in &r.tags {
                if t != PII_TAG {
                    return Err(err(
                        format!("roles[{i}].tags"),
                        format!("unknown tag {t:?} (pii)"),
                    ));
                }
            }
            roles.insert(
                r.name.clone(),
                Role {
                    name: r.name.clone(),
                    actions,
                    tags: r.tags.clone(),
                },
            );
        }
        let mut tokens = Vec::new();
        for (i, t) in s.tokens.iter().enumerate() {
            let bytes = hex::decode(t.sha256.trim()).ok().filter(|b| b.len() == 32);
            let Some(bytes) = bytes else {
                return Err(err(
                    format!("tokens[{i}].sha256"),
                    "64 hex digits (echo -n TOKEN | sha256sum)".into(),
                ));
            };
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&bytes);
            if !roles.contains_key(&t.role) {
                // The value is not echoed: a token pasted into the wrong field must not
                // reach a log.
                let known = roles.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(err(
                    format!("tokens[{i}].role"),
                    format!("token {:?} names no known role (roles: {known})", t.name),
                ));
            }
            tokens.push(Token {
                name: t.name.clone(),
                hash,
                role: t.role.clone(),
            });
        }
        let env_name = s.tokens_env.as_deref().unwrap_or(DEFAULT_TOKENS_ENV);
        if let Some(v) = env_tokens {
            for (i, entry) in v.split(',').filter(|e| !e.trim().is_empty()).enumerate() {
                let (name, role, token) = parse_env_entry(entry, &roles)
                    .map_err(|reason| err(format!("{env_name} entry {}", i + 1), reason))?;
                tokens.push(Token {
                    name: name.into(),
                    hash: sha256(token.as_bytes()),
                    role: role.into(),
                });
            }
        }
        Ok(Auth { tokens, roles })
    }

    /// How many tokens are configured.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Finds the principal behind an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Option<Principal> {
        let token = header?.trim().strip_prefix("Bearer ")?.trim();
        if token.is_empty() {
            return None;
        }
        let h = sha256(token.as_bytes());
        // Compare against every hash (no early exit) so timing says nothing about which.
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if bool::from(t.hash.ct_eq(&h)) && found.is_none() {
                found = Some(t);
            }
        }
        let t = found?;
        let role = self.roles.get(&t.role)?.clone();
        Some(Principal {
            name: t.name.clone(),
            role,
        })
    }

    /// Authenticates and checks `action`; logs every denial (never the token).
    pub fn authorize(
        &self,
        header: Option<&str>,
        action: Action,
        route: &str,
    ) -> Result<Principal, ServiceError> {
        let Some(p) = self.authenticate(header) else {
            let reason = if header.is_some() {
                "unknown or malformed bearer token"
            } else {
                "no bearer token"
            };
            tracing::warn!(route, action = action.as_str(), reason, "denied: 401");
            return Err(ServiceError::Unauthorized);
        };
        if !p.role.actions.contains(&action) {
            tracing::warn!(
                route,
                action = action.as_str(),
                token_name = %p.name,
                role = %p.role.name,
                "denied: 403, the role does not grant the action"
            );
            return Err(ServiceError::Forbidden {
                role: p.role.name.clone(),
                action: action.as_str().into(),
            });
        }
        Ok(p)
    }
}

/// Column names that are PII: `product::PII_COLUMNS` and the Customer 360 contract's PII
/// columns, compared case-insensitively.
pub fn is_pii_column(name: &str) -> bool {
    let lc = name.to_ascii_lowercase();
    crate::product::PII_COLUMNS.contains(&lc.as_str())
        || crate::source::CONTRACT
            .iter()
            .flat_map(|t| t.columns.iter())
            .any(|c| c.pii && c.name == lc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::TokenSection;

    fn section() -> ServiceSection {
        ServiceSection {
            tokens: vec![TokenSection {
                name: "mkt".into(),
                sha256: hex::encode(sha256(b"s3cret")),
                role: "marketing".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn tokens_map_to_roles_and_actions() {
        let a = Auth::from_config(Some(&section()), Some("ops:operator:op-token")).unwrap();
        let p = a.authenticate(Some("Bearer s3cret")).unwrap();
        assert_eq!(
            (p.name.as_str(), p.role.name.as_str()),
            ("mkt", "marketing")
        );
        assert!(!p.role.may_see_pii());
        assert!(a.authenticate(Some("Bearer s3cre")).is_none());
        assert!(a.authenticate(Some("s3cret")).is_none());
        assert!(matches!(
            a.authorize(Some("Bearer s3cret"), Action::TriggerRuns, "/x"),
            Err(ServiceError::Forbidden { .. })
        ));
        assert!(a
            .authorize(Some("Bearer op-token"), Action::TriggerRuns, "/x")
            .is_ok());
        assert!(matches!(
            a.authorize(None, Action::ReadProducts, "/x"),
            Err(ServiceError::Unauthorized)
        ));
    }

    #[test]
    fn bad_config_is_refused() {
        let mut s = section();
        s.tokens[0].role = "SECRET123".into();
        let e = Auth::from_config(Some(&s), None).unwrap_err().to_string();
        assert_eq!(
            e,
            "[service] tokens[0].role: token \"mkt\" names no known role (roles: admin, marketing, operator)"
        );
        let mut s = section();
        s.tokens[0].sha256 = "abc".into();
        assert!(Auth::from_config(Some(&s), None).is_err());
        let e = Auth::from_config(None, Some("only-a-secret-token")).unwrap_err();
        assert!(!e.to_string().contains("only-a-secret-token"));
    }

    #[test]
    fn malformed_env_entries_never_show_the_token() {
        let cases = [
            (
                "me:SECRET123:admin",
                "C360_SERVICE_TOKENS entry 1: the fields look swapped",
            ),
            (
                "SECRET123:me:admin",
                "C360_SERVICE_TOKENS entry 1: the fields look swapped",
            ),
            (
                "ok:admin:t0k,me:SECRET123",
                "C360_SERVICE_TOKENS entry 2: has 2 of the 3 fields",
            ),
            (
                "me:SECRET123:x",
                "C360_SERVICE_TOKENS entry 1: the second field is not a role",
            ),
            (
                "me:admin:",
                "C360_SERVICE_TOKENS entry 1: (\"me\") has an empty token",
            ),
            (
                ":admin:SECRET123",
                "C360_SERVICE_TOKENS entry 1: the name (first field) is empty",
            ),
        ];
        for (v, want) in cases {
            let e = Auth::from_config(None, Some(v)).unwrap_err().to_string();
            assert!(e.contains(want), "{v}: {e}");
            assert!(!e.contains("SECRET123") && !e.contains("t0k"), "{v}: {e}");
        }
        let a = Auth::from_config(Some(&section()), Some(" me : admin : tok ")).unwrap();
        assert_eq!(a.authenticate(Some("Bearer tok")).unwrap().name, "me");
        let dbg = format!("{a:?}");
        assert!(dbg.contains("(redacted)"), "{dbg}");
        assert!(!dbg.contains(&hex::encode(sha256(b"tok"))), "{dbg}");
        assert!(!dbg.contains(&hex::encode(sha256(b"s3cret"))), "{dbg}");
    }

    #[test]
    fn pii_columns() {
        assert!(is_pii_column("Email"));
        assert!(!is_pii_column("churn_score"));
    }
}
