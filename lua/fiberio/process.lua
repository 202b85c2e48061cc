-- fiberio.process — subprocesses: fio.spawn, fio.exec, fio.popen, over the
-- C core's core._spawn (vfork and exec: csrc/util/spawn.c) and
-- core._pwait (a cancelable wait on the child's pidfd: io_uring WAITID,
-- a poll of the pidfd, or the threads backend's epoll; before Linux 5.3 a
-- poll of an eventfd written once SIGCHLD's thread reaped it).
--
-- This file returns a function that init.lua calls with the module table.
local core = require "fiberio.core"
local check = require "fiberio.check"

local argerror, checkopts = check.argerror, check.opts
local spawn_c, pwait, pstatus, pkill, pclose, signum =
  core._spawn, core._pwait, core._pstatus, core._pkill, core._pclose, core._signum

local SPAWN_OPTS = { env = true, addenv = true, cwd = true, stdin = true, stdout = true,
  stderr = true, detach = true, pgroup = true, umask = true, kill_on_cancel = true, grace = true }
local FLAG_SETSID, FLAG_PGROUP = 1, 2

return function(fio)
  local Process = {}
  Process.__index = Process
  Process.__name = "fiberio.Process"

  local function tosig(sig, arg, fname)
    if sig == nil then return 15 end
    if math.type(sig) == "integer" then return sig end
    local n = type(sig) == "string" and signum(sig)
    if not n then argerror(arg, fname, "signal name or number expected, got " .. tostring(sig)) end
    return n
  end

  -- How a stdio option becomes the child's fd: -1 inherit, -2 /dev/null,
  -- a pipe (the parent's end kept, the child's closed after the spawn),
  -- or a File's own fd.
  local function stdio(spec, i, name, pipes)
    if spec == nil or spec == "inherit" then return -1 end
    if spec == "null" then return -2 end
    if spec == "pipe" then
      local r, w = fio.pipe()
      if not r then error(w, 0) end
      if i == 0 then
        pipes[#pipes + 1] = r
        return r:fd(), w
      end
      pipes[#pipes + 1] = w
      return w:fd(), r
    end
    if spec == "stdout" and i == 2 then return "stdout" end
    if fio.type(spec) == "file" then return spec:fd() end
    argerror(2, "spawn", name .. " must be \"inherit\", \"pipe\", \"null\", a File"
      .. (i == 2 and " or \"stdout\"" or "") .. ", got " .. tostring(spec))
  end

  local function envlist(env, add)
    local t = {}
    if add then
      for k, v in pairs(add) do
        if type(k) ~= "string" or type(v) ~= "string" then
          argerror(2, "spawn", "addenv must map names to strings")
        end
      end
      -- this process's, less what addenv replaces
      local p = io.open("/proc/self/environ", "rb")
      local all = p and p:read("a") or ""
      if p then p:close() end
      for kv in all:gmatch("([^%z]+)") do
        local k = kv:match("^([^=]*)")
        if add[k] == nil then t[#t + 1] = kv end
      end
      for k, v in pairs(add) do t[#t + 1] = k .. "=" .. v end
      return t
    end
    for k, v in pairs(env) do
      if type(k) ~= "string" or type(v) ~= "string" then
        argerror(2, "spawn", "env must map names to strings")
      end
      t[#t + 1] = k .. "=" .. v
    end
    return t
  end

  -- fio.spawn(argv [, opts]) -> Process | nil, "argv[1]: message", errno
  function fio.spawn(argv, opts)
    if type(argv) ~= "table" then argerror(1, "spawn", "table expected, got " .. type(argv)) end
    if type(argv[1]) ~= "string" then argerror(1, "spawn", "argv[1] must be the program (a string)") end
    for i = 1, #argv do
      if type(argv[i]) ~= "string" then argerror(1, "spawn", "argv[" .. i .. "] is not a string") end
    end
    checkopts(opts, 2, "spawn", SPAWN_OPTS)
    opts = opts or {}
    if opts.env ~= nil and type(opts.env) ~= "table" then argerror(2, "spawn", "env must be a table") end
    if opts.addenv ~= nil and type(opts.addenv) ~= "table" then argerror(2, "spawn", "addenv must be a table") end
    if opts.cwd ~= nil and type(opts.cwd) ~= "string" then argerror(2, "spawn", "cwd must be a string") end
    local um = -1
    if opts.umask ~= nil then
      um = math.type(opts.umask) == "integer" and opts.umask
        or type(opts.umask) == "string" and tonumber(opts.umask, 8)
      if not um or um < 0 or um > 511 then argerror(2, "spawn", "umask must be 0 to 0777") end
    end
    local grace = opts.grace or 1
    if type(grace) ~= "number" or grace < 0 then argerror(2, "spawn", "grace must be seconds") end
    local env = (opts.env or opts.addenv) and envlist(opts.env or {}, opts.addenv)
    local pipes = {} -- the child's ends, closed here after the spawn
    local fd0, e0 = stdio(opts.stdin, 0, "stdin", pipes)
    local fd1, e1 = stdio(opts.stdout, 1, "stdout", pipes)
    local fd2, e2 = stdio(opts.stderr, 2, "stderr", pipes)
    if fd2 == "stdout" then fd2 = fd1 == -1 and 1 or fd1 end
    local flags = (opts.detach and FLAG_SETSID or 0) | (opts.pgroup and FLAG_PGROUP or 0)
    local h, pid, errno_ = spawn_c(argv, env, opts.cwd, fd0, fd1, fd2, flags, um)
    for _, f in ipairs(pipes) do f:close() end
    if not h then
      for _, f in ipairs { e0, e1, e2 } do f:close() end
      return nil, pid, errno_
    end
    return setmetatable({ pid = pid, stdin = e0, stdout = e1, stderr = e2, _h = h,
      _kill = opts.kill_on_cancel, _grace = grace }, Process)
  end

  -- The child, after a cancel of a wait: TERM, grace seconds, KILL; then
  -- reaped. Shielded: a second cancel does not leave it half done.
  local function stop_child(p)
    fio.shield(function()
      if pstatus(p._h) then return end
      pkill(p._h, 15)
      if not fio.timeout(p._grace, pwait, p._h) then
        pkill(p._h, 9)
        pwait(p._h)
      end
    end)
  end

  local function waited(p, ok, ...)
    if ok then return ... end
    local err = ...
    if err == fio.Canceled and p._kill then stop_child(p) end
    error(err, 0)
  end

  -- p:wait() -> "exit", code | "signal", name, number
  function Process:wait()
    return waited(self, pcall(pwait, self._h))
  end

  -- p:status() -> how it ended, or nil while it runs (never waits)
  function Process:status()
    return pstatus(self._h)
  end

  -- p:kill([sig]) -> true | nil, msg, errno (default TERM)
  function Process:kill(sig)
    return pkill(self._h, tosig(sig, 1, "kill"))
  end

  -- p:close(): its pipes closed; a child still running is left to run and
  -- reaped when it ends (kill it first to stop it).
  function Process:close()
    for _, k in ipairs { "stdin", "stdout", "stderr" } do
      local f = rawget(self, k)
      if f and fio.type(f) == "file" then f:close() end
    end
    pclose(self._h)
  end
  Process.__close = Process.close

  function Process:__tostring()
    return ("fiberio.Process (%d)"):format(self.pid)
  end

  -- fio.exec(argv [, opts]) -> stdout, stderr, how, code: the output read
  -- whole, both pipes at once; opts.input fed to stdin. kill_on_cancel
  -- defaults to true: a canceled exec (fio.timeout) leaves no child.
  local EXEC_OPTS = { input = true }
  for k in pairs(SPAWN_OPTS) do EXEC_OPTS[k] = true end
  function fio.exec(argv, opts)
    checkopts(opts, 2, "exec", EXEC_OPTS)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    local input = o.input
    if input ~= nil and type(input) ~= "string" then argerror(2, "exec", "input must be a string") end
    o.input = nil
    o.stdout, o.stderr = "pipe", "pipe"
    if input then o.stdin = "pipe" elseif o.stdin == nil then o.stdin = "null" end
    if o.kill_on_cancel == nil then o.kill_on_cancel = true end
    local p, msg, err = fio.spawn(argv, o)
    if not p then return nil, msg, err end
    local feeder, out, errout
    local ok, e = pcall(function()
      if input then
        feeder = fio.async(function()
          p.stdin:write(input) -- (a child that stops reading: EPIPE, ignored)
          p.stdin:close()
        end)
      end
      local fo = fio.async(p.stdout.read, p.stdout, "a")
      errout = p.stderr:read("a")
      out = fo:await()
      if feeder then feeder:await() end
    end)
    if not ok then
      if feeder then fio.shield(fio.cancel, feeder) end
      if e == fio.Canceled and p._kill then stop_child(p) end
      p:close()
      error(e, 0)
    end
    local r = table.pack(p:wait())
    p:close()
    return out, errout, table.unpack(r, 1, r.n)
  end

  -- fio.popen(cmd [, mode]) -> a handle with io.popen's interface: read,
  -- lines (mode "r") or write (mode "w"), close -> true | nil, "exit" |
  -- "signal", code, as io.popen's close.
  local Popen = {}
  Popen.__index = Popen
  Popen.__name = "fiberio.popen"
  function fio.popen(cmd, mode)
    if type(cmd) ~= "string" then argerror(1, "popen", "string expected, got " .. type(cmd)) end
    mode = mode or "r"
    if mode ~= "r" and mode ~= "w" then argerror(2, "popen", "invalid mode '" .. tostring(mode) .. "'") end
    local p, msg, err = fio.spawn({ "/bin/sh", "-c", cmd },
      mode == "r" and { stdout = "pipe" } or { stdin = "pipe" })
    if not p then return nil, msg, err end
    return setmetatable({ _p = p, _f = mode == "r" and p.stdout or p.stdin }, Popen)
  end
  function Popen:read(...) return self._f:read(...) end
  function Popen:lines(...) return self._f:lines(...) end
  function Popen:write(...)
    local ok, msg, err = self._f:write(...)
    if not ok then return nil, msg, err end
    return self
  end
  function Popen:flush() return self._f:flush() end
  function Popen:setvbuf(...) return self._f:setvbuf(...) end
  function Popen:close()
    self._f:close()
    local how, code, num = self._p:wait()
    self._p:close()
    if how == "signal" then code = num end
    if how == "exit" and code == 0 then return true, how, code end
    return nil, how, code
  end
  Popen.__close = Popen.close
  function Popen:__tostring() return "fiberio.popen (" .. self._p.pid .. ")" end
end
