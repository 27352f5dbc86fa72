//! [`ConnIo`]: the socket as hyper sees it, with two duties hyper lacks.
//!
//! - **Problem bodies for protocol errors.** When a request cannot be parsed
//!   (a bad request line or header, a negative `Content-Length`, a head over
//!   the limit), hyper answers by itself, before any service runs: a status
//!   line with an empty body, then it closes the connection. Nothing above
//!   hyper sees that answer, so this wrapper recognises it on its way out and
//!   writes a problem+json response with the same status instead. The
//!   recognition is exact for this service: hyper's own answer is a 400, 414
//!   or 431 head without `content-type`, and every error response of the
//!   application carries `content-type: application/problem+json` (see
//!   [`crate::error`]). A response that is not recognised (hyper packing it
//!   behind the tail of a pipelined response in one write) passes unchanged.
//! - **A bound on stalled writes.** A client that stops reading its
//!   response would hold the connection forever: a write that makes no
//!   progress for the configured time fails, and hyper closes the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::error::{PROBLEM_JSON, Problem};

/// A connection's socket, seen through hyper.
pub(crate) struct ConnIo<T> {
    inner: T,
    /// How long a write may stay blocked on a client that does not read.
    write_stall: Duration,
    /// Armed while a write is blocked.
    stall: Option<Pin<Box<Sleep>>>,
    /// The problem response still to write in place of hyper's, and how much
    /// of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// The limit on a request head, quoted in the 431 problem.
    max_head_bytes: usize,
}

impl<T> ConnIo<T> {
    pub(crate) fn new(inner: T, write_stall: Duration, max_head_bytes: usize) -> Self {
        Self {
            inner,
            write_stall,
            stall: None,
            replacement: None,
            max_head_bytes,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> ConnIo<T> {
    /// Passes a write's outcome through, failing it once it has been blocked
    /// for longer than `write_stall`.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stall = None;
            return poll;
        }
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(self.write_stall)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes what is left of the replacement response. It is a few
    /// hundred bytes into a socket that has sent nothing else: no stall bound.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some((bytes, written)) = self.replacement.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if *written == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
    }

    /// If `head` is hyper's own answer to a request it could not parse,
    /// queues the problem response that replaces it and returns true.
    fn intercept(&mut self, head: &[u8]) -> bool {
        if self.replacement.is_some() {
            // Whatever hyper writes after its answer is dropped with it.
            return true;
        }
        let Some(status) = automatic_status(head) else {
            return false;
        };
        self.replacement = Some((problem_response(status, self.max_head_bytes), 0));
        true
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.intercept(buf) {
            ready!(self.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if self.intercept(first) {
            ready!(self.poll_replacement(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

/// The status of `head` when it is hyper's automatic answer to an
/// unparsable request: 400, 414 or 431, and no `content-type`.
fn automatic_status(head: &[u8]) -> Option<StatusCode> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let status = match rest.get(..4)? {
        b"400 " => StatusCode::BAD_REQUEST,
        b"414 " => StatusCode::URI_TOO_LONG,
        b"431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let has_content_type = head[..end]
        .split(|&b| b == b'\n')
        .any(|line| line.len() >= 13 && line[..13].eq_ignore_ascii_case(b"content-type:"));
    (!has_content_type).then_some(status)
}

/// A complete HTTP/1.1 response carrying the problem for `status`; the
/// connection closes after it, as hyper would have closed it.
pub(crate) fn problem_response(status: StatusCode, max_head_bytes: usize) -> Vec<u8> {
    let detail = match status {
        StatusCode::URI_TOO_LONG => "The request target is too long.".to_owned(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            format!("The request line and headers exceed {max_head_bytes} bytes.")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            "The server is at its connection limit. Try again in a moment.".to_owned()
        }
        _ => "The request is not valid HTTP/1.1: its request line, a header, or its \
              framing (Content-Length, Transfer-Encoding) could not be parsed."
            .to_owned(),
    };
    let body = serde_json::to_vec(&Problem::new(status, detail)).unwrap_or_default();
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\n\
         connection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.push_str("retry-after: 1\r\n");
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hyper_s_own_answers() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_status(hyper_400), Some(StatusCode::BAD_REQUEST));
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n";
        assert_eq!(
            automatic_status(hyper_431),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\n\r\n{}";
        assert_eq!(automatic_status(ours), None);
        assert_eq!(automatic_status(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(automatic_status(b"HTTP/1.1 404 Not Found\r\n\r\n"), None);
    }

    #[test]
    fn the_replacement_is_a_complete_problem_response() {
        let bytes = problem_response(StatusCode::BAD_REQUEST, 16384);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 400);
    }
}
