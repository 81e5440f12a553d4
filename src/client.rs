//! One-shot encrypt and decrypt, and the client configuration they share
//! (spec `client-apis/client.md`, `client-apis/encrypt.md`, `client-apis/decrypt.md`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use zeroize::{Zeroize, Zeroizing};

use crate::cmm::{DecryptMaterialsRequest, EncryptionMaterialsRequest, MaterialsManager};
use crate::context::EncryptionContext;
use crate::crypto::Backend;
use crate::decryptor::{Decryptor, Step};
use crate::encryptor::Encryptor;
use crate::error::{Error, Result};
use crate::format::body::{self, MAX_NON_FRAMED_CONTENT_LEN};
use crate::format::header::{self, ContentType, HeaderLimits, MessageHeader, ParsedHeader};
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::policy::CommitmentPolicy;
use crate::suite::AlgorithmSuite;

/// Default frame length for encryption.
pub const DEFAULT_FRAME_LENGTH: u32 = 4096;

/// An immutable client configuration: commitment policy, suite, frame length, limits, backend.
///
/// ```
/// use esdk::{Client, CommitmentPolicy};
/// let client = Client::builder()
///     .commitment_policy(CommitmentPolicy::RequireEncryptRequireDecrypt)
///     .frame_length(64 * 1024)
///     .max_encrypted_data_keys(3)
///     .build()?;
/// # Ok::<(), esdk::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    policy: CommitmentPolicy,
    suite: Option<AlgorithmSuite>,
    frame_length: u32,
    header_limits: HeaderLimits,
    max_non_framed_body_len: u64,
    max_frame_len: u32,
    max_buffered_plaintext: usize,
    frame_threads: usize,
    frame_linger: Duration,
    backend: Backend,
}

/// Default bound on the non-framed body length, the frame length, and the plaintext a streaming
/// decryptor holds back until a signature verifies: 64 MiB each.
pub const DEFAULT_DECRYPT_BUFFER_LIMIT: usize = 64 << 20;

impl Default for Client {
    fn default() -> Self {
        Self {
            policy: CommitmentPolicy::default(),
            suite: None,
            frame_length: DEFAULT_FRAME_LENGTH,
            header_limits: HeaderLimits::default(),
            max_non_framed_body_len: DEFAULT_DECRYPT_BUFFER_LIMIT as u64,
            max_frame_len: DEFAULT_DECRYPT_BUFFER_LIMIT as u32,
            max_buffered_plaintext: DEFAULT_DECRYPT_BUFFER_LIMIT,
            frame_threads: 0,
            frame_linger: crate::parallel::DEFAULT_FRAME_LINGER,
            backend: Backend::default(),
        }
    }
}

/// Builds a [`Client`].
#[derive(Clone, Debug, Default)]
pub struct ClientBuilder {
    client: Client,
}

