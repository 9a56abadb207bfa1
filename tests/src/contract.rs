//! The contract every adapter set must meet, written once. Each function takes a fresh [`Env`]
//! and panics on the first broken promise; `contract_tests!` turns them into tests per adapter.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use connector::accounts::remove_account;
use connector::domain::{
    Account, AccountId, Cursor, DeliveryState, Endpoint, InstanceId, Lease, LeaseHolder,
    LeaseOutcome, MessageId, MessageOutcome, MessageRecord, OutboundRecord, OutboxEntry, OutboxId,
    PecAddress, PollInterval, PollStats, RecordOutcome, Schedule, SecretName, SendStatus, TicketId,
    Uid, UidValidity, ZendeskAuthKind, ZendeskInstance,
};
use connector::ports::Store;
use connector::schedules::SchedulesError;
use connector::secrets::SecretsError;
use connector::store::StoreError;
use secrecy::{ExposeSecret, SecretString};

use crate::Env;

const TTL: Duration = Duration::from_secs(60);

pub fn id(raw: &str) -> AccountId {
    AccountId::parse(raw).expect("test account id")
}

pub fn addr(raw: &str) -> PecAddress {
    PecAddress::parse(raw).expect("test address")
}

pub fn mid(raw: &str) -> MessageId {
    MessageId::parse(raw).expect("test message id")
}

pub fn ticket(n: u64) -> TicketId {
    TicketId::new(n).expect("test ticket id")
}

pub fn uid(n: u32) -> Uid {
    Uid::new(n).expect("test uid")
}

pub fn uv(n: u32) -> UidValidity {
    UidValidity::new(n).expect("test uidvalidity")
}

/// A millisecond-precise "now" (the stores keep milliseconds).
pub fn now() -> DateTime<Utc> {
    let ms = Utc::now().timestamp_millis();
    DateTime::from_timestamp_millis(ms).expect("now")
}

pub fn account(raw_id: &str) -> Account {
    let id = id(raw_id);
    let at = now();
    Account {
        address: addr(&format!("{raw_id}@pec.example.it")),
        imap: Endpoint::parse("imap", "imaps.pec.example.it", 993).expect("imap"),
        smtp: Endpoint::parse("smtp", "smtps.pec.example.it", 465).expect("smtp"),
        username: None,
        poll_interval: PollInterval::DEFAULT,
        enabled: true,
        password_secret: SecretName::AccountPassword(id.clone()).key(),
        subject_template: "{{ticket.title}}".into(),
        message_template: "{{ticket.latest_comment_html}}".into(),
        receipt_mode: Default::default(),
        outbound_attachments: Default::default(),
        zendesk_instance: None,
        zendesk: Default::default(),
        password_set_at: None,
        nonce: None,
        max_message_bytes: None,
        health: Default::default(),
        created_at: at,
        updated_at: at,
        id,
    }
}

pub fn instance_id(raw: &str) -> InstanceId {
    InstanceId::parse(raw).expect("test instance id")
}

/// A registered Zendesk instance authenticating with an agent's API token.
pub fn instance(raw_id: &str, url: &str) -> ZendeskInstance {
    ZendeskInstance {
        id: instance_id(raw_id),
        url: url.to_owned(),
        auth: ZendeskAuthKind::ApiToken {
            email: format!("agent@{raw_id}.example.it"),
        },
        created_at: now(),
    }
}

pub fn record(account: &AccountId, v: u32, u: u32, m: Option<&str>, t: u64) -> MessageRecord {
    MessageRecord {
        account: account.clone(),
        uid_validity: uv(v),
        uid: uid(u),
        message_id: m.map(mid),
        ticket: ticket(t),
        outcome: MessageOutcome::TicketCreated,
        recorded_at: now(),
    }
}

/// Takes the lease, panicking if it is held.
pub async fn lease(store: &dyn Store, account: &AccountId, holder: &str) -> Lease {
    let holder = LeaseHolder::parse(holder).expect("holder");
    match store
        .take_lease(account, &holder, now(), TTL)
        .await
        .expect("take lease")
    {
        LeaseOutcome::Acquired(lease) => lease,
        other => panic!("expected the lease, got {other:?}"),
    }
}

/// A lease value for `holder` that the store never granted (to check refusals).
pub fn forged(account: &AccountId, holder: &str) -> Lease {
    Lease {
        account: account.clone(),
        holder: LeaseHolder::parse(holder).expect("holder"),
        expires_at: now() + TimeDelta::minutes(1),
        cursor: None,
        stats: PollStats::default(),
    }
}

// ----- accounts -----

pub async fn accounts_crud(env: &Env) {
    let store = &*env.store;
    let (a1, a2) = (account("acme-1"), account("acme-2"));
    store.create_account(&a2).await.expect("create a2");
    store.create_account(&a1).await.expect("create a1");
    assert_eq!(store.get_account(&a1.id).await.unwrap(), Some(a1.clone()));
    assert_eq!(
        store.list_accounts().await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );

    let err = store.create_account(&a1).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { .. }),
        "second create: {err:?}"
    );
    assert!(!err.is_transient());

    let mut changed = a1.clone();
    changed.poll_interval = PollInterval::minutes(15).unwrap();
    changed.enabled = false;
    changed.username = Some("login-name".into());
    changed.subject_template = "Re: {{ticket.title}}".into();
    store.update_account(&changed).await.expect("update");
    assert_eq!(
        store.get_account(&a1.id).await.unwrap(),
        Some(changed.clone())
    );

    let err = store.update_account(&account("nobody")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nobody"), "{err}");

    assert!(store.delete_account(&a2.id).await.unwrap());
    assert_eq!(store.get_account(&a2.id).await.unwrap(), None);
    assert!(
        !store.delete_account(&a2.id).await.unwrap(),
        "second delete"
    );
    assert_eq!(store.list_accounts().await.unwrap(), vec![changed]);
}

// ----- zendesk instances -----

