//! One connection's exchange: read the FileRequest before its deadline, check and open the
//! name beneath the root, send the response, and log one line for the connection (with the
//! target `filefetch::server`). Behind a load balancer, the request comes after a PROXY
//! header (see `proxy`), read under the same deadline. The client (the peer, or the one the
//! PROXY header names) is let in by the access rules and the limit per address before its
//! request is read; the response is paced by the rate limits.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout, timeout_at};
use tracing::Level;

use super::access::{judge, AccessRule, Denied, PerAddress, Slot};
use super::access_log::{AccessEntry, AccessLog};
use super::cache::FileCache;
use super::confine::{check_name, OpenError, Resolver, Root};
use super::metrics::{Ending, Metrics};
use super::pace::{self, Pace};
use super::proxy;
use super::send::{send_file, send_not_found, Paths, SendError};
use super::socket::Sock;
use crate::protocol::{DecodeError, RequestHeader, MAX_NAME_LEN, REQUEST_HEADER_LEN};
use crate::sys;

/// What every connection of a server needs: the root, the open-file cache, the timeouts.
pub(super) struct Ctx {
    pub(super) source: Source,
    pub(super) files: FileCache,
    pub(super) request_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) resolver: Resolver,
    pub(super) paths: Paths,
    /// Every connection starts with a PROXY header.
    pub(super) proxy_protocol: bool,
    /// Who is served, checked in order (none: everyone).
    pub(super) access_rules: Vec<AccessRule>,
    /// The limit of connections at once per client address, if there is one.
    pub(super) per_address: Option<Arc<PerAddress>>,
    /// Bytes a second per connection (0: no limit).
    pub(super) rate_limit: u64,
    /// The whole server's rate limit, if there is one.
    pub(super) total_rate: Option<pace::Shared>,
    /// The server's metrics, if they are on.
    pub(super) metrics: Option<Arc<Metrics>>,
    /// Where each connection's line goes, if not to `tracing`.
    pub(super) access_log: Option<Arc<dyn AccessLog>>,
}

/// Where files come from.
pub(super) enum Source {
    /// A directory, through the confinement rules and the open-file cache.
    Dir(Root),
    /// An object store.
    #[cfg(feature = "object-store")]
    Store(super::store::Store),
}

/// How one connection ended.
enum Outcome {
    Sent,
    NotFound(String),
    /// The server could not open the file for want of descriptors (StatusCode 0 was sent).
    Unavailable(std::io::Error),
    BadRequest(DecodeError),
    BadProxyHeader(proxy::Refusal),
    /// The access rules refuse the client.
    Refused(Denied),
    /// The client has this many connections open already, the most it may.
    TooMany(u32),
    RequestTimeout,
    RequestCut(usize),
    ClientGone(std::io::Error),
    Stalled,
    Shrank,
    ReadFailed(std::io::Error),
    /// The object store failed or did not answer (StatusCode 0 was sent).
    #[cfg(feature = "object-store")]
    StoreFailed(String),
}

impl Outcome {
    /// The outcome as the metrics label it.
    fn ending(&self) -> Ending {
        match self {
            Outcome::Sent => Ending::Sent,
            Outcome::NotFound(_) => Ending::NotFound,
            Outcome::Unavailable(_) => Ending::Unavailable,
            Outcome::BadRequest(_) => Ending::BadRequest,
            Outcome::BadProxyHeader(_) => Ending::BadProxyHeader,
            Outcome::Refused(_) => Ending::Refused,
            Outcome::TooMany(_) => Ending::TooMany,
            Outcome::RequestTimeout => Ending::RequestTimeout,
            Outcome::RequestCut(_) => Ending::RequestCut,
            Outcome::ClientGone(_) => Ending::ClientGone,
            Outcome::Stalled => Ending::Stalled,
            Outcome::Shrank => Ending::Shrank,
            Outcome::ReadFailed(_) => Ending::ReadFailed,
            #[cfg(feature = "object-store")]
            Outcome::StoreFailed(_) => Ending::StoreFailed,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Sent => f.write_str("sent"),
            Outcome::NotFound(why) => write!(f, "not found ({why})"),
            Outcome::Unavailable(e) => write!(
                f,
                "could not open the file: the server is out of file descriptors ({e}); \
                 answered StatusCode 0"
            ),
            Outcome::BadRequest(e) => write!(f, "bad request: {e}; closed without a response"),
            Outcome::BadProxyHeader(e) => {
                write!(f, "bad PROXY header: {e}; closed without a response")
            }
            Outcome::Refused(Denied::Rule(net)) => {
                write!(f, "refused by rule deny {net}; closed without a response")
            }
            Outcome::Refused(Denied::NoAllowMatches) => {
                f.write_str("refused: no allow rule matches; closed without a response")
            }
            Outcome::TooMany(n) => write!(
                f,
                "too many connections from this address (at most {n} at once); closed without \
                 a response"
            ),
            Outcome::RequestTimeout => {
                f.write_str("request did not arrive in time; closed without a response")
            }
            Outcome::RequestCut(n) => write!(
                f,
                "client closed after {n} bytes of the request; closed without a response"
            ),
            Outcome::ClientGone(e) => write!(f, "client went away: {e}"),
            Outcome::Stalled => f.write_str("client stopped reading; dropped"),
            Outcome::Shrank => f.write_str("file shrank while being sent; connection aborted"),
            Outcome::ReadFailed(e) => write!(f, "reading the file failed: {e}; connection aborted"),
            #[cfg(feature = "object-store")]
            Outcome::StoreFailed(why) => {
                write!(f, "the object store failed: {why}; answered StatusCode 0")
            }
        }
    }
}

