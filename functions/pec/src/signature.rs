//! Verification of the provider's S/MIME signature (CMS SignedData, detached, RSA, SHA-1/SHA-2),
//! and detached signing for the project's own fixtures and sandbox provider. CMS, X.509 and the
//! digests are pure Rust; the RSA operation of a check runs in aws-lc (the libcrypto rustls
//! links anyway), signing in the `rsa` crate.
//! See `shared/reference/smime-verification.md` for the recipe and its traps.
//!
//! How a `multipart/signed` entity is checked ([`verify_signed`]):
//!
//! 1. the signed content is the first part's raw bytes (headers included), canonicalised on the
//!    fly to CRLF (bare LF → CRLF; files are often stored with LF, signing was over CRLF) and
//!    hashed chunk by chunk, never copied;
//! 2. the second part (`application/(x-)pkcs7-signature`) is strict-DER CMS SignedData; the
//!    first SignerInfo must carry messageDigest (equal to the content hash) and an RSA PKCS#1 v1.5
//!    signature over its signed attributes, made by a certificate bundled in the p7s;
//! 3. the signer must chain to a [`TrustAnchors`] certificate (for PEC: the Actalis
//!    Authentication Root CA, through AgID CA1 carried in the p7s), every certificate valid **at
//!    the signingTime** the signer asserts (archived receipts outlive their certificates), CA
//!    certificates with basicConstraints cA (and keyCertSign), pathLen and X.509 name
//!    constraints (rfc822Name, dNSName, directoryName, iPAddress) enforced here by hand: AgID
//!    CA1's name constraints are the list of PEC provider domains.
//!
//! Not covered: revocation (CRL/OCSP need the network), extendedKeyUsage, ECDSA/RSA-PSS signers,
//! SignerInfos after the first one, BER (indefinite-length) p7s, RSA keys under 1024 bits (under
//! 2048 with SHA-384) or over 8192.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::signature::{self as lc, ParsedPublicKey};
#[cfg(feature = "test-support")]
use chrono::Datelike;
use chrono::{DateTime, Utc};
use cms::cert::CertificateChoices;
#[cfg(feature = "test-support")]
use cms::cert::IssuerAndSerialNumber;
#[cfg(feature = "test-support")]
use cms::content_info::CmsVersion;
use cms::content_info::ContentInfo;
#[cfg(feature = "test-support")]
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignerInfos};
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use const_oid::db::{rfc3280, rfc5911, rfc5912};
#[cfg(feature = "test-support")]
use der::asn1::{GeneralizedTime, UtcTime};
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Document, Encode, Tag, Tagged};
use mailparse::ParsedMail;
#[cfg(feature = "test-support")]
use rsa::Pkcs1v15Sign;
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
#[cfg(feature = "test-support")]
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, AttributeTypeAndValue};
use x509_cert::ext::pkix::constraints::name::GeneralSubtree;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, NameConstraints, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RelativeDistinguishedName};
use x509_cert::time::Time;

#[cfg(feature = "test-support")]
mod sign;
#[cfg(feature = "test-support")]
pub use sign::{SigningIdentity, sign_detached, sign_detached_with};

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

impl SignatureReport {
    fn with_verdict(verdict: Verdict, reason: impl Into<String>) -> SignatureReport {
        SignatureReport {
            verdict,
            signer: None,
            signer_email: None,
            signing_time: None,
            reason: Some(reason.into()),
        }
    }
}

