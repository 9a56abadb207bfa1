//! The connector's SMTP adapter, unchanged, against the sandbox's simulated PEC provider
//! submission server (in-process, implicit TLS with the sandbox test CA, AUTH).

use std::sync::Arc;
use std::time::Duration;

use connector::mailer::smtp::{SmtpConfig, SmtpMailer, SmtpTrust};
use connector::mailer::{Mailer, SendError};
use sandbox::smtp::{SANDBOX_CA_PEM, SmtpSimulator};
use secrecy::SecretString;

const USER: &str = "protocollo@pec.sandbox.test";

fn mailer(sim: &SmtpSimulator, user: &str, password: &str) -> SmtpMailer {
    let mut config = SmtpConfig::new("localhost", sim.addr().port(), user);
    config.timeout = Duration::from_secs(5);
    let trust = SmtpTrust::with_extra_roots(SANDBOX_CA_PEM.as_bytes()).expect("sandbox CA");
    SmtpMailer::new(config, SecretString::from(password.to_owned()), trust)
}

async fn simulator() -> SmtpSimulator {
    SmtpSimulator::start(Arc::new(|u, p| u == USER && p == "segreta"), 64 * 1024)
        .await
        .expect("smtp simulator")
}

fn message(body: &str) -> Vec<u8> {
    format!(
        "From: {USER}\r\nTo: cittadino@pec.sandbox.test\r\nSubject: Prova\r\n\
         Message-ID: <prova@pec.sandbox.test>\r\n\r\n{body}\r\n.riga con un punto\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_message_arrives_byte_for_byte_with_its_envelope() {
    let sim = simulator().await;
    let raw = message("Gentile cittadino,");
    let receipt = mailer(&sim, USER, "segreta")
        .send(USER, &["cittadino@pec.sandbox.test".to_owned()], &raw)
        .await
        .expect("sent");
    assert!(
        receipt
            .server_reply
            .starts_with("250 2.0.0 OK queued as sandbox-1"),
        "{}",
        receipt.server_reply
    );
    let got = sim.submissions();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].authenticated_user, USER);
    assert_eq!(got[0].mail_from, USER);
    assert_eq!(
        got[0].recipients,
        vec!["cittadino@pec.sandbox.test".to_owned()]
    );
    assert_eq!(got[0].raw, raw, "dot-stuffing undone, bytes unchanged");
    sim.shutdown().await;
}

#[tokio::test]
async fn refusals_are_typed_as_with_a_real_provider() {
    let sim = simulator().await;
    mailer(&sim, USER, "segreta")
        .check()
        .await
        .expect("the right password passes");
    let err = mailer(&sim, USER, "sbagliata").check().await.unwrap_err();
    assert!(matches!(err, SendError::AuthRejected { .. }), "{err:?}");
    let big = message(&"x".repeat(70 * 1024));
    let err = mailer(&sim, USER, "segreta")
        .send(USER, &["cittadino@pec.sandbox.test".to_owned()], &big)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::MessageTooLarge { .. }), "{err:?}");
    assert!(sim.submissions().is_empty(), "nothing accepted");
    // Without the sandbox CA the certificate is refused: never "accept any".
    let mut config = SmtpConfig::new("localhost", sim.addr().port(), USER);
    config.timeout = Duration::from_secs(5);
    let untrusting = SmtpMailer::new(config, SecretString::from("segreta"), SmtpTrust::webpki());
    let err = untrusting.check().await.unwrap_err();
    assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
    sim.shutdown().await;
}
