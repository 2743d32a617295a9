"""Disk faults under the ledger (DESIGN I1, I3, I5; docs/reliability.md).

The server runs with the faultfs shim (tests/faults/faultfs.c) preloaded: writes and fsyncs on
files in its data directory fail on demand, switched through a control file. What must hold:

- a failed write or a full disk: every write answers 503 overloaded with Retry-After, none 2xx;
  /readyz is 503 until a durable write succeeds again; floodgate recovers by itself when the
  disk is back, with exactly the acknowledged writes and nothing else;
- a failed fsync: floodgate refuses every write, says not ready and exits with status 74; a
  restart recovers from the ledger with every acknowledged write;
- across both: a client that retries a 503 (or a lost answer) with the same Idempotency-Key
  gets exactly one effect (I5), and the stock adds up (I1) to what clients were told.

The shim comes from FLOODGATE_FAULT_LIB (set by meson); without it the tests fail. Every wait is
bounded; every server is killed and its directory removed by the test's cleanups.
"""

import collections
import http.client
import json
import os
import re
import subprocess
import threading
import time

import fg

SHIM_SETTLE_S = 0.02     # the shim reads its control file at most every 2 ms
READY_TIMEOUT_S = 10.0   # the ledger is probed every second once a commit failed
EXIT_TIMEOUT_S = 10.0    # from a failed fsync to the process's exit
PROBE_SPAN_S = 1.5       # longer than one probe interval
LOAD_THREADS = 4
LOAD_DEADLINE_S = 60.0   # a load thread never runs longer than this
RETRY_PAUSE_S = 0.05     # between retries of a 503 (shorter than Retry-After: a test)
EXIT_LEDGER_UNSAFE = 74  # floodgate's exit status after a failed fsync (src/main.c)
STOCK = 100000


def fault_lib():
    lib = os.environ.get("FLOODGATE_FAULT_LIB", "")
    if not lib or not os.path.exists(lib):
        # a failure, not a skip: a missing shim must not pass CI
        raise AssertionError("FLOODGATE_FAULT_LIB=%r: the fault shim is not built" % lib)
    return lib


def preload_value(binary, shim):
    """LD_PRELOAD for the binary: a sanitizer runtime it links comes first (ASan refuses to
    start when another library precedes it), then the shim."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    first = []
    for line in out.splitlines():
        m = re.match(r"\s*lib(asan|tsan|ubsan)\.so\S*\s+=>\s+(\S+)", line)
        if m and m.group(1) != "ubsan":
            first.append(m.group(2))
    return " ".join(first + [shim])


class FaultServer(fg.Server):
    """A server whose data directory sits on the fault shim."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.control = os.path.join(self.tmp, "fault-control")
        self.set_fault("off")

    def set_fault(self, mode):
        """Switches the shim: off, eio-write, enospc or eio-fsync, optionally with a count."""
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            f.write(mode + "\n")
        os.replace(tmp, self.control)  # the shim reads either the old line or the new one
        time.sleep(SHIM_SETTLE_S)

    def start(self):
        shim = fault_lib()
        env = {"LD_PRELOAD": preload_value(fg.binary_path(), shim),
               "FG_FAULT_DIR": self.data, "FG_FAULT_CONTROL": self.control}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # Server.start passes the environment on; only to this child
        try:
            super().start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        with open("/proc/%d/maps" % self.proc.pid) as f:
            if os.path.realpath(shim) not in f.read():
                raise AssertionError("the fault shim is not loaded into floodgate")
        return self

    def wait_exit(self, timeout=EXIT_TIMEOUT_S):
        """Waits for the process to end by itself; returns its status (None: still running)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.proc = None
        return rc


class Acks:
    """What clients were told, by Idempotency-Key; shared by the load threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.buyers = {}      # id -> fg.Buyer
        self.holds = {}       # id -> (buyer, body)
        self.orders = {}      # id -> (buyer, body)
        self.released = set()
        self.retried = 0      # requests that needed more than one attempt
        self.refused = collections.Counter()  # (status, code) of every non-2xx answer
        self.errors = []      # answers no request may get


