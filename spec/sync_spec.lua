-- Coordination between fibers: fio.semaphore, fio.mutex, fio.condition,
-- fio.queue and fio.group{limit = n} (DESIGN.md section 1, "Coordination
-- between fibers"; issue 5). Every wait takes a timeout and is cancelable; a
-- waiter canceled or timed out leaves no trace: it holds no permit, takes no
-- item and wakes nobody in its place, and what is released while it is being
-- canceled goes to the next waiter. The specs count permits and items to show
-- that nothing is lost or given twice.
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack
local LONG = helper.LONG

-- run(body): fio.run(body) with a watchdog: when the body is still running
-- after helper.bound(5) s, it and the fibers it started with spawn() are
-- canceled, so a spec that deadlocks fails with that reason instead of
-- hanging the suite.
local spawned
local function spawn(fn, ...)
  local f = fio.async(fn, ...)
  spawned[#spawned + 1] = f
  return f
end

-- Whatever the outcome, the fibers spawned that are still waiting when the
-- body ends are canceled, so that a failed spec leaves none blocked.
local function run(body)
  spawned = {}
  local limit = helper.bound(5)
  local r = pack(fio.run(function()
    local main = fio.async(body)
    local watchdog = fio.async(fio.sleep, limit)
    local stuck = fio.select(main, watchdog) == 2
    if stuck then pcall(fio.cancel, main) end
    watchdog:cancel()
    -- a spawned fiber that failed re-raises its error here: keep the first
    local failed
    for _, f in ipairs(spawned) do
      local ok, err = pcall(fio.cancel, f)
      if not ok and failed == nil then failed = err end
    end
    if stuck then
      error("watchdog: the spec was still running after " .. limit .. " s (a deadlock?)", 0)
    end
    local res = pack(main:await())
    if failed ~= nil then error(failed, 0) end
    return table.unpack(res, 1, res.n)
  end))
  return table.unpack(r, 1, r.n)
end

-- Let every ready fiber run until it blocks (fibers run in FIFO order, and
-- the caller goes to the back of the ready queue).
local function settle()
  fio.yield()
end

-- The outcome of a future: "canceled" if it ended by cancellation, else its
-- first result.
local function outcome(f)
  local r = pack(f:await())
  if r.n == 2 and r[1] == nil and r[2] == fio.Canceled then return "canceled" end
  return r[1]
end

describe("fio.semaphore", function()
  it("acquire takes a permit, release gives it back, available() counts them", function()
    run(function()
      local s = fio.semaphore(2)
      assert.equal(2, s:available())
      assert.same(pack(true), pack(s:acquire()))
      assert.same(pack(true), pack(s:acquire()))
      assert.equal(0, s:available())
      assert.same(pack(true), pack(s:release()))
      assert.equal(1, s:available())
      s:release()
      s:release() -- a release without an acquire adds a permit
      assert.equal(3, s:available())
    end)
  end)

  it("fio.semaphore() has one permit", function()
    assert.equal(1, fio.semaphore():available())
  end)

  it("acquire waits while no permit is left and returns true when one is released", function()
    local log, rec = helper.log()
    run(function()
      local s = fio.semaphore(0)
      local f = spawn(function()
        rec("acquire")
        rec(s:acquire())
      end)
      fio.sleep(0.01)
      rec("release")
      s:release()
      f:await()
      assert.equal(0, s:available())
    end)
    assert.same({ "acquire", "release", true }, log)
  end)

  it("wakes its waiters in the order they began waiting (FIFO)", function()
    local log, rec = helper.log()
    run(function()
      local s = fio.semaphore(0)
      for i = 1, 6 do
        spawn(function()
          s:acquire()
          rec(i)
        end)
        if i == 3 then settle() end -- waiters who came later still come after
      end
      settle()
      for _ = 1, 3 do s:release() end
      settle()
      rec("half")
      for _ = 1, 3 do s:release() end
      settle()
    end)
    assert.same({ 1, 2, 3, "half", 4, 5, 6 }, log)
  end)

  it("gives a released permit to the first waiter, not to a fiber that asks after the release", function()
    run(function()
      local s = fio.semaphore(0)
      local a = spawn(function() return s:acquire() end)
      settle()
      s:release() -- handed to a, which has not run yet
      assert.equal(0, s:available())
      assert.same(pack(nil, "timeout"), pack(s:acquire(0)))
      assert.same(pack(true), pack(a:await()))
      assert.equal(0, s:available())
    end)
  end)

  it("acquire(timeout) returns nil, \"timeout\" after the timeout, holding no permit", function()
    run(function()
      local s = fio.semaphore(0)
      local dt, r = helper.timed(s.acquire, s, 0.03)
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt >= 0.029, "returned after " .. dt)
      assert.is_true(dt < 0.03 + helper.bound(0.1), "returned after " .. dt)
      assert.equal(0, s:available())
      s:release()
      assert.equal(1, s:available()) -- not handed to the waiter that left
    end)
  end)

  it("acquire(0) takes a free permit at once and times out at once without one", function()
    run(function()
      local s = fio.semaphore(1)
      assert.same(pack(true), pack(s:acquire(0)))
      local dt, r = helper.timed(s.acquire, s, 0)
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt < helper.bound(0.05), "took " .. dt)
    end)
  end)

  it("a waiter that timed out does not take a later release: the next waiter does", function()
    run(function()
      local s = fio.semaphore(0)
      local a = spawn(function() return s:acquire(0.01) end)
      local b = spawn(function() return s:acquire() end)
      fio.sleep(0.03)
      assert.is_true(a:done())
      assert.same(pack(nil, "timeout"), pack(a:await()))
      s:release()
      assert.same(pack(true), pack(b:await()))
      assert.equal(0, s:available())
    end)
  end)

  it("cancel interrupts a waiting acquire promptly and leaves no trace", function()
    run(function()
      local s = fio.semaphore(0)
      local a = spawn(function() return s:acquire() end)
      local b = spawn(function() return s:acquire() end)
      settle()
      local dt, r = helper.timed(fio.cancel, a)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      s:release()
      assert.same(pack(true), pack(b:await()))
      s:release()
      assert.equal(1, s:available())
    end)
  end)

  it("a permit released while a waiter is being canceled goes to the next waiter", function()
    run(function()
      local s = fio.semaphore(0)
      local a = spawn(function() return s:acquire() end)
      local b = spawn(function() return s:acquire() end)
      settle()
      -- The releaser runs after the cancel request, before a sees it.
      spawn(function() s:release() end)
      assert.same(pack(nil, fio.Canceled), pack(a:cancel()))
      assert.same(pack(true), pack(b:await()))
      assert.equal(0, s:available())
    end)
  end)

  it("a waiter canceled after a permit was handed to it keeps it until it releases", function()
    run(function()
      local s = fio.semaphore(0)
      local entered = false
      local a = spawn(function()
        return s:with(function()
          entered = true
          fio.sleep(LONG) -- the cancel lands here
        end)
      end)
      local b = spawn(function() return s:acquire() end)
      settle()
      s:release() -- handed to a
      assert.same(pack(nil, fio.Canceled), pack(a:cancel()))
      assert.is_true(entered)
      assert.same(pack(true), pack(b:await())) -- a's with released it
      assert.equal(0, s:available())
    end)
  end)

  it("with(fn, ...) returns fn's results and releases, also when fn raises", function()
    run(function()
      local s = fio.semaphore(1)
      local seen
      local r = pack(s:with(function(a, b)
        seen = s:available()
        return a + b, nil, "x"
      end, 1, 2))
      assert.same(pack(3, nil, "x"), r)
      assert.equal(0, seen)
      assert.equal(1, s:available())
      local e = { "boom" }
      local ok, err = pcall(s.with, s, function() error(e) end)
      assert.is_false(ok)
      assert.is_true(rawequal(e, err))
      assert.equal(1, s:available())
    end)
  end)

  it("with waits for a permit; canceled while waiting, fn never runs", function()
    run(function()
      local s = fio.semaphore(0)
      local ran = false
      local f = spawn(function() return s:with(function() ran = true end) end)
      settle()
      assert.same(pack(nil, fio.Canceled), pack(f:cancel()))
      assert.is_false(ran)
      assert.equal(0, s:available())
      local g = spawn(function() return s:with(function() return "ran" end) end)
      settle()
      s:release()
      assert.same(pack("ran"), pack(g:await()))
      assert.equal(1, s:available())
    end)
  end)

  it("bounds the fibers inside it: at most n at once, every permit back at the end, under random timeouts and cancels", function()
    math.randomseed(5)
    local N, n = 300, 3
    run(function()
      local s = fio.semaphore(n)
      local holding, max, through, timedout = 0, 0, 0, 0
      local fs = {}
      for i = 1, N do
        fs[i] = spawn(function()
          -- (times scaled under a checker, which slows all but the clock)
          local t = math.random() < 0.4 and math.random() * helper.bound(0.003) or nil
          local ok, err = s:acquire(t)
          if not ok then
            assert(err == "timeout")
            timedout = timedout + 1
            return "timeout"
          end
          holding = holding + 1
          if holding > max then max = holding end
          local slept, serr = pcall(fio.sleep, math.random() * helper.bound(0.001))
          holding = holding - 1
          s:release()
          if not slept then error(serr, 0) end
          through = through + 1
          return "through"
        end)
      end
      -- cancel every third, at random moments, holders and waiters alike
      for i = 3, N, 3 do
        fio.sleep(math.random() * helper.bound(0.0004))
        fs[i]:cancel()
      end
      local counts = { through = 0, timeout = 0, canceled = 0 }
      for i = 1, N do
        local o = outcome(fs[i])
        counts[o] = counts[o] + 1
      end
      assert.equal(n, max)
      assert.equal(0, holding)
      assert.equal(n, s:available())
      assert.equal(through, counts.through)
      assert.equal(timedout, counts.timeout)
      assert.equal(N, counts.through + counts.timeout + counts.canceled)
      assert.is_true(counts.canceled > 0 and counts.timeout > 0 and counts.through > 0)
    end)
  end)

  it("works from the main chunk, which drives the loop while it waits", function()
    local s = fio.semaphore(0)
    fio.async(function()
      fio.sleep(0.01)
      s:release()
    end)
    assert.same(pack(true), pack(s:acquire()))
    assert.same(pack(nil, "timeout"), pack(s:acquire(0.01)))
    assert.equal(0, s:available())
  end)

  it("raises on a bad count or timeout", function()
    assert.has_error(function() fio.semaphore(-1) end)
    assert.has_error(function() fio.semaphore(1.5) end)
    assert.has_error(function() fio.semaphore("2") end)
    local s = fio.semaphore(1)
    assert.has_error(function() s:acquire("soon") end)
    assert.equal(1, s:available())
  end)

  it("timed-out and canceled waits leave no garbage behind", function()
    run(function()
      local s = fio.semaphore(0)
      for _ = 1, 200 do s:acquire(0) end
      helper.fullgc()
      local before = collectgarbage("count")
      for _ = 1, 5000 do s:acquire(0) end
      for _ = 1, 1000 do
        local f = spawn(function() return s:acquire() end)
        settle()
        f:cancel()
      end
      spawned = {}
      helper.fullgc()
      local grown = collectgarbage("count") - before
      assert.is_true(grown < 64, "Lua heap grew by " .. grown .. " KiB")
      assert.equal(0, s:available())
    end)
  end)
end)

