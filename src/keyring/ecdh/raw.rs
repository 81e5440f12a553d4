//! The raw ECDH keyring (spec `framework/raw-ecdh-keyring.md`) and its three key agreement
//! schemes (`framework/key-agreement-schemas.md`).

use std::fmt;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::wrap::{self, EdkKeys, KMS_ECDH_PROVIDER_ID, RAW_ECDH_PROVIDER_ID};
use super::{hex, EcdhCurve, PublicKey};
use crate::crypto::{Backend, EcdhPrivate};
use crate::error::{Error, Result, SkipReason};
use crate::keyring::raw_rsa::decode_pem;
use crate::keyring::{ensure_no_data_key, Attempts, Keyring};
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};

/// A key agreement scheme with its keys, as the official library's `RawEcdhStaticConfigurations`
/// names them. Private keys are PEM PKCS#8 (`-----BEGIN PRIVATE KEY-----`), public keys DER
/// SubjectPublicKeyInfo, as the spec requires.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum RawEcdhScheme<'a> {
    /// Static-static: the sender's private key and the recipient's public key. Encrypts, and
    /// decrypts what either party wrote for the other.
    RawPrivateKeyToStaticPublicKey {
        /// The sender's private key (PEM PKCS#8).
        sender_private_key_pem: &'a str,
        /// The recipient's public key (DER SubjectPublicKeyInfo).
        recipient_public_key_der: &'a [u8],
    },
    /// A fresh sender key pair for every message: encrypt only, to the recipient's public key.
    EphemeralPrivateKeyToStaticPublicKey {
        /// The recipient's public key (DER SubjectPublicKeyInfo).
        recipient_public_key_der: &'a [u8],
    },
    /// Decrypt only: every EDK to the recipient's public key, whoever sent it.
    PublicKeyDiscovery {
        /// The recipient's private key (PEM PKCS#8).
        recipient_private_key_pem: &'a str,
    },
}

impl fmt::Debug for RawEcdhScheme<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RawPrivateKeyToStaticPublicKey { .. } => "RawPrivateKeyToStaticPublicKey",
            Self::EphemeralPrivateKeyToStaticPublicKey { .. } => "EphemeralPrivateKeyToStaticPublicKey",
            Self::PublicKeyDiscovery { .. } => "PublicKeyDiscovery",
        })
    }
}

enum Scheme {
    /// The static-static secret is the same for every message (and either way round), so it is
    /// computed once.
    Static {
        sender: PublicKey,
        recipient: PublicKey,
        secret: Zeroizing<Vec<u8>>,
    },
    Ephemeral {
        recipient: PublicKey,
    },
    Discovery {
        recipient_key: Box<dyn EcdhPrivate>,
        recipient: PublicKey,
    },
}

/// Wraps data keys under ECDH-derived keys of local key pairs.
pub struct RawEcdhKeyring {
    curve: EcdhCurve,
    backend: Backend,
    scheme: Scheme,
}

impl RawEcdhKeyring {
    /// A keyring of `scheme` on `curve`, on the default crypto backend.
    pub fn new(curve: EcdhCurve, scheme: RawEcdhScheme<'_>) -> Result<Self> {
        Self::with_backend(curve, scheme, Backend::default())
    }

    /// As [`Self::new`] on a chosen backend. Every key is checked to be of `curve`, and public
    /// keys to be points of it.
    pub fn with_backend(curve: EcdhCurve, scheme: RawEcdhScheme<'_>, backend: Backend) -> Result<Self> {
        let provider = backend.provider();
        let private = |pem: &str| -> Result<Box<dyn EcdhPrivate>> {
            let der = Zeroizing::new(decode_pem(pem, "PRIVATE KEY")?);
            provider.ecdh_private(curve, &der)
        };
        let scheme = match scheme {
            RawEcdhScheme::RawPrivateKeyToStaticPublicKey { sender_private_key_pem, recipient_public_key_der } => {
                let sender_key = private(sender_private_key_pem)?;
                let sender = PublicKey::from_sec1(curve, backend, sender_key.public_point())?;
                let recipient = PublicKey::from_spki(curve, backend, recipient_public_key_der)?;
                let secret = sender_key.agree(&recipient.uncompressed)?;
                Scheme::Static { sender, recipient, secret }
            }
            RawEcdhScheme::EphemeralPrivateKeyToStaticPublicKey { recipient_public_key_der } => {
                Scheme::Ephemeral { recipient: PublicKey::from_spki(curve, backend, recipient_public_key_der)? }
            }
            RawEcdhScheme::PublicKeyDiscovery { recipient_private_key_pem } => {
                let recipient_key = private(recipient_private_key_pem)?;
                let recipient = PublicKey::from_sec1(curve, backend, recipient_key.public_point())?;
                Scheme::Discovery { recipient_key, recipient }
            }
        };
        Ok(Self { curve, backend, scheme })
    }