class DiskFaultCase(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = None  # each test starts its own server

    def new_server(self):
        srv = FaultServer()
        self.addCleanup(srv.cleanup)
        srv.start()
        cat = fg.Catalog(srv).create()
        sid = cat.sale(limit=2, ttl=3600, items=[
            {"sku": cat.acc, "stock": STOCK, "markets": ["DE"]}])
        return srv, cat, sid

    # -- checks
    def assertOverloaded(self, r, msg=None):
        """A 503 overloaded problem with a Retry-After of at least one second."""
        self.assertProblem(r, 503, "overloaded", msg=msg)
        ra = r.headers.get("retry-after", "")
        self.assertTrue(ra.isdigit() and int(ra) >= 1, "Retry-After %r: %r" % (ra, r))

    def wait_ready(self, srv, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if srv.req("GET", "/readyz").status == 200:
                return
            time.sleep(0.05)
        self.fail("not ready %.0f s after the disk came back\n%s" % (timeout, srv.log_tail()))

    def assert_not_ready_for(self, srv, seconds):
        """/readyz answers 503 at every look for `seconds` (longer than a probe interval)."""
        deadline = time.monotonic() + seconds
        looks = 0
        while time.monotonic() < deadline:
            r = srv.req("GET", "/readyz")
            self.assertProblem(r, 503, "overloaded", msg="/readyz while the disk fails")
            looks += 1
            time.sleep(0.1)
        self.assertGreater(looks, 3)

    def metric(self, srv, name):
        r = srv.req("GET", "/metrics")
        self.assertStatus(r, 200)
        m = re.search(r"^%s (\d+)$" % re.escape(name), r.body, re.M)
        self.assertIsNotNone(m, "metric %s missing" % name)
        return int(m.group(1))

    def verify(self, srv, sid, acks, buyers_total, stock=STOCK):
        """Every acknowledged write is there, and nothing else: the stock adds up to exactly
        what clients were told (I1, I3, I5)."""
        cl = srv.client()
        try:
            for b in acks.buyers.values():
                r = cl.req("GET", "/v1/me/orders", token=b.token)
                self.assertEqual(r.status, 200, "acknowledged buyer %s lost: %r" % (b.id, r))
            ordered = {o["hold_id"] for _, o in acks.orders.values()}
            for hid, (b, h) in acks.holds.items():
                r = cl.req("GET", "/v1/holds/" + hid, token=b.token)
                self.assertEqual(r.status, 200, "acknowledged hold %s lost: %r" % (hid, r))
                want = ("ordered" if hid in ordered else
                        "released" if hid in acks.released else "held")
                self.assertEqual(r.body["state"], want, "hold %s: %r" % (hid, r))
                for k in ("sku", "market", "quantity", "created_at", "expires_at"):
                    self.assertEqual(r.body[k], h[k], "hold %s field %s" % (hid, k))
            for oid, (b, o) in acks.orders.items():
                r = cl.req("GET", "/v1/orders/" + oid, token=b.token)
                self.assertEqual(r.status, 200, "acknowledged order %s lost: %r" % (oid, r))
                self.assertEqual(r.body, o, "order %s differs from its acknowledgement" % oid)
            r = cl.req("GET", "/admin/v1/sales/%s/orders?format=ndjson" % sid,
                       token=srv.admin_token)
            self.assertEqual(r.status, 200, r)
            exported = [json.loads(line) for line in r.raw.decode().splitlines() if line]
            self.assertEqual(sorted(x["id"] for x in exported), sorted(acks.orders),
                             "the export holds exactly the acknowledged orders")
            r = cl.req("GET", "/admin/v1/sales/%s/stats" % sid, token=srv.admin_token)
            self.assertEqual(r.status, 200, r)
            st = r.body
            self.assertEqual(st["available"] + st["held"] + st["sold"], st["stock"], "I1 %r" % st)
            for k in ("available", "held", "sold"):
                self.assertGreaterEqual(st[k], 0, "I1 %r" % st)
            self.assertEqual(st["stock"], stock)
            held = sum(h["quantity"] for hid, (_, h) in acks.holds.items()
                       if hid not in ordered and hid not in acks.released)
            sold = sum(o["quantity"] for _, o in acks.orders.values())
            self.assertEqual((st["held"], st["sold"]), (held, sold),
                             "held and sold against what clients were told: %r" % st)
            self.assertEqual(st["holds_total"], len(acks.holds), "holds written: %r" % st)
            self.assertEqual(st["orders_total"], len(acks.orders), "orders written: %r" % st)
            self.assertEqual(st["released_total"], len(acks.released), "releases: %r" % st)
        finally:
            cl.close()
        self.assertEqual(self.metric(srv, "floodgate_buyers"), buyers_total,
                         "registered buyers against what clients were told")


class LoadThread(threading.Thread):
    """A buyer after buyer: register, hold one unit, then order it (every other buyer) or
    release it (every fourth). A 503, a lost answer or idempotency_in_progress is retried with
    the same Idempotency-Key until it gets its final answer; a chain in progress is finished
    even after stop, so that at the end every request has its one effect."""

    def __init__(self, srv, cat, sid, acks, idx):
        super().__init__(daemon=True)
        self.srv, self.cat, self.sid, self.acks, self.idx = srv, cat, sid, acks, idx
        self.stop = threading.Event()
        self.abandon = threading.Event()  # the test failed: end now, chain or not
        self.failure = None
        self.cl = None
        self.port = None

    def call(self, method, path, body=None, token=None):
        key = "df-" + os.urandom(12).hex() if method == "POST" else None
        deadline = time.monotonic() + LOAD_DEADLINE_S
        failed = False
        while time.monotonic() < deadline:
            if self.abandon.is_set():
                raise AssertionError("abandoned")
            if self.cl is None or self.port != self.srv.port:
                if self.cl is not None:
                    self.cl.close()
                self.port = self.srv.port
                self.cl = fg.Client(self.port, timeout=10)
            try:
                r = self.cl.req(method, path, body, token=token, idem=key)
            except (OSError, http.client.HTTPException):
                self.cl.close()
                failed = True  # the server went away (exit 74) or the answer was lost
                time.sleep(RETRY_PAUSE_S)
                continue
            code = r.body.get("code") if isinstance(r.body, dict) else None
            if r.status >= 300:
                with self.acks.lock:
                    self.acks.refused[(r.status, code)] += 1
            if r.status == 503 or code == "idempotency_in_progress":
                if r.status == 503 and not re.fullmatch(r"\d+", r.headers.get("retry-after", "")):
                    with self.acks.lock:
                        self.acks.errors.append(("503 without Retry-After", path, r))
                failed = True
                time.sleep(RETRY_PAUSE_S)
                continue
            if failed:
                with self.acks.lock:
                    self.acks.retried += 1
            return r, failed
        raise AssertionError("%s %s: no final answer within %.0f s" % (method, path,
                                                                       LOAD_DEADLINE_S))

    def expect(self, r, status, what):
        if r.status != status:
            with self.acks.lock:
                self.acks.errors.append((what, r))
            return False
        return True

    def chain(self, n):
        a = self.acks
        r, _ = self.call("POST", "/v1/buyers", {"email": fg.email("df%d" % self.idx),
                                                "market": "DE"})
        if not self.expect(r, 201, "register"):
            return
        b = fg.Buyer(r.body["id"], r.body["token"], "DE", r.body["email"])
        with a.lock:
            a.buyers[b.id] = b
        r, _ = self.call("POST", "/v1/sales/%s/holds" % self.sid,
                         {"sku": self.cat.acc, "market": "DE"}, token=b.token)
        if not self.expect(r, 201, "hold"):
            return
        hid = r.body["id"]
        with a.lock:
            a.holds[hid] = (b, r.body)
        if n % 4 == 3:
            r, failed = self.call("DELETE", "/v1/holds/" + hid, token=b.token)
            if r.status == 409 and failed:
                # an earlier attempt's answer was lost, and it did release: fine if it shows
                r = self.cl.req("GET", "/v1/holds/" + hid, token=b.token)
                released = r.status == 200 and r.body.get("state") == "released"
            else:
                released = self.expect(r, 200, "release")
            if released:
                with a.lock:
                    a.released.add(hid)
        elif n % 2 == 1:
            r, _ = self.call("POST", "/v1/holds/%s/order" % hid, fg.order_body("DE"),
                             token=b.token)
            if self.expect(r, 201, "order"):
                with a.lock:
                    a.orders[r.body["id"]] = (b, r.body)

    def run(self):
        try:
            for n in range(100000):  # bounded; ends at stop
                if self.stop.is_set():
                    return
                self.chain(n)
        except Exception as e:  # reported by the test thread
            self.failure = e
        finally:
            if self.cl is not None:
                self.cl.close()


class Load:
    def __init__(self, srv, cat, sid, acks):
        self.threads = [LoadThread(srv, cat, sid, acks, i) for i in range(LOAD_THREADS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def abandon(self):
        """After a failed assertion: ends every thread at once, checking nothing."""
        for t in self.threads:
            t.abandon.set()
        for t in self.threads:
            t.join(timeout=20)

    def stop_and_join(self, case):
        """Lets every thread finish its chain, then checks that none failed."""
        for t in self.threads:
            t.stop.set()
        deadline = time.monotonic() + LOAD_DEADLINE_S + 10
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
            case.assertFalse(t.is_alive(), "a load thread did not end")
            case.assertIsNone(t.failure, "load thread: %r" % t.failure)


class TestWriteFaults(DiskFaultCase):
    """EIO on write and a full disk: 503 while failing, back by itself, nothing half-written."""

    def write_fault_refused_then_recovered(self, mode):
        srv, cat, sid = self.new_server()
        acks = Acks()
        # before: buyers with holds, one of them ordered
        buyers = [fg.register(srv) for _ in range(3)]
        for b in buyers:
            r = fg.hold(srv, b, sid, cat.acc)
            self.assertStatus(r, 201)
            acks.buyers[b.id] = b
            acks.holds[r.body["id"]] = (b, r.body)
        h0, h1, h2 = list(acks.holds)
        r = fg.order(srv, buyers[0], h0)
        self.assertStatus(r, 201)
        acks.orders[r.body["id"]] = (buyers[0], r.body)
        failures_before = self.metric(srv, "floodgate_commit_failures_total")

        srv.set_fault(mode)
        mail = fg.email("during")
        during = [  # (method, path, body, token, key): each must be refused, none applied
            ("POST", "/v1/sales/%s/holds" % sid, {"sku": cat.acc, "market": "DE"},
             buyers[1].token, fg.uid("k")),
            ("POST", "/v1/holds/%s/order" % h1, fg.order_body("DE"), buyers[1].token,
             fg.uid("k")),
            ("DELETE", "/v1/holds/" + h2, None, buyers[2].token, None),
            ("POST", "/v1/buyers", {"email": mail, "market": "DE"}, None, fg.uid("k")),
            ("POST", "/admin/v1/sales/%s/stock" % sid, {"sku": cat.acc, "add": 5},
             srv.admin_token, fg.uid("k")),
        ]
        for method, path, body, token, key in during:
            r = srv.req(method, path, body, token=token, idem=key)
            self.assertOverloaded(r, "%s %s while the disk fails (%s)" % (method, path, mode))
        self.assert_not_ready_for(srv, PROBE_SPAN_S)

        srv.set_fault("off")
        self.wait_ready(srv)
        self.assertGreater(self.metric(srv, "floodgate_commit_failures_total"),
                           failures_before, "the fault never reached a commit")
        # nothing of the refused writes is there (the stock is still STOCK: no "add" either)
        self.verify(srv, sid, acks, buyers_total=3)
        # after: the same requests, retried with their keys, now succeed once
        want = [201, 201, 200, 201, 200]
        for (method, path, body, token, key), status in zip(during, want):
            r = srv.req(method, path, body, token=token, idem=key)
            self.assertStatus(r, status, "%s %s after the disk came back" % (method, path))
            if path.endswith("/holds"):
                acks.holds[r.body["id"]] = (buyers[1], r.body)
            elif path.endswith("/order"):
                acks.orders[r.body["id"]] = (buyers[1], r.body)
            elif method == "DELETE":
                acks.released.add(h2)
            elif path == "/v1/buyers":
                acks.buyers[r.body["id"]] = fg.Buyer(r.body["id"], r.body["token"], "DE", mail)
        self.verify(srv, sid, acks, buyers_total=4, stock=STOCK + 5)
        # and all of it survives a restart
        srv.restart()
        self.verify(srv, sid, acks, buyers_total=4, stock=STOCK + 5)

    def test_eio_on_write_refused_then_recovered(self):
        self.write_fault_refused_then_recovered("eio-write")

    def test_full_disk_refused_then_recovered(self):
        self.write_fault_refused_then_recovered("enospc")

    def test_one_failed_write_recovers_without_help(self):
        """One failing write call (a transient error): that batch is refused, the next probe
        succeeds, and floodgate is ready again with the fault still armed (but used up)."""
        srv, cat, sid = self.new_server()
        b = fg.register(srv)
        srv.set_fault("eio-write 1")
        key = fg.uid("k")
        self.assertOverloaded(fg.hold(srv, b, sid, cat.acc, idem=key))
        self.wait_ready(srv)
        r = fg.hold(srv, b, sid, cat.acc, idem=key)
        self.assertStatus(r, 201)
        self.assertEqual(fg.hold(srv, b, sid, cat.acc, idem=key).raw, r.raw, "replay")
        st = fg.stats(srv, sid)
        self.assertEqual((st["held"], st["holds_total"]), (1, 1), st)
        self.assertEqual(self.metric(srv, "floodgate_commit_failures_total"), 1)

    def test_write_faults_under_load(self):
        """Buyers keep coming while the disk fails twice (EIO, then full); every request is
        retried until it gets its final answer, and the ledger ends with exactly those."""
        srv, cat, sid = self.new_server()
        acks = Acks()
        load = Load(srv, cat, sid, acks).start()
        self.addCleanup(load.abandon)
        try:
            for mode in ("eio-write", "enospc"):
                time.sleep(0.5)
                srv.set_fault(mode)
                deadline = time.monotonic() + READY_TIMEOUT_S
                while srv.req("GET", "/readyz").status == 200:
                    self.assertLess(time.monotonic(), deadline, "still ready under %s" % mode)
                    time.sleep(0.02)
                self.assert_not_ready_for(srv, PROBE_SPAN_S)
                srv.set_fault("off")
                self.wait_ready(srv)
            time.sleep(0.5)
        except BaseException:
            load.abandon()
            raise
        load.stop_and_join(self)
        self.assertEqual(acks.errors, [])
        refused = dict(acks.refused)
        self.assertGreater(acks.refused[(503, "overloaded")], 0, refused)
        self.assertEqual(set(refused) - {(503, "overloaded")}, set(), refused)
        self.assertGreater(acks.retried, 0)
        self.assertGreater(len(acks.orders), 0)
        self.assertGreaterEqual(self.metric(srv, "floodgate_commit_failures_total"), 2)
        self.verify(srv, sid, acks, buyers_total=len(acks.buyers))
        srv.restart()
        self.verify(srv, sid, acks, buyers_total=len(acks.buyers))


class TestFsyncFailure(DiskFaultCase):
    """A failed fsync: refuse, not ready, exit 74; a restart recovers from the ledger."""

    def expect_exit_74(self, srv):
        """While the process winds down, /readyz never says ready; then it exits 74."""
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while srv.proc.poll() is None and time.monotonic() < deadline:
            c = fg.Client(srv.port, timeout=2)
            try:
                r = c.req("GET", "/readyz")
                self.assertNotEqual(r.status, 200, "ready after a failed fsync: %r" % r)
            except (OSError, http.client.HTTPException):
                pass  # closing down
            finally:
                c.close()
            time.sleep(0.02)
        rc = srv.wait_exit(timeout=1)
        self.assertEqual(rc, EXIT_LEDGER_UNSAFE, "exit status after a failed fsync\n%s"
                         % srv.log_tail())
        with open(srv.log_path) as f:
            self.assertIn("event=ledger_unsafe", f.read())

    def test_failed_fsync_exits_and_restart_recovers(self):
        srv, cat, sid = self.new_server()
        acks = Acks()
        buyers = [fg.register(srv) for _ in range(2)]
        for b in buyers:
            acks.buyers[b.id] = b
            r = fg.hold(srv, b, sid, cat.acc)
            self.assertStatus(r, 201)
            acks.holds[r.body["id"]] = (b, r.body)
        h0 = list(acks.holds)[0]
        r = fg.order(srv, buyers[0], h0)
        self.assertStatus(r, 201)
        acks.orders[r.body["id"]] = (buyers[0], r.body)

        srv.set_fault("eio-fsync")
        key = fg.uid("k")
        self.assertOverloaded(fg.hold(srv, buyers[1], sid, cat.acc, idem=key))
        self.expect_exit_74(srv)

        srv.set_fault("off")
        srv.start()
        # The refused batch may be in the log file, whole, or not at all (its fsync failed
        # after SQLite wrote it): one hold more at most, never a part of one.
        st = fg.stats(srv, sid)
        self.assertIn(st["holds_total"], (2, 3), st)
        self.assertEqual(st["available"] + st["held"] + st["sold"], st["stock"], "I1 %r" % st)
        # Retried with its key, the hold is there exactly once: replayed or made now (I5).
        r = fg.hold(srv, buyers[1], sid, cat.acc, idem=key)
        self.assertStatus(r, 201)
        acks.holds[r.body["id"]] = (buyers[1], r.body)
        self.verify(srv, sid, acks, buyers_total=2)

    def test_failed_fsync_under_load(self):
        srv, cat, sid = self.new_server()
        acks = Acks()
        load = Load(srv, cat, sid, acks).start()
        self.addCleanup(load.abandon)
        try:
            time.sleep(0.7)
            srv.set_fault("eio-fsync")
            self.expect_exit_74(srv)
            srv.set_fault("off")
            srv.start()  # the load threads retry what was refused or lost, on the new port
            time.sleep(0.7)
        except BaseException:
            load.abandon()
            raise
        load.stop_and_join(self)
        self.assertEqual(acks.errors, [])
        self.assertGreater(len(acks.orders), 0)
        self.verify(srv, sid, acks, buyers_total=len(acks.buyers))


if __name__ == "__main__":
    fg.main()
