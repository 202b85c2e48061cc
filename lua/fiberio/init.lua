-- fiberio — async I/O for Lua 5.4 on io_uring.
-- The C core (fiberio.core) gives fibers, timers and I/O; this layer adds
-- what is best written in Lua: group, timeout, shield.
local core = require "fiberio.core"

local M = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then M[k] = v end
end
-- The functions are the user's as fiberio.NAME: package.loaded keeps
-- fiberio.core as a view of them (a traceback names a function by the
-- first table of package.loaded that holds it, and two would make it
-- fiberio.core.open one run and fiberio.open the next).
package.loaded["fiberio.core"] = setmetatable({}, {
  __index = core, __newindex = core, __pairs = function() return next, core, nil end,
})

local Canceled = core.Canceled
local async, join, request_cancel, observe = core.async, core._join, core._request_cancel, core._observe
local pack, unpack = table.pack, table.unpack

-- Misuse raises at the caller's line (level 3: the caller of the function
-- that calls this), as the C functions' argument errors do.
local function argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level or 3)
end

local function checkfunction(v, n, fname)
  if type(v) ~= "function" then
    argerror(n, fname, "function expected, got " .. (v == nil and "no value" or type(v)), 4)
  end
end

-- opts must be nil or a table with only the keys of known (a set).
local function checkopts(opts, n, fname, known)
  if opts == nil then return end
  if type(opts) ~= "table" then argerror(n, fname, "table expected, got " .. type(opts), 4) end
  for k in pairs(opts) do
    if not known[k] then argerror(n, fname, "unknown option '" .. tostring(k) .. "'", 4) end
  end
end

M._VERSION = "fiberio scm"
M._info = core._info -- what the backend says about itself (specs, debugging)

-- fio.shield(fn, ...): run fn with cancellation held off; a cancel that
-- arrives meanwhile lands at the next suspension point after it returns.
local function shield_leave(ok, ...)
  core._shield_leave()
  if not ok then error((...), 0) end
  return ...
end
function M.shield(fn, ...)
  core._shield_enter()
  return shield_leave(pcall(fn, ...))
end

-- fio.group([{limit = n}]): structured concurrency. g:async(fn, ...) starts
-- a member; g:wait() waits for all, the first error canceling the others
-- and being re-raised; g:cancel() cancels all and waits for them. With a
-- limit, g:async waits (a suspension point, cancelable) until fewer than n
-- members run: a producer cannot run ahead of the work. A finished member
-- is let go: the group keeps only the members still running and its first
-- error.
local Group = {}
Group.__index = Group

-- Member f has ended (or will never run): the group lets it go.
local function member_gone(g, f)
  g.members[f] = nil
  g.running = g.running - 1
  if g.slots then g.slots:wake() end -- a turn for the next g:async
end

-- Members whose future was canceled before they started never ran, so
-- never ended as members: let them go.
local function sweep(g)
  for f in pairs(g.members) do
    if f:done() then member_gone(g, f) end
  end
end

-- Cancel every member; one canceled before it started never runs, so it is
-- gone at once.
local function cancel_members(g)
  g.canceled = true -- members started from now on never run
  for f in pairs(g.members) do
    request_cancel(f)
    if f:done() and g.members[f] then
      observe(f)
      member_gone(g, f)
    end
  end
end

local function member_end(g, box, ok, ...)
  if not ok then
    local err = ...
    observe(box.f) -- the group takes it: wait re-raises the first one
    if err ~= Canceled and not g.failed then
      g.failed, g.err = true, err
      g.members[box.f] = nil
      cancel_members(g)
      g.members[box.f] = true
    end
  end
  member_gone(g, box.f)
  if not ok then error((...), 0) end
  return ...
end

local function member(g, box, fn, ...)
  return member_end(g, box, pcall(fn, ...))
end

