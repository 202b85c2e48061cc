-- Shared helpers for the fiberio specs. Each spec file requires this module
-- itself (`local helper = require "helper"`), so every file runs alone:
--   sh tools/runspecs.sh build spec/fiber_spec.lua
local fio = require "fiberio"

local helper = { fio = fio }

-- Generous upper bounds for "returns promptly" are scaled when the suite runs
-- under a checker that slows everything down. The bounds only say "did not
-- wait for the 10 s sleep": they are never speed assertions.
local slow = ({ asan = 4, tsan = 10, valgrind = 40 })[os.getenv("FIBERIO_SANITIZE") or ""] or 1

-- A bound in seconds for something that must happen "promptly".
function helper.bound(seconds)
  return seconds * slow
end

-- How long a fiber that must be interrupted sleeps or blocks: far longer than
-- any bound, so that returning within the bound proves the interruption.
helper.LONG = 10

-- An event log: `local log, rec = helper.log()`; `rec("x")` appends "x".
function helper.log()
  local log = {}
  return log, function(event) log[#log + 1] = event end
end

-- Pack results with their count, so trailing nils are kept: compare with
-- assert.same(helper.pack(1, nil, 3, nil), helper.pack(f:await())).
function helper.pack(...)
  return { n = select("#", ...), ... }
end

-- Seconds spent in fn(...), and fn's results packed.
function helper.timed(fn, ...)
  local t0 = fio.now()
  local r = helper.pack(fn(...))
  return fio.now() - t0, r
end

-- A to-be-closed value that records how it was closed: `closed` is true once
-- __close ran and `err` holds the error it was closed with (nil if none).
function helper.closer(name, rec)
  local c = { closed = false }
  return setmetatable(c, {
    __close = function(self, err)
      self.closed = true
      self.err = err
      if rec then rec(name) end
    end,
  })
end

-- Send s through a pipe write end so the reader sees it. Whether a pipe's
-- write end is buffered in user space is not part of the contract, so flush
-- when the handle has a flush method.
function helper.send(w, s)
  local r = w:write(s)
  if w.flush then w:flush() end
  return r
end

-- A to-be-closed guard over pipe handles, for specs where a fiber blocks on
-- a pipe: when the spec's scope ends (errors included) it closes the given
-- handles and any added later with guard.add(...), ignoring those already
-- closed. Closing a handle ends the reads and writes in flight on it, so a
-- failing spec leaves no fiber blocked forever and fio.run returns. A
-- watchdog fiber also closes them if the spec is still running after
-- helper.bound(5) s (something blocked that should not have); the guard then
-- raises so the spec fails with that reason instead of hanging the suite.
function helper.closing(...)
  local handles = table.pack(...)
  local state = { done = false, fired = false }
  local function close_all()
    -- last given first: helper.closing(r, w) closes w before r, so a write
    -- in flight is never left facing a closed read end (SIGPIPE).
    for i = handles.n, 1, -1 do pcall(handles[i].close, handles[i]) end
  end
  local guard = {}
  function guard.add(...)
    for i = 1, select("#", ...) do
      handles.n = handles.n + 1
      handles[handles.n] = select(i, ...)
    end
  end
  local limit = helper.bound(5)
  fio.async(function()
    local deadline = fio.now() + limit
    while not state.done do
      if fio.now() >= deadline then
        state.fired = true
        close_all()
        return
      end
      fio.sleep(0.01)
    end
  end)
  return setmetatable(guard, {
    __close = function(_, err)
      state.done = true
      close_all()
      if state.fired and err == nil then
        error("watchdog: the spec was still blocked on a pipe after " .. limit .. " s; its handles were closed", 0)
      end
    end,
  })
end

-- Full garbage collection (twice: userdata with __gc need a second cycle
-- before their memory is freed).
function helper.fullgc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Number of open file descriptors of this process; only differences between
-- two calls mean something. lfs (which busted itself needs) lists
-- /proc/self/fd in process. The fallback lists it from a child: popen's pipe
-- has both ends open in this process for a moment after the child starts, so
-- take the smallest of a few counts.
local has_lfs, lfs = pcall(require, "lfs")
local pid
function helper.open_fds()
  if has_lfs then
    local n = 0
    for name in lfs.dir("/proc/self/fd") do
      if name ~= "." and name ~= ".." then n = n + 1 end
    end
    return n
  end
  if not pid then
    local f = assert(io.open("/proc/self/stat"))
    pid = f:read("l"):match("^(%d+)")
    f:close()
  end
  local best = math.huge
  for _ = 1, 3 do
    local p = assert(io.popen("ls /proc/" .. pid .. "/fd"))
    local n = 0
    for _ in p:lines() do n = n + 1 end
    p:close()
    best = math.min(best, n)
  end
  return best
end

-- The number an octal string (a file mode) stands for.
function helper.octal(s) return tonumber(s, 8) end

-- File fixtures, made and checked with io and os, not with the code under
-- test. put writes s to path; get returns path's content, or nil if it
-- cannot be opened.
function helper.put(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

function helper.get(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The environment words (quoted, each followed by a space) for a Lua child
-- that loads this build: this process's LUA_PATH and LUA_CPATH, and under
-- ASan (make check) its runtime, which this build's core.so needs
-- (LD_PRELOAD). Shells and standard tools run without it.
function helper.lua_env()
  local q, preload = helper.shquote, os.getenv("LD_PRELOAD")
  return "LUA_PATH=" .. q(os.getenv("LUA_PATH") or package.path) ..
         " LUA_CPATH=" .. q(os.getenv("LUA_CPATH") or package.cpath) .. " " ..
         (preload and "LD_PRELOAD=" .. q(preload) .. " " or "")
end

-- The project's examples directory, as an absolute path.
function helper.examples_dir()
  local src = debug.getinfo(1, "S").source:match("^@(.*)$") or "spec/helper.lua"
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local cwd = os.getenv("PWD")
    if not cwd then
      local p = assert(io.popen("pwd"))
      cwd = p:read("l")
      p:close()
    end
    dir = cwd .. "/" .. dir
  end
  return dir .. "/../examples"
end

-- A new directory /tmp/fiberio-<tag>-XXXXXX; rmtree removes a tree even
-- where the specs took permissions away.
function helper.mktempdir(tag)
  local p = assert(io.popen("mktemp -d /tmp/fiberio-" .. tag .. "-XXXXXX"))
  local d = p:read("l")
  p:close()
  assert(d and d ~= "", "mktemp -d failed")
  return d
end

-- Unmount what a spec mounted. A file the ring or a pool thread used may
-- be released a moment after its close (the kernel's deferred fput), so a
-- busy mount is tried again, and detached (umount -l) as a last resort.
function helper.umount(d)
  local q = helper.shquote(d)
  os.execute("umount " .. q .. " 2>/dev/null || (sleep 0.2; umount " .. q .. " 2>/dev/null) || umount -l " .. q)
end

function helper.rmtree(d)
  os.execute("chmod -R u+rwx " .. helper.shquote(d) .. " 2>/dev/null; rm -rf " .. helper.shquote(d))
end

-- s quoted for sh: one word, whatever it holds.
function helper.shquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
local shquote = helper.shquote

-- Run `code` in a child lua5.4 with this process's LUA_PATH and LUA_CPATH
-- (and FIBERIO_BACKEND, inherited) and the extra environment env (a table,
-- optional). Returns the child's stdout and stderr merged, and its exit
-- code.
function helper.child(code, env_vars)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(code)
  f:close()
  local env = ""
  local path = os.getenv("LUA_PATH") or package.path
  local cpath = os.getenv("LUA_CPATH") or package.cpath
  env = "LUA_PATH=" .. shquote(path) .. " LUA_CPATH=" .. shquote(cpath) .. " "
  for k, v in pairs(env_vars or {}) do env = env .. k .. "=" .. shquote(tostring(v)) .. " " end
  -- (killed after a generous bound, so a hang fails the spec: status 124)
  local p = assert(io.popen(env .. "timeout -k 2 " .. math.floor(helper.bound(30)) .. " lua5.4 "
                            .. shquote(file) .. " 2>&1"))
  local out = p:read("a")
  local _, _, code_ = p:close()
  os.remove(file)
  return out, code_
end

-- Why helper.host cannot run here (for pending()), or nil.
function helper.host_missing()
  if not os.getenv("FIBERIO_HOST") then
    return "FIBERIO_HOST is not set: run the suite with tools/runspecs.sh"
  end
  if os.getenv("FIBERIO_SANITIZE") == "tsan" then
    return "the C host does not start under TSan's loader here; the plain and ASan runs check this"
  end
end

-- Run `code` under tools/host.c (build/host: a C program that embeds Lua,
-- runs the code in a new lua_State and closes it, per round) with args
-- ("3": three rounds; "1 cpu": one, with the close's CPU and wall time) and
-- the extra environment env (a table), this process's module paths, and a
-- generous time bound. Returns the host's output (stdout and stderr).
function helper.host(code, args, env)
  local host = assert(os.getenv("FIBERIO_HOST"), "FIBERIO_HOST is not set")
  local file = os.tmpname()
  helper.put(file, code)
  local vars = { "LUA_PATH=" .. shquote(package.path), "LUA_CPATH=" .. shquote(package.cpath) }
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. shquote(tostring(v)) end
  local p = assert(io.popen("env " .. table.concat(vars, " ") .. " timeout "
                            .. math.floor(helper.bound(30)) .. " " .. shquote(host) .. " "
                            .. shquote(file) .. " " .. args .. " 2>&1"))
  local out = p:read("a")
  p:close()
  os.remove(file)
  return out
end

-- The backend the suite was asked to test, or nil when FIBERIO_BACKEND is
-- unset.
-- Whether the running kernel is major.minor or later (for io_uring features
-- that specs expect only there), and its release string.
function helper.kernel_at_least(major, minor)
  local rel = helper.get("/proc/sys/kernel/osrelease") or ""
  local a, b = rel:match("^(%d+)%.(%d+)")
  a, b = tonumber(a), tonumber(b)
  return a ~= nil and (a > major or (a == major and b >= minor)), rel:gsub("%s+$", "")
end

function helper.wanted_backend()
  local b = os.getenv("FIBERIO_BACKEND")
  if b == "" then return nil end
  return b
end

-- Why io_uring cannot start in this environment, or nil when nothing says so.
function helper.io_uring_unavailable()
  local f = io.open("/proc/sys/kernel/io_uring_disabled")
  if f then
    local v = tonumber(f:read("l"))
    f:close()
    if v and v >= 2 then return "kernel.io_uring_disabled = " .. v end
  end
  return nil
end

-- Called at the top of a spec file with busted's describe, it and pending:
--   if helper.backend_gate(describe, it, pending) then return end
-- When the backend named by FIBERIO_BACKEND does not start, the file is
-- replaced by one spec saying why: pending when this environment cannot run
-- io_uring (sysctl, seccomp: EPERM, ENOSYS), failing otherwise (a backend
-- the core lacks is a failure, not a silent pass). Returns true then.
function helper.backend_gate(describe_, it_, pending_)
  local ok, err = pcall(fio.backend)
  if ok then return false end
  local want = helper.wanted_backend() or "auto"
  local why = tostring(err)
  local env = helper.io_uring_unavailable()
  if not env and want == "io_uring" then
    for _, s in ipairs { "EPERM", "ENOSYS", "Operation not permitted", "Function not implemented", "seccomp" } do
      if why:find(s, 1, true) then env = why break end
    end
  end
  describe_("backend " .. want, function()
    -- (pending at describe level: inside a running `it`, busted's
    -- file-level pending would not end the spec)
    if want == "io_uring" and env then
      pending_("io_uring cannot start here: " .. env)
    else
      it_("starts", function()
        error("backend " .. want .. " does not start: " .. why, 0)
      end)
    end
  end)
  return true
end

return helper