impl ClientBuilder {
    /// Commitment policy (default `RequireEncryptRequireDecrypt`).
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.client.policy = policy;
        self
    }

    /// Suite for encryption (default: the policy's default, 0x0578 for committing policies).
    pub fn suite(mut self, suite: AlgorithmSuite) -> Self {
        self.client.suite = Some(suite);
        self
    }

    /// Frame length for encryption, 1 to 2^32 - 1 (default 4096).
    pub fn frame_length(mut self, frame_length: u32) -> Self {
        self.client.frame_length = frame_length;
        self
    }

    /// Maximum number of encrypted data keys on encrypt and decrypt (default: no limit, as the
    /// spec says). Checked while parsing, before any key is unwrapped.
    pub fn max_encrypted_data_keys(mut self, max: u16) -> Self {
        self.client.header_limits.max_encrypted_data_keys = Some(max);
        self
    }

    /// Maximum header length accepted on decrypt (default 64 MiB: 65,535 EDKs of up to 1 KiB).
    pub fn max_header_len(mut self, max: usize) -> Self {
        self.client.header_limits.max_header_len = max;
        self
    }

    /// Maximum body length of a non-framed (legacy) message accepted on decrypt (default
    /// 64 MiB; at most the format's 2^36 - 32). A streaming decryptor must buffer such a body.
    pub fn max_non_framed_body_len(mut self, max: u64) -> Self {
        self.client.max_non_framed_body_len = max.min(MAX_NON_FRAMED_CONTENT_LEN);
        self
    }

    /// Maximum frame length accepted on decrypt (default 64 MiB). Streaming memory is bounded
    /// by this.
    pub fn max_frame_length(mut self, max: u32) -> Self {
        self.client.max_frame_len = max;
        self
    }

    /// Maximum plaintext a streaming decryptor holds back until a signed message's signature
    /// verifies (default 64 MiB). See [`crate::stream::SignedMessages`].
    pub fn max_buffered_plaintext(mut self, max: usize) -> Self {
        self.client.max_buffered_plaintext = max;
        self
    }

    /// Most threads a one-shot encrypt or decrypt of a framed message may use for its frames
    /// (default 0: the machine's parallelism; 1: always the calling thread). Messages under
    /// 256 KiB of plaintext always stay on the calling thread, and each extra thread gets at least
    /// 128 KiB. Helpers come from a pool of this crate's own and only for cores that no other
    /// caller's large message has used in the last few milliseconds, so as many workers as cores
    /// run at full speed. The output is the same bytes either way. Set 1 when the process keeps
    /// every core busy with other work: a helper that is preempted while holding frames makes the
    /// caller wait for it.
    pub fn frame_threads(mut self, threads: usize) -> Self {
        self.client.frame_threads = threads;
        self
    }

    /// How long the frame threads stay awake after a message that used them (default 100 µs;
    /// `Duration::ZERO`: they go back to sleep at once). Waking a sleeping thread costs tens of
    /// microseconds on a virtual machine, a third of the work of a 1 MiB message, so a stream of
    /// large messages is faster when the next one finds them awake. While they wait they yield
    /// the CPU to any other runnable thread, but the time counts as CPU use (and against a
    /// container's CPU quota).
    pub fn frame_linger(mut self, linger: Duration) -> Self {
        self.client.frame_linger = linger;
        self
    }

    /// Crypto backend (default `aws-lc-rs` when compiled in).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.client.backend = backend;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Client> {
        let c = self.client;
        if c.frame_length == 0 {
            return Err(Error::InvalidConfig("frame length must be between 1 and 4294967295".into()));
        }
        if c.frame_length > c.max_frame_len {
            return Err(Error::InvalidConfig(format!(
                "frame length {} is larger than this client's max_frame_length {} for decryption, so it could not \
                 decrypt its own messages: raise max_frame_length or use a smaller frame length",
                c.frame_length, c.max_frame_len
            )));
        }
        if c.header_limits.max_encrypted_data_keys == Some(0) {
            return Err(Error::InvalidConfig("max_encrypted_data_keys must be at least 1".into()));
        }
        if let Some(suite) = c.suite {
            c.policy.check_encrypt(suite)?;
        }
        Ok(c)
    }
}

/// The result of a successful decryption.
#[non_exhaustive]
pub struct Decrypted {
    /// The plaintext, zeroized when dropped (take it with `std::mem::take(&mut *d.plaintext)` to
    /// own it as a plain `Vec`, and the duty to wipe it with it).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The authenticated header.
    pub header: MessageHeader,
    /// The encryption context used: the stored pairs plus any required-only pairs supplied.
    pub encryption_context: EncryptionContext,
    /// Index (in `header.encrypted_data_keys()`) of the EDK that yielded the data key, when
    /// the keyring reported it (all keyrings of this crate do).
    pub unwrapped_edk: Option<usize>,
}

/// What [`Client::decrypt_into`] returns besides the plaintext it wrote.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MessageInfo {
    /// The authenticated header.
    pub header: MessageHeader,
    /// The encryption context used: the stored pairs plus any required-only pairs supplied.
    pub encryption_context: EncryptionContext,
    /// Index of the EDK that yielded the data key, when the keyring reported it.
    pub unwrapped_edk: Option<usize>,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("header", &self.header)
            .field("encryption_context", &self.encryption_context)
            .finish()
    }
}

impl Client {
    /// A client with the defaults: `RequireEncryptRequireDecrypt`, suite 0x0578, 4096-byte frames.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The commitment policy.
    pub fn commitment_policy(&self) -> CommitmentPolicy {
        self.policy
    }

    /// The crypto backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The header limits applied on decrypt.
    pub fn header_limits(&self) -> &HeaderLimits {
        &self.header_limits
    }

