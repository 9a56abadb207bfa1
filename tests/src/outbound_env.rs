//! The outbound acceptance tests' world: an [`InboundEnv`] (Dovecot mailbox, Zendesk simulator,
//! embedded store and secrets, the account) plus the SMTP test server (`infra/smtpd.py`: implicit
//! TLS, AUTH, faults chosen by the login name), the `Outbound` use case wired to it, and the api
//! router that Zendesk's webhook calls, driven in-process through `tower::ServiceExt::oneshot`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::AppState;
use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use chrono::Utc;
use connector::mailer::smtp::{SmtpProvider, SmtpTrust};
use connector::outbound::webhook::{
    AUTHORIZATION_HEADER, INVOCATION_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use connector::outbound::{Outbound, SendOptions, WebhookLimits, WebhookSecrets};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::Value;
use sha2::Sha256;
use tower::ServiceExt as _;

use crate::inbound_env::{EnvOptions, InboundEnv};

pub const SIGNING_SECRET: &str = "dGVzdC1zaWduaW5nLXNlY3JldC1ub3QtYS1yZWFsLW9uZQ==";
pub const BEARER: &str = "test-bearer-token-0123456789";

/// One message the SMTP test server accepted.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub raw: Vec<u8>,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub auth_user: String,
}

/// An HTTP answer of the api router.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub elapsed: Duration,
}

impl Answer {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    pub fn outcome(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }
}

pub struct OutboundEnv {
    pub env: InboundEnv,
    pub outbound: Arc<Outbound>,
    pub router: axum::Router,
    pub spool: PathBuf,
}

/// Send options for tests: no waiting between tries, few tries, short timeouts.
pub fn test_options() -> SendOptions {
    SendOptions {
        max_attempts: 3,
        backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        webhook_budget: Duration::from_secs(6),
        retry_budget: Duration::from_secs(6),
        claim_ttl: Duration::from_secs(60),
        ambiguous_grace: Duration::from_secs(1),
        egress_ip: Some("203.0.113.7".to_owned()),
        ..SendOptions::default()
    }
}

impl OutboundEnv {
    /// `label` starts the account's address, which is also its SMTP login: put a fault name of
    /// `infra/smtpd.py` in it (`fail535`, `block571`, `block571auth`, `block571rcpt`, `busy452`,
    /// `stall`, `stallmail`, `dropafterdata`, `stallafterdata`, `toobig`) to get it.
    pub async fn new(label: &str) -> OutboundEnv {
        OutboundEnv::with(label, test_options()).await
    }

    pub async fn with(label: &str, options: SendOptions) -> OutboundEnv {
        let env = InboundEnv::with(label, EnvOptions::default()).await;
        let ca = std::env::var("SMTP_CA_PEM")
            .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
        let spool = std::env::var("SMTP_SPOOL")
            .unwrap_or_else(|_| "/tmp/pec-connector-smtpd-0/spool".to_owned());
        let ca_pem = std::fs::read(&ca).unwrap_or_else(|e| {
            panic!("SMTP test server not set up ({ca}: {e}); run `bash infra/smtpd.sh start` (infra/test.sh does)")
        });
        let (host, port) = crate::inbound_env::smtp_server();
        std::net::TcpStream::connect((host.as_str(), port)).unwrap_or_else(|e| {
            panic!("SMTP test server not reachable at {host}:{port} ({e}); run `bash infra/smtpd.sh start`")
        });
        let trust = SmtpTrust::with_extra_roots(&ca_pem).expect("test CA");
        let mailers = Arc::new(SmtpProvider::new(trust).with_timeout(Duration::from_secs(2)));
        let outbound = Arc::new(Outbound::new(
            env.store.clone(),
            env.secrets.clone(),
            mailers,
            env.zendesk.clone(),
            options,
        ));
        let state = AppState {
            outbound: outbound.clone(),
            webhook_secrets: api::WebhookKeys::fixed(WebhookSecrets::new(
                SecretString::from(SIGNING_SECRET),
                SecretString::from(BEARER),
            )),
            webhook_limits: WebhookLimits::default(),
            admin: None,
            console: Default::default(),
        };
        OutboundEnv {
            env,
            outbound,
            router: api::router(Arc::new(state)),
            spool: spool.into(),
        }
    }

    /// A template-send body for `ticket`, to the ticket's requester.
    pub fn template_body(&self, ticket: u64, subject: &str, message: &str) -> String {
        serde_json::json!({
            "account": self.env.account.id.as_str(),
            "ticket_id": ticket.to_string(),
            "requester": crate::inbound_env::mail::CITIZEN,
            "subject": subject,
            "message": message,
        })
        .to_string()
    }

