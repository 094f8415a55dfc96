//! The page at `/`: server-rendered HTML with a little CSS and script;
//! the error page for browsers; and the Content-Security-Policy that
//! allows exactly their inline style and script.

use std::{fmt::Write as _, sync::LazyLock};

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use keepsake::{cookies::CookieJar, session::Session};
use sha2::{Digest as _, Sha256};

use crate::{
    AppState,
    api::{self, ApiError, Device},
};

/// Escapes `text` for HTML text and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `'sha256-...'`: a CSP source that allows the inline `<script>` or
/// `<style>` whose content is exactly `text`.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64_simd::STANDARD.encode_to_string(digest)
    )
}

/// The `Content-Security-Policy` of every answer: nothing but the page's
/// own inline script and styles (by their hashes, computed here from the
/// very constants the pages embed, so they cannot drift apart), `fetch`es
/// to this origin, forms posting to it, and no framing by anyone.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; script-src {script}; style-src {style} {error_style}; \
         connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'",
        script = csp_hash(SCRIPT),
        style = csp_hash(STYLE),
        error_style = csp_hash(ERROR_STYLE),
    );
    HeaderValue::from_str(&policy).expect("a policy of ASCII text")
});

/// The `Content-Security-Policy` header value (see [`CSP`]).
pub(crate) fn content_security_policy() -> &'static HeaderValue {
    &CSP
}

/// A small page that says what went wrong, for browsers: "404 Not Found"
/// and the message, which says nothing about the server's insides.
pub(crate) fn error_page(status: StatusCode, message: &str) -> String {
    let title = escape(&format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    ));
    let message = escape(message);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title} · keepsake demo</title>
<style>{ERROR_STYLE}</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p id="error-message">{message}</p>
<p><a href="/">Back to the demo</a></p>
</main>
</body>
</html>
"#
    )
}

