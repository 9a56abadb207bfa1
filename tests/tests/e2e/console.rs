//! The admin console (`/admin`) in a real browser: headless Chromium driven through
//! chromedriver (WebDriver), against `pec-connector serve` with Dovecot, the SMTP test server and
//! the Zendesk simulator.
//!
//! One scenario, as an admin lives it: a wrong then the right token; a registration refused for
//! its password (the explanation in Italian next to the password field), then accepted (the
//! Zendesk objects listed with their links); the account in the table; "poll now" after a PEC
//! arrived, and the count moves; a password rotation; the English switch; the page at 390 px;
//! the deletion, confirmed by typing the address.
//!
//! Any Content-Security-Policy violation, script error, console error or failed request fails
//! the test, except the two refusals the scenario asks for (401 for the wrong token, 422 for
//! the wrong password). The page's weight and first paint are measured in the browser and
//! printed; screenshots go to `<target>/console-screenshots/`.
//!
//! Needs `chromedriver` and `chromium` (`infra/chromium.sh install`; `CHROMEDRIVER` names the
//! driver, default the one on PATH).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::env::unique_name;
use e2e::inbound_env::{Dovecot, PASSWORD, smtp_server};
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use sandbox::ZendeskSimulator;
use serde_json::{Value, json};

use crate::serve::{ADMIN_TOKEN, Running, append, config};

/// How long the page may take to show what a step waits for (a registration logs in to IMAP
/// and SMTP and provisions Zendesk; Dovecot delays a refused login).
const STEP: Duration = Duration::from_secs(40);

/// Page weight budget (HTML + script + style, as transferred) and first paint on loopback.
const MAX_PAGE_BYTES: u64 = 100 * 1024;
const MAX_FIRST_PAINT_MS: f64 = 300.0;

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}): run infra/chromium.sh install, or set CHROMEDRIVER")
            });
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(answer) = http.get(format!("{}/status", driver.url)).send().await
                && answer.status().is_success()
            {
                return driver;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer on {}",
                driver.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut chrome_options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            chrome_options["binary"] = json!("/usr/bin/chromium");
        }
        let capabilities: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome_options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }))
        .expect("capabilities");
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser's console log since the last call (chromedriver's `se/log`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// Records in the page what a test must see: CSP violations, script errors, console errors
/// and every API answer that was not a success.
const HOOKS: &str = r#"
window.__seen = {csp: [], errors: [], refused: []};
document.addEventListener("securitypolicyviolation", (e) => {
  window.__seen.csp.push(e.violatedDirective + " " + e.blockedURI);
});
window.addEventListener("error", (e) => { window.__seen.errors.push(String(e.message)); });
window.addEventListener("unhandledrejection", (e) => { window.__seen.errors.push(String(e.reason)); });
const consoleError = console.error.bind(console);
console.error = (...args) => { window.__seen.errors.push(args.map(String).join(" ")); consoleError(...args); };
const realFetch = window.fetch.bind(window);
window.fetch = async (url, options) => {
  const method = (options && options.method) || "GET";
  try {
    const answer = await realFetch(url, options);
    if (!answer.ok) window.__seen.refused.push(method + " " + url + " " + answer.status);
    return answer;
  } catch (e) {
    window.__seen.refused.push(method + " " + url + " failed: " + e);
    throw e;
  }
};
"#;

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(STEP)
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector} not on the page: {e}"))
}

