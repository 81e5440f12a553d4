//! The `KinesisEvent` of an event source mapping (the schema `aws_lambda_events` models), read
//! in one pass without a copy per field: strings borrow from the request body, the records'
//! `data` are decoded from base64 into one buffer that the records share, and fields the
//! replicator does not use are skipped, not allocated.
//!
//! The body reaches [`parse`] as `lambda_runtime` received it (see `crate::lambda::Bodies`):
//! the runtime's own deserializer (`serde_path_to_error` over `serde_json`, which allocates each
//! key it passes) never sees it.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esdk_kinesis::{KinesisError, SourceRecord};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The records of one event, in the mapping's order, and the `eventSourceARN` they all carry.
#[derive(Debug)]
pub struct Batch {
    /// `eventSourceARN` of the first record (every record must carry the same).
    pub event_source_arn: String,
    /// The records as the replicator core takes them.
    pub records: Vec<SourceRecord>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<EventRecord<'a>>,
}

#[derive(Deserialize)]
struct EventRecord<'a> {
    #[serde(rename = "eventID", borrow)]
    event_id: Text<'a>,
    #[serde(rename = "eventSourceARN", borrow)]
    event_source_arn: Text<'a>,
    #[serde(borrow)]
    kinesis: Kinesis<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kinesis<'a> {
    #[serde(borrow)]
    partition_key: Text<'a>,
    #[serde(borrow)]
    sequence_number: Text<'a>,
    #[serde(borrow)]
    data: Base64<'a>,
    approximate_arrival_timestamp: Arrival,
}

