#!/usr/bin/env bash
# scripts/analyze.sh — gcc's static analyzer (-fanalyzer) over every C file of src/, with the
# flags the build gives it (read from compile_commands.json of a build directory of its own).
# Each file is analysed twice: at -O0, where the analyzer sees the code as written, and at -O2
# (the default build), where inlining joins small functions and longer paths show up. Prints
# every finding and exits 1 if there is any, or if a file does not compile; 0 when clean.
#
# Usage: scripts/analyze.sh [build-dir [src/file.c...]]
#   build-dir defaults to build-analyze; naming files analyses only those; ANALYZE_JOBS=n runs n
#   compilers at once (default 2).
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-analyze}
[ $# -gt 0 ] && shift
jobs=${ANALYZE_JOBS:-2}

# -fanalyzer exists since gcc 10, but each release finds different things; src/ is kept clean
# against gcc 12, so older ones are refused rather than trusted.
gcc_major=$(gcc -dumpversion | cut -d. -f1)
if [ "${gcc_major:-0}" -lt 12 ]; then
  echo "analyze: gcc 12 or later needed, found $(gcc -dumpversion)" >&2
  exit 2
fi
if [ ! -f "$dir/compile_commands.json" ]; then
  CC=gcc meson setup "$dir" >/dev/null || { echo "analyze: meson setup $dir failed" >&2; exit 2; }
else
  # Picks up source files added since the directory was set up.
  meson setup --reconfigure "$dir" >/dev/null || { echo "analyze: meson setup failed" >&2; exit 2; }
fi

python3 - "$dir" "$jobs" "$@" <<'EOF'
import concurrent.futures, json, os, re, shlex, subprocess, sys

build_dir, jobs, only = sys.argv[1], int(sys.argv[2]), {os.path.normpath(f) for f in sys.argv[3:]}
LEVELS = ['-O0', '-O2']
TIMEOUT_S = 300  # per file and level; the slowest takes a few seconds

def analysis_command(entry):
    """The build's command for one file, made to analyse: no object, no dependency file, no
    colour, findings as warnings (not -Werror, so one file reports all of its findings)."""
    args, out, skip = shlex.split(entry['command']), [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ('-o', '-MQ', '-MF'):
            skip = True
            continue
        if a in ('-MD', '-Werror') or a.startswith('-fdiagnostics-color') or re.match(r'-O.?$', a):
            continue
        out.append(a)
    out[0] = 'gcc'
    return out + ['-fanalyzer', '-fdiagnostics-color=never', '-o', '/dev/null']

entries, seen = [], set()
for e in json.load(open(os.path.join(build_dir, 'compile_commands.json'))):
    path = os.path.normpath(os.path.join(e['directory'], e['file']))
    rel = os.path.relpath(path)
    if not rel.startswith('src' + os.sep) or rel in seen or (only and rel not in only):
        continue  # a file built into two targets is analysed once
    seen.add(rel)
    entries.append((rel, e))
entries.sort()

def run(job):
    (rel, e), level = job
    cmd = analysis_command(e) + [level]
    try:
        r = subprocess.run(cmd, cwd=e['directory'], capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        return rel, level, r.returncode, r.stderr
    except subprocess.TimeoutExpired:
        return rel, level, -1, f'{rel}: analysis at {level} took over {TIMEOUT_S} s\n'

HEAD = re.compile(r'^(.+?):(\d+):\d+: (?:warning|error): (.*?)(?: \[(-W[^\]]+)\])?$')

def finding(line, cwd):
    """A diagnostic's first line as (key, text). The key is file, line and check: the two
    levels often word the same finding differently (a variable's name, a column)."""
    m = HEAD.match(line)
    if m is None:
        return None
    where = os.path.relpath(os.path.normpath(os.path.join(cwd, m.group(1))))
    check = m.group(4) or 'error'
    return (where, int(m.group(2)), check), f'{where}:{m.group(2)}: {m.group(3)} [{check}]'

if only - {rel for rel, _ in entries}:
    print(f'analyze: not C files of src/ in this build: {" ".join(sorted(only - set(seen)))}')
    sys.exit(2)
findings, failed = {}, []
with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    for rel, level, rc, err in pool.map(run, [(x, lv) for x in entries for lv in LEVELS]):
        found = [f for f in (finding(l, dict(entries)[rel]['directory']) for l in err.splitlines())
                 if f is not None]
        new = [key for key, _ in found if key not in findings]
        findings.update({key: text for key, text in found if key in new})
        if new:  # the full path of each finding, printed once even if both levels report it
            print(f'== {rel} at {level}\n{err}', end='' if err.endswith('\n') else '\n')
        if rc != 0:
            failed.append(f'{rel} at {level} (exit {rc})')
            if not new:
                print(f'== {rel} at {level}: compiler exit {rc}\n{err}')

version = subprocess.run(['gcc', '-dumpfullversion'], capture_output=True, text=True).stdout.strip()
print(f'analyze: gcc {version} -fanalyzer at {" and ".join(LEVELS)} over {len(entries)} files '
      f'of src/: {len(findings)} finding(s)' + (f', {len(failed)} failed run(s)' if failed else ''))
for key in sorted(findings):
    print(f'  {findings[key]}')
for f in failed:
    print(f'  failed: {f}')
sys.exit(1 if findings or failed else 0)
EOF
