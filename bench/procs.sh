#!/bin/sh
# Subprocesses (issue 16), whole process, alternated, PROCS_ROUNDS rounds,
# medians: spawn and wait of PROCS_N /bin/true PROCS_P at a time (fiberio,
# luv, xargs -P -n 1), and PROCS_MIB MiB through cat and back (fiberio)
# against the shell pipeline `head -c ... /dev/zero | cat | cat >/dev/null`
# (the same two pipe hops through cat).
#
#   sh bench/procs.sh        (make all first; BUILD=dir, FIBERIO_BACKEND=threads)
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${PROCS_ROUNDS:-5}
N=${PROCS_N:-2000}
P=${PROCS_P:-20}
MIB=${PROCS_MIB:-1024}
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/$BUILD/?.so;;"
out=bench/out/procs
mkdir -p "$out"
: >"$out/runs"
run() {
  name=$1; shift
  /usr/bin/time -f "%e" -o "$out/time" "$@" >/dev/null 2>"$out/err" || {
    echo "procs: $name failed:" >&2; cat "$out/err" >&2; exit 1; }
  echo "$name $(cat "$out/time")" | tee -a "$out/runs"
}
seq "$N" | sed 's/.*/x/' >"$out/items"
i=0
while [ $i -lt "$ROUNDS" ]; do
  i=$((i + 1))
  run spawn.fiberio lua5.4 bench/procs.lua spawn-fiberio "$N" "$P"
  run spawn.luv lua5.4 bench/procs.lua spawn-luv "$N" "$P"
  run spawn.xargs sh -c "xargs -P $P -n 1 /bin/true < $out/items"
  run pipe.fiberio lua5.4 bench/procs.lua pipe-fiberio "$MIB"
  run pipe.shell sh -c "head -c $((MIB * 1048576)) /dev/zero | cat | cat >/dev/null"
done
cat >"$out/table.awk" <<'EOF'
  { t[$1] = t[$1] " " $2; names[$1] = 1 }
  END {
    print "| variant | median s (whole process) | ratio |"
    print "|---|--:|--:|"
    split("spawn.fiberio spawn.luv spawn.xargs pipe.fiberio pipe.shell", order, " ")
    for (k = 1; k in order; k++) {
      n = order[k]
      if (!(n in names)) continue
      r = ""
      if (n == "spawn.fiberio") r = sprintf("%.2f x luv, %.2f x xargs", median(t[n]) / median(t["spawn.luv"]), median(t[n]) / median(t["spawn.xargs"]))
      if (n == "pipe.fiberio") r = sprintf("%.2f x the shell (time)", median(t[n]) / median(t["pipe.shell"]))
      printf "| %s (%s) | %.3f | %s |\n", n, backend, median(t[n]), r
    }
  }
EOF
awk -v backend="${FIBERIO_BACKEND:-io_uring}" -f bench/median.awk -f "$out/table.awk" "$out/runs"
