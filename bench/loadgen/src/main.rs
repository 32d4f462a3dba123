//! `filefetch-loadgen`: the benchmarks' load generator.
//!
//! `run` drives N concurrent clients for T seconds, each opening a new connection per request
//! (the 0x497E protocol's only way, and HTTP/1.0 with `Connection: close` for nginx), checks
//! every response and reports requests per second and latency percentiles. With `--idle K`,
//! K more connections sit open sending nothing (reopened whenever the server drops them)
//! while the clients are measured. `hold` opens K idle connections and keeps them open, for
//! measuring what idle connections cost a server.
//!
//! The last line on stdout is machine-readable `key=value` pairs; a summary goes to stderr.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout};

/// Longest time one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of each response kept for checking its header.
const HEAD: usize = 1024;

#[derive(Debug, Parser)]
#[command(name = "filefetch-loadgen", version)]
struct Cli {
    /// Runtime threads driving the connections.
    #[arg(long, global = true, default_value_t = 1)]
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

fn main() {
    let cli = Cli::parse();
    let runtime = match cli.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("cannot start the runtime");
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Hold(args) => hold(args).await,
        }
    });
    std::process::exit(code);
}

/// What one client task measured.
#[derive(Default)]
struct Tally {
    /// Latency of each successful request, in microseconds.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn run(args: RunArgs) -> i32 {
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

    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicU64::new(0));
    let reopened = Arc::new(AtomicU64::new(0));
    let mut idlers = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        idlers.push(tokio::spawn(idle_client(
            args.addr,
            stop.clone(),
            open.clone(),
            reopened.clone(),
        )));
    }
    if args.idle > 0 {
        // Let the flood build up before measuring.
        let until = Instant::now() + Duration::from_secs(3);
        while open.load(Ordering::Relaxed) < args.idle as u64 && Instant::now() < until {
            sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "idle connections open: {} of {}",
            open.load(Ordering::Relaxed),
            args.idle
        );
    }
    let idle_before = reopened.load(Ordering::Relaxed);

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut clients = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        clients.push(tokio::spawn(client(
            args.addr,
            args.proto,
            request.clone(),
            args.expect_bytes,
            end,
        )));
    }
    let mut all = Tally::default();
    for c in clients {
        let t = c.await.expect("client task panicked");
        all.latencies.extend_from_slice(&t.latencies);
        all.errors += t.errors;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let idle_open_at_end = open.load(Ordering::Relaxed);
    let idle_reopened = reopened.load(Ordering::Relaxed) - idle_before;
    stop.store(true, Ordering::Relaxed);
    for i in idlers {
        i.abort();
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
    if let Some(e) = &all.first_error {
        eprintln!("first error: {e}");
    }
    eprintln!(
        "{ok} requests in {elapsed:.2} s: {rps:.0} requests/s, p50 {:.3} ms, p99 {:.3} ms, \
         max {:.3} ms, {} errors",
        pct(0.50),
        pct(0.99),
        pct(1.0),
        all.errors
    );
    println!(
        "requests={ok} errors={} seconds={elapsed:.3} rps={rps:.1} p50_ms={:.3} p99_ms={:.3} \
         max_ms={:.3} idle_open={idle_open_at_end} idle_reopened={idle_reopened}",
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
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::with_capacity(HEAD);
    while Instant::now() < end {
        let t0 = Instant::now();
        let result = timeout(
            REQUEST_TIMEOUT,
            one_request(addr, proto, &request, expect, &mut buf, &mut head),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match result {
            Ok(()) => {
                let us = t0.elapsed().as_micros();
                tally.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }
    tally
}

async fn one_request(
    addr: SocketAddr,
    proto: Proto,
    request: &[u8],
    expect: Option<u64>,
    buf: &mut [u8],
    head: &mut Vec<u8>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
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

/// A connection that sends nothing; when the server drops it, it comes back.
async fn idle_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    open: Arc<AtomicU64>,
    reopened: Arc<AtomicU64>,
) {
    let mut scratch = [0u8; 64];
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !first {
            reopened.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        open.fetch_add(1, Ordering::Relaxed);
        // Wait for the server to give up on us (or for the run to end: the task is aborted).
        while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn hold(args: HoldArgs) -> i32 {
    // Connect in waves so the listen backlog is not overrun.
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let gate = gate.clone();
        let addr = args.addr;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.ok()?;
            timeout(Duration::from_secs(10), TcpStream::connect(addr))
                .await
                .ok()?
                .ok()
        }));
    }
    let mut streams = Vec::with_capacity(args.connections);
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            streams.push(s);
        }
    }
    println!("open={}", streams.len());
    eprintln!("{} of {} connections open", streams.len(), args.connections);
    sleep(Duration::from_secs_f64(args.seconds)).await;
    let mut scratch = [0u8; 16];
    let still = streams
        .iter()
        .filter(|s| {
            matches!(s.try_read(&mut scratch), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    println!("still_open={still}");
    0
}
