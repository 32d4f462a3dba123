//! The server's log output: whole lines, written in batches unless a person is watching.
//!
//! `tracing_subscriber::fmt` formats each event into one line and hands it to the writer
//! that [`LogBuf`] makes for it (the [`MakeWriter`] trait). Writing every line with its own
//! write(2) costs the server a system call per connection, so:
//!
//! - lines collect in a buffer, and a small thread of our own (the flusher) writes the
//!   buffer out in one write(2) once it holds [`FLUSH_SIZE`] bytes, and in any case
//!   [`MAX_DELAY`] after the first line in it was logged; when standard output is a
//!   terminal, as soon as a line is there. The thread sleeps while the buffer is empty.
//!   Only the flusher writes: a thread that logs (a server worker) never waits for the
//!   output.
//!
//! Guarantees:
//!
//! - Each event lands whole: the writer made for an event holds the buffer's lock from its
//!   first byte to its last, so no other event can come between them, and batches are taken
//!   from the buffer and written under one output lock, so they leave in order.
//! - Memory is bounded and serving never waits for the log: past [`CAP`] bytes (an output
//!   that is slow or blocked, such as a pipe nobody reads), further lines are dropped and
//!   counted, and once the output takes lines again a line says how many were dropped.
//! - A failed write (EPIPE once stdout is closed, ENOSPC) drops that batch: the server does
//!   not stop or retry, and the next batch is tried in its turn. A batch cut short inside a
//!   line leaves that line unfinished; a newline goes before the next batch so that the
//!   lines after it start whole.
//! - [`LogBuf::flush`] writes out what is buffered, and so does dropping the last handle.
//!   An exit that skips both (`_exit` on a second signal, in `serve.rs`) must flush first:
//!   [`LogBuf::flush_within`] does so without waiting on a blocked output for more than a
//!   given time.

use std::io::{self, IsTerminal, Write};
use std::mem;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// A batch is written once the buffer holds this much...
pub const FLUSH_SIZE: usize = 32 * 1024;
/// ...and at the latest this long after its first line was logged.
pub const MAX_DELAY: Duration = Duration::from_millis(100);
/// Past this much buffered, the thread logging writes the buffer out itself.
pub const CAP: usize = 1024 * 1024;

/// When a buffer is written out (the constants above, or smaller values in tests).
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub flush_size: usize,
    pub max_delay: Duration,
    pub cap: usize,
}

impl Batching {
    pub const DEFAULT: Batching = Batching {
        flush_size: FLUSH_SIZE,
        max_delay: MAX_DELAY,
        cap: CAP,
    };

    /// For a person watching: each line as soon as the flusher gets to it.
    pub const AT_ONCE: Batching = Batching {
        flush_size: 1,
        max_delay: Duration::ZERO,
        cap: CAP,
    };
}

/// The log's destination, shared by every event; clones are handles to the same buffer.
#[derive(Clone)]
pub struct LogBuf {
    shared: Arc<Shared>,
    /// Dropped with the last handle: writes out what is left and stops the flusher.
    _closer: Arc<Closer>,
}

struct Shared {
    /// `None`: every event is written at once (a terminal, or no flusher thread).
    batching: Option<Batching>,
    /// Lock order: `output` before `pending`, never the reverse. Logging takes only
    /// `pending`, and never holds it across a write(2).
    pending: Mutex<Pending>,
    /// Wakes the flusher: a first line in the buffer, a full batch, or the end.
    wake: Condvar,
    /// Writes the line that says how many lines were dropped, in the log's format.
    dropped_line: DroppedLine,
    output: Mutex<Output>,
}

/// The lines logged and not yet written.
struct Pending {
    buf: Vec<u8>,
    /// When the first line now in `buf` was logged (`None` while `buf` is empty).
    since: Option<Instant>,
    /// Set when the last handle is dropped; the flusher ends.
    closed: bool,
    /// Lines dropped since the last batch was taken, for want of room.
    dropped: u64,
}

/// Where batches go, and the batch being written.
struct Output {
    sink: Box<dyn Write + Send>,
    /// Swapped with [`Pending::buf`] to take a batch, so that both allocations are reused.
    batch: Vec<u8>,
    /// The last batch was cut short inside a line.
    torn: bool,
}

/// Appends the line saying that this many lines were dropped.
pub type DroppedLine = fn(&mut Vec<u8>, u64);

