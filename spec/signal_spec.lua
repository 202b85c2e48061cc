-- Signals delivered to fibers: fio.signal(name) (DESIGN.md section 1,
-- "Coordination between fibers"; issue 5), and a tool that stops cleanly on
-- Ctrl-C: examples/cptree.lua interrupted by SIGINT or SIGTERM halfway
-- through a copy exits with a message and leaves only whole files.
--
-- The signals are sent with kill(1) from a child shell, to this process or to
-- the tool's, while a Signal for them is open here: the last close gives a
-- signal back (the specs of that run in child processes).
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack
local LONG = helper.LONG

local q = helper.shquote

-- This process's id (busted's lua5.4).
local PID = helper.pid()

-- Send signal `name` to this process now, from a child shell, and wait for
-- the shell; with `delay`, from a shell left in the background that sends it
-- after that many seconds (while this process waits in the loop).
local function kill(name, delay)
  local cmd = "kill -" .. name .. " " .. PID
  if delay then cmd = "(sleep " .. delay .. "; " .. cmd .. ") >/dev/null 2>&1 &" end
  assert(os.execute(cmd))
end

-- The environment of a Lua child that loads this build (helper.lua_env).
-- Under TSan the `lua5.4` first on PATH preloads its runtime itself
-- (tools/runspecs.sh). Shells and standard tools run without it.
local ENV = helper.lua_env()

-- Shell words that run the rest of the line as a tool is started from a
-- terminal: SIGINT and SIGTERM at their default action, and unblocked (this
-- process may have them blocked, and a child inherits that; perl undoes it
-- before exec), or SIGINT blocked with block.
local function as_from_terminal(block)
  local mask = block and "sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGINT));"
                      or "sigprocmask(SIG_UNBLOCK, POSIX::SigSet->new(SIGINT, SIGTERM));"
  return "perl -e " .. q("use POSIX; " .. mask ..
                         " $SIG{INT} = $SIG{TERM} = 'DEFAULT'; exec @ARGV or die \"exec: $!\"")
end

-- Start `lua5.4 ARGS` (ARGS: words already quoted, redirections included)
-- with ENV, as a tool is started from a terminal (as_from_terminal). Once
-- the shell test `ready` succeeds, send it signal `name` (from the shell:
-- the child needs no shell of its own, which a sanitizer's LD_PRELOAD could
-- break). Returns its exit code and the seconds from the signal to its exit.
local function signal_child(args, ready, name)
  local script = table.concat({
    as_from_terminal() .. " env " .. ENV .. "lua5.4 " .. args .. " &",
    "pid=$!",
    "i=0",
    "until " .. ready .. "; do",
    "  i=$((i + 1)); [ $i -gt 5000 ] && break",
    "  sleep 0.002",
    "done",
    "t0=$(date +%s.%N)",
    "kill -" .. name .. " $pid",
    "wait $pid; rc=$?",
    "t1=$(date +%s.%N)",
    "echo $rc $t0 $t1",
  }, "\n")
  local out, err = helper.sh(script)
  local rc, t0, t1 = out:match("^(%d+) ([%d.]+) ([%d.]+)")
  assert(rc, "the script printed: " .. out .. err)
  return tonumber(rc), tonumber(t1) - tonumber(t0)
end

-- The longest a spec waits for a signal: more than a bound, so that a lost
-- signal fails the spec (nil, "timeout") instead of hanging the suite.
local WAIT = helper.bound(5)

