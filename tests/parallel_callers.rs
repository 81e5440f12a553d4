//! Several callers with large messages at once (its own test binary, so that it does not make
//! `tests/parallel.rs` fall back to the calling thread while it runs).

use esdk::{Client, DefaultCmm, EncryptionContext, RawAesKeyring};

fn cmm() -> DefaultCmm {
    DefaultCmm::new(RawAesKeyring::new("ns", "parallel", &[5u8; 32]).unwrap())
}

#[test]
fn concurrent_callers_share_the_frame_pool() {
    // More callers than cores, lingering and non-lingering clients mixed: every message round
    // trips and nobody waits forever for a pool thread.
    let plaintext: Vec<u8> = (0..(1 << 20) + 5).map(|i| (i % 241) as u8).collect();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let plaintext = &plaintext;
            s.spawn(move || {
                let linger = if t % 2 == 0 { std::time::Duration::ZERO } else { std::time::Duration::from_millis(1) };
                let c = Client::builder().frame_length(16384).frame_threads(3).frame_linger(linger).build().unwrap();
                let ec: EncryptionContext = [("caller", t.to_string())].into_iter().collect();
                for _ in 0..20 {
                    let message = c.encrypt_blocking(&cmm(), plaintext, &ec).unwrap();
                    assert_eq!(&c.decrypt_blocking(&cmm(), &message, None).unwrap().plaintext.to_vec(), plaintext);
                }
            });
        }
    });
}
