-- Errors: how fiber errors travel (await chains, run), how an error nobody
-- awaited is reported (stderr outside run, raised from run), and misuse
-- raising. (DESIGN.md section 1: "no error is lost silently".)
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack

local function count(haystack, needle)
  local n, i = 0, 1
  while true do
    local s, e = haystack:find(needle, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

describe("errors between fibers", function()
  it("an error travels unchanged through a chain of awaits", function()
    local e = { "deep" }
    local inner = fio.async(function() fio.sleep(0.001) error(e) end)
    local middle = fio.async(function() return fio.await(inner) end)
    local outer = fio.async(function() return middle:await() end)
    local ok, err = pcall(fio.await, outer)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
  end)

  it("each fiber's error stays with its own future", function()
    local e1, e2 = { 1 }, { 2 }
    local f1 = fio.async(function() fio.sleep(0.002) error(e1) end)
    local f2 = fio.async(function() fio.sleep(0.001) error(e2) end)
    local _, err2 = pcall(fio.await, f2)
    local _, err1 = pcall(fio.await, f1)
    assert.is_true(rawequal(e1, err1))
    assert.is_true(rawequal(e2, err2))
  end)

  it("a fiber's error does not stop its siblings", function()
    local log, rec = helper.log()
    fio.run(function()
      local bad = fio.async(function() error("bad", 0) end)
      local good = fio.async(function()
        fio.sleep(0.01)
        rec("good ran on")
        return "good"
      end)
      assert.same({ false, "bad" }, { pcall(fio.await, bad) })
      assert.equal("good", fio.await(good))
    end)
    assert.same({ "good ran on" }, log)
  end)

  it("an error raised by a <close> handler while unwinding a fiber replaces the fiber's error, as in plain Lua", function()
    local f = fio.async(function()
      local guard <close> = setmetatable({}, { __close = function() error("from close", 0) end })
      error("original", 0)
    end)
    assert.same({ false, "from close" }, { pcall(fio.await, f) })
  end)
end)

describe("an error nobody awaited", function()
  it("is raised from fio.run with the same value", function()
    local e = { "lost?" }
    local ok, err = pcall(fio.run, function()
      fio.async(function() error(e) end)
      fio.sleep(0.01)
      return "root finished"
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
  end)

  it("is raised from fio.run even when the root fiber returned at once", function()
    local ok, err = pcall(fio.run, function()
      fio.async(function() fio.sleep(0.01) error("late child", 0) end)
    end)
    assert.same({ false, "late child" }, { ok, err })
  end)

  it("outside run, is printed on stderr with a traceback when its future is collected", function()
    local out = helper.child([[
      local fio = require "fiberio"
      fio.async(function() error("unobserved-boom") end)
      fio.sleep(0.01)
      collectgarbage() collectgarbage()
      io.stderr:write("MARK\n")
      print("END")
    ]])
    local msg = out:find("unobserved-boom", 1, true)
    local mark = out:find("MARK", 1, true)
    assert.is_not_nil(msg, out)
    assert.is_not_nil(mark, out)
    assert.is_true(msg < mark, "printed only after the collection:\n" .. out)
    local report = out:sub(1, mark - 1)
    assert.matches("traceback", report:lower(), 1, true)
    assert.matches("fiberio", report, 1, true)
    assert.equal(1, count(out, "unobserved-boom"))
    assert.matches("END", out, 1, true)
  end)

  it("outside run, is printed on stderr when the Lua state closes", function()
    local out = helper.child([[
      local fio = require "fiberio"
      KEEP = fio.async(function() error("at-close-boom") end)
      fio.sleep(0.01)
      collectgarbage() collectgarbage()
      io.stderr:write("MARK\n")
    ]])
    local msg = out:find("at-close-boom", 1, true)
    local mark = out:find("MARK", 1, true)
    assert.is_not_nil(mark, out)
    assert.is_not_nil(msg, out)
    assert.is_true(msg > mark, "printed before the state closed:\n" .. out)
    assert.matches("fiberio", out:sub(mark), 1, true)
    assert.equal(1, count(out, "at-close-boom"))
  end)

  it("is not printed once it was awaited", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local f = fio.async(function() error("observed-boom") end)
      print(pcall(fio.await, f) == false and "caught" or "missed")
      f = nil
      collectgarbage() collectgarbage()
      print("END")
    ]])
    assert.matches("caught", out, 1, true)
    assert.matches("END", out, 1, true)
    assert.equal(0, count(out, "observed-boom"))
  end)

  it("is not printed once fio.run raised it", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local ok, err = pcall(fio.run, function()
        fio.async(function() error("run-boom", 0) end)
      end)
      print(ok, err == "run-boom" and "raised" or tostring(err))
      collectgarbage() collectgarbage()
      print("END")
    ]])
    assert.matches("false\traised", out, 1, true)
    assert.matches("END", out, 1, true)
    assert.equal(0, count(out, "run-boom"))
  end)

  it("a fiber that ended by cancellation is not reported", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local g = fio.group()
      g:async(fio.sleep, 10)
      fio.sleep(0.005)
      g:cancel()
      g = nil
      collectgarbage() collectgarbage()
      print("END")
    ]])
    assert.matches("END", out, 1, true)
    assert.is_nil(out:lower():find("canceled", 1, true), out)
    assert.is_nil(out:lower():find("traceback", 1, true), out)
  end)
