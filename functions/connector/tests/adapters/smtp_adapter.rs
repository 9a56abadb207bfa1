//! The SMTP adapter's scenarios, written once and run against every SMTP server we test with
//! (aiosmtpd in `smtp_server.rs`, the sandbox simulator in `smtp_simulator.rs`). Both follow the
//! same test-server convention (infra/smtpd.py, `sandbox::smtp`): any user logs in with the
//! password "secret", and the fault is chosen by the user name (fail535, block571 at MAIL FROM,
//! block571auth, block571rcpt, busy452, stall at the end of DATA, stallmail, dropafterdata and
//! stallafterdata after keeping the message, toobig) or by a recipient containing "unknown".

use std::time::{Duration, Instant};

use secrecy::SecretString;

use connector::mailer::smtp::{SmtpConfig, SmtpMailer, SmtpTrust};
use connector::mailer::{Mailer, SendError};

/// One message the server accepted: its raw bytes and envelope.
pub struct Accepted {
    pub raw: Vec<u8>,
    pub mail_from: String,
    pub recipients: Vec<String>,
}

/// Reads the messages the server accepted from an authenticated user.
pub type AcceptedFrom = Box<dyn Fn(&str) -> Vec<Accepted> + Send + Sync>;

/// An SMTPS server to test against, and how to read back what it accepted.
pub struct Server {
    pub host: String,
    pub port: u16,
    /// The CA that signed the server's certificate.
    pub ca_pem: Vec<u8>,
    /// The messages accepted from an authenticated user.
    pub accepted: AcceptedFrom,
    /// How long the server leaves a `stall`, `stallmail` or `stallafterdata` user without an
    /// answer.
    pub stall: Duration,
    /// Whatever must stay alive while the server is used (an in-process server).
    pub _running: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Server {
    fn mailer(&self, user: &str, password: &str, timeout: Duration) -> SmtpMailer {
        let mut config = SmtpConfig::new(self.host.clone(), self.port, user);
        config.timeout = timeout;
        let trust = SmtpTrust::with_extra_roots(&self.ca_pem).unwrap();
        SmtpMailer::new(config, SecretString::from(password.to_owned()), trust)
    }
}

/// A user name no other test (or earlier run against the same server) uses; the server picks
/// its fault from it.
fn user(test: &str) -> String {
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

const SECOND: Duration = Duration::from_secs(1);

pub async fn a_message_arrives_byte_for_byte_with_its_envelope(s: &Server) {
    let user = user("deliver");
    let raw = message(&format!("consegna-{}", std::process::id()));
    let recipients = vec![
        "cittadino@pec.test".to_owned(),
        "ufficio@pec.test".to_owned(),
    ];
    let receipt = s
        .mailer(&user, "secret", 10 * SECOND)
        .send("protocollo@pec.test", &recipients, &raw)
        .await
        .unwrap();
    assert!(
        receipt.server_reply.starts_with("250 2.0.0 OK queued as "),
        "{}",
        receipt.server_reply
    );

    let accepted = (s.accepted)(&user);
    assert_eq!(accepted.len(), 1, "exactly one message from {user}");
    let got = &accepted[0];
    assert_eq!(
        String::from_utf8_lossy(&got.raw),
        String::from_utf8_lossy(&raw),
        "the message arrives unchanged"
    );
    assert_eq!(got.raw, raw);
    assert_eq!(got.mail_from, "protocollo@pec.test");
    assert_eq!(got.recipients, recipients);
}

pub async fn a_refused_password_is_not_retried_and_never_shown(s: &Server) {
    let password = "Zq9-wrong-app-password";
    let err = s
        .mailer(&user("wrongpw"), password, 10 * SECOND)
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
    let err = s
        .mailer(&user("fail535"), "secret", 10 * SECOND)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("pw"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::AuthRejected { .. }), "{err:?}");
    assert!(err.explain_it().contains("password"));
}

/// Aruba's `554 5.7.1 Indirizzo IP bloccato` at `step`: the provider blocks the sending IP
/// address, explained as such and never as a refused password or recipient.
fn assert_blocked_ip(err: &SendError, step: &str) {
    match err {
        SendError::SenderBlocked { reply, .. } => {
            assert!(
                reply.starts_with("554 5.7.1 Indirizzo IP bloccato"),
                "{step}: {reply}"
            )
        }
        other => panic!("5.7.1 at {step}: expected SenderBlocked, got {other:?}"),
    }
    assert!(!err.is_transient(), "{step}");
    let explained = err.explain_it();
    assert!(
        explained.contains("blocca l'indirizzo IP") && explained.contains("Indirizzo IP bloccato"),
        "{step}: {explained}"
    );
    let lower = explained.to_lowercase();
    assert!(
        !lower.contains("password") && !lower.contains("destinatario"),
        "{step}: not a password or recipient problem: {explained}"
    );
}

/// Sends one message as `user` and expects a refusal.
async fn refused(s: &Server, user: &str) -> SendError {
    s.mailer(user, "secret", 10 * SECOND)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("ip"))
        .await
        .unwrap_err()
}