describe("fio.mutex", function()
  it("lock and unlock; another fiber's lock waits until the holder unlocks", function()
    local log, rec = helper.log()
    run(function()
      local m = fio.mutex()
      assert.same({ true }, { m:lock() })
      local f = spawn(function()
        rec("locking")
        m:lock()
        rec("locked")
        m:unlock()
      end)
      fio.sleep(0.01)
      rec("unlock")
      assert.same(pack(true), pack(m:unlock()))
      f:await()
    end)
    assert.same({ "locking", "unlock", "locked" }, log)
  end)

  it("gives the lock to its waiters in the order they began waiting (FIFO)", function()
    local log, rec = helper.log()
    run(function()
      local m = fio.mutex()
      m:lock()
      for i = 1, 5 do
        spawn(function()
          m:lock()
          rec(i)
          fio.yield()
          m:unlock()
        end)
      end
      settle()
      m:unlock()
      fio.sleep(0.01)
    end)
    assert.same({ 1, 2, 3, 4, 5 }, log)
  end)

  it("lock(timeout) returns nil, \"timeout\" and leaves the mutex to its holder", function()
    run(function()
      local m = fio.mutex()
      m:lock()
      local f = spawn(function()
        local dt, r = helper.timed(m.lock, m, 0.02)
        return dt, r
      end)
      local dt, r = f:await()
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt >= 0.019 and dt < 0.02 + helper.bound(0.1), "returned after " .. dt)
      assert.same(pack(true), pack(m:unlock())) -- still ours
      local g = spawn(function() return m:lock(0), m:unlock() end)
      assert.same(pack(true, true), pack(g:await()))
    end)
  end)

  it("a lock waiter canceled while waiting does not deadlock later lockers (copas #199/#200)", function()
    run(function()
      local m = fio.mutex()
      m:lock()
      local b = spawn(function() return m:lock() end)
      settle()
      assert.same(pack(nil, fio.Canceled), pack(b:cancel()))
      local c = spawn(function()
        m:lock()
        m:unlock()
        return "c locked"
      end)
      settle()
      m:unlock()
      local dt, r = helper.timed(fio.await, c)
      assert.same(pack("c locked"), r)
      assert.is_true(dt < helper.bound(0.05), "c waited " .. dt)
      -- free again: the canceled waiter holds nothing
      assert.same({ true }, { m:lock(0) })
      m:unlock()
    end)
  end)

  it("a lock waiter canceled as the holder unlocks does not deadlock the next locker", function()
    run(function()
      local m = fio.mutex()
      m:lock()
      local b = spawn(function() return m:with(fio.sleep, LONG) end)
      local c = spawn(function() return m:with(function() return "c locked" end) end)
      settle()
      m:unlock()                                        -- handed to b
      assert.same(pack(nil, fio.Canceled), pack(b:cancel())) -- b's with unlocks
      assert.same(pack("c locked"), pack(c:await()))
      assert.same({ true }, { m:lock(0) })
      m:unlock()
    end)
  end)

  it("a lock waiter that timed out does not take a later unlock (copas #208/#209)", function()
    run(function()
      local m = fio.mutex()
      m:lock()
      local b = spawn(function() return m:lock(0.01) end)
      fio.sleep(0.03)
      assert.same(pack(nil, "timeout"), pack(b:await()))
      local c = spawn(function()
        m:lock()
        m:unlock()
        return "c locked"
      end)
      settle()
      m:unlock()
      local dt, r = helper.timed(fio.await, c)
      assert.same(pack("c locked"), r)
      assert.is_true(dt < helper.bound(0.05), "c waited " .. dt)
    end)
  end)

  it("with(fn, ...) returns fn's results and unlocks, also when fn raises", function()
    run(function()
      local m = fio.mutex()
      assert.same(pack(2, nil), pack(m:with(function(x) return x * 2, nil end, 1)))
      assert.same({ true }, { m:lock(0) })
      m:unlock()
      assert.same({ false, "inside" }, { pcall(m.with, m, function() error("inside", 0) end) })
      assert.same({ true }, { m:lock(0) })
      m:unlock()
    end)
  end)

  it("raises on misuse: unlock when not locked, unlock by another fiber, lock twice", function()
    run(function()
      local m = fio.mutex()
      local ok, err = pcall(m.unlock, m)
      assert.is_false(ok)
      assert.matches("unlock of a mutex this fiber does not hold", err, 1, true)
      m:lock()
      local other = spawn(function() return pcall(m.unlock, m) end)
      local ook, oerr = other:await()
      assert.is_false(ook)
      assert.matches("does not hold", oerr, 1, true)
      ok, err = pcall(m.lock, m) -- not reentrant: raises rather than deadlock
      assert.is_false(ok)
      assert.matches("already locked by this fiber", err, 1, true)
      assert.same(pack(true), pack(m:unlock())) -- the misuse changed nothing
      assert.has_error(function() m:lock("soon") end)
    end)
  end)

  it("works from the main chunk", function()
    local m = fio.mutex()
    local f = fio.async(function() return m:with(fio.sleep, 0.01) end)
    fio.yield()
    assert.same({ true }, { m:lock() })
    assert.is_true(f:done())
    m:unlock()
  end)
