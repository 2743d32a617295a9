#!/usr/bin/env python3
"""Runs one floodgate libFuzzer target as a test: replay, then a bounded fuzzing run.

1. Replays every file of the committed corpus once (a regression test of old findings).
2. Fuzzes for FG_FUZZ_SECONDS seconds (default 10; 0 skips this step), reading the committed
   corpus and writing new inputs only into a scratch corpus, never into the committed one.

Fails on any crash, leak, sanitizer report or timeout. What the run leaves is copied to --out
(in the build directory): the filtered log, the grown corpus, and any crashing input, with the
command that reproduces it. Scratch files live under /dev/shm when it exists (the targets open
SQLite ledgers there, where a sync costs nothing) and are removed on every path.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

DEFAULT_SECONDS = 10
MARGIN_S = 120          # beyond the fuzzing time: start-up, replay, the last input, final stats
INPUT_TIMEOUT_S = 10    # one input taking longer is a finding (libFuzzer's -timeout)
RSS_LIMIT_MB = 2048
TAIL_LINES = 60         # of the log, printed when the run fails
# The engine logs a line per ledger restore; the targets restore thousands of times.
NOISE = re.compile(rb'^ts=\S+ level=info ')


def fuzz_seconds():
    text = os.environ.get('FG_FUZZ_SECONDS', str(DEFAULT_SECONDS))
    try:
        seconds = int(text)
    except ValueError:
        sys.exit(f'FG_FUZZ_SECONDS={text!r}: want a whole number of seconds')
    if seconds < 0:
        sys.exit('FG_FUZZ_SECONDS must not be negative')
    return seconds


def scratch_root():
    shm = '/dev/shm'
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def run(cmd, env, log_path, deadline_s):
    """Runs cmd in its own process group, its output filtered into log_path; returns its exit
    code, or None when it passed the deadline (then it is killed)."""
    with open(log_path, 'ab') as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def pump():
            for line in proc.stdout:
                if not NOISE.match(line):
                    log.write(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        reader.join(timeout=10)
        return rc


def tail(path, n):
    with open(path, 'rb') as f:
        lines = f.read().decode('utf-8', 'replace').splitlines()
    return '\n'.join(lines[-n:])


def final_stats(log_path):
    stats = {}
    with open(log_path, 'rb') as f:
        for line in f:
            m = re.match(rb'stat::(\w+):\s+(\d+)', line)
            if m:
                stats[m.group(1).decode()] = int(m.group(2))
    return stats


def keep(src, dst):
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--target', required=True)
    ap.add_argument('--corpus', required=True, help='the committed seed corpus (read only)')
    ap.add_argument('--dict')
    ap.add_argument('--max-len', default='4096')
    ap.add_argument('--out', required=True, help='where logs and findings are kept')
    args = ap.parse_args()
    name = os.path.basename(args.target)
    seconds = fuzz_seconds()
    seeds = sorted(os.path.join(args.corpus, f) for f in os.listdir(args.corpus))
    if not seeds:
        sys.exit(f'{name}: the corpus {args.corpus} is empty')

    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, 'log.txt')
    open(log_path, 'wb').close()
    scratch = tempfile.mkdtemp(prefix=f'{name}-', dir=scratch_root())
    try:
        corpus = os.path.join(scratch, 'corpus')
        crashes = os.path.join(scratch, 'crashes') + '/'
        tmp = os.path.join(scratch, 'tmp')
        for d in (corpus, crashes, tmp):
            os.makedirs(d)
        env = dict(os.environ, TMPDIR=tmp,
                   ASAN_OPTIONS='detect_leaks=1:abort_on_error=0:symbolize=1',
                   UBSAN_OPTIONS='halt_on_error=1:print_stacktrace=1')
        common = [f'-artifact_prefix={crashes}', f'-timeout={INPUT_TIMEOUT_S}',
                  f'-rss_limit_mb={RSS_LIMIT_MB}']
        if args.dict:
            common.append(f'-dict={args.dict}')

        t0 = time.monotonic()
        print(f'{name}: replaying {len(seeds)} committed inputs', flush=True)
        rc = run([args.target] + common + seeds, env, log_path, MARGIN_S)
        failed = rc != 0
        stats = {}
        if not failed and seconds > 0:
            print(f'{name}: fuzzing for {seconds} s', flush=True)
            rc = run([args.target] + common +
                     [f'-max_total_time={seconds}', f'-max_len={args.max_len}',
                      '-print_final_stats=1', corpus, args.corpus],
                     env, log_path, seconds + MARGIN_S)
            failed = rc != 0
            stats = final_stats(log_path)
            keep(corpus, os.path.join(args.out, 'corpus'))

        found = sorted(os.listdir(crashes))
        for f in found:
            shutil.copy(os.path.join(crashes, f), args.out)
        took = time.monotonic() - t0
        if not failed:
            print(f'{name}: ok in {took:.0f} s: {len(seeds)} replayed, '
                  f'{stats.get("number_of_executed_units", 0)} runs fuzzing, '
                  f'{len(os.listdir(corpus))} inputs in the scratch corpus, '
                  f'peak RSS {stats.get("peak_rss_mb", 0)} MB')
            return 0
        why = 'timed out' if rc is None else f'exit code {rc}'
        print(f'{name}: FAILED ({why}) after {took:.0f} s; last lines of {log_path}:')
        print(tail(log_path, TAIL_LINES))
        for f in found:
            print(f'{name}: finding kept: {os.path.join(args.out, f)}\n'
                  f'  reproduce: {args.target} {os.path.join(args.out, f)}')
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