pub async fn a_blocked_sending_ip_keeps_the_servers_words(s: &Server) {
    let user = user("block571");
    assert_blocked_ip(&refused(s, &user).await, "MAIL FROM");
    assert!((s.accepted)(&user).is_empty(), "sent to nobody");
}

pub async fn a_blocked_ip_at_auth_is_not_a_refused_password(s: &Server) {
    let user = user("block571auth");
    assert_blocked_ip(&refused(s, &user).await, "AUTH");
    assert!((s.accepted)(&user).is_empty(), "sent to nobody");
    // The registration check (connect, AUTH, QUIT) sees the same refusal.
    let err = s
        .mailer(&user, "secret", 10 * SECOND)
        .check()
        .await
        .unwrap_err();
    assert_blocked_ip(&err, "AUTH of the check");
}

pub async fn a_blocked_ip_at_rcpt_is_not_a_refused_recipient(s: &Server) {
    let user = user("block571rcpt");
    assert_blocked_ip(&refused(s, &user).await, "RCPT TO");
    assert!((s.accepted)(&user).is_empty(), "sent to nobody");
}

pub async fn a_busy_server_is_transient_and_the_retry_succeeds(s: &Server) {
    let user = user("busy452");
    let mailer = s.mailer(&user, "secret", 10 * SECOND);
    let rcpt = ["b@pec.test".to_owned()];
    let err = mailer
        .send("a@pec.test", &rcpt, &message("busy"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Transient { reply, .. } if reply.starts_with("452 4.3.1")),
        "{err:?}"
    );
    assert!(err.is_transient() && !err.is_ambiguous());
    mailer
        .send("a@pec.test", &rcpt, &message("busy"))
        .await
        .unwrap();
    assert_eq!((s.accepted)(&user).len(), 1);
}

/// Sends one message as `user` with the given client timeout; the error and how long it took.
async fn failed_send(
    s: &Server,
    user: &str,
    timeout: Duration,
    raw: &[u8],
) -> (SendError, Duration) {
    assert!(
        s.stall > timeout,
        "the server must stall longer than the client waits"
    );
    let started = Instant::now();
    let err = s
        .mailer(user, "secret", timeout)
        .send(
            "protocollo@pec.test",
            &["cittadino@pec.test".to_owned()],
            raw,
        )
        .await
        .unwrap_err();
    (err, started.elapsed())
}

