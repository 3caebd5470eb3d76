//! Back-pressure: a client that pipelines far more than the server may buffer
//! for it, and reads its answers only later, slowly, still gets every answer,
//! once and in order per shard; the server never holds more than its limit of
//! that client's requests, so its memory stays flat.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hongbao_client::{requests, Client};
use hongbao_protocol::body::EnvelopeKind;
use hongbao_protocol::{decode_frame, Request, Status};
use support::TestServer;

/// Requests pipelined at once: far past --max-buffered-bytes below.
const REQUESTS: u64 = 40_000;
/// Shares of the envelope queried, all paid: each QUERY answer is 2.5 KB.
const SHARES: u32 = 100;

#[test]
fn a_client_that_reads_late_gets_every_answer() {
    // 192 KiB may wait unanswered per connection; the client sends 1.3 MB of
    // QUERYs and PINGs before it reads a single answer, and the answers
    // (50 MB) are far more than the socket buffers hold.
    let server = TestServer::start(1, &["--max-buffered-bytes", "196608", "--frame-timeout", "30"]);
    let mut setup = Client::connect(server.main).unwrap();
    let created = setup.create(1, 100 * u64::from(SHARES), SHARES, EnvelopeKind::Random, 0).unwrap();
    let envelope = created.body.unwrap().envelope;
    for user in 1..=u64::from(SHARES) {
        assert_eq!(setup.grab(envelope, user).unwrap().status, Status::Ok);
        assert_eq!(setup.open(envelope, user).unwrap().status, Status::Ok);
    }

    let mut stream = TcpStream::connect(server.main).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    small_socket_buffers(&stream);
    let mut bytes = Vec::new();
    for id in 1..=REQUESTS {
        if id % 2 == 0 {
            Request::Ping.encode(id, &mut bytes);
        } else {
            requests::query(envelope, 0, SHARES).encode(id, &mut bytes);
        }
    }
    // The writer blocks once the server stops reading (TCP back-pressure);
    // it finishes as the reader below drains the answers.
    let mut writer = stream.try_clone().unwrap();
    let total = bytes.len();
    assert!(total > 3 * 196_608, "the client sends far more than the server may buffer");
    let sender = std::thread::spawn(move || writer.write_all(&bytes).map(|()| bytes.len()));
    std::thread::sleep(Duration::from_millis(500));
    // The server stopped taking this client's bytes: what it has read is
    // what it could answer into its output and buffer, not all that was sent.
    let read_so_far = setup.stats().unwrap().body.unwrap().bytes_in;
    assert!(
        read_so_far < total as u64 / 2,
        "the server read {read_so_far} of {total} bytes from a client that reads nothing"
    );

    let mut seen = HashSet::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut last_id = 0;
    while seen.len() < REQUESTS as usize {
        // A slow reader: small reads with pauses now and then.
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed after {} answers", seen.len());
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some(frame) = decode_frame(&buf[at..]).unwrap() {
            at += frame.wire_len();
            let id = frame.request_id();
            assert!(seen.insert(id), "answer {id} came twice");
            assert!(id > last_id, "one shard answers a connection's requests in order");
            last_id = id;
            assert_eq!(frame.header.status(), Status::Ok, "request {id}");
            let expected_body = if id % 2 == 0 { 0 } else { 104 + SHARES as usize * 24 };
            assert_eq!(frame.body.len(), expected_body, "request {id}");
        }
        buf.drain(..at);
        if seen.len() % 5_000 < 100 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(buf.is_empty());
    assert_eq!(sender.join().unwrap().unwrap(), total);
    assert_eq!(setup.ping().unwrap(), Status::Ok, "the server is fine");
}

/// Fixed, small socket buffers on the client (no autotuning, which on this
/// kernel grows them to megabytes): the kernel cannot soak up the requests
/// the server stops reading, nor the answers the client does not read, so
/// what the server has read shows what it chose to read.
/// The answers before a frame that closes the connection, and that frame's
/// own status, reach a client that is still sending and reads only later.
/// Closing a socket with unread input resets the connection and throws away
/// what still sits in the server's send queue; so the server shuts its
/// sending side, drains what the client goes on sending, and closes once the
/// client has closed too.
#[test]
fn the_last_answers_survive_a_closing_frame() {
    const PINGS: u64 = 20_000;
    let server = TestServer::start(1, &["--max-buffered-bytes", "196608"]);
    let stream = TcpStream::connect(server.main).unwrap();
    small_socket_buffers(&stream);
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // 480 KB of answers, far more than the client's 16 KiB receive buffer
    // holds, then a header that announces a body past every limit.
    let bytes = pings_then_oversized(PINGS);
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        if writer.write_all(&bytes).is_err() {
            return;
        }
        // The body the header announced, for a while, as a client that does
        // not read would send it; the server may reset us at any point.
        let junk = vec![0x5au8; 16 * 1024];
        let until = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < until && writer.write_all(&junk).is_ok() {}
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut reader = stream;
    let mut all = Vec::new();
    let read = reader.read_to_end(&mut all);
    sender.join().unwrap();
    let mut statuses = Vec::new();
    let mut at = 0;
    while let Ok(Some(frame)) = decode_frame(&all[at..]) {
        statuses.push((frame.request_id(), frame.header.status()));
        at += frame.wire_len();
    }
    let pings = statuses.iter().filter(|(_, status)| *status == Status::Ok).count() as u64;
    assert_eq!(pings, PINGS, "PING answers before the closing frame (the read ended with {read:?})");
    assert_eq!(statuses.last().map(|s| s.1), Some(Status::FrameTooLarge), "the closing frame's status");
    assert_eq!(at, all.len(), "nothing but whole frames");
}

/// A client that writes everything before it reads a byte, past a frame
/// that closes the connection: the server goes on reading (and dropping)
/// what it sends, so its write finishes and it then reads every answer,
/// rather than both sides waiting on full windows until the server's send
/// times out and resets the connection.
#[test]
fn a_client_that_writes_everything_first_is_not_stuck_behind_a_closing_frame() {
    const PINGS: u64 = 20_000;
    let server = TestServer::start(1, &["--max-buffered-bytes", "196608", "--frame-timeout", "30"]);
    let mut stream = TcpStream::connect(server.main).unwrap();
    // A small receive buffer, so the answers back up in the server; the send
    // buffer as the kernel sizes it (a 16 KiB one would be paced by the
    // server's delayed ACKs, as it sends nothing back while it drains).
    set_buffer(&stream, libc::SO_RCVBUF);
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut bytes = pings_then_oversized(PINGS);
    bytes.extend(std::iter::repeat_n(0x5au8, 4 << 20));
    // One thread: nothing is read until all of it is written.
    stream.write_all(&bytes).expect("the server keeps reading what follows the closing frame");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let mut statuses = Vec::new();
    let mut at = 0;
    while let Ok(Some(frame)) = decode_frame(&all[at..]) {
        statuses.push(frame.header.status());
        at += frame.wire_len();
    }
    assert_eq!(statuses.iter().filter(|s| **s == Status::Ok).count() as u64, PINGS);
    assert_eq!(statuses.last(), Some(&Status::FrameTooLarge));
}

/// `pings` PINGs (ids from 1), then the header of a PING that announces a
/// body of 1 GiB: answered frame_too_large, and the connection closes.
fn pings_then_oversized(pings: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for id in 1..=pings {
        Request::Ping.encode(id, &mut bytes);
    }
    let at = bytes.len();
    Request::Ping.encode(pings + 1, &mut bytes);
    bytes[at + 8..at + 12].copy_from_slice(&(1u32 << 30).to_le_bytes());
    bytes
}

fn small_socket_buffers(stream: &TcpStream) {
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        set_buffer(stream, option);
    }
}

