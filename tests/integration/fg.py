"""fg.py — shared harness for floodgate's integration tests.

Python 3 standard library only. Starts the real binary on a free loopback port, speaks HTTP/1.1
to it with keep-alive, builds a demo-like catalog, signs payment webhooks.

Environment:
  FLOODGATE_BIN   the binary (default: build/floodgate relative to the repository root)
  FG_KEEP_DATA=1  keep the servers' temporary directories (their paths are printed on failure)

Every wait here is bounded in time; every loop is bounded in count.
"""

import atexit
import hashlib
import hmac
import http.client
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timedelta, timezone

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 15.0

# The demo-like markets every catalog helper relies on.
MARKETS = {
    "IN": ("India", "INR"),
    "DE": ("Germany", "EUR"),
    "FR": ("France", "EUR"),
    "US": ("United States", "USD"),
}


def binary_path():
    b = os.environ.get("FLOODGATE_BIN", "build/floodgate")
    if not os.path.isabs(b):
        b = os.path.join(REPO_ROOT, b)
    return b


# --------------------------------------------------------------------------------------------
# ids and times

_uid_counter = itertools.count(1)
_uid_prefix = "".join(random.choice(string.ascii_lowercase) for _ in range(4))


def uid(prefix="t"):
    """A unique, URL-safe id (also unique across processes in practice)."""
    return "%s-%s%d" % (prefix, _uid_prefix, next(_uid_counter))


def email(prefix="buyer"):
    return "%s@example.com" % uid(prefix)


