#!/usr/bin/env bash
# A py-spy flame graph of one hornbeam worker under wrk load, so every optimisation starts
# from a measurement.
#
#   bench/profile.sh [APP_SPEC] [DURATION] [extra hornbeam flags...]
#   bench/profile.sh wsgi_apps:hello 10 --threads 0
#
# Writes bench/results/profile-<time>.svg (flame graph; --gil: only samples holding the GIL,
# i.e. where Python CPU goes) and a .txt of the hottest lines. Loopback only; every process
# it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
app=${1:-wsgi_apps:hello}
duration=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v py-spy >/dev/null || python -m pip install --quiet py-spy
stamp=$(date +%Y%m%d-%H%M%S)
out="bench/results/profile-$stamp"
log=$(mktemp)
python -m hornbeam "$app" --pythonpath bench/apps -w 1 -b 127.0.0.1:0 "$@" >"$log" 2>&1 &
arbiter=$!
cleanup() { kill -INT "$arbiter" 2>/dev/null || true; wait "$arbiter" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
port=""
for _ in $(seq 1 200); do
  port=$(grep -o 'Listening at: http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  worker=$(cat "/proc/$arbiter/task/$arbiter/children" 2>/dev/null | awk '{print $1}')
  [ -n "$port" ] && [ -n "$worker" ] && grep -q "Booting worker" "$log" && break
  sleep 0.05
done
[ -n "$port" ] || { cat "$log" >&2; exit 1; }
wrk -t1 -c50 -d"$((duration + 2))" "http://127.0.0.1:$port/" >"$out.wrk.txt" &
load=$!
sleep 1
py-spy record --gil -p "$worker" -d "$duration" -r 500 -o "$out.svg" >/dev/null 2>&1
py-spy record --gil -p "$worker" -d 2 -r 500 -f raw -o "$out.raw" >/dev/null 2>&1
wait "$load"
python - "$out.raw" >"$out.txt" <<'PY'
import collections, sys
counts, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    if stack:
        counts[stack.split(";")[-1]] += int(n)
        total += int(n)
for frame, n in counts.most_common(30):
    print(f"{100 * n / total:5.1f}%  {frame}")
PY
rm -f "$out.raw"
grep "Requests/sec" "$out.wrk.txt"
echo "flame graph: $out.svg   hottest lines: $out.txt"
