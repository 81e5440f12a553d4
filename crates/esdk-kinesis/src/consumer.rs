//! Decrypting consumer: expected encryption context, de-duplication by message id, and failures
//! sorted into poison (permanent, dead-letter) and transient (retry).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::SourceRecord;
use esdk::client::Client;
use esdk::cmm::MaterialsManager;
use esdk::context::EncryptionContext;
use esdk::error::Error;

/// Message ids remembered for de-duplication by default (about 6 MB).
pub const DEFAULT_DEDUP_WINDOW: usize = 100_000;

/// A decrypted record.
#[non_exhaustive]
pub struct DeliveredRecord {
    /// Source shard.
    pub shard_id: String,
    /// Sequence number.
    pub sequence_number: String,
    /// Partition key.
    pub partition_key: String,
    /// ESDK message id.
    pub message_id: Vec<u8>,
    /// The payload (zeroized on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The authenticated encryption context.
    pub encryption_context: EncryptionContext,
}

impl fmt::Debug for DeliveredRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveredRecord")
            .field("shard_id", &self.shard_id)
            .field("sequence_number", &self.sequence_number)
            .field("partition_key", &self.partition_key)
            .field("plaintext_len", &self.plaintext.len())
            .field("encryption_context", &self.encryption_context)
            .finish()
    }
}

/// A record that was not delivered.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecordFailure {
    /// Source shard.
    pub shard_id: String,
    /// Sequence number.
    pub sequence_number: String,
    /// Partition key.
    pub partition_key: String,
    /// Why.
    pub error: Error,
}

/// What one batch produced. Every input record is in exactly one list (or counted as duplicate).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ConsumeOutcome {
    /// Decrypted records, in input order.
    pub delivered: Vec<DeliveredRecord>,
    /// Sequence numbers of records whose message id was already delivered (authenticated
    /// duplicates from producer or replicator retries); dropped.
    pub duplicates: Vec<String>,
    /// Permanent failures (tampered, malformed, wrong key, not allow-listed, wrong context):
    /// retrying cannot help; send them to a dead-letter destination.
    pub poison: Vec<RecordFailure>,
    /// Transient failures (KMS throttling, timeouts): retry these records later.
    pub transient: Vec<RecordFailure>,
}

struct Dedup {
    seen: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
    capacity: usize,
}

impl Dedup {
    /// Records `id`; false if it was already there.
    fn insert(&mut self, id: &[u8]) -> bool {
        if self.capacity == 0 || self.seen.contains(id) {
            return self.capacity == 0;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_vec());
        self.order.push_back(id.to_vec());
        true
    }
}

/// Decrypts records from one stream.
pub struct Consumer {
    client: Client,
    cmm: Arc<dyn MaterialsManager>,
    expected: EncryptionContext,
    dedup: Mutex<Dedup>,
}

impl Consumer {
    /// A consumer decrypting with `cmm` (e.g. a caching CMM over an MRK-aware strict keyring that
    /// lists only this Region's key ARN) under `client`'s policy and limits.
    pub fn new(client: Client, cmm: Arc<dyn MaterialsManager>) -> Self {
        Self {
            client,
            cmm,
            expected: EncryptionContext::new(),
            dedup: Mutex::new(Dedup { seen: HashSet::new(), order: VecDeque::new(), capacity: DEFAULT_DEDUP_WINDOW }),
        }
    }

    /// Pairs every record's encryption context must contain (e.g. the logical stream name).
    pub fn expect_context(mut self, expected: EncryptionContext) -> Self {
        self.expected = expected;
        self
    }

    /// How many message ids to remember (0 disables de-duplication).
    pub fn with_dedup_window(mut self, capacity: usize) -> Self {
        self.dedup = Mutex::new(Dedup { seen: HashSet::new(), order: VecDeque::new(), capacity });
        self
    }

    fn check_context(&self, actual: &EncryptionContext) -> Result<(), Error> {
        for (k, v) in self.expected.iter() {
            match actual.get(k) {
                Some(a) if a == v => {}
                Some(a) => {
                    return Err(Error::EncryptionContextMismatch(format!(
                        "record has {k:?} = {a:?}, this consumer expects {v:?}"
                    )))
                }
                None => {
                    return Err(Error::EncryptionContextMismatch(format!(
                        "record lacks {k:?}, which this consumer expects to be {v:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Decrypts a batch. A message id is remembered only after its record authenticated, so a
    /// forged record cannot suppress a genuine one.
    pub async fn process(&self, records: &[SourceRecord]) -> ConsumeOutcome {
        let mut out = ConsumeOutcome::default();
        for r in records {
            let result = match self.client.decrypt(self.cmm.as_ref(), &r.data, None).await {
                Ok(d) => self.check_context(&d.encryption_context).map(|()| d),
                Err(e) => Err(e),
            };
            match result {
                Ok(d) => {
                    let id = d.header.message_id().to_vec();
                    let fresh = self.dedup.lock().unwrap_or_else(|p| p.into_inner()).insert(&id);
                    if fresh {
                        out.delivered.push(DeliveredRecord {
                            shard_id: r.shard_id.clone(),
                            sequence_number: r.sequence_number.clone(),
                            partition_key: r.partition_key.clone(),
                            message_id: id,
                            plaintext: Zeroizing::new(d.plaintext),
                            encryption_context: d.encryption_context,
                        });
                    } else {
                        out.duplicates.push(r.sequence_number.clone());
                    }
                }
                Err(error) => {
                    let failure = RecordFailure {
                        shard_id: r.shard_id.clone(),
                        sequence_number: r.sequence_number.clone(),
                        partition_key: r.partition_key.clone(),
                        error,
                    };
                    if failure.error.is_retryable() {
                        out.transient.push(failure);
                    } else {
                        out.poison.push(failure);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_window_forgets_the_oldest() {
        let mut d = Dedup { seen: HashSet::new(), order: VecDeque::new(), capacity: 2 };
        assert!(d.insert(b"a"));
        assert!(!d.insert(b"a"));
        assert!(d.insert(b"b"));
        assert!(d.insert(b"c"));
        assert!(d.insert(b"a"), "a was evicted");
        let mut off = Dedup { seen: HashSet::new(), order: VecDeque::new(), capacity: 0 };
        assert!(off.insert(b"a") && off.insert(b"a"));
    }
}
