//! `pec-connector serve`: the connector on one machine, without AWS.
//!
//! The same parts as the Lambdas, wired to the embedded adapters: the state in SQLite
//! (`<data-dir>/state.db`), the secrets in owner-only files (`<data-dir>/secrets`; passwords
//! kept in the process between polls, as the Lambdas keep them), the poll schedules in-process
//! ([`LocalScheduler`]), the mailboxes over IMAPS and the sends over SMTPS.
//! [`Server::start`] builds everything and binds the listener; [`Server::run`] serves
//! [`api::router`] and runs the polls the schedules ask for until `shutdown` completes:
//!
//! * every [`PollRequest`] runs [`connector::run::run_account`] (the poll, then the due sends
//!   once the mailbox is read to its end), as the poller Lambda does; polls of different
//!   accounts run side by side, and the store's lease keeps two polls of one account from
//!   working the same mailbox;
//! * the local schedules live in memory, so on start one is put for every stored account, and
//!   every enabled account is polled once at once (mail that arrived while the server was down
//!   is not left waiting a whole interval);
//! * on shutdown the listener stops accepting, open requests and running polls finish (polls
//!   are given [`SHUTDOWN_GRACE`], then dropped: a poll cut short repeats nothing and skips
//!   nothing, it continues at the next run); the last log line counts the polls run and the
//!   state store's operations (`infra/bench/load.sh` reads it).

pub mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use api::{AppState, WebhookKeys};
use connector::admin::AdminOptions;
use connector::domain::{AccountId, PollRequest, Schedule, SecretName};
use connector::inbound::Inbound;
use connector::mailbox::imap::{ImapProvider, tls_config};
use connector::mailer::smtp::{SmtpProvider, SmtpTrust};
use connector::outbound::{Outbound, WebhookLimits};
use connector::parts::Parts;
use connector::ports::{Schedules, Secrets, Store};
use connector::schedules::local::LocalScheduler;
use connector::secrets::SecretsError;
use connector::secrets::cache::{CachedSecrets, Freshness};
use connector::secrets::file::FileSecrets;
use connector::store::sqlite::SqliteStore;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use zendesk::{Auth, RetryPolicy, ZendeskClient, ZendeskConfig};

pub use config::{ServeArgs, ServeConfig};

/// How long one scheduled poll may run (the schedules fire at most once a minute).
pub const POLL_BUDGET: Duration = Duration::from_secs(55);
/// How long running polls may take to finish once shutdown is asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The `serve` subcommand: reads the settings, logs to standard error, serves until Ctrl-C or
/// SIGTERM.
pub fn main(args: ServeArgs) -> ExitCode {
    init_logging("info");
    let config = match args.resolve(|k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pec-connector: {e}");
            return ExitCode::from(2);
        }
    };
    block_on("pec-connector", run(config, shutdown_signal()))
}

/// Logs to standard error, filtered by `RUST_LOG` (else `default`).
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs `work` on a multi-threaded runtime: exit status 0, or 1 with the error chain after
/// `what:`.
pub(crate) fn block_on<T>(what: &str, work: impl Future<Output = anyhow::Result<T>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{what}: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(work) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// Starts the server and serves until `shutdown` completes.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::start(config).await?.run(shutdown).await
}

/// A started server: everything built, the listener bound, the schedules put.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    inbound: Arc<Inbound>,
    outbound: Arc<Outbound>,
    scheduler: Arc<LocalScheduler>,
    polls: mpsc::Receiver<PollRequest>,
    /// Enabled accounts found at start, polled once at once.
    catch_up: Vec<AccountId>,
    admin_token_file: PathBuf,
    /// The state store, for its operation count in the last log line.
    sqlite: SqliteStore,
}

impl Server {
    /// Opens the data directory, settles the tokens, builds the use cases, binds the listener
    /// and puts a schedule for every stored account.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Server> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let sqlite = SqliteStore::open(&data_dir.join("state.db"))
            .context("cannot open the state database")?;
        let store: Arc<dyn Store> = Arc::new(sqlite.clone());
        let file_secrets = FileSecrets::open(&data_dir.join("secrets"))?;
        let admin_token_file = file_secrets.dir().join(SecretName::AdminToken.key());
        // Passwords kept between polls as on AWS (read again when changed or refused).
        let secrets: Arc<dyn Secrets> =
            Arc::new(CachedSecrets::new(file_secrets, Freshness::DEFAULT));

