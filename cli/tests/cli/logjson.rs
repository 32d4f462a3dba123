//! `filefetch serve --log-format json`: every line the server writes is a JSON object, and a
//! connection's has its fields by name and type.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use serde_json::{Map, Value};
use tempfile::tempdir;

use crate::support::{command, fetch, Running};

/// The object on `line`, which must be one.
fn object(line: &str) -> Map<String, Value> {
    match serde_json::from_str(line) {
        Ok(Value::Object(object)) => object,
        other => panic!("not a JSON object: {line:?} ({other:?})"),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, which RFC 3339 allows.
fn assert_utc_time(object: &Map<String, Value>) {
    let time = object["time"].as_str().expect("time is a string");
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{time}");
}

#[test]
fn every_line_is_an_object_with_the_connection_fields() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("here"), b"hello").unwrap();
    let mut cmd = command(root.path());
    cmd.args([
        "serve",
        "0",
        "--bind",
        "127.0.0.1",
        "--request-timeout",
        "10",
    ])
    .args(["--log-format", "json", "--root"])
    .arg(root.path());
    let mut server = Running::spawn(cmd);

    let listening = object(&server.stdout.wait_for(|l| l.contains("listening on")));
    assert_utc_time(&listening);
    assert_eq!(listening["level"], "info");
    assert_eq!(listening["target"], "filefetch");
    let addr: SocketAddr = listening["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let shown_root = listening["root"].as_str().unwrap();
    assert_eq!(
        fs::canonicalize(shown_root).unwrap(),
        root.path().canonicalize().unwrap()
    );
    assert_eq!(
        listening["message"],
        format!("listening on {addr} (root: {shown_root})")
    );

    let dir = tempdir().unwrap();
    assert_eq!(fetch(dir.path(), addr.port(), "here", &[]).code, Some(0));
    assert_eq!(fetch(dir.path(), addr.port(), "absent", &[]).code, Some(3));
    // A connection that closes before its request is whole: no name, no status.
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(&[0x49]).unwrap();
    drop(client);

    let sent = object(&server.stdout.wait_for(|l| l.contains(r#""name":"here""#)));
    assert_utc_time(&sent);
    assert_eq!(sent["level"], "info");
    assert_eq!(sent["target"], "filefetch::server");
    assert_eq!(sent["message"], "sent");
    let peer: SocketAddr = sent["peer"].as_str().unwrap().parse().unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.1");
    assert!(!sent.contains_key("via"), "{sent:?}");
    assert_eq!(sent["status"], 1);
    assert_eq!(sent["bytes"], 5);
    assert!(sent["duration"].as_f64().unwrap() >= 0.0, "{sent:?}");
    assert_eq!(sent["outcome"], "sent");

    let missing = object(&server.stdout.wait_for(|l| l.contains(r#""name":"absent""#)));
    assert_eq!(missing["level"], "info");
    assert_eq!(missing["status"], 0);
    assert_eq!(missing["bytes"], 0);
    assert!(missing["duration"].is_number(), "{missing:?}");
    assert_eq!(missing["outcome"], "not_found");
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .starts_with("not found"),
        "{missing:?}"
    );

    let cut = object(&server.stdout.wait_for(|l| l.contains("request_cut")));
    assert_eq!(cut["level"], "warn");
    assert_eq!(cut["name"], "-");
    assert_eq!(cut["status"], Value::Null);
    assert_eq!(cut["bytes"], 0);
    assert_eq!(cut["outcome"], "request_cut");
    assert_eq!(
        cut["message"],
        "client closed after 1 bytes of the request; closed without a response"
    );

    // Stopped by a signal, the server writes what it has and its notice of the stop.
    #[cfg(unix)]
    {
        server.signal(libc::SIGTERM);
        assert_eq!(server.wait().code(), Some(0));
        let stderr = server.stderr.all();
        let stopping = object(stderr.lines().next().expect("a notice of the stop"));
        assert_eq!(stopping["level"], "info");
        assert!(
            stopping["message"]
                .as_str()
                .unwrap()
                .starts_with("stopping:"),
            "{stopping:?}"
        );
        for line in stderr.lines() {
            object(line);
        }
    }
    #[cfg(not(unix))]
    server.kill();
    let stdout = server.stdout.all();
    assert!(stdout.lines().count() >= 4, "{stdout}");
    for line in stdout.lines() {
        object(line);
    }
}

/// An error that ends `serve` is an object on stderr too, with the exit status.
#[test]
fn the_error_that_ends_serve_is_an_object() {
    let dir = tempdir().unwrap();
    let missing = dir.path().join("no such dir");
    let mut cmd = command(dir.path());
    cmd.args(["serve", "0", "--bind", "127.0.0.1", "--log-format", "json"])
        .arg("--root")
        .arg(&missing);
    let mut server = Running::spawn(cmd);
    let status = server.wait();
    assert_ne!(status.code(), Some(0));
    let stderr = server.stderr.all();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let error = object(lines[0]);
    assert_eq!(error["level"], "error");
    assert_eq!(error["exit_status"], status.code().unwrap());
    assert!(error["message"].is_string());
    for line in server.stdout.all().lines() {
        object(line);
    }
}
