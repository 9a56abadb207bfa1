//! The soak (issue #14): 200 messages of every kind — 3 poison ones and one of 60 MB among
//! them — arrive while Zendesk answers 429 and 500 at random (before and after applying a
//! request), the SMTP server drops about one connection in three after storing the message, and
//! the poll crashes at random steps or is killed outright; meanwhile agents reply. Afterwards
//! every importable message has exactly one ticket, each poison message exactly one parked
//! ticket, every reply exactly one PEC in the SMTP spool, and nothing is pending. Bounded: it
//! gives up after 110 s. The seed is printed (`SOAK_SEED` replays a run).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connector::inbound::{Inbound, Step};
use e2e::channel_env::ChannelEnv;
use e2e::env::unique_name;
use e2e::inbound_env::mail::{self, CITIZEN, Facts};
use pec::ReceiptKind;
use sandbox::TicketRefusal;
use sandbox::zendesk::Fault;

const ENVELOPES: u32 = 150;
const PLAIN: u32 = 20;
const ANOMALIES: u32 = 10;
const UNREADABLE: u32 = 10;
const STRAY_RECEIPTS: u32 = 6;
const POISON: u32 = 3;
const REPLIES: u32 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_200_messages_under_faults_each_once() {
    let started = Instant::now();
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("soak seed {seed} (SOAK_SEED={seed} replays it)");
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
    let env = Arc::new(ChannelEnv::new("flakydrop-soak").await);
    for k in 0..POISON {
        env.sim.refuse_tickets_from(
            &format!("sospeso-{k}@pec.test"),
            Some(TicketRefusal::Invalid),
        );
    }

    // The 200 messages, in a shuffled order, in four deliveries.
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let id = |what: &str, n: u32| format!("opec.{what}.{n}.{}@pec.sandbox.test", unique_name());
    for n in 1..=ENVELOPES {
        let original = mail::citizen(n, &env.address).build();
        messages.push(mail::envelope(&original, &id("env", n)));
    }
    for n in 1..=PLAIN {
        messages.push(mail::plain(n, &env.address));
    }
    for n in 1..=ANOMALIES {
        let original = mail::citizen(1000 + n, &env.address)
            .subject(&format!("Anomalia {n} "))
            .build();
        messages.push(mail::anomaly(&original, &id("anom", n)));
    }
    for n in 1..=UNREADABLE {
        messages.push(mail::unreadable(n));
    }
    for n in 1..=STRAY_RECEIPTS {
        let sent = mail::sent(&env.address, &format!("<mai-{n}@pec.test>"), &[CITIZEN]);
        messages.push(mail::receipt(
            ReceiptKind::Accettazione,
            &sent,
            Facts::id(&id("stray", n)),
        ));
    }
    for k in 0..POISON {
        let original = mail::citizen(2000 + k, &env.address)
            .from(format!("sospeso-{k}@pec.test").as_str())
            .build();
        messages.push(mail::envelope(&original, &id("poison", k)));
    }
    messages.push(mail::envelope_of_size(1, &env.address, 60 * 1024 * 1024));
    assert_eq!(messages.len(), 200);
    rng.lock().unwrap().shuffle(&mut messages);

    // Crashes at random steps (about one step in forty), as a killed process would leave it.
    let crashing = {
        let rng = rng.clone();
        let mut inbound: Inbound = (*env.inbound).clone();
        inbound.hook = Some(Arc::new(move |_step: Step, _uid: u32| {
            if rng.lock().unwrap().u32(0..40) == 0 {
                Err(())
            } else {
                Ok(())
            }
        }));
        inbound
    };
    // Zendesk faults at random, only while a poll runs (the simulator does not retry webhook
    // calls, which Zendesk would for a 503).
    let faulting = Arc::new(AtomicBool::new(false));
    let injector = {
        let (env, rng, faulting) = (env.clone(), rng.clone(), faulting.clone());
        tokio::spawn(async move {
            // About one request in ten fails, one fault at a time (the client's retries get
            // through, as they do against Zendesk).
            let mut seen = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let requests = env.sim.requests().len();
                if !faulting.load(Ordering::SeqCst) || requests < seen + 10 {
                    continue;
                }
                seen = requests;
                let fault = match rng.lock().unwrap().u32(0..3) {
                    0 => Fault::RateLimit {
                        retry_after: Some(0),
                        reset: Some(0),
                    },
                    1 => Fault::Status(500),
                    _ => Fault::AnswerLost(500),
                };
                env.sim.fail_next(1, fault);
            }
        })
    };

    let mut receipted: Vec<String> = Vec::new();
    let mut polls = 0u32;
    let mut crashed = 0u32;
    let mut killed = 0u32;
    let mut replies = 0u32;
    let mut delivered = 0usize;
    let chunks: Vec<Vec<Vec<u8>>> = messages.chunks(50).map(<[_]>::to_vec).collect();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(110),
            "the soak did not settle in time: {}",
            counts(&env)
        );
        if delivered < chunks.len() {
            env.deliver(chunks[delivered].clone()).await;
            delivered += 1;
        }
        // The provider's accettazione for everything that reached its server.
        for d in env.sent() {
            let Some(mid) = message_id(&d.raw) else {
                continue;
            };
            if !receipted.contains(&mid) {
                env.deliver(vec![mail::receipt(
                    ReceiptKind::Accettazione,
                    &d.raw,
                    Facts::id(&id("acc", receipted.len() as u32)),
                )])
                .await;
                receipted.push(mid);
            }
        }
        // Twice, the poll is killed outright in the middle of an import.
        if delivered >= 2 && killed < 2 {
            let task = {
                let env = env.clone();
                faulting.store(true, Ordering::SeqCst);
                tokio::spawn(async move { env.try_poll(Duration::from_secs(5)).await })
            };
            let wait = rng.lock().unwrap().u64(50..300);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            task.abort();
            faulting.store(false, Ordering::SeqCst);
            killed += 1;
            // Its lease expires by itself (deadline + slack).
            tokio::time::sleep(Duration::from_secs(9)).await;
            continue;
        }
        faulting.store(true, Ordering::SeqCst);
        let result = env.try_poll_with(&crashing, Duration::from_secs(20)).await;
        faulting.store(false, Ordering::SeqCst);
        env.sim.clear_faults();
        polls += 1;
        if std::env::var("SOAK_VERBOSE").is_ok() {
            println!(
                "poll {polls} at {:.1} s: {result:?}",
                started.elapsed().as_secs_f32()
            );
        }
        if result.is_err() {
            crashed += 1;
        }
        // Agents reply on tickets already there.
        if replies < REPLIES {
            let tickets: Vec<u64> = env
                .sim
                .tickets()
                .iter()
                .filter(|t| t.subject.starts_with("Richiesta n."))
                .map(|t| t.id)
                .collect();
            for t in tickets.iter().take(5) {
                if replies < REPLIES
                    && env
                        .sim
                        .agent_reply(*t, &format!("Risposta soak {replies}."), true)
                        .is_some()
                {
                    replies += 1;
                }
            }
            env.settle().await;
        }
        if delivered == chunks.len() && replies == REPLIES && settled(&env).await {
            break;
        }
    }
    injector.abort();

    // Every importable message has exactly one ticket.
    let tickets = env.sim.tickets();
    let count = |prefix: &str| {
        tickets
            .iter()
            .filter(|t| t.subject.starts_with(prefix))
            .count()
    };
    for n in 1..=ENVELOPES {
        let subject = format!("Richiesta n. {n} di accesso agli atti");
        let found = tickets.iter().filter(|t| t.subject == subject).count();
        assert_eq!(found, 1, "{subject}: {found} tickets");
    }
    for n in 1..=PLAIN {
        let subject = format!("Comunicato {n}");
        assert_eq!(
            tickets.iter().filter(|t| t.subject == subject).count(),
            1,
            "{subject}"
        );
    }
    assert_eq!(count("Anomalia "), ANOMALIES as usize);
    assert_eq!(count("Messaggio PEC non leggibile"), UNREADABLE as usize);
    assert_eq!(
        tickets
            .iter()
            .filter(|t| t.tags.contains(&"pec_accettata".to_owned())
                && t.comments[0].html_body.contains("Non è stato trovato"))
            .count(),
        STRAY_RECEIPTS as usize
    );
    assert_eq!(count("Pratica 1"), 1, "the 60 MB PEC");
    // Each poison message exactly one parked ticket.
    assert_eq!(count("PEC non importabile"), POISON as usize);
    // Every reply exactly one PEC.
    let sent = env.sent();
    for k in 0..REPLIES {
        let text = format!("Risposta soak {k}.");
        let n = sent
            .iter()
            .filter(|d| String::from_utf8_lossy(&d.raw).contains(&text))
            .count();
        assert_eq!(n, 1, "{text}: {n} PEC");
    }
    println!(
        "soak done in {:.1} s: {} polls ({crashed} stopped by a crash or fault, {killed} killed), {}",
        started.elapsed().as_secs_f32(),
        polls,
        counts(&env)
    );
}

