//! Header-only inspection of a Kinesis record (`esdk_kinesis::record::RecordHeader`, what the crypto-blind
//! replicator reads): never panics, stays within the record, and every accessor is total.
#![no_main]

use esdk_kinesis::record::{message_id, RecordHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let quick = message_id(data);
    if let Ok(h) = RecordHeader::parse(data) {
        assert!(h.header_len() <= data.len());
        assert_eq!(Some(h.message_id()), quick, "the fixed-position id agrees with the parsed one");
        let _ = (h.stream(), h.origin_region(), h.commit_time());
        assert!(h.kms_key_ids().count() <= h.header().encrypted_data_keys().len());
    }
});
