//! The ring: set-up with the best completion mode the kernel offers, the
//! operations a socket server needs (multishot accept and receive, send,
//! cancel), and one `io_uring_enter` per [`Ring::poll`] that submits
//! everything queued and reaps every completion.
//!
//! Every operation carries a caller's `token` (56 bits; a connection slot and
//! generation, say) in its `user_data`, with the operation's kind in the top
//! byte, so a completion is dispatched without a lookup.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::buffers::BufferPool;
use crate::doorbell::Doorbell;

/// Largest token an operation can carry.
pub const TOKEN_MAX: u64 = (1 << 56) - 1;
/// Completions copied out of the kernel's queue per pass.
const REAP_BATCH: usize = 256;
/// How long dropping a ring waits for the kernel to finish its operations
/// before it leaks their buffers instead (memory safety over tidiness).
const DROP_WAIT: Duration = Duration::from_secs(2);
/// Submissions `push` tries while the queue stays full before it gives up.
const PUSH_ATTEMPTS_MAX: u32 = 10_000;

const KIND_RECV: u64 = 1;
const KIND_SEND: u64 = 2;
const KIND_ACCEPT: u64 = 3;
const KIND_CANCEL: u64 = 4;
const KIND_SHIFT: u32 = 56;
/// How long the eventfd task waits after a failed read before reading again.
const WAKEUP_RETRY: std::time::Duration = std::time::Duration::from_millis(1);
/// `IORING_ENTER_GETEVENTS`: run completion work and reap, not only submit.
const ENTER_GETEVENTS: u32 = 1;

/// When a parked loop first looks at its ring for work whose wake-up has not
/// come (see [`Ring::park`]).
pub const PARK_LOOK_FIRST: Duration = Duration::from_micros(20);
/// The longest a parked loop waits between looks: what a lost wake-up can
/// cost a shard that has been idle a while. Each look is a wake-up of the
/// thread (with glommio's spin after it, 50 µs by default): on the 2-vCPU
/// test machine an idle shard used 8.1% to 8.6% of a core before the looks,
/// 12.6% with looks up to 1 ms, 9.9% with 4 ms.
pub const PARK_LOOK_MAX: Duration = Duration::from_millis(4);

/// What ended a [`Ring::park`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The doorbell rang.
    Doorbell,
    /// A look found work on the ring that no doorbell announced.
    Work,
    /// The deadline came.
    Deadline,
}

/// Sizes of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries; the completion queue gets four times as many.
    pub entries: u32,
    /// Receive buffers in the shared pool (a power of two).
    pub buffers: u16,
    /// Bytes per receive buffer.
    pub buffer_bytes: usize,
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        // 512 x 32 KiB = 16 MiB of receive buffers, enough for hundreds of
        // connections' pipelined batches arriving in one loop.
        RingConfig { entries: 2048, buffers: 512, buffer_bytes: 32 * 1024 }
    }
}

/// How the kernel runs completion work for the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskRun {
    /// `IORING_SETUP_DEFER_TASKRUN`: only inside this thread's
    /// `io_uring_enter` (Linux 6.1+). No interrupt ever.
    Deferred,
    /// `IORING_SETUP_COOP_TASKRUN`: at this thread's next system call, without
    /// an interrupt (Linux 5.19+).
    Cooperative,
    /// Neither: the kernel interrupts the thread to run it.
    Interrupt,
}

/// One finished operation, handed to [`Ring::poll`]'s callback.
#[derive(Debug)]
pub enum Completion<'a> {
    /// Bytes arrived. `data` is valid only during the callback (its buffer goes
    /// back to the pool after). `armed == false`: the receive ended and must be
    /// re-armed to read on.
    Received {
        /// The receive's token.
        token: u64,
        /// What arrived.
        data: &'a [u8],
        /// Whether the receive is still armed.
        armed: bool,
    },
    /// A receive ended without data: `error == None` is the peer's end of
    /// stream; `ENOBUFS` means the pool ran dry (re-arm it); `ECANCELED`, a
    /// [`Ring::cancel_receive`].
    ReceiveEnded {
        /// The receive's token.
        token: u64,
        /// Why, or `None` for end of stream.
        error: Option<io::Error>,
    },
    /// A send finished: the buffer comes back with the bytes written (a short
    /// count means the rest must be sent again) or the error.
    Sent {
        /// The send's token.
        token: u64,
        /// The buffer given to [`Ring::send`].
        buffer: Vec<u8>,
        /// Where in the buffer the send started.
        from: usize,
        /// Bytes written from `from`, or the error.
        result: io::Result<usize>,
    },
    /// A connection was accepted. `armed == false`: the accept ended and must
    /// be re-armed.
    Accepted {
        /// The accept's token.
        token: u64,
        /// The new connection.
        fd: OwnedFd,
        /// Whether the accept is still armed.
        armed: bool,
    },
    /// An accept ended with an error (`EMFILE`, `ECANCELED`, ...).
    AcceptEnded {
        /// The accept's token.
        token: u64,
        /// Why.
        error: io::Error,
    },
}

