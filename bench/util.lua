-- Shared helpers for the benchmarks in bench/: a clock that no variant under
-- test provides, memory probes, and the one result line run.sh parses.
--
-- The clock is luv's uv.hrtime() (CLOCK_MONOTONIC, ns). It is loaded in every
-- variant's process, before the memory baseline is taken, so each variant pays
-- the same for it and fiberio's own fio.now() can be checked against it.
local uv = require "luv"

local M = {}

local hrtime = uv.hrtime

-- Monotonic wall clock in seconds.
function M.clock()
  return hrtime() * 1e-9
end

-- A field of /proc/self/status in KiB (VmRSS, VmHWM, ...).
function M.status_kb(field)
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("a")
  f:close()
  local v = s:match(field .. ":%s*(%d+)%s*kB")
  return assert(tonumber(v), "no " .. field .. " in /proc/self/status")
end

-- Settings from the environment, so a quick run can shrink the work:
-- BENCH_N (default 100000) and BENCH_REPS (default 5).
function M.settings()
  local n = tonumber(os.getenv("BENCH_N") or "") or 100000
  local reps = tonumber(os.getenv("BENCH_REPS") or "") or 5
  return math.tointeger(n), math.tointeger(reps)
end

-- Run `once(rep)` `reps` times. `once` does the whole measured work and returns
-- its wall time in seconds and the Lua heap (KiB) it sampled at its peak
-- moment. A full collection before each repetition gives every repetition and
-- every variant the same clean start; the GC is otherwise left at its defaults.
--
-- Returns a table with best/median wall time, process CPU time of the best
-- repetition, the largest heap growth over all repetitions, and the peak RSS
-- growth of the whole process (VmHWM at the end minus VmRSS before the work).
function M.measure(reps, once)
  collectgarbage("collect")
  collectgarbage("collect")
  local rss0 = M.status_kb("VmRSS")
  local times, cpus = {}, {}
  local heap_growth = 0
  for rep = 1, reps do
    collectgarbage("collect")
    collectgarbage("collect")
    local heap0 = collectgarbage("count")
    local c0 = os.clock()
    local wall, heap_peak = once(rep)
    local cpu = os.clock() - c0
    times[rep], cpus[rep] = wall, cpu
    heap_growth = math.max(heap_growth, heap_peak - heap0)
  end
  local hwm = M.status_kb("VmHWM")
  local best = 1
  for i = 2, reps do
    if times[i] < times[best] then best = i end
  end
  local sorted = {}
  for i = 1, reps do sorted[i] = times[i] end
  table.sort(sorted)
  local median = sorted[(reps + 1) // 2]
  return {
    best_ms = times[best] * 1e3,
    median_ms = median * 1e3,
    cpu_ms = cpus[best] * 1e3,
    heap_kb = heap_growth,
    rss_kb = hwm - rss0,
    rss0_kb = rss0,
    times = times,
    cpus = cpus,
    best = best,
  }
end

-- Print the result line run.sh reads, plus a human-readable line on stderr.
function M.report(bench, variant, n, reps, r, extra)
  local parts = {
    "RESULT", "bench=" .. bench, "variant=" .. variant,
    "n=" .. n, "reps=" .. reps,
    string.format("best_ms=%.1f", r.best_ms),
    string.format("median_ms=%.1f", r.median_ms),
    string.format("cpu_ms=%.1f", r.cpu_ms),
    string.format("heap_kb=%.0f", r.heap_kb),
    string.format("rss_kb=%d", r.rss_kb),
    string.format("rss0_kb=%d", r.rss0_kb),
  }
  for _, kv in ipairs(extra or {}) do parts[#parts + 1] = kv end
  print(table.concat(parts, " "))
  local all = {}
  for i, t in ipairs(r.times) do all[i] = string.format("%.1f", t * 1e3) end
  io.stderr:write(string.format(
    "%s/%s: best %.1f ms (median %.1f, cpu %.1f; all: %s), Lua heap +%.1f MiB, peak RSS +%.1f MiB\n",
    bench, variant, r.best_ms, r.median_ms, r.cpu_ms, table.concat(all, " "),
    r.heap_kb / 1024, r.rss_kb / 1024))
end

return M