impl Outcome {
    /// The outcome in one word, the log line's `outcome` field, for programs that read the
    /// log: the message beside it is for people and varies with the details.
    fn word(&self) -> &'static str {
        self.ending().label()
    }
}

/// What the log line of a connection reports besides its outcome.
struct Record {
    /// Whom the connection is for: the peer, or the client a PROXY header names.
    client: SocketAddr,
    /// The peer (the load balancer) when a PROXY header named the client.
    via: Option<SocketAddr>,
    name: Option<String>,
    status: Option<u8>,
    bytes: u64,
    /// The client sent bytes beyond its request.
    extra: bool,
    /// The client's place under the limit per address, held while the connection lasts.
    slot: Option<Slot>,
}

impl Record {
    fn new(peer: SocketAddr) -> Record {
        Record {
            client: peer,
            via: None,
            name: None,
            status: None,
            bytes: 0,
            extra: false,
            slot: None,
        }
    }
}

/// Serves one connection, accepted at `start` (the request deadline counts from there), to
/// its log line.
pub(super) async fn connection(
    mut sock: Sock,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    permit: OwnedSemaphorePermit,
    start: Instant,
) {
    // Counted as open until it is closed, or dropped in any other way.
    let active = ctx.metrics.as_deref().map(Metrics::opened);
    let mut record = Record::new(peer);
    let outcome = exchange(&mut sock, &ctx, start, &mut record).await;
    match outcome {
        Outcome::Sent | Outcome::NotFound(_) if record.extra => finish(&mut sock).await,
        // Cut short on purpose: a reset tells the client at once that the data is incomplete,
        // and frees the send buffer now rather than after a slow drain to a stalled reader.
        Outcome::Shrank | Outcome::ReadFailed(_) | Outcome::Stalled => {
            if let Some(s) = sock.sock_ref() {
                let _ = s.set_linger(Some(Duration::ZERO));
            }
        }
        _ => {}
    }
    // Counted before the close, so that a client that has seen the connection end finds it
    // in the metrics.
    if let Some(metrics) = &ctx.metrics {
        metrics.ended(outcome.ending(), record.bytes, start.elapsed());
    }
    drop(active);
    drop(sock);
    drop(record.slot.take());
    drop(permit);
    let entry = AccessEntry {
        level: match outcome {
            Outcome::Sent | Outcome::NotFound(_) => Level::INFO,
            _ => Level::WARN,
        },
        client: record.client,
        via: record.via,
        name: record.name.as_deref(),
        status: record.status,
        bytes: record.bytes,
        duration: start.elapsed(),
        outcome: outcome.word(),
        message: &outcome,
    };
    match &ctx.access_log {
        Some(log) => log.log(&entry),
        None => entry.trace(),
    }
}

/// Room for the longest request and then some: bytes beyond the request in the same read
/// show that the client sent more than it should (see [`finish`]).
const REQUEST_BUF: usize = REQUEST_HEADER_LEN + MAX_NAME_LEN + 32;

