//! API keys on requests: `Authorization: Bearer <key>`, checked against the database on every
//! request so a revoked key stops working at once.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use super::problem::ApiError;
use super::AppState;
use crate::db;
use crate::domain::key::{self, Scope};

/// The key a request was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub scope: Scope,
}

impl Principal {
    /// A write key changes only the signals it created; an admin key changes any.
    pub fn may_change(&self, created_by: Option<Uuid>) -> Result<(), ApiError> {
        if self.scope >= Scope::Admin || created_by == Some(self.key_id) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this signal was created by another key; only that key or an admin key may change it".into(),
            ))
        }
    }
}

/// A caller allowed to read: anyone while reads are public, else a key with the read scope.
/// A key that is sent is always checked, so a wrong key is never silently ignored.
pub struct Reader(#[allow(dead_code)] pub Option<Principal>);

/// A caller with a key of the write scope (or admin).
pub struct Writer(pub Principal);

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let public = state(&req)?.public_read;
            match authenticate(&req).await? {
                Some(p) => Ok(Reader(Some(p))),
                None if public => Ok(Reader(None)),
                None => Err(ApiError::Unauthorized(
                    "reads need an API key here: Authorization: Bearer <key>".into(),
                )),
            }
        })
    }
}

/// A caller with an admin key (webhook subscriptions).
pub struct Admin(#[allow(dead_code)] pub Principal);

/// The principal of a request whose key has at least `scope`: 401 without a key, 403 with one
/// of a lower scope.
async fn with_scope(req: &HttpRequest, scope: Scope, what: &str) -> Result<Principal, ApiError> {
    let principal = authenticate(req).await?.ok_or_else(|| {
        ApiError::Unauthorized(format!(
            "{what} need an API key: Authorization: Bearer <key>"
        ))
    })?;
    if principal.scope < scope {
        return Err(ApiError::Forbidden(format!(
            "this key has the {} scope; {scope} is needed",
            principal.scope
        )));
    }
    Ok(principal)
}

impl FromRequest for Writer {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { with_scope(&req, Scope::Write, "writes").await.map(Writer) })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            with_scope(&req, Scope::Admin, "webhook subscriptions")
                .await
                .map(Admin)
        })
    }
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("application state is missing".into()))
}

/// What authenticating a request found, kept with the request: the rate limiter looks the key
/// up before the handler runs (a key is charged only once it has authenticated), and the
/// handler's extractor then uses what it found rather than looking again.
#[derive(Clone)]
struct Authenticated(Result<Option<Principal>, ApiError>);

/// The principal of the request's bearer key; `None` when no Authorization header was sent.
/// The key is looked up once per request.
pub async fn authenticate(req: &HttpRequest) -> Result<Option<Principal>, ApiError> {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    if let Some(Authenticated(found)) = req.extensions().get::<Authenticated>().cloned() {
        return found;
    }
    let found = look_up(req).await;
    req.extensions_mut().insert(Authenticated(found.clone()));
    found
}

async fn look_up(req: &HttpRequest) -> Result<Option<Principal>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || ApiError::Unauthorized("the API key is missing, unknown or revoked".into());
    let value = value.to_str().map_err(|_| invalid())?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(ApiError::Unauthorized(
                "use the Bearer scheme: Authorization: Bearer <key>".into(),
            ))
        }
    };
    let (prefix, secret) = key::split(token).ok_or_else(invalid)?;
    let state = state(req)?;
    let mut conn = db::conn(&state.pool).await?;
    let row = db::keys::find_active(&mut conn, prefix)
        .await?
        .ok_or_else(invalid)?;
    if !key::constant_time_eq(&key::hash_secret(secret), &row.secret_hash) {
        return Err(invalid());
    }
    db::keys::touch(&mut conn, &row).await?;
    Ok(Some(Principal {
        key_id: row.id,
        scope: row.scope(),
    }))
}