    /// Exact length of a message with `header` carrying `plaintext_len` bytes, as this crate
    /// writes it (signatures have a fixed length, so this holds for signed suites too). Uses the
    /// header's own content type and frame length.
    pub fn ciphertext_len(&self, header: &MessageHeader, plaintext_len: u64) -> u64 {
        let footer = header.suite().signature().map_or(0, |c| 2 + crate::crypto::signature_len::fixed_len(c) as u64);
        let body = match header.content_type() {
            ContentType::Framed => body::framed_body_len(plaintext_len, header.frame_length().max(1)),
            ContentType::NonFramed => (body::NON_FRAMED_OVERHEAD as u64).saturating_add(plaintext_len),
        };
        // Saturating: any u64 input gives an answer (u64::MAX meaning "larger than any limit").
        ((header.body_len() + header.auth_len()) as u64).saturating_add(body).saturating_add(footer)
    }

    /// The largest plaintext whose message under `header` fits in `ciphertext_budget` bytes, or
    /// `None` if not even an empty plaintext fits. The inverse of [`Self::ciphertext_len`].
    pub fn max_plaintext_len(&self, header: &MessageHeader, ciphertext_budget: u64) -> Option<u64> {
        let max = match header.content_type() {
            ContentType::Framed => u64::from(u32::MAX) * u64::from(header.frame_length().max(1)),
            ContentType::NonFramed => body::MAX_NON_FRAMED_CONTENT_LEN,
        };
        if self.ciphertext_len(header, 0) > ciphertext_budget {
            return None;
        }
        // ciphertext_len is monotone in the plaintext length: binary search.
        let (mut lo, mut hi) = (0u64, max);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.ciphertext_len(header, mid) <= ciphertext_budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(lo)
    }

    /// Encrypts `plaintext` into one ESDK message.
    pub async fn encrypt(
        &self,
        cmm: &dyn MaterialsManager,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        self.encrypt_bounded(cmm, plaintext, encryption_context, None).await
    }

    /// As [`Self::encrypt`], but refuses with [`Error::TooLargeAfterEncryption`] when the message
    /// plus `extra_len` bytes the caller counts beside it (e.g. a Kinesis partition key) would be
    /// longer than `limit`. The exact length is predicted from the header before any body is
    /// encrypted.
    pub async fn encrypt_with_limit(
        &self,
        cmm: &dyn MaterialsManager,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        limit: u64,
        extra_len: u64,
    ) -> Result<Vec<u8>> {
        self.encrypt_bounded(cmm, plaintext, encryption_context, Some((limit, extra_len))).await
    }

    /// As [`Self::encrypt`], writing the message into `out` (replacing its contents). Reusing one
    /// buffer across messages of similar size avoids an allocation and the zeroing of fresh
    /// memory per message. On error `out` is left empty.
    pub async fn encrypt_into(
        &self,
        cmm: &dyn MaterialsManager,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let r = self.encrypt_to(cmm, plaintext, encryption_context, None, out).await;
        if r.is_err() {
            out.clear();
        }
        r
    }

    async fn encrypt_bounded(
        &self,
        cmm: &dyn MaterialsManager,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        limit: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encrypt_to(cmm, plaintext, encryption_context, limit, &mut out).await?;
        Ok(out)
    }

    async fn encrypt_to(
        &self,
        cmm: &dyn MaterialsManager,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        limit: Option<(u64, u64)>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        // The frame bound is checked before any materials are asked for (no KMS call for a
        // message that cannot be written).
        if !crate::format::body::frames_fit(plaintext.len() as u64, self.frame_length) {
            return Err(Error::LimitExceeded {
                what: "plaintext length",
                value: plaintext.len() as u64,
                limit: u64::from(u32::MAX) * u64::from(self.frame_length),
            });
        }
        let materials = self.encryption_materials(cmm, encryption_context, Some(plaintext.len() as u64)).await?;
        let mut header_bytes = Vec::new();
        let (enc, header) = self.start_encryptor(materials, &mut header_bytes)?;
        let predicted = self.ciphertext_len(&header, plaintext.len() as u64);
        if let Some((limit, extra_len)) = limit.filter(|&(l, extra)| predicted.saturating_add(extra) > l) {
            return Err(Error::TooLargeAfterEncryption {
                plaintext_len: plaintext.len() as u64,
                predicted_len: predicted.saturating_add(extra_len),
                extra_len,
                limit,
                max_plaintext: limit.checked_sub(extra_len).and_then(|budget| self.max_plaintext_len(&header, budget)),
            });
        }
        let predicted = usize::try_from(predicted).map_err(|_| Error::LimitExceeded {
            what: "message length",
            value: predicted,
            limit: usize::MAX as u64,
        })?;
        // Exactly the predicted size: a fresh zeroed allocation (untouched pages for large
        // messages), or the caller's buffer reused as it is (every byte is overwritten below).
        size_for_overwrite(out, predicted);
        let header_len = header_bytes.len();
        out[..header_len].copy_from_slice(&header_bytes);
        let workers = self.frame_workers(plaintext.len());
        off_executor(plaintext.len(), || enc.seal_all(plaintext, &mut out[header_len..], workers))
    }

