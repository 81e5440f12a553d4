//! Streaming encryption: the I/O-free [`EncryptCore`] (plaintext in, framed message out, at most
//! one frame buffered) and the `std::io` adapter on it.

use std::io::{self, Write};

use zeroize::Zeroizing;

use super::to_io;
use crate::encryptor::Encryptor;
use crate::error::{Error, Result};
use crate::format::header::MessageHeader;

/// The encrypting state shared by the `std::io` and `tokio::io` writers: frames plaintext as it
/// arrives and appends ciphertext to `out`, which the adapter drains to its inner writer.
pub(crate) struct EncryptCore {
    encryptor: Encryptor,
    header: MessageHeader,
    /// Plaintext of the frame being filled (at most one frame length).
    pending: Zeroizing<Vec<u8>>,
    /// Ciphertext not yet written to the inner writer: `out[outpos..]`.
    pub(crate) out: Vec<u8>,
    pub(crate) outpos: usize,
    frame_len: usize,
    /// Declared plaintext length, if any, and what was accepted so far.
    limit: Option<u64>,
    written: u64,
    finished: bool,
}

impl EncryptCore {
    /// A core whose `out` already holds the serialized header.
    pub(crate) fn new(encryptor: Encryptor, header: MessageHeader, header_bytes: Vec<u8>, limit: Option<u64>) -> Self {
        let frame_len = encryptor.frame_len() as usize;
        Self {
            encryptor,
            header,
            pending: Zeroizing::new(Vec::with_capacity(frame_len.min(1 << 20))),
            out: header_bytes,
            outpos: 0,
            frame_len,
            limit,
            written: 0,
            finished: false,
        }
    }

    pub(crate) fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// Whether ciphertext is waiting to be written.
    pub(crate) fn has_output(&self) -> bool {
        self.outpos < self.out.len()
    }

    /// Marks `n` bytes of the pending output as written.
    pub(crate) fn consume_output(&mut self, n: usize) {
        self.outpos += n;
        if self.outpos == self.out.len() {
            self.out.clear();
            self.outpos = 0;
        }
    }

    /// Takes plaintext from `data` until one regular frame has been sealed into `out` (or all of
    /// `data` is pending); returns how many bytes it took. Call only when `out` is drained, so at
    /// most one frame of ciphertext is ever buffered.
    pub(crate) fn absorb(&mut self, data: &[u8]) -> Result<usize> {
        if self.finished {
            return Err(Error::Internal("plaintext written after the message was finished"));
        }
        if let Some(limit) = self.limit {
            if self.written + data.len() as u64 > limit {
                return Err(Error::LimitExceeded {
                    what: "plaintext written to a writer with a declared length",
                    value: self.written + data.len() as u64,
                    limit,
                });
            }
        }
        let f = self.frame_len;
        // A frame is sealed as regular only once a byte after it is known to exist; the last (up
        // to) one frame of plaintext waits in `pending` for `finish`.
        let taken = if self.pending.len() == f && !data.is_empty() {
            self.encryptor.regular_frame(&self.pending, &mut self.out)?;
            self.pending.clear();
            0
        } else if self.pending.is_empty() && data.len() > f {
            self.encryptor.regular_frame(&data[..f], &mut self.out)?;
            f
        } else {
            let take = (f - self.pending.len()).min(data.len());
            crate::wipe::extend_wiping(&mut self.pending, &data[..take]);
            take
        };
        self.written += taken as u64;
        Ok(taken)
    }

    /// Seals the final frame (and the footer of a signed suite) into `out`.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.encryptor.final_frame(&pending, &mut self.out)?;
        self.finished = true;
        Ok(())
    }
}

/// Encrypts everything written to it into one ESDK message written to `W`.
///
/// **Call [`Self::finish`]**: a writer dropped without it leaves a message with no final frame,
/// which every decryptor rejects as truncated.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    core: EncryptCore,
}

impl<W: Write> EncryptingWriter<W> {
    pub(crate) fn new(inner: W, core: EncryptCore) -> Self {
        Self { inner, core }
    }

    /// The header the message was started with.
    pub fn header(&self) -> &MessageHeader {
        self.core.header()
    }

    fn drain(&mut self) -> io::Result<()> {
        if self.core.has_output() {
            self.inner.write_all(&self.core.out[self.core.outpos..])?;
            let n = self.core.out.len() - self.core.outpos;
            self.core.consume_output(n);
        }
        Ok(())
    }

    /// Writes the final frame (and the footer of a signed suite), flushes, and returns the
    /// inner writer. Without this call the message is incomplete.
    pub fn finish(mut self) -> Result<W> {
        self.core.finish()?;
        self.drain()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < data.len() {
            self.drain()?;
            done += self.core.absorb(&data[done..]).map_err(to_io)?;
        }
        self.drain()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod secret_types {
    use super::*;

    /// The frame being filled, the final frame's plaintext included (`finish` takes it out as the
    /// same type), is wiped on drop: changing the field's type breaks this.
    #[allow(dead_code)]
    fn pending_plaintext_is_wiped_on_drop(core: &mut EncryptCore) -> Zeroizing<Vec<u8>> {
        std::mem::take(&mut core.pending)
    }
}
