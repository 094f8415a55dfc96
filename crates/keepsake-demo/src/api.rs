//! The JSON API, `/healthz`, the 404 fallback and the error responses.

use std::time::Duration;

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use keepsake::{
    cookies::{Cookie, CookieError, CookieJar},
    session::{Session, SessionError},
    store::{Id, Record, SessionStore as _, StoreError},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{AppState, page};

/// The longest user name `/api/login` takes, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// An error answer: `{"error": message}` with `status` ([`finish_response`]
/// makes it a page for a browser's navigation).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_logged_in() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not logged in")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store is unavailable; try again in a moment",
            ),
            SessionError::TooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, err.to_string())
            }
            other => {
                tracing::error!(error = %other, "session error; answering 500");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<CookieError> for ApiError {
    fn from(err: CookieError) -> Self {
        tracing::error!(error = %err, "cookie error; answering 500");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The guard of every `POST` under `/api` (see [`check_same_site_json`]):
/// a refused request never reaches its handler, so it changes nothing.
pub(crate) async fn same_site_json(request: Request, next: Next) -> Response {
    match check_same_site_json(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

/// Refuses requests that another site may have made: 403 when
/// `Sec-Fetch-Site` says `cross-site`, 415 unless the `Content-Type` is
/// `application/json` (parameters such as `charset` allowed).
///
/// `SameSite=Lax` keeps the session cookie off another site's form `POST`,
/// but the browser still sends the post and keeps the cookies of the
/// answer: without this guard a form on any site could log its visitor in
/// as someone else (login CSRF) or set their theme. A page cannot send
/// `application/json` to another origin without a CORS preflight, which
/// the demo never grants; browsers that send `Sec-Fetch-Site` are refused
/// before that.
fn check_same_site_json(headers: &HeaderMap) -> ApiResult<()> {
    let cross_site = headers.get_all("sec-fetch-site").iter().any(|value| {
        value
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"cross-site")
    });
    if cross_site {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site requests cannot change anything here",
        ));
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    match (types.next(), types.next()) {
        (Some(value), None) if is_json(value) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send `Content-Type: application/json` (with a JSON body where the route takes one)",
        )),
    }
}

/// Whether a `Content-Type` is `application/json`, with or without
/// parameters.
fn is_json(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|text| text.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The session layer's answer when the store fails: a JSON 503 (the layer
/// adds `Retry-After`, and logs the failure with its causes;
/// [`finish_response`] makes it a page for a browser's navigation).
pub(crate) fn unavailable_response(_: &StoreError) -> axum::http::Response<String> {
    let mut response = axum::http::Response::new(
        json!({ "error": "the session store is unavailable; try again in a moment" }).to_string(),
    );
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The outermost layer: reads whether the client prefers HTML (see
/// [`prefers_html`]) and finishes the answer with [`finish_response`].
pub(crate) async fn finish(request: Request, next: Next) -> Response {
    let html = prefers_html(request.headers());
    finish_response(next.run(request).await, html).await
}

/// Whether the client is a browser navigating to a page: its `Accept`
/// header starts with `text/html`, as every browser's navigation does
/// (`text/html,application/xhtml+xml,...,*/*;q=0.8`). Scripts, `fetch`'s
/// default (`*/*`), `application/json` or no `Accept` keep the JSON
/// answer; no q-values are weighed, as no client of the demo needs them.
pub(crate) fn prefers_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split([',', ';']).next())
        .is_some_and(|first| first.trim().eq_ignore_ascii_case("text/html"))
}

/// Finishes every answer. Each gets:
///
/// - `Cache-Control: no-store`, replacing whatever was there (the session
///   layer's `private` on answers that set the cookie): every page and API
///   answer here is per visitor, and a logged-in page must not come back
///   from the back/forward cache after a logout;
/// - `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`,
///   `X-Frame-Options: DENY` and the page's `Content-Security-Policy`
///   (see [`page::content_security_policy`]), which among other things
///   forbids framing (clickjacking).
///
/// Every error (axum's own, such as 405, the session layer's 400 for a
/// rejected cookie and 503 when the store fails, and the handlers' JSON
/// ones) becomes `{"error": message}`, or with `html` (the client prefers
/// HTML, see [`prefers_html`]) a small page that says the same.
pub(crate) async fn finish_response(response: Response, html: bool) -> Response {
    let (mut parts, body) = response.into_parts();
    let headers = &mut parts.headers;
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        page::content_security_policy().clone(),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !(parts.status.is_client_error() || parts.status.is_server_error()) {
        return Response::from_parts(parts, body);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = if is_json {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|value| value.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(&bytes).trim().to_owned()
    };
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    // The error's form follows `Accept`.
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept"));
    let (content_type, body) = if html {
        (
            "text/html; charset=utf-8",
            page::error_page(parts.status, &message),
        )
    } else {
        ("application/json", json!({ "error": message }).to_string())
    };
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Response::from_parts(parts, Body::from(body))
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    keepsake::codec::unix_now()
}

/// Adds one visit to the session's counter; the new count. A new session
/// also notes when it started, which the page needs for its countdown.
pub(crate) async fn count_visit(session: &Session) -> ApiResult<u64> {
    if session.is_new().await? {
        session.insert("started", now()).await?;
    }
    // An atomic read-modify-write: with a server-side store (memory,
    // SQLite, Redis, PostgreSQL) concurrent posts with one cookie (two tabs)
    // each count. With a client-side store (cookie, sealed) each response
    // carries the whole session and the browser keeps the last one, so
    // concurrent posts can overwrite each other's counts.
    let visits = session
        .update("visits", |n: Option<u64>| n.unwrap_or(0).saturating_add(1))
        .await?;
    Ok(visits)
}

/// The theme the signed `theme` cookie holds, if it verifies; else light.
pub(crate) fn theme_of(jar: &CookieJar, state: &AppState) -> &'static str {
    match jar.signed(&state.ring).get::<String>("theme").as_deref() {
        Some("dark") => "dark",
        _ => "light",
    }
}

/// Parses a JSON object body and returns its string field `field`.
fn string_field(body: &[u8], field: &str, example: &str) -> ApiResult<String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request(format!("the body must be JSON like {example}")))?;
    match value.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(ApiError::bad_request(format!(
            "`{field}` must be a string, as in {example}"
        ))),
        None => Err(ApiError::bad_request(format!(
            "`{field}` is missing; send {example}"
        ))),
    }
}

