"""Helpers shared by bench/run and bench/callgrind (Python standard library only).

Processes, ports, packages, the release build, a tiny Redis client, machine
facts. Every process a bench script starts is registered here and stopped on
exit, on Ctrl-C, SIGTERM and SIGHUP (unless SIGHUP was ignored at start, as
under nohup); and the kernel sends it SIGTERM if the script dies without
stopping it (SIGKILL, a crash), so no server outlives its benchmark.
"""

import atexit
import ctypes
import json
import resource
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(BENCH_DIR)
CRATES = ("hongbao-server", "hongbao-loadgen", "hongbao-client")

# Seconds a server may take to say it is ready (valgrind makes start-up slow).
READY_SECS_MAX = 120.0
# Seconds a stopped server gets to exit before it is killed.
STOP_SECS_MAX = 15.0


def log(message):
    """Progress goes to stderr, so stdout holds only the results. A terminal
    that hung up (EIO) must not stop the servers being stopped."""
    try:
        print(f"bench: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


def fail(message, code=2):
    log(f"error: {message}")
    sys.exit(code)


# ---------------------------------------------------------------- processes

_children = []


def _stop(proc):
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_SECS_MAX)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} did not stop in {STOP_SECS_MAX:.0f} s; killing it")
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def cleanup():
    """Stops every child still running, newest first; each is let go of only
    once it is reaped."""
    while _children:
        _stop(_children[-1])
        _children.pop()


def _on_signal(signum, _frame):
    # A second signal (a hung-up terminal sends SIGHUP twice, a user presses
    # Ctrl-C again) must not cut the first one's cleanup short.
    for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    log(f"signal {signum}: stopping servers")
    cleanup()
    sys.exit(128 + signum)


atexit.register(cleanup)
signal.signal(signal.SIGINT, _on_signal)
signal.signal(signal.SIGTERM, _on_signal)
if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
    # The terminal went away: stop the servers too, not leave them running.
    signal.signal(signal.SIGHUP, _on_signal)

# prctl(2): the signal a child gets when the thread that started it dies.
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent):
    """Runs in the child between fork and exec: SIGTERM it if this script
    dies first, whatever kills it. The setting survives exec (taskset,
    valgrind), except into a set-user-id program. It follows the thread that
    forked: every start() here runs on the main thread."""
    if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        os._exit(126)
    if os.getppid() != parent:
        # The script died before the setting was made: nothing would signal us.
        os._exit(126)


def start(argv, log_path, cwd=None):
    """Starts a long-running process with stdout and stderr going to log_path."""
    out = open(log_path, "wb")
    parent = os.getpid()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                            preexec_fn=lambda: _die_with_parent(parent))
    out.close()
    _children.append(proc)
    return proc


def stop(proc):
    """Stops one child started with start()."""
    _stop(proc)
    if proc in _children:
        _children.remove(proc)


