#!/bin/sh
# Run every benchmark variant, each in its own process, and print the results
# as markdown (the machine, a results table and a ratio table against the
# targets) ready to paste into bench/README.md. Run from anywhere; `make bench`
# builds build/ first and then runs this from the repo root.
#
#   BUILD=dir         where core.so was built (default build)
#   BENCH_N=n         sleepers/fibers per run (default 100000)
#   BENCH_REPS=r      repetitions per process, best is reported (default 5)
#   BENCH_TIMEOUT=s   kill a variant after s seconds (default 600)
#   FIBERIO_BACKEND   passed through to the fiberio variants
#
# Raw output of each variant goes to bench/out/. Exits non-zero when a variant
# crashed, failed its own check or timed out; a missed target is reported in
# the table, not as a failure.
cd "$(dirname "$0")/.." || exit 1
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build}
TIMEOUT=${BENCH_TIMEOUT:-600}
export LUA_PATH="lua/?.lua;lua/?/init.lua;;"
export LUA_CPATH="$BUILD/?.so;;"

out=bench/out
mkdir -p "$out"
results="$out/results.txt"
: >"$results"
status=0

for job in "spawn lua" "spawn fiberio" "sleep luv" "sleep cqueues" "sleep fiberio"; do
  set -- $job
  name="$1-$2"
  echo "bench: $1 $2 ..." >&2
  timeout "$TIMEOUT" "$LUA" "bench/$1.lua" "$2" >"$out/$name.out" 2>"$out/$name.err"
  rc=$?
  cat "$out/$name.err" >&2
  line=$(grep '^RESULT ' "$out/$name.out" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
    echo "$line" >>"$results"
  else
    [ "$rc" -eq 124 ] && why="timed out after ${TIMEOUT}s" || why="exit $rc"
    echo "bench: $1 $2 FAILED ($why); see $out/$name.err" >&2
    echo "FAILED bench=$1 variant=$2 why=$(echo "$why" | tr ' ' '_')" >>"$results"
    status=1
  fi
done

# The machine.
echo
echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'))," \
  "kernel $(uname -r), $("$LUA" -v 2>&1 | cut -d' ' -f1-2)," \
  "luv $("$LUA" -e 'print(require"luv".version_string())' 2>/dev/null)," \
  "cqueues $("$LUA" -e 'print(require"cqueues".VERSION)' 2>/dev/null)," \
  "$(date -u +%Y-%m-%d)."
echo

awk '
function kv(line,   i, n, a, p) {
  delete F
  n = split(line, a, " ")
  for (i = 2; i <= n; i++) {
    p = index(a[i], "=")
    if (p) F[substr(a[i], 1, p - 1)] = substr(a[i], p + 1)
  }
}
function mib(kb) { return sprintf("%.1f", kb / 1024) }
function ratio(b, v, p, f,   x, y) {
  x = V[b "/" v "/" f]; y = V[b "/" p "/" f]
  if (x == "" || y == "" || y + 0 == 0) return ""
  return x / y
}
function row(b, v, p, f, what, target,   r, verdict) {
  r = ratio(b, v, p, f)
  if (r == "") { printf("| %s | %s / %s | %s | n/a | %s | not measured (a variant failed) |\n", b, v, p, what, target == "" ? "-" : "<= " target "x"); return }
  if (target == "") verdict = "(no target)"
  else if (r <= target + 0) verdict = "met"
  else verdict = "**MISSED**"
  printf("| %s | %s / %s | %s | %.2fx | %s | %s |\n", b, v, p, what, r, target == "" ? "-" : "<= " target "x", verdict)
}
{
  kv($0)
  key = F["bench"] "/" F["variant"]
  order[++nrows] = key
  if ($1 == "FAILED") { failed[key] = F["why"]; next }
  n = F["n"]; reps = F["reps"]
  for (f in F) V[key "/" f] = F[f]
}
END {
  printf("N = %s per run, best of %s repetitions in one process per variant.\n\n", n, reps)
  print "| benchmark | variant | best ms | median ms | CPU ms (best rep) | Lua heap peak, MiB | peak RSS growth, MiB | notes |"
  print "|---|---|--:|--:|--:|--:|--:|---|"
  for (i = 1; i <= nrows; i++) {
    k = order[i]; split(k, bv, "/")
    if (k in failed) { printf("| %s | %s | - | - | - | - | - | FAILED: %s |\n", bv[1], bv[2], failed[k]); continue }
    note = ""
    if (V[k "/backend"] != "") note = "backend " V[k "/backend"]
    if (V[k "/inflight"] != "") note = note (note == "" ? "" : "; ") "min. asleep at once " V[k "/inflight"]
    if (V[k "/fio_now_ratio"] != "") note = note (note == "" ? "" : "; ") "fio.now()/ref clock " V[k "/fio_now_ratio"]
    printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", bv[1], bv[2],
      V[k "/best_ms"], V[k "/median_ms"], V[k "/cpu_ms"], mib(V[k "/heap_kb"]), mib(V[k "/rss_kb"]), note)
  }
  print ""
  print "| benchmark | ratio | measure | value | target | verdict |"
  print "|---|---|---|--:|---|---|"
  row("spawn", "fiberio", "lua", "best_ms", "best time", "1.5")
  row("spawn", "fiberio", "lua", "heap_kb", "Lua heap peak", "1.3")
  row("spawn", "fiberio", "lua", "rss_kb", "peak RSS growth", "1.3")
  row("sleep", "fiberio", "cqueues", "best_ms", "best time", "0.5")
  row("sleep", "fiberio", "luv", "best_ms", "best time", "")
  row("sleep", "fiberio", "cqueues", "heap_kb", "Lua heap peak", "1.0")
  row("sleep", "fiberio", "luv", "heap_kb", "Lua heap peak", "1.0")
  row("sleep", "fiberio", "cqueues", "rss_kb", "peak RSS growth", "1.0")
  row("sleep", "fiberio", "luv", "rss_kb", "peak RSS growth", "1.0")
}
' "$results"

exit $status
