-- Latency of lone calls: each call made one after another, the way most Lua
-- code makes them, against its blocking equivalent from io, os, lfs or luv,
-- in one process so that every row's numbers share the same moment.
--
--   lua5.4 bench/latency.lua [ROWS...]
--
-- Each row is timed in four ways, the first three alternated round by round:
--   blocking  the blocking equivalent, from the main chunk
--   main      the fiberio call from the main chunk (no fio.run)
--   fiber     the fiberio call from one fiber (inside fio.run)
--   c64       64 fibers in flight, each making its share of the calls
--             (per call: the round's time over its number of calls)
-- and the median over BENCH_REPS rounds (default 7) of BENCH_N calls each
-- (default 2000) is printed in microseconds per call, with main and fiber
-- as ratios of blocking. FIBERIO_BACKEND picks the backend. Files live in
-- a fresh directory under BENCH_TMPDIR (or TMPDIR, or /tmp), removed at
-- the end; the cache is warm (an untimed round first).
--
-- Output: a markdown table, then one line per row for scripts:
--   latency <backend> <row> <blocking> <main> <fiber> <c64>
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local util = dofile(dir .. "/util.lua")
local fio = require "fiberio"
local lfs = require "lfs"
local uv = require "luv"

local N, REPS = util.settings()
N = tonumber(os.getenv("BENCH_N") or "") and N or 2000
REPS = tonumber(os.getenv("BENCH_REPS") or "") and REPS or 7
local FIBERS = 64
local clock = util.clock

local tmp = os.getenv("BENCH_TMPDIR") or os.getenv("TMPDIR") or "/tmp"
local root = assert(fio.mkdtemp(tmp .. "/fio-latency-XXXXXX"))
local f4k = root .. "/f4k"
local link = root .. "/link"
local d10 = root .. "/d10"
local data4k = ("x"):rep(4096)
do
  local f = assert(io.open(f4k, "wb"))
  f:write(data4k)
  f:close()
  assert(lfs.link("f4k", link, true))
  assert(lfs.mkdir(d10))
  for i = 1, 10 do
    f = assert(io.open(d10 .. "/e" .. i, "wb"))
    f:close()
  end
end

-- A path of fiber k's own (k = 1 when one caller makes every call).
local function own(name, k) return root .. "/" .. name .. k end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Each row: fio(k, i) and blocking(k, i) make call i of caller k, raising on
-- failure; prep(n, callers), untimed, makes what a round of n calls needs.
local rows = {
  { name = "stat",
    fio = function() assert(fio.stat(f4k)) end,
    blocking = function() assert(lfs.attributes(f4k)) end },
  { name = "lstat",
    fio = function() assert(fio.lstat(link)) end,
    blocking = function() assert(lfs.symlinkattributes(link)) end },
  { name = "readfile",
    fio = function() assert(#fio.readfile(f4k) == 4096) end,
    blocking = function() assert(#slurp(f4k) == 4096) end },
  { name = "open+read+close",
    fio = function()
      local f = assert(fio.open(f4k, "rb"))
      assert(#f:read("a") == 4096)
      f:close()
    end,
    blocking = function() assert(#slurp(f4k) == 4096) end },
  { name = "open(w)+write+close",
    fio = function(k)
      local f = assert(fio.open(own("w", k), "wb"))
      f:write("y")
      f:close()
    end,
    blocking = function(k) spit(own("w", k), "y") end },
  { name = "writefile",
    fio = function(k) assert(fio.writefile(own("w", k), "y")) end,
    blocking = function(k) spit(own("w", k), "y") end },
  { name = "rename (there and back)",
    prep = function(_, callers)
      for k = 1, callers do spit(own("a", k), "") end
    end,
    fio = function(k)
      assert(fio.rename(own("a", k), own("b", k)))
      assert(fio.rename(own("b", k), own("a", k)))
    end,
    blocking = function(k)
      assert(os.rename(own("a", k), own("b", k)))
      assert(os.rename(own("b", k), own("a", k)))
    end },
  { name = "unlink",
    prep = function(n)
      for i = 1, n do spit(own("u", i), "") end
    end,
    fio = function(_, i) assert(fio.unlink(own("u", i))) end,
    blocking = function(_, i) assert(os.remove(own("u", i))) end },
  { name = "mkdir+rmdir",
    fio = function(k)
      assert(fio.mkdir(own("m", k)))
      assert(fio.rmdir(own("m", k)))
    end,
    blocking = function(k)
      assert(lfs.mkdir(own("m", k)))
      assert(lfs.rmdir(own("m", k)))
    end },
  { name = "readdir (10 entries)",
    fio = function() assert(#fio.readdir(d10) == 10) end,
    blocking = function()
      local t = {}
      for name in lfs.dir(d10) do
        if name ~= "." and name ~= ".." then t[#t + 1] = name end
      end
      assert(#t == 10)
    end },
  { name = "access",
    fio = function() assert(fio.access(f4k, "r")) end,
    blocking = function() assert(uv.fs_access(f4k, "r")) end },
  { name = "readlink",
    fio = function() assert(fio.readlink(link) == "f4k") end,
    blocking = function() assert(lfs.symlinkattributes(link, "target") == "f4k") end },
}

local only = {}
for _, a in ipairs(arg) do only[a] = true end

-- The ways to make a round of n calls; each returns its wall time.
local function one_caller(call, n)
  local t0 = clock()
  for i = 1, n do call(1, i) end
  return clock() - t0
end
local ways = {}
function ways.blocking(row, n) return one_caller(row.blocking, n) end
function ways.main(row, n) return one_caller(row.fio, n) end
function ways.fiber(row, n) return fio.run(one_caller, row.fio, n) end
function ways.c64(row, n)
  local call = row.fio
  local t
  fio.run(function()
    local t0 = clock()
    local fs = {}
    for k = 1, FIBERS do
      fs[k] = fio.async(function()
        for i = k, n, FIBERS do call(k, i) end
      end)
    end
    for k = 1, FIBERS do fio.await(fs[k]) end
    t = clock() - t0
  end)
  return t
end
local order = { "blocking", "main", "fiber", "c64" }

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local backend = fio.backend()
local results = {}
for _, row in ipairs(rows) do
  if next(only) == nil or only[row.name] or only[row.name:match("^%S+")] then
    local times = {}
    for _, w in ipairs(order) do times[w] = {} end
    local function round(w, rep)
      if row.prep then row.prep(N, w == "c64" and FIBERS or 1) end
      collectgarbage("collect")
      local t = ways[w](row, N)
      if rep > 0 then times[w][rep] = t / N * 1e6 end
    end
    -- The one-caller ways take turns, each round starting with the next
    -- (round 0 warms the caches, untimed); then the 64-fiber rounds, whose
    -- burst (of directory changes, say) leaves the file system busy for a
    -- while after it.
    for rep = 0, REPS do
      for j = 0, 2 do round(order[(rep + j) % 3 + 1], rep) end
    end
    for rep = 0, REPS do round("c64", rep) end
    local r = { name = row.name }
    for _, w in ipairs(order) do r[w] = median(times[w]) end
    results[#results + 1] = r
  end
end

-- Remove what the rows left.
for name in lfs.dir(d10) do
  if name ~= "." and name ~= ".." then os.remove(d10 .. "/" .. name) end
end
lfs.rmdir(d10)
for name in lfs.dir(root) do
  if name ~= "." and name ~= ".." then os.remove(root .. "/" .. name) end
end
assert(lfs.rmdir(root))

print(("backend %s, %d calls a round, median of %d rounds, µs per call")
  :format(backend, N, REPS))
print()
print("| call | blocking | fiberio main chunk | ratio | fiberio one fiber | ratio | 64 fibers |")
print("|---|--:|--:|--:|--:|--:|--:|")
for _, r in ipairs(results) do
  print(("| %s | %.1f | %.1f | %.2f | %.1f | %.2f | %.1f |"):format(r.name,
    r.blocking, r.main, r.main / r.blocking, r.fiber, r.fiber / r.blocking, r.c64))
end
print()
for _, r in ipairs(results) do
  print(("latency %s %s %.3f %.3f %.3f %.3f"):format(backend,
    r.name:gsub(" ", "_"), r.blocking, r.main, r.fiber, r.c64))
end
