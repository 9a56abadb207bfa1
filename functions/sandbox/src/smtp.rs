//! The PEC provider's SMTP submission server, simulated: implicit TLS (as on port 465) with the
//! sandbox's own test certificate ([`SANDBOX_CA_PEM`]), AUTH PLAIN and LOGIN, then MAIL, RCPT and
//! DATA. Every accepted message is handed over as a [`Submission`] (the authenticated user, the
//! envelope and the raw bytes) — to a channel the provider behaviour reads, or kept for a test.
//!
//! Enough SMTP for real clients (the connector's lettre-based mailer): EHLO/HELO, AUTH, MAIL
//! FROM (parameters ignored), RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT. A refused
//! password answers `535 5.7.8`; commands before AUTH answer `530 5.7.0`; a message over the size
//! limit answers `552 5.3.4`.
//!
//! ## Faults by name (opt-in)
//!
//! With [`SmtpOptions::faults_by_name`] the server also follows the convention of the aiosmtpd
//! test server (infra/smtpd.py), so that the connector's SMTP adapter tests run unchanged against
//! both. The fault is chosen by the AUTH user name (a substring of it), so parallel tests, each
//! with its own user, never interfere:
//! - `fail535`: every password is refused, `535 5.7.8` at AUTH;
//! - `block571`: `554 5.7.1 Indirizzo IP bloccato: connessione rifiutata dal gestore` at MAIL
//!   FROM (the provider blocks the sending IP address); `block571auth` gives the same answer at
//!   AUTH (whatever the password), `block571rcpt` at RCPT TO (whatever the recipient);
//! - `busy452`: `452 4.3.1 Insufficient system storage` at MAIL FROM on that user's first
//!   attempt, then accepted;
//! - `stall`: no answer to the end of DATA for [`SmtpOptions::stall`] (then kept and accepted);
//!   `stallmail` gives no answer to MAIL FROM instead (a client that gives up sent nothing);
//! - `dropafterdata`: the message is kept (and handed over) as an accepted one, then the
//!   connection is closed without an answer to the end of DATA: the client cannot know that it
//!   left; `stallafterdata` keeps it, gives no answer for [`SmtpOptions::stall`], then closes;
//! - `toobig`: `552 5.3.4 Message size exceeds fixed maximum message size` at the end of DATA;
//!
//! and a recipient containing `unknown` gets `550 5.1.1 <address>: utente sconosciuto` at RCPT
//! TO. It is off by default: the PEC provider simulator and the demo never use it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;

use crate::listener::TlsServer;

/// The sandbox's test CA: trust it (and only in tests and the demo) to talk to the simulators.
pub const SANDBOX_CA_PEM: &str = include_str!("tls/ca.pem");
const SERVER_CERT_PEM: &str = include_str!("tls/server.pem");
const SERVER_KEY_PEM: &str = include_str!("tls/server.key");

/// One message accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub authenticated_user: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
}

/// Who may log in: a user name and password check.
pub type Logins = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Called with every accepted message, after it is kept and before the client hears `250`.
pub type OnSubmission = Arc<dyn Fn(Submission) + Send + Sync>;

/// How a [`SmtpSimulator`] behaves.
#[derive(Clone)]
pub struct SmtpOptions {
    /// The largest message accepted; a larger one gets `552 5.3.4`.
    pub max_size: usize,
    /// Called with every accepted message, after it is kept and before the client hears `250`.
    pub on_submission: Option<OnSubmission>,
    /// The test-server fault convention shared with infra/smtpd.py (see the module docs).
    pub faults_by_name: bool,
    /// How long a `stall`, `stallmail` or `stallafterdata` user waits for an answer (with
    /// `faults_by_name`).
    pub stall: Duration,
}

impl SmtpOptions {
    /// No hook and no faults; a `stall` lasts 30 s, as on infra/smtpd.py, once faults are on.
    pub fn new(max_size: usize) -> SmtpOptions {
        SmtpOptions {
            max_size,
            on_submission: None,
            faults_by_name: false,
            stall: Duration::from_secs(30),
        }
    }
}

/// Aruba's words when it turns away the client's IP address.
const BLOCKED_571: &str = "554 5.7.1 Indirizzo IP bloccato: connessione rifiutata dal gestore\r\n";

/// The SMTP step at which a `block571` fault refuses the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockedAt {
    Auth,
    Mail,
    Rcpt,
}

