//! The world of the inbound acceptance tests (`tests/e2e/inbound.rs`, `tests/e2e/inbound_memory.rs`).
//!
//! Each test gets an [`InboundEnv`]: a fresh user on the Dovecot test server (its own mailbox,
//! reached over IMAPS with the test CA), its own [`ZendeskSimulator`], a SQLite store and file
//! secrets in a temporary directory, an [`Account`] registered there with its password "secret",
//! and an [`Inbound`] wired to all of them through the real adapters (`ImapProvider`,
//! `ZendeskClient`, `SqliteStore`, `FileSecrets`) and the real PEC trust anchors.
//!
//! Messages are APPENDed over IMAP as a provider would deliver them; [`mail`] builds them with
//! `pec::build` (envelopes, anomalies, receipts signed by the sandbox identity, plain mail, and a
//! message the parser cannot read). [`SessionCalls`] counts the mailbox-port calls a poll makes;
//! [`PrivateDovecot`] is a second Dovecot instance that writes a raw log of every IMAP session,
//! for tests that count protocol commands.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use connector::domain::{
    Account, AccountId, Cursor, Endpoint, LeaseHolder, LeaseOutcome, MessageId, OutboundRecord,
    PecAddress, PollInterval, ReceiptMode, SecretName, TicketId,
};
use connector::inbound::{Inbound, PollError, PollOptions, PollOutcome, StepHook};
use connector::mailbox::imap::{ImapProvider, tls_config};
use connector::mailbox::{
    FetchedMessage, Mailbox, MailboxError, MailboxProvider, MailboxSession, MailboxStatus,
    MessageRef,
};
use connector::ports::{Secrets, Store};
use connector::secrets::file::FileSecrets;
use connector::store::sqlite::SqliteStore;
use rustls::pki_types::ServerName;
use sandbox::ZendeskSimulator;
use secrecy::SecretString;
use zendesk::{RetryPolicy, ZendeskClient};

use crate::env::unique_name;

/// The password every Dovecot test user logs in with.
pub const PASSWORD: &str = "secret";

// ----- Dovecot ---------------------------------------------------------------------------------

/// The Dovecot test server (infra/dovecot.sh): where it listens, the CA that signed its
/// certificate, and its configuration (for `doveadm`).
#[derive(Debug, Clone)]
pub struct Dovecot {
    pub host: String,
    pub port: u16,
    pub ca_pem: Vec<u8>,
    pub conf: PathBuf,
}

type ImapStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A message and the INTERNALDATE the server should give it (`None`: the time of the APPEND).
pub type Dated = (Vec<u8>, Option<chrono::DateTime<chrono::FixedOffset>>);

