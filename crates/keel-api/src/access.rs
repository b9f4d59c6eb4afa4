//! What every route needs: the scope a caller's credential must grant and the admission class
//! its requests are counted in. Routes are only added through [`Routes`], which takes the need
//! with the handler, so a route without a rule cannot be written; the server's table of rules
//! ([`RouteTable`]) is what the gate enforces and what the route-coverage test enumerates.
//! gRPC methods have their table in [`GRPC_RULES`], checked against the `.proto` files by the
//! same test.

use std::collections::HashMap;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post, put};
use keel_auth::Scope;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: liveness and readiness probes, the console's login form and assets.
    Open,
    /// Nothing, but counted in the admin class: the console's login and logout, which check a
    /// credential themselves.
    OpenLimited,
    /// A credential granting this scope.
    Scope(Scope),
}

/// The pool of request slots a route's requests are counted in (see `gate::Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Probes and `/metrics`: never limited, so an overloaded server still says so.
    Probe,
    /// V2 inference and metadata.
    Inference,
    /// Decide, feedback and labels.
    Decide,
    /// Everything else: deployments, models, data, reports.
    Admin,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Probe => "probe",
            Class::Inference => "inference",
            Class::Decide => "decide",
            Class::Admin => "admin",
        }
    }
}

impl Need {
    pub fn class(self) -> Class {
        match self {
            Need::Open | Need::Scope(Scope::Metrics) => Class::Probe,
            Need::Scope(Scope::Infer) => Class::Inference,
            Need::Scope(Scope::Decide) => Class::Decide,
            Need::Scope(_) | Need::OpenLimited => Class::Admin,
        }
    }
}

/// One route and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub method: Method,
    /// The route's path as the router matches it (`/v2/models/{name}/infer`).
    pub path: &'static str,
    pub need: Need,
}

/// A router whose every route was added with its [`Need`].
#[derive(Clone)]
pub struct Routes<S = ()> {
    router: Router<S>,
    rules: Vec<Rule>,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub(crate) fn new() -> Routes<S> {
        Routes {
            router: Router::new(),
            rules: Vec::new(),
        }
    }

    pub(crate) fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, need: Need, handler: H) -> Self {
        self.add(Method::GET, path, need, get(handler))
    }

    pub(crate) fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, need: Need, handler: H) -> Self {
        self.add(Method::POST, path, need, post(handler))
    }

    pub(crate) fn put<H: Handler<T, S>, T: 'static>(self, path: &'static str, need: Need, handler: H) -> Self {
        self.add(Method::PUT, path, need, put(handler))
    }

    pub(crate) fn add(mut self, method: Method, path: &'static str, need: Need, route: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, route);
        self.rules.push(Rule { method, path, need });
        self
    }

    /// Provides the state; the rules carry over.
    pub(crate) fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            rules: self.rules,
        }
    }
}

impl Routes<()> {
    pub fn merge(mut self, other: Routes<()>) -> Routes<()> {
        self.router = self.router.merge(other.router);
        self.rules.extend(other.rules);
        self
    }

    pub fn into_parts(self) -> (Router, Vec<Rule>) {
        (self.router, self.rules)
    }
}

/// The web console's routes (keel-console), each with the need it declares.
pub(crate) fn console<S: Clone + Send + Sync + 'static>(routes: Vec<keel_console::Route<S>>, state: S) -> Routes {
    let mut out = Routes::new();
    for r in routes {
        let need = match r.access {
            keel_console::Access::Open => Need::Open,
            keel_console::Access::OpenLimited => Need::OpenLimited,
            keel_console::Access::Scope(scope) => Need::Scope(scope),
        };
        out = out.add(r.method, r.path, need, r.handler);
    }
    out.with_state(state)
}

/// Every REST route's rule, by method and matched path.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    rules: HashMap<(Method, &'static str), Need>,
    paths: std::collections::HashSet<&'static str>,
}

impl RouteTable {
    pub fn new(rules: &[Rule]) -> RouteTable {
        RouteTable {
            rules: rules.iter().map(|r| ((r.method.clone(), r.path), r.need)).collect(),
            paths: rules.iter().map(|r| r.path).collect(),
        }
    }

    pub fn need(&self, method: &Method, path: &str) -> Lookup {
        match self.rules.get(&(method.clone(), path)) {
            Some(need) => Lookup::Rule(*need),
            None if self.paths.contains(path) => Lookup::OtherMethod,
            None => Lookup::NoRule,
        }
    }

    /// Every rule, sorted by path then method (for tests and docs).
    pub fn rules(&self) -> Vec<Rule> {
        let mut all: Vec<Rule> = self
            .rules
            .iter()
            .map(|((method, path), need)| Rule {
                method: method.clone(),
                path,
                need: *need,
            })
            .collect();
        all.sort_by(|a, b| (a.path, a.method.as_str()).cmp(&(b.path, b.method.as_str())));
        all
    }
}

/// What the table says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Rule(Need),
    /// The path is routed, but not for this method: the router answers 405.
    OtherMethod,
    /// A routed path without a rule (a keel bug): refused.
    NoRule,
}

/// Every gRPC method's rule, by its full path.
pub const GRPC_RULES: &[(&str, Need)] = &[
    ("/inference.GRPCInferenceService/ServerLive", Need::Open),
    ("/inference.GRPCInferenceService/ServerReady", Need::Open),
    ("/inference.GRPCInferenceService/ModelReady", Need::Scope(Scope::Infer)),
    (
        "/inference.GRPCInferenceService/ServerMetadata",
        Need::Scope(Scope::Infer),
    ),
    (
        "/inference.GRPCInferenceService/ModelMetadata",
        Need::Scope(Scope::Infer),
    ),
    ("/inference.GRPCInferenceService/ModelInfer", Need::Scope(Scope::Infer)),
    (
        "/inference.GRPCInferenceService/RepositoryIndex",
        Need::Scope(Scope::Deploy),
    ),
    (
        "/inference.GRPCInferenceService/RepositoryModelLoad",
        Need::Scope(Scope::Deploy),
    ),
    (
        "/inference.GRPCInferenceService/RepositoryModelUnload",
        Need::Scope(Scope::Deploy),
    ),
    ("/keel.experiments.v1.Experiments/Decide", Need::Scope(Scope::Decide)),
    ("/keel.experiments.v1.Experiments/Feedback", Need::Scope(Scope::Decide)),
    (
        "/keel.experiments.v1.Experiments/FeedbackBatch",
        Need::Scope(Scope::Decide),
    ),
    ("/keel.experiments.v1.Experiments/Report", Need::Scope(Scope::View)),
    // Starting and cancelling a job need `decide` here; a batch score also needs `data:write`,
    // checked by the jobs service (as on REST /v1/jobs).
    ("/keel.jobs.v1.Jobs/Start", Need::Scope(Scope::Decide)),
    ("/keel.jobs.v1.Jobs/Cancel", Need::Scope(Scope::Decide)),
    ("/keel.jobs.v1.Jobs/Get", Need::Scope(Scope::View)),
    ("/keel.jobs.v1.Jobs/List", Need::Scope(Scope::View)),
    ("/keel.jobs.v1.Jobs/Watch", Need::Scope(Scope::View)),
];

/// The rule of a gRPC method path; `None` for a method without one (refused).
pub fn grpc_need(path: &str) -> Option<Need> {
    GRPC_RULES.iter().find(|(p, _)| *p == path).map(|(_, need)| *need)
}
