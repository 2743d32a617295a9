"""The per-address rate limit on registrations and holds (--rate-limit): 429 rate_limited with
Retry-After past it, other calls unaffected, and a new second brings the allowance back."""

import time

import fg


class TestRateLimit(fg.TestCase):
    server_args = ["--rate-limit", "3"]

    def burst_register(self, n):
        return [self.srv.req("POST", "/v1/buyers", {"email": fg.email(), "market": "DE"})
                for _ in range(n)]

    def wait_next_second(self):
        # the limit counts per whole second of the server's monotonic clock: start a burst
        # right after a boundary so it cannot straddle two seconds
        t = time.monotonic()
        time.sleep(1.0 - (t % 1.0) + 0.02)

    def test_registrations_past_the_limit_are_429_with_retry_after(self):
        fg.ensure_markets(self.srv)
        self.wait_next_second()
        answers = self.burst_register(8)
        limited = [r for r in answers if r.status == 429]
        created = [r for r in answers if r.status == 201]
        self.assertGreaterEqual(len(limited), 1, answers)
        self.assertLessEqual(len(created), 6, answers)  # at most two seconds' allowance
        for r in limited:
            self.assertProblem(r, 429, "rate_limited")
            self.assertEqual(r.headers.get("retry-after"), "1", r)

    def test_allowance_comes_back_after_a_second(self):
        fg.ensure_markets(self.srv)
        self.wait_next_second()
        self.burst_register(8)
        time.sleep(1.1)
        r = self.srv.req("POST", "/v1/buyers", {"email": fg.email(), "market": "DE"})
        self.assertStatus(r, 201)

    def test_reads_are_not_limited(self):
        for _ in range(20):
            self.assertStatus(self.srv.req("GET", "/v1/markets"), 200)

    def test_holds_are_limited_too(self):
        cat = fg.Catalog(self.srv).create()
        sale = cat.sale(limit=100, stock=1000)
        time.sleep(1.1)  # the catalog calls above are not limited, registrations are
        buyer = fg.register(self.srv)
        self.wait_next_second()
        answers = [fg.hold(self.srv, buyer, sale, cat.sku1) for _ in range(8)]
        self.assertTrue(any(r.status == 429 for r in answers), answers)
        self.assertTrue(any(r.status == 201 for r in answers), answers)


if __name__ == "__main__":
    fg.main()
