//! The KPL de-aggregator (`esdk_kinesis::aggregate::deaggregate`) on arbitrary plaintext, as a
//! hostile or buggy producer holding the key could encrypt it: errors, never panics; bounded by
//! the input; whatever parses re-aggregates to the same user records; splitting many at once
//! (`deaggregate_all`) gives what one by one gives.
#![no_main]

use esdk_kinesis::aggregate::{deaggregate, deaggregate_all, AggregateBuilder, MAGIC};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fn check(bytes: &[u8]) {
    let Ok(users) = deaggregate(&bytes::Bytes::copy_from_slice(bytes)) else { return };
    assert!(!users.is_empty(), "an empty aggregate is refused");
    // Data are disjoint views of the input; keys come from a shared table (so several records
    // may carry the same one) and are each within Kinesis' limit.
    let data: usize = users.iter().map(|u| u.data.len()).sum();
    assert!(data <= bytes.len(), "user records' data come from the input");
    assert!(users.iter().all(|u| (1..=256).contains(&u.partition_key.chars().count())));
    let mut again = AggregateBuilder::new();
    for u in &users {
        again.push(&u.partition_key, &u.data);
    }
    let again = deaggregate(&bytes::Bytes::from(again.finish().to_vec())).expect("a rebuilt aggregate parses");
    assert_eq!(again.len(), users.len());
    for (a, b) in again.iter().zip(&users) {
        assert_eq!((&a.partition_key, &a.data[..]), (&b.partition_key, &b.data[..]));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // With the magic and a matching MD5, so that the protobuf and its indexes are reached.
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&Md5::digest(data));
    check(&framed);
    // Split together (MD5s side by side, enough of them to fill lanes): as one by one.
    let batch: Vec<bytes::Bytes> = (0..6)
        .map(|i| bytes::Bytes::copy_from_slice(if i % 3 == 0 { data } else { &framed[..framed.len() - i % 2] }))
        .collect();
    for (b, together) in batch.iter().zip(deaggregate_all(&batch)) {
        assert_eq!(together, deaggregate(b));
    }
});