/// "12 s ago", "5 min ago", ... for Unix time `then`, seen at `now`.
fn ago(now: u64, then: u64) -> String {
    let secs = now.saturating_sub(then);
    match secs {
        0..=4 => "just now".to_owned(),
        5..=119 => format!("{secs} s ago"),
        120..=7_199 => format!("{} min ago", secs / 60),
        7_200..=172_799 => format!("{} h ago", secs / 3_600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// "30 min", "14 days", ... for a number of seconds.
fn span(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 && s > 0 => plural(s / 86_400, "day"),
        s if s % 3_600 == 0 && s > 0 => plural(s / 3_600, "hour"),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// `GET /`: counts a visit and renders the page.
pub(crate) async fn index(
    State(state): State<AppState>,
    session: Session,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let expired = session.expired().await?;
    let visits = api::count_visit(&session).await?;
    let user = session.user().await?;
    let (devices, record) = match &user {
        Some(user) => api::devices_of(&session, user).await?,
        None => (Vec::new(), None),
    };
    let now = api::now();
    // The session's absolute deadline: exact from the store's record, else
    // from when the session started.
    let absolute = match &record {
        Some(record) => record.absolute_deadline,
        None => session
            .get::<u64>("started")
            .await?
            .unwrap_or(now)
            .saturating_add(state.lifetime),
    };
    // This visit wrote to the session, which moves the idle deadline.
    let deadline = if state.idle_timeout > 0 {
        now.saturating_add(state.idle_timeout).min(absolute)
    } else {
        absolute
    };
    let view = View {
        state: &state,
        theme: api::theme_of(&jar, &state),
        expired,
        visits,
        user: user.as_deref(),
        devices: &devices,
        now,
        deadline,
    };
    Ok(Html(view.render()).into_response())
}

/// What the page shows.
struct View<'a> {
    state: &'a AppState,
    theme: &'static str,
    expired: bool,
    visits: u64,
    user: Option<&'a str>,
    devices: &'a [Device],
    now: u64,
    deadline: u64,
}

impl View<'_> {
    fn render(&self) -> String {
        let theme = self.theme;
        let (next_theme, toggle_label) = if theme == "dark" {
            ("light", "Light theme")
        } else {
            ("dark", "Dark theme")
        };
        let notice = if self.expired {
            r#"<p id="expired-notice" class="notice" role="status">your session expired</p>"#
        } else {
            ""
        };
        let visits = self.visits;
        let visits_label = if visits == 1 { "visit" } else { "visits" };
        let account = self.account();
        let devices = self.devices();
        let cookie_panel = self.cookie_panel();
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>keepsake demo</title>
<style>{STYLE}</style>
</head>
<body data-theme="{theme}" class="theme-{theme}">
<main class="card">
<header>
<h1>keepsake demo</h1>
<button id="theme-toggle" type="button" data-next="{next_theme}" aria-label="Switch to the {next_theme} theme">{toggle_label}</button>
</header>
<noscript><p id="noscript-notice" class="notice">This demo needs JavaScript: its buttons and the login form call the JSON API.</p></noscript>
{notice}
<p id="error" class="error" role="alert" hidden></p>
<section class="visits">
<p><span class="big" id="visits">{visits}</span><span class="muted">{visits_label} in this session</span></p>
</section>
{account}
{devices}
{cookie_panel}
<footer class="muted">Every button calls the JSON API under <code>/api</code>, then reloads the page.</footer>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"#
        )
    }

    fn account(&self) -> String {
        match self.user {
            Some(user) => {
                let user = escape(user);
                format!(
                    r#"<section class="account">
<h2>Account</h2>
<p>Logged in as <strong id="user">{user}</strong></p>
<button id="logout-button" type="button">Log out</button>
</section>"#
                )
            }
            // `method="post"`: without JavaScript the browser posts the form
            // itself, and the name stays out of the URL; the API refuses the
            // form's type with a page that says so.
            None => format!(
                r#"<section class="account">
<h2>Account</h2>
<p class="muted">Not logged in<strong id="user"></strong></p>
<form id="login-form" method="post" action="/api/login">
<label for="login-name">Name</label>
<div class="row">
<input id="login-name" name="user" type="text" placeholder="alice" autocomplete="username" maxlength="{max}">
<button id="login-button" type="submit">Log in</button>
</div>
</form>
</section>"#,
                max = api::MAX_NAME_CHARS,
            ),
        }
    }

    fn devices(&self) -> String {
        if self.user.is_none() {
            return String::new();
        }
        let mut items = String::new();
        for device in self.devices {
            let (class, label) = if device.current {
                (
                    r#" class="current""#,
                    r#" <span class="tag">this browser</span>"#,
                )
            } else {
                ("", "")
            };
            let _ = write!(
                items,
                r#"<li{class} data-id-hint="{hint}"><code>{hint}</code>{label}<span class="muted">started {created}, last seen {seen}</span></li>"#,
                hint = escape(&device.id_hint),
                created = ago(self.now, device.created),
                seen = ago(self.now, device.last_seen),
            );
        }
        let note = if self.state.store.is_client_side() {
            r#"<p class="muted">With client-side sessions the whole session is in the cookie, so the server keeps no list of them; "log out everywhere" can only end this one.</p>"#
        } else {
            ""
        };
        format!(
            r#"<section class="devices">
<h2>Your sessions</h2>
<ul id="sessions">{items}</ul>
{note}
<button id="logout-everywhere" type="button" class="danger">Log out everywhere</button>
</section>"#
        )
    }

    fn cookie_panel(&self) -> String {
        let state = self.state;
        let name = escape(&state.cookie_name);
        let yes_no = |on: bool| if on { "yes" } else { "no" };
        let secure = yes_no(state.secure);
        let lifetime = if state.persistent {
            format!("persistent (Max-Age, up to {})", span(state.lifetime))
        } else {
            "browser session (no Max-Age)".to_owned()
        };
        let store = match state.store.name() {
            "cookie" => "cookie (the session, signed, in the cookie)",
            "sealed" => "sealed (the session, encrypted, in the cookie)",
            "sqlite" => "sqlite (the cookie holds a signed id)",
            "redis" => "redis (the cookie holds a signed id)",
            "postgres" => "postgres (the cookie holds a signed id)",
            _ => "memory (the cookie holds a signed id)",
        };
        let idle = if state.idle_timeout > 0 {
            span(state.idle_timeout)
        } else {
            "none".to_owned()
        };
        let countdown_label = if state.idle_timeout > 0 {
            "Idle deadline in"
        } else {
            "Ends in"
        };
        let (deadline, now) = (self.deadline, self.now);
        let remaining = deadline.saturating_sub(now);
        format!(
            r#"<section id="cookie-panel">
<h2>Session cookie</h2>
<dl>
<dt>Name</dt><dd><code id="cookie-name">{name}</code></dd>
<dt>HttpOnly</dt><dd>yes</dd>
<dt>Secure</dt><dd>{secure}</dd>
<dt>SameSite</dt><dd>Lax</dd>
<dt>Path</dt><dd>/</dd>
<dt>Lifetime</dt><dd id="cookie-lifetime">{lifetime}</dd>
<dt>Store</dt><dd>{store}</dd>
<dt>Idle timeout</dt><dd>{idle}</dd>
<dt>{countdown_label}</dt><dd><span id="expires-in" data-deadline="{deadline}" data-now="{now}">{remaining}</span> s</dd>
</dl>
</section>"#
        )
    }
}

const STYLE: &str = r#"
:root { color-scheme: light dark; }
* { box-sizing: border-box; }
body {
  margin: 0; min-height: 100vh; display: flex; align-items: flex-start; justify-content: center;
  padding: 3rem 1rem;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  line-height: 1.5; background: var(--bg); color: var(--fg);
  transition: background .2s, color .2s;
}
body.theme-light { --bg: #f2f4f7; --card: #fff; --fg: #1d2433; --muted: #636d80; --line: #e4e7ec; --field: #7d8696; --accent: #3559e0; --accent-fg: #fff; --soft: #eef2ff; --danger: #c4320a; color-scheme: light; }
body.theme-dark { --bg: #0f131a; --card: #1a202b; --fg: #e6e9ef; --muted: #98a2b3; --line: #2c3442; --field: #6b7689; --accent: #7c98ff; --accent-fg: #0f131a; --soft: #232c3d; --danger: #ff8a65; color-scheme: dark; }
.card {
  width: 100%; max-width: 34rem; background: var(--card); border: 1px solid var(--line);
  border-radius: 14px; padding: 1.75rem 2rem; box-shadow: 0 10px 30px rgba(0,0,0,.08);
}
header { display: flex; align-items: center; justify-content: space-between; gap: 1rem; }
h1 { font-size: 1.4rem; margin: 0; }
h2 { font-size: .8rem; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 0 0 .6rem; }
section { border-top: 1px solid var(--line); padding: 1.1rem 0 .2rem; margin-top: 1.1rem; }
.visits p { display: flex; align-items: baseline; gap: .6rem; margin: 0; }
.big { font-size: 2.4rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); }
button {
  font: inherit; cursor: pointer; border-radius: 8px; padding: .45rem .9rem;
  border: 1px solid var(--accent); background: var(--accent); color: var(--accent-fg);
}
button:hover { filter: brightness(1.08); }
#theme-toggle { background: transparent; color: var(--fg); border-color: var(--line); }
button.danger { background: transparent; color: var(--danger); border-color: var(--danger); }
label { display: block; font-size: .9rem; margin-bottom: .3rem; }
.row { display: flex; gap: .5rem; }
input[type=text] {
  flex: 1; font: inherit; padding: .45rem .7rem; border-radius: 8px;
  border: 1px solid var(--field); background: var(--bg); color: var(--fg);
}
ul { list-style: none; padding: 0; margin: 0 0 .8rem; }
li { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; padding: .45rem .6rem; border-radius: 8px; }
li .muted { flex-basis: 100%; font-size: .85rem; }
li.current { background: var(--soft); }
.tag { font-size: .75rem; padding: .05rem .45rem; border-radius: 99px; background: var(--accent); color: var(--accent-fg); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; font-size: .95rem; }
dt { color: var(--muted); }
dd { margin: 0; }
#expires-in { font-variant-numeric: tabular-nums; font-weight: 600; }
.notice { background: var(--soft); border-left: 4px solid var(--accent); padding: .6rem .8rem; border-radius: 6px; margin: 1rem 0 0; }
.error { color: var(--danger); margin: .6rem 0 0; }
footer { margin-top: 1.4rem; font-size: .8rem; }
"#;

const SCRIPT: &str = r#"
"use strict";
function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
}
async function call(path, body) {
  // Always JSON, even with no body: the API refuses other content types.
  const response = await fetch(path, {
    method: "POST",
    headers: { "Accept": "application/json", "Content-Type": "application/json" },
    body: JSON.stringify(body === undefined ? {} : body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { /* no JSON body */ }
  if (!response.ok) {
    const err = new Error((data && data.error) || ("HTTP " + response.status));
    err.status = response.status;
    throw err;
  }
  return data;
}
function act(id, path, body) {
  const element = document.getElementById(id);
  if (!element) return;
  element.addEventListener("click", async () => {
    try {
      await call(path, typeof body === "function" ? body() : body);
      location.reload();
    } catch (err) {
      // 401: this tab's view is stale (logged out elsewhere); show the
      // page as it is now.
      if (err.status === 401) {
        location.reload();
        return;
      }
      showError(err.message);
    }
  });
}
act("theme-toggle", "/api/theme", () => ({ theme: document.getElementById("theme-toggle").dataset.next }));
act("logout-button", "/api/logout");
act("logout-everywhere", "/api/logout-everywhere");
const form = document.getElementById("login-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("/api/login", { user: document.getElementById("login-name").value });
      location.reload();
    } catch (err) {
      showError(err.message);
    }
  });
}
const expiresIn = document.getElementById("expires-in");
if (expiresIn) {
  const left = Number(expiresIn.dataset.deadline) - Number(expiresIn.dataset.now);
  const start = Date.now();
  const tick = () => {
    const seconds = Math.max(0, Math.ceil(left - (Date.now() - start) / 1000));
    expiresIn.textContent = String(seconds);
  };
  tick();
  setInterval(tick, 1000);
}
"#;

/// The error page's style: readable, light or dark as the system is.
const ERROR_STYLE: &str = "
:root { color-scheme: light dark; }
body { font-family: system-ui, sans-serif; line-height: 1.5; margin: 0; padding: 3rem 1rem; }
main { max-width: 34rem; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: 0 0 .6rem; }
";

#[cfg(test)]
mod tests {
    use super::{ago, escape, span};

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("alice"), "alice");
    }

    #[test]
    fn human_times() {
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(ago(100, 40), "60 s ago");
        assert_eq!(ago(10_000, 0), "2 h ago");
        assert_eq!(span(1_800), "30 min");
        assert_eq!(span(14 * 86_400), "14 days");
        assert_eq!(span(3_600), "1 hour");
        assert_eq!(span(61), "61 s");
    }
}