function Group:async(fn, ...)
  checkfunction(fn, 1, "async")
  if self.limit then
    while self.running >= self.limit do
      local ok, woken = pcall(self.slots.wait, self.slots, true, 0.1)
      if not ok then
        -- canceled: a turn it was handed goes to the next in line
        if self.running < self.limit then self.slots:wake() end
        error(woken, 0)
      end
      -- no member ended for 0.1 s: one canceled through its own future
      -- before it ran may hold a turn (looked for only then: a look is a
      -- walk over every member)
      if not woken then sweep(self) end
    end
  end
  local box = {}
  local f = async(member, self, box, fn, ...)
  box.f = f
  if self.canceled then
    -- the group was canceled or failed: a new member never runs
    request_cancel(f)
    observe(f)
    if self.slots then self.slots:wake() end -- (the turn it had goes on)
    return f
  end
  self.members[f] = true
  self.running = self.running + 1
  return f
end

-- Wait until no member runs. A cancel of the caller is taken once: it
-- cancels the members, which are still waited for, shielded, so no member
-- outlives its group.
local function join_members(g)
  local f = next(g.members)
  while f do
    join(f)
    if g.members[f] then member_gone(g, f) end -- (it never ran)
    f = next(g.members)
  end
end

local function join_all(g)
  local ok, err = pcall(join_members, g)
  if not ok then
    cancel_members(g)
    M.shield(join_members, g)
    error(err, 0)
  end
end

function Group:wait()
  join_all(self)
  if self.failed then error(self.err, 0) end
  return true
end

function Group:cancel()
  cancel_members(self)
  join_all(self)
end

function M.group(opts)
  checkopts(opts, 1, "group", { limit = true })
  local g = setmetatable({ members = {}, running = 0, failed = false }, Group)
  if opts and opts.limit ~= nil then
    if math.type(opts.limit) ~= "integer" or opts.limit < 1 then
      argerror(1, "group", "limit must be a positive integer")
    end
    g.limit = opts.limit
    g.slots = core._waitq()
  end
  return g
end

-- fio.timeout(s, fn, ...): fn's results, or nil, "timeout" once fn's fiber
-- has been canceled at the deadline.
local function after_cancel(r)
  if r.n == 2 and r[1] == nil and r[2] == Canceled then return nil, "timeout" end
  return unpack(r, 1, r.n)
end
function M.timeout(s, fn, ...)
  if type(s) ~= "number" then argerror(1, "timeout", "number expected, got " .. type(s)) end
  if s ~= s then argerror(1, "timeout", "timeout is NaN") end
  checkfunction(fn, 2, "timeout")
  local f = async(fn, ...)
  local ok, done = pcall(join, f, s)
  if not ok then
    M.shield(core.cancel, f)
    error(done, 0)
  end
  if done then return f:await() end
  return after_cancel(pack(core.cancel(f)))
end

-- Coordination between fibers. All are built on a wait queue (core._waitq):
-- a waiter woken by q:wake owns what the waker handed it (a permit, an
-- item), even if a cancel arrives before it runs; a waiter canceled or
-- timed out while queued leaves no trace. So no permit or item is ever held
-- by nobody, taken twice, or lost. Every wait takes an optional timeout in
-- seconds and then returns nil, "timeout".
local waitq = core._waitq

local function checktimeout(t, argn, fname)
  if t ~= nil and type(t) ~= "number" then
    error(("bad argument #%d to '%s' (number expected, got %s)"):format(argn, fname, type(t)), 3)
  end
  if t ~= t then error(("bad argument #%d to '%s' (timeout is NaN)"):format(argn, fname), 3) end
end

-- fio.semaphore(n): acquire([timeout]), release(), with(fn, ...).
local Semaphore = {}
Semaphore.__index = Semaphore

function M.semaphore(n)
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

function M.mutex()
  return setmetatable({ sem = M.semaphore(1), owner = nil }, Mutex)
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

function M.condition()
  return setmetatable({ q = waitq() }, Condition)
end

local function relock(m, ok, ...)
  M.shield(m.lock, m)
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

function M.queue(capacity)
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

