//! A deliberately small HTTP/1.1 layer: a server for the node's three GET
//! routes (one request per connection, `Connection: close`, request head
//! capped at 8 KiB and 5 s, at most 64 connections at once) and a blocking
//! client for `mixnode healthcheck` and `loadgen`, which only ever GET plain
//! `http://host:port/path` URLs.

use std::io::{Read, Write};
use std::net::{TcpStream as StdTcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent HTTP connections served; more are closed unanswered.
const MAX_CONNECTIONS: usize = 64;

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

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Status",
    }
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
                    let _ = tokio::time::timeout(READ_TIMEOUT, handle(stream, &*route)).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle<F: Fn(&str) -> Response>(mut stream: TcpStream, route: &F) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > MAX_HEAD {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or("").split_whitespace();
    let response = match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => route(target.split('?').next().unwrap_or(target)),
        (Some(_), Some(_)) => Response::text(405, "only GET is supported\n"),
        _ => Response::text(400, "bad request\n"),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    out.extend_from_slice(response.body.as_bytes());
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}: expected a URL like http://host:port/path")]
    BadUrl(String),
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{0}: not an HTTP response")]
    BadResponse(String),
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
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
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
