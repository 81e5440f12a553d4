//! What the demo's consumers saw, and the end-of-run checks: every record delivered to its
//! original in both Regions, none twice, per key in commit order.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use esdk_kinesis::ConsumeOutcome;

/// One synthetic CDC change.
pub struct Change {
    pub key: String,
    pub payload: Vec<u8>,
    pub commit_time: SystemTime,
}

/// `n` changes over `keys` row keys (each key updated about n/keys times), committed every
/// `spacing` from `base`.
pub fn changes(n: usize, keys: usize, base: SystemTime, spacing: Duration) -> Vec<Change> {
    (0..n)
        .map(|i| {
            let row = 12_340_000 + (i % keys) as u64;
            let version = (i / keys) as u64;
            let ts = base + spacing * i as u32;
            let stamp = humantime::format_rfc3339_millis(ts).to_string();
            let payload = format!(
                r#"{{"Key": {row}, "Version": {version}, "CommitTimestamp": "{}", "Op": "UPSERT", "Table": "orders", "Row": {{"order_id": {row}, "customer": "c-{:05}", "amount_cents": {}, "status": "{}"}}}}"#,
                stamp.trim_end_matches('Z'),
                i % 7919,
                (i * 7_877) % 1_000_000,
                ["NEW", "PAID", "SHIPPED", "DELIVERED"][i % 4]
            );
            Change { key: row.to_string(), payload: payload.into_bytes(), commit_time: ts }
        })
        .collect()
}

/// What one Region's consumer delivered, per partition key, in delivery order.
#[derive(Default)]
pub struct Seen {
    delivered: HashMap<String, Vec<Vec<u8>>>,
    pub delivered_total: usize,
    pub duplicates: usize,
    pub poison: usize,
    pub transient: usize,
}

impl Seen {
    /// Takes a batch's outcome (the application's side of the two-phase commit); returns how
    /// many records were new.
    pub fn absorb(&mut self, out: &ConsumeOutcome) -> usize {
        self.duplicates += out.duplicates.len();
        self.poison += out.poison.len();
        self.transient += out.transient.len();
        for f in &out.poison {
            eprintln!("poison record {} in {}: {}", f.sequence_number, f.shard_id, f.error);
        }
        for d in &out.delivered {
            self.delivered.entry(d.partition_key.clone()).or_default().push(d.plaintext.to_vec());
        }
        self.delivered_total += out.delivered.len();
        out.delivered.len()
    }

    /// Distinct changes delivered.
    pub fn distinct(&self) -> usize {
        self.delivered.values().map(|v| v.iter().collect::<HashSet<_>>().len()).sum()
    }
}

/// Lost, duplicated and out-of-order counts of one consumer against the changes produced.
pub struct Check {
    pub lost: usize,
    pub duplicated: usize,
    pub out_of_order: usize,
    pub different: usize,
}

pub fn check(seen: &Seen, changes: &[Change]) -> Check {
    let mut expected: HashMap<&str, Vec<&Change>> = HashMap::new();
    for c in changes {
        expected.entry(c.key.as_str()).or_default().push(c);
    }
    let (mut lost, mut duplicated, mut out_of_order, mut different) = (0, 0, 0, 0);
    for (key, want) in &expected {
        let got = seen.delivered.get(*key).map(Vec::as_slice).unwrap_or_default();
        let mut delivered = HashSet::new();
        let mut last_version: Option<usize> = None;
        for payload in got {
            if !delivered.insert(payload.as_slice()) {
                duplicated += 1;
                continue;
            }
            match want.iter().position(|c| c.payload == *payload) {
                Some(v) => {
                    if last_version.is_some_and(|l| v < l) {
                        out_of_order += 1;
                    }
                    last_version = Some(v);
                }
                None => different += 1,
            }
        }
        lost += want.iter().filter(|c| !delivered.contains(c.payload.as_slice())).count();
    }
    different += seen.delivered.keys().filter(|k| !expected.contains_key(k.as_str())).count();
    Check { lost, duplicated, out_of_order, different }
}
