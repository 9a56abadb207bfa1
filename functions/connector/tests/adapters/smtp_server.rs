//! The SMTP adapter against a real aiosmtpd SMTPS server on loopback (infra/smtpd.sh): implicit
//! TLS, AUTH, and the faults PEC providers produce, chosen by the test's own user name. The
//! scenarios are shared with `smtp_simulator.rs` (`smtp_adapter.rs`).

use crate::smtp_adapter;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smtp_adapter::{self as scenario, Accepted, Server};

/// The aiosmtpd test server started by infra/test.sh; fails loudly when it is not there.
fn smtpd() -> Server {
    let host = std::env::var("SMTP_HOST").unwrap_or_else(|_| "localhost".to_owned());
    let port: u16 = std::env::var("SMTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10465);
    let ca = std::env::var("SMTP_CA_PEM")
        .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
    let spool: PathBuf = std::env::var("SMTP_SPOOL")
        .unwrap_or_else(|_| "/tmp/pec-connector-smtpd-0/spool".to_owned())
        .into();
    let ca_pem = std::fs::read(&ca).unwrap_or_else(|e| {
        panic!("SMTP test server not set up ({ca}: {e}); run `bash infra/smtpd.sh start` (infra/test.sh does) and export what it prints")
    });
    TcpStream::connect((host.as_str(), port)).unwrap_or_else(|e| {
        panic!(
            "SMTP test server not reachable at {host}:{port} ({e}); run `bash infra/smtpd.sh start`"
        )
    });
    Server {
        host,
        port,
        ca_pem,
        accepted: Box::new(move |user| spooled(&spool, user)),
        // infra/smtpd.py's default --stall.
        stall: Duration::from_secs(30),
        _running: None,
    }
}

/// The messages in the spool from `user`: `<id>.eml` with `<id>.env.json` beside it.
fn spooled(spool: &Path, user: &str) -> Vec<Accepted> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(spool).unwrap() {
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
            found.push(Accepted {
                raw: std::fs::read(spool.join(format!("{key}.eml"))).unwrap(),
                mail_from: env["mail_from"].as_str().unwrap().to_owned(),
                recipients: serde_json::from_value(env["rcpt_tos"].clone()).unwrap(),
            });
        }
    }
    found
}

#[tokio::test]
async fn a_message_arrives_byte_for_byte_with_its_envelope() {
    scenario::a_message_arrives_byte_for_byte_with_its_envelope(&smtpd()).await;
}

#[tokio::test]
async fn a_refused_password_is_not_retried_and_never_shown() {
    scenario::a_refused_password_is_not_retried_and_never_shown(&smtpd()).await;
}

#[tokio::test]
async fn a_blocked_sending_ip_keeps_the_servers_words() {
    scenario::a_blocked_sending_ip_keeps_the_servers_words(&smtpd()).await;
}

#[tokio::test]
async fn a_blocked_ip_at_auth_is_not_a_refused_password() {
    scenario::a_blocked_ip_at_auth_is_not_a_refused_password(&smtpd()).await;
}

#[tokio::test]
async fn a_blocked_ip_at_rcpt_is_not_a_refused_recipient() {
    scenario::a_blocked_ip_at_rcpt_is_not_a_refused_recipient(&smtpd()).await;
}

#[tokio::test]
async fn a_busy_server_is_transient_and_the_retry_succeeds() {
    scenario::a_busy_server_is_transient_and_the_retry_succeeds(&smtpd()).await;
}

#[tokio::test]
async fn a_server_silent_at_mail_times_out_and_sent_nothing() {
    scenario::a_server_silent_at_mail_times_out_and_sent_nothing(&smtpd()).await;
}

#[tokio::test]
async fn a_server_silent_after_the_final_dot_leaves_the_send_ambiguous() {
    scenario::a_server_silent_after_the_final_dot_leaves_the_send_ambiguous(&smtpd()).await;
}

#[tokio::test]
async fn a_message_kept_then_dropped_is_ambiguous_and_did_leave() {
    scenario::a_message_kept_then_dropped_is_ambiguous_and_did_leave(&smtpd()).await;
}

#[tokio::test]
async fn a_message_kept_then_left_unanswered_is_ambiguous_and_did_leave() {
    scenario::a_message_kept_then_left_unanswered_is_ambiguous_and_did_leave(&smtpd()).await;
}

#[tokio::test]
async fn a_message_too_large_is_reported_as_such() {
    scenario::a_message_too_large_is_reported_as_such(&smtpd()).await;
}

#[tokio::test]
async fn an_unknown_recipient_is_named() {
    scenario::an_unknown_recipient_is_named(&smtpd()).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    scenario::an_untrusted_certificate_is_refused(&smtpd()).await;
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connect_failure() {
    scenario::a_closed_port_is_a_transient_connect_failure().await;
}

#[tokio::test]
async fn check_logs_in_and_sends_nothing() {
    scenario::check_logs_in_and_sends_nothing(&smtpd()).await;
}
