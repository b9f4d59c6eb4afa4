//! The web console: pages at `/ui/` that show what the REST API returns, as server-rendered HTML
//! with inline SVG charts, for people rather than programs. Every page calls the same library
//! operations as the JSON routes (`keel_experiments::Deployments` for deployments and their
//! reports, `keel_registry::Registry` for models and aliases, the store's change log, and with
//! the `lake` feature `keel_data::Workspace` for the catalog and lineage), so a figure on a
//! page is the figure the API returns.
//!
//! This crate owns the pages, their escaping ([`html::escape`]), the charts ([`svg`]) and the
//! console's login (an API token kept in an HttpOnly cookie). It does not decide who may see a
//! page: keel-api declares each route of [`routes`] with the scope it needs and its gate checks
//! the credential (the cookie, for `/ui` paths only) before a handler runs. It never depends on
//! keel-api (keel-api mounts it), and holds no state of its own beyond handles to the libraries.
//! The pages change nothing, except logging in and out and the approval buttons of
//! `/ui/changes/pending` (forms refused from another site; see `pages::approvals`).

use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use keel_auth::{Authenticator, Credential, Principal, Scope};
use keel_experiments::Deployments;
use keel_registry::Registry;
use keel_types::{ErrorKind, KeelError};

pub mod assets;
pub mod bars;
pub mod html;
pub mod login;
mod pages;
pub mod svg;

use html::{Viewer, esc};

/// The cookie holding a signed-in browser's API token (HttpOnly, SameSite=Strict, Path=/ui).
pub const COOKIE: &str = "keel_console";

/// What a console route requires (keel-api turns it into its `access::Need`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing, and never limited: the login form and the assets.
    Open,
    /// Nothing, but counted in the admin class (logging in checks a credential itself).
    OpenLimited,
    /// A credential granting this scope.
    Scope(Scope),
}

/// One route of the console: keel-api adds it with its [`Access`].
pub struct Route<S> {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<S>,
}

fn route<S>(method: Method, path: &'static str, access: Access, handler: MethodRouter<S>) -> Route<S> {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// Whether the server's listeners speak TLS (login cookies are then `Secure`); keel-api puts
/// it into every request.
#[derive(Debug, Clone, Copy)]
pub struct Tls(pub bool);

/// Handles to the libraries the pages read.
pub struct Console {
    pub(crate) deployments: Arc<Deployments>,
    /// The deployments' timelines (charts over time), followed as their logs grow.
    pub(crate) timelines: Arc<keel_experiments::offline::timeline::Timelines>,
    pub(crate) registry: Registry,
    pub(crate) auth: Option<Arc<Authenticator>>,
    pub(crate) auth_required: bool,
    /// The HTTP status of an error kind, from keel-api's one mapping.
    pub(crate) status_of: fn(ErrorKind) -> u16,
}

impl Console {
    pub fn new(
        deployments: Arc<Deployments>,
        registry: Registry,
        auth: Option<Arc<Authenticator>>,
        auth_required: bool,
        status_of: fn(ErrorKind) -> u16,
    ) -> Console {
        Console {
            deployments,
            timelines: Arc::new(keel_experiments::offline::timeline::Timelines::new()),
            registry,
            auth,
            auth_required,
            status_of,
        }
    }
}

/// How often the console reads on the logs of the deployments it follows.
pub const TIMELINES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Console {
    /// Keeps the charts over time current in the background (on the current runtime, until the
    /// console is dropped): every [`TIMELINES_EVERY`] the logs of the running deployments are
    /// read on from where they were left, so the first view of a deployment page after a start
    /// or a burst of traffic does not read the whole log or the burst.
    pub fn keep_timelines_current(&self) {
        self.timelines.keep_current(self.deployments.clone(), TIMELINES_EVERY);
    }

    /// The timelines the charts read (the API's timeline route reads the same ones).
    pub fn timelines(&self) -> Arc<keel_experiments::offline::timeline::Timelines> {
        self.timelines.clone()
    }
}

/// The console's routes (the data pages are in [`data_routes`]).
pub fn routes() -> Vec<Route<Arc<Console>>> {
    let view = Access::Scope(Scope::View);
    vec![
        route(Method::GET, "/ui", Access::Open, get(to_index)),
        route(Method::GET, "/ui/", view, get(pages::overview::handler)),
        route(
            Method::GET,
            "/ui/deployments/{name}",
            view,
            get(pages::deployment::handler),
        ),
        route(Method::GET, "/ui/models", view, get(pages::models::list_handler)),
        route(
            Method::GET,
            "/ui/models/{name}",
            view,
            get(pages::models::model_handler),
        ),
        route(Method::GET, "/ui/changes", view, get(pages::changes::handler)),
        route(Method::GET, "/ui/changes/pending", view, get(pages::approvals::handler)),
        // The change's own scope is checked by the handler (it depends on the change).
        route(
            Method::POST,
            "/ui/changes/pending/{id}/approve",
            view,
            post(pages::approvals::approve),
        ),
        route(
            Method::POST,
            "/ui/changes/pending/{id}/reject",
            view,
            post(pages::approvals::reject),
        ),
        route(Method::GET, "/ui/login", Access::Open, get(login::form)),
        route(Method::POST, "/ui/login", Access::OpenLimited, post(login::submit)),
        route(Method::POST, "/ui/logout", Access::OpenLimited, post(login::logout)),
        route(Method::GET, "/ui/assets/{file}", Access::Open, get(assets::handler)),
    ]
}

#[cfg(feature = "lake")]
pub use pages::data::DataConsole;

/// The data pages (catalog, table cards, lineage): the `data:read` scope, as `/v1/data`, and
/// the catalog's per-table grants, checked by keel-data for the signed-in person.
#[cfg(feature = "lake")]
pub fn data_routes() -> Vec<Route<Arc<DataConsole>>> {
    let read = Access::Scope(Scope::DataRead);
    vec![
        route(Method::GET, "/ui/data", read, get(pages::data::list_handler)),
        route(Method::GET, "/ui/data/{table}", read, get(pages::data::table_handler)),
        route(
            Method::GET,
            "/ui/deployments/{name}/monitoring",
            read,
            get(pages::monitoring::monitoring_handler),
        ),
        route(
            Method::GET,
            "/ui/models/{name}/performance",
            read,
            get(pages::monitoring::performance_handler),
        ),
    ]
}

/// Whether this build has the data pages (for the navigation).
pub(crate) const DATA_PAGES: bool = cfg!(feature = "lake");

async fn to_index() -> Response {
    redirect("/ui/")
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r);
    r
}

