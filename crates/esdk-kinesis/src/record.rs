//! Record codec for replicated streams: one record payload ↔ one ESDK message.
//!
//! The codec adds public fields to the encryption context so that code without keys (a
//! replicator, a router, an auditor) can read them from the header: the logical stream name
//! ([`EC_STREAM`]), the Region that produced the record ([`EC_ORIGIN_REGION`]) and the record's
//! commit time ([`EC_COMMIT_TIME`]). Everything here is I/O-free; the Kinesis clients live at the
//! crate root (feature `aws`).
//!
//! **Commit time and KMS cost.** The encryption context is part of every cache key of the
//! [`CachingCmm`](esdk::CachingCmm) (`framework/caching-cmm.md`, "Appendix A"), and KMS binds
//! it to each encrypted data key. A per-record value would therefore cost one KMS call per record.
//! By default the codec writes the commit time rounded down to a window
//! ([`CommitTimeInContext::Window`], 60 s), so every record of one minute shares its data key;
//! [`CommitTimeInContext::Exact`] writes the exact time at one KMS call per record.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esdk::client::Client;
use esdk::cmm::MaterialsManager;
use esdk::context::EncryptionContext;
use esdk::crypto::Backend;
use esdk::error::{Error, Result};
use esdk::format::{HeaderLimits, MessageHeader};
use esdk::policy::CommitmentPolicy;
use esdk::suite::AlgorithmSuite;

/// Encryption-context key holding the logical stream name.
pub const EC_STREAM: &str = "kinesis-stream";
/// Encryption-context key holding the Region whose producer wrote the record.
pub const EC_ORIGIN_REGION: &str = "kinesis-origin-region";
/// Encryption-context key holding the record's commit time (RFC 3339, UTC), possibly rounded
/// down to a window (see [`CommitTimeInContext`]).
pub const EC_COMMIT_TIME: &str = "cdc-commit-time";
/// Encryption-context key marking a message whose plaintext is a KPL aggregate of user records
/// (value [`AGGREGATE_FORMAT`]). Its commit time is a lower bound of the records inside.
pub const EC_AGGREGATE: &str = "kinesis-aggregate";
/// The value of [`EC_AGGREGATE`]: the KPL aggregation format.
pub const AGGREGATE_FORMAT: &str = "kpl";

/// Kinesis' default per-record limit (data plus partition key).
pub const DEFAULT_RECORD_LIMIT: u32 = 1 << 20;
/// The largest per-record limit Kinesis can be configured to.
pub const MAX_RECORD_LIMIT: u32 = 10 << 20;
/// Kinesis' partition-key limit, in Unicode scalar values.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// How the record's commit time goes into the encryption context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitTimeInContext {
    /// Rounded down to a multiple of the window (since the Unix epoch): one data key (and one
    /// KMS call, with caching) per window.
    Window(Duration),
    /// The exact time, to the millisecond: one KMS call per record.
    Exact,
    /// Not written.
    Omit,
}

impl Default for CommitTimeInContext {
    fn default() -> Self {
        Self::Window(Duration::from_secs(60))
    }
}

impl CommitTimeInContext {
    /// The context value written for commit time `t` (`None` for [`Self::Omit`]): records with
    /// the same value share a data key under a caching materials manager.
    pub fn render(self, t: SystemTime) -> Result<Option<String>> {
        Ok(self.shown(t)?.map(|shown| match self {
            Self::Window(_) => humantime::format_rfc3339_seconds(shown).to_string(),
            _ => humantime::format_rfc3339_millis(shown).to_string(),
        }))
    }

    /// The time the context shows for commit time `t` (`None` for [`Self::Omit`]): `t` rounded
    /// down to the window, or to the millisecond. RFC 3339 carries the years 1970 to 9999 here.
    pub fn shown(self, t: SystemTime) -> Result<Option<SystemTime>> {
        if self == Self::Omit {
            return Ok(None);
        }
        let since = t.duration_since(UNIX_EPOCH).map_err(|_| {
            Error::InvalidConfig("commit time is before 1970-01-01; pass the record's real commit time".into())
        })?;
        if since.as_secs() >= YEAR_10000 {
            return Err(Error::InvalidConfig(format!(
                "commit time is {} s after 1970, past the year 9999 (milliseconds taken for seconds?); pass the record's real commit time",
                since.as_secs()
            )));
        }
        Ok(match self {
            Self::Omit => None,
            Self::Exact => Some(UNIX_EPOCH + truncate(since, Duration::from_millis(1))),
            Self::Window(w) => Some(UNIX_EPOCH + truncate(since, w)),
        })
    }
}

/// 10000-01-01T00:00:00Z, in seconds since 1970: the first time RFC 3339 cannot write.
const YEAR_10000: u64 = 253_402_300_800;

