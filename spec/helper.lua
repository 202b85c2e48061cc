-- Shared helpers for the fiberio specs. Each spec file requires this module
-- itself (`local helper = require "helper"`), so every file runs alone:
--   sh tools/runspecs.sh build spec/fiber_spec.lua
local fio = require "fiberio"

local helper = { fio = fio }

-- s quoted for sh: one word, whatever it holds.
function helper.shquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
local shquote = helper.shquote

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

-- This process's id, a string.
local pid
function helper.pid()
  if not pid then
    local f = assert(io.open("/proc/self/stat"))
    pid = f:read("l"):match("^(%d+)")
    f:close()
  end
  return pid
end

-- Number of open file descriptors of this process; only differences between
-- two calls mean something. lfs (which busted itself needs) lists
-- /proc/self/fd in process. The fallback lists it from a child: popen's pipe
-- has both ends open in this process for a moment after the child starts, so
-- take the smallest of a few counts. (A child lua5.4 counts its own with
-- require("helper").open_fds: LUA_PATH has spec/.)
local has_lfs, lfs = pcall(require, "lfs")
function helper.open_fds()
  if has_lfs then
    local n = 0
    for name in lfs.dir("/proc/self/fd") do
      if name ~= "." and name ~= ".." then n = n + 1 end
    end
    return n
  end
  local best = math.huge
  for _ = 1, 3 do
    local p = assert(io.popen("ls /proc/" .. helper.pid() .. "/fd"))
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

-- Whether path names anything, a dangling symlink included (its lstat
-- succeeds): with lfs in process, or test(1) where lfs is missing.
function helper.exists(path)
  if has_lfs then return lfs.symlinkattributes(path, "mode") ~= nil end
  return os.execute("test -e " .. shquote(path) .. " || test -L " .. shquote(path)) == true
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

-- Run the shell command line cmd with sh, without a sanitizer's LD_PRELOAD
-- (the standard tools are not what the specs check, and a leak report of
-- theirs must not count). Returns its stdout, its stderr and its exit code
-- (128 + N when signal N ended it).
function helper.sh(cmd)
  local errfile = os.tmpname()
  local p = assert(io.popen("(exec env -u LD_PRELOAD sh -c " .. shquote(cmd) .. ") 2>" .. shquote(errfile)))
  local out = p:read("a")
  local _, how, n = p:close()
  local err = helper.get(errfile) or ""
  os.remove(errfile)
  return out, err, how == "signal" and 128 + n or n
end