/// The headers every console answer carries: scripts and styles from this server only, no
/// framing, no sniffing, not cached.
pub(crate) fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// A page answer.
pub(crate) fn html_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(&mut r);
    r
}

/// Who the gate let in; `None` on open routes.
pub(crate) fn viewer(principal: Option<&Principal>) -> Option<Viewer> {
    principal.map(|p| Viewer {
        name: p.name.clone(),
        anonymous: p.credential == Credential::Anonymous,
    })
}

/// A page that could not be shown, and why.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: u16,
    pub title: String,
    pub message: String,
    /// Where to go instead: `(href, text)`.
    pub back: (String, String),
}

impl Failure {
    pub(crate) fn new(
        status: u16,
        title: impl Into<String>,
        message: impl Into<String>,
        back: (&str, &str),
    ) -> Failure {
        Failure {
            status,
            title: title.into(),
            message: message.into(),
            back: (back.0.to_owned(), back.1.to_owned()),
        }
    }

    /// From a library error: its kind decides the status (keel-api's mapping); a missing thing
    /// is a 404 saying what is missing.
    pub(crate) fn from_error(
        status_of: fn(ErrorKind) -> u16,
        e: &dyn KeelError,
        missing: &str,
        back: (&str, &str),
    ) -> Failure {
        let status = status_of(e.kind());
        let title = match e.kind() {
            ErrorKind::NotFound => format!("{missing} not found"),
            ErrorKind::PermissionDenied => "Not allowed".to_owned(),
            ErrorKind::InvalidArgument => "Bad request".to_owned(),
            _ if status >= 500 => "keel could not show this page".to_owned(),
            _ => "Cannot show this page".to_owned(),
        };
        if status >= 500 {
            tracing::warn!(error = %e, code = e.code(), "console page failed");
        }
        Failure::new(status, title, e.to_string(), back)
    }

    pub(crate) fn render(&self, viewer: Option<&Viewer>) -> Response {
        let body = format!(
            r#"<div class="failure"><p>{}</p><p><a href="{}">{}</a></p></div>"#,
            esc(&self.message),
            esc(&self.back.0),
            esc(&self.back.1)
        );
        html_response(self.status, html::page(&self.title, viewer, DATA_PAGES, &body))
    }
}

/// Turns a page's result into the answer.
pub(crate) fn answer(viewer: Option<&Viewer>, title: &str, result: Result<String, Failure>) -> Response {
    match result {
        Ok(body) => html_response(200, html::page(title, viewer, DATA_PAGES, &body)),
        Err(f) => f.render(viewer),
    }
}

/// The page shown by keel-api's gate when a browser's credential does not grant a page's scope.
pub fn refused_page(message: &str) -> Response {
    Failure::new(403, "Not allowed", message, ("/ui/login", "log in with another token")).render(None)
}