fn truncate(d: Duration, unit: Duration) -> Duration {
    let unit_ns = unit.as_nanos().max(1);
    let ns = d.as_nanos() / unit_ns * unit_ns;
    Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
}

/// Parses an RFC 3339 time as written in [`EC_COMMIT_TIME`] (a missing `Z` means UTC).
pub fn parse_commit_time(s: &str) -> Result<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .map_err(|e| Error::InvalidConfig(format!("commit time {s:?} is not an RFC 3339 time: {e}")))
}

/// Builder for [`RecordCodec`].
pub struct RecordCodecBuilder {
    cmm: Arc<dyn MaterialsManager>,
    stream: String,
    origin_region: String,
    context: EncryptionContext,
    suite: AlgorithmSuite,
    policy: CommitmentPolicy,
    record_limit: u32,
    commit_time: CommitTimeInContext,
    backend: Option<Backend>,
}

impl RecordCodecBuilder {
    /// Extra encryption context for every record (the caller's own pairs).
    pub fn encryption_context(mut self, context: EncryptionContext) -> Self {
        self.context = context;
        self
    }

    /// Algorithm suite (default 0x0478: committed, unsigned — no per-record ECDSA).
    pub fn suite(mut self, suite: AlgorithmSuite) -> Self {
        self.suite = suite;
        self
    }

    /// Commitment policy (default `REQUIRE_ENCRYPT_REQUIRE_DECRYPT`).
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The stream's per-record limit, data plus partition key (default 1 MiB, at most 10 MiB).
    pub fn record_limit(mut self, bytes: u32) -> Self {
        self.record_limit = bytes;
        self
    }

    /// How the commit time is written into the encryption context.
    pub fn commit_time(mut self, mode: CommitTimeInContext) -> Self {
        self.commit_time = mode;
        self
    }

    /// Crypto backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<RecordCodec> {
        if self.record_limit == 0 || self.record_limit > MAX_RECORD_LIMIT {
            return Err(Error::InvalidConfig(format!(
                "record limit {} is outside 1..={MAX_RECORD_LIMIT} bytes (Kinesis allows at most 10 MiB)",
                self.record_limit
            )));
        }
        if self.stream.is_empty() || self.origin_region.is_empty() {
            return Err(Error::InvalidConfig("the stream name and the origin Region must not be empty".into()));
        }
        for key in [EC_STREAM, EC_ORIGIN_REGION, EC_COMMIT_TIME, EC_AGGREGATE] {
            if self.context.contains_key(key) {
                return Err(Error::InvalidEncryptionContext(format!(
                    "key {key:?} is written by the record codec; remove it from the caller's context"
                )));
            }
        }
        if let CommitTimeInContext::Window(w) = self.commit_time {
            if w < Duration::from_secs(1) {
                return Err(Error::InvalidConfig("the commit-time window must be at least 1 s".into()));
            }
        }
        let mut context = self.context;
        context.insert(EC_STREAM, self.stream.clone());
        context.insert(EC_ORIGIN_REGION, self.origin_region.clone());
        context.check_serializable()?;
        // One frame per record: the frame length is the record limit, which every payload is below.
        let mut client =
            Client::builder().suite(self.suite).commitment_policy(self.policy).frame_length(self.record_limit);
        if let Some(b) = self.backend {
            client = client.backend(b);
        }
        Ok(RecordCodec {
            client: client.build()?,
            cmm: self.cmm,
            stream: self.stream,
            origin_region: self.origin_region,
            context,
            record_limit: self.record_limit,
            commit_time: self.commit_time,
        })
    }
}

/// Encrypts record payloads into ESDK messages that fit a stream's record limit.
pub struct RecordCodec {
    client: Client,
    cmm: Arc<dyn MaterialsManager>,
    stream: String,
    origin_region: String,
    context: EncryptionContext,
    record_limit: u32,
    commit_time: CommitTimeInContext,
}

/// One encrypted record, ready for `PutRecords`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EncryptedRecord {
    /// The partition key, unchanged.
    pub partition_key: String,
    /// The ESDK message.
    pub data: bytes::Bytes,
    /// Plaintext length.
    pub plaintext_len: usize,
}

impl EncryptedRecord {
    /// The message id (public, from the header).
    pub fn message_id(&self) -> &[u8] {
        message_id(&self.data).unwrap_or_default()
    }