    /// The header a message of at most `max_plaintext_len` bytes (if known) would have under
    /// `encryption_context`, without encrypting anything: gets materials (a caching materials
    /// manager counts this as a use) and serializes the header. With [`Self::ciphertext_len`]
    /// and [`Self::max_plaintext_len`] it sizes messages before they are written, e.g. how much
    /// fits in a Kinesis record.
    pub async fn encryption_header(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        max_plaintext_len: Option<u64>,
    ) -> Result<MessageHeader> {
        let materials = self.encryption_materials(cmm, encryption_context, max_plaintext_len).await?;
        let mut header_bytes = Vec::new();
        let (_, header) = self.start_encryptor(materials, &mut header_bytes)?;
        Ok(header)
    }

    /// Validates the caller's context and suite, and gets encryption materials
    /// (`client-apis/encrypt.md`, "Get the encryption materials"). Shared by every encrypt path.
    pub(crate) async fn encryption_materials(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        plaintext_len: Option<u64>,
    ) -> Result<EncryptionMaterials> {
        encryption_context.check_no_reserved_keys()?;
        encryption_context.check_serializable()?;
        if let Some(suite) = self.suite {
            self.policy.check_encrypt(suite)?;
        }
        let mut request = EncryptionMaterialsRequest::new(encryption_context.clone(), self.policy);
        request.suite = self.suite;
        request.max_plaintext_length = plaintext_len;
        let materials = cmm.get_encryption_materials(request).await?;
        // `encrypt.md`: "the algorithm suite in the retrieved encryption materials MAY be
        // different from the input algorithm suite"; it MUST be allowed by the commitment policy.
        self.policy.check_encrypt(materials.suite())?;
        Ok(materials)
    }

    /// Writes the header for `materials` into `out` and returns the frame encryptor.
    pub(crate) fn start_encryptor(
        &self,
        materials: EncryptionMaterials,
        out: &mut Vec<u8>,
    ) -> Result<(Encryptor, MessageHeader)> {
        Encryptor::start(
            self.backend.provider(),
            materials,
            self.frame_length,
            self.header_limits.max_encrypted_data_keys,
            out,
        )
    }

    /// Verifies the header (commitment, authentication tag) and returns the body decryptor.
    /// `header_bytes` starts with the header as read.
    pub(crate) fn body_decryptor(
        &self,
        parsed: &ParsedHeader,
        header_bytes: &[u8],
        materials: DecryptionMaterials,
    ) -> Result<Decryptor> {
        Decryptor::new(
            self.backend.provider(),
            parsed,
            header_bytes,
            materials,
            self.max_non_framed_body_len,
            self.max_frame_len,
        )
    }

    /// Who seals or opens the frames of a one-shot message of `len` bytes.
    fn frame_workers(&self, len: usize) -> crate::parallel::Workers {
        crate::parallel::Workers::for_len(len, self.frame_threads, self.frame_linger)
    }

    /// The bound on plaintext held back for signature verification when streaming.
    pub(crate) fn max_buffered_plaintext(&self) -> usize {
        self.max_buffered_plaintext
    }

    /// Decrypts one complete ESDK message. `reproduced_encryption_context`, when given, must agree
    /// with the stored context on shared keys, and supplies required-only pairs.
    ///
    /// Bytes after the end of the message are an error.
    pub async fn decrypt(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
    ) -> Result<Decrypted> {
        self.decrypt_inner(cmm, ciphertext, reproduced_encryption_context, false).await
    }

    /// As [`Self::decrypt`], but refuses signed suites right after parsing the header
    /// (the spec's "decrypt unsigned" mode).
    pub async fn decrypt_unsigned_only(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
    ) -> Result<Decrypted> {
        self.decrypt_inner(cmm, ciphertext, reproduced_encryption_context, true).await
    }

