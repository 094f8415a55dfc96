//! [`SessionService`] and its [`ResponseFuture`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_service::Service;

use super::layer::{UnavailableHook, unavailable_response};
use crate::session::{
    BadCookie, Session,
    context::{Context, CookieRead, Incoming},
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
    unavailable: Option<UnavailableHook>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, ctx: Arc<Context>, unavailable: Option<UnavailableHook>) -> Self {
        Self {
            inner,
            ctx,
            unavailable,
        }
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

/// The future of [`SessionService`]. Boxed: saving the session after the
/// handler is itself asynchronous (store calls), so the state machine would
/// hold a boxed store future anyway.
pub struct ResponseFuture<T, E> {
    inner: Pin<Box<dyn Future<Output = Result<T, E>> + Send>>,
}

impl<T, E> std::fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, Self::Error>;

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
        };
        if bad && self.ctx.bad_cookie == BadCookie::Reject {
            let mut response = Response::new(ResBody::from("bad cookie".to_owned()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return ResponseFuture {
                inner: Box::pin(std::future::ready(Ok(response))),
            };
        }
        // A bad cookie that is ignored is replaced when the session is saved,
        // and otherwise left alone: removing it could fight another app's
        // cookie of the same name.
        let session = Session::new(self.ctx.clone(), incoming, stale_key, now);
        request.extensions_mut().insert(session.clone());

        // Called now, while still the service that was driven to readiness:
        // no clone of it is needed.
        let handled = self.inner.call(request);
        let unavailable = self.unavailable.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let mut response = handled.await?;
                match session.finish(response.status()).await {
                    Ok(Some(cookie)) => {
                        let headers = response.headers_mut();
                        headers.append(header::SET_COOKIE, cookie);
                        add_vary_cookie(headers);
                        if !keeps_out_of_shared_caches(headers) {
                            headers
                                .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
                        }
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::error!(error = %err, "session store failed; answering 503");
                        response =
                            unavailable_response(unavailable.as_ref(), &err).map(ResBody::from);
                    }
                }
                Ok(response)
            }),
        }
    }
}

/// Whether the response's `Cache-Control` already has `private` or
/// `no-store` (compared without case and without allocating: this runs on
/// every response that sets the session cookie).
fn keeps_out_of_shared_caches(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| {
            let name = directive.split('=').next().unwrap_or_default().trim();
            name.eq_ignore_ascii_case("private") || name.eq_ignore_ascii_case("no-store")
        })
}

/// Adds `Cookie` to `Vary` unless it is already there.
fn add_vary_cookie(headers: &mut http::HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("cookie") || part.trim() == "*")
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Cookie"));
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::keeps_out_of_shared_caches;

    #[test]
    fn cache_control_directives_are_matched_by_name() {
        let with = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::CACHE_CONTROL, HeaderValue::from_static(value));
            }
            keeps_out_of_shared_caches(&headers)
        };
        assert!(with(&["max-age=0, Private"]));
        assert!(with(&["private=\"set-cookie\""]));
        assert!(with(&["max-age=60", "NO-STORE"]));
        assert!(!with(&[]));
        assert!(!with(&["public, max-age=60"]));
        assert!(!with(&["no-cache"]));
    }
}
