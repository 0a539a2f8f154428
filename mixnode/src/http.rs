//! HTTP for the node's three GET routes, served by hyper (HTTP/1.1 only):
//! request heads must arrive within [`HEADER_TIMEOUT`], a connection lives
//! at most [`CONNECTION_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served
//! at once (more are closed unanswered), so slow or idle clients
//! (slowloris) cannot make `/health` fail. Also a blocking client for
//! `mixnode healthcheck` and `loadgen`, which only ever GET plain
//! `http://host:port/path` URLs, with a timeout on every socket operation
//! and a cap on the response size ([`MAX_RESPONSE`]).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{TcpStream as StdTcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Time a client has to send its whole request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a connection is served (keep-alive included).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP connections served; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 512;
/// Largest response the client reads.
pub const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// A response: status code, content type and body.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() =
        hyper::StatusCode::from_u16(response.status).unwrap_or(hyper::StatusCode::OK);
    let headers = out.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    out
}

/// Serves `route(path)` for every GET until the task is dropped.
pub async fn serve<F>(listener: TcpListener, route: Arc<F>)
where
    F: Fn(&str) -> Response + Send + Sync + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Over the limit the connection is closed at once.
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let route = route.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        let response = if req.method() == hyper::Method::GET {
                            route(req.uri().path())
                        } else {
                            Response::text(405, "only GET is supported\n")
                        };
                        async move { Ok::<_, Infallible>(to_hyper(response)) }
                    });
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_buf_size(16 * 1024)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::debug!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}: expected a URL like http://host:port/path")]
    BadUrl(String),
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{0}: not an HTTP response")]
    BadResponse(String),
    #[error("{0}: response larger than 4 MiB")]
    TooLarge(String),
}

/// GETs `url` (plain http only) and returns the status code and body.
pub fn get(url: &str, timeout: Duration) -> Result<(u16, String), ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    let authority_with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let io = |source| ClientError::Io {
        url: url.to_string(),
        source,
    };
    let addr = authority_with_port
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ))
        })?;
    let mut stream = StdTcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // One write: a server that answers before reading it all cannot break
    // the request in the middle.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    // `timeout` bounds the whole response, not just each read.
    let deadline = std::time::Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() as u64 > MAX_RESPONSE {
            return Err(ClientError::TooLarge(url.to_string()));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "response not complete within the timeout",
            )));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::BadResponse(url.to_string()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::BadResponse(url.to_string()))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_and_client_round_trip() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(serve(
            listener,
            Arc::new(|path: &str| match path {
                "/health" => Response::text(200, "ok\n"),
                _ => Response::text(404, "no\n"),
            }),
        ));
        let t = Duration::from_secs(5);
        assert_eq!(
            get(&format!("http://127.0.0.1:{port}/health?x=1"), t).unwrap(),
            (200, "ok\n".into())
        );
        assert_eq!(
            get(&format!("http://127.0.0.1:{port}/nope"), t).unwrap().0,
            404
        );
        assert!(matches!(get("ftp://x", t), Err(ClientError::BadUrl(_))));
    }
}
