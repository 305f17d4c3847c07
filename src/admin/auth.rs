//! Bearer-token guard for the TCP admin listener.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

/// Who an authenticated TCP request came from: the admin token's name (its
/// file's name), so the history says which token moved a topic.
#[derive(Clone, Debug)]
pub struct Caller(pub String);

/// Wraps `router` so every request needs `Authorization: Bearer <secret>`,
/// except `/metrics` when `metrics_public`; an authenticated request
/// carries [`Caller`] `token_name`.
///
/// A browser opening the console cannot send the header on navigation, so
/// `GET /` and `/console` without it are refused (401) with the page as the
/// body: the page holds no data and shows only its login form, which keeps
/// the token in `sessionStorage` and sends it on every API request.
pub fn protect(router: Router, secret: String, token_name: String, metrics_public: bool) -> Router {
    router.layer(middleware::from_fn(
        move |mut request: Request, next: Next| {
            let allowed = (metrics_public && request.uri().path() == "/metrics")
                || bearer(&request).is_some_and(|given| {
                    equal_in_constant_time(given.as_bytes(), secret.as_bytes())
                });
            let console =
                request.method() == Method::GET && matches!(request.uri().path(), "/" | "/console");
            if allowed {
                request
                    .extensions_mut()
                    .insert(Caller(format!("token {token_name}")));
            }
            async move {
                if allowed {
                    next.run(request).await
                } else if console {
                    let mut page = super::console::page_response();
                    *page.status_mut() = StatusCode::UNAUTHORIZED;
                    page.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    page
                } else {
                    unauthorized()
                }
            }
        },
    ))
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Comparison time does not depend on where the first difference is.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({"error": "missing or wrong bearer token"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::equal_in_constant_time;

    #[test]
    fn tokens_compare_exactly() {
        assert!(equal_in_constant_time(b"secret", b"secret"));
        assert!(!equal_in_constant_time(b"secret", b"secreT"));
        assert!(!equal_in_constant_time(b"secret", b"secret2"));
    }
}
