//! A minimal HTTP/1.1 client over hyper, for webhook delivery and the control API client.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// How long a request may take. Discord gives up on an interactions endpoint after 3 s; the
/// simulator waits a little longer to report how late it was.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the server answered.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) elapsed_ms: u64,
}

/// Posts JSON `body` with `headers` to `url`.
pub(crate) async fn post(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    request("POST", url, headers, Some(body)).await
}

/// One HTTP/1.1 request to a plain `http://` URL; the body, if any, is JSON.
pub(crate) async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<Answer, String> {
    let uri: Uri = url.parse().map_err(|_| format!("invalid URL {url}"))?;
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let started = std::time::Instant::now();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{host}:{port}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                "Discord-Interactions/1.0 (+https://discord.com)",
            );
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())??;
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