impl Dovecot {
    /// The server infra/test.sh started (`IMAP_HOST`, `IMAP_PORT`, `IMAP_CA_PEM`,
    /// `DOVECOT_CONF`, defaulting to infra/dovecot.sh's defaults); fails loudly when absent.
    pub fn from_env() -> Dovecot {
        let host = std::env::var("IMAP_HOST").unwrap_or_else(|_| "localhost".to_owned());
        let port: u16 = std::env::var("IMAP_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(10993);
        let ca = std::env::var("IMAP_CA_PEM")
            .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
        let ca_pem = std::fs::read(&ca).unwrap_or_else(|e| {
            panic!("Dovecot test server not set up ({ca}: {e}); run `bash infra/dovecot.sh start` (infra/test.sh does)")
        });
        let conf = std::env::var("DOVECOT_CONF")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                Path::new(&ca)
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("dovecot.conf")
            });
        TcpStream::connect((host.as_str(), port)).unwrap_or_else(|e| {
            panic!(
                "Dovecot not reachable at {host}:{port} ({e}); run `bash infra/dovecot.sh start`"
            )
        });
        Dovecot {
            host,
            port,
            ca_pem,
            conf,
        }
    }

    fn login(&self, user: &str) -> imap::Session<ImapStream> {
        let tls = tls_config(Some(&self.ca_pem)).expect("test CA");
        let name = ServerName::try_from(self.host.clone()).expect("server name");
        let conn = rustls::ClientConnection::new(tls, name).expect("TLS client");
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).expect("connect to Dovecot");
        let mut client = imap::Client::new(rustls::StreamOwned::new(conn, tcp));
        client.read_greeting().expect("IMAP greeting");
        client
            .login(user, PASSWORD)
            .map_err(|e| e.0)
            .expect("IMAP login")
    }

    /// APPENDs `messages` to the user's INBOX, in order (blocking).
    pub fn append_blocking(&self, user: &str, messages: &[Vec<u8>]) {
        let mut session = self.login(user);
        for m in messages {
            session.append("INBOX", m).expect("IMAP APPEND");
        }
        session.logout().expect("IMAP LOGOUT");
    }

    /// APPENDs `messages` with the INTERNALDATE each names (the server's arrival time; `None`:
    /// now), in order (blocking).
    pub fn append_dated_blocking(&self, user: &str, messages: &[Dated]) {
        let mut session = self.login(user);
        for (m, date) in messages {
            session
                .append_with_flags_and_date("INBOX", m, &[], *date)
                .expect("IMAP APPEND");
        }
        session.logout().expect("IMAP LOGOUT");
    }

    /// Runs `doveadm -c <conf> <args>`, panicking with its output when it fails.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("doveadm (installed with Dovecot by infra/dovecot.sh)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "doveadm {args:?} failed: {text}");
        text
    }

    /// The INBOX's UIDVALIDITY and UIDNEXT, as the server reports them.
    pub fn status(&self, user: &str) -> (u32, u32) {
        let out = self.doveadm(&[
            "mailbox",
            "status",
            "-u",
            user,
            "uidvalidity uidnext",
            "INBOX",
        ]);
        let field = |name: &str| -> u32 {
            out.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in doveadm output {out:?}"))
        };
        (field("uidvalidity="), field("uidnext="))
    }

    /// The user's home (infra/dovecot.sh: `<dir>/mail/<user>`, next to the configuration).
    pub fn home(&self, user: &str) -> PathBuf {
        self.conf
            .parent()
            .expect("the configuration is in Dovecot's directory")
            .join("mail")
            .join(user)
    }

    /// Recreates the user's mailbox from scratch, as a provider migrating a mailbox does: every
    /// message and UID is gone, the new INBOX has `uid_validity` and its UIDs start again at 1.
    pub fn recreate_inbox(&self, user: &str, uid_validity: u32) {
        let home = self.home(user);
        std::fs::remove_dir_all(&home)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", home.display()));
        let v = uid_validity.to_string();
        self.doveadm(&[
            "mailbox",
            "update",
            "--uid-validity",
            &v,
            "-u",
            user,
            "INBOX",
        ]);
        assert_eq!(self.status(user), (uid_validity, 1));
    }
}

/// A second Dovecot, private to one test, sharing the test server's certificate, that writes a
/// raw log of every IMAP session (`rawlog_dir`): one `<time>.<pid>.<n>.in` file per session
/// with every command the client sent after logging in, one per line. Stopped when dropped.
pub struct PrivateDovecot {
    pub dovecot: Dovecot,
    dir: tempfile::TempDir,
}