/// Errors of loading trust anchors and signing identities, and of signing.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read {what}: no PEM block found")]
    NoPem { what: &'static str },
    #[error("cannot read {what}: bad PEM or DER")]
    Pem {
        what: &'static str,
        #[source]
        source: der::Error,
    },
    #[error(
        "cannot read the private key: unsupported PEM label {label:?} (expected PRIVATE KEY or RSA PRIVATE KEY)"
    )]
    KeyLabel { label: String },
    #[error("cannot read the PKCS#8 private key")]
    Pkcs8(#[source] rsa::pkcs8::Error),
    #[error("cannot read the PKCS#1 private key")]
    Pkcs1(#[source] rsa::pkcs1::Error),
    #[error("cannot use the signing certificate: its key is not an RSA key")]
    NotRsa,
    #[error("cannot use the signing identity: the private key does not match the certificate")]
    KeyMismatch,
    #[error("cannot encode the signing time {time}")]
    SigningTime { time: DateTime<Utc> },
    #[error("cannot encode the CMS signature")]
    Encode(#[source] der::Error),
    #[error("cannot compute the RSA signature")]
    Sign(#[source] rsa::Error),
}

// ---------------------------------------------------------------------------------------------
// Trust anchors

static ACTALIS_ROOT_PEM: &[u8] = include_bytes!("actalis-authentication-root-ca.pem");

/// The certificates a signer must chain to. Anchors are trusted as they are: their own
/// signature is not checked, their validity period and name constraints are.
#[derive(Clone)]
pub struct TrustAnchors {
    certs: Vec<Certificate>,
}

impl TrustAnchors {
    /// The PEC trust anchor: the embedded Actalis Authentication Root CA.
    pub fn pec() -> TrustAnchors {
        static PEC: OnceLock<Vec<Certificate>> = OnceLock::new();
        let certs = PEC.get_or_init(|| pem_certificates(ACTALIS_ROOT_PEM).unwrap_or_default());
        TrustAnchors {
            certs: certs.clone(),
        }
    }

    /// No anchors at all (every well-formed, intact signature is `untrusted`).
    pub fn empty() -> TrustAnchors {
        TrustAnchors { certs: Vec::new() }
    }

    /// Adds every certificate of a PEM bundle as an anchor (e.g. a sandbox/test CA).
    /// Blocks other than `CERTIFICATE` are ignored; a bundle without certificates is an error.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<(), SignatureError> {
        let certs = pem_certificates(pem)?;
        if certs.is_empty() {
            return Err(SignatureError::NoPem {
                what: "the trust anchors",
            });
        }
        for cert in certs {
            if !self.certs.contains(&cert) {
                self.certs.push(cert);
            }
        }
        Ok(())
    }

    /// How many anchors there are.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether there are no anchors.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

impl Default for TrustAnchors {
    fn default() -> TrustAnchors {
        TrustAnchors::pec()
    }
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subjects: Vec<String> = self.certs.iter().map(subject_string).collect();
        f.debug_struct("TrustAnchors")
            .field("subjects", &subjects)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Verification

/// The p7s part is a few kilobytes in practice; anything this big is not a provider signature.
const MAX_P7S_PART: usize = 4 << 20;
/// Longest certificate path searched (signer, intermediates, anchor).
const MAX_PATH: usize = 8;
/// Most certificate signatures checked while searching for a path (hostile p7s bundles).
const MAX_PATH_SIGNATURES: u32 = 24;

/// Verifies the signature of a `multipart/signed` entity (as found by [`crate::find_signed`]).
pub fn verify_signed(signed: &ParsedMail<'_>, anchors: &TrustAnchors) -> SignatureReport {
    verify_signed_with(signed, anchors, &|_| {})
}

/// Convenience: parses raw bytes, finds the signed entity (none → `missing`), verifies it.
pub fn verify_message(raw: &[u8], anchors: &TrustAnchors) -> SignatureReport {
    match mailparse::parse_mail(raw) {
        Ok(mail) => match crate::find_signed(&mail) {
            Some(signed) => verify_signed(signed, anchors),
            None => SignatureReport::with_verdict(Verdict::Missing, "no multipart/signed entity"),
        },
        Err(e) => SignatureReport::with_verdict(
            Verdict::Missing,
            format!("cannot parse the message: {e}"),
        ),
    }
}

/// Lets tests edit every NameConstraints extension before it is enforced.
type ConstraintTweak<'t> = &'t dyn Fn(&mut NameConstraints);

fn verify_signed_with(
    signed: &ParsedMail<'_>,
    anchors: &TrustAnchors,
    tweak: ConstraintTweak<'_>,
) -> SignatureReport {
    let mut report = SignatureReport {
        verdict: Verdict::Invalid,
        signer: None,
        signer_email: None,
        signing_time: None,
        reason: None,
    };
    match check(signed, anchors, tweak, &mut report) {
        Ok(()) => report.verdict = Verdict::Valid,
        Err(Failure(verdict, reason)) => {
            report.verdict = verdict;
            report.reason = Some(reason);
        }
    }
    report
}

struct Failure(Verdict, String);

fn invalid(reason: impl Into<String>) -> Failure {
    Failure(Verdict::Invalid, reason.into())
}

fn untrusted(reason: impl Into<String>) -> Failure {
    Failure(Verdict::Untrusted, reason.into())
}

fn check(
    signed: &ParsedMail<'_>,
    anchors: &TrustAnchors,
    tweak: ConstraintTweak<'_>,
    report: &mut SignatureReport,
) -> Result<(), Failure> {
    let content = signed
        .subparts
        .first()
        .ok_or_else(|| Failure(Verdict::Missing, "multipart/signed without parts".into()))?
        .raw_bytes;
    let signature_part = signed
        .subparts
        .get(1)
        .filter(|part| {
            part.ctype
                .mimetype
                .to_ascii_lowercase()
                .contains("pkcs7-signature")
        })
        .ok_or_else(|| {
            Failure(
                Verdict::Missing,
                "multipart/signed without a pkcs7-signature part".into(),
            )
        })?;
    if signature_part.raw_bytes.len() > MAX_P7S_PART {
        return Err(invalid("signature part too large"));
    }
    let p7s = signature_part
        .get_body_raw()
        .map_err(|e| invalid(format!("cannot decode the signature part: {e}")))?;

    let content_info = ContentInfo::from_der(&p7s)
        .map_err(|e| invalid(format!("cannot read the p7s as DER CMS: {e}")))?;
    if content_info.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(invalid(format!(
            "p7s content type is {}, not signedData",
            content_info.content_type
        )));
    }
    let signed_data: SignedData = content_info
        .content
        .decode_as()
        .map_err(|e| invalid(format!("cannot read the p7s SignedData: {e}")))?;
    // The first SignerInfo in file order, and its signed attributes exactly as they were signed
    // (decoding sorts SET OF, so re-encoding would break a signer that emitted them unsorted).
    let raw_signer_info =
        first_signer_info(&p7s).ok_or_else(|| invalid("p7s without a SignerInfo"))?;
    let signer_info = SignerInfo::from_der(raw_signer_info)
        .map_err(|e| invalid(format!("cannot read the SignerInfo: {e}")))?;

    let certs: Vec<&Certificate> = signed_data
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(cert) => Some(cert),
            _ => None,
        })
        .collect();
    let signer = certs
        .iter()
        .copied()
        .find(|cert| identifies(&signer_info.sid, cert))
        .ok_or_else(|| invalid("signer certificate not in the p7s"))?;
    report.signer = Some(subject_string(signer));
    report.signer_email = emails(signer).into_iter().next();

    let digest = DigestAlgorithm::from_oid(&signer_info.digest_alg.oid).ok_or_else(|| {
        invalid(format!(
            "unsupported digest algorithm {}",
            signer_info.digest_alg.oid
        ))
    })?;
    let oid = signer_info.signature_algorithm.oid;
    if oid != rfc5912::RSA_ENCRYPTION && DigestAlgorithm::from_rsa_signature_oid(&oid).is_none() {
        return Err(invalid(format!("unsupported signature algorithm {oid}")));
    }
    let key = rsa_verifier(signer, digest)
        .ok_or_else(|| invalid("signer key is not a usable RSA key"))?;

    let signing_time;
    let signed_hash = match &signer_info.signed_attrs {
        Some(attrs) => {
            let attrs = read_signed_attributes(attrs)?;
            signing_time = attrs.signing_time;
            report.signing_time = signing_time;
            if digest.canonical_digest(content) != attrs.message_digest {
                return Err(invalid("messageDigest mismatch"));
            }
            let raw_attrs = signed_attributes_as_set(raw_signer_info)
                .ok_or_else(|| invalid("cannot locate the signed attributes"))?;
            digest.digest(&raw_attrs)
        }
        None => {
            signing_time = None;
            digest.canonical_digest(content)
        }
    };
    if !verifies(&key, digest, &signed_hash, signer_info.signature.as_bytes()) {
        return Err(invalid("signature does not verify with the signer's key"));
    }

    let at = signing_time
        .ok_or_else(|| untrusted("no signingTime: cannot check the certificates' validity"))?;
    let at_unix = u64::try_from(at.timestamp())
        .map(Duration::from_secs)
        .map_err(|_| untrusted(format!("signingTime {at} before 1970")))?;
    PathSearch::new(&certs, &anchors.certs, at, at_unix, tweak).run(signer)
}

struct SignedAttributes {
    message_digest: Vec<u8>,
    signing_time: Option<DateTime<Utc>>,
}

fn read_signed_attributes(attrs: &SetOfVec<Attribute>) -> Result<SignedAttributes, Failure> {
    let mut message_digest = None;
    let mut signing_time = None;
    for attr in attrs.iter() {
        let value = || -> Result<&Any, Failure> {
            match attr.values.as_slice() {
                [value] => Ok(value),
                _ => Err(invalid(format!(
                    "signed attribute {} without exactly one value",
                    attr.oid
                ))),
            }
        };
        if attr.oid == rfc5911::ID_MESSAGE_DIGEST {
            let octets: OctetString = value()?
                .decode_as()
                .map_err(|_| invalid("cannot read the messageDigest attribute"))?;
            message_digest = Some(octets.into_bytes());
        } else if attr.oid == rfc5911::ID_CONTENT_TYPE {
            let oid: ObjectIdentifier = value()?
                .decode_as()
                .map_err(|_| invalid("cannot read the contentType attribute"))?;
            if oid != rfc5911::ID_DATA {
                return Err(invalid(format!("signed contentType {oid} is not id-data")));
            }
        } else if attr.oid == rfc5911::ID_SIGNING_TIME {
            // `Time` is a CHOICE: decode it from the value's full encoding.
            let time = value()?
                .to_der()
                .ok()
                .and_then(|der| Time::from_der(&der).ok())
                .and_then(time_to_chrono)
                .ok_or_else(|| invalid("cannot read the signingTime attribute"))?;
            signing_time = Some(time);
        }
    }
    let message_digest =
        message_digest.ok_or_else(|| invalid("no messageDigest signed attribute"))?;
    Ok(SignedAttributes {
        message_digest,
        signing_time,
    })
}

fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            cert.tbs_certificate.issuer == id.issuer
                && cert.tbs_certificate.serial_number == id.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => subject_key_id(cert).as_ref() == Some(ski),
    }
}