def rfc3339(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        "%03dZ" % (dt.microsecond // 1000)


def now_utc():
    return datetime.now(timezone.utc)


def iso_in(seconds):
    """RFC 3339 UTC time `seconds` from now (negative: in the past)."""
    return rfc3339(now_utc() + timedelta(seconds=seconds))


def parse_time(s):
    """Parses an RFC 3339 string the server sent into an aware datetime."""
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    return datetime.fromisoformat(s)


# --------------------------------------------------------------------------------------------
# HTTP client


class NoKey:
    """Sentinel: send a POST without an Idempotency-Key."""


NOKEY = NoKey()


class Resp:
    """An HTTP answer. Unpacks as (status, headers, body)."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers  # dict, lower-case names (last value wins)
        self.raw = raw          # bytes
        ctype = headers.get("content-type", "")
        self.body = raw
        if "json" in ctype and "ndjson" not in ctype:
            try:
                self.body = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                self.body = raw.decode("utf-8", "replace")
        else:
            try:
                self.body = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.body = raw

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def __repr__(self):
        b = self.raw[:600]
        return "<Resp %d %s %r>" % (self.status, self.headers.get("content-type"), b)


class Client:
    """One keep-alive HTTP/1.1 connection to the server (not thread-safe: one per thread)."""

    def __init__(self, port, host="127.0.0.1", timeout=HTTP_TIMEOUT_S):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None
        self.reconnects = 0  # times a kept-alive connection was found closed by the server
        self.connects = 0    # connections opened

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.connects += 1

    def req(self, method, path, body=None, token=None, idem=None, headers=None):
        """Sends one request; returns a Resp (unpacks as status, headers, body).

        body: dict/list (sent as JSON), str or bytes (sent as is), or None.
        token: bearer token. idem: Idempotency-Key; None makes a fresh one for POST (except the
        webhook), NOKEY sends none.
        """
        hdrs = {}
        raw = None
        if body is not None:
            if isinstance(body, (dict, list)):
                raw = json.dumps(body).encode("utf-8")
            elif isinstance(body, str):
                raw = body.encode("utf-8")
            else:
                raw = body
            hdrs["Content-Type"] = "application/json"
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        if isinstance(idem, NoKey):
            pass
        elif idem is not None:
            hdrs["Idempotency-Key"] = idem
        elif method == "POST" and not path.startswith("/v1/payments/webhook"):
            hdrs["Idempotency-Key"] = "k-" + secrets.token_hex(12)
        if headers:
            hdrs.update(headers)
        if method in ("POST", "PUT", "PATCH") and raw is None:
            hdrs.setdefault("Content-Length", "0")
        # One retry on a fresh connection when a reused keep-alive connection turns out closed
        # before any answer came (standard client behaviour; safe: writes carry a key).
        for attempt in range(2):
            fresh = self.conn is None
            if fresh:
                self._connect()
            try:
                self.conn.request(method, path, body=raw, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                h = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    self.close()
                return Resp(r.status, h, data)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as e:
                self.close()
                if fresh or attempt == 1:
                    raise
                self.reconnects += 1
                continue
            except Exception:
                self.close()
                raise
        raise AssertionError("unreachable")


def raw_request(port, data, timeout=10.0, method="GET"):
    """Sends raw bytes on a fresh connection, ignoring send errors; returns a Resp, or None when
    the server closed the connection without an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = http.client.HTTPResponse(s, method=method)
            r.begin()
            body = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine,
                http.client.IncompleteRead, socket.timeout):
            return None
    finally:
        s.close()


# --------------------------------------------------------------------------------------------
# The server process


class Server:
    """The real binary on 127.0.0.1 with a free port and its own data directory."""

    all_servers = []

    def __init__(self, data_dir=None, admin_token=None, webhook_secret=None, extra_args=None,
                 quiet=True):
        self.quiet = quiet  # False: per-request log lines too
        self.own_dir = data_dir is None
        self.tmp = tempfile.mkdtemp(prefix="fg-it-")
        self.data = data_dir or os.path.join(self.tmp, "data")
        os.makedirs(self.data, exist_ok=True)
        self.admin_token = admin_token or "fga_" + secrets.token_hex(16)
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(16)
        self.extra_args = list(extra_args or [])
        self.proc = None
        self.port = None
        self.log_path = None
        self.starts = 0
        self._client = None
        Server.all_servers.append(self)

    # -- lifecycle
    def start(self):
        binary = binary_path()
        if not os.path.exists(binary):
            # a failure, not a skip: a missing build must not pass CI
            raise AssertionError("floodgate binary not found at %s (set FLOODGATE_BIN)" % binary)
        self.starts += 1
        port_file = os.path.join(self.tmp, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log_path = os.path.join(self.tmp, "server-%d.log" % self.starts)
        args = [binary, "serve", "--listen", "127.0.0.1:0", "--data", self.data,
                "--admin-token", self.admin_token, "--webhook-secret", self.webhook_secret,
                "--port-file", port_file] + (["--quiet"] if self.quiet else []) + self.extra_args
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     cwd=self.tmp)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        self.port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %s during start\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            if self.port is None and os.path.exists(port_file):
                try:
                    with open(port_file) as f:
                        txt = f.read().strip()
                    if txt:
                        self.port = int(txt.split(":")[-1])
                except ValueError:
                    self.port = None
            if self.port is not None:
                c = Client(self.port, timeout=2.0)
                try:
                    r = c.req("GET", "/readyz")
                    c.close()
                    if r.status == 200:
                        if self._client is not None:
                            self._client.close()
                            self._client = None
                        return self
                except OSError:
                    c.close()
            time.sleep(0.05)
        self.kill()
        raise AssertionError("server not ready within %.0f s (port %s)\n%s"
                             % (START_TIMEOUT_S, self.port, self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check_exit=True):
        """SIGTERM, wait up to 10 s; SIGKILL and fail past that. Returns the exit code."""
        if self._client:
            self._client.close()
            self._client = None
        if self.proc is None:
            return None
        p = self.proc
        if p.poll() is not None:
            rc = p.returncode
            self.proc = None
            if check_exit:
                raise AssertionError("server had already exited with %s\n%s"
                                     % (rc, self.log_tail()))
            return rc
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=STOP_TIMEOUT_S)
            self.proc = None
            raise AssertionError("server did not exit within %.0f s of SIGTERM\n%s"
                                 % (STOP_TIMEOUT_S, self.log_tail()))
        self.proc = None
        if check_exit and rc != 0:
            raise AssertionError("server exited with %s after SIGTERM\n%s" % (rc, self.log_tail()))
        return rc

    def kill(self):
        """kill -9."""
        if self._client:
            self._client.close()
            self._client = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        if self.proc is not None:
            self.kill()
        if os.environ.get("FG_KEEP_DATA") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, n=40):
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no server log)"
        with open(self.log_path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "--- server log %s (last %d lines) ---\n%s\n---" % (
            self.log_path, min(n, len(lines)), "\n".join(lines[-n:]))

    # -- requests
    def client(self):
        return Client(self.port)

    def req(self, method, path, body=None, token=None, idem=None, headers=None):
        if self._client is None:
            self._client = Client(self.port)
        return self._client.req(method, path, body=body, token=token, idem=idem, headers=headers)

    def admin(self, method, path, body=None, idem=None, headers=None):
        return self.req(method, path, body=body, token=self.admin_token, idem=idem,
                        headers=headers)

    # -- webhook
    def sign(self, raw_body, t=None, secret=None):
        return sign(secret or self.webhook_secret, raw_body, t)

    def webhook(self, order_id, status, t=None, secret=None, raw=None, signature=None):
        body = raw if raw is not None else json.dumps(
            {"order_id": order_id, "status": status}).encode()
        if isinstance(body, str):
            body = body.encode()
        sig = signature if signature is not None else self.sign(body, t=t, secret=secret)
        hdrs = {"Floodgate-Signature": sig} if sig else {}
        return self.req("POST", "/v1/payments/webhook", body=body, headers=hdrs)


def _kill_leftover_servers():
    """Last resort at interpreter exit: no server outlives the test process."""
    for s in Server.all_servers:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            try:
                s.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_leftover_servers)


