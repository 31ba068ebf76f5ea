//! Text-to-speech with espeak-ng: the text goes in on stdin (never as an argument, so no text
//! can pass for an option), a WAV file comes out on stdout.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest text spoken; Discord messages are at most 2,000 characters anyway.
pub(crate) const MAX_TEXT: usize = 1_000;
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub(crate) struct Speech {
    program: PathBuf,
    voice: String,
    /// The longest audio made; longer is refused (and espeak-ng stopped as soon as it is).
    max: Duration,
}

/// Why nothing could be said.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpeechError {
    #[error("text-to-speech is not available on this voice node ({program} is not installed)")]
    Missing { program: String },
    #[error("text-to-speech failed: {0}")]
    Failed(String),
    #[error("text-to-speech took longer than {} s", TIMEOUT.as_secs())]
    TimedOut,
    #[error("that is too long to say: more than {} s of speech", .0.as_secs())]
    TooLong(Duration),
}

/// A WAV header's size, and where it keeps the bytes per second.
const WAV_HEADER: usize = 44;
const BYTE_RATE: std::ops::Range<usize> = 28..32;

impl Speech {
    pub(crate) fn new(program: PathBuf, voice: String, max: Duration) -> Self {
        Self {
            program,
            voice,
            max,
        }
    }

    /// Synthesises `text` to WAV bytes.
    pub(crate) async fn synthesize(&self, text: &str) -> Result<Vec<u8>, SpeechError> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(["--stdout", "-v", &self.voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => SpeechError::Missing {
                    program: self.program.display().to_string(),
                },
                _ => SpeechError::Failed(error.to_string()),
            })?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| SpeechError::Failed("no stdin".to_owned()))?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return Err(SpeechError::Failed("no stdout".to_owned()));
        };
        let text = text.to_owned();
        let write = async move {
            stdin.write_all(text.as_bytes()).await?;
            stdin.shutdown().await
        };
        // Read no more audio than the longest allowed: the header says how many bytes a
        // second takes.
        let max = self.max;
        let read = async move {
            let mut wav = vec![0_u8; WAV_HEADER];
            if stdout.read_exact(&mut wav).await.is_err() {
                return Ok((wav, false));
            }
            let mut rate = [0_u8; 4];
            rate.copy_from_slice(&wav[BYTE_RATE]);
            let cap = u64::from(u32::from_le_bytes(rate)).saturating_mul(max.as_secs());
            (&mut stdout).take(cap + 1).read_to_end(&mut wav).await?;
            let whole = (wav.len() - WAV_HEADER) as u64 <= cap;
            Ok::<_, std::io::Error>((wav, whole))
        };
        let mut errors = Vec::new();
        let run = async {
            let (written, read, _) = tokio::join!(write, read, stderr.read_to_end(&mut errors));
            let (wav, whole) = read.map_err(|e| SpeechError::Failed(e.to_string()))?;
            if !whole {
                // Dropping the child kills it: it may still be speaking.
                return Err(SpeechError::TooLong(max));
            }
            written.map_err(|e| SpeechError::Failed(e.to_string()))?;
            let status = child
                .wait()
                .await
                .map_err(|e| SpeechError::Failed(e.to_string()))?;
            Ok((wav, status))
        };
        let (wav, status) = tokio::time::timeout(TIMEOUT, run)
            .await
            .map_err(|_| SpeechError::TimedOut)??;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&errors);
            return Err(SpeechError::Failed(format!(
                "{} exited with {}: {}",
                self.program.display(),
                status,
                stderr.trim()
            )));
        }
        if wav.len() <= WAV_HEADER {
            return Err(SpeechError::Failed("no audio came out".to_owned()));
        }
        Ok(wav)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let speech = Speech::new(
            "/nonexistent/espeak-ng".into(),
            "en".to_owned(),
            Duration::from_secs(60),
        );
        let error = speech.synthesize("hello").await.expect_err("no program");
        assert!(matches!(error, SpeechError::Missing { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/espeak-ng"));
    }

    #[tokio::test]
    async fn espeak_ng_speaks_text_that_looks_like_an_option() {
        let speech = Speech::new("espeak-ng".into(), "en".to_owned(), Duration::from_secs(60));
        let wav = speech
            .synthesize("--help me")
            .await
            .expect("espeak-ng is installed");
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        // "--help me" spoken is well over a tenth of a second of 22,050 Hz 16-bit audio.
        assert!(wav.len() > 4_410, "{} bytes", wav.len());
    }

    #[tokio::test]
    async fn speech_longer_than_the_bound_is_refused() {
        // A thousand digits: espeak-ng reads them one by one, for minutes.
        let digits = "7".repeat(1_000);
        let speech = Speech::new("espeak-ng".into(), "en".to_owned(), Duration::from_secs(5));
        let error = speech.synthesize(&digits).await.expect_err("too long");
        assert!(matches!(error, SpeechError::TooLong(_)), "{error:?}");
        let short = speech
            .synthesize("hello")
            .await
            .expect("short speech passes");
        assert_eq!(&short[..4], b"RIFF");
    }
}
