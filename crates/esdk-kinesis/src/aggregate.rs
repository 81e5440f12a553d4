//! The KPL aggregation format (`amazon-kinesis-producer`, `aggregation-format.md`): many user
//! records in one Kinesis record, here as the plaintext of one ESDK message.
//!
//! Layout: the magic `F3 89 9A C2`, a protobuf (proto2) `AggregatedRecord` holding a partition
//! key table, an explicit hash key table and the user records (each naming its keys by table
//! index), and the MD5 of the protobuf bytes. Any standard KPL deaggregator (the KCL, the
//! `aws-kinesis-agg` libraries) splits a decrypted aggregate.
//!
//! [`AggregateBuilder`] predicts the serialized length exactly before each record is added, so a
//! producer fills an aggregate up to a record limit without trial encodings. [`deaggregate`]
//! parses untrusted bytes: bounded by their length, and every index and length checked; a
//! malformed aggregate is an [`AggregateError`], never a panic.

use std::fmt;

use md5::{Digest, Md5};
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;
use zeroize::{Zeroize, Zeroizing};

/// The four bytes every aggregate starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;
/// Magic plus MD5 trailer.
pub const FIXED_OVERHEAD: usize = MAGIC.len() + DIGEST_LEN;

#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<Record>,
}

#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    data: bytes::Bytes,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// One user record inside an aggregate.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserRecord {
    /// Its partition key.
    pub partition_key: String,
    /// Its explicit hash key, if it had one.
    pub explicit_hash_key: Option<String>,
    /// Its bytes: a view of the aggregate (no copy). Given an aggregate made with
    /// `Bytes::from_owner(Zeroizing<Vec<u8>>)`, the plaintext is zeroized when the last view
    /// is dropped.
    pub data: bytes::Bytes,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("partition_key", &self.partition_key)
            .field("explicit_hash_key", &self.explicit_hash_key)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Why bytes are not a well-formed aggregate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// Shorter than the magic and the MD5 trailer.
    #[error("aggregate of {0} bytes is shorter than its fixed 20 bytes (magic and MD5)")]
    TooShort(usize),
    /// The first four bytes are not `F3 89 9A C2`.
    #[error("aggregate does not start with the KPL magic F3 89 9A C2")]
    BadMagic,
    /// The MD5 trailer does not match the protobuf bytes.
    #[error("aggregate MD5 trailer does not match its contents (corrupted by its producer)")]
    DigestMismatch,
    /// The protobuf does not parse.
    #[error("aggregate protobuf does not parse: {0}")]
    Protobuf(String),
    /// A record names a partition key the table does not have.
    #[error("user record #{record} names partition key #{index}, the table has {table_len}")]
    PartitionKeyIndex {
        /// The user record's position.
        record: usize,
        /// The index it names.
        index: u64,
        /// Entries in the table.
        table_len: usize,
    },
    /// A record names an explicit hash key the table does not have.
    #[error("user record #{record} names explicit hash key #{index}, the table has {table_len}")]
    HashKeyIndex {
        /// The user record's position.
        record: usize,
        /// The index it names.
        index: u64,
        /// Entries in the table.
        table_len: usize,
    },
    /// An aggregate with no user record (deaggregators would silently drop the Kinesis record).
    #[error("aggregate holds no user record")]
    Empty,
    /// A table entry Kinesis itself would refuse: a partition key of 0 or more than 256
    /// characters, or an explicit hash key of more than 39 digits (a 128-bit decimal).
    #[error("aggregate {table} #{index} has {chars} characters; Kinesis allows 1..={max}")]
    TableEntry {
        /// `partition key` or `explicit hash key`.
        table: &'static str,
        /// Its position in the table.
        index: usize,
        /// Its length in characters.
        chars: usize,
        /// The Kinesis limit.
        max: usize,
    },
}

/// Explicit hash keys are decimal 128-bit integers.
const MAX_HASH_KEY_DIGITS: usize = 39;

