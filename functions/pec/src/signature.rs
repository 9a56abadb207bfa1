//! Verification of the provider's S/MIME signature (CMS SignedData, detached, RSA, SHA-1/SHA-256),
//! in pure Rust. See `shared/reference/smime-verification.md` for the recipe and its traps.
//!
//! IMPLEMENTATION PENDING (helper agent): this file is being written.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The verdict on a message's provider signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Digest and signature verify and the signer chains to a trust anchor at signing time.
    Valid,
    /// Content altered, malformed or placeholder signature.
    Invalid,
    /// Well formed and verifies, but does not chain to a trust anchor.
    Untrusted,
    /// No signed entity, or no signature part.
    Missing,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Untrusted => "untrusted",
            Verdict::Missing => "missing",
        }
    }
}

/// What the signature check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    pub verdict: Verdict,
    /// Signer certificate subject, e.g. "CN=Posta Certificata ARUBA PEC,O=Aruba PEC S.p.A.,...".
    pub signer: Option<String>,
    /// The signer's e-mail (subjectAltName rfc822Name), e.g. `posta-certificata@pec.aruba.it`.
    pub signer_email: Option<String>,
    /// signingTime from the signed attributes.
    pub signing_time: Option<DateTime<Utc>>,
    /// Why the verdict is not `valid` (for admins and logs), e.g. "messageDigest mismatch".
    pub reason: Option<String>,
}

/// Trust anchors (being written).
pub struct TrustAnchors;