// ---------------------------------------------------------------------------------------------
// Certificate path

struct PathSearch<'a> {
    /// p7s certificates that are not anchors.
    pool: Vec<&'a Certificate>,
    anchors: &'a [Certificate],
    at: DateTime<Utc>,
    at_unix: Duration,
    tweak: ConstraintTweak<'a>,
    budget: u32,
    /// Why the deepest attempt failed: (path length, reason).
    failure: Option<(usize, String)>,
}

impl<'a> PathSearch<'a> {
    fn new(
        certs: &[&'a Certificate],
        anchors: &'a [Certificate],
        at: DateTime<Utc>,
        at_unix: Duration,
        tweak: ConstraintTweak<'a>,
    ) -> PathSearch<'a> {
        PathSearch {
            pool: certs
                .iter()
                .copied()
                .filter(|cert| !anchors.contains(cert))
                .collect(),
            anchors,
            at,
            at_unix,
            tweak,
            budget: MAX_PATH_SIGNATURES,
            failure: None,
        }
    }

    fn run(mut self, signer: &'a Certificate) -> Result<(), Failure> {
        let mut path = vec![signer];
        let found = if self.anchors.contains(signer) {
            self.valid_at(signer, 1)
        } else {
            self.extend(&mut path)
        };
        if found {
            return Ok(());
        }
        let reason = self
            .failure
            .map(|(_, reason)| reason)
            .unwrap_or_else(|| "no path to a trust anchor".into());
        Err(untrusted(reason))
    }

    fn fail(&mut self, depth: usize, reason: String) {
        if self.failure.as_ref().is_none_or(|(d, _)| depth >= *d) {
            self.failure = Some((depth, reason));
        }
    }

    fn valid_at(&mut self, cert: &Certificate, depth: usize) -> bool {
        let validity = &cert.tbs_certificate.validity;
        let ok = validity.not_before.to_unix_duration() <= self.at_unix
            && self.at_unix <= validity.not_after.to_unix_duration();
        if !ok {
            let reason = format!(
                "certificate {} is not valid at signingTime {}",
                subject_string(cert),
                self.at.to_rfc3339()
            );
            self.fail(depth, reason);
        }
        ok
    }

