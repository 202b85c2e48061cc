-- Sleep benchmark: N concurrent sleepers (default 100,000), each sleeping 10 ms.
--
--   lua5.4 bench/sleep.lua fiberio   fio.async(sleeper) N times inside fio.run;
--                                    each calls fio.sleep(0.01); fio.run
--                                    returns when all have ended
--   lua5.4 bench/sleep.lua luv       N coroutines; each starts its own
--                                    uv.new_timer() for 10 ms and yields, the
--                                    timer callback closes the timer and
--                                    resumes it; uv.run() until none is left
--   lua5.4 bench/sleep.lua cqueues   cq:wrap(sleeper) N times, each calls
--                                    cqueues.sleep(0.01); then cq:loop()
--
-- Every sleeper does the same bookkeeping: it reads the reference clock before
-- and after its sleep, counts itself done, and counts a sleep shorter than
-- 10 ms (less 1 ms for libuv's millisecond timer granularity) as an error.
-- The run fails unless all N completed and none woke early. No variant keeps
-- a per-sleeper handle beyond what its library needs (fiberio's futures are
-- dropped; fio.run waits for every fiber started under it).
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local util = dofile(dir .. "/util.lua")

local variant = arg[1]
local N, REPS = util.settings()
local clock = util.clock
local SLEEP = 0.01
local EARLY = SLEEP - 0.001

-- Per-repetition state shared by every variant's sleeper.
local done, early, started, inflight_max, heap

local function reset()
  done, early, started, inflight_max, heap = 0, 0, 0, 0, nil
end

-- Called at the start of each sleeper, before it sleeps. When the last one
-- starts, the other N-1 are (normally) all asleep: that is the moment all N
-- exist, where the Lua heap is sampled.
local function enter(i)
  started = started + 1
  local inflight = started - done
  if inflight > inflight_max then inflight_max = inflight end
  if i == N then heap = collectgarbage("count") end
  return clock()
end

local function leave(t0)
  if clock() - t0 < EARLY then early = early + 1 end
  done = done + 1
end

local function check(what)
  if done ~= N or early ~= 0 then
    error(("%s: %d of %d sleepers completed, %d woke early"):format(what, done, N, early))
  end
  assert(heap, "heap not sampled")
end

local variants = {}

function variants.fiberio()
  local fio = require "fiberio"
  local async, sleep = fio.async, fio.sleep
  local function sleeper(i)
    local t0 = enter(i)
    sleep(SLEEP)
    leave(t0)
  end
  return function()
    reset()
    local t0 = clock()
    fio.run(function()
      for i = 1, N do
        async(sleeper, i)
      end
    end)
    local wall = clock() - t0
    check("fiberio")
    return wall, heap
  end, { "backend=" .. fio.backend() }
end

function variants.luv()
  local uv = require "luv"
  local new_timer, update_time = uv.new_timer, uv.update_time
  local yield, running, resume = coroutine.yield, coroutine.running, coroutine.resume
  local ms = math.floor(SLEEP * 1000)
  local function sleeper(i)
    local t0 = enter(i)
    local co = running()
    local timer = new_timer()
    -- libuv measures timeouts from its cached loop time; refresh it so the
    -- 10 ms count from now, as fio.sleep and cqueues.sleep do.
    update_time()
    timer:start(ms, 0, function()
      timer:close()
      local ok, err = resume(co)
      if not ok then error(err, 0) end
    end)
    yield()
    leave(t0)
  end
  return function()
    reset()
    local t0 = clock()
    for i = 1, N do
      local ok, err = resume(coroutine.create(sleeper), i)
      if not ok then error(err, 0) end
    end
    uv.run()
    local wall = clock() - t0
    check("luv")
    return wall, heap
  end, {}
end

function variants.cqueues()
  local cqueues = require "cqueues"
  local csleep = cqueues.sleep
  local function sleeper(i)
    local t0 = enter(i)
    csleep(SLEEP)
    leave(t0)
  end
  return function()
    reset()
    local t0 = clock()
    local cq = cqueues.new()
    for i = 1, N do
      cq:wrap(sleeper, i)
    end
    local ok, err = cq:loop()
    if not ok then error(err, 0) end
    local wall = clock() - t0
    check("cqueues")
    return wall, heap
  end, {}
end

local make = variants[variant]
if not make then
  io.stderr:write("usage: lua5.4 bench/sleep.lua fiberio|luv|cqueues\n")
  os.exit(2)
end

local once, extra = make()
local inflight_min = math.huge
local r = util.measure(REPS, function(rep)
  local wall, h = once(rep)
  inflight_min = math.min(inflight_min, inflight_max)
  return wall, h
end)
-- The fewest sleepers that were ever asleep at once, over all repetitions: N
-- means every repetition really had all N sleeping together.
extra[#extra + 1] = "inflight=" .. inflight_min
util.report("sleep", variant, N, REPS, r, extra)
