//! End-to-end tests of the demo page in headless Chromium, driven over
//! WebDriver (chromedriver + fantoccini).
//!
//! Each test runs the real `keepsake-demo` binary (`--store memory`; the
//! screenshot uses the default SQLite store) with Secure cookies as in
//! production (Chromium takes them over http://127.0.0.1), and its own
//! chromedriver, with a fresh Chromium profile per browser.
//!
//! They need the Debian packages `chromium` and `chromium-driver`. Without
//! them the tests print a note and pass, unless `KEEPSAKE_TEST_BROWSER=1` is
//! set (CI sets it): then a missing browser is a failure.
//!
//! ```text
//! KEEPSAKE_TEST_BROWSER=1 cargo test -p keepsake-demo --test browser
//! ```
//!
//! The screenshot in `docs/screenshot.png` is made by an ignored test:
//!
//! ```text
//! cargo test -p keepsake-demo --test browser -- --ignored screenshot
//! ```

#[path = "browser/harness.rs"]
mod harness;

use harness::{Browser, Demo, Driver, profile, require_browser, wait_for};

/// Waits until the page shows `expected` visits.
async fn wait_visits(browser: &Browser, expected: u64) {
    wait_for(
        &format!("#visits to read {expected}"),
        async || match browser.visits().await {
            Some(visits) if visits == expected => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// Waits until `<body data-theme>` is `expected`.
async fn wait_theme(browser: &Browser, expected: &str) {
    wait_for(
        &format!("data-theme to be {expected:?}"),
        async || match browser.theme().await {
            Some(theme) if theme == expected => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

#[tokio::test]
async fn counter_goes_up_across_reloads() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;

    browser.goto(&demo.url("/")).await;
    wait_visits(&browser, 1).await;
    for expected in 2..=4 {
        browser.reload().await;
        wait_visits(&browser, expected).await;
    }

    browser.close().await;
}

#[tokio::test]
async fn login_shows_the_name_and_logout_clears_it() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;

    browser.goto(&demo.url("/")).await;
    browser.wait_text("user", "").await;
    assert!(
        !browser.has("logout-button").await,
        "a logout button before logging in"
    );

    browser.log_in("ada").await;
    // The name survives a plain reload: it is in the session, not the DOM.
    browser.reload().await;
    browser.wait_text("user", "ada").await;

    browser.click("logout-button").await;
    browser.wait_text("user", "").await;
    wait_for("#logout-button to go away", async || {
        if browser.has("logout-button").await {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    assert!(
        browser.has("login-form").await,
        "no login form after logout"
    );

    browser.close().await;
}

#[tokio::test]
async fn theme_survives_a_browser_restart() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();

    let browser = driver.browser(dir.path()).await;
    browser.goto(&demo.url("/")).await;
    wait_theme(&browser, "light").await;
    browser.click("theme-toggle").await;
    wait_theme(&browser, "dark").await;
    wait_visits(&browser, 2).await;
    browser.close().await;

    // The same profile in a new browser: the persistent theme cookie is
    // still there, the browser-session cookie is not.
    let browser = driver.browser(dir.path()).await;
    browser.goto(&demo.url("/")).await;
    wait_theme(&browser, "dark").await;
    assert_eq!(
        browser.visits().await,
        Some(1),
        "the session cookie outlived the browser"
    );

    browser.close().await;
}

#[tokio::test]
async fn http_only_hides_the_session_cookie_from_scripts() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;

    browser.goto(&demo.url("/")).await;
    wait_visits(&browser, 1).await;

    let script_view = browser
        .client
        .execute("return document.cookie", Vec::new())
        .await
        .expect("run a script");
    let script_view = script_view.as_str().expect("document.cookie is a string");
    assert!(
        !script_view.contains("session="),
        "document.cookie shows the session cookie: {script_view:?}"
    );

    let cookies = browser
        .client
        .get_all_cookies()
        .await
        .expect("read cookies over WebDriver");
    let session = cookies
        .iter()
        .find(|cookie| cookie.name() == "session")
        .unwrap_or_else(|| {
            let names: Vec<&str> = cookies.iter().map(|cookie| cookie.name()).collect();
            panic!("no session cookie in the browser; it has {names:?}")
        });
    assert_eq!(session.http_only(), Some(true), "session cookie: {session}");
    assert_eq!(session.secure(), Some(true), "session cookie: {session}");

    browser.close().await;
}

/// Login CSRF: a page of another site (here a `data:` URL, whose origin is
/// opaque) with a `<form enctype="text/plain">` that posts
/// `{"user":"mallory","x":"="}` to the login as it loads. The browser sends
/// it (without the visitor's `SameSite=Lax` cookie) and would keep the
/// cookie of a successful answer; the demo refuses it, so the visitor keeps
/// their own session.
#[tokio::test]
async fn another_sites_form_cannot_log_the_visitor_in() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;

    browser.goto(&demo.url("/")).await;
    wait_visits(&browser, 1).await;

    let login = demo.url("/api/login");
    let attack = format!(
        r#"<form method="post" enctype="text/plain" action="{login}"><input name='{{"user":"mallory","x":"' value='"}}'></form><script>document.forms[0].submit()</script>"#
    );
    browser
        .goto(&format!("data:text/html,{}", percent_encode(&attack)))
        .await;
    wait_for("the form to land on /api/login", async || {
        match browser.client.current_url().await {
            Ok(url) if url.as_str() == login => Ok(()),
            Ok(url) => Err(url.to_string()),
            Err(err) => Err(err.to_string()),
        }
    })
    .await;
    let answer = browser.client.source().await.expect("the answer");
    assert!(answer.contains("cross-site"), "{answer}");

    browser.goto(&demo.url("/")).await;
    wait_visits(&browser, 2).await;
    assert_eq!(browser.text("user").await.as_deref(), Some(""));

    browser.close().await;
}

/// A page that reads the session with `fetch` while it logs in: the reads
/// sent with the old cookie reach the server after the login gave the
/// session a new id, find the old one gone, and must not answer with a
/// removal of the session cookie, which the browser could apply after the
/// login's answer and so log the visitor out again.
#[tokio::test]
async fn reads_racing_a_login_do_not_log_the_visitor_out() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;
    browser.goto(&demo.url("/")).await;
    wait_visits(&browser, 1).await;

    const RACE: &str = r#"
        const done = arguments[arguments.length - 1];
        const json = { "Content-Type": "application/json" };
        const post = (path, body) =>
            fetch(path, { method: "POST", headers: json, body: JSON.stringify(body) });
        (async () => {
            await post("/api/logout", {});
            await post("/api/visits", {});
            const reads = () =>
                Array.from({ length: 15 }, () => fetch("/api/session").then(r => r.text()));
            const before = reads();
            const login = post("/api/login", { user: "ada" }).then(r => r.status);
            const after = reads();
            await Promise.all([...before, login, ...after]);
            const session = await fetch("/api/session").then(r => r.json());
            done(session.user);
        })().catch(err => done("error: " + err));
    "#;
    let mut users = Vec::new();
    for _ in 0..10 {
        let user = browser
            .client
            .execute_async(RACE, Vec::new())
            .await
            .expect("the script runs");
        users.push(user.as_str().unwrap_or("(none)").to_owned());
    }
    assert!(
        users.iter().all(|user| user == "ada"),
        "logged in after each login: {users:?}"
    );

    browser.close().await;
}

#[tokio::test]
async fn logout_everywhere_ends_the_session_in_another_browser() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let (dir_a, dir_b) = (profile(), profile());
    let (a, b) = tokio::join!(driver.browser(dir_a.path()), driver.browser(dir_b.path()));

    a.goto(&demo.url("/")).await;
    a.log_in("grace").await;
    b.goto(&demo.url("/")).await;
    b.log_in("grace").await;

    // A sees both sessions once it reloads, its own marked current.
    a.reload().await;
    wait_for("#sessions to list both sessions", async || {
        let items = a
            .client
            .find_all(fantoccini::Locator::Css("#sessions li"))
            .await
            .map_err(|err| err.to_string())?;
        let current = a
            .client
            .find_all(fantoccini::Locator::Css("#sessions li.current"))
            .await
            .map_err(|err| err.to_string())?;
        if items.len() == 2 && current.len() == 1 {
            Ok(())
        } else {
            Err(format!("{} items, {} current", items.len(), current.len()))
        }
    })
    .await;

    a.click("logout-everywhere").await;
    a.wait_text("user", "").await;

    b.reload().await;
    b.wait_text("user", "").await;
    assert!(!b.has("logout-button").await, "B still has a logout button");
    // B's cookie names a session that no longer exists: the page says so.
    b.wait_text("expired-notice", "your session expired").await;

    tokio::join!(a.close(), b.close());
}

/// The page works under its Content-Security-Policy, which allows only
/// its own inline script and style (by hash): the script runs (the login,
/// the theme button), the style applies, and the console stays clean: no
/// CSP refusal, no failed load (the favicon is `data:`), no error.
#[tokio::test]
async fn the_page_runs_under_its_content_security_policy() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;

    browser.goto(&demo.url("/")).await;
    wait_visits(&browser, 1).await;
    let problems = browser.console_problems().await;
    assert!(problems.is_empty(), "the console: {problems:#?}");
    let display = browser
        .client
        .execute("return getComputedStyle(document.body).display", Vec::new())
        .await
        .expect("run a script");
    assert_eq!(display, "flex", "the page's style did not apply");
    browser.log_in("ada").await;
    browser.click("theme-toggle").await;
    wait_theme(&browser, "dark").await;
    // The countdown's script ticks.
    wait_for("#expires-in to count down", async || {
        match browser.text("expires-in").await {
            Some(left) if left.parse::<u64>().is_ok_and(|left| left < 1800) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The console is read for real: a warning of ours shows up, alone.
    browser
        .client
        .execute("console.warn('the end of the test')", Vec::new())
        .await
        .expect("run a script");
    let problems = browser.console_problems().await;
    assert!(
        problems.len() == 1 && problems[0].contains("the end of the test"),
        "the console: {problems:#?}"
    );

    browser.close().await;
}

/// Clickjacking: a page of the same site (another port of 127.0.0.1, so
/// the `SameSite=Lax` cookie goes along) cannot frame the demo
/// (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for older
/// browsers), so it cannot dress the logged-in visitor's "Log out
/// everywhere" button up as something else.
#[tokio::test]
async fn no_page_can_frame_the_demo() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;

    browser.goto(&demo.url("/")).await;
    browser.log_in("ada").await;
    browser.console().await;
    let framer = harness::Framer::start(&demo.url("/")).await;
    browser.goto(&framer.url()).await;
    let refusal = wait_for("the browser to refuse the frame", async || {
        let console = browser.console().await;
        console
            .iter()
            .find(|line| line.contains("frame-ancestors 'none'"))
            .cloned()
            .ok_or_else(|| format!("{console:?}"))
    })
    .await;
    assert!(refusal.contains(&demo.url("/")), "{refusal}");
    browser
        .client
        .enter_frame(0)
        .await
        .expect("enter the frame");
    assert!(
        !browser.has("logout-everywhere").await,
        "the framed page shows the demo"
    );

    browser.close().await;
}

/// A tab left open while the session ended elsewhere: its "Log out
/// everywhere" gets a 401, and the page reloads to show the visitor logged
/// out instead of an error beside a logged-in view.
#[tokio::test]
async fn a_stale_tab_shows_the_logged_out_page() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser(dir.path()).await;

    browser.goto(&demo.url("/")).await;
    browser.log_in("ada").await;
    // Another tab logs out; this one still shows the logged-in page.
    let status = browser
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               fetch("/api/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" })
                 .then(r => done(r.status), err => done(String(err)));"#,
            Vec::new(),
        )
        .await
        .expect("the script runs");
    assert_eq!(status, 200, "the logout in the other tab");
    assert_eq!(browser.text("user").await.as_deref(), Some("ada"));

    browser.click("logout-everywhere").await;
    browser.wait_present("login-form").await;
    browser.wait_text("user", "").await;
    assert!(
        !browser.has("logout-everywhere").await,
        "the logged-in view is still there"
    );

    browser.close().await;
}

