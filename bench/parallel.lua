-- Parallel benchmark: fio.parallel on worker threads.
--
--   lua5.4 bench/parallel.lua checksum DIR N THREADS
--       fio.config{threads = THREADS}; one fio.parallel task per file
--       DIR/0 .. DIR/N-1, given only the path: the worker reads the file with
--       fio.readfile and returns its Adler-32, computed in pure Lua; the main
--       chunk submits all N, then awaits them in order
--   lua5.4 bench/parallel.lua checksum-copy DIR N THREADS
--       the same, but the main chunk reads each file (fio.readfile) and
--       passes its bytes as the task's argument: the cost of copying the data
--       between states, against reading inside the workers
--   lua5.4 bench/parallel.lua checksum-serial DIR N
--       no fiberio: io.open, f:read("a") and the same Lua Adler-32, one file
--       after the other on the main thread (the single-core floor)
--   lua5.4 bench/parallel.lua roundtrip-fiberio [N]
--       N times, one after the other: fio.parallel(function() end):await()
--   lua5.4 bench/parallel.lua roundtrip-luv [N]
--       N times, one after the other, from a coroutine: uv.queue_work of one
--       uv.new_work whose work callback is empty and whose after callback
--       resumes the coroutine; uv.run() drives it
--   lua5.4 bench/parallel.lua burst THREADS [N]
--       N empty tasks submitted at once, then awaited: task throughput of the
--       queue and the wake-ups, with THREADS workers
--   lua5.4 bench/parallel.lua burst-luv [N]
--       the same with uv.queue_work (libuv's pool, 4 threads by default)
--
-- N for roundtrip-* and burst*: BENCH_PAR_N (default 20000). One untimed pass
-- first (page cache warm, workers or libuv's pool started; the round trips
-- and bursts: 1000 of them), then BENCH_REPS (default 5) timed passes, best
-- reported. Every checksum variant prints the combined checksum of all files
-- (run.sh checks that all variants agree) and fails unless every file was
-- summed whole.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local util = dofile(dir .. "/util.lua")

local variant = arg[1]
local _, REPS = util.settings()
local clock = util.clock

-- Adler-32 in pure Lua, as source text so that every worker's Lua state can
-- load it (a task's function may have no upvalues but _ENV). 16 bytes a
-- string.byte call; with 64-bit integers the modulo is taken once per 4 KiB.
local ADLER_SRC = [[
local byte = string.byte
return function(s)
  local a, b = 1, 0
  local n = #s
  local i = 1
  while i <= n do
    local last = i + 4095
    if last > n then last = n end
    local stop = last - 15
    while i <= stop do
      local c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16 = byte(s, i, i + 15)
      a = a + c1; b = b + a; a = a + c2; b = b + a; a = a + c3; b = b + a; a = a + c4; b = b + a
      a = a + c5; b = b + a; a = a + c6; b = b + a; a = a + c7; b = b + a; a = a + c8; b = b + a
      a = a + c9; b = b + a; a = a + c10; b = b + a; a = a + c11; b = b + a; a = a + c12; b = b + a
      a = a + c13; b = b + a; a = a + c14; b = b + a; a = a + c15; b = b + a; a = a + c16; b = b + a
      i = i + 16
    end
    while i <= last do
      a = a + byte(s, i); b = b + a
      i = i + 1
    end
    a = a % 65521; b = b % 65521
  end
  return (b << 16) | a
end
]]
local adler32 = load(ADLER_SRC, "=adler32")()
assert(adler32("Wikipedia") == 0x11E60398, "Adler-32 is wrong")
assert(adler32(("abcdefghijklmnopqrstuvwxyz0123456789"):rep(30000)) == 0xddaceeaa, "Adler-32 is wrong")

local function usage()
  io.stderr:write("usage: lua5.4 bench/parallel.lua checksum|checksum-copy DIR N THREADS\n"
    .. "       lua5.4 bench/parallel.lua checksum-serial DIR N\n"
    .. "       lua5.4 bench/parallel.lua roundtrip-fiberio|roundtrip-luv [N]\n"
    .. "       lua5.4 bench/parallel.lua burst THREADS [N] | burst-luv [N]\n")
  os.exit(2)
end

-- The tasks. Each keeps the loaded Adler-32 in its worker's globals, so a
-- worker compiles it once.
local function sum_path(src, path)
  local fio = require "fiberio"
  local adler = ADLER32 or load(src, "=adler32")()
  ADLER32 = adler
  local s = assert(fio.readfile(path))
  return adler(s), #s
end

local function sum_data(src, s)
  local adler = ADLER32 or load(src, "=adler32")()
  ADLER32 = adler
  return adler(s), #s
end

local function empty() end

-- Checksum variants: the files, their total size, and how a pass combines
-- the per-file sums (order-sensitive, so a file summed twice or swapped
-- shows).
local tree, nfiles, paths, size_total
local function files()
  tree, nfiles = arg[2], math.tointeger(tonumber(arg[3] or ""))
  if not (tree and nfiles and nfiles > 0) then usage() end
  paths, size_total = {}, 0
  for i = 1, nfiles do
    paths[i] = tree .. "/" .. (i - 1)
    local f = assert(io.open(paths[i], "rb"))
    size_total = size_total + f:seek("end")
    f:close()
  end
end

local function combine(acc, i, sum)
  return (acc * 31 + sum + i) & 0xffffffff
end

local variants = {}

function variants.checksum_serial()
  files()
  return function()
    local t0 = clock()
    local acc, bytes = 0, 0
    for i = 1, nfiles do
      local f = assert(io.open(paths[i], "rb"))
      local s = f:read("a")
      f:close()
      acc = combine(acc, i, adler32(s))
      bytes = bytes + #s
    end
    local wall = clock() - t0
    assert(bytes == size_total, "summed " .. bytes .. " bytes of " .. size_total)
    return wall, collectgarbage("count"), acc
  end, {}
end

local function checksum(copy)
  files()
  local threads = math.tointeger(tonumber(arg[4] or ""))
  if not (threads and threads > 0) then usage() end
  local fio = require "fiberio"
  fio.config { threads = threads }
  return function()
    local t0 = clock()
    local futs = {}
    for i = 1, nfiles do
      if copy then
        futs[i] = fio.parallel(sum_data, ADLER_SRC, assert(fio.readfile(paths[i])))
      else
        futs[i] = fio.parallel(sum_path, ADLER_SRC, paths[i])
      end
    end
    local acc, bytes = 0, 0
    for i = 1, nfiles do
      local sum, len = futs[i]:await()
      acc = combine(acc, i, sum)
      bytes = bytes + len
    end
    local wall = clock() - t0
    assert(bytes == size_total, "summed " .. bytes .. " bytes of " .. size_total)
    return wall, collectgarbage("count"), acc
  end, { "threads=" .. threads, "backend=" .. fio.backend() }
end

variants.checksum = function() return checksum(false) end
variants.checksum_copy = function() return checksum(true) end

local N = math.tointeger(tonumber(os.getenv("BENCH_PAR_N") or "20000"))

function variants.roundtrip_fiberio()
  N = math.tointeger(tonumber(arg[2] or "")) or N
  local fio = require "fiberio"
  local parallel = fio.parallel
  local t0 = clock()
  parallel(empty):await() -- the first: starts a worker
  local cold = clock() - t0
  return function(n)
    local t1 = clock()
    for _ = 1, n or N do parallel(empty):await() end
    return clock() - t1, collectgarbage("count")
  end, { "backend=" .. fio.backend(), string.format("cold_ms=%.2f", cold * 1e3) }, 1000
end

function variants.roundtrip_luv()
  N = math.tointeger(tonumber(arg[2] or "")) or N
  local uv = require "luv"
  local co
  local work = uv.new_work(function() end, function() assert(coroutine.resume(co)) end)
  local function rounds(n)
    co = coroutine.create(function()
      for _ = 1, n do
        uv.queue_work(work)
        coroutine.yield()
      end
    end)
    assert(coroutine.resume(co))
    uv.run()
    assert(coroutine.status(co) == "dead", "the round trips did not finish")
  end
  local t0 = clock()
  rounds(1) -- the first: starts libuv's pool and a Lua state in its thread
  local cold = clock() - t0
  return function(n)
    local t1 = clock()
    rounds(n or N)
    return clock() - t1, collectgarbage("count")
  end, { string.format("cold_ms=%.2f", cold * 1e3), "threadpool=" .. (os.getenv("UV_THREADPOOL_SIZE") or "4") }, 1000
end

function variants.burst()
  local threads = math.tointeger(tonumber(arg[2] or ""))
  if not (threads and threads > 0) then usage() end
  N = math.tointeger(tonumber(arg[3] or "")) or N
  local fio = require "fiberio"
  fio.config { threads = threads }
  local parallel = fio.parallel
  return function(n)
    n = n or N
    local t0 = clock()
    local futs = {}
    for i = 1, n do futs[i] = parallel(empty) end
    for i = 1, n do futs[i]:await() end
    return clock() - t0, collectgarbage("count")
  end, { "threads=" .. threads, "backend=" .. fio.backend() }, 1000
end

function variants.burst_luv()
  N = math.tointeger(tonumber(arg[2] or "")) or N
  local uv = require "luv"
  local left
  local work = uv.new_work(function() end, function() left = left - 1 end)
  return function(n)
    n = n or N
    local t0 = clock()
    left = n
    for _ = 1, n do uv.queue_work(work) end
    uv.run()
    assert(left == 0, left .. " works did not finish")
    return clock() - t0, collectgarbage("count")
  end, { "threadpool=" .. (os.getenv("UV_THREADPOOL_SIZE") or "4") }, 1000
end

local make = variants[(variant or ""):gsub("-", "_")]
if not make then usage() end

-- CPU time the whole machine spent busy (all CPUs, in clock ticks), and
-- the ticks elapsed times the CPUs: around a repetition, how many CPUs were
-- busy. Less our own CPU/wall, that is other load, which a shared machine
-- has; it makes a repetition slower and its speedup smaller.
local function machine_ticks()
  local f = io.open("/proc/stat", "r")
  if not f then return nil end
  local line = f:read("l")
  f:close()
  local v = {}
  for x in line:gmatch("%d+") do v[#v + 1] = tonumber(x) end
  -- user nice system idle iowait irq softirq steal
  local busy = v[1] + v[2] + v[3] + v[6] + v[7] + (v[8] or 0)
  return busy, busy + v[4] + v[5]
end
local ncpu = 0
for l in io.lines("/proc/cpuinfo") do if l:match("^processor") then ncpu = ncpu + 1 end end

local once, extra, warm_n = make()
-- One untimed pass: the page cache, the workers (or libuv's pool) started.
local _, _, want = once(warm_n)
local sums, busy = {}, {}
local r = util.measure(REPS, function(rep)
  local b0, t0 = machine_ticks()
  local wall, heap, acc = once()
  local b1, t1 = machine_ticks()
  sums[rep] = acc
  if b0 and t1 > t0 then busy[rep] = ncpu * (b1 - b0) / (t1 - t0) end
  return wall, heap
end)
-- (the machine's busy CPUs over the best repetition, less this process's)
local best = r.best
if busy[best] then
  local ours = r.cpus[best] / r.times[best]
  extra[#extra + 1] = string.format("others=%.2f", math.max(0, busy[best] - ours))
end
local n = nfiles or N
if want then
  for rep = 1, REPS do
    assert(sums[rep] == want, ("pass %d: checksum %08x, the warm-up pass had %08x"):format(rep, sums[rep], want))
  end
  extra[#extra + 1] = string.format("sum=%08x", want)
  extra[#extra + 1] = string.format("mib=%.0f", size_total / 1048576)
end
local name = variant
if variant == "checksum" or variant == "checksum-copy" or variant == "burst" then
  name = variant .. "-t" .. (variant == "burst" and arg[2] or arg[4])
end
util.report("parallel", name, n, REPS, r, extra)
