//! `filefetch-loadgen`: the benchmarks' load generator.
//!
//! `run` drives N concurrent clients for T seconds, each opening a new connection per request
//! (the 0x497E protocol's only way, and HTTP/1.0 with `Connection: close` for nginx), checks
//! every response and reports requests per second and latency percentiles. With `--idle K`,
//! K more connections sit open sending nothing (reopened whenever the server drops them)
//! while the clients are measured. `hold` opens K idle connections and keeps them open, for
//! measuring what idle connections cost a server. `stall` opens K connections, requests a file
//! on each and never reads the response, so that the server's sends stall once the socket
//! buffers are full, for measuring what stalled clients cost a server.
//!
//! The work is spread over `--threads` OS threads (by default one per available core), each
//! running its own single-threaded runtime with an even share of the connections, so that
//! no work stealing or cross-thread wake-ups add to what each request costs the client.
//!
//! The last line on stdout is machine-readable `key=value` pairs; a summary goes to stderr.
//!
//! It builds for every system the server supports. The connection-per-request clients open
//! their sockets with `socket2`: on Linux (and the other systems that take the flags in
//! socket(2)) a request costs exactly socket(2) with `SOCK_NONBLOCK | SOCK_CLOEXEC`,
//! connect(2) and one send; elsewhere the socket is made non-blocking after it is created.
//! CPU time comes from getrusage(2) on Unix and `GetProcessTimes` on Windows.

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, sleep_until, timeout};

/// Longest time one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of each response kept for checking its header.
const HEAD: usize = 1024;
/// Most connections `stall` opens.
const STALL_MAX_CONNECTIONS: u64 = 60_000;
/// Longest time `stall` keeps its connections open, in seconds.
const STALL_MAX_SECONDS: f64 = 3600.0;

#[derive(Debug, Parser)]
#[command(name = "filefetch-loadgen", version)]
struct Cli {
    /// OS threads driving the connections, each with its own single-threaded runtime and an
    /// even share of the connections (0 counts as 1) [default: the number of available cores].
    #[arg(long, global = true, default_value_t = available_cores(), hide_default_value = true)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connection-per-request clients for a fixed time; reports requests/s and latency.
    Run(RunArgs),
    /// Opens idle connections and holds them open.
    Hold(HoldArgs),
    /// Requests a file on each of K connections, never reads, and holds them open.
    Stall(StallArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    /// The 0x497E FileRequest/FileResponse protocol.
    Filefetch,
    /// HTTP/1.0 `GET` with `Connection: close`.
    Http,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Protocol to speak.
    #[arg(long, value_enum)]
    proto: Proto,
    /// File to request (for HTTP, the path without its leading slash).
    #[arg(long)]
    name: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Size every response body must have (checked when given).
    #[arg(long)]
    expect_bytes: Option<u64>,
    /// Idle connections kept open (sending nothing) during the run.
    #[arg(long, default_value_t = 0)]
    idle: usize,
}

#[derive(Debug, clap::Args)]
struct HoldArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Connections to open.
    #[arg(long)]
    connections: usize,
    /// Seconds to hold them once open.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

#[derive(Debug, clap::Args)]
struct StallArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Connections to open (at most 60,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=STALL_MAX_CONNECTIONS))]
    connections: u64,
    /// File to request on each connection (a large one, so that the server's sends stall).
    #[arg(long)]
    name: String,
    /// Seconds to hold them once all are open and their requests sent (at most 3600).
    #[arg(long, default_value_t = 10.0, value_parser = stall_seconds)]
    seconds: f64,
    /// Maximum segment size to announce (TCP_MAXSEG, set before connecting; Unix only).
    /// Over loopback the segments are 64 KiB, and the kernel grows the send buffer of each of
    /// the server's sockets to as much as 4 MiB; with 1448 (Ethernet's) and a small
    /// `--recv-buffer` a stalled connection holds about 0.1 MiB of kernel memory instead.
    #[arg(long, value_parser = clap::value_parser!(u32).range(88..=65495))]
    mss: Option<u32>,
    /// Receive buffer to ask for (SO_RCVBUF, set before connecting, so that the window
    /// offered is small from the start): less of the response waits unread in the kernel.
    #[arg(long, value_name = "BYTES")]
    recv_buffer: Option<usize>,
}

