//! Fixed-length ECDSA signatures, so the size of a signed message is known before it is written.
//!
//! A DER `ECDSA-Sig-Value` is `SEQUENCE { INTEGER r, INTEGER s }`; each integer takes one more
//! byte when its top bit is set. `s` and `n - s` are both valid for the same `r` (every verifier
//! of these curves accepts either), so choosing the one whose length complements `r`'s makes
//! every signature exactly `2 + (2 + L + 1) + (2 + L)` bytes for an `L`-byte curve order: 103 for
//! P-384, 71 for P-256. When `r` itself is short (probability 2^-8) the caller signs again.

use crate::suite::Curve;

const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0,
    0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

fn order(curve: Curve) -> &'static [u8] {
    match curve {
        Curve::P256 => &P256_ORDER,
        Curve::P384 => &P384_ORDER,
    }
}

/// The length every signature of `curve` has after [`fix_length`].
pub(crate) const fn fixed_len(curve: Curve) -> usize {
    match curve {
        Curve::P256 => 71,
        Curve::P384 => 103,
    }
}

/// Reads one DER INTEGER (short-form length) from `der`, returning its value without sign
/// padding and the rest.
fn read_integer(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if tag != 0x02 || len as usize > rest.len() || len >= 0x80 || len == 0 {
        return None;
    }
    let (value, rest) = rest.split_at(len as usize);
    let value = match value {
        [0, tail @ ..] if !tail.is_empty() => tail,
        v => v,
    };
    Some((value, rest))
}

fn put_integer(out: &mut Vec<u8>, value: &[u8]) {
    let pad = value.first().is_some_and(|b| b & 0x80 != 0);
    out.push(0x02);
    out.push((value.len() + usize::from(pad)) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(value);
}

/// `n - s` for big-endian `s` (`0 < s < n`), left-padded to the order's length.
fn negate(curve: Curve, s: &[u8]) -> Vec<u8> {
    let n = order(curve);
    let mut padded = vec![0u8; n.len() - s.len()];
    padded.extend_from_slice(s);
    let mut out = vec![0u8; n.len()];
    let mut borrow = 0i16;
    for i in (0..n.len()).rev() {
        let mut d = n[i] as i16 - padded[i] as i16 - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    let first = out.iter().position(|b| *b != 0).unwrap_or(out.len() - 1);
    out.split_off(first)
}

/// Rewrites a DER signature to the curve's fixed length by choosing between `s` and `n - s`.
/// `None` when no choice gives the fixed length (a short `r`): sign again.
pub(crate) fn fix_length(curve: Curve, der: &[u8]) -> Option<Vec<u8>> {
    let l = order(curve).len();
    let [0x30, len, body @ ..] = der else { return None };
    if *len as usize != body.len() {
        return None;
    }
    let (r, rest) = read_integer(body)?;
    let (s, rest) = read_integer(rest)?;
    if !rest.is_empty() || r.len() != l || s.len() > l {
        return None;
    }
    // Encoded lengths: r takes l + 1 bytes when its top bit is set, else l.
    let r_long = r[0] & 0x80 != 0;
    let s_long = |v: &[u8]| v.len() == l && v[0] & 0x80 != 0;
    let s_fixed = if s_long(s) != r_long && s.len() == l {
        s.to_vec()
    } else {
        let neg = negate(curve, s);
        if s_long(&neg) == r_long || neg.len() != l {
            return None;
        }
        neg
    };
    let mut body = Vec::with_capacity(fixed_len(curve));
    put_integer(&mut body, r);
    put_integer(&mut body, &s_fixed);
    let mut out = Vec::with_capacity(fixed_len(curve));
    out.push(0x30);
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    (out.len() == fixed_len(curve)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Backend;

    #[test]
    fn negation_is_an_involution_and_signatures_still_verify() {
        for &backend in Backend::all() {
            let p = backend.provider();
            for curve in [Curve::P256, Curve::P384] {
                let key = p.generate_ecdsa(curve).unwrap();
                let verifier = p.ecdsa_verifier(curve, &key.compressed_public_key().unwrap()).unwrap();
                let digest = vec![0x5au8; curve.hash().output_len()];
                let mut fixed = 0;
                for _ in 0..64 {
                    let der = key.sign_digest(&digest).unwrap();
                    assert!(verifier.verify_digest(&digest, &der));
                    if let Some(f) = fix_length(curve, &der) {
                        assert_eq!(f.len(), fixed_len(curve));
                        assert!(verifier.verify_digest(&digest, &f), "{} {curve:?}", backend.name());
                        fixed += 1;
                    }
                }
                assert!(fixed > 48, "most signatures are fixable directly ({fixed}/64, {})", backend.name());
                // Signing the same digest again gives a new signature (what a retry needs).
                assert_ne!(key.sign_digest(&digest).unwrap(), key.sign_digest(&digest).unwrap());
                let s = vec![0x12u8; order(curve).len()];
                assert_eq!(negate(curve, &negate(curve, &s)), s);
            }
        }
    }

    #[test]
    fn malformed_der_is_rejected() {
        assert!(fix_length(Curve::P384, &[]).is_none());
        assert!(fix_length(Curve::P384, &[0x30, 0x00]).is_none());
        assert!(fix_length(Curve::P384, &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]).is_none());
    }
}
