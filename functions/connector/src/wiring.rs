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
use crate::outbound::Outbound;
use crate::parts::Parts;
use crate::ports::{Schedules, Secrets};
use crate::schedules::eventbridge::EventBridgeSchedules;
use crate::schedules::scheduler::SchedulerSchedules;
use crate::schedules::{Moving, move_all};
use crate::secrets::aws::AwsSecrets;
use crate::secrets::cache::{CachedSecrets, Freshness};
use crate::secrets::shared::SharedSecrets;
use crate::store::dynamo::DynamoStore;

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
    /// `SCHEDULER_KIND` (api only): `scheduler` (default) or `rules`.
    pub scheduler_kind: SchedulerKind,
    /// `SCHEDULE_GROUP` (api only, default `pec-connector`): the EventBridge Scheduler group of
    /// the account schedules.
    pub schedule_group: String,
    /// `SCHEDULER_ROLE_ARN` (api only, with `scheduler`): the role Scheduler invokes the poller
    /// with.
    pub scheduler_role_arn: Option<String>,
    /// `SCHEDULE_QUOTA` (api only): how many schedules there may be; unset or 0: AWS's default
    /// quota of the kind (rules: 300 per event bus; Scheduler: 1,000,000 per Region).
    pub schedule_quota: Option<usize>,
    /// `PUBLIC_URL` (api only, optional): the HTTP API's base URL, for the webhook Zendesk
    /// calls; without it, the URL admin calls arrive at.
    pub public_url: Option<String>,
    /// `DEFAULT_POLL_INTERVAL` (api only, minutes, default 2).
    pub default_poll_interval: PollInterval,
    /// `ZENDESK_AGENT_RESERVE_PERCENT` (0 to 90, default 20): the share of Zendesk's request
    /// limit a poll leaves to the agents ([`PollOptions::agent_reserve_percent`]).
    pub agent_reserve_percent: u8,
    /// `ACCOUNT_SECRETS`: where account passwords are kept (default `shared`).
    pub account_secrets: AccountSecrets,
    /// `SECRETS_CACHE_SECONDS` (default 3600): how long a process keeps a password it read
    /// before reading it again even if nothing says it changed; `0` keeps nothing.
    pub secrets_cache: Duration,
}

/// How the account schedules are kept on AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// EventBridge Scheduler schedules ([`SchedulerSchedules`]).
    Scheduler,
    /// EventBridge rules on the default event bus ([`EventBridgeSchedules`]).
    Rules,
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
            scheduler_kind: match get("SCHEDULER_KIND").as_deref().map(str::trim) {
                None | Some("scheduler") => SchedulerKind::Scheduler,
                Some("rules") => SchedulerKind::Rules,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "SCHEDULER_KIND must be scheduler or rules, not {other:?}"
                    )));
                }
            },
            schedule_group: get("SCHEDULE_GROUP").unwrap_or_else(|| "pec-connector".to_owned()),
            scheduler_role_arn: get("SCHEDULER_ROLE_ARN"),
            schedule_quota: match get("SCHEDULE_QUOTA") {
                None => None,
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(_) => {
                        return Err(ConfigError(format!(
                            "SCHEDULE_QUOTA must be a whole number (0: AWS's default), not {v:?}"
                        )));
                    }
                },
            },
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
            agent_reserve_percent: match get("ZENDESK_AGENT_RESERVE_PERCENT") {
                None => PollOptions::default().agent_reserve_percent,
                Some(v) => zendesk::parse_reserve_percent(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "ZENDESK_AGENT_RESERVE_PERCENT must be 0 to 90 (percent), not {v:?}"
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
    /// The adapters the use cases are built from: DynamoDB, Secrets Manager, IMAPS and SMTPS
    /// with the web-PKI roots, the default Zendesk's client.
    pub parts: Parts,
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
        let tls = tls_config(None).map_err(anyhow::Error::msg)?;
        let mut parts = Parts::new(
            store,
            secrets,
            Arc::new(ImapProvider::new(tls)),
            Arc::new(SmtpProvider::new(SmtpTrust::webpki())),
            Arc::new(zendesk),
        );
        parts.poll.agent_reserve_percent = config.agent_reserve_percent;
        parts.send.egress_ip = config.egress_ip.clone();
        Ok(AwsParts { parts, aws })
    }

    /// The inbound use case.
    pub fn inbound(&self) -> Inbound {
        self.parts.inbound()
    }

    /// The outbound use case.
    pub fn outbound(&self) -> Outbound {
        self.parts.outbound()
    }

    /// The admin use cases and the admin token, when the deployment configures them
    /// (`POLLER_ARN` and the `admin-token` secret).
    pub async fn admin(&self, config: &Config) -> anyhow::Result<Option<(Admin, SecretString)>> {
        let Some(arn) = &config.poller_arn else {
            return Ok(None);
        };
        let token = self.parts.secrets.get(&SecretName::AdminToken).await?;
        let schedules = self.schedules(config, arn).await?;
        // Empty: the api takes the URL the admin call arrived at.
        let webhook_url = config
            .public_url
            .as_deref()
            .map(|url| format!("{}/webhooks/zendesk", url.trim_end_matches('/')))
            .unwrap_or_default();
        let options = AdminOptions {
            default_poll_interval: config.default_poll_interval,
            ..AdminOptions::new(webhook_url)
        };
        let admin = self
            .parts
            .admin(schedules, Arc::new(self.inbound()), options);
        Ok(Some((admin, token)))
    }
}

