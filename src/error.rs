//! The crate's one error type.
//!
//! Every message names the check that failed and, where it helps, what to do about it. No message
//! ever contains key material or plaintext; encryption-context keys, provider ids and key names
//! are public (they travel unencrypted in the header) and are shown.

use core::fmt;

use crate::policy::CommitmentPolicy;
use crate::suite::AlgorithmSuite;

/// Result alias for this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Coarse classification of an [`Error`], stable for matching and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not a well-formed ESDK message.
    Parse,
    /// Input ended before the message was complete.
    Truncated,
    /// The input looks base64-encoded; decode it first.
    Base64Input,
    /// More encrypted data keys than the configured maximum.
    TooManyEncryptedDataKeys,
    /// The commitment policy forbids this suite.
    CommitmentPolicy,
    /// Derived commitment key differs from the header's.
    CommitmentMismatch,
    /// The header authentication tag did not verify.
    HeaderAuthentication,
    /// A frame or body tag did not verify, or frames are out of order.
    BodyAuthentication,
    /// The footer signature did not verify.
    Signature,
    /// A signed message was given to an unsigned-only decryption.
    SignedNotAllowed,
    /// Encryption context differs from what the caller required.
    EncryptionContextMismatch,
    /// No keyring could produce the data key.
    NoDecryptableDataKey,
    /// A keyring could not wrap the data key on encrypt.
    Keyring,
    /// Materials returned by a CMM or keyring break an invariant.
    InvalidMaterials,
    /// Bad encryption context supplied by the caller.
    InvalidEncryptionContext,
    /// Bad configuration or argument.
    InvalidConfig,
    /// Bad key material (wrong length, unparsable PEM, ...).
    InvalidKey,
    /// A configured size limit was exceeded.
    LimitExceeded,
    /// Bytes follow a complete message.
    TrailingData,
    /// The encrypted message would exceed the caller's size limit (e.g. a Kinesis record).
    TooLargeAfterEncryption,
    /// The crypto backend failed unexpectedly.
    Crypto,
    /// Reading or writing a stream failed.
    Io,
    /// A KMS call failed.
    Kms,
    /// The branch key store failed (DynamoDB, KMS, or a stored item that does not verify).
    KeyStore,
    /// A blocking call was made inside an async runtime.
    BlockingInAsyncContext,
    /// An internal invariant failed (a bug).
    Internal,
}

/// A failed AWS KMS call, classified for operators: the operation, the `KeyId` it used, the AWS
/// error code and whether retrying can help.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KmsError {
    /// `GenerateDataKey`, `Encrypt` or `Decrypt`.
    pub operation: &'static str,
    /// The `KeyId` the call used.
    pub key_id: String,
    /// The AWS error code (`ThrottlingException`, `AccessDeniedException`, ...), or a transport
    /// failure class (`Timeout`, `DispatchFailure`).
    pub code: String,
    /// Detail from the SDK or service.
    pub message: String,
    /// Whether retrying later may succeed (throttling, timeouts, 5xx).
    pub retryable: bool,
}

impl KmsError {
    /// A failure with every field given.
    pub fn new(operation: &'static str, key_id: &str, code: &str, message: &str, retryable: bool) -> Self {
        Self { operation, key_id: key_id.to_owned(), code: code.to_owned(), message: message.to_owned(), retryable }
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KMS {} with KeyId {} failed: {}{}{} ({})",
            self.operation,
            self.key_id,
            self.code,
            if self.message.is_empty() { "" } else { ": " },
            self.message,
            if self.retryable { "transient, retrying later may help" } else { "permanent" }
        )
    }
}

impl std::error::Error for KmsError {}

/// A failed branch key store operation (spec `framework/branch-key-store.md`): which operation,
/// table, branch key id and version, and what failed underneath.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStoreError {
    /// `GetActiveBranchKey`, `GetBranchKeyVersion`, `GetBeaconKey`, `CreateKey`, `VersionKey` or
    /// `CreateKeyStore`.
    pub operation: &'static str,
    /// The DynamoDB table of the store.
    pub table: String,
    /// The branch key id asked for (empty for `CreateKeyStore`).
    pub branch_key_id: String,
    /// The branch key version asked for, if one was.
    pub version: Option<String>,
    /// What failed.
    pub cause: KeyStoreCause,
}