async fn exchange(sock: &mut Sock, ctx: &Ctx, start: Instant, record: &mut Record) -> Outcome {
    // With the PROXY protocol, the header comes first in the same buffer, and the request
    // usually with it: never more is read than the longest header and the request's room.
    let mut whole = [0u8; proxy::MAX_HEADER + REQUEST_BUF];
    let buf = if ctx.proxy_protocol {
        &mut whole[..]
    } else {
        &mut whole[..REQUEST_BUF]
    };
    // A deadline beyond what an Instant can hold (a configured `Duration::MAX`) is none.
    let deadline = start
        .checked_add(ctx.request_timeout)
        .map_or_else(far_future, tokio::time::Instant::from_std);
    let mut got = 0;
    // Where the request starts in `buf`: after the PROXY header, once that is read.
    let mut at = 0;
    let mut awaiting_proxy = ctx.proxy_protocol;
    let mut want = if awaiting_proxy {
        1
    } else {
        REQUEST_HEADER_LEN
    };
    let mut header = None;
    let mut yielded = false;
    let mut acked = false;
    if !awaiting_proxy {
        if let Err(refused) = admit(ctx, record) {
            return refused;
        }
    }
    // Read the PROXY header if one is due, the request's header, then the name, all before
    // one deadline counted from accept.
    while got < want {
        // The request usually arrives with the connection: read it straight away, and wait
        // for readiness (a trip through the event loop) only when it is not there yet.
        let mut read = sock.try_read(&mut buf[got..]);
        if !yielded && matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            // Accepted a moment before the client's first bytes landed: give them that
            // moment, letting other work run first, before paying for a registration.
            yielded = true;
            tokio::task::yield_now().await;
            read = sock.try_read(&mut buf[got..]);
        }
        let read = match read {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match timeout_at(deadline, sock.read(&mut buf[got..])).await {
                    Err(_) => return Outcome::RequestTimeout,
                    Ok(read) => read,
                }
            }
            read => read,
        };
        match read {
            Ok(0) if awaiting_proxy => return Outcome::BadProxyHeader(proxy::Refusal::Cut(got)),
            Ok(0) => return Outcome::RequestCut(got - at),
            Ok(n) => got += n,
            Err(e) => return Outcome::ClientGone(e),
        }
        if awaiting_proxy {
            match proxy::parse(&buf[..got]) {
                Err(e) => return Outcome::BadProxyHeader(e),
                Ok(None) => want = got + 1,
                Ok(Some(found)) => {
                    if let Some(client) = found.client {
                        record.via = Some(record.client);
                        record.client = client;
                    }
                    if let Err(refused) = admit(ctx, record) {
                        return refused;
                    }
                    awaiting_proxy = false;
                    at = found.len;
                    want = at + REQUEST_HEADER_LEN;
                }
            }
        }
        if header.is_none() && !awaiting_proxy && got >= at + REQUEST_HEADER_LEN {
            let fixed: [u8; REQUEST_HEADER_LEN] =
                buf[at..at + REQUEST_HEADER_LEN].try_into().unwrap();
            match RequestHeader::decode(&fixed) {
                Ok(h) => {
                    want += usize::from(h.name_len);
                    header = Some(h);
                }
                Err(e) => return Outcome::BadRequest(e),
            }
        }
        if got < want && !acked {
            // The rest may be held back by the client's Nagle algorithm until what came is
            // acknowledged: do that now rather than when the delayed ACK would.
            sock.ack_now();
            acked = true;
        }
    }
    record.extra = got > want;
    let raw = &buf[at + REQUEST_HEADER_LEN..want];
    record.name = Some(String::from_utf8_lossy(raw).into_owned());
    let mut pace = Pace::new(ctx.rate_limit, ctx.total_rate.as_ref());

    // One arm only without the object-store feature.
    #[allow(clippy::infallible_destructuring_match)]
    let root = match &ctx.source {
        Source::Dir(root) => root,
        #[cfg(feature = "object-store")]
        Source::Store(store) => {
            return match check_name(raw) {
                Err(e) => {
                    let refusal = Outcome::NotFound(e.to_string());
                    refuse(sock, ctx, record, refusal, &mut pace).await
                }
                // Boxed: the store's request state is large, and unboxed it would take
                // room in every connection's future, idle ones included.
                Ok(name) => Box::pin(from_store(sock, ctx, store, name, record, &mut pace)).await,
            };
        }
    };
    let file = match check_name(raw) {
        Err(e) => Err(Outcome::NotFound(e.to_string())),
        Ok(name) => match ctx.files.open(root, name, ctx.resolver, start) {
            Ok(found) => Ok(found),
            Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Outcome::NotFound("no such file".to_owned()))
            }
            // Not the file's fault: the server's, and said so in the log.
            Err(OpenError::Io(e)) if sys::out_of_descriptors(&e) => Err(Outcome::Unavailable(e)),
            Err(e) => Err(Outcome::NotFound(e.to_string())),
        },
    };
    let announced = file.and_then(|f| match announceable(f.len) {
        Ok(len) => Ok((f, len)),
        Err(why) => Err(Outcome::NotFound(why)),
    });
    let (found, len) = match announced {
        Ok(found) => found,
        Err(refusal) => return refuse(sock, ctx, record, refusal, &mut pace).await,
    };
    record.status = Some(1);
    match send_file(
        sock,
        &found.file,
        found.response.as_deref(),
        len,
        ctx.send_timeout,
        ctx.paths,
        &mut pace,
        &mut record.bytes,
    )
    .await
    {
        Ok(()) => Outcome::Sent,
        Err(e) => sent_outcome(e),
    }
}