        let api_token = zendesk_token(&*secrets, config.zendesk_api_token.clone()).await?;
        let admin_token = admin_token(&*secrets, config.admin_token.clone()).await?;

        let extra_ca =
            match &config.trust_ca {
                Some(path) => Some(std::fs::read(path).with_context(|| {
                    format!("cannot read the trusted CA file {}", path.display())
                })?),
                None => None,
            };
        let imap_tls = tls_config(extra_ca.as_deref())
            .map_err(anyhow::Error::msg)
            .context("cannot use the trusted CA for IMAP")?;
        let smtp_trust = match &extra_ca {
            Some(pem) => SmtpTrust::with_extra_roots(pem)
                .map_err(anyhow::Error::msg)
                .context("cannot use the trusted CA for SMTP")?,
            None => SmtpTrust::webpki(),
        };
        let mut anchors = pec::TrustAnchors::pec();
        if let Some(path) = &config.trust_pec_ca {
            let pem = std::fs::read(path).with_context(|| {
                format!("cannot read the trusted PEC CA file {}", path.display())
            })?;
            anchors
                .add_pem(&pem)
                .with_context(|| format!("cannot use the trusted PEC CA {}", path.display()))?;
        }
        let mailboxes = Arc::new(ImapProvider::new(imap_tls));
        let mailers = Arc::new(SmtpProvider::new(smtp_trust));

        let zendesk = Arc::new(
            ZendeskClient::new(ZendeskConfig {
                base_url: config.zendesk_url.clone(),
                auth: Auth::Basic {
                    email: config.zendesk_email.clone(),
                    api_token,
                },
                timeout: Duration::from_secs(30),
                retry: RetryPolicy::default(),
            })
            .context("cannot use the Zendesk settings")?,
        );

        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let webhook_url = format!("{}{}", public_url.trim_end_matches('/'), api::WEBHOOK_PATH);

        let mut parts = Parts::new(store.clone(), secrets.clone(), mailboxes, mailers, zendesk);
        parts.anchors = anchors;
        parts.poll.agent_reserve_percent = config.agent_reserve_percent;
        let inbound = Arc::new(parts.inbound());
        let outbound = Arc::new(parts.outbound());
        let (scheduler, polls) = LocalScheduler::new(64);
        let scheduler = Arc::new(scheduler);
        let admin = parts.admin(
            scheduler.clone(),
            inbound.clone(),
            AdminOptions::new(webhook_url),
        );
        let state = AppState {
            outbound: outbound.clone(),
            webhook_secrets: WebhookKeys::stored(secrets.clone()),
            webhook_limits: WebhookLimits::default(),
            admin: Some((Arc::new(admin), admin_token)),
            console: api::console::ConsoleSettings::from_env()?,
        };

        let mut catch_up = Vec::new();
        let accounts = store
            .list_accounts()
            .await
            .context("cannot read the accounts")?;
        for account in &accounts {
            scheduler
                .put(&Schedule {
                    account: account.id.clone(),
                    interval: account.poll_interval,
                    enabled: account.enabled,
                })
                .await?;
            if account.enabled {
                catch_up.push(account.id.clone());
            }
        }

        tracing::info!(
            url = %format!("http://{addr}"),
            console = %format!("http://{addr}/admin"),
            data_dir = %data_dir.display(),
            zendesk = %config.zendesk_url,
            public_url = %public_url,
            admin_token_file = %admin_token_file.display(),
            accounts = accounts.len(),
            "pec-connector serving"
        );
        Ok(Server {
            listener,
            addr,
            router: api::router(Arc::new(state)),
            inbound,
            outbound,
            scheduler,
            polls,
            catch_up,
            admin_token_file,
            sqlite,
        })
    }

    /// The address the listener is bound to (the port chosen when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file that holds the admin token.
    pub fn admin_token_file(&self) -> &Path {
        &self.admin_token_file
    }

    /// The in-process schedules (one per account).
    pub fn schedules(&self) -> Arc<LocalScheduler> {
        self.scheduler.clone()
    }

    /// Serves the routes and runs the polls until `shutdown` completes, then stops both.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            router,
            inbound,
            outbound,
            scheduler,
            polls,
            catch_up,
            sqlite,
            ..
        } = self;
        let (stop, stopped) = watch::channel(false);
        let poller = tokio::spawn(poll_loop(inbound, outbound, polls, catch_up, stopped));
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        // If serving failed, `stop` is gone with the future: the poll loop stops too.
        drop(scheduler);
        let polls = poller.await.context("the poll loop failed")?;
        served.context("the HTTP server failed")?;
        tracing::info!(polls, store_operations = sqlite.operations(), "stopped");
        Ok(())
    }
}

