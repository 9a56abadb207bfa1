//! `pec-connector serve` end to end: the server started in-process on a free port with a fresh
//! data directory, called over real HTTP, registering an account against the Dovecot and SMTP
//! test servers and importing PEC into the Zendesk simulator.
//!
//! The local schedules fire a full interval after they are put (at least a minute), so the
//! first import is asked for with `POST /accounts/{id}/poll`; the poll loop itself is shown by
//! a restart: the schedules are put again from the store, and the PEC that arrived while the
//! server was down is imported by the loop with no call at all.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector::ports::Schedules;
use e2e::env::unique_name;
use e2e::inbound_env::{Dovecot, PASSWORD, mail, smtp_server};
use pec_connector::serve::{ServeConfig, Server};
use sandbox::ZendeskSimulator;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const ADMIN_TOKEN: &str = "serve-admin-token-0123456789abcdef";

/// A server started in-process, stopped by [`Running::stop`].
pub(crate) struct Running {
    pub(crate) base: String,
    server_task: JoinHandle<anyhow::Result<()>>,
    stop: oneshot::Sender<()>,
}

impl Running {
    pub(crate) async fn start(
        config: ServeConfig,
    ) -> (Running, Arc<connector::schedules::local::LocalScheduler>) {
        let server = Server::start(config).await.expect("serve starts");
        let base = format!("http://{}", server.local_addr());
        let schedules = server.schedules();
        let (stop, stopped) = oneshot::channel::<()>();
        let server_task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        (
            Running {
                base,
                server_task,
                stop,
            },
            schedules,
        )
    }

    pub(crate) async fn stop(self) {
        self.stop.send(()).expect("the server is running");
        tokio::time::timeout(Duration::from_secs(30), self.server_task)
            .await
            .expect("the server stops within 30 s")
            .expect("the server task")
            .expect("the server stops cleanly");
    }
}

pub(crate) fn config(dir: &Path, sim: &ZendeskSimulator, tokens: bool) -> ServeConfig {
    let ca = std::env::var("IMAP_CA_PEM")
        .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
    ServeConfig {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: dir.to_owned(),
        zendesk_url: sim.base_url().to_owned(),
        zendesk_email: sim.credentials().agent_email.clone(),
        zendesk_api_token: tokens.then(|| SecretString::from(sim.credentials().api_token.clone())),
        admin_token: tokens.then(|| SecretString::from(ADMIN_TOKEN)),
        public_url: None,
        // The SMTP test server uses the same certificate (`SMTP_CA_PEM`).
        trust_ca: Some(ca.into()),
        agent_reserve_percent: 20,
        trust_pec_ca: None,
    }
}

async fn admin(
    http: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http.request(method, url).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.expect("HTTP call");
    let status = answer.status().as_u16();
    let body = answer.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

fn subjects(sim: &ZendeskSimulator) -> Vec<String> {
    sim.tickets().into_iter().map(|t| t.subject).collect()
}

pub(crate) async fn append(dovecot: &Dovecot, user: &str, n: u32) {
    let raw = mail::envelope(
        &mail::citizen(n, user).build(),
        &format!("opec-serve-{n}@pec.sandbox.test"),
    );
    let (dovecot, user) = (dovecot.clone(), user.to_owned());
    tokio::task::spawn_blocking(move || dovecot.append_blocking(&user, &[raw]))
        .await
        .expect("append task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_registers_an_account_and_imports_pec_by_request_and_by_schedule() {
    let dovecot = Dovecot::from_env();
    let sim = ZendeskSimulator::start().await.expect("zendesk simulator");
    let dir = tempfile::tempdir().expect("data directory");
    let http = reqwest::Client::new();

    let (running, schedules) = Running::start(config(dir.path(), &sim, true)).await;
    let base = running.base.clone();

    // 1. Health.
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    // 2. Register an account against the test servers.
    let user = format!("serve-{}@pec.test", unique_name());
    let (smtp_host, smtp_port) = smtp_server();
    let registration = json!({
        "address": user,
        "password": PASSWORD,
        "imap_host": dovecot.host,
        "imap_port": dovecot.port,
        "smtp_host": smtp_host,
        "smtp_port": smtp_port,
        "poll_interval_minutes": 1,
    });
    let (status, body) = admin(
        &http,
        "POST",
        format!("{base}/accounts"),
        Some(registration),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        !body.to_string().contains(PASSWORD),
        "no secret in the answer"
    );
    let id = body["id"].as_str().expect("account id").to_owned();
    let webhooks = sim.webhooks();
    assert_eq!(webhooks.len(), 1, "{webhooks:?}");
    assert_eq!(webhooks[0].endpoint, format!("{base}/webhooks/zendesk"));
    let mut titles: Vec<String> = sim.triggers().into_iter().map(|t| t.title).collect();
    titles.sort();
    assert_eq!(
        titles,
        vec![
            format!("Public reply by PEC Connector [{user}]"),
            format!("Reply by PEC Connector [{user}]"),
        ]
    );
    let schedule = schedules
        .get(&connector::domain::AccountId::parse(&id).unwrap())
        .await
        .unwrap()
        .expect("the account's local schedule");
    assert!(schedule.enabled);
    assert_eq!(schedule.interval.as_duration(), Duration::from_secs(60));

    // 3. A PEC arrives; "poll now" imports it.
    append(&dovecot, &user, 1).await;
    let (status, outcome) = admin(&http, "POST", format!("{base}/accounts/{id}/poll"), None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["tickets_created"], 1, "{outcome}");
    let tickets = subjects(&sim);
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert!(tickets[0].contains("Richiesta n. 1"), "{tickets:?}");

    // 4. Clean shutdown.
    running.stop().await;
    drop(schedules);

    // While the server is down another PEC arrives. Restarted from the same data directory
    // with no token in the configuration (both are kept there), the schedule is put again from
    // the store and the poll loop imports the PEC by itself.
    append(&dovecot, &user, 2).await;
    let (running, schedules) = Running::start(config(dir.path(), &sim, false)).await;
    let base = running.base.clone();
    let listed = schedules.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].account.as_str(), id);
    assert_eq!(listed[0].interval.as_duration(), Duration::from_secs(60));
    let (status, accounts) = admin(&http, "GET", format!("{base}/accounts"), None).await;
    assert_eq!(
        status, 200,
        "the kept admin token still opens the admin routes: {accounts}"
    );
    assert_eq!(accounts["accounts"][0]["id"], id.as_str(), "{accounts}");
    let waited = Instant::now();
    while !subjects(&sim).iter().any(|s| s.contains("Richiesta n. 2")) {
        assert!(
            waited.elapsed() < Duration::from_secs(45),
            "the poll loop did not import the second PEC: {:?}",
            subjects(&sim)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        subjects(&sim).len(),
        2,
        "exactly once: {:?}",
        subjects(&sim)
    );
    running.stop().await;
}
