//! `pec-connector demo --once`: the whole loop offline, as the README's run command, in under
//! 30 seconds, exit status 0; and the ticket it leaves behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pec::{Kind, ReceiptKind};
use pec_connector::demo::{self, DemoArgs};

#[test]
fn demo_once_completes_the_loop_in_under_30_seconds() {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_pec-connector"))
        .args(["demo", "--once"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pec-connector runs");
    let out = child.wait_with_output().expect("the demo ends");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "took {elapsed:?}\n{stdout}"
    );
    println!("demo --once: {:.2} s\n{stdout}", elapsed.as_secs_f64());
    for expected in [
        "1. Account protocollo@pec.sandbox.test registered",
        "Public reply by PEC Connector [protocollo@pec.sandbox.test]",
        "2. Mario Rossi sent a PEC",
        "the accettazione (identificativo opec",
        "3. The connector polled the box (1 ticket created): ticket #",
        "4. An agent replied publicly",
        "The reply left as PEC over SMTP: From protocollo@pec.sandbox.test To mario.rossi@pec.cittadini.test",
        "the avvenuta consegna (identificativo opec",
        "Done: the whole loop took",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    assert!(!stdout.contains("Still running"), "--once does not wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_ticket_carries_the_request_the_reply_and_both_receipts() {
    let mut lines = Vec::new();
    let report = demo::run(
        &DemoArgs {
            once: true,
            ..DemoArgs::default()
        },
        &mut |l: &str| lines.push(l.to_owned()),
        async {},
    )
    .await
    .expect("the demo loop completes");
    let text = lines.join("\n");
    let bodies: Vec<&str> = report.comments.iter().map(|(_, b)| b.as_str()).collect();
    // The citizen's request, public; the agent's reply, public; then private notes.
    assert!(report.comments[0].0, "{text}");
    assert!(bodies[0].contains("delibera n. 42/2026"), "{bodies:?}");
    assert!(
        report
            .comments
            .iter()
            .any(|(public, b)| *public && b.contains("in allegato trova la delibera")),
        "{bodies:?}"
    );
    let notes: Vec<&str> = report
        .comments
        .iter()
        .filter(|(public, _)| !public)
        .map(|(_, b)| b.as_str())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("PEC inviata a mario.rossi@pec.cittadini.test")),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("accettazione")),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("consegnata a mario.rossi@pec.cittadini.test")),
        "{notes:#?}"
    );
    // The office's box: the busta with the request, then the receipts of the reply; the
    // citizen's: the receipts of the request, then the busta with the reply.
    assert_eq!(
        report.office_box,
        vec![
            Kind::Envelope,
            Kind::Receipt(ReceiptKind::Accettazione),
            Kind::Receipt(ReceiptKind::AvvenutaConsegna),
        ]
    );
    assert_eq!(
        report.citizen_box,
        vec![
            Kind::Receipt(ReceiptKind::Accettazione),
            Kind::Receipt(ReceiptKind::AvvenutaConsegna),
            Kind::Envelope,
        ]
    );
    assert!(report.elapsed < Duration::from_secs(30), "{text}");
}
