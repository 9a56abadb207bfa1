//! The channel tests' world: the whole loop as Zendesk drives it. The api router listens on a
//! real loopback port, the Zendesk simulator's triggers (provisioned by the admin API, run on
//! every update, API ones included) call its webhook over HTTP, the poll runs through the
//! poller Lambda's handler, the mailbox is Dovecot and PEC leave through the SMTP test server.
//! State and secrets are the embedded adapters.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use connector::mailbox::{
    FetchedMessage, Mailbox, MailboxError, MailboxProvider, MailboxSession, MailboxStatus,
    MessageRef,
};

use api::{AppState, WebhookKeys};
use connector::admin::AdminOptions;
use connector::domain::AccountId;
use connector::inbound::Inbound;
use connector::mailbox::imap::{ImapProvider, tls_config};
use connector::mailer::smtp::{SmtpProvider, SmtpTrust};
use connector::outbound::{Outbound, WebhookLimits};
use connector::parts::Parts;
use lambda_runtime::{Context, LambdaEvent};
use sandbox::ZendeskSimulator;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use zendesk::RetryPolicy;

use crate::env::{Env, unique_name};
use crate::inbound_env::{Dovecot, PASSWORD, smtp_server};
use crate::outbound_env::{Answer, Delivered, call, delivered_by, test_options};

pub const ADMIN_TOKEN: &str = "channel-admin-token-0123456789abcdef";

pub struct ChannelEnv {
    pub env: Env,
    pub sim: Arc<ZendeskSimulator>,
    pub dovecot: Dovecot,
    /// The account's PEC address (a fresh Dovecot user; also its SMTP login).
    pub address: String,
    pub account: AccountId,
    pub inbound: Arc<Inbound>,
    pub outbound: Arc<Outbound>,
    pub router: axum::Router,
    /// `http://127.0.0.1:<port>`: where the router listens.
    pub base: String,
    pub spool: PathBuf,
    /// Faults the mailbox adapter is made to show (off by default).
    pub faults: Arc<MailboxFaults>,
    server: JoinHandle<()>,
}

impl Drop for ChannelEnv {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ChannelEnv {
    /// A registered account `label-<unique>@pec.test` (the label may name an SMTP fault of
    /// `infra/smtpd.py`), with its webhook, trigger category and triggers in the simulator.
    pub async fn new(label: &str) -> ChannelEnv {
        ChannelEnv::with(label, json!({})).await
    }

    /// The same, with more registration fields (e.g. `{"receipt_mode": "ticket"}`).
    pub async fn with(label: &str, extra: Value) -> ChannelEnv {
        let env = crate::env::embedded().await;
        let sim = Arc::new(ZendeskSimulator::start().await.expect("zendesk simulator"));
        sim.set_fire_triggers(true);
        let zendesk = crate::env::simulator_client(
            &sim,
            // Quick retries: a test of passing failures should not wait half a minute.
            RetryPolicy {
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                max_attempts: 4,
            },
        );
        let dovecot = Dovecot::from_env();
        let ca = std::env::var("SMTP_CA_PEM")
            .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
        let spool = std::env::var("SMTP_SPOOL")
            .unwrap_or_else(|_| "/tmp/pec-connector-smtpd-0/spool".to_owned());
        let smtp_ca = std::fs::read(&ca).unwrap_or_else(|e| {
            panic!("SMTP test server not set up ({ca}: {e}); run `bash infra/smtpd.sh start`")
        });
        let mailers = Arc::new(
            SmtpProvider::new(SmtpTrust::with_extra_roots(&smtp_ca).expect("test CA"))
                .with_timeout(Duration::from_secs(3)),
        );
        let faults = Arc::new(MailboxFaults::default());
        let mailboxes: Arc<dyn MailboxProvider> = Arc::new(FaultyProvider {
            inner: Arc::new(ImapProvider::new(
                tls_config(Some(&dovecot.ca_pem)).expect("test CA"),
            )),
            faults: faults.clone(),
        });
        let mut parts = Parts::new(
            env.store.clone(),
            env.secrets.clone(),
            mailboxes,
            mailers,
            zendesk,
        );
        // A short lease slack, so a stuck mailbox is given up on within a test's patience.
        parts.poll.lease_slack = Duration::from_secs(4);
        parts.send = test_options();
        let inbound = Arc::new(parts.inbound());
        let outbound = Arc::new(parts.outbound());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let admin = parts.admin(
            env.schedules.clone(),
            inbound.clone(),
            AdminOptions::new(format!("{base}{}", api::WEBHOOK_PATH)),
        );
        let state = AppState {
            outbound: outbound.clone(),
            webhook_secrets: WebhookKeys::stored(env.secrets.clone()),
            webhook_limits: WebhookLimits::default(),
            admin: Some((Arc::new(admin), SecretString::from(ADMIN_TOKEN))),
            console: Default::default(),
        };
        let router = api::router(Arc::new(state));
        let app = router.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let address = format!("{label}-{}@pec.test", unique_name());
        let (smtp_host, smtp_port) = smtp_server();
        let mut registration = json!({
            "address": address,
            "password": PASSWORD,
            "imap_host": dovecot.host,
            "imap_port": dovecot.port,
            "smtp_host": smtp_host,
            "smtp_port": smtp_port,
        });
        if let (Some(body), Some(extra)) = (registration.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let mut env = ChannelEnv {
            env,
            sim,
            dovecot,
            account: AccountId::parse("placeholder").expect("id"),
            address,
            inbound,
            outbound,
            router,
            base,
            spool: spool.into(),
            faults,
            server,
        };
        let answer = env.admin("POST", "/accounts", Some(&registration)).await;
        assert_eq!(answer.status, 201, "registration: {:?}", answer.body);
        env.account = AccountId::parse(answer.body["id"].as_str().expect("account id")).unwrap();
        env
    }

    /// An admin call with the admin token.
    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Authorization".to_owned(), format!("Bearer {ADMIN_TOKEN}")),
        ];
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        call(&self.router, method, path, headers, bytes).await
    }

