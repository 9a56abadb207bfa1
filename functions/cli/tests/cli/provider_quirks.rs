//! The connector against the sandbox's PEC provider with real-provider quirks switched on — the
//! whole loop of `pec-connector demo` (provider and Zendesk simulators, the connector as `serve`
//! runs it): lower-case header names, `errore="altro"` for a mailbox that does not exist, the
//! 12-hour preavviso, a receipt that arrives late. Each lands on the right ticket with its tag.

use std::time::Duration;

use pec::{Kind, ReceiptKind};
use pec_connector::demo::{CITIZEN, DemoArgs, OFFICE, Sandbox};
use sandbox::provider::Quirks;
use sandbox::zendesk::CallOutcome;
use serde_json::{Value, json};

const ACCOUNT_TAG: &str = "pec_connector_protocollopec.sandbox.test";

async fn world(quirks: Quirks) -> (Sandbox, String) {
    let world = Sandbox::start(&DemoArgs::default(), quirks)
        .await
        .expect("the sandbox starts");
    let id = world.register_office().await.expect("registration");
    (world, id)
}

/// A ticket opened by an agent for `requester`, tagged for the office's account.
async fn ticket_for(world: &Sandbox, requester: &str) -> u64 {
    let credentials = world.zendesk.credentials();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/api/v2/tickets", world.zendesk.base_url()))
        .basic_auth(
            format!("{}/token", credentials.agent_email),
            Some(&credentials.api_token),
        )
        .json(&json!({"ticket": {
            "subject": "Comunicazione dell'ufficio",
            "comment": {"body": "Apertura pratica", "public": false},
            "requester": {"email": requester, "name": "Destinatario"},
            "tags": [ACCOUNT_TAG],
        }}))
        .send()
        .await
        .expect("create ticket")
        .json()
        .await
        .expect("ticket JSON");
    answer["ticket"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no ticket id in {answer}"))
}

/// An agent's public reply on `ticket`; waits until Zendesk's trigger has called the webhook and
/// the connector answered 2xx (the PEC left).
async fn agent_replies(world: &Sandbox, ticket: u64) {
    let before = world.zendesk.trigger_firings().len();
    world
        .zendesk
        .agent_reply(
            ticket,
            "Gentile destinatario,\nsi comunica quanto segue.",
            true,
        )
        .expect("the reply is added");
    world
        .zendesk
        .wait_for_firings(before + 1, Duration::from_secs(15))
        .await;
    let firings = world.zendesk.trigger_firings();
    let call = firings
        .get(before)
        .and_then(|f| f.calls.first())
        .unwrap_or_else(|| panic!("no webhook call: {firings:?}"));
    assert!(
        matches!(call.outcome, CallOutcome::Status(200..=299)),
        "{call:?}"
    );
}

fn tags(world: &Sandbox, ticket: u64) -> Vec<String> {
    world.zendesk.ticket(ticket).expect("ticket").tags
}

fn notes(world: &Sandbox, ticket: u64) -> Vec<String> {
    world
        .zendesk
        .comments(ticket)
        .into_iter()
        .filter(|c| !c.public)
        .map(|c| c.body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lower_case_header_names_change_nothing_for_the_connector() {
    let (world, id) = world(Quirks {
        lowercase_headers: true,
        ..Quirks::default()
    })
    .await;
    world
        .citizen_sends("Richiesta", "Buongiorno,\nuna richiesta.\n")
        .await
        .unwrap();
    world.wait_for(OFFICE, 1).await.unwrap();
    let head = String::from_utf8_lossy(&world.provider.store().messages(OFFICE)[0]).to_string();
    assert!(
        head.lines().any(|l| l == "x-trasporto: posta-certificata"),
        "{head}"
    );
    let outcome = world.poll(&id).await.unwrap();
    assert_eq!(outcome["tickets_created"], 1, "{outcome}");
    let ticket = world.zendesk.tickets()[0].clone();
    assert!(
        ticket.tags.contains(&"pec_messaggio".to_owned()),
        "{:?}",
        ticket.tags
    );
    assert!(
        ticket.tags.contains(&"pec_firma_valida".to_owned()),
        "{:?}",
        ticket.tags
    );

    agent_replies(&world, ticket.id).await;
    world.wait_for(OFFICE, 3).await.unwrap();
    let outcome = world.poll(&id).await.unwrap();
    assert_eq!(outcome["receipts_noted"], 2, "{outcome}");
    let tags = tags(&world, ticket.id);
    for tag in ["pec_accettata", "pec_consegnata"] {
        assert!(tags.contains(&tag.to_owned()), "{tag} in {tags:?}");
    }
    world.shutdown().await;
}

/// A reply to `recipient` that the provider cannot deliver: the accettazione, then `notice`;
/// both land on the ticket, the notice with `tag` and a note saying `note`.
async fn undelivered_reply_lands_on_its_ticket(
    quirks: Quirks,
    recipient: &str,
    notice: ReceiptKind,
    tag: &str,
    note: &str,
) {
    let (world, id) = world(quirks).await;
    let ticket = ticket_for(&world, recipient).await;
    agent_replies(&world, ticket).await;
    world.wait_for(OFFICE, 2).await.unwrap();
    assert_eq!(
        world.mailbox_kinds(OFFICE),
        vec![
            Kind::Receipt(ReceiptKind::Accettazione),
            Kind::Receipt(notice)
        ]
    );
    let outcome = world.poll(&id).await.unwrap();
    assert_eq!(outcome["receipts_noted"], 2, "{outcome}");
    let tags = tags(&world, ticket);
    assert!(tags.contains(&tag.to_owned()), "{tag} in {tags:?}");
    assert!(!tags.contains(&"pec_consegnata".to_owned()), "{tags:?}");
    let notes = notes(&world, ticket);
    assert!(
        notes
            .iter()
            .any(|n| n.contains(note) && n.contains(recipient)),
        "{note} for {recipient} in {notes:#?}"
    );
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errore_altro_for_an_unknown_mailbox_is_a_mancata_consegna_on_the_ticket() {
    undelivered_reply_lands_on_its_ticket(
        Quirks {
            altro_for_unknown_mailbox: true,
            ..Quirks::default()
        },
        "nessuno@pec.cittadini.test",
        ReceiptKind::ErroreConsegna,
        "pec_mancata_consegna",
        "mancata consegna",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_12_hour_preavviso_lands_on_the_ticket() {
    undelivered_reply_lands_on_its_ticket(
        Quirks {
            preavviso_for_external: true,
            ..Quirks::default()
        },
        "ufficio@pec.altrogestore.test",
        ReceiptKind::PreavvisoErroreConsegna,
        "pec_preavviso_mancata_consegna",
        "Preavviso di mancata consegna",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_receipt_lands_at_the_poll_after_it_arrives() {
    let delay = Duration::from_millis(1500);
    let (world, id) = world(Quirks {
        receipt_delay: delay,
        ..Quirks::default()
    })
    .await;
    world
        .citizen_sends("Richiesta", "Buongiorno,\nuna richiesta.\n")
        .await
        .unwrap();
    world.wait_for(OFFICE, 1).await.unwrap();
    world.poll(&id).await.unwrap();
    let ticket = world.zendesk.tickets()[0].id;

    agent_replies(&world, ticket).await;
    // The accettazione is there at once; the consegna is not, yet.
    world.wait_for(OFFICE, 2).await.unwrap();
    let outcome = world.poll(&id).await.unwrap();
    assert_eq!(outcome["receipts_noted"], 1, "{outcome}");
    let tags_now = tags(&world, ticket);
    assert!(
        tags_now.contains(&"pec_accettata".to_owned()),
        "{tags_now:?}"
    );
    assert!(
        !tags_now.contains(&"pec_consegnata".to_owned()),
        "{tags_now:?}"
    );

    world.wait_for(OFFICE, 3).await.unwrap();
    let outcome = world.poll(&id).await.unwrap();
    assert_eq!(outcome["receipts_noted"], 1, "{outcome}");
    let tags_later = tags(&world, ticket);
    assert!(
        tags_later.contains(&"pec_consegnata".to_owned()),
        "{tags_later:?}"
    );
    assert!(
        notes(&world, ticket)
            .iter()
            .any(|n| n.contains(&format!("consegnata a {CITIZEN}"))),
    );
    world.shutdown().await;
}