    /// Depth-first: tries every issuer candidate of the last certificate of `path`.
    fn extend(&mut self, path: &mut Vec<&'a Certificate>) -> bool {
        let depth = path.len();
        let Some(&cert) = path.last() else {
            return false;
        };
        if !self.valid_at(cert, depth) {
            return false;
        }
        if depth >= MAX_PATH {
            self.fail(depth, "certificate path too long".into());
            return false;
        }
        let issuer = &cert.tbs_certificate.issuer;
        let candidates: Vec<(bool, &'a Certificate)> = self
            .anchors
            .iter()
            .map(|anchor| (true, anchor))
            .chain(self.pool.iter().map(|cert| (false, *cert)))
            .filter(|(_, candidate)| candidate.tbs_certificate.subject == *issuer)
            .collect();
        if candidates.is_empty() {
            self.fail(
                depth,
                format!("issuer {issuer} is neither a trust anchor nor in the p7s"),
            );
            return false;
        }
        for (is_anchor, candidate) in candidates {
            if path.contains(&candidate) {
                let reason = if std::ptr::eq(candidate, cert) {
                    format!(
                        "{} is self-signed and not a trust anchor",
                        subject_string(cert)
                    )
                } else {
                    format!("certificate loop at {}", subject_string(candidate))
                };
                self.fail(depth, reason);
                continue;
            }
            if !key_ids_match(cert, candidate) {
                self.fail(
                    depth,
                    format!(
                        "no issuer of {} with its authority key identifier",
                        subject_string(cert)
                    ),
                );
                continue;
            }
            if !is_anchor && !is_ca(candidate) {
                self.fail(
                    depth,
                    format!("issuer {} is not a CA", subject_string(candidate)),
                );
                continue;
            }
            if self.budget == 0 {
                self.fail(depth, "too many candidate issuers".into());
                return false;
            }
            self.budget -= 1;
            if !signed_by(cert, candidate) {
                self.fail(
                    depth,
                    format!(
                        "certificate {} is not signed by {}",
                        subject_string(cert),
                        subject_string(candidate)
                    ),
                );
                continue;
            }
            path.push(candidate);
            let found = if is_anchor {
                self.valid_at(candidate, depth + 1)
                    && match check_path_constraints(path, self.tweak) {
                        Ok(()) => true,
                        Err(reason) => {
                            self.fail(depth + 1, reason);
                            false
                        }
                    }
            } else {
                self.extend(path)
            };
            if found {
                return true;
            }
            path.pop();
        }
        false
    }
}

/// pathLenConstraint and name constraints of every CA of a complete path (signer first).
fn check_path_constraints(path: &[&Certificate], tweak: ConstraintTweak<'_>) -> Result<(), String> {
    for (i, ca) in path.iter().enumerate().skip(1) {
        let below = path.get(..i).unwrap_or_default();
        if let Ok(Some((_, basic))) = ca.tbs_certificate.get::<BasicConstraints>()
            && let Some(max) = basic.path_len_constraint
        {
            let intermediates = below.iter().skip(1).filter(|c| !self_issued(c)).count();
            if intermediates > usize::from(max) {
                return Err(format!(
                    "path length constraint of {} exceeded",
                    subject_string(ca)
                ));
            }
        }
        let mut constraints = match ca.tbs_certificate.get::<NameConstraints>() {
            Ok(Some((_, constraints))) => constraints,
            Ok(None) => continue,
            Err(_) => {
                return Err(format!(
                    "cannot read the name constraints of {}",
                    subject_string(ca)
                ));
            }
        };
        tweak(&mut constraints);
        for (j, cert) in below.iter().enumerate() {
            // RFC 5280 6.1.3: self-issued intermediates are exempt; the signer never is.
            if j == 0 || !self_issued(cert) {
                check_name_constraints(cert, &constraints).map_err(|name| {
                    format!(
                        "{name} of {} is outside the name constraints of {}",
                        subject_string(cert),
                        subject_string(ca)
                    )
                })?;
            }
        }
    }
    Ok(())
}

fn self_issued(cert: &Certificate) -> bool {
    cert.tbs_certificate.issuer == cert.tbs_certificate.subject
}

fn key_ids_match(cert: &Certificate, issuer: &Certificate) -> bool {
    let aki = match cert.tbs_certificate.get::<AuthorityKeyIdentifier>() {
        Ok(Some((_, aki))) => aki.key_identifier,
        _ => None,
    };
    match (aki, subject_key_id(issuer)) {
        (Some(aki), Some(ski)) => aki == ski.0,
        _ => true,
    }
}

fn is_ca(cert: &Certificate) -> bool {
    let ca = matches!(
        cert.tbs_certificate.get::<BasicConstraints>(),
        Ok(Some((_, BasicConstraints { ca: true, .. })))
    );
    let key_usage_ok = match cert.tbs_certificate.get::<KeyUsage>() {
        Ok(Some((_, usage))) => usage.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && key_usage_ok
}

fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let oid = cert.signature_algorithm.oid;
    if cert.tbs_certificate.signature.oid != oid {
        return false;
    }
    let (Some(signature), Ok(tbs)) = (cert.signature.as_bytes(), cert.tbs_certificate.to_der())
    else {
        return false;
    };
    // The same provider and AgID certificates sign every message: verify each link once per
    // process. The key covers everything the answer depends on.
    let issuer_key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let mut hasher = Sha256::new();
    for part in [&tbs[..], signature, issuer_key, oid.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let link: [u8; 32] = hasher.finalize().into();
    if let Some(known) = link_cache(|cache| cache.get(&link).copied()) {
        return known;
    }
    let verified = DigestAlgorithm::from_rsa_signature_oid(&oid).is_some_and(|digest| {
        rsa_verifier(issuer, digest)
            .is_some_and(|key| verifies(&key, digest, &digest.digest(&tbs), signature))
    });
    link_cache(|cache| {
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(link, verified);
    });
    verified
}

/// Verified (or refuted) certificate-signature links, process-wide.
fn link_cache<T>(f: impl FnOnce(&mut std::collections::HashMap<[u8; 32], bool>) -> T) -> T {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<[u8; 32], bool>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut guard = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

/// The certificate's RSA key, ready to check PKCS#1 v1.5 signatures over `digest` hashes.
fn rsa_verifier(cert: &Certificate, digest: DigestAlgorithm) -> Option<ParsedPublicKey> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != rfc5912::RSA_ENCRYPTION {
        return None;
    }
    ParsedPublicKey::new(digest.rsa_pkcs1(), spki.subject_public_key.raw_bytes()).ok()
}

/// Whether `signature` is the key's PKCS#1 v1.5 signature of the `digest` hash `hash`.
fn verifies(key: &ParsedPublicKey, digest: DigestAlgorithm, hash: &[u8], signature: &[u8]) -> bool {
    aws_lc_rs::digest::Digest::import_less_safe(hash, digest.aws_lc())
        .and_then(|hash| key.verify_digest_sig(&hash, signature))
        .is_ok()
}

fn subject_key_id(cert: &Certificate) -> Option<SubjectKeyIdentifier> {
    match cert.tbs_certificate.get::<SubjectKeyIdentifier>() {
        Ok(Some((_, ski))) => Some(ski),
        _ => None,
    }
}

fn subject_string(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

// ---------------------------------------------------------------------------------------------
// Name constraints (RFC 5280 4.2.1.10), which no pure-Rust crate enforces.

enum NameRef<'n> {
    Email(&'n str),
    Dns(&'n str),
    Directory(&'n Name),
    Ip(&'n [u8]),
}

impl fmt::Display for NameRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRef::Email(email) => write!(f, "e-mail {email}"),
            NameRef::Dns(dns) => write!(f, "DNS name {dns}"),
            NameRef::Directory(_) => f.write_str("subject"),
            NameRef::Ip(ip) => write!(f, "IP address {ip:02x?}"),
        }
    }
}

/// `Err(name)` with the first name outside the constraints.
fn check_name_constraints(cert: &Certificate, constraints: &NameConstraints) -> Result<(), String> {
    let san = match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(san) => san.map(|(_, san)| san.0).unwrap_or_default(),
        Err(_) => return Err("unreadable subjectAltName".into()),
    };
    let subject = &cert.tbs_certificate.subject;
    let subject_emails = subject_emails(subject);
    let mut names: Vec<NameRef<'_>> = Vec::new();
    if !subject.0.is_empty() {
        names.push(NameRef::Directory(subject));
    }
    names.extend(subject_emails.iter().map(|email| NameRef::Email(email)));
    for name in &san {
        match name {
            GeneralName::Rfc822Name(email) => names.push(NameRef::Email(email.as_str())),
            GeneralName::DnsName(dns) => names.push(NameRef::Dns(dns.as_str())),
            GeneralName::DirectoryName(dn) => names.push(NameRef::Directory(dn)),
            GeneralName::IpAddress(ip) => names.push(NameRef::Ip(ip.as_bytes())),
            _ => {}
        }
    }
    let permitted: &[GeneralSubtree] = constraints.permitted_subtrees.as_deref().unwrap_or(&[]);
    let excluded: &[GeneralSubtree] = constraints.excluded_subtrees.as_deref().unwrap_or(&[]);
    for name in &names {
        let mut same_kind = false;
        let mut inside = false;
        for subtree in permitted {
            if let Some(matched) = within(&subtree.base, name) {
                same_kind = true;
                inside |= matched;
            }
        }
        let excluded = excluded
            .iter()
            .any(|subtree| within(&subtree.base, name) == Some(true));
        if (same_kind && !inside) || excluded {
            return Err(name.to_string());
        }
    }
    Ok(())
}

/// Whether `name` is within the subtree `base`; `None` when they are different kinds of name.
fn within(base: &GeneralName, name: &NameRef<'_>) -> Option<bool> {
    match (base, name) {
        (GeneralName::Rfc822Name(c), NameRef::Email(email)) => {
            Some(email_within(c.as_str(), email))
        }
        (GeneralName::DnsName(c), NameRef::Dns(dns)) => Some(domain_within(c.as_str(), dns)),
        (GeneralName::DirectoryName(c), NameRef::Directory(dn)) => Some(dn_within(c, dn)),
        (GeneralName::IpAddress(c), NameRef::Ip(ip)) => Some(ip_within(c.as_bytes(), ip)),
        _ => None,
    }
}

/// A constraint with `@` is one mailbox; `.example.it` any host below it; `example.it` that host.
fn email_within(constraint: &str, email: &str) -> bool {
    let Some((local, host)) = email.rsplit_once('@') else {
        return false;
    };
    match constraint.rsplit_once('@') {
        Some((c_local, c_host)) => local == c_local && host.eq_ignore_ascii_case(c_host),
        None if constraint.starts_with('.') => ends_with_ignore_case(host, constraint),
        None => host.eq_ignore_ascii_case(constraint),
    }
}

/// dNSName: the host itself or any host below it (a leading `.` means below only).
fn domain_within(constraint: &str, host: &str) -> bool {
    if constraint.is_empty() {
        return true;
    }
    if constraint.starts_with('.') {
        return ends_with_ignore_case(host, constraint);
    }
    host.eq_ignore_ascii_case(constraint)
        || (host.len() > constraint.len()
            && ends_with_ignore_case(host, constraint)
            && host.as_bytes().get(host.len() - constraint.len() - 1) == Some(&b'.'))
}

fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn ip_within(constraint: &[u8], ip: &[u8]) -> bool {
    if constraint.len() != ip.len() * 2 {
        return false;
    }
    let (base, mask) = constraint.split_at(ip.len());
    ip.iter()
        .zip(base)
        .zip(mask)
        .all(|((a, b), m)| a & m == b & m)
}

/// The subject starts with the constraint's RDNs.
fn dn_within(constraint: &Name, subject: &Name) -> bool {
    constraint.0.len() <= subject.0.len()
        && constraint
            .0
            .iter()
            .zip(&subject.0)
            .all(|(c, s)| rdn_eq(c, s))
}

fn rdn_eq(a: &RelativeDistinguishedName, b: &RelativeDistinguishedName) -> bool {
    a.0.len() == b.0.len() && a.0.iter().all(|x| b.0.iter().any(|y| atv_eq(x, y)))
}

/// Attribute equality, with RFC 5280 7.1-style folding of string values (case, spaces).
fn atv_eq(a: &AttributeTypeAndValue, b: &AttributeTypeAndValue) -> bool {
    if a.oid != b.oid {
        return false;
    }
    if a.value == b.value {
        return true;
    }
    match (directory_string(&a.value), directory_string(&b.value)) {
        (Some(x), Some(y)) => fold(x) == fold(y),
        _ => false,
    }
}

fn directory_string(value: &Any) -> Option<&str> {
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            std::str::from_utf8(value.value()).ok()
        }
        _ => None,
    }
}

