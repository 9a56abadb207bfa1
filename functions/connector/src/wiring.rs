//! Wiring for the Lambda functions: the deployment's settings (environment variables set by the
//! SAM template) and the AWS adapters built from them, once per process.
//!
//! The poller and the api Lambda share this, so both read the same names the same way.

use std::sync::Arc;
use std::time::Duration;

use zendesk::{Auth, RetryPolicy, ZendeskClient, ZendeskConfig};

use secrecy::SecretString;

use crate::admin::{Admin, AdminOptions};
use crate::domain::{PollInterval, SecretName};
use crate::inbound::{Inbound, PollOptions};
use crate::mailbox::imap::{ImapProvider, tls_config};
use crate::mailer::smtp::{SmtpProvider, SmtpTrust};
use crate::outbound::{Outbound, SendOptions};
use crate::ports::{Secrets, Store};
use crate::schedules::eventbridge::EventBridgeSchedules;
use crate::secrets::aws::AwsSecrets;
use crate::secrets::cache::{CachedSecrets, Freshness};
use crate::secrets::shared::SharedSecrets;
use crate::store::dynamo::DynamoStore;
use crate::zendesks::ZendeskDirectory;

/// The deployment's settings.
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
    /// `EGRESS_IP` (optional): the static address the functions send from, named to agents when
    /// a provider blocks the sending IP.
    pub egress_ip: Option<String>,
    /// `POLLER_ARN` (api only): the poller Lambda the account schedules invoke.
    pub poller_arn: Option<String>,
    /// `RULE_PREFIX` (default `pec-connector`): the EventBridge rules are
    /// `<prefix>-poll-<account id>`.
    pub rule_prefix: String,
    /// `PUBLIC_URL` (api only, optional): the HTTP API's base URL, for the webhook Zendesk
    /// calls; without it, the URL admin calls arrive at.
    pub public_url: Option<String>,
    /// `DEFAULT_POLL_INTERVAL` (api only, minutes, default 2).
    pub default_poll_interval: PollInterval,
    /// `ACCOUNT_SECRETS`: where account passwords are kept (default `shared`).
    pub account_secrets: AccountSecrets,
    /// `SECRETS_CACHE_SECONDS` (default 3600): how long a process keeps a password it read
    /// before reading it again even if nothing says it changed; `0` keeps nothing.
    pub secrets_cache: Duration,
}

/// Where account passwords are kept in Secrets Manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSecrets {
    /// `shared`: many to a secret ([`SharedSecrets`]); accounts that still have a secret of
    /// their own are read there until their password next changes.
    Shared,
    /// `per-account`: one secret each, `<prefix>/account/<id>` ([`AwsSecrets`]).
    PerAccount,
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
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let need = |k: &str| {
            get(k).ok_or_else(|| ConfigError(format!("the environment variable {k} is not set")))
        };
        let zendesk_url = match get("ZENDESK_URL") {
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
            egress_ip: get("EGRESS_IP"),
            poller_arn: get("POLLER_ARN"),
            rule_prefix: get("RULE_PREFIX").unwrap_or_else(|| "pec-connector".to_owned()),
            public_url: get("PUBLIC_URL"),
            default_poll_interval: match get("DEFAULT_POLL_INTERVAL") {
                None => PollInterval::DEFAULT,
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .and_then(|m| PollInterval::minutes(m).ok())
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "DEFAULT_POLL_INTERVAL must be 1 to 60 minutes, not {v:?}"
                        ))
                    })?,
            },
            account_secrets: match get("ACCOUNT_SECRETS").as_deref().map(str::trim) {
                None | Some("shared") => AccountSecrets::Shared,
                Some("per-account") => AccountSecrets::PerAccount,
                Some(v) => {
                    return Err(ConfigError(format!(
                        "ACCOUNT_SECRETS must be shared or per-account, not {v:?}"
                    )));
                }
            },
            secrets_cache: match get("SECRETS_CACHE_SECONDS") {
                None => Freshness::DEFAULT_TTL,
                Some(v) => Duration::from_secs(v.trim().parse::<u64>().map_err(|_| {
                    ConfigError(format!(
                        "SECRETS_CACHE_SECONDS must be a number of seconds, not {v:?}"
                    ))
                })?),
            },
        })
    }
}

impl Config {
    /// The [`Secrets`] of the configured layout, keeping account passwords as
    /// [`crate::secrets::cache`] says.
    pub fn secrets(&self, client: aws_sdk_secretsmanager::Client) -> Arc<dyn Secrets> {
        let fresh = Freshness::ttl(self.secrets_cache);
        match self.account_secrets {
            AccountSecrets::Shared => Arc::new(SharedSecrets::new(
                client,
                self.secrets_prefix.clone(),
                fresh,
            )),
            AccountSecrets::PerAccount => Arc::new(CachedSecrets::new(
                AwsSecrets::new(client, self.secrets_prefix.clone()),
                fresh,
            )),
        }
    }
}

/// The AWS adapters of one process.
pub struct AwsParts {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub zendesk: Arc<ZendeskClient>,
    pub egress_ip: Option<String>,
    /// The Zendesk instances registered besides the default one.
    pub instances: Arc<ZendeskDirectory>,
    aws: aws_config::SdkConfig,
}