/// `GET /api/session`: what the session holds. Changes nothing.
pub(crate) async fn session(
    State(state): State<AppState>,
    session: Session,
    jar: CookieJar,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({
        "new": session.is_new().await?,
        "expired": session.expired().await?,
        "visits": session.get::<u64>("visits").await?.unwrap_or(0),
        "user": session.user().await?,
        "theme": theme_of(&jar, &state),
        "idle_timeout": state.idle_timeout,
    })))
}

/// `POST /api/visits`: one more visit.
pub(crate) async fn visits(session: Session) -> ApiResult<Json<Value>> {
    let visits = count_visit(&session).await?;
    Ok(Json(json!({ "visits": visits })))
}

/// `POST /api/login` with `{"user": "alice"}`.
pub(crate) async fn login(session: Session, body: Bytes) -> ApiResult<Json<Value>> {
    let example = r#"{"user": "alice"}"#;
    let name = string_field(&body, "user", example)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("the user name is empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "the user name is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "the user name contains control characters",
        ));
    }
    // A new id at login, so an id planted before it is worth nothing.
    session.cycle_id().await?;
    session.set_user(Some(name)).await?;
    session.insert("user", name).await?;
    Ok(Json(json!({ "user": name })))
}

/// `POST /api/logout`: ends the session.
pub(crate) async fn logout(session: Session) -> ApiResult<Json<Value>> {
    session.flush().await?;
    Ok(Json(json!({ "user": null })))
}

/// One of the user's sessions, as `/api/devices` and the page show it.
#[derive(Debug, Serialize)]
pub(crate) struct Device {
    /// A short tag that identifies the session in logs; never the id.
    pub(crate) id_hint: String,
    pub(crate) current: bool,
    pub(crate) created: u64,
    pub(crate) last_seen: u64,
}

