//! Peak heap of a poll that imports one 25 MB PEC: the issue asks for less than 128 MB.
//!
//! A binary of its own, because it counts every allocation of the process with a global
//! allocator. The Zendesk simulator keeps what it receives in memory; it runs on a runtime of its
//! own whose threads are not counted, so the figure is the connector's (IMAP adapter, parser,
//! renderer, Zendesk client, store). The process-wide peak is printed too.
//!
//! Run: `cargo test -p e2e --test e2e inbound_memory -- --nocapture` (needs Dovecot).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use e2e::inbound_env::mail;
use e2e::inbound_env::{EnvOptions, InboundEnv};
use sandbox::ZendeskSimulator;

struct Counting;

/// Live and peak bytes on counted threads (everything but the simulator's).
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Live and peak bytes of the whole process.
static LIVE_ALL: AtomicIsize = AtomicIsize::new(0);
static PEAK_ALL: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static SIMULATOR_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    !SIMULATOR_THREAD.try_with(Cell::get).unwrap_or(false)
}

fn grew(n: usize) {
    let n = n as isize;
    let all = LIVE_ALL.fetch_add(n, Ordering::Relaxed) + n;
    PEAK_ALL.fetch_max(all, Ordering::Relaxed);
    if counted() {
        let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

fn shrank(n: usize) {
    let n = n as isize;
    LIVE_ALL.fetch_sub(n, Ordering::Relaxed);
    if counted() {
        LIVE.fetch_sub(n, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MB: f64 = 1024.0 * 1024.0;

#[test]
fn peak_memory_while_importing_a_25_mb_pec_stays_under_128_mb() {
    let simulator_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(|| SIMULATOR_THREAD.with(|c| c.set(true)))
        .build()
        .expect("simulator runtime");
    let sim = Arc::new(
        simulator_runtime
            .block_on(simulator_runtime.spawn(ZendeskSimulator::start()))
            .expect("simulator task")
            .expect("zendesk simulator"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let env = InboundEnv::with(
            "memory",
            EnvOptions {
                simulator: Some(sim.clone()),
                ..EnvOptions::default()
            },
        )
        .await;
        env.activate().await;
        let user = env.user.clone();
        let big = tokio::task::spawn_blocking(move || {
            mail::envelope_of_size(1, &user, 25 * 1024 * 1024)
        })
        .await
        .unwrap();
        let size = big.len();
        env.append(vec![big]).await;

        let base = LIVE.load(Ordering::SeqCst);
        let base_all = LIVE_ALL.load(Ordering::SeqCst);
        PEAK.store(base, Ordering::SeqCst);
        PEAK_ALL.store(base_all, Ordering::SeqCst);
        let started = Instant::now();
        let outcome = env
            .inbound
            .poll(&env.account.id, Instant::now() + Duration::from_secs(120))
            .await
            .expect("poll");
        let took = started.elapsed();
        let peak = (PEAK.load(Ordering::SeqCst) - base) as f64 / MB;
        let peak_all = (PEAK_ALL.load(Ordering::SeqCst) - base_all) as f64 / MB;
        println!(
            "importing one {:.1} MB PEC took {took:?}: peak heap {peak:.1} MB (connector), {peak_all:.1} MB (whole process, with the simulator storing the uploads)",
            size as f64 / MB
        );
        assert_eq!(outcome.tickets_created, 1, "{outcome:?}");
        let ticket = &env.tickets()[0];
        assert_eq!(
            ticket.comments[0].file_names(),
            ["pratica-1.bin", "messaggio-pec.eml"]
        );
        assert_eq!(ticket.comments[0].files[1].data.len(), size);
        assert!(peak < 128.0, "peak heap {peak:.1} MB");
    });
}