/// What underneath a [`KeyStoreError`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyStoreCause {
    /// A DynamoDB call failed.
    DynamoDb {
        /// `GetItem`, `TransactWriteItems`, `DescribeTable` or `CreateTable`.
        call: &'static str,
        /// The AWS error code, or a transport failure class.
        code: String,
        /// Detail from the SDK or service.
        message: String,
        /// Whether retrying later may succeed.
        retryable: bool,
    },
    /// The KMS call that unwraps, creates or checks the key failed.
    Kms(KmsError),
    /// The store has no such item.
    NotFound,
    /// The item exists but is not a valid branch key record (or its `kms-arn` is not the
    /// configured key): it is refused before any KMS call.
    InvalidItem(String),
    /// KMS or DynamoDB answered with something the store cannot use (another key than asked
    /// for, a ciphertext or key of the wrong length, no table description).
    InvalidResponse(String),
    /// A conditional write lost: the key already exists (`CreateKey`), or another writer
    /// changed the active version since it was read (`VersionKey`; read and try again).
    Conflict,
    /// The operation is not possible with this store's configuration or these arguments
    /// (discovery stores cannot write; a chosen branch key id needs a context; a table with
    /// another key schema).
    Unsupported(String),
}

impl KeyStoreError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match &self.cause {
            KeyStoreCause::DynamoDb { retryable, .. } => *retryable,
            KeyStoreCause::Kms(e) => e.retryable,
            KeyStoreCause::Conflict => self.operation == "VersionKey",
            _ => false,
        }
    }
}