impl PrivateDovecot {
    pub fn start(shared: &Dovecot) -> PrivateDovecot {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        // Dovecot's mail processes run as another user when the tests run as root.
        let open = |p: &Path, mode: u32| {
            std::fs::create_dir_all(p).expect("create dir");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        open(root, 0o755);
        for sub in ["run", "state"] {
            open(&root.join(sub), 0o755);
        }
        open(&root.join("mail"), 0o777);
        open(&root.join("rawlog"), 0o777);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("port").port()
        };
        let shared_conf = std::fs::read_to_string(&shared.conf).unwrap_or_else(|e| {
            panic!("cannot read {}: {e}", shared.conf.display());
        });
        let shared_dir = shared
            .conf
            .parent()
            .expect("configuration directory")
            .display()
            .to_string();
        let r = root.display().to_string();
        let mut conf = String::new();
        for line in shared_conf.lines() {
            let key = line.trim_start().split([' ', '=']).next().unwrap_or("");
            let line = match key {
                "base_dir" => format!("base_dir = {r}/run"),
                "state_dir" => format!("state_dir = {r}/state"),
                "instance_name" => format!("instance_name = pec-connector-private-{port}"),
                "log_path" => format!("log_path = {r}/dovecot.log"),
                "info_log_path" => format!("info_log_path = {r}/dovecot.log"),
                "port" if line.contains(&shared.port.to_string()) => {
                    format!("    port = {port}")
                }
                "args" if line.contains("home=") => {
                    line.replace(&format!("{shared_dir}/mail"), &format!("{r}/mail"))
                }
                _ => line.to_owned(),
            };
            conf.push_str(&line);
            conf.push('\n');
        }
        conf.push_str(&format!("rawlog_dir = {r}/rawlog\n"));
        let conf_path = root.join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("write private dovecot.conf");
        let status = Command::new("dovecot")
            .arg("-c")
            .arg(&conf_path)
            .status()
            .expect("start a private dovecot");
        assert!(status.success(), "private dovecot did not start");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "private dovecot not listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateDovecot {
            dovecot: Dovecot {
                host: shared.host.clone(),
                port,
                ca_pem: shared.ca_pem.clone(),
                conf: conf_path,
            },
            dir,
        }
    }

    /// The raw logs of the sessions so far, oldest first: `(file name, client lines)`.
    pub fn sessions(&self) -> Vec<(String, Vec<String>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("rawlog"))
            .expect("rawlog dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "in"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                // Each line: "<unix time> <client line>".
                let lines = text
                    .lines()
                    .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_owned())
                    .collect();
                (p.file_name().unwrap().to_string_lossy().into_owned(), lines)
            })
            .collect()
    }

    /// The server's log (login and logout lines, with per-session byte and fetch counters).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for PrivateDovecot {
    /// Stops the master process this test started, by its pid, without waiting for it
    /// (`dovecot stop` waits about 3 s for its children).
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.path().join("run/master.pid"));
        if let Ok(pid) = pid
            && let Ok(pid) = pid.trim().parse::<u32>()
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
}

// ----- counting the mailbox port ---------------------------------------------------------------

/// Calls a poll made on the mailbox port.
#[derive(Debug, Default)]
pub struct SessionCalls {
    pub opens: AtomicU32,
    pub status: AtomicU32,
    pub list_above: AtomicU32,
    pub fetch: AtomicU32,
    pub fetched_messages: AtomicU32,
    pub fetched_bytes: AtomicU32,
    pub closes: AtomicU32,
}

/// A snapshot of [`SessionCalls`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub opens: u32,
    pub status: u32,
    pub list_above: u32,
    pub fetch: u32,
    pub fetched_messages: u32,
    pub fetched_bytes: u32,
    pub closes: u32,
}

impl SessionCalls {
    /// The counts so far, reset to zero.
    pub fn take(&self) -> Calls {
        let t = |a: &AtomicU32| a.swap(0, Ordering::SeqCst);
        Calls {
            opens: t(&self.opens),
            status: t(&self.status),
            list_above: t(&self.list_above),
            fetch: t(&self.fetch),
            fetched_messages: t(&self.fetched_messages),
            fetched_bytes: t(&self.fetched_bytes),
            closes: t(&self.closes),
        }
    }
}

/// A [`MailboxProvider`] that counts the calls made on what it opens.
pub struct CountingProvider {
    inner: Arc<dyn MailboxProvider>,
    calls: Arc<SessionCalls>,
}

impl CountingProvider {
    pub fn new(inner: Arc<dyn MailboxProvider>, calls: Arc<SessionCalls>) -> CountingProvider {
        CountingProvider { inner, calls }
    }
}

impl MailboxProvider for CountingProvider {
    fn mailbox(&self, account: &Account, password: SecretString) -> Box<dyn Mailbox> {
        Box::new(CountingMailbox {
            inner: self.inner.mailbox(account, password),
            calls: self.calls.clone(),
        })
    }
}

struct CountingMailbox {
    inner: Box<dyn Mailbox>,
    calls: Arc<SessionCalls>,
}

#[async_trait]
impl Mailbox for CountingMailbox {
    async fn open(&self) -> Result<Box<dyn MailboxSession>, MailboxError> {
        self.calls.opens.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.open().await?;
        Ok(Box::new(CountingSession {
            inner,
            calls: self.calls.clone(),
        }))
    }
}

struct CountingSession {
    inner: Box<dyn MailboxSession>,
    calls: Arc<SessionCalls>,
}