/// A number of seconds for `stall`: positive, at most [`STALL_MAX_SECONDS`].
fn stall_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= STALL_MAX_SECONDS => Ok(s),
        _ => Err(format!(
            "{text:?}: expected seconds, more than 0 and at most {STALL_MAX_SECONDS}"
        )),
    }
}

fn main() {
    let cli = Cli::parse();
    let threads = cli.threads.max(1);
    let code = match cli.command {
        Command::Run(args) => run(args, threads),
        Command::Hold(args) => hold(args, threads),
        Command::Stall(args) => stall(args, threads),
    };
    std::process::exit(code);
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Thread `i`'s share of `total` items split over `threads`: even, remainders to the first.
fn share(total: usize, threads: usize, i: usize) -> usize {
    total / threads + usize::from(i < total % threads)
}

/// Starts `threads` OS threads, each running `work(i)` to completion on its own
/// single-threaded runtime.
fn spawn_threads<F, Fut>(threads: usize, work: F) -> Vec<std::thread::JoinHandle<Fut::Output>>
where
    F: FnOnce(usize) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future,
    Fut::Output: Send + 'static,
{
    (0..threads)
        .map(|i| {
            let work = work.clone();
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("cannot start the runtime");
                    // The closure is used up here, so what it holds is dropped unless the
                    // future takes it.
                    runtime.block_on(work(i))
                })
                .expect("cannot start a thread")
        })
        .collect()
}

/// Waits for every thread and adds up what they counted; `None` if one of them failed.
fn join_and_sum(handles: Vec<std::thread::JoinHandle<usize>>) -> Option<usize> {
    handles
        .into_iter()
        .map(|h| h.join().ok())
        .sum::<Option<usize>>()
}

/// CPU time used so far by the whole process, all threads included: (user, system).
#[cfg(unix)]
fn process_cpu() -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills in the rusage it is given; RUSAGE_SELF is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    // SAFETY: zero-initialised (all-zero is a valid rusage) and filled in by getrusage.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// CPU time used so far by the whole process, all threads included: (user, system).
#[cfg(windows)]
fn process_cpu() -> (Duration, Duration) {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};

    let mut times = [FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    }; 4];
    let [creation, exit, kernel, user] = &mut times;
    // SAFETY: GetCurrentProcess returns a pseudo-handle (nothing to close) with the access
    // GetProcessTimes needs; the four pointers are to distinct live FILETIMEs it fills in.
    if unsafe { GetProcessTimes(GetCurrentProcess(), creation, exit, kernel, user) } == 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    // 100-nanosecond units.
    let d = |t: &FILETIME| {
        Duration::from_nanos(
            ((u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)).saturating_mul(100),
        )
    };
    (d(user), d(kernel))
}