impl Device {
    fn new(record: &Record, current: bool) -> Self {
        let last_seen = match (record.idle_deadline, record.idle_timeout) {
            (Some(deadline), Some(timeout)) => deadline.saturating_sub(timeout),
            _ => record.created_at,
        };
        Self {
            id_hint: record.id.log_tag(),
            current,
            created: record.created_at,
            last_seen,
        }
    }
}

/// The logged-in user's sessions (empty with client-side sessions), the
/// current one first, then the most recently seen; and the current
/// session's record when the store has it.
pub(crate) async fn devices_of(
    session: &Session,
    user: &str,
) -> ApiResult<(Vec<Device>, Option<Record>)> {
    let id = session.id().await?;
    let records = session.user_sessions(user).await?;
    let current = records.iter().find(|record| record.id == id).cloned();
    let mut devices: Vec<Device> = records
        .iter()
        .map(|record| Device::new(record, record.id == id))
        .collect();
    devices.sort_by(|a, b| {
        b.current
            .cmp(&a.current)
            .then(b.last_seen.cmp(&a.last_seen))
    });
    Ok((devices, current))
}

/// `GET /api/devices`: the logged-in user's sessions.
pub(crate) async fn devices(session: Session) -> ApiResult<Json<Value>> {
    let user = session.user().await?.ok_or_else(ApiError::not_logged_in)?;
    let (devices, _) = devices_of(&session, &user).await?;
    Ok(Json(json!({ "sessions": devices })))
}

/// `POST /api/logout-everywhere`: ends every session of the logged-in user,
/// this one included, and says how many: `{"revoked": 2}`.
///
/// A client-side store keeps no list of sessions, so only this one can be
/// ended (its cookie is removed): the answer is `{"revoked": 1}` with a
/// `note` that says so.
pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<Value>> {
    let user = session.user().await?.ok_or_else(ApiError::not_logged_in)?;
    let revoked = session.end_user_sessions(&user).await?;
    if !state.store.is_client_side() {
        return Ok(Json(json!({ "revoked": revoked })));
    }
    // The library counts no client-side session (it cannot end the others)
    // but flushes this one, which belongs to `user`.
    Ok(Json(json!({
        "revoked": 1,
        "note": "client-side sessions live in their cookies and the server keeps no list of \
                 them, so only this session was ended; other browsers stay logged in until \
                 their sessions expire",
    })))
}

/// `POST /api/theme` with `{"theme": "dark"}`: sets the signed `theme`
/// cookie for 30 days.
pub(crate) async fn theme(
    State(state): State<AppState>,
    mut jar: CookieJar,
    body: Bytes,
) -> ApiResult<Response> {
    let theme = string_field(&body, "theme", r#"{"theme": "dark"}"#)?;
    if theme != "light" && theme != "dark" {
        return Err(ApiError::bad_request(
            "the theme must be \"light\" or \"dark\"",
        ));
    }
    jar.signed_mut(&state.ring)
        .attributes(Cookie::build("", "").secure(state.secure))
        .insert("theme", &theme)?;
    // Returning the jar sends the cookies it changed.
    Ok((jar, Json(json!({ "theme": theme }))).into_response())
}

/// How long `/healthz` waits for the store: the time the session layer
/// gives a request's store calls (its default `store_timeout`), so a store
/// too slow for the pages is too slow for the probe.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /healthz`: 200 `{"status": "ok"}` when the session store takes a
/// write, else the 503 the pages would answer (JSON, or a page for a
/// browser: see [`finish_response`]).
///
/// With a server-side store the probe does what every new session does:
/// it stores a throwaway record (a fresh random id, no data, no user,
/// expiring in a minute) and deletes it again, within [`HEALTH_TIMEOUT`].
/// A read alone would pass while the store refuses writes (a SQLite file
/// write-locked by another process, a read-only replica), when every page
/// fails. The record cannot collide with a session (ids are 128 random
/// bits), and if the probe gives up before its delete, the delete still
/// runs, and failing that the record expires. Client-side stores keep
/// nothing on the server: there is nothing to probe.
pub(crate) async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    if let Some(store) = state.server_store.clone() {
        // A task of its own, so that the delete still happens when the
        // probe stops waiting.
        let probe = tokio::spawn(async move {
            let record = Record::new(Id::random(), now(), None, 60);
            store.create(&record).await?;
            store.delete(&record.id).await?;
            Ok::<(), StoreError>(())
        });
        let failure = match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(err))) => Some(err.with_causes().to_string()),
            Ok(Err(join)) => Some(format!("the probe task failed: {join}")),
            Err(_) => Some(format!(
                "the store took more than {HEALTH_TIMEOUT:?} to store and delete a record"
            )),
        };
        if let Some(reason) = failure {
            tracing::error!(reason, "health check failed; answering 503");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store is unavailable; try again in a moment",
            ));
        }
    }
    Ok(Json(json!({ "status": "ok" })))
}

