//! The IMAP adapter against a real Dovecot IMAPS server on loopback (infra/dovecot.sh).

use std::net::TcpStream;

use rustls::pki_types::ServerName;
use secrecy::SecretString;

use connector::mailbox::imap::{ImapConfig, ImapMailbox, tls_config};
use connector::mailbox::{Mailbox, MailboxError};

struct Dovecot {
    host: String,
    port: u16,
    ca_pem: Vec<u8>,
}

/// The Dovecot test server started by infra/test.sh; fails loudly when it is not there.
fn dovecot() -> Dovecot {
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
    TcpStream::connect((host.as_str(), port)).unwrap_or_else(|e| {
        panic!("Dovecot not reachable at {host}:{port} ({e}); run `bash infra/dovecot.sh start`")
    });
    Dovecot { host, port, ca_pem }
}

/// A mailbox of the test's own (any user name logs in with "secret").
fn user(test: &str) -> String {
    format!(
        "{test}-{}-{}@pec.test",
        std::process::id(),
        fastrand_suffix()
    )
}

fn fastrand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

fn append(d: &Dovecot, user: &str, messages: &[&[u8]]) {
    let tls = tls_config(Some(&d.ca_pem)).unwrap();
    let conn =
        rustls::ClientConnection::new(tls, ServerName::try_from(d.host.clone()).unwrap()).unwrap();
    let stream =
        rustls::StreamOwned::new(conn, TcpStream::connect((d.host.as_str(), d.port)).unwrap());
    let mut client = imap::Client::new(stream);
    client.read_greeting().unwrap();
    let mut s = client.login(user, "secret").map_err(|e| e.0).unwrap();
    for m in messages {
        s.append("INBOX", m).unwrap();
    }
    s.logout().unwrap();
}

fn seen_flags(d: &Dovecot, user: &str) -> Vec<bool> {
    let tls = tls_config(Some(&d.ca_pem)).unwrap();
    let conn =
        rustls::ClientConnection::new(tls, ServerName::try_from(d.host.clone()).unwrap()).unwrap();
    let stream =
        rustls::StreamOwned::new(conn, TcpStream::connect((d.host.as_str(), d.port)).unwrap());
    let mut client = imap::Client::new(stream);
    client.read_greeting().unwrap();
    let mut s = client.login(user, "secret").map_err(|e| e.0).unwrap();
    s.examine("INBOX").unwrap();
    let fetches = s.uid_fetch("1:*", "(UID FLAGS)").unwrap();
    let seen = fetches
        .iter()
        .map(|f| {
            f.flags()
                .iter()
                .any(|fl| matches!(fl, imap::types::Flag::Seen))
        })
        .collect();
    s.logout().unwrap();
    seen
}

fn mailbox(d: &Dovecot, user: &str, password: &str, trust_test_ca: bool) -> ImapMailbox {
    let tls = tls_config(trust_test_ca.then_some(d.ca_pem.as_slice())).unwrap();
    ImapMailbox::new(
        ImapConfig::new(d.host.clone(), d.port, user),
        SecretString::from(password),
        tls,
    )
}

fn msg(n: u32) -> Vec<u8> {
    format!("From: a{n}@example.it\r\nTo: b@pec.test\r\nSubject: messaggio {n}\r\nMessage-ID: <m{n}@example.it>\r\n\r\ncorpo {n}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_and_fetches_new_messages_in_uid_order_without_marking_them_seen() {
    let d = dovecot();
    let user = user("fetch");
    append(&d, &user, &[]);
    let mb = mailbox(&d, &user, "secret", true);
    let session = mb.open().await.unwrap();
    assert_eq!(session.status().exists, 0);
    session.close().await;

    let (m1, m2, m3) = (msg(1), msg(2), msg(3));
    append(&d, &user, &[&m1, &m2, &m3]);
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
        seen_flags(&d, &user),
        vec![false, false, false],
        "the mailbox must be left unread"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_is_an_auth_error_that_never_shows_the_password() {
    let d = dovecot();
    let user = user("auth");
    let err = mailbox(&d, &user, "wrong-Pa55word!", true)
        .open()
        .await
        .err()
        .unwrap();
    assert!(err.is_auth(), "{err:?}");
    assert!(!err.is_transient());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-Pa55word!"), "{text}");
    assert!(text.contains(&d.port.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused() {
    let d = dovecot();
    let err = mailbox(&d, &user("tls"), "secret", false)
        .open()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, MailboxError::Tls { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_transient_connect_error() {
    let tls = tls_config(None).unwrap();
    // A port nothing listens on.
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