/// Builds one aggregate, tracking its exact serialized length. The protobuf is written as
/// records are added (partition key table and records in two buffers, joined in field order by
/// [`Self::finish`]), so adding a record costs one copy of its bytes. A run of records with the
/// same partition key shares one table entry (the format allows one entry per record; CDC
/// records of distinct rows gain nothing from a lookup, a hot key's run does).
#[derive(Default)]
pub struct AggregateBuilder {
    /// Serialized `partition_key_table` entries (field 1).
    keys: Vec<u8>,
    /// Entries in the table, and the last one (the key of the previous record).
    table_len: u64,
    last_key: Vec<u8>,
    /// Serialized `records` entries (field 3).
    records: Vec<u8>,
    count: usize,
}

impl Drop for AggregateBuilder {
    fn drop(&mut self) {
        // The records and the user partition keys are plaintext.
        self.records.zeroize();
        self.keys.zeroize();
        self.last_key.zeroize();
    }
}

impl AggregateBuilder {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty aggregate with room for `bytes` of serialized records before it grows.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut b = Self::default();
        b.records.reserve_exact(bytes);
        b
    }

    /// User records added.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no user record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The serialized length now (magic, protobuf, MD5).
    pub fn serialized_len(&self) -> usize {
        FIXED_OVERHEAD + self.keys.len() + self.records.len()
    }

    /// The serialized length after adding a record of `partition_key` with `data_len` bytes.
    pub fn serialized_len_with(&self, partition_key: &str, data_len: usize) -> usize {
        self.serialized_len() + self.added_len(partition_key, data_len)
    }

    /// The serialized length of an aggregate holding only a record of `partition_key` with
    /// `data_len` bytes.
    pub fn single_len(partition_key: &str, data_len: usize) -> usize {
        let inner = 1 + encoded_len_varint(0) + field_len(data_len);
        FIXED_OVERHEAD + field_len(partition_key.len()) + field_len(inner)
    }

    /// The table index the next record of `partition_key` gets, and whether it adds an entry.
    fn key_slot(&self, partition_key: &str) -> (u64, bool) {
        if self.table_len > 0 && self.last_key == partition_key.as_bytes() {
            (self.table_len - 1, false)
        } else {
            (self.table_len, true)
        }
    }

    fn added_len(&self, partition_key: &str, data_len: usize) -> usize {
        let (index, new) = self.key_slot(partition_key);
        let table = if new { field_len(partition_key.len()) } else { 0 };
        let inner = 1 + encoded_len_varint(index) + field_len(data_len);
        table + field_len(inner)
    }

    /// Adds a user record.
    pub fn push(&mut self, partition_key: &str, data: &[u8]) {
        let (index, new) = self.key_slot(partition_key);
        let inner = 1 + encoded_len_varint(index) + field_len(data.len());
        reserve_zeroizing(&mut self.records, field_len(inner));
        if new {
            reserve_zeroizing(&mut self.keys, field_len(partition_key.len()));
            put_bytes(&mut self.keys, 1, partition_key.as_bytes());
            self.last_key.zeroize();
            self.last_key.clear();
            reserve_zeroizing(&mut self.last_key, partition_key.len());
            self.last_key.extend_from_slice(partition_key.as_bytes());
            self.table_len += 1;
        }
        // Record { partition_key_index = 1: index, data = 3: data }
        self.records.push(3 << 3 | 2);
        encode_varint(inner as u64, &mut self.records);
        self.records.push(1 << 3);
        encode_varint(index, &mut self.records);
        put_bytes(&mut self.records, 3, data);
        self.count += 1;
    }

    /// The serialized aggregate: magic, protobuf, MD5 of the protobuf (zeroized on drop, as the
    /// builder's own copy is).
    pub fn finish(self) -> Zeroizing<Vec<u8>> {
        let mut out = self.into_body();
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        out
    }

    /// [`Self::finish`] for each builder, in order, computing the MD5s side by side: several
    /// times faster than one by one once there are five or more.
    pub fn finish_all(builders: Vec<AggregateBuilder>) -> Vec<Zeroizing<Vec<u8>>> {
        let mut outs: Vec<_> = builders.into_iter().map(Self::into_body).collect();
        let protos: Vec<&[u8]> = outs.iter().map(|o| &o[MAGIC.len()..]).collect();
        let digests = crate::md5_lanes::digest_all(&protos);
        for (out, digest) in outs.iter_mut().zip(digests) {
            out.extend_from_slice(&digest);
        }
        outs
    }

    /// Magic and protobuf, with room for the trailer, in the records' own buffer (moved behind
    /// the magic and the key table, not copied into a new one).
    fn into_body(mut self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(std::mem::take(&mut self.records));
        let prefix = MAGIC.len() + self.keys.len();
        reserve_zeroizing(&mut out, prefix + DIGEST_LEN);
        let len = out.len();
        out.resize(len + prefix, 0);
        out.copy_within(..len, prefix);
        out[..MAGIC.len()].copy_from_slice(&MAGIC);
        out[MAGIC.len()..prefix].copy_from_slice(&self.keys);
        out
    }
}