    /// Bytes Kinesis counts against its limits: data plus partition key.
    pub fn billed_len(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

impl RecordCodec {
    /// Starts a builder. `stream` is the logical stream name (the same in every Region);
    /// `origin_region` is the Region this producer writes in.
    pub fn builder(cmm: Arc<dyn MaterialsManager>, stream: &str, origin_region: &str) -> RecordCodecBuilder {
        RecordCodecBuilder {
            cmm,
            stream: stream.to_owned(),
            origin_region: origin_region.to_owned(),
            context: EncryptionContext::new(),
            suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
            policy: CommitmentPolicy::RequireEncryptRequireDecrypt,
            record_limit: DEFAULT_RECORD_LIMIT,
            commit_time: CommitTimeInContext::default(),
            backend: None,
        }
    }

    /// The logical stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The Region written into [`EC_ORIGIN_REGION`].
    pub fn origin_region(&self) -> &str {
        &self.origin_region
    }

    /// The per-record limit (data plus partition key).
    pub fn record_limit(&self) -> u32 {
        self.record_limit
    }

    /// How the commit time goes into the encryption context.
    pub fn commit_time_mode(&self) -> CommitTimeInContext {
        self.commit_time
    }

    /// The encryption context every record carries, before the commit time.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Encrypts one payload. Fails with [`Error::TooLargeAfterEncryption`] (counting the
    /// partition key, as Kinesis does) before encrypting the body if the record would not fit.
    pub async fn encrypt(
        &self,
        partition_key: &str,
        payload: &[u8],
        commit_time: Option<SystemTime>,
    ) -> Result<EncryptedRecord> {
        check_partition_key(partition_key)?;
        let mut context;
        let ec = match commit_time.map(|t| self.commit_time.render(t)).transpose()?.flatten() {
            Some(value) => {
                context = self.context.clone();
                context.insert(EC_COMMIT_TIME, value);
                &context
            }
            None => &self.context,
        };
        let limit = u64::from(self.record_limit);
        let data =
            self.client.encrypt_with_limit(self.cmm.as_ref(), payload, ec, limit, partition_key.len() as u64).await?;
        Ok(EncryptedRecord { partition_key: partition_key.to_owned(), data: data.into(), plaintext_len: payload.len() })
    }
}

impl RecordCodec {
    /// The encryption context of an aggregate whose earliest record was committed at
    /// `commit_time`.
    fn aggregate_context(&self, commit_time: Option<SystemTime>) -> Result<EncryptionContext> {
        let mut context = self.context.clone();
        context.insert(EC_AGGREGATE, AGGREGATE_FORMAT);
        if let Some(value) = commit_time.map(|t| self.commit_time.render(t)).transpose()?.flatten() {
            context.insert(EC_COMMIT_TIME, value);
        }
        Ok(context)
    }

    /// The largest aggregate (plaintext bytes) that fits in one record under each of
    /// `partition_keys` (the key counts against the record limit): computed from the header the
    /// codec would write (materials are obtained once, nothing is encrypted). The header has
    /// the same length for every commit time of the codec's mode, so any `commit_time` gives
    /// the same budgets: pass the earliest of the first aggregate to encrypt, whose context the
    /// materials are then for (a caching CMM hands them to it; no data key is fetched only for
    /// the budgets). `None` takes the epoch's.
    pub async fn aggregate_budgets(
        &self,
        partition_keys: &[String],
        commit_time: Option<SystemTime>,
    ) -> Result<Vec<u64>> {
        let context = self.aggregate_context(Some(commit_time.unwrap_or(UNIX_EPOCH)))?;
        // A length (nothing is encrypted: 0 bytes), or a caching CMM would bypass its cache.
        let header = self.client.encryption_header(self.cmm.as_ref(), &context, Some(0)).await?;
        partition_keys
            .iter()
            .map(|key| {
                let budget = u64::from(self.record_limit).saturating_sub(key.len() as u64);
                self.client.max_plaintext_len(&header, budget).ok_or_else(|| Error::TooLargeAfterEncryption {
                    plaintext_len: 0,
                    predicted_len: self.client.ciphertext_len(&header, 0) + key.len() as u64,
                    extra_len: key.len() as u64,
                    limit: u64::from(self.record_limit),
                    max_plaintext: None,
                })
            })
            .collect()
    }

    /// Encrypts an aggregate (see [`crate::aggregate`]) of user records, the earliest committed
    /// at `commit_time`, under the outer `partition_key`. The context carries
    /// [`EC_AGGREGATE`] and the commit time rounded down as for single records.
    pub async fn encrypt_aggregate(
        &self,
        partition_key: &str,
        aggregate: &[u8],
        commit_time: Option<SystemTime>,
    ) -> Result<EncryptedRecord> {
        check_partition_key(partition_key)?;
        let context = self.aggregate_context(commit_time)?;
        let limit = u64::from(self.record_limit);
        let data = self
            .client
            .encrypt_with_limit(self.cmm.as_ref(), aggregate, &context, limit, partition_key.len() as u64)
            .await?;
        Ok(EncryptedRecord {
            partition_key: partition_key.to_owned(),
            data: data.into(),
            plaintext_len: aggregate.len(),
        })
    }
}

fn check_partition_key(key: &str) -> Result<()> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(Error::InvalidConfig(format!(
            "partition key of {chars} characters; Kinesis needs 1..={MAX_PARTITION_KEY_CHARS}"
        )));
    }
    Ok(())
}

