//! Every message the sandbox's PEC provider simulator issues — over its real SMTP server, with
//! and without quirks — is classified correctly by `pec-connector inspect`, with the daticert
//! fields the provider meant, and its signature is `untrusted` unless the sandbox CA is given
//! with `--trust` (then `valid`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use connector::mailer::Mailer;
use connector::mailer::smtp::{SmtpConfig, SmtpMailer, SmtpTrust};
use pec::build::{Address, MailBuilder};
use pec::{Kind, ReceiptKind};
use sandbox::PecProviderSimulator;
use sandbox::provider::{PecProvider, Quirks};
use sandbox::provider_sim::Issued;
use sandbox::smtp::SANDBOX_CA_PEM;
use secrecy::SecretString;
use serde_json::Value;

const GESTORE: &str = "Gestore Sandbox S.p.A.";
const OFFICE: &str = "protocollo@pec.sandbox.test";
const CITIZEN: &str = "mario.rossi@pec.cittadini.test";
const NOBODY: &str = "nessuno@pec.cittadini.test";
const OUTSIDE: &str = "ufficio@pec.altrogestore.test";
const PASSWORD: &str = "segreta";

fn mailer(sim: &PecProviderSimulator) -> SmtpMailer {
    let mut config = SmtpConfig::new("localhost", sim.smtp_addr().port(), OFFICE);
    config.timeout = Duration::from_secs(10);
    SmtpMailer::new(
        config,
        SecretString::from(PASSWORD.to_owned()),
        SmtpTrust::with_extra_roots(SANDBOX_CA_PEM.as_bytes()).expect("sandbox CA"),
    )
}

fn message(n: u32, to: &[&str], tipo: Option<&str>) -> MailBuilder {
    let mut m = MailBuilder::new()
        .from(Address::named("Ufficio Protocollo", OFFICE))
        .subject(&format!("Comunicazione {n}"))
        .message_id(&format!("client-{n}@connector.test"))
        .text("Si trasmette quanto in oggetto.\n")
        .attachment("atto.pdf", "application/pdf", b"%PDF-1.4 atto");
    for t in to {
        m = m.to(*t);
    }
    if let Some(tipo) = tipo {
        m = m.header("X-TipoRicevuta", tipo);
    }
    m
}

async fn send(sim: &PecProviderSimulator, raw: &[u8], to: &[&str]) {
    let rcpts: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    mailer(sim)
        .send(OFFICE, &rcpts, raw)
        .await
        .expect("the simulator takes the submission");
}

fn inspect(files: &[PathBuf], trust: Option<&Path>) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pec-connector"));
    cmd.arg("inspect").args(files);
    if let Some(ca) = trust {
        cmd.arg("--trust").arg(ca);
    }
    let out = cmd.output().expect("pec-connector runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON reports");
    v.as_array().expect("one report per file").clone()
}

fn kind_name(kind: Kind) -> String {
    kind.as_str().to_owned()
}

/// What the provider meant each message to say, by scenario.
struct Expected {
    kind: Kind,
    mailbox: &'static str,
    msgid: &'static str,
    sender: &'static str,
    consegna: Vec<&'static str>,
    errore: &'static str,
    tipo: Option<&'static str>,
    postacert: bool,
}

