"""test_security.py — what floodgate keeps secret, and who may do what.

- A buyer's token opens no admin endpoint (each answers 401, and nothing changes).
- Tokens and the raw Idempotency-Keys never reach the ledger or the logs: after registrations,
  holds, orders and admin calls with per-request logging on, neither file holds the admin token,
  a buyer token, or a key a client sent; the webhook secret (an HMAC key, which floodgate needs
  in the clear to check signatures) is in the ledger but never in the log.
- The deployment's systemd unit runs floodgate unprivileged and hardened.

Python 3 standard library only; one server per class; bounded waits.
"""

import os
import re
import secrets
import unittest

import fg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BuyerTokensOpenNoAdminEndpoint(fg.TestCase):
    def test_every_admin_route_refuses_a_buyer_token(self):
        cat = fg.Catalog(self.srv).create()
        sale_id = cat.sale()
        b = fg.register(self.srv, "DE")
        before = fg.sale_get(self.srv, sale_id)
        calls = [
            ("PUT", "/admin/v1/markets/NL", {"name": "Netherlands", "currency": "EUR"}),
            ("PUT", "/admin/v1/products/evil", {"name": "x", "specs": {}, "skus": []}),
            ("PUT", "/admin/v1/skus/%s/offers/US" % cat.sku1, {"price_minor": 1}),
            ("POST", "/admin/v1/sales", cat.sale_body()),
            ("POST", "/admin/v1/sales/%s/pause" % sale_id, None),
            ("POST", "/admin/v1/sales/%s/resume" % sale_id, None),
            ("POST", "/admin/v1/sales/%s/close" % sale_id, None),
            ("POST", "/admin/v1/sales/%s/stock" % sale_id, {"sku": cat.sku1, "add": 5}),
            ("GET", "/admin/v1/sales/%s/stats" % sale_id, None),
            ("GET", "/admin/v1/sales/%s/orders?format=ndjson" % sale_id, None),
            ("GET", "/admin/v1/sales/%s/orders?format=csv" % sale_id, None),
        ]
        for method, path, body in calls:
            with self.subTest(call="%s %s" % (method, path)):
                r = self.srv.req(method, path, body, token=b.token, idem=fg.uid("k"))
                self.assertProblem(r, 401, "unauthorized")
        # Nothing those calls asked for happened.
        after = fg.sale_get(self.srv, sale_id)
        self.assertEqual(after["state"], "open")
        self.assertEqual(after["items"], before["items"])
        r = self.srv.req("GET", "/v1/markets")
        self.assertNotIn("NL", [m["code"] for m in r.body["markets"]])
        st = fg.stats(self.srv, sale_id)
        self.assertEqual((st["stock"], st["held"], st["sold"]), (4 * 100, 0, 0))


class SecretsStayOutOfLedgerAndLogs(fg.TestCase):
    server_args = None

    @classmethod
    def setUpClass(cls):
        cls.srv = fg.Server(quiet=False)
        cls.addClassCleanup(cls._stop_class_server, cls.srv)
        cls.srv.start()

    def test_no_token_or_key_is_written_in_the_clear(self):
        s = self.srv
        cat = fg.Catalog(s).create()
        sale_id = cat.sale()
        keys, tokens = [], []
        for i in range(5):
            key = "reg-" + secrets.token_hex(12)
            keys.append(key)
            r = s.req("POST", "/v1/buyers", {"email": fg.email(), "market": "DE"}, idem=key)
            self.assertStatus(r, 201)
            tokens.append(r.body["token"])
            # A replay hands the token back; it is sealed in the ledger, not stored plain.
            r2 = s.req("POST", "/v1/buyers", {"email": r.body["email"], "market": "DE"},
                       idem=key)
            self.assertStatus(r2, 201)
            self.assertEqual(r2.body["token"], r.body["token"])
            buyer = fg.Buyer(r.body["id"], r.body["token"], "DE", r.body["email"])
            hkey = "hold-" + secrets.token_hex(12)
            keys.append(hkey)
            h = fg.hold(s, buyer, sale_id, cat.sku1, idem=hkey)
            self.assertStatus(h, 201)
            okey = "order-" + secrets.token_hex(12)
            keys.append(okey)
            o = fg.order(s, buyer, h.body["id"], idem=okey)
            self.assertStatus(o, 201)
        # A wrong admin token and a wrong buyer token are refused and not echoed anywhere.
        wrong_admin = "fga_" + secrets.token_hex(16)
        r = s.req("GET", "/admin/v1/sales/%s/stats" % sale_id, token=wrong_admin)
        self.assertProblem(r, 401, "unauthorized")
        wrong_buyer = tokens[0][:-4] + "abcd"
        r = s.req("GET", "/v1/me/orders", token=wrong_buyer)
        self.assertProblem(r, 401, "unauthorized")
        s.stop()
        with open(s.log_path, "rb") as f:
            log = f.read()
        self.assertRegex(log.decode(errors="replace"), r"route=|path=",
                         "the log has per-request lines (else this test proves nothing)")
        ledger = b""
        for name in os.listdir(s.data):
            with open(os.path.join(s.data, name), "rb") as f:
                ledger += f.read()
        self.assertGreater(len(ledger), 0)
        plain = {"the admin token": s.admin_token, "a wrong admin token": wrong_admin,
                 "a wrong buyer token": wrong_buyer}
        for i, t in enumerate(tokens):
            plain["buyer token %d" % i] = t
            # the secret part alone, too (the id before it is public)
            secret = t.split("_", 2)[2]  # fgb_<id>_<secret>; the secret may hold "_" too
            self.assertGreaterEqual(len(secret), 32, t)
            plain["buyer token %d's secret" % i] = secret
        for k in keys:
            plain["Idempotency-Key " + k] = k
        for what, text in plain.items():
            with self.subTest(secret=what):
                self.assertNotIn(text.encode(), ledger, "%s is in the ledger" % what)
                self.assertNotIn(text.encode(), log, "%s is in the log" % what)
        self.assertNotIn(s.webhook_secret.encode(), log, "the webhook secret is in the log")
        s.start()  # for the class cleanup's orderly stop


class DeploymentRunsUnprivileged(unittest.TestCase):
    def test_systemd_unit_drops_privileges_and_hardens(self):
        path = os.path.join(REPO_ROOT, "deploy", "floodgate.service")
        with open(path) as f:
            text = f.read()
        settings = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("["):
                continue
            k, _, v = line.partition("=")
            settings.setdefault(k, []).append(v)
        # Either a dynamic user or a named one; never root.
        self.assertTrue(settings.get("DynamicUser") == ["yes"] or
                        settings.get("User", ["root"])[0] not in ("root", "0"))
        for k, v in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                     "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                     "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes"}.items():
            with self.subTest(setting=k):
                self.assertEqual(settings.get(k), [v])
        # Secrets come from a root-only environment file, not the command line (ps shows that).
        self.assertIn("EnvironmentFile", settings)
        self.assertFalse(re.search(r"--admin-token|--webhook-secret", text))
        # An fsync failure exits 74 for a restart from the ledger (docs/reliability.md).
        self.assertEqual(settings.get("Restart"), ["on-failure"])


if __name__ == "__main__":
    unittest.main()