#[async_trait]
impl MailboxSession for CountingSession {
    fn status(&self) -> MailboxStatus {
        self.calls.status.fetch_add(1, Ordering::SeqCst);
        self.inner.status()
    }

    async fn list_above(&mut self, after: u32) -> Result<Vec<MessageRef>, MailboxError> {
        self.calls.list_above.fetch_add(1, Ordering::SeqCst);
        self.inner.list_above(after).await
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, MailboxError> {
        self.calls.fetch.fetch_add(1, Ordering::SeqCst);
        let messages = self.inner.fetch(uids).await?;
        self.calls
            .fetched_messages
            .fetch_add(messages.len() as u32, Ordering::SeqCst);
        let bytes: usize = messages.iter().map(|m| m.raw.len()).sum();
        self.calls
            .fetched_bytes
            .fetch_add(bytes as u32, Ordering::SeqCst);
        Ok(messages)
    }

    async fn fetch_header(&mut self, uid: u32) -> Result<Option<Vec<u8>>, MailboxError> {
        self.calls.fetch.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch_header(uid).await
    }

    async fn close(self: Box<Self>) {
        self.calls.closes.fetch_add(1, Ordering::SeqCst);
        self.inner.close().await
    }
}

// ----- the environment -------------------------------------------------------------------------

/// Where the SMTP test server listens (`SMTP_HOST`, `SMTP_PORT`, as infra/test.sh exports them).
pub fn smtp_server() -> (String, u16) {
    let host = std::env::var("SMTP_HOST").unwrap_or_else(|_| "localhost".to_owned());
    let port = std::env::var("SMTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10465);
    (host, port)
}

/// How to build an [`InboundEnv`].
#[derive(Default)]
pub struct EnvOptions {
    pub receipt_mode: ReceiptMode,
    /// A simulator started by the test (e.g. on a runtime of its own); else a fresh one.
    pub simulator: Option<Arc<ZendeskSimulator>>,
    /// Another IMAP server than the shared test server (e.g. a [`PrivateDovecot`]).
    pub dovecot: Option<Dovecot>,
    /// The account's id (default: a unique one); each environment has its own store.
    pub account_id: Option<String>,
}

/// One test's isolated world; see the module documentation.
pub struct InboundEnv {
    pub dovecot: Dovecot,
    /// The Dovecot user, which is also the account's PEC address.
    pub user: String,
    pub account: Account,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub sim: Arc<ZendeskSimulator>,
    pub zendesk: Arc<ZendeskClient>,
    /// Mailbox-port calls made by [`InboundEnv::inbound`].
    pub calls: Arc<SessionCalls>,
    /// The use case as production wires it (plus the call counter), without a step hook.
    pub inbound: Inbound,
    pub dir: tempfile::TempDir,
}

impl InboundEnv {
    pub async fn new(label: &str) -> InboundEnv {
        InboundEnv::with(label, EnvOptions::default()).await
    }

    pub async fn with_receipt_mode(label: &str, receipt_mode: ReceiptMode) -> InboundEnv {
        InboundEnv::with(
            label,
            EnvOptions {
                receipt_mode,
                ..EnvOptions::default()
            },
        )
        .await
    }

    pub async fn with(label: &str, options: EnvOptions) -> InboundEnv {
        let dovecot = options.dovecot.unwrap_or_else(Dovecot::from_env);
        let sim = match options.simulator {
            Some(sim) => sim,
            None => Arc::new(ZendeskSimulator::start().await.expect("zendesk simulator")),
        };
        let name = unique_name();
        let user = format!("{label}-{name}@pec.test");
        let dir = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("state.db")).expect("sqlite store"));
        let secrets: Arc<dyn Secrets> =
            Arc::new(FileSecrets::open(&dir.path().join("secrets")).expect("file secrets"));
        let id = AccountId::parse(
            &options
                .account_id
                .clone()
                .unwrap_or_else(|| format!("acc-{name}")),
        )
        .expect("account id");
        let now = Utc::now();
        let account = Account {
            id: id.clone(),
            address: PecAddress::parse(&user).expect("the Dovecot user is a PEC address"),
            imap: Endpoint::parse("imap", &dovecot.host, dovecot.port).expect("imap endpoint"),
            smtp: {
                let (host, port) = smtp_server();
                Endpoint::parse("smtp", &host, port).expect("smtp endpoint")
            },
            username: None,
            poll_interval: PollInterval::DEFAULT,
            enabled: true,
            password_secret: SecretName::AccountPassword(id.clone()).key(),
            subject_template: "{{ticket.title}}".to_owned(),
            message_template: "{{ticket.latest_comment_html}}".to_owned(),
            receipt_mode: options.receipt_mode,
            outbound_attachments: Default::default(),
            zendesk_instance: None,
            zendesk: Default::default(),
            password_set_at: None,
            nonce: None,
            max_message_bytes: None,
            health: Default::default(),
            created_at: now,
            updated_at: now,
        };
        store
            .create_account(&account)
            .await
            .expect("create account");
        secrets
            .put(
                &SecretName::AccountPassword(id),
                &SecretString::from(PASSWORD),
            )
            .await
            .expect("store the password");
        let zendesk = crate::env::simulator_client(&sim, RetryPolicy::default());
        let calls = Arc::new(SessionCalls::default());
        let imap: Arc<dyn MailboxProvider> = Arc::new(ImapProvider::new(
            tls_config(Some(&dovecot.ca_pem)).expect("test CA"),
        ));
        let inbound = Inbound {
            store: store.clone(),
            secrets: secrets.clone(),
            mailboxes: Arc::new(CountingProvider::new(imap, calls.clone())),
            zendesk: zendesk.clone(),
            anchors: pec::TrustAnchors::pec(),
            options: PollOptions {
                margin: Duration::from_millis(500),
                ..PollOptions::default()
            },
            hook: None,
            instances: None,
        };
        InboundEnv {
            dovecot,
            user,
            account,
            store,
            secrets,
            sim,
            zendesk,
            calls,
            inbound,
            dir,
        }
    }

