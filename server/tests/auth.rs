//! Authentication and slow clients: wrong, missing and correct tokens; only
//! HELLO and PING before authenticating; clients that do not authenticate or
//! stall mid-frame are cut off; protected mode without a token.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use hongbao_client::{requests, Client, ClientError};
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::{decode_frame, EnvelopeId, Request, Status};
use support::{workspace_bin, TestServer};

const TOKEN: &str = "correct horse battery staple";

fn token_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("hongbao-auth-{}-{name}", std::process::id()));
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

/// Sends `request` on a raw connection and reads one answer.
fn ask(stream: &mut TcpStream, request: &Request<'_>, id: u64) -> (Status, usize) {
    let mut bytes = Vec::new();
    request.encode(id, &mut bytes);
    stream.write_all(&bytes).unwrap();
    let mut answer = vec![0u8; 24];
    stream.read_exact(&mut answer).unwrap();
    let len = u32::from_le_bytes(answer[8..12].try_into().unwrap()) as usize;
    answer.resize(24 + len, 0);
    stream.read_exact(&mut answer[24..]).unwrap();
    let frame = decode_frame(&answer).unwrap().unwrap();
    assert_eq!(frame.request_id(), id);
    (frame.header.status(), len)
}

#[test]
fn only_the_right_token_opens_the_door() {
    let file = token_file("door");
    let server = TestServer::start(2, &["--auth-token-file", file.to_str().unwrap()]);
    let mut raw = TcpStream::connect(server.main).unwrap();
    let envelope = EnvelopeId::new(0, 1);
    assert_eq!(
        ask(&mut raw, &requests::grab(envelope, 5), 1),
        (Status::NotAuthenticated, 24),
        "fixed body kept"
    );
    assert_eq!(
        ask(&mut raw, &requests::create(1, 100, 2, EnvelopeKind::Random, 0), 2).0,
        Status::NotAuthenticated
    );
    assert_eq!(ask(&mut raw, &Request::Stats, 3).0, Status::NotAuthenticated);
    assert_eq!(ask(&mut raw, &Request::Ping, 4).0, Status::Ok, "PING needs no token");
    assert_eq!(ask(&mut raw, &requests::hello(b"wrong").unwrap(), 5).0, Status::NotAuthenticated);
    assert_eq!(ask(&mut raw, &requests::hello(b"").unwrap(), 6).0, Status::NotAuthenticated);
    assert_eq!(ask(&mut raw, &requests::hello(TOKEN.as_bytes()).unwrap(), 7).0, Status::Ok);
    assert_eq!(ask(&mut raw, &requests::create(1, 100, 2, EnvelopeKind::Random, 0), 8).0, Status::Ok);

    // The client library, on the shard-aware port too.
    let mut client = Client::connect(server.shard_addr(1)).unwrap();
    assert_eq!(client.create(1, 100, 2, EnvelopeKind::Random, 0).unwrap().status, Status::NotAuthenticated);
    assert_eq!(client.authenticate(b"nope").unwrap(), Status::NotAuthenticated);
    assert_eq!(client.authenticate(TOKEN.as_bytes()).unwrap(), Status::Ok);
    assert_eq!(client.create(1, 100, 2, EnvelopeKind::Random, 0).unwrap().status, Status::Ok);

    // The CLI.
    let cli = |extra: &[&str]| {
        Command::new(workspace_bin("hongbao-cli"))
            .args(["--server", &server.main.to_string(), "--json"])
            .args(extra)
            .args(["create", "--sender", "1", "--total", "100", "--count", "2"])
            .output()
            .unwrap()
    };
    let with = cli(&["--auth-token-file", file.to_str().unwrap()]);
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stdout));
    let without = cli(&[]);
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stdout).contains("not_authenticated"));
    std::fs::remove_file(file).unwrap();
}

/// Reads what the server sends until it closes: one response that answers no
/// request (opcode 0, request id 0, no body); returns its status.
fn told_then_closed(mut stream: TcpStream) -> Status {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let frame = decode_frame(&all).unwrap().expect("a whole frame before the close");
    assert_eq!(frame.wire_len(), all.len(), "one frame, then the close");
    assert_eq!((frame.header.opcode, frame.request_id(), frame.body.len()), (0, 0, 0));
    frame.header.status()
}

#[test]
fn clients_that_do_not_authenticate_or_stall_mid_frame_are_cut_off() {
    let file = token_file("slow");
    let server = TestServer::start(1, &["--auth-token-file", file.to_str().unwrap(), "--auth-timeout", "1"]);
    let silent = TcpStream::connect(server.main).unwrap();
    assert_eq!(told_then_closed(silent), Status::Timeout, "a connection that never authenticates");
    // The client library names it.
    let mut late = Client::connect(server.main).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let err = late.ping().map(|_| ()).unwrap_err();
    assert!(matches!(err, ClientError::Ended { status: Status::Timeout }), "{err:?}");
    std::fs::remove_file(file).unwrap();

    let server = TestServer::start(1, &["--frame-timeout", "1"]);
    let mut slow = TcpStream::connect(server.main).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bytes = Vec::new();
    requests::grab(EnvelopeId::new(0, 1), 5).encode(1, &mut bytes);
    slow.write_all(&bytes[..30]).unwrap();
    assert_eq!(told_then_closed(slow), Status::Timeout, "half a frame and then silence");
    // An idle connection between frames is not.
    let mut idle = Client::connect(server.main).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(idle.ping().unwrap(), Status::Ok);
}

#[test]
fn protected_mode_refuses_a_public_address_without_a_token() {
    let output = Command::new(env!("CARGO_BIN_EXE_hongbao-server"))
        .args(["--listen", "0.0.0.0:7399", "--durability", "none"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("protected mode") && stderr.contains("--auth-token-file"), "{stderr}");
}