/// Without JavaScript the page says it needs it, and its login form posts
/// (the name stays out of the URL) to an API that refuses the form with a
/// readable page and logs no one in.
#[tokio::test]
async fn without_javascript_the_login_form_posts_and_fails_cleanly() {
    require_browser!();
    let demo = Demo::start(&[]).await;
    let driver = Driver::start().await;
    let dir = profile();
    let browser = driver.browser_with(dir.path(), false).await;

    browser.goto(&demo.url("/")).await;
    let notice = browser.text("noscript-notice").await.unwrap_or_default();
    assert!(notice.contains("needs JavaScript"), "{notice:?}");
    browser.type_into("login-name", "nojs").await;
    browser.click("login-button").await;
    let login = demo.url("/api/login");
    wait_for("the form to land on /api/login", async || {
        match browser.client.current_url().await {
            Ok(url) if url.as_str() == login => Ok(()),
            Ok(url) => Err(url.to_string()),
            Err(err) => Err(err.to_string()),
        }
    })
    .await;
    let message = browser.text("error-message").await.unwrap_or_default();
    assert!(message.contains("application/json"), "{message:?}");
    assert!(
        browser
            .client
            .title()
            .await
            .expect("the title")
            .starts_with("415 "),
        "an error page"
    );

    browser.goto(&demo.url("/")).await;
    browser.wait_text("user", "").await;

    browser.close().await;
}