/// A send the kernel holds: its buffer stays here, unmoved, until it is done.
#[derive(Debug)]
struct SendSlot {
    token: u64,
    buffer: Vec<u8>,
    from: usize,
}

/// An io_uring for sockets, owned by one thread.
pub struct Ring {
    // Field order matters for nothing: `Drop` tears down explicitly.
    uring: ManuallyDrop<IoUring>,
    pool: ManuallyDrop<BufferPool>,
    sends: Vec<Option<SendSlot>>,
    free_sends: Vec<u32>,
    /// Operations whose last completion has not arrived yet.
    in_flight: usize,
    task_run: TaskRun,
    /// Whether the kernel sets `IORING_SQ_TASKRUN` when completion work is
    /// queued for this thread (`IORING_SETUP_TASKRUN_FLAG`): then
    /// [`Ring::work_waiting`] is a load from shared memory, not a guess.
    taskrun_flag: bool,
    reaped: Vec<(u64, i32, u32)>,
    /// Entries the last [`Ring::poll`] submitted.
    last_submitted: u32,
    /// Why the ring can no longer take entries: an `io_uring_enter` failed
    /// while the submission queue was full. Every later [`Ring::poll`]
    /// reports it, so the owner stops instead of panicking mid-push.
    broken: Option<io::Error>,
    /// Whether [`Ring::close`] has torn the ring down (the drop then does
    /// nothing).
    closed: bool,
}

impl Ring {
    /// A ring with the best completion mode this kernel has.
    pub fn new(config: RingConfig) -> io::Result<Ring> {
        let (uring, task_run, taskrun_flag) = build(config.entries)?;
        let pool = BufferPool::new(&uring, 0, config.buffers, config.buffer_bytes)?;
        Ok(Ring {
            uring: ManuallyDrop::new(uring),
            pool: ManuallyDrop::new(pool),
            sends: Vec::new(),
            free_sends: Vec::new(),
            in_flight: 0,
            task_run,
            taskrun_flag,
            reaped: Vec::with_capacity(REAP_BATCH),
            last_submitted: 0,
            broken: None,
            closed: false,
        })
    }

    /// How the kernel runs this ring's completion work.
    pub fn task_run(&self) -> TaskRun {
        self.task_run
    }

    /// Entries (sends, receives, accepts) the last [`Ring::poll`] handed to
    /// the kernel: a poll that reaped nothing but submitted sends still did
    /// work (on loopback the send runs the peer's TCP receive, too).
    pub fn last_submitted(&self) -> u32 {
        self.last_submitted
    }

    /// Operations not finished yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Bytes per receive buffer: the most one [`Completion::Received`] holds.
    pub fn buffer_size(&self) -> usize {
        self.pool.buffer_size()
    }

