//! `serve`'s settings, read once at start: a flag wins over the environment variable, which wins
//! over the `--config` file, which wins over the default. Secrets come from the environment only
//! (and are then kept in the data directory), never from flags or the file.

use std::path::{Path, PathBuf};

use clap::Args;
use secrecy::SecretString;
use serde::Deserialize;

/// The settings of `pec-connector serve`.
#[derive(Debug, Clone, Default, Args)]
#[command(after_help = "\
Secrets, from the environment only (stored on first use in <data-dir>/secrets, owner-only):
  ZENDESK_API_TOKEN  the Zendesk API token of --zendesk-email; needed the first time, read
                     from the data directory afterwards
  PEC_ADMIN_TOKEN    the bearer token of the admin routes (/accounts...); if unset, the one
                     kept in the data directory, else a random one is generated and kept there
                     (the startup line names the file)

The admin console is at /admin (the admin token opens it). CONSOLE_FRAME_ANCESTORS: who may
frame it, a CSP source list (default 'none'; e.g. https://acme.zendesk.com).

Logging: RUST_LOG (default `info`), to standard error.

--config FILE is a JSON object with any of the keys listen, data_dir, zendesk_url,
zendesk_subdomain, zendesk_email, public_url, trust_ca, trust_pec_ca, zendesk_agent_reserve (relative
paths are relative to the working directory).")]
pub struct ServeArgs {
    /// Settings file (JSON); flags and environment variables override it [env: PEC_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address the HTTP API listens on [env: PEC_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where the state database and the secrets are kept [env: PEC_DATA_DIR] [default:
    /// ./pec-connector-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The Zendesk instance, e.g. https://acme.zendesk.com [env: ZENDESK_URL]
    #[arg(long, value_name = "URL")]
    pub zendesk_url: Option<String>,
    /// The Zendesk subdomain, instead of --zendesk-url (acme: https://acme.zendesk.com) [env:
    /// ZENDESK_SUBDOMAIN]
    #[arg(long, value_name = "NAME")]
    pub zendesk_subdomain: Option<String>,
    /// The Zendesk agent the API token belongs to [env: ZENDESK_EMAIL]
    #[arg(long, value_name = "EMAIL")]
    pub zendesk_email: Option<String>,
    /// The URL Zendesk reaches this server at, for its webhook [env: PUBLIC_URL] [default:
    /// http://<listen address>]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Also trust this CA (PEM) for IMAP and SMTP, e.g. a test server's; the public web-PKI
    /// roots are always trusted [env: PEC_TRUST_CA]
    #[arg(long, value_name = "FILE")]
    pub trust_ca: Option<PathBuf>,
    /// Also trust this CA (PEM) for the providers' S/MIME signatures on PEC messages, e.g. the
    /// sandbox provider's; the accredited providers' CAs are always trusted [env:
    /// PEC_TRUST_PEC_CA]
    #[arg(long, value_name = "FILE")]
    pub trust_pec_ca: Option<PathBuf>,
    /// Share of Zendesk's API request limit, in percent (0-90), a poll leaves to the agents: a
    /// poll importing a backlog stops there and the next one goes on [env:
    /// ZENDESK_AGENT_RESERVE_PERCENT] [default: 20]
    #[arg(long, value_name = "PERCENT")]
    pub zendesk_agent_reserve: Option<String>,
}

/// The settings file's keys: the same as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    zendesk_url: Option<String>,
    zendesk_subdomain: Option<String>,
    zendesk_email: Option<String>,
    public_url: Option<String>,
    trust_ca: Option<PathBuf>,
    trust_pec_ca: Option<PathBuf>,
    zendesk_agent_reserve: Option<u8>,
}

/// `serve`'s settings, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `host:port` to listen on (port 0: any free port, see [`super::Server::local_addr`]).
    pub listen: String,
    pub data_dir: PathBuf,
    pub zendesk_url: String,
    pub zendesk_email: String,
    /// Given: stored in the data directory. `None`: read from there.
    pub zendesk_api_token: Option<SecretString>,
    /// Given: stored in the data directory. `None`: read from there, else generated.
    pub admin_token: Option<SecretString>,
    /// `None`: `http://<bound address>`.
    pub public_url: Option<String>,
    /// Extra trusted CA (PEM) for IMAP and SMTP.
    pub trust_ca: Option<PathBuf>,
    /// Extra trusted CA (PEM) for the providers' signatures.
    pub trust_pec_ca: Option<PathBuf>,
    /// Share of Zendesk's request limit, in percent, a poll leaves to the agents.
    pub agent_reserve_percent: u8,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./pec-connector-data";

