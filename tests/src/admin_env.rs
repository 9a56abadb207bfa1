//! The accounts (admin API) tests' world: the AWS adapters on moto (DynamoDB, Secrets Manager,
//! EventBridge Scheduler, the deployment's default), the Zendesk simulator, the real Dovecot and
//! SMTP test servers, and the api router with the admin use cases, called in-process with the
//! admin token.

use std::sync::Arc;
use std::time::Duration;

use api::{AppState, WebhookKeys};
use connector::admin::{Admin, AdminOptions};
use connector::inbound::Inbound;
use connector::mailbox::imap::{ImapProvider, tls_config};
use connector::mailer::smtp::{SmtpProvider, SmtpTrust};
use connector::outbound::WebhookLimits;
use connector::parts::Parts;
use connector::ports::Store;
use sandbox::ZendeskSimulator;
use secrecy::SecretString;
use serde_json::Value;
use zendesk::{RetryPolicy, ZendeskClient};

use crate::env::{Env, unique_name};
use crate::inbound_env::{Dovecot, PASSWORD, smtp_server};
use crate::outbound_env::{Answer, call, test_options};

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";
pub const WEBHOOK_URL: &str = "https://pec.example.test/webhooks/zendesk";

pub struct AdminEnv {
    pub env: Env,
    pub sim: Arc<ZendeskSimulator>,
    pub zendesk: Arc<ZendeskClient>,
    pub dovecot: Dovecot,
    /// The poll use case on the same adapters (what the poller Lambda runs).
    pub inbound: Arc<Inbound>,
    pub router: axum::Router,
}

impl AdminEnv {
    pub async fn new() -> AdminEnv {
        AdminEnv::with(|store| store, |_| {}).await
    }

    /// An environment whose admin use cases see the store through `store` (the poll use case
    /// sees it as it is), with `options` changed.
    pub async fn with(
        store: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
        options: impl FnOnce(&mut AdminOptions),
    ) -> AdminEnv {
        AdminEnv::on(crate::env::aws_scheduler().await, store, options).await
    }

    /// An environment whose account passwords are kept many to a secret, as deployments keep
    /// them by default ([`crate::env::aws_shared`]).
    pub async fn shared() -> AdminEnv {
        AdminEnv::on(crate::env::aws_shared().await, |store| store, |_| {}).await
    }

    /// An environment over the adapters of `env`.
    pub async fn on(
        env: Env,
        store: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
        options: impl FnOnce(&mut AdminOptions),
    ) -> AdminEnv {
        let sim = Arc::new(ZendeskSimulator::start().await.expect("zendesk simulator"));
        let zendesk = crate::env::simulator_client(&sim, RetryPolicy::default());
        let dovecot = Dovecot::from_env();
        let ca = std::env::var("SMTP_CA_PEM")
            .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
        let smtp_ca = std::fs::read(&ca).unwrap_or_else(|e| panic!("SMTP test CA {ca}: {e}"));
        let mailers = Arc::new(
            SmtpProvider::new(SmtpTrust::with_extra_roots(&smtp_ca).expect("test CA"))
                .with_timeout(Duration::from_secs(3)),
        );
        let mailboxes = Arc::new(ImapProvider::new(
            tls_config(Some(&dovecot.ca_pem)).expect("test CA"),
        ));
        let mut parts = Parts::new(
            env.store.clone(),
            env.secrets.clone(),
            mailboxes,
            mailers,
            zendesk.clone(),
        );
        parts.send = test_options();
        let inbound = Arc::new(parts.inbound());
        let mut admin_options = AdminOptions::new(WEBHOOK_URL);
        options(&mut admin_options);
        let admin = Admin {
            // The admin use cases see the store through the test's wrapper.
            store: store(env.store.clone()),
            ..parts.admin(env.schedules.clone(), inbound.clone(), admin_options)
        };
        let outbound = Arc::new(parts.outbound());
        let state = AppState {
            outbound,
            webhook_secrets: WebhookKeys::stored(env.secrets.clone()),
            webhook_limits: WebhookLimits::default(),
            admin: Some((Arc::new(admin), SecretString::from(ADMIN_TOKEN))),
            console: Default::default(),
        };
        AdminEnv {
            env,
            sim,
            zendesk,
            dovecot,
            inbound,
            router: api::router(Arc::new(state)),
        }
    }

    /// A fresh Dovecot user (any name logs in with the password "secret").
    pub fn new_address(&self, label: &str) -> String {
        format!("{label}-{}@pec.test", unique_name())
    }

    /// A registration body for `address` against the test servers.
    pub fn registration(&self, address: &str) -> Value {
        let (smtp_host, smtp_port) = smtp_server();
        serde_json::json!({
            "address": address,
            "password": PASSWORD,
            "imap_host": self.dovecot.host,
            "imap_port": self.dovecot.port,
            "smtp_host": smtp_host,
            "smtp_port": smtp_port,
        })
    }

    /// An admin call with the admin token.
    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.admin_with(method, path, body, Some(ADMIN_TOKEN)).await
    }

    pub async fn admin_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Answer {
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        if let Some(t) = token {
            headers.push(("Authorization".to_owned(), format!("Bearer {t}")));
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        call(&self.router, method, path, headers, bytes).await
    }
}
