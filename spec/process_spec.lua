-- Subprocesses (issue 16): fio.spawn, Process, fio.exec, fio.popen, the
-- ways a wait is made (each rung), SIGPIPE, no zombie and no fd left. The
-- shell and io.popen are the oracles.
local helper = require "helper"
if helper.backend_gate(describe, it, pending) then return end
local fio = helper.fio
local pack = helper.pack
local shq = helper.shquote

-- The children of this process still in the process table (zombies too).
local function children()
  local t = {}
  local pid = helper.pid()
  local p = io.popen("cat /proc/" .. pid .. "/task/*/children 2>/dev/null")
  for c in p:read("a"):gmatch("%d+") do
    local stat = io.open("/proc/" .. c .. "/stat")
    -- (the popen's own shell is a child too: not ours)
    local s = stat and stat:read("a") or ""
    if stat then stat:close() end
    if not s:find("%(cat%)") and not s:find("%(sh%)") then t[#t + 1] = c .. " " .. s:match("%) (%a)") end
  end
  p:close()
  return t
end

describe("fio.spawn", function()
  local dir
  before_each(function() dir = helper.mktempdir("proc") end)
  after_each(function()
    helper.rmtree(dir)
    -- no zombie, and no child left running, after any of these
    local left
    for _ = 1, 50 do
      left = children()
      if #left == 0 then break end
      fio.sleep(0.02) -- (one reaped by the reaper thread, just ending)
    end
    assert.same({}, left)
  end)

  it("passes argv as is: spaces, quotes, empty strings, no shell", function()
    local out, err, how, code = fio.exec { "printf", "[%s]\\n", "a b", "c'd", 'e"f', "", "$HOME", "*" }
    assert.equal("[a b]\n[c'd]\n[e\"f]\n[]\n[$HOME]\n[*]\n", out)
    assert.same({ "", "exit", 0 }, { err, how, code })
  end)

  it("env replaces the environment, addenv extends it; cwd and umask", function()
    local out = fio.exec({ "sh", "-c", "echo \"$A|$B|${HOME-unset}\"" }, { env = { A = "1", B = "two words" } })
    assert.equal("1|two words|unset\n", out)
    out = fio.exec({ "sh", "-c", "echo \"$A|${HOME:+home}\"" }, { addenv = { A = "x" } })
    assert.equal("x|home\n", out)
    out = fio.exec({ "pwd" }, { cwd = dir })
    assert.equal(fio.realpath(dir) .. "\n", out)
    out = fio.exec({ "sh", "-c", "umask" }, { umask = "027" })
    assert.equal("0027\n", out)
  end)

  it("stdio: pipe, null, a File, and stderr = 'stdout'", function()
    local p = assert(fio.spawn({ "sh", "-c", "read x; echo got $x; echo oops >&2" },
      { stdin = "pipe", stdout = "pipe", stderr = "stdout" }))
    assert.equal("file", fio.type(p.stdout))
    assert(p.stdin:write("hello\n"))
    p.stdin:close()
    assert.equal("got hello\noops\n", p.stdout:read("a"))
    assert.same(pack("exit", 0), pack(p:wait()))
    p:close()
    -- null: stdin at EOF, output gone
    local out = fio.exec({ "sh", "-c", "cat; echo end" }, { stdin = "null" })
    assert.equal("end\n", out)
    -- a File
    local f = assert(fio.open(dir .. "/out", "w"))
    p = assert(fio.spawn({ "sh", "-c", "echo to-file; echo err-too >&2" }, { stdout = f, stderr = f }))
    assert.same(pack("exit", 0), pack(p:wait()))
    f:close()
    assert.equal("to-file\nerr-too\n", helper.get(dir .. "/out"))
  end)

  it("inherit (the default) gives the child this process's stdio", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local p = fio.spawn { "sh", "-c", "echo from-child; echo to-err >&2" }
      print(p:wait())
    ]])
    assert.equal("from-child\nto-err\nexit\t0\n", out)
  end)

  it("a 100 MiB round trip through cat", function()
    local p = assert(fio.spawn({ "cat" }, { stdin = "pipe", stdout = "pipe" }))
    local chunk = ("0123456789abcdef"):rep(65536) -- 1 MiB
    local writer = fio.async(function()
      for _ = 1, 100 do assert(p.stdin:write(chunk)) end
      p.stdin:close()
    end)
    local n, bad = 0, 0
    while true do
      local s = p.stdout:read(1 << 20)
      if not s then break end
      if s:sub(1, 16) ~= "0123456789abcdef" and (n % 16 == 0) then bad = bad + 1 end
      n = n + #s
    end
    writer:await()
    assert.equal(100 << 20, n)
    assert.equal(0, bad)
    assert.same(pack("exit", 0), pack(p:wait()))
    p:close()
  end)

  it("exec drains 10 MiB on stdout and on stderr at once, without deadlock", function()
    local out, err, how, code = fio.exec { "sh", "-c", "head -c 10485760 /dev/zero; head -c 10485760 /dev/zero >&2; exit 4" }
    assert.equal(10485760, #out)
    assert.equal(10485760, #err)
    assert.same({ "exit", 4 }, { how, code })
    -- and interleaved
    out, err = fio.exec { "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2; done" }
    assert.equal(8000000, #out)
    assert.equal(8000000, #err)
  end)

  it("exit codes and signals", function()
    for _, c in ipairs { 0, 1, 42, 255 } do
      assert.same(pack("", "", "exit", c), pack(fio.exec { "sh", "-c", "exit " .. c }))
    end
    assert.same(pack("", "", "signal", "TERM", 15), pack(fio.exec { "sh", "-c", "kill -TERM $$" }))
    assert.same(pack("", "", "signal", "KILL", 9), pack(fio.exec { "sh", "-c", "kill -KILL $$" }))
  end)

  it("a program that cannot start is an error at the call, not exit 127", function()
    assert.same(pack(nil, "no-such-program-fiberio: No such file or directory", 2),
      pack(fio.spawn { "no-such-program-fiberio" }))
    assert.same(pack(nil, dir .. "/none: No such file or directory", 2), pack(fio.spawn { dir .. "/none" }))
    helper.put(dir .. "/noexec", "#!/bin/sh\n")
    assert.same(pack(nil, dir .. "/noexec: Permission denied", 13), pack(fio.spawn { dir .. "/noexec" }))
    local r = pack(fio.spawn({ "true" }, { cwd = dir .. "/nowhere" }))
    assert.same(pack(nil, "true: No such file or directory", 2), r)
    assert.same(pack(nil, "no-such-program-fiberio: No such file or directory", 2), pack(fio.exec { "no-such-program-fiberio" }))
    assert.same({}, children())
  end)

  it("kill sends a signal (TERM by default, by name or number); after the end: ESRCH", function()
    local p = assert(fio.spawn { "sleep", "10" })
    assert.is_nil(p:status())
    assert.is_true(p:kill())
    assert.same(pack("signal", "TERM", 15), pack(p:wait()))
    assert.same(pack("signal", "TERM", 15), pack(p:status()))
    assert.same(pack(nil, "No such process", 3), pack(p:kill("KILL")))
    p:close()
    p = assert(fio.spawn { "sleep", "10" })
    assert(p:kill("SIGINT"))
    assert.same(pack("signal", "INT", 2), pack(p:wait()))
    p:close()
    p = assert(fio.spawn { "sleep", "10" })
    assert(p:kill(9))
    assert.same(pack("signal", "KILL", 9), pack(p:wait()))
    p:close()
    assert.has_error(function() p:kill("NOPE") end)
  end)

  it("wait from several fibers at once: each gets the end", function()
    local p = assert(fio.spawn { "sh", "-c", "sleep 0.1; exit 5" })
    local got = fio.run(function()
      local fs = {}
      for i = 1, 5 do fs[i] = fio.async(function() return table.concat({ p:wait() }, " ") end) end
      local t = {}
      for i = 1, 5 do t[i] = fs[i]:await() end
      return table.concat(t, ",")
    end)
    assert.equal("exit 5,exit 5,exit 5,exit 5,exit 5", got)
    p:close()
  end)

  it("a canceled wait stops waiting and leaves the child running, unless kill_on_cancel", function()
    local p = assert(fio.spawn { "sleep", "10" })
    local r = pack(fio.timeout(0.05, p.wait, p))
    assert.same(pack(nil, "timeout"), r)
    assert.is_nil(p:status()) -- still running
    p:kill("KILL")
    assert.same(pack("signal", "KILL", 9), pack(p:wait()))
    p:close()
    -- kill_on_cancel: TERM at the cancel, reaped before the cancel ends
    p = assert(fio.spawn({ "sleep", "10" }, { kill_on_cancel = true }))
    local t0 = fio.now()
    r = pack(fio.timeout(0.05, p.wait, p))
    assert.same(pack(nil, "timeout"), r)
    assert.same(pack("signal", "TERM", 15), pack(p:status()))
    -- a child that ignores TERM gets KILL after the grace period
    p:close()
    p = assert(fio.spawn({ "sh", "-c", "trap '' TERM; sleep 10" }, { kill_on_cancel = true, grace = 0.2 }))
    fio.sleep(0.05) -- (the trap is set)
    r = pack(fio.timeout(0.05, p.wait, p))
    assert.same(pack(nil, "timeout"), r)
    assert.same(pack("signal", "KILL", 9), pack(p:status()))
    assert.is_true(fio.now() - t0 < 5)
    p:close()
    assert.same({}, children())
  end)

  it("fio.timeout(s, fio.exec, argv) leaves no child (exec's kill_on_cancel is on)", function()
    local t0 = fio.now()
    assert.same(pack(nil, "timeout"), pack(fio.timeout(0.1, fio.exec, { "sleep", "10" })))
    assert.is_true(fio.now() - t0 < 3)
    assert.same({}, children())
  end)

  it("1,000 concurrent /bin/true, then no zombie and no fd left", function()
    helper.warm()
    local before = helper.open_fds()
    local n = fio.run(function()
      local fs = {}
      for i = 1, 1000 do
        fs[i] = fio.async(function()
          local p = assert(fio.spawn { "/bin/true" })
          local how, code = p:wait()
          p:close()
          return how == "exit" and code == 0
        end)
      end
      local ok = 0
      for i = 1, 1000 do if fs[i]:await() then ok = ok + 1 end end
      return ok
    end)
    assert.equal(1000, n)
    assert.same({}, children())
    assert.equal(before, helper.open_fds())
  end)

  it("a Process closed or collected before its child ends is reaped later (no zombie)", function()
    local p = assert(fio.spawn { "sleep", "0.2" })
    local pid = p.pid
    p:close()
    local q = assert(fio.spawn { "sleep", "0.2" })
    local qpid = q.pid
    q = nil -- luacheck: ignore
    helper.fullgc()
    fio.sleep(0.6)
    for _, c in ipairs(children()) do
      assert(not c:find("^" .. pid .. " ") and not c:find("^" .. qpid .. " "), "left: " .. c)
    end
  end)

  it("a child's fds: only 0, 1, 2 (what it was given), whatever is open here", function()
    local f = assert(fio.open(dir .. "/x", "w")) -- (open here, close-on-exec)
    local r, w = fio.pipe()
    local out = fio.exec { "sh", "-c", "ls /proc/$$/fd" }
    assert.equal("0\n1\n2\n", out)
    f:close(); r:close(); w:close()
  end)

  it("a child's signal mask is empty and no signal ignored (SIGPIPE default)", function()
    -- (this process ignores SIGPIPE since fiberio loaded, and a signal
    -- watched with fio.signal is blocked here)
    local s = fio.signal("USR1")
    -- (grep, the child itself, reads its own status: a shell reading
    -- /proc/$$ could see its own mask, which dash fills while it waits)
    local out = fio.exec { "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status" }
    s:close()
    assert.equal("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", out)
    local _, _, how, sig = fio.exec { "sh", "-c", "yes | head -c 1 >/dev/null; kill -PIPE $$" }
    assert.same({ "signal", "PIPE" }, { how, sig })
  end)

  it("detach puts the child in a new session; pgroup in a new process group", function()
    -- (the child's /proc/$$/stat read by the shell itself: fields 5 and 6
    -- are its process group and session)
    local STAT = { "sh", "-c", "read -r l < /proc/$$/stat; echo $$ ${l##*) }" }
    local function ids(out)
      local pid, _, _, pgrp, sid = out:match("^(%d+) (%S+) (%d+) (%d+) (%d+)")
      return tonumber(pid), tonumber(pgrp), tonumber(sid)
    end
    local pid, pgrp, sid = ids(fio.exec(STAT, { detach = true }))
    assert.equal(pid, sid)
    assert.equal(pid, pgrp)
    pid, pgrp, sid = ids(fio.exec(STAT, { pgroup = true }))
    assert.equal(pid, pgrp)
    assert.is_true(sid ~= pid)
    pid, pgrp = ids(fio.exec(STAT))
    assert.is_true(pgrp ~= pid) -- (inherited: this process's group)
  end)

  it("checks its arguments at the caller's line", function()
    assert.has_error(function() fio.spawn("ls") end)
    assert.has_error(function() fio.spawn({}) end)
    assert.has_error(function() fio.spawn({ "ls", 1 }) end)
    assert.has_error(function() fio.spawn({ "ls" }, { stdout = "file" }) end)
    assert.has_error(function() fio.spawn({ "ls" }, { nope = 1 }) end)
    assert.has_error(function() fio.spawn({ "ls" }, { env = { A = 1 } }) end)
    assert.has_error(function() fio.exec({ "ls" }, { input = 5 }) end)
  end)
end)

describe("fio.popen", function()
  it("reads as io.popen does, with its close results", function()
    for _, cmd in ipairs { "echo a; echo b", "printf 'no newline'", "exit 7", "kill -9 $$", "echo x; kill -TERM $$" } do
      local f = assert(fio.popen(cmd))
      local g = assert(io.popen(cmd))
      assert.equal(g:read("a"), f:read("a"))
      assert.same(pack(g:close()), pack(f:close()))
    end
    local f = assert(fio.popen("printf 'l1\\nl2\\n'"))
    local t = {}
    for l in f:lines() do t[#t + 1] = l end
    assert.same({ "l1", "l2" }, t)
    assert.is_true(f:close())
  end)

  it("writes as io.popen does", function()
    local dir = helper.mktempdir("popen")
    local f = assert(fio.popen("cat > " .. shq(dir .. "/o"), "w"))
    assert.equal(f, f:write("abc", 1, "\n"))
    assert.same(pack(true, "exit", 0), pack(f:close()))
    assert.equal("abc1\n", helper.get(dir .. "/o"))
    helper.rmtree(dir)
  end)

  it("does not block the loop: a ticker ticks while popen's command runs", function()
    local ticks = 0
    fio.run(function()
      local t = fio.async(function() for _ = 1, 5 do fio.sleep(0.02); ticks = ticks + 1 end end)
      local f = fio.popen("sleep 0.3; echo done")
      assert.equal(0, ticks)
      assert.equal("done\n", f:read("a"))
      f:close()
      t:await()
    end)
    assert.equal(5, ticks)
  end)
end)

describe("a write to a pipe whose reader has gone", function()
  it("returns nil, 'Broken pipe', 32 and does not kill the process", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local r, w = fio.pipe()
      r:close()
      print(w:write("x"))
      print(fio.run(function() return w:write(("y"):rep(100000)) end))
      local p = fio.spawn({ "true" }, { stdin = "pipe" })
      p:wait()
      print(p.stdin:write("z"))
      p:close()
    ]])
    assert.equal("nil\tBroken pipe\t32\nnil\tBroken pipe\t32\nnil\tBroken pipe\t32\n", out)
  end)
end)

-- What the child scripts below look at in themselves: children() counts
-- the process's children (zombies too), sigchld_blocked() says 1 if this
-- thread blocks SIGCHLD.
local SELF = [[
  local function children()
    local n = 0
    for t in require("fiberio").scandir("/proc/self/task") do
      local f = io.open("/proc/self/task/" .. t .. "/children")
      for _ in f:read("a"):gmatch("%d+") do n = n + 1 end
      f:close()
    end
    return n
  end
  local function sigchld_blocked()
    local st = io.open("/proc/thread-self/status"):read("a")
    return (tonumber(st:match("SigBlk:%s*(%x+)"), 16) >> 16) & 1
  end
]]

describe("each way of waiting for a process", function()
  local code = SELF .. [[
    local fio = require "fiberio"
    local p = fio.spawn { "sh", "-c", "sleep 0.05; exit 9" }
    local q = fio.spawn { "sleep", "10" }
    local r = { fio.timeout(0.05, q.wait, q) }
    q:kill("KILL")
    local how, code = p:wait()
    print(how, code, r[2], q:wait())
    print(sigchld_blocked()) -- (for the signalfd's rung only)
  ]]
  local function rung(env)
    local out = helper.child(code, { env = env })
    local blocked = env.FIBERIO_TEST_NO_PIDFD and 1 or 0
    assert.equal("exit\t9\ttimeout\tsignal\tKILL\t9\n" .. blocked .. "\n", out)
  end
  it("io_uring WAITID (Linux 6.7+)", function()
    if helper.wanted_backend() == "threads" then pending("the threads backend") return end
    if not helper.kernel_at_least(6, 7) then pending("Linux before 6.7: no IORING_OP_WAITID") return end
    rung { FIBERIO_BACKEND = "io_uring" }
  end)
  it("io_uring: a poll of the pidfd (as before 6.7)", function()
    if helper.wanted_backend() == "threads" then pending("the threads backend") return end
    rung { FIBERIO_BACKEND = "io_uring", FIBERIO_NO_RING_OPS = "waitid" }
  end)
  it("threads: the pidfd in the loop's epoll set", function()
    rung { FIBERIO_BACKEND = "threads" }
  end)
  it("threads: a blocking waitid on the pool (no loop-thread polling)", function()
    rung { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = "0" }
  end)
  it("SIGCHLD through a signalfd (no pidfd_open, before Linux 5.3): io_uring", function()
    if helper.wanted_backend() == "threads" then pending("the threads backend") return end
    rung { FIBERIO_BACKEND = "io_uring", FIBERIO_TEST_NO_PIDFD = "1" }
  end)
  it("SIGCHLD through a signalfd (no pidfd_open, before Linux 5.3): threads", function()
    rung { FIBERIO_BACKEND = "threads", FIBERIO_TEST_NO_PIDFD = "1" }
  end)
end)

describe("a fork's child (tools/forktest.c)", function()
  -- The child spawns a program and drops its Process while it runs: the
  -- child's own reaper must reap it (not its parent's, whose epoll set or
  -- SIGCHLD thread it inherited). The parent's fds must be left alone.
  local code = SELF .. [[
    local fio = require "fiberio"
    local forktest = require "forktest"
    local held = assert(fio.spawn { "sleep", "0.5" }) -- (starts the waiting)
    local dropped = assert(fio.spawn { "sleep", "0.05" })
    dropped = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local pid = forktest.fork()
    if pid == 0 then
      local p = assert(fio.spawn { "sleep", "0.1" })
      p = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      os.execute("sleep 0.4")
      forktest.exit(children()) -- (0 once reaped)
    end
    local files = {}
    for i = 1, 20 do files[i] = assert(io.open("/dev/null")) end
    local left = forktest.wait(pid)
    local ok = 0
    for _, f in ipairs(files) do if f:seek("cur") then ok = ok + 1 end end
    print(left, ok, held:wait())
  ]]
  local function run(env)
    if os.getenv("FIBERIO_SANITIZE") == "tsan" then
      pending("TSan stops a multithreaded process's fork child that starts threads")
      return
    end
    env.FIBERIO_BACKEND = helper.wanted_backend() or "io_uring"
    assert.equal("0\t20\texit\t0\n", (helper.child(code, { env = env })))
  end
  it("reaps the children it drops with a reaper of its own (pidfds)", function() run {} end)
  it("reaps the children it drops with a SIGCHLD thread of its own", function()
    run { FIBERIO_TEST_NO_PIDFD = "1" }
  end)
end)

describe("waiting through SIGCHLD (no pidfd_open)", function()
  -- The rung below pidfds, where fiberio reaps by pid: what it must do
  -- besides waiting.
  local code = SELF .. [[
    local fio = require "fiberio"
    -- each end is seen when it comes (SIGCHLD), not by the look the
    -- thread takes every second
    local t0 = fio.now()
    for _ = 1, 5 do
      local t = fio.spawn { "sleep", "0.01" } -- (ends after the spawn)
      t:wait()
      t:close()
    end
    print(fio.now() - t0 < 2.5)
    -- a child reaped (by the thread: nobody waited) is not signaled: its
    -- pid may be another's by now
    local p = fio.spawn { "true" }
    fio.sleep(0.3)
    print(p:kill("KILL"))
    print(p:wait())
    p:close()
    -- another library's child is left to it: io.popen's close gets its
    -- status although it ended while fiberio reaped its own
    local h = io.popen("exit 3")
    local q = fio.spawn { "sleep", "0.1" }
    q:wait()
    q:close()
    print(h:close())
    -- many at once, from many fibers
    local ok = fio.run(function()
      local fs = {}
      for i = 1, 300 do
        fs[i] = fio.async(function()
          local r = fio.spawn { "sh", "-c", "exit $1", "sh", tostring(i % 7) }
          local how, c = r:wait()
          r:close()
          return how == "exit" and c == i % 7
        end)
      end
      local n = 0
      for i = 1, 300 do if fs[i]:await() then n = n + 1 end end
      return n
    end)
    print(ok)
    -- closed or collected while running: reaped once it ends
    fio.spawn({ "sleep", "0.1" }):close()
    local _ = fio.spawn { "sleep", "0.1" }
    _ = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local t0 = fio.now()
    while children() > 0 and fio.now() - t0 < 5 do fio.sleep(0.02) end
    print(children())
    -- SIGCHLD is blocked here, where the spawns were made (for the
    -- signalfd); the children's mask is empty
    print(sigchld_blocked(), (fio.exec { "grep", "SigBlk", "/proc/self/status" }))
  ]]
  local want = "true\nnil\tNo such process\t3\nexit\t0\nnil\texit\t3\n300\n0\n1\tSigBlk:\t0000000000000000\n\n"
  it("on io_uring", function()
    if helper.wanted_backend() == "threads" then pending("the threads backend") return end
    assert.equal(want, (helper.child(code, { env = { FIBERIO_BACKEND = "io_uring", FIBERIO_TEST_NO_PIDFD = "1" } })))
  end)
  it("on threads", function()
    assert.equal(want, (helper.child(code, { env = { FIBERIO_BACKEND = "threads", FIBERIO_TEST_NO_PIDFD = "1" } })))
  end)
end)
