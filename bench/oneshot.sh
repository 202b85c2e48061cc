#!/bin/sh
# Whole-process timings, where start-up and exit count (a file tool runs
# once): bench/wall.c runs each command in turn, RUNS times (default 41),
# and prints the median and lowest wall time of each, fork to exit.
#
#   start-up: bare lua5.4; require "fiberio"; require and one fio.stat; one
#             fio.sleep(0); lfs and luv doing a stat, for comparison
#   readonce: one pass over 10,000 files of 4 KiB (warm cache): the C
#             io_uring program (bench/readfiles.c, REPS 0) against
#             bench/readonce.lua with 64 fibers, a plain loop of
#             fio.readfile, and plain io
#
#   sh bench/oneshot.sh            (from the repo root; BUILD=dir, default
#                                   build; RUNS=n; BENCH_TMPDIR=dir)
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
RUNS=${RUNS:-41}
CC=${CC:-gcc}
out=bench/out
mkdir -p "$out"
$CC -O2 -o "$out/wall" bench/wall.c || exit 1
$CC -O2 -o "$out/readfiles" bench/readfiles.c -luring || exit 1
export LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$BUILD/?.so;;"
echo "== start-up (backend ${FIBERIO_BACKEND:-auto})"
"$out/wall" "$RUNS" \
  "lua5.4 -e x=0" \
  "lua5.4 -e require('fiberio')" \
  "lua5.4 -e require('fiberio').stat('/')" \
  "lua5.4 -e require('fiberio').sleep(0)" \
  "lua5.4 -e require('lfs').attributes('/')" \
  "lua5.4 -e require('luv').fs_stat('/')" || exit 1
data=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/fio-oneshot-XXXXXX") || exit 1
trap 'rm -rf "$data"' EXIT
lua5.4 bench/mkfiles.lua "$data" 10000 4096 || exit 1
"$out/readfiles" "$data" 10000 0 || exit 1 # (warms the caches)
echo "== one pass over 10,000 files of 4 KiB (backend ${FIBERIO_BACKEND:-auto})"
"$out/wall" "$RUNS" \
  "$out/readfiles $data 10000 0" \
  "lua5.4 bench/readonce.lua $data 10000 fibers" \
  "lua5.4 bench/readonce.lua $data 10000 loop" \
  "lua5.4 bench/readonce.lua $data 10000 io"
