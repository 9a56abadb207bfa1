//! The IMAP adapter, unchanged, against the sandbox's simulated PEC provider IMAP server
//! (in-process, implicit TLS with the sandbox test CA): the same scenarios as against Dovecot
//! (`imap_adapter.rs`).

use crate::imap_adapter;

use imap_adapter::{self as scenario, Server};
use sandbox::imap::ImapSimulator;
use sandbox::mailstore::MailStore;
use sandbox::smtp::SANDBOX_CA_PEM;

/// A simulator of the test's own; every test user gets the password "segreta".
async fn simulator() -> Server {
    let store = MailStore::new();
    let sim = ImapSimulator::start(store.clone())
        .await
        .expect("imap simulator");
    let port = sim.addr().port();
    Server {
        host: "localhost".to_owned(),
        port,
        ca_pem: SANDBOX_CA_PEM.as_bytes().to_vec(),
        new_user: Box::new(move |user| {
            store.add_user(user, "segreta");
            "segreta".to_owned()
        }),
        _running: Some(Box::new(sim)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_and_fetches_new_messages_in_uid_order_without_marking_them_seen() {
    scenario::lists_and_fetches_new_messages_in_uid_order_without_marking_them_seen(
        &simulator().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_is_an_auth_error_that_never_shows_the_password() {
    scenario::a_refused_password_is_an_auth_error_that_never_shows_the_password(&simulator().await)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused() {
    scenario::an_untrusted_certificate_is_refused(&simulator().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_transient_connect_error() {
    scenario::an_unreachable_server_is_a_transient_connect_error().await;
}
