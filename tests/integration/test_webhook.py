"""Payment webhook: signatures, replay, staleness, paid/cancelled, payment after expiry."""

import json
import time

import fg


class TestWebhook(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()
        cls.sid = cls.cat.sale(limit=2, stock=100)

    def pending(self, market="DE", quantity=1):
        s = self.srv
        b = fg.register(s, market)
        h = fg.hold(s, b, self.sid, self.cat.sku1, quantity=quantity)
        self.assertStatus(h, 201)
        r = fg.order(s, b, h.body["id"], method="webhook")
        self.assertStatus(r, 201)
        return b, h.body, r.body

    def test_pending_then_paid(self):
        s, c = self.srv, self.cat
        b, h, o = self.pending(quantity=2)
        self.assertEqual(o["state"], "pending_payment")
        self.assertEqual(o["payment"], {"method": "webhook"})
        self.assertEqual(o["total_minor"], 2 * c.PHONE_PRICES["DE"])
        self.assertEqual(o["currency"], "EUR")
        st = fg.stats(s, self.sid)
        r = s.webhook(o["id"], "succeeded")
        self.assertStatus(r, 200)
        self.assertEqual(r.body["id"], o["id"])
        self.assertEqual(r.body["state"], "paid")
        self.assertEqual(s.req("GET", "/v1/orders/" + o["id"], token=b.token).body["state"],
                         "paid")
        st2 = fg.stats(s, self.sid)
        self.assertEqual(st2["sold"], st["sold"] + 2)
        self.assertEqual(st2["held"], st["held"] - 2)
        # a second, freshly signed succeeded: 200, no change
        time.sleep(0.01)
        raw = json.dumps({"order_id": o["id"], "status": "succeeded"}, indent=1).encode()
        r = s.webhook(None, None, raw=raw)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "paid")
        self.assertEqual(fg.stats(s, self.sid)["sold"], st2["sold"])

    def test_replay_same_signature(self):
        s = self.srv
        _, _, o = self.pending()
        raw = json.dumps({"order_id": o["id"], "status": "succeeded"}).encode()
        sig = s.sign(raw)
        self.assertStatus(s.webhook(None, None, raw=raw, signature=sig), 200)
        r = s.webhook(None, None, raw=raw, signature=sig)
        p = self.assertProblem(r, 401, "unauthorized")
        self.assertTrue(p["detail"], p)

    def test_bad_signatures(self):
        s = self.srv
        b, _, o = self.pending()
        raw = json.dumps({"order_id": o["id"], "status": "succeeded"}).encode()
        now = int(time.time())
        bad = [
            ("", "missing"),
            ("garbage", "malformed"),
            (fg.sign("wrong-secret", raw, now), "wrong secret"),
            (fg.sign(s.webhook_secret, raw + b" ", now), "other body"),
            ("t=%d,v1=%s" % (now + 1, fg.sign(s.webhook_secret, raw, now).split("v1=")[1]),
             "other t"),
            (fg.sign(s.webhook_secret, raw, now - 1000), "stale"),
            (fg.sign(s.webhook_secret, raw, now + 1000), "future"),
            ("t=%d" % now, "no v1"),
            ("v1=" + fg.sign(s.webhook_secret, raw, now).split("v1=")[1], "no t"),
        ]
        for sig, why in bad:
            r = s.webhook(None, None, raw=raw, signature=sig)
            self.assertProblem(r, 401, "unauthorized", msg=why)
        r = s.req("POST", "/v1/payments/webhook", raw)  # no header at all
        self.assertProblem(r, 401, "unauthorized", msg="no header")
        self.assertEqual(s.req("GET", "/v1/orders/" + o["id"], token=b.token).body["state"],
                         "pending_payment")
        # a good one still works after all that
        self.assertStatus(s.webhook(o["id"], "succeeded"), 200)

    def test_within_window(self):
        s = self.srv
        _, _, o = self.pending()
        r = s.webhook(o["id"], "succeeded", t=int(time.time()) - 200)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "paid")

    def test_failed_cancels_and_returns_unit(self):
        s, c = self.srv, self.cat
        before = fg.available(s, self.sid, c.sku1, "DE")
        b, h, o = self.pending()
        self.assertEqual(fg.available(s, self.sid, c.sku1, "DE"), before - 1)
        r = s.webhook(o["id"], "failed")
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "cancelled")
        self.assertEqual(fg.available(s, self.sid, c.sku1, "DE"), before)
        self.assertEqual(s.req("GET", "/v1/orders/" + o["id"], token=b.token).body["state"],
                         "cancelled")
        # paid after cancelled does not resurrect the order
        r = s.webhook(o["id"], "succeeded")
        if r.status == 200:
            self.assertEqual(r.body["state"], "cancelled", r)
        else:
            self.assertProblem(r, r.status)
            self.assertEqual(r.status // 100, 4, r)
        self.assertEqual(fg.available(s, self.sid, c.sku1, "DE"), before)
        self.assertEqual(s.req("GET", "/v1/orders/" + o["id"], token=b.token).body["state"],
                         "cancelled")
        # the buyer's limit is free again
        self.assertStatus(fg.hold(s, b, self.sid, c.sku1, quantity=2), 201)

    def test_bad_bodies(self):
        s = self.srv
        _, _, o = self.pending()
        for raw, status in ((b'{"order_id": "%s", "status": "maybe"}' % o["id"].encode(), 400),
                            (b'{"order_id": "%s"}' % o["id"].encode(), 400),
                            (b'{"order_id": "%s", "status": "failed", "x": 1}' % o["id"].encode(),
                             400),
                            (b'{"order_id": ', 400),
                            (b'{"order_id": "o_999999999", "status": "succeeded"}', 404)):
            r = s.webhook(None, None, raw=raw)
            self.assertEqual(r.status, status, "%r -> %r" % (raw, r))
            self.assertProblem(r, status)

    def test_instant_order_webhook(self):
        # a webhook for an instant (already paid) order: succeeded is a no-op 200
        s = self.srv
        b = fg.register(s, "FR")
        h = fg.hold(s, b, self.sid, self.cat.acc).body
        o = fg.order(s, b, h["id"]).body
        r = s.webhook(o["id"], "succeeded")
        self.assertStatus(r, 200)
        self.assertEqual(r.body["state"], "paid")


class TestWebhookAfterExpiry(fg.TestCase):
    """The one slow test of this file (about 10 s)."""

    def test_payment_after_hold_expiry(self):
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale(ttl=10, limit=2, items=[{"sku": c.acc, "stock": 4, "markets": ["DE"]}])
        b = fg.register(s, "DE")
        h = fg.hold(s, b, sid, c.acc, quantity=2).body
        o = fg.order(s, b, h["id"], method="webhook")
        self.assertStatus(o, 201)
        o = o.body
        self.assertEqual(o["state"], "pending_payment")
        self.assertEqual(fg.available(s, sid, c.acc, "DE"), 2)
        expires = fg.parse_time(h["expires_at"])
        left = (expires - fg.now_utc()).total_seconds()
        self.assertLess(left, 11)
        time.sleep(max(0, left) + 0.5)
        # bounded poll for the cancellation (tick is 50 ms)
        state = None
        for _ in range(20):
            state = s.req("GET", "/v1/orders/" + o["id"], token=b.token).body["state"]
            if state == "cancelled":
                break
            time.sleep(0.1)
        self.assertEqual(state, "cancelled", "pending order not cancelled at hold expiry")
        self.assertEqual(fg.available(s, sid, c.acc, "DE"), 4)
        self.assertIn(s.req("GET", "/v1/holds/" + h["id"], token=b.token).body["state"],
                      ("expired", "ordered"))
        r = s.webhook(o["id"], "succeeded")
        self.assertProblem(r, 409, "hold_expired")
        self.assertEqual(s.req("GET", "/v1/orders/" + o["id"], token=b.token).body["state"],
                         "cancelled")
        st = fg.stats(s, sid)
        self.assertEqual((st["available"], st["held"], st["sold"]), (4, 0, 0))


if __name__ == "__main__":
    fg.main()