end)

describe("fio.condition", function()
  it("wait releases the mutex while it waits and holds it again on return", function()
    local log, rec = helper.log()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      local ready = false
      local waiter = spawn(function()
        m:lock()
        while not ready do
          rec("wait")
          assert.same(pack(true), pack(c:wait(m)))
        end
        rec("woke")
        return m:unlock() -- raises unless held
      end)
      settle()
      assert.same({ true }, { m:lock(0) }) -- free while the waiter waits
      ready = true
      c:signal()
      rec("signaled")
      fio.yield()
      m:unlock()
      assert.same(pack(true), pack(waiter:await()))
    end)
    assert.same({ "wait", "signaled", "woke" }, log)
  end)

  it("signal wakes one waiter, the first; broadcast wakes all, in the order they waited", function()
    local log, rec = helper.log()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      for i = 1, 5 do
        spawn(function()
          m:lock()
          c:wait(m)
          rec(i)
          m:unlock()
        end)
      end
      settle()
      c:signal()
      fio.sleep(0.005)
      rec("broadcast")
      c:broadcast()
      fio.sleep(0.005)
    end)
    assert.same({ 1, "broadcast", 2, 3, 4, 5 }, log)
  end)

  it("a signal with nobody waiting is not remembered", function()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      c:signal()
      c:broadcast()
      m:lock()
      assert.same(pack(nil, "timeout"), pack(c:wait(m, 0.01)))
      m:unlock()
    end)
  end)

  it("wait(m, timeout) returns nil, \"timeout\" with the mutex held", function()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      m:lock()
      local dt, r = helper.timed(c.wait, c, m, 0.02)
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt >= 0.019 and dt < 0.02 + helper.bound(0.1), "returned after " .. dt)
      assert.same(pack(true), pack(m:unlock()))
    end)
  end)

  it("a waiter that times out while another holds the mutex returns only once it has it again", function()
    local log, rec = helper.log()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      local waiter = spawn(function()
        m:lock()
        local r = pack(c:wait(m, 0.01))
        rec("returned")
        m:unlock()
        return r
      end)
      settle()
      m:lock()
      fio.sleep(0.03) -- the timeout passes while we hold m
      rec("unlock")
      m:unlock()
      assert.same(pack(nil, "timeout"), waiter:await())
    end)
    assert.same({ "unlock", "returned" }, log)
  end)

  it("a waiter that timed out does not take a later signal: the next waiter does", function()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      local a = spawn(function()
        m:lock()
        local r = pack(c:wait(m, 0.01))
        m:unlock()
        return r
      end)
      local b = spawn(function()
        m:lock()
        local r = pack(c:wait(m))
        m:unlock()
        return r
      end)
      fio.sleep(0.03)
      assert.same(pack(nil, "timeout"), a:await())
      c:signal()
      assert.same(pack(true), b:await())
    end)
  end)

  it("a canceled waiter raises Canceled holding the mutex, and a signal goes to the next waiter", function()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      local held
      local a = spawn(function()
        m:lock()
        local _, err = pcall(c.wait, c, m)
        held = pcall(m.unlock, m) -- succeeds only if a holds m
        error(err, 0)
      end)
      local b = spawn(function()
        m:lock()
        local r = pack(c:wait(m))
        m:unlock()
        return r
      end)
      settle()
      m:lock()
      local canceler = spawn(function() return a:cancel() end)
      fio.sleep(0.01)
      assert.is_false(a:done()) -- its Canceled comes out only once it holds m
      m:unlock()
      assert.same(pack(nil, fio.Canceled), pack(canceler:await()))
      assert.is_true(held)
      c:signal()
      assert.same(pack(true), b:await())
    end)
  end)

  it("a waiter signaled and then canceled keeps the wake-up: its wait returns true", function()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      local a = spawn(function()
        m:lock()
        local r = pack(c:wait(m))
        m:unlock()
        return r
      end)
      local b = spawn(function()
        m:lock()
        local r = pack(c:wait(m, 0.05))
        m:unlock()
        return r
      end)
      settle()
      c:signal() -- to a, which has not run yet
      assert.same(pack(true), a:cancel()) -- finished anyway: the wake-up was its
      assert.same(pack(nil, "timeout"), b:await()) -- and nobody else's
    end)
  end)

  it("raises when wait is not given a mutex the caller holds", function()
    run(function()
      local m, c = fio.mutex(), fio.condition()
      assert.has_error(function() c:wait() end)
      assert.has_error(function() c:wait({}) end)
      local ok, err = pcall(c.wait, c, m)
      assert.is_false(ok)
      assert.matches("does not hold", err, 1, true)
      m:lock()
      assert.has_error(function() c:wait(m, "soon") end)
      assert.same(pack(true), pack(m:unlock()))
    end)
  end)
