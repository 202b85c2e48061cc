-- Copy benchmark: copy one big file (bench/run.sh makes 512 MiB of random
-- bytes) to a new file, and check the copy.
--
--   lua5.4 bench/copy.lua copyfile SRC DST   inside fio.run: fio.copyfile(SRC, DST)
--                                            (the kernel copies: copy_file_range)
--   lua5.4 bench/copy.lua cp SRC DST         os.execute("cp SRC DST"): GNU cp,
--                                            timed from here, so the time
--                                            includes starting sh and cp
--   lua5.4 bench/copy.lua fio-loop SRC DST   inside fio.run: fio.open both,
--                                            read(1 MiB) / write until EOF,
--                                            close both
--   lua5.4 bench/copy.lua io-loop SRC DST    the same loop with io.open
--
-- DST is removed before each repetition (outside the timing, followed by
-- `sync -f` so the file system commits that unlink before the copy starts),
-- so every variant creates it. One untimed copy warms the page cache (SRC stays
-- cached: it is far smaller than RAM); then BENCH_COPY_REPS (default 3) timed
-- copies, best reported. Every copy's size is checked against SRC's; after
-- the last one, `cmp` checks the bytes once; DST is removed at the end.
-- "CPU ms" is os.clock() of this process only: for `cp` it leaves out the
-- child's CPU time, so run.sh does not show it.
-- The time ends when the copy's last write returns: nothing is flushed to the
-- disk (no fsync), alike for every variant.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local util = dofile(dir .. "/util.lua")
local uv = require "luv" -- util loaded it already; used for fs_stat

local variant, SRC, DST = arg[1], arg[2], arg[3]
local REPS = math.tointeger(tonumber(os.getenv("BENCH_COPY_REPS") or "3"))
local CHUNK = 1024 * 1024
local clock = util.clock

local function usage()
  io.stderr:write("usage: lua5.4 bench/copy.lua copyfile|cp|fio-loop|io-loop SRC DST\n")
  os.exit(2)
end
if not (SRC and DST) then usage() end

local function size_of(path)
  local st, err = uv.fs_stat(path)
  if not st then error(err, 0) end
  return st.size
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local SIZE = size_of(SRC)

local variants = {}

variants["copyfile"] = function()
  local fio = require "fiberio"
  return function()
    local t0 = clock()
    fio.run(function()
      assert(fio.copyfile(SRC, DST))
    end)
    return clock() - t0
  end, { "backend=" .. fio.backend() }
end

variants["cp"] = function()
  local cmd = "cp -- " .. shell_quote(SRC) .. " " .. shell_quote(DST)
  return function()
    local t0 = clock()
    local ok, how, code = os.execute(cmd)
    local wall = clock() - t0
    if not ok then error(("%s: %s %s"):format(cmd, how, code), 0) end
    return wall
  end, {}
end

variants["fio-loop"] = function()
  local fio = require "fiberio"
  return function()
    local t0 = clock()
    fio.run(function()
      local src = assert(fio.open(SRC, "rb"))
      local dst = assert(fio.open(DST, "wb"))
      while true do
        local s = src:read(CHUNK)
        if not s then break end
        assert(dst:write(s))
      end
      assert(src:close())
      assert(dst:close())
    end)
    return clock() - t0
  end, { "backend=" .. fio.backend() }
end

variants["io-loop"] = function()
  return function()
    local t0 = clock()
    local src = assert(io.open(SRC, "rb"))
    local dst = assert(io.open(DST, "wb"))
    while true do
      local s = src:read(CHUNK)
      if not s then break end
      assert(dst:write(s))
    end
    assert(src:close())
    assert(dst:close())
    return clock() - t0
  end, {}
end

local make = variants[variant]
if not make then usage() end
local copy, extra = make()


-- One copy: remove DST, then time the copy alone (wall and process CPU; the
-- unlink of the last copy is not in either), then check the copy's size.
local function once()
  os.remove(DST) -- a missing DST is fine
  -- Let the file system commit the unlink now, not during the copy.
  os.execute("sync -f -- " .. shell_quote(SRC))
  collectgarbage("collect")
  collectgarbage("collect")
  local heap0 = collectgarbage("count")
  local c0 = os.clock()
  local t0 = clock()
  copy()
  local wall = clock() - t0
  local cpu = os.clock() - c0
  local heap = collectgarbage("count") - heap0
  local got = size_of(DST)
  if got ~= SIZE then
    error(("copy/%s: the copy has %d bytes, the source %d"):format(variant, got, SIZE), 0)
  end
  return wall, cpu, heap
end

-- As util.measure, but with the unlink of DST kept out of the CPU time.
local function measure()
  collectgarbage("collect")
  collectgarbage("collect")
  local rss0 = util.status_kb("VmRSS")
  local times, cpus, heap = {}, {}, 0
  for rep = 1, REPS do
    local wall, cpu, h = once()
    times[rep], cpus[rep] = wall, cpu
    heap = math.max(heap, h)
  end
  local best, sorted = 1, {}
  for i = 1, REPS do
    if times[i] < times[best] then best = i end
    sorted[i] = times[i]
  end
  table.sort(sorted)
  return {
    best_ms = times[best] * 1e3,
    median_ms = sorted[(REPS + 1) // 2] * 1e3,
    cpu_ms = cpus[best] * 1e3,
    heap_kb = heap,
    rss_kb = util.status_kb("VmHWM") - rss0,
    rss0_kb = rss0,
    times = times,
  }
end

once() -- warm the page cache
local r = measure()
local ok = os.execute("cmp -s -- " .. shell_quote(SRC) .. " " .. shell_quote(DST))
os.remove(DST)
if not ok then
  error(("copy/%s: cmp: the copy differs from the source"):format(variant), 0)
end
extra[#extra + 1] = "bytes=" .. SIZE
extra[#extra + 1] = "cmp=ok"
util.report("copy", variant, string.format("%d", SIZE // (1024 * 1024)), REPS, r, extra)