    /// Arms a multishot accept on listening socket `listener`. The socket must
    /// stay open until the accept ends.
    pub fn accept(&mut self, listener: RawFd, token: u64) {
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(KIND_ACCEPT, token));
        self.push(entry);
    }

    /// Arms a multishot receive on connected socket `fd`. The socket must stay
    /// open until the receive ends (cancel it before closing).
    pub fn receive(&mut self, fd: RawFd, token: u64) {
        let entry = opcode::RecvMulti::new(types::Fd(fd), self.pool.group())
            .build()
            .user_data(user_data(KIND_RECV, token));
        self.push(entry);
    }

    /// Ends the receive armed with `token`; it completes with `ECANCELED`.
    pub fn cancel_receive(&mut self, token: u64) {
        self.cancel(user_data(KIND_RECV, token));
    }

    /// Ends the accept armed with `token`.
    pub fn cancel_accept(&mut self, token: u64) {
        self.cancel(user_data(KIND_ACCEPT, token));
    }

    /// Sends `buffer[from..]` on `fd`. The ring owns the buffer until the
    /// [`Completion::Sent`] hands it back.
    pub fn send(&mut self, fd: RawFd, token: u64, buffer: Vec<u8>, from: usize) {
        assert!(from < buffer.len(), "a send of nothing ({from} of {} bytes)", buffer.len());
        let slot = match self.free_sends.pop() {
            Some(slot) => slot,
            None => {
                self.sends.push(None);
                (self.sends.len() - 1) as u32
            }
        };
        let len = (buffer.len() - from).min(u32::MAX as usize) as u32;
        let address = buffer[from..].as_ptr();
        // The heap block of `buffer` does not move when the Vec value moves
        // into the slot, so `address` stays valid while the slot holds it.
        self.sends[slot as usize] = Some(SendSlot { token, buffer, from });
        let entry = opcode::Send::new(types::Fd(fd), address, len)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(user_data(KIND_SEND, u64::from(slot)));
        self.push(entry);
    }

    /// Submits everything queued and hands every completion that is ready to
    /// `handle`, without waiting. Returns how many it handled.
    pub fn poll(&mut self, mut handle: impl FnMut(Completion<'_>)) -> io::Result<usize> {
        self.check_broken()?;
        self.last_submitted = self.uring.submission().len() as u32;
        self.enter(0)?;
        let mut handled = 0;
        loop {
            self.reaped.clear();
            {
                let mut queue = self.uring.completion();
                queue.sync();
                for entry in &mut queue {
                    self.reaped.push((entry.user_data(), entry.result(), entry.flags()));
                    if self.reaped.len() == REAP_BATCH {
                        break;
                    }
                }
            }
            if self.reaped.is_empty() {
                break;
            }
            let mut gave_back = false;
            for i in 0..self.reaped.len() {
                let (data, result, flags) = self.reaped[i];
                gave_back |= self.dispatch(data, result, flags, &mut handle);
                handled += 1;
            }
            if gave_back {
                self.pool.commit();
            }
        }
        Ok(handled)
    }

    /// Creates the eventfd that wakes a parked loop, and the glommio task that
    /// reads it and rings `doorbell`. Call once, on the ring's thread, inside
    /// its glommio executor.
    pub fn spawn_wakeup(&mut self, doorbell: Rc<Doorbell>) -> io::Result<glommio::task::JoinHandle<()>> {
        // Blocking on purpose: io_uring reads a blocking eventfd by waiting
        // for it, a non-blocking one by failing with EAGAIN.
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.uring.submitter().register_eventfd(fd)?;
        // Busy until the loop parks.
        self.uring.completion().disable_eventfd();
        // SAFETY: `fd` is a new eventfd this function owns; the file takes it.
        let file = unsafe { glommio::io::BufferedFile::from_raw_fd(fd) };
        let task = glommio::spawn_local(async move {
            // A failed read must not end the task: the parked loop would then
            // wake only on its own timer. Say so once, ring anyway (a spurious
            // turn is harmless), and read again a moment later.
            let mut told = false;
            loop {
                if let Err(error) = file.read_at(0, 8).await {
                    if !told {
                        // A log line is never worth the shard: a closed
                        // stderr must not panic it (eprintln! would).
                        use std::io::Write as _;
                        let _ = writeln!(
                            std::io::stderr().lock(),
                            "hongbao-uring: reading the ring's eventfd failed ({error}); reading on"
                        );
                        told = true;
                    }
                    glommio::timer::sleep(WAKEUP_RETRY).await;
                }
                doorbell.ring();
            }
        });
        Ok(task.detach())
    }

    /// Before parking: lets the eventfd fire and runs the kernel's deferred
    /// work once more. `false`: completions are already waiting, do not park.
    pub fn prepare_park(&mut self) -> io::Result<bool> {
        self.check_broken()?;
        self.uring.completion().enable_eventfd();
        self.enter(0)?;
        let mut queue = self.uring.completion();
        queue.sync();
        if queue.is_empty() {
            Ok(true)
        } else {
            queue.disable_eventfd();
            Ok(false)
        }
    }

    /// Whether a parked loop has something to do on this ring: completions
    /// waiting, or completion work the kernel has queued for this thread and
    /// not run yet (a receive's data, say). Costs no system call.
    ///
    /// This is how [`Ring::park`] finds work whose eventfd signal has not
    /// come.
    ///
    /// Without the kernel's flag it cannot tell, and says `true` for deferred
    /// and cooperative rings (a turn finds out); an interrupt-driven ring
    /// posts its completions at once, so the queue alone answers.
    pub fn work_waiting(&mut self) -> bool {
        let waiting = {
            let mut completions = self.uring.completion();
            completions.sync();
            !completions.is_empty()
        };
        if waiting {
            return true;
        }
        if self.taskrun_flag {
            return self.uring.submission().taskrun();
        }
        self.task_run != TaskRun::Interrupt
    }

    /// Whether [`Ring::work_waiting`] reads the kernel's flag (it guesses
    /// `true` without it).
    pub fn knows_waiting_work(&self) -> bool {
        self.taskrun_flag || self.task_run == TaskRun::Interrupt
    }

    /// Parks the calling task after [`Ring::prepare_park`] said it may: until
    /// `doorbell` rings, work is waiting on the ring, or `deadline`.
    ///
    /// The doorbell alone is not enough: the kernel does not always signal
    /// the ring's eventfd when a receive's data arrives (where it may not
    /// signal from the context that queued the work, it defers the signal to
    /// an RCU callback). On this project's 2-vCPU test machine such a wake-up
    /// came 12 to 28 ms late, the request's bytes waiting in the socket all
    /// along, and a pipelined client that let the server park between its
    /// batches got a fiftieth of the speed. So the park also looks at the
    /// ring ([`Ring::work_waiting`]): first [`PARK_LOOK_FIRST`] after it
    /// began, then twice as long after each look that found nothing, up to
    /// [`PARK_LOOK_MAX`]. A loop parked between a client's batches finds the
    /// next one within about the time it had already waited; an idle one
    /// soon looks every few milliseconds.
    pub async fn park(&mut self, doorbell: &Doorbell, deadline: Instant) -> Woken {
        let mut look = PARK_LOOK_FIRST;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Woken::Deadline;
            }
            let rang = futures_lite::future::or(
                async {
                    doorbell.wait().await;
                    true
                },
                async {
                    glommio::timer::sleep(left.min(look)).await;
                    false
                },
            )
            .await;
            if rang {
                return Woken::Doorbell;
            }
            if self.work_waiting() {
                return Woken::Work;
            }
            look = (look * 2).min(PARK_LOOK_MAX);
        }
    }

    /// After parking: the eventfd goes quiet again.
    pub fn unpark(&mut self) {
        self.uring.completion().disable_eventfd();
    }

    fn dispatch(
        &mut self,
        data: u64,
        result: i32,
        flags: u32,
        handle: &mut impl FnMut(Completion<'_>),
    ) -> bool {
        let token = data & TOKEN_MAX;
        let more = cqueue::more(flags);
        if !more {
            self.in_flight -= 1;
        }
        match data >> KIND_SHIFT {
            KIND_RECV if result > 0 => {
                let id = cqueue::buffer_select(flags).expect("a receive with data names its buffer");
                handle(Completion::Received {
                    token,
                    data: self.pool.data(id, result as usize),
                    armed: more,
                });
                self.pool.give_back(id);
                return true;
            }
            KIND_RECV => {
                let error = (result < 0).then(|| io::Error::from_raw_os_error(-result));
                // A final completion may still carry a buffer (it was filled
                // with nothing); it goes back.
                let gave_back = if let Some(id) = cqueue::buffer_select(flags) {
                    self.pool.give_back(id);
                    true
                } else {
                    false
                };
                handle(Completion::ReceiveEnded { token, error });
                return gave_back;
            }
            KIND_SEND => {
                let slot = token as usize;
                let SendSlot { token, buffer, from } =
                    self.sends[slot].take().expect("a send completes once");
                self.free_sends.push(slot as u32);
                let result =
                    if result < 0 { Err(io::Error::from_raw_os_error(-result)) } else { Ok(result as usize) };
                handle(Completion::Sent { token, buffer, from, result });
            }
            KIND_ACCEPT if result >= 0 => {
                // SAFETY: the kernel made this descriptor for us; nobody else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(result) };
                handle(Completion::Accepted { token, fd, armed: more });
            }
            KIND_ACCEPT => {
                handle(Completion::AcceptEnded { token, error: io::Error::from_raw_os_error(-result) })
            }
            _ => {} // KIND_CANCEL: the target reports for itself.
        }
        false
    }

    fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target).build().user_data(user_data(KIND_CANCEL, 0));
        self.push(entry);
    }

    /// Queues one entry, submitting first if the queue is full. A ring that
    /// cannot take it is marked broken (the entry is dropped, unseen by the
    /// kernel) and the next [`Ring::poll`] says why: a socket loop cannot go
    /// on without its ring, but it must stop with an error, not a panic.
    fn push(&mut self, entry: squeue::Entry) {
        if self.broken.is_some() {
            return;
        }
        for _ in 0..PUSH_ATTEMPTS_MAX {
            // SAFETY: every entry built above points only at memory the ring
            // keeps alive until its completion: send buffers in `sends`, the
            // receive pool in `pool`; accepts and cancels point at nothing.
            let pushed = unsafe { self.uring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return;
            }
            // Full: hand the queue to the kernel and try again.
            if let Err(error) = self.enter(0) {
                let why = format!("io_uring_enter failed while the submission queue is full: {error}");
                self.broken = Some(io::Error::new(error.kind(), why));
                return;
            }
        }
        // The kernel took nothing for this long (it answered EBUSY or EAGAIN
        // every time): spinning on would hang the shard without a word.
        self.broken = Some(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("io_uring: the submission queue stayed full through {PUSH_ATTEMPTS_MAX} submissions"),
        ));
    }

    /// The error that broke the ring, again for each caller.
    fn check_broken(&self) -> io::Result<()> {
        match &self.broken {
            Some(error) => Err(io::Error::new(error.kind(), error.to_string())),
            None => Ok(()),
        }
    }

    /// One `io_uring_enter`: submits what is queued and runs the kernel's
    /// completion work, waiting for `wait` completions.
    fn enter(&mut self, wait: u32) -> io::Result<()> {
        let queued = self.uring.submission().len() as u32;
        // SAFETY: a plain io_uring_enter on our own ring, with no argument.
        let result =
            unsafe { self.uring.submitter().enter::<libc::sigset_t>(queued, wait, ENTER_GETEVENTS, None) };
        match result {
            Ok(_) => Ok(()),
            // Interrupted, or the completion queue is full: reaping makes room.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Ring {
    /// Cancels every operation, waits for the kernel to finish them (up to
    /// two seconds) and frees the ring. Returns the operations still in
    /// flight at the end: 0, or else their buffers were leaked rather than
    /// freed under the kernel. Dropping a ring does the same.
    pub fn close(mut self) -> usize {
        self.shut_down()
    }

    fn shut_down(&mut self) -> usize {
        if self.closed {
            return 0;
        }
        self.closed = true;
        // The kernel may still write into receive buffers or read send buffers:
        // cancel everything and wait until it is done before freeing them.
        let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(user_data(KIND_CANCEL, 0));
        // A full queue is handed to the kernel first (a few times at most):
        // without the cancel, the wait below would run to its end.
        for _ in 0..4 {
            // SAFETY: a cancel points at no memory.
            if unsafe { self.uring.submission().push(&cancel_all) }.is_ok() {
                self.in_flight += 1;
                break;
            }
            if self.broken.is_some() || self.enter(0).is_err() {
                break;
            }
        }
        let deadline = Instant::now() + DROP_WAIT;
        while self.in_flight > 0 && Instant::now() < deadline {
            if self.poll(|_| {}).is_err() {
                break;
            }
            if self.in_flight > 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let left = self.in_flight;
        if left > 0 {
            // Still busy: leak the buffers rather than free memory the kernel
            // may touch. Closing the ring ends the operations eventually.
            std::mem::forget(std::mem::take(&mut self.sends));
            // SAFETY: dropped exactly once (`closed` guards), here; the pool
            // is leaked.
            unsafe { ManuallyDrop::drop(&mut self.uring) };
            return left;
        }
        // SAFETY: each dropped exactly once (`closed` guards); the ring
        // (which references the pool) goes first.
        unsafe {
            ManuallyDrop::drop(&mut self.uring);
            ManuallyDrop::drop(&mut self.pool);
        }
        0
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Builds the ring with deferred task running, else cooperative, else plain;
/// with the kernel's "work is queued" flag where it has it. Returns the ring,
/// its mode and whether the flag is set.
fn build(entries: u32) -> io::Result<(IoUring, TaskRun, bool)> {
    let cq = entries.saturating_mul(4);
    for flagged in [true, false] {
        let mut builder = IoUring::builder();
        builder.setup_single_issuer().setup_defer_taskrun().setup_cqsize(cq).setup_submit_all();
        if flagged {
            builder.setup_taskrun_flag();
        }
        if let Ok(uring) = builder.build(entries) {
            return Ok((uring, TaskRun::Deferred, flagged));
        }
    }
    let cooperative =
        IoUring::builder().setup_coop_taskrun().setup_taskrun_flag().setup_cqsize(cq).build(entries);
    if let Ok(uring) = cooperative {
        return Ok((uring, TaskRun::Cooperative, true));
    }
    Ok((IoUring::builder().setup_cqsize(cq).build(entries)?, TaskRun::Interrupt, false))
}

fn user_data(kind: u64, token: u64) -> u64 {
    assert!(token <= TOKEN_MAX, "token {token} is wider than 56 bits");
    (kind << KIND_SHIFT) | token
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.uring.as_raw_fd())
            .field("task_run", &self.task_run)
            .field("taskrun_flag", &self.taskrun_flag)
            .field("in_flight", &self.in_flight)
            .field("pool", &*self.pool)
            .finish()
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.uring.as_raw_fd()
    }
}