async fn text_of(c: &Client, selector: &str) -> String {
    match c.find(Locator::Css(selector)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the element's text contains `needle`.
async fn wait_text(c: &Client, selector: &str, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let text = text_of(c, selector).await;
        if text.contains(needle) {
            return text;
        }
        if started.elapsed() > STEP {
            let status = text_of(c, "#status").await;
            panic!("{selector} never said {needle:?}; it says {text:?} (status: {status:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, selector: &str, value: &str) {
    let input = css(c, selector).await;
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
}

async fn click(c: &Client, selector: &str) {
    css(c, selector).await.click().await.expect("click");
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots directory");
    dir
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    let path = screenshots_dir().join(name);
    std::fs::write(&path, png).expect("screenshot written");
    eprintln!("console screenshot: {}", path.display());
    path
}

/// The page's weight (bytes of HTML, script and style as transferred) and first paint (ms).
/// The paint entry is recorded once the frame is presented, which can come a little after the
/// load: it is asked for again for up to 5 s.
async fn measure(c: &Client) -> (u64, f64) {
    let asked = std::time::Instant::now();
    loop {
        let (bytes, paint) = performance(c).await;
        match paint {
            Some(paint) => return (bytes, paint),
            None if asked.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => panic!("no first paint entry 5 s after the page loaded"),
        }
    }
}

/// The page's weight and its first paint, if recorded yet.
async fn performance(c: &Client) -> (u64, Option<f64>) {
    let m = c
        .execute(
            r#"
const nav = performance.getEntriesByType("navigation")[0];
const size = (e) => e.transferSize || e.encodedBodySize || 0;
let bytes = size(nav);
const files = [];
for (const r of performance.getEntriesByType("resource")) {
  bytes += size(r);
  files.push(r.name + " " + size(r));
}
const paints = performance.getEntriesByType("paint");
const paint = paints.find((p) => p.name === "first-contentful-paint") || paints.find((p) => p.name === "first-paint");
const ms = (v) => Math.round(v);
return {bytes, html: size(nav), files, paint: paint ? paint.startTime : null,
  response_start: ms(nav.responseStart), response_end: ms(nav.responseEnd),
  dom_interactive: ms(nav.domInteractive), dom_content_loaded: ms(nav.domContentLoadedEventEnd)};
"#,
            vec![],
        )
        .await
        .expect("performance entries");
    eprintln!("console page: {m}");
    let bytes = m["bytes"].as_u64().expect("bytes");
    (bytes, m["paint"].as_f64())
}

/// Every SEVERE browser log entry that is not one of the scenario's expected refusals.
async fn log_problems(c: &Client) -> Vec<String> {
    let entries = c.issue_cmd(BrowserLog).await.expect("browser log");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .filter(|m| {
            let expected = m.contains("/accounts")
                && (m.contains("status of 401") || m.contains("status of 422"));
            !expected
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_registers_polls_rotates_and_deletes_an_account_in_a_real_browser() {
    let dovecot = Dovecot::from_env();
    let sim = ZendeskSimulator::start().await.expect("zendesk simulator");
    let dir = tempfile::tempdir().expect("data directory");
    let (running, schedules) = Running::start(config(dir.path(), &sim, true)).await;
    let base = running.base.clone();
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("browser profile");
    let c = driver.browser(profile.path()).await;

    // The page, measured as it loads: the first load also starts the browser's renderer for
    // the site (printed, not held to the budget); the budget is for a load by a running browser
    // (the page is fetched in full again: it is served `no-cache`, with no validator).
    c.goto(&format!("{base}/admin"))
        .await
        .expect("open the console");
    css(&c, "#token").await;
    let (cold_bytes, cold_paint) = measure(&c).await;
    eprintln!("console page, first load: {cold_bytes} bytes; first paint: {cold_paint:.1} ms");
    c.goto("about:blank").await.expect("leave");
    c.goto(&format!("{base}/admin"))
        .await
        .expect("open the console again");
    css(&c, "#token").await;
    let (bytes, first_paint) = measure(&c).await;
    eprintln!("console page weight: {bytes} bytes; first paint: {first_paint:.1} ms");
    assert!(
        bytes > 0 && bytes < MAX_PAGE_BYTES,
        "page weight {bytes} bytes"
    );
    assert!(
        first_paint < MAX_FIRST_PAINT_MS,
        "first paint {first_paint:.1} ms"
    );
    c.execute(HOOKS, vec![]).await.expect("hooks");
    assert_eq!(
        c.execute("return document.documentElement.lang", vec![])
            .await
            .unwrap(),
        "it",
        "Italian first"
    );

    // 1. A wrong token, then the right one (Enter in the field: the keyboard is enough).
    fill(&c, "#token", "not-the-token\u{E007}").await;
    wait_text(&c, "#token-error", "Token errato").await;
    assert_eq!(
        css(&c, "#token").await.attr("aria-invalid").await.unwrap(),
        Some("true".to_owned())
    );
    fill(&c, "#token", &format!("{ADMIN_TOKEN}\u{E007}")).await;
    wait_text(&c, "#accounts", "Nessuna casella PEC registrata").await;
    let stored: Value = c
        .execute("return [sessionStorage.length, location.href]", vec![])
        .await
        .unwrap();
    assert_eq!(stored[0], 1, "the token is kept for the session");
    assert!(
        !stored[1].as_str().unwrap().contains(ADMIN_TOKEN),
        "never in the URL"
    );

    // 2. Register with a wrong password: the password field says why, in Italian.
    let user = format!("console-{}@pec.test", unique_name());
    let (smtp_host, smtp_port) = smtp_server();
    fill(&c, "#reg-address", &user).await;
    fill(&c, "#reg-password", "not-the-password").await;
    fill(&c, "#reg-imap_host", &dovecot.host).await;
    fill(&c, "#reg-imap_port", &dovecot.port.to_string()).await;
    fill(&c, "#reg-smtp_host", &smtp_host).await;
    fill(&c, "#reg-smtp_port", &smtp_port.to_string()).await;
    fill(&c, "#reg-poll_interval_minutes", "5").await;
    click(&c, "#register-form button[type=submit]").await;
    let explained = wait_text(&c, "#reg-password-error", "password per programmi di posta").await;
    assert!(explained.contains("Il gestore ha rifiutato"), "{explained}");
    assert_eq!(
        css(&c, "#reg-password")
            .await
            .attr("aria-invalid")
            .await
            .unwrap(),
        Some("true".to_owned())
    );
    screenshot(&c, "console-register-refused-desktop.png").await;

    // ... then the right one: what was created in Zendesk, with links there.
    fill(&c, "#reg-password", PASSWORD).await;
    click(&c, "#register-form button[type=submit]").await;
    let created = wait_text(&c, "#created", &format!("Reply by PEC Connector [{user}]")).await;
    assert!(created.contains("Categoria di trigger"), "{created}");
    assert!(created.contains("Webhook"), "{created}");
    let reply_trigger = sim
        .triggers()
        .into_iter()
        .find(|t| t.title == format!("Reply by PEC Connector [{user}]"))
        .expect("the reply trigger in Zendesk");
    let links: Value = c
        .execute(
            "return [...document.querySelectorAll('#created a')].map((a) => a.href)",
            vec![],
        )
        .await
        .unwrap();
    let links: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        links.contains(
            &format!(
                "{}/admin/objects-rules/rules/triggers/{}",
                sim.base_url(),
                reply_trigger.id
            )
            .as_str()
        ),
        "{links:?}"
    );
    assert_eq!(links.len(), 4, "{links:?}");

    // 3. The account in the table.
    let row = "#accounts tbody tr[data-account]";
    let row_text = wait_text(&c, row, &user).await;
    assert!(row_text.contains("OK"), "{row_text}");
    assert!(row_text.contains("0 / 0 / 0"), "{row_text}");
    let id = css(&c, row)
        .await
        .attr("data-account")
        .await
        .unwrap()
        .expect("the row names its account");
    let row = format!("#accounts tr[data-account=\"{id}\"]");

    // 4. A PEC arrives; "poll now" imports it and the count moves.
    append(&dovecot, &user, 1).await;
    click(&c, &format!("{row} button.manage")).await;
    css(&c, "#account-title").await;
    click(&c, "#poll-now").await;
    wait_text(&c, "#poll-outcome", "1 ticket nuovi").await;
    wait_text(&c, &format!("{row} td.counts"), "1 / 0 / 0").await;
    wait_text(&c, "#account .activity", "PEC ricevute: 1 in 30 giorni").await;
    assert_eq!(sim.tickets().len(), 1);
    screenshot(&c, "console-account-desktop.png").await;

    // 5. Rotate the password (checked by logging in again).
    fill(&c, "#rot-password", PASSWORD).await;
    click(&c, "#rotate-form button[type=submit]").await;
    wait_text(&c, "#status", "Password cambiata").await;

    // Pause and resume.
    click(&c, "#pause").await;
    wait_text(&c, "#status", "Casella in pausa").await;
    wait_text(&c, &row, "In pausa").await;
    click(&c, "#pause").await;
    wait_text(&c, "#status", "Casella riattivata").await;
    wait_text(&c, &row, "OK").await;

    // 6. The English switch, and back.
    click(&c, "#lang").await;
    wait_text(&c, "#accounts-title", "PEC mailboxes").await;
    click(&c, "#lang").await;
    wait_text(&c, "#accounts-title", "Caselle PEC").await;

    // 7. A phone-sized screen: nothing wider than it.
    c.set_window_size(390, 844).await.expect("resize");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let widths: Value = c
        .execute(
            "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        widths[1].as_u64() <= widths[0].as_u64(),
        "the page scrolls sideways at 390 px: {widths}"
    );
    screenshot(&c, "console-account-390px.png").await;
    c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    screenshot(&c, "console-accounts-390px.png").await;
    c.set_window_size(1280, 1000).await.expect("resize");

    // 8. Delete, confirmed by typing the address.
    fill(&c, "#del-confirm", "someone-else@pec.test").await;
    click(&c, "#delete-form button[type=submit]").await;
    wait_text(&c, "#del-confirm-error", "non corrisponde").await;
    fill(&c, "#del-confirm", &user).await;
    click(&c, "#delete-form button[type=submit]").await;
    wait_text(&c, "#status", "eliminata").await;
    wait_text(&c, "#accounts", "Nessuna casella PEC registrata").await;
    assert!(
        !sim.triggers().iter().any(|t| t.title.contains(&user)),
        "the account's triggers are gone"
    );

    // 9. Another Zendesk instance: added (checked against Zendesk), listed, removed.
    let credentials = sim.credentials();
    fill(&c, "#zd-id", "seconda").await;
    fill(&c, "#zd-url", sim.base_url()).await;
    fill(&c, "#zd-email", &credentials.agent_email).await;
    fill(&c, "#zd-api_token", &credentials.api_token).await;
    click(&c, "#instance-form button[type=submit]").await;
    wait_text(&c, "#status", "Istanza seconda aggiunta").await;
    wait_text(&c, "#instances ul", "seconda").await;
    click(&c, "#instances ul button").await;
    wait_text(&c, "#status", "Istanza seconda rimossa").await;
    wait_text(&c, "#instances", "Solo l'istanza predefinita").await;

    // Nothing went wrong in the page but the two refusals the scenario asked for.
    let seen = c
        .execute("return window.__seen", vec![])
        .await
        .expect("what the page saw");
    assert_eq!(seen["csp"], json!([]), "CSP violations: {seen}");
    assert_eq!(
        seen["errors"],
        json!([]),
        "script or console errors: {seen}"
    );
    let refused: Vec<&str> = seen["refused"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        refused,
        ["GET accounts 401", "POST accounts 422"],
        "failed requests: {seen}"
    );
    let problems = log_problems(&c).await;
    assert!(problems.is_empty(), "browser console: {problems:#?}");

    c.close().await.expect("close the browser");
    drop(driver);
    running.stop().await;
    drop(schedules);
}
