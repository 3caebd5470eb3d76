"""Tests of benchlib's process handling: no child outlives the script that
started it, however the script ends. Run: python3 -m unittest bench/test_benchlib.py
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))

# A script that starts a long sleep through benchlib, prints its pid, waits.
SCRIPT = """
import signal, sys, time
# The runner's own disposition is not inherited (under nohup SIGHUP would be
# ignored, and benchlib rightly keeps it so): each mode sets its own.
signal.signal(signal.SIGHUP, signal.SIG_IGN if sys.argv[1] == "ignore-hup" else signal.SIG_DFL)
sys.path.insert(0, sys.argv[2])
import benchlib
proc = benchlib.start(["sleep", "600"], sys.argv[3])
print(proc.pid, flush=True)
time.sleep(600)
"""

# Seconds a dead script's child is given to be gone: far more than it takes.
GONE_SECS = 20.0


def alive(pid):
    """Whether pid runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pid, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


class ChildrenDieWithTheScript(unittest.TestCase):
    def launch(self, mode):
        log = tempfile.NamedTemporaryFile(delete=False)
        self.addCleanup(os.unlink, log.name)
        script = subprocess.Popen([sys.executable, "-c", SCRIPT, mode, BENCH_DIR, log.name],
                                  stdout=subprocess.PIPE, text=True)
        child = int(script.stdout.readline())
        self.addCleanup(lambda: alive(child) and os.kill(child, signal.SIGKILL))
        self.addCleanup(lambda: script.poll() is None and script.kill())
        self.assertTrue(alive(child))
        return script, child

    def test_sigkill_of_the_script_stops_its_child(self):
        script, child = self.launch("plain")
        script.kill()
        script.wait()
        self.assertTrue(gone_within(child, GONE_SECS), "the child outlived a SIGKILLed script")

    def test_sighup_stops_the_script_and_its_child(self):
        script, child = self.launch("plain")
        script.send_signal(signal.SIGHUP)
        self.assertEqual(script.wait(timeout=GONE_SECS), 128 + signal.SIGHUP)
        self.assertTrue(gone_within(child, GONE_SECS), "the child outlived the script's SIGHUP")

    def test_sighup_ignored_at_start_stays_ignored(self):
        script, child = self.launch("ignore-hup")
        script.send_signal(signal.SIGHUP)
        with self.assertRaises(subprocess.TimeoutExpired):
            script.wait(timeout=1.0)
        self.assertTrue(alive(child), "under nohup the run goes on")
        script.terminate()
        self.assertEqual(script.wait(timeout=GONE_SECS), 128 + signal.SIGTERM)
        self.assertTrue(gone_within(child, GONE_SECS))


if __name__ == "__main__":
    unittest.main()
