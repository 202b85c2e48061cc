#!/bin/sh
# Run every spec file under busted (Lua 5.4), once per backend, and end with
# one line "N passed, M failed" over all runs. Exit non-zero on any failure.
#   tools/runspecs.sh BUILD_DIR [spec files...]
# FIBERIO_TEST_BACKENDS: the backends to run (default: io_uring threads).
# FIBERIO_SANITIZE=asan|tsan|valgrind: run under that checker.
build=${1:-build}; shift 2>/dev/null
files=${*:-$(ls spec/*_spec.lua)}
backends=${FIBERIO_TEST_BACKENDS:-io_uring threads}
root=$(pwd)
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/$build/?.so;;"
export FIBERIO_NORING="$root/$build/noring"
export FIBERIO_HOST="$root/$build/host"
export FIBERIO_FAILALLOC="$root/$build/failalloc.so"
runner="lua5.4 /usr/bin/busted"
case "$FIBERIO_SANITIZE" in
  asan)
    export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=$root/tools/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=67" ;;
  tsan)
    # Not LD_PRELOAD: shells and tools (sh, env, timeout) that inherit the
    # TSan runtime crash. Instead a `lua5.4` first on PATH starts the real
    # one through the dynamic loader with libtsan and longjmp_shim.so
    # (tools/longjmp_shim.c) preloaded, so every Lua process, the spec
    # children included, runs under TSan and nothing else does.
    lua=$(command -v lua5.4)
    ldso=$(ldd "$lua" | awk '/ld-linux/ { print $1 }')
    mkdir -p "$root/$build/bin"
    printf '#!/bin/sh\nexec %s --preload "%s %s" %s "$@"\n' "$ldso" \
      "$(gcc -print-file-name=libtsan.so)" "$root/$build/longjmp_shim.so" "$lua" \
      >"$root/$build/bin/lua5.4"
    chmod +x "$root/$build/bin/lua5.4"
    export PATH="$root/$build/bin:$PATH"
    export TSAN_OPTIONS="halt_on_error=1:exitcode=68:suppressions=$root/tools/tsan.supp" ;;
  valgrind)
    runner="valgrind -q --error-exitcode=69 --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite --suppressions=$root/tools/valgrind.supp $runner" ;;
esac
passed=0; failed=0; status=0
log=$(mktemp); fails=$(mktemp); trap 'rm -f "$log" "$fails"' EXIT
for b in $backends; do
  echo "== backend $b${FIBERIO_SANITIZE:+ ($FIBERIO_SANITIZE)}"
  for f in $files; do
    FIBERIO_BACKEND=$b $runner -o utfTerminal "$f" >"$log" 2>&1
    rc=$?
    cat "$log"
    line=$(grep -a -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
    if [ -z "$line" ]; then
      echo "!! $f ($b): busted printed no summary (exit $rc)" | tee -a "$fails"
      tail -n 20 "$log" >>"$fails"
      failed=$((failed + 1)); status=1; continue
    fi
    set -- $(echo "$line" | sed -E 's/[^0-9]*([0-9]+) success(es)? \/ ([0-9]+) failures? \/ ([0-9]+) errors? \/ ([0-9]+) pending.*/\1 \3 \4 \5/')
    passed=$((passed + $1)); failed=$((failed + $2 + $3))
    if [ "$(($2 + $3))" -ne 0 ]; then
      echo "!! $f ($b):" >>"$fails"
      grep -a -A 12 -E '^(Failure|Error) ' "$log" >>"$fails"
    fi
    if [ "$rc" -ne 0 ] && [ "$(($2 + $3))" -eq 0 ]; then
      echo "!! $f ($b): exit $rc with no failing spec (a sanitizer report or a crash)" | tee -a "$fails"
      grep -a -m 1 -A 30 -E 'ERROR: |WARNING: ThreadSanitizer|runtime error' "$log" >>"$fails"
      failed=$((failed + 1))
    fi
    [ "$rc" -ne 0 ] && status=1
  done
done
# The failures again at the end, where a log's tail shows them.
if [ -s "$fails" ]; then echo "== failures"; cat "$fails"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