impl fmt::Display for KeyStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "branch key store {} on table {}", self.operation, self.table)?;
        if !self.branch_key_id.is_empty() {
            write!(f, " for branch key {}", self.branch_key_id)?;
        }
        if let Some(v) = &self.version {
            write!(f, " version {v}")?;
        }
        f.write_str(": ")?;
        match &self.cause {
            KeyStoreCause::DynamoDb { call, code, message, retryable } => write!(
                f,
                "DynamoDB {call} failed: {code}{}{message} ({}){}",
                if message.is_empty() { "" } else { ": " },
                if *retryable { "transient, retrying later may help" } else { "permanent" },
                if code == "ResourceNotFoundException" {
                    "; check the table name and Region, or create it with esdk keystore create-store"
                } else {
                    ""
                }
            ),
            KeyStoreCause::Kms(e) => e.fmt(f),
            KeyStoreCause::NotFound => f.write_str(
                "the table has no such item (check the branch key id, the table, and that the key was created \
                 there: esdk keystore create-key)",
            ),
            KeyStoreCause::InvalidItem(why) => write!(f, "the stored item is refused: {why}"),
            KeyStoreCause::InvalidResponse(why) => write!(f, "the answer is refused: {why}"),
            KeyStoreCause::Conflict => f.write_str(if self.operation == "VersionKey" {
                "another writer changed the active version since it was read; run it again"
            } else {
                "the branch key id already exists; choose another or omit it for a new UUID"
            }),
            KeyStoreCause::Unsupported(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for KeyStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            KeyStoreCause::Kms(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a keyring skipped an encrypted data key without trying it (no key was used, no call made).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The EDK's provider id is not this keyring's (its namespace, or `aws-kms`).
    ProviderId,
    /// Raw keyrings: the key name in the provider info is not this keyring's.
    KeyName {
        /// The key name in the EDK, lossily decoded.
        found: String,
    },
    /// Raw AES and ECDH keyrings: the provider info does not have the layout this keyring writes.
    ProviderInfoLayout {
        /// What differs.
        reason: &'static str,
    },
    /// Strict KMS keyrings: the EDK's key is not the configured key (for MRK-aware keyrings: nor
    /// a replica of it).
    NotAllowListed {
        /// The EDK's key ARN.
        key_arn: String,
    },
    /// KMS discovery keyrings: the EDK's partition or account is outside the discovery filter.
    DiscoveryFilter {
        /// The EDK's key ARN.
        key_arn: String,
        /// The filter, as `partition P, accounts [..]`.
        filter: String,
    },
    /// Hierarchical keyring: the EDK is for another branch key than this keyring's (the
    /// configured one, or the one its supplier chose for the message's context).
    BranchKeyId {
        /// The branch key id in the EDK, lossily decoded.
        found: String,
        /// The branch key version the EDK names, if its ciphertext is long enough to say.
        version: Option<String>,
        /// The branch key id this keyring has for the message.
        expected: String,
    },
    /// ECDH keyrings: the EDK is between other public keys than this keyring's.
    EcdhPublicKeys {
        /// The EDK's sender public key, compressed, in hex.
        sender: String,
        /// The EDK's recipient public key, compressed, in hex.
        recipient: String,
        /// The key(s) this keyring matches, as `recipient <hex>` or `sender <hex> and recipient
        /// <hex>` (either way round).
        expected: String,
    },
    /// KMS discovery keyrings bound to a Region: a single-Region key of another Region.
    OtherRegion {
        /// The EDK's key ARN.
        key_arn: String,
        /// The only Region this keyring calls.
        region: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProviderId => f.write_str("provider id is not this keyring's"),
            Self::KeyName { found } => write!(f, "key name {found:?} is not this keyring's"),
            Self::ProviderInfoLayout { reason } => write!(f, "provider info is not in this keyring's layout: {reason}"),
            Self::EcdhPublicKeys { sender, recipient, expected } => {
                write!(
                    f,
                    "the EDK is from sender key {sender} to recipient key {recipient}; this keyring has {expected}"
                )
            }
            Self::NotAllowListed { key_arn } => write!(f, "{key_arn} is not allow-listed"),
            Self::DiscoveryFilter { key_arn, filter } => {
                write!(f, "{key_arn} is outside the discovery filter ({filter})")
            }
            Self::BranchKeyId { found, version, expected } => {
                write!(f, "the EDK needs branch key {found:?}")?;
                if let Some(v) = version {
                    write!(f, " version {v}")?;
                }
                write!(f, "; this keyring has {expected:?}")
            }
            Self::OtherRegion { key_arn, region } => {
                write!(f, "{key_arn} is a single-Region key of another Region; this keyring only calls {region}")
            }
        }
    }
}

/// Why a keyring failed to use an encrypted data key it tried.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EdkFailure {
    /// The KMS call failed (code and retryability in the [`KmsError`]).
    Kms(KmsError),
    /// An `aws-kms` or `aws-kms-rsa` EDK whose provider info is not a valid key ARN: the spec
    /// makes the keyring's whole OnDecrypt fail.
    MalformedProviderInfo {
        /// Why it is not a key ARN.
        reason: String,
    },
    /// KMS `Decrypt` answered for another key than the one asked for.
    KmsKeyIdMismatch {
        /// The `KeyId` of the request.
        requested: String,
        /// The `KeyId` of the response.
        returned: String,
    },
    /// The unwrapped data key has the wrong length for the message's suite.
    DataKeyLength {
        /// Bytes returned.
        found: usize,
        /// Bytes the suite needs.
        expected: usize,
    },
    /// Hierarchical keyring: the branch key the EDK needs could not be read from the store
    /// (which id and version, and whether DynamoDB or KMS failed, are in the error).
    KeyStore(Box<KeyStoreError>),
    /// A raw RSA keyring holding only a public key cannot unwrap.
    NoPrivateKey,
    /// The key unwrapped, but it was wrapped under another encryption context than the
    /// message's (the AWS KMS RSA keyring's digest check): the `-c` / required context pairs
    /// given to decrypt differ from the producer's.
    EncryptionContextMismatch,
    /// Unwrapping failed: wrong key material, a different encryption context, or a tampered EDK.
    /// (One reason for every cause, so that failures reveal nothing about the key.)
    Unwrap,
    /// A child keyring of a multi-keyring failed with another error.
    Keyring {
        /// The child's error.
        error: String,
        /// Whether retrying could help.
        retryable: bool,
    },
}