/// Runs a poll for every request until `stopped` says so (or its sender is gone); how many
/// polls it ran.
async fn poll_loop(
    inbound: Arc<Inbound>,
    outbound: Arc<Outbound>,
    mut polls: mpsc::Receiver<PollRequest>,
    catch_up: Vec<AccountId>,
    mut stopped: watch::Receiver<bool>,
) -> u64 {
    let mut running = JoinSet::new();
    let mut count = 0;
    for account in catch_up {
        running.spawn(poll_once(inbound.clone(), outbound.clone(), account));
        count += 1;
    }
    loop {
        tokio::select! {
            request = polls.recv() => match request {
                Some(PollRequest { account_id }) => {
                    running.spawn(poll_once(inbound.clone(), outbound.clone(), account_id));
                    count += 1;
                }
                None => break,
            },
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    let finish = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, finish).await.is_err() {
        tracing::warn!(
            polls = running.len(),
            "polls still running at shutdown are stopped; they continue at the next start"
        );
        running.shutdown().await;
    }
    count
}

/// One account's poll, then its due sends, as the poller Lambda does; the outcome is logged.
async fn poll_once(inbound: Arc<Inbound>, outbound: Arc<Outbound>, account: AccountId) {
    let polled = connector::run::run_account(
        &inbound,
        Some(&outbound),
        &account,
        Instant::now() + POLL_BUDGET,
    )
    .await
    .polled;
    match polled {
        Ok(outcome) => tracing::info!(account = %account, ?outcome, "poll done"),
        Err(e) if e.is_mailbox_problem() => {
            tracing::warn!(account = %account, error = %e, "mailbox problem")
        }
        Err(e) => tracing::error!(
            account = %account,
            transient = e.is_transient(),
            error = %e,
            "poll failed"
        ),
    }
}

/// A kept token without the line end an editor may have added to its file.
fn trimmed(token: SecretString) -> SecretString {
    SecretString::from(token.expose_secret().trim().to_owned())
}

/// The Zendesk API token: the one given (then kept), else the one kept.
async fn zendesk_token(
    secrets: &dyn Secrets,
    given: Option<SecretString>,
) -> anyhow::Result<SecretString> {
    let name = SecretName::ZendeskApiToken;
    if let Some(token) = given {
        secrets.put(&name, &token).await?;
        return Ok(token);
    }
    match secrets.get(&name).await {
        Ok(token) => Ok(trimmed(token)),
        Err(SecretsError::NotFound { .. }) => anyhow::bail!(
            "cannot start: no Zendesk API token; set ZENDESK_API_TOKEN (it is then kept in the \
             data directory)"
        ),
        Err(e) => Err(e.into()),
    }
}

/// The admin token: the one given (then kept), else the one kept, else a new random one (kept).
async fn admin_token(
    secrets: &dyn Secrets,
    given: Option<SecretString>,
) -> anyhow::Result<SecretString> {
    let name = SecretName::AdminToken;
    if let Some(token) = given {
        config::check_admin_token(&token)?;
        secrets.put(&name, &token).await?;
        return Ok(token);
    }
    match secrets.get(&name).await {
        Ok(token) => Ok(trimmed(token)),
        Err(SecretsError::NotFound { .. }) => {
            let token = random_token()?;
            secrets.put(&name, &token).await?;
            tracing::info!("generated a new admin token");
            Ok(token)
        }
        Err(e) => Err(e.into()),
    }
}

/// 32 random bytes from the operating system, in hex.
fn random_token() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot generate an admin token: {e}"))?;
    Ok(SecretString::from(pec::encode::hex(&bytes)))
}
