//! What a PEC costs in Zendesk requests (issue "Import at Zendesk's speed limit"): a new PEC
//! ticket is one create carrying everything (body, files, tags and the PEC facts in the ticket
//! fields provisioned at registration), plus one upload per file; no search for a first
//! attempt, no update after it. Measured on the Zendesk simulator's request log, through the
//! whole channel (registration by the admin API, poll by the poller's handler).

use std::collections::BTreeMap;

use e2e::channel_env::ChannelEnv;
use e2e::env::unique_name;
use e2e::inbound_env::mail::{self, CITIZEN};
use pec::build::{Address, MailBuilder};
use sandbox::zendesk::RecordedRequest;
use serde_json::{Value, json};

const FACT_TITLES: [&str; 4] = [
    "PEC identificativo",
    "PEC data certificazione",
    "PEC gestore",
    "PEC firma",
];

/// A citizen's PEC to `to` with `k` attachments (`k` may be 0: a plain message).
fn pec_with(k: usize, to: &str, identificativo: &str) -> Vec<u8> {
    let mut m = MailBuilder::new()
        .from(Address::named("Mario Rossi", CITIZEN))
        .to(to)
        .subject("Richiesta di accesso agli atti")
        .date(mail::when())
        .message_id(&format!("req-{}@client.cittadino.test", unique_name()))
        .text("Buongiorno,\nchiedo l'accesso agli atti.\n");
    for i in 0..k {
        m = m.attachment(
            &format!("allegato-{i}.pdf"),
            "application/pdf",
            format!("%PDF-1.4 allegato {i}").as_bytes(),
        );
    }
    mail::envelope(&m.build(), identificativo)
}

