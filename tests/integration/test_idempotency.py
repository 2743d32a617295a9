"""Idempotency (I5): replays, key reuse, scopes, a concurrent burst with one key."""

import threading

import fg


class TestIdempotency(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()
        cls.sid = cls.cat.sale(limit=3, stock=1000)

    def test_hold_replay(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        before = fg.stats(s, self.sid)
        key = fg.uid("key")
        r1 = fg.hold(s, b, self.sid, c.sku1, idem=key)
        self.assertStatus(r1, 201)
        r2 = fg.hold(s, b, self.sid, c.sku1, idem=key)
        self.assertEqual(r2.status, 201, r2)
        self.assertEqual(r2.raw, r1.raw, "replay must be byte-identical")
        r3 = s.client().req("POST", "/v1/sales/%s/holds" % self.sid,
                            {"sku": c.sku1, "market": "DE"}, token=b.token, idem=key)
        self.assertEqual((r3.status, r3.raw), (201, r1.raw), "replay on another connection")
        after = fg.stats(s, self.sid)
        self.assertEqual(after["holds_total"], before["holds_total"] + 1)
        self.assertEqual(after["held"], before["held"] + 1)
        self.assertEqual(after["available"], before["available"] - 1)
        # the buyer holds one unit: two more fit under the limit of 3, a third does not
        self.assertStatus(fg.hold(s, b, self.sid, c.sku1, quantity=2), 201)
        self.assertProblem(fg.hold(s, b, self.sid, c.sku1), 403, "limit_reached")

    def test_key_reused_with_other_request(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        key = fg.uid("key")
        self.assertStatus(fg.hold(s, b, self.sid, c.sku1, idem=key), 201)
        r = fg.hold(s, b, self.sid, c.sku1, quantity=2, idem=key)
        self.assertProblem(r, 422, "idempotency_key_reused")
        r = fg.hold(s, b, self.sid, c.acc, idem=key)
        self.assertProblem(r, 422, "idempotency_key_reused")
        # same body bytes, other path
        sid2 = c.sale()
        r = fg.hold(s, b, sid2, c.sku1, idem=key)
        self.assertProblem(r, 422, "idempotency_key_reused")
        # same JSON, other bytes (spacing): a different request
        r = s.req("POST", "/v1/sales/%s/holds" % self.sid,
                  '{"sku":  "%s", "market": "DE"}' % c.sku1, token=b.token, idem=key)
        self.assertProblem(r, 422, "idempotency_key_reused")
        self.assertEqual(fg.stats(s, sid2)["holds_total"], 0)

    def test_keys_scoped_per_buyer(self):
        s, c = self.srv, self.cat
        a, b = fg.register(s, "DE"), fg.register(s, "DE")
        key = fg.uid("shared")
        ra = fg.hold(s, a, self.sid, c.acc, idem=key)
        rb = fg.hold(s, b, self.sid, c.acc, idem=key)
        self.assertStatus(ra, 201)
        self.assertStatus(rb, 201)
        self.assertNotEqual(ra.body["id"], rb.body["id"])

    def test_order_replay(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "FR")
        h = fg.hold(s, b, self.sid, c.sku2).body
        key = fg.uid("okey")
        r1 = fg.order(s, b, h["id"], idem=key)
        self.assertStatus(r1, 201)
        r2 = fg.order(s, b, h["id"], idem=key)
        self.assertEqual((r2.status, r2.raw), (201, r1.raw))
        self.assertProblem(fg.order(s, b, h["id"]), 409, "hold_not_active")
        orders = s.req("GET", "/v1/me/orders", token=b.token).body["orders"]
        self.assertEqual([o["id"] for o in orders], [r1.body["id"]])

    def test_registration_replay(self):
        s = self.srv
        key = fg.uid("reg")
        body = {"email": fg.email(), "market": "IN"}
        r1 = s.req("POST", "/v1/buyers", body, idem=key)
        self.assertStatus(r1, 201)
        r2 = s.req("POST", "/v1/buyers", body, idem=key)
        self.assertEqual((r2.status, r2.raw), (201, r1.raw))
        r3 = s.req("POST", "/v1/buyers", {"email": fg.email(), "market": "IN"}, idem=key)
        self.assertProblem(r3, 422, "idempotency_key_reused")
        r4 = s.req("POST", "/v1/buyers", body)
        self.assertProblem(r4, 409, "buyer_exists")
        # the replayed token works
        self.assertStatus(s.req("GET", "/v1/me/orders", token=r2.body["token"]), 200)

    def test_admin_replay(self):
        s, c = self.srv, self.cat
        key = fg.uid("adm")
        body = c.sale_body()
        r1 = s.admin("POST", "/admin/v1/sales", body, idem=key)
        self.assertStatus(r1, 201)
        r2 = s.admin("POST", "/admin/v1/sales", body, idem=key)
        self.assertEqual((r2.status, r2.raw), (201, r1.raw), "not a duplicate-id 400")
        r = s.admin("POST", "/admin/v1/sales/%s/stock" % body["id"], {"sku": c.acc, "add": 5},
                    idem=key)
        self.assertProblem(r, 422, "idempotency_key_reused")
        k2 = fg.uid("adm")
        for _ in range(3):
            r = s.admin("POST", "/admin/v1/sales/%s/stock" % body["id"],
                        {"sku": c.acc, "add": 5}, idem=k2)
            self.assertStatus(r, 200)
        self.assertEqual(fg.available(s, body["id"], c.acc, "US"), 105, "stock added once")

    def test_concurrent_burst_one_key(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        before = fg.stats(s, self.sid)
        key = fg.uid("burst")
        n = 16
        clients = [s.client() for _ in range(n)]
        for cl in clients:  # open the connections first so the burst is tight
            self.assertEqual(cl.req("GET", "/healthz").status, 200)
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            try:
                barrier.wait(timeout=10)
                results[i] = fg.hold(s, b, self.sid, c.sku1, idem=key, client=clients[i])
            except Exception as e:  # recorded, asserted below
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for cl in clients:
            cl.close()
        self.assertFalse(any(t.is_alive() for t in threads), "a request hung")
        ok = [r for r in results if isinstance(r, fg.Resp) and r.status == 201]
        busy = [r for r in results if isinstance(r, fg.Resp) and r.status == 409]
        other = [r for r in results if r not in ok and r not in busy]
        self.assertEqual(other, [], "only 201 or 409 idempotency_in_progress")
        self.assertGreaterEqual(len(ok), 1)
        for r in ok:
            self.assertEqual(r.raw, ok[0].raw)
        for r in busy:
            self.assertProblem(r, 409, "idempotency_in_progress")
        after = fg.stats(s, self.sid)
        self.assertEqual(after["holds_total"], before["holds_total"] + 1, "exactly one write")
        self.assertEqual(after["available"], before["available"] - 1)
        # and afterwards the key replays
        r = fg.hold(s, b, self.sid, c.sku1, idem=key)
        self.assertEqual((r.status, r.raw), (201, ok[0].raw))

    def test_key_format(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        r = fg.hold(s, b, self.sid, c.acc, idem="k" * 255)
        self.assertStatus(r, 201)
        r = fg.hold(s, b, self.sid, c.acc, idem="k" * 256)
        self.assertEqual(r.status, 400, r)
        self.assertIn(r.body["code"], ("missing_idempotency_key", "invalid_field"))


if __name__ == "__main__":
    fg.main()
