//! The session middleware reading a request's `Cookie` headers: a tower
//! service behind a `SessionLayer` (server-side ids in a `MemoryStore`,
//! signed or sealed client-side sessions, Flask/Starlette/Django cookies),
//! called with the fuzzed headers.
//! It must answer, never panic; only 200 (session read) or 400 (bad cookie,
//! `BadCookie::Reject`) are expected.
#![no_main]

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
};

use http::{Request, Response, header};
use keepsake::{
    codec::{
        Format,
        interop::{Framework, InteropCodec},
    },
    middleware::{SessionLayer, SessionService},
    session::{BadCookie, Session},
    store::MemoryStore,
};
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer as _;
use tower_service::Service;

/// Reads the session, so the cookie's id or record is used.
#[derive(Clone)]
struct App;

impl Service<Request<()>> for App {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let session = request.extensions().get::<Session>().cloned();
        Box::pin(async move {
            let body = match session {
                Some(session) => format!("{:?}", session.get::<u64>("n").await.ok()),
                None => "no session".to_owned(),
            };
            Ok(Response::new(body))
        })
    }
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    services: Vec<SessionService<App>>,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut services = Vec::new();
    for policy in [BadCookie::Ignore, BadCookie::Reject] {
        let mut layers = vec![
            SessionLayer::with_store(MemoryStore::new(), keepsake_fuzz::ring()),
            SessionLayer::with_cookies(Format::Signed, keepsake_fuzz::ring()),
            SessionLayer::with_cookies(Format::Sealed, keepsake_fuzz::ring()),
        ];
        for framework in Framework::ALL {
            let codec = InteropCodec::new(framework, keepsake_fuzz::INTEROP_SECRET);
            layers.push(SessionLayer::with_interop(codec));
        }
        for builder in layers {
            let layer = builder.bad_cookie(policy).build().expect("layer");
            services.push(layer.layer(App));
        }
    }
    Setup { runtime, services }
});

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let (selector, _) = keepsake_fuzz::split(data);
    let mut service = setup.services[usize::from(selector) % setup.services.len()].clone();
    let mut request = Request::get("/").body(()).expect("request");
    for part in data.get(1..).unwrap_or_default().split(|&b| b == 0) {
        if let Ok(value) = http::HeaderValue::from_bytes(part) {
            request.headers_mut().append(header::COOKIE, value);
        }
    }
    let response = setup
        .runtime
        .block_on(service.call(request))
        .expect("infallible");
    let status = response.status().as_u16();
    assert!(status == 200 || status == 400, "status {status}");
});
