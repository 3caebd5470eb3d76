//! The ring against real loopback sockets inside a glommio executor: accept,
//! receive, send, end of stream, cancel, parking on the doorbell (and
//! finding work no doorbell announced), a pool that
//! runs dry, closing a ring with operations in flight or a full queue, and a ring whose
//! `io_uring_enter` fails while its queue is full.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use glommio::LocalExecutorBuilder;
use hongbao_uring::{socket, Completion, Doorbell, Ring, RingConfig, Woken};

fn run<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        LocalExecutorBuilder::default().make().expect("executor").run(async move { test() })
    })
    .join()
    .expect("test thread")
}

fn small() -> RingConfig {
    RingConfig { entries: 64, buffers: 8, buffer_bytes: 4096 }
}

/// Polls until `done` says so, at most `rounds` times.
fn poll_until(ring: &mut Ring, rounds: usize, mut each: impl FnMut(Completion<'_>) -> bool) -> bool {
    for _ in 0..rounds {
        let mut finished = false;
        ring.poll(|c| finished |= each(c)).expect("poll");
        if finished {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn accepts_receives_and_sends() {
    run(|| {
        let mut ring = Ring::new(small()).expect("ring");
        let listener = socket::listen("127.0.0.1:0".parse().unwrap()).expect("listen");
        let addr: SocketAddr = socket::local_addr(&listener).unwrap();
        ring.accept(listener.as_raw_fd(), 7);
        let peer = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"hello ring").unwrap();
            let mut answer = [0u8; 5];
            stream.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"world");
            // End of stream next.
        });
        let mut conn = None;
        assert!(poll_until(&mut ring, 2000, |c| match c {
            Completion::Accepted { token: 7, fd, armed } => {
                assert!(armed, "a multishot accept stays armed");
                conn = Some(fd);
                true
            }
            other => panic!("unexpected {other:?}"),
        }));
        let conn = conn.unwrap();
        ring.receive(conn.as_raw_fd(), 42);
        let mut got = Vec::new();
        assert!(poll_until(&mut ring, 2000, |c| match c {
            Completion::Received { token: 42, data, armed } => {
                assert!(armed);
                got.extend_from_slice(data);
                got.len() == 10
            }
            other => panic!("unexpected {other:?}"),
        }));
        assert_eq!(got, b"hello ring");
        ring.send(conn.as_raw_fd(), 43, b"xxworld".to_vec(), 2);
        let mut sent = false;
        let mut ended = false;
        assert!(poll_until(&mut ring, 2000, |c| {
            match c {
                Completion::Sent { token: 43, buffer, from: 2, result } => {
                    assert_eq!(result.unwrap(), 5);
                    assert_eq!(buffer, b"xxworld");
                    sent = true;
                }
                Completion::ReceiveEnded { token: 42, error: None } => ended = true,
                other => panic!("unexpected {other:?}"),
            }
            sent && ended
        }));
        peer.join().unwrap();
        ring.cancel_accept(7);
        assert!(poll_until(&mut ring, 2000, |c| matches!(c, Completion::AcceptEnded { token: 7, .. })));
        assert_eq!(ring.in_flight(), 0, "every operation has ended");
    });
}

#[test]
fn a_cancelled_receive_ends_with_ecanceled() {
    run(|| {
        let mut ring = Ring::new(small()).expect("ring");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        ring.receive(server.as_raw_fd(), 1);
        ring.poll(|c| panic!("nothing arrived yet: {c:?}")).unwrap();
        ring.cancel_receive(1);
        assert!(poll_until(&mut ring, 2000, |c| match c {
            Completion::ReceiveEnded { token: 1, error: Some(e) } => {
                assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
                true
            }
            other => panic!("unexpected {other:?}"),
        }));
        assert_eq!(ring.in_flight(), 0);
        drop(client);
    });
}

