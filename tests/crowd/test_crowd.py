"""test_crowd.py — floodgate-crowd end to end: a small launch crowd against the real server,
then its audit, and proof that the audit fails when the record and the server disagree.

Python 3 standard library only. One server for the class (fresh data directory), one crowd run
(2,000 buyers, 200 units, 100 connections, limit 1, hold TTL 10 s, opening in 2 s, at most 60 s),
whose record (--record) later tests tamper with and hand back through --audit-only.

Environment:
  FLOODGATE_BIN        the server (default build/floodgate, relative to the repository root)
  FLOODGATE_CROWD_BIN  the crowd (default build/floodgate-crowd)

Every wait is bounded; the whole file takes about 20 s.
"""

import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
CROWD_TIMEOUT_S = 90.0  # the run is bounded at 60 s by --duration-s, plus the audit's wait

CROWD_ARGS = ["--buyers", "2000", "--stock", "200", "--connections", "100", "--limit", "1",
              "--hold-ttl-s", "10", "--opens-in-s", "2", "--duration-s", "60", "--seed", "7"]


def binary(env, default):
    b = os.environ.get(env, default)
    return b if os.path.isabs(b) else os.path.join(REPO_ROOT, b)


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """The real floodgate on 127.0.0.1 with a free port and its own data directory."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="fg-crowd-")
        self.admin_token = "fga_" + secrets.token_hex(16)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.tmp, "server.log")

    def start(self):
        exe = binary("FLOODGATE_BIN", "build/floodgate")
        if not os.path.exists(exe):
            raise AssertionError("floodgate not found at %s (set FLOODGATE_BIN)" % exe)
        port_file = os.path.join(self.tmp, "port")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, "serve", "--listen", "127.0.0.1:0", "--data", os.path.join(self.tmp, "data"),
                 "--admin-token", self.admin_token, "--webhook-secret",
                 "whsec_" + secrets.token_hex(16), "--port-file", port_file, "--quiet"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.tmp)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %s\n%s" % (self.proc.returncode,
                                                                     self.log_tail()))
            if self.port is None and os.path.exists(port_file):
                with open(port_file) as f:
                    txt = f.read().strip()
                self.port = int(txt.split(":")[-1]) if txt else None
            if self.port is not None and self.ready():
                return
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        raise AssertionError("server not ready within %.0f s\n%s" % (START_TIMEOUT_S,
                                                                     self.log_tail()))

    def ready(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/readyz")
            status = c.getresponse().status
            c.close()
            return status == 200
        except OSError:
            return False

    def stop(self):
        """SIGTERM; returns the exit code (SIGKILL and None past the timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            return None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def url(self):
        return "http://127.0.0.1:%d" % self.port


def crowd(args, timeout=CROWD_TIMEOUT_S):
    """Runs floodgate-crowd; returns (exit code, stdout, stderr)."""
    exe = binary("FLOODGATE_CROWD_BIN", "build/floodgate-crowd")
    if not os.path.exists(exe):
        raise AssertionError("floodgate-crowd not found at %s (set FLOODGATE_CROWD_BIN)" % exe)
    p = subprocess.run([exe] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class CrowdTest(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        cls.addClassCleanup(shutil.rmtree, cls.srv.tmp, True)
        cls.addClassCleanup(cls.srv.stop)
        cls.srv.start()
        cls.record = os.path.join(cls.srv.tmp, "record.txt")
        cls.rc, cls.out, cls.err = crowd(["--url", cls.srv.url(), "--admin-token",
                                          cls.srv.admin_token, "--record", cls.record]
                                         + CROWD_ARGS)
        m = re.search(r"^  sale +(\S+):", cls.out, re.M)
        cls.sale_id = m.group(1) if m else None

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        if rc != 0:
            raise AssertionError("server exit %r after SIGTERM (want 0)\n%s"
                                 % (rc, cls.srv.log_tail()))

    def show(self):
        return "exit %s\n--- stdout\n%s\n--- stderr\n%s\n--- server\n%s" % (
            self.rc, self.out, self.err[-3000:], self.srv.log_tail())

    def audit_only(self, record_path, url=None):
        return crowd(["--url", url or self.srv.url(), "--admin-token", self.srv.admin_token,
                      "--audit-only", self.sale_id, "--expect", record_path])

    def tampered(self, edit):
        """A copy of the run's record with `edit(lines)` applied; returns its path."""
        with open(self.record) as f:
            lines = f.read().splitlines()
        lines = edit(lines)
        path = os.path.join(self.srv.tmp, "tampered-%s.txt" % secrets.token_hex(4))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    # -- the run

    def test_crowd_run_sells_out_and_audit_is_ok(self):
        self.assertEqual(self.rc, 0, self.show())
        self.assertIn("audit: ok\n", self.out, self.show())
        self.assertIsNotNone(self.sale_id, self.show())
        m = re.search(r"^  register +2,000 buyers in [\d.]+ s \([\d,]+/s\), 0 failed$", self.out,
                      re.M)
        self.assertIsNotNone(m, "every buyer registers\n" + self.show())
        self.assertRegex(self.out, r"(?m)^  sell-out +[\d.]+ s after the opening", self.show())
        m = re.search(r"^  orders +([\d,]+) paid", self.out, re.M)
        self.assertIsNotNone(m, self.show())
        paid = int(m.group(1).replace(",", ""))
        self.assertTrue(0 < paid <= 200, "paid %d, stock 200\n%s" % (paid, self.show()))

    def test_summary_has_latency_percentiles_per_step(self):
        self.assertIn("latency (ms)        count       p50       p90       p99     p99.9       max",
                      self.out, self.show())
        for step in ("register", "hold", "order"):
            self.assertRegex(self.out, r"(?m)^  %s +[\d,]+( +[\d.]+){5}$" % step,
                             "latency row of %s\n%s" % (step, self.show()))

    def test_answers_by_status_and_code_cover_the_behaviour_mix(self):
        for row in ("register 201", "hold 201", "hold 409 sold_out",
                    "hold 403 not_offered_in_market", "order 201", "replay 201",
                    "extra 403 limit_reached"):
            self.assertRegex(self.out, r"(?m)^  %s +[\d,]+$" % re.escape(row),
                             "answers row %r\n%s" % (row, self.show()))
        m = re.search(r"(\d[\d,]*) abandoned holds expired", self.out)
        self.assertIsNotNone(m, self.show())
        self.assertGreater(int(m.group(1).replace(",", "")), 0, self.show())

    # -- the audit on its own

    def test_audit_only_of_the_untouched_record_is_ok(self):
        rc, out, err = self.audit_only(self.record)
        self.assertEqual(rc, 0, "%s\n%s" % (out, err))
        self.assertIn("audit: ok\n", out)

    def test_audit_fails_on_an_order_the_server_never_had(self):
        path = self.tampered(lambda lines: lines + ["order o_99999999 h_99999999 b_1 DE 1"])
        rc, out, err = self.audit_only(path)
        self.assertEqual(rc, 1, "%s\n%s" % (out, err))
        self.assertIn("audit: violation: order o_99999999 (hold h_99999999, buyer b_1) was "
                      "acknowledged with 201 but is not in the export", out)
        self.assertIn("audit: 1 violations\n", out)
        self.assertNotIn("audit: ok", out)

    def test_audit_fails_when_told_quantity_differs_from_export(self):
        def edit(lines):
            i = next(k for k, l in enumerate(lines) if l.startswith("order "))
            lines[i] = lines[i].rsplit(" ", 1)[0] + " 2"
            return lines
        rc, out, err = self.audit_only(self.tampered(edit))
        self.assertEqual(rc, 1, "%s\n%s" % (out, err))
        self.assertRegex(out, r"audit: violation: order o_\d+ differs: told .* x2 paid, "
                              r"export has .* x1 paid")

    def test_audit_fails_on_a_violation_the_crowd_saw_live(self):
        path = self.tampered(lambda lines: lines + ["observed buyer b_1 got hold h_1 past its "
                                                    "limit of 1"])
        rc, out, err = self.audit_only(path)
        self.assertEqual(rc, 1, "%s\n%s" % (out, err))
        self.assertIn("audit: violation: seen by the crowd: buyer b_1 got hold h_1 past its "
                      "limit of 1\n", out)

    def test_audit_without_a_server_is_impossible_and_exits_3(self):
        rc, out, err = self.audit_only(self.record, url="http://127.0.0.1:%d" % free_port())
        self.assertEqual(rc, 3, "%s\n%s" % (out, err))
        self.assertIn("audit: impossible:", out)
        self.assertNotIn("audit: ok", out)

    # -- the command line

    def test_help_explains_every_option(self):
        rc, out, _ = crowd(["--help"])
        self.assertEqual(rc, 0)
        for opt in ("--url", "--admin-token", "--buyers", "--connections", "--rate",
                    "--concurrency", "--stock", "--limit", "--hold-ttl-s", "--opens-in-s",
                    "--duration-s", "--seed", "--pct-retry", "--pct-abandon", "--pct-over-limit",
                    "--pct-blocked", "--record", "--audit-only", "--expect"):
            self.assertIn(opt, out)

    def test_out_of_range_options_exit_2(self):
        for args in (["--buyers", "1000001"], ["--connections", "10001"], ["--limit", "0"],
                     ["--hold-ttl-s", "9"], ["--rate", "10", "--concurrency", "10"],
                     ["--buyers", "12abc"], ["--url", "https://127.0.0.1:1"]):
            rc, _, err = crowd(["--admin-token", "x" * 20] + args)
            self.assertEqual(rc, 2, "%s: exit %d\n%s" % (args, rc, err))
            self.assertIn("floodgate-crowd:", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