pub async fn zendesk_instances_crud(env: &Env) {
    let store = &*env.store;
    assert_eq!(store.list_instances().await.unwrap(), vec![]);
    let a = account("inst-acct-1");
    store.create_account(&a).await.unwrap();

    let z2 = instance("zeta-2", "https://zeta.zendesk.com");
    let z1 = ZendeskInstance {
        auth: ZendeskAuthKind::OAuth,
        ..instance("alpha-1", "https://alpha.zendesk.com")
    };
    store.put_instance(&z2).await.expect("put z2");
    store.put_instance(&z1).await.expect("put z1");
    assert_eq!(store.get_instance(&z1.id).await.unwrap(), Some(z1.clone()));
    assert_eq!(store.get_instance(&z2.id).await.unwrap(), Some(z2.clone()));
    assert_eq!(
        store.get_instance(&instance_id("nobody")).await.unwrap(),
        None
    );
    assert_eq!(
        store.list_instances().await.unwrap(),
        vec![z1.clone(), z2.clone()],
        "sorted by id"
    );

    // Putting again replaces (no second copy).
    let z2_moved = ZendeskInstance {
        url: "https://zeta-new.zendesk.com".into(),
        auth: ZendeskAuthKind::ApiToken {
            email: "other-agent@zeta.example.it".into(),
        },
        ..z2.clone()
    };
    store.put_instance(&z2_moved).await.expect("replace z2");
    assert_eq!(
        store.get_instance(&z2.id).await.unwrap(),
        Some(z2_moved.clone())
    );
    assert_eq!(
        store.list_instances().await.unwrap(),
        vec![z1.clone(), z2_moved.clone()]
    );

    // Instances and accounts are independent of each other.
    assert_eq!(store.list_accounts().await.unwrap(), vec![a.clone()]);
    assert!(store.delete_account(&a.id).await.unwrap());
    assert_eq!(
        store.list_instances().await.unwrap(),
        vec![z1.clone(), z2_moved.clone()],
        "deleting an account leaves the instances"
    );

    assert!(store.delete_instance(&z1.id).await.unwrap());
    assert!(
        !store.delete_instance(&z1.id).await.unwrap(),
        "second delete"
    );
    assert_eq!(store.get_instance(&z1.id).await.unwrap(), None);
    assert_eq!(store.list_instances().await.unwrap(), vec![z2_moved]);
    assert_eq!(store.list_accounts().await.unwrap(), vec![]);
}

// ----- cursor -----

pub async fn cursor_is_monotonic_and_conditional(env: &Env) {
    let store = &*env.store;
    let a = account("cursor-1");
    store.create_account(&a).await.unwrap();
    let l = lease(store, &a.id, "poller-1").await;
    assert_eq!(l.cursor, None, "a new account has no cursor");

    let c1 = Cursor::first_activation(uv(7), 100);
    store.advance_cursor(&l, None, &c1).await.expect("baseline");
    let err = store.advance_cursor(&l, None, &c1).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { .. }),
        "second baseline: {err:?}"
    );

    let c105 = c1.advanced_to(uid(105));
    store
        .advance_cursor(&l, Some(&c1), &c105)
        .await
        .expect("up");
    let err = store
        .advance_cursor(&l, Some(&c105), &c1.advanced_to(uid(103)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { .. }),
        "down: {err:?}"
    );
    let err = store
        .advance_cursor(&l, Some(&c1), &c1.advanced_to(uid(110)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { .. }),
        "stale expectation: {err:?}"
    );

    let err = store
        .advance_cursor(
            &forged(&a.id, "intruder"),
            Some(&c105),
            &c1.advanced_to(uid(200)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "without the lease: {err:?}"
    );

    // A new UIDVALIDITY starts over, even lower.
    let fresh = Cursor::first_activation(uv(8), 3);
    store
        .advance_cursor(&l, Some(&c105), &fresh)
        .await
        .expect("new uidvalidity");

    store.release_lease(&l).await.unwrap();
    let again = lease(store, &a.id, "poller-2").await;
    assert_eq!(again.cursor, Some(fresh), "the lease carries the cursor");
}

// ----- message records -----

pub async fn message_recorded_once(env: &Env) {
    let store = &*env.store;
    let a = account("msgs-1");
    store.create_account(&a).await.unwrap();
    let l = lease(store, &a.id, "poller-1").await;
    let base = Cursor::first_activation(uv(7), 1);
    store.advance_cursor(&l, None, &base).await.unwrap();

    let first = record(&a.id, 7, 1, Some("<m1@pec.example.it>"), 101);
    assert_eq!(
        store.record_message(&l, &first).await.unwrap(),
        RecordOutcome::Recorded
    );

    // Same UID again, another ticket: the first record wins.
    let second = record(&a.id, 7, 1, Some("m1@pec.example.it"), 202);
    match store.record_message(&l, &second).await.unwrap() {
        RecordOutcome::AlreadyRecorded(r) => {
            assert_eq!(r.ticket, ticket(101));
            assert_eq!(r, first);
        }
        other => panic!("second writer: {other:?}"),
    }
    // Same Message-ID at another UID (a second copy): the first record wins, nothing written.
    let copy = record(&a.id, 7, 2, Some("m1@pec.example.it"), 303);
    match store.record_message(&l, &copy).await.unwrap() {
        RecordOutcome::AlreadyRecorded(r) => assert_eq!(r.ticket, ticket(101)),
        other => panic!("same message id: {other:?}"),
    }
    assert_eq!(
        store.find_message(&a.id, uv(7), uid(2)).await.unwrap(),
        None
    );

    // The record moved the cursor: the next lease sees it.
    store.release_lease(&l).await.unwrap();
    let l = lease(store, &a.id, "poller-2").await;
    assert_eq!(l.cursor, Some(base.advanced_to(uid(1))));

    // The copy is recorded as a duplicate without a Message-ID; UIDs may be skipped.
    let mut dup = record(&a.id, 7, 3, None, 101);
    dup.outcome = MessageOutcome::Duplicate;
    assert_eq!(
        store.record_message(&l, &dup).await.unwrap(),
        RecordOutcome::Recorded
    );
    // Below the cursor now: refused, not recorded.
    let err = store
        .record_message(&l, &record(&a.id, 7, 2, None, 404))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { .. }),
        "below the cursor: {err:?}"
    );
    // Without the lease: refused.
    let err = store
        .record_message(&forged(&a.id, "intruder"), &record(&a.id, 7, 9, None, 505))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "without the lease: {err:?}"
    );
    // Under another UIDVALIDITY than the cursor's: refused.
    let err = store
        .record_message(&l, &record(&a.id, 8, 9, None, 606))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { .. }),
        "other uidvalidity: {err:?}"
    );

    assert_eq!(
        store.find_message(&a.id, uv(7), uid(1)).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .find_message_by_message_id(&a.id, &mid("m1@pec.example.it"))
            .await
            .unwrap(),
        Some(first)
    );
    assert_eq!(
        store.find_message(&a.id, uv(7), uid(3)).await.unwrap(),
        Some(dup)
    );
    assert_eq!(
        store
            .find_message_by_message_id(&a.id, &mid("nope@x.it"))
            .await
            .unwrap(),
        None
    );
}

