"""Orders: check out a hold, refusals, get, my orders with cursor pagination."""

import fg


class TestOrders(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()
        cls.sid = cls.cat.sale(limit=5, stock=1000)

    def held(self, market="DE", sku=None, quantity=None, buyer=None):
        b = buyer or fg.register(self.srv, market)
        r = fg.hold(self.srv, b, self.sid, sku or self.cat.sku1, quantity=quantity)
        self.assertStatus(r, 201)
        return b, r.body

    def test_instant(self):
        s, c = self.srv, self.cat
        for market, cur in (("DE", "EUR"), ("IN", "INR")):
            b, h = self.held(market, quantity=3)
            before = fg.stats(s, self.sid)
            body = fg.order_body(market)
            r = fg.order(s, b, h["id"], body=body)
            self.assertStatus(r, 201)
            o = r.body
            self.assertRegex(o["id"], r"^o_\d+$")
            self.assertEqual(o["hold_id"], h["id"])
            self.assertEqual(o["sale_id"], self.sid)
            self.assertEqual(o["sku"], c.sku1)
            self.assertEqual(o["market"], market)
            self.assertEqual(o["quantity"], 3)
            self.assertEqual(o["state"], "paid")
            self.assertEqual(o["total_minor"], c.price(c.sku1, market) * 3)
            self.assertEqual(o["currency"], cur)
            self.assertEqual(o["payment"], {"method": "instant"})
            self.assertEqual(o["shipping"], body["shipping"])
            for k in ("created_at", "updated_at"):
                self.assertRegex(o[k], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            after = fg.stats(s, self.sid)
            self.assertEqual(after["sold"], before["sold"] + 3)
            self.assertEqual(after["held"], before["held"] - 3)
            self.assertEqual(after["available"], before["available"])
            self.assertEqual(after["orders_total"], before["orders_total"] + 1)
            r = s.req("GET", "/v1/orders/" + o["id"], token=b.token)
            self.assertStatus(r, 200)
            self.assertEqual(r.body, o)
            r = s.req("GET", "/v1/holds/" + h["id"], token=b.token)
            self.assertEqual(r.body["state"], "ordered")
            self.assertEqual(r.body["order_id"], o["id"])

    def test_line2_optional(self):
        s = self.srv
        b, h = self.held("FR")
        body = fg.order_body("FR")
        del body["shipping"]["line2"]
        r = fg.order(s, b, h["id"], body=body)
        self.assertStatus(r, 201)
        self.assertEqual(r.body["state"], "paid")

    def test_order_twice(self):
        s = self.srv
        b, h = self.held()
        self.assertStatus(fg.order(s, b, h["id"]), 201)
        self.assertProblem(fg.order(s, b, h["id"]), 409, "hold_not_active")
        r = s.req("GET", "/v1/me/orders", token=b.token)
        self.assertEqual(len(r.body["orders"]), 1)

    def test_ship_country_must_be_hold_market(self):
        s = self.srv
        b, h = self.held("DE")
        body = fg.order_body("FR")
        r = fg.order(s, b, h["id"], body=body)
        self.assertProblem(r, 400, "invalid_field", field="country")
        self.assertEqual(s.req("GET", "/v1/holds/" + h["id"], token=b.token).body["state"],
                         "held")
        self.assertStatus(fg.order(s, b, h["id"]), 201)

    def test_offer_withdrawn_before_order(self):
        # I6: the SKU must still be offered in the market when the order is placed
        s, c = self.srv, self.cat
        sid = c.sale(items=[{"sku": c.sku2, "stock": 5, "markets": ["FR"]}])
        b = fg.register(s, "FR")
        h = fg.hold(s, b, sid, c.sku2).body
        self.assertStatus(s.admin("PUT", "/admin/v1/skus/%s/offers/FR" % c.sku2,
                                  {"blocked": "legal hold"}), 200)
        try:
            r = fg.order(s, b, h["id"])
            p = self.assertProblem(r, 403, "not_offered_in_market")
            self.assertEqual(p.get("reason"), "legal hold")
        finally:
            self.assertStatus(s.admin("PUT", "/admin/v1/skus/%s/offers/FR" % c.sku2,
                                      {"price_minor": c.PHONE2_PRICES["FR"]}), 200)
        self.assertStatus(fg.order(s, b, h["id"]), 201)

    def test_bad_bodies(self):
        s = self.srv
        b, h = self.held("DE")
        ship = fg.SHIP["DE"]

        def body(**changes):
            sh = dict(ship)
            for k, v in changes.items():
                if v is None:
                    sh.pop(k)
                else:
                    sh[k] = v
            return {"shipping": sh, "payment": {"method": "instant"}}

        cases = [
            (body(name=None), "name"),
            (body(line1=None), "line1"),
            (body(city=None), "city"),
            (body(postal_code=None), "postal_code"),
            (body(country=None), "country"),
            (body(name=""), "name"),
            (body(name="n" * 201), "name"),
            (body(line1="l" * 201), "line1"),
            (body(line2="l" * 201), "line2"),
            (body(city="c" * 201), "city"),
            (body(postal_code="1" * 17), "postal_code"),
            (body(country="ZZ"), "country"),
            (body(phone="123"), "phone"),
            ({"payment": {"method": "instant"}}, "shipping"),
            ({"shipping": dict(ship)}, "payment"),
            ({"shipping": dict(ship), "payment": {"method": "cash"}}, "method"),
            ({"shipping": dict(ship), "payment": {}}, "method"),
            ({"shipping": dict(ship), "payment": {"method": "instant", "card": "4242"}}, "card"),
            ({"shipping": dict(ship), "payment": {"method": "instant"}, "gift": True}, "gift"),
        ]
        for bd, field in cases:
            r = fg.order(s, b, h["id"], body=bd)
            self.assertProblem(r, 400, "invalid_field", field=field, msg=field)
        r = s.req("POST", "/v1/holds/%s/order" % h["id"], '{"shipping":', token=b.token)
        self.assertProblem(r, 400, "invalid_json")
        r = fg.order(s, b, h["id"], idem=fg.NOKEY)
        self.assertProblem(r, 400, "missing_idempotency_key")
        self.assertEqual(s.req("GET", "/v1/holds/" + h["id"], token=b.token).body["state"],
                         "held")

    def test_auth_and_other_buyer(self):
        s = self.srv
        a, h = self.held("DE")
        o = fg.order(s, a, h["id"]).body
        b = fg.register(s, "DE")
        self.assertProblem(s.req("GET", "/v1/orders/" + o["id"], token=b.token), 404, "not_found")
        self.assertProblem(s.req("GET", "/v1/orders/" + o["id"]), 401, "unauthorized")
        self.assertProblem(s.req("GET", "/v1/orders/" + o["id"], token=s.admin_token), 401,
                           "unauthorized")
        self.assertProblem(s.req("GET", "/v1/orders/o_999999999", token=a.token), 404,
                           "not_found")
        self.assertEqual(s.req("GET", "/v1/me/orders", token=b.token).body["orders"], [])
        self.assertProblem(fg.order(s, a, "h_999999999"), 404, "not_found")

    def test_my_orders_pagination(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        ids = []
        for i in range(5):
            _, h = self.held(buyer=b, sku=c.acc if i % 2 else c.sku1)
            r = fg.order(s, b, h["id"])
            self.assertStatus(r, 201)
            ids.append(r.body["id"])
        newest_first = list(reversed(ids))
        r = s.req("GET", "/v1/me/orders", token=b.token)
        self.assertStatus(r, 200)
        self.assertEqual([o["id"] for o in r.body["orders"]], newest_first)
        self.assertIsNone(r.body["next_cursor"])
        full = {o["id"]: o for o in r.body["orders"]}
        seen, cursor = [], None
        for _ in range(10):  # bounded
            path = "/v1/me/orders?limit=2" + ("&cursor=" + cursor if cursor else "")
            r = s.req("GET", path, token=b.token)
            self.assertStatus(r, 200)
            self.assertLessEqual(len(r.body["orders"]), 2)
            for o in r.body["orders"]:
                self.assertEqual(o, full[o["id"]])
            seen += [o["id"] for o in r.body["orders"]]
            cursor = r.body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, newest_first)
        for bad in ("0", "101", "x", "-1"):
            r = s.req("GET", "/v1/me/orders?limit=" + bad, token=b.token)
            self.assertProblem(r, 400, "invalid_field", field="limit")
        r = s.req("GET", "/v1/me/orders?limit=100", token=b.token)
        self.assertStatus(r, 200)
        r = s.req("GET", "/v1/me/orders?cursor=garbage", token=b.token)
        self.assertProblem(r, 400, "invalid_field", field="cursor")


if __name__ == "__main__":
    fg.main()