/// Makes room for `additional` more bytes. A buffer that has to move is zeroized where it was
/// (a plain `reserve` would free the old copy of the plaintext as it is).
fn reserve_zeroizing(buf: &mut Vec<u8>, additional: usize) {
    if buf.capacity() - buf.len() >= additional {
        return;
    }
    let mut grown = Vec::with_capacity(buf.len().saturating_add(additional).max(buf.capacity().saturating_mul(2)));
    grown.extend_from_slice(buf);
    buf.zeroize();
    *buf = grown;
}

/// Appends a length-delimited field: tag, length, bytes.
fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Bytes of a length-delimited protobuf field (one-byte tag) with a `len`-byte payload.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Splits an aggregate into its user records, in order (their index is the KCL's
/// sub-sequence number). Checks the magic, the MD5, the protobuf and every table index. The
/// records' data are views of `bytes`.
pub fn deaggregate(bytes: &bytes::Bytes) -> Result<Vec<UserRecord>, AggregateError> {
    check_frame(bytes)?;
    let digest: [u8; DIGEST_LEN] = Md5::digest(&bytes[MAGIC.len()..bytes.len() - DIGEST_LEN]).into();
    split_verified(bytes, &digest)
}

/// [`deaggregate`] for each aggregate, in order, computing the MD5s side by side (see
/// [`AggregateBuilder::finish_all`]).
pub fn deaggregate_all(aggregates: &[bytes::Bytes]) -> Vec<Result<Vec<UserRecord>, AggregateError>> {
    let framed: Vec<Result<(), AggregateError>> = aggregates.iter().map(|b| check_frame(b)).collect();
    let protos: Vec<&[u8]> = aggregates
        .iter()
        .zip(&framed)
        .filter(|(_, f)| f.is_ok())
        .map(|(b, _)| &b[MAGIC.len()..b.len() - DIGEST_LEN])
        .collect();
    let mut digests = crate::md5_lanes::digest_all(&protos).into_iter();
    aggregates
        .iter()
        .zip(framed)
        .map(|(bytes, framed)| {
            framed?;
            let digest = digests.next().ok_or(AggregateError::TooShort(bytes.len()))?;
            split_verified(bytes, &digest)
        })
        .collect()
}

/// The magic and room for the trailer.
fn check_frame(bytes: &[u8]) -> Result<(), AggregateError> {
    if bytes.len() < FIXED_OVERHEAD {
        return Err(AggregateError::TooShort(bytes.len()));
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(AggregateError::BadMagic);
    }
    Ok(())
}

/// The user records of a framed aggregate whose protobuf has MD5 `digest`.
fn split_verified(bytes: &bytes::Bytes, digest: &[u8; DIGEST_LEN]) -> Result<Vec<UserRecord>, AggregateError> {
    if digest[..] != bytes[bytes.len() - DIGEST_LEN..] {
        return Err(AggregateError::DigestMismatch);
    }
    let proto = bytes.slice(MAGIC.len()..bytes.len() - DIGEST_LEN);
    // Decoding is bounded by the input: every element takes at least two bytes of it.
    // Data fields are views of `bytes` (no copy of the plaintext).
    let message = AggregatedRecord::decode(proto).map_err(|e| AggregateError::Protobuf(e.to_string()))?;
    if message.records.is_empty() {
        return Err(AggregateError::Empty);
    }
    let AggregatedRecord { partition_key_table: mut keys, explicit_hash_key_table: hash_keys, records } = message;
    // Each user record gets its own copy of its keys: Kinesis' own limits on them bound that
    // copy (and so the memory a hostile aggregate can make us spend) per record.
    check_table("partition key", &keys, crate::record::MAX_PARTITION_KEY_CHARS)?;
    check_table("explicit hash key", &hash_keys, MAX_HASH_KEY_DIGITS)?;
    // The last record naming a key takes the table's copy (CDC keys are mostly used once).
    let mut uses = vec![0usize; keys.len()];
    for r in &records {
        if let Some(n) = usize::try_from(r.partition_key_index).ok().and_then(|k| uses.get_mut(k)) {
            *n += 1;
        }
    }
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let out_of_range =
                AggregateError::PartitionKeyIndex { record: i, index: r.partition_key_index, table_len: keys.len() };
            let k = usize::try_from(r.partition_key_index).map_err(|_| out_of_range.clone())?;
            let (Some(key), Some(left)) = (keys.get_mut(k), uses.get_mut(k)) else { return Err(out_of_range) };
            *left -= 1;
            let partition_key = if *left == 0 { std::mem::take(key) } else { key.clone() };
            let explicit_hash_key = match r.explicit_hash_key_index {
                None => None,
                Some(index) => Some(
                    usize::try_from(index)
                        .ok()
                        .and_then(|k| hash_keys.get(k))
                        .ok_or(AggregateError::HashKeyIndex { record: i, index, table_len: hash_keys.len() })?
                        .clone(),
                ),
            };
            Ok(UserRecord { partition_key, explicit_hash_key, data: r.data })
        })
        .collect()
}