    /// The use case with a step hook (crash injection).
    pub fn inbound_with_hook(&self, hook: StepHook) -> Inbound {
        Inbound {
            hook: Some(hook),
            ..self.inbound.clone()
        }
    }

    /// A second, independent wiring of the same account, as another process would have: its own
    /// connection to the same SQLite file, its own IMAP provider and Zendesk client.
    pub fn second_poller(&self) -> Inbound {
        let store = SqliteStore::open(&self.dir.path().join("state.db")).expect("sqlite store");
        let secrets = FileSecrets::open(&self.dir.path().join("secrets")).expect("file secrets");
        Inbound {
            store: Arc::new(store),
            secrets: Arc::new(secrets),
            mailboxes: Arc::new(ImapProvider::new(
                tls_config(Some(&self.dovecot.ca_pem)).expect("test CA"),
            )),
            zendesk: Arc::new((*self.zendesk).clone()),
            ..self.inbound.clone()
        }
    }

    /// APPENDs messages to the account's INBOX, in order.
    pub async fn append(&self, messages: Vec<Vec<u8>>) {
        let dovecot = self.dovecot.clone();
        let user = self.user.clone();
        tokio::task::spawn_blocking(move || dovecot.append_blocking(&user, &messages))
            .await
            .expect("append task");
    }

    /// APPENDs messages with the arrival times (INTERNALDATE) they name, in order.
    pub async fn append_dated(&self, messages: Vec<Dated>) {
        let dovecot = self.dovecot.clone();
        let user = self.user.clone();
        tokio::task::spawn_blocking(move || dovecot.append_dated_blocking(&user, &messages))
            .await
            .expect("append task");
    }

    /// One poll with a deadline a minute away.
    pub async fn poll(&self) -> Result<PollOutcome, PollError> {
        self.inbound
            .poll(&self.account.id, Instant::now() + Duration::from_secs(60))
            .await
    }

    /// The first poll of the account: records the baseline, imports nothing.
    pub async fn activate(&self) -> PollOutcome {
        let outcome = self.poll().await.expect("first poll");
        assert!(outcome.baseline, "{outcome:?}");
        assert_eq!(outcome.tickets_created, 0);
        outcome
    }

    /// The account's cursor, read through a lease of our own (no poll may be running).
    pub async fn cursor(&self) -> Option<Cursor> {
        let holder = LeaseHolder::unique("test");
        match self
            .store
            .take_lease(
                &self.account.id,
                &holder,
                Utc::now(),
                Duration::from_secs(5),
            )
            .await
            .expect("take lease")
        {
            LeaseOutcome::Acquired(lease) => {
                self.store.release_lease(&lease).await.expect("release");
                lease.cursor
            }
            LeaseOutcome::Held { .. } => panic!("the lease is held: a poll is running"),
        }
    }

