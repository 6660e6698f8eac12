//! Sending a response frame that is made of several segments (a Fetch response: encoded fields
//! and the record batches between them, see `kafka::frame`). The connection writer calls this
//! for every frame. Segments go out with `sendmsg` over many of them at once, without blocking,
//! straight on the socket; when the socket is full, one ordinary write through the stream
//! waits until it takes bytes again. So a frame costs about one system call per
//! `IOVECS_PER_SEND_MAX` segments, and its batches are never gathered into one buffer first.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use bytes::Bytes;
use futures_lite::{AsyncWrite, AsyncWriteExt};

use crate::kafka::frame::Frame;

/// Segments handed to one `sendmsg` (Linux allows 1,024); the slices live on the stack.
const IOVECS_PER_SEND_MAX: usize = 128;

/// Writes all of `frame` to the socket `fd`, which `wr` writes to as well.
pub async fn send_frame<W: AsyncWrite + Unpin>(
    fd: RawFd,
    wr: &mut W,
    frame: &Frame,
) -> io::Result<()> {
    let parts = frame.parts();
    if let [one] = parts {
        return wr.write_all(one).await;
    }
    let (mut next, mut sent) = (0usize, 0usize); // next segment, and bytes of it already sent
    while next < parts.len() {
        let n = match send_nowait(fd, &parts[next..], sent)? {
            Some(n) => n,
            None => wr.write(&parts[next][sent..]).await?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        (next, sent) = advance(parts, next, sent, n);
    }
    Ok(())
}

/// Where the frame continues after `n` more bytes went out from segment `next`, byte `sent`.
fn advance(parts: &[Bytes], mut next: usize, mut sent: usize, mut n: usize) -> (usize, usize) {
    while n > 0 {
        let left = parts[next].len() - sent;
        if n < left {
            return (next, sent + n);
        }
        n -= left;
        next += 1;
        sent = 0;
    }
    while next < parts.len() && parts[next].len() == sent {
        next += 1;
        sent = 0;
    }
    (next, sent)
}

/// One non-blocking `sendmsg` of the first segments (the first from byte `sent`). Ok(None):
/// the socket is full.
fn send_nowait(fd: RawFd, parts: &[Bytes], sent: usize) -> io::Result<Option<usize>> {
    let mut iov = [IoSlice::new(&[]); IOVECS_PER_SEND_MAX];
    let count = parts.len().min(IOVECS_PER_SEND_MAX);
    for (k, p) in parts.iter().take(count).enumerate() {
        iov[k] = IoSlice::new(if k == 0 { &p[sent..] } else { p });
    }
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix; the kernel only reads the slices.
    msg.msg_iov = iov.as_mut_ptr().cast::<libc::iovec>();
    msg.msg_iovlen = count as _;
    loop {
        // SAFETY: `msg` points at `count` initialised iovecs that outlive the call.
        let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(Some(r as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn advance_walks_segments() {
        let parts: Vec<Bytes> = [3usize, 5, 2]
            .iter()
            .map(|&n| Bytes::from(vec![0u8; n]))
            .collect();
        assert_eq!(advance(&parts, 0, 0, 2), (0, 2));
        assert_eq!(advance(&parts, 0, 2, 1), (1, 0));
        assert_eq!(advance(&parts, 0, 0, 9), (2, 1));
        assert_eq!(advance(&parts, 1, 4, 3), (3, 0));
    }

    /// The stream's own write, as a blocking write: it returns once the socket takes bytes.
    struct Blocking(UnixStream);

    impl AsyncWrite for Blocking {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::task::Poll::Ready(std::io::Write::write(&mut self.0, buf))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Thousands of segments, several MB: far more than the socket holds, so the sender meets a
    /// full socket many times while the reader (which starts late) drains it.
    #[test]
    fn a_frame_arrives_whole_and_in_order_through_a_full_socket() {
        let parts: Vec<Bytes> = (0..3000usize)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + (i * 7919) % 5000]))
            .collect();
        let expected: Vec<u8> = parts.concat();
        let frame = Frame::from(parts);
        let (a, mut b) = UnixStream::pair().unwrap();
        let len = expected.len();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut got = vec![0u8; len];
            b.read_exact(&mut got).unwrap();
            got
        });
        let fd = a.as_raw_fd();
        let mut wr = Blocking(a);
        futures_lite::future::block_on(send_frame(fd, &mut wr, &frame)).unwrap();
        assert!(reader.join().unwrap() == expected);
    }
}
