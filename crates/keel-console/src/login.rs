//! Logging a browser in: browsers cannot send bearer headers, so the console's login form takes
//! an API token (or a JWT), checks it with the server's `Authenticator` (the same check the gate
//! makes), and keeps it in an HttpOnly, SameSite=Strict cookie scoped to `/ui` (and Secure when
//! the server speaks TLS). keel-api's gate accepts that cookie as the credential of `/ui` paths
//! only, so the JSON API is never authorised by a cookie (no cross-site request forgery there).
//! The token is never logged nor written into a page.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;

use crate::html::{esc, page};
use crate::{COOKIE, Console, Tls, html_response, redirect};

/// A login form's body is a token and a path: anything longer is refused unread.
const MAX_FORM: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after logging in: a console path, nothing else (no open redirect).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/"))
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'') =>
        {
            n
        }
        _ => "/ui/",
    }
}

/// Whether a token can be held in a cookie as it is (keel tokens are `keel_` and hex; JWTs are
/// base64url and dots).
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 8192
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'='))
}

fn form_page(console: &Console, next: &str, error: Option<&str>) -> String {
    let mode = if console.auth_required {
        "This server requires a credential: paste an API token (<code>keel access token create NAME --scope view</code>; add <code>data:read</code> for the data pages)."
    } else {
        "<span class=\"badge warn\">auth off (loopback)</span> This server accepts requests without a credential, so the pages show without logging in. Log in to act as yourself (the data pages check your grants)."
    };
    let error = error
        .map(|e| format!(r#"<div class="alert bad" role="alert">{}</div>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<p class="hint">{mode}</p>{error}<form class="login" method="post" action="/ui/login">
<label for="token">API token</label><br><input id="token" name="token" type="password" autocomplete="off" required>
<input type="hidden" name="next" value="{next}"><p><button type="submit">Log in</button></p>
<p class="hint">The token is kept in a cookie for this site's <code>/ui</code> pages only, until you log out or close the browser.</p></form>"#,
        next = esc(next),
    );
    page("Log in", None, crate::DATA_PAGES, &body)
}

pub(crate) async fn form(State(console): State<Arc<Console>>, Query(q): Query<LoginQuery>) -> Response {
    html_response(200, form_page(&console, safe_next(q.next.as_deref()), None))
}

/// A cross-site form post is refused: when the browser says where the form came from, it must
/// be this server.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

pub(crate) async fn submit(
    State(console): State<Arc<Console>>,
    tls: Option<axum::extract::Extension<Tls>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !same_origin(&headers) {
        return html_response(
            403,
            form_page(
                &console,
                "/ui/",
                Some("this login form was posted from another site; log in from this server's own page"),
            ),
        );
    }
    let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => {
            return html_response(
                413,
                form_page(
                    &console,
                    "/ui/",
                    Some("the login form was larger than 16 KiB; paste only the token"),
                ),
            );
        }
    };
    let form: LoginForm = match serde_urlencoded::from_bytes(&bytes) {
        Ok(f) => f,
        Err(_) => {
            return html_response(
                400,
                form_page(
                    &console,
                    "/ui/",
                    Some("the login form needs a token field; paste an API token"),
                ),
            );
        }
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    let token = form.token.trim();
    if !cookie_safe(token) {
        return html_response(
            400,
            form_page(
                &console,
                &next,
                Some("that is not an API token (keel_… or a JWT); paste the token exactly"),
            ),
        );
    }
    let Some(auth) = &console.auth else {
        return html_response(
            400,
            form_page(
                &console,
                &next,
                Some("this server checks no credentials, so there is nothing to log in to"),
            ),
        );
    };
    if let Err(e) = auth.authenticate(Some(&format!("Bearer {token}"))).await {
        tracing::debug!(reason = e.reason(), "console login refused");
        return html_response(
            401,
            form_page(&console, &next, Some(&format!("that token was refused: {e}"))),
        );
    }
    let secure = tls.is_some_and(|t| t.0.0);
    let mut r = redirect(&next);
    let cookie = format!(
        "{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(crate) async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return html_response(
            403,
            page(
                "Not allowed",
                None,
                crate::DATA_PAGES,
                "<p>cross-site logout refused</p>",
            ),
        );
    }
    let mut r = redirect("/ui/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("keel_console=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// The console cookie's value in a request's `Cookie` headers, if any (for keel-api's gate).
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/ui/deployments/promo")), "/ui/deployments/promo");
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil",
            "/v1/deployments",
            "/ui/\\evil",
            "/ui/\"><script>",
            "/uix",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_empty_is_none() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; keel_console=keel_abc; b=2"),
        );
        assert_eq!(cookie_token(&h), Some("keel_abc"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("keel_console=; x=y"));
        assert_eq!(cookie_token(&h), None);
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }

    #[test]
    fn tokens_that_cannot_live_in_a_cookie_are_refused() {
        assert!(cookie_safe("keel_0123abcdef"));
        assert!(cookie_safe("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_"));
        for bad in ["", "a b", "a;b", "a\"b", "a,b", "x\r\nSet-Cookie: y"] {
            assert!(!cookie_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(
            same_origin(&h),
            "no Origin: a same-site navigation or a non-browser client"
        );
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
    }
}
