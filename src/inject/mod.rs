//! When (not) to inject the client into a response, and the streaming rewrite that does it.
//!
//! Owns the decision (HTML with a body, a real navigation, a full document) and the response
//! transformation. The proxy and the static server call [`Injector::apply`] on every response they
//! produce; everything that is not a page going to a browser tab passes through untouched.
//! (Interface in place; the rewrite lands with the injection work.)

use http::{HeaderMap, Method, Request, Response};

use crate::body::Body;

/// What the injector needs to know about the request a response answers, captured before the
/// request is moved into the upstream call.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub method: Method,
    pub headers: HeaderMap,
}

impl RequestFacts {
    pub fn of<B>(req: &Request<B>) -> Self {
        RequestFacts {
            method: req.method().clone(),
            headers: HeaderMap::new(),
        }
    }
}

/// Puts the client tag into pages. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Injector {
    enabled: bool,
}

impl Injector {
    pub fn new(enabled: bool) -> Self {
        Injector { enabled }
    }

    /// Adjust the request headers sent upstream (e.g. which encodings the proxy can decode).
    pub fn prepare_request(&self, _facts: &RequestFacts, _headers: &mut HeaderMap) {
        let _ = self.enabled;
    }

    /// The response with the client injected when it is a page for a browser tab, else unchanged.
    pub fn apply(&self, _facts: &RequestFacts, response: Response<Body>) -> Response<Body> {
        response
    }
}
