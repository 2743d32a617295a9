#!/usr/bin/env python3
"""What bench/compare reads from /proc about the servers it measures.

  proc.py cpu PID               CPU ticks (utime + stime) of PID, of the children it has reaped
                                (cutime + cstime: PostgreSQL's exited backends) and of its live
                                children (nginx workers, PostgreSQL's helpers and backends)
  proc.py mem PID               "rss_kib hwm_kib" from /proc/PID/status (VmRSS, VmHWM)
  proc.py sample PID OUT SECS   every 0.25 s until PID exits, OUT.stop appears or SECS pass:
                                writes "rss_max_kib fds_max rss_at_fds_max_kib" to OUT
Bounded: sample takes at most SECS seconds; the others read a few files.
"""
import os
import sys
import time

SAMPLE_S = 0.25


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def ticks(pid, with_reaped):
    f = stat_fields(pid)  # f[0] is field 3 (state): utime is field 14, so f[11]
    n = int(f[11]) + int(f[12])
    if with_reaped:
        n += int(f[13]) + int(f[14])
    return n


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if int(stat_fields(d)[1]) == pid:
                kids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile
    return kids


def cpu(pid):
    total = ticks(pid, True)
    for k in children(pid):
        try:
            total += ticks(k, True)
        except OSError:
            pass
    return total


def mem(pid):
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def sample(pid, out, secs):
    rss_max = fds_max = rss_at_fds = 0
    end = time.monotonic() + secs
    while time.monotonic() < end and not os.path.exists(out + ".stop"):
        try:
            rss, _ = mem(pid)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            break  # the server exited
        rss_max = max(rss_max, rss)
        if fds >= fds_max:
            fds_max, rss_at_fds = fds, rss
        time.sleep(SAMPLE_S)
    with open(out, "w") as f:
        f.write(f"{rss_max} {fds_max} {rss_at_fds}\n")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    what, pid = sys.argv[1], int(sys.argv[2])
    if what == "cpu":
        print(cpu(pid))
    elif what == "mem":
        print(*mem(pid))
    elif what == "sample" and len(sys.argv) == 5:
        sample(pid, sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
