#!/bin/sh
# Sockets on loopback (issue 18), each fiberio server against its anchors in
# the same run, alternated, NET_ROUNDS rounds; one line per run, then the
# medians and ratios as a markdown table.
#
#   sh bench/net.sh            (make all first; BUILD=dir: where core.so is)
#   NET_ROUNDS=5  NET_SECS=5  NET_ONLY="echo http"  FIBERIO_BACKEND=threads
#
# echo: bench/echo.lua fiberio | luv | cqueues, loaded by bench/echoload.c
#       (100 connections, 64-byte messages, one at a time per connection):
#       requests/s, p50 and p99 latency in microseconds, and the server's
#       CPU time per request (the client and the server each hold a core:
#       requests/s is bounded by both, the CPU time is the server's own).
# http: examples/serve.lua -w W against nginx with W worker processes
#       (NET_WORKERS, default 1), the same 4 KiB file, loaded by wrk
#       (1 thread, 50 connections, keep-alive): requests/s, p99 latency.
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${NET_ROUNDS:-5}
SECS=${NET_SECS:-5}
ONLY=${NET_ONLY:-echo http}
WORKERS=${NET_WORKERS:-1}
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/$BUILD/?.so;;"
out=$PWD/bench/out/net
mkdir -p "$out"
cc -O2 -o "$out/echoload" bench/echoload.c

# start NAME CMD...: run CMD in the background, its stdout to $out/NAME.out;
# wait for a line "port N" or "...:N/" and set $port, $pid.
start() {
  name=$1; shift
  "$@" >"$out/$name.out" 2>&1 &
  pid=$!
  n=0
  port=
  while [ -z "$port" ] && [ $n -lt 100 ]; do
    sleep 0.05
    port=$(sed -n 's/^port \([0-9]*\)$/\1/p; s/.*:\([0-9]*\)\/$/\1/p' "$out/$name.out" | head -1)
    n=$((n + 1))
  done
  [ -n "$port" ] || { echo "net: $name did not start:" >&2; cat "$out/$name.out" >&2; exit 1; }
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }

# wrk's requests/s and p99 (in microseconds) from its --latency output.
wrk_line() {
  awk '/Requests\/sec/ { r = $2 }
       / 99% / { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
                 p = u == "ms" ? v * 1000 : u == "s" ? v * 1e6 : v }
       END { printf "%s %s\n", r, p }' "$1"
}

www=$out/www
mkdir -p "$www"
head -c 4096 /dev/urandom >"$www/f4k"
cat >"$out/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
user root;
pid $out/nginx.pid;
error_log $out/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18080 reuseport;
    root $www;
  }
}
EOF

: >"$out/runs"
i=0
while [ $i -lt "$ROUNDS" ]; do
  i=$((i + 1))
  for what in $ONLY; do
    case $what in
      echo)
        for v in fiberio luv cqueues; do
          start "echo.$v" lua5.4 bench/echo.lua $v
          load=$("$out/echoload" "$port" 100 "$SECS" 64)
          # the server's CPU time (user + system) per request, in µs
          cpu=$(awk -v hz="$(getconf CLK_TCK)" -v n="${load##* }" \
            '{ printf "%.2f", ($14 + $15) / hz * 1e6 / n }' "/proc/$pid/stat")
          echo "echo.$v ${load% *} $cpu" | tee -a "$out/runs"
          stop
        done ;;
      http)
        start http.fiberio lua5.4 examples/serve.lua -w "$WORKERS" "$www" 0
        wrk -t1 -c50 -d"${SECS}s" --latency "http://127.0.0.1:$port/f4k" >"$out/wrk"
        echo "http.fiberio $(wrk_line "$out/wrk")" | tee -a "$out/runs"
        stop
        nginx -c "$out/nginx.conf" >"$out/nginx.out" 2>&1 &
        pid=$!
        sleep 0.3
        wrk -t1 -c50 -d"${SECS}s" --latency "http://127.0.0.1:18080/f4k" >"$out/wrk"
        echo "http.nginx $(wrk_line "$out/wrk")" | tee -a "$out/runs"
        stop ;;
    esac
  done
done

# (the ratio: the median of each round's ratio, fiberio's run against the
# anchor's run next to it, which drifts less than a ratio of medians)
cat >"$out/table.awk" <<'EOF'
  { r[$1] = r[$1] " " $2; p99[$1] = p99[$1] " " ($1 ~ /^echo/ ? $4 : $3); names[$1] = 1; k = ++round[$1]; v[$1, k] = $2
    if (NF > 4) cpu[$1] = cpu[$1] " " $5 }
  END {
    print "| server | median requests/s | median p99 µs | server CPU µs per request | fiberio's requests/s, ratio (range over rounds) |"
    print "|---|--:|--:|--:|--:|"
    split("echo.fiberio echo.luv echo.cqueues http.fiberio http.nginx", order, " ")
    for (k = 1; k in order; k++) {
      n = order[k]
      if (!(n in names)) continue
      split(n, q, ".")
      x = ""
      f = q[1] ".fiberio"
      if (q[2] != "fiberio" && (f in names)) {
        rs = ""; lo = 1e9; hi = 0
        for (i = 1; i <= round[n] && i <= round[f]; i++) {
          y = v[f, i] / v[n, i]; rs = rs " " y
          if (y < lo) lo = y
          if (y > hi) hi = y
        }
        x = sprintf("%.2f x %s (%.2f-%.2f)", median(rs), q[2], lo, hi)
      }
      c = (n in cpu) ? sprintf("%.2f", median(cpu[n])) : ""
      printf "| %s (%s) | %.0f | %.0f | %s | %s |\n", n, backend, median(r[n]), median(p99[n]), c, x
    }
  }
EOF
awk -v backend="${FIBERIO_BACKEND:-io_uring}" -f bench/median.awk -f "$out/table.awk" "$out/runs"
