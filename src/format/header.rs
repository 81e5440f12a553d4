//! Message header codec, v1 and v2 (spec `data-format/message-header.md`).

use crate::context::EncryptionContext;
use crate::error::{Error, Result};
use crate::format::codec::Cursor;
use crate::materials::EncryptedDataKey;
use crate::suite::{AlgorithmSuite, MessageFormatVersion};

/// Body layout announced by the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// One encrypted block (decrypt only; legacy writers).
    NonFramed,
    /// A sequence of frames ending with a final frame.
    Framed,
}

impl ContentType {
    const fn byte(self) -> u8 {
        match self {
            Self::NonFramed => 0x01,
            Self::Framed => 0x02,
        }
    }
}

/// Parsing limits for headers. Defaults follow the spec (no EDK limit) with a memory bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderLimits {
    /// Maximum number of encrypted data keys; `None` disables the check (spec default).
    pub max_encrypted_data_keys: Option<u16>,
    /// Maximum serialized header length, so a hostile header cannot make the parser hold
    /// 65,535 EDKs of 196 KiB each. Default [`DEFAULT_MAX_HEADER_LEN`] (64 MiB): room for the
    /// format's 65,535 EDKs at up to 1 KiB each (a KMS EDK is about 300 bytes, an RSA-4096 one
    /// about 600), so the default does not cap the EDK count below the format's.
    pub max_header_len: usize,
}

/// Default [`HeaderLimits::max_header_len`]: 64 MiB, as the other decrypt buffers.
pub const DEFAULT_MAX_HEADER_LEN: usize = 64 << 20;

impl Default for HeaderLimits {
    fn default() -> Self {
        Self { max_encrypted_data_keys: None, max_header_len: DEFAULT_MAX_HEADER_LEN }
    }
}

impl HeaderLimits {
    /// Limits with the given EDK count (`None`: no limit) and header length bounds.
    pub fn new(max_encrypted_data_keys: Option<u16>, max_header_len: usize) -> Self {
        Self { max_encrypted_data_keys, max_header_len }
    }
}

/// A parsed or to-be-written message header. Everything in it is public information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    pub(crate) suite: AlgorithmSuite,
    pub(crate) message_id: Vec<u8>,
    pub(crate) encryption_context: EncryptionContext,
    pub(crate) encrypted_data_keys: Vec<EncryptedDataKey>,
    pub(crate) content_type: ContentType,
    pub(crate) frame_length: u32,
    /// v1 header-auth IV (zeros when we write); v2 has none.
    pub(crate) header_iv: [u8; 12],
    /// v2 suite data (the commitment value).
    pub(crate) commitment: Option<[u8; 32]>,
    /// The header authentication tag (read, or computed when the header was written).
    pub(crate) auth_tag: [u8; 16],
}

