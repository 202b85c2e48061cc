-- Spawn benchmark: N fibers (default 100,000) that return at once.
--
--   lua5.4 bench/spawn.lua fiberio   fio.async all N inside fio.run, keep the
--                                    futures in a table, then fio.await each
--   lua5.4 bench/spawn.lua lua       coroutine.create all N, keep them in a
--                                    table, then resume each until dead
--
-- Both variants run the same body, `return i`, and check every result, so a
-- fiber that never ran or returned the wrong value fails the run.
-- Run each variant in its own process (bench/run.sh does), so the peak-RSS
-- figure belongs to that variant alone.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local util = dofile(dir .. "/util.lua")

local variant = arg[1]
local N, REPS = util.settings()
local clock = util.clock

local function body(i)
  return i
end

local variants = {}

-- Plain Lua coroutines: the floor any fiber library pays for.
function variants.lua()
  return function()
    local t0 = clock()
    local cos = {}
    for i = 1, N do
      cos[i] = coroutine.create(body)
    end
    -- All N exist, none has run yet.
    local heap = collectgarbage("count")
    local sum = 0
    for i = 1, N do
      local co = cos[i]
      local ok, v
      repeat
        ok, v = coroutine.resume(co, i)
        if not ok then error(v, 0) end
      until coroutine.status(co) == "dead"
      if v ~= i then error(("coroutine %d returned %s"):format(i, tostring(v))) end
      sum = sum + v
    end
    -- All N still exist (dead, in the table).
    heap = math.max(heap, collectgarbage("count"))
    local wall = clock() - t0
    if sum ~= N * (N + 1) // 2 then error("wrong sum " .. sum) end
    return wall, heap
  end, {}
end

function variants.fiberio()
  local fio = require "fiberio"
  local async, await = fio.async, fio.await
  local now_ratio = {}
  return function(rep)
    local heap
    local sum = 0
    local t0, f0 = clock(), fio.now()
    fio.run(function()
      local futs = {}
      for i = 1, N do
        futs[i] = async(body, i)
      end
      -- All N exist, queued; none has started (the root has not suspended).
      heap = collectgarbage("count")
      for i = 1, N do
        local v = await(futs[i])
        if v ~= i then error(("fiber %d returned %s"):format(i, tostring(v))) end
        sum = sum + v
      end
      -- All N futures still exist (done, in the table).
      heap = math.max(heap, collectgarbage("count"))
    end)
    local wall, fwall = clock() - t0, fio.now() - f0
    if sum ~= N * (N + 1) // 2 then error("wrong sum " .. sum) end
    now_ratio[rep] = fwall / wall
    return wall, heap
  end, { "backend=" .. fio.backend() }, now_ratio
end

local make = variants[variant]
if not make then
  io.stderr:write("usage: lua5.4 bench/spawn.lua fiberio|lua\n")
  os.exit(2)
end

local once, extra, now_ratio = make()
local r = util.measure(REPS, once)
if now_ratio then
  -- fio.now() against the reference clock over the same interval.
  local worst = 1
  for _, q in ipairs(now_ratio) do
    if math.abs(q - 1) > math.abs(worst - 1) then worst = q end
  end
  extra[#extra + 1] = string.format("fio_now_ratio=%.4f", worst)
  if r.best_ms > 20 and math.abs(worst - 1) > 0.02 then
    io.stderr:write(("spawn/fiberio: WARNING fio.now() advanced %.3f x the reference clock\n"):format(worst))
  end
end
util.report("spawn", variant, N, REPS, r, extra)
