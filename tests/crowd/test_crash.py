"""test_crash.py — floodgate killed and stalled under a launch crowd, then audited.

A crowd (floodgate-crowd, every buyer a retrier: --pct-retry 100, --retries 40) runs against the
real server while this test, from a seeded schedule:

- kills the server with SIGKILL at random moments while the crowd's requests are being batched
  and committed, and restarts it on the same --data directory and port;
- kills it again at a random moment of its start-up, before it listens, while the ledger is being
  opened and the engine rebuilt from it (the kill comes within the shortest of the last three
  start-ups, measured from spawn to listening; the ledger holds every buyer and order so far, so
  a start-up takes a measurable time that grows run after run);
- stalls it with SIGSTOP for several seconds, then SIGCONT, while the crowd's requests time out
  and are retried with the same Idempotency-Key.

Afterwards the crowd audits what it was told (exit 0, "audit: ok") and this test checks the
server's record on its own against the crowd's record (--record): I1 per SKU
(sold + held + available == stock, each >= 0, nothing still held after every TTL), I2 (no buyer
over the limit), I3 (every order and every hold acknowledged with 201 is on the server's books),
I5 (no hold ordered twice, no order the crowd was not told of beyond the requests left
unanswered, which must be none: every buyer retried to a definite answer), I6 (every order ships
to its own, offered market). At the end every run's record is audited again (--audit-only), so
the orders of the first run must have survived every later kill.

Python 3 standard library only. The server listens on 127.0.0.1 on a port chosen free below the
kernel's ephemeral range (the crowd's own outgoing connections can never take it while the
server is down) and keeps it across restarts.

Environment:
  FLOODGATE_BIN            the server (default build/floodgate, relative to the repository root)
  FLOODGATE_CROWD_BIN      the crowd (default build/floodgate-crowd)
  FG_CRASH_SEED            replay a schedule (the seed is printed at the start of each test)
  FG_CRASH_CYCLES          kill -9 cycles in all (default 10)
  FG_CRASH_CYCLES_PER_RUN  cycles during one crowd run (default 10); more cycles, more runs
  FG_CRASH_STALLS          SIGSTOP stalls (default 3)
  FG_CRASH_REPORT          append one line of figures per test to this file
  FG_KEEP_DATA=1           keep the temporary directory (data, logs, records)

Every wait is bounded in time and every loop in count; servers and crowds are killed and the
temporary directory removed when a test ends, passed or failed. With the defaults the file takes
60-75 s, also on an ASan build (about half for each test; the audit waits out the 10 s hold TTL).
"""

import atexit
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT_S = 60.0  # a start-up rebuilds the engine from the whole ledger
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 15.0
PORT_TRIES_MAX = 200

CYCLES = int(os.environ.get("FG_CRASH_CYCLES", "10"))
CYCLES_PER_RUN = int(os.environ.get("FG_CRASH_CYCLES_PER_RUN", "10"))
STALLS = int(os.environ.get("FG_CRASH_STALLS", "3"))

# The crowd of one run: open loop, so buyers keep arriving through every kill.
KILL_RATE_PER_S = 600
STALL_RATE_PER_S = 400
CYCLE_BUDGET_S = 1.2  # arrivals last this long per planned cycle (and a start-up), plus:
ARRIVALS_EXTRA_S = 3.0
STOCK_SHARE = 0.75    # of the buyers: holds and orders commit until near the end
LIMIT = 1
HOLD_TTL_S = 10
CROWD_RETRIES = 40    # about 75 s of backoff per step: longer than any outage here
RUN_TIMEOUT_S = 300.0