describe("fio.signal", function()
  it("wait returns \"INT\" when the process gets SIGINT while the loop waits", function()
    fio.run(function()
      local s <close> = fio.signal("INT")
      kill("INT", 0.05)
      local dt, r = helper.timed(s.wait, s, WAIT)
      assert.same(pack("INT"), r)
      assert.is_true(dt >= 0.04, "returned after " .. dt)
      assert.is_true(dt < helper.bound(1), "returned after " .. dt)
    end)
  end)

  it("keeps a signal that arrived before wait was called until a wait takes it", function()
    fio.run(function()
      local s <close> = fio.signal("INT")
      kill("INT") -- returns once sent
      fio.sleep(0.01)
      local dt, r = helper.timed(s.wait, s, WAIT)
      assert.same(pack("INT"), r)
      assert.is_true(dt < helper.bound(0.1), "returned after " .. dt)
      assert.same(pack(nil, "timeout"), pack(s:wait(0.02))) -- taken once
    end)
  end)

  it("takes names with or without SIG: TERM, SIGUSR1, HUP, QUIT", function()
    fio.run(function()
      for _, name in ipairs { "TERM", "SIGUSR1", "HUP", "QUIT" } do
        local s <close> = fio.signal(name)
        local bare = name:gsub("^SIG", "")
        kill(bare, 0.01)
        assert.same(pack(bare), pack(s:wait(WAIT)))
      end
    end)
  end)

  it("works from the main chunk", function()
    local s <close> = fio.signal("USR2")
    kill("USR2", 0.02)
    assert.same(pack("USR2"), pack(s:wait(WAIT)))
  end)

  it("two Signals, for two signals, each get their own", function()
    fio.run(function()
      local int <close> = fio.signal("INT")
      local term <close> = fio.signal("TERM")
      local fi = fio.async(int.wait, int, WAIT)
      local ft = fio.async(term.wait, term, WAIT)
      kill("TERM", 0.01)
      assert.same(pack("TERM"), pack(ft:await()))
      assert.is_false(fi:done())
      kill("INT", 0.01)
      assert.same(pack("INT"), pack(fi:await()))
    end)
  end)

  it("wait(timeout) returns nil, \"timeout\" when no signal comes", function()
    fio.run(function()
      local s <close> = fio.signal("INT")
      local dt, r = helper.timed(s.wait, s, 0.03)
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt >= 0.029 and dt < 0.03 + helper.bound(0.1), "returned after " .. dt)
    end)
  end)

  it("cancel interrupts a waiting fiber promptly, and the next signal goes to the next wait", function()
    fio.run(function()
      local s <close> = fio.signal("INT")
      local f = fio.async(s.wait, s)
      fio.sleep(0.01)
      local dt, r = helper.timed(fio.cancel, f)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      kill("INT", 0.01)
      assert.same(pack("INT"), pack(s:wait(WAIT)))
    end)
  end)

  it("a fiber waiting for SIGINT can cancel a group, whose members unwind", function()
    local log, rec = helper.log()
    fio.run(function()
      local s <close> = fio.signal("INT")
      local g = fio.group { limit = 2 }
      fio.async(function() -- a producer: g:async waits for a turn
        for i = 1, 4 do
          g:async(function()
            local guard <close> = helper.closer("member " .. i, rec)
            fio.sleep(LONG)
          end)
        end
      end)
      kill("INT", 0.02)
      local dt, r = helper.timed(function()
        local name = s:wait(WAIT)
        g:cancel()
        return name
      end)
      assert.same(pack("INT"), r)
      assert.is_true(dt < helper.bound(1), "took " .. dt)
    end)
    table.sort(log)
    assert.same({ "member 1", "member 2" }, log) -- 3 and 4 never started
  end)

  it("a program that listens for SIGINT exits cleanly when it gets one", function()
    -- A child that says when it listens (writes the file arg[1]), then
    -- cancels its work on SIGINT.
    local base = os.tmpname()
    local f = assert(io.open(base .. ".lua", "w"))
    f:write([[
      local fio = require "fiberio"
      local status = fio.run(function()
        local s <close> = fio.signal("INT")
        local work = fio.async(function()
          local c <close> = setmetatable({}, { __close = function() print("cleaned up") end })
          fio.sleep(60)
        end)
        assert(fio.writefile(arg[1], "listening"))
        print(s:wait(10))
        work:cancel()
        return 130
      end)
      io.stdout:flush()
      os.exit(status)
    ]])
    f:close()
    local code, dt = signal_child(q(base .. ".lua") .. " " .. q(base .. ".ready") ..
                                  " >" .. q(base .. ".out") .. " 2>&1",
                                  "[ -s " .. q(base .. ".ready") .. " ]", "INT")
    local out = helper.get(base .. ".out") or ""
    for _, ext in ipairs { "", ".lua", ".ready", ".out" } do os.remove(base .. ext) end
    assert.equal("INT\ncleaned up\n", out)
    assert.equal(130, code)
    assert.is_true(dt < helper.bound(1), "exited " .. dt .. " s after the signal")
  end)

  it("raises on an unknown name and on a wait after close; close twice is harmless", function()
    assert.has_error(function() fio.signal("NOPE") end)
    assert.has_error(function() fio.signal("KILL") end)
    assert.has_error(function() fio.signal() end)
    local s = fio.signal("INT")
    s:close()
    s:close()
    local ok, err = pcall(s.wait, s, 0)
    assert.is_false(ok)
    assert.matches("closed signal", err, 1, true)
  end)

  it("closes its file descriptor on close, on <close> and when collected", function()
    helper.fullgc()
    local n0 = helper.open_fds()
    local s = fio.signal("INT")
    assert.equal(n0 + 1, helper.open_fds())
    s:close()
    assert.equal(n0, helper.open_fds())
    do
      local guard <close> = fio.signal("TERM")
      assert.equal(n0 + 1, helper.open_fds())
    end
    assert.equal(n0, helper.open_fds())
    for _ = 1, 100 do fio.signal("HUP") end
    helper.fullgc()
    assert.equal(n0, helper.open_fds())
  end)