/// Every other route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests {
    use axum::{
        body::to_bytes,
        http::{HeaderMap, HeaderValue, StatusCode, header},
        response::IntoResponse as _,
    };
    use keepsake::{
        session::SessionError,
        store::{StoreError, StoreErrorKind},
    };
    use serde_json::Value;

    use super::{ApiError, finish_response, prefers_html, unavailable_response};

    async fn json_of(response: axum::response::Response) -> Value {
        let bytes = to_bytes(response.into_body(), 4096).await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn store_failure_is_503_json_with_retry_after() {
        let err = SessionError::Unavailable(StoreError::new(StoreErrorKind::Timeout, "slow"));
        let response = ApiError::from(err).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(json_of(response).await["error"].is_string());

        let hook = unavailable_response(&StoreError::new(StoreErrorKind::Unavailable, "down"));
        assert_eq!(hook.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(hook.headers()[header::CONTENT_TYPE], "application/json");
        let body: Value = serde_json::from_str(hook.body()).expect("JSON");
        assert!(body["error"].is_string());
    }

    #[tokio::test]
    async fn too_large_is_413_json() {
        let err = SessionError::TooLarge {
            size: 5000,
            limit: 4096,
        };
        let response = ApiError::from(err).into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            json_of(response).await["error"]
                .as_str()
                .is_some_and(|e| e.contains("4096"))
        );
    }

    #[tokio::test]
    async fn plain_errors_become_json() {
        let plain = (StatusCode::BAD_REQUEST, "bad cookie").into_response();
        let response = finish_response(plain, false).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(json_of(response).await["error"], "bad cookie");

        let empty = StatusCode::SERVICE_UNAVAILABLE.into_response();
        let response = finish_response(empty, false).await;
        assert_eq!(json_of(response).await["error"], "service unavailable");

        let ok = (StatusCode::OK, "fine").into_response();
        let response = finish_response(ok, false).await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn errors_for_browsers_are_html_pages() {
        let error = ApiError::new(StatusCode::NOT_FOUND, "not <found>").into_response();
        let response = finish_response(error, true).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let bytes = to_bytes(response.into_body(), 65_536).await.expect("body");
        let html = String::from_utf8(bytes.to_vec()).expect("UTF-8");
        assert!(html.contains("not &lt;found&gt;"), "{html}");
        assert!(html.contains("404 Not Found"), "{html}");

        // The store's 503 keeps its Retry-After.
        let unavailable = ApiError::from(SessionError::Unavailable(StoreError::new(
            StoreErrorKind::Timeout,
            "slow",
        )))
        .into_response();
        let response = finish_response(unavailable, true).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn html_only_when_preferred() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).expect("ASCII"));
            prefers_html(&headers)
        };
        // Chromium's and Firefox's navigations.
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
             image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
        ));
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(accept("text/html"));
        // Scripts, curl and fetch's default.
        assert!(!prefers_html(&HeaderMap::new()));
        assert!(!accept("*/*"));
        assert!(!accept("application/json"));
        assert!(!accept("application/json, text/html"));
        assert!(!accept("text/plain"));
    }
}
