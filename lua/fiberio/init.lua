-- fiberio — async I/O for Lua 5.4 on io_uring.
-- The C core (fiberio.core) gives fibers, timers and I/O; this layer adds
-- what is best written in Lua: group, timeout, shield.
local core = require "fiberio.core"

local M = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then M[k] = v end
end

local Canceled = core.Canceled
local async, join, request_cancel, observe = core.async, core._join, core._request_cancel, core._observe
local pack, unpack = table.pack, table.unpack

M._VERSION = "fiberio scm"

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

-- Join every future in list (a cancel of the caller is taken once, then the
-- rest are still joined, shielded, so no member outlives its group).
local function join_all(list, from)
  local i = from or 1
  while i <= #list do
    local ok, err = pcall(join, list[i])
    if not ok then
      for j = 1, #list do request_cancel(list[j]) end
      M.shield(join_all, list, i)
      error(err, 0)
    end
    i = i + 1
  end
end

-- fio.group(): structured concurrency. g:async(fn, ...) starts a member;
-- g:wait() waits for all, the first error canceling the others and being
-- re-raised; g:cancel() cancels all and waits for them.
local Group = {}
Group.__index = Group

local function settle(g, ok, ...)
  if not ok then
    local err = ...
    if err ~= Canceled and not g.failed then
      g.failed, g.err = true, err
      for i = 1, #g.members do request_cancel(g.members[i]) end
    end
    error(err, 0)
  end
  return ...
end

local function member(g, fn, ...)
  return settle(g, pcall(fn, ...))
end

function Group:async(fn, ...)
  assert(type(fn) == "function", "bad argument #1 to 'async' (function expected)")
  local f = async(member, self, fn, ...)
  self.members[#self.members + 1] = f
  return f
end

local function settled(g)
  for i = 1, #g.members do observe(g.members[i]) end
  if g.failed then error(g.err, 0) end
  return true
end

function Group:wait()
  join_all(self.members)
  return settled(self)
end

function Group:cancel()
  for i = 1, #self.members do request_cancel(self.members[i]) end
  join_all(self.members)
  for i = 1, #self.members do observe(self.members[i]) end
end

function M.group()
  return setmetatable({ members = {}, failed = false }, Group)
end

-- fio.timeout(s, fn, ...): fn's results, or nil, "timeout" once fn's fiber
-- has been canceled at the deadline.
local function after_cancel(r)
  if r.n == 2 and r[1] == nil and r[2] == Canceled then return nil, "timeout" end
  return unpack(r, 1, r.n)
end
function M.timeout(s, fn, ...)
  assert(type(s) == "number", "bad argument #1 to 'timeout' (number expected)")
  local f = async(fn, ...)
  local ok, done = pcall(join, f, s)
  if not ok then
    M.shield(core.cancel, f)
    error(done, 0)
  end
  if done then return f:await() end
  return after_cancel(pack(core.cancel(f)))
end

return M
