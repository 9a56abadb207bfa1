//! The SMTP adapter, unchanged, against the sandbox's simulated PEC provider submission server
//! (in-process, implicit TLS with the sandbox test CA, AUTH, faults by name): the same scenarios
//! as against aiosmtpd (`smtp_adapter.rs`).

use crate::smtp_adapter;

use std::sync::Arc;
use std::time::Duration;

use connector::mailer::smtp::{SmtpConfig, SmtpMailer, SmtpTrust};
use connector::mailer::{Mailer, SendError};
use sandbox::smtp::{SANDBOX_CA_PEM, SmtpOptions, SmtpSimulator};
use secrecy::SecretString;
use smtp_adapter::{self as scenario, Accepted, Server};

const MAX_SIZE: usize = 64 * 1024;

/// A simulator of the test's own, with infra/smtpd.py's conventions: any user logs in with
/// "secret", faults by name on.
async fn start() -> Arc<SmtpSimulator> {
    let options = SmtpOptions {
        faults_by_name: true,
        stall: Duration::from_secs(30),
        ..SmtpOptions::new(MAX_SIZE)
    };
    let sim = SmtpSimulator::start_with_options(Arc::new(|_, p| p == "secret"), options)
        .await
        .expect("smtp simulator");
    Arc::new(sim)
}

async fn simulator() -> Server {
    let sim = start().await;
    let kept = sim.clone();
    Server {
        host: "localhost".to_owned(),
        port: sim.addr().port(),
        ca_pem: SANDBOX_CA_PEM.as_bytes().to_vec(),
        accepted: Box::new(move |user| {
            kept.submissions()
                .into_iter()
                .filter(|s| s.authenticated_user == user)
                .map(|s| Accepted {
                    raw: s.raw,
                    mail_from: s.mail_from,
                    recipients: s.recipients,
                })
                .collect()
        }),
        stall: Duration::from_secs(30),
        _running: Some(Box::new(sim)),
    }
}

#[tokio::test]
async fn a_message_arrives_byte_for_byte_with_its_envelope() {
    scenario::a_message_arrives_byte_for_byte_with_its_envelope(&simulator().await).await;
}

#[tokio::test]
async fn a_refused_password_is_not_retried_and_never_shown() {
    scenario::a_refused_password_is_not_retried_and_never_shown(&simulator().await).await;
}

#[tokio::test]
async fn a_blocked_sending_ip_keeps_the_servers_words() {
    scenario::a_blocked_sending_ip_keeps_the_servers_words(&simulator().await).await;
}

#[tokio::test]
async fn a_blocked_ip_at_auth_is_not_a_refused_password() {
    scenario::a_blocked_ip_at_auth_is_not_a_refused_password(&simulator().await).await;
}

#[tokio::test]
async fn a_blocked_ip_at_rcpt_is_not_a_refused_recipient() {
    scenario::a_blocked_ip_at_rcpt_is_not_a_refused_recipient(&simulator().await).await;
}

#[tokio::test]
async fn a_busy_server_is_transient_and_the_retry_succeeds() {
    scenario::a_busy_server_is_transient_and_the_retry_succeeds(&simulator().await).await;
}

#[tokio::test]
async fn a_server_silent_at_mail_times_out_and_sent_nothing() {
    scenario::a_server_silent_at_mail_times_out_and_sent_nothing(&simulator().await).await;
}

#[tokio::test]
async fn a_server_silent_after_the_final_dot_leaves_the_send_ambiguous() {
    scenario::a_server_silent_after_the_final_dot_leaves_the_send_ambiguous(&simulator().await)
        .await;
}

#[tokio::test]
async fn a_message_kept_then_dropped_is_ambiguous_and_did_leave() {
    scenario::a_message_kept_then_dropped_is_ambiguous_and_did_leave(&simulator().await).await;
}

#[tokio::test]
async fn a_message_kept_then_left_unanswered_is_ambiguous_and_did_leave() {
    scenario::a_message_kept_then_left_unanswered_is_ambiguous_and_did_leave(&simulator().await)
        .await;
}

#[tokio::test]
async fn a_message_too_large_is_reported_as_such() {
    scenario::a_message_too_large_is_reported_as_such(&simulator().await).await;
}

#[tokio::test]
async fn an_unknown_recipient_is_named() {
    scenario::an_unknown_recipient_is_named(&simulator().await).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    scenario::an_untrusted_certificate_is_refused(&simulator().await).await;
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connect_failure() {
    scenario::a_closed_port_is_a_transient_connect_failure().await;
}

#[tokio::test]
async fn check_logs_in_and_sends_nothing() {
    scenario::check_logs_in_and_sends_nothing(&simulator().await).await;
}

/// The simulator's own size limit (the one the PEC provider simulator relies on), not the
/// `toobig` fault: a message over it is refused and nothing is kept.
#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_and_not_kept() {
    let sim = start().await;
    let mut config = SmtpConfig::new("localhost", sim.addr().port(), "protocollo@pec.test");
    config.timeout = Duration::from_secs(5);
    let trust = SmtpTrust::with_extra_roots(SANDBOX_CA_PEM.as_bytes()).expect("sandbox CA");
    let mailer = SmtpMailer::new(config, SecretString::from("secret"), trust);
    let big = format!(
        "From: protocollo@pec.test\r\nTo: b@pec.test\r\nSubject: grande\r\n\r\n{}\r\n",
        "x".repeat(MAX_SIZE + 1)
    );
    let err = mailer
        .send(
            "protocollo@pec.test",
            &["b@pec.test".to_owned()],
            big.as_bytes(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::MessageTooLarge { reply, .. } if reply.starts_with("552 5.3.4")),
        "{err:?}"
    );
    assert!(sim.submissions().is_empty(), "nothing accepted");
}
