//! Detached S/MIME signing (CMS SignedData, RSA PKCS#1 v1.5) for the project's own fixtures and
//! the sandbox provider, with the sandbox provider's identity (its certificate, **private key**
//! and test CA, compiled in). Only with the `test-support` feature: the sandbox, the demo and
//! tests turn it on; the Lambdas never link it.

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{RsaPrivateKey, RsaPublicKey};

use super::*;

pub(super) static SANDBOX_CERT_PEM: &[u8] = include_bytes!("../../testdata/ca/provider.pem");
pub(super) static SANDBOX_KEY_PEM: &[u8] = include_bytes!("../../testdata/ca/provider.key");
pub(super) static SANDBOX_CA_PEM: &[u8] = include_bytes!("../../testdata/ca/test-ca.pem");

/// A certificate, the chain to bundle with it, and its RSA private key.
#[derive(Clone)]
pub struct SigningIdentity {
    cert: Certificate,
    chain: Vec<Certificate>,
    key: RsaPrivateKey,
}

impl SigningIdentity {
    /// From PEM: the signer certificate, extra chain certificates to embed (may be empty), the
    /// PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) RSA key, which must match the
    /// certificate.
    pub fn from_pem(
        cert_pem: &[u8],
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<SigningIdentity, SignatureError> {
        let cert = pem_certificates(cert_pem)?
            .into_iter()
            .next()
            .ok_or(SignatureError::NoPem {
                what: "the signing certificate",
            })?;
        let chain = pem_certificates(chain_pem)?
            .into_iter()
            .filter(|c| *c != cert)
            .collect();
        let key_block = pem_blocks(key_pem).next().ok_or(SignatureError::NoPem {
            what: "the private key",
        })?;
        let (label, der) = decode_pem(key_block, "the private key")?;
        let key = match label.as_str() {
            "PRIVATE KEY" => {
                RsaPrivateKey::from_pkcs8_der(der.as_bytes()).map_err(SignatureError::Pkcs8)?
            }
            "RSA PRIVATE KEY" => {
                RsaPrivateKey::from_pkcs1_der(der.as_bytes()).map_err(SignatureError::Pkcs1)?
            }
            _ => return Err(SignatureError::KeyLabel { label }),
        };
        let public = rsa_key(&cert).ok_or(SignatureError::NotRsa)?;
        if RsaPublicKey::from(&key) != public {
            return Err(SignatureError::KeyMismatch);
        }
        Ok(SigningIdentity { cert, chain, key })
    }

    /// The committed test identity "Posta Certificata Sandbox"
    /// (`posta-certificata@pec.sandbox.test`) from `functions/pec/testdata/ca`, issued by the
    /// test CA of [`SigningIdentity::sandbox_ca_pem`]. For tests and the sandbox provider only.
    pub fn sandbox() -> SigningIdentity {
        static SANDBOX: OnceLock<SigningIdentity> = OnceLock::new();
        SANDBOX
            .get_or_init(|| {
                SigningIdentity::from_pem(SANDBOX_CERT_PEM, SANDBOX_CA_PEM, SANDBOX_KEY_PEM)
                    .expect("the committed sandbox identity in testdata/ca is readable")
            })
            .clone()
    }

    /// The PEM of the test CA that issued [`SigningIdentity::sandbox`].
    pub fn sandbox_ca_pem() -> &'static [u8] {
        SANDBOX_CA_PEM
    }

    /// The signer's e-mail (SAN rfc822Name), which a provider uses as the envelope `From`.
    pub fn email(&self) -> Option<String> {
        emails(&self.cert).into_iter().next()
    }

    /// The signer certificate's subject, as in [`SignatureReport::signer`].
    pub fn subject(&self) -> String {
        subject_string(&self.cert)
    }
}

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("subject", &subject_string(&self.cert))
            .field(
                "chain",
                &self.chain.iter().map(subject_string).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Detached CMS SignedData (DER) over `content`, the exact bytes of the first part of the
/// `multipart/signed`, with SHA-256; see [`sign_detached_with`].
pub fn sign_detached(
    content: &[u8],
    identity: &SigningIdentity,
    signing_time: DateTime<Utc>,
) -> Result<Vec<u8>, SignatureError> {
    sign_detached_with(content, identity, signing_time, DigestAlgorithm::Sha256)
}

/// Detached CMS SignedData (DER) over `content`, with signed attributes contentType (id-data),
/// signingTime (`signing_time`) and messageDigest, RSA PKCS#1 v1.5, certificates = signer +
/// chain. The content is hashed as the verifier hashes it, bare LF read as CRLF, so LF and
/// CRLF content give the same signature; the message should still carry CRLF.
pub fn sign_detached_with(
    content: &[u8],
    identity: &SigningIdentity,
    signing_time: DateTime<Utc>,
    digest: DigestAlgorithm,
) -> Result<Vec<u8>, SignatureError> {
    let time = der_time(signing_time).ok_or(SignatureError::SigningTime { time: signing_time })?;
    let attrs: SetOfVec<Attribute> = SetOfVec::try_from(vec![
        attribute(
            rfc5911::ID_CONTENT_TYPE,
            Any::encode_from(&rfc5911::ID_DATA),
        )?,
        attribute(rfc5911::ID_SIGNING_TIME, Any::encode_from(&time))?,
        attribute(
            rfc5911::ID_MESSAGE_DIGEST,
            Any::encode_from(
                &OctetString::new(digest.canonical_digest(content))
                    .map_err(SignatureError::Encode)?,
            ),
        )?,
    ])
    .map_err(SignatureError::Encode)?;
    let signed = digest.digest(&attrs.to_der().map_err(SignatureError::Encode)?);
    let signature = identity
        .key
        .sign_with_rng(&mut rsa::rand_core::OsRng, digest.pkcs1v15(), &signed)
        .map_err(SignatureError::Sign)?;

    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest.oid(),
        parameters: None,
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: identity.cert.tbs_certificate.issuer.clone(),
            serial_number: identity.cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(attrs),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        signature: OctetString::new(signature).map_err(SignatureError::Encode)?,
        unsigned_attrs: None,
    };
    let mut certs = vec![CertificateChoices::Certificate(identity.cert.clone())];
    for cert in &identity.chain {
        let choice = CertificateChoices::Certificate(cert.clone());
        if !certs.contains(&choice) {
            certs.push(choice);
        }
    }
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(SignatureError::Encode)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(certs).map_err(SignatureError::Encode)?,
        )),
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![signer_info]).map_err(SignatureError::Encode)?,
        ),
    };
    ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(SignatureError::Encode)?,
    }
    .to_der()
    .map_err(SignatureError::Encode)
}

fn attribute(oid: ObjectIdentifier, value: der::Result<Any>) -> Result<Attribute, SignatureError> {
    let value = value.map_err(SignatureError::Encode)?;
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(SignatureError::Encode)?,
    })
}

/// RFC 5652 11.3: UTCTime through 2049, GeneralizedTime after.
fn der_time(time: DateTime<Utc>) -> Option<Time> {
    let since_epoch = Duration::from_secs(u64::try_from(time.timestamp()).ok()?);
    if time.year() < 2050 {
        UtcTime::from_unix_duration(since_epoch)
            .ok()
            .map(Time::UtcTime)
    } else {
        GeneralizedTime::from_unix_duration(since_epoch)
            .ok()
            .map(Time::GeneralTime)
    }
}

/// The certificate's RSA key for the `rsa` crate (signing identities).
fn rsa_key(cert: &Certificate) -> Option<RsaPublicKey> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != rfc5912::RSA_ENCRYPTION {
        return None;
    }
    RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes()).ok()
}