fn expect(
    kind: Kind,
    mailbox: &'static str,
    msgid: &'static str,
    consegna: &[&'static str],
    errore: &'static str,
) -> Expected {
    Expected {
        kind,
        mailbox,
        msgid,
        sender: OFFICE,
        consegna: consegna.to_vec(),
        errore,
        tipo: None,
        postacert: matches!(
            kind,
            Kind::Envelope | Kind::Anomaly | Kind::Receipt(ReceiptKind::AvvenutaConsegna)
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_the_simulator_issues_is_classified_with_its_daticert() {
    let sim = PecProviderSimulator::start(PecProvider::new(
        GESTORE,
        &["pec.sandbox.test", "pec.cittadini.test"],
    ))
    .await
    .expect("provider simulator");
    sim.add_user(OFFICE, PASSWORD);
    sim.add_user(CITIZEN, "altra");

    let acc = Kind::Receipt(ReceiptKind::Accettazione);
    let consegna = Kind::Receipt(ReceiptKind::AvvenutaConsegna);
    let mut expected = Vec::new();

    // 1. Default: one hosted recipient, completa.
    send(&sim, &message(1, &[CITIZEN], None).build(), &[CITIZEN]).await;
    expected.push(expect(
        acc,
        OFFICE,
        "client-1@connector.test",
        &[],
        "nessuno",
    ));
    expected.push(expect(
        Kind::Envelope,
        CITIZEN,
        "client-1@connector.test",
        &[],
        "nessuno",
    ));
    let mut c = expect(
        consegna,
        OFFICE,
        "client-1@connector.test",
        &[CITIZEN],
        "nessuno",
    );
    c.tipo = Some("completa");
    expected.push(c);

    // 2. Breve and sintetica as asked by the sender.
    for (n, tipo, postacert) in [(2, "breve", true), (3, "sintetica", false)] {
        let msgid: &'static str = if n == 2 {
            "client-2@connector.test"
        } else {
            "client-3@connector.test"
        };
        send(
            &sim,
            &message(n, &[CITIZEN], Some(tipo)).build(),
            &[CITIZEN],
        )
        .await;
        expected.push(expect(acc, OFFICE, msgid, &[], "nessuno"));
        expected.push(expect(Kind::Envelope, CITIZEN, msgid, &[], "nessuno"));
        let mut c = expect(consegna, OFFICE, msgid, &[CITIZEN], "nessuno");
        c.tipo = Some(tipo);
        c.postacert = postacert;
        expected.push(c);
    }

    // 3. Quirks: lower-case headers, errore="altro" for a mailbox that does not exist, the
    //    12-hour preavviso for a recipient at another provider.
    sim.set_quirks(Quirks {
        lowercase_headers: true,
        altro_for_unknown_mailbox: true,
        preavviso_for_external: true,
        ..Quirks::default()
    });
    let to = [CITIZEN, NOBODY, OUTSIDE];
    send(&sim, &message(4, &to, None).build(), &to).await;
    let id4 = "client-4@connector.test";
    expected.push(expect(acc, OFFICE, id4, &[], "nessuno"));
    expected.push(expect(Kind::Envelope, CITIZEN, id4, &[], "nessuno"));
    let mut c = expect(consegna, OFFICE, id4, &[CITIZEN], "nessuno");
    c.tipo = Some("completa");
    expected.push(c);
    let errore = Kind::Receipt(ReceiptKind::ErroreConsegna);
    expected.push(expect(errore, OFFICE, id4, &[NOBODY], "altro"));
    let preavviso = Kind::Receipt(ReceiptKind::PreavvisoErroreConsegna);
    expected.push(expect(preavviso, OFFICE, id4, &[OUTSIDE], "no-dest"));
    sim.set_quirks(Quirks::default());

    // 4. Refused: a Bcc header.
    let raw = message(5, &[CITIZEN], None).header("Bcc", NOBODY).build();
    send(&sim, &raw, &[CITIZEN]).await;
    let non = Kind::Receipt(ReceiptKind::NonAccettazione);
    expected.push(expect(non, OFFICE, "client-5@connector.test", &[], "altro"));

    // 5. Ordinary mail from outside: a busta di anomalia.
    let plain = MailBuilder::new()
        .from("stampa@esempio.test")
        .to(OFFICE)
        .subject("Comunicato")
        .message_id("plain-1@esempio.test")
        .text("Testo.\n")
        .build();
    sim.receive_external(OFFICE, &plain);
    let mut a = expect(
        Kind::Anomaly,
        OFFICE,
        "plain-1@esempio.test",
        &[],
        "nessuno",
    );
    a.sender = "stampa@esempio.test";
    expected.push(a);

    let issued: Vec<Issued> = sim.issued();
    assert_eq!(
        issued.iter().map(|i| i.kind).collect::<Vec<_>>(),
        expected.iter().map(|e| e.kind).collect::<Vec<_>>(),
        "the provider issued what the scenarios call for"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> = issued
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let path = dir.path().join(format!("{i:02}-{}.eml", kind_name(m.kind)));
            std::fs::write(&path, m.raw.as_slice()).expect("write");
            path
        })
        .collect();
    let ca = dir.path().join("sandbox-pec-ca.pem");
    std::fs::write(&ca, pec::signature::SigningIdentity::sandbox_ca_pem()).expect("write CA");

    let untrusted = inspect(&files, None);
    let trusted = inspect(&files, Some(&ca));
    assert_eq!(trusted.len(), expected.len());
    let mut identificativi = Vec::new();
    for (((report, plain), e), m) in trusted.iter().zip(&untrusted).zip(&expected).zip(&issued) {
        let what = format!("{} for {}: {report:#}", kind_name(e.kind), e.mailbox);
        assert_eq!(m.mailbox, e.mailbox, "{what}");
        assert_eq!(report["kind"], kind_name(e.kind), "{what}");
        assert_eq!(report["signature"], "valid", "{what}");
        assert_eq!(plain["signature"], "untrusted", "{what}");
        assert_eq!(report["has_daticert"], true, "{what}");
        assert_eq!(report["provider"], GESTORE, "{what}");
        assert_eq!(report["sender"], e.sender, "{what}");
        assert_eq!(
            report["msgid"].as_str().map(|s| s.trim_matches(['<', '>'])),
            Some(e.msgid),
            "{what}"
        );
        assert_eq!(report["errore"], e.errore, "{what}");
        let consegna: Vec<&str> = report["consegna"]
            .as_array()
            .expect("consegna")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(consegna, e.consegna, "{what}");
        if let Some(tipo) = e.tipo {
            assert_eq!(report["ricevuta_tipo"], tipo, "{what}");
        }
        assert_eq!(report["has_postacert"], e.postacert, "{what}");
        assert!(
            report["data"].as_str().is_some_and(|d| d.starts_with("20")),
            "{what}"
        );
        let id = report["identificativo"].as_str().expect("identificativo");
        assert!(
            id.starts_with("opec") && id.ends_with("@pec.sandbox.test"),
            "{what}"
        );
        assert!(
            report["warnings"].as_array().is_some_and(Vec::is_empty),
            "{what}"
        );
        identificativi.push((e.msgid, id.to_owned()));
    }
    // One identificativo per submission, shared by everything about it.
    for (msgid, id) in &identificativi {
        for (other_msgid, other) in &identificativi {
            assert_eq!(
                msgid == other_msgid,
                id == other,
                "{msgid} {id} / {other_msgid} {other}"
            );
        }
    }
    // The preavviso is dated 12 hours after the submission.
    let data = |r: &Value| {
        chrono::DateTime::parse_from_rfc3339(r["data"].as_str().expect("data")).expect("rfc3339")
    };
    let (acc4, pre4) = (&trusted[9], &trusted[13]);
    assert_eq!(pre4["kind"], "preavviso-errore-consegna");
    assert_eq!(data(pre4) - data(acc4), chrono::TimeDelta::hours(12));
    // Lower-case header names came out as such.
    let head = String::from_utf8_lossy(&issued[9].raw);
    assert!(
        head.lines().any(|l| l == "x-ricevuta: accettazione"),
        "{head}"
    );

    sim.shutdown().await;
}
