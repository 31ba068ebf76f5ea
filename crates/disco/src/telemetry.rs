//! Logs, and the admin endpoints every process serves: `/metrics` (Prometheus/OpenMetrics text),
//! `/healthz` (the process answers) and `/readyz` (every readiness check passes).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, TelemetryArgs};

/// Starts logging to stderr. A filter that does not parse is a bad setting.
pub fn init_logs(args: &TelemetryArgs) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.log)
        .map_err(|error| format!("invalid DISCO_LOG (--log): {error}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

type Check = Box<dyn Fn() -> bool + Send + Sync>;

/// What the admin endpoints serve: the metrics registry and the readiness checks.
pub(crate) struct Admin {
    registry: Registry,
    checks: Vec<(String, Check)>,
}

impl Admin {
    /// A registry with `disco_build_info{version, roles}` and `disco_runtime_workers`.
    pub(crate) fn new(roles: &str) -> Self {
        let mut registry = Registry::with_prefix("disco");
        registry.register(
            "build",
            "The running build and the roles this process runs",
            Info::new(vec![
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                ("roles".to_owned(), roles.to_owned()),
            ]),
        );
        let workers = Gauge::<i64>::default();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            workers.set(i64::try_from(runtime.metrics().num_workers()).unwrap_or(i64::MAX));
        }
        registry.register(
            "runtime_workers",
            "The async runtime's worker threads, which run every task of this process",
            workers,
        );
        Self {
            registry,
            checks: Vec::new(),
        }
    }

    /// The registry roles add their metrics to.
    pub(crate) fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Adds a readiness check: `/readyz` is 200 only while every check returns true.
    pub(crate) fn ready_when(
        &mut self,
        name: &str,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        self.checks.push((name.to_owned(), Box::new(check)));
    }

    fn not_ready(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|(_, check)| !check())
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Serves the admin endpoints until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    admin: Admin,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(admin));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &admin.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "could not encode metrics\n".to_owned(),
        ),
    }
}

async fn readyz(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    let waiting = admin.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", waiting.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reads");
        let status = response[9..12].parse().expect("a status code");
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn admin_endpoints_report_health_readiness_and_metrics() {
        let ready = Arc::new(AtomicBool::new(false));
        let mut admin = Admin::new("command-worker");
        admin.ready_when("bus", {
            let ready = Arc::clone(&ready);
            move || ready.load(Ordering::Relaxed)
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("an address");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, admin, shutdown.clone()));

        assert_eq!(get(address, "/healthz").await.0, 200);
        assert_eq!(
            get(address, "/readyz").await,
            (503, "not ready: bus\n".to_owned())
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get(address, "/readyz").await, (200, "ready\n".to_owned()));

        let (status, body) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains(r#"disco_build_info{version="0.1.0",roles="command-worker"} 1"#),
            "{body}"
        );
        // `#[tokio::test]`'s current-thread runtime counts as one worker.
        assert!(body.contains("\ndisco_runtime_workers 1\n"), "{body}");
        assert_eq!(get(address, "/nope").await.0, 404);

        shutdown.cancel();
        server.await.expect("joins").expect("stops cleanly");
    }
}