end)

describe("misuse raises", function()
  it("fio.async of a non-function raises a bad-argument error", function()
    local ok, err = pcall(fio.async, 42)
    assert.is_false(ok)
    assert.matches("bad argument", tostring(err), 1, true)
  end)

  it("fio.await of something that is not a Future raises", function()
    local ok, err = pcall(fio.await, "not a future")
    assert.is_false(ok)
    assert.matches("bad argument", tostring(err), 1, true)
    assert.has_error(function() fio.await({}) end)
  end)

  it("fio.cancel of something that is not a Future raises", function()
    assert.has_error(function() fio.cancel(io.stdout) end)
  end)

  it("fio.sleep of a non-number raises", function()
    local ok, err = pcall(fio.sleep, "soon")
    assert.is_false(ok)
    assert.matches("bad argument", tostring(err), 1, true)
  end)

  it("fio.timeout without a function raises", function()
    assert.has_error(function() fio.timeout(1, "not a function") end)
  end)

  it("g:async of a non-function raises", function()
    local g = fio.group()
    assert.has_error(function() g:async(nil) end)
    assert.is_true(g:wait())
  end)
end)

describe("misuse raises a clear error at the caller's line", function()
  local here = debug.getinfo(1, "S").short_src

  -- fn (a function on one line) raises an error that names that line.
  local function raised_at_its_line(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok)
    assert.matches(here .. ":" .. debug.getinfo(fn, "S").linedefined .. ": ", err, 1, true)
    return err
  end

  it("fio.walk checks its options", function()
    local err = raised_at_its_line(function() local _ = fio.walk("/tmp", { concurency = 1 }) end)
    assert.matches("bad argument #2 to 'walk' (unknown option 'concurency')", err, 1, true)
    err = raised_at_its_line(function() local _ = fio.walk("/tmp", { concurrency = 0 }) end)
    assert.matches("concurrency must be a positive integer", err, 1, true)
    raised_at_its_line(function() local _ = fio.walk("/tmp", { concurrency = "x" }) end)
    err = raised_at_its_line(function() local _ = fio.walk("/tmp", { onerror = true }) end)
    assert.matches("onerror must be a function", err, 1, true)
  end)

  it("the Lua layer's argument errors name the caller's line, not init.lua", function()
    local err = raised_at_its_line(function() fio.group():async(5) end)
    assert.matches("bad argument #1 to 'async' (function expected, got number)", err, 1, true)
    raised_at_its_line(function() fio.group { limit = 0 } end)
    raised_at_its_line(function() fio.group { limt = 2 } end)
    raised_at_its_line(function() fio.timeout("soon", print) end)
    raised_at_its_line(function() fio.timeout(0 / 0, print) end)
    raised_at_its_line(function() fio.semaphore(-1) end)
    raised_at_its_line(function() fio.queue(1.5) end)
    raised_at_its_line(function() fio.mkdirp(42) end)
    raised_at_its_line(function() fio.mkdirp("/tmp/x", "rwx") end)
    raised_at_its_line(function() fio.semaphore(1):acquire(0 / 0) end)
  end)

  it("fio.config refuses unknown keys and names the field it refuses", function()
    local out = helper.child([[
      local fio = require "fiberio"
      for _, t in ipairs { { thread = 4 }, { threads = 1.5 }, { threads = "4" }, { backend = "x" } } do
        print((select(2, pcall(function() fio.config(t) end)):gsub("^[^:]*:%d+: ", "")))
      end
      fio.config { threads = 2 } -- still accepted after those
      print(fio.backend() ~= nil)
    ]])
    assert.equal("bad argument #1 to 'config' (unknown option 'thread')\n"
      .. "bad argument #1 to 'config' (field 'threads' must be an integer)\n"
      .. "bad argument #1 to 'config' (field 'threads' must be an integer)\n"
      .. "bad argument #1 to 'config' (field 'backend' must be \"auto\", \"io_uring\" or \"threads\")\n"
      .. "true\n", out)
  end)

  it("a function has one name in tracebacks and errors: fiberio.open, never fiberio.core.open", function()
    for _ = 1, 3 do -- (the name once depended on the order of a table walk)
      local out = helper.child([[
        local fio = require "fiberio"
        local _, tb = xpcall(fio.open, debug.traceback)
        local _, tb2 = xpcall(fio.run, debug.traceback, function() error("x") end)
        print(tb .. tb2)
      ]])
      assert.matches("function 'fiberio.open'", out, 1, true)
      assert.matches("function 'fiberio.run'", out, 1, true)
      assert.not_matches("fiberio.core", out, 1, true)
    end
  end)

  it("a semaphore release adds a permit even past its initial count (a counting semaphore)", function()
    local s = fio.semaphore(0)
    s:release()
    s:release()
    assert.equal(2, s:available())
    assert.is_true(s:acquire(0))
    assert.is_true(s:acquire(0))
    assert.same(pack(nil, "timeout"), pack(s:acquire(0)))
  end)
end)

