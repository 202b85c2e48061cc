#!/bin/sh
# Run every benchmark variant, each in its own process, and print the results
# as markdown (the machine, the results tables and a ratio table against the
# targets) ready to paste into bench/README.md. Run from anywhere; `make bench`
# builds build/ first and then runs this from the repo root.
#
#   BENCH_ONLY="a b"  run only these benchmarks, of: spawn sleep readfiles copy
#                     queue parallel (default all of them)
#   BUILD=dir         where core.so was built (default build)
#   BENCH_N=n         sleepers/fibers per run of spawn and sleep, items per
#                     run of queue (default 100000)
#   BENCH_REPS=r      repetitions per process, best is reported (default 5;
#                     spawn, sleep, readfiles and queue)
#   BENCH_FILES=n     files of 4 KiB for readfiles (default 10000)
#   BENCH_COPY_MB=m   size of the file copy copies, MiB (default 512)
#   BENCH_COPY_REPS=r copies per process, best is reported (default 3)
#   BENCH_PAR_MB=m    parallel: MiB of files to checksum (default 64)
#   BENCH_PAR_FILES=n parallel: files they are spread over (default 64)
#   BENCH_PAR_N=n     parallel: round trips and burst tasks (default 20000)
#   BENCH_TMPDIR=dir  where the input files go (default $TMPDIR or /tmp); the
#                     file system decides what copy_file_range does
#   BENCH_TIMEOUT=s   kill a variant after s seconds (default 600)
#   CC                C compiler for bench/readfiles.c (default gcc)
#   FIBERIO_BACKEND   passed through to the fiberio variants; when this build
#                     lacks that backend, its variants show as unavailable
#
# Raw output of each variant goes to bench/out/, and the C baseline is built
# there. The input files of readfiles and copy are made in a temporary
# directory that is removed at the end. Exits non-zero when a variant crashed,
# failed its own check or timed out; a missed target is reported in the table,
# not as a failure.
cd "$(dirname "$0")/.." || exit 1
LUA=${LUA:-lua5.4}
CC=${CC:-gcc}
BUILD=${BUILD:-build}
TIMEOUT=${BENCH_TIMEOUT:-600}
ONLY=${BENCH_ONLY:-spawn sleep readfiles copy queue parallel}
FILES=${BENCH_FILES:-10000}
COPY_MB=${BENCH_COPY_MB:-512}
export LUA_PATH="lua/?.lua;lua/?/init.lua;;"
export LUA_CPATH="$BUILD/?.so;;"

only=" "
for b in $ONLY; do
  case $b in
  spawn | sleep | readfiles | copy | queue | parallel) only="$only$b " ;;
  *) echo "bench: unknown benchmark '$b' in BENCH_ONLY (spawn sleep readfiles copy queue parallel)" >&2; exit 2 ;;
  esac
done
want() {
  case $only in *" $1 "*) return 0 ;; esac
  return 1
}

out=bench/out
mkdir -p "$out"
results="$out/results.txt"
: >"$results"
status=0

