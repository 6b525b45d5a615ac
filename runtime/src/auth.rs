//! API keys with scopes, shared by every HTTP service: bearer keys stored as SHA-256
//! hashes in PostgreSQL, a middleware that demands a scope, and the authenticated
//! principal for handlers. 401 for a missing, unknown or revoked key; 403 for a key
//! without the scope.

use std::{fmt, str::FromStr};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts, StatusCode},
    middleware::Next,
    response::Response,
};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::problem::problem;

/// Every key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "vk_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    AccountsWrite,
    InventoryWrite,
    OrdersWrite,
    Read,
    /// Staff: every scope, plus staff-only actions.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] =
        [Scope::AccountsWrite, Scope::InventoryWrite, Scope::OrdersWrite, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountsWrite => "accounts:write",
            Self::InventoryWrite => "inventory:write",
            Self::OrdersWrite => "orders:write",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}; scopes are {}", Self::ALL.map(Scope::as_str).join(", ")))
    }
}

/// Who is calling: the key's id and name, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// How events record who acted.
    pub fn actor(&self) -> String {
        format!("key:{}", self.name)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The key store.
#[derive(Clone)]
pub struct ApiKeys {
    pool: PgPool,
}

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

impl ApiKeys {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a key; returns its id and the key itself, which is never shown again.
    pub async fn create(&self, name: &str, scopes: &[Scope]) -> Result<(Uuid, String), sqlx::Error> {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let key = format!("{KEY_PREFIX}{}", secret.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let id = Uuid::now_v7();
        let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        sqlx::query("INSERT INTO api_keys (id, name, key_hash, scopes) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(hash(&key))
            .bind(&scopes)
            .execute(&self.pool)
            .await?;
        Ok((id, key))
    }

    pub async fn list(&self) -> Result<Vec<ApiKeyInfo>, sqlx::Error> {
        sqlx::query_as("SELECT id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
    }

    /// Revokes a key; false when no live key has that id.
    pub async fn revoke(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes every live key with this name; returns how many.
    pub async fn revoke_named(&self, name: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The principal behind a presented key, if the key is known and live.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Principal>, sqlx::Error> {
        if !key.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let row: Option<(Uuid, String, Vec<String>)> =
            sqlx::query_as("SELECT id, name, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                .bind(hash(key))
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(key_id, name, scopes)| Principal {
            key_id,
            name,
            scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
        }))
    }
}

/// Middleware: `from_fn_with_state((keys, Scope::OrdersWrite), require_scope)`. Puts
/// the [`Principal`] into the request for handlers.
pub async fn require_scope(State((keys, scope)): State<(ApiKeys, Scope)>, request: Request, next: Next) -> Response {
    authorize(&keys, std::slice::from_ref(&scope), request, next).await
}

/// Middleware for an endpoint whose scope depends on the request (a bulk import needs
/// the scope of what it imports, and checks it itself): a key with any of `scopes`
/// passes.
pub async fn require_any_scope(
    State((keys, scopes)): State<(ApiKeys, &'static [Scope])>,
    request: Request,
    next: Next,
) -> Response {
    authorize(&keys, scopes, request, next).await
}

async fn authorize(keys: &ApiKeys, scopes: &[Scope], mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthenticated",
            "An API key is required",
            "send Authorization: Bearer <API key>".into(),
        );
    };
    let principal = match keys.authenticate(presented).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "/problems/unauthenticated",
                "The API key is not valid",
                "the key is unknown or revoked".into(),
            )
        }
        Err(error) => {
            tracing::error!(%error, "cannot check an API key");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "/problems/unavailable",
                "Authentication is unavailable",
                "retry later".into(),
            );
        }
    };
    if !scopes.iter().any(|scope| principal.has(*scope)) {
        let names: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        return problem(
            StatusCode::FORBIDDEN,
            "/problems/forbidden",
            "The API key lacks a scope",
            format!("this endpoint needs the {} scope", names.join(" or ")),
        );
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            problem(
                StatusCode::UNAUTHORIZED,
                "/problems/unauthenticated",
                "An API key is required",
                "no principal".into(),
            )
        })
    }
}
