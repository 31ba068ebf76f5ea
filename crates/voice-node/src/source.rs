//! What `play` accepts: an http(s) URL, or a file under the media directory (and nowhere else:
//! a member must not be able to read the node's files by naming them).

use std::path::{Component, Path, PathBuf};

use songbird::input::codecs::{get_codec_registry, get_probe};
use songbird::input::{File, HttpRequest, Input};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Url(String),
    File(PathBuf),
}

impl Source {
    /// Reads what a member typed. `Err` says why it cannot be played.
    pub(crate) fn parse(text: &str, media_dir: &Path) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("say what to play: a file name or an http(s) URL".to_owned());
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            let url = reqwest::Url::parse(text).map_err(|e| format!("{text} is not a URL: {e}"))?;
            return match url.host() {
                None => Err(format!("{text} has no host")),
                Some(host) if !crate::fetch::host_may_be_public(&host) => {
                    Err(format!("{text}: only public URLs can be played"))
                }
                Some(_) => Ok(Self::Url(url.to_string())),
            };
        }
        if text.contains("://") {
            return Err("only http and https URLs can be played".to_owned());
        }
        let relative = Path::new(text);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!("{text}: name a file inside the media directory"));
        }
        let path = media_dir.join(relative);
        // Links out of the media directory are refused as well.
        let (Ok(real), Ok(dir)) = (path.canonicalize(), media_dir.canonicalize()) else {
            return Err(format!("no file {text} in the media directory"));
        };
        if !real.starts_with(&dir) || !real.is_file() {
            return Err(format!("no file {text} in the media directory"));
        }
        Ok(Self::File(real))
    }

    /// A short name for the queue.
    pub(crate) fn title(&self) -> String {
        match self {
            Self::Url(url) => url.clone(),
            Self::File(path) => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
        }
    }

    /// Opens and probes it, so a source that cannot be decoded is refused now rather than
    /// failing silently in the queue. The member is told that it failed, not why: the why (a
    /// refused address, a status, a connection error) would make `play` a network scanner. It
    /// is logged.
    pub(crate) async fn open(&self, http: &reqwest::Client) -> Result<Input, String> {
        let input: Input = match self {
            Self::Url(url) => HttpRequest::new(http.clone(), url.clone()).into(),
            Self::File(path) => File::new(path.clone()).into(),
        };
        input
            .make_playable_async(get_codec_registry(), get_probe())
            .await
            .map_err(|error| {
                tracing::info!(source = %self.title(), %error, "cannot play a source");
                format!(
                    "cannot play {}: it could not be fetched, or is not audio",
                    self.title()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_the_media_directory_are_refused() {
        let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
        let inside = Source::parse("chime.wav", &media).expect("bundled");
        assert_eq!(inside.title(), "chime.wav");
        for text in [
            "",
            "../Cargo.toml",
            "/etc/passwd",
            "missing.wav",
            "ftp://example.com/a.mp3",
            "file:///etc/passwd",
            "https://",
            "http://localhost:15672/api/overview",
            "http://127.0.0.1/a.mp3",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.7/a.mp3",
            "http://[::1]/a.mp3",
            "http://[::ffff:192.168.1.1]/a.mp3",
            "http://disco-rabbitmq:15672/",
            "http://kube-dns.kube-system.svc/",
            "http://metadata.google.internal/",
            "http://100.64.0.1/a.mp3",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://224.0.0.1/a.mp3",
        ] {
            assert!(Source::parse(text, &media).is_err(), "{text:?} accepted");
        }
        assert_eq!(
            Source::parse("https://example.com/a.mp3", &media),
            Ok(Source::Url("https://example.com/a.mp3".to_owned()))
        );
    }

    #[tokio::test]
    async fn wav_mp3_and_vorbis_decode_and_text_does_not() {
        let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
        let http = reqwest::Client::new();
        for file in ["chime.wav", "arpeggio.mp3", "arpeggio.ogg"] {
            let source = Source::parse(file, &media).expect("bundled");
            let input = source.open(&http).await.expect(file);
            assert!(input.is_playable(), "{file}");
        }
        let readme = Source::File(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
        assert!(readme.open(&http).await.is_err());
    }
}
