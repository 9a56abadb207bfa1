//! # poller — the Lambda an EventBridge schedule invokes, once per account
//!
//! Wiring only: the event names an account; [`handle`] turns the invocation deadline into the
//! poll's deadline and runs [`connector::inbound::Inbound::poll`]. [`Config::from_env`] reads the
//! deployment's settings once, at start, and [`inbound_from_config`] builds the AWS adapters.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector::domain::{AccountId, SecretName};
use connector::inbound::{Inbound, PollOptions, PollOutcome};
use connector::mailbox::imap::{ImapProvider, tls_config};
use connector::ports::Secrets;
use connector::secrets::aws::AwsSecrets;
use connector::store::dynamo::DynamoStore;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use zendesk::{Auth, RetryPolicy, ZendeskClient, ZendeskConfig};

/// The deployment's settings (environment variables set by the SAM template).
#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`: the DynamoDB table.
    pub table: String,
    /// `SECRETS_PREFIX`: Secrets Manager names are `<prefix>/<name>` (default `pec`).
    pub secrets_prefix: String,
    /// `ZENDESK_URL` (e.g. `https://acme.zendesk.com`) or `ZENDESK_SUBDOMAIN`.
    pub zendesk_url: String,
    /// `ZENDESK_EMAIL`: the agent the API token belongs to.
    pub zendesk_email: String,
}

/// A missing or unusable setting, named.
#[derive(Debug, thiserror::Error)]
#[error("cannot start: {0}")]
pub struct ConfigError(String);

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let need = |k: &str| {
            get(k)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError(format!("the environment variable {k} is not set")))
        };
        let zendesk_url = match get("ZENDESK_URL").filter(|v| !v.trim().is_empty()) {
            Some(url) => url,
            None => format!(
                "https://{}.zendesk.com",
                need("ZENDESK_SUBDOMAIN").map_err(|_| {
                    ConfigError("neither ZENDESK_URL nor ZENDESK_SUBDOMAIN is set".to_owned())
                })?
            ),
        };
        Ok(Config {
            table: need("TABLE_NAME")?,
            secrets_prefix: get("SECRETS_PREFIX").unwrap_or_else(|| "pec".to_owned()),
            zendesk_url,
            zendesk_email: need("ZENDESK_EMAIL")?,
        })
    }
}

/// The AWS-backed inbound use case.
pub async fn inbound_from_config(config: &Config) -> anyhow::Result<Inbound> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        config.table.clone(),
    ));
    let secrets = Arc::new(AwsSecrets::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        config.secrets_prefix.clone(),
    ));
    let token = secrets.get(&SecretName::ZendeskApiToken).await?;
    let zendesk = ZendeskClient::new(ZendeskConfig {
        base_url: config.zendesk_url.clone(),
        auth: Auth::Basic {
            email: config.zendesk_email.clone(),
            api_token: token,
        },
        timeout: Duration::from_secs(30),
        retry: RetryPolicy::default(),
    })?;
    let tls = tls_config(None).map_err(anyhow::Error::msg)?;
    Ok(Inbound {
        store,
        secrets,
        mailboxes: Arc::new(ImapProvider::new(tls)),
        zendesk: Arc::new(zendesk),
        anchors: pec::TrustAnchors::pec(),
        options: PollOptions::default(),
        hook: None,
    })
}

/// The invocation's input: the target Input `{"account_id": "..."}` the schedule sends, or a
/// full EventBridge event carrying it in `detail`.
pub fn account_of(event: &Value) -> Result<AccountId, String> {
    let id = event
        .get("account_id")
        .or_else(|| event.get("detail").and_then(|d| d.get("account_id")))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            "the event has no account_id (expected {\"account_id\": \"...\"})".to_owned()
        })?;
    AccountId::parse(id).map_err(|e| format!("the event's account_id is not valid: {e}"))
}

/// What one invocation answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The mailbox was read.
    Polled(PollOutcome),
    /// The mailbox could not be read for a reason only an admin can fix (a refused password, a
    /// TLS problem, an unreachable server). The use case recorded it on the account and opened
    /// an alert ticket once per incident, so it is not an invocation error: the poller's error
    /// alarm stays for trouble in the connector itself (the store, Zendesk, a bad event).
    MailboxProblem(String),
}

/// Handles one invocation: polls the account until shortly before the Lambda deadline.
pub async fn handle(
    inbound: &Inbound,
    event: LambdaEvent<Value>,
) -> Result<Response, lambda_runtime::Error> {
    let account = account_of(&event.payload)?;
    let deadline = instant_of(event.context.deadline);
    match inbound.poll(&account, deadline).await {
        Ok(outcome) => {
            tracing::info!(account = %account.as_str(), ?outcome, "poll done");
            Ok(Response::Polled(outcome))
        }
        Err(e) if e.is_mailbox_problem() => Ok(Response::MailboxProblem(e.to_string())),
        Err(e) => {
            tracing::error!(account = %account.as_str(), transient = e.is_transient(), error = %e, "poll failed");
            Err(e.into())
        }
    }
}

/// The Lambda deadline (milliseconds since the epoch) as an `Instant`; 60 s from now when absent.
fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if deadline_ms == 0 {
        return Instant::now() + Duration::from_secs(60);
    }
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_account_from_the_schedule_input_or_an_eventbridge_event() {
        assert_eq!(
            account_of(&serde_json::json!({"account_id": "aruba-1"}))
                .unwrap()
                .as_str(),
            "aruba-1"
        );
        let full = serde_json::json!({"source": "aws.events", "detail": {"account_id": "poste-2"}});
        assert_eq!(account_of(&full).unwrap().as_str(), "poste-2");
        assert!(
            account_of(&serde_json::json!({}))
                .unwrap_err()
                .contains("account_id")
        );
        assert!(account_of(&serde_json::json!({"account_id": "bad id!"})).is_err());
    }

    #[test]
    fn configuration_names_what_is_missing() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let err = Config::from_lookup(env(&[
            ("ZENDESK_SUBDOMAIN", "acme"),
            ("ZENDESK_EMAIL", "a@b.it"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("TABLE_NAME"), "{err}");
        let err = Config::from_lookup(env(&[("TABLE_NAME", "t"), ("ZENDESK_EMAIL", "a@b.it")]))
            .unwrap_err();
        assert!(err.to_string().contains("ZENDESK_SUBDOMAIN"), "{err}");
        let ok = Config::from_lookup(env(&[
            ("TABLE_NAME", "t"),
            ("ZENDESK_SUBDOMAIN", "acme"),
            ("ZENDESK_EMAIL", "a@b.it"),
        ]))
        .unwrap();
        assert_eq!(ok.zendesk_url, "https://acme.zendesk.com");
        assert_eq!(ok.secrets_prefix, "pec");
    }

    #[test]
    fn the_deadline_comes_from_the_invocation() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = instant_of(now_ms + 30_000).saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
    }
}
