//! Rate limits, measured as the client sees them: bytes received over time, sampled after
//! every read. The bound checked is an upper one, `rate × t + burst` from before the
//! connection was made, which a slow machine can only stay further below; nothing here
//! asserts how long anything took. Every transfer must still arrive byte for byte.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use filefetch::{ServerConfig, ServerConfigBuilder};

use crate::support::{found, pattern, raw, request, TestServer};

/// The rate the tests pace at: 256 KiB/s.
const RATE: u64 = 256 * 1024;

/// How far ahead of its rate a bucket may run, as documented: a tenth of a second's worth,
/// at least 1 KiB.
fn burst(rate: u64) -> u64 {
    (rate / 10).max(1024)
}

/// When, after `start`, how many bytes of the response had arrived in all.
type Samples = Vec<(Duration, u64)>;

/// Asks `addr` for `name` and reads the whole response, noting after every read the time
/// since `start` and the bytes so far.
fn timed_fetch(addr: SocketAddr, name: &str, start: Instant) -> (Vec<u8>, Samples) {
    let mut s = raw(addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&request(name.as_bytes())).unwrap();
    let mut reply = Vec::new();
    let mut samples = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).expect("the response stopped");
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        samples.push((start.elapsed(), reply.len() as u64));
    }
    (reply, samples)
}

/// The first sample by which more than `rate × t + burst` bytes had arrived, if any.
fn first_over(samples: &Samples, rate: u64) -> Option<(Duration, u64)> {
    samples
        .iter()
        .copied()
        .find(|&(t, bytes)| bytes as f64 > rate as f64 * t.as_secs_f64() + burst(rate) as f64)
}

/// Checks that by every sample no more than `rate × t + burst` bytes had arrived.
fn within(samples: &Samples, rate: u64) {
    if let Some((t, bytes)) = first_over(samples, rate) {
        panic!("{bytes} bytes after {t:?}: more than {rate} bytes/s allows");
    }
}

/// A 1 MiB file from a server limited to [`RATE`] per connection, with `configure`'s paths.
fn paced_file(configure: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder) {
    let server = TestServer::with(|c| configure(c.rate_limit(RATE)));
    let data = pattern(1 << 20);
    server.put("big.bin", &data);
    let start = Instant::now();
    let (reply, samples) = timed_fetch(server.addr(), "big.bin", start);
    assert!(reply[..8] == found(1 << 20), "header {:?}", &reply[..8]);
    assert!(reply[8..] == data[..], "the data differs");
    within(&samples, RATE);
}

/// Large files leave with `sendfile` (on Linux, macOS, FreeBSD), in paced chunks.
#[test]
fn a_connection_is_paced_on_the_zero_copy_path() {
    paced_file(|c| c);
}

/// The buffered path, which Windows takes for every file.
#[test]
fn a_connection_is_paced_on_the_buffered_path() {
    paced_file(|c| c.portable(true));
}

/// A small file (one write when unpaced) is cut into paced writes too.
#[test]
fn a_small_file_is_paced() {
    let rate = 16 * 1024;
    let server = TestServer::with(|c| c.rate_limit(rate));
    let data = pattern(40 * 1024);
    server.put("small.bin", &data);
    let (reply, samples) = timed_fetch(server.addr(), "small.bin", Instant::now());
    assert!(reply[8..] == data[..], "the data differs");
    within(&samples, rate);
}

/// The server's limit is shared: two clients at once get no more than it together.
#[test]
fn the_total_limit_paces_all_connections_together() {
    let server = TestServer::with(|c| c.total_rate_limit(RATE));
    let data = pattern(512 * 1024);
    server.put("half.bin", &data);
    let addr = server.addr();
    let start = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || timed_fetch(addr, "half.bin", start)))
        .collect();
    // Every read as an event (when, how many bytes more), in time order: the running sum
    // is what both had received by then.
    let mut events = Vec::new();
    for client in clients {
        let (reply, samples) = client.join().unwrap();
        assert!(reply[8..] == data[..], "the data differs");
        let mut before = 0;
        for (t, total) in samples {
            events.push((t, total - before));
            before = total;
        }
    }
    events.sort();
    let mut sum = 0;
    let together: Samples = events
        .into_iter()
        .map(|(t, more)| {
            sum += more;
            (t, sum)
        })
        .collect();
    within(&together, RATE);
}

/// An object store's body is paced the same way.
#[cfg(feature = "object-store")]
#[test]
fn a_stream_from_an_object_store_is_paced() {
    use object_store::memory::InMemory;
    use object_store::path::Path as Key;
    use object_store::{ObjectStoreExt, PutPayload};

    use filefetch::Server;

    let store = std::sync::Arc::new(InMemory::new());
    let data = pattern(512 * 1024);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(store.put(
            &Key::parse("big.bin").unwrap(),
            PutPayload::from(data.clone()),
        ))
        .unwrap();
    let config = ServerConfig::builder()
        .object_store(store, "")
        .rate_limit(RATE)
        .build()
        .unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .unwrap()
        .spawn()
        .unwrap();
    let (reply, samples) = timed_fetch(server.local_addr(), "big.bin", Instant::now());
    assert!(reply[8..] == data[..], "the data differs");
    within(&samples, RATE);
}

/// Without a limit nothing is paced: the bound would not hold (the whole file arrives
/// far sooner than the rate allows), which shows the checks above can fail.
#[test]
fn the_check_catches_an_unpaced_transfer() {
    let server = TestServer::start();
    let data = pattern(4 << 20);
    server.put("fast.bin", &data);
    let (reply, samples) = timed_fetch(server.addr(), "fast.bin", Instant::now());
    assert!(reply[8..] == data[..]);
    // Only on a machine so slow that 4 MiB over loopback took 16 s would it hold.
    let (t, _) = samples.last().unwrap();
    assert!(first_over(&samples, RATE).is_some() || *t > Duration::from_secs(15));
}

#[test]
fn limits_are_settings_like_any_other() {
    let config = ServerConfig::builder()
        .rate_limit(RATE)
        .total_rate_limit(u64::MAX)
        .build()
        .unwrap();
    assert_eq!(config.rate_limit(), RATE);
    assert_eq!(config.total_rate_limit(), u64::MAX);
    assert_eq!(ServerConfig::new().rate_limit(), 0);
}