/// Nothing pending: the mailbox read to its end and no send waiting.
async fn settled(env: &ChannelEnv) -> bool {
    let status = env.status().await;
    let (_, uid_next) = env.dovecot.status(&env.address);
    let caught_up = status["last_uid"].as_u64() == Some(u64::from(uid_next) - 1);
    let outbox_empty = !env
        .env
        .raw
        .state()
        .await
        .iter()
        .any(|row| row.starts_with("outbox:"));
    caught_up && outbox_empty
}

fn message_id(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("Message-ID")
            .then(|| value.trim().to_owned())
    })
}

/// What ended up where, for the log.
fn counts(env: &ChannelEnv) -> String {
    let tickets = env.sim.tickets();
    let mut by_tag: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &tickets {
        for tag in [
            "pec_messaggio",
            "pec_posta_ordinaria",
            "pec_anomalia",
            "pec_non_leggibile",
            "pec_accettata",
            "pec_non_importabile",
            "pec_connector_avviso",
        ] {
            if t.tags.iter().any(|x| x == tag) {
                *by_tag.entry(tag).or_default() += 1;
            }
        }
    }
    let requests = env.sim.requests().len();
    let unconfirmed = tickets
        .iter()
        .flat_map(|t| &t.comments)
        .filter(|c| c.html_body.contains("PEC forse inviata"))
        .count();
    format!(
        "{} tickets {by_tag:?}, {} PEC in the spool ({unconfirmed} sends unconfirmed by the \
         server, proven by their receipt), {requests} Zendesk requests",
        tickets.len(),
        env.sent().len()
    )
}