    /// Parses the header, applies the policy and gets decryption materials
    /// (`client-apis/decrypt.md` steps 1-4). Shared by one-shot and streaming decryption.
    pub(crate) async fn open_header(
        &self,
        cmm: &dyn MaterialsManager,
        input: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
        unsigned_only: bool,
    ) -> Result<(ParsedHeader, DecryptionMaterials)> {
        let parsed = header::parse(input, &self.header_limits)?;
        let h = &parsed.header;
        self.policy.check_decrypt(h.suite)?;
        if unsigned_only && h.suite.is_signed() {
            return Err(Error::SignedNotAllowed(h.suite));
        }
        let request = DecryptMaterialsRequest::new(
            h.suite,
            self.policy,
            &h.encrypted_data_keys,
            &h.encryption_context,
            reproduced_encryption_context,
        );
        tracing::debug!(suite = %h.suite, edks = h.encrypted_data_keys.len(), "decrypting: header parsed");
        let materials = cmm.decrypt_materials(request).await?;
        self.policy.check_decrypt(materials.suite())?;
        Ok((parsed, materials))
    }

    async fn decrypt_inner(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
        unsigned_only: bool,
    ) -> Result<Decrypted> {
        let mut out = Zeroizing::new(Vec::new());
        let info = self.decrypt_to(cmm, ciphertext, reproduced_encryption_context, unsigned_only, &mut out).await?;
        Ok(Decrypted {
            plaintext: out,
            header: info.header,
            encryption_context: info.encryption_context,
            unwrapped_edk: info.unwrapped_edk,
        })
    }

    /// As [`Self::decrypt`], writing the plaintext into `out` (replacing its contents). Reusing
    /// one buffer across messages avoids an allocation and the zeroing of fresh memory per
    /// message. On error `out` is zeroized and left empty.
    pub async fn decrypt_into(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
        out: &mut Vec<u8>,
    ) -> Result<MessageInfo> {
        self.decrypt_to(cmm, ciphertext, reproduced_encryption_context, false, out).await
    }

    async fn decrypt_to(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
        unsigned_only: bool,
        out: &mut Vec<u8>,
    ) -> Result<MessageInfo> {
        let r = self.decrypt_body(cmm, ciphertext, reproduced_encryption_context, unsigned_only, out).await;
        if r.is_err() {
            out.zeroize();
        }
        r
    }

    async fn decrypt_body(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
        unsigned_only: bool,
        out: &mut Vec<u8>,
    ) -> Result<MessageInfo> {
        let (parsed, materials) =
            self.open_header(cmm, ciphertext, reproduced_encryption_context, unsigned_only).await?;
        let encryption_context = materials.encryption_context().clone();
        let unwrapped_edk = materials.unwrapped_edk();
        let mut dec = self.body_decryptor(&parsed, ciphertext, materials)?;
        let mut pos = parsed.total_len;
        if parsed.header.content_type() == ContentType::Framed {
            let body = &ciphertext[pos..];
            let workers = self.frame_workers(body.len());
            pos += off_executor(body.len(), || dec.open_all(body, workers, out))?;
        } else {
            out.zeroize();
            while !dec.is_done() {
                match dec.step(&ciphertext[pos..], out)? {
                    Step::Need(_) => return Err(Error::Truncated { what: dec.expecting() }),
                    Step::Consumed { bytes, .. } => pos += bytes,
                }
            }
        }
        if pos != ciphertext.len() {
            return Err(Error::TrailingData(ciphertext.len() - pos));
        }
        Ok(MessageInfo { header: parsed.header, encryption_context, unwrapped_edk })
    }

    /// [`Self::encrypt`] for synchronous callers: runs on the calling thread (KMS keyrings on
    /// `AwsSdkKmsClient` use a background runtime of this crate). Fails at once with
    /// [`Error::BlockingInAsyncContext`] when called inside a Tokio runtime: use the async method
    /// there.
    pub fn encrypt_blocking(
        &self,
        cmm: &dyn MaterialsManager,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        block_on("Client::encrypt_blocking", "Client::encrypt", self.encrypt(cmm, plaintext, encryption_context))
    }

