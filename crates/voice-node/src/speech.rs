//! Text-to-speech with espeak-ng: the text goes in on stdin (never as an argument, so no text
//! can pass for an option), a WAV file comes out on stdout.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Longest text spoken; Discord messages are at most 2,000 characters anyway.
pub(crate) const MAX_TEXT: usize = 1_000;
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub(crate) struct Speech {
    program: PathBuf,
    voice: String,
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
}

impl Speech {
    pub(crate) fn new(program: PathBuf, voice: String) -> Self {
        Self { program, voice }
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
        let text = text.to_owned();
        let write = async move {
            stdin.write_all(text.as_bytes()).await?;
            stdin.shutdown().await
        };
        let run = async {
            let (written, output) = tokio::join!(write, child.wait_with_output());
            written.map_err(|e| SpeechError::Failed(e.to_string()))?;
            output.map_err(|e| SpeechError::Failed(e.to_string()))
        };
        let output = tokio::time::timeout(TIMEOUT, run)
            .await
            .map_err(|_| SpeechError::TimedOut)??;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(SpeechError::Failed(format!(
                "{} exited with {}: {}",
                self.program.display(),
                output.status,
                stderr.trim()
            )));
        }
        if output.stdout.len() <= 44 {
            return Err(SpeechError::Failed("no audio came out".to_owned()));
        }
        Ok(output.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let speech = Speech::new("/nonexistent/espeak-ng".into(), "en".to_owned());
        let error = speech.synthesize("hello").await.expect_err("no program");
        assert!(matches!(error, SpeechError::Missing { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/espeak-ng"));
    }

    #[tokio::test]
    async fn espeak_ng_speaks_text_that_looks_like_an_option() {
        let speech = Speech::new("espeak-ng".into(), "en".to_owned());
        let wav = speech
            .synthesize("--help me")
            .await
            .expect("espeak-ng is installed");
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        // "--help me" spoken is well over a tenth of a second of 22,050 Hz 16-bit audio.
        assert!(wav.len() > 4_410, "{} bytes", wav.len());
    }
}
