//! What account passwords cost, through the real AWS SDK to moto: the passwords a process keeps
//! between runs (counted on the wire), many accounts to a secret under the 64 KB limit, two
//! rotations of one shard at once, the old one-secret-per-account layout, a refused login, and
//! what an idle poll asks of each service (the inputs of the README's cost model).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use connector::domain::{AccountId, SecretName};
use connector::outbound::Outbound;
use connector::ports::{Secrets, Store};
use connector::secrets::SecretsError;
use connector::secrets::aws::AwsSecrets;
use connector::secrets::cache::{CachedSecrets, Freshness};
use connector::secrets::shared::{MAX_VALUE_BYTES, SharedSecrets};
use connector::store::dynamo::{DynamoStore, TableDefinition};
use e2e::counting::{DynamoCounter, SecretsCounter};
use e2e::env::{counted_secrets_client, moto_config, unique_name};
use e2e::inbound_env::InboundEnv;
use lambda_runtime::{Context, LambdaEvent};
use secrecy::{ExposeSecret, SecretString};

mod shared_contract {
    e2e::contract_tests!(e2e::env::aws_shared;
        secrets_lifecycle,
        delete_account_leaves_nothing,
    );
}

mod cached_files_contract {
    e2e::contract_tests!(e2e::env::embedded_cached;
        secrets_lifecycle,
        delete_account_leaves_nothing,
    );
}

fn id(raw: &str) -> AccountId {
    AccountId::parse(raw).expect("account id")
}

fn pw(raw: &str) -> SecretName {
    SecretName::AccountPassword(id(raw))
}