    /// The curve.
    pub fn curve(&self) -> EcdhCurve {
        self.curve
    }

    /// The recipient's public key as DER SubjectPublicKeyInfo (for discovery: derived from the
    /// private key), e.g. to hand to senders.
    pub fn recipient_public_key_der(&self) -> Vec<u8> {
        let recipient = match &self.scheme {
            Scheme::Static { recipient, .. }
            | Scheme::Ephemeral { recipient }
            | Scheme::Discovery { recipient, .. } => recipient,
        };
        self.curve.spki_from_point(&recipient.uncompressed)
    }

    fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::Static { .. } => "RawPrivateKeyToStaticPublicKey",
            Scheme::Ephemeral { .. } => "EphemeralPrivateKeyToStaticPublicKey",
            Scheme::Discovery { .. } => "PublicKeyDiscovery",
        }
    }

    fn describe(&self) -> String {
        format!("raw ECDH {} keyring ({})", self.curve, self.scheme_name())
    }

    fn expected_keys(&self) -> String {
        match &self.scheme {
            Scheme::Static { sender, recipient, .. } => {
                format!("sender {} and recipient {}", hex(&sender.compressed), hex(&recipient.compressed))
            }
            Scheme::Ephemeral { recipient } | Scheme::Discovery { recipient, .. } => {
                format!("recipient {}", hex(&recipient.compressed))
            }
        }
    }
}

impl fmt::Debug for RawEcdhKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEcdhKeyring")
            .field("curve", &self.curve)
            .field("scheme", &self.scheme_name())
            .field("keys", &self.expected_keys())
            .finish_non_exhaustive()
    }
}

/// The shared secret of an EDK this keyring matches, or why it does not match.
enum Match {
    Secret(Zeroizing<Vec<u8>>),
    Skip(SkipReason),
}

impl RawEcdhKeyring {
    fn match_edk(&self, keys: EdkKeys<'_>) -> Result<Match> {
        let skip = || {
            Match::Skip(SkipReason::EcdhPublicKeys {
                sender: hex(keys.sender),
                recipient: hex(keys.recipient),
                expected: self.expected_keys(),
            })
        };
        Ok(match &self.scheme {
            Scheme::Static { sender, recipient, secret } => {
                let (s, r) = (&sender.compressed[..], &recipient.compressed[..]);
                if (keys.sender, keys.recipient) == (s, r) || (keys.sender, keys.recipient) == (r, s) {
                    Match::Secret(secret.clone())
                } else {
                    skip()
                }
            }
            Scheme::Discovery { recipient_key, recipient } => {
                if keys.recipient != recipient.compressed {
                    skip()
                } else {
                    // The sender's point is the EDK's: the backend refuses one off the curve.
                    Match::Secret(recipient_key.agree(keys.sender)?)
                }
            }
            // OnDecrypt refuses this scheme before matching.
            Scheme::Ephemeral { .. } => skip(),
        })
    }
}