-- The lines a shell command prints on stdout, as an array.
function helper.lines_of(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

-- helper.sh(cmd) for a command that must succeed: its stdout, or an error
-- (at the caller) with cmd, its exit code and its stderr.
function helper.sh_ok(cmd)
  local out, err, code = helper.sh(cmd)
  if code ~= 0 then error(("command failed (exit %d): %s\n%s"):format(code, cmd, err), 2) end
  return out
end

-- Environment words for env(1): NAME='value' and a space for each field of
-- vars (a table, or nil), in name order.
local function env_words(vars)
  local names = {}
  for k in pairs(vars or {}) do names[#names + 1] = k end
  table.sort(names)
  local t = {}
  for i, k in ipairs(names) do t[i] = k .. "=" .. shquote(tostring(vars[k])) .. " " end
  return table.concat(t)
end

-- Run `program file args` (program: "lua5.4" or build/host, args: shell
-- words) as helper.child says, and remove file.
local function run_lua(program, file, args, opts)
  local limit = opts.timeout or helper.bound(30)
  local cmd = (opts.prefix or "") ..
    "env -u LD_PRELOAD timeout -s KILL " .. ("%g"):format(limit) .. " " ..
    (opts.wrapper and opts.wrapper .. " " or "") ..
    "env " .. helper.lua_env() .. env_words(opts.env) .. program .. " " .. shquote(file) .. " " .. args ..
    " 2>&1 " .. (opts.redirect or "")
  local t0 = fio.now()
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, how, n = p:close()
  local dt = fio.now() - t0
  os.remove(file)
  local rc = how == "signal" and 128 + n or n
  if rc == 137 and dt >= limit then
    error(("the child was killed by its timeout (%g s): a hang? Its output:\n%s"):format(limit, out), 3)
  end
  return out, rc, dt
end

local CHILD_OPTIONS = { env = true, wrapper = true, prefix = true, redirect = true, timeout = true,
                       unbuffered = true, file = true }

-- Run code in a child lua5.4 that loads this build: this process's
-- environment (FIBERIO_BACKEND included) and module paths, and under a
-- sanitizer its runtime (helper.lua_env). Every option may be left out:
--   env        extra environment variables for lua5.4 (a table); they win
--              over the inherited ones
--   wrapper    shell words for a program that runs the rest of the line
--              (build/noring -e EPERM, setpriv ..., perl -e ...)
--   prefix     shell words before it in the same shell: commands
--              ("ulimit -f 1024; ") or the start of a pipeline ("cmd | ")
--   redirect   redirections after the 2>&1 that merges stderr into the
--              output ("< file", "<&- >&-", "2> file" for stderr apart)
--   timeout    seconds before it is killed, default helper.bound(30)
--   unbuffered its stdout unbuffered, so that what it printed before a hang
--              or a crash is kept (a first line io.stdout:setvbuf('no'):
--              its chunk's line numbers are one more)
--   file       where to write the chunk (default a new os.tmpname());
--              removed afterwards
-- sh, timeout and the wrapper run without a sanitizer's LD_PRELOAD.
-- Returns its output (stdout and stderr merged, unless redirect says
-- otherwise), its exit code (128 + N when signal N ended it) and the
-- seconds it ran. A child killed by the timeout raises an error at the
-- caller instead, with what it printed: a hang fails its spec. So does an
-- option not listed here.
function helper.child(code, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not CHILD_OPTIONS[k] then error("helper.child: no option " .. tostring(k), 2) end
  end
  local file = opts.file or os.tmpname()
  helper.put(file, (opts.unbuffered and "io.stdout:setvbuf('no')\n" or "") .. code)
  local out, rc, dt = run_lua("lua5.4", file, "", opts)
  return out, rc, dt
end

-- Start the loop and whatever it creates lazily (the ring or the pool's
-- threads, the wake-up fds) before counting fds: files, paths, a walk and
-- pipes, a canceled read included, in a temporary directory of its own.
function helper.warm()
  local dir = helper.mktempdir("warm")
  local p = dir .. "/warm"
  fio.run(function()
    local f = assert(fio.open(p, "w+"))
    f:write("x"):seek("set")
    assert(f:read("a") == "x")
    f:pwrite("y", 0)
    f:stat()
    f:sync()
    f:close()
    local s = fio.async(function() return fio.stat(p) end)
    s:await()
    assert(fio.writefile(p, "x"))
    assert(fio.readfile(p))
    assert(fio.copyfile(p, p .. "2"))
    for _ in fio.walk(dir) do end
    assert(fio.unlink(p))
    assert(fio.unlink(p .. "2"))
    local r, w = fio.pipe()
    helper.send(w, "x")
    assert(r:read(1) == "x")
    local reader = fio.async(function() return r:read(1) end)
    fio.sleep(0.005)
    fio.cancel(reader)
    r:close()
    w:close()
  end)
  helper.rmtree(dir)
  helper.fullgc()
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
-- the extra environment env (a table), as helper.child runs lua5.4.
-- Returns the host's output (stdout and stderr).
function helper.host(code, args, env)
  local host = assert(os.getenv("FIBERIO_HOST"), "FIBERIO_HOST is not set")
  local file = os.tmpname()
  helper.put(file, code)
  return (run_lua(shquote(host), file, args, { env = env }))
end

-- Whether the running kernel is major.minor or later (for io_uring features
-- that specs expect only there), and its release string.
function helper.kernel_at_least(major, minor)
  local rel = helper.get("/proc/sys/kernel/osrelease") or ""
  local a, b = rel:match("^(%d+)%.(%d+)")
  a, b = tonumber(a), tonumber(b)
  return a ~= nil and (a > major or (a == major and b >= minor)), rel:gsub("%s+$", "")
end

-- tools/failalloc.so, to preload in a child (FAIL_ALLOC_SIZE: the size of
-- allocation that fails), or nil and why it cannot be had in this run.
function helper.failalloc()
  if os.getenv("FIBERIO_SANITIZE") then
    return nil, "the allocation-failing preload cannot go before a sanitizer's runtime"
  end
  local lib = os.getenv("FIBERIO_FAILALLOC")
  if not lib then return nil, "FIBERIO_FAILALLOC is not set: run the suite with tools/runspecs.sh" end
  return lib
end

-- The backend the suite was asked to test, or nil when FIBERIO_BACKEND is
-- unset.
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