// ----- outbound records -----

pub async fn outbound_found_by_either_id(env: &Env) {
    let store = &*env.store;
    let a = account("out-1");
    store.create_account(&a).await.unwrap();
    let ours = mid("<pecconn.42.1@acme.example.it>");
    let ident = mid("<opec210.20240601120000.1234.56.7.89@pec.provider.it>");
    let sent = OutboundRecord::sent(
        a.id.clone(),
        ours.clone(),
        ticket(42),
        vec![addr("uno@pec.it"), addr("due@pec.it")],
        now(),
    );
    store.record_outbound(&sent).await.expect("record outbound");
    let err = store.record_outbound(&sent).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { .. }),
        "twice: {err:?}"
    );

    assert_eq!(
        store.find_outbound(&a.id, &ours).await.unwrap(),
        Some(sent.clone())
    );
    assert_eq!(store.find_outbound(&a.id, &ident).await.unwrap(), None);

    store
        .set_identificativo(&a.id, &ours, &ident)
        .await
        .expect("identificativo");
    store
        .set_identificativo(&a.id, &ours, &ident)
        .await
        .expect("the same identificativo again");
    let with_ident = OutboundRecord {
        identificativo: Some(ident.clone()),
        ..sent.clone()
    };
    assert_eq!(
        store.find_outbound(&a.id, &ident).await.unwrap(),
        Some(with_ident.clone())
    );
    assert_eq!(
        store.find_outbound(&a.id, &ours).await.unwrap(),
        Some(with_ident.clone())
    );
    let err = store
        .set_identificativo(&a.id, &ours, &mid("other@pec.provider.it"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ConditionFailed { .. }),
        "another identificativo: {err:?}"
    );

    store
        .set_delivery(&a.id, &ours, &addr("uno@pec.it"), DeliveryState::Delivered)
        .await
        .expect("delivery");
    let found = store
        .find_outbound(&a.id, &ident)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(
        found.delivery[&addr("uno@pec.it")],
        DeliveryState::Delivered
    );
    assert_eq!(found.delivery[&addr("due@pec.it")], DeliveryState::Pending);

    let err = store
        .set_delivery(
            &a.id,
            &mid("unknown@x.it"),
            &addr("uno@pec.it"),
            DeliveryState::Accepted,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store
        .set_identificativo(&a.id, &mid("unknown@x.it"), &mid("i2@x.it"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    // Records are per account.
    let b = account("out-2");
    store.create_account(&b).await.unwrap();
    assert_eq!(store.find_outbound(&b.id, &ours).await.unwrap(), None);
}

pub async fn outbound_status_is_recorded_and_updated(env: &Env) {
    let store = &*env.store;
    let a = account("status-1");
    store.create_account(&a).await.unwrap();
    let ours = mid("<pecconn.43.1@acme.example.it>");
    let ident = mid("<opec210.20240601120000.4321.56.7.89@pec.provider.it>");
    let sending = OutboundRecord::sent(
        a.id.clone(),
        ours.clone(),
        ticket(43),
        vec![addr("uno@pec.it"), addr("due@pec.it")],
        now(),
    )
    .with_status(SendStatus::Sending);
    store
        .record_outbound(&sending)
        .await
        .expect("record sending");
    assert_eq!(
        store.find_outbound(&a.id, &ours).await.unwrap(),
        Some(sending.clone()),
        "recorded as sending"
    );

    store
        .set_outbound_status(&a.id, &ours, SendStatus::Sent)
        .await
        .expect("mark sent");
    assert_eq!(
        store.find_outbound(&a.id, &ours).await.unwrap(),
        Some(sending.clone().with_status(SendStatus::Sent)),
        "only the status changed"
    );

    // Unknown Message-ID, or the right one under another account: nothing to mark.
    let err = store
        .set_outbound_status(&a.id, &mid("unknown@x.it"), SendStatus::Sent)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("status-1"), "{err}");
    let b = account("status-2");
    store.create_account(&b).await.unwrap();
    let err = store
        .set_outbound_status(&b.id, &ours, SendStatus::Failed)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(store.find_outbound(&b.id, &ours).await.unwrap(), None);

    // The status survives the receipts' updates, and is seen by either id.
    store
        .set_outbound_status(&a.id, &ours, SendStatus::Failed)
        .await
        .expect("mark failed");
    store
        .set_identificativo(&a.id, &ours, &ident)
        .await
        .expect("identificativo");
    store
        .set_delivery(&a.id, &ours, &addr("due@pec.it"), DeliveryState::Accepted)
        .await
        .expect("delivery");
    let mut expected = sending.clone().with_status(SendStatus::Failed);
    expected.identificativo = Some(ident.clone());
    expected
        .delivery
        .insert(addr("due@pec.it"), DeliveryState::Accepted);
    assert_eq!(
        store.find_outbound(&a.id, &ours).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        store.find_outbound(&a.id, &ident).await.unwrap(),
        Some(expected.clone())
    );
    // And a change after the identificativo is seen through it too.
    store
        .set_outbound_status(&a.id, &ours, SendStatus::Sent)
        .await
        .expect("mark sent again");
    assert_eq!(
        store.find_outbound(&a.id, &ident).await.unwrap(),
        Some(expected.with_status(SendStatus::Sent))
    );

    // Each status is recorded as given.
    for (n, status) in [SendStatus::Sending, SendStatus::Sent, SendStatus::Failed]
        .into_iter()
        .enumerate()
    {
        let r = OutboundRecord::sent(
            a.id.clone(),
            mid(&format!("pecconn.44.{n}@acme.example.it")),
            ticket(44),
            vec![addr("tre@pec.it")],
            now(),
        )
        .with_status(status);
        store.record_outbound(&r).await.unwrap();
        let found = store.find_outbound(&a.id, &r.message_id).await.unwrap();
        assert_eq!(found.map(|f| f.status), Some(status));
    }
}

// ----- outbox -----

/// The per-ticket outbound watermark: none at first, then it only moves up, per ticket and
/// account; concurrent advances keep the highest.
pub async fn outbound_watermark_only_moves_up(env: &Env) {
    let store = &*env.store;
    let a = account("watermark-1");
    let b = account("watermark-2");
    store.create_account(&a).await.unwrap();
    store.create_account(&b).await.unwrap();
    assert_eq!(
        store.outbound_watermark(&a.id, ticket(5)).await.unwrap(),
        None
    );
    store
        .advance_outbound_watermark(&a.id, ticket(5), 100)
        .await
        .unwrap();
    store
        .advance_outbound_watermark(&a.id, ticket(5), 40)
        .await
        .expect("a lower comment is not an error");
    assert_eq!(
        store.outbound_watermark(&a.id, ticket(5)).await.unwrap(),
        Some(100)
    );
    assert_eq!(
        store.outbound_watermark(&a.id, ticket(6)).await.unwrap(),
        None
    );
    assert_eq!(
        store.outbound_watermark(&b.id, ticket(5)).await.unwrap(),
        None
    );
    let tasks: Vec<_> = (1..=20u64)
        .map(|i| {
            let store = Arc::clone(&env.store);
            let id = a.id.clone();
            tokio::spawn(async move {
                store
                    .advance_outbound_watermark(&id, ticket(6), 1000 + (i * 7) % 20)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("advance");
    }
    assert_eq!(
        store.outbound_watermark(&a.id, ticket(6)).await.unwrap(),
        Some(1019)
    );
}

/// A ticket create is noted once per account and marker: the first note says "never tried",
/// every later one (also from 20 racing callers, exactly one of which is first) "tried before".
pub async fn ticket_attempt_noted_once(env: &Env) {
    let store = &*env.store;
    let a = account("attempt-1");
    let b = account("attempt-2");
    store.create_account(&a).await.unwrap();
    store.create_account(&b).await.unwrap();
    let marker = "pec:attempt:7:42";
    assert!(store.note_ticket_attempt(&a.id, marker).await.unwrap());
    assert!(!store.note_ticket_attempt(&a.id, marker).await.unwrap());
    assert!(store.note_ticket_attempt(&b.id, marker).await.unwrap());
    assert!(
        store
            .note_ticket_attempt(&a.id, "pec:attempt:7:43")
            .await
            .unwrap()
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&env.store);
            let id = a.id.clone();
            tokio::spawn(async move { store.note_ticket_attempt(&id, "pec:race").await })
        })
        .collect();
    let mut first = 0;
    for t in tasks {
        if t.await.expect("task").expect("note") {
            first += 1;
        }
    }
    assert_eq!(first, 1, "exactly one caller is the first attempt");
}

pub async fn outbox_enqueue_claim_complete(env: &Env) {
    let store = &*env.store;
    let a = account("outbox-1");
    store.create_account(&a).await.unwrap();
    let t0 = now();
    let entry = |name: &str, at: DateTime<Utc>| {
        OutboxEntry::new(
            a.id.clone(),
            OutboxId::parse(name).unwrap(),
            ticket(7),
            serde_json::json!({"ticket": 7, "comment": 99, "nested": {"n": [1, 2.5, null]}}),
            at,
        )
    };
    let e1 = entry("send-1", t0);
    let e2 = entry("send-2", t0 + TimeDelta::minutes(10));
    let e3 = entry("send-3", t0 - TimeDelta::minutes(1));
    for e in [&e1, &e2, &e3] {
        store.enqueue_outbox(e).await.expect("enqueue");
    }
    let err = store.enqueue_outbox(&e1).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { .. }),
        "twice: {err:?}"
    );

    let (ha, hb, hc) = (
        LeaseHolder::parse("sender-a").unwrap(),
        LeaseHolder::parse("sender-b").unwrap(),
        LeaseHolder::parse("sender-c").unwrap(),
    );
    let ttl = Duration::from_secs(60);
    let got = store.claim_outbox(&a.id, &ha, t0, ttl, 10).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["send-3", "send-1"], "due entries, oldest first");
    assert!(got.iter().all(|e| e.attempts == 1));
    assert_eq!(got[1].payload, e1.payload);
    assert!(
        store
            .claim_outbox(&a.id, &hb, t0, ttl, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed entries are not handed out twice"
    );

    let err = store.complete_outbox(&a.id, &e1.id, &hb).await.unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "not the claimer: {err:?}"
    );
    store
        .complete_outbox(&a.id, &e1.id, &ha)
        .await
        .expect("complete");
    let err = store.complete_outbox(&a.id, &e1.id, &ha).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "completed: {err:?}"
    );

    store
        .retry_outbox(
            &a.id,
            &e3.id,
            &ha,
            t0 + TimeDelta::minutes(5),
            "451 4.3.0 try later",
        )
        .await
        .expect("retry");
    assert!(
        store
            .claim_outbox(&a.id, &hb, t0 + TimeDelta::minutes(1), ttl, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing due yet"
    );
    let got = store
        .claim_outbox(&a.id, &hb, t0 + TimeDelta::minutes(6), ttl, 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, e3.id);
    assert_eq!(got[0].attempts, 2);
    assert_eq!(got[0].last_error.as_deref(), Some("451 4.3.0 try later"));

    // B's claim expires: C takes e3 over, with e2 now due; the limit holds.
    let got = store
        .claim_outbox(&a.id, &hc, t0 + TimeDelta::minutes(11), ttl, 1)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, e3.id, "oldest first");
    let got = store
        .claim_outbox(&a.id, &hc, t0 + TimeDelta::minutes(11), ttl, 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, e2.id);
    let err = store.complete_outbox(&a.id, &e3.id, &hb).await.unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "expired claim: {err:?}"
    );
    store.complete_outbox(&a.id, &e3.id, &hc).await.unwrap();
    store.complete_outbox(&a.id, &e2.id, &hc).await.unwrap();
    assert!(
        store
            .claim_outbox(&a.id, &ha, t0 + TimeDelta::days(1), ttl, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn outbox_enqueued_claimed(env: &Env) {
    let store = &*env.store;
    let a = account("claimed-1");
    store.create_account(&a).await.unwrap();
    let t0 = now();
    let entry = |name: &str, attempts: u32| OutboxEntry {
        attempts,
        ..OutboxEntry::new(
            a.id.clone(),
            OutboxId::parse(name).unwrap(),
            ticket(8),
            serde_json::json!({"ticket": 8, "comment": 12}),
            t0,
        )
    };
    let (ha, hb) = (
        LeaseHolder::parse("sender-a").unwrap(),
        LeaseHolder::parse("sender-b").unwrap(),
    );
    let until = t0 + TimeDelta::minutes(2);
    let ttl = Duration::from_secs(60);
    let (retried, left, completed) = (entry("send-1", 1), entry("send-2", 0), entry("send-3", 3));
    for e in [&retried, &left, &completed] {
        store
            .enqueue_outbox_claimed(e, &ha, until)
            .await
            .expect("enqueue claimed");
    }

    // Due (not_before t0) but claimed by A until t0+2min: nobody gets them before.
    assert!(
        store
            .claim_outbox(&a.id, &hb, t0 + TimeDelta::minutes(1), ttl, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed when queued"
    );

    // Queued twice, claimed or not: refused, and the first claim stands.
    let err = store.enqueue_outbox(&retried).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { .. }),
        "unclaimed duplicate: {err:?}"
    );
    let err = store
        .enqueue_outbox_claimed(&retried, &hb, t0 + TimeDelta::minutes(9))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { .. }),
        "claimed duplicate: {err:?}"
    );
    let err = store
        .complete_outbox(&a.id, &retried.id, &hb)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "B does not hold it: {err:?}"
    );

    // A holds them as if it had claimed them.
    store
        .retry_outbox(
            &a.id,
            &retried.id,
            &ha,
            t0 + TimeDelta::minutes(5),
            "421 4.7.0 try later",
        )
        .await
        .expect("A retries");
    store
        .complete_outbox(&a.id, &completed.id, &ha)
        .await
        .expect("A completes");

    // After its claim ran out, the entry A left alone is B's; the retried one is not due yet.
    let got = store
        .claim_outbox(&a.id, &hb, t0 + TimeDelta::minutes(3), ttl, 10)
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![OutboxEntry {
            attempts: 1,
            ..left.clone()
        }],
        "the claim ran out; attempts count from the given ones"
    );
    let err = store
        .complete_outbox(&a.id, &left.id, &ha)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "A's claim ran out: {err:?}"
    );
    store.complete_outbox(&a.id, &left.id, &hb).await.unwrap();

    let got = store
        .claim_outbox(&a.id, &hb, t0 + TimeDelta::minutes(5), ttl, 10)
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![OutboxEntry {
            attempts: 2,
            not_before: t0 + TimeDelta::minutes(5),
            last_error: Some("421 4.7.0 try later".into()),
            ..retried.clone()
        }]
    );
    store
        .complete_outbox(&a.id, &retried.id, &hb)
        .await
        .unwrap();
    assert!(
        store
            .claim_outbox(&a.id, &hb, t0 + TimeDelta::days(1), ttl, 10)
            .await
            .unwrap()
            .is_empty(),
        "all done, the completed one included"
    );

    // No account, no entry.
    let ghost = id("ghost-2");
    let err = store
        .enqueue_outbox_claimed(
            &OutboxEntry::new(
                ghost.clone(),
                OutboxId::parse("s1").unwrap(),
                ticket(1),
                serde_json::json!({}),
                t0,
            ),
            &ha,
            until,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("ghost-2"), "{err}");
    assert!(
        env.raw
            .state()
            .await
            .iter()
            .all(|row| !row.contains("ghost-2")),
        "nothing created for a missing account"
    );
}