/// A missing or unusable setting, named.
#[derive(Debug, thiserror::Error)]
#[error("cannot start: {0}")]
pub struct ConfigError(String);

impl ServeArgs {
    /// The settings, with `env` looking up environment variables.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServeConfig, ConfigError> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let file = match self
            .config
            .clone()
            .or_else(|| env("PEC_CONFIG").map(PathBuf::from))
        {
            Some(path) => read_file(&path)?,
            None => ConfigFile::default(),
        };
        let listen = self
            .listen
            .clone()
            .or_else(|| env("PEC_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| env("PEC_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let url = self
            .zendesk_url
            .clone()
            .or_else(|| env("ZENDESK_URL"))
            .or(file.zendesk_url);
        let subdomain = self
            .zendesk_subdomain
            .clone()
            .or_else(|| env("ZENDESK_SUBDOMAIN"))
            .or(file.zendesk_subdomain);
        let zendesk_url = match (url, subdomain) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(sub)) => format!("https://{}.zendesk.com", sub.trim()),
            (None, None) => {
                return Err(ConfigError(
                    "no Zendesk instance: set --zendesk-url (ZENDESK_URL) or --zendesk-subdomain \
                     (ZENDESK_SUBDOMAIN)"
                        .to_owned(),
                ));
            }
        };
        let zendesk_email = self
            .zendesk_email
            .clone()
            .or_else(|| env("ZENDESK_EMAIL"))
            .or(file.zendesk_email)
            .ok_or_else(|| {
                ConfigError(
                    "no Zendesk agent: set --zendesk-email (ZENDESK_EMAIL), the agent the API \
                     token belongs to"
                        .to_owned(),
                )
            })?;
        let agent_reserve_percent = match self
            .zendesk_agent_reserve
            .clone()
            .or_else(|| env("ZENDESK_AGENT_RESERVE_PERCENT"))
        {
            Some(raw) => zendesk::parse_reserve_percent(&raw).ok_or_else(|| {
                ConfigError(format!(
                    "--zendesk-agent-reserve (ZENDESK_AGENT_RESERVE_PERCENT) must be 0 to 90 \
                     (percent), not {raw:?}"
                ))
            })?,
            None => match file.zendesk_agent_reserve {
                Some(p) if p <= 90 => p,
                Some(p) => {
                    return Err(ConfigError(format!(
                        "zendesk_agent_reserve must be 0 to 90 (percent), not {p}"
                    )));
                }
                None => connector::inbound::PollOptions::default().agent_reserve_percent,
            },
        };
        let admin_token = env("PEC_ADMIN_TOKEN").map(SecretString::from);
        if let Some(token) = &admin_token {
            check_admin_token(token)?;
        }
        Ok(ServeConfig {
            listen,
            data_dir,
            zendesk_url,
            zendesk_email,
            zendesk_api_token: env("ZENDESK_API_TOKEN").map(SecretString::from),
            admin_token,
            public_url: self
                .public_url
                .clone()
                .or_else(|| env("PUBLIC_URL"))
                .or(file.public_url),
            trust_ca: self
                .trust_ca
                .clone()
                .or_else(|| env("PEC_TRUST_CA").map(PathBuf::from))
                .or(file.trust_ca),
            trust_pec_ca: self
                .trust_pec_ca
                .clone()
                .or_else(|| env("PEC_TRUST_PEC_CA").map(PathBuf::from))
                .or(file.trust_pec_ca),
            agent_reserve_percent,
        })
    }
}

/// Admin tokens shorter than this are refused: it guards every account.
pub const MIN_ADMIN_TOKEN: usize = 16;

