-- fiberio.group — fio.group, structured concurrency, written over the C
-- core's fibers.
--
-- This file returns a function that init.lua calls with the module table
-- the first time fio.group is used (a script that never groups does not
-- compile it at start-up), to put it there (each function then has one
-- name, fiberio.NAME, in tracebacks: see init.lua).
local core = require "fiberio.core"
local check = require "fiberio.check"

local Canceled = core.Canceled
local async, join, request_cancel, observe = core.async, core._join, core._request_cancel, core._observe
local argerror, checkfunction, checkopts = check.argerror, check.func, check.opts
local fio -- the module table (join_all shields through fio.shield)

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
    fio.shield(join_members, g)
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

local function group(opts)
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

return function(m)
  fio = m
  fio.group = group
end