    /// The marker (`external_id`, idempotency key, note reference) of the message at `uid`.
    pub fn marker(&self, uid_validity: u32, uid: u32) -> String {
        connector::domain::TicketMarker::of(
            &self.account,
            connector::domain::UidValidity::new(uid_validity).expect("uid validity"),
            connector::domain::Uid::new(uid).expect("uid"),
        )
        .to_string()
    }

    /// A ticket an agent opened in Zendesk (e.g. the one a PEC is sent from).
    pub async fn agent_ticket(&self, subject: &str) -> TicketId {
        let t = self
            .zendesk
            .create_ticket(
                &zendesk::NewTicket {
                    subject: subject.to_owned(),
                    requester: zendesk::Requester {
                        email: "mario.rossi@pec.cittadino.test".to_owned(),
                        name: Some("Mario Rossi".to_owned()),
                    },
                    comment: zendesk::Comment {
                        html_body: "<p>Pratica aperta dall'operatore.</p>".to_owned(),
                        public: true,
                        uploads: Vec::new(),
                        author_id: None,
                    },
                    external_id: None,
                    tags: Vec::new(),
                    custom_fields: Vec::new(),
                },
                &format!("agent-{subject}"),
                Instant::now() + Duration::from_secs(10),
            )
            .await
            .expect("create the agent's ticket");
        TicketId::new(t.id.0).expect("ticket id")
    }

    /// Records a PEC we sent from `ticket` (as the outbound flow does after SMTP).
    pub async fn record_sent(
        &self,
        message_id: &str,
        ticket: TicketId,
        recipients: &[&str],
    ) -> OutboundRecord {
        let record = OutboundRecord::sent(
            self.account.id.clone(),
            MessageId::parse(message_id).expect("message id"),
            ticket,
            recipients
                .iter()
                .map(|r| PecAddress::parse(r).expect("recipient"))
                .collect(),
            Utc::now(),
        );
        self.store
            .record_outbound(&record)
            .await
            .expect("record outbound");
        record
    }

    pub async fn find_sent(&self, id: &str) -> Option<OutboundRecord> {
        self.store
            .find_outbound(&self.account.id, &MessageId::parse(id).expect("message id"))
            .await
            .expect("find outbound")
    }

    /// Every ticket in the simulator, as agents would read it, by id.
    pub fn tickets(&self) -> Vec<TicketView> {
        let mut ids: Vec<u64> = self.sim.tickets().iter().map(|t| t.id).collect();
        ids.sort();
        ids.into_iter().map(|id| self.ticket(id)).collect()
    }

