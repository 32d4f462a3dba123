//! A server connection's socket, used directly for as long as every operation completes at
//! once and registered with the runtime's event loop only when one would block.
//!
//! A request for a small file usually arrives with the connection and its response fits in
//! the socket's send buffer, so the whole exchange runs as plain non-blocking system calls:
//! no `epoll_ctl` to add and remove the socket, no readiness wake-up, no task of its own.

use std::io::{self, Read, Write};

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::sys;

/// A non-blocking connection, registered with the event loop on first need.
#[derive(Debug)]
pub(crate) struct Sock(Inner);

#[derive(Debug)]
enum Inner {
    /// Not known to the event loop; every call is a plain non-blocking system call.
    Plain(std::net::TcpStream),
    /// Registered: waits go through the event loop.
    Registered(TcpStream),
    /// Registering failed; the socket is closed.
    Lost,
}

impl From<sys::Accepted> for Sock {
    fn from(accepted: sys::Accepted) -> Sock {
        Sock(Inner::Plain(accepted.0))
    }
}

impl Sock {
    /// Wraps a socket that is already in non-blocking mode.
    #[cfg(test)]
    pub(crate) fn plain(stream: std::net::TcpStream) -> Sock {
        Sock(Inner::Plain(stream))
    }

    /// The socket for option calls (`SO_LINGER` and the like) and system calls std does not
    /// wrap (`sendfile`, `send` with flags).
    pub(crate) fn sock_ref(&self) -> Option<SockRef<'_>> {
        match &self.0 {
            Inner::Plain(s) => Some(SockRef::from(s)),
            Inner::Registered(s) => Some(SockRef::from(s)),
            Inner::Lost => None,
        }
    }

    /// Reads what is there now; `WouldBlock` when nothing is.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0 {
            Inner::Plain(s) => retry_eintr(|| (&*s).read(buf)),
            Inner::Registered(s) => s.try_read(buf),
            Inner::Lost => Err(lost()),
        }
    }

    /// Writes what fits now; `WouldBlock` when nothing does.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.0 {
            Inner::Plain(s) => retry_eintr(|| (&*s).write(buf)),
            Inner::Registered(s) => s.try_write(buf),
            Inner::Lost => Err(lost()),
        }
    }

    /// Writes what fits now, telling the kernel (where it can be told: `MSG_MORE` on Linux)
    /// that more is coming: the bytes wait in the send queue for the close or shutdown that
    /// must follow, and leave with the FIN in one segment. Elsewhere, a plain write.
    pub(crate) fn try_write_last(&self, buf: &[u8]) -> io::Result<usize> {
        retry_eintr(|| self.try_send_with(|s| sys::send_held(s, buf)))
    }

    /// Runs a write-side system call on the socket now; `WouldBlock` when it would block.
    pub(crate) fn try_send_with<R>(
        &self,
        f: impl FnOnce(&socket2::Socket) -> io::Result<R>,
    ) -> io::Result<R> {
        match &self.0 {
            Inner::Plain(s) => f(&SockRef::from(s)),
            Inner::Registered(s) => s.try_io(Interest::WRITABLE, || f(&SockRef::from(s))),
            Inner::Lost => Err(lost()),
        }
    }

    /// Acknowledges what has arrived at once, and whatever follows as it comes: leaves the
    /// delayed acknowledgement that accepted connections start with (on Linux; elsewhere
    /// they never left quick acknowledgement).
    pub(crate) fn ack_now(&self) {
        if let Some(s) = self.sock_ref() {
            sys::ack_now(&s);
        }
    }

    /// Reads, waiting for data if there is none yet.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.registered()?.read(buf).await
    }

    /// Waits until the socket has room for writing.
    pub(crate) async fn writable(&mut self) -> io::Result<()> {
        self.registered()?.writable().await
    }

    /// Half-closes: the client sees the end of the response.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::Plain(s) => s.shutdown(std::net::Shutdown::Write),
            Inner::Registered(s) => s.shutdown().await,
            Inner::Lost => Err(lost()),
        }
    }

    /// Registers the socket with the event loop, once.
    fn registered(&mut self) -> io::Result<&mut TcpStream> {
        if let Inner::Plain(_) = self.0 {
            let Inner::Plain(plain) = std::mem::replace(&mut self.0, Inner::Lost) else {
                unreachable!()
            };
            self.0 = Inner::Registered(TcpStream::from_std(plain)?);
        }
        match &mut self.0 {
            Inner::Registered(s) => Ok(s),
            _ => Err(lost()),
        }
    }

    /// Whether the socket was ever registered with the event loop (for tests).
    #[cfg(test)]
    pub(crate) fn is_registered(&self) -> bool {
        matches!(self.0, Inner::Registered(_))
    }
}

fn retry_eintr<R>(mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed: the event loop could not take it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream as StdStream};

    fn pair() -> (Sock, StdStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (Sock::plain(server), client)
    }

    #[tokio::test]
    async fn stays_plain_while_nothing_blocks() {
        let (mut sock, mut client) = pair();
        client.write_all(b"ping").unwrap();
        // Let the bytes land, so that the read has them at once.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut buf = [0u8; 16];
        let n = sock.try_read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(sock.try_write(b"back").unwrap(), 4);
        sock.shutdown().await.unwrap();
        assert!(!sock.is_registered());
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"back");
    }

    #[tokio::test]
    async fn registers_when_a_read_would_block() {
        let (mut sock, mut client) = pair();
        let mut buf = [0u8; 16];
        let err = sock.try_read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            client.write_all(b"late").unwrap();
            client
        });
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("read waited too long")
            .unwrap();
        assert_eq!(&buf[..n], b"late");
        assert!(sock.is_registered());
        // Once registered, the non-blocking calls go through the registration.
        assert_eq!(
            sock.try_read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(sock.try_write(b"x").unwrap(), 1);
        drop(writer.join().unwrap());
    }
}