def sign(secret, raw_body, t=None):
    if t is None:
        t = int(time.time())
    if isinstance(raw_body, str):
        raw_body = raw_body.encode()
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + raw_body, hashlib.sha256)
    return "t=%d,v1=%s" % (t, mac.hexdigest())


# --------------------------------------------------------------------------------------------
# Catalog, sales, buyers


class Catalog:
    """A demo-like catalog with unique ids: a phone with two SKUs (blocked in US, "not
    certified"), an accessory offered everywhere."""

    PHONE_PRICES = {"IN": 4999900, "DE": 99900, "FR": 99900}
    PHONE2_PRICES = {"IN": 5999900, "DE": 109900, "FR": 109900}
    ACC_PRICES = {"IN": 199900, "DE": 2999, "FR": 2999, "US": 2999}

    def __init__(self, srv):
        self.srv = srv
        self.phone = uid("nova")
        self.sku1 = self.phone + "-128-black"
        self.sku2 = self.phone + "-256-blue"
        self.acc_product = uid("case")
        self.acc = self.acc_product + "-clear"

    def price(self, sku, market):
        table = {self.sku1: self.PHONE_PRICES, self.sku2: self.PHONE2_PRICES,
                 self.acc: self.ACC_PRICES}[sku]
        return table[market]

    def create(self):
        s = self.srv
        ensure_markets(s)
        r = s.admin("PUT", "/admin/v1/products/" + self.phone, {
            "name": "Nova X " + self.phone,
            "specs": {"display": "6.5in", "battery_mah": 5000},
            "skus": [
                {"id": self.sku1, "name": "Nova X 128 GB Black",
                 "attributes": {"storage_gb": 128, "colour": "black"}},
                {"id": self.sku2, "name": "Nova X 256 GB Blue",
                 "attributes": {"storage_gb": 256, "colour": "blue"}},
            ]})
        expect(r, 201)
        r = s.admin("PUT", "/admin/v1/products/" + self.acc_product, {
            "name": "Clear case " + self.acc_product, "specs": {"material": "TPU"},
            "skus": [{"id": self.acc, "name": "Clear case", "attributes": {"fits": self.phone}}]})
        expect(r, 201)
        for sku, table in ((self.sku1, self.PHONE_PRICES), (self.sku2, self.PHONE2_PRICES),
                           (self.acc, self.ACC_PRICES)):
            for m, p in table.items():
                expect(s.admin("PUT", "/admin/v1/skus/%s/offers/%s" % (sku, m),
                               {"price_minor": p}), 200)
        for sku in (self.sku1, self.sku2):
            expect(s.admin("PUT", "/admin/v1/skus/%s/offers/US" % sku,
                           {"blocked": "not certified"}), 200)
        return self

    def sale_body(self, sale_id=None, opens_in=-60, closes_in=None, limit=2, ttl=120,
                  stock=100, items=None):
        body = {"id": sale_id or uid("sale"), "name": "Launch " + self.phone,
                "opens_at": iso_in(opens_in), "limit_per_buyer": limit, "hold_ttl_s": ttl,
                "items": items if items is not None else [
                    {"sku": self.sku1, "stock": stock, "markets": ["IN"]},
                    {"sku": self.sku1, "stock": stock, "markets": ["DE", "FR"]},
                    {"sku": self.sku2, "stock": stock, "markets": ["IN", "DE", "FR"]},
                    {"sku": self.acc, "stock": stock, "markets": ["IN", "DE", "FR", "US"]},
                ]}
        if closes_in is not None:
            body["closes_at"] = iso_in(closes_in)
        return body

    def sale(self, **kw):
        """Creates a sale (open by default: opens a minute ago); returns its id."""
        body = self.sale_body(**kw)
        r = self.srv.admin("POST", "/admin/v1/sales", body)
        expect(r, 201)
        return body["id"]