impl EdkFailure {
    /// Whether retrying could help (a transient KMS failure).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kms(e) => e.retryable,
            Self::KeyStore(e) => e.is_retryable(),
            Self::Keyring { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

impl fmt::Display for EdkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kms(e) => e.fmt(f),
            Self::MalformedProviderInfo { reason } => write!(f, "the provider info is not a KMS key ARN: {reason}"),
            Self::KmsKeyIdMismatch { requested, returned } => {
                write!(f, "KMS Decrypt answered for {returned} instead of {requested}")
            }
            Self::DataKeyLength { found, expected } => {
                write!(f, "unwrapped a {found}-byte key, the suite needs {expected}")
            }
            Self::KeyStore(e) => e.fmt(f),
            Self::NoPrivateKey => f.write_str("this keyring has only a public key and cannot decrypt"),
            Self::EncryptionContextMismatch => f.write_str(
                "KMS unwrapped the key, but it was wrapped under another encryption context than this message's \
                 (check the context pairs given to decrypt, including required ones not stored in the header)",
            ),
            Self::Unwrap => {
                f.write_str("the wrapped key did not unwrap (wrong key, different encryption context, or tampered)")
            }
            Self::Keyring { error, .. } => write!(f, "keyring failed: {error}"),
        }
    }
}

/// What happened to one encrypted data key during decryption.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EdkOutcome {
    /// Skipped by the keyring's filter (no call made).
    Skipped(SkipReason),
    /// Tried and failed.
    Failed(EdkFailure),
}

impl fmt::Display for EdkOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skipped(r) => write!(f, "skipped: {r} (no call made)"),
            Self::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Why one encrypted data key was not used during decryption.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EdkAttempt {
    /// The keyring that looked at the EDK (e.g. `raw AES keyring ns/name`).
    pub keyring: String,
    /// Index of the EDK in the header.
    pub index: usize,
    /// Provider id of the EDK, lossily decoded.
    pub provider_id: String,
    /// Provider info (key name or key ARN), lossily decoded.
    pub provider_info: String,
    /// What happened.
    pub outcome: EdkOutcome,
}

impl EdkAttempt {
    /// Whether retrying might help (a throttled or timed-out KMS call).
    pub fn is_retryable(&self) -> bool {
        matches!(&self.outcome, EdkOutcome::Failed(e) if e.is_retryable())
    }
}

/// The EDKs a decryption saw and why none produced a data key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnwrapReport {
    /// Every EDK in the message as `(provider id, provider info)`.
    pub present: Vec<(String, String)>,
    /// Descriptions of the keys the keyrings were configured with.
    pub configured: Vec<String>,
    /// One entry per EDK a keyring considered or skipped.
    pub attempts: Vec<EdkAttempt>,
}

impl UnwrapReport {
    /// Whether any attempt failed in a way a retry could fix.
    pub fn is_retryable(&self) -> bool {
        self.attempts.iter().any(EdkAttempt::is_retryable)
    }

    /// Folds another report (from a child keyring) into this one.
    pub fn merge(&mut self, other: UnwrapReport) {
        for c in other.configured {
            if !self.configured.contains(&c) {
                self.configured.push(c);
            }
        }
        if self.present.is_empty() {
            self.present = other.present;
        }
        self.attempts.extend(other.attempts);
    }
}