pub async fn a_server_silent_at_mail_times_out_and_sent_nothing(s: &Server) {
    let user = user("stallmail");
    let timeout = 2 * SECOND;
    let (err, took) = failed_send(s, &user, timeout, &message("stallmail")).await;
    assert!(
        matches!(
            err,
            SendError::Timeout {
                stage: "MAIL FROM",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(!err.is_ambiguous(), "MAIL FROM is before the message");
    assert!(
        took >= timeout && took < timeout + 3 * SECOND,
        "took {took:?}"
    );
    assert!((s.accepted)(&user).is_empty(), "sent to nobody");
}

pub async fn a_server_silent_after_the_final_dot_leaves_the_send_ambiguous(s: &Server) {
    let timeout = 2 * SECOND;
    let (err, took) = failed_send(s, &user("stall"), timeout, &message("stall")).await;
    assert!(
        matches!(
            err,
            SendError::Ambiguous {
                timed_out: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_ambiguous() && err.is_transient());
    assert!(
        took >= timeout && took < timeout + 3 * SECOND,
        "took {took:?}"
    );
}

/// The fault of the issue: the provider keeps the message, then the connection drops before
/// its answer. The client cannot know that it left, and says so.
pub async fn a_message_kept_then_dropped_is_ambiguous_and_did_leave(s: &Server) {
    let user = user("dropafterdata");
    let raw = message(&format!("caduta-{}", std::process::id()));
    let (err, took) = failed_send(s, &user, 10 * SECOND, &raw).await;
    assert!(
        matches!(
            err,
            SendError::Ambiguous {
                timed_out: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_ambiguous() && err.is_transient());
    assert!(took < 5 * SECOND, "a drop is no timeout: took {took:?}");
    assert!(err.explain_it().contains("potrebbe essere partita"));
    let accepted = (s.accepted)(&user);
    assert_eq!(accepted.len(), 1, "the server kept it: the PEC left");
    assert_eq!(accepted[0].raw, raw);
    assert_eq!(accepted[0].recipients, ["cittadino@pec.test"]);
}

pub async fn a_message_kept_then_left_unanswered_is_ambiguous_and_did_leave(s: &Server) {
    let user = user("stallafterdata");
    let timeout = 2 * SECOND;
    let raw = message("stallafterdata");
    let (err, took) = failed_send(s, &user, timeout, &raw).await;
    assert!(
        matches!(
            err,
            SendError::Ambiguous {
                timed_out: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_ambiguous() && err.is_transient());
    assert!(
        took >= timeout && took < timeout + 3 * SECOND,
        "took {took:?}"
    );
    let accepted = (s.accepted)(&user);
    assert_eq!(accepted.len(), 1, "the server kept it: the PEC left");
    assert_eq!(accepted[0].raw, raw);
}

pub async fn a_message_too_large_is_reported_as_such(s: &Server) {
    let err = s
        .mailer(&user("toobig"), "secret", 10 * SECOND)
        .send("a@pec.test", &["b@pec.test".to_owned()], &message("big"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::MessageTooLarge { reply, .. } if reply.starts_with("552 5.3.4")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        !err.is_ambiguous(),
        "an answer to the final dot is never ambiguous"
    );
}

pub async fn an_unknown_recipient_is_named(s: &Server) {
    let user = user("rcpt");
    let recipients = vec![
        "cittadino@pec.test".to_owned(),
        "unknown.person@pec.test".to_owned(),
    ];
    let err = s
        .mailer(&user, "secret", 10 * SECOND)
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
    assert!((s.accepted)(&user).is_empty(), "sent to nobody");
}

pub async fn an_untrusted_certificate_is_refused(s: &Server) {
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

/// Needs no server: a port nothing listens on.
pub async fn a_closed_port_is_a_transient_connect_failure() {
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
    assert!(!err.is_ambiguous(), "nothing was sent");
}

pub async fn check_logs_in_and_sends_nothing(s: &Server) {
    let user = user("check");
    s.mailer(&user, "secret", 10 * SECOND)
        .check()
        .await
        .expect("the right password passes the check");
    assert!((s.accepted)(&user).is_empty(), "a check sends nothing");
    let err = s
        .mailer(&user, "Sbagliata-7319", 10 * SECOND)
        .check()
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::AuthRejected { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("Sbagliata-7319"),
        "never the password: {err}"
    );
    let refused = s
        .mailer(&format!("fail535-{user}"), "secret", 10 * SECOND)
        .check()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SendError::AuthRejected { .. }),
        "{refused:?}"
    );
}
