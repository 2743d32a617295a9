"""Ops: /healthz, /readyz, /metrics (Prometheus text format), keep-alive."""

import re

import fg

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)( \d+)?$')


def parse_metrics(text):
    """{(name, labels-string): value} for every sample; asserts the format line by line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE"):
                parts = line.split()
                assert len(parts) == 4 and parts[3] in (
                    "counter", "gauge", "histogram", "summary", "untyped"), line
            continue
        m = SAMPLE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        v = m.group(3)
        out[(m.group(1), m.group(2) or "")] = float(v)
    return out


def total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)


class TestOps(fg.TestCase):
    def test_healthz(self):
        r = self.srv.req("GET", "/healthz")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, {"status": "ok"})

    def test_readyz(self):
        r = self.srv.req("GET", "/readyz")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, {"status": "ready"})

    def test_metrics(self):
        s = self.srv
        c = fg.Catalog(s).create()
        c.sale()
        r = s.req("GET", "/metrics")
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r.headers)
        text = r.body
        samples = parse_metrics(text)
        names = {n for n, _ in samples}
        for want in ("floodgate_http_requests_total", "floodgate_commit_seconds_bucket",
                     "floodgate_commit_seconds_sum", "floodgate_commit_seconds_count",
                     "floodgate_batch_commands_bucket", "floodgate_holds_active",
                     "floodgate_orders_total", "floodgate_buyers", "floodgate_sale_available",
                     "floodgate_parked_requests", "floodgate_commit_failures_total",
                     "floodgate_queue_depth"):
            self.assertIn(want, names, "metric %s missing" % want)
        self.assertIn("# TYPE floodgate_http_requests_total counter", text)
        self.assertIn("# TYPE floodgate_commit_seconds histogram", text)
        req_labels = [l for (n, l) in samples if n == "floodgate_http_requests_total"]
        self.assertTrue(any("route=" in l and "status=" in l for l in req_labels), req_labels)
        inf = [v for (n, l), v in samples.items()
               if n == "floodgate_commit_seconds_bucket" and 'le="+Inf"' in l]
        self.assertEqual(len(inf), 1)
        self.assertEqual(inf[0], samples[("floodgate_commit_seconds_count", "")])
        self.assertGreater(inf[0], 0, "commits happened")

    def test_metrics_grow(self):
        s = self.srv
        c = fg.Catalog(s).create()
        sid = c.sale()
        before = parse_metrics(s.req("GET", "/metrics").body)
        for _ in range(5):
            self.assertEqual(s.req("GET", "/v1/sales/" + sid).status, 200)
        self.assertEqual(s.req("GET", "/v1/nothing").status, 404)
        b = fg.register(s, "DE")
        h = fg.hold(s, b, sid, c.acc).body
        self.assertStatus(fg.order(s, b, h["id"]), 201)
        after = parse_metrics(s.req("GET", "/metrics").body)
        self.assertGreaterEqual(total(after, "floodgate_http_requests_total"),
                                total(before, "floodgate_http_requests_total") + 8)
        notfound = [v for (n, l), v in after.items()
                    if n == "floodgate_http_requests_total" and 'status="404"' in l]
        self.assertTrue(notfound and sum(notfound) >= 1)
        self.assertGreater(total(after, "floodgate_commit_seconds_count"),
                           total(before, "floodgate_commit_seconds_count"))
        self.assertEqual(total(after, "floodgate_orders_total"),
                         total(before, "floodgate_orders_total") + 1)
        self.assertEqual(total(after, "floodgate_buyers"), total(before, "floodgate_buyers") + 1)
        avail = [v for (n, l), v in after.items()
                 if n == "floodgate_sale_available" and 'sale="%s"' % sid in l
                 and 'sku="%s"' % c.acc in l]
        self.assertEqual(avail, [99.0])

    def test_keep_alive(self):
        s = self.srv
        cl = s.client()
        try:
            for _ in range(20):
                r = cl.req("GET", "/healthz")
                self.assertEqual(r.status, 200)
            fg.ensure_markets(s)
            for i in range(5):
                r = cl.req("POST", "/v1/buyers", {"email": fg.email(), "market": "DE"})
                self.assertEqual(r.status, 201, r)
                r = cl.req("GET", "/v1/markets")
                self.assertEqual(r.status, 200, r)
            self.assertEqual(cl.reconnects, 0,
                             "the server closed a keep-alive connection without saying so")
            self.assertEqual(cl.connects, 1, "keep-alive lost: one connection per request?")
        finally:
            cl.close()

    def test_head_and_unknown(self):
        r = self.srv.req("GET", "/")
        self.assertProblem(r, 404, "not_found")
        r = self.srv.req("POST", "/healthz", {})
        self.assertProblem(r, 405, "method_not_allowed")


if __name__ == "__main__":
    fg.main()
