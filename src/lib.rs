//! A fast, strict implementation of the AWS Encryption SDK (ESDK) message format.
//!
//! Messages written here decrypt with the official SDKs and vice versa: message format v1 and v2,
//! all eleven ESDK algorithm suites on decrypt, key commitment (0x0478, 0x0578) on encrypt, raw
//! AES and raw RSA keyrings, multi-keyrings, the default and required-encryption-context
//! materials managers.
//!
//! ```
//! use esdk::{Client, DefaultCmm, EncryptionContext, RawAesKeyring};
//!
//! let keyring = RawAesKeyring::new("my-namespace", "my-key", &[7u8; 32])?;
//! let cmm = DefaultCmm::new(keyring);
//! let client = Client::new();
//! let context: EncryptionContext = [("purpose", "example")].into_iter().collect();
//!
//! let message = client.encrypt_blocking(&cmm, b"hello", &context)?;
//! let decrypted = client.decrypt_blocking(&cmm, &message, Some(&context))?;
//! assert_eq!(*decrypted.plaintext, b"hello"); // Zeroizing<Vec<u8>>: wiped when dropped
//! # Ok::<(), esdk::Error>(())
//! ```
//!
//! The workspace around this crate: `esdk-kinesis` (encrypted Kinesis records, a crypto-blind
//! cross-Region replicator, consumers), `esdk-cli` (the `esdk` command-line tool),
//! `esdk-replicator` (the replicator as a program) and `esdk-pipeline` (a demo).
//!
//! Features: `aws-lc-rs` (default) and `rustcrypto` choose the crypto backends; `kms` (default)
//! adds the AWS KMS keyrings on `aws-sdk-kms`; `parallel` (default) seals and opens the frames of
//! large one-shot messages on several threads; `tokio` adds `tokio::io` streaming adapters.
//!
//! Crypto backends are chosen at build time (features `aws-lc-rs`, the default, and `rustcrypto`);
//! see [`crypto`] for which to use for RSA decryption and why.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "kms")]
mod aws_error;
pub mod client;
pub mod cmm;
pub mod context;
pub mod crypto;
mod decryptor;
mod encryptor;
pub mod error;
pub mod format;
pub mod keyring;
#[cfg(feature = "hierarchy")]
pub mod keystore;
pub mod materials;
mod parallel;
pub mod policy;
pub mod stream;
pub mod suite;
mod wipe;

pub use client::{Client, ClientBuilder, Decrypted, MessageInfo, DEFAULT_DECRYPT_BUFFER_LIMIT, DEFAULT_FRAME_LENGTH};
pub use cmm::{CachingCmm, DefaultCmm, LocalCache, MaterialsManager, RequiredEncryptionContextCmm};
pub use context::EncryptionContext;
pub use crypto::{Backend, RsaPadding};
pub use error::{Error, ErrorKind, Result};
pub use format::{ContentType, HeaderLimits, MessageHeader};
pub use keyring::{Keyring, MultiKeyring, RawAesKeyring, RawRsaKeyring};
pub use materials::{DataKey, EncryptedDataKey};
pub use policy::CommitmentPolicy;
pub use stream::{DecryptingReader, EncryptingWriter, SignedMessages};
pub use suite::AlgorithmSuite;