impl MessageHeader {
    /// Message format version.
    pub fn version(&self) -> MessageFormatVersion {
        self.suite.message_format_version()
    }
    /// Algorithm suite.
    pub fn suite(&self) -> AlgorithmSuite {
        self.suite
    }
    /// Message id (16 bytes for v1, 32 for v2).
    pub fn message_id(&self) -> &[u8] {
        &self.message_id
    }
    /// Encryption context stored in the header (without required-only pairs).
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }
    /// Encrypted data keys.
    pub fn encrypted_data_keys(&self) -> &[EncryptedDataKey] {
        &self.encrypted_data_keys
    }
    /// Framed or not.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }
    /// Frame length (0 for non-framed).
    pub fn frame_length(&self) -> u32 {
        self.frame_length
    }
    /// Commitment value (v2 suite data).
    pub fn commitment(&self) -> Option<&[u8; 32]> {
        self.commitment.as_ref()
    }

    /// The header authentication fields (message-format.md, "Header Authentication"): the IV
    /// (all zeros; on v2 messages it is not serialized) and the tag.
    pub fn header_auth(&self) -> (&[u8; 12], &[u8; 16]) {
        (&self.header_iv, &self.auth_tag)
    }

    /// Parses the header at the start of `message` without any key, returning it and the
    /// header's length in bytes (body and authentication fields).
    ///
    /// Nothing here is authenticated: use it to route or inspect messages (suite, message id,
    /// encryption context, EDK key ids), never to trust their contents.
    pub fn parse(message: &[u8], limits: &HeaderLimits) -> Result<(Self, usize)> {
        let parsed = parse(message, limits)?;
        Ok((parsed.header, parsed.total_len))
    }

    /// Exact length of the serialized header body (without the authentication fields).
    pub fn body_len(&self) -> usize {
        let v = self.version();
        let edks: usize = self.encrypted_data_keys.iter().map(EncryptedDataKey::serialized_len).sum();
        let common = 1 + 2 + v.message_id_len() + 2 + self.encryption_context.serialized_len() + 2 + edks + 1 + 4;
        match v {
            MessageFormatVersion::V1 => common + 1 + 4 + 1,
            MessageFormatVersion::V2 => common + AlgorithmSuite::COMMITMENT_LEN,
        }
    }

    /// Exact length of the header authentication fields.
    pub fn auth_len(&self) -> usize {
        auth_len(self.version())
    }

    /// Checks the bounds the encoding imposes before serializing.
    pub(crate) fn check_serializable(&self) -> Result<()> {
        self.encryption_context.check_serializable()?;
        if self.encrypted_data_keys.is_empty() || self.encrypted_data_keys.len() > u16::MAX as usize {
            return Err(Error::InvalidMaterials(format!(
                "{} encrypted data keys; a message needs between 1 and 65535",
                self.encrypted_data_keys.len()
            )));
        }
        self.encrypted_data_keys.iter().try_for_each(EncryptedDataKey::check_serializable)
    }

    /// Appends the header body (`check_serializable` must have passed).
    pub(crate) fn serialize_body_into(&self, out: &mut Vec<u8>) {
        let v = self.version();
        out.push(v.byte());
        if v == MessageFormatVersion::V1 {
            out.push(TYPE_CUSTOMER_AED);
        }
        out.extend_from_slice(&self.suite.id_bytes());
        out.extend_from_slice(&self.message_id);
        out.extend_from_slice(&(self.encryption_context.serialized_len() as u16).to_be_bytes());
        self.encryption_context.serialize_into(out);
        out.extend_from_slice(&(self.encrypted_data_keys.len() as u16).to_be_bytes());
        for edk in &self.encrypted_data_keys {
            edk.serialize_into(out);
        }
        out.push(self.content_type.byte());
        match v {
            MessageFormatVersion::V1 => {
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.push(AlgorithmSuite::IV_LEN as u8);
                out.extend_from_slice(&self.frame_length.to_be_bytes());
            }
            MessageFormatVersion::V2 => {
                out.extend_from_slice(&self.frame_length.to_be_bytes());
                out.extend_from_slice(self.commitment.as_ref().map_or(&[0u8; 32][..], |c| &c[..]));
            }
        }
    }
}

const TYPE_CUSTOMER_AED: u8 = 0x80;

pub(crate) const fn auth_len(v: MessageFormatVersion) -> usize {
    match v {
        MessageFormatVersion::V1 => AlgorithmSuite::IV_LEN + AlgorithmSuite::TAG_LEN,
        MessageFormatVersion::V2 => AlgorithmSuite::TAG_LEN,
    }
}

/// A header read from the wire, with the exact byte spans needed to authenticate it.
#[derive(Debug)]
pub(crate) struct ParsedHeader {
    pub(crate) header: MessageHeader,
    /// Length of the header body (the bytes the auth tag covers).
    pub(crate) body_len: usize,
    /// Header body plus authentication fields.
    pub(crate) total_len: usize,
}

/// Recognizes the base64 text of a message start (`client-apis/decrypt.md`, base64 detection).
fn looks_like_base64(input: &[u8]) -> bool {
    // v1 `01 80` encodes as "AY"; v2 `02 04 78` / `02 05 78` as "AgR4" / "AgV4".
    input.starts_with(b"AY") || input.starts_with(b"AgR4") || input.starts_with(b"AgV4")
}