impl AwsParts {
    /// The account schedules of the configured kind. Schedules of the other kind (a deployment
    /// that switched) keep polling until they are moved: each when it is written, all of them
    /// by a move started here ([`move_all`]); one that fails is logged and tried again at the
    /// next start.
    async fn schedules(&self, config: &Config, poller: &str) -> anyhow::Result<Arc<dyn Schedules>> {
        let rules = EventBridgeSchedules::new(
            aws_sdk_eventbridge::Client::new(&self.aws),
            config.rule_prefix.clone(),
            poller,
        )?;
        let scheduler = match &config.scheduler_role_arn {
            Some(role) => Some(SchedulerSchedules::new(
                aws_sdk_scheduler::Client::new(&self.aws),
                config.schedule_group.clone(),
                poller,
                role.clone(),
            )?),
            None => None,
        };
        let (chosen, other): (Arc<dyn Schedules>, Option<Arc<dyn Schedules>>) =
            match (config.scheduler_kind, scheduler) {
                (SchedulerKind::Scheduler, Some(scheduler)) => (
                    Arc::new(match config.schedule_quota {
                        Some(limit) => scheduler.with_limit(limit),
                        None => scheduler,
                    }),
                    Some(Arc::new(rules)),
                ),
                (SchedulerKind::Scheduler, None) => anyhow::bail!(
                    "cannot start: SCHEDULER_KIND is scheduler but SCHEDULER_ROLE_ARN is not set"
                ),
                (SchedulerKind::Rules, scheduler) => (
                    Arc::new(match config.schedule_quota {
                        Some(limit) => rules.with_limit(limit),
                        None => rules,
                    }),
                    scheduler.map(|s| Arc::new(s) as Arc<dyn Schedules>),
                ),
            };
        let Some(other) = other else {
            return Ok(chosen);
        };
        // One listing per start (no rules or schedules of the other kind: nothing to move).
        match other.list().await {
            Ok(left) if left.is_empty() => return Ok(chosen),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether poll schedules of the other kind are left")
            }
        }
        // In the background: a start never waits for it (300 rules take a while), and it
        // continues at the next start if this process ends first.
        let (to, from, kind) = (chosen.clone(), other.clone(), config.scheduler_kind);
        tokio::spawn(async move {
            match move_all(from.as_ref(), to.as_ref()).await {
                Ok(0) => {}
                Ok(moved) => {
                    tracing::info!(moved, ?kind, "poll schedules moved to the configured kind")
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?kind, "cannot move poll schedules to the configured kind yet")
                }
            }
        });
        Ok(Arc::new(Moving {
            to: chosen,
            from: other,
        }))
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
        assert_eq!(ok.agent_reserve_percent, 20, "the default");
        assert_eq!(ok.scheduler_kind, SchedulerKind::Scheduler);
        assert_eq!(ok.schedule_quota, None);
    }

    #[test]
    fn the_agents_reserve_is_a_percentage_up_to_90() {
        let reserve = |v: &'static str| {
            Config::from_lookup(move |k: &str| match k {
                "TABLE_NAME" => Some("t".to_owned()),
                "ZENDESK_SUBDOMAIN" => Some("acme".to_owned()),
                "ZENDESK_EMAIL" => Some("a@b.it".to_owned()),
                "ZENDESK_AGENT_RESERVE_PERCENT" => Some(v.to_owned()),
                _ => None,
            })
            .map(|c| c.agent_reserve_percent)
            .map_err(|e| e.to_string())
        };
        assert_eq!(reserve("35"), Ok(35));
        assert_eq!(reserve(" 0 % "), Ok(0));
        assert_eq!(reserve("90%"), Ok(90));
        assert_eq!(reserve(" "), Ok(20), "blank is unset");
        for bad in ["91", "-1", "0.2", "venti"] {
            let err = reserve(bad).unwrap_err();
            assert!(err.contains("ZENDESK_AGENT_RESERVE_PERCENT"), "{err}");
        }
    }

    #[test]
    fn the_schedules_kind_and_quota_are_read() {
        let base = [
            ("TABLE_NAME", "t"),
            ("ZENDESK_SUBDOMAIN", "acme"),
            ("ZENDESK_EMAIL", "a@b.it"),
        ];
        let with = |extra: &'static [(&'static str, &'static str)]| {
            let all: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
            Config::from_lookup(move |k: &str| {
                all.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        let c = with(&[
            ("SCHEDULER_KIND", "rules"),
            ("SCHEDULE_QUOTA", "500"),
            ("SCHEDULE_GROUP", "pec-connector-prod"),
        ])
        .unwrap();
        assert_eq!(c.scheduler_kind, SchedulerKind::Rules);
        assert_eq!(c.schedule_quota, Some(500));
        assert_eq!(c.schedule_group, "pec-connector-prod");
        assert_eq!(
            with(&[("SCHEDULE_QUOTA", "0")]).unwrap().schedule_quota,
            None
        );
        let err = with(&[("SCHEDULER_KIND", "cron")]).unwrap_err();
        assert!(err.to_string().contains("SCHEDULER_KIND"), "{err}");
        let err = with(&[("SCHEDULE_QUOTA", "-1")]).unwrap_err();
        assert!(err.to_string().contains("SCHEDULE_QUOTA"), "{err}");
    }

    #[test]
    fn the_password_layout_and_cache_are_read() {
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