/// Lets the client in, or says why not: the access rules first, then the limit per address
/// (whose slot the record then holds for the connection's life).
fn admit(ctx: &Ctx, record: &mut Record) -> Result<(), Outcome> {
    let client = record.client.ip();
    judge(&ctx.access_rules, client).map_err(Outcome::Refused)?;
    if let Some(limits) = &ctx.per_address {
        record.slot = Some(
            limits
                .enter(client)
                .ok_or(Outcome::TooMany(limits.limit()))?,
        );
    }
    Ok(())
}

/// Answers StatusCode 0; the connection ends as `refusal` says (or as sending failed).
async fn refuse(
    sock: &mut Sock,
    ctx: &Ctx,
    record: &mut Record,
    refusal: Outcome,
    pace: &mut Pace<'_>,
) -> Outcome {
    record.status = Some(0);
    match send_not_found(sock, ctx.send_timeout, ctx.paths, pace).await {
        Ok(()) => refusal,
        Err(e) => sent_outcome(e),
    }
}

/// Serves a checked name from the object store: one GET, its body streamed to the client.
/// A store that does not answer within the send timeout gets StatusCode 0, like one that
/// fails.
#[cfg(feature = "object-store")]
async fn from_store(
    sock: &mut Sock,
    ctx: &Ctx,
    store: &super::store::Store,
    name: &str,
    record: &mut Record,
    pace: &mut Pace<'_>,
) -> Outcome {
    use super::store::Missing;

    let object = match timeout(ctx.send_timeout, store.get(name)).await {
        Ok(Ok(object)) => object,
        Ok(Err(Missing::NoSuchKey)) => {
            let refusal = Outcome::NotFound("no such key".to_owned());
            return refuse(sock, ctx, record, refusal, pace).await;
        }
        Ok(Err(Missing::Store(why))) => {
            return refuse(sock, ctx, record, Outcome::StoreFailed(why), pace).await
        }
        Err(_) => {
            let why = format!("no answer within {} s", ctx.send_timeout.as_secs_f64());
            return refuse(sock, ctx, record, Outcome::StoreFailed(why), pace).await;
        }
    };
    let len = match announceable(object.size) {
        Ok(len) => len,
        Err(why) => return refuse(sock, ctx, record, Outcome::NotFound(why), pace).await,
    };
    record.status = Some(1);
    match super::send::send_stream(
        sock,
        len,
        object.body,
        ctx.send_timeout,
        pace,
        &mut record.bytes,
    )
    .await
    {
        Ok(()) => Outcome::Sent,
        Err(e) => sent_outcome(e),
    }
}

/// A deadline that never comes (about 30 years on), as tokio uses for the same purpose.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The size to announce (measured with `fstat` on the open file itself, not by name), if the
/// 32-bit DataLength can carry it.
fn announceable(len: u64) -> std::result::Result<u32, String> {
    u32::try_from(len)
        .map_err(|_| format!("file is {len} bytes, more than the 32-bit DataLength can describe"))
}

