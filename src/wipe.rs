//! Buffers of plaintext that grow without leaving copies behind.
//!
//! A `Vec` that outgrows its allocation copies its bytes to a new one and frees the old one
//! unwiped, so a growing buffer of plaintext or key bytes would leave a readable copy in freed
//! memory each time. Secret buffers grow through [`reserve_wiping`] instead.

use zeroize::Zeroize;

/// Makes room for `additional` more bytes in `buf`. When that needs a new allocation, the
/// contents move to it and the old allocation is wiped (its whole capacity) before it is freed.
pub(crate) fn reserve_wiping(buf: &mut Vec<u8>, additional: usize) {
    let needed = buf.len().saturating_add(additional);
    if needed <= buf.capacity() {
        return;
    }
    let mut grown = Vec::with_capacity(needed.max(buf.capacity().saturating_mul(2)));
    grown.extend_from_slice(buf);
    let mut old = std::mem::replace(buf, grown);
    old.zeroize();
}

/// [`Vec::resize`] with zeros, growing through [`reserve_wiping`].
pub(crate) fn resize_wiping(buf: &mut Vec<u8>, len: usize) {
    reserve_wiping(buf, len.saturating_sub(buf.len()));
    buf.resize(len, 0);
}

/// [`Vec::extend_from_slice`], growing through [`reserve_wiping`].
pub(crate) fn extend_wiping(buf: &mut Vec<u8>, data: &[u8]) {
    reserve_wiping(buf, data.len());
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_keeps_the_contents_and_only_grows_when_needed() {
        let mut buf = Vec::with_capacity(4);
        extend_wiping(&mut buf, b"abc");
        let ptr = buf.as_ptr();
        extend_wiping(&mut buf, b"d");
        assert_eq!(buf.as_ptr(), ptr, "fits: no new allocation");
        extend_wiping(&mut buf, b"efgh");
        assert_eq!(buf, b"abcdefgh");
        assert!(buf.capacity() >= 8);
        resize_wiping(&mut buf, 20);
        assert_eq!(&buf[..8], b"abcdefgh");
        assert_eq!(&buf[8..], [0u8; 12]);
        resize_wiping(&mut buf, 2);
        assert_eq!(buf, b"ab");
    }
}
