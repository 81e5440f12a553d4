//! Encryption context: public, authenticated key/value pairs (spec `framework/structures.md`,
//! "Encryption Context" and its "Serialization").

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::format::codec::Cursor;

/// Prefix reserved for keys the SDK itself adds (`client-apis/encrypt.md`).
pub const RESERVED_PREFIX: &str = "aws-crypto-";
/// Key under which signed suites carry the verification key.
pub const PUBLIC_KEY_FIELD: &str = "aws-crypto-public-key";

/// An encryption context.
///
/// Pairs are kept sorted by the UTF-8 bytes of their keys, which is the order the wire format
/// requires (Rust's `str` ordering is exactly byte order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// Looks up a value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Removes a pair.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Keys in wire order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The pairs whose keys are in `keys` (keys not present are ignored).
    pub fn subset<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::new();
        for k in keys {
            if let Some(v) = self.0.get(k) {
                out.0.insert(k.to_owned(), v.clone());
            }
        }
        out
    }

    /// Fails if any key uses the reserved `aws-crypto-` prefix (caller input on encrypt).
    pub(crate) fn check_no_reserved_keys(&self) -> Result<()> {
        match self.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            Some(k) => Err(Error::InvalidEncryptionContext(format!(
                "key {k:?} uses the reserved prefix {RESERVED_PREFIX:?}; choose another key name"
            ))),
            None => Ok(()),
        }
    }

    /// Exact length of [`Self::serialize_into`]'s output.
    pub fn serialized_len(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        2 + self.0.iter().map(|(k, v)| 4 + k.len() + v.len()).sum::<usize>()
    }

    /// Checks the wire-format bounds: at most 65,535 pairs, each key and value at most 65,535
    /// bytes, and the whole serialization at most 65,535 bytes.
    pub fn check_serializable(&self) -> Result<()> {
        if self.0.len() > u16::MAX as usize {
            return Err(Error::InvalidEncryptionContext(format!("{} pairs, at most 65535 fit", self.0.len())));
        }
        for (k, v) in &self.0 {
            if k.len() > u16::MAX as usize || v.len() > u16::MAX as usize {
                return Err(Error::InvalidEncryptionContext(format!(
                    "the pair with key {:?} is longer than 65535 bytes",
                    truncate_for_display(k)
                )));
            }
        }
        let len = self.serialized_len();
        if len > u16::MAX as usize {
            return Err(Error::InvalidEncryptionContext(format!(
                "serializes to {len} bytes, more than the 65535 a message header can hold"
            )));
        }
        Ok(())
    }

    /// Appends the spec serialization (empty for an empty context). Call
    /// [`Self::check_serializable`] first.
    pub fn serialize_into(&self, out: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        out.reserve(self.serialized_len());
        out.extend_from_slice(&(self.0.len() as u16).to_be_bytes());
        for (k, v) in &self.0 {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }

    /// The spec serialization as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.check_serializable()?;
        let mut out = Vec::with_capacity(self.serialized_len());
        self.serialize_into(&mut out);
        Ok(out)
    }

    /// Parses a serialized context (the header's AAD field). `bytes` must be consumed exactly.
    ///
    /// Strict: an empty context must be zero bytes (never a zero pair count), keys are unique,
    /// keys and values are valid UTF-8.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const F: &str = "encryption context";
        let mut map = BTreeMap::new();
        if bytes.is_empty() {
            return Ok(Self(map));
        }
        let mut cur = Cursor::new(bytes);
        let count = cur.u16(F).map_err(|_| Error::parse(F, "shorter than its pair count"))?;
        if count == 0 {
            return Err(Error::parse(F, "pair count is 0 but the field is not empty"));
        }
        for _ in 0..count {
            let key = read_str(&mut cur)?;
            let value = read_str(&mut cur)?;
            if map.insert(key, value).is_some() {
                return Err(Error::parse(F, "duplicate key"));
            }
        }
        if !cur.is_empty() {
            return Err(Error::parse(F, format!("{} byte(s) left after the last pair", cur.remaining())));
        }
        Ok(Self(map))
    }
}

fn read_str(cur: &mut Cursor<'_>) -> Result<String> {
    const F: &str = "encryption context";
    let bytes = cur.u16_prefixed(F).map_err(|_| Error::parse(F, "a key or value runs past the field's length"))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::parse(F, "key or value is not valid UTF-8"))
}

fn truncate_for_display(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl From<BTreeMap<String, String>> for EncryptionContext {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}

impl From<EncryptionContext> for BTreeMap<String, String> {
    fn from(ec: EncryptionContext) -> Self {
        ec.0
    }
}

impl<'a> IntoIterator for &'a EncryptionContext {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_utf8_bytes_not_utf16() {
        // U+FF21 (3 UTF-8 bytes, EF BC A1) sorts before U+1D11E (F0 9D 84 9E) in UTF-8 byte
        // order, but after it in UTF-16 code-unit order (FF21 > D834).
        let ec: EncryptionContext = [("\u{1D11E}", "b"), ("\u{FF21}", "a")].into_iter().collect();
        let keys: Vec<&str> = ec.keys().collect();
        assert_eq!(keys, ["\u{FF21}", "\u{1D11E}"]);
        let bytes = ec.to_bytes().unwrap();
        assert_eq!(EncryptionContext::from_bytes(&bytes).unwrap(), ec);
    }

    #[test]
    fn rejects_malformed() {
        assert!(EncryptionContext::from_bytes(&[0, 0]).is_err());
        assert!(EncryptionContext::from_bytes(&[0, 1, 0, 1, b'a']).is_err());
        // duplicate key
        let dup = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        assert!(EncryptionContext::from_bytes(&dup).is_err());
        // invalid UTF-8
        assert!(EncryptionContext::from_bytes(&[0, 1, 0, 1, 0xff, 0, 0]).is_err());
        // trailing byte
        assert!(EncryptionContext::from_bytes(&[0, 1, 0, 1, b'a', 0, 0, 9]).is_err());
    }

    #[test]
    fn empty_is_zero_bytes() {
        assert!(EncryptionContext::new().to_bytes().unwrap().is_empty());
    }
}
