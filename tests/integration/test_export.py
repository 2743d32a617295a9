"""Export: GET /admin/v1/sales/{id}/orders?format=ndjson|csv."""

import csv
import io
import json

import fg

CSV_HEADER = ("order_id,hold_id,buyer_id,email,sale_id,sku,market,quantity,state,payment_method,"
              "total_minor,currency,created_at,updated_at,ship_name,ship_line1,ship_line2,"
              "ship_city,ship_postal_code,ship_country").split(",")


def oid_num(oid):
    return int(oid.split("_", 1)[1])


class TestExport(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.srv
        cls.cat = c = fg.Catalog(s).create()
        cls.sid = c.sale(limit=2, stock=100)
        cls.orders = {}   # id -> (order, buyer)
        for i, market in enumerate(["DE", "FR", "IN", "DE", "US", "FR", "DE"]):
            b = fg.register(s, market)
            sku = c.acc if market == "US" else (c.sku1 if i % 2 else c.sku2)
            h = fg.hold(s, b, cls.sid, sku, quantity=1 + i % 2)
            fg.expect(h, 201)
            method = "webhook" if i == 3 else "instant"
            o = fg.order(s, b, h.body["id"], method=method)
            fg.expect(o, 201)
            cls.orders[o.body["id"]] = (o.body, b)
        # one with an address that needs CSV quoting
        b = fg.register(s, "DE")
        h = fg.hold(s, b, cls.sid, c.acc).body
        ship = dict(fg.SHIP["DE"], name='Ana "Die Erste", Silva', line2="Hof 2, links; \"B\"")
        o = fg.order(s, b, h["id"], body={"shipping": ship, "payment": {"method": "instant"}})
        fg.expect(o, 201)
        cls.orders[o.body["id"]] = (o.body, b)
        # an order in another sale must not appear
        cls.other = c.sale()
        b = fg.register(s, "DE")
        h = fg.hold(s, b, cls.other, c.acc).body
        cls.other_order = fg.order(s, b, h["id"]).body

    def test_ndjson(self):
        s = self.srv
        for path in ("/admin/v1/sales/%s/orders" % self.sid,
                     "/admin/v1/sales/%s/orders?format=ndjson" % self.sid):
            r = s.admin("GET", path)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.headers.get("content-type", "").startswith("application/x-ndjson"),
                            r.headers)
            text = r.raw.decode("utf-8")
            self.assertTrue(text.endswith("\n"), "every line ends with a newline")
            lines = text.splitlines()
            rows = [json.loads(l) for l in lines]
            ids = [row["id"] for row in rows]
            self.assertEqual(sorted(ids, key=oid_num), ids, "id order")
            self.assertEqual(set(ids), set(self.orders), "every order of the sale, no other")
            for row in rows:
                o, b = self.orders[row["id"]]
                self.assertEqual(row["buyer_id"], b.id)
                self.assertEqual(row["email"], b.email)
                extra = {k: v for k, v in row.items() if k not in ("buyer_id", "email")}
                # as GET /v1/orders/{id}
                self.assertEqual(extra, o)
            self.assertGreaterEqual(len([r for r in rows if r["state"] == "paid"]),
                                    len(self.orders) - 1)

    def test_csv(self):
        s = self.srv
        r = s.admin("GET", "/admin/v1/sales/%s/orders?format=csv" % self.sid)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/csv"), r.headers)
        rows = list(csv.reader(io.StringIO(r.raw.decode("utf-8"), newline="")))
        self.assertEqual(rows[0], CSV_HEADER)
        self.assertEqual(len(rows) - 1, len(self.orders))
        recs = [dict(zip(CSV_HEADER, row)) for row in rows[1:]]
        for rec in recs:
            self.assertEqual(len(rec), len(CSV_HEADER))
            o, b = self.orders[rec["order_id"]]
            self.assertEqual(rec["hold_id"], o["hold_id"])
            self.assertEqual(rec["buyer_id"], b.id)
            self.assertEqual(rec["email"], b.email)
            self.assertEqual(rec["sale_id"], self.sid)
            self.assertEqual(rec["sku"], o["sku"])
            self.assertEqual(rec["market"], o["market"])
            self.assertEqual(int(rec["quantity"]), o["quantity"])
            self.assertEqual(rec["state"], o["state"])
            self.assertEqual(rec["payment_method"], o["payment"]["method"])
            self.assertEqual(int(rec["total_minor"]), o["total_minor"])
            self.assertEqual(rec["currency"], o["currency"])
            self.assertEqual(rec["created_at"], o["created_at"])
            for f in ("name", "line1", "line2", "city", "postal_code", "country"):
                self.assertEqual(rec["ship_" + f], o["shipping"].get(f, ""), f)
        self.assertEqual([r["order_id"] for r in recs],
                         sorted((r["order_id"] for r in recs), key=oid_num))

    def test_reflects_payment(self):
        s = self.srv
        pending = [oid for oid, (o, _) in self.orders.items() if o["state"] == "pending_payment"]
        self.assertEqual(len(pending), 1)
        self.assertStatus(s.webhook(pending[0], "succeeded"), 200)
        try:
            r = s.admin("GET", "/admin/v1/sales/%s/orders" % self.sid)
            rows = [json.loads(l) for l in r.raw.decode().splitlines()]
            self.assertEqual([row["state"] for row in rows if row["id"] == pending[0]], ["paid"])
        finally:
            o, b = self.orders[pending[0]]
            self.orders[pending[0]] = (
                s.req("GET", "/v1/orders/" + pending[0], token=b.token).body, b)

    def test_empty_sale(self):
        s = self.srv
        sid = self.cat.sale()
        r = s.admin("GET", "/admin/v1/sales/%s/orders" % sid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.raw, b"")
        r = s.admin("GET", "/admin/v1/sales/%s/orders?format=csv" % sid)
        self.assertEqual(r.status, 200, r)
        rows = list(csv.reader(io.StringIO(r.raw.decode("utf-8"), newline="")))
        self.assertEqual(rows, [CSV_HEADER])

    def test_errors(self):
        s = self.srv
        r = s.admin("GET", "/admin/v1/sales/%s/orders" % fg.uid("nosale"))
        self.assertProblem(r, 404, "not_found")
        r = s.admin("GET", "/admin/v1/sales/%s/orders?format=xml" % self.sid)
        self.assertProblem(r, 400, "invalid_field", field="format")
        r = s.req("GET", "/admin/v1/sales/%s/orders" % self.sid)
        self.assertProblem(r, 401, "unauthorized")
        b = list(self.orders.values())[0][1]
        r = s.req("GET", "/admin/v1/sales/%s/orders" % self.sid, token=b.token)
        self.assertProblem(r, 401, "unauthorized")

    def test_large_export_streams(self):
        # more orders than one page of the streamed export (512 rows)
        s, c = self.srv, self.cat
        sid = c.sale(limit=1, items=[{"sku": c.acc, "stock": 700, "markets": ["DE"]}])
        n = 600
        cl = s.client()
        try:
            for i in range(n):
                r = cl.req("POST", "/v1/buyers", {"email": fg.email("bulk"), "market": "DE"})
                fg.expect(r, 201)
                tok = r.body["token"]
                h = cl.req("POST", "/v1/sales/%s/holds" % sid, {"sku": c.acc}, token=tok)
                fg.expect(h, 201)
                o = cl.req("POST", "/v1/holds/%s/order" % h.body["id"],
                           fg.order_body("DE"), token=tok)
                fg.expect(o, 201)
        finally:
            cl.close()
        r = s.admin("GET", "/admin/v1/sales/%s/orders" % sid)
        self.assertEqual(r.status, 200)
        rows = [json.loads(l) for l in r.raw.decode().splitlines()]
        self.assertEqual(len(rows), n)
        self.assertEqual(len({row["id"] for row in rows}), n)
        r = s.admin("GET", "/admin/v1/sales/%s/orders?format=csv" % sid)
        self.assertEqual(len(list(csv.reader(io.StringIO(r.raw.decode(), newline="")))), n + 1)


if __name__ == "__main__":
    fg.main()
