//! systemd's socket activation: `filefetch serve` started with a listening socket as
//! descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` its own pid, serves on that socket instead
//! of binding. The test plays systemd: the socket goes to descriptor 3 in the child (between
//! fork and exec), and `sh` sets `LISTEN_PID=$$` just before it execs the command, so that
//! the pid is the command's own, as systemd sets it after forking.

#[cfg(unix)]
mod unix {
    use std::fs;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use tempfile::tempdir;

    use crate::support::{fetch, listening, Running};

    /// `filefetch ARGS...` in `dir`, started through `sh` so that `LISTEN_PID` is its pid,
    /// with `LISTEN_FDS` set to `fds` and the descriptor `passed` as its descriptor 3.
    fn activated(dir: &std::path::Path, passed: RawFd, pid: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(r#"LISTEN_PID={pid} exec "$0" "$@""#))
            .arg(env!("CARGO_BIN_EXE_filefetch"))
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "filefetch")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls
        // (dup2, fcntl) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if passed == 3 {
                    // Already descriptor 3: only let it survive the exec.
                    if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(passed, 3) == -1 {
                    // dup2 leaves close-on-exec off on the copy.
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    #[test]
    fn serves_on_the_socket_systemd_passes() {
        let root = tempdir().unwrap();
        fs::write(root.path().join("hello.txt"), b"activated").unwrap();
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let port = addr.port().to_string();
        // PORT and --bind are ignored: this port is taken (by the socket itself), so binding
        // it would fail.
        let args = ["serve", &port, "--bind", "127.0.0.1", "--root", "."];
        let mut server = Running::spawn(activated(root.path(), socket.as_raw_fd(), "$$", &args));
        let (shown, _) = listening(&mut server);
        assert_eq!(shown, addr);
        server
            .stdout
            .wait_for(|l| l.starts_with("socket activation: serving on the 1 socket(s)"));
        // The server has its own copy now; connections queue on the one socket either way.
        drop(socket);

        let out = tempdir().unwrap();
        let got = fetch(out.path(), addr.port(), "hello.txt", &[]);
        assert_eq!(got.code, Some(0), "{got:?}");
        assert_eq!(
            fs::read(out.path().join("hello.txt")).unwrap(),
            b"activated"
        );
    }

    #[test]
    fn sockets_for_another_process_are_left_alone() {
        let root = tempdir().unwrap();
        fs::write(root.path().join("hello.txt"), b"bound").unwrap();
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        // LISTEN_PID names another process (the shell's parent, this test): the variables
        // are not for the command, which binds as usual.
        let parent = std::process::id().to_string();
        let args = ["serve", "0", "--bind", "127.0.0.1", "--root", "."];
        let cmd = activated(root.path(), socket.as_raw_fd(), &parent, &args);
        let mut server = Running::spawn(cmd);
        let (shown, _) = listening(&mut server);
        assert_ne!(shown, socket.local_addr().unwrap());
        let out = tempdir().unwrap();
        let got = fetch(out.path(), shown.port(), "hello.txt", &[]);
        assert_eq!(got.code, Some(0), "{got:?}");
    }

    #[test]
    fn a_connection_instead_of_a_listening_socket_is_refused() {
        // What a socket unit with Accept=yes passes: one accepted connection.
        let root = tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let args = ["serve", "0", "--bind", "127.0.0.1"];
        let mut server = Running::spawn(activated(root.path(), accepted.as_raw_fd(), "$$", &args));
        let status = server.wait();
        let stderr = server.stderr.all();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("descriptor 3") && stderr.contains("Accept=no"),
            "{stderr}"
        );
    }
}

/// Elsewhere there is no socket activation, and the command says so rather than binding.
#[cfg(not(unix))]
#[test]
fn socket_activation_is_refused_where_unsupported() {
    let root = tempfile::tempdir().unwrap();
    let mut cmd = crate::support::command(root.path());
    cmd.args(["serve", "0", "--bind", "127.0.0.1"])
        .env("LISTEN_FDS", "1");
    let got = crate::support::run(cmd);
    assert_eq!(got.code, Some(2), "{got:?}");
    assert!(got.stderr.contains("not supported"), "{}", got.stderr);
}