#[async_trait]
impl Keyring for RawEcdhKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let context = materials.encryption_context().to_bytes()?;
        let (secret, sender, recipient) = match &self.scheme {
            Scheme::Discovery { .. } => {
                return Err(Error::Keyring {
                    action: "wrap the data key",
                    reason: format!(
                        "{} cannot encrypt: it holds only the recipient's private key; encrypt with the \
                         EphemeralPrivateKeyToStaticPublicKey or RawPrivateKeyToStaticPublicKey scheme",
                        self.describe()
                    ),
                    retryable: false,
                });
            }
            Scheme::Static { sender, recipient, secret } => (secret.clone(), sender.compressed.clone(), recipient),
            Scheme::Ephemeral { recipient } => {
                let ephemeral = self.backend.provider().ecdh_generate(self.curve)?;
                let secret = ephemeral.agree(&recipient.uncompressed)?;
                (secret, self.curve.compress(ephemeral.public_point()), recipient)
            }
        };
        let keys = EdkKeys { sender: &sender, recipient: &recipient.compressed };
        let fixed_info = wrap::fixed_info(self.curve, keys, &context);
        let data_key = materials.data_key_or_generate()?.expose_secret();
        let ciphertext = wrap::wrap(self.backend, &secret, &fixed_info, data_key)?;
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: RAW_ECDH_PROVIDER_ID.to_owned(),
            provider_info: wrap::provider_info(keys),
            ciphertext,
        });
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        if matches!(self.scheme, Scheme::Ephemeral { .. }) {
            return Err(Error::Keyring {
                action: "unwrap the data key",
                reason: format!(
                    "{} cannot decrypt: the sender's ephemeral private key is gone; decrypt with the \
                     recipient's private key (PublicKeyDiscovery or RawPrivateKeyToStaticPublicKey)",
                    self.describe()
                ),
                retryable: false,
            });
        }
        ensure_no_data_key(&materials)?;
        let mut attempts = Attempts::new(self.describe(), edks);
        let context = materials.encryption_context().to_bytes()?;
        let key_len = materials.suite().data_key_len();
        for (i, edk) in edks.iter().enumerate() {
            if edk.provider_id != RAW_ECDH_PROVIDER_ID && edk.provider_id != KMS_ECDH_PROVIDER_ID {
                attempts.skip(i, edk, SkipReason::ProviderId);
                continue;
            }
            let keys = match wrap::parse_provider_info(self.curve, &edk.provider_info) {
                Ok(keys) => keys,
                Err(reason) => {
                    attempts.skip(i, edk, SkipReason::ProviderInfoLayout { reason });
                    continue;
                }
            };
            let secret = match self.match_edk(keys) {
                Ok(Match::Secret(secret)) => secret,
                Ok(Match::Skip(why)) => {
                    attempts.skip(i, edk, why);
                    continue;
                }
                Err(_) => {
                    attempts.fail(i, edk, crate::error::EdkFailure::Unwrap);
                    continue;
                }
            };
            let fixed_info = wrap::fixed_info(self.curve, keys, &context);
            match wrap::unwrap(self.backend, &secret, &fixed_info, &edk.ciphertext, key_len) {
                Ok(plain) => {
                    materials.set_data_key_from_edk(DataKey::from_bytes(&plain), i)?;
                    return Ok(materials);
                }
                Err(failure) => attempts.fail(i, edk, failure),
            }
        }
        Err(attempts.into_error())
    }
}

#[cfg(all(test, feature = "aws-lc-rs"))]
mod tests {
    use aws_lc_rs::agreement;
    use aws_lc_rs::encoding::AsDer;

    use super::*;
    use crate::{AlgorithmSuite, Client, CommitmentPolicy, DefaultCmm, EncryptionContext};