/// The message id of an ESDK message, read from its fixed position without parsing the rest
/// (`data-format/message-header.md`: 16 bytes in v1, 32 in v2). `None` if too short or not a
/// known version.
pub fn message_id(message: &[u8]) -> Option<&[u8]> {
    match message.first()? {
        0x01 => message.get(4..20),
        0x02 => message.get(3..35),
        _ => None,
    }
}

/// What a record's header says, read without keys or KMS: message id, suite, encryption context
/// (with the codec's fields), encrypted data keys and their KMS key ARNs.
#[derive(Clone, Debug)]
pub struct RecordHeader {
    header: MessageHeader,
    header_len: usize,
}

impl RecordHeader {
    /// Parses the header of a record. Bounded by the record's own length and by
    /// [`MAX_RECORD_LIMIT`]; the body is not read.
    pub fn parse(record: &[u8]) -> Result<Self> {
        let limits = HeaderLimits::new(None, record.len().min(MAX_RECORD_LIMIT as usize));
        let (header, header_len) = MessageHeader::parse(record, &limits)?;
        Ok(Self { header, header_len })
    }

    /// The full parsed header.
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// Serialized header length (including the authentication tag).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The message id.
    pub fn message_id(&self) -> &[u8] {
        self.header.message_id()
    }

    /// The logical stream name, if the codec wrote one.
    pub fn stream(&self) -> Option<&str> {
        self.header.encryption_context().get(EC_STREAM)
    }

    /// The Region that produced the record, if the codec wrote it.
    pub fn origin_region(&self) -> Option<&str> {
        self.header.encryption_context().get(EC_ORIGIN_REGION)
    }

    /// The commit time as written (possibly rounded to a window); `None` if absent,
    /// an error if present but unparsable.
    pub fn commit_time(&self) -> Result<Option<SystemTime>> {
        self.header.encryption_context().get(EC_COMMIT_TIME).map(parse_commit_time).transpose()
    }

    /// Whether the record is a KPL aggregate of user records (the codec's [`EC_AGGREGATE`]).
    pub fn is_aggregate(&self) -> bool {
        self.header.encryption_context().get(EC_AGGREGATE) == Some(AGGREGATE_FORMAT)
    }

    /// Key ARNs (provider info) of the `aws-kms` encrypted data keys, in header order.
    pub fn kms_key_ids(&self) -> impl Iterator<Item = &str> {
        self.header
            .encrypted_data_keys()
            .iter()
            .filter(|e| e.provider_id == "aws-kms")
            .map(|e| std::str::from_utf8(&e.provider_info).unwrap_or("<non-UTF-8 provider info>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rounds_down_and_exact_keeps_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_658_174_461_789);
        let w = CommitTimeInContext::default().render(t).unwrap().unwrap();
        assert_eq!(w, "2022-07-18T20:01:00Z");
        let e = CommitTimeInContext::Exact.render(t).unwrap().unwrap();
        assert_eq!(e, "2022-07-18T20:01:01.789Z");
        assert_eq!(parse_commit_time(&e).unwrap(), t);
        assert_eq!(parse_commit_time("2022-07-18T20:00:00").unwrap(), UNIX_EPOCH + Duration::from_secs(1_658_174_400));
        assert_eq!(CommitTimeInContext::Omit.render(t).unwrap(), None);
        // The years RFC 3339 can write, and only those (a time in milliseconds read as seconds
        // is refused, not a panic).
        let last = UNIX_EPOCH + Duration::from_secs(YEAR_10000 - 1);
        assert_eq!(CommitTimeInContext::Exact.render(last).unwrap().unwrap(), "9999-12-31T23:59:59.000Z");
        for mode in [CommitTimeInContext::Exact, CommitTimeInContext::default()] {
            assert!(mode.render(last + Duration::from_secs(1)).is_err());
            assert!(mode.render(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        }
        assert_eq!(CommitTimeInContext::Omit.render(last + Duration::from_secs(1)).unwrap(), None);
    }

    #[test]
    fn message_id_positions() {
        assert_eq!(message_id(&[]), None);
        assert_eq!(message_id(&[0x02, 0, 0]), None);
        let mut v2 = vec![0x02, 0x04, 0x78];
        v2.extend(1..=32u8);
        assert_eq!(message_id(&v2).unwrap(), &(1..=32u8).collect::<Vec<_>>()[..]);
        assert_eq!(message_id(&[0x03; 64]), None);
    }

    #[test]
    fn partition_key_limits() {
        assert!(check_partition_key("").is_err());
        assert!(check_partition_key(&"é".repeat(256)).is_ok());
        assert!(check_partition_key(&"k".repeat(257)).is_err());
    }
}