/// `METHOD path` of every Zendesk request made after the first `from`.
fn calls_since(requests: &[RecordedRequest], from: usize) -> Vec<String> {
    requests[from..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The custom fields the connector provisioned: title → id.
fn fact_fields(env: &ChannelEnv) -> BTreeMap<String, u64> {
    env.sim
        .ticket_fields()
        .into_iter()
        .filter(|f| FACT_TITLES.contains(&f.title.as_str()))
        .map(|f| (f.title, f.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_pec_costs_one_upload_per_file_and_one_create_with_its_facts_in_ticket_fields() {
    let env = ChannelEnv::new("requests").await;
    let fields = fact_fields(&env);
    assert_eq!(
        fields.len(),
        4,
        "registration provisions the four PEC fields: {:?}",
        env.sim.ticket_fields()
    );
    for f in env.sim.ticket_fields() {
        if FACT_TITLES.contains(&f.title.as_str()) {
            assert_eq!(f.kind, "text");
            assert!(
                f.active && !f.visible_in_portal && !f.editable_in_portal,
                "{f:?}"
            );
        }
    }

    let mut figures = Vec::new();
    for k in [0usize, 1, 3] {
        let id = format!("opec.req{k}.{}@pec.sandbox.test", unique_name());
        env.deliver(vec![pec_with(k, &env.address, &id)]).await;
        let before_tickets = env.sim.tickets().len();
        let from = env.sim.requests().len();
        env.poll().await;
        let calls = calls_since(&env.sim.requests(), from);
        let uploads = calls
            .iter()
            .filter(|c| *c == "POST /api/v2/uploads")
            .count();
        let creates = calls
            .iter()
            .filter(|c| *c == "POST /api/v2/tickets")
            .count();
        let updates = calls.iter().filter(|c| c.starts_with("PUT ")).count();
        figures.push(format!("{k} attachments: {} requests", calls.len()));
        assert_eq!(
            calls.len(),
            k + 2,
            "a PEC with {k} attachments: its files and the original uploaded, one create, nothing else: {calls:#?}"
        );
        assert_eq!((uploads, creates, updates), (k + 1, 1, 0), "{calls:#?}");
        assert_eq!(env.sim.tickets().len(), before_tickets + 1);

        let ticket = env.sim.tickets().pop().expect("the new ticket");
        assert_eq!(
            ticket.comments.len(),
            1,
            "no facts note: {:#?}",
            ticket.comments
        );
        let value = |title: &str| {
            ticket
                .custom_fields
                .iter()
                .find(|(f, _)| *f == fields[title])
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null)
        };
        assert_eq!(value("PEC identificativo"), json!(id));
        assert_eq!(
            value("PEC data certificazione"),
            json!("27/11/2026 10:15:00 (+0100)")
        );
        assert_eq!(value("PEC gestore"), json!(mail::GESTORE));
        let firma = value("PEC firma");
        assert!(
            firma
                .as_str()
                .is_some_and(|f| f.starts_with("integra ma non attendibile")),
            "the sandbox signature is real but not a PEC provider's: {firma}"
        );
    }
    println!("Zendesk requests per new PEC: {}", figures.join(", "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fact_fields_are_provisioned_once_and_found_again_or_remade_when_an_admin_deleted_one()
{
    let env = ChannelEnv::new("fields").await;
    let first = fact_fields(&env);
    assert_eq!(first.len(), 4);
    let path = format!("/accounts/{}", env.account.as_str());

    // Provisioning again (any update runs it) finds the same fields: none is added.
    let patched = env
        .admin("PATCH", &path, Some(&json!({"poll_interval_minutes": 5})))
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(fact_fields(&env), first);
    assert_eq!(
        env.sim.ticket_fields().len(),
        first.len() + 7,
        "7 system fields + ours"
    );

    // An admin deletes one in Zendesk: the next provisioning makes it again, the others stay.
    assert!(env.sim.delete_ticket_field(first["PEC gestore"]));
    let patched = env
        .admin("PATCH", &path, Some(&json!({"poll_interval_minutes": 3})))
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    let again = fact_fields(&env);
    assert_eq!(again.len(), 4);
    assert_ne!(again["PEC gestore"], first["PEC gestore"]);
    assert_eq!(again["PEC identificativo"], first["PEC identificativo"]);

    // A PEC imported now fills the new field.
    let id = format!("opec.fields.{}@pec.sandbox.test", unique_name());
    env.deliver(vec![pec_with(0, &env.address, &id)]).await;
    env.poll().await;
    let ticket = env.sim.tickets().pop().expect("ticket");
    assert!(
        ticket
            .custom_fields
            .contains(&(again["PEC gestore"], json!(mail::GESTORE))),
        "{:?}",
        ticket.custom_fields
    );
}

/// A PEC sent to 50 recipients brings 51 receipts (one accettazione, one consegna each): noted
/// on the case in a handful of updates, not 51 (Zendesk takes 30 updates per ticket in 10
/// minutes), with every receipt's text and file, and the delivery state exact per recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipts_of_a_send_to_50_recipients_are_noted_in_at_most_3_updates() {
    use connector::domain::{DeliveryState, PecAddress};
    use connector::inbound::PollOutcome;
    use e2e::inbound_env::InboundEnv;
    use e2e::inbound_env::mail::Facts;
    use pec::ReceiptKind;

    let env = InboundEnv::new("fifty").await;
    // Zendesk's Update Ticket limit: 30 updates per 10 minutes per ticket.
    env.sim
        .set_ticket_update_limit(Some((30, std::time::Duration::from_secs(600))));
    env.activate().await;
    let case = env.agent_ticket("pratica con 50 destinatari").await;
    let recipients: Vec<String> = (0..50)
        .map(|i| format!("ufficio{i:02}@pec.ente.test"))
        .collect();
    let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
    env.record_sent("out-50@connector.test", case, &to).await;
    let sent = mail::sent(&env.user, "out-50@connector.test", &to);
    let id = "opec-out-50@pec.sandbox.test";
    let mut receipts = vec![mail::receipt(
        ReceiptKind::Accettazione,
        &sent,
        Facts::id(id),
    )];
    for r in &recipients {
        receipts.push(mail::receipt(
            ReceiptKind::AvvenutaConsegna,
            &sent,
            Facts::id(id).to(r),
        ));
    }
    env.append(receipts).await;

    let from = env.sim.requests().len();
    let outcome = env.poll().await.expect("poll");
    assert_eq!(
        outcome.receipts_noted, 51,
        "every receipt noted once: {outcome:?}"
    );
    assert_eq!(outcome.remaining, 0);
    let calls = calls_since(&env.sim.requests(), from);
    let updates = calls.iter().filter(|c| c.starts_with("PUT ")).count();
    let uploads = calls
        .iter()
        .filter(|c| *c == "POST /api/v2/uploads")
        .count();
    println!(
        "51 receipts of one send: {updates} ticket updates, {uploads} uploads, {} Zendesk requests",
        calls.len()
    );
    assert!(updates <= 3, "{updates} updates: {calls:#?}");
    assert_eq!(uploads, 51, "each receipt's file attached");

    let ticket = env.ticket(case.get());
    let notes: Vec<_> = ticket.comments.iter().filter(|c| !c.public).collect();
    assert_eq!(notes.len(), updates);
    let text: String = notes.iter().map(|c| c.html.as_str()).collect();
    assert_eq!(text.matches("Ricevuta di accettazione").count(), 1);
    assert_eq!(text.matches("Ricevuta di avvenuta consegna").count(), 50);
    let files: usize = notes.iter().map(|c| c.file_names().len()).sum();
    assert_eq!(files, 51);
    for r in &recipients {
        assert!(text.contains(r.as_str()), "the consegna to {r} is named");
    }

    let record = env.find_sent(id).await.expect("identificativo learnt");
    for r in &recipients {
        assert_eq!(
            record.delivery[&PecAddress::parse(r).unwrap()],
            DeliveryState::Delivered,
            "{r}"
        );
    }
    assert!(
        env.ticket(case.get())
            .tags
            .iter()
            .any(|t| t == "pec_consegnata")
    );

    // A second poll finds nothing more to note: the held receipts were recorded.
    let again = env.poll().await.expect("second poll");
    assert_eq!(
        again,
        PollOutcome {
            caught_up: true,
            ..PollOutcome::default()
        },
        "{again:?}"
    );
}