fn fold(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// emailAddress attributes of a DN (legacy, still constrained as rfc822Name).
fn subject_emails(name: &Name) -> Vec<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == rfc3280::EMAIL_ADDRESS)
        .filter_map(|atv| directory_string(&atv.value).map(str::to_owned))
        .collect()
}

/// SAN rfc822Names first, then emailAddress attributes of the subject.
fn emails(cert: &Certificate) -> Vec<String> {
    let mut emails: Vec<String> = match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san
            .0
            .iter()
            .filter_map(|name| match name {
                GeneralName::Rfc822Name(email) => Some(email.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    emails.extend(subject_emails(&cert.tbs_certificate.subject));
    emails
}

// ---------------------------------------------------------------------------------------------
// DER walking: the raw bytes of the first SignerInfo and of its signed attributes.

/// One DER element: tag, the whole encoding, its contents, and what follows it.
struct Tlv<'d> {
    tag: u8,
    whole: &'d [u8],
    contents: &'d [u8],
    rest: &'d [u8],
}

/// The first DER element of `input`. Low tag numbers, definite lengths only (the strict `der`
/// decode already accepted the same bytes).
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest.get(n..)?)
    };
    let header = input.len() - rest.len();
    Some(Tlv {
        tag,
        whole: input.get(..header.checked_add(len)?)?,
        contents: rest.get(..len)?,
        rest: rest.get(len..)?,
    })
}

/// ContentInfo → [0] → SignedData → signerInfos (its last field) → first SignerInfo.
fn first_signer_info(p7s: &[u8]) -> Option<&[u8]> {
    let content_info = tlv(p7s)?.contents;
    let after_oid = tlv(content_info)?.rest;
    let explicit = tlv(after_oid)?.contents;
    let mut fields = tlv(explicit)?.contents;
    let mut last = None;
    while !fields.is_empty() {
        let field = tlv(fields)?;
        fields = field.rest;
        last = Some(field);
    }
    let signer_infos = last.filter(|field| field.tag == 0x31)?;
    tlv(signer_infos.contents).map(|signer_info| signer_info.whole)
}

/// The `[0] IMPLICIT` signed attributes of a SignerInfo, re-tagged as the SET OF that is signed.
fn signed_attributes_as_set(signer_info: &[u8]) -> Option<Vec<u8>> {
    let mut fields = tlv(signer_info)?.contents;
    for _ in 0..3 {
        // version, sid, digestAlgorithm
        fields = tlv(fields)?.rest;
    }
    let attrs = tlv(fields)?;
    if attrs.tag != 0xa0 {
        return None;
    }
    let mut set = attrs.whole.to_vec();
    *set.first_mut()? = 0x31;
    Some(set)
}

// ---------------------------------------------------------------------------------------------
// Digests

