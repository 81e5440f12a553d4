//! Size predictions are total functions: any `u64` input gives an answer, never an overflow
//! (a length no message can have comes back as one larger than any limit).

use esdk::{
    AlgorithmSuite, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, HeaderLimits, MessageHeader, RawAesKeyring,
};
use proptest::prelude::*;

fn header(suite: AlgorithmSuite, frame_length: u32) -> MessageHeader {
    let cmm = DefaultCmm::new(RawAesKeyring::new("ns", "k", &[7u8; 32]).unwrap());
    let client = Client::builder()
        .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
        .suite(suite)
        .frame_length(frame_length)
        .max_frame_length(frame_length)
        .build()
        .unwrap();
    let m = client.encrypt_blocking(&cmm, b"", &EncryptionContext::new()).unwrap();
    MessageHeader::parse(&m, &HeaderLimits::default()).unwrap().0
}

proptest! {
    #[test]
    fn ciphertext_len_and_its_inverse_accept_every_u64(
        len in prop_oneof![any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1)],
        budget in prop_oneof![any::<u64>(), Just(u64::MAX)],
        frame in prop_oneof![Just(1u32), Just(4096), Just(u32::MAX)],
        signed in any::<bool>(),
    ) {
        let suite = if signed { AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384 } else { AlgorithmSuite::Aes256GcmHkdfSha512CommitKey };
        let h = header(suite, frame);
        let client = Client::new();
        let n = client.ciphertext_len(&h, len);
        prop_assert!(n >= len);
        if let Some(max) = client.max_plaintext_len(&h, budget) {
            prop_assert!(client.ciphertext_len(&h, max) <= budget);
        }
    }
}
