//! [`SessionService`] and its [`ResponseFuture`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll, ready},
};

use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::unavailable_response;
use crate::{
    session::{
        BadCookie, Finish, SaveFuture, Session,
        context::{Context, CookieRead, Incoming},
    },
    store::StoreError,
};

/// The service made by [`SessionLayer`](super::SessionLayer): wraps the
/// handler with session loading and saving.
///
/// # Example
///
/// ```
/// use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::{SessionLayer, SessionService}};
/// use tower_layer::Layer as _;
///
/// let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate())).build()?;
/// let service: SessionService<()> = layer.layer(());
/// assert_eq!(service.get_ref(), &());
/// # Ok::<(), keepsake::middleware::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct SessionService<S> {
    inner: S,
    ctx: Arc<Context>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, ctx: Arc<Context>) -> Self {
        Self { inner, ctx }
    }

    /// The wrapped service.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// # use tower_layer::Layer as _;
    /// # let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate())).build()?;
    /// assert_eq!(*layer.layer(7).get_ref(), 7);
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// # use tower_layer::Layer as _;
    /// # let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate())).build()?;
    /// let mut service = layer.layer(7);
    /// *service.get_mut() = 8;
    /// assert_eq!(service.into_inner(), 8);
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, by value.
    ///
    /// # Example
    ///
    /// ```
    /// # use keepsake::{codec::Format, key::{Key, KeyRing}, middleware::SessionLayer};
    /// # use tower_layer::Layer as _;
    /// # let layer = SessionLayer::with_cookies(Format::Signed, KeyRing::new(Key::generate())).build()?;
    /// assert_eq!(layer.layer("inner").into_inner(), "inner");
    /// # Ok::<(), keepsake::middleware::ConfigError>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

