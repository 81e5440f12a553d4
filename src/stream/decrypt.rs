//! Streaming decryption: the I/O-free [`DecryptCore`] (message bytes in, verified plaintext
//! out, under the signed-message rules of [`SignedMessages`]) and the `std::io` adapter on it.

use std::io::{self, Read};

use zeroize::Zeroizing;

use super::{to_io, SignedMessages, Source};
use crate::client::Client;
use crate::cmm::MaterialsManager;
use crate::context::EncryptionContext;
use crate::decryptor::{Decryptor, Step};
use crate::error::{Error, Result};
use crate::format::header::MessageHeader;

/// What [`DecryptCore::step`] needs before it can make progress.
pub(crate) enum Need {
    /// Progress was made (or plaintext is ready): call again.
    Nothing,
    /// The input buffer, compacted by [`DecryptCore::input`], must hold at least this many bytes
    /// (or the input must end).
    Bytes(usize),
    /// The message is complete: the input must end here (one more read must return 0 bytes).
    EndOfInput,
}

/// The decrypting state shared by the `std::io` and `tokio::io` readers.
pub(crate) struct DecryptCore {
    decryptor: Decryptor,
    header: MessageHeader,
    encryption_context: EncryptionContext,
    unwrapped_edk: Option<usize>,
    mode: SignedMessages,
    signed: bool,
    max_held: usize,
    /// Input read and not yet consumed: `inbuf[inpos..]`.
    inbuf: Vec<u8>,
    inpos: usize,
    pub(crate) eof: bool,
    /// Plaintext verified as far as the mode requires, not yet returned: `ready[readypos..]`.
    ready: Zeroizing<Vec<u8>>,
    readypos: usize,
    /// Plaintext waiting for the signature.
    held: Zeroizing<Vec<u8>>,
    failed: Option<String>,
    finished: bool,
}

impl DecryptCore {
    /// Reads from `source` until the header parses, authenticates it and sets up the body.
    pub(crate) async fn open<S: Source>(
        client: &Client,
        cmm: &dyn MaterialsManager,
        source: &mut S,
        reproduced_encryption_context: Option<&EncryptionContext>,
        mode: SignedMessages,
    ) -> Result<Self> {
        // Read until the header parses, growing the read-ahead geometrically.
        let mut inbuf = Vec::new();
        let mut want = 4096usize;
        let mut eof = false;
        let (parsed, materials) = loop {
            let attempt = match source.fill(&mut inbuf, want, &mut eof).await {
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

    pub(crate) fn header(&self) -> &MessageHeader {
        &self.header
    }

    pub(crate) fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }

    pub(crate) fn unwrapped_edk(&self) -> Option<usize> {
        self.unwrapped_edk
    }

    pub(crate) fn is_verified(&self) -> bool {
        !self.signed || self.finished
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// The error of an earlier failure, again: after a failure the reader only fails.
    pub(crate) fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some(msg) => Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone())),
            None => Ok(()),
        }
    }

    /// Copies released plaintext into `buf`; 0 when none is ready.
    pub(crate) fn take_ready(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.ready.len() - self.readypos);
        buf[..n].copy_from_slice(&self.ready[self.readypos..self.readypos + n]);
        self.readypos += n;
        if self.readypos == self.ready.len() {
            self.ready.clear();
            self.readypos = 0;
        }
        n
    }

    /// Whether released plaintext is waiting.
    pub(crate) fn has_ready(&self) -> bool {
        self.readypos < self.ready.len()
    }

    /// The input buffer, compacted, for the adapter to append to.
    pub(crate) fn input(&mut self) -> &mut Vec<u8> {
        if self.inpos > 0 {
            self.inbuf.drain(..self.inpos);
            self.inpos = 0;
        }
        &mut self.inbuf
    }

    /// After [`Need::EndOfInput`]: the adapter read `extra` more bytes (0 = the input ended).
    pub(crate) fn end_of_input(&mut self, extra: usize) -> Result<()> {
        if extra > 0 {
            return self.fail(Error::TrailingData(extra));
        }
        self.eof = true;
        self.finished = true;
        Ok(())
    }

    /// Records a failure: everything not yet returned is discarded.
    pub(crate) fn fail(&mut self, e: Error) -> Result<()> {
        self.ready.clear();
        self.readypos = 0;
        self.held.clear();
        self.failed = Some(e.to_string());
        Err(e)
    }

    /// Advances the state machine by one frame (or the footer, or the trailing-data check).
    pub(crate) fn step(&mut self) -> Result<Need> {
        match self.advance() {
            Ok(need) => Ok(need),
            Err(e) => self.fail(e).map(|()| Need::Nothing),
        }
    }

    fn advance(&mut self) -> Result<Need> {
        if self.decryptor.is_done() {
            // Everything verified: release what was held, then insist on end of input.
            crate::wipe::extend_wiping(&mut self.ready, &self.held);
            self.held.clear();
            let extra = self.inbuf.len() - self.inpos;
            if extra > 0 {
                return Err(Error::TrailingData(extra));
            }
            if self.eof {
                self.finished = true;
                return Ok(Need::Nothing);
            }
            return Ok(Need::EndOfInput);
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
                Ok(Need::Bytes(n))
            }
            Step::Consumed { bytes, .. } => {
                self.inpos += bytes;
                if self.signed && !hold_all && in_body && self.decryptor.awaiting_footer() {
                    // The final frame (or non-framed body) of a signed message waits for the
                    // signature in every mode (`client-apis/decrypt.md`).
                    crate::wipe::extend_wiping(&mut self.held, &self.ready[before..]);
                    self.ready.truncate(before);
                }
                if self.held.len() > self.max_held {
                    return Err(Error::LimitExceeded {
                        what: "plaintext held back until the signature verifies",
                        value: self.held.len() as u64,
                        limit: self.max_held as u64,
                    });
                }
                Ok(Need::Nothing)
            }
        }
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
    core: DecryptCore,
}

