//! Parser benchmark: `cargo bench -p pec --bench parse [-- envelope|corpus]`.
//!
//! * `envelope`: a busta di trasporto whose original carries one 25 MiB attachment (about 36 MB
//!   raw), built here; times `PecMessage::parse` (classify, daticert, unwrap postacert.eml,
//!   decode the attachment, check the signature) plus a pass over the attachment bytes, with a
//!   placeholder p7s and with a real one (the digest of the whole signed content is computed and
//!   checked). Peak heap during the parse is counted by this binary's global allocator. Fails
//!   (exit 1) over 0.5 s (median) or over 4x the message size (message + parse peak).
//! * `corpus`: every file of `$PEC_SAMPLES_DIR` (default `../shared/pec-samples`), parse +
//!   `Report::from_message` + a pass over the attachment bytes, `$BENCH_ITERATIONS` times (200);
//!   `infra/bench/python_email.py` does the same work in Python's `email` package, which does
//!   not check signatures: the time of the signature check alone is printed too.
//!
//! Without a mode, both run. `$BENCH_RUNS` (default 7) sets the envelope runs. Built with the
//! `bench` profile, which is the release profile: this measures the code that ships (for the
//! shipped binary itself, process start included, see `infra/bench/compare.sh`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use pec::report::Report;
use pec::signature::{SigningIdentity, sign_detached};
use pec::{Kind, Limits, PecMessage, TrustAnchors, Verdict};