impl AwsParts {
    /// Builds the adapters and reads the Zendesk API token.
    pub async fn from_config(config: &Config) -> anyhow::Result<AwsParts> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let store = Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            config.table.clone(),
        ));
        let secrets = config.secrets(aws_sdk_secretsmanager::Client::new(&aws));
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
        let instances = Arc::new(ZendeskDirectory::new(store.clone(), secrets.clone()));
        Ok(AwsParts {
            instances,
            store,
            secrets,
            zendesk: Arc::new(zendesk),
            egress_ip: config.egress_ip.clone(),
            aws,
        })
    }

    /// The inbound use case over IMAPS with the web-PKI roots.
    pub fn inbound(&self) -> anyhow::Result<Inbound> {
        let tls = tls_config(None).map_err(anyhow::Error::msg)?;
        Ok(Inbound {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            mailboxes: Arc::new(ImapProvider::new(tls)),
            zendesk: self.zendesk.clone(),
            anchors: pec::TrustAnchors::pec(),
            options: PollOptions::default(),
            hook: None,
            instances: Some(self.instances.clone()),
        })
    }

    /// The outbound use case over SMTPS with the web-PKI roots.
    pub fn outbound(&self) -> Outbound {
        Outbound::new(
            self.store.clone(),
            self.secrets.clone(),
            Arc::new(SmtpProvider::new(SmtpTrust::webpki())),
            self.zendesk.clone(),
            SendOptions {
                egress_ip: self.egress_ip.clone(),
                ..SendOptions::default()
            },
        )
        .with_instances(self.instances.clone())
    }

    /// The admin use cases and the admin token, when the deployment configures them
    /// (`POLLER_ARN` and the `admin-token` secret).
    pub async fn admin(&self, config: &Config) -> anyhow::Result<Option<(Admin, SecretString)>> {
        let Some(arn) = &config.poller_arn else {
            return Ok(None);
        };
        let token = self.secrets.get(&SecretName::AdminToken).await?;
        let schedules = EventBridgeSchedules::new(
            aws_sdk_eventbridge::Client::new(&self.aws),
            config.rule_prefix.clone(),
            arn.clone(),
        )?;
        let tls = tls_config(None).map_err(anyhow::Error::msg)?;
        // Empty: the api takes the URL the admin call arrived at.
        let webhook_url = config
            .public_url
            .as_deref()
            .map(|url| format!("{}/webhooks/zendesk", url.trim_end_matches('/')))
            .unwrap_or_default();
        Ok(Some((
            Admin {
                store: self.store.clone(),
                secrets: self.secrets.clone(),
                schedules: Arc::new(schedules),
                mailboxes: Arc::new(ImapProvider::new(tls)),
                mailers: Arc::new(SmtpProvider::new(SmtpTrust::webpki())),
                zendesk: self.zendesk.clone(),
                inbound: Arc::new(self.inbound()?),
                options: AdminOptions {
                    default_poll_interval: config.default_poll_interval,
                    ..AdminOptions::new(webhook_url)
                },
                instances: Some(self.instances.clone()),
                instance: None,
            },
            token,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn configuration_names_what_is_missing() {
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
            ("EGRESS_IP", " "),
        ]))
        .unwrap();
        assert_eq!(ok.zendesk_url, "https://acme.zendesk.com");
        assert_eq!(ok.secrets_prefix, "pec");
        assert_eq!(ok.account_secrets, AccountSecrets::Shared);
        assert_eq!(ok.secrets_cache, Duration::from_secs(3600));
        assert_eq!(ok.egress_ip, None, "blank is unset");
        let ok = Config::from_lookup(env(&[
            ("TABLE_NAME", "t"),
            ("ZENDESK_URL", "http://127.0.0.1:9"),
            ("ZENDESK_EMAIL", "a@b.it"),
            ("EGRESS_IP", "203.0.113.7"),
        ]))
        .unwrap();
        assert_eq!(ok.zendesk_url, "http://127.0.0.1:9");
        assert_eq!(ok.egress_ip.as_deref(), Some("203.0.113.7"));
        let layout = |v: &'static str, cache: &'static str| {
            Config::from_lookup(move |k: &str| match k {
                "TABLE_NAME" => Some("t".to_owned()),
                "ZENDESK_SUBDOMAIN" => Some("acme".to_owned()),
                "ZENDESK_EMAIL" => Some("a@b.it".to_owned()),
                "ACCOUNT_SECRETS" => Some(v.to_owned()),
                "SECRETS_CACHE_SECONDS" => Some(cache.to_owned()),
                _ => None,
            })
        };
        let per = layout("per-account", "0").unwrap();
        assert_eq!(per.account_secrets, AccountSecrets::PerAccount);
        assert_eq!(per.secrets_cache, Duration::ZERO);
        let err = layout("sharded", "60").unwrap_err();
        assert!(err.to_string().contains("ACCOUNT_SECRETS"), "{err}");
        let err = layout("shared", "an hour").unwrap_err();
        assert!(err.to_string().contains("SECRETS_CACHE_SECONDS"), "{err}");
    }
}
