"""Catalog: markets, products, offers; auth on admin calls; generic errors (invalid_json,
invalid_field, 404, 405)."""

import fg


class TestMarkets(fg.TestCase):
    def test_put_market_created_then_replaced(self):
        s = self.srv
        r = s.admin("PUT", "/admin/v1/markets/JP", {"name": "Japan", "currency": "JPY"})
        self.assertStatus(r, 201)
        self.assertEqual(r.body, {"code": "JP", "name": "Japan", "currency": "JPY"})
        r = s.admin("PUT", "/admin/v1/markets/JP", {"name": "Nippon", "currency": "JPY"})
        self.assertStatus(r, 200)
        self.assertEqual(r.body["name"], "Nippon")
        r = s.req("GET", "/v1/markets")
        self.assertStatus(r, 200)
        jp = [m for m in r.body["markets"] if m["code"] == "JP"]
        self.assertEqual(jp, [{"code": "JP", "name": "Nippon", "currency": "JPY"}])

    def test_markets_listed_in_creation_order(self):
        s = self.srv
        fg.ensure_markets(s)
        for code, name, cur in (("SE", "Sweden", "SEK"), ("NO", "Norway", "NOK")):
            self.assertIn(s.admin("PUT", "/admin/v1/markets/" + code,
                                  {"name": name, "currency": cur}).status, (200, 201))
        r = s.req("GET", "/v1/markets")
        self.assertStatus(r, 200)
        codes = [m["code"] for m in r.body["markets"]]
        for c in ("IN", "DE", "FR", "US", "SE", "NO"):
            self.assertIn(c, codes)
        self.assertLess(codes.index("IN"), codes.index("DE"))
        self.assertLess(codes.index("US"), codes.index("SE"))
        self.assertLess(codes.index("SE"), codes.index("NO"))
        for m in r.body["markets"]:
            self.assertEqual(set(m), {"code", "name", "currency"})

    def test_put_market_bad_fields(self):
        s = self.srv
        r = s.admin("PUT", "/admin/v1/markets/XQ", {"name": "X", "currency": "EURO"})
        self.assertProblem(r, 400, "invalid_field", field="currency")
        r = s.admin("PUT", "/admin/v1/markets/XQ", {"currency": "EUR"})
        self.assertProblem(r, 400, "invalid_field", field="name")
        r = s.admin("PUT", "/admin/v1/markets/xq", {"name": "X", "currency": "EUR"})
        self.assertProblem(r, 400, "invalid_field")
        r = s.admin("PUT", "/admin/v1/markets/XQ", {"name": "X", "currency": "EUR", "vat": 19})
        self.assertProblem(r, 400, "invalid_field", field="vat")
        r = s.admin("PUT", "/admin/v1/markets/XQ", {"name": "x" * 201, "currency": "EUR"})
        self.assertProblem(r, 400, "invalid_field", field="name")

    def test_admin_auth(self):
        s = self.srv
        body = {"name": "Italy", "currency": "EUR"}
        r = s.req("PUT", "/admin/v1/markets/IT", body)
        self.assertProblem(r, 401, "unauthorized", msg="no token")
        r = s.req("PUT", "/admin/v1/markets/IT", body, token="wrong-" + s.admin_token)
        self.assertProblem(r, 401, "unauthorized", msg="wrong token")
        r = s.req("PUT", "/admin/v1/markets/IT", body, headers={"Authorization": s.admin_token})
        self.assertProblem(r, 401, "unauthorized", msg="no Bearer scheme")
        fg.ensure_markets(s)
        b = fg.register(s, "DE")
        r = s.req("PUT", "/admin/v1/markets/IT", body, token=b.token)
        self.assertProblem(r, 401, "unauthorized", msg="buyer token on admin")
        r = s.req("GET", "/admin/v1/sales/nope/stats", token=b.token)
        self.assertProblem(r, 401, "unauthorized", msg="buyer token on admin GET")
        # nothing was written
        codes = [m["code"] for m in s.req("GET", "/v1/markets").body["markets"]]
        self.assertNotIn("IT", codes)