#[test]
fn a_dry_pool_ends_receives_with_enobufs_and_rearming_reads_on() {
    run(|| {
        // Two buffers of 16 bytes, three connections with data: at least one
        // receive finds no buffer in one pass.
        let mut ring = Ring::new(RingConfig { entries: 64, buffers: 2, buffer_bytes: 16 }).expect("ring");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).unwrap());
            servers.push(listener.accept().unwrap().0);
        }
        for client in &mut clients {
            client.write_all(&[9u8; 64]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        for (i, server) in servers.iter().enumerate() {
            ring.receive(server.as_raw_fd(), i as u64);
        }
        let mut received = [0usize; 3];
        let mut rearm = Vec::new();
        let mut dry = 0;
        for _ in 0..2000 {
            ring.poll(|c| match c {
                Completion::Received { token, data, armed } => {
                    assert!(data.len() <= 16 && data.iter().all(|b| *b == 9));
                    received[token as usize] += data.len();
                    if !armed {
                        rearm.push(token);
                    }
                }
                Completion::ReceiveEnded { token, error: Some(e) }
                    if e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    dry += 1;
                    rearm.push(token);
                }
                other => panic!("unexpected {other:?}"),
            })
            .unwrap();
            for token in rearm.drain(..) {
                ring.receive(servers[token as usize].as_raw_fd(), token);
            }
            if received == [64; 3] {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(received, [64; 3], "every byte arrives once receives are re-armed");
        assert!(dry > 0, "two 16-byte buffers cannot hold 192 bytes at once");
    });
}

#[test]
fn a_parked_loop_is_woken_by_arriving_data() {
    let woke = std::thread::spawn(|| {
        LocalExecutorBuilder::default().make().expect("executor").run(async {
            let mut ring = Ring::new(small()).expect("ring");
            let doorbell = Rc::new(Doorbell::default());
            ring.spawn_wakeup(doorbell.clone()).expect("wakeup task");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let writer = std::thread::spawn(move || {
                let mut client = TcpStream::connect(addr).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                client.write_all(b"wake").unwrap();
                std::thread::sleep(Duration::from_millis(100));
            });
            let (server, _) = listener.accept().unwrap();
            ring.receive(server.as_raw_fd(), 5);
            let mut got = Vec::new();
            let mut parks = 0;
            while got.len() < 4 {
                ring.poll(|c| {
                    if let Completion::Received { data, .. } = c {
                        got.extend_from_slice(data);
                    }
                })
                .unwrap();
                if got.len() < 4 && ring.prepare_park().unwrap() {
                    parks += 1;
                    doorbell.wait().await;
                    ring.unpark();
                }
                assert!(parks < 100, "woken without data too often");
            }
            writer.join().unwrap();
            (got, parks)
        })
    })
    .join()
    .unwrap();
    assert_eq!(woke.0, b"wake");
    assert!(woke.1 >= 1, "the loop parked before the data came");
}

/// A connected pair: the ring's end (with a receive armed and submitted) and
/// the peer's.
fn receiving_pair(ring: &mut Ring, token: u64) -> (std::net::TcpStream, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    ring.receive(server.as_raw_fd(), token);
    ring.poll(|c| panic!("nothing has arrived: {c:?}")).unwrap();
    (server, peer)
}

#[test]
fn work_waiting_sees_a_receive_the_kernel_has_queued_before_any_system_call() {
    run(|| {
        let mut ring = Ring::new(small()).expect("ring");
        let (_server, mut peer) = receiving_pair(&mut ring, 9);
        // Every kernel with deferred or cooperative task running (5.19+)
        // has the flag; only a plain interrupt-driven ring goes without, and
        // its queue alone tells.
        assert!(ring.knows_waiting_work(), "a {:?} ring without the kernel's flag", ring.task_run());
        assert!(!ring.work_waiting(), "nothing has arrived yet");
        // On loopback the write runs the ring's side of TCP before it
        // returns: the receive's work is queued (deferred) by then.
        peer.write_all(b"queued").unwrap();
        assert!(ring.work_waiting(), "the kernel flagged the receive's work");
        let mut got = Vec::new();
        ring.poll(|c| match c {
            Completion::Received { token: 9, data, .. } => got.extend_from_slice(data),
            other => panic!("unexpected {other:?}"),
        })
        .unwrap();
        assert_eq!(got, b"queued");
        assert!(!ring.work_waiting(), "the turn ran the work and reaped it");
    });
}

