//! The replicator's dead-letter queue (SQS): records it must not forward, with the reason and
//! the source position, so an operator can inspect and replay them (docs/RUNBOOK.md).
//!
//! Each message is one JSON object: `reason`, `stream`, `source_region`, `shard_id`,
//! `sequence_number`, `partition_key`, `approximate_arrival` (RFC 3339, when known),
//! `message_id` (hex, when the header parses) and `data` (the record's bytes, base64; still
//! ciphertext) unless the message would exceed SQS's size limit, then `data_omitted: true` (read
//! the record from the stream at that sequence number within its retention).

use base64::Engine as _;
use serde_json::json;

use crate::record::message_id;
use crate::{KinesisError, Result, SourceRecord};

/// SQS's largest message body.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Messages per `SendMessageBatch`.
const BATCH: usize = 10;

/// An SQS queue for records the replicator refuses.
#[derive(Clone, Debug)]
pub struct DeadLetterQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

/// A record refused, and why.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLetter<'a> {
    /// The record.
    pub record: &'a SourceRecord,
    /// Why it is not forwarded.
    pub reason: String,
}

impl DeadLetterQueue {
    /// A queue by URL, with an SQS client of its Region.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: &str) -> Self {
        Self { client, url: queue_url.to_owned() }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends every letter; returns, per letter in order, whether SQS accepted it.
    pub async fn send(&self, stream: &str, source_region: &str, letters: &[DeadLetter<'_>]) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(letters.len());
        for chunk in letters.chunks(BATCH) {
            results.extend(self.send_chunk(stream, source_region, chunk).await);
        }
        results
    }

    async fn send_chunk(&self, stream: &str, source_region: &str, letters: &[DeadLetter<'_>]) -> Vec<Result<()>> {
        let entries: std::result::Result<Vec<_>, _> = letters
            .iter()
            .enumerate()
            .map(|(i, l)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body(stream, source_region, l))
                    .build()
            })
            .collect();
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                let msg = format!("cannot build the SendMessageBatch request: {e}");
                return letters.iter().map(|_| Err(KinesisError::InvalidConfig(msg.clone()))).collect();
            }
        };
        match self.client.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await {
            Err(e) => letters.iter().map(|_| Err(KinesisError::sqs("SendMessageBatch", &self.url, &e))).collect(),
            Ok(out) => (0..letters.len())
                .map(|i| match out.failed().iter().find(|f| f.id() == i.to_string()) {
                    None => Ok(()),
                    Some(f) => Err(KinesisError::Sqs {
                        operation: "SendMessageBatch",
                        queue: self.url.clone(),
                        code: f.code().to_owned(),
                        message: f.message().unwrap_or_default().to_owned(),
                        retryable: !f.sender_fault(),
                    }),
                })
                .collect(),
        }
    }
}

fn body(stream: &str, source_region: &str, letter: &DeadLetter<'_>) -> String {
    let r = letter.record;
    let mut v = json!({
        "reason": letter.reason,
        "stream": stream,
        "source_region": source_region,
        "shard_id": r.shard_id,
        "sequence_number": r.sequence_number,
        "partition_key": r.partition_key,
        "approximate_arrival": r.arrival.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        "message_id": message_id(&r.data).map(hex),
    });
    let data = base64::engine::general_purpose::STANDARD.encode(&r.data);
    if v.to_string().len() + data.len() + 16 <= MAX_MESSAGE_BYTES {
        v["data"] = json!(data);
    } else {
        v["data_omitted"] = json!(true);
    }
    v.to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