impl<R: Read> DecryptingReader<R> {
    pub(crate) async fn open(
        client: &Client,
        cmm: &dyn MaterialsManager,
        inner: R,
        reproduced_encryption_context: Option<&EncryptionContext>,
        mode: SignedMessages,
    ) -> Result<Self> {
        let mut source = StdSource(inner);
        let core = DecryptCore::open(client, cmm, &mut source, reproduced_encryption_context, mode).await?;
        Ok(Self { inner: source.0, core })
    }

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

    /// Whether plaintext released so far is fully verified (always true for unsigned suites;
    /// for signed ones, true once end of stream has been returned).
    pub fn is_verified(&self) -> bool {
        self.core.is_verified()
    }

    fn pump(&mut self) -> Result<()> {
        match self.core.step()? {
            Need::Nothing => Ok(()),
            Need::Bytes(n) => {
                let mut eof = self.core.eof;
                let r = fill(&mut self.inner, self.core.input(), n, &mut eof);
                self.core.eof = eof;
                r.or_else(|e| self.core.fail(e))
            }
            Need::EndOfInput => {
                let mut probe = [0u8; 1];
                match read_retrying(&mut self.inner, &mut probe) {
                    Ok(n) => self.core.end_of_input(n),
                    Err(e) => self.core.fail(e.into()),
                }
            }
        }
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.core.check_failed()?;
        loop {
            if self.core.has_ready() {
                return Ok(self.core.take_ready(buf));
            }
            if self.core.is_finished() || buf.is_empty() {
                return Ok(0);
            }
            self.pump().map_err(to_io)?;
        }
    }
}

/// A `std::io::Read` as a [`Source`] for reading the header.
struct StdSource<R>(R);

impl<R: Read> Source for StdSource<R> {
    async fn fill(&mut self, buf: &mut Vec<u8>, want: usize, eof: &mut bool) -> Result<()> {
        fill(&mut self.0, buf, want, eof)
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

#[cfg(test)]
mod secret_types {
    use super::*;

    /// Released and held-back plaintext are wiped on drop: changing either field's type breaks
    /// this.
    #[allow(dead_code)]
    fn plaintext_buffers_are_wiped_on_drop(core: &DecryptCore) -> [&Zeroizing<Vec<u8>>; 2] {
        [&core.ready, &core.held]
    }
}
