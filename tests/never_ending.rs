//! A 1 GiB stream of valid frames that never reaches its final frame: the streaming decryptor
//! keeps memory bounded and ends with the right error at EOF. Alone in its own test binary so the
//! process's peak RSS is this test's.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use esdk::{
    AlgorithmSuite, Client, DefaultCmm, EncryptingWriter, EncryptionContext, ErrorKind, RawAesKeyring, SignedMessages,
};

const TOTAL: u64 = 1 << 30;
const FRAME: u32 = 64 * 1024;

/// Ciphertext written by the encryptor and not read yet (bytes, read position).
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<(Vec<u8>, usize)>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Produces the ciphertext lazily: regular frames of `TOTAL` bytes of plaintext, never the final
/// frame (the writer is dropped unfinished), then EOF.
struct NeverEnding {
    writer: Option<EncryptingWriter<Shared>>,
    buf: Shared,
    produced: u64,
    chunk: Vec<u8>,
}

impl Read for NeverEnding {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let (data, pos) = &mut *self.buf.0.borrow_mut();
                if *pos < data.len() {
                    let n = out.len().min(data.len() - *pos);
                    out[..n].copy_from_slice(&data[*pos..*pos + n]);
                    *pos += n;
                    return Ok(n);
                }
                data.clear();
                *pos = 0;
            }
            if self.produced >= TOTAL {
                self.writer = None;
                return Ok(0);
            }
            let w = self.writer.as_mut().expect("writer present until TOTAL");
            w.write_all(&self.chunk)?;
            self.produced += self.chunk.len() as u64;
        }
    }
}

fn peak_rss_kib() -> u64 {
    esdk_testkit::proc_status_kib("self", "VmHWM").expect("peak RSS from /proc/self/status (Linux only)")
}

fn source(client: &Client, cmm: &DefaultCmm) -> NeverEnding {
    let buf = Shared::default();
    let writer = client.encrypting_writer_blocking(cmm, &EncryptionContext::new(), buf.clone()).unwrap();
    NeverEnding { writer: Some(writer), buf, produced: 0, chunk: vec![0x5a; FRAME as usize] }
}

#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "peak RSS is read from /proc/self/status: Linux only")]
fn a_gigabyte_of_frames_without_a_final_frame_is_truncated_in_bounded_memory() {
    let cmm = DefaultCmm::new(RawAesKeyring::new("ns", "k", &[3u8; 32]).unwrap());

    // Unsigned: frames are released as they verify; EOF before the final frame is Truncated.
    let client =
        Client::builder().suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey).frame_length(FRAME).build().unwrap();
    let before = peak_rss_kib();
    let mut reader =
        client.decrypting_reader_blocking(&cmm, source(&client, &cmm), None, SignedMessages::Refuse).unwrap();
    let mut sink = vec![0u8; 1 << 16];
    let mut plaintext = 0u64;
    let err = loop {
        match reader.read(&mut sink) {
            Ok(0) => panic!("a message without its final frame ended cleanly after {plaintext} bytes"),
            Ok(n) => plaintext += n as u64,
            Err(e) => break esdk::Error::from(e),
        }
    };
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert!(plaintext >= TOTAL - u64::from(FRAME), "{plaintext}");
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB while streaming 1 GiB");

    // Signed: nothing is released before the signature; the held plaintext hits its bound
    // (here 8 MiB) and the read fails with LimitExceeded instead of buffering a gigabyte.
    let client = Client::builder()
        .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
        .frame_length(FRAME)
        .max_buffered_plaintext(8 << 20)
        .build()
        .unwrap();
    let mut reader = client
        .decrypting_reader_blocking(&cmm, source(&client, &cmm), None, SignedMessages::VerifyBeforeRelease)
        .unwrap();
    let err = esdk::Error::from(reader.read(&mut sink).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");
}
