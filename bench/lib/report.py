#!/usr/bin/env python3
"""Parsers and the final table of bench/compare.

  report.py wrk FILE              "requests seconds p99_ms non2xx" of a wrk run (p99 from
                                  bench/holds.lua's p99_ms= line when there, else --latency)
  report.py rbcsv FILE            "rps p99_ms" of a redis-benchmark --csv run
  report.py pgbench FILE LOG...   "tps seconds p99_ms" of a pgbench run (p99 from its -l logs)
  report.py crowd FILE            key=value figures from a floodgate-crowd summary and audit
  report.py bestconns RESULTS SYSTEM
                                  the concurrency of SYSTEM's fastest run
  report.py table RESULTS --json F --md F --machine M --command C --date D --load L
                                  picks each system's best run, computes the ratios, checks
                                  the targets (on the paired rounds' median ratio when there
                                  are rounds, else on the best runs), prints the table and
                                  writes it (Markdown) and every figure (JSON)
RESULTS has one run per line, key=value pairs, written by bench/compare.
"""
import json
import re
import sys

# ---------------------------------------------------------------- parsers


def wrk(path):
    text = open(path).read()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    if not m:
        sys.exit(f"report: no request count in {path}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m.group(3)]
    requests, seconds = int(m.group(1)), float(m.group(2)) * scale
    m = re.search(r"p99_ms=([\d.]+)", text)
    if m:
        p99 = float(m.group(1))
    else:
        m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)] if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    print(requests, f"{seconds:.3f}", f"{p99:.2f}", non2xx)


def rbcsv(path):
    lines = [l for l in open(path).read().splitlines() if l.startswith('"')]
    head = [h.strip('"') for h in lines[0].split('","')]
    row = [v.strip('"') for v in lines[-1].split('","')]
    d = dict(zip(head, row))
    print(f"{float(d['rps']):.0f}", f"{float(d.get('p99_latency_ms', 0)):.2f}")


def pgbench(path, logs):
    text = open(path).read()
    tps = float(re.search(r"tps = ([\d.]+)", text).group(1))
    secs = float(re.search(r"duration: (\d+) s", text).group(1))
    lat = []
    for log in logs:
        for line in open(log):
            f = line.split()
            if len(f) >= 3:
                lat.append(int(f[2]))  # the transaction's latency in microseconds
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000 if lat else 0
    print(f"{tps:.1f}", secs, f"{p99:.2f}")


def num(s):
    return float(s.replace(",", ""))


