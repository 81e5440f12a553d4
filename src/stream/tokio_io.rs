//! `tokio::io` adapters (feature `tokio`) on the same I/O-free cores as the `std::io` ones: the
//! same frames, the same memory bound (one frame buffered each way), the same signed-message
//! rules and errors.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::decrypt::{DecryptCore, Need};
use super::encrypt::EncryptCore;
use super::{to_io, SignedMessages, Source};
use crate::client::Client;
use crate::cmm::MaterialsManager;
use crate::context::EncryptionContext;
use crate::error::{Error, Result};
use crate::format::header::MessageHeader;

/// Encrypts everything written to it into one ESDK message written to the `AsyncWrite` `W`.
///
/// **Finish the message** with [`Self::finish`] (returns `W`) or `shutdown().await` (also shuts
/// `W` down): a writer dropped without either leaves a message with no final frame, which every
/// decryptor rejects as truncated. Each `poll_write` takes at most one frame of plaintext, so at
/// most one frame of ciphertext is ever buffered.
pub struct TokioEncryptingWriter<W> {
    inner: W,
    core: EncryptCore,
}

impl<W: AsyncWrite + Unpin> TokioEncryptingWriter<W> {
    /// The header the message was started with.
    pub fn header(&self) -> &MessageHeader {
        self.core.header()
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, e.g. after `shutdown().await` finished the message. Ciphertext not yet
    /// written to it is lost.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Writes the final frame (and the footer of a signed suite), flushes, and returns the inner
    /// writer (not shut down).
    pub async fn finish(mut self) -> Result<W> {
        self.core.finish()?;
        poll_fn(|cx| self.poll_drain(cx)).await?;
        poll_fn(|cx| Pin::new(&mut self.inner).poll_flush(cx)).await?;
        Ok(self.inner)
    }

    /// Writes buffered ciphertext to the inner writer until none is left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.core.has_output() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.core.out[self.core.outpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.core.consume_output(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TokioEncryptingWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // The core takes nothing only when it sealed its pending frame: write that frame out
        // first, then it takes at least one byte. At most one frame is ever buffered.
        loop {
            ready!(this.poll_drain(cx))?;
            let taken = this.core.absorb(data).map_err(to_io)?;
            if taken > 0 {
                return Poll::Ready(Ok(taken));
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Finishes the message (final frame, footer), flushes and shuts the inner writer down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.core.finish().map_err(to_io)?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Decrypts one ESDK message read from the `AsyncRead` `R`; see
/// [`DecryptingReader`](super::DecryptingReader) for what it releases and when.
pub struct TokioDecryptingReader<R> {
    inner: R,
    core: DecryptCore,
}

impl<R: AsyncRead + Unpin> TokioDecryptingReader<R> {
    /// The authenticated header.
    pub fn header(&self) -> &MessageHeader {
        self.core.header()
    }

    /// The encryption context (stored pairs plus required-only pairs supplied).
    pub fn encryption_context(&self) -> &EncryptionContext {
        self.core.encryption_context()
    }

    /// Index of the EDK that yielded the data key, when the keyring reported it.
    pub fn unwrapped_edk(&self) -> Option<usize> {
        self.core.unwrapped_edk()
    }

    /// Whether plaintext released so far is fully verified.
    pub fn is_verified(&self) -> bool {
        self.core.is_verified()
    }

    /// One step of the core, reading what it needs.
    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self.core.step()? {
            Need::Nothing => Poll::Ready(Ok(())),
            Need::Bytes(want) => {
                while !self.core.eof {
                    let input = self.core.input();
                    if input.len() >= want {
                        break;
                    }
                    let mut eof = false;
                    let r = ready!(poll_append(&mut self.inner, cx, input, want, &mut eof));
                    self.core.eof = eof;
                    if let Err(e) = r {
                        return Poll::Ready(self.core.fail(e.into()));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Need::EndOfInput => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                match ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                    Ok(()) => Poll::Ready(self.core.end_of_input(buf.filled().len())),
                    Err(e) => Poll::Ready(self.core.fail(e.into())),
                }
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TokioDecryptingReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.core.check_failed()?;
        loop {
            if this.core.has_ready() {
                let n = this.core.take_ready(buf.initialize_unfilled());
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.core.is_finished() || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_pump(cx)).map_err(to_io)?;
        }
    }
}

/// Appends one read of at most 16 KiB (and at most up to `want` bytes in all) to `buf`; sets
/// `eof` when the reader returns 0 bytes.
fn poll_append<R: AsyncRead + Unpin>(
    r: &mut R,
    cx: &mut Context<'_>,
    buf: &mut Vec<u8>,
    want: usize,
    eof: &mut bool,
) -> Poll<io::Result<()>> {
    let mut chunk = [0u8; 16 * 1024];
    let max = (want - buf.len()).min(chunk.len());
    let mut rb = ReadBuf::new(&mut chunk[..max]);
    ready!(Pin::new(r).poll_read(cx, &mut rb))?;
    if rb.filled().is_empty() {
        *eof = true;
    }
    buf.extend_from_slice(rb.filled());
    Poll::Ready(Ok(()))
}

/// A `tokio::io::AsyncRead` as a [`Source`] for reading the header.
struct TokioSource<R>(R);

impl<R: AsyncRead + Unpin> Source for TokioSource<R> {
    async fn fill(&mut self, buf: &mut Vec<u8>, want: usize, eof: &mut bool) -> Result<()> {
        while buf.len() < want && !*eof {
            poll_fn(|cx| poll_append(&mut self.0, cx, buf, want, eof)).await.map_err(Error::from)?;
        }
        Ok(())
    }
}

impl Client {
    /// Starts an encrypted message on the `AsyncWrite` `inner`: gets materials and returns a
    /// writer that frames what is written to it (the header goes out with the first write or
    /// flush).
    pub async fn tokio_encrypting_writer<W: AsyncWrite + Unpin>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        inner: W,
    ) -> Result<TokioEncryptingWriter<W>> {
        Ok(TokioEncryptingWriter { inner, core: self.encrypt_core(cmm, encryption_context, None).await? })
    }

    /// As [`Self::tokio_encrypting_writer`] for a plaintext of at most `plaintext_len` bytes
    /// (writing more is an error). Knowing the length lets a caching materials manager reuse
    /// materials.
    pub async fn tokio_encrypting_writer_sized<W: AsyncWrite + Unpin>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        plaintext_len: u64,
        inner: W,
    ) -> Result<TokioEncryptingWriter<W>> {
        let core = self.encrypt_core(cmm, encryption_context, Some(plaintext_len)).await?;
        Ok(TokioEncryptingWriter { inner, core })
    }

    /// Reads and authenticates the header from the `AsyncRead` `inner` and returns a reader of
    /// the plaintext.
    pub async fn tokio_decrypting_reader<R: AsyncRead + Unpin>(
        &self,
        cmm: &dyn MaterialsManager,
        inner: R,
        reproduced_encryption_context: Option<&EncryptionContext>,
        signed_messages: SignedMessages,
    ) -> Result<TokioDecryptingReader<R>> {
        let mut source = TokioSource(inner);
        let core = DecryptCore::open(self, cmm, &mut source, reproduced_encryption_context, signed_messages).await?;
        Ok(TokioDecryptingReader { inner: source.0, core })
    }
}
