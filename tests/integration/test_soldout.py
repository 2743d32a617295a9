"""Sold-out refusals given by the HTTP threads, without the writer (src/api/gate.c): they happen,
and they never give an answer the writer would not (I5 replays, expiry, closing, bad input)."""

import time

import fg


def metric(srv, name):
    r = srv.req("GET", "/metrics")
    for line in r.body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric %s" % name)


EARLY = "floodgate_holds_refused_early_total"


class TestSoldOut(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()

    def one_unit_sale(self, **kw):
        c = self.cat
        return c.sale(items=[{"sku": c.acc, "stock": 1, "markets": ["DE", "FR"]}], **kw)

    def test_refused_without_the_writer(self):
        s, c = self.srv, self.cat
        sid = self.one_unit_sale()
        self.assertStatus(fg.hold(s, fg.register(s, "DE"), sid, c.acc), 201)
        before = metric(s, EARLY)
        buyers = [fg.register(s, "DE") for _ in range(20)]
        for b in buyers:
            r = fg.hold(s, b, sid, c.acc)
            self.assertProblem(r, 409, "sold_out")
            self.assertIn(sid, r.body["detail"])
        self.assertEqual(metric(s, EARLY) - before, 20)
        self.assertEqual(fg.sale_get(s, sid)["state"], "sold_out")

    def test_bad_input_still_refused_first(self):
        s, c = self.srv, self.cat
        sid = self.one_unit_sale()
        self.assertStatus(fg.hold(s, fg.register(s, "DE"), sid, c.acc), 201)
        b = fg.register(s, "DE")
        path = "/v1/sales/%s/holds" % sid
        self.assertProblem(s.req("POST", path, {"sku": c.acc}), 401, "unauthorized")
        self.assertProblem(s.req("POST", path, {"sku": c.acc}, token=b.token, idem=fg.NOKEY), 400,
                           "missing_idempotency_key")
        self.assertProblem(s.req("POST", path, {"sku": c.acc, "colour": "red"}, token=b.token),
                           400, "invalid_field")
        self.assertProblem(s.req("POST", path, {"sku": c.acc, "quantity": 0}, token=b.token),
                           400, "invalid_field")
        # a SKU the sale does not sell: the writer says so, not "sold out"
        self.assertProblem(fg.hold(s, b, sid, c.sku1), 400, "invalid_field")

    def test_retry_of_a_placed_hold_replays(self):
        # I5: the 201 of the hold that took the last unit was lost; its retry gets it again.
        s, c = self.srv, self.cat
        sid = self.one_unit_sale()
        b = fg.register(s, "DE")
        first = fg.hold(s, b, sid, c.acc, idem="last-unit")
        self.assertStatus(first, 201)
        for _ in range(3):
            r = fg.hold(s, b, sid, c.acc, idem="last-unit")
            self.assertEqual((r.status, r.raw), (201, first.raw))
        r = fg.hold(s, b, sid, c.sku2, idem="last-unit")
        self.assertProblem(r, 422, "idempotency_key_reused")
        self.assertProblem(fg.hold(s, b, sid, c.acc, idem="another"), 409, "sold_out")

    def test_retry_in_flight_is_not_refused(self):
        # A key sent to the writer is never refused here, even if its first try was refused
        # there: a refusal stores nothing, so the same key may place a hold later.
        s, c = self.srv, self.cat
        sid = self.one_unit_sale()
        b1, b2 = fg.register(s, "DE"), fg.register(s, "DE")
        h1 = fg.hold(s, b1, sid, c.acc)
        self.assertStatus(h1, 201)
        self.assertProblem(fg.hold(s, b2, sid, c.acc, idem="again"), 409, "sold_out")
        self.assertStatus(s.req("DELETE", "/v1/holds/" + h1.body["id"], token=b1.token), 200)
        self.assertStatus(fg.hold(s, b2, sid, c.acc, idem="again"), 201)

    def test_unit_back_at_expiry(self):
        s, c = self.srv, self.cat
        sid = self.one_unit_sale(ttl=10)  # the shortest hold the API allows
        h = fg.hold(s, fg.register(s, "DE"), sid, c.acc)
        self.assertStatus(h, 201)
        expires = fg.parse_time(h.body["expires_at"]).timestamp()
        b = fg.register(s, "DE")
        self.assertProblem(fg.hold(s, b, sid, c.acc), 409, "sold_out")
        # Each try has a fresh key; the first 201 must come right after the expiry.
        time.sleep(max(0.0, expires - 0.5 - time.time()))
        got = None
        for _ in range(60):
            r = fg.hold(s, b, sid, c.acc)
            if r.status == 201:
                got = time.time()
                break
            self.assertProblem(r, 409, "sold_out")
            self.assertLess(time.time(), expires + 0.2, "refused sold_out after the expiry")
            time.sleep(0.05)
        self.assertIsNotNone(got, "the expired hold's unit never came back")
        self.assertGreaterEqual(got, expires - 0.05)

    def test_closed_sale_is_not_open(self):
        s, c = self.srv, self.cat
        sid = self.one_unit_sale(closes_in=1)
        self.assertStatus(fg.hold(s, fg.register(s, "DE"), sid, c.acc), 201)
        b = fg.register(s, "DE")
        self.assertProblem(fg.hold(s, b, sid, c.acc), 409, "sold_out")
        deadline = time.time() + 5
        while fg.sale_get(s, sid)["state"] != "closed" and time.time() < deadline:
            time.sleep(0.05)
        self.assertProblem(fg.hold(s, b, sid, c.acc), 409, "sale_not_open")

    def test_stock_added_is_sold_again(self):
        s, c = self.srv, self.cat
        sid = self.one_unit_sale()
        self.assertStatus(fg.hold(s, fg.register(s, "DE"), sid, c.acc), 201)
        b = fg.register(s, "DE")
        self.assertProblem(fg.hold(s, b, sid, c.acc), 409, "sold_out")
        r = s.admin("POST", "/admin/v1/sales/%s/stock" % sid, {"sku": c.acc, "add": 1})
        self.assertStatus(r, 200)
        self.assertStatus(fg.hold(s, b, sid, c.acc), 201)


class TestSoldOutRestart(fg.TestCase):
    def test_replay_after_restart(self):
        # The keys the engine knows are marked again at start, before any sale is published.
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(items=[{"sku": c.acc, "stock": 1, "markets": ["DE"]}])
        b = fg.register(s, "DE")
        first = fg.hold(s, b, sid, c.acc, idem="before-restart")
        self.assertStatus(first, 201)
        s.restart()
        # Until the writer has published the sale, holds go to it; wait until one is refused
        # here, so that the retry below meets the gate.
        other = fg.register(s, "DE")
        for _ in range(100):
            before = metric(s, EARLY)
            self.assertProblem(fg.hold(s, other, sid, c.acc), 409, "sold_out")
            if metric(s, EARLY) - before == 1:
                break
            time.sleep(0.05)
        else:
            self.fail("no hold was refused sold_out by the HTTP threads after the restart")
        r = fg.hold(s, b, sid, c.acc, idem="before-restart")
        self.assertEqual((r.status, r.raw), (201, first.raw))

if __name__ == "__main__":
    fg.main()
