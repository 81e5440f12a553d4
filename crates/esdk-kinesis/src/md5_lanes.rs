//! MD5 (RFC 1321) of many messages at once, for the KPL aggregate trailer.
//!
//! One MD5 is a chain: each of a block's 64 steps waits for the one before, so a single message
//! runs at the latency of that chain (about 600 MB/s on a current x86 core, whatever the
//! implementation). Independent messages have independent chains: here each of [`LANES`] lanes
//! carries one message, and the same step of every lane is computed together, on plain arrays
//! that the compiler turns into SIMD instructions (SSE2 on any x86-64, NEON on aarch64; no
//! `unsafe`, no target features). A lane whose message ends takes the next one, so messages of
//! any lengths share the work. When fewer than [`MIN_BUSY`] lanes are still busy, each finishes
//! on the single-message compressor of the `md-5` crate, which this module is checked against.
//!
//! A producer seals one aggregate per bucket of a `put` and a consumer splits many from one
//! `GetRecords` answer, so batches of messages are the usual case. Copies of message bytes this
//! module makes (the padded tails, the words of the blocks in flight) are zeroized when done,
//! except what moves through registers and the stack as any hash function's state does.

use md5::block_api::compress;
use md5::{Digest, Md5};
use zeroize::Zeroize;

/// Messages hashed side by side.
const LANES: usize = 16;
/// With fewer unfinished messages than this, one scalar compression each is faster than a pass
/// over every lane (a lane step costs about a fifth of a scalar one).
const MIN_BUSY: usize = 5;

const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// `floor(abs(sin(i + 1)) * 2^32)`, RFC 1321 section 3.4.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Left rotations per step, RFC 1321 section 3.4.
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15,
    21,
];

type Lanes = [u32; LANES];

/// The MD5 of each message, in order.
pub(crate) fn digest_all(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut out = vec![[0u8; 16]; messages.len()];
    let mut queue = messages.iter().enumerate();
    if messages.len() >= MIN_BUSY {
        let mut lanes: [Option<Job<'_>>; LANES] = std::array::from_fn(|_| queue.next().map(Job::new));
        let mut state: [Lanes; 4] = INIT.map(|w| [w; LANES]);
        // The blocks' words, lane by lane (message bytes: zeroized at the end).
        let mut words = [[0u32; LANES]; 16];
        while lanes.iter().flatten().count() >= MIN_BUSY {
            let idle = [0u8; 64];
            let blocks: [&[u8; 64]; LANES] = std::array::from_fn(|l| lanes[l].as_ref().map_or(&idle, Job::block));
            compress_lanes(&mut state, &blocks, &mut words);
            for (l, lane) in lanes.iter_mut().enumerate() {
                let Some(job) = lane else { continue };
                job.next += 1;
                if job.next == job.blocks {
                    out[job.index] = to_digest(lane_state(&state, l));
                    for (word, init) in state.iter_mut().zip(INIT) {
                        word[l] = init;
                    }
                    *lane = queue.next().map(Job::new);
                }
            }
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            if let Some(mut job) = lane.take() {
                let mut s = lane_state(&state, l);
                while job.next < job.blocks {
                    compress(&mut s, std::slice::from_ref(job.block()));
                    job.next += 1;
                }
                out[job.index] = to_digest(s);
            }
        }
        words.as_flattened_mut().zeroize();
    }
    for (index, message) in queue {
        out[index] = Md5::digest(message).into();
    }
    out
}

/// One message in a lane: its whole blocks, then the padded tail (RFC 1321 sections 3.1, 3.2).
struct Job<'a> {
    index: usize,
    /// The message up to its last whole block.
    whole: &'a [u8],
    /// The last `len % 64` bytes, `0x80`, zeros and the bit length: one block or two.
    tail: [[u8; 64]; 2],
    /// Blocks in all, and the next one to compress.
    blocks: usize,
    next: usize,
}

