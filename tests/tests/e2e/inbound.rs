//! Acceptance tests of the Inbound issue: PEC messages APPENDed to a real Dovecot mailbox, polled
//! by `connector::inbound::Inbound` through the real adapters, read back from the Zendesk
//! simulator. Needs Dovecot (`bash infra/dovecot.sh start`; infra/test.sh does it).
//!
//! Run: `cargo test -p e2e --test e2e inbound:: -- --nocapture` (the performance tests print figures).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use connector::domain::{DeliveryState, PecAddress, ReceiptMode, Uid, UidValidity};
use connector::inbound::{PollError, PollOutcome, Step, StepHook};
use e2e::inbound_env::mail::{self, CITIZEN, CITIZEN_NAME, Facts, GESTORE};
use e2e::inbound_env::{Calls, EnvOptions, InboundEnv, PrivateDovecot, TicketView};
use pec::{ParseError, PecMessage, ReceiptKind};

/// `pec_connector_<address without @>`.
/// A poll that read the mailbox to its end and did nothing else.
fn done() -> PollOutcome {
    PollOutcome {
        caught_up: true,
        ..PollOutcome::default()
    }
}

fn account_tag(env: &InboundEnv) -> String {
    format!("pec_connector_{}", env.user.replace('@', ""))
}

fn tags(t: &TicketView) -> BTreeSet<&str> {
    t.tags.iter().map(String::as_str).collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

async fn uid_validity(env: &InboundEnv) -> u32 {
    env.cursor()
        .await
        .expect("the account is activated")
        .uid_validity
        .get()
}

/// The only ticket whose external id is the marker of `uid`.
fn ticket_of(env: &InboundEnv, v: u32, uid: u32) -> TicketView {
    let found = env.tickets_with_external_id(&env.marker(v, uid));
    assert_eq!(found.len(), 1, "tickets for UID {uid}: {found:#?}");
    found.into_iter().next().unwrap()
}

// ----- 1. every kind of message ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_every_kind_become_the_tickets_comments_notes_attachments_and_tags_described() {
    let env = InboundEnv::new("kinds").await;
    env.activate().await;
    let me = env.user.clone();
    let v = uid_validity(&env).await;
    let acct = account_tag(&env);

    // What arrives unprompted: a certified message, an anomaly, ordinary mail, something
    // unreadable, and a receipt for nothing we sent.
    let citizen = mail::citizen(1, &me).build();
    let envelope = mail::envelope(&citizen, "opec-in-1@pec.sandbox.test");
    let anomaly = mail::anomaly(&mail::plain(2, &me), "opec-anomalia-2@pec.sandbox.test");
    let plain = mail::plain(3, &me);
    let unreadable = mail::unreadable(4);
    assert!(
        matches!(PecMessage::parse(&unreadable), Err(ParseError::Mime(_))),
        "the unreadable fixture must be refused by the parser"
    );
    let stray_sent = mail::sent(&me, "never-recorded@connector.test", &[CITIZEN]);
    let stray = mail::receipt(
        ReceiptKind::Accettazione,
        &stray_sent,
        Facts::id("opec-stray-5@pec.sandbox.test"),
    );
    env.append(vec![
        envelope.clone(),
        anomaly.clone(),
        plain.clone(),
        unreadable.clone(),
        stray.clone(),
    ])
    .await;
    let outcome = env.poll().await.expect("poll");
    assert_eq!(
        outcome,
        PollOutcome {
            tickets_created: 5,
            unreadable: 1,
            ..done()
        }
    );
    assert_eq!(env.tickets().len(), 5);

    // The envelope: the real sender, the subject without prefix, the HTML body, the original's
    // attachment and the signed message, the PEC facts in an internal note.
    let t = ticket_of(&env, v, 1);
    assert_eq!(t.subject, "Richiesta n. 1 di accesso agli atti");
    assert_eq!(t.requester_email, CITIZEN);
    assert_eq!(t.requester_name, CITIZEN_NAME);
    assert_eq!(
        tags(&t),
        set(&[
            "pec_connector",
            &acct,
            "pec_messaggio",
            "pec_firma_non_attendibile"
        ])
    );
    assert_eq!(t.comments.len(), 2, "{t:#?}");
    let first = &t.comments[0];
    assert!(first.public);
    assert!(
        first
            .html
            .contains("chiedo <b>l'accesso agli atti</b> (richiesta 1)"),
        "the HTML body: {}",
        first.html
    );
    assert_eq!(first.file_names(), ["domanda-1.pdf", "messaggio-pec.eml"]);
    assert_eq!(first.file("domanda-1.pdf").data, b"%PDF-1.4 domanda 1");
    assert_eq!(first.file("domanda-1.pdf").content_type, "application/pdf");
    let evidence = first.file("messaggio-pec.eml");
    assert_eq!(
        evidence.data, envelope,
        "the signed message, byte for byte as delivered"
    );
    assert_eq!(evidence.content_type, "message/rfc822");
    let note = &t.comments[1];
    assert!(!note.public);
    for fact in [
        "PEC ricevuta (busta di trasporto)",
        "Mittente: mario.rossi@pec.cittadino.test",
        "Identificativo PEC: opec-in-1@pec.sandbox.test",
        "Data di certificazione: 27/11/2026 10:15:00 (+0100)",
        &format!("Gestore: {GESTORE}"),
        "Firma: integra ma non attendibile",
        &env.marker(v, 1),
    ] {
        assert!(
            note.html.contains(fact),
            "{fact:?} not in the note {}",
            note.html
        );
    }

    // The anomaly: the sender of the ordinary mail inside, the busta kept as evidence.
    let t = ticket_of(&env, v, 2);
    assert_eq!(t.subject, "Comunicato 2");
    assert_eq!(t.requester_email, "stampa@esempio.test");
    assert_eq!(
        tags(&t),
        set(&[
            "pec_connector",
            &acct,
            "pec_anomalia",
            "pec_firma_non_attendibile"
        ])
    );
    assert!(t.comments[0].public);
    assert!(t.comments[0].html.contains("Testo del comunicato 2"));
    assert_eq!(t.comments[0].file_names(), ["busta-anomalia.eml"]);
    assert_eq!(t.comments[0].files[0].data, anomaly);
    assert!(t.comments[1].html.contains("busta di anomalia"));
    assert!(!t.comments[1].public);

    // Plain mail: no signature tag, the message kept as it came.
    let t = ticket_of(&env, v, 3);
    assert_eq!(t.subject, "Comunicato 3");
    assert_eq!(t.requester_email, "stampa@esempio.test");
    assert_eq!(t.requester_name, "Ufficio Stampa");
    assert_eq!(
        tags(&t),
        set(&["pec_connector", &acct, "pec_posta_ordinaria"])
    );
    assert!(t.comments[0].html.contains("Testo del comunicato 3"));
    assert_eq!(t.comments[0].file_names(), ["messaggio-originale.eml"]);
    assert_eq!(t.comments[0].files[0].data, plain);
    assert!(t.comments[1].html.contains("posta ordinaria"));

    // The unreadable message: still a ticket, the raw bytes attached, the reason in a note.
    let t = ticket_of(&env, v, 4);
    assert_eq!(t.subject, "Messaggio PEC non leggibile");
    assert_eq!(t.requester_email, me);
    // Not the account's tag: a public reply on it must not leave as PEC to the office's box.
    assert_eq!(tags(&t), set(&["pec_connector", "pec_non_leggibile"]));
    assert!(t.comments[0].public);
    assert_eq!(t.comments[0].file_names(), ["messaggio-non-leggibile.eml"]);
    assert_eq!(t.comments[0].files[0].data, unreadable);
    assert!(!t.comments[1].public);
    assert!(
        t.comments[1].html.contains("bad MIME structure"),
        "{}",
        t.comments[1].html
    );

    // The receipt that matches nothing we sent: a ticket whose first comment is a note.
    let t = ticket_of(&env, v, 5);
    assert_eq!(t.comments.len(), 1, "{t:#?}");
    assert!(
        !t.comments[0].public,
        "the first comment is an internal note"
    );
    assert!(t.comments[0].html.contains("Ricevuta di accettazione"));
    assert!(
        t.comments[0]
            .html
            .contains("Non è stato trovato il messaggio inviato")
    );
    assert_eq!(t.comments[0].file_names(), ["accettazione.eml"]);
    assert_eq!(t.comments[0].files[0].data, stray);
    assert_eq!(t.requester_email, "posta-certificata@pec.sandbox.test");
    // Not the account's tag: a public reply must not leave as PEC to the provider's robot.
    assert!(
        t.has_tag("pec_accettata") && !t.has_tag(&acct),
        "{:?}",
        t.tags
    );

    // We answer the citizen by PEC from the envelope's ticket; the provider's receipts follow.
    let case = ticket_of(&env, v, 1).id;
    let other = "ufficio@pec.altro.test";
    let sent = mail::sent(&me, "risposta-1@connector.test", &[CITIZEN, other]);
    env.record_sent(
        "risposta-1@connector.test",
        connector::domain::TicketId::new(case).unwrap(),
        &[CITIZEN, other],
    )
    .await;
    let id = "opec-out-1@pec.sandbox.test";
    env.append(vec![
        mail::receipt(ReceiptKind::Accettazione, &sent, Facts::id(id)),
        mail::receipt(
            ReceiptKind::AvvenutaConsegna,
            &sent,
            Facts::id(id).to(CITIZEN),
        ),
        mail::receipt(
            ReceiptKind::ErroreConsegna,
            &sent,
            Facts::id(id)
                .to(other)
                .error("no-dest", "5.1.1 - Gestore Sandbox - casella inesistente"),
        ),
    ])
    .await;
    let outcome = env.poll().await.expect("poll");
    assert_eq!(
        outcome,
        PollOutcome {
            receipts_noted: 3,
            accepted: 1,
            ..done()
        }
    );
    assert_eq!(
        env.tickets().len(),
        5,
        "receipts open no ticket in note mode"
    );
    let t = env.ticket(case);
    // The three receipts of one poll for one ticket: one update, one note listing each in turn.
    assert_eq!(t.comments.len(), 3, "{t:#?}");
    let note = &t.comments[2];
    assert!(!note.public);
    let mut from = 0;
    for (uid, title, says) in [
        (6, "Ricevuta di accettazione", "accettata dal gestore"),
        (
            7,
            "Ricevuta di avvenuta consegna",
            "consegnata a mario.rossi@pec.cittadino.test",
        ),
        (
            8,
            "Avviso di mancata consegna",
            "Mancata consegna a ufficio@pec.altro.test il 27/11/2026 alle 10:15:00 (+0100): 5.1.1 - Gestore Sandbox - casella inesistente",
        ),
    ] {
        let at = from
            + note.html[from..]
                .find(title)
                .unwrap_or_else(|| panic!("{title:?} after byte {from} in {}", note.html));
        let end = note.html[at..]
            .find(&env.marker(v, uid))
            .map(|i| at + i)
            .unwrap_or_else(|| panic!("the marker of UID {uid} after {title:?}: {}", note.html));
        let part = &note.html[at..end];
        assert!(part.contains(says), "{says:?} not in {part}");
        assert!(part.contains(id), "the identificativo: {part}");
        from = end;
    }
    assert_eq!(
        note.file_names(),
        [
            "accettazione.eml",
            "avvenuta-consegna.eml",
            "errore-consegna.eml"
        ]
    );
    for tag in ["pec_accettata", "pec_consegnata", "pec_mancata_consegna"] {
        assert!(t.has_tag(tag), "{tag} not in {:?}", t.tags);
    }
    let record = env
        .find_sent(id)
        .await
        .expect("found by the learnt identificativo");
    assert_eq!(record.message_id.as_str(), "risposta-1@connector.test");
    assert_eq!(record.identificativo.as_ref().map(|i| i.as_str()), Some(id));
    assert_eq!(
        record.delivery[&PecAddress::parse(CITIZEN).unwrap()],
        DeliveryState::Delivered
    );
    assert_eq!(
        record.delivery[&PecAddress::parse(other).unwrap()],
        DeliveryState::NotDelivered
    );

    // The citizen answers: by the identificativo (In-Reply-To) and by our Message-ID
    // (References): public comments on the same ticket.
    let by_references = mail::envelope(
        &mail::citizen(10, &me)
            .subject("Re: Risposta")
            .references("risposta-1@connector.test")
            .build(),
        "opec-in-10@pec.sandbox.test",
    );
    env.append(vec![
        mail::reply(9, &me, id, "opec-in-9@pec.sandbox.test"),
        by_references,
    ])
    .await;
    let outcome = env.poll().await.expect("poll");
    assert_eq!(
        outcome,
        PollOutcome {
            comments_added: 2,
            ..done()
        }
    );
    assert_eq!(env.tickets().len(), 5, "a reply opens no ticket");
    let t = env.ticket(case);
    assert_eq!(t.comments.len(), 5, "{t:#?}");
    for (c, n) in [(&t.comments[3], 9), (&t.comments[4], 10)] {
        assert!(c.public);
        assert!(
            c.html.contains(&format!(
                "chiedo <b>l'accesso agli atti</b> (richiesta {n})"
            )),
            "{}",
            c.html
        );
        assert!(c.html.contains(&format!("opec-in-{n}@pec.sandbox.test")));
        assert_eq!(
            c.file_names(),
            [format!("domanda-{n}.pdf").as_str(), "messaggio-pec.eml"]
        );
    }
    assert!(t.has_tag("pec_messaggio"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_in_ticket_mode_open_a_ticket_each_and_leave_the_case_alone() {
    let env = InboundEnv::with_receipt_mode("rticket", ReceiptMode::Ticket).await;
    env.activate().await;
    let v = uid_validity(&env).await;
    let case = env.agent_ticket("pratica ticket-mode").await;
    env.record_sent("out-t@connector.test", case, &[CITIZEN])
        .await;
    let sent = mail::sent(&env.user, "out-t@connector.test", &[CITIZEN]);
    let id = "opec-out-t@pec.sandbox.test";
    env.append(vec![
        mail::receipt(ReceiptKind::Accettazione, &sent, Facts::id(id)),
        mail::receipt(
            ReceiptKind::AvvenutaConsegna,
            &sent,
            Facts::id(id).to(CITIZEN),
        ),
    ])
    .await;
    let outcome = env.poll().await.expect("poll");
    assert_eq!(
        outcome,
        PollOutcome {
            tickets_created: 2,
            ..done()
        }
    );
    assert_eq!(
        env.ticket(case.get()).comments.len(),
        1,
        "the case is untouched"
    );
    assert_eq!(env.tickets().len(), 3);
    for (uid, title, tag, file) in [
        (
            1,
            "Ricevuta di accettazione",
            "pec_accettata",
            "accettazione.eml",
        ),
        (
            2,
            "Ricevuta di avvenuta consegna",
            "pec_consegnata",
            "avvenuta-consegna.eml",
        ),
    ] {
        let t = ticket_of(&env, v, uid);
        assert_eq!(t.comments.len(), 1);
        assert!(
            !t.comments[0].public,
            "the first comment is an internal note"
        );
        assert!(t.comments[0].html.contains(title));
        assert!(
            !t.comments[0].html.contains("Non è stato trovato"),
            "a matched receipt: {}",
            t.comments[0].html
        );
        assert_eq!(t.comments[0].file_names(), [file]);
        // Not the account's tag: a public reply must not leave as PEC to the provider's robot.
        assert!(
            t.has_tag(tag) && t.has_tag("pec_connector") && !t.has_tag(&account_tag(&env)),
            "{:?}",
            t.tags
        );
    }
    let record = env.find_sent(id).await.expect("identificativo learnt");
    assert_eq!(
        record.delivery[&PecAddress::parse(CITIZEN).unwrap()],
        DeliveryState::Delivered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_in_both_mode_note_the_case_and_open_a_ticket_each() {
    let env = InboundEnv::with_receipt_mode("rboth", ReceiptMode::Both).await;
    env.activate().await;
    let v = uid_validity(&env).await;
    let case = env.agent_ticket("pratica both-mode").await;
    env.record_sent("out-b@connector.test", case, &[CITIZEN])
        .await;
    let sent = mail::sent(&env.user, "out-b@connector.test", &[CITIZEN]);
    let id = "opec-out-b@pec.sandbox.test";
    env.append(vec![
        mail::receipt(ReceiptKind::Accettazione, &sent, Facts::id(id)),
        mail::receipt(
            ReceiptKind::AvvenutaConsegna,
            &sent,
            Facts::id(id).to(CITIZEN),
        ),
    ])
    .await;
    let outcome = env.poll().await.expect("poll");
    assert_eq!(
        outcome,
        PollOutcome {
            receipts_noted: 2,
            accepted: 1,
            ..done()
        }
    );
    let t = env.ticket(case.get());
    assert_eq!(t.comments.len(), 3, "{t:#?}");
    assert!(!t.comments[1].public && t.comments[1].html.contains("Ricevuta di accettazione"));
    assert!(!t.comments[2].public && t.comments[2].html.contains("avvenuta consegna"));
    assert!(t.has_tag("pec_accettata") && t.has_tag("pec_consegnata"));
    assert_eq!(env.tickets().len(), 3);
    for uid in [1, 2] {
        let own = ticket_of(&env, v, uid);
        assert_eq!(own.comments.len(), 1);
        assert!(!own.comments[0].public);
    }
    assert_eq!(
        env.find_sent(id).await.expect("learnt").delivery[&PecAddress::parse(CITIZEN).unwrap()],
        DeliveryState::Delivered
    );
}

// ----- 2. first activation -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_activation_on_50_old_messages_imports_none_and_then_the_next_new_one() {
    let env = InboundEnv::new("first").await;
    env.append((1..=50).map(|n| mail::plain(n, &env.user)).collect())
        .await;
    let outcome = env.poll().await.expect("first poll");
    assert_eq!(
        outcome,
        PollOutcome {
            baseline: true,
            ..done()
        }
    );
    assert!(env.tickets().is_empty());
    let calls = env.calls.take();
    assert_eq!(calls.fetch, 0, "no message read on activation: {calls:?}");
    let cursor = env.cursor().await.expect("baseline recorded");
    assert_eq!((cursor.last_uid, cursor.baseline_uid_next), (50, 51));

    env.append(vec![mail::plain(51, &env.user)]).await;
    let outcome = env.poll().await.expect("poll");
    assert_eq!(
        outcome,
        PollOutcome {
            tickets_created: 1,
            ..done()
        }
    );
    let v = cursor.uid_validity.get();
    assert_eq!(env.tickets().len(), 1);
    assert_eq!(ticket_of(&env, v, 51).subject, "Comunicato 51");
    assert_eq!(env.calls.take().fetched_messages, 1);
}

// ----- 3. exactly once ---------------------------------------------------------------------------

/// The mailbox of the crash tests, after an empty activation: UID 1 and 2 envelopes (ticket +
/// note), UID 3 a receipt for what we sent from the agent's case (note on the case), UID 4 a
/// reply to it (public comment on the case).
async fn crash_world() -> (InboundEnv, u64) {
    let env = InboundEnv::new("crash").await;
    env.activate().await;
    let case = env.agent_ticket("pratica crash").await;
    env.record_sent("out-c@connector.test", case, &[CITIZEN])
        .await;
    let me = env.user.clone();
    let sent = mail::sent(&me, "out-c@connector.test", &[CITIZEN]);
    env.append(vec![
        mail::envelope(&mail::citizen(1, &me).build(), "opec-c1@pec.sandbox.test"),
        mail::envelope(&mail::citizen(2, &me).build(), "opec-c2@pec.sandbox.test"),
        mail::receipt(
            ReceiptKind::Accettazione,
            &sent,
            Facts::id("opec-out-c@pec.sandbox.test"),
        ),
        mail::reply(4, &me, "out-c@connector.test", "opec-c4@pec.sandbox.test"),
    ])
    .await;
    (env, case.get())
}

/// Everything in its place exactly once: one ticket per new message, each with its note once
/// and its files once; the receipt note and the reply once on the case; all recorded.
async fn assert_exactly_once(env: &InboundEnv, case: u64, context: &str) {
    let v = uid_validity(env).await;
    let all = env.tickets();
    assert_eq!(all.len(), 3, "{context}: {all:#?}");
    for uid in [1u32, 2] {
        let t = ticket_of(env, v, uid);
        let marker = env.marker(v, uid);
        assert_eq!(t.comments.len(), 2, "{context}: UID {uid}: {t:#?}");
        assert_eq!(
            t.comments[0].file_names(),
            [format!("domanda-{uid}.pdf").as_str(), "messaggio-pec.eml"],
            "{context}"
        );
        let notes = t.comments_containing(&marker);
        assert_eq!(notes.len(), 1, "{context}: UID {uid}: {t:#?}");
        assert!(!notes[0].public);
    }
    let t = env.ticket(case);
    assert_eq!(t.comments.len(), 3, "{context}: {t:#?}");
    let note = t.comments_containing(&env.marker(v, 3));
    assert_eq!(note.len(), 1, "{context}");
    assert!(!note[0].public && note[0].html.contains("Ricevuta di accettazione"));
    assert_eq!(note[0].file_names(), ["accettazione.eml"]);
    let reply = t.comments_containing(&env.marker(v, 4));
    assert_eq!(reply.len(), 1, "{context}");
    assert!(reply[0].public && reply[0].html.contains("(richiesta 4)"));
    assert_eq!(
        reply[0].file_names(),
        ["domanda-4.pdf", "messaggio-pec.eml"]
    );
    let validity = UidValidity::new(v).unwrap();
    for uid in 1..=4 {
        let record = env
            .store
            .find_message(&env.account.id, validity, Uid::new(uid).unwrap())
            .await
            .unwrap();
        assert!(record.is_some(), "{context}: UID {uid} not recorded");
    }
    assert_eq!(env.cursor().await.unwrap().last_uid, 4, "{context}");
}

/// How often each step boundary is reached for each UID in a run without crashes.
async fn step_occurrences() -> Vec<(Step, u32, u32)> {
    let (env, case) = crash_world().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(Step, u32, u32)>::new()));
    let log = seen.clone();
    let hook: StepHook = Arc::new(move |step, uid| {
        let mut seen = log.lock().unwrap();
        match seen.iter_mut().find(|(s, u, _)| *s == step && *u == uid) {
            Some(entry) => entry.2 += 1,
            None => seen.push((step, uid, 1)),
        }
        Ok(())
    });
    env.inbound_with_hook(hook)
        .poll(&env.account.id, Instant::now() + Duration::from_secs(60))
        .await
        .expect("poll without crashes");
    assert_exactly_once(&env, case, "no crash").await;
    seen.lock().unwrap().clone()
}

/// Crashes at every occurrence of `step` for every message (one fresh mailbox each), then runs
/// again without crashing, and checks that everything is there exactly once.
async fn crash_at_every_occurrence_of(step: Step) {
    let occurrences = step_occurrences().await;
    let targets: Vec<(u32, u32)> = occurrences
        .iter()
        .filter(|(s, _, _)| *s == step)
        .map(|(_, uid, n)| (*uid, *n))
        .collect();
    let mut crashes = 0;
    for (uid, n) in targets.clone() {
        for k in 1..=n {
            let (env, case) = crash_world().await;
            let hits = Arc::new(AtomicU32::new(0));
            let counter = hits.clone();
            let hook: StepHook = Arc::new(move |s, u| {
                if s == step && u == uid && counter.fetch_add(1, Ordering::SeqCst) + 1 == k {
                    Err(())
                } else {
                    Ok(())
                }
            });
            let context = format!("crash at {step:?} #{k} of UID {uid}");
            let crashed = env
                .inbound_with_hook(hook)
                .poll(&env.account.id, Instant::now() + Duration::from_secs(60))
                .await;
            match crashed {
                Err(PollError::Crash(s, u)) => assert_eq!((s, u), (step, uid), "{context}"),
                other => panic!("{context}: expected the injected crash, got {other:?}"),
            }
            let rerun = env
                .poll()
                .await
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert!(!rerun.busy, "{context}: the crashed run left the lease");
            assert_exactly_once(&env, case, &context).await;
            crashes += 1;
        }
    }
    assert!(
        !targets.is_empty(),
        "{step:?} is never reached: {occurrences:?}"
    );
    println!(
        "{step:?}: {crashes} crash points (UID, occurrences) {targets:?}, each rerun exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_after_a_crash_after_fetch() {
    crash_at_every_occurrence_of(Step::AfterFetch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_after_a_crash_after_uploads() {
    crash_at_every_occurrence_of(Step::AfterUploads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_after_a_crash_after_ticket_create() {
    crash_at_every_occurrence_of(Step::AfterTicketCreate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_after_a_crash_before_record_and_cursor_advance() {
    crash_at_every_occurrence_of(Step::BeforeRecord).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_after_a_crash_after_record() {
    crash_at_every_occurrence_of(Step::AfterRecord).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pollers_started_at_the_same_moment_make_one_ticket_per_message() {
    let env = InboundEnv::new("twins").await;
    env.activate().await;
    let v = uid_validity(&env).await;
    let pollers = [env.inbound.clone(), env.second_poller()];
    let mut uid = 0;
    for round in 0..3u32 {
        let batch: Vec<Vec<u8>> = (1..=3)
            .map(|i| {
                let n = round * 10 + i;
                mail::envelope(
                    &mail::citizen(n, &env.user).build(),
                    &format!("opec-twin-{n}@pec.sandbox.test"),
                )
            })
            .collect();
        env.append(batch).await;
        uid += 3;
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let runs: Vec<_> = pollers
            .iter()
            .map(|p| {
                let (p, id, start) = (p.clone(), env.account.id.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    p.poll(&id, Instant::now() + Duration::from_secs(60)).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for r in runs {
            outcomes.push(r.await.unwrap().expect("poll"));
        }
        let created: u32 = outcomes.iter().map(|o| o.tickets_created).sum();
        let busy = outcomes.iter().filter(|o| o.busy).count();
        println!(
            "round {round}: {}",
            outcomes
                .iter()
                .map(|o| if o.busy {
                    "busy".to_owned()
                } else {
                    format!("{} created", o.tickets_created)
                })
                .collect::<Vec<_>>()
                .join(" / ")
        );
        assert_eq!(created, 3, "round {round}: {outcomes:?}");
        assert!(busy <= 1, "round {round}: {outcomes:?}");
        for u in 1..=uid {
            ticket_of(&env, v, u);
        }
        assert_eq!(env.tickets().len() as u32, uid, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_reset_by_the_server_duplicates_nothing_and_loses_nothing() {
    let env = InboundEnv::new("uidv").await;
    env.activate().await;
    let me = env.user.clone();
    let a = mail::envelope(&mail::citizen(1, &me).build(), "opec-u1@pec.sandbox.test");
    let b = mail::envelope(&mail::citizen(2, &me).build(), "opec-u2@pec.sandbox.test");
    let c = mail::plain(3, &me);
    // No Message-ID at all: recognised by its bytes.
    let d = b"From: anonimo@esempio.test\r\nTo: x@pec.test\r\nSubject: senza id\r\n\r\nnessun Message-ID\r\n"
        .to_vec();
    env.append(vec![a.clone(), b.clone(), c.clone(), d.clone()])
        .await;
    assert_eq!(env.poll().await.unwrap().tickets_created, 4);
    let old = uid_validity(&env).await;

    // The provider rebuilds the mailbox: same messages, new UIDVALIDITY, UIDs from 1 again, and
    // a new message that takes UID 1 (a poller trusting old UIDs would skip it).
    let new = old + 1;
    env.dovecot.recreate_inbox(&me, new);
    let e = mail::envelope(&mail::citizen(5, &me).build(), "opec-u5@pec.sandbox.test");
    env.append(vec![e, d, b, c, a]).await;
    let outcome = env.poll().await.expect("poll after the reset");
    assert_eq!(
        outcome,
        PollOutcome {
            tickets_created: 1,
            duplicates: 4,
            ..done()
        }
    );
    let tickets = env.tickets();
    let alerts = tickets
        .iter()
        .filter(|t| t.has_tag("pec_connector_avviso"))
        .count();
    assert_eq!(
        (tickets.len() - alerts, alerts),
        (5, 1),
        "one alert tells the admins the mailbox was renumbered"
    );
    for uid in 1..=4 {
        ticket_of(&env, old, uid);
    }
    let fresh = ticket_of(&env, new, 1);
    assert!(fresh.comments[0].html.contains("(richiesta 5)"));
    let cursor = env.cursor().await.unwrap();
    assert_eq!((cursor.uid_validity.get(), cursor.last_uid), (new, 5));
    // And nothing more on the next run.
    assert_eq!(env.poll().await.unwrap(), done());
}

// ----- 4. Zendesk failures -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_rate_limiting_is_waited_out_and_every_message_imported() {
    let env = InboundEnv::new("ratelimit").await;
    env.activate().await;
    let v = uid_validity(&env).await;
    env.append(
        (1..=3)
            .map(|n| {
                mail::envelope(
                    &mail::citizen(n, &env.user).build(),
                    &format!("opec-r{n}@pec.sandbox.test"),
                )
            })
            .collect(),
    )
    .await;
    // 429 with Retry-After: 1 on the first two requests, then 200.
    env.sim.rate_limit_next(2, 1);
    let started = Instant::now();
    let outcome = env.poll().await.expect("poll");
    let took = started.elapsed();
    assert_eq!(outcome.tickets_created, 3, "{outcome:?}");
    for uid in 1..=3 {
        assert_eq!(ticket_of(&env, v, uid).comments.len(), 2);
    }
    let requests = env.sim.requests();
    let gaps: Vec<Duration> = requests[..3]
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    println!("429 ×2 with Retry-After 1 s: gaps between attempts {gaps:?}, poll took {took:?}");
    assert!(
        requests[..3].iter().all(|r| r.path == requests[0].path),
        "the same request was retried"
    );
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_secs(1)),
        "Retry-After honoured: {gaps:?}"
    );
    assert!(took >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_down_loses_nothing_and_keeps_the_cursor_before_the_failure() {
    let env = InboundEnv::new("down").await;
    env.activate().await;
    let v = uid_validity(&env).await;
    let validity = UidValidity::new(v).unwrap();
    env.append(
        (1..=3)
            .map(|n| {
                mail::envelope(
                    &mail::citizen(n, &env.user).build(),
                    &format!("opec-d{n}@pec.sandbox.test"),
                )
            })
            .collect(),
    )
    .await;
    let short = || Instant::now() + Duration::from_secs(2);

    // Down for the whole run.
    env.sim.unavailable_next(10_000);
    let err = env
        .inbound
        .poll(&env.account.id, short())
        .await
        .expect_err("zendesk is down");
    assert!(
        matches!(err, PollError::Zendesk(_)) && err.is_transient(),
        "{err:?}"
    );
    assert_eq!(env.cursor().await.unwrap().last_uid, 0);
    assert!(env.tickets().is_empty());

    // Up for the first message, down from then on.
    env.sim.clear_faults();
    let sim = env.sim.clone();
    let hook: StepHook = Arc::new(move |step, uid| {
        if step == Step::AfterRecord && uid == 1 {
            sim.unavailable_next(10_000);
        }
        Ok(())
    });
    let err = env
        .inbound_with_hook(hook)
        .poll(&env.account.id, short())
        .await
        .expect_err("zendesk went down");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        env.cursor().await.unwrap().last_uid,
        1,
        "the cursor stops at the last message Zendesk has"
    );
    for uid in [2, 3] {
        let record = env
            .store
            .find_message(&env.account.id, validity, Uid::new(uid).unwrap())
            .await
            .unwrap();
        assert!(record.is_none(), "UID {uid} recorded without a ticket");
    }

    // Back up: the rest comes in, once.
    env.sim.clear_faults();
    let outcome = env.poll().await.expect("poll after recovery");
    assert_eq!(outcome.tickets_created, 2, "{outcome:?}");
    assert_eq!(env.tickets().len(), 3);
    for uid in 1..=3 {
        assert_eq!(ticket_of(&env, v, uid).comments.len(), 2);
    }
}

// ----- 5. performance ----------------------------------------------------------------------------

fn session_summary(calls: &Calls) -> String {
    format!(
        "open {}, status {}, list_above {}, fetch {} ({} messages, {} bytes), close {}",
        calls.opens,
        calls.status,
        calls.list_above,
        calls.fetch,
        calls.fetched_messages,
        calls.fetched_bytes,
        calls.closes
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_a_poll_with_nothing_new_issues_at_most_5_imap_commands_and_fetches_no_body() {
    let shared = e2e::inbound_env::Dovecot::from_env();
    let private = PrivateDovecot::start(&shared);
    let env = InboundEnv::with(
        "idle",
        EnvOptions {
            dovecot: Some(private.dovecot.clone()),
            ..EnvOptions::default()
        },
    )
    .await;
    env.activate().await;
    env.append(
        (1..=3)
            .map(|n| {
                mail::envelope(
                    &mail::citizen(n, &env.user).build(),
                    &format!("opec-i{n}@pec.sandbox.test"),
                )
            })
            .collect(),
    )
    .await;
    env.calls.take();
    let before: BTreeSet<String> = private.sessions().into_iter().map(|s| s.0).collect();
    assert_eq!(env.poll().await.unwrap().tickets_created, 3);
    let import = env.calls.take();
    let import_session = private
        .sessions()
        .into_iter()
        .filter(|s| !before.contains(&s.0))
        .collect::<Vec<_>>();

    let before: BTreeSet<String> = private.sessions().into_iter().map(|s| s.0).collect();
    let started = Instant::now();
    let outcome = env.poll().await.expect("poll");
    let took = started.elapsed();
    assert_eq!(outcome, done());
    let idle = env.calls.take();
    let sessions: Vec<(String, Vec<String>)> = private
        .sessions()
        .into_iter()
        .filter(|s| !before.contains(&s.0))
        .collect();
    assert_eq!(sessions.len(), 1, "one IMAP session per poll: {sessions:?}");
    let lines = &sessions[0].1;
    // The client numbers its commands a1, a2, ...: a1 is LOGIN (before the raw log starts).
    let tags: Vec<u32> = lines
        .iter()
        .map(|l| {
            l.split(' ')
                .next()
                .and_then(|t| t.strip_prefix('a'))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a tagged command: {l:?}"))
        })
        .collect();
    assert_eq!(
        tags,
        (2..2 + lines.len() as u32).collect::<Vec<_>>(),
        "{lines:?}"
    );
    let commands = 1 + lines.len();
    // The server's logout line for that session ("imap(user)<pid><session>: ... Logged out"),
    // found by the pid in the raw log's name (`<date>-<time>.<pid>.<n>.in`); it may be written
    // a moment after the client has gone.
    let pid = sessions[0]
        .0
        .split('.')
        .nth(1)
        .expect("pid in the raw log name");
    let tag = format!("<{pid}>");
    let waited = Instant::now();
    let logout = loop {
        let found = private
            .log()
            .lines()
            .find(|l| l.contains(&env.user) && l.contains(&tag) && l.contains("Logged out"))
            .map(str::to_owned);
        match found {
            Some(line) => break line,
            None if waited.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            None => panic!("no logout line for session {tag}: {}", private.log()),
        }
    };
    println!(
        "nothing new: {commands} IMAP commands after the TLS handshake (LOGIN, then {lines:?}); session calls: {}; {took:?}",
        session_summary(&idle)
    );
    println!("  server's own count for that session: {logout}");
    println!(
        "importing 3: {} commands ({:?}); session calls: {}",
        import_session.first().map_or(0, |s| 1 + s.1.len()),
        import_session.first().map(|s| &s.1),
        session_summary(&import)
    );
    assert!(commands <= 5, "{commands} commands: {lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| !l.to_ascii_uppercase().contains("FETCH")),
        "no FETCH of any kind: {lines:?}"
    );
    assert!(
        logout.contains("body_count=0") && logout.contains("hdr_count=0"),
        "the server served no header or body: {logout}"
    );
    assert_eq!((idle.opens, idle.fetch), (1, 0), "{idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_a_backlog_of_500_pecs_of_50_kb_imports_at_50_messages_per_second() {
    const COUNT: u32 = 500;
    let env = InboundEnv::new("bulk").await;
    env.activate().await;
    env.calls.take();
    let started = Instant::now();
    let user = env.user.clone();
    let messages: Vec<Vec<u8>> = tokio::task::spawn_blocking(move || {
        (1..=COUNT)
            .map(|n| mail::envelope_of_size(n, &user, 50 * 1024))
            .collect()
    })
    .await
    .unwrap();
    let built = started.elapsed();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let started = Instant::now();
    env.append(messages).await;
    let appended = started.elapsed();

    let started = Instant::now();
    let outcome = env
        .inbound
        .poll(&env.account.id, Instant::now() + Duration::from_secs(300))
        .await
        .expect("poll");
    let took = started.elapsed();
    let rate = f64::from(COUNT) / took.as_secs_f64();
    let calls = env.calls.take();
    println!(
        "backlog: {COUNT} PECs, {:.1} MB ({} B average): built in {built:?}, APPENDed in {appended:?}; imported in {took:?} = {rate:.0} messages/s; {} Zendesk requests; session calls: {}",
        bytes as f64 / 1e6,
        bytes / COUNT as usize,
        env.sim.requests().len(),
        session_summary(&calls)
    );
    assert_eq!(outcome.tickets_created, COUNT, "{outcome:?}");
    assert_eq!(outcome.remaining, 0);
    assert_eq!(env.tickets().len() as u32, COUNT);
    assert!(rate >= 50.0, "{rate:.1} messages/s");
}

// ----- messages Zendesk refuses to take where they belong ----------------------------------------

/// Where the message with this marker ended up: (ticket, public) of every comment that names it,
/// plus the tickets that carry it as external id.
fn places_of(env: &InboundEnv, marker: &str) -> (Vec<(u64, bool)>, Vec<u64>) {
    let tickets = env.tickets();
    let comments = tickets
        .iter()
        .flat_map(|t| {
            t.comments_containing(marker)
                .into_iter()
                .map(move |c| (t.id, c.public))
        })
        .collect();
    let owned = tickets
        .iter()
        .filter(|t| t.external_id.as_deref() == Some(marker))
        .map(|t| t.id)
        .collect();
    (comments, owned)
}

/// Zendesk refuses updates to closed tickets (422). A late receipt or a citizen's reply for a
/// closed case must still land in Zendesk (e.g. as a follow-up ticket), and must not stop every
/// later message: "nothing is ever dropped", "never skips a message".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_receipt_and_a_reply_for_a_closed_ticket_are_imported_and_do_not_block_the_mailbox()
{
    let env = InboundEnv::new("closed").await;
    env.activate().await;
    let v = uid_validity(&env).await;
    let me = env.user.clone();
    let case = env.agent_ticket("pratica chiusa").await;
    env.record_sent("out-z@connector.test", case, &[CITIZEN])
        .await;
    // The agent solved the case long ago; Zendesk closed it (closed tickets refuse updates).
    assert!(env.sim.set_status(case.get(), "closed"));
    let sent = mail::sent(&me, "out-z@connector.test", &[CITIZEN]);
    env.append(vec![
        mail::receipt(
            ReceiptKind::AvvenutaConsegna,
            &sent,
            Facts::id("opec-out-z@pec.sandbox.test").to(CITIZEN),
        ),
        mail::reply(2, &me, "out-z@connector.test", "opec-z2@pec.sandbox.test"),
        mail::envelope(&mail::citizen(3, &me).build(), "opec-z3@pec.sandbox.test"),
    ])
    .await;
    let first = env.poll().await;
    let second = env.poll().await;
    println!("closed case: first poll {first:?}; second poll {second:?}");
    assert!(
        first.is_ok() || second.is_ok(),
        "the mailbox is stuck behind a message for a closed ticket: {first:?} / {second:?}"
    );
    assert_eq!(
        env.cursor().await.unwrap().last_uid,
        3,
        "every message handled"
    );
    ticket_of(&env, v, 3);
    for uid in [1, 2] {
        let (comments, owned) = places_of(&env, &env.marker(v, uid));
        assert!(
            comments.len() + owned.len() >= 1,
            "UID {uid} is nowhere in Zendesk"
        );
        assert!(owned.len() <= 1, "UID {uid}: {owned:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_from_a_sender_zendesk_refuses_is_imported_and_does_not_block_the_mailbox() {
    let env = InboundEnv::new("badsender").await;
    env.activate().await;
    let v = uid_validity(&env).await;
    let me = env.user.clone();
    // A local bounce: the sender has no domain Zendesk accepts as an e-mail address.
    let bounce = format!(
        "From: MAILER-DAEMON@localhost\r\nTo: {me}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-1@localhost>\r\n\r\nThis is the mail system at host localhost.\r\n"
    )
    .into_bytes();
    env.append(vec![
        bounce,
        mail::envelope(&mail::citizen(2, &me).build(), "opec-bs2@pec.sandbox.test"),
    ])
    .await;
    let outcome = env.poll().await;
    println!("refused sender: {outcome:?}");
    assert_eq!(
        outcome.expect("poll").tickets_created,
        2,
        "both messages imported"
    );
    let t = ticket_of(&env, v, 1);
    assert!(t.comments[0].html.contains("This is the mail system"));
    assert!(
        t.comments[1].html.contains("MAILER-DAEMON@localhost"),
        "the real sender is kept in the note: {}",
        t.comments[1].html
    );
    ticket_of(&env, v, 2);
}

/// First activation imports nothing that was already there; a later UIDVALIDITY reset must not
/// bring that backlog in (the server keeps each message's arrival time, INTERNALDATE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_reset_does_not_import_what_was_there_before_the_first_activation() {
    let env = InboundEnv::new("uidvold").await;
    let me = env.user.clone();
    // Five messages that arrived two days before the account was activated.
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2)).fixed_offset();
    let old: Vec<(Vec<u8>, _)> = (1..=5)
        .map(|n| (mail::plain(n, &me), Some(two_days_ago)))
        .collect();
    env.append_dated(old.clone()).await;
    env.activate().await;
    let first = mail::envelope(&mail::citizen(6, &me).build(), "opec-o6@pec.sandbox.test");
    env.append(vec![first.clone()]).await;
    assert_eq!(env.poll().await.unwrap().tickets_created, 1);
    let old_v = uid_validity(&env).await;

    // The provider rebuilds the mailbox with the same messages and arrival times; one more
    // arrives meanwhile.
    env.dovecot.recreate_inbox(&me, old_v + 1);
    let mut again = old;
    again.push((first, None));
    again.push((
        mail::envelope(&mail::citizen(7, &me).build(), "opec-o7@pec.sandbox.test"),
        None,
    ));
    env.append_dated(again).await;
    let outcome = env.poll().await.expect("poll after the reset");
    let tickets = env.tickets();
    let subjects: Vec<&str> = tickets
        .iter()
        .filter(|t| !t.has_tag("pec_connector_avviso"))
        .map(|t| t.subject.as_str())
        .collect();
    println!("after the reset: {outcome:?}; tickets {subjects:?}");
    assert_eq!(
        subjects,
        [
            "Richiesta n. 6 di accesso agli atti",
            "Richiesta n. 7 di accesso agli atti"
        ],
        "the messages older than the activation stay out, as on the first activation"
    );
    assert_eq!(outcome.skipped, 5, "{outcome:?}");
    // One alert says what happened and lists what was not imported again.
    let alerts: Vec<_> = tickets
        .iter()
        .filter(|t| t.has_tag("pec_connector_avviso"))
        .collect();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].subject.contains("rinumerata"),
        "{}",
        alerts[0].subject
    );
    assert!(alerts[0].comments[0].html.contains("Comunicato 3"));
}