/// Sets socket buffer `option` (SO_RCVBUF or SO_SNDBUF) to 16 KiB.
fn set_buffer(stream: &TcpStream, option: libc::c_int) {
    use std::os::fd::AsRawFd;
    let bytes: libc::c_int = 16 * 1024;
    #[allow(unsafe_code)]
    // SAFETY: a plain setsockopt with a valid int on an open socket.
    let done = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(done, 0, "setsockopt {option}");
}

#[test]
fn a_tiny_in_flight_limit_answers_every_pipelined_request() {
    // Two requests at a time per connection: a pipeline of a thousand is
    // answered two by two, each pair once the last is out, in order.
    let server = TestServer::start(1, &["--max-in-flight", "2"]);
    let mut setup = Client::connect(server.main).unwrap();
    let envelope = setup.create(1, 1_000, 10, EnvelopeKind::Random, 0).unwrap().body.unwrap().envelope;
    let mut bytes = Vec::new();
    let mut id = 0;
    for user in 1..=500u64 {
        id += 1;
        requests::grab(envelope, user).encode(id, &mut bytes);
        id += 1;
        requests::open(envelope, user).encode(id, &mut bytes);
    }
    let mut stream = TcpStream::connect(server.main).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(&bytes).unwrap();
    let (mut buf, mut chunk, mut answers) = (Vec::new(), vec![0u8; 4096], Vec::new());
    while answers.len() < id as usize {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {} answers", answers.len());
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some(frame) = decode_frame(&buf[at..]).unwrap() {
            answers.push((frame.request_id(), frame.header.status()));
            at += frame.wire_len();
        }
        buf.drain(..at);
    }
    let ids: Vec<u64> = answers.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=id).collect::<Vec<_>>(), "every request answered once, in order");
    let paid = answers.iter().filter(|(id, status)| id % 2 == 0 && *status == Status::Ok).count();
    assert_eq!(paid, 10, "ten shares paid, to the first ten users");
    let report = setup.query_all(envelope).unwrap().body.unwrap();
    assert_eq!(report.summary.paid_cents, 1_000);
}