def wait_for_line(proc, log_path, needle, secs=READY_SECS_MAX):
    """Waits until log_path holds needle. Returns False if the process exits
    first (its log is then in log_path); fails after `secs`."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            if needle.encode() in f.read():
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    fail(f"no '{needle}' from {' '.join(proc.args)} within {secs:.0f} s; see {log_path}")


# Tries at starting a server on ports that were free a moment before: another
# process may take them in between.
START_TRIES_MAX = 3


def start_server(make_argv, ports, log_path, ready):
    """Starts a server on `ports` consecutive free ports; retries on other
    ports if it exits before it is ready. make_argv(port) gives the command;
    ready(proc, port) waits and returns a truthy value once it answers, or a
    falsy one if the process exited. Returns (proc, port, ready's value)."""
    for attempt in range(1, START_TRIES_MAX + 1):
        port = free_ports(ports)
        argv = make_argv(port)
        log("$ " + " ".join(a if a else "''" for a in argv))
        proc = start(argv, log_path)
        value = ready(proc, port)
        if value:
            return proc, port, value
        stop(proc)
        log(f"{argv[0] if argv[0] != 'taskset' else argv[3]} exited with {proc.returncode} "
            f"(try {attempt} of {START_TRIES_MAX}):\n" + tail(log_path))
    fail(f"could not start {' '.join(make_argv(0))}; see {log_path}")


def tail(path, lines=15):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def run(argv, **kwargs):
    """Runs a command to completion, echoing it first."""
    log("$ " + " ".join(argv))
    kwargs.setdefault("stdout", sys.stderr)
    return subprocess.run(argv, **kwargs)


# -------------------------------------------------------------------- ports

def _bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(count=1):
    """Returns the first of `count` consecutive free TCP ports on 127.0.0.1
    (hongbao needs its main port and the shard port right after it)."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        first = s.getsockname()[1]
        s.close()
        if first + count - 1 <= 65535 and all(_bindable(first + i) for i in range(count)):
            return first
    fail(f"found no {count} consecutive free ports")


# ------------------------------------------------------------------ packages

def ensure_commands(commands, packages):
    """Installs Debian packages when any command is missing (as root), or says how."""
    missing = [c for c in commands if shutil.which(c) is None]
    if not missing:
        return
    hint = "apt-get install -y " + " ".join(packages)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        fail(f"missing {', '.join(missing)}; install them with: sudo {hint}")
    log(f"missing {', '.join(missing)}: installing {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if run(["apt-get", "update", "-qq"], env=env).returncode != 0:
        fail("apt-get update failed")
    if run(["apt-get", "install", "-y", "-qq", *packages], env=env).returncode != 0:
        fail(f"apt-get install failed; try: {hint}")
    still = [c for c in commands if shutil.which(c) is None]
    if still:
        fail(f"still missing after install: {', '.join(still)}")


def stop_packaged_redis():
    """Debian's redis-server package starts a system Redis on 6379 when it is
    installed; a running one would steal CPU from the measurement, so stop it."""
    if shutil.which("service") and os.path.exists("/etc/init.d/redis-server"):
        subprocess.run(["service", "redis-server", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------- build

def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT_DIR, "target"))


def binary(name):
    return os.path.join(target_dir(), "release", name)


def build(skip):
    """cargo build --release of the server, the load generator and the client."""
    if skip:
        log("--skip-build: using the binaries already in " + os.path.join(target_dir(), "release"))
    else:
        argv = ["cargo", "build", "--release"]
        for crate in CRATES:
            argv += ["-p", crate]
        if run(argv, cwd=ROOT_DIR).returncode != 0:
            fail("cargo build --release failed")
    for name in ("hongbao-server", "hongbao-loadgen", "hongbao-cli"):
        if not os.access(binary(name), os.X_OK):
            fail(f"{binary(name)} is missing; build it (drop --skip-build)")


# --------------------------------------------------------------------- cores

def check_cores(*cores):
    allowed = os.sched_getaffinity(0)
    for core in cores:
        if core not in allowed:
            fail(f"core {core} is not available to this process (allowed: {sorted(allowed)})")
    if len(set(cores)) != len(cores):
        fail(f"cores must differ, got {cores}")


# ------------------------------------------------------------ machine facts

def _output(argv, cwd=None):
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd).stdout.strip()
    except OSError:
        return ""


def machine():
    """What a reader needs to judge the numbers: CPU, kernel, versions, commit."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dirty = _output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT_DIR)
    return {
        "cpu": cpu,
        "cpus_online": os.cpu_count(),
        "kernel": os.uname().release,
        "loadavg_at_start": os.getloadavg(),
        "rustc": _output(["rustc", "--version"]),
        "redis_server": _output(["redis-server", "--version"]),
        "git_commit": _output(["git", "rev-parse", "HEAD"], cwd=ROOT_DIR),
        "git_dirty": bool(dirty),
    }


class CpuMeter:
    """Where the CPU went while we measured: our server, our driver, others.

    The benchmark owns two cores; anything else running (a compiler, another
    benchmark) steals from the run. Busy time of every CPU (user, nice, system)
    minus the CPU time of our own server and driver is the noise; steal is the
    hypervisor's. Interrupt and softirq time is left out: loopback networking
    is accounted there, and it is ours. The server's and the driver's own
    shares show which side saturated: a side near 1.0 core is the bottleneck.
    The driver is the one child process that finishes inside the window (its
    time comes from getrusage of waited-for children).
    """

    def __init__(self, server_pid):
        self.server_pid = server_pid
        self.t0 = time.monotonic()
        self.busy0, self.steal0, self.irq0 = self._machine()
        self.server0 = self._server()
        self.children0 = self._children()

    @staticmethod
    def _machine():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, irq, softirq = fields[0], fields[1], fields[2], fields[5], fields[6]
        steal = fields[7] if len(fields) > 7 else 0
        return (user + nice + system) / tick, steal / tick, (irq + softirq) / tick

    def _server(self):
        try:
            with open(f"/proc/{self.server_pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    @staticmethod
    def _children():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def stop(self):
        """Wall seconds, and the cores used by the server, the driver and
        others, and stolen, over them. Call before the server is stopped."""
        secs = max(time.monotonic() - self.t0, 1e-9)
        busy, steal, irq = self._machine()
        server = self._server() - self.server0
        driver = self._children() - self.children0
        other = max(0.0, (busy - self.busy0) - server - driver)
        return {"secs": round(secs, 2), "server_cores": round(server / secs, 3),
                "driver_cores": round(driver / secs, 3), "other_cores": round(other / secs, 3),
                "irq_cores": round((irq - self.irq0) / secs, 3),
                "steal_cores": round((steal - self.steal0) / secs, 3)}


# Cores of CPU others may take during a run before the report warns.
NOISE_CORES_MAX = 0.05


def noise_warning(name, noise):
    if noise["other_cores"] > NOISE_CORES_MAX or noise["steal_cores"] > NOISE_CORES_MAX:
        return (f"{name}: other processes took {noise['other_cores']:.2f} cores and the hypervisor "
                f"stole {noise['steal_cores']:.2f} during the run; numbers are low and noisy")
    return None


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=False)
        f.write("\n")


# ------------------------------------------------------------- Redis client

class RedisError(Exception):
    pass


# Longest wait for one Redis answer once it is up (a batch of loads or checks).
REDIS_CALL_SECS_MAX = 600.0


class Redis:
    """Just enough RESP2 to load scripts and data and read the results."""

    def __init__(self, port, timeout=REDIS_CALL_SECS_MAX):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.reader.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def close(self):
        self.reader.close()
        self.sock.close()


def wait_redis(proc, port):
    """A connection once Redis answers PING; None if it exited first."""
    deadline = time.monotonic() + READY_SECS_MAX
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            r = Redis(port, timeout=5)
            if r.call("PING") == "PONG":
                # Answered: from here on it loads and checks data in
                # batches, which a slow machine may take minutes over.
                r.sock.settimeout(REDIS_CALL_SECS_MAX)
                return r
            r.close()
        except (OSError, RedisError):
            pass
        time.sleep(0.05)
    fail(f"redis-server on port {port} did not answer PING")
