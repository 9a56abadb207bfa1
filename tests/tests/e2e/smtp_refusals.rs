//! Acceptance tests of SMTP refusals explained at every step (issue #13): the provider's
//! `554 5.7.1 Indirizzo IP bloccato` (Aruba's answer to a client IP it does not accept) at AUTH,
//! at MAIL FROM and at RCPT TO is the sending IP address being blocked, never a refused password
//! or an unknown recipient. Through the public entry points: Zendesk's webhook on the api router
//! (the note on the ticket) and the admin API's registration (its login check). The SMTP test
//! server (`infra/smtpd.py`) picks the step from the login: `block571auth`, `block571`,
//! `block571rcpt`. Needs Dovecot, the SMTP test server and, for registration, moto.

use e2e::admin_env::AdminEnv;
use e2e::outbound_env::{Answer, OutboundEnv};

/// The egress address `test_options()` gives the connector.
const EGRESS_IP: &str = "203.0.113.7";

/// One template send on a fresh ticket of an account whose SMTP login is `fault`: the webhook's
/// answer, the ticket's internal notes (HTML apostrophes read back as `'`) and what the SMTP
/// server accepted from the account.
async fn send_as(fault: &str) -> (Answer, Vec<String>, usize) {
    let o = OutboundEnv::new(fault).await;
    let ticket = o.env.agent_ticket("IP bloccato").await.get();
    let answer = o
        .deliver(
            &o.template_body(ticket, "Oggetto", "Testo"),
            &format!("inv-{fault}"),
        )
        .await;
    let notes = o
        .notes(ticket)
        .into_iter()
        .map(|n| n.replace("&#39;", "'"))
        .collect();
    assert_eq!(
        o.retry().await,
        Default::default(),
        "{fault}: a blocked IP is not retried"
    );
    (answer, notes, o.delivered().len())
}

/// The webhook failed for good with the server's 5.7.1, and the one note says in Italian that
/// the provider blocks the sending IP address, with the address to allow-list, and nothing
/// about the password or the recipient.
fn assert_blocked_ip(step: &str, answer: &Answer, notes: &[String], delivered: usize) {
    assert_eq!(answer.status, 200, "{step}: {answer:?}");
    assert_eq!(answer.outcome(), "failed", "{step}: {answer:?}");
    let reason = answer.body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("refuses the sending IP address")
            && reason.contains("554 5.7.1 Indirizzo IP bloccato"),
        "{step}: {reason}"
    );
    assert_eq!(notes.len(), 1, "{step}: {notes:#?}");
    let note = &notes[0];
    assert!(note.contains("PEC non inviata a"), "{step}: {note}");
    assert!(
        note.contains("Il gestore PEC blocca l'indirizzo IP da cui il connettore invia"),
        "{step}: {note}"
    );
    assert!(
        note.contains("554 5.7.1 Indirizzo IP bloccato"),
        "{step}: the server's words: {note}"
    );
    assert!(
        note.contains(&format!(
            "L'indirizzo IP da autorizzare presso il gestore è {EGRESS_IP}"
        )),
        "{step}: the egress address to allow-list: {note}"
    );
    assert!(
        !note.contains("password") && !note.contains("rifiutato il destinatario"),
        "{step}: not a password or recipient problem: {note}"
    );
    assert_eq!(delivered, 0, "{step}: nothing reached the SMTP spool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_ip_at_auth_is_noted_as_the_ip_not_the_password() {
    let (answer, notes, delivered) = send_as("block571auth").await;
    assert_blocked_ip("AUTH", &answer, &notes, delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_ip_at_mail_from_is_noted_as_the_ip() {
    let (answer, notes, delivered) = send_as("block571").await;
    assert_blocked_ip("MAIL FROM", &answer, &notes, delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_ip_at_rcpt_is_noted_as_the_ip_not_the_recipient() {
    let (answer, notes, delivered) = send_as("block571rcpt").await;
    assert_blocked_ip("RCPT TO", &answer, &notes, delivered);
}

/// Registration's SMTP login check (connect, AUTH, QUIT) meets the block at AUTH: refused on
/// the SMTP field with the allow-listing advice, not as a wrong password; nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_a_blocked_ip_at_auth_on_the_smtp_field() {
    let env = AdminEnv::new().await;
    let address = env.new_address("block571auth");
    let a = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(a.body["field"], "smtp_host", "{a:?}");
    let error = a.error();
    assert!(
        error.contains("refuses the sending IP address")
            && error.contains("554 5.7.1 Indirizzo IP bloccato")
            && error.contains("StaticEgressIp=true")
            && error.contains("EgressIp"),
        "{error}"
    );
    assert!(
        !error.contains("wrong or expired") && !error.contains("app password"),
        "not a password problem: {error}"
    );
    let accounts = env.admin("GET", "/accounts", None).await;
    assert_eq!(accounts.status, 200, "{accounts:?}");
    assert!(
        !accounts.body.to_string().contains(&address),
        "nothing registered: {accounts:?}"
    );
}