def ensure_markets(srv):
    for code, (name, cur) in MARKETS.items():
        r = srv.admin("PUT", "/admin/v1/markets/" + code, {"name": name, "currency": cur})
        if r.status not in (200, 201):
            raise AssertionError("PUT market %s: %r" % (code, r))


class Buyer:
    def __init__(self, id, token, market, email):
        self.id, self.token, self.market, self.email = id, token, market, email


def register(srv, market="DE", mail=None, client=None):
    mail = mail or email()
    c = client or srv
    r = c.req("POST", "/v1/buyers", {"email": mail, "market": market})
    expect(r, 201)
    return Buyer(r.body["id"], r.body["token"], market, mail)


SHIP = {
    "IN": {"name": "Asha Rao", "line1": "12 MG Road", "line2": "", "city": "Bengaluru",
           "postal_code": "560001", "country": "IN"},
    "DE": {"name": "Ana Silva", "line1": "Hauptstr. 1", "line2": "", "city": "Berlin",
           "postal_code": "10115", "country": "DE"},
    "FR": {"name": "Jean Dupont", "line1": "1 rue de Rivoli", "line2": "", "city": "Paris",
           "postal_code": "75001", "country": "FR"},
    "US": {"name": "Sam Lee", "line1": "1 Main St", "line2": "Apt 2", "city": "Austin",
           "postal_code": "73301", "country": "US"},
}


def order_body(market, method="instant"):
    return {"shipping": dict(SHIP[market]), "payment": {"method": method}}


def hold(srv, buyer, sale_id, sku, quantity=None, market=None, client=None, idem=None):
    body = {"sku": sku, "market": market or buyer.market}
    if quantity is not None:
        body["quantity"] = quantity
    c = client or srv
    return c.req("POST", "/v1/sales/%s/holds" % sale_id, body, token=buyer.token, idem=idem)


def order(srv, buyer, hold_id, market=None, method="instant", client=None, idem=None, body=None):
    c = client or srv
    return c.req("POST", "/v1/holds/%s/order" % hold_id,
                 body or order_body(market or buyer.market, method), token=buyer.token,
                 idem=idem)


def sale_get(srv, sale_id):
    r = srv.req("GET", "/v1/sales/" + sale_id)
    expect(r, 200)
    return r.body


def available(srv, sale_id, sku, market):
    """`available` of the item of `sku` that sells in `market`."""
    for it in sale_get(srv, sale_id)["items"]:
        if it["sku"] == sku and market in it["markets"]:
            return it["available"]
    raise AssertionError("no item of %s in %s in sale %s" % (sku, market, sale_id))


def stats(srv, sale_id):
    r = srv.admin("GET", "/admin/v1/sales/%s/stats" % sale_id)
    expect(r, 200)
    return r.body


# --------------------------------------------------------------------------------------------
# Assertions


def expect(r, status):
    if r.status != status:
        raise AssertionError("expected %d, got %r" % (status, r))
    return r


