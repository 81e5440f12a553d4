//! Streaming encryption and decryption over `std::io` (spec `client-apis/streaming.md`), on the
//! same frame state machines as the one-shot path. Memory is bounded by the frame length.
//!
//! * [`EncryptingWriter`]: plaintext in, message out. Call [`EncryptingWriter::finish`]; a writer
//!   dropped without it leaves a message with no final frame, which every decryptor rejects as
//!   truncated.
//! * [`DecryptingReader`]: message in, plaintext out. What it releases depends on
//!   [`SignedMessages`]: by default nothing of a signed message is released before its signature
//!   verifies (the plaintext is held, up to a configured bound).

use std::io::{self, Read, Write};

use zeroize::Zeroizing;

use crate::client::{block_on, Client};
use crate::cmm::MaterialsManager;
use crate::context::EncryptionContext;
use crate::decryptor::{Decryptor, Step};
use crate::encryptor::Encryptor;
use crate::error::{Error, Result};
use crate::format::header::MessageHeader;

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

/// Encrypts everything written to it into one ESDK message written to `W`.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    encryptor: Encryptor,
    header: MessageHeader,
    /// Plaintext of the frame being filled (at most one frame length).
    pending: Zeroizing<Vec<u8>>,
    /// Ciphertext scratch, reused for every frame.
    out: Vec<u8>,
    frame_len: usize,
    /// Declared plaintext length, if any, and what was written so far.
    limit: Option<u64>,
    written: u64,
}