impl fmt::Display for UnwrapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} EDK(s) present [", self.present.len())?;
        for (i, (pid, info)) in self.present.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{pid}/{info}")?;
        }
        f.write_str("]; configured keys [")?;
        f.write_str(&self.configured.join(", "))?;
        f.write_str("]")?;
        for a in &self.attempts {
            write!(f, "; EDK #{} ({}/{}) {}: {}", a.index, a.provider_id, a.provider_info, a.keyring, a.outcome)?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed message: the field and why.
    #[error("malformed message: {field}: {reason}")]
    Parse {
        /// The header or body field being read.
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The input ended inside `what`.
    #[error("truncated message: input ended in the {what}; the message is incomplete (was it cut off in transit?)")]
    Truncated {
        /// The part of the message being read when input ran out.
        what: &'static str,
    },
    /// Input starts like base64 text.
    #[error("the input looks base64-encoded (starts with {prefix:?}); decode it before decrypting")]
    Base64Input {
        /// The first bytes seen.
        prefix: String,
    },
    /// Unknown or unsupported suite id.
    #[error("malformed message: algorithm suite 0x{0:04X} is not an ESDK algorithm suite")]
    UnsupportedSuite(u16),
    /// The header lists more EDKs than allowed.
    #[error("the message has at least {found} encrypted data keys, more than the configured maximum of {limit}; raise max_encrypted_data_keys only if you expect such messages")]
    TooManyEncryptedDataKeys {
        /// How many were seen (at least).
        found: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// Suite not permitted by the commitment policy.
    #[error("commitment policy {policy} forbids {} with algorithm suite {suite}{}", if *encrypting { "encrypting" } else { "decrypting" }, if *encrypting { "" } else { "; this message was written without key commitment (legacy SDK); use REQUIRE_ENCRYPT_ALLOW_DECRYPT only while migrating" })]
    CommitmentPolicy {
        /// The client's policy.
        policy: CommitmentPolicy,
        /// The suite in question.
        suite: AlgorithmSuite,
        /// Whether this happened while encrypting.
        encrypting: bool,
    },
    /// The key commitment in the header does not match the data key.
    #[error("key commitment mismatch: the data key does not match the commitment in the header (wrong key material or tampered message)")]
    CommitmentMismatch,
    /// Header authentication failed.
    #[error("header authentication failed: the header was modified, the data key is wrong, or the required encryption context supplied at decrypt differs from the one used at encrypt")]
    HeaderAuthentication,
    /// A frame failed authentication.
    #[error("body authentication failed at frame {sequence}: {reason}")]
    BodyAuthentication {
        /// Sequence number of the frame (1 for a non-framed body).
        sequence: u32,
        /// What failed.
        reason: &'static str,
    },
    /// Signature verification failed.
    #[error("signature verification failed: {0}")]
    Signature(&'static str),
    /// Unsigned-only decryption got a signed message.
    #[error("the message uses signed algorithm suite {0}, but this decryption accepts only unsigned suites")]
    SignedNotAllowed(AlgorithmSuite),
    /// The encryption context does not match what the caller required.
    #[error("encryption context mismatch: {0}")]
    EncryptionContextMismatch(String),
    /// No keyring could decrypt any EDK.
    #[error("no keyring could decrypt any encrypted data key: {0}")]
    NoDecryptableDataKey(Box<UnwrapReport>),
    /// A KMS call failed while a keyring generated or wrapped a data key.
    #[error("keyring failed to {action}: {source}")]
    Kms {
        /// `generate the data key`, `wrap the data key`, ...
        action: &'static str,
        /// The KMS failure: operation, key, AWS error code, retryability.
        #[source]
        source: KmsError,
    },
    /// The branch key store failed (operation, branch key id and version, DynamoDB or KMS
    /// cause, retryability in the [`KeyStoreError`]).
    #[error("{0}")]
    KeyStore(Box<KeyStoreError>),
    /// A keyring failed during encryption.
    #[error("keyring failed to {action}: {reason}")]
    Keyring {
        /// `generate the data key`, `wrap the data key`, ...
        action: &'static str,
        /// Why.
        reason: String,
        /// Whether a retry might help.
        retryable: bool,
    },
    /// Materials break an invariant.
    #[error("invalid cryptographic materials: {0}")]
    InvalidMaterials(String),
    /// Bad encryption context.
    #[error("invalid encryption context: {0}")]
    InvalidEncryptionContext(String),
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Bad key material.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A configured limit was exceeded.
    #[error("limit exceeded: {what} is {value}, the limit is {limit}")]
    LimitExceeded {
        /// What was measured.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The message would exceed the caller's size limit; nothing was encrypted or sent.
    #[error("{plaintext_len} bytes of plaintext would encrypt to {predicted_len} bytes{}, above the limit of {limit} bytes{}; split the payload or raise the limit", if *extra_len > 0 { format!(" (including {extra_len} bytes counted beside the message, e.g. a partition key)") } else { String::new() }, match max_plaintext { Some(m) => format!(" (at most {m} bytes of plaintext fit)"), None => " (not even an empty payload fits)".into() })]
    TooLargeAfterEncryption {
        /// Plaintext length.
        plaintext_len: u64,
        /// Exact length the message would have, plus `extra_len`.
        predicted_len: u64,
        /// Bytes the caller counts against the limit beside the message (a Kinesis partition key).
        extra_len: u64,
        /// The limit.
        limit: u64,
        /// The largest plaintext that fits, if any.
        max_plaintext: Option<u64>,
    },
    /// Bytes follow a complete message.
    #[error("{0} unexpected byte(s) after the end of a complete message; decrypt one message at a time")]
    TrailingData(usize),
    /// The crypto backend failed.
    #[error("crypto backend error: {0}")]
    Crypto(&'static str),
    /// I/O failure in a streaming adapter.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// A `_blocking` call was made on a thread that runs inside a Tokio runtime, where waiting
    /// could block the very runtime the work needs.
    #[error("{call} was called inside a Tokio runtime, where blocking can wait forever for work that needs that runtime; use the async method ({call_async}(..).await), or call it from a thread outside the runtime")]
    BlockingInAsyncContext {
        /// The blocking method.
        call: &'static str,
        /// Its async counterpart.
        call_async: &'static str,
    },
    /// An internal invariant of this crate failed (a bug: please report it).
    #[error("internal error (a bug in esdk, please report it): {0}")]
    Internal(&'static str),
}

/// Unwraps the crate error that the streaming adapters carry inside `io::Error`; any other I/O
/// error becomes [`Error::Io`].
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::Io(std::io::Error::new(kind, other)),
            None => Error::Io(kind.into()),
        }
    }
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Parse { .. } | Self::UnsupportedSuite(_) => ErrorKind::Parse,
            Self::Truncated { .. } => ErrorKind::Truncated,
            Self::Base64Input { .. } => ErrorKind::Base64Input,
            Self::TooManyEncryptedDataKeys { .. } => ErrorKind::TooManyEncryptedDataKeys,
            Self::CommitmentPolicy { .. } => ErrorKind::CommitmentPolicy,
            Self::CommitmentMismatch => ErrorKind::CommitmentMismatch,
            Self::HeaderAuthentication => ErrorKind::HeaderAuthentication,
            Self::BodyAuthentication { .. } => ErrorKind::BodyAuthentication,
            Self::Signature(_) => ErrorKind::Signature,
            Self::SignedNotAllowed(_) => ErrorKind::SignedNotAllowed,
            Self::EncryptionContextMismatch(_) => ErrorKind::EncryptionContextMismatch,
            Self::NoDecryptableDataKey(_) => ErrorKind::NoDecryptableDataKey,
            Self::Kms { .. } => ErrorKind::Kms,
            Self::KeyStore(_) => ErrorKind::KeyStore,
            Self::Keyring { .. } => ErrorKind::Keyring,
            Self::InvalidMaterials(_) => ErrorKind::InvalidMaterials,
            Self::InvalidEncryptionContext(_) => ErrorKind::InvalidEncryptionContext,
            Self::InvalidConfig(_) => ErrorKind::InvalidConfig,
            Self::InvalidKey(_) => ErrorKind::InvalidKey,
            Self::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            Self::TrailingData(_) => ErrorKind::TrailingData,
            Self::TooLargeAfterEncryption { .. } => ErrorKind::TooLargeAfterEncryption,
            Self::Crypto(_) => ErrorKind::Crypto,
            Self::Io(_) => ErrorKind::Io,
            Self::BlockingInAsyncContext { .. } => ErrorKind::BlockingInAsyncContext,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether retrying the same operation later could succeed (throttling, timeouts, 5xx).
    ///
    /// Tampering, wrong keys, policy violations and malformed input are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoDecryptableDataKey(report) => report.is_retryable(),
            Self::Kms { source, .. } => source.retryable,
            Self::KeyStore(e) => e.is_retryable(),
            Self::Keyring { retryable, .. } => *retryable,
            Self::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    pub(crate) fn parse(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Parse { field, reason: reason.into() }
    }
}
