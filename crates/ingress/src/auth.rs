//! Bearer-token authentication per account.

use actix_web::HttpRequest;
use actix_web::http::header;
use roster_db::Reads;

use crate::IngressState;
use crate::response::ApiError;

/// Authenticates the request for `account`, reading the token through `db` (the ingress's
/// reads, or a read handler's session); returns the token id (the event's actor).
///
/// A missing token, an unknown, revoked or expired token, and a token of another account all
/// answer the same 401, so a caller learns nothing about other accounts.
pub async fn authenticate<R: Reads>(
    req: &HttpRequest,
    state: &IngressState,
    db: &R,
    account: &str,
) -> Result<String, ApiError> {
    let secret = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or(ApiError::Unauthorized)?;
    match roster_store::accounts::authenticate(db, account, secret).await? {
        Some(token_id) => {
            state.usage.touch(&token_id);
            state.limiter.check_rate(account).map_err(ApiError::RateLimited)?;
            Ok(token_id)
        }
        None => Err(ApiError::Unauthorized),
    }
}
