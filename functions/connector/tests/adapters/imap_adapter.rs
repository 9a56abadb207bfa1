//! The IMAP adapter's scenarios, written once and run against every IMAP server we test with
//! (Dovecot in `imap_dovecot.rs`, the sandbox simulator in `imap_simulator.rs`). Messages are put
//! in and flags read back with an independent client (the `imap` crate directly).

use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use secrecy::SecretString;

use connector::mailbox::imap::{ImapConfig, ImapMailbox, tls_config};
use connector::mailbox::{Mailbox, MailboxError};

/// An IMAPS server to test against, and how to give a test a mailbox of its own.
pub struct Server {
    pub host: String,
    pub port: u16,
    /// The CA that signed the server's certificate.
    pub ca_pem: Vec<u8>,
    /// Makes a fresh mailbox from a unique user name; returns its password.
    pub new_user: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// Whatever must stay alive while the server is used (an in-process server).
    pub _running: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Server {
    /// A mailbox of the test's own: `(user, password)`.
    fn user(&self, test: &str) -> (String, String) {
        let user = unique_user(test);
        let password = (self.new_user)(&user);
        (user, password)
    }

    fn mailbox(&self, user: &str, password: &str, trust_test_ca: bool) -> ImapMailbox {
        let tls = tls_config(trust_test_ca.then_some(self.ca_pem.as_slice())).unwrap();
        ImapMailbox::new(
            ImapConfig::new(self.host.clone(), self.port, user),
            SecretString::from(password.to_owned()),
            tls,
        )
    }

    /// An independent client session, on the blocking pool.
    async fn with_client<T: Send + 'static>(
        &self,
        user: &str,
        password: &str,
        f: impl FnOnce(&mut imap::Session<Stream>) -> T + Send + 'static,
    ) -> T {
        let (host, port) = (self.host.clone(), self.port);
        let tls = tls_config(Some(&self.ca_pem)).unwrap();
        let (user, password) = (user.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut session = client_session(&host, port, tls, &user, &password);
            let value = f(&mut session);
            session.logout().unwrap();
            value
        })
        .await
        .unwrap()
    }

    async fn append(&self, user: &str, password: &str, messages: &[&[u8]]) {
        let messages: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
        self.with_client(user, password, move |s| {
            for m in &messages {
                s.append("INBOX", m).unwrap();
            }
        })
        .await
    }

    async fn seen_flags(&self, user: &str, password: &str) -> Vec<bool> {
        self.with_client(user, password, |s| {
            s.examine("INBOX").unwrap();
            let fetches = s.uid_fetch("1:*", "(UID FLAGS)").unwrap();
            fetches
                .iter()
                .map(|f| {
                    f.flags()
                        .iter()
                        .any(|fl| matches!(fl, imap::types::Flag::Seen))
                })
                .collect()
        })
        .await
    }
}

type Stream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client_session(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    user: &str,
    password: &str,
) -> imap::Session<Stream> {
    let conn =
        rustls::ClientConnection::new(tls, ServerName::try_from(host.to_owned()).unwrap()).unwrap();
    let stream = rustls::StreamOwned::new(conn, TcpStream::connect((host, port)).unwrap());
    let mut client = imap::Client::new(stream);
    client.read_greeting().unwrap();
    client.login(user, password).map_err(|e| e.0).unwrap()
}

/// A user name no other test (or earlier run against the same server) uses.
pub fn unique_user(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_007;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{test}-{}-{nanos}-{n}@pec.test", std::process::id())
}

fn msg(n: u32) -> Vec<u8> {
    format!("From: a{n}@example.it\r\nTo: b@pec.test\r\nSubject: messaggio {n}\r\nMessage-ID: <m{n}@example.it>\r\n\r\ncorpo {n}\r\n").into_bytes()
}

pub async fn lists_and_fetches_new_messages_in_uid_order_without_marking_them_seen(s: &Server) {
    let (user, password) = s.user("fetch");
    s.append(&user, &password, &[]).await;
    let mb = s.mailbox(&user, &password, true);
    let session = mb.open().await.unwrap();
    assert_eq!(session.status().exists, 0);
    session.close().await;

    let (m1, m2, m3) = (msg(1), msg(2), msg(3));
    s.append(&user, &password, &[&m1, &m2, &m3]).await;
    let mut session = mb.open().await.unwrap();
    let status = session.status();
    assert_eq!(status.exists, 3);
    assert!(status.uid_validity > 0);
    assert_eq!(status.uid_next, 4);
    let refs = session.list_above(0).await.unwrap();
    assert_eq!(
        refs.iter().map(|r| r.uid).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(refs[1].size as usize, m2.len());
    assert!(refs.iter().all(|r| r.arrived.is_some()), "{refs:?}");
    let above = session.list_above(1).await.unwrap();
    assert_eq!(above.iter().map(|r| r.uid).collect::<Vec<_>>(), vec![2, 3]);
    // `3:*` on the server still names UID 3 when nothing is above it: filtered out.
    assert!(session.list_above(3).await.unwrap().is_empty());
    assert!(session.list_above(10).await.unwrap().is_empty());

    let fetched = session.fetch(&[3, 1]).await.unwrap();
    assert_eq!(
        fetched.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(fetched[0].raw, m1);
    assert_eq!(fetched[1].raw, m3);
    assert!(session.fetch(&[]).await.unwrap().is_empty());
    assert!(session.fetch(&[99]).await.unwrap().is_empty());
    session.close().await;
    assert_eq!(
        s.seen_flags(&user, &password).await,
        vec![false, false, false],
        "the mailbox must be left unread"
    );
}

pub async fn a_refused_password_is_an_auth_error_that_never_shows_the_password(s: &Server) {
    let (user, _) = s.user("auth");
    let err = s
        .mailbox(&user, "wrong-Pa55word!", true)
        .open()
        .await
        .err()
        .unwrap();
    assert!(err.is_auth(), "{err:?}");
    assert!(!err.is_transient());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-Pa55word!"), "{text}");
    assert!(text.contains(&s.port.to_string()), "{text}");
}

pub async fn an_untrusted_certificate_is_refused(s: &Server) {
    let (user, password) = s.user("tls");
    let err = s
        .mailbox(&user, &password, false)
        .open()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, MailboxError::Tls { .. }), "{err:?}");
    assert!(!err.is_transient());
}

/// Needs no server: a port nothing listens on.
pub async fn an_unreachable_server_is_a_transient_connect_error() {
    let tls = tls_config(None).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mb = ImapMailbox::new(
        ImapConfig::new("127.0.0.1", port, "x@pec.test"),
        SecretString::from("p"),
        tls,
    );
    let err = mb.open().await.err().unwrap();
    assert!(matches!(err, MailboxError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}