fn sent_outcome(e: SendError) -> Outcome {
    match e {
        SendError::Stalled => Outcome::Stalled,
        SendError::Shrank => Outcome::Shrank,
        SendError::File(e) => Outcome::ReadFailed(e),
        SendError::Io(e) => Outcome::ClientGone(e),
    }
}

/// Closes a connection after a complete response when the client sent bytes beyond its
/// request: closing with unread data makes the kernel answer with a reset, which can discard
/// response data the client has not read yet. Half-close, drain what it sends, and wait
/// (briefly) for its close. (Like nginx's lingering close, this is done only when extra bytes
/// were seen; a client that sends more only after its request was answered breaks the
/// protocol and may see a reset.)
async fn finish(sock: &mut Sock) {
    let mut scratch = [0u8; 1024];
    if sock.shutdown().await.is_err() {
        return;
    }
    let _ = timeout(Duration::from_secs(1), async {
        loop {
            let n = match sock.try_read(&mut scratch) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sock.read(&mut scratch).await
                }
                n => n,
            };
            if !matches!(n, Ok(n) if n > 0) {
                break;
            }
        }
    })
    .await;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::super::cache::CAPACITY as CACHE_CAPACITY;
    use super::super::listen;
    use super::*;
    use socket2::SockRef;
    use std::future::Future;
    use std::io::{Read, Write};
    use std::task::Poll;

    /// A connection accepted from a [`listen`] socket, its server end as the server holds it
    /// plus a second handle on the same socket for looking at its options.
    fn accepted() -> (Sock, std::net::TcpStream, std::net::TcpStream) {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let (server, _) = loop {
            match listener.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        server.set_nonblocking(true).unwrap();
        let probe = server.try_clone().unwrap();
        (Sock::plain(server), probe, client)
    }

    fn quick_ack(s: &std::net::TcpStream) -> bool {
        SockRef::from(s).tcp_quickack().unwrap()
    }

    /// Waits (5 s at most) until `s` has bytes to read, without reading them.
    fn wait_readable(s: &std::net::TcpStream) {
        let mut fds = [rustix::event::PollFd::new(s, rustix::event::PollFlags::IN)];
        let five = rustix::event::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        let n = rustix::event::poll(&mut fds, Some(&five)).unwrap();
        assert_eq!(n, 1, "the bytes did not arrive");
    }

    #[test]
    fn accepted_connections_start_with_delayed_acks() {
        // Checked before any data arrives: the mode must come from the listening socket.
        let (_sock, probe, _client) = accepted();
        assert!(!quick_ack(&probe));
    }

    #[test]
    fn a_request_in_pieces_is_acknowledged_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let ctx = Ctx {
            source: Source::Dir(Root::new(dir.path()).unwrap()),
            files: FileCache::new(Duration::ZERO, CACHE_CAPACITY),
            request_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            resolver: Resolver::Native,
            paths: Paths::new(false),
            proxy_protocol: false,
            access_rules: Vec::new(),
            per_address: None,
            rate_limit: 0,
            total_rate: None,
            metrics: None,
            access_log: None,
        };
        let (mut sock, probe, mut client) = accepted();
        assert!(!quick_ack(&probe));
        let request = [&[0x49, 0x7E, 1, 0, 5][..], b"a.txt"].concat();
        // The header alone, as from a client whose Nagle algorithm holds back the name
        // until the header is acknowledged.
        client.write_all(&request[..5]).unwrap();
        wait_readable(&probe);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut record = Record::new(probe.peer_addr().unwrap());
        let mut exchange = Box::pin(exchange(&mut sock, &ctx, Instant::now(), &mut record));
        let pending = runtime.block_on(std::future::poll_fn(|cx| {
            Poll::Ready(exchange.as_mut().poll(cx).is_pending())
        }));
        assert!(pending, "the exchange cannot end with half a request");
        // The header has been read: it is acknowledged now, and what follows as it comes.
        assert!(quick_ack(&probe));

        client.write_all(&request[5..]).unwrap();
        let outcome = runtime.block_on(async { timeout(Duration::from_secs(5), exchange).await });
        assert!(matches!(outcome, Ok(Outcome::Sent)));
        // The connection closes with the last handle on it.
        drop((sock, probe));
        let mut response = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_to_end(&mut response).unwrap();
        assert_eq!(
            response,
            [&[0x49, 0x7E, 2, 1, 0, 0, 0, 5][..], b"hello"].concat()
        );
    }
}
