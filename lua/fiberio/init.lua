-- fiberio — async I/O for Lua 5.4 on io_uring.
-- The C core (fiberio.core) gives fibers, timers and I/O; this layer adds
-- what is best written in Lua: timeout and shield here; structured
-- concurrency (group) in group.lua; the coordination between fibers
-- (semaphore, mutex, condition, queue) in sync.lua; the file-system
-- helpers (mkdirp, scandir, walk) in fs.lua. check.lua has the argument
-- checks they share.
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
local async, join = core.async, core._join
local pack, unpack = table.pack, table.unpack

local argerror, checkfunction = check.argerror, check.func

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
-- does not compile them at start-up (compiling is most of require's time).
-- A layer is a module that returns its installer, or the installer itself:
-- fio.errno's (its 134 names were a tenth of require's time).
local function install_errno(m)
  m.errno = core._errno()
  core.errno = m.errno -- (the same table as fiberio.core.errno)
end
local later = {
  group = "fiberio.group", errno = install_errno,
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
  if type(layer) == "string" then layer = require(layer) end
  layer(M)
  return rawget(M, name)
end })

return M
