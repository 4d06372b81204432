//! A minimal HTTP/1.1 client connection, just enough for load generation: it writes a
//! pre-serialized request in one `write` and reads the response head and body (by
//! `Content-Length`, `chunked`, or until close) into a reused buffer, keeping only the status.
//!
//! On a 2-core machine where the server under test shares the cores, this costs a fraction of
//! a general-purpose client's CPU per request (no per-request allocation, header map, channel or
//! task wake-up), which is what keeps the generator from being the bottleneck.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Initial size of a connection's read buffer.
const INITIAL_BUFFER: usize = 8 * 1024;
/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_LINE: usize = 4 * 1024;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD request, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// What a response head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the server allows another request on the connection.
    pub keep_alive: bool,
}

/// Parses a response head (everything before the blank line, without it). `head_request`
/// tells whether the request was `HEAD`, whose response has no body whatever its headers say.
pub fn parse_head(raw: &[u8], head_request: bool) -> Result<Head, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let (version, rest) = status_line
        .split_once(' ')
        .ok_or_else(|| format!("malformed status line {status_line:?}"))?;
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(format!("unsupported response version {version:?}")),
    };
    let code = rest.get(..3).unwrap_or_default();
    let status: u16 = match code.parse() {
        Ok(n) if (100..=999).contains(&n) && code.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(format!("malformed status line {status_line:?}")),
    };
    if rest.len() > 3 && !rest[3..].starts_with(' ') {
        return Err(format!("malformed status line {status_line:?}"));
    }

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoded = false;
    let mut close = !http11;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err("obsolete header line folding in the response".into());
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| format!("invalid Content-Length {value:?}"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".into());
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoded = true;
            // Only the last coding decides the framing.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    close = false;
                }
            }
        }
    }

    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if transfer_encoded {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok(Head {
        status,
        framing,
        keep_alive: !close && framing != Framing::UntilClose,
    })
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// A connection that had already served a request was found closed before any byte of
    /// the response arrived (the server dropped it while idle): retrying on a new connection is
    /// what any client does.
    Stale(String),
    /// The exchange failed.
    Failed(String),
}

/// The outcome of a complete exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Final status code.
    pub status: u16,
    /// Whether the connection can carry another request.
    pub reusable: bool,
}

/// One HTTP/1.1 connection and its read buffer.
pub struct H1Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Whether a response has already been read on this connection.
    reused: bool,
}

