//! Memory per stalled client: a client that requests a large file and never reads costs the
//! server no buffer on either send path (the buffer of the portable path belongs to the
//! worker thread and is never held while a client waits). Measured as the growth of this
//! process's resident memory (Linux's /proc) while 250 clients stall, against a budget of
//! 16 KiB each.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::TestServer;

const CLIENTS: usize = 250;
const BUDGET_PER_CLIENT: u64 = 16 * 1024;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A connection that asks for `name` and then reads nothing, with a small receive buffer so
/// that the server's sends stall early.
fn stalled_client(server: &TestServer, name: &str) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&server.addr().into(), Duration::from_secs(5))
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(&support::request(name.as_bytes()))
        .unwrap();
    stream
}

/// The growth of resident memory while `CLIENTS` clients stall on a 32 MiB file.
fn growth_with_stalled_clients(portable: bool) -> u64 {
    let server = TestServer::with(|c| {
        c.portable(portable)
            .send_timeout(Duration::from_secs(60))
            .threads(2)
    });
    let path = server.root.path().join("big.bin");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    // Warm up: threads, their buffers, the first registrations.
    let warm: Vec<TcpStream> = (0..8).map(|_| stalled_client(&server, "big.bin")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_bytes();
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| stalled_client(&server, "big.bin"))
        .collect();
    // Let every connection reach its stall (bounded), then take the largest reading.
    let until = Instant::now() + Duration::from_secs(2);
    let mut peak = rss_bytes();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_bytes());
    }
    drop((warm, clients));
    peak.saturating_sub(before)
}

#[test]
fn stalled_clients_cost_no_send_buffer_on_either_path() {
    for portable in [true, false] {
        let growth = growth_with_stalled_clients(portable);
        let budget = CLIENTS as u64 * BUDGET_PER_CLIENT;
        eprintln!(
            "{} path: {CLIENTS} stalled clients grew RSS by {} KiB ({} B each; budget {} KiB)",
            if portable { "portable" } else { "fast" },
            growth / 1024,
            growth / CLIENTS as u64,
            budget / 1024
        );
        assert!(
            growth <= budget,
            "{CLIENTS} stalled clients on the {} path took {growth} bytes, over {budget}",
            if portable { "portable" } else { "fast" }
        );
    }
}