    /// A public-reply body for `ticket` (no account: the ticket's marker says).
    pub fn reply_body(&self, ticket: u64, updated_at: &str) -> String {
        serde_json::json!({
            "event": "public_reply",
            "ticket_id": ticket.to_string(),
            "updated_at": updated_at,
        })
        .to_string()
    }

    /// The Message-ID the connector gives the template send of `invocation` on `ticket`:
    /// `pec-connector.<ticket>.<first 16 bytes of SHA-256(dedup key), hex>@<account domain>`.
    pub fn template_message_id(&self, ticket: u64, invocation: &str) -> String {
        use sha2::Digest as _;
        let key = format!(
            "template:{}:{ticket}:invocation:{invocation}",
            self.env.account.id.as_str()
        );
        let unique: String = Sha256::digest(key.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let domain = self.env.user.rsplit_once('@').map_or("", |(_, d)| d);
        format!("pec-connector.{ticket}.{unique}@{domain}")
    }

    /// Calls the webhook as Zendesk does: signed now, with the bearer token and `invocation`.
    pub async fn deliver(&self, body: &str, invocation: &str) -> Answer {
        let ts = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let headers = vec![
            (AUTHORIZATION_HEADER.to_owned(), format!("Bearer {BEARER}")),
            (
                SIGNATURE_HEADER.to_owned(),
                sign(SIGNING_SECRET, &ts, body.as_bytes()),
            ),
            (TIMESTAMP_HEADER.to_owned(), ts),
            (INVOCATION_ID_HEADER.to_owned(), invocation.to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        self.call(headers, body.as_bytes().to_vec()).await
    }

    /// Calls the webhook route with exactly these headers and body.
    pub async fn call(&self, headers: Vec<(String, String)>, body: Vec<u8>) -> Answer {
        call(&self.router, "POST", api::WEBHOOK_PATH, headers, body).await
    }

    /// The account's due sends tried again now, as a poll that caught up does.
    pub async fn retry(&self) -> connector::outbound::RetryOutcome {
        self.outbound
            .retry_due(
                &self.env.account.id,
                Utc::now(),
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .expect("retry due sends")
    }

    /// What the SMTP server accepted from this account (its login), oldest first.
    pub fn delivered(&self) -> Vec<Delivered> {
        delivered_by(&self.spool, self.env.account.address.as_str())
    }

    /// The text of every internal note on `ticket`.
    pub fn notes(&self, ticket: u64) -> Vec<String> {
        self.env
            .ticket(ticket)
            .comments
            .into_iter()
            .filter(|c| !c.public)
            .map(|c| c.html)
            .collect()
    }

    /// An agent's public reply on `ticket`, with files, as Zendesk's agent UI writes it.
    pub async fn agent_reply(&self, ticket: u64, html: &str, files: &[(&str, &str, &[u8])]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut token: Option<zendesk::UploadToken> = None;
        for (name, content_type, data) in files {
            token = Some(
                self.env
                    .zendesk
                    .upload(name, content_type, data.to_vec(), token.as_ref(), deadline)
                    .await
                    .expect("upload"),
            );
        }
        self.env
            .zendesk
            .add_comment(
                zendesk::TicketId(ticket),
                &zendesk::Comment {
                    html_body: html.to_owned(),
                    public: true,
                    uploads: token.into_iter().collect(),
                    author_id: None,
                },
                deadline,
            )
            .await
            .expect("agent reply");
    }
}

/// Calls `router` in-process.
pub async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let request = request.body(Body::from(body)).expect("request");
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("response body");
    let elapsed = started.elapsed();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        body,
        elapsed,
    }
}

/// Zendesk's signature: base64 of HMAC-SHA256(secret, timestamp + body).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What the SMTP test server's spool holds from `login`, oldest first.
pub fn delivered_by(spool: &std::path::Path, login: &str) -> Vec<Delivered> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(spool) else {
        return out;
    };
    let mut envs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".env.json"))
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    envs.sort();
    for (_, path) in envs {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(env) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if env["auth_user"].as_str() != Some(login) {
            continue;
        }
        let eml = PathBuf::from(path.to_string_lossy().replace(".env.json", ".eml"));
        out.push(Delivered {
            raw: std::fs::read(eml).expect("message beside its envelope"),
            mail_from: env["mail_from"].as_str().unwrap_or_default().to_owned(),
            rcpt_tos: env["rcpt_tos"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            auth_user: login.to_owned(),
        });
    }
    out
}