    /// Puts messages in the account's INBOX (IMAP APPEND to Dovecot).
    pub async fn deliver(&self, messages: Vec<Vec<u8>>) {
        let dovecot = self.dovecot.clone();
        let user = self.address.clone();
        tokio::task::spawn_blocking(move || dovecot.append_blocking(&user, &messages))
            .await
            .expect("append");
    }

    /// One scheduled run of the account, through the poller Lambda's handler: the poll, then
    /// the due retries. Panics when the invocation fails.
    pub async fn poll(&self) -> poller::Response {
        self.try_poll(Duration::from_secs(60)).await.expect("poll")
    }

    /// One scheduled run whose Lambda deadline is `within` from now; the handler's answer.
    pub async fn try_poll(
        &self,
        within: Duration,
    ) -> Result<poller::Response, lambda_runtime::Error> {
        self.try_poll_with(&self.inbound, within).await
    }

    /// The same with another inbound use case (e.g. one with a crash hook).
    pub async fn try_poll_with(
        &self,
        inbound: &Inbound,
        within: Duration,
    ) -> Result<poller::Response, lambda_runtime::Error> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let mut context = Context::default();
        context.request_id = format!("poll-{}", unique_name());
        context.deadline = now_ms + within.as_millis() as u64;
        let event = json!({"account_id": self.account.as_str()});
        let response = poller::handle(
            inbound,
            Some(&self.outbound),
            LambdaEvent::new(event, context),
        )
        .await;
        self.settle().await;
        response
    }

    /// The account's status as `GET /accounts/{id}` shows it.
    pub async fn status(&self) -> Value {
        let a = self
            .admin("GET", &format!("/accounts/{}", self.account.as_str()), None)
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        a.body["status"].clone()
    }

    /// Waits until every webhook call the simulator's triggers made so far has been answered.
    pub async fn settle(&self) {
        for _ in 0..600 {
            if self.sim.trigger_firings().iter().all(|f| f.is_complete()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("webhook calls still pending after 6 s");
    }

    /// The citizen's PEC `n` arrives and the next poll makes its ticket: the ticket's id.
    pub async fn citizen_ticket(&self, n: u32) -> u64 {
        let original = crate::inbound_env::mail::citizen(n, &self.address).build();
        let id = format!("opec.{n}.{}@pec.sandbox.test", unique_name());
        self.deliver(vec![crate::inbound_env::mail::envelope(&original, &id)])
            .await;
        let before: Vec<u64> = self.sim.tickets().iter().map(|t| t.id).collect();
        self.poll().await;
        let new: Vec<u64> = self
            .sim
            .tickets()
            .iter()
            .map(|t| t.id)
            .filter(|t| !before.contains(t))
            .collect();
        assert_eq!(new.len(), 1, "one new ticket for PEC {n}: {new:?}");
        new[0]
    }

    /// What the SMTP test server accepted from this account, oldest first.
    pub fn sent(&self) -> Vec<Delivered> {
        delivered_by(&self.spool, &self.address)
    }

    /// The HTML of every internal note on `ticket`, oldest first.
    pub fn notes(&self, ticket: u64) -> Vec<String> {
        self.sim
            .comments(ticket)
            .into_iter()
            .filter(|c| !c.public)
            .map(|c| c.html_body)
            .collect()
    }

    /// The id of the simulator's end user with this e-mail address.
    pub fn user_id(&self, email: &str) -> Option<u64> {
        self.sim
            .users()
            .into_iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .map(|u| u.id)
    }
}

/// Faults a test makes the mailbox adapter show, on top of the real server's answers.
#[derive(Debug, Default)]
pub struct MailboxFaults {
    /// UIDs left out of every FETCH answer of several messages (as an item without body).
    pub hidden_in_batches: Mutex<Vec<u32>>,
    /// UIDs left out of every FETCH answer, even alone.
    pub hidden: Mutex<Vec<u32>>,
    /// UIDs whose FETCH the server answers with `NO`.
    pub refused: Mutex<Vec<u32>>,
    /// Every FETCH of a whole message hangs (a stuck server).
    pub stall_fetch: AtomicBool,
    /// The largest message fetched whole so far, in bytes.
    pub largest_fetched: AtomicUsize,
}

struct FaultyProvider {
    inner: Arc<dyn MailboxProvider>,
    faults: Arc<MailboxFaults>,
}

impl MailboxProvider for FaultyProvider {
    fn mailbox(
        &self,
        account: &connector::domain::Account,
        password: SecretString,
    ) -> Box<dyn Mailbox> {
        Box::new(FaultyMailbox {
            inner: self.inner.mailbox(account, password),
            faults: self.faults.clone(),
        })
    }
}

struct FaultyMailbox {
    inner: Box<dyn Mailbox>,
    faults: Arc<MailboxFaults>,
}

#[async_trait]
impl Mailbox for FaultyMailbox {
    async fn open(&self) -> Result<Box<dyn MailboxSession>, MailboxError> {
        Ok(Box::new(FaultySession {
            inner: self.inner.open().await?,
            faults: self.faults.clone(),
        }))
    }
}

struct FaultySession {
    inner: Box<dyn MailboxSession>,
    faults: Arc<MailboxFaults>,
}

#[async_trait]
impl MailboxSession for FaultySession {
    fn status(&self) -> MailboxStatus {
        self.inner.status()
    }

    async fn list_above(&mut self, after: u32) -> Result<Vec<MessageRef>, MailboxError> {
        self.inner.list_above(after).await
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, MailboxError> {
        if self.faults.stall_fetch.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if let Some(uid) = uids
            .iter()
            .find(|u| self.faults.refused.lock().unwrap().contains(u))
        {
            return Err(MailboxError::Server {
                server: "dovecot".to_owned(),
                command: "UID FETCH BODY.PEEK[]",
                reason: format!("NO [SERVERBUG] cannot read message {uid}"),
            });
        }
        let mut messages = self.inner.fetch(uids).await?;
        let hidden = self.faults.hidden.lock().unwrap().clone();
        let in_batches = self.faults.hidden_in_batches.lock().unwrap().clone();
        messages.retain(|m| {
            let in_batch = uids.len() > 1 && in_batches.contains(&m.uid);
            !(hidden.contains(&m.uid) || in_batch)
        });
        for m in &messages {
            self.faults
                .largest_fetched
                .fetch_max(m.raw.len(), Ordering::SeqCst);
        }
        Ok(messages)
    }

    async fn fetch_header(&mut self, uid: u32) -> Result<Option<Vec<u8>>, MailboxError> {
        self.inner.fetch_header(uid).await
    }

    async fn close(self: Box<Self>) {
        self.inner.close().await
    }
}
