//! The replicator as an AWS Lambda handler for a Kinesis event source mapping with
//! `ReportBatchItemFailures`: Kinesis event JSON in, `batchItemFailures` JSON out. Any Lambda
//! runtime crate can call [`Replicator::handle_lambda_event`] with the raw event.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{KinesisError, Replicator, Result, SourceRecord};

/// Records in one event (the event source mapping allows at most 10,000).
const MAX_EVENT_RECORDS: usize = 10_000;

/// Reads the records of a Kinesis Lambda event (`Records[].kinesis`, shard from `eventID`).
pub fn parse_event(event: &Value) -> Result<Vec<SourceRecord>> {
    let bad = |what: &str| KinesisError::InvalidEvent(what.to_owned());
    let records = event.get("Records").and_then(Value::as_array).ok_or_else(|| bad("no Records array"))?;
    if records.len() > MAX_EVENT_RECORDS {
        return Err(bad(&format!("{} records, more than the {MAX_EVENT_RECORDS} an event can hold", records.len())));
    }
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let k = r.get("kinesis").ok_or_else(|| bad(&format!("record {i} has no kinesis object")))?;
            let field = |name: &str| {
                k.get(name).and_then(Value::as_str).ok_or_else(|| bad(&format!("record {i} lacks kinesis.{name}")))
            };
            let data = base64::engine::general_purpose::STANDARD
                .decode(field("data")?)
                .map_err(|e| bad(&format!("record {i}: kinesis.data is not base64: {e}")))?;
            let event_id = r.get("eventID").and_then(Value::as_str).unwrap_or_default();
            let shard_id = event_id.split_once(':').map_or("", |(s, _)| s);
            let arrival = k
                .get("approximateArrivalTimestamp")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e11)
                .map(|s| UNIX_EPOCH + Duration::from_secs_f64(s));
            Ok(SourceRecord {
                shard_id: shard_id.to_owned(),
                sequence_number: field("sequenceNumber")?.to_owned(),
                partition_key: field("partitionKey")?.to_owned(),
                data: data.into(),
                arrival,
            })
        })
        .collect()
}

/// The handler response naming the records Lambda must retry (it resumes at the lowest).
pub fn batch_item_failures<'a>(sequence_numbers: impl IntoIterator<Item = &'a str>) -> Value {
    let items: Vec<Value> = sequence_numbers.into_iter().map(|s| json!({ "itemIdentifier": s })).collect();
    json!({ "batchItemFailures": items })
}

impl Replicator {
    /// Handles one Kinesis event. An error (e.g. the control table unreachable) should fail the
    /// invocation so Lambda retries the whole batch; partial failures come back as
    /// `batchItemFailures`.
    pub async fn handle_lambda_event(&self, event: &Value) -> Result<Value> {
        let records = parse_event(event)?;
        let outcome = self.replicate_records(&records, &[]).await?;
        Ok(batch_item_failures(outcome.failed.iter().map(|(_, seq)| seq.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_event_and_rejects_malformed_ones() {
        let event = json!({"Records": [{
            "kinesis": {"partitionKey": "k1", "sequenceNumber": "4959", "data": "aGVsbG8=",
                        "approximateArrivalTimestamp": 1545084650.987, "kinesisSchemaVersion": "1.0"},
            "eventID": "shardId-000000000006:4959", "eventSource": "aws:kinesis"
        }]});
        let records = parse_event(&event).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].shard_id, "shardId-000000000006");
        assert_eq!(&records[0].data[..], b"hello");
        assert_eq!(records[0].arrival.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs(), 1545084650);
        assert!(matches!(parse_event(&json!({})), Err(KinesisError::InvalidEvent(_))));
        let bad = json!({"Records": [{"kinesis": {"partitionKey": "k", "sequenceNumber": "1", "data": "!!"}}]});
        assert!(parse_event(&bad).unwrap_err().to_string().contains("base64"));
        assert_eq!(
            batch_item_failures(["7", "9"]),
            json!({"batchItemFailures": [{"itemIdentifier": "7"}, {"itemIdentifier": "9"}]})
        );
    }
}