end)

describe("fio.queue", function()
  it("gives items in the order they were put; len() counts them; unbounded put never waits", function()
    run(function()
      local q = fio.queue()
      assert.equal(0, q:len())
      for i = 1, 1000 do assert.same(pack(true), pack(q:put(i))) end
      q:put(false)
      q:put("x")
      assert.equal(1002, q:len())
      for i = 1, 1000 do assert.equal(i, q:get()) end
      assert.is_false(q:get())
      assert.equal("x", q:get())
      assert.equal(0, q:len())
    end)
  end)

  it("get waits for a put; getters get items in the order they began waiting", function()
    local log, rec = helper.log()
    run(function()
      local q = fio.queue()
      for i = 1, 4 do
        spawn(function() rec(i .. ":" .. q:get()) end)
      end
      settle()
      rec("put")
      for _, x in ipairs { "a", "b", "c", "d" } do q:put(x) end
      assert.equal(0, q:len()) -- handed to the getters
      fio.sleep(0.005)
    end)
    assert.same({ "put", "1:a", "2:b", "3:c", "4:d" }, log)
  end)

  it("a bounded queue's put waits while it is full; waiting putters get in in the order they came", function()
    run(function()
      local q = fio.queue(2)
      q:put(1)
      q:put(2)
      local done = {}
      for i = 3, 6 do
        spawn(function()
          q:put(i)
          done[#done + 1] = i
        end)
      end
      settle()
      assert.equal(2, q:len())
      assert.same({}, done)
      local got = {}
      for k = 1, 6 do got[k] = q:get() end
      assert.same({ 1, 2, 3, 4, 5, 6 }, got)
      settle()
      assert.same({ 3, 4, 5, 6 }, done)
      assert.equal(0, q:len())
    end)
  end)

  it("capacity 0: each put waits until a get takes its item", function()
    local log, rec = helper.log()
    run(function()
      local q = fio.queue(0)
      spawn(function()
        for i = 1, 3 do
          q:put(i)
          rec("put " .. i)
        end
      end)
      fio.sleep(0.01)
      assert.equal(0, q:len())
      rec("get " .. q:get())
      fio.sleep(0.01)
      rec("get " .. q:get())
      rec("get " .. q:get())
      settle()
      assert.same(pack(nil, "timeout"), pack(q:put("nobody gets it", 0.01)))
    end)
    -- the producer waits in each put until the consumer's get takes its item
    assert.same({ "get 1", "put 1", "get 2", "put 2", "put 3", "get 3" }, log)
  end)

  it("get(timeout) on an empty queue returns nil, \"timeout\"", function()
    run(function()
      local q = fio.queue()
      local dt, r = helper.timed(q.get, q, 0.02)
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt >= 0.019 and dt < 0.02 + helper.bound(0.1), "returned after " .. dt)
      assert.same(pack(nil, "timeout"), pack(q:get(0)))
    end)
  end)

  it("put(item, timeout) on a full queue returns nil, \"timeout\" and the item never arrives", function()
    run(function()
      local q = fio.queue(1)
      q:put("first")
      local dt, r = helper.timed(q.put, q, "late", 0.02)
      assert.same(pack(nil, "timeout"), r)
      assert.is_true(dt >= 0.019 and dt < 0.02 + helper.bound(0.1), "returned after " .. dt)
      assert.equal(1, q:len())
      assert.equal("first", q:get())
      assert.same(pack(nil, "timeout"), pack(q:get(0.01)))
    end)
  end)

  it("a getter that timed out does not take a later item: the next getter does", function()
    run(function()
      local q = fio.queue()
      local a = spawn(function() return q:get(0.01) end)
      local b = spawn(function() return q:get() end)
      fio.sleep(0.03)
      assert.same(pack(nil, "timeout"), pack(a:await()))
      q:put("item")
      assert.same(pack("item"), pack(b:await()))
      assert.equal(0, q:len())
    end)
  end)

  it("a canceled getter takes no item: an item put while it is being canceled goes to the next getter", function()
    run(function()
      local q = fio.queue()
      local a = spawn(function() return q:get() end)
      local b = spawn(function() return q:get() end)
      settle()
      spawn(function() q:put("item") end) -- runs after the cancel request
      assert.same(pack(nil, fio.Canceled), pack(a:cancel()))
      assert.same(pack("item"), pack(b:await()))
      assert.equal(0, q:len())
      q:put("next")
      assert.equal("next", q:get(0))
    end)
  end)

  it("a getter canceled after an item was handed to it still returns the item", function()
    run(function()
      local q = fio.queue()
      local a = spawn(function() return q:get() end)
      settle()
      q:put("item") -- handed to a, which has not run yet
      assert.same(pack("item"), pack(a:cancel()))
      assert.equal(0, q:len())
    end)
  end)

  it("a canceled putter's item is never received, and the next putter's is", function()
    run(function()
      local q = fio.queue(1)
      q:put(1)
      local a = spawn(function() return q:put("canceled") end)
      local b = spawn(function() return q:put(2) end)
      settle()
      assert.same(pack(nil, fio.Canceled), pack(a:cancel()))
      assert.equal(1, q:len())
      assert.equal(1, q:get())
      assert.same(pack(true), pack(b:await()))
      assert.equal(2, q:get())
      assert.same(pack(nil, "timeout"), pack(q:get(0.01)))
    end)
  end)

  it("close wakes waiting getters with nil and makes waiting putters raise; queued items are still got", function()
    run(function()
      local empty, full = fio.queue(), fio.queue(2)
      local getters = {}
      for i = 1, 3 do getters[i] = spawn(function() return pack(empty:get()) end) end
      full:put("a")
      full:put("b")
      local putters = {}
      for i = 1, 3 do putters[i] = spawn(function() return pcall(full.put, full, "p" .. i) end) end
      settle()
      empty:close()
      full:close()
      for i = 1, 3 do
        assert.same(pack(nil), getters[i]:await()) -- nil alone: not "timeout"
        local ok, err = putters[i]:await()
        assert.is_false(ok)
        assert.matches("put on a closed queue", err, 1, true)
      end
      assert.equal(2, full:len())
      assert.equal("a", full:get())
      assert.equal("b", full:get())
      assert.same(pack(nil), pack(full:get()))
      assert.same(pack(nil), pack(full:get(1))) -- at once, not after the timeout
      assert.equal(0, full:len())
    end)
  end)

  it("close on a rendezvous queue (capacity 0) ends the waits on either side", function()
    run(function()
      local q = fio.queue(0)
      local g = spawn(function() return pack(q:get()) end)
      settle()
      q:close()
      assert.same(pack(nil), g:await())
      local r = fio.queue(0)
      local p = spawn(function() return pcall(r.put, r, 1) end)
      settle()
      r:close()
      assert.is_false((p:await()))
      assert.same(pack(nil), pack(r:get()))
    end)
  end)

  it("after close: put raises, get returns nil once drained, close again does nothing", function()
    run(function()
      local q = fio.queue()
      q:put(1)
      q:close()
      q:close()
      local ok, err = pcall(q.put, q, 2)
      assert.is_false(ok)
      assert.matches("put on a closed queue", err, 1, true)
      assert.equal(1, q:len())
      assert.equal(1, q:get())
      assert.is_nil(q:get())
      assert.equal(0, q:len())
    end)
  end)

  it("raises on a nil item or a bad capacity or timeout", function()
    run(function()
      local q = fio.queue()
      local ok, err = pcall(q.put, q, nil)
      assert.is_false(ok)
      assert.matches("nil is not an item", err, 1, true)
      assert.equal(0, q:len())
      assert.has_error(function() q:put(1, "soon") end)
      assert.has_error(function() q:get("soon") end)
      assert.has_error(function() fio.queue(-1) end)
      assert.has_error(function() fio.queue(1.5) end)
      assert.equal(0, q:len())
    end)
  end)

  it("carries 100,000 items producer -> queue -> stage -> queue -> consumer, in order, none lost", function()
    local N = 100000
    run(function()
      local q1, q2 = fio.queue(64), fio.queue(64)
      spawn(function()
        for i = 1, N do q1:put(i) end
        q1:close()
      end)
      spawn(function()
        for x in function() return q1:get() end do q2:put(x * 2) end
        q2:close()
      end)
      local n, sum, inorder = 0, 0, true
      for x in function() return q2:get() end do
        n = n + 1
        if x ~= 2 * n then inorder = false end
        sum = sum + x
      end
      assert.equal(N, n)
      assert.is_true(inorder)
      assert.equal(N * (N + 1), sum)
      assert.equal(0, q1:len() + q2:len())
    end)
  end)

  it("with 4 producers and 4 consumers on one queue, every item is received exactly once", function()
    local P, PER = 4, 5000
    run(function()
      local q = fio.queue(8)
      local seen = {}
      local producers, consumers = fio.group(), fio.group()
      for p = 1, P do
        producers:async(function()
          for i = 1, PER do q:put(p * 1000000 + i) end
        end)
      end
      for _ = 1, 4 do
        consumers:async(function()
          local last = {}
          for x in function() return q:get() end do
            seen[x] = (seen[x] or 0) + 1
            local p, i = x // 1000000, x % 1000000
            assert(i > (last[p] or 0), "a producer's items out of order")
            last[p] = i
          end
        end)
      end
      producers:wait()
      q:close()
      consumers:wait()
      local n = 0
      for x, c in pairs(seen) do
        assert(c == 1, x .. " received " .. c .. " times")
        n = n + 1
      end
      assert.equal(P * PER, n)
    end)
  end)

  it("never loses nor duplicates an item while getters and putters time out and are canceled at random", function()
    math.randomseed(7)
    local N = 3000
    run(function()
      local q = fio.queue(4)
      local put_ok, seen, dup = {}, {}, 0
      local producers, consumers = {}, {}
      local next_item = 0
      local function producer()
        while next_item < N do
          next_item = next_item + 1
          local item = next_item
          local t = math.random() < 0.5 and math.random() * 0.002 or nil
          if q:put(item, t) then put_ok[item] = true end
        end
      end
      local function consumer()
        while true do
          local t = math.random() < 0.5 and math.random() * 0.002 or nil
          local x, err = q:get(t)
          if x == nil and err == nil then return end -- closed and drained
          if x ~= nil then
            if seen[x] then dup = dup + 1 end
            seen[x] = true
            if math.random() < 0.3 then fio.sleep(math.random() * 0.0005) end
          end
        end
      end
      for i = 1, 3 do producers[i] = spawn(producer) end
      for i = 1, 4 do consumers[i] = spawn(consumer) end
      local canceled = 0
      while next_item < N do
        fio.sleep(math.random() * 0.001)
        local list = math.random() < 0.5 and producers or consumers
        local k = math.random(#list)
        list[k]:cancel()
        if outcome(list[k]) == "canceled" then canceled = canceled + 1 end
        list[k] = spawn(list == producers and producer or consumer)
      end
      for _, f in ipairs(producers) do f:await() end
      q:close()
      for _, f in ipairs(consumers) do f:await() end
      assert.is_true(canceled > 0)
      assert.equal(0, dup)
      local nput, nseen = 0, 0
      for item in pairs(put_ok) do
        nput = nput + 1
        assert(seen[item], "item " .. item .. " was put but never received")
      end
      for item in pairs(seen) do
        nseen = nseen + 1
        assert(put_ok[item], "item " .. item .. " was received but its put did not succeed")
      end
      assert.equal(nput, nseen)
      assert.is_true(nput > 0 and nput < N, "items put: " .. nput)
    end)
  end)

  it("fio.timeout around a get loses no item", function()
    run(function()
      local q = fio.queue()
      assert.same(pack(nil, "timeout"), pack(fio.timeout(0.01, q.get, q)))
      q:put("kept")
      assert.equal(1, q:len())
      assert.same(pack("kept"), pack(fio.timeout(1, q.get, q)))
    end)
  end)

  it("works from the main chunk", function()
    local q = fio.queue(0)
    fio.async(function()
      q:put("a")
      q:put("b")
    end)
    assert.equal("a", q:get())
    assert.equal("b", q:get())
    assert.same(pack(nil, "timeout"), pack(q:get(0.01)))
  end)

  it("timed-out and canceled gets leave no garbage behind", function()
    run(function()
      local q = fio.queue()
      for _ = 1, 200 do q:get(0) end
      helper.fullgc()
      local before = collectgarbage("count")
      for _ = 1, 5000 do q:get(0) end
      for _ = 1, 1000 do
        local f = spawn(function() return q:get() end)
        settle()
        f:cancel()
      end
      spawned = {}
      helper.fullgc()
      local grown = collectgarbage("count") - before
      assert.is_true(grown < 64, "Lua heap grew by " .. grown .. " KiB")
      assert.equal(0, q:len())
    end)
  end)
end)

describe("fio.group{limit = n}", function()
  it("runs at most n members at once, and reaches n", function()
    math.randomseed(3)
    run(function()
      local g = fio.group { limit = 3 }
      local running, max, done = 0, 0, 0
      for _ = 1, 30 do
        g:async(function()
          running = running + 1
          if running > max then max = running end
          fio.sleep(math.random() * 0.003)
          running = running - 1
          done = done + 1
        end)
      end
      assert.is_true(g:wait())
      assert.equal(3, max)
      assert.equal(30, done)
    end)
  end)

  it("starts the waiting members in the order they were added", function()
    local log, rec = helper.log()
    run(function()
      local g = fio.group { limit = 2 }
      for i = 1, 6 do
        g:async(function()
          rec("start " .. i)
          fio.sleep(0.002)
        end)
      end
      g:wait()
    end)
    assert.same({ "start 1", "start 2", "start 3", "start 4", "start 5", "start 6" }, log)
  end)

  it("producers waiting in g:async for a turn when the group is canceled get members that never run", function()
    local started = 0
    run(function()
      local g = fio.group { limit = 2 }
      local fs, producers = {}, {}
      for i = 1, 10 do
        producers[i] = fio.async(function()
          fs[i] = g:async(function()
            started = started + 1
            fio.sleep(LONG)
          end)
        end)
      end
      fio.sleep(0.01)
      local dt = helper.timed(g.cancel, g)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      for i = 1, 10 do producers[i]:await() end
      for i = 1, 10 do assert.same(pack(nil, fio.Canceled), pack(fs[i]:await())) end
    end)
    assert.equal(2, started)
  end)

  it("a member whose turn came just before g:cancel, but that has not run yet, never runs", function()
    local ran = {}
    run(function()
      local g = fio.group { limit = 1 }
      g:async(function()
        ran[#ran + 1] = 1
        fio.yield()
      end)
      fio.async(function() g:async(function() ran[#ran + 1] = 2 end) end)
      fio.async(function() g:async(function() ran[#ran + 1] = 3 end) end)
      settle()   -- 1 runs and yields; the producers of 2 and 3 wait for a turn
      settle()   -- 1 ends: its turn is handed to 2's producer, which has not run yet
      g:cancel()
      settle()
    end)
    assert.same({ 1 }, ran)
  end)

  it("the first error cancels the running members, the waiting ones never run, and wait re-raises it", function()
    local started = {}
    run(function()
      local g = fio.group { limit = 2 }
      g:async(function()
        started[#started + 1] = 1
        fio.sleep(LONG)
      end)
      g:async(function()
        started[#started + 1] = 2
        fio.sleep(0.01)
        error("member 2 failed", 0)
      end)
      for i = 3, 8 do
        g:async(function()
          started[#started + 1] = i
          fio.sleep(LONG)
        end)
      end
      local dt, r = helper.timed(pcall, g.wait, g)
      assert.same(pack(false, "member 2 failed"), r)
      assert.is_true(dt < helper.bound(0.5), "wait took " .. dt)
    end)
    assert.same({ 1, 2 }, started)
  end)

  it("a member canceled while running gives its turn to the next waiting member", function()
    local log, rec = helper.log()
    run(function()
      local g = fio.group { limit = 1 }
      local first = g:async(function() fio.sleep(LONG) end)
      fio.async(function() g:async(function() rec("second ran") return "second" end) end)
      settle()
      assert.same(pack(nil, fio.Canceled), pack(first:cancel()))
      assert.is_true(g:wait())
    end)
    assert.same({ "second ran" }, log)
  end)

  it("a member's results are awaited as from fio.async", function()
    run(function()
      local g = fio.group { limit = 1 }
      local a = g:async(function(x) fio.sleep(0.001) return x, nil, "a" end, 1)
      local b = g:async(function(x) return x, "b" end, 2)
      assert.is_true(g:wait())
      assert.same(pack(1, nil, "a"), pack(a:await()))
      assert.same(pack(2, "b"), pack(b:await()))
    end)
  end)

  it("raises on a limit that is not a positive integer", function()
    assert.has_error(function() fio.group { limit = 0 } end)
    assert.has_error(function() fio.group { limit = -1 } end)
    assert.has_error(function() fio.group { limit = 1.5 } end)
    assert.has_error(function() fio.group { limit = "2" } end)
  end)
end)
