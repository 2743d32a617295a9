"""Buyers: registration, tokens, duplicates, validation, buyer auth."""

import fg


class TestBuyers(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        fg.ensure_markets(cls.srv)

    def test_register(self):
        s = self.srv
        mail = fg.email("ana")
        r = s.req("POST", "/v1/buyers", {"email": mail, "market": "DE"})
        self.assertStatus(r, 201)
        self.assertRegex(r.body["id"], r"^b_\d+$")
        self.assertTrue(r.body["token"].startswith("fgb_"), r.body)
        self.assertGreaterEqual(len(r.body["token"]), 20)
        self.assertEqual(r.body["email"], mail)
        self.assertEqual(r.body["market"], "DE")
        r2 = s.req("POST", "/v1/buyers", {"email": fg.email("bob"), "market": "IN"})
        self.assertStatus(r2, 201)
        self.assertNotEqual(r2.body["id"], r.body["id"])
        self.assertNotEqual(r2.body["token"], r.body["token"])

    def test_email_normalized(self):
        s = self.srv
        local = fg.uid("Case")
        r = s.req("POST", "/v1/buyers", {"email": "  %s@Example.COM " % local, "market": "FR"})
        self.assertStatus(r, 201)
        self.assertEqual(r.body["email"].lower(), ("%s@example.com" % local).lower())
        self.assertEqual(r.body["email"], r.body["email"].strip())
        r = s.req("POST", "/v1/buyers", {"email": "%s@example.com" % local.lower(),
                                         "market": "FR"})
        self.assertProblem(r, 409, "buyer_exists")
        r = s.req("POST", "/v1/buyers", {"email": " %s@EXAMPLE.com" % local.upper(),
                                         "market": "DE"})
        self.assertProblem(r, 409, "buyer_exists")

    def test_email_trimmed_of_tab_and_newline(self):
        # "email is trimmed": surrounding whitespace of any kind, not only spaces
        s = self.srv
        mail = fg.email("tab")
        r = s.req("POST", "/v1/buyers", {"email": "\t%s\n" % mail, "market": "DE"})
        self.assertStatus(r, 201)
        self.assertEqual(r.body["email"], mail)
        r = s.req("POST", "/v1/buyers", {"email": mail, "market": "DE"})
        self.assertProblem(r, 409, "buyer_exists")

    def test_same_email_twice(self):
        s = self.srv
        mail = fg.email()
        self.assertStatus(s.req("POST", "/v1/buyers", {"email": mail, "market": "DE"}), 201)
        r = s.req("POST", "/v1/buyers", {"email": mail, "market": "DE"})
        self.assertProblem(r, 409, "buyer_exists")

    def test_bad_fields(self):
        s = self.srv
        long_local = "a" * 64
        long_mail = long_local + "@" + ("d" * 60 + ".") * 3 + "d" * 12 + ".com"  # > 254 bytes
        self.assertGreater(len(long_mail), 254)
        cases = [
            ({"email": "not-an-email", "market": "DE"}, "email"),
            ({"email": "", "market": "DE"}, "email"),
            ({"email": "@example.com", "market": "DE"}, "email"),
            ({"email": "x@", "market": "DE"}, "email"),
            ({"email": long_mail, "market": "DE"}, "email"),
            ({"email": 42, "market": "DE"}, "email"),
            ({"email": fg.email(), "market": "ZZ"}, "market"),
            ({"email": fg.email(), "market": "de"}, "market"),
            ({"email": fg.email(), "market": "DEU"}, "market"),
            ({"email": fg.email()}, "market"),
            ({"market": "DE"}, "email"),
            ({"email": fg.email(), "market": "DE", "name": "Ana"}, "name"),
        ]
        for body, field in cases:
            r = s.req("POST", "/v1/buyers", body)
            self.assertProblem(r, 400, "invalid_field", field=field, msg=str(body)[:80])

    def test_missing_idempotency_key(self):
        s = self.srv
        mail = fg.email()
        r = s.req("POST", "/v1/buyers", {"email": mail, "market": "DE"}, idem=fg.NOKEY)
        self.assertProblem(r, 400, "missing_idempotency_key")
        # nothing was written: the same email registers now
        self.assertStatus(s.req("POST", "/v1/buyers", {"email": mail, "market": "DE"}), 201)
        r = s.req("POST", "/v1/buyers", {"email": fg.email(), "market": "DE"}, idem="k" * 256)
        self.assertEqual(r.status, 400, r)
        self.assertIn(r.body["code"], ("missing_idempotency_key", "invalid_field"), r)

    def test_invalid_json(self):
        r = self.srv.req("POST", "/v1/buyers", '{"email": ')
        self.assertProblem(r, 400, "invalid_json")

    def test_buyer_token_auth(self):
        s = self.srv
        b = fg.register(s, "DE")
        for tok in (None, "fgb_999999_nope", b.token + "x", b.token[:-1], "garbage",
                    s.admin_token):
            r = s.req("GET", "/v1/me/orders", token=tok)
            self.assertProblem(r, 401, "unauthorized", msg="token %r" % tok)
        r = s.req("GET", "/v1/me/orders", token=b.token)
        self.assertStatus(r, 200)
        self.assertEqual(r.body["orders"], [])
        self.assertIsNone(r.body["next_cursor"])


if __name__ == "__main__":
    fg.main()