pub(crate) fn check_admin_token(token: &SecretString) -> Result<(), ConfigError> {
    use secrecy::ExposeSecret;
    if token.expose_secret().trim().chars().count() < MIN_ADMIN_TOKEN {
        return Err(ConfigError(format!(
            "PEC_ADMIN_TOKEN is too short: use at least {MIN_ADMIN_TOKEN} characters (or unset \
             it to have one generated)"
        )));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError(format!(
            "cannot read the settings file {}: {e}",
            path.display()
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ConfigError(format!(
            "the settings file {} is not valid: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs = pairs.to_vec();
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_and_what_is_missing() {
        let args = ServeArgs::default();
        let err = args.resolve(env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("ZENDESK_URL") && err.contains("ZENDESK_SUBDOMAIN"),
            "{err}"
        );
        let err = args
            .resolve(env(&[("ZENDESK_SUBDOMAIN", "acme")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ZENDESK_EMAIL"), "{err}");
        let c = args
            .resolve(env(&[
                ("ZENDESK_SUBDOMAIN", "acme"),
                ("ZENDESK_EMAIL", "agent@acme.test"),
                ("PUBLIC_URL", " "),
            ]))
            .unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.zendesk_url, "https://acme.zendesk.com");
        assert_eq!(c.public_url, None, "blank is unset");
        assert!(c.zendesk_api_token.is_none() && c.admin_token.is_none());
        assert_eq!(c.trust_ca, None);
        assert_eq!(c.trust_pec_ca, None);
        assert_eq!(c.agent_reserve_percent, 20);
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.json");
        std::fs::write(
            &file,
            r#"{"listen": "127.0.0.1:9000", "data_dir": "/srv/pec", "zendesk_url": "https://file.zendesk.com",
                "zendesk_email": "file@acme.test", "public_url": "https://file.example", "trust_ca": "/ca.pem", "trust_pec_ca": "/pec-ca.pem", "zendesk_agent_reserve": 30}"#,
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            listen: Some("0.0.0.0:1234".to_owned()),
            ..ServeArgs::default()
        };
        let c = args
            .resolve(env(&[
                ("PEC_LISTEN", "127.0.0.1:1"),
                ("ZENDESK_EMAIL", "env@acme.test"),
                ("ZENDESK_API_TOKEN", "zd-token"),
                ("PEC_ADMIN_TOKEN", "0123456789abcdef0123"),
            ]))
            .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1234", "the flag wins");
        assert_eq!(
            c.zendesk_email, "env@acme.test",
            "the environment beats the file"
        );
        assert_eq!(c.data_dir, PathBuf::from("/srv/pec"));
        assert_eq!(c.zendesk_url, "https://file.zendesk.com");
        assert_eq!(c.public_url.as_deref(), Some("https://file.example"));
        assert_eq!(c.trust_ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.trust_pec_ca, Some(PathBuf::from("/pec-ca.pem")));
        assert_eq!(c.agent_reserve_percent, 30);
        let reserve = |flag: Option<&str>, var: &'static str| {
            ServeArgs {
                zendesk_agent_reserve: flag.map(str::to_owned),
                ..args.clone()
            }
            .resolve(env(&[
                ("ZENDESK_EMAIL", "env@acme.test"),
                ("ZENDESK_AGENT_RESERVE_PERCENT", var),
            ]))
            .map(|c| c.agent_reserve_percent)
            .map_err(|e| e.to_string())
        };
        assert_eq!(reserve(Some("25%"), "40"), Ok(25), "the flag wins");
        assert_eq!(
            reserve(None, "40"),
            Ok(40),
            "the environment beats the file"
        );
        let err = reserve(None, "95").unwrap_err();
        assert!(err.contains("ZENDESK_AGENT_RESERVE_PERCENT"), "{err}");
        assert_eq!(c.zendesk_api_token.unwrap().expose_secret(), "zd-token");
        assert_eq!(
            c.admin_token.unwrap().expose_secret(),
            "0123456789abcdef0123"
        );
        assert!(
            !format!(
                "{:?}",
                args.resolve(env(&[
                    ("ZENDESK_URL", "https://x.zendesk.com"),
                    ("ZENDESK_EMAIL", "a@b.test"),
                    ("ZENDESK_API_TOKEN", "zd-token"),
                ]))
            )
            .contains("zd-token"),
            "secrets never print"
        );
    }

    #[test]
    fn a_bad_file_or_a_short_admin_token_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.json");
        std::fs::write(&file, r#"{"listen": "127.0.0.1:9000", "lisen": 1}"#).unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let err = args.resolve(env(&[])).unwrap_err().to_string();
        assert!(err.contains("serve.json") && err.contains("lisen"), "{err}");
        let err = ServeArgs::default()
            .resolve(env(&[
                ("ZENDESK_URL", "https://x.zendesk.com"),
                ("ZENDESK_EMAIL", "a@b.test"),
                ("PEC_ADMIN_TOKEN", "short"),
            ]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PEC_ADMIN_TOKEN"), "{err}");
        assert!(!err.contains("short\""), "{err}");
    }
}