class TestCase(unittest.TestCase):
    """Base class: one server per class (setUpClass), the server log's tail on a failure."""

    server_args = None
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(extra_args=cls.server_args)
        # A class cleanup runs even when a subclass's setUpClass fails after this point
        # (tearDownClass would not), so no server is left behind.
        cls.addClassCleanup(cls._stop_class_server, cls.srv)
        cls.srv.start()

    @staticmethod
    def _stop_class_server(srv):
        try:
            if srv.proc is not None:
                srv.stop()
        finally:
            srv.cleanup()

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        n_servers = len(Server.all_servers)
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            # the tail of the log of this class's server and of any server this test started
            shown = [type(self).srv] + Server.all_servers[n_servers:]
            for s in shown:
                if s is not None and s.log_path and os.path.exists(s.log_path):
                    sys.stderr.write("\n[%s] %s\n" % (self.id(), s.log_tail()))
        return out

    # -- problem+json
    def assertProblem(self, r, status, code=None, field=None, msg=None):
        """An error answer: problem+json with type/title/status/detail/code, `status` equal to
        the HTTP status, the code given, and (for invalid_field) the field named in detail."""
        m = (msg + ": " if msg else "") + repr(r)
        self.assertEqual(r.status, status, m)
        ctype = r.headers.get("content-type", "")
        self.assertTrue(ctype.startswith("application/problem+json"),
                        "content-type %r: %s" % (ctype, m))
        self.assertIsInstance(r.body, dict, m)
        for k in ("type", "title", "status", "detail", "code"):
            self.assertIn(k, r.body, "problem field %s missing: %s" % (k, m))
        self.assertEqual(r.body["status"], status, m)
        self.assertIsInstance(r.body["type"], str, m)
        self.assertIsInstance(r.body["title"], str, m)
        self.assertIsInstance(r.body["detail"], str, m)
        if code is not None:
            self.assertEqual(r.body["code"], code, m)
        if field is not None:
            self.assertIn(field, r.body["detail"], "detail should name %r: %s" % (field, m))
        return r.body

    def assertStatus(self, r, status, msg=None):
        self.assertEqual(r.status, status, (msg + ": " if msg else "") + repr(r))
        if 200 <= status < 300 and r.raw:
            ctype = r.headers.get("content-type", "")
            if "json" in ctype:
                self.assertNotIsInstance(r.body, str, "invalid JSON body: %r" % r)
        return r.body


def main():
    unittest.main(verbosity=2)


# --------------------------------------------------------------------------------------------
# Server-Sent Events


class SSE:
    """Reads a text/event-stream over a raw socket (chunked or not); every read is bounded by a
    deadline and a timeout leaves the stream usable."""

    def __init__(self, port, path, headers=None, timeout=5.0):
        import select  # noqa: F401  (used in _fill)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1", "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.raw = b""     # bytes from the socket not yet decoded
        self.text = b""    # decoded body bytes not yet parsed into events
        self.eof = False
        self.comments = []
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            if not self._fill(deadline):
                raise AssertionError("no response head within %.1f s: %r" % (timeout, self.raw))
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        head_lines = head.decode("latin-1").split("\r\n")
        self.status = int(head_lines[0].split()[1])
        self.headers = {}
        for line in head_lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self.length = int(self.headers["content-length"]) if "content-length" in self.headers \
            else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline):
        import select
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        rd, _, _ = select.select([self.sock], [], [], left)
        if not rd:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.raw += data
        return True

    def _decode(self):
        if not self.chunked:
            self.text += self.raw
            self.raw = b""
            return
        while True:
            if b"\r\n" not in self.raw:
                return
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.eof = True
                self.raw = b""
                return
            if len(rest) < size + 2:
                return
            self.text += rest[:size]
            self.raw = rest[size + 2:]

    def body(self, timeout=5.0):
        """The whole body (for a non-stream answer such as a 404)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            self._decode()
            if self.eof or (self.length is not None and len(self.text) >= self.length):
                break
            if not self._fill(deadline):
                break
        self._decode()
        return self.text

    def next_event(self, timeout=2.0):
        """The next event as a dict {id, event, data (parsed JSON when it parses)}, or None when
        none is complete within `timeout` seconds (the stream stays usable)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):  # bounded
            self._decode()
            norm = self.text.replace(b"\r\n", b"\n")
            if b"\n\n" in norm:
                block, rest = norm.split(b"\n\n", 1)
                self.text = rest
                ev, data = {}, []
                for line in block.decode("utf-8").split("\n"):
                    if line.startswith(":"):
                        self.comments.append(line)
                        continue
                    field, _, value = line.partition(":")
                    if value.startswith(" "):
                        value = value[1:]
                    if field == "data":
                        data.append(value)
                    elif field:
                        ev[field] = value
                if not data and not ev:
                    continue  # a comment-only block
                txt = "\n".join(data)
                try:
                    ev["data"] = json.loads(txt)
                except ValueError:
                    ev["data"] = txt
                return ev
            self.text = norm
            if not self._fill(deadline):
                return None
        return None