impl<'a> Job<'a> {
    fn new((index, message): (usize, &&'a [u8])) -> Self {
        let (whole, rest) = message.split_at(message.len() / 64 * 64);
        let mut tail = [[0u8; 64]; 2];
        let flat = tail.as_flattened_mut();
        flat[..rest.len()].copy_from_slice(rest);
        flat[rest.len()] = 0x80;
        let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
        let bits = (message.len() as u64).wrapping_mul(8);
        flat[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_le_bytes());
        Job { index, whole, tail, blocks: whole.len() / 64 + tail_blocks, next: 0 }
    }

    fn block(&self) -> &[u8; 64] {
        match self.whole.get(self.next * 64..).and_then(<[u8]>::first_chunk::<64>) {
            Some(b) => b,
            None => &self.tail[self.next - self.whole.len() / 64],
        }
    }
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        // The tail is a copy of message bytes (aggregates are plaintext).
        self.tail.as_flattened_mut().zeroize();
    }
}

fn lane_state(state: &[Lanes; 4], lane: usize) -> [u32; 4] {
    [state[0][lane], state[1][lane], state[2][lane], state[3][lane]]
}

fn to_digest(state: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// One block of every lane (RFC 1321 section 3.4), each step on all lanes at once.
#[inline(always)]
fn compress_lanes(state: &mut [Lanes; 4], blocks: &[&[u8; 64]; LANES], m: &mut [Lanes; 16]) {
    for (w, words) in m.iter_mut().enumerate() {
        for (word, block) in words.iter_mut().zip(blocks) {
            *word = u32::from_le_bytes([block[4 * w], block[4 * w + 1], block[4 * w + 2], block[4 * w + 3]]);
        }
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let mut f = [0u32; LANES];
        let g = match i / 16 {
            0 => {
                for l in 0..LANES {
                    f[l] = (b[l] & c[l]) | (!b[l] & d[l]);
                }
                i
            }
            1 => {
                for l in 0..LANES {
                    f[l] = (d[l] & b[l]) | (!d[l] & c[l]);
                }
                (5 * i + 1) % 16
            }
            2 => {
                for l in 0..LANES {
                    f[l] = b[l] ^ c[l] ^ d[l];
                }
                (3 * i + 5) % 16
            }
            _ => {
                for l in 0..LANES {
                    f[l] = c[l] ^ (b[l] | !d[l]);
                }
                (7 * i) % 16
            }
        };
        let mut next = [0u32; LANES];
        for l in 0..LANES {
            let sum = a[l].wrapping_add(f[l]).wrapping_add(K[i]).wrapping_add(m[g][l]);
            next[l] = b[l].wrapping_add(sum.rotate_left(S[i]));
        }
        a = d;
        d = c;
        c = b;
        b = next;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        for (x, y) in s.iter_mut().zip(v) {
            *x = x.wrapping_add(y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(messages: &[&[u8]]) -> Vec<[u8; 16]> {
        messages.iter().map(|m| Md5::digest(m).into()).collect()
    }

    #[test]
    fn rfc_1321_suite() {
        // RFC 1321 appendix A.5.
        let inputs: [&[u8]; 7] = [
            b"",
            b"a",
            b"abc",
            b"message digest",
            b"abcdefghijklmnopqrstuvwxyz",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        ];
        let want = [
            "d41d8cd98f00b204e9800998ecf8427e",
            "0cc175b9c0f1b6a831c399e269772661",
            "900150983cd24fb0d6963f7d28e17f72",
            "f96b697d7cb7938d525a2f31aaf161d0",
            "c3fcd3d76192e4007dfb496cca67e13b",
            "d174ab98d277d9f5a5611c2c9f419d9f",
            "57edf4a22be3c955ac49da2e2107b67a",
        ];
        // Three copies, so the lanes run (not only the scalar tail).
        let many: Vec<&[u8]> = inputs.iter().cycle().take(21).copied().collect();
        for (i, d) in digest_all(&many).iter().enumerate() {
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, want[i % 7], "input {}", i % 7);
        }
    }

    #[test]
    fn every_length_around_the_padding_edges_in_every_lane() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 151 + 7) as u8).collect();
        // Lengths 0..=200 in rotation, so each lane sees ends at 55, 56, 63, 64 and 119..=121.
        let messages: Vec<&[u8]> = (0..=200).map(|n| &data[..n]).chain((0..=200).rev().map(|n| &data[n..])).collect();
        assert_eq!(digest_all(&messages), scalar(&messages));
    }

    #[test]
    fn fewer_messages_than_lanes_and_none() {
        let data = [0x5au8; 1000];
        for n in 0..=LANES + 1 {
            let messages: Vec<&[u8]> = (0..n).map(|i| &data[..i * 37]).collect();
            assert_eq!(digest_all(&messages), scalar(&messages), "{n} messages");
        }
    }
}