pin_project! {
    /// The future of [`SessionService`]: the handler's future, unboxed,
    /// then the session's save. Saving allocates only when it calls the
    /// store; a request that leaves a stored session unchanged, or keeps
    /// its session in the cookie, finishes in place.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // The handler runs; its session is saved once it answers.
        Handling {
            #[pin]
            handled: F,
            session: Session,
        },
        // The handler answered; the session's store calls run.
        Saving {
            response: Option<Response<B>>,
            session: Session,
            saving: SaveFuture,
        },
        // Answered without calling the handler (a rejected bad cookie).
        Answered {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        match state.as_mut().project() {
            StateProj::Handling { handled, session } => {
                let response = ready!(handled.poll(cx))?;
                match session.finish(response.status()) {
                    Finish::Now(outcome) => Poll::Ready(Ok(respond(session, response, outcome))),
                    Finish::Later(saving) => {
                        let session = session.clone();
                        state.set(State::Saving {
                            response: Some(response),
                            session,
                            saving,
                        });
                        poll_saving(state, cx)
                    }
                }
            }
            StateProj::Saving { .. } => poll_saving(state, cx),
            StateProj::Answered { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

/// Polls the store calls of a session being saved.
fn poll_saving<F, B: From<String>, E>(
    state: Pin<&mut State<F, B>>,
    cx: &mut TaskContext<'_>,
) -> Poll<Result<Response<B>, E>> {
    let StateProj::Saving {
        response,
        session,
        saving,
    } = state.project()
    else {
        unreachable!("only called while saving")
    };
    let outcome = ready!(saving.as_mut().poll(cx));
    let response = response
        .take()
        .expect("ResponseFuture polled after completion");
    Poll::Ready(Ok(respond(session, response, outcome)))
}

/// The response, with what saving the session decided: a `Set-Cookie`
/// (and the headers that keep it out of shared caches, which a response
/// carrying the handler's own `Set-Cookie` also gets), nothing, or the
/// store-failure response instead. A response made with the session (the
/// handler read or changed it) also gets `Vary: Cookie`, as Flask and
/// Django add it: a cache must not hand one visitor's page to another.
fn respond<B: From<String>>(
    session: &Session,
    mut response: Response<B>,
    outcome: Result<Option<HeaderValue>, StoreError>,
) -> Response<B> {
    match outcome {
        Ok(Some(cookie)) => {
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, cookie);
            add_vary_cookie(headers);
            make_private(headers);
            response
        }
        Ok(None) => {
            let headers = response.headers_mut();
            if session.accessed() {
                add_vary_cookie(headers);
            }
            // A cookie the handler set itself (a `CookieJar`'s) must not be
            // handed to other visitors by a shared cache either.
            if headers.contains_key(header::SET_COOKIE) {
                make_private(headers);
            }
            response
        }
        Err(err) => {
            // A call that failed while the handler ran was logged, with its
            // cause, when it failed: once is enough.
            if session.failed_during_request() {
                tracing::debug!(error = %err, "session store failed; answering 503");
            } else {
                tracing::error!(error = %err.with_causes(), "session store failed; answering 503");
            }
            unavailable_response(session.context().unavailable.as_ref(), &err).map(B::from)
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (read, now) = self.ctx.read_cookie(request.headers());
        let (incoming, stale_key, bad) = match read {
            CookieRead::Ok(incoming, stale_key) => (incoming, stale_key, false),
            CookieRead::Bad(reason) => {
                tracing::warn!(reason, "session cookie did not verify");
                (Incoming::Nothing, false, true)
            }
            // Anonymous under either setting: a 400 could not remove the
            // planted cookie, and would refuse the visitor until it expired.
            CookieRead::Several => {
                tracing::warn!(
                    reason = "several session cookies verified",
                    "session cookie not used"
                );
                (Incoming::Nothing, false, false)
            }
        };
        if bad && self.ctx.bad_cookie == BadCookie::Reject {
            let mut response = Response::new(ResBody::from("bad cookie".to_owned()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            // A cookie that does not verify is removed, or the browser would
            // be refused until it expired (after a change of secret, for
            // weeks).
            let removal = self.ctx.removal_cookie();
            response.headers_mut().append(header::SET_COOKIE, removal);
            return ResponseFuture {
                state: State::Answered {
                    response: Some(response),
                },
            };
        }
        // A bad cookie that is ignored is replaced when the session is saved,
        // and otherwise left alone: removing it could fight another app's
        // cookie of the same name.
        let remove_ended =
            matches!(incoming, Incoming::Nothing) || removes_ended(request.headers());
        let session = Session::new(self.ctx.clone(), incoming, stale_key, remove_ended, now);
        request.extensions_mut().insert(session.clone());
        // Called now, while still the service that was driven to readiness:
        // no clone of it is needed.
        ResponseFuture {
            state: State::Handling {
                handled: self.inner.call(request),
                session,
            },
        }
    }
}

/// Whether the answer to a request may remove a session cookie whose
/// session has ended: only a navigation (`Sec-Fetch-Mode: navigate`). Any
/// other request may have been sent with the old cookie before the answer
/// to a login arrived, and its removal, applied after that answer, would
/// delete the new session's cookie (see [`Session::cycle_id`]): a page's
/// `fetch`, XHR or subresource request, or an API client polling while it
/// logs in (clients that send no `Sec-Fetch-Mode` at all: apps, scripts,
/// old browsers). A dead cookie left in place does no harm; the next page
/// load, or the next write, replaces it.
///
/// [`Session::cycle_id`]: crate::session::Session::cycle_id
fn removes_ended(headers: &http::HeaderMap) -> bool {
    // A name made once: `get` with a `&str` parses it on every call.
    static SEC_FETCH_MODE: http::HeaderName = http::HeaderName::from_static("sec-fetch-mode");
    headers
        .get(&SEC_FETCH_MODE)
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"navigate"))
}

/// Keeps a response that sets the session cookie out of shared caches:
/// `Cache-Control: private`, added to the handler's own directives (so
/// that `no-cache` or `must-revalidate` still hold), with `public` and
/// `s-maxage` taken out. Nothing changes when `private` or `no-store` is
/// already there.
fn make_private(headers: &mut http::HeaderMap) {
    let directives = || {
        headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(|directive| {
                let name = directive.split(|&b| b == b'=').next().unwrap_or_default();
                (directive.trim_ascii(), name.trim_ascii())
            })
    };
    if directives().any(|(_, name)| {
        name.eq_ignore_ascii_case(b"private") || name.eq_ignore_ascii_case(b"no-store")
    }) {
        return;
    }
    // The common case, and the cheap one: no directives of the handler's.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    let mut combined = Vec::new();
    for (directive, name) in directives() {
        if directive.is_empty()
            || name.eq_ignore_ascii_case(b"public")
            || name.eq_ignore_ascii_case(b"s-maxage")
        {
            continue;
        }
        combined.extend_from_slice(directive);
        combined.extend_from_slice(b", ");
    }
    combined.extend_from_slice(b"private");
    // Made of the bytes of valid header values, split at commas.
    let value =
        HeaderValue::from_bytes(&combined).unwrap_or_else(|_| HeaderValue::from_static("private"));
    headers.insert(header::CACHE_CONTROL, value);
}

/// Adds `Cookie` to `Vary` unless it is already there.
fn add_vary_cookie(headers: &mut http::HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|part| {
            let part = part.trim_ascii();
            part.eq_ignore_ascii_case(b"cookie") || part == b"*"
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Cookie"));
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::{add_vary_cookie, make_private};

    /// The values of header `name` after `change`, which is given a map
    /// holding `values` under that name.
    fn after(
        name: &header::HeaderName,
        values: &[&'static str],
        change: fn(&mut HeaderMap),
    ) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name, HeaderValue::from_static(value));
        }
        change(&mut headers);
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    fn private(values: &[&'static str]) -> Vec<String> {
        after(&header::CACHE_CONTROL, values, make_private)
    }

    #[test]
    fn private_is_added_to_the_handlers_directives() {
        assert_eq!(private(&[]), ["private"]);
        // Already kept out of shared caches: left as it is.
        assert_eq!(private(&["max-age=0, Private"]), ["max-age=0, Private"]);
        assert_eq!(
            private(&["private=\"set-cookie\""]),
            ["private=\"set-cookie\""]
        );
        assert_eq!(
            private(&["max-age=60", "NO-STORE"]),
            ["max-age=60", "NO-STORE"]
        );
        // The handler's other directives hold; `public` and `s-maxage` go.
        assert_eq!(
            private(&["no-cache, max-age=0, must-revalidate"]),
            ["no-cache, max-age=0, must-revalidate, private"]
        );
        assert_eq!(
            private(&["public, max-age=60", "S-MAXAGE=600"]),
            ["max-age=60, private"]
        );
        assert_eq!(
            private(&["no-cache=\"set-cookie, x\""]),
            ["no-cache=\"set-cookie, x\", private"]
        );
    }

    #[test]
    fn vary_cookie_is_added_once() {
        let vary = |values| after(&header::VARY, values, add_vary_cookie);
        assert_eq!(vary(&[]), ["Cookie"]);
        assert_eq!(vary(&["Accept-Encoding"]), ["Accept-Encoding", "Cookie"]);
        assert_eq!(vary(&["accept, COOKIE"]), ["accept, COOKIE"]);
        assert_eq!(vary(&["*"]), ["*"]);
    }
}
