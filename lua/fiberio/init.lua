-- fiberio — async I/O for Lua 5.4 on io_uring.
-- The C core (fiberio.core) gives fibers, timers and I/O; this layer adds
-- what is best written in Lua: group, timeout, shield here; the
-- coordination between fibers (semaphore, mutex, condition, queue) in
-- sync.lua; the file-system helpers (mkdirp, scandir, walk) in fs.lua.
-- check.lua has the argument checks they share.
local core = require "fiberio.core"
local check = require "fiberio.check"

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

local argerror, checkfunction, checkopts = check.argerror, check.func, check.opts

M._VERSION = "fiberio 0.1.0"
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

-- The other layers put their functions on M (sync.lua takes fio.shield
-- from it) when one of them is first used: a script that never uses them
-- does not compile them at start-up, which is a quarter of require's time.
local later = {
  semaphore = "fiberio.sync", mutex = "fiberio.sync", condition = "fiberio.sync",
  queue = "fiberio.sync", mkdirp = "fiberio.fs", scandir = "fiberio.fs", walk = "fiberio.fs", rmtree = "fiberio.fs",
  spawn = "fiberio.process", exec = "fiberio.process", popen = "fiberio.process",
  watch = "fiberio.watch",
  resolve = "fiberio.socket", connect = "fiberio.socket", listen = "fiberio.socket",
  udp = "fiberio.socket", socketpair = "fiberio.socket",
}
setmetatable(M, { __index = function(_, name)
  local layer = later[name]
  if not layer then return nil end
  for k, l in pairs(later) do
    if l == layer then later[k] = nil end
  end
  require(layer)(M)
  return rawget(M, name)
end })

return M
