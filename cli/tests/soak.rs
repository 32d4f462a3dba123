//! A bounded soak: many fetches by 64 concurrent clients from one `filefetch serve`, of
//! files from 0 B to 8 MiB (most of them small), every one verified by hash. Zero corrupt
//! files, zero unexpected errors, and the server's memory (VmRSS) and descriptor count are
//! the same at the end as after warming up.
//!
//! 20,000 fetches by default; `SOAK_FETCHES=200000 cargo test -p filefetch-cli --test soak
//! -- --nocapture` (or more) for a longer run.
// The server's memory and descriptors are read from /proc/PID: Linux only.
#![cfg(target_os = "linux")]

#[allow(dead_code)]
#[path = "cli/support.rs"]
mod support;

use std::fs;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use filefetch::{fetch, fetch_bytes, Error, FetchOptions};
use tempfile::tempdir;

use support::serve;

const CLIENTS: usize = 64;

/// xorshift64*: a small deterministic generator, so every run soaks the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A 64-bit FNV-1a style hash over 8-byte words, fast enough for gigabytes at opt-level 1.
fn hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325 ^ data.len() as u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x0000_0100_0000_01B3);
        h = h.rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// File sizes: the edges of the send paths, then random ones skewed toward small.
fn sizes(rng: &mut Rng) -> Vec<usize> {
    let mut sizes = vec![
        0,
        1,
        8,
        4095,
        4096,
        65_535,
        65_536,
        65_537,
        1 << 20,
        8 << 20,
    ];
    for _ in 0..30 {
        let class = rng.below(100);
        let (lo, hi) = match class {
            0..70 => (0, 16 << 10),
            70..90 => (16 << 10, 512 << 10),
            90..98 => (512 << 10, 2 << 20),
            _ => (2 << 20, 8 << 20),
        };
        sizes.push(lo + rng.below((hi - lo) as u64) as usize);
    }
    sizes
}

/// Content for file `i`: its own pattern, so that one file's bytes cannot pass for another's.
fn content(i: usize, len: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&rng.next().to_le_bytes());
    }
    data.truncate(len);
    data
}

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Waits (at most 30 s) for the server's descriptor count to come back to `want`.
fn settle_fds(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = open_fds(pid);
        if n <= want || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn soak_many_fetches_by_64_clients() {
    let total: usize = std::env::var("SOAK_FETCHES")
        .ok()
        .map(|v| v.parse().expect("SOAK_FETCHES must be a number"))
        .unwrap_or(20_000);
    let mut rng = Rng(0x5EED_F00D);
    let sizes = sizes(&mut rng);
    let root = tempdir().unwrap();
    let expected: Vec<(String, usize, u64)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let name = format!("f{i:02}-{len}.bin");
            let data = content(i, len);
            fs::write(root.path().join(&name), &data).unwrap();
            (name, len, hash(&data))
        })
        .collect();
    // Small files stay open for reuse for a short while: short here, so that the idle count
    // below is taken with the cache empty, and the end count shows it lets go of them.
    let (server, port) = serve(root.path(), &["--file-cache", "0.2"]);
    let pid = server.pid();
    let options = FetchOptions::builder()
        .idle_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // The runtime starts after the listening line: one fetch first, then the idle count.
    assert_eq!(
        fetch_bytes("127.0.0.1", port, &expected[2].0, &options)
            .unwrap()
            .len(),
        expected[2].1
    );
    std::thread::sleep(Duration::from_millis(800));
    let fds_idle = open_fds(pid);

    let done = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let not_found = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let warm_rss = AtomicU64::new(0);
    let peak_rss = AtomicU64::new(0);
    let started = Instant::now();

    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (expected, options) = (&expected, &options);
            let (done, bytes, not_found, failures) = (&done, &bytes, &not_found, &failures);
            scope.spawn(move || {
                let mut rng = Rng(0xC11E_0000 + client as u64);
                let out = tempdir().unwrap();
                // Each client does its share; the first ones one more when it does not divide.
                let share = total / CLIENTS + usize::from(client < total % CLIENTS);
                for n in 0..share {
                    let mut pick = rng.below(expected.len() as u64) as usize;
                    // Large files are picked a quarter as often.
                    while expected[pick].1 > (1 << 20) && rng.below(4) != 0 {
                        pick = rng.below(expected.len() as u64) as usize;
                    }
                    let (name, len, want) = &expected[pick];
                    let result = if rng.below(100) < 3 {
                        // A name that does not exist: StatusCode 0 is the right answer.
                        match fetch_bytes("127.0.0.1", port, "no-such-file", options) {
                            Err(Error::NotFound { .. }) => {
                                not_found.fetch_add(1, Ordering::Relaxed);
                                Ok(())
                            }
                            other => Err(format!("missing name: {other:?}")),
                        }
                    } else if n % 10 == 0 {
                        // Every tenth goes to a file, which must appear whole and alone.
                        let opts = options.to_builder().output(out.path()).build().unwrap();
                        fetch("127.0.0.1", port, name, &opts)
                            .map_err(|e| format!("{name}: {e}"))
                            .and_then(|got| {
                                let data = fs::read(&got.path).unwrap();
                                fs::remove_file(&got.path).unwrap();
                                let left = fs::read_dir(out.path()).unwrap().count();
                                if data.len() != *len || hash(&data) != *want || left != 0 {
                                    return Err(format!("{name}: corrupt file on disk"));
                                }
                                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                                Ok(())
                            })
                    } else {
                        match fetch_bytes("127.0.0.1", port, name, options) {
                            Ok(data) if data.len() == *len && hash(&data) == *want => {
                                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                                Ok(())
                            }
                            Ok(data) => Err(format!("{name}: corrupt ({} bytes)", data.len())),
                            Err(e) => Err(format!("{name}: {e}")),
                        }
                    };
                    if let Err(e) = result {
                        failures.lock().unwrap().push(e);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Memory after a tenth of the fetches (everything is warm by then), and the peak.
        scope.spawn(|| {
            let mut warmed = false;
            while done.load(Ordering::Relaxed) < total {
                let rss = status_kb(pid, "VmRSS:");
                peak_rss.fetch_max(rss, Ordering::Relaxed);
                if !warmed && done.load(Ordering::Relaxed) >= total / 10 {
                    warm_rss.store(rss, Ordering::Relaxed);
                    warmed = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    });
    let elapsed = started.elapsed();
    let fds_end = settle_fds(pid, fds_idle);
    let end_rss = status_kb(pid, "VmRSS:");
    let warm = warm_rss.load(Ordering::Relaxed).max(1);
    let failures = failures.into_inner().unwrap();
    println!(
        "soak: {total} fetches by {CLIENTS} clients in {:.1} s, {} MiB verified, {} \
         StatusCode 0 as expected, {} failures; server VmRSS warm {} kB, peak {} kB, end {} \
         kB; descriptors idle {fds_idle}, end {fds_end}",
        elapsed.as_secs_f64(),
        bytes.load(Ordering::Relaxed) >> 20,
        not_found.load(Ordering::Relaxed),
        failures.len(),
        warm,
        peak_rss.load(Ordering::Relaxed),
        end_rss,
    );
    assert!(
        failures.is_empty(),
        "{} failures, first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(done.load(Ordering::Relaxed), total);
    assert_eq!(fds_end, fds_idle, "the server leaked descriptors");
    // Flat: whatever the server holds after warming up, it does not grow with the count.
    assert!(
        end_rss <= warm + warm / 4 + 8 * 1024,
        "server memory grew from {warm} kB to {end_rss} kB"
    );
}