/// The digest algorithms of CMS signatures. PEC providers used SHA-1 until at least 2024.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    /// The RFC 5751 `micalg` parameter of `multipart/signed` (`sha-1`, `sha-256`, ...).
    pub fn micalg(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha1 => "sha-1",
            DigestAlgorithm::Sha256 => "sha-256",
            DigestAlgorithm::Sha384 => "sha-384",
            DigestAlgorithm::Sha512 => "sha-512",
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlgorithm::Sha1 => rfc5912::ID_SHA_1,
            DigestAlgorithm::Sha256 => rfc5912::ID_SHA_256,
            DigestAlgorithm::Sha384 => rfc5912::ID_SHA_384,
            DigestAlgorithm::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    fn from_oid(oid: &ObjectIdentifier) -> Option<DigestAlgorithm> {
        [
            DigestAlgorithm::Sha1,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha384,
            DigestAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|digest| digest.oid() == *oid)
    }

    /// The hash of a sha*WithRSAEncryption signature algorithm.
    fn from_rsa_signature_oid(oid: &ObjectIdentifier) -> Option<DigestAlgorithm> {
        match *oid {
            rfc5912::SHA_1_WITH_RSA_ENCRYPTION => Some(DigestAlgorithm::Sha1),
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Some(DigestAlgorithm::Sha256),
            rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Some(DigestAlgorithm::Sha384),
            rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }

    #[cfg(feature = "test-support")]
    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            DigestAlgorithm::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
            DigestAlgorithm::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            DigestAlgorithm::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            DigestAlgorithm::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    /// aws-lc's verification parameters: PKCS#1 v1.5 with this hash, keys of 1024 to 8192 bits
    /// (aws-lc has SHA-384 from 2048 bits only; the `rsa` crate took any size up to 4096).
    fn rsa_pkcs1(self) -> &'static lc::RsaParameters {
        match self {
            DigestAlgorithm::Sha1 => &lc::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            DigestAlgorithm::Sha256 => &lc::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            DigestAlgorithm::Sha384 => &lc::RSA_PKCS1_2048_8192_SHA384,
            DigestAlgorithm::Sha512 => &lc::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        }
    }

    fn aws_lc(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            DigestAlgorithm::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            DigestAlgorithm::Sha256 => &aws_lc_rs::digest::SHA256,
            DigestAlgorithm::Sha384 => &aws_lc_rs::digest::SHA384,
            DigestAlgorithm::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlgorithm::Sha1 => Sha1::digest(data).to_vec(),
            DigestAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
            DigestAlgorithm::Sha384 => Sha384::digest(data).to_vec(),
            DigestAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// The digest of `content` with every bare LF read as CRLF, hashed in place, no copy.
    fn canonical_digest(self, content: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(content: &[u8]) -> Vec<u8> {
            let mut hasher = D::new();
            feed_crlf(content, |chunk| hasher.update(chunk));
            hasher.finalize().to_vec()
        }
        match self {
            DigestAlgorithm::Sha1 => run::<Sha1>(content),
            DigestAlgorithm::Sha256 => run::<Sha256>(content),
            DigestAlgorithm::Sha384 => run::<Sha384>(content),
            DigestAlgorithm::Sha512 => run::<Sha512>(content),
        }
    }
}

/// Feeds `content` to `sink` with bare LF turned into CRLF (existing CRLF untouched), block by
/// block so that each block is hashed while still in cache; runs between bare LFs go through
/// unchanged.
fn feed_crlf(content: &[u8], mut sink: impl FnMut(&[u8])) {
    const BLOCK: usize = 32 << 10;
    let mut start = 0;
    for (n, block) in content.chunks(BLOCK).enumerate() {
        let offset = n * BLOCK;
        for i in memchr::memchr_iter(b'\n', block) {
            let lf = offset + i;
            if lf == 0 || content.get(lf - 1) != Some(&b'\r') {
                sink(content.get(start..lf).unwrap_or_default());
                sink(b"\r\n");
                start = lf + 1;
            }
        }
        let end = offset + block.len();
        sink(content.get(start..end).unwrap_or_default());
        start = end;
    }
}

fn time_to_chrono(time: Time) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(time.to_unix_duration().as_secs()).ok()?;
    DateTime::from_timestamp(secs, 0)
}

// ---------------------------------------------------------------------------------------------
// PEM

