//! `Daticert::parse` on arbitrary bytes: a value or a typed error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|xml: &[u8]| {
    if let Ok(d) = pec::Daticert::parse(xml) {
        let _ = pec::Kind::from_daticert_tipo(&d.tipo);
    }
});
