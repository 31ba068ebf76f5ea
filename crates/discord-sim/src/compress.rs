//! Gateway transport compression: `zstd-stream` and `zlib-stream`, one stream per connection,
//! flushed after every message, as Discord does.

use flate2::{Compress, Compression, FlushCompress};
use zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush;
use zstd_safe::{CCtx, InBuffer, OutBuffer};

/// The compression a client asked for with `compress=` in the gateway URL.
pub(crate) enum Compressor {
    None,
    Zstd(Box<CCtx<'static>>),
    Zlib(Box<Compress>),
}

impl Compressor {
    /// `None` when the client asked for a compression Discord does not offer.
    pub(crate) fn for_query(compress: Option<&str>) -> Option<Self> {
        match compress {
            None => Some(Self::None),
            Some("zstd-stream") => {
                let mut context = CCtx::create();
                // The fastest level: the simulator must never be the bottleneck it measures.
                let _ = context.set_parameter(zstd_safe::CParameter::CompressionLevel(1));
                Some(Self::Zstd(Box::new(context)))
            }
            Some("zlib-stream") => Some(Self::Zlib(Box::new(Compress::new(
                Compression::fast(),
                true,
            )))),
            Some(_) => None,
        }
    }

    /// The bytes to send for `text`; `None` means send it as a text frame.
    pub(crate) fn compress(&mut self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::None => None,
            Self::Zstd(context) => {
                let mut output = Vec::with_capacity(text.len() / 2 + 64);
                let mut input = InBuffer::around(text.as_bytes());
                loop {
                    output.reserve(1024);
                    let position = output.len();
                    // Writes after `position` and sets the vector's length to what it wrote.
                    let mut out = OutBuffer::around_pos(&mut output, position);
                    let flushed = context.compress_stream2(&mut out, &mut input, ZSTD_e_flush);
                    match flushed {
                        Ok(0) if input.pos == text.len() => break,
                        Ok(_) => {}
                        // Out of memory inside zstd: nothing sensible is left to send.
                        Err(_) => return Some(Vec::new()),
                    }
                }
                Some(output)
            }
            Self::Zlib(compress) => {
                let mut output = Vec::with_capacity(text.len() / 2 + 64);
                let mut consumed = 0;
                loop {
                    output.reserve(1024);
                    let before = compress.total_in();
                    let _ = compress.compress_vec(
                        &text.as_bytes()[consumed..],
                        &mut output,
                        FlushCompress::Sync,
                    );
                    consumed += usize::try_from(compress.total_in() - before).unwrap_or(0);
                    // Done once everything is consumed and the sync marker is written.
                    if consumed == text.len() && output.ends_with(&[0, 0, 0xff, 0xff]) {
                        break;
                    }
                }
                Some(output)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Compressor;

    #[test]
    fn zstd_stream_decompresses_message_by_message() {
        let mut compressor = Compressor::for_query(Some("zstd-stream")).expect("offered");
        let mut decompressor = zstd_safe::DCtx::create();
        for text in ["{\"op\":10}", &"x".repeat(100_000), "{\"op\":11}"] {
            let bytes = compressor.compress(text).expect("compressed");
            let mut out = vec![0_u8; 200_000];
            let mut output = zstd_safe::OutBuffer::around(&mut out[..]);
            let mut input = zstd_safe::InBuffer::around(&bytes);
            decompressor
                .decompress_stream(&mut output, &mut input)
                .expect("decompresses");
            let n = output.pos();
            assert_eq!(&out[..n], text.as_bytes());
        }
    }

    #[test]
    fn zlib_stream_ends_every_message_with_the_sync_marker() {
        let mut compressor = Compressor::for_query(Some("zlib-stream")).expect("offered");
        let mut decompressor = flate2::Decompress::new(true);
        for text in ["{\"op\":10}", &"y".repeat(50_000)] {
            let bytes = compressor.compress(text).expect("compressed");
            assert!(bytes.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(100_000);
            decompressor
                .decompress_vec(&bytes, &mut out, flate2::FlushDecompress::Sync)
                .expect("decompresses");
            assert_eq!(out, text.as_bytes());
        }
        assert!(Compressor::for_query(Some("gzip")).is_none());
    }
}