/// A JSON string, borrowed from the body unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON string taken as bytes (no UTF-8 check: base64 decoding checks every byte anyway),
/// borrowed from the body unless it holds escapes.
struct Base64<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Base64<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Base64<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Base64(Cow::Borrowed(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Base64(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Base64(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Base64(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// `approximateArrivalTimestamp`: seconds since the epoch, a JSON number with a fraction
/// (milliseconds in the events Lambda sends) or a string holding one, as `aws_lambda_events`
/// accepts. Kept to the millisecond.
struct Arrival(SystemTime);

/// Later than any arrival time a stream can report (the year 2286): a bound for hostile input.
const MAX_ARRIVAL_SECONDS: f64 = 1e10;

impl Arrival {
    fn from_seconds<E: de::Error>(s: f64) -> Result<Self, E> {
        if !(0.0..MAX_ARRIVAL_SECONDS).contains(&s) {
            return Err(E::custom(format_args!("approximateArrivalTimestamp {s} is not a time in seconds since 1970")));
        }
        // In range, so the product fits a u64 and the cast is exact after rounding.
        let millis = (s * 1000.0).round() as u64;
        Ok(Self(UNIX_EPOCH + Duration::from_millis(millis)))
    }
}

impl<'de> Deserialize<'de> for Arrival {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Arrival;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("seconds since 1970, as a number or a string")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Arrival, E> {
                Arrival::from_seconds(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Arrival, E> {
                Arrival::from_seconds(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Arrival, E> {
                Arrival::from_seconds(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Arrival, E> {
                let s: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format_args!("approximateArrivalTimestamp {v:?} is not a number")))?;
                Arrival::from_seconds(s)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses an event: every record must name its shard in `eventID` (`shardId-…:<sequence
/// number>`), carry `eventSourceARN`, and hold standard base64 `data`. Any other shape is
/// [`KinesisError::InvalidEvent`] naming the first problem and where it is.
pub fn parse(body: &[u8]) -> Result<Batch, KinesisError> {
    let event: Event<'_> = serde_json::from_slice(body).map_err(|e| invalid(body, e))?;
    // base64-simd (already in every AWS SDK build, through aws-smithy-types) decodes with SIMD
    // at several times the base64 crate's speed: the records' data is most of the event.
    let engine = &base64_simd::STANDARD;
    let decoded: usize = event.records.iter().map(|r| r.kinesis.data.0.len() / 4 * 3).fold(0, usize::saturating_add);
    let mut buffer = Vec::with_capacity(decoded);
    let mut spans = Vec::with_capacity(event.records.len());
    for (i, r) in event.records.iter().enumerate() {
        let start = buffer.len();
        engine.decode_append(&r.kinesis.data.0, &mut buffer).map_err(|_| {
            KinesisError::InvalidEvent(format!(
                "record {i} (sequence number {}): its data ({} characters) is not standard base64 with padding",
                shown(&r.kinesis.sequence_number.0),
                r.kinesis.data.0.len()
            ))
        })?;
        spans.push(start..buffer.len());
    }
    let data = bytes::Bytes::from(buffer);
    let event_source_arn = event.records.first().map(|r| r.event_source_arn.0.clone().into_owned()).unwrap_or_default();
    let mut records = Vec::with_capacity(event.records.len());
    for (r, span) in event.records.iter().zip(spans) {
        let shard =
            r.event_id.0.split_once(':').map(|(shard, _)| shard).filter(|s| s.starts_with("shardId-")).ok_or_else(
                || KinesisError::InvalidEvent(format!("eventID {:?} does not name a shard", shown(&r.event_id.0))),
            )?;
        if r.event_source_arn.0 != event_source_arn {
            return Err(KinesisError::ForeignSource {
                event_source_arn: shown(&r.event_source_arn.0),
                expected: format!("one stream per event ({event_source_arn})"),
            });
        }
        let k = &r.kinesis;
        records.push(SourceRecord::new(
            shard,
            &k.sequence_number.0,
            &k.partition_key.0,
            data.slice(span),
            Some(k.approximate_arrival_timestamp.0),
        ));
    }
    Ok(Batch { event_source_arn, records })
}

/// The error for a body that does not parse, with the path of the offending field (parsed
/// again with path tracking, which costs an allocation per key and so only on this path).
fn invalid(body: &[u8], first: serde_json::Error) -> KinesisError {
    let mut de = serde_json::Deserializer::from_slice(body);
    let e = match serde_path_to_error::deserialize::<_, Event<'_>>(&mut de) {
        Err(e) => e.to_string(),
        // The path-tracking pass stops after the value (trailing characters, say).
        Ok(_) => first.to_string(),
    };
    KinesisError::InvalidEvent(format!("not a Kinesis event of an event source mapping: {e}"))
}

/// At most 80 characters of a value from the event, for an error message (a hostile value may
/// be megabytes long).
fn shown(v: &str) -> String {
    match v.char_indices().nth(80) {
        Some((end, _)) => format!("{}… ({} bytes)", &v[..end], v.len()),
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;
    use base64::Engine as _;
    use proptest::prelude::*;
    use serde_json::json;

    fn record(pk: &str, seq: &str, data: &[u8], arrival: serde_json::Value) -> serde_json::Value {
        json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": pk,
                "sequenceNumber": seq,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "approximateArrivalTimestamp": arrival,
                "encryptionType": "KMS",
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000003:{seq}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::111122223333:role/replicator",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:111122223333:stream/orders",
        })
    }

    fn event(records: Vec<serde_json::Value>) -> String {
        json!({ "Records": records }).to_string()
    }

    proptest! {
        /// The same records as `aws_lambda_events` reads from the same body (partition keys
        /// with quotes, backslashes, control characters and non-ASCII take the escaped path).
        #[test]
        fn reads_what_aws_lambda_events_reads(
            records in prop::collection::vec(
                (any::<String>(), 0u128..u128::MAX, prop::collection::vec(any::<u8>(), 0..600), 1_500_000_000_000u64..2_000_000_000_000),
                0..20,
            )
        ) {
            let body = event(records.iter().map(|(pk, seq, data, ms)| {
                // Three fraction digits, as Lambda writes them (aws_lambda_events reads fewer wrongly).
                let arrival: serde_json::Value = serde_json::from_str(&format!("{}.{:03}", ms / 1000, (ms % 1000) | 1)).unwrap();
                record(pk, &seq.to_string(), data, arrival)
            }).collect());
            let ours = parse(body.as_bytes()).unwrap();
            let theirs: KinesisEvent = serde_json::from_str(&body).unwrap();
            prop_assert_eq!(ours.records.len(), theirs.records.len());
            for (a, b) in ours.records.iter().zip(&theirs.records) {
                prop_assert_eq!(&a.partition_key, &b.kinesis.partition_key);
                prop_assert_eq!(&a.sequence_number, &b.kinesis.sequence_number);
                prop_assert_eq!(&a.data[..], &b.kinesis.data.0[..]);
                prop_assert_eq!(a.arrival.unwrap(), SystemTime::from(*b.kinesis.approximate_arrival_timestamp));
                prop_assert_eq!(a.shard_id.as_str(), "shardId-000000000003");
            }
            if let Some(b) = theirs.records.first() {
                prop_assert_eq!(Some(&ours.event_source_arn), b.event_source_arn.as_ref());
            }
        }
    }

    #[test]
    fn arrival_times_keep_their_milliseconds() {
        // 1700000000.5 is how a JSON writer prints 1700000000.500 (aws_lambda_events 1.2 reads
        // the fraction "5" as 5 ms).
        for (arrival, millis) in [
            (json!(1_700_000_000.5), 1_700_000_000_500u64),
            (json!(1_700_000_000.987), 1_700_000_000_987),
            (json!(1_700_000_000), 1_700_000_000_000),
            (json!("1700000000.25"), 1_700_000_000_250),
        ] {
            let b = parse(event(vec![record("k", "1", b"x", arrival.clone())]).as_bytes()).unwrap();
            assert_eq!(b.records[0].arrival, Some(UNIX_EPOCH + Duration::from_millis(millis)), "{arrival}");
        }
    }

    #[test]
    fn escaped_strings_and_shared_data() {
        let body = r#"{"Records":[{"eventID":"shardId-000000000000:49\u0035","eventSourceARN":"arn:aws:kinesis:us-east-1:111122223333:stream\/orders",
            "kinesis":{"partitionKey":"a\"b","sequenceNumber":"495","data":"aGVs\/A==","approximateArrivalTimestamp":1.0}},
            {"eventID":"shardId-000000000000:496","eventSourceARN":"arn:aws:kinesis:us-east-1:111122223333:stream/orders",
            "kinesis":{"partitionKey":"c","sequenceNumber":"496","data":"","approximateArrivalTimestamp":2}}]}"#;
        let b = parse(body.as_bytes()).unwrap();
        assert_eq!(b.event_source_arn, "arn:aws:kinesis:us-east-1:111122223333:stream/orders");
        assert_eq!(b.records[0].partition_key, "a\"b");
        assert_eq!(&b.records[0].data[..], b"hel\xfc");
        assert!(b.records[1].data.is_empty());
    }

    #[test]
    fn malformed_events_are_refused_with_the_reason() {
        let ok = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut r = record("k", "1", b"payload", json!(1_700_000_000.123));
            f(&mut r);
            parse(event(vec![record("k", "0", b"x", json!(1.0)), r]).as_bytes())
        };
        let invalid = |e: Result<Batch, KinesisError>, what: &str| match e {
            Err(KinesisError::InvalidEvent(m)) => assert!(m.contains(what), "{m} lacks {what}"),
            other => panic!("{what}: {other:?}"),
        };
        invalid(ok(&|r| r["kinesis"]["data"] = json!("not base64!")), "base64");
        invalid(ok(&|r| r["kinesis"]["data"] = json!("aGVsbA")), "base64");
        invalid(ok(&|r| r["kinesis"]["data"] = json!(17)), "data");
        invalid(ok(&|r| r["kinesis"]["approximateArrivalTimestamp"] = json!(-1)), "approximateArrivalTimestamp");
        invalid(ok(&|r| r["kinesis"]["approximateArrivalTimestamp"] = json!(1e300)), "approximateArrivalTimestamp");
        invalid(ok(&|r| r["kinesis"]["approximateArrivalTimestamp"] = json!("soon")), "approximateArrivalTimestamp");
        invalid(ok(&|r| r["eventID"] = json!("shard0:1")), "does not name a shard");
        invalid(ok(&|r| r["eventID"] = json!("shardId-000000000000")), "does not name a shard");
        invalid(ok(&|r| drop(r.as_object_mut().unwrap().remove("eventSourceARN"))), "eventSourceARN");
        invalid(ok(&|r| drop(r["kinesis"].as_object_mut().unwrap().remove("sequenceNumber"))), "sequenceNumber");
        invalid(parse(b"{\"Records\": 3}"), "expected a sequence");
        invalid(parse(b"[]"), "Kinesis event");
        invalid(parse(format!("{} x", event(vec![])).as_bytes()), "trailing characters");
        let long = ok(&|r| r["eventID"] = json!("x".repeat(100_000)));
        invalid(long, "(100000 bytes)");
        invalid(parse(b"{\"Records\": [{\"eventID\": \"\xff\"}]}"), "Kinesis event");
        assert!(matches!(
            ok(&|r| r["eventSourceARN"] = json!("arn:aws:kinesis:us-east-1:111122223333:stream/other")),
            Err(KinesisError::ForeignSource { .. })
        ));
        assert!(ok(&|_| ()).is_ok());
    }
}