/// Each `-----BEGIN ...-----` .. `-----END ...-----` block of `input`, text around them ignored.
fn pem_blocks(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    const DASHES: &[u8] = b"-----";
    let mut rest = input;
    std::iter::from_fn(move || {
        let start = find(rest, BEGIN)?;
        let end = start + find(rest.get(start..)?, END)?;
        let after_label = end + END.len();
        let close = after_label + find(rest.get(after_label..)?, DASHES)? + DASHES.len();
        let block = rest.get(start..close)?;
        rest = rest.get(close..)?;
        Some(block)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn decode_pem(block: &[u8], what: &'static str) -> Result<(String, Document), SignatureError> {
    // PEM is ASCII: anything else fails in the PEM decoder with a proper error.
    let text = String::from_utf8_lossy(block);
    let (label, document) =
        Document::from_pem(&text).map_err(|source| SignatureError::Pem { what, source })?;
    Ok((label.to_owned(), document))
}

fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate>, SignatureError> {
    let mut certs = Vec::new();
    for block in pem_blocks(pem) {
        let (label, document) = decode_pem(block, "a PEM certificate")?;
        if label == "CERTIFICATE" {
            let cert = Certificate::from_der(document.as_bytes()).map_err(|source| {
                SignatureError::Pem {
                    what: "a PEM certificate",
                    source,
                }
            })?;
            certs.push(cert);
        }
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::sign::{SANDBOX_CA_PEM, SANDBOX_CERT_PEM, SANDBOX_KEY_PEM};
    use super::*;
    use base64::Engine as _;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::path::PathBuf;

    /// The project sample set: `PEC_SAMPLES_DIR`, else `shared/pec-samples` beside the repo.
    fn samples_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("PEC_SAMPLES_DIR") {
            return PathBuf::from(dir);
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pec-samples");
        assert!(
            dir.is_dir(),
            "PEC sample set not found: set PEC_SAMPLES_DIR or provide {}",
            dir.display()
        );
        dir
    }

    fn sample(name: &str) -> Vec<u8> {
        let path = samples_dir().join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    fn verify_with_tweak(
        raw: &[u8],
        anchors: &TrustAnchors,
        tweak: ConstraintTweak<'_>,
    ) -> SignatureReport {
        let mail = mailparse::parse_mail(raw).expect("sample parses");
        let signed = crate::find_signed(&mail).expect("sample has a signed entity");
        verify_signed_with(signed, anchors, tweak)
    }

    fn sandbox_anchors() -> TrustAnchors {
        let mut anchors = TrustAnchors::pec();
        anchors
            .add_pem(SigningIdentity::sandbox_ca_pem())
            .expect("sandbox CA is readable");
        anchors
    }

    const CONTENT: &[u8] = b"Content-Type: multipart/mixed; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Ricevuta di accettazione\r\n\
--inner\r\n\
Content-Type: application/xml; name=\"daticert.xml\"\r\n\
\r\n\
<postacert tipo=\"accettazione\" errore=\"nessuno\"/>\r\n\
--inner--\r\n";

    /// A provider-shaped message around a detached signature: `content` is the first part.
    fn signed_message(content: &[u8], p7s: &[u8]) -> Vec<u8> {
        let mut out = b"From: posta-certificata@pec.sandbox.test\r\n\
To: someone@pec.sandbox.test\r\n\
Subject: ACCETTAZIONE: prova\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----SIG\"\r\n\
\r\n\
This is an S/MIME signed message\r\n\
\r\n\
------SIG\r\n"
            .to_vec();
        out.extend_from_slice(content);
        out.extend_from_slice(
            b"\r\n------SIG\r\n\
Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\
\r\n",
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(p7s);
        for line in encoded.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n------SIG--\r\n");
        out
    }

    fn signing_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, 9, 26, 53)
            .single()
            .expect("valid date")
    }

    fn sandbox_message(digest: DigestAlgorithm) -> Vec<u8> {
        let p7s = sign_detached_with(CONTENT, &SigningIdentity::sandbox(), signing_time(), digest)
            .expect("signs");
        signed_message(CONTENT, &p7s)
    }

    fn lf(crlf: &[u8]) -> Vec<u8> {
        crlf.iter().copied().filter(|&b| b != b'\r').collect()
    }

    #[test]
    fn signature_of_samples_matches_expected() {
        let dir = samples_dir();
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("expected.json")).expect("expected.json is readable"),
        )
        .expect("expected.json is JSON");
        let entries = expected.as_array().expect("expected.json is an array");
        let anchors = TrustAnchors::pec();
        let mut mismatches = Vec::new();
        let mut valid = 0;
        for entry in entries {
            let file = entry["file"].as_str().expect("file");
            let want = match entry["signature"].as_str().expect("signature") {
                "placeholder" => "invalid",
                other => other,
            };
            let report = verify_message(&sample(file), &anchors);
            if report.verdict == Verdict::Valid {
                valid += 1;
                assert!(report.reason.is_none(), "{file}: {report:?}");
            } else {
                assert!(report.reason.is_some(), "{file}: {report:?}");
            }
            if report.verdict.as_str() != want {
                mismatches.push(format!("{file}: expected {want}, got {report:?}"));
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
        assert_eq!(entries.len(), 19, "sample set changed");
        assert_eq!(valid, 4, "the 4 intact Aruba/Sogei vectors are valid");
    }

    #[test]
    fn signature_of_aruba_reports_signer() {
        let report = verify_message(&sample("oca-aruba-accettazione.eml"), &TrustAnchors::pec());
        assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
        assert_eq!(
            report.signer_email.as_deref(),
            Some("posta-certificata@pec.aruba.it")
        );
        assert_eq!(
            report.signing_time,
            Utc.with_ymd_and_hms(2018, 11, 13, 15, 39, 26).single()
        );
        let signer = report.signer.expect("signer");
        assert!(
            signer.starts_with("CN=Posta Certificata ARUBA PEC,"),
            "{signer}"
        );
    }

    #[test]
    fn signature_of_edited_sample_is_a_digest_mismatch() {
        let report = verify_message(
            &sample("oca-sogei-busta-trasporto-edited-normal-email.eml"),
            &TrustAnchors::pec(),
        );
        assert_eq!(report.verdict, Verdict::Invalid);
        assert_eq!(report.reason.as_deref(), Some("messageDigest mismatch"));
        assert_eq!(
            report.signer_email.as_deref(),
            Some("posta-certificata@pcert.sogei.it")
        );
    }

    #[test]
    fn signature_name_constraints_are_enforced() {
        let without_aruba = |constraints: &mut NameConstraints| {
            if let Some(permitted) = constraints.permitted_subtrees.as_mut() {
                permitted.retain(|subtree| {
                    !matches!(&subtree.base, GeneralName::Rfc822Name(domain) if domain.as_str() == "pec.aruba.it")
                });
            }
        };
        let anchors = TrustAnchors::pec();
        for file in [
            "oca-aruba-accettazione.eml",
            "oca-aruba-avvenuta-consegna.eml",
        ] {
            let report = verify_with_tweak(&sample(file), &anchors, &without_aruba);
            assert_eq!(report.verdict, Verdict::Untrusted, "{file}: {report:?}");
            let reason = report.reason.expect("reason");
            assert!(reason.contains("name constraints"), "{reason}");
            assert!(
                reason.contains("posta-certificata@pec.aruba.it"),
                "{reason}"
            );
        }
        let sogei = verify_with_tweak(
            &sample("oca-sogei-busta-trasporto-invio-file.eml"),
            &anchors,
            &without_aruba,
        );
        assert_eq!(sogei.verdict, Verdict::Valid, "{sogei:?}");
    }

    #[test]
    fn signature_directory_name_constraints_are_enforced() {
        let without_aruba = |constraints: &mut NameConstraints| {
            if let Some(permitted) = constraints.permitted_subtrees.as_mut() {
                permitted.retain(|subtree| {
                    !matches!(&subtree.base, GeneralName::DirectoryName(dn) if dn.to_string().contains("Aruba"))
                });
            }
        };
        let report = verify_with_tweak(
            &sample("oca-aruba-accettazione.eml"),
            &TrustAnchors::pec(),
            &without_aruba,
        );
        assert_eq!(report.verdict, Verdict::Untrusted, "{report:?}");
        let reason = report.reason.expect("reason");
        assert!(
            reason.starts_with("subject of CN=Posta Certificata ARUBA PEC"),
            "{reason}"
        );
    }

    #[test]
    fn signature_needs_an_anchor() {
        let report = verify_message(
            &sample("oca-aruba-accettazione.eml"),
            &TrustAnchors::empty(),
        );
        assert_eq!(report.verdict, Verdict::Untrusted, "{report:?}");
        let reason = report.reason.expect("reason");
        assert!(
            reason.contains("Actalis Authentication Root CA"),
            "{reason}"
        );
    }

    #[test]
    fn signature_sandbox_round_trip() {
        for digest in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha1] {
            let message = sandbox_message(digest);
            let report = verify_message(&message, &TrustAnchors::pec());
            assert_eq!(report.verdict, Verdict::Untrusted, "{report:?}");
            assert!(
                report
                    .reason
                    .as_deref()
                    .unwrap_or_default()
                    .contains("PEC Connector Test CA"),
                "{report:?}"
            );

            let report = verify_message(&message, &sandbox_anchors());
            assert_eq!(report.verdict, Verdict::Valid, "{digest:?}: {report:?}");
            assert_eq!(report.reason, None);
            assert_eq!(
                report.signer_email.as_deref(),
                Some("posta-certificata@pec.sandbox.test")
            );
            assert_eq!(report.signing_time, Some(signing_time()));
            assert_eq!(report.signer, Some(SigningIdentity::sandbox().subject()));
            assert_eq!(
                SigningIdentity::sandbox().email().as_deref(),
                Some("posta-certificata@pec.sandbox.test")
            );
        }
    }

    #[test]
    fn signature_sandbox_detects_altered_content() {
        let message = sandbox_message(DigestAlgorithm::Sha256);
        let at = find(&message, b"Ricevuta di accettazione").expect("content present");
        let mut altered = message.clone();
        altered[at] ^= 0x01;
        let report = verify_message(&altered, &sandbox_anchors());
        assert_eq!(report.verdict, Verdict::Invalid);
        assert_eq!(report.reason.as_deref(), Some("messageDigest mismatch"));
    }

    #[test]
    fn signature_sandbox_lf_and_crlf_both_verify() {
        let crlf = sandbox_message(DigestAlgorithm::Sha256);
        let bare_lf = lf(&crlf);
        assert!(!bare_lf.contains(&b'\r'));
        for message in [crlf, bare_lf] {
            let report = verify_message(&message, &sandbox_anchors());
            assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
        }
        // Signing LF content gives the signature of its CRLF form.
        let p7s = sign_detached(&lf(CONTENT), &SigningIdentity::sandbox(), signing_time())
            .expect("signs");
        let report = verify_message(&signed_message(CONTENT, &p7s), &sandbox_anchors());
        assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
    }

    #[test]
    fn signature_checks_validity_at_signing_time() {
        // The sandbox certificates are valid from 2020-01-01.
        let before = Utc
            .with_ymd_and_hms(2019, 6, 1, 0, 0, 0)
            .single()
            .expect("date");
        let p7s = sign_detached(CONTENT, &SigningIdentity::sandbox(), before).expect("signs");
        let report = verify_message(&signed_message(CONTENT, &p7s), &sandbox_anchors());
        assert_eq!(report.verdict, Verdict::Untrusted, "{report:?}");
        assert!(
            report
                .reason
                .unwrap_or_default()
                .contains("not valid at signingTime")
        );

        // After 2049 signingTime is a GeneralizedTime.
        let late = Utc
            .with_ymd_and_hms(2050, 6, 1, 0, 0, 0)
            .single()
            .expect("date");
        let p7s = sign_detached(CONTENT, &SigningIdentity::sandbox(), late).expect("signs");
        let report = verify_message(&signed_message(CONTENT, &p7s), &sandbox_anchors());
        assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
        assert_eq!(report.signing_time, Some(late));
    }

    #[test]
    fn signature_missing_without_signed_entity_or_signature_part() {
        let plain = b"From: a@b.it\r\nSubject: x\r\n\r\nhello\r\n";
        assert_eq!(
            verify_message(plain, &TrustAnchors::pec()).verdict,
            Verdict::Missing
        );
        let no_sig = b"Content-Type: multipart/signed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/plain\r\n\r\nno p7s\r\n--b--\r\n";
        assert_eq!(
            verify_message(no_sig, &TrustAnchors::pec()).verdict,
            Verdict::Missing
        );
    }

    #[test]
    fn signature_trust_anchors_load() {
        assert_eq!(TrustAnchors::pec().len(), 1);
        assert!(TrustAnchors::empty().is_empty());
        assert!(
            format!("{:?}", TrustAnchors::default()).contains("Actalis Authentication Root CA")
        );
        let mut anchors = TrustAnchors::empty();
        assert!(anchors.add_pem(b"").is_err());
        assert!(
            anchors
                .add_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        anchors
            .add_pem(SigningIdentity::sandbox_ca_pem())
            .expect("adds");
        anchors
            .add_pem(SigningIdentity::sandbox_ca_pem())
            .expect("adds again");
        assert_eq!(anchors.len(), 1);
        let identity = format!("{:?}", SigningIdentity::sandbox());
        assert!(identity.contains("Posta Certificata Sandbox"), "{identity}");
    }

    #[test]
    fn signature_identity_rejects_wrong_key() {
        let err = SigningIdentity::from_pem(SANDBOX_CA_PEM, b"", SANDBOX_KEY_PEM)
            .expect_err("CA certificate with the provider key");
        assert!(matches!(err, SignatureError::KeyMismatch), "{err}");
        assert!(SigningIdentity::from_pem(SANDBOX_CERT_PEM, b"", b"").is_err());
    }

    #[test]
    fn signature_feed_crlf_canonicalises_bare_lf_only() {
        let mut out = Vec::new();
        feed_crlf(b"\na\nb\r\nc\r\rd\n\n", |chunk| {
            out.extend_from_slice(chunk)
        });
        assert_eq!(out, b"\r\na\r\nb\r\nc\r\rd\r\n\r\n");
        let mut out = Vec::new();
        feed_crlf(b"", |chunk| out.extend_from_slice(chunk));
        assert!(out.is_empty());
    }

    #[test]
    fn signature_name_constraint_matching() {
        assert!(email_within(
            "pec.aruba.it",
            "posta-certificata@pec.aruba.it"
        ));
        assert!(email_within(
            "PEC.Aruba.IT",
            "posta-certificata@pec.aruba.it"
        ));
        assert!(!email_within("pec.aruba.it", "x@sub.pec.aruba.it"));
        assert!(email_within(".aruba.it", "x@pec.aruba.it"));
        assert!(!email_within(".aruba.it", "x@aruba.it"));
        assert!(email_within("x@pec.aruba.it", "x@pec.aruba.it"));
        assert!(!email_within("y@pec.aruba.it", "x@pec.aruba.it"));
        assert!(!email_within("pec.aruba.it", "no-at-sign"));
        assert!(domain_within("example.it", "a.example.it"));
        assert!(!domain_within("example.it", "aexample.it"));
        assert!(ip_within(&[10, 0, 0, 0, 255, 0, 0, 0], &[10, 1, 2, 3]));
        assert!(ip_within(&[0; 8], &[192, 168, 1, 1]));
        assert!(!ip_within(&[0; 8], &[0; 16]));
    }

    fn with_p7s_part(body: &[u8]) -> Vec<u8> {
        let mut out = b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nhello\r\n--b\r\n\
Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n--b--\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn signature_feed_crlf_matches_naive(
            bytes in proptest::collection::vec(prop::sample::select(vec![b'a', b'\r', b'\n']), 0..80_000)
        ) {
            let mut naive = Vec::new();
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
                    naive.push(b'\r');
                }
                naive.push(b);
            }
            let mut fed = Vec::new();
            feed_crlf(&bytes, |chunk| fed.extend_from_slice(chunk));
            prop_assert_eq!(fed, naive);
        }

        #[test]
        fn signature_garbage_p7s_is_invalid(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let report = verify_message(&with_p7s_part(encoded.as_bytes()), &TrustAnchors::pec());
            prop_assert_eq!(report.verdict, Verdict::Invalid);
        }

        #[test]
        fn signature_garbage_p7s_text_is_invalid(text in "[ -~\r\n]{0,512}") {
            let report = verify_message(&with_p7s_part(text.as_bytes()), &TrustAnchors::pec());
            prop_assert_eq!(report.verdict, Verdict::Invalid);
        }

        #[test]
        fn signature_mutated_p7s_never_panics(at in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<bool>()) {
            static P7S: OnceLock<Vec<u8>> = OnceLock::new();
            let p7s = P7S.get_or_init(|| {
                sign_detached(CONTENT, &SigningIdentity::sandbox(), signing_time()).expect("signs")
            });
            let mut p7s = p7s.clone();
            let i = at.index(p7s.len());
            if cut {
                p7s.truncate(i);
            } else {
                p7s[i] ^= 1 << bit;
            }
            let report = verify_message(&signed_message(CONTENT, &p7s), &sandbox_anchors());
            if cut {
                prop_assert_eq!(report.verdict, Verdict::Invalid);
            }
        }
    }
}