/// The line saying how many lines were dropped, in the text format.
pub fn dropped_text_line(out: &mut Vec<u8>, dropped: u64) {
    let _ = writeln!(
        out,
        "filefetch: {dropped} log lines dropped: the output did not keep up"
    );
}

impl LogBuf {
    /// The server's standard output: line by line on a terminal, in batches otherwise.
    /// Dropped lines are counted by a line that `dropped_line` writes.
    pub fn stdout(dropped_line: DroppedLine) -> LogBuf {
        let batching = if io::stdout().is_terminal() {
            Batching::AT_ONCE
        } else {
            Batching::DEFAULT
        };
        LogBuf::with_dropped_line(Box::new(Stdout), Some(batching), dropped_line)
    }

    /// A log writing to `sink`: in batches as `batching` says, or each event at once.
    #[cfg(test)]
    pub fn new(sink: Box<dyn Write + Send>, batching: Option<Batching>) -> LogBuf {
        LogBuf::with_dropped_line(sink, batching, dropped_text_line)
    }

    /// [`LogBuf::new`], counting dropped lines with a line that `dropped_line` writes.
    pub fn with_dropped_line(
        sink: Box<dyn Write + Send>,
        batching: Option<Batching>,
        dropped_line: DroppedLine,
    ) -> LogBuf {
        // The flusher gets the shared state once it exists; if the thread cannot be
        // started, nothing would write a batch on time, so every event is written at once.
        let (send_shared, get_shared) = mpsc::channel::<Arc<Shared>>();
        let batching = batching.filter(|&b| {
            thread::Builder::new()
                .name("filefetch-log".into())
                .spawn(move || {
                    if let Ok(shared) = get_shared.recv() {
                        shared.flusher(b);
                    }
                })
                .is_ok()
        });
        let shared = Arc::new(Shared {
            batching,
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                since: None,
                closed: false,
                dropped: 0,
            }),
            wake: Condvar::new(),
            dropped_line,
            output: Mutex::new(Output {
                sink,
                batch: Vec::new(),
                torn: false,
            }),
        });
        if batching.is_some() {
            let _ = send_shared.send(shared.clone());
        }
        LogBuf {
            _closer: Arc::new(Closer(shared.clone())),
            shared,
        }
    }

    /// Writes out everything logged so far, waiting for the output if it is slow.
    pub fn flush(&self) {
        self.shared.write_out(1);
    }

    /// Appends `bytes` (whole lines) and writes them out at once, with whatever was logged
    /// before them: for lines a person or a script is waiting for, such as the addresses
    /// the server listens on.
    pub fn write_now(&self, bytes: &[u8]) {
        let _ = self.make_writer().write_all(bytes);
        self.flush();
    }

    /// Like [`flush`](LogBuf::flush), but waits at most `limit` (the write carries on, on
    /// a thread of its own, if it takes longer). Whether everything was written in time.
    pub fn flush_within(&self, limit: Duration) -> bool {
        let (done, finished) = mpsc::channel();
        let log = self.clone();
        let started = thread::Builder::new()
            .name("filefetch-log-flush".into())
            .spawn(move || {
                log.flush();
                let _ = done.send(());
            });
        started.is_ok() && finished.recv_timeout(limit).is_ok()
    }

    /// How many bytes are buffered, not yet taken for writing.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        lock(&self.shared.pending).buf.len()
    }
}

impl std::fmt::Debug for LogBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuf")
            .field("batching", &self.shared.batching)
            .finish_non_exhaustive()
    }
}

impl<'a> MakeWriter<'a> for LogBuf {
    type Writer = EventWriter<'a>;

    /// Called once per event, after it has been formatted; the event is then written with
    /// `write_all` and the writer dropped.
    fn make_writer(&'a self) -> EventWriter<'a> {
        let pending = lock(&self.shared.pending);
        EventWriter {
            start: pending.buf.len(),
            pending: Some(pending),
            shared: &self.shared,
        }
    }
}

/// Appends one event to the buffer. It holds the buffer's lock while it lives, so the
/// event lands whole however many writes it takes; dropping it ends the event.
pub struct EventWriter<'a> {
    shared: &'a Shared,
    /// Always `Some` until dropped.
    pending: Option<MutexGuard<'a, Pending>>,
    /// Where the event begins in the buffer.
    start: usize,
}

