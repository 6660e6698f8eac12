//! Just enough HTTP/1.1 for the admin listener: read one request head (bounded), answer with
//! one response, close. Prometheus, curl and orchestrators' probes need nothing more. Pure
//! functions over bytes, so the parsing is tested without a socket.

/// The longest request head read; a longer one is answered 431 and closed.
pub const HEAD_BYTES_MAX: usize = 8 << 10;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method ("GET", "HEAD", ...).
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The query string after `?` ("" when none).
    pub query: String,
    /// The Accept header, if any.
    pub accept: Option<String>,
}

/// Why a head cannot be answered normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is longer than [`HEAD_BYTES_MAX`].
    #[error("request head too large")]
    TooLarge,
    /// The request line or a header is malformed.
    #[error("malformed request")]
    Malformed,
}

/// Parses the head at the start of `buf`: Ok(None) while it is not complete.
pub fn parse(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > HEAD_BYTES_MAX {
            Err(HttpError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > HEAD_BYTES_MAX {
        return Err(HttpError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed)?;
    let mut lines = head.split("\r\n");
    let line = lines.next().ok_or(HttpError::Malformed)?;
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(HttpError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(HttpError::Malformed);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut accept = None;
    for h in lines {
        let (name, value) = h.split_once(':').ok_or(HttpError::Malformed)?;
        if name.trim().eq_ignore_ascii_case("accept") {
            accept = Some(value.trim().to_string());
        }
    }
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        accept,
    }))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The Content-Type header.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and a JSON or text body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    /// A JSON response (200).
    pub fn json(value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response::new(200, "application/json", body)
    }

    /// The bytes on the wire: status line, headers (the connection closes after it), body;
    /// for HEAD, the body is left out.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_once_complete() {
        let raw =
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text\r\n\r\n";
        assert_eq!(parse(&raw[..20]), Ok(None));
        let r = parse(raw).unwrap().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("GET", "/metrics", "x=1")
        );
        assert_eq!(r.accept.as_deref(), Some("application/openmetrics-text"));
    }

    #[test]
    fn bad_and_oversized_heads_are_refused() {
        assert_eq!(parse(b"GARBAGE\r\n\r\n"), Err(HttpError::Malformed));
        assert_eq!(
            parse(b"GET metrics HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Err(HttpError::Malformed)
        );
        assert_eq!(parse(&[b'a'; HEAD_BYTES_MAX + 1]), Err(HttpError::TooLarge));
        assert_eq!(
            parse(&[0xff, b'\r', b'\n', b'\r', b'\n']),
            Err(HttpError::Malformed)
        );
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = Response::text(200, "ok").encode(false);
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\nok\n"));
        let head = String::from_utf8(Response::text(200, "ok").encode(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }
}