async fn value(s: &dyn Secrets, name: &SecretName) -> String {
    s.get(name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .expose_secret()
        .to_owned()
}

/// One process's view of the shared layout under `prefix`, its requests counted by `counter`.
async fn process(prefix: &str, counter: &SecretsCounter) -> SharedSecrets {
    SharedSecrets::new(
        counted_secrets_client(counter).await,
        prefix,
        Freshness::DEFAULT,
    )
}

/// The password shards under `prefix`: name and value, read around the adapter.
async fn shards(prefix: &str) -> Vec<(String, String)> {
    let sm = aws_sdk_secretsmanager::Client::new(&moto_config().await);
    let mut out = Vec::new();
    for n in 0.. {
        let name = format!("{prefix}/{}", connector::secrets::shard_key(n));
        match sm
            .get_secret_value()
            .secret_id(&name)
            .version_stage("AWSCURRENT")
            .send()
            .await
        {
            Ok(v) => out.push((name, v.secret_string.unwrap_or_default())),
            Err(_) => break,
        }
    }
    out
}

/// Removes the test's shards from moto (each keeps every version it was written as).
async fn drop_shards(prefix: &str) {
    let sm = aws_sdk_secretsmanager::Client::new(&moto_config().await);
    for (name, _) in shards(prefix).await {
        let _ = sm
            .delete_secret()
            .secret_id(&name)
            .force_delete_without_recovery(true)
            .send()
            .await;
    }
}

/// A password shaped like real ones: 12 to 43 characters, some with characters JSON escapes.
fn password(i: usize) -> String {
    let tail = if i.is_multiple_of(7) { "\"\\è" } else { "" };
    format!("Pw{i:05}-{}{tail}", "x".repeat(5 + i % 32))
}

/// Runs `work(i)` for every `i` in `0..n`, `width` at a time.
async fn each<F, Fut>(n: usize, width: usize, work: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::Semaphore::new(width));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let job = work(i);
        tasks.spawn(async move {
            job.await;
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_accounts_fit_in_a_few_secrets_under_64_kb() {
    let prefix = unique_name();
    let api_counter = SecretsCounter::default();
    let api = Arc::new(process(&prefix, &api_counter).await);
    let n = 2000;
    let started = Instant::now();
    {
        let api = api.clone();
        // One writer: moto answers one request at a time, so racing writers only add retries
        // (two_rotations_in_one_shard_at_once_are_both_kept races them).
        each(n, 1, move |i| {
            let api = api.clone();
            async move {
                api.put(
                    &pw(&format!("acc-{i:04}")),
                    &SecretString::from(password(i)),
                )
                .await
                .expect("put");
            }
        })
        .await;
    }
    let writes = api_counter.take();
    let stored = shards(&prefix).await;
    let sizes: Vec<usize> = stored.iter().map(|(_, v)| v.len()).collect();
    eprintln!(
        "{n} accounts stored in {:?}: shards of {sizes:?} bytes; requests {writes:?}",
        started.elapsed()
    );
    assert!(sizes.iter().all(|s| *s <= MAX_VALUE_BYTES), "{sizes:?}");
    let total: usize = sizes.iter().sum();
    // As few shards as the passwords need (each filled to 48 KB before the next is made).
    assert_eq!(stored.len(), total.div_ceil(48 * 1024), "{sizes:?}");
    assert!(stored.len() <= 4, "{sizes:?}");
    // Every account is in exactly one shard.
    let mut seen = BTreeMap::new();
    for (name, v) in &stored {
        let map: BTreeMap<String, String> = serde_json::from_str(v).unwrap();
        for k in map.keys() {
            assert!(seen.insert(k.clone(), name.clone()).is_none(), "{k} twice");
        }
    }
    assert_eq!(seen.len(), n);

    // A fresh process (a cold poller) reads every password with one request per shard.
    let poller_counter = SecretsCounter::default();
    let poller = process(&prefix, &poller_counter).await;
    for i in (0..n).rev() {
        assert_eq!(
            value(&poller, &pw(&format!("acc-{i:04}"))).await,
            password(i)
        );
    }
    let reads = poller_counter.take();
    eprintln!("a cold process read {n} passwords with {reads:?}");
    assert_eq!(
        reads,
        BTreeMap::from([("GetSecretValue", stored.len() as u32)])
    );

    // Listed, 100 deleted (every twentieth account), listed again.
    let listed = api.list().await.unwrap();
    assert_eq!(listed.len(), n);
    let gone = |i: usize| i % 20 == 18;
    {
        let api = api.clone();
        each(n, 2, move |i| {
            let api = api.clone();
            async move {
                if gone(i) {
                    api.delete(&pw(&format!("acc-{i:04}")))
                        .await
                        .expect("delete");
                }
            }
        })
        .await;
    }
    let listed = api.list().await.unwrap();
    assert_eq!(listed.len(), n - n / 20);
    assert!(listed.contains(&pw("acc-0001")) && !listed.contains(&pw("acc-0018")));
    let stored = shards(&prefix).await;
    for (_, v) in &stored {
        assert!(!v.contains("\"acc-0018\""), "deleted from its shard");
    }
    let fresh = process(&prefix, &SecretsCounter::default()).await;
    assert!(matches!(
        fresh.get(&pw("acc-1998")).await.unwrap_err(),
        SecretsError::NotFound { .. }
    ));
    assert_eq!(value(&fresh, &pw("acc-1999")).await, password(1999));
    // Accounts added later fill the room the deleted ones left: no new shard.
    let before = shards(&prefix).await.len();
    for i in 0..10 {
        api.put(&pw(&format!("new-{i}")), &SecretString::from(password(i)))
            .await
            .unwrap();
    }
    let after = shards(&prefix).await;
    assert_eq!(after.len(), before);
    assert!(after[0].1.contains("\"new-0\""));
    drop_shards(&prefix).await;
}

/// Two admin calls in two processes change the passwords of two accounts of one shard at the
/// same moment: Secrets Manager has no conditional write, and a plain read-modify-write would
/// lose one. Both are kept, every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_rotations_in_one_shard_at_once_are_both_kept() {
    let prefix = unique_name();
    let (ca, cb) = (SecretsCounter::default(), SecretsCounter::default());
    let a = Arc::new(process(&prefix, &ca).await);
    let b = Arc::new(process(&prefix, &cb).await);
    a.put(&pw("acc-a"), &SecretString::from("a-0"))
        .await
        .unwrap();
    b.put(&pw("acc-b"), &SecretString::from("b-0"))
        .await
        .unwrap();
    assert_eq!(shards(&prefix).await.len(), 1, "one shard holds both");
    ca.take();
    cb.take();

    let rounds = 20;
    for round in 1..=rounds {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (a2, b2, ba, bb) = (a.clone(), b.clone(), barrier.clone(), barrier);
        let ta = tokio::spawn(async move {
            ba.wait().await;
            a2.put(&pw("acc-a"), &SecretString::from(format!("a-{round}")))
                .await
        });
        let tb = tokio::spawn(async move {
            bb.wait().await;
            b2.put(&pw("acc-b"), &SecretString::from(format!("b-{round}")))
                .await
        });
        ta.await.unwrap().expect("rotation of acc-a");
        tb.await.unwrap().expect("rotation of acc-b");
        let (_, raw) = &shards(&prefix).await[0];
        let map: BTreeMap<String, String> = serde_json::from_str(raw).unwrap();
        assert_eq!(map["acc-a"], format!("a-{round}"), "round {round}: {map:?}");
        assert_eq!(map["acc-b"], format!("b-{round}"), "round {round}: {map:?}");
    }
    // Each rotation wrote at least once; the extra writes are the races each lost and redid.
    let writes = ca.take_op("PutSecretValue") + cb.take_op("PutSecretValue");
    let lost = writes - 2 * rounds;
    eprintln!(
        "{rounds} rounds of two rotations at once: {writes} writes, {lost} lost races redone"
    );
    assert!(
        lost > 0,
        "the rotations never raced: the test proves nothing"
    );

    // Eight processes, eight accounts, three rounds each, all at once.
    let writers: Vec<Arc<SharedSecrets>> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(Arc::new(process(&prefix, &SecretsCounter::default()).await));
        }
        v
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (w, writer) in writers.iter().enumerate() {
        let writer = writer.clone();
        tasks.spawn(async move {
            for round in 0..3 {
                writer
                    .put(
                        &pw(&format!("acc-w{w}")),
                        &SecretString::from(format!("w{w}-{round}")),
                    )
                    .await
                    .expect("rotation");
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let fresh = process(&prefix, &SecretsCounter::default()).await;
    for w in 0..8 {
        assert_eq!(
            value(&fresh, &pw(&format!("acc-w{w}"))).await,
            format!("w{w}-2")
        );
    }
    assert_eq!(value(&fresh, &pw("acc-a")).await, format!("a-{rounds}"));
    drop_shards(&prefix).await;
}

/// A process reads a password once and keeps it; a change made through the admin API in another
/// process is used at once by the next read that names the account's `password_set_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_password_is_read_again_only_when_it_changed() {
    for shared in [true, false] {
        let prefix = unique_name();
        let (api_counter, poller_counter) = (SecretsCounter::default(), SecretsCounter::default());
        let (api, poller): (Box<dyn Secrets>, Box<dyn Secrets>) = if shared {
            (
                Box::new(process(&prefix, &api_counter).await),
                Box::new(process(&prefix, &poller_counter).await),
            )
        } else {
            let cached = |c: aws_sdk_secretsmanager::Client| {
                CachedSecrets::new(AwsSecrets::new(c, prefix.clone()), Freshness::DEFAULT)
            };
            (
                Box::new(cached(counted_secrets_client(&api_counter).await)),
                Box::new(cached(counted_secrets_client(&poller_counter).await)),
            )
        };
        let layout = if shared { "shared" } else { "per-account" };
        let a = pw("acc-1");
        api.put(&a, &SecretString::from("one")).await.unwrap();
        let registered = Utc::now() - chrono::Duration::minutes(10);

        // 100 polls: one read.
        for _ in 0..100 {
            let v = poller.get_current(&a, Some(registered)).await.unwrap();
            assert_eq!(v.expose_secret(), "one");
        }
        assert_eq!(poller_counter.take_all(), 1, "{layout}");

        // The admin API changes it in the other process (stamping the account first).
        let set_at = Utc::now();
        api.put(&a, &SecretString::from("two")).await.unwrap();
        // Nothing says so: the copy stands (up to its TTL).
        assert_eq!(value(&*poller, &a).await, "one", "{layout}");
        // The next poll reads the account, whose password_set_at is newer than the copy.
        let v = poller.get_current(&a, Some(set_at)).await.unwrap();
        assert_eq!(v.expose_secret(), "two", "{layout}");
        assert_eq!(poller_counter.take_all(), 1, "{layout}");

        // A refused login: the copy is dropped and read again once.
        poller.forget(&a);
        assert_eq!(value(&*poller, &a).await, "two");
        assert_eq!(value(&*poller, &a).await, "two");
        assert_eq!(poller_counter.take_all(), 1, "{layout}");
        if shared {
            drop_shards(&prefix).await;
        } else {
            api.delete(&a).await.unwrap();
        }
    }
}

/// A deployment made before the shared layout keeps working: an account's own secret is read
/// while no shard has the account, and its next password change moves it into a shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_with_a_secret_of_their_own_are_read_and_moved_on_rotation() {
    let prefix = unique_name();
    let old = AwsSecrets::new(
        aws_sdk_secretsmanager::Client::new(&moto_config().await),
        prefix.clone(),
    );
    old.put(&pw("old-1"), &SecretString::from("legacy-1"))
        .await
        .unwrap();
    old.put(&pw("old-2"), &SecretString::from("legacy-2"))
        .await
        .unwrap();
    let counter = SecretsCounter::default();
    let shared = process(&prefix, &counter).await;
    shared
        .put(&pw("new-1"), &SecretString::from("fresh"))
        .await
        .unwrap();
    counter.take();
    assert_eq!(value(&shared, &pw("old-1")).await, "legacy-1");
    assert_eq!(value(&shared, &pw("old-1")).await, "legacy-1");
    assert_eq!(value(&shared, &pw("new-1")).await, "fresh");
    // Shard 0 is kept since the write; shard 1 (there is none) and the account's own secret
    // are read once, then kept.
    assert_eq!(
        counter.take(),
        BTreeMap::from([("GetSecretValue", 2)]),
        "old-1 read once"
    );
    let mut listed = shared.list().await.unwrap();
    listed.sort();
    assert_eq!(listed, vec![pw("new-1"), pw("old-1"), pw("old-2")]);

    shared
        .put(&pw("old-1"), &SecretString::from("rotated"))
        .await
        .unwrap();
    assert_eq!(value(&shared, &pw("old-1")).await, "rotated");
    assert!(matches!(
        old.get(&pw("old-1")).await.unwrap_err(),
        SecretsError::NotFound { .. }
    ));
    let fresh = process(&prefix, &SecretsCounter::default()).await;
    assert_eq!(value(&fresh, &pw("old-1")).await, "rotated");
    assert_eq!(value(&fresh, &pw("old-2")).await, "legacy-2");
    shared.delete(&pw("old-2")).await.unwrap();
    // This process keeps its copy until it is dropped (a deleted account is polled no more).
    assert!(fresh.get(&pw("old-2")).await.is_ok());
    fresh.forget(&pw("old-2"));
    assert!(matches!(
        fresh.get(&pw("old-2")).await.unwrap_err(),
        SecretsError::NotFound { .. }
    ));
    old.delete(&pw("old-2")).await.unwrap();
    drop_shards(&prefix).await;
}

/// The admin API on the shared layout: accounts registered, rotated, polled and deleted, their
/// passwords in one secret throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_keeps_passwords_in_a_shared_secret() {
    use e2e::admin_env::AdminEnv;
    let env = AdminEnv::shared().await;
    let prefix = env.env.raw.prefix().unwrap();
    let (a, b) = (env.new_address("shared-a"), env.new_address("shared-b"));
    let mut ids = Vec::new();
    for address in [&a, &b] {
        let r = env
            .admin("POST", "/accounts", Some(&env.registration(address)))
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let password_secrets = || async {
        env.env
            .raw
            .secrets()
            .await
            .into_iter()
            .filter(|s| s.contains("/account"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        password_secrets().await,
        [format!("{prefix}/accounts/0 [{}, {}]", ids[0], ids[1])]
    );
    let p = env
        .admin(
            "PATCH",
            &format!("/accounts/{}", ids[0]),
            Some(&serde_json::json!({"password": e2e::inbound_env::PASSWORD})),
        )
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    let polled = env
        .admin("POST", &format!("/accounts/{}/poll", ids[0]), None)
        .await;
    assert_eq!(polled.status, 200, "{polled:?}");
    assert_eq!(
        env.admin("DELETE", &format!("/accounts/{}", ids[0]), None)
            .await
            .status,
        204
    );
    assert_eq!(
        password_secrets().await,
        [format!("{prefix}/accounts/0 [{}]", ids[1])]
    );
    assert_eq!(
        env.admin("DELETE", &format!("/accounts/{}", ids[1]), None)
            .await
            .status,
        204
    );
    // An empty shard stays for the next account.
    assert_eq!(
        password_secrets().await,
        [format!("{prefix}/accounts/0 []")]
    );
    drop_shards(&prefix).await;
}

/// An invocation context whose deadline is `seconds` from now.
fn context(seconds: u64) -> Context {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut context = Context::default();
    context.request_id = "secrets-test".to_owned();
    context.deadline = now_ms + seconds * 1000;
    context
}

/// One scheduled run through the poller Lambda's handler.
async fn run(
    inbound: &connector::inbound::Inbound,
    outbound: Option<&Outbound>,
    account: &AccountId,
) -> Result<poller::Response, lambda_runtime::Error> {
    let event = serde_json::json!({"account_id": account.as_str()});
    poller::handle(inbound, outbound, LambdaEvent::new(event, context(60))).await
}

/// The provider refuses the password this process keeps (it was changed around the admin API):
/// the run forgets it, and the next run reads the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_makes_the_next_run_read_the_password_again() {
    let env = InboundEnv::new("refused").await;
    let prefix = unique_name();
    let counter = SecretsCounter::default();
    let secrets: Arc<dyn Secrets> = Arc::new(process(&prefix, &counter).await);
    let other = process(&prefix, &SecretsCounter::default()).await;
    let name = env.account.password_secret_name();
    other
        .put(&name, &SecretString::from("expired-app-password"))
        .await
        .unwrap();
    let inbound = connector::inbound::Inbound {
        secrets: secrets.clone(),
        ..env.inbound.clone()
    };

    for _ in 0..2 {
        let r = run(&inbound, None, &env.account.id).await.unwrap();
        assert!(matches!(r, poller::Response::MailboxProblem(_)), "{r:?}");
        assert_eq!(counter.take_all(), 1, "a refused password is not kept");
    }
    // Fixed in Secrets Manager, not through the admin API: the account does not say so.
    other
        .put(&name, &SecretString::from(e2e::inbound_env::PASSWORD))
        .await
        .unwrap();
    let r = run(&inbound, None, &env.account.id).await.unwrap();
    assert!(matches!(r, poller::Response::Polled(_)), "{r:?}");
    assert_eq!(counter.take_all(), 1, "read again after the refusal");
    for _ in 0..3 {
        let r = run(&inbound, None, &env.account.id).await.unwrap();
        assert!(matches!(r, poller::Response::Polled(_)), "{r:?}");
    }
    assert_eq!(counter.take_all(), 0, "then kept");
    drop_shards(&prefix).await;
}

/// DynamoDB item size as on-demand capacity counts it (attribute names and values, roughly:
/// strings and binaries by length, numbers by digits, 3 bytes per map or list).
fn item_bytes(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    fn size(v: &V) -> usize {
        match v {
            V::S(s) => s.len(),
            V::N(n) => n.len() / 2 + 1,
            V::B(b) => b.as_ref().len(),
            V::Bool(_) | V::Null(_) => 1,
            V::M(m) => 3 + m.iter().map(|(k, v)| k.len() + size(v) + 1).sum::<usize>(),
            V::L(l) => 3 + l.iter().map(|v| size(v) + 1).sum::<usize>(),
            V::Ss(s) => s.iter().map(String::len).sum(),
            V::Ns(n) => n.iter().map(|n| n.len() / 2 + 1).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + size(v)).sum()
}

/// What one scheduled run of an account with no new mail asks of each service, as the poller
/// Lambda runs it (poll, then the due sends): the measured inputs of the README's cost model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_run_costs() {
    let env = InboundEnv::new("idle").await;
    let conf = moto_config().await;
    let ddb_counter = DynamoCounter::default();
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&conf)
            .interceptor(ddb_counter.clone())
            .build(),
    );
    let table = unique_name();
    TableDefinition::create(&ddb, &table).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(ddb.clone(), table.clone()));
    let mut account = env.account.clone();
    account.password_set_at = Some(Utc::now() - chrono::Duration::days(1));
    store.create_account(&account).await.unwrap();
    let sm_counter = SecretsCounter::default();
    let secrets: Arc<dyn Secrets> = Arc::new(process(&table, &sm_counter).await);
    process(&table, &SecretsCounter::default())
        .await
        .put(
            &account.password_secret_name(),
            &SecretString::from(e2e::inbound_env::PASSWORD),
        )
        .await
        .unwrap();
    let inbound = connector::inbound::Inbound {
        store: store.clone(),
        secrets: secrets.clone(),
        ..env.inbound.clone()
    };
    let ca = std::env::var("SMTP_CA_PEM")
        .unwrap_or_else(|_| "/tmp/pec-connector-dovecot-0/cert.pem".to_owned());
    let trust = connector::mailer::smtp::SmtpTrust::with_extra_roots(
        &std::fs::read(&ca).expect("SMTP test CA"),
    )
    .expect("test CA");
    let outbound = Outbound::new(
        store.clone(),
        secrets.clone(),
        Arc::new(connector::mailer::smtp::SmtpProvider::new(trust)),
        env.zendesk.clone(),
        connector::outbound::SendOptions::default(),
    );

    // The first run records the mailbox's baseline (and reads the password: a cold process).
    let r = run(&inbound, Some(&outbound), &account.id).await.unwrap();
    assert!(
        matches!(r, poller::Response::Polled(ref o) if o.baseline),
        "{r:?}"
    );
    let cold = (ddb_counter.take(), sm_counter.take());
    eprintln!(
        "first run (cold process, baseline): dynamodb {:?}, secrets {:?}",
        cold.0, cold.1
    );

    let zendesk_before = env.sim.requests().len();
    let runs = 10;
    let mut durations = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let r = run(&inbound, Some(&outbound), &account.id).await.unwrap();
        durations.push(started.elapsed());
        assert!(
            matches!(r, poller::Response::Polled(ref o) if o.caught_up && !o.baseline),
            "{r:?}"
        );
    }
    let ddb_io = ddb_counter.take();
    let sm = sm_counter.take();
    let zendesk = env.sim.requests().len() - zendesk_before;
    let imap = env.calls.take();
    eprintln!("idle run durations, in order: {durations:?}");
    durations.sort();
    let median = durations[runs / 2];
    eprintln!(
        "{runs} idle runs: dynamodb {ddb_io:?}, secrets manager {sm:?}, zendesk {zendesk} requests, \
         mailbox {imap:?}; duration min {:?} median {median:?} max {:?} (IMAPS on loopback)",
        durations[0],
        durations[runs - 1]
    );
    // Per run: no Secrets Manager and no Zendesk request; the lease taken and given back (two
    // writes), the account read by the poll and again by the retry of due sends, which then
    // looks the outbox up (a query that finds nothing).
    assert!(sm.is_empty(), "{sm:?}");
    assert_eq!(zendesk, 0);
    let n = runs as u32;
    assert_eq!(
        (ddb_io.write_requests, ddb_io.items_written),
        (2 * n, 2 * n),
        "{ddb_io:?}"
    );
    assert_eq!(
        (ddb_io.read_requests, ddb_io.items_read),
        (3 * n, 2 * n),
        "{ddb_io:?}"
    );

    // Item sizes: capacity units are 1 KB per write and 4 KB per strongly consistent read.
    let items = ddb
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    for item in &items {
        let sk = item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        eprintln!("item {sk}: about {} bytes", item_bytes(item));
        assert!(
            item_bytes(item) <= 1024,
            "{sk} needs more than one write unit"
        );
    }
    drop_shards(&table).await;
}
