"""Holds: place, refusals (in the documented order), get, release, expiry."""

import threading
import time

import fg


class TestHolds(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()
        cls.sid = cls.cat.sale(limit=2, stock=1000)

    def test_hold_shape(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        before = fg.available(s, self.sid, c.sku1, "DE")
        t0 = fg.now_utc()
        r = fg.hold(s, b, self.sid, c.sku1, quantity=2)
        self.assertStatus(r, 201)
        h = r.body
        self.assertRegex(h["id"], r"^h_\d+$")
        self.assertEqual(h["sale_id"], self.sid)
        self.assertEqual(h["sku"], c.sku1)
        self.assertEqual(h["market"], "DE")
        self.assertEqual(h["quantity"], 2)
        self.assertEqual(h["state"], "held")
        for k in ("created_at", "expires_at"):
            self.assertRegex(h[k], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        created, expires = fg.parse_time(h["created_at"]), fg.parse_time(h["expires_at"])
        self.assertAlmostEqual((expires - created).total_seconds(), 120, delta=0.01)
        self.assertLess(abs((created - t0).total_seconds()), 5)
        self.assertEqual(fg.available(s, self.sid, c.sku1, "DE"), before - 2)
        self.assertEqual(fg.available(s, self.sid, c.sku1, "FR"), before - 2, "shared pool")
        r = s.req("GET", "/v1/holds/" + h["id"], token=b.token)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["id"], h["id"])
        self.assertEqual(r.body["state"], "held")
        self.assertEqual(r.body["expires_at"], h["expires_at"])

    def test_defaults(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "FR")
        r = s.req("POST", "/v1/sales/%s/holds" % self.sid, {"sku": c.acc}, token=b.token)
        self.assertStatus(r, 201)
        self.assertEqual(r.body["quantity"], 1)
        self.assertEqual(r.body["market"], "FR")

    def test_needs_buyer_token(self):
        s, c = self.srv, self.cat
        body = {"sku": c.acc, "market": "DE"}
        path = "/v1/sales/%s/holds" % self.sid
        self.assertProblem(s.req("POST", path, body), 401, "unauthorized")
        self.assertProblem(s.req("POST", path, body, token="fgb_1_bad"), 401, "unauthorized")
        self.assertProblem(s.req("POST", path, body, token=s.admin_token), 401, "unauthorized")

    def test_missing_idempotency_key(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        before = fg.available(s, self.sid, c.acc, "DE")
        r = fg.hold(s, b, self.sid, c.acc, idem=fg.NOKEY)
        self.assertProblem(r, 400, "missing_idempotency_key")
        self.assertEqual(fg.available(s, self.sid, c.acc, "DE"), before)

    def test_quantity_over_limit(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        self.assertProblem(fg.hold(s, b, self.sid, c.sku1, quantity=3), 403, "limit_reached")

    def test_second_hold_past_limit(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "IN")
        self.assertStatus(fg.hold(s, b, self.sid, c.sku1), 201)
        self.assertStatus(fg.hold(s, b, self.sid, c.sku2), 201)
        self.assertProblem(fg.hold(s, b, self.sid, c.acc), 403, "limit_reached")
        b2 = fg.register(s, "IN")
        self.assertStatus(fg.hold(s, b2, self.sid, c.sku1), 201)
        self.assertProblem(fg.hold(s, b2, self.sid, c.sku1, quantity=2), 403, "limit_reached")

    def test_limit_counts_bought_and_frees_on_release(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        h1 = fg.hold(s, b, self.sid, c.sku1)
        self.assertStatus(h1, 201)
        self.assertStatus(fg.order(s, b, h1.body["id"]), 201)
        h2 = fg.hold(s, b, self.sid, c.acc)
        self.assertStatus(h2, 201)
        self.assertProblem(fg.hold(s, b, self.sid, c.acc), 403, "limit_reached")
        self.assertStatus(s.req("DELETE", "/v1/holds/" + h2.body["id"], token=b.token), 200)
        self.assertStatus(fg.hold(s, b, self.sid, c.acc), 201)
        self.assertProblem(fg.hold(s, b, self.sid, c.acc), 403, "limit_reached")

    def test_bad_fields(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        path = "/v1/sales/%s/holds" % self.sid
        cases = [
            ({"sku": c.sku1, "market": "FR"}, "market"),   # not the buyer's market
            ({"sku": c.sku1, "market": "ZZ"}, "market"),
            ({"sku": c.sku1, "quantity": 0}, "quantity"),
            ({"sku": c.sku1, "quantity": -1}, "quantity"),
            ({"sku": c.sku1, "quantity": "1"}, "quantity"),
            ({"sku": c.sku1, "quantity": 1.5}, "quantity"),
            ({"market": "DE"}, "sku"),
            ({"sku": c.sku1, "color": "red"}, "color"),
        ]
        for body, field in cases:
            self.assertProblem(s.req("POST", path, body, token=b.token), 400, "invalid_field",
                               field=field, msg=str(body))
        self.assertProblem(s.req("POST", path, "{", token=b.token), 400, "invalid_json")
        # the buyer is still at zero: two units can be held
        self.assertStatus(fg.hold(s, b, self.sid, c.sku1, quantity=2), 201)

    def test_unknown_sale(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        r = fg.hold(s, b, fg.uid("nosale"), c.sku1)
        self.assertProblem(r, 404, "not_found")

    def test_not_offered_in_market(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "US")
        r = fg.hold(s, b, self.sid, c.sku1)
        p = self.assertProblem(r, 403, "not_offered_in_market")
        self.assertEqual(p.get("reason"), "not certified", p)
        alts = p.get("alternatives")
        self.assertIsInstance(alts, list, p)
        self.assertIn(c.acc, [a["sku"] for a in alts])
        acc = [a for a in alts if a["sku"] == c.acc][0]
        self.assertEqual(acc["price_minor"], 2999)
        self.assertEqual(acc["currency"], "USD")
        self.assertEqual(acc["product"], c.acc_product)
        for a in alts:
            self.assertNotIn(a["sku"], (c.sku1, c.sku2))
        # ... even when the client claims another market
        self.assertEqual(fg.hold(s, b, self.sid, c.sku1, market="DE").status, 400)
        # the accessory is sold in US
        r = fg.hold(s, b, self.sid, c.acc)
        self.assertStatus(r, 201)

    def test_not_offered_no_item_in_market(self):
        s, c = self.srv, self.cat
        # a sale that sells the accessory only in IN: a DE buyer cannot hold it, though the
        # accessory is offered in DE
        sid = c.sale(items=[{"sku": c.acc, "stock": 5, "markets": ["IN"]},
                            {"sku": c.sku2, "stock": 5, "markets": ["DE"]}])
        b = fg.register(s, "DE")
        p = self.assertProblem(fg.hold(s, b, sid, c.acc), 403, "not_offered_in_market")
        self.assertIsInstance(p.get("reason"), str)
        self.assertEqual([a["sku"] for a in p.get("alternatives", [])], [c.sku2],
                         "alternatives limited to what this sale sells in DE")

    def test_refusal_order(self):
        s, c = self.srv, self.cat
        # not offered comes before sale not open
        sid = c.sale(opens_in=3600)
        us = fg.register(s, "US")
        self.assertProblem(fg.hold(s, us, sid, c.sku1), 403, "not_offered_in_market")
        de = fg.register(s, "DE")
        self.assertProblem(fg.hold(s, de, sid, c.sku1), 409, "sale_not_open")
        # bad field comes before not offered
        self.assertProblem(fg.hold(s, us, sid, c.sku1, quantity=0), 400, "invalid_field")
        # The documented order: sale not open; sold out (the sale's state: no unit left at all);
        # over the limit; not enough units left in the item.
        sid2 = c.sale(limit=1, items=[{"sku": c.acc, "stock": 1, "markets": ["DE"]}])
        self.assertStatus(fg.hold(s, de, sid2, c.acc), 201)
        self.assertEqual(fg.sale_get(s, sid2)["state"], "sold_out")
        self.assertProblem(fg.hold(s, de, sid2, c.acc), 409, "sold_out")
        sid3 = c.sale(limit=1, items=[{"sku": c.acc, "stock": 1, "markets": ["DE"]},
                                      {"sku": c.sku2, "stock": 5, "markets": ["DE"]}])
        de2 = fg.register(s, "DE")
        self.assertStatus(fg.hold(s, de2, sid3, c.acc), 201)
        self.assertEqual(fg.sale_get(s, sid3)["state"], "open")
        self.assertProblem(fg.hold(s, de2, sid3, c.acc), 403, "limit_reached")
        self.assertProblem(fg.hold(s, de2, sid3, c.sku2), 403, "limit_reached")
        de3 = fg.register(s, "DE")
        self.assertProblem(fg.hold(s, de3, sid3, c.acc), 409, "sold_out")
        self.assertStatus(fg.hold(s, de3, sid3, c.sku2), 201)

    def test_sold_out(self):
        s, c = self.srv, self.cat
        sid = c.sale(limit=2, items=[{"sku": c.acc, "stock": 3, "markets": ["DE", "FR"]}])
        b1, b2, b3 = fg.register(s, "DE"), fg.register(s, "FR"), fg.register(s, "DE")
        self.assertStatus(fg.hold(s, b1, sid, c.acc, quantity=2), 201)
        # not enough units left for 2
        self.assertProblem(fg.hold(s, b2, sid, c.acc, quantity=2), 409, "sold_out")
        self.assertStatus(fg.hold(s, b2, sid, c.acc), 201)
        self.assertEqual(fg.available(s, sid, c.acc, "DE"), 0)
        self.assertProblem(fg.hold(s, b3, sid, c.acc), 409, "sold_out")
        self.assertEqual(fg.sale_get(s, sid)["state"], "sold_out")

    def test_sale_not_open(self):
        s, c = self.srv, self.cat
        sid = c.sale(opens_in=3600)
        self.assertEqual(fg.sale_get(s, sid)["state"], "scheduled")
        b = fg.register(s, "DE")
        self.assertProblem(fg.hold(s, b, sid, c.acc), 409, "sale_not_open")
        sid2 = c.sale()
        self.assertStatus(s.admin("POST", "/admin/v1/sales/%s/pause" % sid2), 200)
        self.assertProblem(fg.hold(s, b, sid2, c.acc), 409, "sale_not_open")

    def test_refusal_is_not_stored(self):
        # A refusal stores nothing: the same key runs again and may succeed later.
        s, c = self.srv, self.cat
        sid = c.sale(items=[{"sku": c.acc, "stock": 1, "markets": ["DE"]}])
        b1, b2 = fg.register(s, "DE"), fg.register(s, "DE")
        h1 = fg.hold(s, b1, sid, c.acc)
        self.assertStatus(h1, 201)
        self.assertProblem(fg.hold(s, b2, sid, c.acc, idem="retry-me"), 409, "sold_out")
        self.assertStatus(s.req("DELETE", "/v1/holds/" + h1.body["id"], token=b1.token), 200)
        self.assertStatus(fg.hold(s, b2, sid, c.acc, idem="retry-me"), 201)

    def test_get_and_release(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "IN")
        before = fg.available(s, self.sid, c.sku2, "IN")
        h = fg.hold(s, b, self.sid, c.sku2, quantity=2).body
        self.assertEqual(fg.available(s, self.sid, c.sku2, "IN"), before - 2)
        r = s.req("DELETE", "/v1/holds/" + h["id"], token=b.token)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "released")
        self.assertEqual(fg.available(s, self.sid, c.sku2, "IN"), before)
        r = s.req("GET", "/v1/holds/" + h["id"], token=b.token)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "released")
        r = s.req("DELETE", "/v1/holds/" + h["id"], token=b.token)
        self.assertProblem(r, 409, "hold_not_active")
        self.assertEqual(fg.available(s, self.sid, c.sku2, "IN"), before, "released once (I4)")
        self.assertProblem(fg.order(s, b, h["id"]), 409, "hold_not_active")

    def test_release_ordered(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        h = fg.hold(s, b, self.sid, c.acc).body
        o = fg.order(s, b, h["id"])
        self.assertStatus(o, 201)
        r = s.req("GET", "/v1/holds/" + h["id"], token=b.token)
        self.assertEqual(r.body["state"], "ordered")
        self.assertEqual(r.body["order_id"], o.body["id"])
        self.assertProblem(s.req("DELETE", "/v1/holds/" + h["id"], token=b.token), 409,
                           "hold_not_active")

    def test_other_buyers_hold(self):
        s, c = self.srv, self.cat
        a, b = fg.register(s, "DE"), fg.register(s, "DE")
        h = fg.hold(s, a, self.sid, c.acc).body
        self.assertProblem(s.req("GET", "/v1/holds/" + h["id"], token=b.token), 404, "not_found")
        self.assertProblem(s.req("DELETE", "/v1/holds/" + h["id"], token=b.token), 404,
                           "not_found")
        self.assertProblem(fg.order(s, b, h["id"]), 404, "not_found")
        self.assertProblem(s.req("GET", "/v1/holds/" + h["id"]), 401, "unauthorized")
        self.assertProblem(s.req("GET", "/v1/holds/h_999999999", token=a.token), 404,
                           "not_found")
        self.assertProblem(s.req("GET", "/v1/holds/nonsense", token=a.token), 404, "not_found")
        self.assertEqual(s.req("GET", "/v1/holds/" + h["id"], token=a.token).body["state"],
                         "held")


class TestRaces(fg.TestCase):
    def race(self, n, fn):
        clients = [self.srv.client() for _ in range(n)]
        for cl in clients:
            self.assertEqual(cl.req("GET", "/healthz").status, 200)
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            try:
                barrier.wait(timeout=10)
                results[i] = fn(i, clients[i])
            except Exception as e:  # asserted below
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
        for cl in clients:
            cl.close()
        self.assertFalse(any(th.is_alive() for th in threads), "a request hung")
        for r in results:
            self.assertIsInstance(r, fg.Resp, r)
        return results

    def test_no_oversell_under_race(self):
        # I1: 40 buyers race for 10 units
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(limit=1, items=[{"sku": c.acc, "stock": 10, "markets": ["DE", "FR"]}])
        buyers = [fg.register(s, "DE" if i % 2 else "FR") for i in range(40)]
        res = self.race(40, lambda i, cl: fg.hold(s, buyers[i], sid, c.acc, client=cl))
        ok = [r for r in res if r.status == 201]
        self.assertEqual(len(ok), 10, [r.status for r in res])
        for r in res:
            if r.status != 201:
                self.assertProblem(r, 409, "sold_out")
        st = fg.stats(s, sid)
        self.assertEqual((st["available"], st["held"], st["sold"]), (0, 10, 0))
        self.assertEqual(len({r.body["id"] for r in ok}), 10)

    def test_limit_under_race(self):
        # I2: one buyer, 12 concurrent holds with different keys, limit 2
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(limit=2, stock=100)
        b = fg.register(s, "IN")
        skus = [c.sku1, c.sku2, c.acc]
        res = self.race(12, lambda i, cl: fg.hold(s, b, sid, skus[i % 3], client=cl))
        ok = [r for r in res if r.status == 201]
        self.assertEqual(len(ok), 2, [r.status for r in res])
        for r in res:
            if r.status != 201:
                self.assertProblem(r, 403, "limit_reached")
        self.assertEqual(fg.stats(s, sid)["held"], 2)

    def test_order_race_one_hold(self):
        # I4: 8 concurrent orders (different keys) of one hold: exactly one order
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(limit=2, stock=10)
        b = fg.register(s, "DE")
        h = fg.hold(s, b, sid, c.sku1).body
        res = self.race(8, lambda i, cl: fg.order(s, b, h["id"], client=cl))
        ok = [r for r in res if r.status == 201]
        self.assertEqual(len(ok), 1, [r.status for r in res])
        for r in res:
            if r.status != 201:
                self.assertProblem(r, 409, "hold_not_active")
        self.assertEqual(len(s.req("GET", "/v1/me/orders", token=b.token).body["orders"]), 1)
        st = fg.stats(s, sid)
        self.assertEqual((st["sold"], st["held"]), (1, 0))

    def test_release_race_one_hold(self):
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(limit=2, items=[{"sku": c.acc, "stock": 3, "markets": ["DE"]}])
        b = fg.register(s, "DE")
        h = fg.hold(s, b, sid, c.acc, quantity=2).body
        res = self.race(8, lambda i, cl: cl.req("DELETE", "/v1/holds/" + h["id"],
                                                 token=b.token))
        self.assertEqual(len([r for r in res if r.status == 200]), 1, [r.status for r in res])
        for r in res:
            if r.status != 200:
                self.assertProblem(r, 409, "hold_not_active")
        self.assertEqual(fg.available(s, sid, c.acc, "DE"), 3, "units returned once (I4)")
        self.assertEqual(fg.stats(s, sid)["released_total"], 1)


class TestHoldExpiry(fg.TestCase):
    """The one slow test of this file: holds with hold_ttl_s=10 expire (I4)."""

    def test_expiry(self):
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(ttl=10, limit=2, items=[{"sku": c.acc, "stock": 5, "markets": ["DE"]}])
        b = fg.register(s, "DE")
        h1 = fg.hold(s, b, sid, c.acc)
        self.assertStatus(h1, 201)
        h2 = fg.hold(s, b, sid, c.acc)
        self.assertStatus(h2, 201)
        self.assertEqual(fg.available(s, sid, c.acc, "DE"), 3)
        self.assertProblem(fg.hold(s, b, sid, c.acc), 403, "limit_reached")

        # In the same wait: a second server whose hold expires while it is down.
        s2 = fg.Server()
        self.addCleanup(s2.cleanup)
        s2.start()
        c2 = fg.Catalog(s2).create()
        sid2 = c2.sale(ttl=10, limit=2, items=[{"sku": c2.acc, "stock": 4, "markets": ["FR"]}])
        b2 = fg.register(s2, "FR")
        h3 = fg.hold(s2, b2, sid2, c2.acc, quantity=2)
        self.assertStatus(h3, 201)
        s2.stop()

        expires = max(fg.parse_time(h2.body["expires_at"]), fg.parse_time(h3.body["expires_at"]))
        # wait until just past expires_at (bounded: at most 12 s)
        deadline = time.monotonic() + 12
        state = None
        while time.monotonic() < deadline:
            left = (expires - fg.now_utc()).total_seconds()
            if left > 0.3:
                time.sleep(min(left - 0.2, 2))
                continue
            state = s.req("GET", "/v1/holds/" + h2.body["id"], token=b.token).body["state"]
            if state == "expired":
                break
            time.sleep(0.1)
        self.assertEqual(state, "expired", "hold not expired 1 s after expires_at")
        r = s.req("GET", "/v1/holds/" + h1.body["id"], token=b.token)
        self.assertEqual(r.body["state"], "expired")
        self.assertEqual(fg.available(s, sid, c.acc, "DE"), 5, "units return on expiry")
        self.assertProblem(fg.order(s, b, h1.body["id"]), 409, "hold_expired")
        self.assertProblem(s.req("DELETE", "/v1/holds/" + h2.body["id"], token=b.token), 409,
                           "hold_expired")
        st = fg.stats(s, sid)
        self.assertEqual(st["expired_total"], 2)
        self.assertEqual(st["held"], 0)
        self.assertEqual(st["available"], 5)
        # the limit is free again
        self.assertStatus(fg.hold(s, b, sid, c.acc, quantity=2), 201)

        # the hold that expired while its server was down: the polling above may end up to
        # 0.3 s before h3's expiry (h2 expires first), so make sure that time has passed
        h3_expires = fg.parse_time(h3.body["expires_at"])
        while fg.now_utc() <= h3_expires:
            time.sleep(0.05)
        s2.start()
        r = s2.req("GET", "/v1/holds/" + h3.body["id"], token=b2.token)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "expired")
        self.assertEqual(fg.available(s2, sid2, c2.acc, "FR"), 4)
        self.assertProblem(fg.order(s2, b2, h3.body["id"]), 409, "hold_expired")
        st = fg.stats(s2, sid2)
        self.assertEqual((st["available"], st["held"], st["expired_total"]), (4, 0, 1))
        s2.stop()


if __name__ == "__main__":
    fg.main()
