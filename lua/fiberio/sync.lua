-- fiberio.sync — coordination between fibers: fio.semaphore, fio.mutex,
-- fio.condition, fio.queue. All are built on a wait queue (core._waitq):
-- a waiter woken by q:wake owns what the waker handed it (a permit, an
-- item), even if a cancel arrives before it runs; a waiter canceled or
-- timed out while queued leaves no trace. So no permit or item is ever held
-- by nobody, taken twice, or lost. Every wait takes an optional timeout in
-- seconds and then returns nil, "timeout".
--
-- This file returns a function that init.lua calls with the module table:
-- it puts the constructors there and hands over fio.shield, which init.lua
-- defines (so this file need not require init.lua, which requires it).
local core = require "fiberio.core"
local check = require "fiberio.check"

local waitq = core._waitq
local argerror, checktimeout = check.argerror, check.timeout
local shield -- fio.shield, set when init.lua installs this layer (the function at the end)

-- fio.semaphore(n): acquire([timeout]), release(), with(fn, ...).
local Semaphore = {}
Semaphore.__index = Semaphore

local function semaphore(n)
  n = n or 1
  if math.type(n) ~= "integer" or n < 0 then
    argerror(1, "semaphore", "non-negative integer expected")
  end
  return setmetatable({ count = n, q = waitq() }, Semaphore)
end

function Semaphore:acquire(timeout)
  checktimeout(timeout, 1, "acquire")
  if self.count > 0 and self.q:len() == 0 then
    self.count = self.count - 1
    return true
  end
  return self.q:wait(true, timeout) -- woken: the releaser handed us its permit
end

-- A release adds a permit even past the count the semaphore was made with
-- (a counting semaphore: fio.semaphore(0) is a signal that release gives).
function Semaphore:release()
  if not self.q:wake() then self.count = self.count + 1 end
  return true
end

function Semaphore:available() return self.count end

local function with_release(self, ok, ...)
  self:release()
  if not ok then error((...), 0) end
  return ...
end

function Semaphore:with(fn, ...)
  local ok, err = self:acquire()
  if not ok then return nil, err end
  return with_release(self, pcall(fn, ...))
end

-- fio.mutex(): lock([timeout]), unlock(), with(fn, ...). Not reentrant; only
-- the fiber that holds it may unlock it.
local Mutex = {}
Mutex.__index = Mutex

local function current_token()
  -- what identifies the caller: its fiber's thread, or the main chunk
  return coroutine.running()
end

local function mutex()
  return setmetatable({ sem = semaphore(1), owner = nil }, Mutex)
end

function Mutex:lock(timeout)
  checktimeout(timeout, 1, "lock")
  local me = current_token()
  if self.owner == me then error("fiberio: mutex already locked by this fiber", 2) end
  local ok, err = self.sem:acquire(timeout)
  if ok then self.owner = me end
  return ok, err
end

function Mutex:unlock()
  if self.owner ~= current_token() then
    error("fiberio: unlock of a mutex this fiber does not hold", 2)
  end
  self.owner = nil
  self.sem:release()
  return true
end

local function with_unlock(self, ok, ...)
  self:unlock()
  if not ok then error((...), 0) end
  return ...
end

function Mutex:with(fn, ...)
  local ok, err = self:lock()
  if not ok then return nil, err end
  return with_unlock(self, pcall(fn, ...))
end

-- fio.condition(): wait(mutex [, timeout]), signal(), broadcast(). wait
-- releases the mutex while it waits and holds it again when it returns,
-- whatever the outcome (woken, timeout, cancel).
local Condition = {}
Condition.__index = Condition

local function condition()
  return setmetatable({ q = waitq() }, Condition)
end

local function relock(m, ok, ...)
  shield(m.lock, m)
  if not ok then error((...), 0) end
  return ...
end

function Condition:wait(m, timeout)
  checktimeout(timeout, 2, "wait")
  if getmetatable(m) ~= Mutex then error("bad argument #1 to 'wait' (mutex expected)", 2) end
  m:unlock()
  return relock(m, pcall(self.q.wait, self.q, true, timeout))
end

function Condition:signal()
  self.q:wake()
end

function Condition:broadcast()
  while self.q:wake() do end
end

-- fio.queue([capacity]): put(item [, timeout]), get([timeout]), close(),
-- len(). capacity nil: unbounded; 0: every put waits for a get. get on a
-- closed, drained queue returns nil; put on a closed queue raises. nil is
-- not an item.
local Queue = {}
Queue.__index = Queue

local function queue(capacity)
  if capacity ~= nil and (math.type(capacity) ~= "integer" or capacity < 0) then
    argerror(1, "queue", "non-negative integer expected")
  end
  return setmetatable({ items = {}, first = 1, last = 0, cap = capacity,
                        getters = waitq(), putters = waitq(), closed = false }, Queue)
end

function Queue:len() return self.last - self.first + 1 end

local function push(self, item)
  self.last = self.last + 1
  self.items[self.last] = item
end

local function pop(self)
  local i = self.first
  local item = self.items[i]
  self.items[i] = nil
  self.first = i + 1
  return item
end

function Queue:put(item, timeout)
  checktimeout(timeout, 2, "put")
  if item == nil then error("bad argument #1 to 'put' (nil is not an item)", 2) end
  if self.closed then error("fiberio: put on a closed queue", 2) end
  local getter = self.getters:wake()
  if getter then -- hand it over: the getter owns it from now on
    getter.item = item
    return true
  end
  if self.cap == nil or self:len() < self.cap then
    push(self, item)
    return true
  end
  local tok = { item = item }
  local ok, err = self.putters:wait(tok, timeout)
  if not ok then return nil, err end
  if tok.closed then error("fiberio: put on a closed queue", 2) end
  return true -- a getter took tok.item
end

function Queue:get(timeout)
  checktimeout(timeout, 1, "get")
  if self:len() > 0 then
    local item = pop(self)
    local putter = self.putters:wake() -- room for one more: let it in
    if putter then push(self, putter.item) end
    return item
  end
  local putter = self.putters:wake() -- capacity 0: take it from the putter
  if putter then return putter.item end
  if self.closed then return nil end
  local tok = {}
  local ok, err = self.getters:wait(tok, timeout)
  if not ok then return nil, err end
  return tok.item -- nil: the queue was closed
end

function Queue:close()
  if self.closed then return end
  self.closed = true
  while self.getters:wake() do end
  local putter = self.putters:wake()
  while putter do
    putter.closed = true
    putter = self.putters:wake()
  end
end

return function(fio)
  shield = fio.shield
  fio.semaphore, fio.mutex, fio.condition, fio.queue = semaphore, mutex, condition, queue
end