/// `%XX` for every byte but ASCII letters and digits, for a `data:` URL.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Makes `docs/screenshot.png`: the logged-in page, 1280 pixels wide and
/// as tall as the whole page (the cookie panel and its countdown
/// included), after a few visits, user "ada", with a second session of hers
/// in another browser so that the session list has two entries, on the
/// demo's default store (SQLite, in a temporary directory). Run by hand
/// when the page changes:
///
/// ```text
/// cargo test -p keepsake-demo --test browser -- --ignored screenshot
/// ```
#[tokio::test]
#[ignore = "writes docs/screenshot.png; run by hand when the page changes"]
async fn screenshot() {
    require_browser!();
    let demo = Demo::start_with_default_store(&[]).await;
    let driver = Driver::start().await;
    let (dir, other_dir) = (profile(), profile());
    let (browser, other) =
        tokio::join!(driver.browser(dir.path()), driver.browser(other_dir.path()));

    other.goto(&demo.url("/")).await;
    other.log_in("ada").await;
    other.close().await;

    browser.goto(&demo.url("/")).await;
    browser.log_in("ada").await;
    for expected in 3..=5 {
        browser.reload().await;
        wait_visits(&browser, expected).await;
    }

    browser.set_viewport(1280, 900).await;
    let height = browser.page_height().await;
    browser.set_viewport(1280, height).await;
    assert_eq!(browser.page_height().await, height, "the page fits");
    let png = browser
        .client
        .screenshot()
        .await
        .expect("take a screenshot");
    assert_eq!(
        harness::png_size(&png),
        Some((1280, height)),
        "screenshot size"
    );
    let path = harness::screenshot_path();
    std::fs::create_dir_all(path.parent().expect("docs/")).expect("create docs/");
    std::fs::write(&path, &png).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    eprintln!("wrote {}", path.display());

    browser.close().await;
}
