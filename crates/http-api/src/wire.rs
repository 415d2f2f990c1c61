//! The connection under the router: the few requests hyper refuses itself, before any handler
//! or layer sees them (a request target over 65,534 bytes, a header section past its buffer,
//! more than 100 headers, a malformed request line), get the same `{code, message}` JSON as
//! every other error, instead of hyper's status line with an empty body.
//!
//! hyper answers those with a response head and nothing else, then closes the connection; no
//! handler, layer or hook of axum runs. So the connection's writes are watched: a response head
//! with a 4xx status and `content-length: 0` at the start of a write is hyper's (every answer of
//! Scion's own carries a body), and is replaced by the same status with a JSON body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiFailure;

/// A listener whose connections answer hyper's own refusals in JSON.
#[derive(Debug)]
pub struct JsonRefusals<L>(pub L);

impl<L: axum::serve::Listener> axum::serve::Listener for JsonRefusals<L> {
    type Io = JsonRefusalsIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (JsonRefusalsIo { inner: io, pending: Vec::new() }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose writes are watched for hyper's empty error answers.
#[derive(Debug)]
pub struct JsonRefusalsIo<Io> {
    inner: Io,
    /// A rewritten answer not yet written out.
    pending: Vec<u8>,
}

impl<Io: AsyncWrite + Unpin> JsonRefusalsIo<Io> {
    /// Writes out what is pending; ready once nothing is.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for JsonRefusalsIo<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for JsonRefusalsIo<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        if let Some(answer) = json_refusal(buf) {
            // The original bytes count as written: the rewritten answer stands for them.
            self.pending = answer;
            return match self.drain(cx) {
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The JSON answer replacing `written`, when it is exactly one of hyper's empty 4xx answers.
fn json_refusal(written: &[u8]) -> Option<Vec<u8>> {
    let rest = written.strip_prefix(b"HTTP/1.1 4")?;
    let head_end = written.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
    if head_end != written.len() || rest.len() < 2 {
        return None;
    }
    let head = std::str::from_utf8(&written[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    let status = StatusCode::from_u16(status).ok()?;
    let mut empty = false;
    let mut kept = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if lower == "content-length: 0" {
            empty = true;
        } else if !lower.starts_with("content-type:") {
            kept.push(line);
        }
    }
    if !empty {
        return None;
    }
    let message = match status {
        StatusCode::URI_TOO_LONG => "the request target is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request's headers are too large",
        _ => "the request could not be parsed as HTTP",
    };
    let body = serde_json::to_vec(&ApiFailure::with_status(status, message).body()).ok()?;
    let mut answer = format!("{status_line}\r\n");
    for line in kept {
        answer.push_str(line);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    let mut answer = answer.into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_empty_refusals_become_json() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let answer = String::from_utf8(json_refusal(hyper).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("date: x") && head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "URI_TOO_LONG");
        assert!(json["message"].as_str().unwrap().contains("too long"));
    }

    #[test]
    fn every_other_write_passes_unchanged() {
        for written in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 42\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n{\"code\":1}",
            b"{\"code\":\"BAD_REQUEST\"}",
            b"HTTP/1.1 4",
        ] {
            assert_eq!(json_refusal(written), None, "{}", String::from_utf8_lossy(written));
        }
    }
}
