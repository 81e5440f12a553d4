//! Streaming encryption and decryption (spec `client-apis/streaming.md`) over `std::io` and,
//! with feature `tokio`, over `tokio::io`: the same I/O-free frame cores behind both, on the same
//! frame state machines as the one-shot path. Memory is bounded by the frame length.
//!
//! * [`EncryptingWriter`] (and `TokioEncryptingWriter`): plaintext in, message out. **Call
//!   `finish`** (tokio: `finish().await` or `shutdown().await`); a writer dropped without it leaves
//!   a message with no final frame, which every decryptor rejects as truncated.
//! * [`DecryptingReader`] (and `TokioDecryptingReader`): message in, plaintext out. What it
//!   releases depends on [`SignedMessages`]: by default nothing of a signed message is released
//!   before its signature verifies (the plaintext is held, up to a configured bound).

mod decrypt;
mod encrypt;
#[cfg(feature = "tokio")]
mod tokio_io;

use std::future::Future;
use std::io::{self, Read, Write};

pub use decrypt::DecryptingReader;
pub use encrypt::EncryptingWriter;
#[cfg(feature = "tokio")]
pub use tokio_io::{TokioDecryptingReader, TokioEncryptingWriter};

use crate::client::{block_on, Client};
use crate::cmm::MaterialsManager;
use crate::context::EncryptionContext;
use crate::error::{Error, Result};
use encrypt::EncryptCore;

/// What a [`DecryptingReader`] does with messages of signed suites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignedMessages {
    /// Hold every byte of plaintext until the footer signature verifies (default). The held
    /// plaintext is bounded by `Client::max_buffered_plaintext`; larger signed messages fail
    /// with a limit error.
    #[default]
    VerifyBeforeRelease,
    /// Refuse signed suites right after the header (the spec's "decrypt unsigned" mode).
    Refuse,
    /// **Danger:** release each regular frame as soon as its tag verifies, before the signature
    /// is checked; only the final frame waits for the signature. Plaintext released this way is
    /// not signature-verified until the reader returns end of stream: a later error means the
    /// caller must discard and roll back everything already read.
    DangerReleaseFramesBeforeSignature,
}

/// Where the header of a message comes from: reads into `buf` until it holds `want` bytes or the
/// input ends (setting `eof`).
pub(crate) trait Source {
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize, eof: &mut bool) -> impl Future<Output = Result<()>>;
}

fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(io) => io,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl Client {
    /// Starts an encrypted message on `inner`: gets materials, writes the header, and returns a
    /// writer that frames what is written to it.
    pub async fn encrypting_writer<W: Write>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        inner: W,
    ) -> Result<EncryptingWriter<W>> {
        self.start_writer(cmm, encryption_context, None, inner).await
    }

    /// As [`Self::encrypting_writer`] for a plaintext of at most `plaintext_len` bytes (writing
    /// more is an error). Knowing the length lets a caching materials manager reuse materials.
    pub async fn encrypting_writer_sized<W: Write>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        plaintext_len: u64,
        inner: W,
    ) -> Result<EncryptingWriter<W>> {
        self.start_writer(cmm, encryption_context, Some(plaintext_len), inner).await
    }

    /// [`Self::encrypting_writer_sized`] for synchronous callers.
    pub fn encrypting_writer_sized_blocking<W: Write>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        plaintext_len: u64,
        inner: W,
    ) -> Result<EncryptingWriter<W>> {
        block_on(
            "Client::encrypting_writer_sized_blocking",
            "Client::encrypting_writer_sized",
            self.start_writer(cmm, encryption_context, Some(plaintext_len), inner),
        )
    }

    async fn start_writer<W: Write>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        limit: Option<u64>,
        mut inner: W,
    ) -> Result<EncryptingWriter<W>> {
        let mut core = self.encrypt_core(cmm, encryption_context, limit).await?;
        inner.write_all(&core.out)?;
        let n = core.out.len();
        core.consume_output(n);
        Ok(EncryptingWriter::new(inner, core))
    }

    /// Gets materials and starts a message whose header waits in the core's output.
    pub(crate) async fn encrypt_core(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        limit: Option<u64>,
    ) -> Result<EncryptCore> {
        let materials = self.encryption_materials(cmm, encryption_context, limit).await?;
        let mut header_bytes = Vec::new();
        let (encryptor, header) = self.start_encryptor(materials, &mut header_bytes)?;
        Ok(EncryptCore::new(encryptor, header, header_bytes, limit))
    }

    /// [`Self::encrypting_writer`] for synchronous callers.
    pub fn encrypting_writer_blocking<W: Write>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        inner: W,
    ) -> Result<EncryptingWriter<W>> {
        block_on(
            "Client::encrypting_writer_blocking",
            "Client::encrypting_writer",
            self.encrypting_writer(cmm, encryption_context, inner),
        )
    }

    /// Reads and authenticates the header from `inner` and returns a reader of the plaintext.
    pub async fn decrypting_reader<R: Read>(
        &self,
        cmm: &dyn MaterialsManager,
        inner: R,
        reproduced_encryption_context: Option<&EncryptionContext>,
        signed_messages: SignedMessages,
    ) -> Result<DecryptingReader<R>> {
        DecryptingReader::open(self, cmm, inner, reproduced_encryption_context, signed_messages).await
    }

    /// [`Self::decrypting_reader`] for synchronous callers.
    pub fn decrypting_reader_blocking<R: Read>(
        &self,
        cmm: &dyn MaterialsManager,
        inner: R,
        reproduced_encryption_context: Option<&EncryptionContext>,
        signed_messages: SignedMessages,
    ) -> Result<DecryptingReader<R>> {
        block_on(
            "Client::decrypting_reader_blocking",
            "Client::decrypting_reader",
            self.decrypting_reader(cmm, inner, reproduced_encryption_context, signed_messages),
        )
    }
}
