//! Records as read from a stream, and Kinesis sequence-number order.

use std::time::SystemTime;

/// One record as read from a stream (by `GetRecords` or from a Lambda event).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SourceRecord {
    /// The shard it was read from.
    pub shard_id: String,
    /// Its sequence number in that shard.
    pub sequence_number: String,
    /// Partition key.
    pub partition_key: String,
    /// The record's bytes (an ESDK message when written by [`Producer`](crate::Producer)).
    pub data: bytes::Bytes,
    /// When Kinesis accepted it, if known.
    pub arrival: Option<SystemTime>,
}

impl SourceRecord {
    /// A record read by other means (e.g. a Lambda event).
    pub fn new(
        shard_id: &str,
        sequence_number: &str,
        partition_key: &str,
        data: bytes::Bytes,
        arrival: Option<SystemTime>,
    ) -> Self {
        Self {
            shard_id: shard_id.to_owned(),
            sequence_number: sequence_number.to_owned(),
            partition_key: partition_key.to_owned(),
            data,
            arrival,
        }
    }
}

/// Compares two Kinesis sequence numbers (decimal strings of up to 128 digits) numerically.
pub(crate) fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert_eq!(seq_cmp("9", "10"), Ordering::Less);
        assert_eq!(
            seq_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692540925702759324208523137515618"
            ),
            Ordering::Less
        );
        assert_eq!(seq_cmp("007", "7"), Ordering::Equal);
    }
}
