"""Limits: body size, header size and count, URL length, string and list limits."""

import json
import time

import fg


class TestLimits(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()
        cls.sid = cls.cat.sale(limit=2, stock=100)

    def tearDown(self):
        # whatever a test sent, the server stays up and ready
        c = self.srv.client()
        try:
            self.assertEqual(c.req("GET", "/readyz").status, 200)
        finally:
            c.close()

    def raw(self, data, method="GET", timeout=10.0):
        return fg.raw_request(self.srv.port, data, method=method, timeout=timeout)

    def test_body_too_large(self):
        s = self.srv
        big = json.dumps({"email": "x" * (70 * 1024) + "@example.com", "market": "DE"}).encode()
        req = (b"POST /v1/buyers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Idempotency-Key: big-1\r\nContent-Length: %d\r\n\r\n" % len(big)) + big
        r = self.raw(req, "POST")
        self.assertIsNotNone(r, "no answer to a 70 KiB body")
        self.assertProblem(r, 413, "body_too_large")
        # just over the limit, through the ordinary client, on an admin call
        body = b'{"name": "' + b"n" * (64 * 1024) + b'", "currency": "EUR"}'
        c = s.client()
        try:
            r = c.req("PUT", "/admin/v1/markets/DE", body, token=s.admin_token)
        finally:
            c.close()
        self.assertProblem(r, 413, "body_too_large")

    def test_body_at_limit_is_read(self):
        # 64 KiB exactly is not too large: it is parsed (and refused for its content)
        s = self.srv
        pad = 64 * 1024 - len(b'{"name": "", "currency": "EUR"}')
        body = b'{"name": "' + b"n" * pad + b'", "currency": "EUR"}'
        self.assertEqual(len(body), 64 * 1024)
        r = s.admin("PUT", "/admin/v1/markets/DE", body)
        self.assertProblem(r, 400, "invalid_field", field="name")

    def test_chunked_body_too_large(self):
        chunk = b"x" * 8192
        parts = [b"POST /v1/buyers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nIdempotency-Key: big-2\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n"]
        for _ in range(10):  # 80 KiB
            parts.append(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        parts.append(b"0\r\n\r\n")
        r = self.raw(b"".join(parts), "POST")
        self.assertIsNotNone(r)
        self.assertProblem(r, 413, "body_too_large")

    def test_long_header(self):
        req = (b"GET /v1/markets HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * (20 * 1024) +
               b"\r\n\r\n")
        r = self.raw(req)
        if r is not None:
            self.assertEqual(r.status, 431, r)

    def test_many_headers(self):
        hdrs = b"".join(b"X-H-%d: v\r\n" % i for i in range(3000))
        req = b"GET /v1/markets HTTP/1.1\r\nHost: 127.0.0.1\r\n" + hdrs + b"\r\n"
        r = self.raw(req)
        if r is not None:
            self.assertEqual(r.status, 431, r)

    def test_headers_just_fit(self):
        # a normal request with a few KiB of headers is answered
        req = (b"GET /v1/markets HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"p" * 4000 +
               b"\r\n\r\n")
        r = self.raw(req)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)

    def test_long_url(self):
        r = self.srv.req("GET", "/v1/products?market=DE&pad=" + "a" * 2000)
        self.assertEqual(r.status, 414, r)

    def test_long_token(self):
        r = self.srv.req("GET", "/v1/me/orders", token="fgb_" + "9" * 500)
        self.assertProblem(r, 401, "unauthorized")

    def test_strings_over_limits(self):
        s, c = self.srv, self.cat
        b = fg.register(s, "DE")
        h = fg.hold(s, b, self.sid, c.sku1).body
        long_ship = dict(fg.SHIP["DE"], line1="l" * 201)
        r = fg.order(s, b, h["id"], body={"shipping": long_ship, "payment": {"method": "instant"}})
        self.assertProblem(r, 400, "invalid_field", field="line1")
        r = fg.order(s, b, h["id"], body={"shipping": dict(fg.SHIP["DE"], postal_code="9" * 17),
                                          "payment": {"method": "instant"}})
        self.assertProblem(r, 400, "invalid_field", field="postal_code")
        # exactly at the limits is fine
        ok_ship = dict(fg.SHIP["DE"], name="n" * 200, line1="l" * 200, line2="m" * 200,
                       city="c" * 200, postal_code="9" * 16)
        r = fg.order(s, b, h["id"], body={"shipping": ok_ship, "payment": {"method": "instant"}})
        self.assertStatus(r, 201)
        self.assertEqual(r.body["shipping"], ok_ship)
        # multi-byte: 201 bytes of UTF-8 in 101 characters is over
        r = s.admin("PUT", "/admin/v1/products/" + fg.uid("utf"),
                    {"name": "é" * 100 + "x", "specs": {},
                     "skus": [{"id": fg.uid("utfs"), "name": "s", "attributes": {}}]})
        self.assertProblem(r, 400, "invalid_field", field="name")
        r = s.admin("POST", "/admin/v1/sales", c.sale_body(sale_id="s" * 65))
        self.assertProblem(r, 400, "invalid_field", field="id")
        r = s.admin("POST", "/admin/v1/sales", c.sale_body(sale_id="s" * 64))
        self.assertStatus(r, 201)

    def test_lists_over_limits(self):
        s, c = self.srv, self.cat
        items = [{"sku": c.acc, "stock": 1, "markets": ["DE"]} for _ in range(65)]
        r = s.admin("POST", "/admin/v1/sales", c.sale_body(items=items))
        self.assertProblem(r, 400, "invalid_field", field="items")
        markets = ["DE"] * 65
        r = s.admin("POST", "/admin/v1/sales",
                    c.sale_body(items=[{"sku": c.acc, "stock": 1, "markets": markets}]))
        self.assertProblem(r, 400, "invalid_field", field="market")

    def test_deep_json(self):
        s = self.srv
        deep = '{"name": "W", "specs": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + \
            ', "skus": [{"id": "%s", "name": "s", "attributes": {}}]}' % fg.uid("deep")
        r = s.admin("PUT", "/admin/v1/products/" + fg.uid("deep"), deep)
        self.assertEqual(r.status, 400, r)
        self.assertIn(r.body["code"], ("invalid_json", "invalid_field"))

    def test_garbage_request_lines(self):
        for junk in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                     b"POST /v1/buyers HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                     b"POST /v1/buyers HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"):
            r = self.raw(junk, timeout=3.0)
            if r is not None:
                self.assertGreaterEqual(r.status, 400, (junk, r))
        self.assertEqual(self.srv.req("GET", "/readyz").status, 200)


class TestRateLimit(fg.TestCase):
    server_args = ["--rate-limit", "5"]

    def test_registrations_and_holds_rate_limited(self):
        s = self.srv
        fg.ensure_markets(s)
        statuses = []
        limited = None
        for _ in range(30):  # well over 5 per second, sent back to back
            r = s.req("POST", "/v1/buyers", {"email": fg.email("rl"), "market": "DE"})
            statuses.append(r.status)
            if r.status == 429:
                limited = r
        self.assertIn(201, statuses)
        self.assertIsNotNone(limited, "no 429 in 30 registrations at --rate-limit 5: %s"
                             % statuses)
        self.assertProblem(limited, 429, "rate_limited")
        self.assertEqual(limited.headers.get("retry-after"), "1")
        self.assertLessEqual(statuses.count(201), 12, statuses)
        # reads are not limited
        for _ in range(20):
            self.assertEqual(s.req("GET", "/v1/markets").status, 200)
        # a refused registration wrote nothing, and the limit lifts after a moment
        time.sleep(1.2)
        mail = fg.email("rl")
        self.assertStatus(s.req("POST", "/v1/buyers", {"email": mail, "market": "DE"}), 201)


if __name__ == "__main__":
    fg.main()