impl Write for EventWriter<'_> {
    /// Appending to memory never fails, so the formatter never reports a write error.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(pending) = &mut self.pending {
            pending.buf.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.shared.appended(pending, self.start);
        }
    }
}

impl Shared {
    /// After an event was appended at `start` (the lock still held): decides who writes
    /// it out and when.
    fn appended(&self, mut pending: MutexGuard<'_, Pending>, start: usize) {
        let len = pending.buf.len();
        if len == start {
            return;
        }
        let Some(b) = self.batching else {
            drop(pending);
            self.write_out(1);
            return;
        };
        if len > b.cap && start > 0 {
            // The flusher is not keeping up (the output is slow or blocked): drop this
            // line rather than wait or let the buffer grow, and count it.
            pending.buf.truncate(start);
            pending.dropped += 1;
            return;
        }
        // The flusher is woken only when it has something new to do (each wake-up is a
        // system call): a first line to time, or a full batch.
        let wake = if start == 0 {
            pending.since = Some(Instant::now());
            true
        } else {
            start < b.flush_size && len >= b.flush_size
        };
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Takes what is buffered, if it is at least `at_least` bytes (and not nothing), with a
    /// line counting the lines dropped since the last time, and writes it out. Returns once
    /// it is written or dropped.
    fn write_out(&self, at_least: usize) {
        let mut output = lock(&self.output);
        {
            let mut pending = lock(&self.pending);
            if pending.buf.is_empty() || pending.buf.len() < at_least {
                return;
            }
            mem::swap(&mut pending.buf, &mut output.batch);
            pending.since = None;
            let dropped = mem::take(&mut pending.dropped);
            if dropped > 0 {
                (self.dropped_line)(&mut output.batch, dropped);
            }
        }
        output.write_batch();
    }

    /// The flusher thread: writes the buffer out when it is full or its first line is
    /// due, and sleeps while it is empty.
    fn flusher(&self, b: Batching) {
        let mut pending = lock(&self.pending);
        loop {
            let Some(since) = pending.since else {
                if pending.closed {
                    return;
                }
                pending = self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let due = since + b.max_delay;
            let now = Instant::now();
            if now < due && pending.buf.len() < b.flush_size && !pending.closed {
                pending = self
                    .wake
                    .wait_timeout(pending, due - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            drop(pending);
            self.write_out(1);
            pending = lock(&self.pending);
        }
    }
}

impl Output {
    /// Writes `batch` once, then empties it. A failure drops the rest of it.
    fn write_batch(&mut self) {
        if self.torn {
            match write_fully(&mut *self.sink, b"\n") {
                Ok(()) => self.torn = false,
                Err(_) => {
                    self.batch.clear();
                    return;
                }
            }
        }
        if let Err(written) = write_fully(&mut *self.sink, &self.batch) {
            self.torn = written > 0 && self.batch[written - 1] != b'\n';
        }
        let _ = self.sink.flush();
        self.batch.clear();
    }
}

/// Writes all of `bytes`, or fails with how many were written. Only an interrupted write is
/// retried: any other failure (or a write that takes nothing) gives up, so a dead output
/// costs one failed write per batch and never a loop.
fn write_fully(sink: &mut dyn Write, bytes: &[u8]) -> Result<(), usize> {
    let mut done = 0;
    while done < bytes.len() {
        match sink.write(&bytes[done..]) {
            Ok(0) => return Err(done),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(done),
        }
    }
    Ok(())
}

/// Writes out what is left when the last [`LogBuf`] handle goes, and stops the flusher.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        lock(&self.0.pending).closed = true;
        self.0.wake.notify_one();
        self.0.write_out(1);
    }
}

/// A poisoned lock (a panic while it was held) still guards consistent bytes: keep logging.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Standard output, written with write(2) directly: `std::io::Stdout` would put a line
/// buffer of its own in front of ours, which holds on to data across a failed write.
struct Stdout;

#[cfg(unix)]
impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // SAFETY: write(2) reads at most `bytes.len()` bytes from a live slice. Descriptor 1
        // is not owned or closed by anything here; if it is not open the call fails (EBADF).
        let n = unsafe { libc::write(libc::STDOUT_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(not(unix))]
impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        io::stdout().write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Upper bound for any wait; reached only when something is broken.
    const PATIENCE: Duration = Duration::from_secs(20);

    /// What the probe does with one write call.
    enum Step {
        /// Takes the first `n` bytes only.
        Take(usize),
        /// Fails with EPIPE.
        Fail,
    }

    /// A sink that records what it receives, and can fail or block on demand.
    #[derive(Clone, Default)]
    struct Probe(Arc<ProbeState>);

    #[derive(Default)]
    struct ProbeState {
        out: Mutex<Vec<u8>>,
        calls: AtomicUsize,
        /// Steps for the next write calls; once empty, writes succeed.
        script: Mutex<VecDeque<Step>>,
        /// Every write fails with EPIPE.
        broken: AtomicBool,
        /// While set, writes wait (recording which thread waits).
        closed: Mutex<bool>,
        opened: Condvar,
        waiting: Mutex<Vec<thread::ThreadId>>,
    }

    impl Probe {
        fn sink(&self) -> Box<dyn Write + Send> {
            Box::new(self.clone())
        }

        fn out(&self) -> String {
            String::from_utf8(self.0.out.lock().unwrap().clone()).unwrap()
        }

        fn calls(&self) -> usize {
            self.0.calls.load(Ordering::SeqCst)
        }

        fn close_gate(&self) {
            *self.0.closed.lock().unwrap() = true;
        }

        fn open_gate(&self) {
            *self.0.closed.lock().unwrap() = false;
            self.0.opened.notify_all();
        }

        fn is_waiting(&self, thread: thread::ThreadId) -> bool {
            self.0.waiting.lock().unwrap().contains(&thread)
        }
    }

    impl Write for Probe {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let state = &*self.0;
            state.calls.fetch_add(1, Ordering::SeqCst);
            let mut closed = state.closed.lock().unwrap();
            if *closed {
                state.waiting.lock().unwrap().push(thread::current().id());
                while *closed {
                    closed = state.opened.wait(closed).unwrap();
                }
            }
            drop(closed);
            if state.broken.load(Ordering::SeqCst) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = match state.script.lock().unwrap().pop_front() {
                Some(Step::Fail) => return Err(io::ErrorKind::BrokenPipe.into()),
                Some(Step::Take(n)) => n.min(bytes.len()),
                None => bytes.len(),
            };
            state.out.lock().unwrap().extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Logs one event the way the formatter does: one writer, then `write_all`.
    fn log(log: &LogBuf, line: &str) {
        log.make_writer().write_all(line.as_bytes()).unwrap();
    }

    /// Waits, at most [`PATIENCE`], until `cond` holds.
    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn batched(flush_size: usize, max_delay: Duration, cap: usize) -> Option<Batching> {
        Some(Batching {
            flush_size,
            max_delay,
            cap,
        })
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn on_a_terminal_each_event_is_written_at_once() {
        let probe = Probe::default();
        let log_buf = LogBuf::new(probe.sink(), None);
        log(&log_buf, "one\n");
        assert_eq!(probe.out(), "one\n");
        log(&log_buf, "two\n");
        assert_eq!(probe.out(), "one\ntwo\n");
        assert_eq!(probe.calls(), 2);
    }

    #[test]
    fn events_land_whole_and_in_order() {
        const THREADS: usize = 8;
        const LINES: usize = 2000;
        let probe = Probe::default();
        // Room for every line (about 450 KiB), so that none is dropped however far ahead of
        // the flusher the threads get.
        let log_buf = LogBuf::new(
            probe.sink(),
            batched(512, Duration::from_millis(1), 1 << 20),
        );
        thread::scope(|s| {
            for t in 0..THREADS {
                let log_buf = &log_buf;
                s.spawn(move || {
                    for i in 0..LINES {
                        // In several writes, as a formatter may do.
                        let mut w = log_buf.make_writer();
                        write!(w, "thread {t} ").unwrap();
                        write!(w, "line {i:05}").unwrap();
                        w.write_all(b" end\n").unwrap();
                    }
                });
            }
        });
        drop(log_buf);
        let out = probe.out();
        let mut next = [0usize; THREADS];
        for line in out.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words.len(), 5, "torn line {line:?}");
            assert_eq!((words[0], words[2], words[4]), ("thread", "line", "end"));
            let t: usize = words[1].parse().unwrap();
            assert_eq!(
                words[3],
                format!("{:05}", next[t]),
                "out of order: {line:?}"
            );
            next[t] += 1;
        }
        assert_eq!(next, [LINES; THREADS]);
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn works_as_the_writer_of_a_tracing_subscriber() {
        let probe = Probe::default();
        let log_buf = LogBuf::new(probe.sink(), batched(FLUSH_SIZE, HOUR, CAP));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log_buf.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(peer = "a", "first");
            tracing::warn!(peer = "b", "second");
        });
        assert_eq!(probe.out(), "", "batched, not yet due");
        log_buf.flush();
        let out = probe.out();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("INFO") && lines[0].ends_with("first peer=\"a\""));
        assert!(lines[1].contains("WARN") && lines[1].ends_with("second peer=\"b\""));
        assert_eq!(probe.calls(), 1, "one write for both");
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_for_the_timer() {
        let probe = Probe::default();
        // The timer would take an hour: only the size can trigger this write.
        let log_buf = LogBuf::new(probe.sink(), batched(256, HOUR, 1 << 20));
        let line = format!("{}\n", "x".repeat(31));
        for _ in 0..7 {
            log(&log_buf, &line);
        }
        // 224 bytes, under the batch size: nothing is due. (A short wait for the flusher
        // to do something wrong; it cannot make this test fail spuriously.)
        thread::sleep(Duration::from_millis(50));
        assert_eq!(probe.calls(), 0);
        assert_eq!(log_buf.buffered(), 224);
        log(&log_buf, &line);
        wait_until("the batch is written", || probe.out().len() == 256);
        assert_eq!(probe.out(), line.repeat(8));
        assert_eq!(probe.calls(), 1);
        assert_eq!(log_buf.buffered(), 0);
    }

    #[test]
    fn a_lone_line_is_written_by_the_timer() {
        let probe = Probe::default();
        let log_buf = LogBuf::new(
            probe.sink(),
            batched(1 << 20, Duration::from_millis(20), 1 << 20),
        );
        log(&log_buf, "alone\n");
        wait_until("the line is written", || probe.out() == "alone\n");
        assert_eq!(probe.calls(), 1);
        // And again, once the flusher has gone back to sleep on an empty buffer.
        log(&log_buf, "later\n");
        wait_until("the next line is written", || {
            probe.out() == "alone\nlater\n"
        });
    }

    #[test]
    fn the_last_handle_writes_out_what_is_left() {
        let probe = Probe::default();
        let log_buf = LogBuf::new(probe.sink(), batched(1 << 20, HOUR, 1 << 20));
        let other = log_buf.clone();
        log(&log_buf, "kept\n");
        drop(log_buf);
        assert_eq!(probe.out(), "", "a handle is still alive");
        drop(other);
        assert_eq!(probe.out(), "kept\n");
    }

    #[test]
    fn write_now_writes_earlier_lines_first() {
        let probe = Probe::default();
        let log_buf = LogBuf::new(probe.sink(), batched(1 << 20, HOUR, 1 << 20));
        log(&log_buf, "before\n");
        log_buf.write_now(b"listening on a\nlistening on b\n");
        assert_eq!(probe.out(), "before\nlistening on a\nlistening on b\n");
        assert_eq!(probe.calls(), 1);
    }

    #[test]
    fn failed_writes_are_dropped_not_retried() {
        const LINES: usize = 1000;
        let probe = Probe::default();
        probe.0.broken.store(true, Ordering::SeqCst);
        let log_buf = LogBuf::new(probe.sink(), batched(64, Duration::from_millis(1), 256));
        for i in 0..LINES {
            log(&log_buf, &format!("line {i}\n"));
        }
        log_buf.flush();
        assert_eq!(log_buf.buffered(), 0, "dropped, not kept");
        // One attempt per batch, and a batch holds at least one line.
        assert!(probe.calls() >= 1);
        assert!(probe.calls() <= LINES, "{} write calls", probe.calls());
        // The output works again: only what is logged from now on arrives.
        probe.0.broken.store(false, Ordering::SeqCst);
        log(&log_buf, "again\n");
        log_buf.flush();
        assert_eq!(probe.out(), "again\n");
    }

    #[test]
    fn a_batch_cut_inside_a_line_is_ended_before_the_next() {
        let probe = Probe::default();
        let log_buf = LogBuf::new(probe.sink(), None);
        probe
            .0
            .script
            .lock()
            .unwrap()
            .extend([Step::Take(5), Step::Fail]);
        log(&log_buf, "hello world\n");
        assert_eq!(probe.out(), "hello");
        log(&log_buf, "next\n");
        assert_eq!(probe.out(), "hello\nnext\n");
        // Cut at a line's end: nothing to mend.
        probe
            .0
            .script
            .lock()
            .unwrap()
            .extend([Step::Take(3), Step::Fail]);
        log(&log_buf, "ab\ncd\n");
        log(&log_buf, "ef\n");
        assert_eq!(probe.out(), "hello\nnext\nab\nef\n");
    }

    #[test]
    fn logging_never_waits_for_a_blocked_output() {
        const CAP_BYTES: usize = 1024;
        const LINES: usize = 400;
        let probe = Probe::default();
        probe.close_gate();
        let log_buf = LogBuf::new(
            probe.sink(),
            batched(64, Duration::from_millis(1), CAP_BYTES),
        );
        let line = |i: usize| format!("line {i:05} {}\n", "-".repeat(20));
        // The flusher takes a first batch and blocks writing it.
        log(&log_buf, &line(0));
        wait_until("the flusher blocks", || probe.calls() > 0);
        // Every line is logged at once, output blocked or not; memory stays bounded.
        let logger = thread::spawn({
            let log_buf = log_buf.clone();
            move || {
                for i in 1..LINES {
                    log(&log_buf, &line(i));
                    assert!(log_buf.buffered() <= CAP_BYTES);
                }
            }
        });
        wait_until("the logging thread is done", || logger.is_finished());
        logger.join().unwrap();
        assert!(!probe.is_waiting(thread::current().id()));
        probe.open_gate();
        drop(log_buf);
        // What came through: lines in order, then how many were dropped, nothing else.
        let out = probe.out();
        let written: Vec<&str> = out.lines().filter(|l| l.starts_with("line ")).collect();
        let notice: Vec<&str> = out.lines().filter(|l| !l.starts_with("line ")).collect();
        assert_eq!(notice.len(), 1, "{out}");
        let dropped: usize = notice[0]
            .strip_prefix("filefetch: ")
            .and_then(|n| n.strip_suffix(" log lines dropped: the output did not keep up"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", notice[0]));
        assert!(dropped > 0);
        assert_eq!(written.len() + dropped, LINES);
        let mut last = None;
        for l in &written {
            let i: usize = l[5..10].parse().unwrap();
            assert!(last < Some(i), "out of order: {out}");
            last = Some(i);
        }
    }

    /// The line that counts dropped lines is written by the function the log was given
    /// (`serve --log-format json` gives one that writes an object).
    #[test]
    fn dropped_lines_are_counted_in_the_log_format() {
        const LINES: u64 = 100;
        let probe = Probe::default();
        probe.close_gate();
        let log_buf = LogBuf::with_dropped_line(
            probe.sink(),
            batched(64, Duration::from_millis(1), 256),
            crate::logjson::dropped_line,
        );
        log(&log_buf, "first\n");
        wait_until("the flusher blocks", || probe.calls() > 0);
        for _ in 0..LINES {
            log(&log_buf, &format!("{}\n", "x".repeat(20)));
        }
        probe.open_gate();
        drop(log_buf);
        let out = probe.out();
        let notices: Vec<&str> = out.lines().filter(|l| l.starts_with('{')).collect();
        assert_eq!(notices.len(), 1, "{out}");
        let notice: serde_json::Value = serde_json::from_str(notices[0]).unwrap();
        let dropped = notice["dropped"].as_u64().unwrap();
        assert!(dropped > 0, "{out}");
        let written = out.lines().filter(|l| l.starts_with('x')).count();
        assert_eq!(written as u64 + dropped, LINES, "{out}");
    }

    #[test]
    fn flush_within_gives_up_on_a_blocked_output() {
        let probe = Probe::default();
        probe.close_gate();
        let log_buf = LogBuf::new(probe.sink(), batched(1 << 20, HOUR, 1 << 20));
        log(&log_buf, "stuck\n");
        assert!(!log_buf.flush_within(Duration::from_millis(20)));
        probe.open_gate();
        wait_until("the line is written", || probe.out() == "stuck\n");
        assert!(log_buf.flush_within(PATIENCE));
        drop(log_buf);
        assert_eq!(probe.out(), "stuck\n", "written once");
    }
}