/// The SMTP step at which a `stall` fault leaves the client without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StalledAt {
    Mail,
    /// The end of DATA, before the message is kept.
    Data,
    /// The end of DATA, once the message is kept (the connection is then closed).
    AfterData,
}

/// What every session of one server shares.
struct Shared {
    logins: Logins,
    kept: Arc<Mutex<Vec<Submission>>>,
    options: SmtpOptions,
    /// The `busy452` users already refused once.
    busy_seen: Mutex<HashSet<String>>,
}

impl Shared {
    /// The fault `name` is on for `user`.
    fn fault(&self, user: &str, name: &str) -> bool {
        self.options.faults_by_name && user.contains(name)
    }

    /// `user`'s 5.7.1 fault strikes at `step`: `block571auth` at AUTH, `block571rcpt` at RCPT
    /// TO, any other `block571` at MAIL FROM.
    fn blocked(&self, user: &str, step: BlockedAt) -> bool {
        let Some((_, after)) = user.split_once("block571") else {
            return false;
        };
        let at = if after.starts_with("auth") {
            BlockedAt::Auth
        } else if after.starts_with("rcpt") {
            BlockedAt::Rcpt
        } else {
            BlockedAt::Mail
        };
        self.options.faults_by_name && at == step
    }

    /// `user`'s stall fault strikes at `step`: `stallmail` at MAIL FROM, `stallafterdata` once
    /// the message is kept, any other `stall` at the end of DATA before it is kept.
    fn stalled(&self, user: &str, step: StalledAt) -> bool {
        let Some((_, after)) = user.split_once("stall") else {
            return false;
        };
        let at = if after.starts_with("mail") {
            StalledAt::Mail
        } else if after.starts_with("afterdata") {
            StalledAt::AfterData
        } else {
            StalledAt::Data
        };
        self.options.faults_by_name && at == step
    }

    /// `user`'s first `busy452` attempt: remembered, so that the next one is accepted.
    fn first_busy(&self, user: &str) -> bool {
        let mut seen = self.busy_seen.lock().expect("not poisoned");
        seen.insert(user.to_owned())
    }
}

/// A running SMTP submission server on loopback.
pub struct SmtpSimulator {
    server: TlsServer,
    submissions: Arc<Mutex<Vec<Submission>>>,
}