class TestProducts(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()

    def test_put_product_created_then_replaced(self):
        s = self.srv
        pid = fg.uid("prod")
        body = {"name": "Widget", "specs": {"a": 1, "nested": {"b": [1, 2]}},
                "skus": [{"id": pid + "-s1", "name": "Widget S1", "attributes": {"c": "x"}}]}
        r = s.admin("PUT", "/admin/v1/products/" + pid, body)
        self.assertStatus(r, 201)
        self.assertEqual(r.body["id"], pid)
        self.assertEqual(r.body["name"], "Widget")
        self.assertEqual(r.body["specs"], body["specs"])
        self.assertEqual(r.body["skus"], [{"id": pid + "-s1", "name": "Widget S1",
                                           "attributes": {"c": "x"}}])
        body["name"] = "Widget 2"
        body["skus"].append({"id": pid + "-s2", "name": "Widget S2", "attributes": {}})
        r = s.admin("PUT", "/admin/v1/products/" + pid, body)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["name"], "Widget 2")
        self.assertEqual([k["id"] for k in r.body["skus"]], [pid + "-s1", pid + "-s2"])

    def test_put_product_bad_fields(self):
        s = self.srv
        pid = fg.uid("bad")
        ok_sku = {"id": pid + "-s", "name": "S", "attributes": {}}
        cases = [
            ({"name": "W", "specs": {}, "skus": [ok_sku], "colour": "red"}, "colour"),
            ({"name": "W", "specs": {}, "skus": [dict(ok_sku, weight=3)]}, "weight"),
            ({"name": "W", "specs": {}, "skus": []}, "skus"),
            ({"name": "W", "specs": [], "skus": [ok_sku]}, "specs"),
            ({"name": "W", "specs": {}, "skus": [dict(ok_sku, attributes="x")]}, "attributes"),
            ({"name": "W" * 201, "specs": {}, "skus": [ok_sku]}, "name"),
            ({"name": "W", "specs": {}, "skus": [dict(ok_sku, id="bad id!")]}, "id"),
            ({"name": "W", "specs": {}, "skus": [dict(ok_sku, id="x" * 65)]}, "id"),
            ({"name": "W", "specs": {"blob": "x" * 9000}, "skus": [ok_sku]}, "specs"),
            ({"name": "W", "specs": {},
              "skus": [dict(ok_sku, id="%s-%d" % (pid, i)) for i in range(65)]}, "skus"),
            ({"name": 5, "specs": {}, "skus": [ok_sku]}, "name"),
        ]
        for body, field in cases:
            r = s.admin("PUT", "/admin/v1/products/" + pid, body)
            self.assertProblem(r, 400, "invalid_field", field=field, msg="field %s" % field)
        r = s.admin("PUT", "/admin/v1/products/" + "p" * 65,
                    {"name": "W", "specs": {}, "skus": [ok_sku]})
        self.assertEqual(r.status, 400, r)
        # nothing was created
        r = s.req("GET", "/v1/products/%s?market=DE" % pid)
        self.assertProblem(r, 404, "not_found")

    def test_sku_belongs_to_one_product(self):
        s = self.srv
        r = s.admin("PUT", "/admin/v1/products/" + fg.uid("thief"),
                    {"name": "T", "specs": {},
                     "skus": [{"id": self.cat.sku1, "name": "stolen", "attributes": {}}]})
        self.assertProblem(r, 400, "invalid_field")

    def test_sku_in_sale_cannot_be_removed(self):
        s = self.srv
        pid = fg.uid("ins")
        body = {"name": "In sale", "specs": {},
                "skus": [{"id": pid + "-a", "name": "A", "attributes": {}},
                         {"id": pid + "-b", "name": "B", "attributes": {}}]}
        self.assertStatus(s.admin("PUT", "/admin/v1/products/" + pid, body), 201)
        self.assertStatus(s.admin("PUT", "/admin/v1/skus/%s-a/offers/DE" % pid,
                                  {"price_minor": 100}), 200)
        r = s.admin("POST", "/admin/v1/sales", {
            "id": fg.uid("s"), "name": "S", "opens_at": fg.iso_in(-60), "limit_per_buyer": 1,
            "hold_ttl_s": 60, "items": [{"sku": pid + "-a", "stock": 5, "markets": ["DE"]}]})
        self.assertStatus(r, 201)
        r = s.admin("PUT", "/admin/v1/products/" + pid,
                    dict(body, skus=[{"id": pid + "-b", "name": "B", "attributes": {}}]))
        self.assertProblem(r, 400, "invalid_field")
        r = s.req("GET", "/v1/products/%s?market=DE" % pid)
        self.assertEqual([k["id"] for k in r.body["skus"]], [pid + "-a", pid + "-b"])
        # the SKU not in a sale can go
        r = s.admin("PUT", "/admin/v1/products/" + pid,
                    dict(body, skus=[{"id": pid + "-a", "name": "A2", "attributes": {}}]))
        self.assertStatus(r, 200)

    def test_invalid_json(self):
        s = self.srv
        for raw in ('{"name": "W", ', "not json", '{"name": "W"} trailing', "[1,2", ""):
            r = s.admin("PUT", "/admin/v1/products/" + fg.uid("j"), raw)
            if raw == "":
                self.assertEqual(r.status, 400, r)
                self.assertIn(r.body["code"], ("invalid_json", "invalid_field"), r)
                continue
            self.assertProblem(r, 400, "invalid_json", msg=repr(raw))
        r = s.admin("PUT", "/admin/v1/markets/DE", b'{"name": "Germany", "currency": "\xff"}')
        self.assertEqual(r.status, 400, r)
        r = s.admin("PUT", "/admin/v1/markets/DE", "[]")
        self.assertEqual(r.status, 400, r)
        self.assertIn(r.body["code"], ("invalid_json", "invalid_field"), r)

    def test_offers(self):
        s, c = self.srv, self.cat
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc, {"price_minor": 2999})
        self.assertStatus(r, 200)
        self.assertEqual(r.body, {"sku": c.acc, "market": "DE", "offered": True,
                                  "price_minor": 2999, "currency": "EUR"})
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/US" % c.sku1, {"blocked": "not certified"})
        self.assertStatus(r, 200)
        self.assertEqual(r.body, {"sku": c.sku1, "market": "US", "offered": False,
                                  "reason": "not certified"})

    def test_offer_errors(self):
        s, c = self.srv, self.cat
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % fg.uid("nosku"), {"price_minor": 1})
        self.assertProblem(r, 404, "not_found", msg="unknown sku")
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/ZZ" % c.acc, {"price_minor": 1})
        self.assertProblem(r, 404, "not_found", msg="unknown market")
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc,
                    {"price_minor": 1, "blocked": "x"})
        self.assertProblem(r, 400, "invalid_field", msg="both price and blocked")
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc, {})
        self.assertProblem(r, 400, "invalid_field", msg="neither")
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc, {"price_minor": -5})
        self.assertProblem(r, 400, "invalid_field", field="price_minor")
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc, {"price_minor": "5"})
        self.assertProblem(r, 400, "invalid_field", field="price_minor")
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc,
                    {"price_minor": 5, "discount": 1})
        self.assertProblem(r, 400, "invalid_field", field="discount")
        r = s.admin("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc, {"blocked": "r" * 201})
        self.assertProblem(r, 400, "invalid_field", field="blocked")
        r = s.req("PUT", "/admin/v1/skus/%s/offers/DE" % c.acc, {"price_minor": 1})
        self.assertProblem(r, 401, "unauthorized")
        # the offer is unchanged
        r = s.req("GET", "/v1/products/%s?market=DE" % c.acc_product)
        self.assertEqual(r.body["skus"][0]["price_minor"], c.ACC_PRICES["DE"], r)

    def test_list_products_by_market(self):
        s, c = self.srv, self.cat
        r = s.req("GET", "/v1/products?market=US")
        self.assertStatus(r, 200)
        self.assertEqual(r.body["market"], "US")
        ids = [p["id"] for p in r.body["products"]]
        self.assertNotIn(c.phone, ids, "the phone is blocked in US")
        self.assertIn(c.acc_product, ids)
        acc = [p for p in r.body["products"] if p["id"] == c.acc_product][0]
        self.assertEqual(acc["skus"], [{"id": c.acc, "name": "Clear case",
                                        "attributes": {"fits": c.phone},
                                        "price_minor": 2999, "currency": "USD"}])
        self.assertEqual(acc["specs"], {"material": "TPU"})

        r = s.req("GET", "/v1/products?market=IN")
        self.assertStatus(r, 200)
        phone = [p for p in r.body["products"] if p["id"] == c.phone]
        self.assertEqual(len(phone), 1, r)
        skus = {k["id"]: k for k in phone[0]["skus"]}
        self.assertEqual(set(skus), {c.sku1, c.sku2})
        self.assertEqual(skus[c.sku1]["price_minor"], c.PHONE_PRICES["IN"])
        self.assertEqual(skus[c.sku1]["currency"], "INR")

    def test_list_only_offered_skus(self):
        s = self.srv
        pid = fg.uid("half")
        self.assertStatus(s.admin("PUT", "/admin/v1/products/" + pid, {
            "name": "Half", "specs": {},
            "skus": [{"id": pid + "-a", "name": "A", "attributes": {}},
                     {"id": pid + "-b", "name": "B", "attributes": {}}]}), 201)
        self.assertStatus(s.admin("PUT", "/admin/v1/skus/%s-a/offers/FR" % pid,
                                  {"price_minor": 100}), 200)
        r = s.req("GET", "/v1/products?market=FR")
        p = [p for p in r.body["products"] if p["id"] == pid]
        self.assertEqual(len(p), 1, r)
        self.assertEqual([k["id"] for k in p[0]["skus"]], [pid + "-a"])
        r = s.req("GET", "/v1/products?market=DE")
        self.assertNotIn(pid, [p["id"] for p in r.body["products"]], "no SKU offered in DE")

    def test_list_products_needs_market(self):
        s = self.srv
        r = s.req("GET", "/v1/products")
        self.assertProblem(r, 400, "invalid_field", field="market")
        r = s.req("GET", "/v1/products?market=")
        self.assertProblem(r, 400, "invalid_field", field="market")

    def test_product_in_market_not_offered(self):
        s, c = self.srv, self.cat
        r = s.req("GET", "/v1/products/%s?market=US" % c.phone)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["id"], c.phone)
        self.assertEqual(r.body["market"], "US")
        self.assertEqual(r.body["specs"], {"display": "6.5in", "battery_mah": 5000})
        self.assertEqual(len(r.body["skus"]), 2)
        for k in r.body["skus"]:
            self.assertIs(k["offered"], False, k)
            self.assertEqual(k["reason"], "not certified")
            self.assertNotIn("price_minor", k)
            alts = k["alternatives"]
            self.assertIsInstance(alts, list)
            self.assertLessEqual(len(alts), 8)
            acc = [a for a in alts if a["sku"] == c.acc]
            self.assertEqual(acc, [{"sku": c.acc, "product": c.acc_product, "name": "Clear case",
                                    "price_minor": 2999, "currency": "USD"}])
            for a in alts:
                self.assertNotIn(a["sku"], (c.sku1, c.sku2))

    def test_product_in_market_offered(self):
        s, c = self.srv, self.cat
        r = s.req("GET", "/v1/products/%s?market=DE" % c.phone)
        self.assertStatus(r, 200)
        skus = {k["id"]: k for k in r.body["skus"]}
        self.assertIs(skus[c.sku1]["offered"], True)
        self.assertEqual(skus[c.sku1]["price_minor"], 99900)
        self.assertEqual(skus[c.sku1]["currency"], "EUR")
        self.assertEqual(skus[c.sku2]["price_minor"], 109900)

    def test_product_no_offer_reason(self):
        s = self.srv
        pid = fg.uid("solo")
        self.assertStatus(s.admin("PUT", "/admin/v1/products/" + pid, {
            "name": "Solo", "specs": {},
            "skus": [{"id": pid + "-a", "name": "A", "attributes": {}},
                     {"id": pid + "-b", "name": "B", "attributes": {}}]}), 201)
        self.assertStatus(s.admin("PUT", "/admin/v1/skus/%s-a/offers/FR" % pid,
                                  {"price_minor": 500}), 200)
        r = s.req("GET", "/v1/products/%s?market=FR" % pid)
        self.assertStatus(r, 200)
        skus = {k["id"]: k for k in r.body["skus"]}
        b = skus[pid + "-b"]
        self.assertIs(b["offered"], False)
        self.assertEqual(b["reason"], "not offered in FR")
        # this product's offered SKUs come first among the alternatives
        self.assertGreaterEqual(len(b["alternatives"]), 1)
        self.assertEqual(b["alternatives"][0]["sku"], pid + "-a")
        self.assertEqual(b["alternatives"][0]["product"], pid)
        self.assertEqual(b["alternatives"][0]["currency"], "EUR")

    def test_product_errors(self):
        s, c = self.srv, self.cat
        r = s.req("GET", "/v1/products/%s?market=DE" % fg.uid("none"))
        self.assertProblem(r, 404, "not_found")
        r = s.req("GET", "/v1/products/%s" % c.phone)
        self.assertProblem(r, 400, "invalid_field", field="market")

    def test_unknown_path_and_method(self):
        s = self.srv
        r = s.req("GET", "/v1/nothing-here")
        self.assertProblem(r, 404, "not_found")
        r = s.req("GET", "/v2/markets")
        self.assertProblem(r, 404, "not_found")
        r = s.req("DELETE", "/v1/markets")
        self.assertProblem(r, 405, "method_not_allowed")
        r = s.req("POST", "/v1/markets", {})
        self.assertProblem(r, 405, "method_not_allowed")
        r = s.admin("GET", "/admin/v1/markets/DE")
        self.assertProblem(r, 405, "method_not_allowed")
        r = s.admin("DELETE", "/admin/v1/products/" + fg.uid("gone"))
        self.assertProblem(r, 405, "method_not_allowed")
        r = s.admin("GET", "/admin/v1/sales")
        self.assertProblem(r, 405, "method_not_allowed")
        r = s.req("PUT", "/v1/products/" + self.cat.phone, {})
        self.assertProblem(r, 405, "method_not_allowed")
        self.assertStatus(s.req("GET", "/readyz"), 200)


if __name__ == "__main__":
    fg.main()
