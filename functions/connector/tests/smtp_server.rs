//! The SMTP adapter against a real aiosmtpd SMTPS server on loopback (infra/smtpd.sh): implicit
//! TLS, AUTH, and the faults PEC providers produce, chosen by the test's own user name.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use connector::mailer::smtp::{SmtpConfig, SmtpMailer, SmtpTrust};
use connector::mailer::{Mailer, SendError};

struct Smtpd {
    host: String,
    port: u16,
    ca_pem: Vec<u8>,
    spool: PathBuf,
}

/// The aiosmtpd test server started by infra/test.sh; fails loudly when it is not there.
fn smtpd() -> Smtpd {
    let host = std::env::var("SMTP_HOST").unwrap_or_else(|_| "localhost".to_owned());
    let port: u16 = std::env::var("SMTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10465);
    let ca = std::env::var("SMTP_CA_PEM")
        .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
    let spool = std::env::var("SMTP_SPOOL")
        .unwrap_or_else(|_| "/tmp/pec-connector-smtpd-0/spool".to_owned());
    let ca_pem = std::fs::read(&ca).unwrap_or_else(|e| {
        panic!("SMTP test server not set up ({ca}: {e}); run `bash infra/smtpd.sh start` (infra/test.sh does) and export what it prints")
    });
    TcpStream::connect((host.as_str(), port)).unwrap_or_else(|e| {
        panic!(
            "SMTP test server not reachable at {host}:{port} ({e}); run `bash infra/smtpd.sh start`"
        )
    });
    Smtpd {
        host,
        port,
        ca_pem,
        spool: spool.into(),
    }
}

/// A user of the test's own; the server picks its fault from the name.
fn user(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{test}-{}-{}@pec.test",
        std::process::id(),
        nanos % 1_000_000_007
    )
}

fn mailer(s: &Smtpd, user: &str, password: &str, timeout: Duration) -> SmtpMailer {
    let mut config = SmtpConfig::new(s.host.clone(), s.port, user);
    config.timeout = timeout;
    let trust = SmtpTrust::with_extra_roots(&s.ca_pem).unwrap();
    SmtpMailer::new(config, SecretString::from(password.to_owned()), trust)
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Comune di Prova <protocollo@pec.test>\r\n\
         To: cittadino@pec.test\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}@pec.test>\r\n\
         X-Zendesk-Ticket: 4242\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Gentile cittadino, la sua pratica è conclusa.\r\n\
         .una riga che inizia con un punto\r\n\
         .\r\n\
         Cordiali saluti\r\n"
    )
    .into_bytes()
}

/// The messages the server accepted from `user`: raw bytes and envelope.
fn stored(s: &Smtpd, user: &str) -> Vec<(Vec<u8>, serde_json::Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&s.spool).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(key) = name.strip_suffix(".env.json") else {
            continue;
        };
        let env: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if env["auth_user"] == user {
            let raw = std::fs::read(s.spool.join(format!("{key}.eml"))).unwrap();
            found.push((raw, env));
        }
    }
    found
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_message_arrives_byte_for_byte_with_its_envelope() {
    let s = smtpd();
    let user = user("deliver");
    let raw = message(&format!("consegna-{}", std::process::id()));
    let recipients = vec![
        "cittadino@pec.test".to_owned(),
        "ufficio@pec.test".to_owned(),
    ];
    let receipt = mailer(&s, &user, "secret", 10 * SECOND)
        .send("protocollo@pec.test", &recipients, &raw)
        .await
        .unwrap();
    assert!(
        receipt.server_reply.starts_with("250 2.0.0 OK queued as "),
        "{}",
        receipt.server_reply
    );

    let stored = stored(&s, &user);
    assert_eq!(stored.len(), 1, "exactly one message from {user}");
    let (bytes, env) = &stored[0];
    assert_eq!(
        String::from_utf8_lossy(bytes),
        String::from_utf8_lossy(&raw),
        "the message arrives unchanged"
    );
    assert_eq!(bytes, &raw);
    assert_eq!(env["mail_from"], "protocollo@pec.test");
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["cittadino@pec.test", "ufficio@pec.test"])
    );
}

