"""Restart and crash (DESIGN I1, I2, I3, I5): kill -9 under load, SIGTERM under load, and a
plain restart; every acknowledged write must be there afterwards."""

import collections
import json
import os
import random
import signal
import threading
import time

import fg

THREADS = 8
STOCK = 300
LIMIT = 2


class Acks:
    """What clients were told (2xx answers), shared by the load threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.buyers = {}       # id -> Buyer
        self.holds = {}        # id -> (buyer, hold body)
        self.orders = {}       # id -> (buyer, order body)
        self.released = set()  # hold ids whose release was acknowledged
        self.in_flight = []    # (buyer or None, method, path, body, key): no answer came
        self.refusals = collections.Counter()
        self.requests = 0


class Load:
    """THREADS threads, each registering distinct buyers who hold and (some) order."""

    def __init__(self, srv, cat, sid, acks, markets=("DE", "FR", "IN", "US"), pause_s=0.0,
                 seed=None):
        self.srv, self.cat, self.sid, self.acks = srv, cat, sid, acks
        self.markets = markets
        self.pause_s = pause_s
        self.stop = threading.Event()
        self.rng = random.Random(seed)
        self.threads = [threading.Thread(target=self.run, args=(i, self.rng.random()))
                        for i in range(THREADS)]
        self.errors = []

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout=30):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def call(self, cl, buyer, method, path, body):
        key = "crash-" + os.urandom(8).hex() if method == "POST" else None
        a = self.acks
        try:
            r = cl.req(method, path, body, token=buyer.token if buyer else None, idem=key)
        except (OSError, Exception) as e:  # the server went away mid-request
            with a.lock:
                a.in_flight.append((buyer, method, path, body, key))
            raise _Gone() from e
        with a.lock:
            a.requests += 1
            if r.status >= 500 and r.status != 503:
                self.errors.append(r)
            if r.status >= 300:
                code = r.body.get("code") if isinstance(r.body, dict) else None
                a.refusals[(r.status, code)] += 1
        return r

    def run(self, idx, seed):
        rng = random.Random(seed)
        cl = fg.Client(self.srv.port, timeout=10)
        c = self.cat
        a = self.acks
        try:
            for _ in range(100000):  # bounded; ends at stop or when the server goes away
                if self.stop.is_set():
                    return
                market = rng.choice(self.markets)
                r = self.call(cl, None, "POST", "/v1/buyers",
                              {"email": fg.email("crash%d" % idx), "market": market})
                if r.status != 201:
                    continue
                b = fg.Buyer(r.body["id"], r.body["token"], market, r.body["email"])
                with a.lock:
                    a.buyers[b.id] = b
                for _ in range(2):
                    sku = c.acc if market == "US" else rng.choice((c.sku1, c.acc))
                    q = rng.choice((1, 1, 2))
                    r = self.call(cl, b, "POST", "/v1/sales/%s/holds" % self.sid,
                                  {"sku": sku, "market": market, "quantity": q})
                    if r.status != 201:
                        continue
                    with a.lock:
                        a.holds[r.body["id"]] = (b, r.body)
                    if rng.random() < 0.1:
                        hid = r.body["id"]
                        r = self.call(cl, b, "DELETE", "/v1/holds/" + hid, None)
                        if r.status == 200:
                            with a.lock:
                                a.released.add(hid)
                    elif rng.random() < 0.6:
                        r = self.call(cl, b, "POST", "/v1/holds/%s/order" % r.body["id"],
                                      fg.order_body(market))
                        if r.status == 201:
                            with a.lock:
                                a.orders[r.body["id"]] = (b, r.body)
                    if self.pause_s:
                        time.sleep(self.pause_s)
        except _Gone:
            return
        finally:
            cl.close()


class _Gone(Exception):
    pass


class CrashMixin:
    def verify(self, srv, cat, sid, acks, expected_stock):
        """Checks every acknowledged write and the invariants after a restart."""
        cl = srv.client()
        deleting = {path.rsplit("/", 1)[1] for _, m, path, _, _ in acks.in_flight if m == "DELETE"}
        try:
            for b in list(acks.buyers.values()):
                r = cl.req("GET", "/v1/me/orders?limit=100", token=b.token)
                self.assertEqual(r.status, 200, "acknowledged buyer %s lost: %r" % (b.id, r))
            for hid, (b, h) in list(acks.holds.items()):
                r = cl.req("GET", "/v1/holds/" + hid, token=b.token)
                self.assertEqual(r.status, 200, "acknowledged hold %s lost: %r" % (hid, r))
                if hid in acks.released:
                    self.assertEqual(r.body["state"], "released", "acknowledged release lost")
                elif hid in deleting:
                    self.assertIn(r.body["state"], ("held", "released"), r)
                else:
                    self.assertIn(r.body["state"], ("held", "ordered"), r)
                for k in ("sku", "market", "quantity", "sale_id", "created_at", "expires_at"):
                    self.assertEqual(r.body[k], h[k], "hold %s field %s" % (hid, k))
            for oid, (b, o) in list(acks.orders.items()):
                r = cl.req("GET", "/v1/orders/" + oid, token=b.token)
                self.assertEqual(r.status, 200, "acknowledged order %s lost: %r" % (oid, r))
                self.assertEqual(r.body, o, "order %s changed across the crash" % oid)
                rh = cl.req("GET", "/v1/holds/" + o["hold_id"], token=b.token)
                self.assertEqual(rh.body["state"], "ordered")
                self.assertEqual(rh.body["order_id"], oid)
            # the export holds every acknowledged order
            r = cl.req("GET", "/admin/v1/sales/%s/orders" % sid, token=srv.admin_token)
            self.assertEqual(r.status, 200, r)
            rows = [json.loads(l) for l in r.raw.decode().splitlines()]
            exported = {row["id"]: row for row in rows}
            self.assertEqual(len(exported), len(rows), "an order exported twice")
            missing = set(acks.orders) - set(exported)
            self.assertEqual(missing, set(), "acknowledged orders missing from the export")
            # I2: no buyer over the limit (what was bought, plus what clients hold)
            bought = collections.Counter()
            for row in rows:
                self.assertEqual(row["sale_id"], sid)
                if row["state"] in ("paid", "pending_payment"):
                    bought[row["buyer_id"]] += row["quantity"]
            for buyer_id, q in bought.items():
                self.assertLessEqual(q, LIMIT, "buyer %s bought %d (I2)" % (buyer_id, q))
            held = collections.Counter()
            for hid, (b, h) in acks.holds.items():
                if hid not in {o["hold_id"] for _, o in acks.orders.values()}:
                    st = cl.req("GET", "/v1/holds/" + hid, token=b.token).body["state"]
                    if st == "held":
                        held[b.id] += h["quantity"]
            for buyer_id in set(held) | set(bought):
                self.assertLessEqual(held[buyer_id] + bought[buyer_id], LIMIT,
                                     "buyer %s over the limit (I2)" % buyer_id)
            # I1 per pool, and the counts agree with what was acknowledged
            r = cl.req("GET", "/admin/v1/sales/%s/stats" % sid, token=srv.admin_token)
            self.assertEqual(r.status, 200, r)
            st = r.body
            for it in st["items"]:
                for k in ("available", "held", "sold"):
                    self.assertGreaterEqual(it[k], 0, it)
                self.assertEqual(it["available"] + it["held"] + it["sold"], it["stock"],
                                 "I1: %r" % it)
            self.assertEqual(st["available"] + st["held"] + st["sold"], st["stock"])
            self.assertEqual(st["stock"], expected_stock)
            acked_sold = sum(o["quantity"] for _, o in acks.orders.values())
            self.assertGreaterEqual(st["sold"], acked_sold)
            exported_sold = sum(row["quantity"] for row in rows if row["state"] == "paid")
            self.assertEqual(st["sold"], exported_sold, "stats sold vs export")
            pub = cl.req("GET", "/v1/sales/" + sid).body
            self.assertEqual(sum(i["available"] for i in pub["items"]), st["available"])
        finally:
            cl.close()

    def retry_in_flight(self, srv, acks):
        """I5 across a crash: a request whose answer was lost is retried with its key. It runs
        (or replays) once; it never answers 5xx or idempotency_in_progress."""
        cl = srv.client()
        try:
            pending, acks.in_flight = acks.in_flight, []
            for buyer, method, path, body, key in pending:
                if buyer is not None and buyer.id not in acks.buyers:
                    continue
                if method == "DELETE":
                    r1 = cl.req(method, path, token=buyer.token)
                    self.assertIn(r1.status, (200, 409), r1)  # released now, or already
                    rh = cl.req("GET", path, token=buyer.token)
                    self.assertEqual(rh.body["state"], "released", rh)
                    acks.released.add(path.rsplit("/", 1)[1])
                    continue
                r1 = cl.req(method, path, body, token=buyer.token if buyer else None, idem=key)
                self.assertLess(r1.status, 500, r1)
                if isinstance(r1.body, dict):
                    self.assertNotEqual(r1.body.get("code"), "idempotency_in_progress", r1)
                if r1.status < 300:
                    r2 = cl.req(method, path, body, token=buyer.token if buyer else None,
                                idem=key)
                    self.assertEqual((r2.status, r2.raw), (r1.status, r1.raw), "replay")
                    if path == "/v1/buyers":
                        b = fg.Buyer(r1.body["id"], r1.body["token"], body["market"],
                                     r1.body["email"])
                        acks.buyers[b.id] = b
                    elif path.endswith("/holds"):
                        acks.holds[r1.body["id"]] = (buyer, r1.body)
                    elif path.endswith("/order"):
                        acks.orders[r1.body["id"]] = (buyer, r1.body)
        finally:
            cl.close()


class TestKill9(CrashMixin, fg.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = None  # this test manages its own server

    def test_kill9_under_load_three_times(self):
        srv = fg.Server()
        self.addCleanup(srv.cleanup)
        srv.start()
        cat = fg.Catalog(srv).create()
        sid = cat.sale(limit=LIMIT, ttl=3600, items=[
            {"sku": cat.acc, "stock": STOCK, "markets": ["IN", "DE", "FR", "US"]},
            {"sku": cat.sku1, "stock": STOCK, "markets": ["IN", "DE", "FR"]}])
        acks = Acks()
        expected_stock = 2 * STOCK
        rng = random.Random()
        for rnd in range(3):
            load = Load(srv, cat, sid, acks, seed=rng.random()).start()
            time.sleep(rng.uniform(0.3, 2.0))
            requests_before_kill = acks.requests
            pid = srv.proc.pid
            os.kill(pid, signal.SIGKILL)
            srv.proc.wait(timeout=10)
            srv.proc = None
            load.stop.set()
            self.assertTrue(load.join(timeout=30), "load threads did not end after the kill")
            self.assertEqual(load.errors, [], "5xx answers under load")
            self.assertGreater(requests_before_kill, 20, "the load did not run (round %d)" % rnd)
            srv.start()
            self.verify(srv, cat, sid, acks, expected_stock)
            self.retry_in_flight(srv, acks)
            self.verify(srv, cat, sid, acks, expected_stock)
            # more stock for the next round, acknowledged, so it must survive the next kill
            for sku, market in ((cat.acc, None), (cat.sku1, None)):
                body = {"sku": sku, "add": STOCK}
                r = srv.admin("POST", "/admin/v1/sales/%s/stock" % sid, body)
                self.assertEqual(r.status, 200, r)
                expected_stock += STOCK
            sys_msg = "round %d: %d buyers, %d holds, %d orders acknowledged; refusals %s" % (
                rnd, len(acks.buyers), len(acks.holds), len(acks.orders), dict(acks.refusals))
            print(sys_msg)
        self.assertGreater(len(acks.orders), 10, "too little was ordered to mean anything")
        srv.stop()


class TestSigterm(CrashMixin, fg.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = None

    def test_sigterm_under_light_load(self):
        srv = fg.Server()
        self.addCleanup(srv.cleanup)
        srv.start()
        cat = fg.Catalog(srv).create()
        sid = cat.sale(limit=LIMIT, ttl=3600, items=[
            {"sku": cat.acc, "stock": STOCK, "markets": ["IN", "DE", "FR", "US"]},
            {"sku": cat.sku1, "stock": STOCK, "markets": ["IN", "DE", "FR"]}])
        acks = Acks()
        load = Load(srv, cat, sid, acks, pause_s=0.02).start()
        time.sleep(1.5)
        srv.proc.send_signal(signal.SIGTERM)
        try:
            rc = srv.proc.wait(timeout=10)
        except Exception:
            srv.kill()
            load.stop.set()
            load.join(10)
            self.fail("server did not exit within 10 s of SIGTERM\n" + srv.log_tail())
        srv.proc = None
        load.stop.set()
        self.assertTrue(load.join(timeout=30))
        self.assertEqual(rc, 0, "exit code after SIGTERM\n" + srv.log_tail())
        self.assertEqual(load.errors, [])
        self.assertGreater(len(acks.holds), 5, "the load did not run")
        srv.start()
        self.verify(srv, cat, sid, acks, 2 * STOCK)
        self.retry_in_flight(srv, acks)
        self.verify(srv, cat, sid, acks, 2 * STOCK)
        srv.stop()


class TestPlainRestart(fg.TestCase):
    def test_state_survives_restart(self):
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(limit=2, stock=50)
        paused = c.sale()
        self.assertEqual(s.admin("POST", "/admin/v1/sales/%s/pause" % paused).status, 200)
        closed = c.sale()
        self.assertEqual(s.admin("POST", "/admin/v1/sales/%s/close" % closed).status, 200)
        b = fg.register(s, "DE")
        key = "restart-key"
        h = fg.hold(s, b, sid, c.sku1, idem=key)
        self.assertStatus(h, 201)
        released = fg.hold(s, b, sid, c.acc).body
        self.assertStatus(s.req("DELETE", "/v1/holds/" + released["id"], token=b.token), 200)
        pend_b = fg.register(s, "FR")
        ph = fg.hold(s, pend_b, sid, c.sku1).body
        po = fg.order(s, pend_b, ph["id"], method="webhook").body
        raw = json.dumps({"order_id": po["id"], "status": "succeeded"}).encode()
        sig = s.sign(raw)
        self.assertStatus(s.webhook(None, None, raw=raw, signature=sig), 200)
        markets = s.req("GET", "/v1/markets").body
        product_us = s.req("GET", "/v1/products/%s?market=US" % c.phone).body
        product_de = s.req("GET", "/v1/products/%s?market=DE" % c.phone).body
        sale_before = fg.sale_get(s, sid)
        stats_before = fg.stats(s, sid)
        pend_order = s.req("GET", "/v1/orders/" + po["id"], token=pend_b.token).body

        s.restart()

        self.assertEqual(s.req("GET", "/v1/markets").body, markets)
        self.assertEqual(s.req("GET", "/v1/products/%s?market=US" % c.phone).body, product_us)
        self.assertEqual(s.req("GET", "/v1/products/%s?market=DE" % c.phone).body, product_de)
        self.assertEqual(fg.sale_get(s, sid), sale_before)
        st = fg.stats(s, sid)
        for k in ("stock", "available", "held", "sold", "holds_total", "orders_total",
                  "buyers_total", "released_total", "expired_total"):
            self.assertEqual(st[k], stats_before[k], k)
        self.assertEqual(fg.sale_get(s, paused)["state"], "paused")
        self.assertEqual(fg.sale_get(s, closed)["state"], "closed")
        # tokens still work; holds keep their state
        r = s.req("GET", "/v1/holds/" + h.body["id"], token=b.token)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "held")
        self.assertEqual(r.body["expires_at"], h.body["expires_at"])
        r = s.req("GET", "/v1/holds/" + released["id"], token=b.token)
        self.assertEqual(r.body["state"], "released")
        self.assertEqual(s.req("GET", "/v1/orders/" + po["id"], token=pend_b.token).body,
                         pend_order)
        # I5 across a restart: the stored answer replays byte for byte
        r = fg.hold(s, b, sid, c.sku1, idem=key)
        self.assertEqual((r.status, r.raw), (201, h.raw))
        r = fg.hold(s, b, sid, c.sku2, idem=key)
        self.assertProblem(r, 422, "idempotency_key_reused")
        # a used webhook signature stays used
        self.assertProblem(s.webhook(None, None, raw=raw, signature=sig), 401, "unauthorized")
        # the email is still taken; the limit still counts
        r = s.req("POST", "/v1/buyers", {"email": b.email, "market": "DE"})
        self.assertProblem(r, 409, "buyer_exists")
        self.assertStatus(fg.hold(s, b, sid, c.acc), 201)
        self.assertProblem(fg.hold(s, b, sid, c.acc), 403, "limit_reached")
        # new ids do not collide with old ones
        b2 = fg.register(s, "DE")
        self.assertNotEqual(b2.id, b.id)
        self.assertNotEqual(b2.id, pend_b.id)
        h2 = fg.hold(s, b2, sid, c.sku1).body
        self.assertNotIn(h2["id"], (h.body["id"], released["id"], ph["id"]))
        o2 = fg.order(s, b2, h2["id"]).body
        self.assertNotEqual(o2["id"], po["id"])

    def data_contains(self, needle):
        """Files of the (stopped) server's data directory that contain `needle`."""
        found = []
        for root, _, files in os.walk(self.srv.data):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    if needle in fh.read(256 * 1024 * 1024):
                        found.append(f)
        return found

    def test_tokens_stored_only_as_hashes(self):
        # "Only a hash of either kind of token is stored" (docs/api.md, Authentication)
        s = self.srv
        fg.ensure_markets(s)
        b = fg.register(s, "DE")
        s.stop()
        try:
            self.assertEqual(self.data_contains(s.admin_token.encode()), [],
                             "admin token stored in clear")
            self.assertEqual(self.data_contains(b.token.encode()), [],
                             "buyer token stored in clear (e.g. in a stored idempotent answer)")
        finally:
            s.start()


if __name__ == "__main__":
    fg.main()
