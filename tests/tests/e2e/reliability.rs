//! Nothing blocks a mailbox, nothing leaves twice (issue #14): messages and sends that fail the
//! same way every time, answers that never come, inputs larger than the function. Each test
//! injects one fault through the poller handler and the api router, against Dovecot, the SMTP
//! test server and the Zendesk simulator.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use connector::domain::{DeliveryState, MessageId, PecAddress, SecretName};
use e2e::channel_env::ChannelEnv;
use e2e::env::unique_name;
use e2e::inbound_env::mail::{self, CITIZEN, Facts};
use e2e::outbound_env::delivered_by;
use pec::build::SignatureMode;
use pec::{Kind, ReceiptKind};
use sandbox::{AgentUpdate, TicketRefusal};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The citizen's PEC `n` from `sender` (a certified envelope).
fn pec_from(env: &ChannelEnv, n: u32, sender: &str) -> Vec<u8> {
    let original = mail::citizen(n, &env.address).from(sender).build();
    mail::envelope(
        &original,
        &format!("opec.{n}.{}@pec.sandbox.test", unique_name()),
    )
}

fn pec(env: &ChannelEnv, n: u32) -> Vec<u8> {
    pec_from(env, n, CITIZEN)
}

/// Tickets whose subject contains `text`.
fn tickets_about(env: &ChannelEnv, text: &str) -> Vec<sandbox::zendesk::Ticket> {
    env.sim
        .tickets()
        .into_iter()
        .filter(|t| t.subject.contains(text))
        .collect()
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

// ----- 1. Poison messages are parked, never blocking ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_zendesk_refuses_every_time_is_parked_and_the_mailbox_goes_on() {
    let env = ChannelEnv::new("veleno").await;
    env.sim
        .refuse_tickets_from("sospeso@pec.test", Some(TicketRefusal::Invalid));
    let poison = pec_from(&env, 2, "sospeso@pec.test");
    env.deliver(vec![pec(&env, 1), poison.clone(), pec(&env, 3)])
        .await;
    env.poll().await;

    assert_eq!(tickets_about(&env, "Richiesta n. 1").len(), 1);
    assert_eq!(
        tickets_about(&env, "Richiesta n. 3").len(),
        1,
        "the PEC after the poison one arrived"
    );
    let parked = tickets_about(&env, "PEC non importabile");
    assert_eq!(parked.len(), 1, "{:#?}", env.sim.tickets());
    let parked = &parked[0];
    assert!(parked.tags.contains(&"pec_non_importabile".to_owned()));
    let note = &parked.comments[0];
    assert!(!note.public);
    assert!(note.html_body.contains("UID 2"), "{}", note.html_body);
    assert!(
        note.html_body.contains("suspended"),
        "the reason: {}",
        note.html_body
    );
    let file = env.sim.attachment(note.attachment_ids[0]).unwrap();
    assert_eq!(file.file_name, "messaggio-non-importabile.eml");
    assert_eq!(file.data, poison, "the raw message is kept");

    let status = env.status().await;
    assert_eq!(status["counts"]["parked"], 1, "{status}");
    assert_eq!(status["last_parked"]["uid"], 2, "{status}");
    assert_eq!(status["last_parked"]["ticket"], parked.id, "{status}");

    // Nothing is parked or imported twice.
    env.poll().await;
    assert_eq!(env.sim.tickets().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_fails_unclearly_is_parked_after_three_polls() {
    let env = ChannelEnv::new("oscuro").await;
    env.sim
        .refuse_tickets_from("illeggibile@pec.test", Some(TicketRefusal::Unreadable));
    env.deliver(vec![
        pec_from(&env, 1, "illeggibile@pec.test"),
        pec(&env, 2),
    ])
    .await;
    for poll in 1..=2u32 {
        let r = env.try_poll(Duration::from_secs(60)).await;
        assert!(r.is_err(), "poll {poll} stops at the message: {r:?}");
        let status = env.status().await;
        assert_eq!(status["failing"]["uid"], 1, "{status}");
        assert_eq!(status["failing"]["failures"], poll, "{status}");
        assert!(tickets_about(&env, "Richiesta n. 2").is_empty());
    }
    env.poll().await;
    assert_eq!(tickets_about(&env, "PEC non importabile").len(), 1);
    assert_eq!(tickets_about(&env, "Richiesta n. 2").len(), 1);
    let status = env.status().await;
    assert!(status["failing"].is_null(), "{status}");
    assert_eq!(status["counts"]["parked"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passing_failure_never_parks_a_message() {
    let env = ChannelEnv::new("passeggero").await;
    env.deliver(vec![pec(&env, 1)]).await;
    for _ in 0..4 {
        // Zendesk answers 503 to every try of this poll.
        env.sim.unavailable_next(8);
        let r = env.try_poll(Duration::from_secs(60)).await;
        assert!(r.is_err(), "{r:?}");
        env.sim.clear_faults();
    }
    assert!(tickets_about(&env, "PEC non importabile").is_empty());
    let status = env.status().await;
    assert!(status["failing"].is_null(), "{status}");
    env.poll().await;
    assert_eq!(tickets_about(&env, "Richiesta n. 1").len(), 1);
    assert!(tickets_about(&env, "PEC non importabile").is_empty());
}

// ----- 2. Memory is bounded by configuration, not by the sender ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_over_the_limit_becomes_a_ticket_of_its_headers() {
    let env = ChannelEnv::with("grande", json!({"max_message_mb": 1})).await;
    let big = mail::envelope_of_size(1, &env.address, 3 * 1024 * 1024);
    env.deliver(vec![big.clone(), pec(&env, 2)]).await;
    env.poll().await;
    assert!(
        env.faults.largest_fetched.load(Ordering::SeqCst) < 1024 * 1024,
        "no message over the limit is read whole"
    );
    let t = tickets_about(&env, "Pratica 1");
    assert_eq!(t.len(), 1, "{:#?}", env.sim.tickets());
    let t = &t[0];
    assert!(
        t.tags.contains(&"pec_troppo_grande".to_owned()),
        "{:?}",
        t.tags
    );
    let note = &t.comments[0];
    assert!(
        note.html_body.contains("troppo grande"),
        "{}",
        note.html_body
    );
    assert!(note.html_body.contains("resta nella casella"));
    let file = env.sim.attachment(note.attachment_ids[0]).unwrap();
    assert_eq!(file.file_name, "intestazioni.txt");
    assert!(file.data.len() < 64 * 1024);
    assert_eq!(tickets_about(&env, "Richiesta n. 2").len(), 1);
    assert_eq!(env.status().await["counts"]["too_large"], 1);
    // The PEC is still in the mailbox.
    assert_eq!(env.dovecot.status(&env.address).1, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_over_the_limit_are_refused_before_anything_is_downloaded() {
    let env = ChannelEnv::new("allegati").await;
    let ticket = env.citizen_ticket(1).await;
    // Three files that together weigh more than a PEC may carry (the test server's limit is
    // the default 50 MB; three of 18 MB).
    let client = reqwest::Client::new();
    let creds = env.sim.credentials();
    let mut token: Option<String> = None;
    for n in 0..3 {
        let mut url = format!(
            "{}/api/v2/uploads?filename=parte-{n}.bin",
            env.sim.base_url()
        );
        if let Some(t) = &token {
            url.push_str(&format!("&token={t}"));
        }
        let answer: Value = client
            .post(url)
            .basic_auth(
                format!("{}/token", creds.agent_email),
                Some(&creds.api_token),
            )
            .header("Content-Type", "application/octet-stream")
            .body(vec![b'x'; 18 * 1000 * 1000])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token = Some(answer["upload"]["token"].as_str().unwrap().to_owned());
    }
    env.sim
        .agent_update(
            ticket,
            AgentUpdate {
                comment: Some(("Ecco i documenti".into(), true)),
                uploads: token.into_iter().collect(),
                ..AgentUpdate::default()
            },
        )
        .unwrap();
    env.settle().await;
    assert!(env.sent().is_empty());
    let downloads = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/attachments/"))
        .count();
    assert_eq!(downloads, 0, "nothing was downloaded");
    let notes = env.notes(ticket);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("PEC non inviata") && n.contains("parte-2.bin")),
        "{notes:#?}"
    );
}

// ----- 3. An ambiguous send is never repeated blindly ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unconfirmed_send_waits_for_its_receipts_and_is_never_repeated_blindly() {
    let env = ChannelEnv::new("dropafterdata").await;
    // A: the accettazione arrives: the send was taken, nothing is sent again.
    let first = env.citizen_ticket(1).await;
    env.sim.agent_reply(first, "Risposta A", true).unwrap();
    env.settle().await;
    let sent = env.sent();
    assert_eq!(sent.len(), 1, "the server kept it and did not answer");
    let notes = env.notes(first);
    assert!(
        notes.iter().any(|n| n.contains("PEC forse inviata")),
        "{notes:#?}"
    );
    // A poll right away (within the grace) sends nothing again.
    env.poll().await;
    assert_eq!(env.sent().len(), 1);
    let mid = header(&sent[0].raw, "Message-ID").unwrap();
    env.deliver(vec![mail::receipt(
        ReceiptKind::Accettazione,
        &sent[0].raw,
        Facts::id(&format!("opec.acc.{}@pec.sandbox.test", unique_name())),
    )])
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.poll().await;
    assert_eq!(env.sent().len(), 1, "the accettazione proves it left");
    assert!(
        env.notes(first).iter().any(|n| n.contains("PEC inviata")),
        "{:#?}",
        env.notes(first)
    );
    let record = env
        .env
        .store
        .find_outbound(
            &env.account,
            &MessageId::parse(mid.trim_matches(['<', '>'])).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, connector::domain::SendStatus::Sent);

    // B: no receipt: a poll that did not read the mailbox to its end does not count; once one
    // did, after the grace, the PEC is sent again — and the note says so.
    let second = env.citizen_ticket(2).await;
    env.sim.agent_reply(second, "Risposta B", true).unwrap();
    env.settle().await;
    assert_eq!(env.sent().len(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.deliver(vec![pec(&env, 3)]).await;
    // Too little time to read anything: not caught up.
    let short = env.try_poll(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&short, poller::Response::Polled(o) if !o.caught_up),
        "{short:?}"
    );
    assert_eq!(
        env.sent().len(),
        2,
        "no retry after a poll that did not catch up"
    );
    // The server stops dropping: the account logs in as another (good) user.
    let good = format!("buono-{}@pec.test", unique_name());
    let patched = env
        .admin(
            "PATCH",
            &format!("/accounts/{}", env.account.as_str()),
            Some(&json!({"username": good})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    env.poll().await;
    let resent = delivered_by(&env.spool, &good);
    assert_eq!(resent.len(), 1, "sent again once");
    assert!(String::from_utf8_lossy(&resent[0].raw).contains("Risposta B"));
    let notes = env.notes(second);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("PEC inviata") && n.contains("Invio ripetuto")),
        "{notes:#?}"
    );
}

// ----- 4. No silent gaps ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_the_server_does_not_return_is_fetched_alone_then_parked() {
    let env = ChannelEnv::new("buchi").await;
    env.deliver(vec![pec(&env, 1), pec(&env, 2), pec(&env, 3), pec(&env, 4)])
        .await;
    // UID 2 is missing from batch answers only; UID 3 from every answer.
    env.faults.hidden_in_batches.lock().unwrap().push(2);
    env.faults.hidden.lock().unwrap().push(3);
    env.poll().await;
    for n in [1, 2, 4] {
        assert_eq!(
            tickets_about(&env, &format!("Richiesta n. {n} ")).len(),
            1,
            "PEC {n}"
        );
    }
    assert!(tickets_about(&env, "Richiesta n. 3 ").is_empty());
    let parked = tickets_about(&env, "PEC non importabile");
    assert_eq!(parked.len(), 1);
    assert!(parked[0].comments[0].html_body.contains("UID 3"));
    let status = env.status().await;
    assert_eq!(status["counts"]["gaps"], 1, "{status}");
    assert_eq!(status["last_uid"], 4, "the cursor went past it: {status}");

    // A server that answers NO for a batch: each message alone, the refused one parked.
    env.deliver(vec![pec(&env, 5), pec(&env, 6)]).await;
    env.faults.refused.lock().unwrap().push(6);
    env.poll().await;
    assert_eq!(tickets_about(&env, "Richiesta n. 5 ").len(), 1);
    assert_eq!(tickets_about(&env, "PEC non importabile").len(), 2);
}

// ----- 5. A UIDVALIDITY change never floods Zendesk with history ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renumbered_mailbox_imports_only_what_is_new_and_says_so() {
    let env = ChannelEnv::new("rinumerata").await;
    let first = pec(&env, 1);
    env.deliver(vec![first.clone()]).await;
    env.poll().await;
    assert_eq!(env.sim.tickets().len(), 1);

    let (old_v, _) = env.dovecot.status(&env.address);
    env.dovecot.recreate_inbox(&env.address, old_v + 7);
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).fixed_offset();
    let dovecot = env.dovecot.clone();
    let user = env.address.clone();
    let messages = vec![
        // History the connector never saw (older than its last good poll), then the copy of
        // what it imported, more history, and one new PEC.
        (mail::plain(10, &env.address), Some(yesterday)),
        (first, None),
        (mail::plain(11, &env.address), Some(yesterday)),
        (pec(&env, 2), None),
    ];
    tokio::task::spawn_blocking(move || dovecot.append_dated_blocking(&user, &messages))
        .await
        .unwrap();
    env.poll().await;

    assert!(tickets_about(&env, "Comunicato").is_empty(), "no history");
    assert_eq!(
        tickets_about(&env, "Richiesta n. 1").len(),
        1,
        "no second copy"
    );
    assert_eq!(
        tickets_about(&env, "Richiesta n. 2").len(),
        1,
        "the new PEC"
    );
    let alerts = tickets_about(&env, "rinumerata");
    assert_eq!(alerts.len(), 1);
    let text = &alerts[0].comments[0].html_body;
    assert!(text.contains("I 2 messaggi"), "{text}");
    assert!(
        text.contains("Comunicato 10") && text.contains("Comunicato 11"),
        "{text}"
    );
    // And nothing more next time.
    env.poll().await;
    assert_eq!(env.sim.tickets().len(), 3);
}

// ----- 6. Markers are unique per registration -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_registered_again_never_takes_an_old_ticket_for_a_new_message() {
    let env = ChannelEnv::new("di-nuovo").await;
    let old = env.citizen_ticket(1).await;
    let old_comments = env.sim.comments(old).len();
    let (v, _) = env.dovecot.status(&env.address);
    let path = format!("/accounts/{}", env.account.as_str());
    assert_eq!(env.admin("DELETE", &path, None).await.status, 204);
    // The provider rebuilt the box with the same UIDVALIDITY: UIDs start again at 1.
    env.dovecot.recreate_inbox(&env.address, v);
    let (smtp_host, smtp_port) = e2e::inbound_env::smtp_server();
    let again = env
        .admin(
            "POST",
            "/accounts",
            Some(&json!({
                "address": env.address, "password": e2e::inbound_env::PASSWORD,
                "imap_host": env.dovecot.host, "imap_port": env.dovecot.port,
                "smtp_host": smtp_host, "smtp_port": smtp_port,
            })),
        )
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.body["id"], env.account.as_str());
    let new = env.citizen_ticket(2).await;
    assert_ne!(new, old);
    assert_eq!(
        env.sim.comments(old).len(),
        old_comments,
        "the old ticket got nothing of the new message"
    );
    let (a, b) = (
        env.sim.ticket(old).unwrap().external_id.unwrap(),
        env.sim.ticket(new).unwrap().external_id.unwrap(),
    );
    assert_ne!(a, b, "markers of two registrations differ");
}

