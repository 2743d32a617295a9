"""Events: GET /v1/sales/{id}/events (Server-Sent Events)."""

import fg


class TestEvents(fg.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cat = fg.Catalog(cls.srv).create()

    def stream(self, sid, headers=None):
        st = fg.SSE(self.srv.port, "/v1/sales/%s/events" % sid, headers=headers)
        self.addCleanup(st.close)
        return st

    def check_event(self, ev, sid):
        self.assertIsNotNone(ev, "no event")
        self.assertEqual(ev.get("event"), "sale", ev)
        self.assertRegex(ev.get("id", ""), r"^\d+$", ev)
        d = ev["data"]
        self.assertIsInstance(d, dict, ev)
        self.assertEqual(d["id"], sid)
        self.assertIn(d["state"], ("scheduled", "open", "paused", "sold_out", "closed"))
        for it in d["items"]:
            self.assertEqual(set(it) >= {"sku", "markets", "available"}, True, it)
        return d

    def avail(self, d, sku, market):
        return [i["available"] for i in d["items"] if i["sku"] == sku and market in i["markets"]][0]

    def test_first_event_then_changes(self):
        s, c = self.srv, self.cat
        sid = c.sale(stock=10)
        st = self.stream(sid)
        self.assertEqual(st.status, 200)
        self.assertTrue(st.headers.get("content-type", "").startswith("text/event-stream"),
                        st.headers)
        ev = st.next_event(timeout=2)
        d = self.check_event(ev, sid)
        self.assertEqual(d["state"], "open")
        self.assertEqual(self.avail(d, c.acc, "DE"), 10)
        first_id = int(ev["id"])

        b = fg.register(s, "DE")
        self.assertStatus(fg.hold(s, b, sid, c.acc, quantity=2), 201)
        ev2 = st.next_event(timeout=2)
        d2 = self.check_event(ev2, sid)
        self.assertGreater(int(ev2["id"]), first_id)
        self.assertEqual(self.avail(d2, c.acc, "DE"), 8)

        self.assertStatus(s.admin("POST", "/admin/v1/sales/%s/pause" % sid), 200)
        ev3 = st.next_event(timeout=2)
        d3 = self.check_event(ev3, sid)
        self.assertEqual(d3["state"], "paused")
        self.assertGreater(int(ev3["id"]), int(ev2["id"]))

        self.assertStatus(s.admin("POST", "/admin/v1/sales/%s/stock" % sid,
                                  {"sku": c.acc, "add": 5}), 200)
        ev4 = st.next_event(timeout=2)
        d4 = self.check_event(ev4, sid)
        self.assertEqual(self.avail(d4, c.acc, "DE"), 13)

    def test_two_streams_same_events(self):
        s, c = self.srv, self.cat
        sid = c.sale(stock=10)
        a, b = self.stream(sid), self.stream(sid)
        ea, eb = a.next_event(2), b.next_event(2)
        self.assertEqual(ea["id"], eb["id"])
        buyer = fg.register(s, "FR")
        self.assertStatus(fg.hold(s, buyer, sid, c.sku1), 201)
        ea, eb = a.next_event(2), b.next_event(2)
        self.assertIsNotNone(ea)
        self.assertEqual(ea, eb)
        self.assertEqual(self.avail(ea["data"], c.sku1, "FR"), 9)

    def test_no_event_without_change(self):
        s, c = self.srv, self.cat
        sid = c.sale(stock=10)
        st = self.stream(sid)
        self.check_event(st.next_event(2), sid)
        # reads and other sales do not produce events on this stream
        s.req("GET", "/v1/sales/" + sid)
        other = c.sale()
        b = fg.register(s, "DE")
        self.assertStatus(fg.hold(s, b, other, c.acc), 201)
        self.assertIsNone(st.next_event(timeout=0.7))

    def test_last_event_id_resumes(self):
        s, c = self.srv, self.cat
        sid = c.sale(stock=10)
        st = self.stream(sid)
        ev = st.next_event(2)
        self.check_event(ev, sid)
        st.close()
        st2 = self.stream(sid, headers={"Last-Event-ID": ev["id"]})
        self.assertEqual(st2.status, 200)
        self.assertIsNone(st2.next_event(timeout=0.7), "current id: wait for the next change")
        b = fg.register(s, "DE")
        self.assertStatus(fg.hold(s, b, sid, c.acc), 201)
        ev2 = st2.next_event(2)
        d = self.check_event(ev2, sid)
        self.assertGreater(int(ev2["id"]), int(ev["id"]))
        self.assertEqual(self.avail(d, c.acc, "DE"), 9)
        # an old id gets the current state at once
        st3 = self.stream(sid, headers={"Last-Event-ID": ev["id"]})
        ev3 = st3.next_event(2)
        self.assertIsNotNone(ev3, "an older Last-Event-ID should get the current state")
        self.assertEqual(ev3["id"], ev2["id"])

    def test_unknown_sale(self):
        st = self.stream(fg.uid("nosale"))
        self.assertEqual(st.status, 404)
        self.assertTrue(st.headers.get("content-type", "").startswith("application/problem+json"))
        self.assertIn(b"not_found", st.body())

    def test_sold_out_and_close_events(self):
        s, c = self.srv, self.cat
        sid = c.sale(items=[{"sku": c.acc, "stock": 1, "markets": ["DE"]}])
        st = self.stream(sid)
        self.check_event(st.next_event(2), sid)
        b = fg.register(s, "DE")
        self.assertStatus(fg.hold(s, b, sid, c.acc), 201)
        d = self.check_event(st.next_event(2), sid)
        self.assertEqual(d["state"], "sold_out")
        self.assertEqual(self.avail(d, c.acc, "DE"), 0)
        self.assertStatus(s.admin("POST", "/admin/v1/sales/%s/close" % sid), 200)
        d = self.check_event(st.next_event(2), sid)
        self.assertEqual(d["state"], "closed")


if __name__ == "__main__":
    fg.main()