impl H1Conn {
    /// Connects to `addr` with `TCP_NODELAY`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            reused: false,
        })
    }

    /// Writes `request` (a complete serialized request) and reads its response to the end.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> Result<Answer, ExchangeError> {
        let fresh = !self.reused;
        if let Err(e) = self.stream.write_all(request).await {
            let what = format!("writing the request: {e}");
            return Err(if fresh {
                ExchangeError::Failed(what)
            } else {
                ExchangeError::Stale(what)
            });
        }
        let mut first_read = true;
        let head = loop {
            let head_len = self.read_head(first_read && !fresh).await?;
            first_read = false;
            let head = parse_head(&self.buf[self.start..self.start + head_len], head_request)
                .map_err(ExchangeError::Failed)?;
            self.start += head_len + 4;
            match head.status {
                101 => {
                    return Err(ExchangeError::Failed(
                        "the server switched protocols (101), which is not supported".into(),
                    ));
                }
                100..=199 => continue, // interim response: the final one follows
                _ => break head,
            }
        };
        let mut keep_alive = head.keep_alive;
        match head.framing {
            Framing::Empty => {}
            Framing::Length(n) => self.skip(n).await?,
            Framing::Chunked => self.skip_chunked().await?,
            Framing::UntilClose => {
                self.skip_until_close().await?;
                keep_alive = false;
            }
        }
        self.reused = true;
        // Bytes beyond the response mean the framing went wrong: do not reuse.
        Ok(Answer {
            status: head.status,
            reusable: keep_alive && self.start == self.end,
        })
    }

    /// Reads until a complete head is buffered; returns its length (without the blank line).
    /// `may_be_stale`: an EOF or reset before any byte is a [`ExchangeError::Stale`].
    async fn read_head(&mut self, may_be_stale: bool) -> Result<usize, ExchangeError> {
        let mut searched = 0;
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(pos) = pending[searched..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                return Ok(searched + pos);
            }
            searched = pending.len().saturating_sub(3);
            if pending.len() >= MAX_HEAD {
                return Err(ExchangeError::Failed(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )));
            }
            let nothing_yet = pending.is_empty();
            match self.fill(MAX_HEAD).await {
                Ok(0) if nothing_yet && may_be_stale => {
                    return Err(ExchangeError::Stale(
                        "the server closed the idle connection".into(),
                    ));
                }
                Ok(0) => {
                    return Err(ExchangeError::Failed(
                        "the server closed the connection before a complete response head".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if nothing_yet && may_be_stale => {
                    return Err(ExchangeError::Stale(format!("reading the response: {e}")));
                }
                Err(e) => {
                    return Err(ExchangeError::Failed(format!("reading the response: {e}")));
                }
            }
        }
    }

    /// Reads more bytes after `end`, first moving pending bytes to the front or growing the
    /// buffer (up to `limit`) when it is full. Returns how many were read (0: end of stream).
    async fn fill(&mut self, limit: usize) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < limit {
                let grown = (self.buf.len() * 2).min(limit);
                self.buf.resize(grown, 0);
            } else {
                return Err(io::Error::other("read buffer full"));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Discards `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> Result<(), ExchangeError> {
        loop {
            let buffered = (self.end - self.start) as u64;
            let taken = buffered.min(n);
            // `taken` ≤ `buffered`, a usize.
            self.start += taken as usize;
            n -= taken;
            if n == 0 {
                return Ok(());
            }
            match self.fill(self.buf.len()).await {
                Ok(0) => {
                    return Err(ExchangeError::Failed(
                        "the server closed the connection in the middle of the body".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(ExchangeError::Failed(format!("reading the body: {e}"))),
            }
        }
    }

    /// Returns the next CRLF-terminated line (without CRLF) as a range of `buf`, consuming it.
    async fn line(&mut self) -> Result<(usize, usize), ExchangeError> {
        let mut searched = 0;
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(pos) = pending[searched..].windows(2).position(|w| w == b"\r\n") {
                let line = (self.start, self.start + searched + pos);
                self.start = line.1 + 2;
                return Ok(line);
            }
            searched = pending.len().saturating_sub(1);
            if pending.len() > MAX_LINE {
                return Err(ExchangeError::Failed(
                    "overlong line in a chunked body".into(),
                ));
            }
            match self.fill(MAX_HEAD).await {
                Ok(0) => {
                    return Err(ExchangeError::Failed(
                        "the server closed the connection in the middle of a chunked body".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(ExchangeError::Failed(format!("reading the body: {e}"))),
            }
        }
    }

    /// Discards a chunked body, trailers included.
    async fn skip_chunked(&mut self) -> Result<(), ExchangeError> {
        loop {
            let (from, to) = self.line().await?;
            let size = parse_chunk_size(&self.buf[from..to]).map_err(ExchangeError::Failed)?;
            if size == 0 {
                // Trailer section: header lines up to an empty line.
                loop {
                    let (from, to) = self.line().await?;
                    if from == to {
                        return Ok(());
                    }
                }
            }
            self.skip(size).await?;
            let (from, to) = self.line().await?;
            if from != to {
                return Err(ExchangeError::Failed("chunk not followed by CRLF".into()));
            }
        }
    }

    /// Discards everything until the server closes the connection.
    async fn skip_until_close(&mut self) -> Result<(), ExchangeError> {
        loop {
            self.start = self.end;
            match self.fill(self.buf.len()).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(ExchangeError::Failed(format!("reading the body: {e}"))),
            }
        }
    }
}

/// Parses a chunk-size line (`1a3f` or `1a3f;ext=value`).
pub(crate) fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits)
        .map_err(|_| "invalid chunk size".to_owned())?
        .trim_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 15 {
        return Err(format!("invalid chunk size {digits:?}"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| format!("invalid chunk size {digits:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Head, String> {
        parse_head(raw.as_bytes(), false)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 12").unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (200, Framing::Length(12), true)
        );
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 0").unwrap();
        assert_eq!(h.framing, Framing::Empty);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5")
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip").unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head("HTTP/1.1 200 OK").unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let h = head(&format!("HTTP/1.1 {status}\r\nContent-Length: 10")).unwrap();
            assert_eq!(h.framing, Framing::Empty, "{status}");
        }
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10", true).unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
    }

    #[test]
    fn keep_alive_depends_on_version_and_connection() {
        let h = head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1");
        assert!(!h.unwrap().keep_alive);
        assert!(
            !head("HTTP/1.0 200 OK\r\nContent-Length: 1")
                .unwrap()
                .keep_alive
        );
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1");
        assert!(h.unwrap().keep_alive);
        let h = head("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0");
        assert_eq!(h.unwrap().status, 401);
        assert_eq!(
            head("HTTP/1.1 200\r\nContent-Length: 0").unwrap().status,
            200
        );
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for raw in [
            "",
            "HTTP/2 200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 +20 OK",
            "HTTP/1.1 200 OK\r\nno colon",
            "HTTP/1.1 200 OK\r\nContent-Length: x",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
            "HTTP/1.1 200 OK\r\nX: a\r\n folded",
        ] {
            assert!(head(raw).is_err(), "{raw:?}");
        }
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3").unwrap();
        assert_eq!(h.framing, Framing::Length(3));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Ok(26));
        assert_eq!(parse_chunk_size(b"FF;name=value"), Ok(255));
        assert_eq!(parse_chunk_size(b"0"), Ok(0));
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b"xyz").is_err());
        assert!(parse_chunk_size(b"1234567890abcdef0").is_err());
    }
}
