//! The IMAP adapter against a real Dovecot IMAPS server on loopback (infra/dovecot.sh). The
//! scenarios are shared with `imap_simulator.rs` (`imap_adapter.rs`).

use crate::imap_adapter;

use std::net::TcpStream;

use imap_adapter::{self as scenario, Server};

/// The Dovecot test server started by infra/test.sh; fails loudly when it is not there. Any user
/// name logs in with "secret".
fn dovecot() -> Server {
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
    Server {
        host,
        port,
        ca_pem,
        new_user: Box::new(|_user| "secret".to_owned()),
        _running: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_and_fetches_new_messages_in_uid_order_without_marking_them_seen() {
    scenario::lists_and_fetches_new_messages_in_uid_order_without_marking_them_seen(&dovecot())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_is_an_auth_error_that_never_shows_the_password() {
    scenario::a_refused_password_is_an_auth_error_that_never_shows_the_password(&dovecot()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused() {
    scenario::an_untrusted_certificate_is_refused(&dovecot()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_transient_connect_error() {
    scenario::an_unreachable_server_is_a_transient_connect_error().await;
}