impl<W: Write> EncryptingWriter<W> {
    /// The header the message was started with.
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    fn flush_out(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn regular_frame(&mut self, plaintext: Option<&[u8]>) -> io::Result<()> {
        let res = match plaintext {
            Some(p) => self.encryptor.regular_frame(p, &mut self.out),
            None => self.encryptor.regular_frame(&self.pending, &mut self.out),
        };
        res.map_err(to_io)?;
        self.flush_out()
    }

    /// Writes the final frame (and the footer of a signed suite), flushes, and returns the
    /// inner writer. Without this call the message is incomplete.
    pub fn finish(mut self) -> Result<W> {
        let pending = std::mem::take(&mut *self.pending);
        self.encryptor.final_frame(&pending, &mut self.out)?;
        self.flush_out()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let written = data.len();
        if let Some(limit) = self.limit {
            if self.written + written as u64 > limit {
                return Err(to_io(Error::LimitExceeded {
                    what: "plaintext written to a writer with a declared length",
                    value: self.written + written as u64,
                    limit,
                }));
            }
        }
        self.written += written as u64;
        let f = self.frame_len;
        // A frame is written as regular only once a byte after it is known to exist; the last
        // (up to) one frame of plaintext waits in `pending` for `finish`.
        while !data.is_empty() {
            if self.pending.len() == f {
                self.regular_frame(None)?;
                self.pending.clear();
            }
            if self.pending.is_empty() {
                while data.len() > f {
                    self.regular_frame(Some(&data[..f]))?;
                    data = &data[f..];
                }
            }
            let take = (f - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts one ESDK message read from `R`.
///
/// The header is read and authenticated when the reader is created; [`Self::header`] and
/// [`Self::encryption_context`] are available from then on. Reads fail with an
/// [`io::ErrorKind::InvalidData`] error wrapping the crate's [`Error`] (get it back with
/// `Error::from(io_error)`); after a failure the reader only returns that failure again.
pub struct DecryptingReader<R: Read> {
    inner: R,
    decryptor: Decryptor,
    header: MessageHeader,
    encryption_context: EncryptionContext,
    unwrapped_edk: Option<usize>,
    mode: SignedMessages,
    signed: bool,
    max_held: usize,
    /// Input read from `inner` and not yet consumed: `inbuf[inpos..]`.
    inbuf: Vec<u8>,
    inpos: usize,
    eof: bool,
    /// Plaintext verified as far as the mode requires, not yet returned: `ready[readypos..]`.
    ready: Zeroizing<Vec<u8>>,
    readypos: usize,
    /// Plaintext waiting for the signature.
    held: Zeroizing<Vec<u8>>,
    failed: Option<String>,
    finished: bool,
}

impl<R: Read> DecryptingReader<R> {
    pub(crate) async fn open(
        client: &Client,
        cmm: &dyn MaterialsManager,
        mut inner: R,
        reproduced_encryption_context: Option<&EncryptionContext>,
        mode: SignedMessages,
    ) -> Result<Self> {
        // Read until the header parses, growing the read-ahead geometrically.
        let mut inbuf = Vec::new();
        let mut want = 4096usize;
        let mut eof = false;
        let (parsed, materials) = loop {
            let attempt = match fill(&mut inner, &mut inbuf, want, &mut eof) {
                Ok(()) => {
                    client.open_header(cmm, &inbuf, reproduced_encryption_context, mode == SignedMessages::Refuse).await
                }
                Err(e) => Err(e),
            };
            match attempt {
                Err(Error::Truncated { .. }) if !eof => {
                    let limit = client.header_limits().max_header_len.saturating_add(4096);
                    if want >= limit {
                        return Err(Error::LimitExceeded {
                            what: "message header length",
                            value: inbuf.len() as u64,
                            limit: client.header_limits().max_header_len as u64,
                        });
                    }
                    want = want.saturating_mul(2).min(limit);
                }
                other => break other?,
            }
        };
        let encryption_context = materials.encryption_context().clone();
        let unwrapped_edk = materials.unwrapped_edk();
        let decryptor = client.body_decryptor(&parsed, &inbuf, materials)?;
        let signed = parsed.header.suite().is_signed();
        Ok(Self {
            inner,
            decryptor,
            header: parsed.header,
            encryption_context,
            unwrapped_edk,
            mode,
            signed,
            max_held: client.max_buffered_plaintext(),
            inpos: parsed.total_len,
            inbuf,
            eof,
            ready: Zeroizing::new(Vec::new()),
            readypos: 0,
            held: Zeroizing::new(Vec::new()),
            failed: None,
            finished: false,
        })
    }

    /// The authenticated header.
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// The encryption context (stored pairs plus required-only pairs supplied).
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }

    /// Index of the EDK that yielded the data key, when the keyring reported it.
    pub fn unwrapped_edk(&self) -> Option<usize> {
        self.unwrapped_edk
    }

    /// Whether plaintext released so far is fully verified (always true for unsigned suites;
    /// for signed ones, true once end of stream has been returned).
    pub fn is_verified(&self) -> bool {
        !self.signed || self.finished
    }

    /// Advances the state machine by one frame (or the footer, or the trailing-data check).
    fn advance(&mut self) -> Result<()> {
        if self.decryptor.is_done() {
            // Everything verified: release what was held, then insist on end of input.
            self.ready.extend_from_slice(&self.held);
            self.held.clear();
            let extra = self.inbuf.len() - self.inpos;
            if extra > 0 {
                return Err(Error::TrailingData(extra));
            }
            let mut probe = [0u8; 1];
            let n = read_retrying(&mut self.inner, &mut probe)?;
            if n > 0 {
                return Err(Error::TrailingData(n));
            }
            self.finished = true;
            return Ok(());
        }
        let hold_all = self.signed && self.mode == SignedMessages::VerifyBeforeRelease;
        let in_body = !self.decryptor.awaiting_footer();
        let target = if hold_all { &mut self.held } else { &mut self.ready };
        let before = target.len();
        match self.decryptor.step(&self.inbuf[self.inpos..], target)? {
            Step::Need(n) => {
                if self.eof {
                    return Err(Error::Truncated { what: self.decryptor.expecting() });
                }
                // Compact, then read until `n` bytes are buffered or the input ends.
                self.inbuf.drain(..self.inpos);
                self.inpos = 0;
                fill(&mut self.inner, &mut self.inbuf, n, &mut self.eof)?;
            }
            Step::Consumed { bytes, .. } => {
                self.inpos += bytes;
                if self.signed && !hold_all && in_body && self.decryptor.awaiting_footer() {
                    // The final frame (or non-framed body) of a signed message waits for the
                    // signature in every mode (`client-apis/decrypt.md`).
                    self.held.extend_from_slice(&self.ready[before..]);
                    self.ready.truncate(before);
                }
                if self.held.len() > self.max_held {
                    return Err(Error::LimitExceeded {
                        what: "plaintext held back until the signature verifies",
                        value: self.held.len() as u64,
                        limit: self.max_held as u64,
                    });
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(msg) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone()));
        }
        loop {
            if self.readypos < self.ready.len() {
                let n = buf.len().min(self.ready.len() - self.readypos);
                buf[..n].copy_from_slice(&self.ready[self.readypos..self.readypos + n]);
                self.readypos += n;
                if self.readypos == self.ready.len() {
                    self.ready.clear();
                    self.readypos = 0;
                }
                return Ok(n);
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            if let Err(e) = self.advance() {
                self.ready.clear();
                self.held.clear();
                self.failed = Some(e.to_string());
                return Err(to_io(e));
            }
        }
    }
}

/// Reads from `r` into `buf` until it holds `want` bytes or `r` ends.
fn fill(r: &mut impl Read, buf: &mut Vec<u8>, want: usize, eof: &mut bool) -> Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < want && !*eof {
        let n = read_retrying(r, &mut chunk[..(want - buf.len()).min(16 * 1024)])?;
        if n == 0 {
            *eof = true;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
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
        block_on(self.start_writer(cmm, encryption_context, Some(plaintext_len), inner))
    }

    async fn start_writer<W: Write>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        limit: Option<u64>,
        mut inner: W,
    ) -> Result<EncryptingWriter<W>> {
        let materials = self.encryption_materials(cmm, encryption_context, limit).await?;
        let mut out = Vec::new();
        let (encryptor, header) = self.start_encryptor(materials, &mut out)?;
        inner.write_all(&out)?;
        out.clear();
        let frame_len = encryptor.frame_len() as usize;
        Ok(EncryptingWriter {
            inner,
            encryptor,
            header,
            pending: Zeroizing::new(Vec::with_capacity(frame_len.min(1 << 20))),
            out,
            frame_len,
            limit,
            written: 0,
        })
    }

    /// [`Self::encrypting_writer`] for synchronous callers.
    pub fn encrypting_writer_blocking<W: Write>(
        &self,
        cmm: &dyn MaterialsManager,
        encryption_context: &EncryptionContext,
        inner: W,
    ) -> Result<EncryptingWriter<W>> {
        block_on(self.encrypting_writer(cmm, encryption_context, inner))
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
        block_on(self.decrypting_reader(cmm, inner, reproduced_encryption_context, signed_messages))
    }
}