    /// A key pair as the spec's formats: PEM PKCS#8 private key, DER SubjectPublicKeyInfo.
    pub(crate) fn key_pair(curve: EcdhCurve) -> (String, Vec<u8>) {
        let alg = match curve {
            EcdhCurve::P256 => &agreement::ECDH_P256,
            EcdhCurve::P384 => &agreement::ECDH_P384,
            EcdhCurve::P521 => &agreement::ECDH_P521,
        };
        let key = agreement::PrivateKey::generate(alg).unwrap();
        let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der = key.as_der().unwrap();
        let pem = pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, pkcs8.as_ref()).unwrap();
        let spki = key.compute_public_key().unwrap().as_der().unwrap();
        (pem, spki.as_ref().to_vec())
    }

    fn context() -> EncryptionContext {
        [("tenant", "ä-1"), ("purpose", "test")].into_iter().collect()
    }

    async fn encrypt(keyring: RawEcdhKeyring, plaintext: &[u8]) -> Result<Vec<u8>> {
        Client::builder().build()?.encrypt(&DefaultCmm::new(keyring), plaintext, &context()).await
    }

    async fn decrypt(keyring: RawEcdhKeyring, message: &[u8]) -> Result<Vec<u8>> {
        let out = Client::builder().build()?.decrypt(&DefaultCmm::new(keyring), message, None).await?;
        Ok(out.plaintext.to_vec())
    }

    #[tokio::test]
    async fn every_scheme_on_every_curve_and_backend_round_trips() {
        for curve in EcdhCurve::ALL {
            let (sender_pem, sender_spki) = key_pair(curve);
            let (recipient_pem, recipient_spki) = key_pair(curve);
            for enc_backend in Backend::all() {
                for dec_backend in Backend::all() {
                    let ring = |scheme| RawEcdhKeyring::with_backend(curve, scheme, *enc_backend).unwrap();
                    let dec_ring = |scheme| RawEcdhKeyring::with_backend(curve, scheme, *dec_backend).unwrap();
                    let static_sender = RawEcdhScheme::RawPrivateKeyToStaticPublicKey {
                        sender_private_key_pem: &sender_pem,
                        recipient_public_key_der: &recipient_spki,
                    };
                    let static_recipient = RawEcdhScheme::RawPrivateKeyToStaticPublicKey {
                        sender_private_key_pem: &recipient_pem,
                        recipient_public_key_der: &sender_spki,
                    };
                    let ephemeral = RawEcdhScheme::EphemeralPrivateKeyToStaticPublicKey {
                        recipient_public_key_der: &recipient_spki,
                    };
                    let discovery = RawEcdhScheme::PublicKeyDiscovery { recipient_private_key_pem: &recipient_pem };
                    for (writer, readers) in [
                        (static_sender, vec![static_sender, static_recipient, discovery]),
                        // A static-static keyring matches only its own pair, not an ephemeral sender.
                        (ephemeral, vec![discovery]),
                    ] {
                        let message = encrypt(ring(writer), b"hello ecdh").await.unwrap();
                        for reader in readers {
                            let out = decrypt(dec_ring(reader), &message).await.unwrap();
                            assert_eq!(out, b"hello ecdh", "{curve} {writer:?} -> {reader:?}");
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn schemes_refuse_what_they_cannot_do_and_skips_name_the_keys() {
        let curve = EcdhCurve::P256;
        let (pem, spki) = key_pair(curve);
        let (other_pem, _) = key_pair(curve);
        let ephemeral = RawEcdhKeyring::new(
            curve,
            RawEcdhScheme::EphemeralPrivateKeyToStaticPublicKey { recipient_public_key_der: &spki },
        )
        .unwrap();
        let message = encrypt(ephemeral, b"x").await.unwrap();
        let ephemeral = RawEcdhKeyring::new(
            curve,
            RawEcdhScheme::EphemeralPrivateKeyToStaticPublicKey { recipient_public_key_der: &spki },
        )
        .unwrap();
        let err = decrypt(ephemeral, &message).await.unwrap_err().to_string();
        assert!(err.contains("cannot decrypt"), "{err}");

        let discovery =
            RawEcdhKeyring::new(curve, RawEcdhScheme::PublicKeyDiscovery { recipient_private_key_pem: &pem }).unwrap();
        assert_eq!(discovery.recipient_public_key_der(), spki);
        let err = encrypt(discovery, b"x").await.unwrap_err().to_string();
        assert!(err.contains("cannot encrypt"), "{err}");

        let stranger =
            RawEcdhKeyring::new(curve, RawEcdhScheme::PublicKeyDiscovery { recipient_private_key_pem: &other_pem })
                .unwrap();
        let text = decrypt(stranger, &message).await.unwrap_err().to_string();
        assert!(text.contains("to recipient key") && text.contains("this keyring has recipient"), "{text}");

        // A key of another curve, a public key where a private one belongs, garbage.
        let (p384_pem, p384_spki) = key_pair(EcdhCurve::P384);
        let err = RawEcdhKeyring::new(
            curve,
            RawEcdhScheme::EphemeralPrivateKeyToStaticPublicKey { recipient_public_key_der: &p384_spki },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("a P-384 key"), "{err}");
        assert!(RawEcdhKeyring::new(curve, RawEcdhScheme::PublicKeyDiscovery { recipient_private_key_pem: &p384_pem })
            .is_err());
        let mut off_curve = spki.clone();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 1;
        assert!(RawEcdhKeyring::new(
            curve,
            RawEcdhScheme::EphemeralPrivateKeyToStaticPublicKey { recipient_public_key_der: &off_curve },
        )
        .is_err());
        let debug = format!("{:?}", RawEcdhScheme::PublicKeyDiscovery { recipient_private_key_pem: &pem });
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }

    #[tokio::test]
    async fn every_suite_wraps_its_own_key_length() {
        let (pem, spki) = key_pair(EcdhCurve::P521);
        for suite in AlgorithmSuite::ALL {
            let writer = RawEcdhKeyring::new(
                EcdhCurve::P521,
                RawEcdhScheme::EphemeralPrivateKeyToStaticPublicKey { recipient_public_key_der: &spki },
            )
            .unwrap();
            let reader = RawEcdhKeyring::new(
                EcdhCurve::P521,
                RawEcdhScheme::PublicKeyDiscovery { recipient_private_key_pem: &pem },
            )
            .unwrap();
            let policy = if suite.is_committing() {
                CommitmentPolicy::RequireEncryptRequireDecrypt
            } else {
                CommitmentPolicy::ForbidEncryptAllowDecrypt
            };
            let client = Client::builder().commitment_policy(policy).suite(suite).build().unwrap();
            let message = client.encrypt(&DefaultCmm::new(writer), b"suite", &context()).await.unwrap();
            let out = client.decrypt(&DefaultCmm::new(reader), &message, None).await.unwrap();
            assert_eq!(&out.plaintext[..], b"suite", "{suite:?}");
        }
    }
}