// ----- 7. Polls never undo admin changes -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poll_never_undoes_an_admin_change() {
    let env = std::sync::Arc::new(ChannelEnv::new("modifica").await);
    // The mailbox refuses the login: the poll records the problem and opens an alert, slowly.
    env.env
        .secrets
        .put(
            &SecretName::AccountPassword(env.account.clone()),
            &SecretString::from("sbagliata"),
        )
        .await
        .unwrap();
    env.sim.set_latency(Duration::from_millis(600));
    let polling = {
        let env = env.clone();
        tokio::spawn(async move { env.try_poll(Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let patched = env
        .admin(
            "PATCH",
            &format!("/accounts/{}", env.account.as_str()),
            Some(&json!({"poll_interval_minutes": 7})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    polling.await.unwrap().unwrap();
    env.sim.set_latency(Duration::ZERO);
    let account = env
        .admin("GET", &format!("/accounts/{}", env.account.as_str()), None)
        .await
        .body;
    assert_eq!(account["poll_interval_minutes"], 7, "{account}");
    assert_eq!(account["status"]["mailbox"], "login_refused", "{account}");
}

// ----- 9. Small robustness items ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_with_an_invalid_signature_is_flagged_and_moves_no_state() {
    let env = ChannelEnv::new("firma").await;
    let ticket = env.citizen_ticket(1).await;
    env.sim.agent_reply(ticket, "Risposta", true).unwrap();
    env.settle().await;
    let raw = env.sent()[0].raw.clone();
    let forged = mail::provider_message_signed(
        Kind::Receipt(ReceiptKind::AvvenutaConsegna),
        &raw,
        Facts::id(&format!("opec.falsa.{}@pec.sandbox.test", unique_name())).to(CITIZEN),
        SignatureMode::Placeholder,
    );
    env.deliver(vec![forged]).await;
    env.poll().await;
    let notes = env.notes(ticket);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("avvenuta consegna") && n.contains("NON è valida")),
        "{notes:#?}"
    );
    assert!(
        env.sim
            .ticket(ticket)
            .unwrap()
            .tags
            .contains(&"pec_firma_non_valida".to_owned())
    );
    let mid = header(&raw, "Message-ID").unwrap();
    let record = env
        .env
        .store
        .find_outbound(
            &env.account,
            &MessageId::parse(mid.trim_matches(['<', '>'])).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.delivery[&PecAddress::parse(CITIZEN).unwrap()],
        DeliveryState::Pending,
        "an altered receipt proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_fetch_ends_before_the_lease_does() {
    let env = ChannelEnv::new("bloccato").await;
    env.deliver(vec![pec(&env, 1)]).await;
    env.faults.stall_fetch.store(true, Ordering::SeqCst);
    // The Lambda has 11 s; the lease outlives it by 4 s (the test world's slack): the stuck
    // fetch is abandoned before the lease ends.
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        env.try_poll(Duration::from_secs(11)),
    )
    .await
    .expect("the poll ends by itself");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(11 + 4), "{took:?}");
    assert!(
        took >= Duration::from_secs(11),
        "it waited until the deadline: {took:?}"
    );
    let status = env.status().await;
    assert!(
        status["last_poll_error"]
            .as_str()
            .is_some_and(|e| e.contains("lease")),
        "{status}"
    );
    drop(r);
    env.faults.stall_fetch.store(false, Ordering::SeqCst);
    env.poll().await;
    assert_eq!(tickets_about(&env, "Richiesta n. 1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_or_tabbed_subject_never_stops_the_replies() {
    let env = ChannelEnv::new("oggetto").await;
    let long = format!("Richiesta\tcon tabulazione {}", "molto lunga ".repeat(30));
    let original = mail::citizen(1, &env.address).subject(&long).build();
    env.deliver(vec![mail::envelope(
        &original,
        &format!("opec.lungo.{}@pec.sandbox.test", unique_name()),
    )])
    .await;
    env.poll().await;
    let ticket = env.sim.tickets()[0].id;
    // A public reply, then the template.
    env.sim.agent_reply(ticket, "Risposta", true).unwrap();
    env.settle().await;
    // The agent adds the tag a moment later (Zendesk's times have whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.sim
        .agent_update(
            ticket,
            AgentUpdate {
                add_tags: vec![format!(
                    "pec_connector_reply_{}",
                    env.address.replace('@', "")
                )],
                ..AgentUpdate::default()
            },
        )
        .unwrap();
    env.settle().await;
    let sent = env.sent();
    assert_eq!(sent.len(), 2, "{:#?}", env.notes(ticket));
    for d in &sent {
        let subject = header(&d.raw, "Subject").unwrap();
        assert!(!subject.contains('\t'), "{subject}");
    }
    assert!(
        !env.notes(ticket)
            .iter()
            .any(|n| n.contains("PEC non inviata")),
        "{:#?}",
        env.notes(ticket)
    );
}