-- fio.mkdirp(path [, perm]) -> true: path and its missing parents.
local function mkdirp(path, perm)
  local ok, msg, err = M.mkdir(path, perm)
  if ok then return true end
  if err == 17 then -- EEXIST: fine if it is a directory
    local st = M.stat(path)
    if st and st.type == "directory" then return true end
    return nil, msg, err
  end
  if err ~= 2 then return nil, msg, err end -- ENOENT: make the parent first
  local parent = path:match("^(.*[^/])/+[^/]+/*$")
  if not parent or parent == path then return nil, msg, err end
  local pok, pmsg, perr = mkdirp(parent, perm)
  if not pok then return nil, pmsg, perr end
  ok, msg, err = M.mkdir(path, perm)
  if ok or err == 17 then return true end
  return nil, msg, err
end

function M.mkdirp(path, perm)
  if type(path) ~= "string" then argerror(1, "mkdirp", "string expected, got " .. type(path)) end
  if perm ~= nil then -- (as mkdir reads it: raised here, at the caller's line)
    local n = math.type(perm) == "integer" and perm
      or type(perm) == "string" and perm:match("^[0-7]+$") and tonumber(perm, 8)
    if not n or n < 0 or n > 4095 then
      argerror(2, "mkdirp", 'permission must be an integer or an octal string such as "0755" (0 to 07777)')
    end
  end
  return mkdirp(path, perm)
end

-- fio.scandir(path) -> iterator of name, type (nil, msg, errno on failure).
function M.scandir(path)
  local list, msg, err = M.readdir(path)
  if not list then return nil, msg, err end
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e.name, e.type end
  end
end

-- fio.walk(root [, opts]) -> iterator over every entry below root as
-- {path=, name=, type=}, in no promised order; directories are read
-- concurrently, at most opts.concurrency (default 16) at once. A directory
-- that cannot be read raises, unless opts.onerror(path, msg, errno) is given
-- (then the walk goes on). Symbolic links are reported, not followed.
-- Breaking out of the loop cancels the reads still running.
local WALK_OPTS = { concurrency = true, onerror = true }
function M.walk(root, opts)
  if type(root) ~= "string" then argerror(1, "walk", "string expected, got " .. type(root)) end
  checkopts(opts, 2, "walk", WALK_OPTS)
  local limit = opts and opts.concurrency or 16
  local onerror = opts and opts.onerror
  if math.type(limit) ~= "integer" or limit < 1 then
    argerror(2, "walk", "concurrency must be a positive integer")
  end
  if onerror ~= nil and type(onerror) ~= "function" then
    argerror(2, "walk", "onerror must be a function")
  end
  local readdir, select_ = M.readdir, M.select
  local todo, ntodo = { root }, 1     -- directories not started (a stack)
  local running = {}                   -- futures: readdir of a directory
  local out, first, last = {}, 1, 0    -- entries ready to hand out
  local function list(dir)
    return dir, readdir(dir)
  end
  local function iter()
    while first > last do
      while #running < limit and ntodo > 0 do
        local dir = todo[ntodo]
        todo[ntodo] = nil
        ntodo = ntodo - 1
        running[#running + 1] = async(list, dir)
      end
      if #running == 0 then return nil end
      local i, dir, entries, msg, err = select_(unpack(running))
      table.remove(running, i)
      if not entries then
        if onerror then onerror(dir, msg, err)
        else
          for j = 1, #running do request_cancel(running[j]) end
          error(msg, 2)
        end
      else
        local prefix = dir:sub(-1) == "/" and dir or dir .. "/"
        for j = 1, #entries do
          local e = entries[j]
          local p = prefix .. e.name
          e.path = p
          last = last + 1
          out[last] = e
          if e.type == "directory" then
            ntodo = ntodo + 1
            todo[ntodo] = p
          end
        end
      end
    end
    local e = out[first]
    out[first] = nil
    first = first + 1
    return e
  end
  local closer = setmetatable({}, { __close = function()
    for j = 1, #running do request_cancel(running[j]) end
  end })
  return iter, nil, nil, closer
end

return M