/// The server's TLS identity: the sandbox certificate for `localhost` and `127.0.0.1`.
pub(crate) fn acceptor() -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(SERVER_CERT_PEM.as_bytes())
            .chain(CertificateDer::pem_slice_iter(SANDBOX_CA_PEM.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("sandbox certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM.as_bytes())
        .map_err(|e| format!("sandbox key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl SmtpSimulator {
    /// Starts on 127.0.0.1 (a free port); `logins` decides who may authenticate; `max_size` is
    /// the largest message accepted.
    pub async fn start(logins: Logins, max_size: usize) -> Result<SmtpSimulator, String> {
        Self::start_with(logins, max_size, None).await
    }

    /// [`Self::start`], handing every accepted message to `on_submission` too.
    pub async fn start_with(
        logins: Logins,
        max_size: usize,
        on_submission: Option<OnSubmission>,
    ) -> Result<SmtpSimulator, String> {
        let options = SmtpOptions {
            on_submission,
            ..SmtpOptions::new(max_size)
        };
        Self::start_with_options(logins, options).await
    }

    /// Starts on 127.0.0.1 (a free port), behaving as `options` say.
    pub async fn start_with_options(
        logins: Logins,
        options: SmtpOptions,
    ) -> Result<SmtpSimulator, String> {
        let submissions = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            logins,
            kept: submissions.clone(),
            options,
            busy_seen: Mutex::new(HashSet::new()),
        });
        let server = TlsServer::start(move |tls| {
            let shared = shared.clone();
            async move {
                let _ = session(tls, &shared).await;
            }
        })
        .await?;
        Ok(SmtpSimulator {
            server,
            submissions,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every message accepted so far, oldest first.
    pub fn submissions(&self) -> Vec<Submission> {
        self.submissions.lock().expect("not poisoned").clone()
    }

    /// Stops accepting connections (open ones end when their clients leave).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// `<addr>` from `MAIL FROM:<addr> PARAMS` / `RCPT TO:<addr>`.
fn path_of(arg: &str) -> Option<String> {
    let start = arg.find('<')?;
    let end = arg[start..].find('>')? + start;
    Some(arg[start + 1..end].trim().to_owned())
}

fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

async fn session<S>(stream: S, shared: &Shared) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let max_size = shared.options.max_size;
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read);
    let mut user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    write
        .write_all(b"220 smtps.pec.sandbox.test ESMTP sandbox\r\n")
        .await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_owned();
        let (verb, arg) = match cmd.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_owned()),
            None => (cmd.to_ascii_uppercase(), String::new()),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => format!(
                "250-smtps.pec.sandbox.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE {max_size}\r\n"
            ),
            "HELO" => "250 smtps.pec.sandbox.test\r\n".to_owned(),
            "NOOP" => "250 2.0.0 OK\r\n".to_owned(),
            "RSET" => {
                from = None;
                rcpts.clear();
                "250 2.0.0 OK\r\n".to_owned()
            }
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                let creds = match mech.as_str() {
                    "PLAIN" => {
                        let initial = match parts.next() {
                            Some(i) => i.to_owned(),
                            None => {
                                write.write_all(b"334 \r\n").await?;
                                line.clear();
                                lines.read_line(&mut line).await?;
                                line.trim().to_owned()
                            }
                        };
                        b64(&initial).and_then(|raw| {
                            let mut f = raw.split(|b| *b == 0);
                            let _authz = f.next()?;
                            let u = String::from_utf8(f.next()?.to_vec()).ok()?;
                            let p = String::from_utf8(f.next()?.to_vec()).ok()?;
                            Some((u, p))
                        })
                    }
                    "LOGIN" => {
                        write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                        line.clear();
                        lines.read_line(&mut line).await?;
                        let u = b64(&line).and_then(|b| String::from_utf8(b).ok());
                        write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        line.clear();
                        lines.read_line(&mut line).await?;
                        let p = b64(&line).and_then(|b| String::from_utf8(b).ok());
                        u.zip(p)
                    }
                    _ => None,
                };
                match creds {
                    Some((u, _)) if shared.blocked(&u, BlockedAt::Auth) => BLOCKED_571.to_owned(),
                    Some((u, p)) if !shared.fault(&u, "fail535") && (shared.logins)(&u, &p) => {
                        user = Some(u);
                        "235 2.7.0 Authentication successful\r\n".to_owned()
                    }
                    Some(_) => "535 5.7.8 Authentication credentials invalid\r\n".to_owned(),
                    None => "501 5.5.4 Malformed AUTH\r\n".to_owned(),
                }
            }
            "MAIL" | "RCPT" | "DATA" if user.is_none() => {
                "530 5.7.0 Authentication required\r\n".to_owned()
            }
            "MAIL" => {
                let u = user.as_deref().unwrap_or_default();
                if shared.stalled(u, StalledAt::Mail) {
                    tokio::time::sleep(shared.options.stall).await;
                }
                match path_of(&arg) {
                    None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".to_owned(),
                    Some(_) if shared.blocked(u, BlockedAt::Mail) => BLOCKED_571.to_owned(),
                    Some(_) if shared.fault(u, "busy452") && shared.first_busy(u) => {
                        "452 4.3.1 Insufficient system storage\r\n".to_owned()
                    }
                    Some(p) => {
                        from = Some(p);
                        rcpts.clear();
                        "250 2.1.0 OK\r\n".to_owned()
                    }
                }
            }
            "RCPT" => {
                let u = user.as_deref().unwrap_or_default();
                match (&from, path_of(&arg)) {
                    (None, _) => "503 5.5.1 MAIL first\r\n".to_owned(),
                    (_, None) => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".to_owned(),
                    _ if shared.blocked(u, BlockedAt::Rcpt) => BLOCKED_571.to_owned(),
                    (_, Some(r)) if shared.options.faults_by_name && r.contains("unknown") => {
                        format!("550 5.1.1 <{r}>: utente sconosciuto\r\n")
                    }
                    (_, Some(r)) => {
                        rcpts.push(r);
                        "250 2.1.5 OK\r\n".to_owned()
                    }
                }
            }
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    "503 5.5.1 MAIL and RCPT first\r\n".to_owned()
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut raw = Vec::new();
                    let mut too_big = false;
                    loop {
                        let mut l = Vec::new();
                        if lines.read_until(b'\n', &mut l).await? == 0 {
                            return Ok(());
                        }
                        if l == b".\r\n" || l == b".\n" {
                            break;
                        }
                        let l = if l.starts_with(b"..") {
                            &l[1..]
                        } else {
                            &l[..]
                        };
                        if raw.len() + l.len() > max_size {
                            too_big = true;
                        } else {
                            raw.extend_from_slice(l);
                        }
                    }
                    let user = user.as_deref().unwrap_or("");
                    if shared.stalled(user, StalledAt::Data) {
                        tokio::time::sleep(shared.options.stall).await;
                    }
                    if too_big || shared.fault(user, "toobig") {
                        "552 5.3.4 Message size exceeds fixed maximum message size\r\n".to_owned()
                    } else {
                        let submission = Submission {
                            authenticated_user: user.to_owned(),
                            mail_from: from.take().unwrap_or_default(),
                            recipients: std::mem::take(&mut rcpts),
                            raw,
                        };
                        let n = {
                            let mut kept = shared.kept.lock().expect("not poisoned");
                            kept.push(submission.clone());
                            kept.len()
                        };
                        if let Some(hook) = &shared.options.on_submission {
                            hook(submission);
                        }
                        let after_data = shared.stalled(user, StalledAt::AfterData);
                        if after_data {
                            tokio::time::sleep(shared.options.stall).await;
                        }
                        if after_data || shared.fault(user, "dropafterdata") {
                            // Dropping the stream closes the connection without a word.
                            return Ok(());
                        }
                        format!("250 2.0.0 OK queued as sandbox-{n}\r\n")
                    }
                }
            }
            _ => "502 5.5.2 Command not recognized\r\n".to_owned(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_angle_brackets() {
        assert_eq!(
            path_of("FROM:<a@b.it> BODY=8BITMIME").as_deref(),
            Some("a@b.it")
        );
        assert_eq!(path_of("TO:<x@y.it>").as_deref(), Some("x@y.it"));
        assert_eq!(path_of("FROM:a@b.it"), None);
    }

    #[tokio::test]
    async fn the_tls_identity_loads() {
        assert!(acceptor().is_ok());
        let sim = SmtpSimulator::start(
            Arc::new(|u, p| u == "a@pec.sandbox.test" && p == "pw"),
            1000,
        )
        .await
        .unwrap();
        assert!(sim.addr().ip().is_loopback());
        sim.shutdown().await;
    }

    fn shared(faults_by_name: bool) -> Shared {
        Shared {
            logins: Arc::new(|_, p| p == "secret"),
            kept: Arc::new(Mutex::new(Vec::new())),
            options: SmtpOptions {
                faults_by_name,
                stall: Duration::from_millis(50),
                ..SmtpOptions::new(1000)
            },
            busy_seen: Mutex::new(HashSet::new()),
        }
    }

    /// One session without TLS: sends each step (CRLF added) and collects the last line of
    /// each reply ("" when the server closed the connection instead).
    async fn converse(shared: &Shared, user: &str, steps: &[&str]) -> Vec<String> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (read, mut write) = tokio::io::split(client);
        let mut replies = BufReader::new(read);
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0secret"));
        let auth = format!("AUTH PLAIN {plain}");
        let client = async {
            let mut greeting = String::new();
            replies.read_line(&mut greeting).await.unwrap();
            let mut got = Vec::new();
            for step in [auth.as_str()]
                .iter()
                .chain(steps)
                .map(|s| format!("{s}\r\n"))
            {
                write.write_all(step.as_bytes()).await.unwrap();
                loop {
                    let mut line = String::new();
                    replies.read_line(&mut line).await.unwrap();
                    if line.as_bytes().get(3) != Some(&b'-') {
                        got.push(line.trim_end().to_owned());
                        break;
                    }
                }
            }
            // The server may have closed the connection already.
            let _ = write.write_all(b"QUIT\r\n").await;
            got
        };
        let (got, served) = tokio::join!(client, session(server, shared));
        served.unwrap();
        got
    }

    const SEND: [&str; 5] = [
        "MAIL FROM:<a@pec.test>",
        "RCPT TO:<b@pec.test>",
        "DATA",
        "Subject: x\r\n\r\nbody\r\n.",
        "NOOP",
    ];

    #[tokio::test]
    async fn faults_by_name_follow_the_test_server_convention() {
        let s = shared(true);
        let fail = converse(&s, "fail535-1@pec.test", &[]).await;
        assert_eq!(fail, ["535 5.7.8 Authentication credentials invalid"]);
        let blocked = converse(&s, "block571-1@pec.test", &SEND[..1]).await;
        assert_eq!(
            blocked[1],
            "554 5.7.1 Indirizzo IP bloccato: connessione rifiutata dal gestore"
        );
        let refused = BLOCKED_571.trim_end();
        let at_auth = converse(&s, "block571auth-1@pec.test", &[]).await;
        assert_eq!(at_auth, [refused], "the right password, yet refused");
        let at_rcpt = converse(&s, "block571rcpt-1@pec.test", &SEND[..3]).await;
        assert_eq!(
            at_rcpt[1..],
            ["250 2.1.0 OK", refused, "503 5.5.1 MAIL and RCPT first"]
        );
        let busy = converse(&s, "busy452-1@pec.test", &SEND[..1]).await;
        assert_eq!(busy[1], "452 4.3.1 Insufficient system storage");
        let retried = converse(&s, "busy452-1@pec.test", &SEND).await;
        assert!(
            retried[4].starts_with("250 2.0.0 OK queued as "),
            "{retried:?}"
        );
        let unknown = converse(&s, "u@pec.test", &[SEND[0], "RCPT TO:<unknown.x@pec.test>"]).await;
        assert_eq!(
            unknown[2],
            "550 5.1.1 <unknown.x@pec.test>: utente sconosciuto"
        );
        let big = converse(&s, "toobig-1@pec.test", &SEND).await;
        assert_eq!(
            big[4],
            "552 5.3.4 Message size exceeds fixed maximum message size"
        );
        let started = std::time::Instant::now();
        let stalled = converse(&s, "stall-1@pec.test", &SEND).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(
            stalled[4].starts_with("250 2.0.0 OK queued as "),
            "{stalled:?}"
        );
        let kept = s.kept.lock().unwrap();
        let users: Vec<_> = kept.iter().map(|k| k.authenticated_user.as_str()).collect();
        assert_eq!(users, ["busy452-1@pec.test", "stall-1@pec.test"]);
    }

    #[tokio::test]
    async fn a_stall_at_mail_answers_late_and_a_drop_after_data_keeps_the_message() {
        let s = shared(true);
        let started = std::time::Instant::now();
        let at_mail = converse(&s, "stallmail-1@pec.test", &SEND).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(at_mail[1], "250 2.1.0 OK", "answered, but late");
        let dropped = converse(&s, "dropafterdata-1@pec.test", &SEND[..4]).await;
        assert_eq!(
            dropped[1..4],
            [
                "250 2.1.0 OK",
                "250 2.1.5 OK",
                "354 End data with <CR><LF>.<CR><LF>"
            ]
        );
        assert_eq!(
            dropped[4], "",
            "closed without an answer to the end of DATA"
        );
        let started = std::time::Instant::now();
        let stalled = converse(&s, "stallafterdata-1@pec.test", &SEND[..4]).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(stalled[4], "", "no answer, then closed");
        let kept = s.kept.lock().unwrap();
        let users: Vec<_> = kept.iter().map(|k| k.authenticated_user.as_str()).collect();
        assert_eq!(
            users,
            [
                "stallmail-1@pec.test",
                "dropafterdata-1@pec.test",
                "stallafterdata-1@pec.test"
            ],
            "a dropped one is kept as if accepted"
        );
        assert_eq!(kept[1].raw, b"Subject: x\r\n\r\nbody\r\n");
    }

    #[tokio::test]
    async fn without_faults_by_name_the_names_mean_nothing() {
        let s = shared(false);
        for user in [
            "fail535",
            "block571",
            "block571auth",
            "block571rcpt",
            "busy452",
            "stall",
            "stallmail",
            "stallafterdata",
            "dropafterdata",
            "toobig",
        ] {
            let replies = converse(&s, &format!("{user}@pec.test"), &SEND).await;
            assert!(replies[0].starts_with("235 "), "{user}: {replies:?}");
            assert!(
                replies[4].starts_with("250 2.0.0 OK queued as "),
                "{user}: {replies:?}"
            );
        }
        let unknown = converse(&s, "u@pec.test", &[SEND[0], "RCPT TO:<unknown@pec.test>"]).await;
        assert_eq!(unknown[2], "250 2.1.5 OK");
    }
}
