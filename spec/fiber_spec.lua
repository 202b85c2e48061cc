-- Fibers and futures: fio.async, await, select, yield, sleep/now, run, config
-- and backend, the main chunk driving the loop, non-yieldable callers, scale
-- and reclamation of dropped futures. (DESIGN.md section 1, "Fibers and
-- futures".) Cancellation is in cancel_spec, groups in group_spec.
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack

describe("fio.async", function()
  it("returns a Future userdata", function()
    local f = fio.async(function() return 1 end)
    assert.equal("userdata", type(f))
    assert.equal(1, f:await())
  end)

  it("does not run a fiber spawned from the main chunk until the main chunk suspends", function()
    local log, rec = helper.log()
    local f = fio.async(function() rec("fiber") end)
    rec("main after async")
    assert.same({ "main after async" }, log)
    assert.is_false(f:done())
    fio.await(f)
    assert.same({ "main after async", "fiber" }, log)
  end)

  it("starts queued fibers in FIFO order", function()
    local log, rec = helper.log()
    local fs = {}
    for i = 1, 5 do fs[i] = fio.async(function() rec(i) end) end
    for i = 5, 1, -1 do fio.await(fs[i]) end
    assert.same({ 1, 2, 3, 4, 5 }, log)
  end)

  it("starts a fiber spawned by a fiber only when the spawner suspends", function()
    local log, rec = helper.log()
    fio.run(function()
      fio.async(function() rec("child") end)
      rec("parent before yield")
      fio.yield()
      rec("parent after yield")
    end)
    assert.same({ "parent before yield", "child", "parent after yield" }, log)
  end)

  it("passes every argument, nils included, to the fiber function", function()
    local f = fio.async(function(...) return select("#", ...), ... end, 1, nil, "x", nil)
    assert.same(pack(4, 1, nil, "x", nil), pack(f:await()))
  end)

  it("reports done() false before the fiber ends and true after", function()
    local f = fio.async(function() fio.sleep(0.01) end)
    assert.is_false(f:done())
    fio.sleep(0.001)
    assert.is_false(f:done())
    f:await()
    assert.is_true(f:done())
  end)
end)

describe("fio.await", function()
  it("returns all results, including nils in the middle and at the end", function()
    local f = fio.async(function() return 1, nil, "three", nil, nil end)
    local r = pack(fio.await(f))
    assert.equal(5, r.n)
    assert.same(pack(1, nil, "three", nil, nil), r)
  end)

  it("returns no values for a fiber that returned none", function()
    local f = fio.async(function() end)
    assert.equal(0, select("#", fio.await(f)))
  end)

  it("works as a method, f:await()", function()
    local f = fio.async(function(a, b) return b, a end, "a", "b")
    assert.same(pack("b", "a"), pack(f:await()))
  end)

  it("returns results by identity (tables are not copied)", function()
    local t = {}
    local f = fio.async(function() return t end)
    assert.is_true(rawequal(t, fio.await(f)))
  end)

  it("returns the same results when awaited twice", function()
    local t = {}
    local f = fio.async(function() return t, 2, nil end)
    local r1 = pack(fio.await(f))
    local r2 = pack(f:await())
    assert.equal(3, r2.n)
    assert.is_true(rawequal(r1[1], r2[1]))
    assert.is_true(rawequal(t, r2[1]))
    assert.equal(2, r2[2])
    assert.is_nil(r2[3])
  end)

  it("re-raises the fiber's error with the same table value", function()
    local e = { "mine" }
    local f = fio.async(function() error(e) end)
    local ok, err = pcall(fio.await, f)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
  end)

  it("re-raises a string error unchanged", function()
    local f = fio.async(function() error("x", 0) end)
    local ok, err = pcall(fio.await, f)
    assert.is_false(ok)
    assert.equal("x", err)
  end)

  it("re-raises a string error with the position error() gave it, and nothing more", function()
    local f = fio.async(function() error("boom") end)
    local ok, err = pcall(fio.await, f)
    assert.is_false(ok)
    assert.matches("^[^\n]*fiber_spec%.lua:%d+: boom$", err)
  end)

  it("re-raises a number error unchanged", function()
    local f = fio.async(function() error(42) end)
    local ok, err = pcall(fio.await, f)
    assert.is_false(ok)
    assert.equal(42, err)
  end)

  it("raises again, with the same value, when a failed fiber is awaited twice", function()
    local e = {}
    local f = fio.async(function() error(e) end)
    local ok1, err1 = pcall(fio.await, f)
    local ok2, err2 = pcall(f.await, f)
    assert.is_false(ok1)
    assert.is_false(ok2)
    assert.is_true(rawequal(e, err1))
    assert.is_true(rawequal(e, err2))
  end)

  it("gives the results to every fiber awaiting the same future", function()
    local got = {}
    fio.run(function()
      local f = fio.async(function() fio.sleep(0.01) return "v", 7 end)
      local a = fio.async(function() got.a = pack(fio.await(f)) end)
      local b = fio.async(function() got.b = pack(f:await()) end)
      fio.await(a)
      fio.await(b)
    end)
    assert.same(pack("v", 7), got.a)
    assert.same(pack("v", 7), got.b)
  end)

  it("raises when a fiber awaits itself, and the fiber goes on", function()
    local r = pack(fio.run(function()
      local self
      self = fio.async(function()
        local ok1 = pcall(fio.await, self)
        local ok2 = pcall(self.await, self)
        return ok1, ok2, "went on"
      end)
      return fio.await(self)
    end))
    assert.same(pack(false, false, "went on"), r)
  end)

  it("drives the loop from the main chunk until the fiber ends", function()
    local f = fio.async(function() fio.sleep(0.02) return "slept" end)
    local t0 = fio.now()
    assert.equal("slept", fio.await(f))
    assert.is_true(fio.now() - t0 >= 0.019)
    assert.is_true(f:done())
  end)

  it("keeps other fibers running when one fiber raises", function()
    local log, rec = helper.log()
    local bad = fio.async(function() fio.sleep(0.005) error("bad", 0) end)
    local good = fio.async(function() fio.sleep(0.02) rec("good finished") return "good" end)
    assert.same({ false, "bad" }, { pcall(fio.await, bad) })
    assert.equal("good", fio.await(good))
    assert.same({ "good finished" }, log)
  end)
end)

describe("fio.yield", function()
  it("lets the other ready fibers run, round robin", function()
    local log, rec = helper.log()
    fio.run(function()
      local function worker(name)
        for i = 1, 3 do
          rec(name .. i)
          fio.yield()
        end
      end
      fio.async(worker, "a")
      fio.async(worker, "b")
    end)
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("returns nothing", function()
    local n = fio.run(function() return select("#", fio.yield()) end)
    assert.equal(0, n)
  end)
end)

describe("fio.sleep and fio.now", function()
  it("fio.now() is a float that never goes backwards", function()
    local a = fio.now()
    local b = fio.now()
    assert.equal("float", math.type(a))
    assert.is_true(b >= a)
  end)

  it("fio.sleep(s) returns nothing and lasts at least s seconds", function()
    local dt, r = helper.timed(fio.sleep, 0.05)
    assert.equal(0, r.n)
    assert.is_true(dt >= 0.049, "slept only " .. dt)
  end)

  it("fio.sleep(0) returns", function()
    assert.equal(0, select("#", fio.sleep(0)))
  end)

  it("wakes sleeping fibers in deadline order, not spawn order", function()
    local log, rec = helper.log()
    fio.run(function()
      for _, s in ipairs({ 0.06, 0.02, 0.04 }) do
        fio.async(function() fio.sleep(s) rec(s) end)
      end
    end)
    assert.same({ 0.02, 0.04, 0.06 }, log)
  end)

  it("runs ready fibers while the main chunk sleeps", function()
    local log, rec = helper.log()
    local f = fio.async(function() rec("fiber ran") end)
    fio.sleep(0.01)
    assert.same({ "fiber ran" }, log)
    assert.is_true(f:done())
  end)

  it("sleeps concurrently: ten fibers sleeping 0.1 s each end in well under 1 s", function()
    local dt = helper.timed(fio.run, function()
      for _ = 1, 10 do fio.async(fio.sleep, 0.1) end
    end)
    assert.is_true(dt >= 0.099)
    assert.is_true(dt < helper.bound(0.9), "took " .. dt)
  end)
end)

describe("fio.run", function()
  it("returns all of fn's results", function()
    local r = pack(fio.run(function(a, b) return a, nil, b, nil end, 1, 2))
    assert.same(pack(1, nil, 2, nil), r)
  end)

  it("runs fn as a fiber", function()
    -- fio.canceled() is false in the main chunk too, so use yieldability.
    local y = fio.run(function() return coroutine.isyieldable() end)
    assert.is_true(y)
  end)

  it("returns only when every fiber spawned under it, transitively, has ended", function()
    local log, rec = helper.log()
    local r = fio.run(function()
      fio.async(function()
        fio.async(function()
          fio.sleep(0.03)
          rec("grandchild")
        end)
        fio.sleep(0.01)
        rec("child")
      end)
      rec("root returns")
      return "root"
    end)
    assert.equal("root", r)
    assert.same({ "root returns", "child", "grandchild" }, log)
  end)

  it("re-raises fn's error with the same value", function()
    local e = {}
    local ok, err = pcall(fio.run, function() fio.sleep(0.001) error(e) end)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
    ok, err = pcall(fio.run, function() error("plain", 0) end)
    assert.same({ false, "plain" }, { ok, err })
  end)

  it("raises the error of a spawned fiber nobody awaited, with the same value", function()
    local e = {}
    local ok, err = pcall(fio.run, function()
      fio.async(function() fio.sleep(0.005) error(e) end)
      return "root done"
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
  end)

  it("raises the error of an unawaited grandchild", function()
    local e = {}
    local ok, err = pcall(fio.run, function()
      fio.async(function()
        fio.async(function() error(e) end)
      end)
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
  end)

  it("does not raise an error that was awaited and handled", function()
    local r = pack(fio.run(function()
      local f = fio.async(function() error("handled", 0) end)
      local ok, err = pcall(fio.await, f)
      return ok, err, "root ok"
    end))
    assert.same(pack(false, "handled", "root ok"), r)
  end)

  it("can run again after a run that raised", function()
    assert.is_false(pcall(fio.run, function() error("first", 0) end))
    assert.equal("second", fio.run(function() fio.sleep(0.001) return "second" end))
  end)
end)

describe("fio.select", function()
  it("returns the index and all results of the first fiber to end", function()
    fio.run(function()
      local slow = fio.async(function() fio.sleep(0.05) return "slow" end)
      local fast = fio.async(function() fio.sleep(0.005) return "fast", nil, "x" end)
      local r = pack(fio.select(slow, fast))
      assert.same(pack(2, "fast", nil, "x"), r)
      fio.await(slow)
    end)
  end)

  it("leaves the other fibers running", function()
    local log, rec = helper.log()
    fio.run(function()
      local slow = fio.async(function() fio.sleep(0.03) rec("slow ended") return "slow" end)
      local fast = fio.async(function() fio.sleep(0.001) rec("fast ended") end)
      assert.equal(2, (fio.select(slow, fast)))
      assert.is_false(slow:done())
      assert.same({ "fast ended" }, log)
      assert.equal("slow", fio.await(slow))
      assert.same({ "fast ended", "slow ended" }, log)
    end)
  end)

  it("chooses the lowest index when several have already ended", function()
    fio.run(function()
      local a = fio.async(function() return "a" end)
      local b = fio.async(function() return "b" end)
      fio.await(a)
      fio.await(b)
      assert.same(pack(1, "b"), pack(fio.select(b, a)))
      assert.same(pack(1, "a"), pack(fio.select(a, b)))
    end)
  end)

  it("returns at once when a future has already ended", function()
    fio.run(function()
      local long = fio.async(fio.sleep, helper.LONG)
      local ended = fio.async(function() return "ended" end)
      fio.await(ended)
      local dt, r = helper.timed(fio.select, long, ended)
      assert.same(pack(2, "ended"), r)
      assert.is_true(dt < helper.bound(0.05))
      fio.cancel(long)
    end)
  end)

  it("re-raises the error of the chosen fiber with the same value", function()
    local e = {}
    fio.run(function()
      local long = fio.async(fio.sleep, helper.LONG)
      local bad = fio.async(function() fio.sleep(0.005) error(e) end)
      local ok, err = pcall(fio.select, long, bad)
      assert.is_false(ok)
      assert.is_true(rawequal(e, err))
      assert.is_false(long:done())
      fio.cancel(long)
    end)
  end)

  it("works with a single future", function()
    local r = pack(fio.run(function()
      local f = fio.async(function() fio.sleep(0.001) return nil, "only" end)
      return fio.select(f)
    end))
    assert.same(pack(1, nil, "only"), r)
  end)
end)

describe("fio.config and fio.backend", function()
  it("fio.backend() names the backend selected by FIBERIO_BACKEND", function()
    local b = fio.backend()
    assert.is_true(b == "io_uring" or b == "threads", "backend " .. tostring(b))
    local want = helper.wanted_backend()
    if want == "io_uring" and b ~= want and helper.io_uring_unavailable() then
      pending("io_uring cannot start here: " .. helper.io_uring_unavailable())
    end
    if want then assert.equal(want, b) end
  end)

  it("raises once the loop has started", function()
    fio.run(function() end)
    assert.has_error(function() fio.config { threads = 2 } end)
    assert.has_error(function() fio.config { ring_entries = 64 } end)
  end)

  it("accepts threads, backend and ring_entries before first use (child process)", function()
    local want = helper.wanted_backend() or "io_uring"
    local out = helper.child(([[
      local fio = require "fiberio"
      fio.config { threads = 2, ring_entries = 64, backend = %q }
      print("run", fio.run(function() fio.sleep(0.001) return "ran" end))
      print("backend", fio.backend())
      print("late", pcall(fio.config, { threads = 2 }))
    ]]):format(want))
    assert.matches("\nrun\tran\n", "\n" .. out)
    assert.matches("\nbackend\t" .. want .. "\n", "\n" .. out)
    assert.matches("\nlate\tfalse\t", "\n" .. out)
  end)
end)

describe("calls that cannot yield", function()
  it("a table.sort comparator inside a fiber may call fio.sleep, which completes synchronously", function()
    local calls, short = 0, 0
    local t = fio.run(function()
      local t = { 5, 3, 1, 4, 2 }
      table.sort(t, function(a, b)
        calls = calls + 1
        local t0 = fio.now()
        fio.sleep(0.001)
        if fio.now() - t0 < 0.0009 then short = short + 1 end
        return a < b
      end)
      return t
    end)
    assert.same({ 1, 2, 3, 4, 5 }, t)
    assert.is_true(calls > 0)
    assert.equal(0, short)
  end)

  it("a synchronous wait inside a fiber still runs the other ready fibers", function()
    local log, rec = helper.log()
    fio.run(function()
      fio.async(function() rec("other fiber") end)
      local t = { 2, 1 }
      table.sort(t, function(a, b)
        fio.sleep(0.005)
        return a < b
      end)
      rec("sorted")
    end)
    assert.same({ "other fiber", "sorted" }, log)
  end)

  it("a table.sort comparator in the main chunk may call fio.sleep", function()
    local t = { 3, 1, 2 }
    table.sort(t, function(a, b)
      fio.sleep(0.001)
      return a < b
    end)
    assert.same({ 1, 2, 3 }, t)
  end)

  it("fio.sleep inside a plain coroutine in a fiber completes without disturbing the coroutine's own yields", function()
    local got = pack(fio.run(function()
      local co = coroutine.wrap(function()
        coroutine.yield("first")
        local t0 = fio.now()
        fio.sleep(0.01)
        coroutine.yield(fio.now() - t0 >= 0.009)
        return "last"
      end)
      return co(), co(), co()
    end))
    assert.same(pack("first", true, "last"), got)
  end)
end)

describe("scale and reclamation", function()
  it("runs 100,000 concurrent fibers that each sleep 1 ms", function()
    local n, started = 0, 0
    local dt = helper.timed(fio.run, function()
      for _ = 1, 100000 do
        fio.async(function()
          started = started + 1
          fio.sleep(0.001)
          n = n + 1
        end)
      end
    end)
    assert.equal(100000, started)
    assert.equal(100000, n)
    -- One after the other they would sleep 100 s in all.
    assert.is_true(dt < helper.bound(50), "took " .. dt)
  end)

  it("a fiber whose future was collected still runs to completion", function()
    local done = 0
    for _ = 1, 100 do
      fio.async(function() fio.sleep(0.001) done = done + 1 end)
    end
    helper.fullgc()
    local deadline = fio.now() + helper.bound(5)
    while done < 100 and fio.now() < deadline do fio.sleep(0.001) end
    assert.equal(100, done)
  end)

  it("futures collected before their fibers end leak no memory", function()
    local done = 0
    local function round(k)
      local target = done + k
      for _ = 1, k do
        fio.async(function() fio.sleep(0.001) done = done + 1 end)
      end
      helper.fullgc() -- the futures go while their fibers have not started
      while done < target do fio.sleep(0.001) end
      helper.fullgc()
    end
    round(1000)
    round(1000)
    local before = collectgarbage("count")
    for _ = 1, 10 do round(1000) end
    local grown = collectgarbage("count") - before
    assert.equal(12000, done)
    -- 10,000 dropped futures: 25 bytes kept per future would pass 256 KiB.
    assert.is_true(grown < 256, ("grew %.1f KiB"):format(grown))
  end)

  it("awaited futures that are dropped leak no memory", function()
    local function round(k)
      for _ = 1, k do
        local f = fio.async(function() return {} end)
        f:await()
      end
      helper.fullgc()
    end
    round(1000)
    local before = collectgarbage("count")
    for _ = 1, 10 do round(1000) end
    local grown = collectgarbage("count") - before
    assert.is_true(grown < 256, ("grew %.1f KiB"):format(grown))
  end)
end)

describe("out of memory for timers", function()
  it("raises Lua's memory error in the waiting fiber, not abort()", function()
    local lib, why = helper.failalloc()
    if not lib then pending(why) return end
    -- 600 sleepers: the timer heap's growth from 512 to 1024 slots
    -- (24576 bytes) fails; the waits past 512 raise, the rest sleep.
    local out, rc = helper.child([[
      local fio = require "fiberio"
      local errs, slept = {}, 0
      for i = 1, 600 do
        fio.async(function()
          local ok, err = pcall(fio.sleep, 0.05)
          if ok then slept = slept + 1 else errs[#errs + 1] = tostring(err) end
        end)
      end
      fio.sleep(0.2)
      print(slept, #errs, errs[1])
    ]], { env = { LD_PRELOAD = lib, FAIL_ALLOC_SIZE = 24576 } })
    assert.equal(0, rc, out)
    local slept, nerr, msg = out:match("^(%d+)\t(%d+)\t(.-)\n$")
    assert(slept, out)
    assert.equal(600, tonumber(slept) + tonumber(nerr))
    assert.is_true(tonumber(nerr) > 0, out)
    assert.equal("not enough memory", msg)
  end)
end)