# The schedule of kills and stalls.
UP_S = (0.2, 1.2)        # the server runs this long under the crowd before a kill
DOWN_S = (0.0, 0.3)      # and stays dead this long before the restart
STARTUP_SHARE = 0.3      # of the cycles: a kill during start-up instead
STARTUP_RECENT = 3       # a start-up kill comes within the shortest of the last start-ups,
STARTUP_WINDOW_S = 0.05  # or within this before any was measured
STALL_S = (2.0, 3.5)     # SIGSTOP this long
STALL_GAP_S = (0.5, 1.0) # running between stalls
STALL_TIMEOUT_MS = 1000  # the crowd's request timeout in the stall test: stalls outlast it


def binary(env, default):
    b = os.environ.get(env, default)
    return b if os.path.isabs(b) else os.path.join(REPO_ROOT, b)


def pick_port(rng):
    """A free loopback port below the ephemeral range: while the server is down, no outgoing
    connection (the crowd's own) can be given it, nor connect to itself through it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    lo, hi = max(1024, low - 12000), max(1025, low - 1)
    for _ in range(PORT_TRIES_MAX):
        port = rng.randint(lo, hi)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free port in %d..%d after %d tries" % (lo, hi, PORT_TRIES_MAX))


def seed_from_env():
    s = os.environ.get("FG_CRASH_SEED")
    return int(s) if s else secrets.randbelow(2 ** 31)


LIVE = []  # processes a test started: killed at exit whatever happened


@atexit.register
def _kill_leftovers():
    for p in LIVE:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(timeout=STOP_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired):
                pass


class Server:
    """The real floodgate on 127.0.0.1:`port` with `data`, started and killed at will."""

    def __init__(self, tmp, port):
        self.tmp = tmp
        self.port = port
        self.data = os.path.join(tmp, "data")
        self.port_file = os.path.join(tmp, "port")
        self.log_path = os.path.join(tmp, "server.log")
        self.admin_token = "fga_" + secrets.token_hex(16)
        self.secret = "whsec_" + secrets.token_hex(16)
        self.proc = None
        self.spawned_at = 0.0
        self.start_s = []  # spawn -> listening, per complete start
        self.stopped = False

    def spawn(self):
        exe = binary("FLOODGATE_BIN", "build/floodgate")
        if not os.path.exists(exe):
            raise AssertionError("floodgate not found at %s (set FLOODGATE_BIN)" % exe)
        assert self.proc is None, "a server is already running"
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        with open(self.log_path, "ab") as log:
            log.write(b"--- spawn\n")
            log.flush()
            self.proc = subprocess.Popen(
                [exe, "serve", "--listen", "127.0.0.1:%d" % self.port, "--data", self.data,
                 "--admin-token", self.admin_token, "--webhook-secret", self.secret,
                 "--port-file", self.port_file, "--quiet"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.tmp)
        LIVE.append(self.proc)
        self.spawned_at = time.monotonic()
        self.stopped = False

    def listening(self):
        """True once the server has bound its port: the engine is loaded by then."""
        return os.path.exists(self.port_file)

    def wait_ready(self):
        """Waits until /readyz answers 200; records the start-up time."""
        deadline = self.spawned_at + START_TIMEOUT_S
        listening_at = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %s during start-up\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            if listening_at is None and self.listening():
                listening_at = time.monotonic()
            if listening_at is not None and get(self.port, "/readyz")[0] == 200:
                self.start_s.append(listening_at - self.spawned_at)
                return
            time.sleep(0.005 if listening_at is None else 0.02)
        raise AssertionError("server not ready within %.0f s\n%s"
                             % (START_TIMEOUT_S, self.log_tail()))

    def start(self):
        self.spawn()
        self.wait_ready()

    def kill9(self):
        if self.proc is None:
            return
        self.proc.kill()  # SIGKILL also ends a stopped process
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None
        self.stopped = False

    def stall(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self):
        """SIGTERM; returns the exit code (None, after SIGKILL, when it did not exit)."""
        if self.proc is None:
            return None
        if self.stopped:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None
        self.proc = None
        return rc

    def restore_ms(self):
        """The engine's rebuild time of each start-up that got that far, from the server log."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [float(ms) for ms in re.findall(r"event=restored .*?\bms=([\d.]+)", text)]

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "--- server log (last %d lines)\n%s" % (n, "\n".join(lines[-n:]))
        except OSError:
            return "(no server log)"

    def url(self):
        return "http://127.0.0.1:%d" % self.port