/// Parses a header from the start of `input`.
///
/// Returns [`Error::Truncated`] when `input` ends before the header does, so a streaming caller
/// can retry with more bytes. Limits are enforced as soon as the relevant field is read.
pub(crate) fn parse(input: &[u8], limits: &HeaderLimits) -> Result<ParsedHeader> {
    let mut cur = Cursor::new(input);
    let version_byte = cur.u8("header version")?;
    let version = match version_byte {
        0x01 => MessageFormatVersion::V1,
        0x02 => MessageFormatVersion::V2,
        _ if looks_like_base64(input) => {
            return Err(Error::Base64Input {
                prefix: String::from_utf8_lossy(&input[..input.len().min(4)]).into_owned(),
            })
        }
        b => return Err(Error::parse("header version", format!("unknown version byte 0x{b:02X}"))),
    };
    if version == MessageFormatVersion::V1 {
        let t = cur.u8("header type")?;
        if t != TYPE_CUSTOMER_AED {
            return Err(Error::parse("header type", format!("0x{t:02X}, only 0x80 is defined")));
        }
    }
    let suite_id = cur.u16("algorithm suite id")?;
    let suite = AlgorithmSuite::from_id(suite_id).ok_or(Error::UnsupportedSuite(suite_id))?;
    if suite.message_format_version() != version {
        return Err(Error::parse(
            "algorithm suite id",
            format!("suite {suite} is not valid in a version {} header", version.byte()),
        ));
    }
    let message_id = cur.take(version.message_id_len(), "message id")?.to_vec();
    let aad = cur.u16_prefixed("encryption context")?;
    let encryption_context = EncryptionContext::from_bytes(aad)?;

    let edk_count = cur.u16("encrypted data key count")?;
    if edk_count == 0 {
        return Err(Error::parse("encrypted data key count", "0; a message needs at least one"));
    }
    if let Some(max) = limits.max_encrypted_data_keys {
        if edk_count > max {
            return Err(Error::TooManyEncryptedDataKeys { found: edk_count as usize, limit: max as usize });
        }
    }
    let mut encrypted_data_keys = Vec::with_capacity((edk_count as usize).min(16));
    for _ in 0..edk_count {
        encrypted_data_keys.push(EncryptedDataKey::parse(&mut cur)?);
        check_header_len(cur.position(), limits)?;
    }

    let content_type = match cur.u8("content type")? {
        0x01 => ContentType::NonFramed,
        0x02 => ContentType::Framed,
        b => return Err(Error::parse("content type", format!("0x{b:02X}, expected 0x01 or 0x02"))),
    };
    if version == MessageFormatVersion::V1 {
        if cur.array::<4>("reserved field")? != [0; 4] {
            return Err(Error::parse("reserved field", "must be zero"));
        }
        let iv_len = cur.u8("IV length")?;
        if iv_len as usize != AlgorithmSuite::IV_LEN {
            return Err(Error::parse("IV length", format!("{iv_len}, the suite uses 12")));
        }
    }
    let frame_length = cur.u32("frame length")?;
    match (content_type, frame_length) {
        (ContentType::NonFramed, 0) | (ContentType::Framed, 1..) => {}
        (ContentType::NonFramed, _) => return Err(Error::parse("frame length", "must be 0 for a non-framed message")),
        (ContentType::Framed, 0) => return Err(Error::parse("frame length", "0 in a framed message")),
    }
    let commitment = match version {
        MessageFormatVersion::V1 => None,
        MessageFormatVersion::V2 => Some(cur.array::<32>("commitment (suite data)")?),
    };
    let body_len = cur.position();
    check_header_len(body_len + auth_len(version), limits)?;
    let header_iv = match version {
        MessageFormatVersion::V1 => cur.array::<12>("header authentication IV")?,
        MessageFormatVersion::V2 => [0u8; 12],
    };
    let auth_tag = cur.array::<16>("header authentication tag")?;
    Ok(ParsedHeader {
        header: MessageHeader {
            suite,
            message_id,
            encryption_context,
            encrypted_data_keys,
            content_type,
            frame_length,
            header_iv,
            commitment,
            auth_tag,
        },
        body_len,
        total_len: cur.position(),
    })
}

fn check_header_len(len: usize, limits: &HeaderLimits) -> Result<()> {
    if len > limits.max_header_len {
        return Err(Error::LimitExceeded {
            what: "message header length",
            value: len as u64,
            limit: limits.max_header_len as u64,
        });
    }
    Ok(())
}
