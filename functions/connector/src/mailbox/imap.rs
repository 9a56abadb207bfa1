//! [`ImapMailbox`]: the mailbox port over IMAP with implicit TLS (port 993), using the blocking
//! `imap` crate on a rustls stream. Every blocking call runs on tokio's blocking pool, so the
//! async runtime is never stalled. The INBOX is opened with EXAMINE and bodies are fetched with
//! `BODY.PEEK[]`: nothing on the server changes.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use secrecy::{ExposeSecret, SecretString};

use super::{FetchedMessage, Mailbox, MailboxError, MailboxSession, MailboxStatus, MessageRef};

type Stream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    /// The login name: usually the PEC address (Legalmail uses the InfoCert user id instead).
    pub username: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

impl ImapConfig {
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>) -> ImapConfig {
        ImapConfig {
            host: host.into(),
            port,
            username: username.into(),
            timeout: Duration::from_secs(30),
        }
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A PEC mailbox reached over IMAPS.
pub struct ImapMailbox {
    config: ImapConfig,
    password: SecretString,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ImapMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapMailbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// TLS trust for IMAP and SMTP: the public web PKI roots, plus extra roots a deployment or a test
/// names explicitly (a test server's certificate). Certificates are always verified.
pub fn tls_config(extra_roots_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("cannot read a root certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("cannot use a root certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("no certificate in the extra roots PEM".to_owned());
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl ImapMailbox {
    pub fn new(
        config: ImapConfig,
        password: SecretString,
        tls: Arc<rustls::ClientConfig>,
    ) -> ImapMailbox {
        ImapMailbox {
            config,
            password,
            tls,
        }
    }
}

#[async_trait]
impl Mailbox for ImapMailbox {
    async fn open(&self) -> Result<Box<dyn MailboxSession>, MailboxError> {
        let config = self.config.clone();
        let password = self.password.clone();
        let tls = self.tls.clone();
        let (session, status) = blocking(move || connect(&config, &password, tls)).await??;
        Ok(Box::new(ImapSession {
            server: self.config.server(),
            session: Some(session),
            status,
        }))
    }
}

struct ImapSession {
    server: String,
    session: Option<imap::Session<Stream>>,
    status: MailboxStatus,
}

impl ImapSession {
    /// Runs one blocking IMAP exchange on the blocking pool, handing the session back and forth.
    async fn with_session<T: Send + 'static>(
        &mut self,
        command: &'static str,
        f: impl FnOnce(&mut imap::Session<Stream>) -> imap::error::Result<T> + Send + 'static,
    ) -> Result<T, MailboxError> {
        let Some(mut session) = self.session.take() else {
            return Err(MailboxError::Io {
                server: self.server.clone(),
                command,
                reason: "the session was lost by an earlier error".to_owned(),
            });
        };
        let server = self.server.clone();
        let (session, result) = blocking(move || {
            let result = f(&mut session);
            (session, result)
        })
        .await?;
        match result {
            Ok(value) => {
                self.session = Some(session);
                Ok(value)
            }
            Err(e) => {
                // A server NO/BAD leaves the connection usable; anything else does not.
                if matches!(e, imap::Error::No(_) | imap::Error::Bad(_)) {
                    self.session = Some(session);
                }
                Err(imap_error(&server, command, e))
            }
        }
    }
}

#[async_trait]
impl MailboxSession for ImapSession {
    fn status(&self) -> MailboxStatus {
        self.status
    }

    async fn list_above(&mut self, after: u32) -> Result<Vec<MessageRef>, MailboxError> {
        let none_above =
            self.status.uid_next != 0 && after.saturating_add(1) >= self.status.uid_next;
        if self.status.exists == 0 || none_above {
            return Ok(Vec::new());
        }
        let first = after.saturating_add(1);
        let mut refs = self
            .with_session("UID FETCH (RFC822.SIZE INTERNALDATE)", move |s| {
                let fetches =
                    s.uid_fetch(format!("{first}:*"), "(UID RFC822.SIZE INTERNALDATE)")?;
                Ok(fetches
                    .iter()
                    .filter_map(|f| {
                        Some(MessageRef {
                            uid: f.uid?,
                            size: f.size.unwrap_or(0),
                            arrived: f.internal_date().map(|d| d.with_timezone(&chrono::Utc)),
                        })
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        // `n:*` always includes the highest message, even when its UID is below n.
        refs.retain(|r| r.uid > after);
        refs.sort_by_key(|r| r.uid);
        refs.dedup_by_key(|r| r.uid);
        Ok(refs)
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, MailboxError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let wanted: std::collections::BTreeSet<u32> = uids.iter().copied().collect();
        let mut messages = self
            .with_session("UID FETCH BODY.PEEK[]", move |s| {
                let fetches = s.uid_fetch(&set, "(UID BODY.PEEK[])")?;
                Ok(fetches
                    .iter()
                    .filter_map(|f| {
                        Some(FetchedMessage {
                            uid: f.uid?,
                            raw: f.body()?.to_vec(),
                        })
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        messages.retain(|m| wanted.contains(&m.uid));
        messages.sort_by_key(|m| m.uid);
        messages.dedup_by_key(|m| m.uid);
        Ok(messages)
    }

    async fn fetch_header(&mut self, uid: u32) -> Result<Option<Vec<u8>>, MailboxError> {
        self.with_session("UID FETCH BODY.PEEK[HEADER]", move |s| {
            let fetches = s.uid_fetch(uid.to_string(), "(UID BODY.PEEK[HEADER])")?;
            Ok(fetches
                .iter()
                .find(|f| f.uid == Some(uid))
                .and_then(|f| f.header())
                .map(<[u8]>::to_vec))
        })
        .await
    }

    async fn close(mut self: Box<Self>) {
        if let Some(mut session) = self.session.take() {
            let _ = tokio::task::spawn_blocking(move || session.logout()).await;
        }
    }
}

fn connect(
    config: &ImapConfig,
    password: &SecretString,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(imap::Session<Stream>, MailboxStatus), MailboxError> {
    let server = config.server();
    let connect_err = |source: std::io::Error| MailboxError::Connect {
        server: server.clone(),
        source,
    };
    let addrs: Vec<_> = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(connect_err)?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.timeout) {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or_else(|| connect_err(last))?;
    tcp.set_read_timeout(Some(config.timeout))
        .map_err(connect_err)?;
    tcp.set_write_timeout(Some(config.timeout))
        .map_err(connect_err)?;
    let name = ServerName::try_from(config.host.clone()).map_err(|e| MailboxError::Tls {
        server: server.clone(),
        reason: format!("invalid server name: {e}"),
    })?;
    let conn = rustls::ClientConnection::new(tls, name).map_err(|e| MailboxError::Tls {
        server: server.clone(),
        reason: e.to_string(),
    })?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake now so that certificate problems are reported as such.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| io_or_tls(&server, "TLS handshake", e))?;
    }
    let mut client = imap::Client::new(stream);
    client
        .read_greeting()
        .map_err(|e| imap_error(&server, "greeting", e))?;
    let mut session = client
        .login(&config.username, password.expose_secret())
        .map_err(|(e, _)| match e {
            imap::Error::No(reason) | imap::Error::Bad(reason) => MailboxError::LoginRefused {
                server: server.clone(),
                user: mask_user(&config.username),
                reason,
            },
            other => imap_error(&server, "LOGIN", other),
        })?;
    let inbox = session
        .examine("INBOX")
        .map_err(|e| imap_error(&server, "EXAMINE INBOX", e))?;
    let status = MailboxStatus {
        uid_validity: inbox.uid_validity.unwrap_or(0),
        uid_next: inbox.uid_next.unwrap_or(0),
        exists: inbox.exists,
    };
    Ok((session, status))
}

/// `mario.rossi@pec.it` → `m***@pec.it`: enough for an admin to recognise, not a full address
/// in every log line.
fn mask_user(user: &str) -> String {
    match user.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => {
            let first: String = user.chars().take(1).collect();
            format!("{first}***")
        }
    }
}

fn imap_error(server: &str, command: &'static str, e: imap::Error) -> MailboxError {
    match e {
        imap::Error::No(reason) | imap::Error::Bad(reason) => MailboxError::Server {
            server: server.to_owned(),
            command,
            reason,
        },
        imap::Error::Io(io) => io_or_tls(server, command, io),
        other => MailboxError::Io {
            server: server.to_owned(),
            command,
            reason: other.to_string(),
        },
    }
}

fn io_or_tls(server: &str, command: &'static str, e: std::io::Error) -> MailboxError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|t| t.to_string());
    match tls {
        Some(reason) => MailboxError::Tls {
            server: server.to_owned(),
            reason,
        },
        None => MailboxError::Io {
            server: server.to_owned(),
            command,
            reason: e.to_string(),
        },
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MailboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MailboxError::Io {
            server: String::new(),
            command: "blocking task",
            reason: e.to_string(),
        })
}

/// Opens accounts' mailboxes over IMAPS with one TLS configuration.
#[derive(Clone)]
pub struct ImapProvider {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl ImapProvider {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> ImapProvider {
        ImapProvider {
            tls,
            timeout: Duration::from_secs(30),
        }
    }
}

impl super::MailboxProvider for ImapProvider {
    fn mailbox(
        &self,
        account: &crate::domain::Account,
        password: SecretString,
    ) -> Box<dyn Mailbox> {
        let username = account
            .username
            .clone()
            .unwrap_or_else(|| account.address.as_str().to_owned());
        let mut config = ImapConfig::new(account.imap.host.clone(), account.imap.port, username);
        config.timeout = self.timeout;
        Box::new(ImapMailbox::new(config, password, self.tls.clone()))
    }
}