def get(port, path, token=None):
    """One GET on a fresh connection: (status, body bytes), (0, b"") when no answer came."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
        r = c.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        c.close()


class Crowd:
    """floodgate-crowd in the background: its stdout is read as it comes, so the test knows
    when the sale phase is over (the summary is printed then, before the audit)."""

    def __init__(self, srv, args, tmp, name):
        exe = binary("FLOODGATE_CROWD_BIN", "build/floodgate-crowd")
        if not os.path.exists(exe):
            raise AssertionError("floodgate-crowd not found at %s (set FLOODGATE_CROWD_BIN)" % exe)
        self.err_path = os.path.join(tmp, name + ".err")
        self.lines = []
        self.sale_over = threading.Event()
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [exe, "--url", srv.url(), "--admin-token", srv.admin_token] + args,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        LIVE.append(self.proc)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:  # ends at EOF: when the crowd exits
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith("floodgate-crowd summary"):
                self.sale_over.set()
        self.sale_over.set()

    def running(self):
        return not self.sale_over.is_set()

    def wait(self, timeout):
        """Waits for the crowd's exit (killed past `timeout`); returns (exit code, stdout)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            rc = None
        self.reader.join(timeout=STOP_TIMEOUT_S)
        return rc, "\n".join(self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.reader.join(timeout=STOP_TIMEOUT_S)

    def stderr_tail(self, n=15):
        try:
            with open(self.err_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""


def crowd_args(buyers, rate, seed, sale_id, record, timeout_ms):
    return ["--buyers", str(buyers), "--stock", str(int(buyers * STOCK_SHARE)),
            "--rate", str(rate),
            "--connections", "64", "--limit", str(LIMIT), "--hold-ttl-s", str(HOLD_TTL_S),
            "--opens-in-s", "1", "--duration-s", "120", "--timeout-ms", str(timeout_ms),
            "--pct-retry", "100", "--retries", str(CROWD_RETRIES), "--seed", str(seed),
            "--sale-id", sale_id, "--record", record]


def read_record(path):
    """The crowd's record (src/crowd/record.h) as a dict."""
    rec = {"orders": [], "abandoned": [], "unordered": [], "observed": []}
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines or lines[0] != "floodgate-crowd record 1":
        raise AssertionError("%s is not a crowd record" % path)
    for line in lines[1:]:
        w = line.split(" ")
        if w[0] == "sale":
            kv = dict(zip(w[0::2], w[1::2]))
            rec.update(sale=kv["sale"], stock=int(kv["stock"]), limit=int(kv["limit"]),
                       blocked=kv["blocked"], unknown=int(kv["unknown"]))
        elif w[0] == "order":
            rec["orders"].append({"id": w[1], "hold_id": w[2], "buyer_id": w[3], "market": w[4],
                                  "quantity": int(w[5])})
        elif w[0] in ("abandoned", "unordered"):
            rec[w[0]].append((w[1], w[2]))
        elif w[0] == "observed":
            rec["observed"].append(line)
    return rec


def summary_count(out, pattern):
    m = re.search(pattern, out, re.M)
    return int(m.group(1).replace(",", "")) if m else None


def answers(out):
    """From the crowd's answers table: (answers received, tries that got none)."""
    got, none, in_table = 0, 0, False
    for line in out.splitlines():
        if line.startswith("answers ("):
            in_table = True
            continue
        m = re.match(r"^  \((\d[\d,]*) answers of further kinds", line)
        if in_table and m:
            got += int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"^  (\S.*?) +(\d[\d,]*)$", line)
        if not in_table or not m:
            in_table = False
            continue
        n = int(m.group(2).replace(",", ""))
        if " no answer (" in m.group(1):
            none += n
        else:
            got += n
    return got, none


class CrashTest(unittest.TestCase):

    def setUp(self):
        self.seed = seed_from_env()
        self.rng = random.Random(self.seed)
        print("\n%s: FG_CRASH_SEED=%d" % (self.id().rsplit(".", 1)[-1], self.seed), flush=True)
        self.t0 = time.monotonic()
        self.tmp = tempfile.mkdtemp(prefix="fg-crash-")
        if os.environ.get("FG_KEEP_DATA") != "1":
            self.addCleanup(shutil.rmtree, self.tmp, True)
        self.srv = Server(self.tmp, pick_port(random.Random()))  # not from the seed: a replay
        # must not depend on which ports happen to be free
        self.addCleanup(self.srv.kill9)
        self.crowds = []
        self.addCleanup(lambda: [c.kill() for c in self.crowds])
        self.srv.start()

    def context(self, out="", crowd=None):
        return "FG_CRASH_SEED=%d\n--- crowd stdout\n%s\n--- crowd stderr\n%s\n%s" % (
            self.seed, out[-6000:], crowd.stderr_tail() if crowd else "", self.srv.log_tail())

    # -- one crowd run under a perturbation ----------------------------------------------------

    def run_crowd(self, name, buyers, rate, timeout_ms, perturb):
        """Runs a crowd of `buyers` arriving at `rate` per second while perturb(crowd) acts on
        the server; then checks its audit and the server's record. Returns (stdout, record)."""
        sale_id = "crash-%s-%s" % (name, secrets.token_hex(3))
        record = os.path.join(self.tmp, name + ".record")
        crowd = Crowd(self.srv, crowd_args(buyers, rate, self.rng.randrange(1, 2 ** 31), sale_id,
                                           record, timeout_ms), self.tmp, name)
        self.crowds.append(crowd)
        try:
            perturb(crowd)
        finally:
            if self.srv.stopped:
                self.srv.resume()
            if not self.srv.alive():  # the audit reads the server: it must be up for it
                self.srv.kill9()
                self.srv.start()
        rc, out = crowd.wait(RUN_TIMEOUT_S)
        self.assertEqual(rc, 0, "crowd exit %s (0: audit ok)\n%s" % (rc, self.context(out, crowd)))
        self.assertIn("\naudit: ok", out, self.context(out, crowd))
        rec = read_record(record)
        self.check_server_record(rec, out, crowd)
        self.runs.append((sale_id, record))
        return out, rec

    # -- the server's record, checked here on its own --------------------------------------

    def check_server_record(self, rec, out, crowd):
        ctx = lambda: self.context(out, crowd)
        self.assertEqual(rec["observed"], [], "contract breaks seen by the crowd\n" + ctx())
        # Every buyer retried until it got a definite answer: nothing is left unknown.
        self.assertEqual(rec["unknown"], 0, "requests left without an answer\n" + ctx())
        status, body = get(self.srv.port, "/admin/v1/sales/%s/orders?format=ndjson"
                           % rec["sale"], self.srv.admin_token)
        self.assertEqual(status, 200, "export: %d %r" % (status, body[:200]))
        rows = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
        by_id = {r["id"]: r for r in rows}
        self.assertEqual(len(by_id), len(rows), "an order id exported twice")
        live = [r for r in rows if r["state"] != "cancelled"]
        holds = [r["hold_id"] for r in live]
        self.assertEqual(len(set(holds)), len(holds), "a hold ordered twice: sold twice (I5)")
        units = {}
        for r in live:
            units[r["buyer_id"]] = units.get(r["buyer_id"], 0) + r["quantity"]
            self.assertEqual(r["sale_id"], rec["sale"])
            self.assertNotEqual(r["market"], rec["blocked"], "an order in the blocked market (I6)")
            self.assertEqual(r["shipping"]["country"], r["market"], "ships abroad (I6): %r" % r)
        over = {b: u for b, u in units.items() if u > rec["limit"]}
        self.assertEqual(over, {}, "buyers over the limit of %d (I2)" % rec["limit"])
        told = set()
        for o in rec["orders"]:  # every order acknowledged with 201 is on the books (I3)
            r = by_id.get(o["id"])
            self.assertIsNotNone(r, "acknowledged order %s missing from the export (I3)" % o["id"])
            got = (r["hold_id"], r["buyer_id"], r["market"], r["quantity"], r["state"])
            want = (o["hold_id"], o["buyer_id"], o["market"], o["quantity"], "paid")
            self.assertEqual(got, want, "order %s differs from what the crowd was told" % o["id"])
            told.add(o["id"])
        self.assertLessEqual(len(by_id) - len(told), rec["unknown"],
                             "orders the crowd was never told of (I5)")
        self.check_stats(rec, rows)
        self.check_holds(rec)

    def check_stats(self, rec, rows):
        status, body = get(self.srv.port, "/admin/v1/sales/%s/stats" % rec["sale"],
                           self.srv.admin_token)
        self.assertEqual(status, 200, "stats: %d %r" % (status, body[:200]))
        st = json.loads(body)
        for it in st["items"]:  # I1 per SKU, and every hold over by now
            for k in ("available", "held", "sold"):
                self.assertGreaterEqual(it[k], 0, "I1: %r" % it)
            self.assertEqual(it["available"] + it["held"] + it["sold"], it["stock"], "I1: %r" % it)
            self.assertEqual(it["held"], 0, "units still held after every TTL: %r" % it)
        self.assertEqual(st["stock"], rec["stock"])
        paid = sum(r["quantity"] for r in rows if r["state"] == "paid")
        self.assertEqual(st["sold"], paid, "stats sold vs paid units in the export")

    def check_holds(self, rec):
        """Every hold acknowledged with 201 exists (I3): abandoned ones expired, the others
        expired or ordered (when their order's answer was lost)."""
        c = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=HTTP_TIMEOUT_S)
        try:
            for kind, ok in (("abandoned", ("expired",)), ("unordered", ("expired", "ordered"))):
                for hold_id, token in rec[kind]:
                    c.request("GET", "/v1/holds/" + hold_id,
                              headers={"Authorization": "Bearer " + token})
                    r = c.getresponse()
                    body = r.read()
                    self.assertEqual(r.status, 200, "acknowledged %s hold %s: %d %r (I3)"
                                     % (kind, hold_id, r.status, body[:200]))
                    self.assertIn(json.loads(body)["state"], ok, "%s hold %s" % (kind, hold_id))
        finally:
            c.close()

    def audit_again(self):
        """Every run's record audited once more, at the end: what was acknowledged in the first
        run survived every kill after it."""
        exe = binary("FLOODGATE_CROWD_BIN", "build/floodgate-crowd")
        for sale_id, record in self.runs:
            p = subprocess.run([exe, "--url", self.srv.url(), "--admin-token",
                                self.srv.admin_token, "--audit-only", sale_id, "--expect", record],
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=RUN_TIMEOUT_S)
            out = p.stdout.decode("utf-8", "replace")
            self.assertEqual(p.returncode, 0, "audit again of %s\n%s\n%s"
                             % (sale_id, out, p.stderr.decode("utf-8", "replace")))
            self.assertIn("audit: ok\n", out)

    def audit_fails_on_a_hold_the_server_never_had(self, sale_id, record):
        """The audit's hold check can fail: a record claiming an acknowledged hold the server
        does not have (a real buyer's token, an id never given) must end in a violation."""
        with open(record) as f:
            lines = f.read().splitlines()
        token = next(l.split()[2] for l in lines if l.startswith(("abandoned ", "unordered ")))
        tampered = record + ".tampered"
        with open(tampered, "w") as f:
            f.write("\n".join(lines + ["unordered h_99999999 " + token]) + "\n")
        exe = binary("FLOODGATE_CROWD_BIN", "build/floodgate-crowd")
        p = subprocess.run([exe, "--url", self.srv.url(), "--admin-token", self.srv.admin_token,
                            "--audit-only", sale_id, "--expect", tampered],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT_S)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 1, out)
        self.assertRegex(out, r"audit: violation: unordered hold h_99999999 of buyer b_\d+: 404 "
                              r"not_found, expected expired or ordered\n")
        self.assertIn("audit: 1 violations\n", out)

    def finish(self, what):
        rc = self.srv.terminate()
        self.assertEqual(rc, 0, "server exit after SIGTERM\n" + self.srv.log_tail())
        line = "%s seed %d: %s; %.1f s" % (self.id().rsplit(".", 1)[-1], self.seed, what,
                                           time.monotonic() - self.t0)
        print(line, flush=True)
        path = os.environ.get("FG_CRASH_REPORT")
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")

    # -- kill -9 ------------------------------------------------------------------------------

    def schedule(self, n):
        """Kinds of `n` kills: "load" (under the crowd) or "startup" (during a restart), the
        first always under load; at least one start-up kill when n >= 2."""
        kinds = ["load"] * n
        k = max(1 if n >= 2 else 0, int(n * STARTUP_SHARE))
        for i in self.rng.sample(range(1, n), min(k, n - 1)) if n >= 2 else []:
            kinds[i] = "startup"
        return kinds

    def wait_while_crowd(self, crowd, seconds):
        """Sleeps up to `seconds`; False when the crowd's sale ended first."""
        return not crowd.sale_over.wait(timeout=seconds)

    def kill_cycles(self, crowd, kinds, log):
        for kind in kinds:
            if not crowd.running():
                return
            if not self.srv.alive():
                self.srv.spawn()
                if kind == "startup":
                    # Within the shortest recent start-up: before the server listens, while
                    # the ledger opens and the engine is rebuilt from it.
                    recent = self.srv.start_s[-STARTUP_RECENT:]
                    delay = self.rng.uniform(0, min(recent) if recent else STARTUP_WINDOW_S)
                    time.sleep(delay)
                    early = not self.srv.listening()
                    self.srv.kill9()
                    log.append(("startup", early))
                    print("  kill -9 %.3f s after spawn: %s (recent start-ups took %s s)"
                          % (delay, "during start-up" if early else "just after it",
                             "/".join("%.3f" % s for s in self.srv.start_s[-STARTUP_RECENT:])),
                          flush=True)
                    continue
                self.srv.wait_ready()
            up = self.rng.uniform(*UP_S)
            if not self.wait_while_crowd(crowd, up):
                return
            self.srv.kill9()
            log.append(("load", True))
            print("  kill -9 after %.3f s under the crowd" % up, flush=True)
            time.sleep(self.rng.uniform(*DOWN_S))

    def test_kill9_at_random_moments_under_a_crowd(self):
        self.runs, log, outs = [], [], []
        for run in range(CYCLES):  # bounded: each run does at least one cycle or fails
            left = CYCLES - len(log)
            if left <= 0:
                break
            n = min(CYCLES_PER_RUN, left)
            kinds = self.schedule(n)
            # A cycle lasts about CYCLE_BUDGET_S plus a start-up, which grows with the ledger.
            per_cycle_s = CYCLE_BUDGET_S + max(self.srv.start_s[-STARTUP_RECENT:])
            buyers = int(KILL_RATE_PER_S * (n * per_cycle_s + ARRIVALS_EXTRA_S))
            print("run %d: %d buyers, %d kills planned (%d during start-up)"
                  % (run, buyers, n, kinds.count("startup")), flush=True)
            before = len(log)
            out, rec = self.run_crowd("kill%d" % run, buyers, KILL_RATE_PER_S, 3000,
                                      lambda crowd: self.kill_cycles(crowd, kinds, log))
            outs.append((out, rec))
            self.assertGreater(len(log), before, "run %d ended before its first kill: the crowd "
                               "is too short\n%s" % (run, self.context(out)))
        self.assertEqual(len(log), CYCLES)
        early = sum(1 for kind, e in log if kind == "startup" and e)
        if CYCLES >= 2:
            self.assertGreater(early, 0, "no kill landed during a start-up (start-ups took %s s)"
                               % ["%.3f" % s for s in self.srv.start_s])
        errors = sum(summary_count(o, r"^  errors +([\d,]+) ") or 0 for o, _ in outs)
        self.assertGreater(errors, 0, "the kills went unnoticed by the crowd")
        self.audit_again()
        self.audit_fails_on_a_hold_the_server_never_had(*self.runs[0])
        got = sum(answers(o)[0] for o, _ in outs)
        none = sum(answers(o)[1] for o, _ in outs)
        orders = sum(len(r["orders"]) for _, r in outs)
        restored = self.srv.restore_ms()
        self.finish("%d kill -9 cycles (%d under the crowd, %d during start-up, %d of them "
                    "before it listened) in %d crowd runs; %d answers (and %d tries without "
                    "one, retried), %d orders acknowledged, 0 unknown; 0 violations; start-up "
                    "%.3f-%.3f s (engine rebuilt from the ledger in %s ms)"
                    % (len(log), sum(1 for k, _ in log if k == "load"),
                       sum(1 for k, _ in log if k == "startup"), early, len(outs), got, none,
                       orders, min(self.srv.start_s), max(self.srv.start_s),
                       "%.0f-%.0f" % (min(restored), max(restored)) if restored else "?"))

    # -- SIGSTOP / SIGCONT -----------------------------------------------------------------------

    def stall_cycles(self, crowd, n, log):
        for _ in range(n):
            if not self.wait_while_crowd(crowd, self.rng.uniform(*STALL_GAP_S)):
                return
            stall = self.rng.uniform(*STALL_S)
            self.srv.stall()
            time.sleep(stall)
            self.srv.resume()
            log.append(stall)
            print("  SIGSTOP for %.3f s, then SIGCONT" % stall, flush=True)

    def test_stalls_are_retried_with_the_same_key(self):
        self.runs, log = [], []
        buyers = int(STALL_RATE_PER_S * (STALLS * (STALL_S[1] + STALL_GAP_S[1])
                                         + ARRIVALS_EXTRA_S))
        out, rec = self.run_crowd("stall", buyers, STALL_RATE_PER_S, STALL_TIMEOUT_MS,
                                  lambda crowd: self.stall_cycles(crowd, STALLS, log))
        self.assertEqual(len(log), STALLS, "the crowd ended before every stall\n"
                         + self.context(out))
        timeouts = summary_count(out, r"^  connections .* ([\d,]+) timeouts")
        self.assertIsNotNone(timeouts, self.context(out))
        self.assertGreater(timeouts, 0, "stalls of %s s caused no timeout at %d ms\n%s"
                           % (log, STALL_TIMEOUT_MS, self.context(out)))
        replays = summary_count(out, r"replays: ([\d,]+) identical")
        self.assertGreater(replays or 0, 0, self.context(out))
        self.audit_again()
        got, none = answers(out)
        self.finish("%d stalls of %s s; %d timeouts retried with the same key; %d answers (and "
                    "%d tries without one, retried), %d orders acknowledged, %d replays "
                    "identical, 0 unknown; 0 violations"
                    % (len(log), "/".join("%.1f" % s for s in log), timeouts, got, none,
                       len(rec["orders"]), replays))


if __name__ == "__main__":
    unittest.main(verbosity=2)
