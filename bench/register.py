#!/usr/bin/env python3
"""Registers N buyers against a floodgate server and writes their tokens, one per line.

Usage: register.py HOST:PORT N MARKET OUT_FILE [THREADS]
Bounded: N at most 1,000,000; each request has a 10 s timeout.
"""
import http.client
import json
import sys
import threading


def worker(host, port, market, start, stop, out, errors):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    for i in range(start, stop):
        body = json.dumps({"email": f"buyer{i}@bench.example", "market": market})
        conn.request("POST", "/v1/buyers", body=body,
                     headers={"Idempotency-Key": f"reg-{i}", "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 201:
            errors.append((i, r.status, data[:200]))
            continue
        out[i] = json.loads(data)["token"]
    conn.close()


def main():
    hostport, n, market, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    if not 1 <= n <= 1_000_000:
        sys.exit("N must be 1..1000000")
    host, port = hostport.rsplit(":", 1)
    out = [None] * n
    errors = []
    step = (n + threads - 1) // threads
    ts = [threading.Thread(target=worker, args=(host, int(port), market, k, min(n, k + step), out, errors))
          for k in range(0, n, step)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        sys.exit(f"{len(errors)} registrations failed, first: {errors[0]}")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