#[test]
fn a_park_whose_doorbell_never_rings_still_finds_arriving_data() {
    // No eventfd task: nothing rings the doorbell, as when the kernel's
    // eventfd signal is put off. The park must end on the data, not on its
    // deadline (a minute away).
    let (woken, got) = std::thread::spawn(|| {
        LocalExecutorBuilder::default().make().expect("executor").run(async {
            let mut ring = Ring::new(small()).expect("ring");
            let doorbell = Doorbell::default();
            let (_server, mut peer) = receiving_pair(&mut ring, 11);
            let writer = std::thread::spawn(move || {
                // Long enough that the park has looked and found nothing
                // a few times first.
                std::thread::sleep(Duration::from_millis(30));
                peer.write_all(b"late").unwrap();
                peer
            });
            assert!(ring.prepare_park().unwrap(), "nothing to do yet");
            let woken = ring.park(&doorbell, std::time::Instant::now() + Duration::from_secs(60)).await;
            ring.unpark();
            let mut got = Vec::new();
            ring.poll(|c| {
                if let Completion::Received { data, .. } = c {
                    got.extend_from_slice(data);
                }
            })
            .unwrap();
            drop(writer.join().unwrap());
            (woken, got)
        })
    })
    .join()
    .unwrap();
    assert_eq!(woken, Woken::Work);
    assert_eq!(got, b"late");
}

#[test]
fn a_park_ends_on_its_doorbell_and_on_its_deadline() {
    let woken = std::thread::spawn(|| {
        LocalExecutorBuilder::default().make().expect("executor").run(async {
            let mut ring = Ring::new(small()).expect("ring");
            let doorbell = Doorbell::default();
            doorbell.ring();
            let far = std::time::Instant::now() + Duration::from_secs(60);
            let first = ring.park(&doorbell, far).await;
            let near = std::time::Instant::now() + Duration::from_millis(5);
            (first, ring.park(&doorbell, near).await)
        })
    })
    .join()
    .unwrap();
    assert_eq!(woken, (Woken::Doorbell, Woken::Deadline));
}

#[test]
fn dropping_a_ring_with_operations_in_flight_waits_for_them() {
    run(|| {
        let mut ring = Ring::new(small()).expect("ring");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        ring.receive(server.as_raw_fd(), 1);
        // A large send the peer never reads: it cannot finish.
        ring.send(server.as_raw_fd(), 2, vec![1u8; 32 << 20], 0);
        ring.poll(|_| {}).unwrap();
        assert_eq!(ring.in_flight(), 2);
        // Both cancelled and finished: nothing is left for the kernel, so
        // nothing was leaked (or freed under it).
        assert_eq!(ring.close(), 0);
    });
}

/// The drop's cancel goes in even when the submission queue is full of
/// entries the kernel has not seen: it hands them over first. Without that
/// the receives below would never end and the close would give up on them.
#[test]
fn closing_a_ring_with_a_full_submission_queue_still_cancels_everything() {
    run(|| {
        let config = RingConfig { entries: 4, buffers: 8, buffer_bytes: 4096 };
        let mut ring = Ring::new(config).expect("ring");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut pairs = Vec::new();
        for token in 0..u64::from(config.entries) {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            ring.receive(server.as_raw_fd(), token);
            pairs.push((client, server));
        }
        // Queued, not submitted: the queue is full and no poll has run.
        assert_eq!(ring.in_flight(), config.entries as usize);
        assert_eq!(ring.close(), 0);
        drop(pairs);
    });
}

#[test]
fn a_ring_that_cannot_enter_with_a_full_queue_reports_it_instead_of_panicking() {
    let error = run(|| {
        let mut ring = Ring::new(small()).expect("ring");
        // Put /dev/null where the ring's descriptor was: the queue's memory is
        // still mapped, so entries go in, but io_uring_enter now fails
        // (EOPNOTSUPP), as a kernel error would make it.
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        #[allow(unsafe_code)] // reason: the fault this test injects is a descriptor swap
        // SAFETY: both descriptors are open; the ring's number stays open
        // (on /dev/null) until the ring closes it.
        let swapped = unsafe { libc::dup2(null.as_raw_fd(), ring.as_raw_fd()) };
        assert_eq!(swapped, ring.as_raw_fd(), "dup2: {}", std::io::Error::last_os_error());
        // Twice the submission queue: the push that finds it full must enter.
        for token in 0..2 * u64::from(small().entries) {
            ring.cancel_receive(token);
        }
        let first = ring.poll(|_| {}).expect_err("a broken ring says so");
        let again = ring.poll(|_| {}).expect_err("and keeps saying so");
        assert_eq!(first.to_string(), again.to_string());
        assert!(ring.prepare_park().is_err(), "a broken ring does not park");
        first.to_string()
    });
    assert!(error.contains("submission queue is full"), "{error}");
}
