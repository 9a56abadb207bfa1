//! # pec — PEC messages, bytes in, typed values out
//!
//! PEC (Posta Elettronica Certificata) is Italian certified e-mail. Every message a PEC provider
//! (*gestore*) delivers is an S/MIME signed message built by the provider:
//!
//! * a **busta di trasporto** (envelope, `X-Trasporto: posta-certificata`) wraps a certified
//!   message sent by a user: the original is the `postacert.eml` part;
//! * a **busta di anomalia** (`X-Trasporto: errore`) wraps ordinary mail that reached a PEC box;
//! * a **ricevuta** or **avviso** (`X-Ricevuta: ...`) reports on a message we sent: accettazione,
//!   non-accettazione, presa-in-carico, avvenuta-consegna, errore-consegna (mancata consegna),
//!   preavviso-errore-consegna, rilevazione-virus;
//! * everything else is ordinary (`non-pec`) mail.
//!
//! Each provider message carries `daticert.xml`, the certification data (who, to whom, when,
//! the PEC *identificativo*, the original client Message-ID).
//!
//! This crate does no I/O. [`PecMessage::parse`] takes the raw bytes of one RFC 5322 message and
//! returns its [`Kind`], its [`Daticert`], the [`OriginalMessage`] (real sender, subject, bodies,
//! attachments) and the [`signature`] verdict. Malformed input is never a panic: either a typed
//! [`ParseError`] (the caller still holds the raw bytes) or a best-effort `non-pec` reading.
//!
//! Modules:
//! * [`daticert`] — `daticert.xml`;
//! * [`message`] — the original message: addresses, bodies (charset-decoded), attachments;
//! * [`signature`] — the provider's S/MIME signature, verified without OpenSSL (pure Rust but
//!   for the RSA operation, in aws-lc);
//! * [`subject`] — provider subject prefixes;
//! * [`report`] — the flat summary printed by `pec-connector inspect`;
//! * `build` — builds provider-shaped messages (test fixtures, the sandbox provider); with the
//!   `test-support` feature only, as is signing with the sandbox provider's identity
//!   (`signature::SigningIdentity`): the sandbox, the demo and tests turn it on, the Lambdas
//!   never link it (`infra/ship.sh build` checks their bootstraps hold no private key).

#[cfg(feature = "test-support")]
pub mod build;
pub mod daticert;
pub mod encode;
pub mod message;
pub mod report;
pub mod signature;
pub mod subject;

mod classify;
mod mime;
mod parse;
mod text;

pub use classify::{Kind, ReceiptKind, TipoRicevuta};
pub use daticert::{Daticert, Destinatario, normalize_msgid};
pub use message::{Attachment, Mailbox, OriginalMessage};
pub use mime::find_signed;
pub use parse::{Limits, ParseError, PecMessage, ReceiptFacts};
pub use signature::{SignatureReport, TrustAnchors, Verdict};