/// What one client task measured.
#[derive(Default)]
struct Tally {
    /// Latency of each successful request, in microseconds.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Adds another tally's figures to this one (the first error seen stays the first).
    fn merge(&mut self, other: Tally) {
        if self.latencies.is_empty() {
            self.latencies = other.latencies;
        } else {
            self.latencies.extend_from_slice(&other.latencies);
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// What the threads of `run` are told to do, in this order.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Open the idle connections (if any) and wait.
    Prepare,
    /// Run the clients until this instant.
    Measure(Instant),
    /// Close everything and return.
    Finish,
}

fn run(args: RunArgs, threads: usize) -> i32 {
    let request: Arc<[u8]> = match args.proto {
        Proto::Filefetch => {
            let name = args.name.as_bytes();
            let Ok(len) = u16::try_from(name.len()) else {
                eprintln!("name too long");
                return 2;
            };
            let mut r = vec![0x49, 0x7E, 1];
            r.extend_from_slice(&len.to_be_bytes());
            r.extend_from_slice(name);
            r.into()
        }
        Proto::Http => format!(
            "GET /{} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            args.name,
            args.addr.ip()
        )
        .into_bytes()
        .into(),
    };

    let open = Arc::new(AtomicU64::new(0));
    let reopened = Arc::new(AtomicU64::new(0));
    let (phase_tx, phase_rx) = watch::channel(Phase::Prepare);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (tally_tx, tally_rx) = mpsc::channel::<(usize, Tally)>();
    let handles = spawn_threads(threads, {
        let (addr, proto, expect) = (args.addr, args.proto, args.expect_bytes);
        let (concurrency, idle) = (args.concurrency, args.idle);
        let (open, reopened) = (open.clone(), reopened.clone());
        // Each thread gets its own copy of what this closure holds.
        move |i| async move {
            // They run until the runtime is dropped, which closes their connections.
            for _ in 0..share(idle, threads, i) {
                tokio::spawn(idle_client(addr, open.clone(), reopened.clone()));
            }
            let _ = ready_tx.send(());
            drop(ready_tx);
            let mut phase = phase_rx;
            let Ok(Phase::Measure(end)) = phase
                .wait_for(|p| !matches!(p, Phase::Prepare))
                .await
                .map(|p| *p)
            else {
                return;
            };
            let clients: Vec<_> = (0..share(concurrency, threads, i))
                .map(|_| tokio::spawn(client(addr, proto, request.clone(), expect, end)))
                .collect();
            let mut all = Tally::default();
            for c in clients {
                all.merge(c.await.expect("client task panicked"));
            }
            let _ = tally_tx.send((i, all));
            drop(tally_tx);
            // Keep the idle connections open until every thread is done measuring.
            let _ = phase.wait_for(|p| matches!(p, Phase::Finish)).await;
        }
    });
    // Every runtime is up and has its idle connections under way (or its thread failed).
    for _ in 0..threads {
        if ready_rx.recv().is_err() {
            break;
        }
    }

    if args.idle > 0 {
        // Let the flood build up before measuring.
        let until = Instant::now() + Duration::from_secs(3);
        while open.load(Ordering::Relaxed) < args.idle as u64 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "idle connections open: {} of {}",
            open.load(Ordering::Relaxed),
            args.idle
        );
    }
    let idle_before = reopened.load(Ordering::Relaxed);

    let cpu_before = process_cpu();
    let start = Instant::now();
    phase_tx.send_replace(Phase::Measure(
        start + Duration::from_secs_f64(args.seconds),
    ));
    let mut tallies: Vec<Option<Tally>> = (0..threads).map(|_| None).collect();
    for _ in 0..threads {
        let Ok((i, t)) = tally_rx.recv() else { break };
        tallies[i] = Some(t);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = process_cpu();
    let idle_open_at_end = open.load(Ordering::Relaxed);
    let idle_reopened = reopened.load(Ordering::Relaxed) - idle_before;
    phase_tx.send_replace(Phase::Finish);
    let mut panicked = false;
    for h in handles {
        panicked |= h.join().is_err();
    }
    let mut all = Tally::default();
    for t in tallies {
        match t {
            Some(t) => all.merge(t),
            None => panicked = true,
        }
    }
    if panicked {
        eprintln!("a client thread failed");
        return 1;
    }

    all.latencies.sort_unstable();
    let ok = all.latencies.len();
    let pct = |p: f64| -> f64 {
        if ok == 0 {
            return f64::NAN;
        }
        let i = ((p * ok as f64).ceil() as usize).clamp(1, ok) - 1;
        f64::from(all.latencies[i]) / 1e3
    };
    let rps = ok as f64 / elapsed;
    // The load generator's own CPU time over the measured interval, per successful request.
    let per_request = |before: Duration, after: Duration| -> f64 {
        if ok == 0 {
            return f64::NAN;
        }
        after.saturating_sub(before).as_secs_f64() * 1e6 / ok as f64
    };
    let user_us = per_request(cpu_before.0, cpu_after.0);
    let system_us = per_request(cpu_before.1, cpu_after.1);
    let cpu_us = user_us + system_us;
    if let Some(e) = &all.first_error {
        eprintln!("first error: {e}");
    }
    eprintln!(
        "{ok} requests in {elapsed:.2} s: {rps:.0} requests/s, p50 {:.3} ms, p99 {:.3} ms, \
         max {:.3} ms, {} errors; load generator CPU {cpu_us:.1} us per request (user \
         {user_us:.1}, system {system_us:.1}; {threads} thread{})",
        pct(0.50),
        pct(0.99),
        pct(1.0),
        all.errors,
        if threads == 1 { "" } else { "s" }
    );
    println!(
        "requests={ok} errors={} seconds={elapsed:.3} rps={rps:.1} p50_ms={:.3} p99_ms={:.3} \
         max_ms={:.3} idle_open={idle_open_at_end} idle_reopened={idle_reopened} \
         client_cpu_us={cpu_us:.2}",
        all.errors,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    0
}

/// One client: request after request, each on a new connection, until `end`.
async fn client(
    addr: SocketAddr,
    proto: Proto,
    request: Arc<[u8]>,
    expect: Option<u64>,
    end: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies: Vec::with_capacity(1 << 16),
        ..Tally::default()
    };
    let peer = Peer::new(addr, SocketOptions::default());
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::with_capacity(HEAD);
    // One timer for all of this client's requests, re-armed lazily rather than set and
    // cancelled for each: it stands at the deadline of some earlier request (never later
    // than the current one's), and when it goes off early it moves to the current deadline.
    let timer = sleep(REQUEST_TIMEOUT);
    tokio::pin!(timer);
    let mut t0 = Instant::now();
    while t0 < end {
        let deadline = tokio::time::Instant::from_std(t0) + REQUEST_TIMEOUT;
        let request = one_request(&peer, proto, &request, expect, &mut buf, &mut head);
        tokio::pin!(request);
        let result = loop {
            tokio::select! {
                biased;
                r = &mut request => break r,
                () = &mut timer => {
                    if tokio::time::Instant::now() >= deadline {
                        break Err("timed out".into());
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        };
        let t1 = Instant::now();
        match result {
            Ok(()) => {
                let us = (t1 - t0).as_micros();
                tally.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
        t0 = t1;
    }
    tally
}

async fn one_request(
    peer: &Peer,
    proto: Proto,
    request: &[u8],
    expect: Option<u64>,
    buf: &mut [u8],
    head: &mut Vec<u8>,
) -> Result<(), String> {
    let mut stream = connect_and_request(peer, request).await?;
    head.clear();
    let mut total = 0u64;
    loop {
        let n = stream
            .read(buf)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        if head.len() < HEAD {
            let take = n.min(HEAD - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        total += n as u64;
    }
    let body = match proto {
        Proto::Filefetch => {
            if head.len() < 8 || head[..4] != [0x49, 0x7E, 2, 1] {
                return Err(format!(
                    "bad response header: {:?}",
                    &head[..head.len().min(8)]
                ));
            }
            let len = u64::from(u32::from_be_bytes(head[4..8].try_into().unwrap()));
            if total != 8 + len {
                return Err(format!("got {} of {len} bytes", total.saturating_sub(8)));
            }
            len
        }
        Proto::Http => {
            if !(head.starts_with(b"HTTP/1.") && head.get(9..12) == Some(b"200")) {
                return Err(format!(
                    "bad status line: {:?}",
                    String::from_utf8_lossy(&head[..head.len().min(20)])
                ));
            }
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Err("no end of header".into());
            };
            total - (end as u64 + 4)
        }
    };
    match expect {
        Some(want) if want != body => Err(format!("body of {body} bytes, expected {want}")),
        _ => Ok(()),
    }
}

/// Opens a connection to `peer` and sends all of `request` on it.
async fn connect_and_request(peer: &Peer, request: &[u8]) -> Result<TcpStream, String> {
    let (stream, sent) = peer.connect_and_send(request)?;
    let mut stream = TcpStream::from_std(stream).map_err(|e| format!("register: {e}"))?;
    if sent < request.len() {
        if sent == 0 {
            // Still connecting: wait for the outcome.
            stream
                .writable()
                .await
                .map_err(|e| format!("connect: {e}"))?;
            if let Some(e) = stream.take_error().map_err(|e| format!("connect: {e}"))? {
                return Err(format!("connect: {e}"));
            }
        }
        stream
            .write_all(&request[sent..])
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    Ok(stream)
}

/// The server's address, ready for connect(2), and how to open a socket for it.
struct Peer {
    addr: SockAddr,
    domain: Domain,
    /// Options to set before connecting (`stall`).
    options: SocketOptions,
}

/// Socket options set before connecting (none for `run`).
#[derive(Debug, Clone, Copy, Default)]
struct SocketOptions {
    /// TCP_MAXSEG.
    mss: Option<u32>,
    /// SO_RCVBUF.
    recv_buffer: Option<usize>,
}

/// A new non-blocking TCP socket, close-on-exec (not inherited, on Windows), in one
/// socket(2) call where the system takes the flags there.
#[cfg(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "illumos",
    target_os = "linux",
    target_os = "netbsd",
    target_os = "openbsd",
))]
fn new_socket(domain: Domain) -> io::Result<Socket> {
    Socket::new_raw(domain, Type::STREAM.nonblocking().cloexec(), None)
}

/// A new non-blocking TCP socket, close-on-exec (not inherited, on Windows), in one
/// socket(2) call where the system takes the flags there.
#[cfg(not(any(
    target_os = "android",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "fuchsia",
    target_os = "illumos",
    target_os = "linux",
    target_os = "netbsd",
    target_os = "openbsd",
)))]
fn new_socket(domain: Domain) -> io::Result<Socket> {
    // Sets close-on-exec (no inheritance on Windows, SO_NOSIGPIPE on Apple systems) itself.
    let socket = Socket::new(domain, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Whether connect(2) on a non-blocking socket has started the handshake and left it under
/// way.
#[cfg(unix)]
fn connect_in_progress(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINPROGRESS)
}

/// Whether connect on a non-blocking socket has started the handshake and left it under
/// way (WSAEWOULDBLOCK).
#[cfg(windows)]
fn connect_in_progress(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

#[cfg(unix)]
fn set_mss(socket: &Socket, mss: u32) -> io::Result<()> {
    socket.set_tcp_mss(mss)
}

/// Windows has no TCP_MAXSEG to set before connecting: the option is ignored there.
#[cfg(windows)]
fn set_mss(_socket: &Socket, _mss: u32) -> io::Result<()> {
    Ok(())
}

impl Peer {
    fn new(addr: SocketAddr, options: SocketOptions) -> Peer {
        Peer {
            addr: SockAddr::from(addr),
            domain: Domain::for_address(addr),
            options,
        }
    }

    /// Opens a non-blocking connection and sends as much of `request` as the socket takes at
    /// once. Over loopback the handshake completes within connect(2), so the request normally
    /// leaves right away, with no wait for writability and no getsockopt(SO_ERROR) round;
    /// while the connection is still being made nothing is sent (0 is returned) and the
    /// caller waits for it.
    fn connect_and_send(&self, request: &[u8]) -> Result<(std::net::TcpStream, usize), String> {
        use std::io::{ErrorKind, Write};

        let socket = new_socket(self.domain).map_err(|e| format!("socket: {e}"))?;
        if let Some(mss) = self.options.mss {
            set_mss(&socket, mss).map_err(|e| format!("TCP_MAXSEG: {e}"))?;
        }
        if let Some(size) = self.options.recv_buffer {
            socket
                .set_recv_buffer_size(size)
                .map_err(|e| format!("SO_RCVBUF: {e}"))?;
        }
        let connecting = match socket.connect(&self.addr) {
            Ok(()) => false,
            Err(e) if connect_in_progress(&e) => true,
            Err(e) => return Err(format!("connect: {e}")),
        };
        let stream = std::net::TcpStream::from(socket);
        match (&stream).write(request) {
            Ok(n) => Ok((stream, n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok((stream, 0)),
            // Where the system refuses data on a socket still connecting.
            Err(e) if connecting && e.kind() == ErrorKind::NotConnected => Ok((stream, 0)),
            // A connection that failed reports it on the first send.
            Err(e) => match e.kind() {
                ErrorKind::ConnectionRefused
                | ErrorKind::TimedOut
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable => Err(format!("connect: {e}")),
                _ => Err(format!("send: {e}")),
            },
        }
    }
}

/// A connection that sends nothing; when the server drops it, it comes back. Runs until its
/// runtime is dropped.
async fn idle_client(addr: SocketAddr, open: Arc<AtomicU64>, reopened: Arc<AtomicU64>) {
    let mut scratch = [0u8; 64];
    let mut first = true;
    loop {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !first {
            reopened.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        open.fetch_add(1, Ordering::Relaxed);
        // Wait for the server to give up on us (or for the run to end: the task is dropped).
        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn hold(args: HoldArgs, threads: usize) -> i32 {
    // Connect in waves (256 at a time over all threads) so the listen backlog is not overrun.
    let gate = Arc::new(Semaphore::new(256));
    let (deadline_tx, deadline_rx) = watch::channel(None::<tokio::time::Instant>);
    let (open_tx, open_rx) = mpsc::channel::<usize>();
    let handles = spawn_threads(threads, {
        let (addr, connections) = (args.addr, args.connections);
        move |i| async move {
            let n = share(connections, threads, i);
            let mut tasks = Vec::with_capacity(n);
            for _ in 0..n {
                let gate = gate.clone();
                tasks.push(tokio::spawn(async move {
                    let _permit = gate.acquire().await.ok()?;
                    timeout(Duration::from_secs(10), TcpStream::connect(addr))
                        .await
                        .ok()?
                        .ok()
                }));
            }
            let mut streams = Vec::with_capacity(n);
            for t in tasks {
                if let Ok(Some(s)) = t.await {
                    streams.push(s);
                }
            }
            let _ = open_tx.send(streams.len());
            drop(open_tx);
            let mut deadline = deadline_rx;
            let Ok(until) = deadline.wait_for(Option::is_some).await.map(|d| *d) else {
                return 0;
            };
            // The runtime keeps polling the connections meanwhile, so `try_read` below sees
            // the ones the server closed.
            sleep_until(until.expect("waited for a deadline")).await;
            let mut scratch = [0u8; 16];
            streams
                .iter()
                .filter(|s| {
                    matches!(s.try_read(&mut scratch),
                             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                })
                .count()
        }
    });
    let open: usize = open_rx.iter().take(threads).sum();
    println!("open={open}");
    eprintln!("{open} of {} connections open", args.connections);
    deadline_tx.send_replace(Some(
        tokio::time::Instant::now() + Duration::from_secs_f64(args.seconds),
    ));
    let Some(still) = join_and_sum(handles) else {
        eprintln!("a thread failed");
        return 1;
    };
    println!("still_open={still}");
    0
}

fn stall(args: StallArgs, threads: usize) -> i32 {
    let name = args.name.as_bytes();
    let Ok(len) = u16::try_from(name.len()) else {
        eprintln!("name too long");
        return 2;
    };
    let mut request = vec![0x49, 0x7E, 1];
    request.extend_from_slice(&len.to_be_bytes());
    request.extend_from_slice(name);
    let request: Arc<[u8]> = request.into();
    #[cfg(windows)]
    if args.mss.is_some() {
        eprintln!("--mss is ignored on Windows");
    }
    let connections = usize::try_from(args.connections).unwrap_or(usize::MAX);

    // Connect in waves (256 at a time over all threads) so the listen backlog is not overrun.
    let gate = Arc::new(Semaphore::new(256));
    let (deadline_tx, deadline_rx) = watch::channel(None::<tokio::time::Instant>);
    let (open_tx, open_rx) = mpsc::channel::<(usize, Option<String>)>();
    let handles = spawn_threads(threads, {
        let addr = args.addr;
        let options = SocketOptions {
            mss: args.mss,
            recv_buffer: args.recv_buffer,
        };
        move |i| async move {
            let n = share(connections, threads, i);
            let mut tasks = Vec::with_capacity(n);
            for _ in 0..n {
                let (gate, request) = (gate.clone(), request.clone());
                tasks.push(tokio::spawn(async move {
                    let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                    let peer = Peer::new(addr, options);
                    timeout(
                        Duration::from_secs(10),
                        connect_and_request(&peer, &request),
                    )
                    .await
                    .map_err(|_| "connect and send: timed out".to_owned())?
                }));
            }
            let mut streams = Vec::with_capacity(n);
            let mut first_error = None;
            for t in tasks {
                match t.await {
                    Ok(Ok(s)) => streams.push(s),
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            let _ = open_tx.send((streams.len(), first_error));
            drop(open_tx);
            let mut deadline = deadline_rx;
            let Ok(until) = deadline.wait_for(Option::is_some).await.map(|d| *d) else {
                return 0;
            };
            // Nothing is ever read. The runtime keeps polling the connections meanwhile, so
            // the readiness checked below shows the ones the server reset or closed (data
            // the server sent is waiting unread on every one of them).
            sleep_until(until.expect("waited for a deadline")).await;
            let mut still = 0;
            for s in &streams {
                let closed = match timeout(Duration::ZERO, s.ready(Interest::READABLE)).await {
                    Ok(Ok(ready)) => ready.is_read_closed() || ready.is_error(),
                    Ok(Err(_)) => true,
                    Err(_) => false,
                };
                if !closed && matches!(s.take_error(), Ok(None)) {
                    still += 1;
                }
            }
            still
        }
    });
    let mut open = 0;
    for (n, error) in open_rx.iter().take(threads) {
        open += n;
        if let Some(e) = error {
            eprintln!("first error: {e}");
        }
    }
    println!("open={open}");
    eprintln!(
        "{open} of {} connections open, each with its request sent and nothing read",
        args.connections
    );
    deadline_tx.send_replace(Some(
        tokio::time::Instant::now() + Duration::from_secs_f64(args.seconds),
    ));
    let Some(still) = join_and_sum(handles) else {
        eprintln!("a thread failed");
        return 1;
    };
    eprintln!("{still} still open after {} s", args.seconds);
    println!(
        "connections={} open={open} still_open={still}",
        args.connections
    );
    0
}