end)

------------------------------------------------------------------------------
-- examples/cptree.lua interrupted halfway through a copy.

local examples = helper.examples_dir()

-- Run `cptree SRC DST` and, once a first whole file is in DST, send it signal
-- `name`. Returns its exit code, its stderr and the seconds from the signal
-- to its exit.
local function interrupt(name, src, dst, errfile)
  local code, dt = signal_child(
    q(examples .. "/cptree.lua") .. " " .. q(src) .. " " .. q(dst) .. " 2>" .. q(errfile),
    "[ -n \"$(find " .. q(dst) .. " -type f ! -name '*.tmp' -print -quit 2>/dev/null)\" ]", name)
  return code, helper.get(errfile) or "", dt
end

local function count_files(root)
  return tonumber(helper.sh_ok("find " .. q(root) .. " -type f | wc -l"))
end

describe("examples/cptree.lua, interrupted", function()
  local tmp, src
  local NDIRS, NFILES = 20, 100 -- 2,000 files, 70 MiB: the copy takes a while

  lazy_setup(function()
    tmp = helper.mktempdir("signal")
    src = tmp .. "/src"
    assert(os.execute("mkdir " .. q(src)))
    -- Files of 4 to 64 KiB, each different, in NDIRS directories.
    for d = 1, NDIRS do
      local dir = src .. "/dir" .. d
      assert(os.execute("mkdir " .. q(dir)))
      for i = 1, NFILES do
        local f = assert(io.open(dir .. "/file" .. i, "wb"))
        local head = dir .. "/file" .. i .. "\n"
        f:write(head, string.rep(string.char(97 + (d + i) % 26), 4096 * (1 + (d * i) % 16) - #head))
        f:close()
      end
    end
  end)

  lazy_teardown(function()
    if tmp then helper.rmtree(tmp) end
  end)

  local function check(name, status)
    local dst = tmp .. "/copy-" .. name
    local rc, err, dt = interrupt(name, src, dst, tmp .. "/err-" .. name)
    assert.equal("cptree: interrupted by SIG" .. name .. "; " .. dst ..
                 " is incomplete (every file in it is whole)\n", err)
    assert.equal(status, rc)
    assert.is_true(dt < helper.bound(2), "exited " .. dt .. " s after the signal")
    -- Interrupted halfway: some files copied, not all.
    local n = count_files(dst)
    assert.is_true(n > 0 and n < NDIRS * NFILES, n .. " files copied")
    -- No temporary file left, and every file there is whole: diff lists
    -- only what was not copied.
    assert.equal("", (helper.sh("find " .. q(dst) .. " -name '*.tmp'")))
    local diff = helper.sh("diff -r " .. q(src) .. " " .. q(dst))
    local other = {}
    for line in diff:gmatch("[^\n]+") do
      local dir = line:match("^Only in (.-): ")
      if not (dir and (dir == src or dir:sub(1, #src + 1) == src .. "/")) then
        other[#other + 1] = line
      end
    end
    assert.same({}, other)
  end

  it("on SIGINT: stops, says so, exits 130, and every file left in DST is whole", function()
    check("INT", 130)
  end)

  it("on SIGTERM: the same, exit 143", function()
    check("TERM", 143)
  end)
end)

------------------------------------------------------------------------------
-- Closing a Signal gives the signal back (issue 12, item 3): the mask the
-- thread had before is restored once the last Signal for that signal is
-- closed or collected, so Ctrl-C ends the script again. Each case runs in a
-- child lua5.4 started as from a terminal (SIGINT unblocked, at its default
-- action), or with SIGINT blocked (block = true).

-- The prelude of every child: its pid, kill(name) (from a child process that
-- io.popen waits for: os.execute's system() ignores SIGINT meanwhile, which
-- would drop the signal), blocked(signo) (from the main thread's SigBlk in
-- /proc/self/status) and spin() (Lua code that runs long enough for a
-- pending interrupt to stop it: lua.c's SIGINT handler sets a hook).
local PRELUDE = [[
local fio = require "fiberio"
local pid = assert(io.open("/proc/self/stat")):read("l"):match("^(%d+)")
local function kill(name)
  local p = assert(io.popen("kill -" .. name .. " " .. pid))
  p:read("a")
  p:close()
end
local function blocked(signo)
  local f = assert(io.open("/proc/self/status"))
  local mask = f:read("a"):match("SigBlk:%s*(%x+)")
  f:close()
  return (tonumber(mask, 16) >> (signo - 1)) & 1 == 1
end
local function spin() for _ = 1, 1000000 do end end
]]

-- Run PRELUDE .. code in a child lua5.4 started as from a terminal, or with
-- SIGINT blocked (block): its output (stdout and stderr) and exit code.
local function signal_script(code, block)
  local out, rc = helper.child(PRELUDE .. code, { wrapper = as_from_terminal(block) })
  return out, rc
end

-- Whether the child ended as plain Lua does on SIGINT: killed by it (130),
-- or, in the main chunk, lua5.4's "interrupted!" error (exit 1).
local function interrupted(out, rc)
  return rc == 130 or (rc == 1 and out:find("interrupted!", 1, true) ~= nil)
end

describe("fio.signal gives the signal back", function()
  it("after close, SIGINT ends the script as it does without fiberio", function()
    local out, rc = signal_script([[
      local s = fio.signal("INT")
      print("open", blocked(2))
      s:close()
      print("closed", blocked(2))
      io.stdout:flush()
      kill("INT")
      spin()
      print("survived")
    ]])
    assert.matches("^open\ttrue\nclosed\tfalse\n", out)
    assert.is_nil(out:find("survived", 1, true), out)
    assert.is_true(interrupted(out, rc), "exit " .. rc .. ": " .. out)
  end)

  it("after the Signal is collected, SIGINT ends the script", function()
    local out, rc = signal_script([[
      fio.signal("INT")
      collectgarbage() collectgarbage()
      print("collected", blocked(2))
      io.stdout:flush()
      kill("INT")
      spin()
      print("survived")
    ]])
    assert.matches("^collected\tfalse\n", out)
    assert.is_nil(out:find("survived", 1, true), out)
    assert.is_true(interrupted(out, rc), "exit " .. rc .. ": " .. out)
  end)

  it("a SIGINT that came while it was open and was not read goes with it; the next one ends the script", function()
    local out, rc = signal_script([[
      local s = fio.signal("INT")
      kill("INT") -- pending, never read
      s:close()
      spin()
      print("after close", blocked(2))
      io.stdout:flush()
      kill("INT")
      spin()
      print("survived")
    ]])
    assert.matches("^after close\tfalse\n", out)
    assert.is_nil(out:find("survived", 1, true), out)
    assert.is_true(interrupted(out, rc), "exit " .. rc .. ": " .. out)
  end)

  it("with two Signals for SIGINT, only the last close gives it back", function()
    local out, rc = signal_script([[
      local a, b = fio.signal("INT"), fio.signal("INT")
      a:close()
      print("one closed", blocked(2))
      kill("INT")
      print(b:wait(10))
      b:close()
      print("both closed", blocked(2))
      io.stdout:flush()
      kill("INT")
      spin()
      print("survived")
    ]])
    assert.matches("^one closed\ttrue\nINT\nboth closed\tfalse\n", out)
    assert.is_nil(out:find("survived", 1, true), out)
    assert.is_true(interrupted(out, rc), "exit " .. rc .. ": " .. out)
  end)

  it("gives it back after fiberio's pool and parallel threads ran", function()
    local out, rc = signal_script([[
      fio.config { backend = os.getenv("FIBERIO_BACKEND") }
      assert(fio.readfile("/proc/self/stat"))
      assert(fio.parallel(function() return 1 end):await() == 1)
      local s = fio.signal("INT")
      assert(fio.parallel(function() return 2 end):await() == 2)
      s:close()
      print("closed", blocked(2))
      io.stdout:flush()
      kill("INT")
      spin()
      print("survived")
    ]])
    assert.matches("^closed\tfalse\n", out)
    assert.is_nil(out:find("survived", 1, true), out)
    assert.is_true(interrupted(out, rc), "exit " .. rc .. ": " .. out)
  end)

  it("a signal blocked before fio.signal stays blocked after close", function()
    local out, rc = signal_script([[
      print("before", blocked(2))
      local s = fio.signal("INT")
      s:close()
      print("closed", blocked(2))
    ]], true)
    assert.equal("before\ttrue\nclosed\ttrue\n", out)
    assert.equal(0, rc)
  end)

  it("a script that took SIGINT keeps it: SIGINT goes to sig:wait and the script goes on", function()
    local out, rc = signal_script([[
      local s <close> = fio.signal("INT")
      kill("INT")
      spin()
      print(s:wait(10))
      fio.run(function()
        kill("INT")
        print(s:wait(10))
      end)
      print("went on")
    ]])
    assert.equal("INT\nINT\nwent on\n", out)
    assert.equal(0, rc)
  end)
end)

describe("closing a Signal while a fiber waits on it", function()
  it("ends the wait promptly with nil, msg, errno, as a closed file's read", function()
    local r
    fio.run(function()
      local s = fio.signal("USR1")
      local f = fio.async(s.wait, s)
      fio.sleep(0.01)
      s:close()
      local dt
      dt, r = helper.timed(fio.timeout, WAIT, f.await, f)
      if not f:done() then fio.cancel(f) end
      assert.is_true(dt < helper.bound(1), "returned after " .. dt)
    end)
    assert.same(pack(nil, "Bad file descriptor", 9), r)
  end)

  it("a pipe made right after (it may get the same fd number) gets its data", function()
    local got = {}
    fio.run(function()
      local s = fio.signal("USR1")
      local f = fio.async(s.wait, s)
      fio.sleep(0.01)
      s:close()
      for i = 1, 4 do
        local r, w = fio.pipe()
        local reader = fio.async(r.read, r, 5)
        fio.sleep(0.01)
        helper.send(w, "data" .. i)
        got[i] = pack(fio.timeout(WAIT, reader.await, reader))
        if not reader:done() then fio.cancel(reader) end
        r:close()
        w:close()
      end
      if not f:done() then fio.cancel(f) end
    end)
    for i = 1, 4 do assert.same(pack("data" .. i), got[i]) end
  end)
end)

describe("sig:wait's timeout", function()
  it("a negative one polls once: a pending signal is taken, else nil, \"timeout\" at once; NaN raises", function()
    fio.run(function()
      local s <close> = fio.signal("USR2")
      local dt, r = helper.timed(s.wait, s, -1)
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt < helper.bound(0.5), "returned after " .. dt)
      kill("USR2")
      assert.same(pack("USR2"), pack(s:wait(-1)))
      assert.same(pack(nil, "timeout"), pack(s:wait(-math.huge)))
      assert.has_error(function() s:wait(0 / 0) end)
      assert.has_error(function() s:wait("soon") end)
    end)
  end)
end)
