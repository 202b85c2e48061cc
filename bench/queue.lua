-- Queue benchmark: N items (default 100,000) handed from a producer to a
-- consumer, one at a time, through a bounded queue between two fibers.
--
--   lua5.4 bench/queue.lua coroutine      the physical limit: a producer
--                                         coroutine yields each item to the
--                                         consumer loop that resumes it; one
--                                         resume/yield pair an item, no queue
--   lua5.4 bench/queue.lua fiberio CAP    inside fio.run: a producer fiber
--                                         puts 1..N in fio.queue(CAP), then
--                                         closes it; the root fiber gets until
--                                         get returns nil
--   lua5.4 bench/queue.lua cqueues CAP    the same on one cqueues controller:
--                                         two cq:wrap coroutines and a queue
--                                         of capacity CAP made of a table and
--                                         two cqueues.condition objects
--                                         (wait while full / empty, signal
--                                         one after each put / get)
--
-- CAP 0 (fiberio only) is a rendezvous: every put waits for a get. Every
-- variant checks that the consumer got 1..N in order (so the sum is
-- N(N+1)/2); an item lost, repeated or reordered fails the run.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local util = dofile(dir .. "/util.lua")

local variant, cap = arg[1], math.tointeger(tonumber(arg[2] or ""))
local N, REPS = util.settings()
local clock = util.clock

-- Per-repetition state of the consumer, shared by every variant.
local got, sum, heap

local function reset()
  got, sum, heap = 0, 0, nil
end

-- The consumer's work for item x: check it is the next one, add it up, and
-- sample the Lua heap half-way through.
local function take(x)
  got = got + 1
  if x ~= got then error(("item %d arrived as number %d"):format(x, got)) end
  sum = sum + x
  if got == N // 2 then heap = collectgarbage("count") end
end

local function check(what)
  if got ~= N or sum ~= N * (N + 1) // 2 then
    error(("%s: %d of %d items arrived, sum %d"):format(what, got, N, sum))
  end
  assert(heap, "heap not sampled")
end

local variants = {}

function variants.coroutine()
  local yield = coroutine.yield
  local function producer()
    for i = 1, N do yield(i) end
  end
  return function()
    reset()
    local t0 = clock()
    local next_item = coroutine.wrap(producer)
    for _ = 1, N do take(next_item()) end
    local wall = clock() - t0
    check("coroutine")
    return wall, heap
  end, {}
end

-- The two ends of a queue with put, get (nil once closed and empty) and
-- close, the same for every variant that has one.
local function produce(q)
  for i = 1, N do q:put(i) end
  q:close()
end

local function consume(q)
  while true do
    local x = q:get()
    if x == nil then break end
    take(x)
  end
end

function variants.fiberio()
  assert(cap and cap >= 0, "fiberio: capacity expected (0 or more)")
  local fio = require "fiberio"
  local async, queue = fio.async, fio.queue
  return function()
    reset()
    local t0 = clock()
    fio.run(function()
      local q = queue(cap)
      async(produce, q)
      consume(q)
    end)
    local wall = clock() - t0
    check("fiberio")
    return wall, heap
  end, { "backend=" .. fio.backend(), "cap=" .. cap }
end

function variants.cqueues()
  assert(cap and cap >= 1, "cqueues: capacity expected (1 or more)")
  local cqueues = require "cqueues"
  local condition = require "cqueues.condition"

  -- A bounded FIFO queue on two condition variables, as a cqueues user
  -- writes one.
  local Q = {}
  Q.__index = Q
  local function newq(capacity)
    return setmetatable({ items = {}, first = 1, last = 0, cap = capacity, closed = false,
                          nonempty = condition.new(), nonfull = condition.new() }, Q)
  end
  function Q:put(x)
    while self.last - self.first + 1 >= self.cap do self.nonfull:wait() end
    self.last = self.last + 1
    self.items[self.last] = x
    self.nonempty:signal(1)
  end
  function Q:get()
    while self.last < self.first do
      if self.closed then return nil end
      self.nonempty:wait()
    end
    local x = self.items[self.first]
    self.items[self.first] = nil
    self.first = self.first + 1
    self.nonfull:signal(1)
    return x
  end
  function Q:close()
    self.closed = true
    self.nonempty:signal()
  end

  return function()
    reset()
    local t0 = clock()
    local cq = cqueues.new()
    local q = newq(cap)
    cq:wrap(produce, q)
    cq:wrap(consume, q)
    local ok, err = cq:loop()
    if not ok then error(err, 0) end
    local wall = clock() - t0
    check("cqueues")
    return wall, heap
  end, { "cap=" .. cap }
end

local make = variants[variant]
if not make then
  io.stderr:write("usage: lua5.4 bench/queue.lua coroutine | fiberio CAP | cqueues CAP\n")
  os.exit(2)
end

local once, extra = make()
local r = util.measure(REPS, once)
util.report("queue", cap and (variant .. "-cap" .. cap) or variant, N, REPS, r, extra)