/// Counts live heap bytes and their high-water mark.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (we only ever forward).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the new size is the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const ATTACHMENT_BYTES: usize = 25 * 1024 * 1024;
const TIME_LIMIT: Duration = Duration::from_millis(500);
const MEMORY_LIMIT: f64 = 4.0;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test` builds this target too (so CI lints it in
    // the test build) and runs it without: then there is nothing to measure.
    if !std::env::args().any(|a| a == "--bench") {
        println!("the parser benchmark runs with `cargo bench -p pec --bench parse`");
        return ExitCode::SUCCESS;
    }
    // Anything else that is not a flag picks the mode.
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let mut ok = true;
    match mode.as_str() {
        "envelope" => ok &= envelope(),
        "corpus" => ok &= corpus(),
        "" => {
            ok &= envelope();
            ok &= corpus();
        }
        other => {
            eprintln!("unknown mode {other:?}: use envelope or corpus");
            return ExitCode::from(2);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// The 25 MB envelope

/// Deterministic incompressible bytes (xorshift64*), like a scanned PDF.
fn attachment(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(b"%PDF-1.7\n");
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Base64 in 76-character CRLF lines, as mail clients write it.
fn base64_lines(data: &[u8]) -> String {
    let encoded = BASE64.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

const DATICERT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="posta-certificata" errore="nessuno">
    <intestazione>
        <mittente>studio.rossi@pec.esempio.it</mittente>
        <destinatari tipo="certificato">protocollo@pec.comune.esempio.it</destinatari>
        <risposte>studio.rossi@pec.esempio.it</risposte>
        <oggetto>Progetto esecutivo - tavole</oggetto>
    </intestazione>
    <dati>
        <gestore-emittente>GESTORE DI PROVA S.p.A.</gestore-emittente>
        <data zona="+0100">
            <giorno>05/02/2024</giorno>
            <ora>10:15:00</ora>
        </data>
        <identificativo>opec0001.20240205101500.00001.01.1.1@pec.gestore.esempio.it</identificativo>
        <msgid>&lt;tavole.7@client.esempio.it&gt;</msgid>
    </dati>
</postacert>
"#;

/// The signed content of the envelope: multipart/mixed with the notice (text + HTML),
/// daticert.xml and postacert.eml (text body + the attachment).
fn envelope_content(pdf: &[u8]) -> Vec<u8> {
    let mut original = String::with_capacity(pdf.len() * 14 / 10);
    original.push_str(concat!(
        "From: Studio Rossi <studio.rossi@pec.esempio.it>\r\n",
        "To: protocollo@pec.comune.esempio.it\r\n",
        "Subject: Progetto esecutivo - tavole\r\n",
        "Date: Mon, 5 Feb 2024 10:14:58 +0100\r\n",
        "Message-ID: <tavole.7@client.esempio.it>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"=_orig_7\"\r\n",
        "\r\n",
        "--=_orig_7\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
        "Buongiorno,\r\nin allegato le tavole del progetto esecutivo.\r\nCordiali saluti\r\n",
        "--=_orig_7\r\n",
        "Content-Type: application/pdf; name=\"tavole.pdf\"\r\n",
        "Content-Disposition: attachment; filename=\"tavole.pdf\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "\r\n",
    ));
    original.push_str(&base64_lines(pdf));
    original.push_str("--=_orig_7--\r\n");

    let mut content = String::with_capacity(original.len() + 8192);
    content.push_str(concat!(
        "Content-Type: multipart/mixed; boundary=\"----------=_1707124500-7-1\"\r\n",
        "Content-Transfer-Encoding: binary\r\n",
        "MIME-Version: 1.0\r\n",
        "\r\n",
        "------------=_1707124500-7-1\r\n",
        "Content-Type: multipart/alternative; boundary=\"----------=_1707124500-7-2\"\r\n",
        "Content-Transfer-Encoding: binary\r\n",
        "\r\n",
        "------------=_1707124500-7-2\r\n",
        "Content-Type: text/plain; charset=\"iso-8859-1\"\r\n",
        "Content-Disposition: inline\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
        "Messaggio di posta certificata\r\n\r\nIl giorno 05/02/2024 alle ore 10:15:00 (+0100) il messaggio\r\n",
        "\"Progetto esecutivo - tavole\" =E8 stato inviato da \"studio.rossi@pec.esempio.it\"\r\n",
        "indirizzato a:\r\nprotocollo@pec.comune.esempio.it\r\n",
        "Il messaggio originale =E8 incluso in allegato.\r\n",
        "\r\n",
        "------------=_1707124500-7-2\r\n",
        "Content-Type: text/html; charset=\"iso-8859-1\"\r\n",
        "Content-Disposition: inline\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
        "<html><body><h3>Messaggio di posta certificata</h3><p>Il messaggio originale =E8 incluso in allegato.</p></body></html>\r\n",
        "\r\n",
        "------------=_1707124500-7-2--\r\n",
        "\r\n",
        "------------=_1707124500-7-1\r\n",
        "Content-Type: application/xml; name=\"daticert.xml\"\r\n",
        "Content-Disposition: inline; filename=\"daticert.xml\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "\r\n",
    ));
    content.push_str(&base64_lines(DATICERT.as_bytes()));
    content.push_str(concat!(
        "\r\n",
        "------------=_1707124500-7-1\r\n",
        "Content-Type: message/rfc822; name=\"postacert.eml\"\r\n",
        "Content-Disposition: inline; filename=\"postacert.eml\"\r\n",
        "\r\n",
    ));
    content.push_str(&original);
    content.push_str("\r\n------------=_1707124500-7-1--\r\n");
    content.into_bytes()
}

fn envelope_message(content: &[u8], p7s: &[u8]) -> Vec<u8> {
    let boundary = "----5A1B2C3D4E5F60718293A4B5C6D7E8F9";
    let mut out = Vec::with_capacity(content.len() + 16 * 1024);
    write!(
        Bytes(&mut out),
        concat!(
            "Return-Path: <posta-certificata@pec.gestore.esempio.it>\r\n",
            "Received: from mx01.pec.gestore.esempio.it (localhost [127.0.0.1])\r\n",
            "\tby mx01.pec.gestore.esempio.it (lmtpd) with LMTP id 4242.001;\r\n",
            "\tMon, 05 Feb 2024 10:15:01 +0100 (CET)\r\n",
            "Date: Mon, 05 Feb 2024 10:15:00 +0100\r\n",
            "Subject: POSTA CERTIFICATA: Progetto esecutivo - tavole\r\n",
            "From: \"Per conto di: studio.rossi@pec.esempio.it\" <posta-certificata@pec.gestore.esempio.it>\r\n",
            "To: protocollo@pec.comune.esempio.it\r\n",
            "Reply-To: studio.rossi@pec.esempio.it\r\n",
            "Message-ID: <opec0001.20240205101500.00001.01.1.1@pec.gestore.esempio.it>\r\n",
            "X-Riferimento-Message-ID: <tavole.7@client.esempio.it>\r\n",
            "X-Trasporto: posta-certificata\r\n",
            "X-TipoRicevuta: completa\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"{b}\"\r\n",
            "\r\n",
            "This is an S/MIME signed message\r\n",
            "\r\n",
            "--{b}\r\n",
        ),
        b = boundary
    )
    .expect("writing to a Vec");
    out.extend_from_slice(content);
    write!(
        Bytes(&mut out),
        concat!(
            "\r\n--{b}\r\n",
            "Content-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            "Content-Disposition: attachment; filename=\"smime.p7s\"\r\n",
            "\r\n",
            "{p7s}",
            "\r\n--{b}--\r\n",
        ),
        b = boundary,
        p7s = base64_lines(p7s)
    )
    .expect("writing to a Vec");
    out
}

/// `fmt::Write` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A cheap pass over every byte, so the decoded data is really read.
fn touch(data: &[u8]) -> u64 {
    data.chunks(8).fold(0u64, |acc, c| {
        let mut word = [0u8; 8];
        word[..c.len()].copy_from_slice(c);
        acc.rotate_left(5) ^ u64::from_le_bytes(word)
    })
}

struct Sample {
    elapsed: Duration,
    peak: usize,
}

fn run_envelope(
    raw: &[u8],
    anchors: &TrustAnchors,
    expected: (usize, u64),
    verdict: Verdict,
) -> Sample {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let msg = PecMessage::parse_with(black_box(raw), &Limits::default(), anchors)
        .expect("the envelope parses");
    let original = msg.original.as_ref().expect("postacert.eml is read");
    let pdf = original
        .attachments
        .iter()
        .find(|a| a.filename == "tavole.pdf")
        .expect("the attachment is there");
    let sum = touch(&pdf.data);
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(msg.kind, Kind::Envelope);
    assert!(msg.daticert.is_some());
    assert_eq!(
        (pdf.data.len(), sum),
        expected,
        "the attachment decodes to what was put in"
    );
    assert_eq!(msg.signature.verdict, verdict, "{:?}", msg.signature.reason);
    drop(black_box(msg));
    Sample { elapsed, peak }
}

fn envelope() -> bool {
    let runs = env_number("BENCH_RUNS", 7).max(5);
    let pdf = attachment(ATTACHMENT_BYTES);
    let expected = (pdf.len(), touch(&pdf));
    let content = envelope_content(&pdf);
    drop(pdf);
    let identity = SigningIdentity::sandbox();
    let p7s = sign_detached(&content, &identity, chrono::Utc::now()).expect("sign the envelope");
    let mut sandbox = TrustAnchors::empty();
    sandbox
        .add_pem(SigningIdentity::sandbox_ca_pem())
        .expect("the sandbox CA is readable");

    let variants = [
        (
            "placeholder p7s (digest not computed)",
            envelope_message(&content, b"\x30\x80 placeholder"),
            TrustAnchors::default(),
            Verdict::Invalid,
        ),
        (
            "real p7s (SHA-256 of the signed content checked)",
            envelope_message(&content, &p7s),
            sandbox,
            Verdict::Valid,
        ),
    ];
    drop(content);

    println!(
        "== envelope: one {} MiB attachment in postacert.eml, {runs} runs each",
        ATTACHMENT_BYTES >> 20
    );
    let mut ok = true;
    for (name, raw, anchors, verdict) in &variants {
        let mut samples: Vec<Sample> = (0..runs)
            .map(|_| run_envelope(raw, anchors, expected, *verdict))
            .collect();
        samples.sort_by_key(|s| s.elapsed);
        let min = samples[0].elapsed;
        let median = samples[samples.len() / 2].elapsed;
        let peak = samples.iter().map(|s| s.peak).max().unwrap_or(0);
        let size = raw.len() as f64;
        let parse_ratio = peak as f64 / size;
        let total_ratio = (raw.len() + peak) as f64 / size;
        let fast = median < TIME_LIMIT;
        let small = total_ratio < MEMORY_LIMIT;
        ok &= fast && small;
        println!("{name}:");
        println!("  message       {:.1} MB", size / 1e6);
        println!(
            "  time          min {:.1} ms, median {:.1} ms  [{} < {} ms]",
            ms(min),
            ms(median),
            pass(fast),
            TIME_LIMIT.as_millis()
        );
        println!(
            "  peak heap     {:.1} MB during the parse ({parse_ratio:.2}x the message); with the message {total_ratio:.2}x  [{} < {MEMORY_LIMIT}x]",
            peak as f64 / 1e6,
            pass(small)
        );
    }
    ok
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

// ---------------------------------------------------------------------------------------------
// The sample corpus

fn corpus() -> bool {
    let dir = std::env::var_os("PEC_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/pec-samples"
            ))
        });
    let mut files: Vec<(String, Vec<u8>)> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .filter_map(|p| {
                Some((
                    p.file_name()?.to_string_lossy().into_owned(),
                    std::fs::read(&p).ok()?,
                ))
            })
            .collect(),
        Err(e) => {
            eprintln!(
                "cannot read the samples in {}: {e} (set PEC_SAMPLES_DIR)",
                dir.display()
            );
            return false;
        }
    };
    files.sort();
    let iterations = env_number("BENCH_ITERATIONS", 200).max(1);
    let bytes: usize = files.iter().map(|(_, raw)| raw.len()).sum();
    println!(
        "== corpus: {} files ({:.1} KB) in {}, {iterations} iterations",
        files.len(),
        bytes as f64 / 1e3,
        dir.display()
    );

    // Warm up (lazy statics: trust anchors, charset tables).
    let mut per_file = vec![Duration::ZERO; files.len()];
    let mut sink = 0u64;
    for (name, raw) in &files {
        sink ^= corpus_work(name, raw);
    }
    let started = Instant::now();
    for _ in 0..iterations {
        for (i, (name, raw)) in files.iter().enumerate() {
            let t = Instant::now();
            sink ^= corpus_work(name, black_box(raw));
            per_file[i] += t.elapsed();
        }
    }
    let total = started.elapsed();
    black_box(sink);
    for ((name, raw), time) in files.iter().zip(&per_file) {
        println!(
            "  {name:<58} {:>7} B  {:>8.1} us",
            raw.len(),
            time.as_secs_f64() * 1e6 / iterations as f64
        );
    }
    let messages = files.len() * iterations;
    let per_message = total.as_secs_f64() * 1e6 / messages as f64;
    let signature = signature_check_time(&files, iterations).as_secs_f64() * 1e6 / messages as f64;
    println!("total: {messages} messages in {:.3} s", total.as_secs_f64());
    println!("per-message: {per_message:.2} us");
    // Python's `email` does not check S/MIME signatures: this is the like-for-like figure.
    println!("signature-check: {signature:.2} us");
    println!(
        "per-message-without-signature: {:.2} us",
        per_message - signature
    );
    true
}

/// The time `PecMessage::parse` spends in `signature::verify_signed` over the corpus (the same
/// call on the same parsed tree, timed alone).
fn signature_check_time(files: &[(String, Vec<u8>)], iterations: usize) -> Duration {
    let anchors = TrustAnchors::default();
    let mut total = Duration::ZERO;
    for (_, raw) in files {
        let Ok(mail) = mailparse::parse_mail(raw) else {
            continue;
        };
        let Some(signed) = pec::find_signed(&mail) else {
            continue;
        };
        let started = Instant::now();
        for _ in 0..iterations {
            black_box(pec::signature::verify_signed(black_box(signed), &anchors));
        }
        total += started.elapsed();
    }
    total
}

/// parse + report + a pass over every attachment.
fn corpus_work(name: &str, raw: &[u8]) -> u64 {
    let Ok(msg) = PecMessage::parse(raw) else {
        return 0;
    };
    let report = Report::from_message(&msg, name);
    let mut sum = report.kind.len() as u64;
    for a in msg.original.iter().flat_map(|o| &o.attachments) {
        sum ^= touch(&a.data);
    }
    sum
}