def crowd(path):
    text = open(path).read()
    out = {}
    pats = {
        "register_s": r"register\s+[\d,]+ buyers in ([\d.]+) s",
        "register_per_s": r"register\s+[\d,]+ buyers in [\d.]+ s \(([\d,]+)/s\)",
        "sale_phase_s": r"sale phase\s+([\d.]+) s",
        "sellout_s": r"sell-out\s+([\d.]+) s after the opening",
        "holds_per_s": r"holds\s+[\d,]+ placed \([\d,]+ units\): ([\d,]+) holds/s",
        "orders_paid": r"orders\s+([\d,]+) paid",
        "errors": r"errors\s+([\d,]+) \(no answer",
        "timeouts": r"connections\s+[\d,]+ opened, [\d,]+ connects failed, ([\d,]+) timeouts",
    }
    for k, p in pats.items():
        m = re.search(p, text)
        if m:
            out[k] = num(m.group(1))
    for step in ("hold", "order"):
        m = re.search(rf"^\s+{step}\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
        if m:
            out[f"{step}_p50_ms"], out[f"{step}_p99_ms"] = num(m.group(2)), num(m.group(4))
    out["audit"] = "ok" if re.search(r"^audit: ok$", text, re.M) else "failed"
    print(" ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))


# ---------------------------------------------------------------- the table


def load(path):
    runs = []
    for line in open(path):
        d = {}
        for kv in line.split():
            k, _, v = kv.partition("=")
            try:
                d[k] = float(v) if "." in v or "e" in v else int(v)
            except ValueError:
                d[k] = v
        if d:
            runs.append(d)
    return runs


def rate_of(r):
    return r.get("holds_per_s", r.get("per_s", 0))


def best(runs, system):
    mine = [r for r in runs if r.get("system") == system]
    return max(mine, key=rate_of) if mine else None


def fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return rate_of(a) / rate_of(b) if a and b and rate_of(b) > 0 else None


def paired(runs, a, b):
    """Per-round ratios a/b of the paired rounds (systems a and b measured in the same round)."""
    by_round = {}
    for r in runs:
        if r.get("system") in (a, b) and "round" in r:
            by_round.setdefault(r["round"], {})[r["system"]] = r
    out = []
    for i in sorted(by_round):
        x = by_round[i]
        q = ratio(x.get(a), x.get(b))
        if q is not None:
            out.append((i, q))
    return out


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def tried(runs, system):
    def one(r):
        shed = f" (+{fmt(r['http_503'])} 503)" if r.get("http_503") else ""
        return f"{r['conns']}: {fmt(rate_of(r))}{shed}"
    return ", ".join(one(r) for r in runs if r.get("system") == system)


def table(argv):
    args = dict(zip(argv[1::2], argv[2::2]))
    runs = load(argv[0])
    b = {s: best(runs, s) for s in ("floodgate_http", "inproc_engine", "inproc_api", "redis",
                                    "postgres", "floodgate_soldout", "nginx")}
    crowd_r = next((r for r in runs if r.get("system") == "crowd"), None)
    c10k = next((r for r in runs if r.get("system") == "crowd10k"), None)
    cbuy = next((r for r in runs if r.get("system") == "crowdbuyers"), None)
    fg = b["floodgate_http"]
    targets = []

    def target(name, value, op, limit, unit=""):
        if value is None:
            targets.append({"target": name, "value": None, "met": None})
            return "not measured"
        met = value >= limit if op == ">=" else value < limit
        targets.append({"target": name, "value": round(value, 3), "limit": limit, "op": op,
                        "met": met})
        return f"{value:.2f}{unit} ({op} {limit:g}{unit}: {'met' if met else 'MISSED'})"

    rows = []

    def row(what, r, note=""):
        if r is None:
            rows.append(f"| {what} | — | not run | | | | {note} |")
            return
        cpu = r.get("cpu_us_per_op", r.get("cpu_us_per_hold"))
        rows.append(f"| {what} | {r['conns']} | {fmt(rate_of(r))} | {fmt(r.get('p99_ms'), 2)} "
                    f"| {fmt(cpu, 1)} | {tried(runs, r['system'])} | {note} |")

    md = [f"**{args.get('--date', '')}** — {args.get('--machine', '')}", "",
          f"Command: `{args.get('--command', 'bench/compare')}`; load average (1, 5, 15 min): "
          f"{args.get('--load', 'not recorded')}", "",
          "| durable reserve, end to end | best conc. | per s | p99 ms | server CPU µs/op "
          "| tried (conc.: per s) | ratio |",
          "|---|---|---|---|---|---|---|"]
    rows.clear()
    row("floodgate hold, HTTP (wrk)", fg, "1.00")
    row("floodgate writer+engine+ledger, in process", b["inproc_engine"],
        f"HTTP / this: {fmt(ratio(fg, b['inproc_engine']), 2)}")
    row("floodgate API+writer+engine+ledger, in process", b["inproc_api"],
        f"HTTP / this: {fmt(ratio(fg, b['inproc_api']), 2)}")
    pr = {"redis": paired(runs, "floodgate_round", "redis_round"),
          "postgres": paired(runs, "floodgate_round", "postgres_round")}

    def verdict(peer, name, limit):
        """The target on the paired rounds' median when there are rounds, else on the best runs."""
        if pr[peer]:
            med = median([q for _, q in pr[peer]])
            return "median of rounds " + target(name, med, ">=", limit, "×")
        return "best / best " + target(name, ratio(fg, b[peer]), ">=", limit, "×")

    row("Redis 7 Lua script, appendfsync always", b["redis"],
        f"best / best {fmt(ratio(fg, b['redis']), 2)}; " +
        verdict("redis", "floodgate / Redis+Lua", 1.2))
    row("PostgreSQL 15 hot row, synchronous_commit on", b["postgres"],
        f"best / best {fmt(ratio(fg, b['postgres']), 1)}; " +
        verdict("postgres", "floodgate / PostgreSQL hot row", 20))
    md += rows
    rounds = sorted({r["round"] for r in runs if "round" in r})
    if rounds:
        md += ["", "Paired rounds: each system restarted empty, at its best concurrency, one after the other "
               "(order reversed every other round), the same duration:", "",
               "| round | floodgate holds/s | Redis orders/s | PostgreSQL orders/s "
               "| floodgate / Redis | floodgate / PostgreSQL |", "|---|---|---|---|---|---|"]
        for i in rounds:
            x = {r["system"]: r for r in runs if r.get("round") == i}
            f, rd, pg = x.get("floodgate_round"), x.get("redis_round"), x.get("postgres_round")
            md.append(f"| {i} | {fmt(rate_of(f)) if f else '—'} | {fmt(rate_of(rd)) if rd else '—'} "
                      f"| {fmt(rate_of(pg)) if pg else '—'} | {fmt(ratio(f, rd), 2)} "
                      f"| {fmt(ratio(f, pg), 1)} |")
        med_r = median([q for _, q in pr["redis"]])
        med_p = median([q for _, q in pr["postgres"]])
        md.append(f"| median | | | | {fmt(med_r, 2)} | {fmt(med_p, 1)} |")
    md += ["", "| over HTTP, same wrk | best conc. | per s | p99 ms | server CPU µs/op "
           "| tried (conc.: per s) | ratio to nginx |", "|---|---|---|---|---|---|---|"]
    rows.clear()
    row("floodgate durable hold (201)", fg, fmt(ratio(fg, b["nginx"]), 2))
    row("floodgate sold-out refusal (409 sold_out)", b["floodgate_soldout"],
        target("sold-out / nginx", ratio(b["floodgate_soldout"], b["nginx"]), ">=", 0.8, "×"))
    row("nginx static 200", b["nginx"], "1.00")
    md += rows
    md += ["", "| scale, floodgate-crowd | figure |", "|---|---|"]
    if crowd_r:
        c = crowd_r
        md += [f"| sale | {c['buyers']:,} buyers for {c['stock']:,} units, {c['conns']:,} "
               f"connections, closed loop |",
               f"| registration | {fmt(c.get('register_s'), 2)} s ({fmt(c.get('register_per_s'))}/s) |",
               "| time to sell out (first sold_out) | " +
               target("sell-out time, s", c.get("sellout_s"), "<", 10, " s") + " |",
               f"| sale phase (every buyer answered) | {fmt(c.get('sale_phase_s'), 2)} s |",
               f"| holds/s to the sell-out | {fmt(c.get('holds_per_s'))} |",
               f"| hold p50 / p99 | {fmt(c.get('hold_p50_ms'), 1)} / {fmt(c.get('hold_p99_ms'), 1)} ms |",
               f"| errors, timeouts | {c.get('errors', '—')}, {c.get('timeouts', '—')} |",
               f"| audit | {c.get('audit')} (crowd exit {c.get('crowd_exit')}) |",
               f"| server peak RSS (VmHWM) | {c['hwm_kib'] / 1024:,.0f} MiB |"]
        targets.append({"target": "crowd audit ok", "value": c.get("audit"),
                        "met": c.get("audit") == "ok"})
    if c10k:
        c = c10k
        md += [f"| server RSS with {c['fds_max']:,} fds open ({c['conns']:,}-connection crowd, "
               f"{c['buyers']:,} buyers) | {c['rss_at_fds_max_kib'] / 1024:,.0f} MiB "
               f"(idle before: {c['rss_idle_kib'] / 1024:,.0f} MiB; peak {c['hwm_kib'] / 1024:,.0f} MiB;"
               f" audit {c.get('audit')}) |"]
    if cbuy:
        c = cbuy
        md += [f"| server peak RSS (VmHWM) with {c['buyers']:,} registered buyers ({c['stock']:,} "
               f"units, {c['conns']:,} connections, audit {c.get('audit')}) | " +
               target("server RSS, registered buyers, MiB", c["hwm_kib"] / 1024, "<", 100, " MiB") +
               f" (idle before: {c['rss_idle_kib'] / 1024:,.0f} MiB) |"]
        targets.append({"target": "buyers-only crowd audit ok", "value": c.get("audit"),
                        "met": c.get("audit") == "ok"})
    text = "\n".join(md) + "\n"
    print(text)
    for t in targets:
        state = "not measured" if t["met"] is None else ("met" if t["met"] else "MISSED")
        print(f"target {t['target']}: {t['value']} — {state}")
    if "--md" in args:
        open(args["--md"], "w").write(text)
    if "--json" in args:
        doc = {"date": args.get("--date"), "machine": args.get("--machine"),
               "load_average": args.get("--load"),
               "command": args.get("--command"), "runs": runs,
               "best": {k: v for k, v in b.items() if v},
               "paired_rounds": {"floodgate_over_redis": pr["redis"],
                                 "floodgate_over_postgres": pr["postgres"]},
               "ratios": {"floodgate_http_over_redis": ratio(fg, b["redis"]),
                          "floodgate_http_over_postgres": ratio(fg, b["postgres"]),
                          "floodgate_http_over_inproc_engine": ratio(fg, b["inproc_engine"]),
                          "floodgate_http_over_inproc_api": ratio(fg, b["inproc_api"]),
                          "soldout_over_nginx": ratio(b["floodgate_soldout"], b["nginx"]),
                          "hold_over_nginx": ratio(fg, b["nginx"])},
               "targets": targets}
        json.dump(doc, open(args["--json"], "w"), indent=1)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "wrk":
        wrk(rest[0])
    elif cmd == "rbcsv":
        rbcsv(rest[0])
    elif cmd == "pgbench":
        pgbench(rest[0], rest[1:])
    elif cmd == "crowd":
        crowd(rest[0])
    elif cmd == "bestconns":
        r = best(load(rest[0]), rest[1])
        print(r["conns"] if r else "")
    elif cmd == "table":
        table(rest)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