    pub fn ticket(&self, id: u64) -> TicketView {
        let t = self
            .sim
            .ticket(id)
            .unwrap_or_else(|| panic!("no ticket {id}"));
        let requester = self
            .sim
            .users()
            .into_iter()
            .find(|u| u.id == t.requester_id)
            .expect("the requester exists");
        TicketView {
            id: t.id,
            subject: t.subject,
            requester_email: requester.email,
            requester_name: requester.name,
            tags: t.tags,
            external_id: t.external_id,
            comments: t
                .comments
                .into_iter()
                .map(|c| CommentView {
                    public: c.public,
                    html: c.html_body,
                    files: c
                        .attachment_ids
                        .iter()
                        .map(|a| {
                            let a = self.sim.attachment(*a).expect("attachment");
                            FileView {
                                name: a.file_name,
                                content_type: a.content_type,
                                data: a.data,
                            }
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The tickets whose `external_id` is `marker`.
    pub fn tickets_with_external_id(&self, marker: &str) -> Vec<TicketView> {
        self.tickets()
            .into_iter()
            .filter(|t| t.external_id.as_deref() == Some(marker))
            .collect()
    }
}

/// A ticket as the simulator holds it, with its requester and files resolved.
#[derive(Debug, Clone)]
pub struct TicketView {
    pub id: u64,
    pub subject: String,
    pub requester_email: String,
    pub requester_name: String,
    pub tags: Vec<String>,
    pub external_id: Option<String>,
    pub comments: Vec<CommentView>,
}

impl TicketView {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Comments (public or not) whose HTML contains `text`.
    pub fn comments_containing(&self, text: &str) -> Vec<&CommentView> {
        self.comments
            .iter()
            .filter(|c| c.html.contains(text))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct CommentView {
    pub public: bool,
    pub html: String,
    pub files: Vec<FileView>,
}

impl CommentView {
    pub fn file_names(&self) -> Vec<&str> {
        self.files.iter().map(|f| f.name.as_str()).collect()
    }

    pub fn file(&self, name: &str) -> &FileView {
        self.files
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no file {name} in {:?}", self.file_names()))
    }
}

#[derive(Debug, Clone)]
pub struct FileView {
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

// ----- messages --------------------------------------------------------------------------------

/// Messages as they arrive in a PEC mailbox, built with `pec::build`.
pub mod mail {
    use chrono::{DateTime, FixedOffset};
    use pec::build::{Address, MailBuilder, PecBuilder, Provider, SignatureMode};
    use pec::signature::SigningIdentity;
    use pec::{Kind, ReceiptKind};

    /// The citizen who writes to the account.
    pub const CITIZEN: &str = "mario.rossi@pec.cittadino.test";
    pub const CITIZEN_NAME: &str = "Mario Rossi";
    pub const GESTORE: &str = "Gestore Sandbox S.p.A.";

    pub fn provider() -> Provider {
        Provider::new(GESTORE, "pec.sandbox.test")
    }

    pub fn when() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-27T10:15:00+01:00").expect("timestamp")
    }

    /// The citizen's message `n` to `to`: HTML and text bodies and a PDF attachment.
    pub fn citizen(n: u32, to: &str) -> MailBuilder {
        MailBuilder::new()
            .from(Address::named(CITIZEN_NAME, CITIZEN))
            .to(to)
            .subject(&format!("Richiesta n. {n} di accesso agli atti"))
            .date(when())
            .message_id(&format!("citizen-{n}@client.cittadino.test"))
            .text(&format!(
                "Buongiorno,\nchiedo l'accesso agli atti (richiesta {n}).\n"
            ))
            .html(&format!(
                "<p>Buongiorno,</p><p>chiedo <b>l'accesso agli atti</b> (richiesta {n}).</p>"
            ))
            .attachment(
                &format!("domanda-{n}.pdf"),
                "application/pdf",
                format!("%PDF-1.4 domanda {n}").as_bytes(),
            )
    }

    /// A provider message of `kind` about `original`, signed by the sandbox identity (a real
    /// S/MIME signature by a CA that is not a PEC trust anchor: verdict "untrusted").
    pub fn provider_message(kind: Kind, original: &[u8], facts: Facts) -> Vec<u8> {
        let mut d = pec::build::daticert_from_original(original);
        d.identificativo = Some(facts.identificativo);
        d.gestore_emittente = Some(GESTORE.to_owned());
        d.data = Some(when());
        d.consegna = facts.consegna;
        if let Some((errore, esteso)) = facts.errore {
            d.errore = errore;
            d.errore_esteso = Some(esteso);
        }
        PecBuilder::new(kind, provider(), d)
            .original(original)
            .signature(SignatureMode::signed_by(SigningIdentity::sandbox()))
            .build()
            .expect("provider message")
    }

    /// The same, with another signature (e.g. [`SignatureMode::Placeholder`]: an invalid one).
    pub fn provider_message_signed(
        kind: Kind,
        original: &[u8],
        facts: Facts,
        signature: SignatureMode,
    ) -> Vec<u8> {
        let mut d = pec::build::daticert_from_original(original);
        d.identificativo = Some(facts.identificativo);
        d.gestore_emittente = Some(GESTORE.to_owned());
        d.data = Some(when());
        d.consegna = facts.consegna;
        if let Some((errore, esteso)) = facts.errore {
            d.errore = errore;
            d.errore_esteso = Some(esteso);
        }
        PecBuilder::new(kind, provider(), d)
            .original(original)
            .signature(signature)
            .build()
            .expect("provider message")
    }

    /// The certification facts of a provider message.
    #[derive(Debug, Clone, Default)]
    pub struct Facts {
        pub identificativo: String,
        pub consegna: Vec<String>,
        /// daticert `errore` and `errore-esteso`.
        pub errore: Option<(String, String)>,
    }

    impl Facts {
        pub fn id(identificativo: &str) -> Facts {
            Facts {
                identificativo: identificativo.to_owned(),
                ..Facts::default()
            }
        }
        pub fn to(mut self, recipient: &str) -> Facts {
            self.consegna.push(recipient.to_owned());
            self
        }
        pub fn error(mut self, errore: &str, esteso: &str) -> Facts {
            self.errore = Some((errore.to_owned(), esteso.to_owned()));
            self
        }
    }

    /// A busta di trasporto: the citizen's certified `original`, identified by `identificativo`.
    pub fn envelope(original: &[u8], identificativo: &str) -> Vec<u8> {
        provider_message(Kind::Envelope, original, Facts::id(identificativo))
    }

    /// A busta di anomalia around ordinary mail that reached the PEC box.
    pub fn anomaly(original: &[u8], identificativo: &str) -> Vec<u8> {
        provider_message(Kind::Anomaly, original, Facts::id(identificativo))
    }

    /// A receipt about a PEC we sent (`sent` is what we sent).
    pub fn receipt(kind: ReceiptKind, sent: &[u8], facts: Facts) -> Vec<u8> {
        provider_message(Kind::Receipt(kind), sent, facts)
    }

    /// The PEC the connector sent from `from` with Message-ID `message_id`.
    pub fn sent(from: &str, message_id: &str, to: &[&str]) -> Vec<u8> {
        let mut m = MailBuilder::new()
            .from(from)
            .subject("Risposta alla richiesta di accesso agli atti")
            .date(when())
            .message_id(message_id)
            .text("Gentile Mario Rossi,\nin allegato quanto richiesto.\n");
        for t in to {
            m = m.to(*t);
        }
        m.build()
    }

    /// Ordinary (non-PEC) mail.
    pub fn plain(n: u32, to: &str) -> Vec<u8> {
        MailBuilder::new()
            .from(Address::named("Ufficio Stampa", "stampa@esempio.test"))
            .to(to)
            .subject(&format!("Comunicato {n}"))
            .date(when())
            .message_id(&format!("plain-{n}@esempio.test"))
            .text(&format!("Testo del comunicato {n}.\n"))
            .build()
    }

    /// A message the parser cannot read (`ParseError::Mime`): a damaged copy whose first header
    /// line starts with a space, as left by a broken transfer. Servers store it like any other.
    pub fn unreadable(n: u32) -> Vec<u8> {
        let mut raw = format!(" corrotto {n}: intestazione spezzata ").into_bytes();
        raw.extend_from_slice(b"\xff\xfe\r\nSubject: illeggibile\r\n\r\ncorpo\r\n");
        raw
    }

    /// A reply from the citizen: an envelope whose original answers `in_reply_to`.
    pub fn reply(n: u32, to: &str, in_reply_to: &str, identificativo: &str) -> Vec<u8> {
        let original = citizen(n, to)
            .subject(&format!("Re: Richiesta n. {n}"))
            .in_reply_to(in_reply_to)
            .build();
        envelope(&original, identificativo)
    }

    /// An envelope of about `size` bytes (a binary attachment makes up the bulk).
    pub fn envelope_of_size(n: u32, to: &str, size: usize) -> Vec<u8> {
        // base64 writes 57 bytes per 78-byte line (76 characters and CRLF); headers, bodies, the
        // provider's notice, daticert.xml and the signature add about 8.5 kB.
        let attachment_len = size.saturating_sub(8_500) * 57 / 78;
        let mut data = Vec::with_capacity(attachment_len);
        let mut x = 0x9e37_79b9u32 ^ n;
        while data.len() < attachment_len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(attachment_len);
        let original = MailBuilder::new()
            .from(Address::named(CITIZEN_NAME, CITIZEN))
            .to(to)
            .subject(&format!("Pratica {n}"))
            .date(when())
            .message_id(&format!("bulk-{n}@client.cittadino.test"))
            .text(&format!("Si trasmette la pratica {n}.\n"))
            .attachment(
                &format!("pratica-{n}.bin"),
                "application/octet-stream",
                &data,
            )
            .build();
        envelope(&original, &format!("opec-bulk-{n}@pec.sandbox.test"))
    }
}