// ----- leases -----

pub async fn lease_one_of_twenty_wins(env: &Env) {
    let a = account("lease-1");
    env.store.create_account(&a).await.unwrap();
    let at = now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&env.store);
            let account = a.id.clone();
            tokio::spawn(async move {
                let holder = LeaseHolder::parse(&format!("taker-{i}")).unwrap();
                store.take_lease(&account, &holder, at, TTL).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut held_by = Vec::new();
    for t in tasks {
        match t.await.expect("task").expect("take lease") {
            LeaseOutcome::Acquired(l) => winners.push(l.holder),
            LeaseOutcome::Held { holder, .. } => held_by.push(holder),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    assert_eq!(held_by.len(), 19);
    assert!(
        held_by.iter().all(|h| *h == winners[0]),
        "losers see the winner"
    );
}

pub async fn lease_expired_can_be_taken_over(env: &Env) {
    let store = &*env.store;
    let a = account("lease-2");
    store.create_account(&a).await.unwrap();
    let (ha, hb) = (
        LeaseHolder::parse("poller-a").unwrap(),
        LeaseHolder::parse("poller-b").unwrap(),
    );
    let t0 = now();
    let ttl = Duration::from_secs(30);
    let la = match store.take_lease(&a.id, &ha, t0, ttl).await.unwrap() {
        LeaseOutcome::Acquired(l) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(la.expires_at, t0 + TimeDelta::seconds(30));
    match store
        .take_lease(&a.id, &hb, t0 + TimeDelta::seconds(10), ttl)
        .await
        .unwrap()
    {
        LeaseOutcome::Held { holder, expires_at } => {
            assert_eq!(holder, ha);
            assert_eq!(expires_at, la.expires_at);
        }
        other => panic!("live lease taken: {other:?}"),
    }
    // The holder may renew its own lease.
    let renewed = store
        .take_lease(&a.id, &ha, t0 + TimeDelta::seconds(20), ttl)
        .await
        .unwrap();
    assert!(matches!(renewed, LeaseOutcome::Acquired(_)), "{renewed:?}");
    let t_expired = t0 + TimeDelta::seconds(51);
    let lb = match store.take_lease(&a.id, &hb, t_expired, ttl).await.unwrap() {
        LeaseOutcome::Acquired(l) => l,
        other => panic!("expired lease not taken over: {other:?}"),
    };
    let err = store.release_lease(&la).await.unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "old holder released: {err:?}"
    );
    match store
        .take_lease(&a.id, &ha, t_expired + TimeDelta::seconds(1), ttl)
        .await
        .unwrap()
    {
        LeaseOutcome::Held { holder, .. } => assert_eq!(holder, hb),
        other => panic!("{other:?}"),
    }
    store.release_lease(&lb).await.unwrap();
}

pub async fn lease_released_only_by_holder(env: &Env) {
    let store = &*env.store;
    let a = account("lease-3");
    store.create_account(&a).await.unwrap();
    let la = lease(store, &a.id, "poller-a").await;
    let err = store
        .release_lease(&forged(&a.id, "poller-b"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "released by another: {err:?}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("lease-3"), "{err}");
    store.release_lease(&la).await.expect("holder releases");
    let err = store.release_lease(&la).await.unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "released twice: {err:?}"
    );
    // Free again at once.
    let lb = lease(store, &a.id, "poller-b").await;
    store.release_lease(&lb).await.unwrap();

    let err = store
        .take_lease(&id("ghost"), &la.holder, now(), TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "unknown account: {err:?}"
    );
}

/// The poll stats travel with the lease: stored by `release_lease_with(Some)`, returned by
/// `take_lease`, kept by a plain release and by the cursor writes.
pub async fn lease_release_keeps_poll_stats(env: &Env) {
    let store = &*env.store;
    let a = account("stats-1");
    store.create_account(&a).await.unwrap();
    let l = lease(store, &a.id, "poller-1").await;
    assert_eq!(
        l.stats,
        PollStats::default(),
        "no stats before the first poll"
    );

    let at = now();
    let failed = PollStats {
        last_poll_at: Some(at),
        last_success_at: None,
        last_error: Some("cannot read the mailbox: connection refused".into()),
        tickets_created: 0,
        comments_added: 0,
        receipts_noted: 0,
        unreadable: 0,
        failing: Some(connector::domain::FailingMessage {
            uid_validity: 7,
            uid: 3,
            failures: 2,
            last_error: "zendesk rejected the ticket (422)".into(),
        }),
        ..PollStats::default()
    };
    store.release_lease_with(&l, Some(&failed)).await.unwrap();
    let l = lease(store, &a.id, "poller-2").await;
    assert_eq!(l.stats, failed, "the lease carries the stored stats");

    // The stats survive the cursor writes.
    let base = Cursor::first_activation(uv(7), 1);
    store.advance_cursor(&l, None, &base).await.unwrap();
    store
        .record_message(&l, &record(&a.id, 7, 1, Some("stats.1@pec.it"), 11))
        .await
        .unwrap();
    let ok = PollStats {
        last_poll_at: Some(at + TimeDelta::minutes(5)),
        last_success_at: Some(at + TimeDelta::minutes(5)),
        last_error: None,
        tickets_created: 1,
        comments_added: 2,
        receipts_noted: 3,
        unreadable: 4,
        parked: 1,
        too_large: 2,
        gaps: 3,
        last_parked: Some(connector::domain::ParkedMessage {
            uid_validity: 7,
            uid: 3,
            ticket: Some(44),
            reason: "zendesk rejected the ticket (422)".into(),
            at: at + TimeDelta::minutes(5),
        }),
        failing: None,
        rate_limit_stops: 2,
        rate_limited: Some(connector::domain::RateLimitStop {
            at: at + TimeDelta::minutes(5),
            messages_left: 120,
            requests_left: Some(39),
            request_limit: Some(200),
        }),
        // The per-day activity travels in the same write (no write of its own).
        daily: vec![
            connector::domain::DayActivity {
                received: 5,
                failures: 1,
                ..connector::domain::DayActivity::empty((at - TimeDelta::days(1)).date_naive())
            },
            connector::domain::DayActivity {
                received: 3,
                sent: 2,
                receipts: 3,
                failures: 4,
                day: at.date_naive(),
            },
        ],
    };
    store.release_lease_with(&l, Some(&ok)).await.unwrap();
    let l = lease(store, &a.id, "poller-3").await;
    assert_eq!(l.stats, ok, "new stats replace the old ones");
    assert_eq!(l.cursor, Some(base.advanced_to(uid(1))));

    // A plain release (the admin's status read) keeps them.
    store.release_lease(&l).await.unwrap();
    let l = lease(store, &a.id, "poller-4").await;
    assert_eq!(l.stats, ok, "a plain release keeps the stored stats");
    let cursor = l.cursor;
    store
        .advance_cursor(&l, cursor.as_ref(), &Cursor::first_activation(uv(9), 5))
        .await
        .unwrap();
    store.release_lease_with(&l, None).await.unwrap();

    // Without the lease, nothing is stored.
    let other = PollStats {
        tickets_created: 99,
        ..ok.clone()
    };
    let err = store
        .release_lease_with(&forged(&a.id, "intruder"), Some(&other))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotHeld { .. }),
        "released by another: {err:?}"
    );
    let l = lease(store, &a.id, "poller-5").await;
    assert_eq!(l.stats, ok, "a refused release stores nothing");
    assert_eq!(l.cursor, Some(Cursor::first_activation(uv(9), 5)));
    store.release_lease(&l).await.unwrap();

    // Each account has its own.
    let b = account("stats-2");
    store.create_account(&b).await.unwrap();
    let lb = lease(store, &b.id, "poller-1").await;
    assert_eq!(lb.stats, PollStats::default());
    store.release_lease(&lb).await.unwrap();
}

/// The poll state (cursor and stats) is read as stored, whoever holds the lease, and reading it
/// writes nothing: the lease stays with its holder, until the same expiry.
pub async fn poll_state_is_read_without_the_lease(env: &Env) {
    let store = &*env.store;
    assert_eq!(store.poll_state(&id("ghost-2")).await.unwrap(), None);
    let a = account("state-1");
    store.create_account(&a).await.unwrap();
    assert_eq!(
        store.poll_state(&a.id).await.unwrap(),
        Some((None, PollStats::default())),
        "a new account: no cursor, no stats"
    );

    // A poll records a baseline and a message, and leaves its stats.
    let l = lease(store, &a.id, "poller-1").await;
    let base = Cursor::first_activation(uv(3), 10);
    store.advance_cursor(&l, None, &base).await.unwrap();
    store
        .record_message(&l, &record(&a.id, 3, 10, Some("state.10@pec.it"), 21))
        .await
        .unwrap();
    let stats = PollStats {
        last_poll_at: Some(now()),
        last_success_at: Some(now()),
        tickets_created: 1,
        ..PollStats::default()
    };
    store.release_lease_with(&l, Some(&stats)).await.unwrap();
    let expected = Some((Some(base.advanced_to(uid(10))), stats.clone()));
    assert_eq!(store.poll_state(&a.id).await.unwrap(), expected);

    // The next poll holds the lease: the state is read all the same, and nothing is written.
    let held = lease(store, &a.id, "poller-2").await;
    let before = env.raw.state().await;
    assert_eq!(store.poll_state(&a.id).await.unwrap(), expected);
    assert_eq!(store.poll_state(&a.id).await.unwrap(), expected);
    assert_eq!(env.raw.state().await, before, "reading wrote nothing");
    match store
        .take_lease(&a.id, &LeaseHolder::parse("status").unwrap(), now(), TTL)
        .await
        .unwrap()
    {
        LeaseOutcome::Held { holder, expires_at } => {
            assert_eq!(holder, held.holder);
            assert_eq!(expires_at, held.expires_at, "the lease is not extended");
        }
        other => panic!("the poller's lease was taken: {other:?}"),
    }
    // The holder still finishes its poll.
    store
        .record_message(&held, &record(&a.id, 3, 11, Some("state.11@pec.it"), 22))
        .await
        .unwrap();
    store.release_lease(&held).await.unwrap();
    assert_eq!(
        store.poll_state(&a.id).await.unwrap(),
        Some((Some(base.advanced_to(uid(11))), stats))
    );
}

// ----- errors on a missing account -----

pub async fn missing_account_is_a_typed_error(env: &Env) {
    let store = &*env.store;
    let ghost = id("ghost-1");
    let sent = OutboundRecord::sent(
        ghost.clone(),
        mid("x@y.it"),
        ticket(1),
        vec![addr("a@pec.it")],
        now(),
    );
    let errors = [
        store.record_outbound(&sent).await.unwrap_err(),
        store
            .enqueue_outbox(&OutboxEntry::new(
                ghost.clone(),
                OutboxId::parse("s1").unwrap(),
                ticket(1),
                serde_json::json!({}),
                now(),
            ))
            .await
            .unwrap_err(),
        store
            .enqueue_outbox_claimed(
                &OutboxEntry::new(
                    ghost.clone(),
                    OutboxId::parse("s2").unwrap(),
                    ticket(1),
                    serde_json::json!({}),
                    now(),
                ),
                &LeaseHolder::parse("p").unwrap(),
                now() + TimeDelta::minutes(1),
            )
            .await
            .unwrap_err(),
        store
            .set_outbound_status(&ghost, &mid("x@y.it"), SendStatus::Sent)
            .await
            .unwrap_err(),
        store.update_account(&account("ghost-1")).await.unwrap_err(),
        store
            .take_lease(&ghost, &LeaseHolder::parse("p").unwrap(), now(), TTL)
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains("ghost-1"),
            "names the account: {err}"
        );
    }
    // Nothing was created on the way.
    assert!(
        env.raw.state().await.is_empty(),
        "{:?}",
        env.raw.state().await
    );
}

// ----- secrets -----

pub async fn secrets_lifecycle(env: &Env) {
    let secrets = &*env.secrets;
    let pw = SecretName::AccountPassword(id("sec-1"));
    secrets
        .put(&pw, &SecretString::from("first"))
        .await
        .unwrap();
    assert_eq!(secrets.get(&pw).await.unwrap().expose_secret(), "first");
    secrets
        .put(&pw, &SecretString::from("rotated"))
        .await
        .unwrap();
    assert_eq!(secrets.get(&pw).await.unwrap().expose_secret(), "rotated");
    for (name, value) in [
        (SecretName::ZendeskApiToken, "zd-token"),
        (SecretName::WebhookSigningSecret, "whsec"),
        (SecretName::AdminToken, "admin"),
        (SecretName::ZendeskToken(instance_id("zd-2")), "zd2-token"),
        (
            SecretName::InstanceWebhookSigningSecret(instance_id("zd-2")),
            "zd2-whsec",
        ),
        (
            SecretName::InstanceWebhookBearerToken(instance_id("zd-2")),
            "zd2-bearer",
        ),
    ] {
        secrets
            .put(&name, &SecretString::from(value))
            .await
            .unwrap();
        assert_eq!(secrets.get(&name).await.unwrap().expose_secret(), value);
    }
    assert_eq!(
        secrets.list().await.unwrap(),
        vec![
            pw.clone(),
            SecretName::ZendeskApiToken,
            SecretName::WebhookSigningSecret,
            SecretName::ZendeskToken(instance_id("zd-2")),
            SecretName::InstanceWebhookSigningSecret(instance_id("zd-2")),
            SecretName::InstanceWebhookBearerToken(instance_id("zd-2")),
            SecretName::AdminToken
        ]
    );
    // An instance's secrets are its own: deleting one leaves the others and the defaults.
    secrets
        .delete(&SecretName::ZendeskToken(instance_id("zd-2")))
        .await
        .unwrap();
    assert!(matches!(
        secrets
            .get(&SecretName::ZendeskToken(instance_id("zd-2")))
            .await
            .unwrap_err(),
        SecretsError::NotFound { .. }
    ));
    assert_eq!(
        secrets
            .get(&SecretName::InstanceWebhookBearerToken(instance_id("zd-2")))
            .await
            .unwrap()
            .expose_secret(),
        "zd2-bearer"
    );
    assert_eq!(
        secrets
            .get(&SecretName::ZendeskApiToken)
            .await
            .unwrap()
            .expose_secret(),
        "zd-token"
    );
    let missing = SecretName::AccountPassword(id("sec-2"));
    let err = secrets.get(&missing).await.unwrap_err();
    assert!(matches!(err, SecretsError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("sec-2"), "{err}");
    secrets.delete(&pw).await.unwrap();
    assert!(matches!(
        secrets.get(&pw).await.unwrap_err(),
        SecretsError::NotFound { .. }
    ));
    secrets.delete(&pw).await.expect("deleting twice is fine");
    assert!(
        !format!("{:?}", secrets.get(&SecretName::AdminToken).await.unwrap()).contains("admin"),
        "Debug redacts"
    );
}

// ----- schedules -----

pub async fn schedules_lifecycle(env: &Env) {
    let schedules = &*env.schedules;
    let s1 = Schedule {
        account: id("sched-1"),
        interval: PollInterval::DEFAULT,
        enabled: true,
    };
    schedules.put(&s1).await.unwrap();
    assert_eq!(schedules.get(&s1.account).await.unwrap(), Some(s1.clone()));

    let s1_slow = Schedule {
        interval: PollInterval::minutes(15).unwrap(),
        ..s1.clone()
    };
    schedules.put(&s1_slow).await.unwrap();
    assert_eq!(
        schedules.get(&s1.account).await.unwrap(),
        Some(s1_slow.clone())
    );

    schedules.set_enabled(&s1.account, false).await.unwrap();
    assert!(!schedules.get(&s1.account).await.unwrap().unwrap().enabled);
    schedules.set_enabled(&s1.account, true).await.unwrap();
    assert!(schedules.get(&s1.account).await.unwrap().unwrap().enabled);
    let err = schedules
        .set_enabled(&id("sched-none"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, SchedulesError::NotFound { .. }), "{err:?}");

    let s2 = Schedule {
        account: id("sched-2"),
        interval: PollInterval::minutes(1).unwrap(),
        enabled: false,
    };
    let s3 = Schedule {
        account: id("sched-3"),
        interval: PollInterval::minutes(60).unwrap(),
        enabled: true,
    };
    schedules.put(&s2).await.unwrap();
    schedules.put(&s3).await.unwrap();
    assert_eq!(
        schedules.list().await.unwrap(),
        vec![s1_slow, s2.clone(), s3.clone()]
    );

    schedules.delete(&s1.account).await.unwrap();
    assert_eq!(schedules.get(&s1.account).await.unwrap(), None);
    schedules
        .delete(&s1.account)
        .await
        .expect("deleting twice is fine");
    assert_eq!(schedules.list().await.unwrap(), vec![s2, s3]);
}

// ----- deleting an account -----

/// Gives an account every kind of state, a password and a schedule.
pub async fn populate(env: &Env, raw_id: &str, password: &str) -> Account {
    let store = &*env.store;
    let a = account(raw_id);
    env.secrets
        .put(&a.password_secret_name(), &SecretString::from(password))
        .await
        .unwrap();
    store.create_account(&a).await.unwrap();
    env.schedules
        .put(&Schedule {
            account: a.id.clone(),
            interval: a.poll_interval,
            enabled: true,
        })
        .await
        .unwrap();
    let l = lease(store, &a.id, "poller-1").await;
    store
        .advance_cursor(&l, None, &Cursor::first_activation(uv(3), 10))
        .await
        .unwrap();
    for u in 10..13 {
        let r = record(
            &a.id,
            3,
            u,
            Some(&format!("m{u}.{raw_id}@pec.it")),
            500 + u64::from(u),
        );
        store.record_message(&l, &r).await.unwrap();
    }
    let ours = mid(&format!("sent.{raw_id}@example.it"));
    store
        .record_outbound(&OutboundRecord::sent(
            a.id.clone(),
            ours.clone(),
            ticket(77),
            vec![addr("dest@pec.it")],
            now(),
        ))
        .await
        .unwrap();
    store
        .set_identificativo(&a.id, &ours, &mid(&format!("opec.{raw_id}@pec.it")))
        .await
        .unwrap();
    store
        .enqueue_outbox(&OutboxEntry::new(
            a.id.clone(),
            OutboxId::parse("retry-1").unwrap(),
            ticket(77),
            serde_json::json!({"ticket": 77}),
            now(),
        ))
        .await
        .unwrap();
    store
        .advance_outbound_watermark(&a.id, ticket(77), 9001)
        .await
        .unwrap();
    assert!(
        store
            .note_ticket_attempt(&a.id, &format!("pec:{raw_id}:1:1"))
            .await
            .unwrap()
    );
    // Leave the lease held, as a crashed poller would.
    a
}

pub async fn delete_account_leaves_nothing(env: &Env) {
    let gone = populate(env, "gone-1", "gone-password").await;
    let kept = populate(env, "kept-1", "kept-password").await;
    let before = env.raw.state().await;
    assert!(before.iter().any(|r| r.contains("gone-1")));

    let existed = remove_account(&*env.store, &*env.secrets, &*env.schedules, &gone.id)
        .await
        .expect("remove account");
    assert!(existed);

    let state = env.raw.state().await;
    let secrets = env.raw.secrets().await;
    let schedules = env.raw.schedules().await;
    eprintln!(
        "after deleting {}: {} stored items/rows, secrets {secrets:?}, schedules {schedules:?}",
        gone.id,
        state.len()
    );
    let orphans: Vec<&String> = state.iter().filter(|r| r.contains("gone-1")).collect();
    assert!(orphans.is_empty(), "state left behind: {orphans:#?}");
    assert!(
        secrets.iter().all(|s| !s.contains("gone-1")),
        "secret left behind: {secrets:?}"
    );
    assert!(
        schedules.iter().all(|s| !s.contains("gone-1")),
        "schedule left behind: {schedules:?}"
    );
    // The other account is untouched.
    assert!(state.iter().any(|r| r.contains("kept-1")));
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert_eq!(schedules.len(), 1, "{schedules:?}");
    assert_eq!(env.store.list_accounts().await.unwrap(), vec![kept.clone()]);
    assert_eq!(
        env.secrets
            .get(&kept.password_secret_name())
            .await
            .unwrap()
            .expose_secret(),
        "kept-password"
    );

    // Through the ports, too.
    assert_eq!(env.store.get_account(&gone.id).await.unwrap(), None);
    assert!(matches!(
        env.secrets
            .get(&gone.password_secret_name())
            .await
            .unwrap_err(),
        SecretsError::NotFound { .. }
    ));
    assert_eq!(env.schedules.get(&gone.id).await.unwrap(), None);
    // Removing again is harmless.
    assert!(
        !remove_account(&*env.store, &*env.secrets, &*env.schedules, &gone.id)
            .await
            .unwrap()
    );
}

// ----- the poll's store protocol, for measuring -----

/// The store calls one poll of an account makes, in order: take the lease (which returns the
/// cursor), read the account, record each new message (recording moves the cursor), release.
pub async fn poll_once(store: &dyn Store, account: &AccountId, new: &[MessageRecord]) {
    let holder = LeaseHolder::unique("poll");
    let lease = match store
        .take_lease(account, &holder, now(), TTL)
        .await
        .expect("take lease")
    {
        LeaseOutcome::Acquired(l) => l,
        other => panic!("{other:?}"),
    };
    assert!(lease.cursor.is_some(), "the lease carries the cursor");
    let settings = store.get_account(account).await.expect("read account");
    assert!(settings.is_some());
    for r in new {
        let outcome = store.record_message(&lease, r).await.expect("record");
        assert_eq!(outcome, RecordOutcome::Recorded);
    }
    // As a poll does: the release also stores the poll's stats.
    let stats = PollStats {
        last_poll_at: Some(now()),
        last_success_at: Some(now()),
        last_error: None,
        tickets_created: lease.stats.tickets_created + new.len() as u64,
        ..lease.stats.clone()
    };
    store
        .release_lease_with(&lease, Some(&stats))
        .await
        .expect("release");
}

/// An account with a baseline cursor (uidvalidity 5, nothing processed yet), ready for
/// [`poll_once`].
pub async fn ready_to_poll(store: &dyn Store, raw_id: &str) -> AccountId {
    let a = account(raw_id);
    store.create_account(&a).await.unwrap();
    let l = lease(store, &a.id, "setup").await;
    store
        .advance_cursor(&l, None, &Cursor::first_activation(uv(5), 1))
        .await
        .unwrap();
    store.release_lease(&l).await.unwrap();
    a.id
}