    /// [`Self::encrypt_into`] for synchronous callers; see [`Self::encrypt_blocking`].
    pub fn encrypt_into_blocking(
        &self,
        cmm: &dyn MaterialsManager,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        block_on(
            "Client::encrypt_into_blocking",
            "Client::encrypt_into",
            self.encrypt_into(cmm, plaintext, encryption_context, out),
        )
    }

    /// [`Self::decrypt_into`] for synchronous callers; see [`Self::encrypt_blocking`].
    pub fn decrypt_into_blocking(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
        out: &mut Vec<u8>,
    ) -> Result<MessageInfo> {
        block_on(
            "Client::decrypt_into_blocking",
            "Client::decrypt_into",
            self.decrypt_into(cmm, ciphertext, reproduced_encryption_context, out),
        )
    }

    /// [`Self::decrypt`] for synchronous callers; see [`Self::encrypt_blocking`].
    pub fn decrypt_blocking(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
    ) -> Result<Decrypted> {
        block_on(
            "Client::decrypt_blocking",
            "Client::decrypt",
            self.decrypt(cmm, ciphertext, reproduced_encryption_context),
        )
    }

    /// [`Self::decrypt_unsigned_only`] for synchronous callers.
    pub fn decrypt_unsigned_only_blocking(
        &self,
        cmm: &dyn MaterialsManager,
        ciphertext: &[u8],
        reproduced_encryption_context: Option<&EncryptionContext>,
    ) -> Result<Decrypted> {
        block_on(
            "Client::decrypt_unsigned_only_blocking",
            "Client::decrypt_unsigned_only",
            self.decrypt_unsigned_only(cmm, ciphertext, reproduced_encryption_context),
        )
    }
}

/// Makes `out` exactly `len` bytes long for a caller that overwrites every byte: a fresh zeroed
/// allocation when it has no capacity (untouched pages for large sizes), otherwise the existing
/// buffer, zero-extended or truncated, so a reused buffer costs no zeroing pass.
pub(crate) fn size_for_overwrite(out: &mut Vec<u8>, len: usize) {
    if out.capacity() == 0 {
        *out = vec![0u8; len];
    } else if out.len() < len {
        // A reused buffer may hold an earlier message's plaintext: grow it without a stale copy.
        crate::wipe::resize_wiping(out, len);
    } else {
        out.truncate(len);
    }
}

/// Messages at least this long do their frame work off the executor's threads (feature `tokio`).
pub const OFF_EXECUTOR_MIN_LEN: usize = 1 << 20;

/// Runs the CPU work of a one-shot message of `len` bytes. With feature `tokio`, on a worker of
/// a multi-thread Tokio runtime and for messages of [`OFF_EXECUTOR_MIN_LEN`] or more, inside
/// `tokio::task::block_in_place`: the worker hands its other tasks to another worker first, so
/// they are not stalled for the milliseconds a large message takes. On a current-thread runtime
/// there is no other worker to hand tasks to: run large messages from `spawn_blocking` there.
fn off_executor<T>(len: usize, work: impl FnOnce() -> T) -> T {
    #[cfg(feature = "tokio")]
    if len >= OFF_EXECUTOR_MIN_LEN {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            return tokio::task::block_in_place(work);
        }
    }
    let _ = len;
    work()
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives a future of this crate to completion on the calling thread, for the `_blocking`
/// methods; parks between polls.
///
/// Refused on a thread inside a Tokio runtime (detectable when this crate is built with `kms` or
/// `tokio`): blocking there can wait forever for I/O that the blocked runtime would have to drive
/// (a current-thread runtime, or KMS calls). Raw keyrings and cached materials never wait; KMS
/// keyrings on [`AwsSdkKmsClient`] run their calls on a background runtime of this crate when
/// the calling thread has none.
///
/// [`AwsSdkKmsClient`]: crate::keyring::kms::AwsSdkKmsClient
pub(crate) fn block_on<T>(
    call: &'static str,
    call_async: &'static str,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    if inside_async_runtime() {
        return Err(Error::BlockingInAsyncContext { call, call_async });
    }
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Whether the calling thread runs inside a Tokio runtime.
fn inside_async_runtime() -> bool {
    #[cfg(any(feature = "kms", feature = "tokio"))]
    {
        tokio::runtime::Handle::try_current().is_ok()
    }
    #[cfg(not(any(feature = "kms", feature = "tokio")))]
    {
        false
    }
}