#[tokio::test]
async fn a_refused_password_is_not_retried_and_never_shown() {
    let s = smtpd();
    let password = "Zq9-wrong-app-password";
    let err = mailer(&s, &user("wrongpw"), password, 10 * SECOND)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("pw"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::AuthRejected { reply, .. } if reply.starts_with("535")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let (display, debug) = (err.to_string(), format!("{err:?}"));
    assert!(!display.contains(password) && !debug.contains(password));
    assert!(display.contains("w***@pec.test"), "masked user: {display}");
    assert!(
        !display.contains("wrongpw-"),
        "the full user is masked: {display}"
    );

    // The server's 535 fault mode: even the right password is refused.
    let err = mailer(&s, &user("fail535"), "secret", 10 * SECOND)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("pw"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::AuthRejected { .. }), "{err:?}");
    assert!(err.explain_it().contains("password"));
}

#[tokio::test]
async fn a_blocked_sending_ip_keeps_the_servers_words() {
    let s = smtpd();
    let err = mailer(&s, &user("block571"), "secret", 10 * SECOND)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("ip"))
        .await
        .unwrap_err();
    match &err {
        SendError::SenderBlocked { reply, .. } => {
            assert!(
                reply.starts_with("554 5.7.1 Indirizzo IP bloccato"),
                "{reply}"
            )
        }
        other => panic!("expected SenderBlocked, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(err.explain_it().contains("Indirizzo IP bloccato"));
}

#[tokio::test]
async fn a_busy_server_is_transient_and_the_retry_succeeds() {
    let s = smtpd();
    let user = user("busy452");
    let mailer = mailer(&s, &user, "secret", 10 * SECOND);
    let rcpt = ["b@pec.test".to_owned()];
    let err = mailer
        .send("a@pec.test", &rcpt, &message("busy"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Transient { reply, .. } if reply.starts_with("452 4.3.1")),
        "{err:?}"
    );
    assert!(err.is_transient());
    mailer
        .send("a@pec.test", &rcpt, &message("busy"))
        .await
        .unwrap();
    assert_eq!(stored(&s, &user).len(), 1);
}

#[tokio::test]
async fn a_stalled_server_times_out_within_the_limit() {
    let s = smtpd();
    let timeout = 2 * SECOND;
    let started = Instant::now();
    let err = mailer(&s, &user("stall"), "secret", timeout)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("stall"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            SendError::Timeout {
                stage: "the end of DATA",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        took >= timeout && took < timeout + 3 * SECOND,
        "took {took:?}"
    );
}

#[tokio::test]
async fn a_message_too_large_is_reported_as_such() {
    let s = smtpd();
    let err = mailer(&s, &user("toobig"), "secret", 10 * SECOND)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("big"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::MessageTooLarge { reply, .. } if reply.starts_with("552 5.3.4")),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_unknown_recipient_is_named() {
    let s = smtpd();
    let user = user("rcpt");
    let recipients = vec![
        "cittadino@pec.test".to_owned(),
        "unknown.person@pec.test".to_owned(),
    ];
    let err = mailer(&s, &user, "secret", 10 * SECOND)
        .send("a@pec.test", &recipients, &message("rcpt"))
        .await
        .unwrap_err();
    match &err {
        SendError::RecipientRejected {
            recipient, reply, ..
        } => {
            assert_eq!(recipient, "unknown.person@pec.test");
            assert!(reply.starts_with("550 5.1.1"), "{reply}");
        }
        other => panic!("expected RecipientRejected, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(stored(&s, &user).is_empty(), "sent to nobody");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let s = smtpd();
    let mut config = SmtpConfig::new(s.host.clone(), s.port, user("tls"));
    config.timeout = 10 * SECOND;
    let mailer = SmtpMailer::new(config, SecretString::from("secret"), SmtpTrust::webpki());
    let err = mailer
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("tls"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connect_failure() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = SmtpConfig::new("127.0.0.1", port, "a@pec.test");
    config.timeout = 5 * SECOND;
    let mailer = SmtpMailer::new(config, SecretString::from("secret"), SmtpTrust::webpki());
    let err = mailer
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("closed"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn check_logs_in_and_sends_nothing() {
    let s = smtpd();
    let user = user("check");
    mailer(&s, &user, "secret", 10 * SECOND)
        .check()
        .await
        .expect("the right password passes the check");
    assert!(stored(&s, &user).is_empty(), "a check sends nothing");
    let err = mailer(&s, &user, "Sbagliata-7319", 10 * SECOND)
        .check()
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::AuthRejected { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("Sbagliata-7319"),
        "never the password: {err}"
    );
    let refused = mailer(&s, &format!("fail535-{user}"), "secret", 10 * SECOND)
        .check()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SendError::AuthRejected { .. }),
        "{refused:?}"
    );
}
