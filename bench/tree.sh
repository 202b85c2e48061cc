#!/bin/sh
# Tree tools, whole process (start-up to exit), warm cache, each fiberio tool
# against the C tool it replaces in the same run, alternated, ROUNDS rounds;
# prints one line per run and then the medians (seconds, peak RSS in KiB)
# and their ratios as a markdown table.
#
#   sh bench/tree.sh                 (make all first; BUILD=dir: where core.so is)
#   TREE_ROUNDS=5  TREE_ONLY="walk du grep cp"  FIBERIO_BACKEND=threads
#
# walk:  a script printing every path of /usr (fio.walk)  vs  find /usr,
#        fdfind -u -H . /usr (Debian fd-find)
# du:    examples/du.lua /usr/share  vs  du -s /usr/share
# grep:  examples/grep.lua -rn PATTERN /usr/include  vs  grep -rn
# cp:    examples/cptree.lua /usr/share DST  vs  cp -a /usr/share DST
#        (DST under TREE_TMPDIR, default /tmp, removed after each run)
# Every output is checked against its anchor's (sorted) before timing.
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${TREE_ROUNDS:-5}
ONLY=${TREE_ONLY:-walk du grep cp}
TMPD=${TREE_TMPDIR:-/tmp}
PATTERN=${TREE_PATTERN:-EINVAL}
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/$BUILD/?.so;;"
out=bench/out/tree
mkdir -p "$out"
walker="$out/walk.lua"
cat >"$walker" <<'EOF'
local fio = require "fiberio"
local out = io.stdout
out:setvbuf("full")
for path in fio.walk(arg[1]) do out:write(path, "\n") end
EOF

# run NAME CMD...: time one run (output to /dev/null), append "NAME secs KiB".
run() {
  name=$1; shift
  /usr/bin/time -f "%e %M" -o "$out/time" "$@" >/dev/null 2>"$out/err" || {
    echo "tree: $name failed:" >&2; cat "$out/err" >&2; exit 1; }
  echo "$name $(cat "$out/time")" | tee -a "$out/runs"
}

# same A_CMD B_CMD: the two outputs, sorted, are equal.
same() {
  sh -c "$1" 2>/dev/null | LC_ALL=C sort >"$out/a"
  sh -c "$2" 2>/dev/null | LC_ALL=C sort >"$out/b"
  cmp -s "$out/a" "$out/b" || { echo "tree: output differs: $1 / $2" >&2; exit 1; }
}

lua="lua5.4"
: >"$out/runs"
for what in $ONLY; do
  case $what in
    walk) same "$lua $walker /usr" "find /usr -mindepth 1" ;;
    du) same "$lua examples/du.lua /usr/share" "du -s /usr/share" ;;
    grep) same "$lua examples/grep.lua -rn $PATTERN /usr/include" "grep -rn $PATTERN /usr/include" ;;
    cp) ;; # (checked by spec/examples_spec.lua; a full compare here takes minutes)
  esac
done
# warm the cache
find /usr >/dev/null 2>&1; cat /usr/include/*.h >/dev/null 2>&1 || true
i=0
while [ $i -lt "$ROUNDS" ]; do
  i=$((i + 1))
  for what in $ONLY; do
    case $what in
      walk)
        run walk.fiberio $lua "$walker" /usr
        run walk.find find /usr
        if command -v fdfind >/dev/null; then run walk.fd fdfind -u -H . /usr; fi ;;
      du)
        run du.fiberio $lua examples/du.lua /usr/share
        run du.du du -s /usr/share ;;
      grep)
        run grep.fiberio $lua examples/grep.lua -rn "$PATTERN" /usr/include
        run grep.grep grep -rn "$PATTERN" /usr/include ;;
      cp)
        rm -rf "$TMPD/tree-bench-cp"
        run cp.fiberio $lua examples/cptree.lua /usr/share "$TMPD/tree-bench-cp"
        rm -rf "$TMPD/tree-bench-cp"
        sync
        run cp.cp cp -a /usr/share "$TMPD/tree-bench-cp"
        rm -rf "$TMPD/tree-bench-cp"
        sync ;;
    esac
  done
done

# medians and ratios
cat >"$out/table.awk" <<'EOF'
  { t[$1] = t[$1] " " $2; m[$1] = m[$1] " " $3; names[$1] = 1 }
  END {
    print "| tool | median s | median peak RSS KiB | ratio to anchor |"
    print "|---|--:|--:|--:|"
    split("walk.fiberio walk.find walk.fd du.fiberio du.du grep.fiberio grep.grep cp.fiberio cp.cp", order, " ")
    for (k = 1; k in order; k++) {
      n = order[k]
      if (!(n in names)) continue
      split(n, p, ".")
      anchor = p[1] == "walk" ? "walk.find" : p[1] == "du" ? "du.du" : p[1] == "grep" ? "grep.grep" : "cp.cp"
      r = ""
      if (p[2] == "fiberio") {
        r = sprintf("%.2f x %s", median(t[n]) / median(t[anchor]), anchor)
        if (p[1] == "walk" && ("walk.fd" in names)) r = r sprintf(", %.2f x walk.fd", median(t[n]) / median(t["walk.fd"]))
      }
      printf "| %s (%s) | %.3f | %d | %s |\n", n, backend, median(t[n]), median(m[n]), r
    }
  }
EOF
awk -v backend="${FIBERIO_BACKEND:-io_uring}" -f bench/median.awk -f "$out/table.awk" "$out/runs"