fn check_table(table: &'static str, entries: &[String], max: usize) -> Result<(), AggregateError> {
    for (index, entry) in entries.iter().enumerate() {
        let chars = entry.chars().count();
        if chars == 0 || chars > max {
            return Err(AggregateError::TableEntry { table, index, chars, max });
        }
    }
    Ok(())
}

/// Whether `bytes` start like an aggregate (magic and room for a trailer); nothing is checked.
pub fn looks_aggregated(bytes: &[u8]) -> bool {
    bytes.len() > FIXED_OVERHEAD && bytes[..MAGIC.len()] == MAGIC
}

/// The bucket of a partition key: its MD5 (as Kinesis hashes it) scaled to `buckets` equal
/// ranges of the 128-bit hash-key space.
pub fn bucket_of(partition_key: &str, buckets: u32) -> u32 {
    let hash = u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into());
    (((hash >> 64) * u128::from(buckets)) >> 64) as u32
}

/// A partition key whose own hash falls in bucket `bucket` of `buckets`: the outer key of that
/// bucket's aggregates, so each aggregate lands where its user records' keys hash to when the
/// stream's shards split the hash space evenly (and the KCL's shard-range check keeps them).
pub fn bucket_partition_key(bucket: u32, buckets: u32) -> String {
    (0u64..)
        .map(|n| format!("esdk-aggregate-{bucket}-{n}"))
        .find(|k| bucket_of(k, buckets) == bucket)
        .unwrap_or_else(|| format!("esdk-aggregate-{bucket}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn matches_the_kpl_reference_aggregate_byte_for_byte() {
        // ("pk1","hello"), ("pk1","!"), ("pk2","world") as the reference aggregator writes them
        // (a run of one key shares its table entry), MD5 included.
        let mut b = AggregateBuilder::new();
        for (k, d) in [("pk1", &b"hello"[..]), ("pk1", b"!"), ("pk2", b"world")] {
            let predicted = b.serialized_len_with(k, d.len());
            b.push(k, d);
            assert_eq!(b.serialized_len(), predicted);
        }
        let len = b.serialized_len();
        let out = b.finish();
        assert_eq!(out.len(), len, "the prediction is exact");
        let want = "f3899ac2 0a03706b31 0a03706b32 1a0908001a0568656c6c6f 1a0508001a0121 1a0908011a05776f726c64";
        let mut want = hex(&want.replace(' ', ""));
        let digest = Md5::digest(&want[4..]);
        want.extend_from_slice(&digest);
        assert_eq!(&out[..], &want[..]);
        let records = deaggregate(&bytes::Bytes::from(out.to_vec())).unwrap();
        let got: Vec<(&str, &[u8])> = records.iter().map(|r| (r.partition_key.as_str(), &r.data[..])).collect();
        assert_eq!(got, [("pk1", &b"hello"[..]), ("pk1", b"!"), ("pk2", b"world")]);
        // A key that comes back later gets an entry of its own (allowed by the format).
        let mut b = AggregateBuilder::new();
        for k in ["a", "b", "a"] {
            b.push(k, b"x");
        }
        let keys: Vec<String> = deaggregate(&bytes::Bytes::from(b.finish().to_vec()))
            .unwrap()
            .into_iter()
            .map(|r| r.partition_key)
            .collect();
        assert_eq!(keys, ["a", "b", "a"]);
    }

    #[test]
    fn reads_the_reference_aggregate_with_explicit_hash_keys() {
        // The reference vector: the second record carries explicit hash key "123".
        let v = hex("f3899ac20a03706b310a03706b3212033132331a0908001a0568656c6c6f1a0b080110001a05776f726c641a0508001a0121adb0e9722c84524d925abfbb4aee29c8");
        let r = deaggregate(&bytes::Bytes::from(v)).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].explicit_hash_key, None, "no index, no hash key (the KCL's reading)");
        assert_eq!(r[1].explicit_hash_key.as_deref(), Some("123"));
        assert_eq!(&r[1].data[..], b"world");
    }

    #[test]
    fn malformed_aggregates_are_errors() {
        let mut b = AggregateBuilder::new();
        b.push("k", b"data");
        let good = b.finish().to_vec();
        assert_eq!(deaggregate(&bytes::Bytes::from(good[..10].to_vec())), Err(AggregateError::TooShort(10)));
        let mut bad = good.clone();
        bad[0] = 0;
        assert_eq!(deaggregate(&bytes::Bytes::from(bad)), Err(AggregateError::BadMagic));
        let mut bad = good.clone();
        bad[6] ^= 1;
        assert_eq!(deaggregate(&bytes::Bytes::from(bad)), Err(AggregateError::DigestMismatch));
        // An index past the table, re-digested so only the index is wrong.
        let mut bad = good.clone();
        let n = bad.len();
        let pos = bad[4..n - 16].windows(2).position(|w| w == [0x08, 0x00]).unwrap() + 4;
        bad[pos + 1] = 5;
        let digest = Md5::digest(&bad[4..n - 16]);
        bad[n - 16..].copy_from_slice(&digest);
        assert_eq!(
            deaggregate(&bytes::Bytes::from(bad)),
            Err(AggregateError::PartitionKeyIndex { record: 0, index: 5, table_len: 1 })
        );
        assert_eq!(
            deaggregate(&bytes::Bytes::from(AggregateBuilder::new().finish().to_vec())),
            Err(AggregateError::Empty)
        );
        let mut garbage = MAGIC.to_vec();
        garbage.extend_from_slice(&[0xFF; 8]);
        let digest = Md5::digest(&garbage[4..]);
        garbage.extend_from_slice(&digest);
        assert!(matches!(deaggregate(&bytes::Bytes::from(garbage)), Err(AggregateError::Protobuf(_))));
    }

    #[test]
    fn records_sharing_a_key_and_keys_kinesis_would_refuse() {
        // Several records naming one table entry: found by the fuzzer as a wrong bound in its
        // own check (keys are shared, so their lengths may sum past the input's).
        let key = "k".repeat(256);
        let mut b = AggregateBuilder::new();
        for _ in 0..3 {
            b.push(&key, b"x");
        }
        let users = deaggregate(&bytes::Bytes::from(b.finish().to_vec())).unwrap();
        assert_eq!(users.len(), 3);
        assert!(users.iter().all(|u| u.partition_key == key));
        let mut b = AggregateBuilder::new();
        b.push(&"k".repeat(257), b"x");
        assert_eq!(
            deaggregate(&bytes::Bytes::from(b.finish().to_vec())),
            Err(AggregateError::TableEntry { table: "partition key", index: 0, chars: 257, max: 256 })
        );
    }

    #[test]
    fn bucket_keys_hash_into_their_bucket() {
        for buckets in [1, 2, 7, 64] {
            for b in 0..buckets {
                assert_eq!(bucket_of(&bucket_partition_key(b, buckets), buckets), b);
            }
        }
        assert!(bucket_of("anything", 64) < 64);
    }
}