# run BENCH VARIANT COMMAND...: one variant in its own process; its RESULT
# line (or a FAILED line) goes to $results.
run() {
  b=$1 v=$2
  shift 2
  name="$b-$v"
  echo "bench: $b $v ..." >&2
  timeout "$TIMEOUT" "$@" >"$out/$name.out" 2>"$out/$name.err"
  rc=$?
  cat "$out/$name.err" >&2
  line=$(grep '^RESULT ' "$out/$name.out" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
    echo "$line" >>"$results"
  elif grep -q "fiberio: backend '.*' is not available" "$out/$name.err"; then
    # Not a failure of the benchmark: this build lacks the backend asked for.
    echo "bench: $b $v skipped: fiberio backend '$FIBERIO_BACKEND' unavailable" >&2
    echo "FAILED bench=$b variant=$v why=backend_${FIBERIO_BACKEND}_unavailable" >>"$results"
  else
    [ "$rc" -eq 124 ] && why="timed out after ${TIMEOUT}s" || why="exit $rc"
    fail "$b" "$v" "$why"
  fi
}

fail() {
  echo "bench: $1 $2 FAILED ($3); see $out/$1-$2.err" >&2
  echo "FAILED bench=$1 variant=$2 why=$(echo "$3" | tr ' ' '_')" >>"$results"
  status=1
}

for job in "spawn lua" "spawn fiberio" "sleep luv" "sleep cqueues" "sleep fiberio"; do
  set -- $job
  want "$1" && run "$1" "$2" "$LUA" "bench/$1.lua" "$2"
done

# The file benchmarks' input, in a temporary directory removed on exit.
data=
fstype=
if want readfiles || want copy || want parallel; then
  data=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/fiberio-bench.XXXXXX") || exit 1
  trap 'rm -rf "$data"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  fstype=$(df -T "$data" | awk 'NR == 2 { print $2 }')
fi

if want readfiles; then
  echo "bench: making $FILES files of 4 KiB in $data/tree ..." >&2
  mkdir "$data/tree" && "$LUA" bench/mkfiles.lua "$data/tree" "$FILES" 4096 || exit 1
  sync -f "$data/tree" # written back now, not during a timed pass
  echo "bench: building $out/readfiles ..." >&2
  if $CC -O2 -Wall -Wextra -o "$out/readfiles" bench/readfiles.c -luring 2>"$out/readfiles-C.err"; then
    run readfiles C "$out/readfiles" "$data/tree" "$FILES" "${BENCH_REPS:-5}" 4096
  else
    cat "$out/readfiles-C.err" >&2
    fail readfiles C "does not build"
  fi
  for v in io luv fiberio; do
    run readfiles "$v" "$LUA" bench/readfiles.lua "$v" "$data/tree" "$FILES"
  done
  rm -rf "$data/tree"
fi

if want copy; then
  echo "bench: making a $COPY_MB MiB file in $data ..." >&2
  dd if=/dev/urandom of="$data/src" bs=1M count="$COPY_MB" status=none || exit 1
  sync "$data/src"
  for v in cp copyfile io-loop fio-loop; do
    run copy "$v" "$LUA" bench/copy.lua "$v" "$data/src" "$data/dst"
  done
  rm -f "$data/src" "$data/dst"
fi

# queue: VARIANT [CAPACITY]; the result's variant is e.g. fiberio-cap1.
for job in "coroutine" "fiberio 1" "cqueues 1" "fiberio 64" "cqueues 64" "fiberio 0"; do
  set -- $job
  want queue && run queue "$1${2:+-cap$2}" "$LUA" bench/queue.lua "$@"
done

# parallel: a Lua checksum over BENCH_PAR_MB MiB in BENCH_PAR_FILES files with
# 1 worker and with one per CPU; empty tasks one at a time and in a burst.
if want parallel; then
  PAR_FILES=${BENCH_PAR_FILES:-64}
  PAR_MB=${BENCH_PAR_MB:-64}
  NCPU=$(nproc)
  TS=1 # worker counts: 1, and one per CPU where that is more
  [ "$NCPU" -gt 1 ] && TS="1 $NCPU"
  echo "bench: making $PAR_FILES files, $PAR_MB MiB in all, in $data/par ..." >&2
  mkdir "$data/par" && "$LUA" bench/mkfiles.lua "$data/par" "$PAR_FILES" $((PAR_MB * 1048576 / PAR_FILES)) || exit 1
  sync -f "$data/par"
  run parallel checksum-serial "$LUA" bench/parallel.lua checksum-serial "$data/par" "$PAR_FILES"
  for t in $TS; do
    run parallel "checksum-t$t" "$LUA" bench/parallel.lua checksum "$data/par" "$PAR_FILES" "$t"
  done
  run parallel "checksum-copy-t$NCPU" "$LUA" bench/parallel.lua checksum-copy "$data/par" "$PAR_FILES" "$NCPU"
  rm -rf "$data/par"
  run parallel roundtrip-fiberio "$LUA" bench/parallel.lua roundtrip-fiberio
  run parallel roundtrip-luv "$LUA" bench/parallel.lua roundtrip-luv
  for t in $TS; do
    run parallel "burst-t$t" "$LUA" bench/parallel.lua burst "$t"
  done
  run parallel burst-luv "$LUA" bench/parallel.lua burst-luv
fi

# The machine.
echo
machine="Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')),"
machine="$machine kernel $(uname -r), $("$LUA" -v 2>&1 | cut -d' ' -f1-2),"
machine="$machine luv $("$LUA" -e 'print(require"luv".version_string())' 2>/dev/null)"
if want sleep || want queue; then
  machine="$machine, cqueues $("$LUA" -e 'print(require"cqueues".VERSION)' 2>/dev/null)"
fi
if want readfiles; then
  machine="$machine, liburing $(pkg-config --modversion liburing 2>/dev/null || echo '?')"
fi
if want copy; then
  machine="$machine, $(cp --version | head -n 1)"
fi
[ -n "$fstype" ] && machine="$machine; files on $fstype"
echo "$machine, $(date -u +%Y-%m-%d)."
echo

awk -v files="$FILES" -v copy_mb="$COPY_MB" '
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
# target: "1.3" means <= 1.3x, "<1.0" means below 1.0x, "" none.
function row(b, v, p, f, what, target,   r, verdict, t, strict, shown) {
  if (!(b in seen)) return
  strict = substr(target, 1, 1) == "<"
  t = strict ? substr(target, 2) : target
  shown = target == "" ? "-" : (strict ? "< " t "x" : "<= " t "x")
  r = ratio(b, v, p, f)
  if (r == "") { printf("| %s | %s / %s | %s | n/a | %s | not measured (a variant failed or was unavailable) |\n", b, v, p, what, shown); return }
  r = sprintf("%.2f", r) + 0 # the verdict is on the ratio as shown
  if (target == "") verdict = "(no target)"
  else if (strict ? r < t + 0 : r <= t + 0) verdict = "met"
  else verdict = "**MISSED**"
  printf("| %s | %s / %s | %s | %.2fx | %s | %s |\n", b, v, p, what, r, shown, verdict)
}
function why(w) {
  gsub("_", " ", w)
  return (w ~ /unavailable$/ ? "" : "FAILED: ") w
}
function note_add(s) { note = note (note == "" ? "" : "; ") s }
{
  kv($0)
  key = F["bench"] "/" F["variant"]
  seen[F["bench"]] = 1
  if (F["bench"] == "spawn" || F["bench"] == "sleep") fib[++nfib] = key
  else if (F["bench"] == "queue") que[++nque] = key
  else if (F["bench"] == "parallel") par[++npar] = key
  else file[++nfile] = key
  if ($1 == "FAILED") { failed[key] = F["why"]; next }
  if (F["bench"] == "spawn" || F["bench"] == "sleep") { n = F["n"]; reps = F["reps"] }
  if (F["bench"] == "readfiles") rf_reps = F["reps"]
  if (F["bench"] == "copy") cp_reps = F["reps"]
  if (F["bench"] == "queue") { q_n = F["n"]; q_reps = F["reps"] }
  if (F["bench"] == "parallel") p_reps = F["reps"]
  for (f in F) V[key "/" f] = F[f]
}
END {
  if (nfib) {
    printf("N = %s per run, best of %s repetitions in one process per variant.\n\n", n, reps)
    print "| benchmark | variant | best ms | median ms | CPU ms (best rep) | Lua heap peak, MiB | peak RSS growth, MiB | notes |"
    print "|---|---|--:|--:|--:|--:|--:|---|"
    for (i = 1; i <= nfib; i++) {
      k = fib[i]; split(k, bv, "/")
      if (k in failed) { printf("| %s | %s | - | - | - | - | - | %s |\n", bv[1], bv[2], why(failed[k])); continue }
      note = ""
      if (V[k "/backend"] != "") note_add("backend " V[k "/backend"])
      if (V[k "/inflight"] != "") note_add("min. asleep at once " V[k "/inflight"])
      if (V[k "/fio_now_ratio"] != "") note_add("fio.now()/ref clock " V[k "/fio_now_ratio"])
      printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", bv[1], bv[2],
        V[k "/best_ms"], V[k "/median_ms"], V[k "/cpu_ms"], mib(V[k "/heap_kb"]), mib(V[k "/rss_kb"]), note)
    }
    print ""
  }
  if (nfile) {
    s = ""
    if ("readfiles" in seen) s = sprintf("readfiles: %s files of 4 KiB, best of %s passes after one warm-up pass", files, rf_reps == "" ? "?" : rf_reps)
    if ("copy" in seen) s = s (s == "" ? "" : "; ") sprintf("copy: a %s MiB file, best of %s copies after one warm-up copy", copy_mb, cp_reps == "" ? "?" : cp_reps)
    printf("%s; one process per variant.\n\n", s)
    print "| benchmark | variant | best ms | median ms | CPU ms (best rep) | rate (best) | peak RSS growth, MiB | notes |"
    print "|---|---|--:|--:|--:|--:|--:|---|"
    for (i = 1; i <= nfile; i++) {
      k = file[i]; split(k, bv, "/")
      if (k in failed) { printf("| %s | %s | - | - | - | - | - | %s |\n", bv[1], bv[2], why(failed[k])); continue }
      note = ""
      if (V[k "/backend"] != "") note_add("backend " V[k "/backend"])
      if (V[k "/threadpool"] != "") note_add("libuv threadpool " V[k "/threadpool"])
      if (V[k "/cmp"] != "") note_add("cmp " V[k "/cmp"])
      cpu = V[k "/cpu_ms"]; rss = mib(V[k "/rss_kb"])
      if (bv[2] == "cp") { cpu = "-"; rss = "-"; note_add("time includes starting sh and cp") }
      if (bv[1] == "readfiles") rate = sprintf("%.2f us/file", V[k "/best_ms"] * 1000 / V[k "/n"])
      else rate = sprintf("%.0f MiB/s", V[k "/n"] / (V[k "/best_ms"] / 1000))
      printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", bv[1], bv[2],
        V[k "/best_ms"], V[k "/median_ms"], cpu, rate, rss, note)
    }
    print ""
  }
  if (nque) {
    printf("queue: %s items from one fiber to another, best of %s repetitions in one process per variant.\n\n", q_n, q_reps)
    print "| benchmark | variant | best ms | median ms | CPU ms (best rep) | ns/item (best) | notes |"
    print "|---|---|--:|--:|--:|--:|---|"
    for (i = 1; i <= nque; i++) {
      k = que[i]; split(k, bv, "/")
      if (k in failed) { printf("| %s | %s | - | - | - | - | %s |\n", bv[1], bv[2], why(failed[k])); continue }
      note = ""
      if (V[k "/backend"] != "") note_add("backend " V[k "/backend"])
      printf("| %s | %s | %s | %s | %s | %.0f | %s |\n", bv[1], bv[2],
        V[k "/best_ms"], V[k "/median_ms"], V[k "/cpu_ms"], V[k "/best_ms"] * 1e6 / V[k "/n"], note)
    }
    print ""
  }
  if (npar) {
    printf("parallel: best of %s repetitions after one untimed pass, one process per variant; CPU/wall is the process CPU time (all threads) over the wall time of the best repetition.\n\n", p_reps)
    print "| benchmark | variant | workers | best ms | median ms | CPU ms (best rep) | CPU/wall | rate (best) | notes |"
    print "|---|---|--:|--:|--:|--:|--:|--:|---|"
    for (i = 1; i <= npar; i++) {
      k = par[i]; split(k, bv, "/")
      if (k in failed) { printf("| %s | %s | - | - | - | - | - | - | %s |\n", bv[1], bv[2], why(failed[k])); continue }
      note = ""
      if (V[k "/backend"] != "") note_add("backend " V[k "/backend"])
      if (V[k "/threadpool"] != "") note_add("libuv threadpool " V[k "/threadpool"])
      if (V[k "/cold_ms"] != "") note_add("first task " V[k "/cold_ms"] " ms")
      if (V[k "/others"] != "") note_add("others " V[k "/others"] " CPU")
      if (V[k "/sum"] != "") {
        note_add("checksum " V[k "/sum"] (psum == "" || psum == V[k "/sum"] ? "" : " **DIFFERS**"))
        if (psum == "") psum = V[k "/sum"]
      }
      workers = V[k "/threads"] != "" ? V[k "/threads"] : (bv[2] ~ /luv/ ? "pool" : (bv[2] ~ /serial/ ? "-" : "1"))
      if (V[k "/mib"] != "") rate = sprintf("%.0f MiB/s", V[k "/mib"] / (V[k "/best_ms"] / 1000))
      else rate = sprintf("%.1f us/task", V[k "/best_ms"] * 1000 / V[k "/n"])
      printf("| %s | %s | %s | %s | %s | %s | %.2f | %s | %s |\n", bv[1], bv[2], workers,
        V[k "/best_ms"], V[k "/median_ms"], V[k "/cpu_ms"], V[k "/cpu_ms"] / V[k "/best_ms"], rate, note)
      if (bv[2] ~ /^checksum-t[0-9]+$/ && V[k "/threads"] + 0 > ptmax) { ptmax = V[k "/threads"] + 0; pwide = bv[2] }
    }
    print ""
  }
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
  row("readfiles", "fiberio", "C", "best_ms", "best time", "1.3")
  row("readfiles", "fiberio", "io", "best_ms", "best time", "<1.0")
  row("readfiles", "io", "C", "best_ms", "best time", "")
  row("readfiles", "fiberio", "luv", "best_ms", "best time", "")
  row("copy", "copyfile", "cp", "best_ms", "best time", "1.0")
  row("copy", "fio-loop", "io-loop", "best_ms", "best time", "1.0")
  row("queue", "fiberio-cap1", "coroutine", "best_ms", "best time", "")
  row("queue", "fiberio-cap0", "coroutine", "best_ms", "best time", "")
  row("queue", "fiberio-cap1", "cqueues-cap1", "best_ms", "best time", "")
  row("queue", "fiberio-cap64", "cqueues-cap64", "best_ms", "best time", "")
  if (npar) {
    # speedup: the 1-worker time over the all-workers time; target >= 1.8x
    r = ratio("parallel", "checksum-t1", pwide, "best_ms")
    if (pwide == "" || pwide == "checksum-t1" || r == "") printf("| parallel | checksum-t1 / checksum-tN | speedup | n/a | >= 1.8x | not measured (one CPU, or a variant failed) |\n")
    else printf("| parallel | checksum-t1 / %s | speedup (best time) | %.2fx | >= 1.8x | %s |\n", pwide, r, sprintf("%.2f", r) + 0 >= 1.8 ? "met" : "**MISSED**")
    row("parallel", "checksum-t1", "checksum-serial", "best_ms", "best time", "")
    if (pwide != "") row("parallel", "checksum-copy-t" ptmax, pwide, "best_ms", "best time", "")
    row("parallel", "roundtrip-fiberio", "roundtrip-luv", "best_ms", "best time", "")
    if (pwide != "" && pwide != "checksum-t1") row("parallel", "burst-t" ptmax, "burst-t1", "best_ms", "best time", "")
    row("parallel", "burst-t1", "burst-luv", "best_ms", "best time", "")
  }
}
' "$results"

exit $status