describe("a fiber's traceback", function()
  it("is kept on its Future: f:traceback()", function()
    local function where_it_failed() error("deep", 0) end
    local f = fio.async(function() where_it_failed() end)
    assert.is_false(pcall(fio.await, f))
    local tb = f:traceback()
    assert.matches("^deep\nstack traceback:", tb)
    assert.matches("where_it_failed", tb, 1, true)
    assert.is_nil(fio.async(function() end):await() and nil)
    local ok_f = fio.async(function() return 1 end)
    ok_f:await()
    assert.is_nil(ok_f:traceback())
  end)

  it("reaches the user when the error it re-raises ends the script", function()
    local out, rc = helper.child([[
      local fio = require "fiberio"
      local function where_it_failed() fio.sleep(0) error("boom") end
      fio.run(function() where_it_failed() end)
    ]])
    assert.equal(1, rc)
    assert.matches("fiberio: the error below was raised in a fiber: ", out, 1, true)
    assert.matches("where_it_failed", out, 1, true)
    assert.matches("lua5.4: [^\n]*boom", out)
  end)

  it("is not printed for an error that a pcall catches", function()
    local out = helper.child([[
      local fio = require "fiberio"
      print(pcall(fio.run, function() error("caught", 0) end))
    ]])
    assert.equal("false\tcaught\n", out)
  end)
end)
