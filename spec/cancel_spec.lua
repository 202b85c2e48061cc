-- Cancellation: fio.cancel, fio.Canceled, fio.canceled, fio.checkcancel,
-- fio.shield, fio.timeout, and unwinding (<close>, pcall) on cancel.
-- (DESIGN.md section 1.) A fiber blocked in a pipe read is in pipe_spec.
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack
local LONG = helper.LONG

-- Start a fiber that sleeps LONG seconds under a <close> variable, and let it
-- reach the sleep. Returns the future and the closer (closer.err is what the
-- fiber was unwound with).
local function sleeper()
  local c = helper.closer("sleeper")
  local f = fio.async(function()
    local guard <close> = c
    fio.sleep(LONG)
    return "woke up"
  end)
  fio.sleep(0.005)
  return f, c
end

describe("fio.Canceled", function()
  it("prints as something containing 'canceled'", function()
    assert.is_not_nil(fio.Canceled)
    assert.matches("canceled", tostring(fio.Canceled):lower(), 1, true)
  end)
end)

describe("fio.cancel", function()
  it("cancel interrupts a sleeping fiber within a few milliseconds, and the fiber saw Canceled", function()
    fio.run(function()
      local f, c = sleeper()
      local dt, r = helper.timed(fio.cancel, f)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      assert.is_true(c.closed)
      assert.is_true(rawequal(fio.Canceled, c.err))
      assert.is_true(f:done())
    end)
  end)

  it("cancel from the main chunk interrupts a sleeping fiber", function()
    local f, c = sleeper()
    local dt, r = helper.timed(f.cancel, f)
    assert.same(pack(nil, fio.Canceled), r)
    assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
    assert.is_true(rawequal(fio.Canceled, c.err))
  end)

  it("a fiber canceled before it started never runs its body", function()
    local ran = false
    fio.run(function()
      local f = fio.async(function() ran = true end)
      assert.same(pack(nil, fio.Canceled), pack(fio.cancel(f)))
      fio.sleep(0.005)
    end)
    assert.is_false(ran)
  end)

  it("a fiber canceled from the main chunk before it started never runs its body", function()
    local ran = false
    local f = fio.async(function() ran = true end)
    assert.same(pack(nil, fio.Canceled), pack(f:cancel()))
    fio.sleep(0.005)
    assert.is_false(ran)
  end)

  it("cancel of a finished fiber returns its results", function()
    local t = {}
    fio.run(function()
      local f = fio.async(function() return t, nil, 3 end)
      fio.await(f)
      local r = pack(fio.cancel(f))
      assert.equal(3, r.n)
      assert.is_true(rawequal(t, r[1]))
      assert.is_nil(r[2])
      assert.equal(3, r[3])
    end)
  end)

  it("cancel of a fiber that ended with another error re-raises that error", function()
    local e = {}
    fio.run(function()
      local f = fio.async(function() error(e) end)
      local ok1 = pcall(fio.await, f)
      local ok2, err2 = pcall(fio.cancel, f)
      assert.is_false(ok1)
      assert.is_false(ok2)
      assert.is_true(rawequal(e, err2))
    end)
  end)

  it("cancel re-raises the error of a fiber that fails while unwinding", function()
    fio.run(function()
      local f = fio.async(function()
        local ok = pcall(fio.sleep, LONG)
        assert(not ok)
        error("cleanup failed", 0)
      end)
      fio.sleep(0.005)
      assert.same({ false, "cleanup failed" }, { pcall(fio.cancel, f) })
    end)
  end)

  it("is idempotent: a second cancel returns the same", function()
    fio.run(function()
      local f = sleeper()
      assert.same(pack(nil, fio.Canceled), pack(fio.cancel(f)))
      assert.same(pack(nil, fio.Canceled), pack(f:cancel()))
      local g = fio.async(function() return "g", nil end)
      fio.await(g)
      assert.same(pack("g", nil), pack(fio.cancel(g)))
      assert.same(pack("g", nil), pack(fio.cancel(g)))
    end)
  end)

  it("await of a fiber that ended by cancellation returns nil, Canceled and does not raise", function()
    fio.run(function()
      local f = sleeper()
      fio.cancel(f)
      local ok, a, b = pcall(fio.await, f)
      assert.is_true(ok)
      assert.is_nil(a)
      assert.is_true(rawequal(fio.Canceled, b))
      assert.same(pack(nil, fio.Canceled), pack(f:await()))
    end)
  end)

  it("another fiber already awaiting the target gets nil, Canceled", function()
    fio.run(function()
      local f = sleeper()
      local waiter = fio.async(function() return pack(pcall(fio.await, f)) end)
      fio.sleep(0.005)
      fio.cancel(f)
      assert.same(pack(true, nil, fio.Canceled), fio.await(waiter))
    end)
  end)

  it("the target sees Canceled once, may catch it and go on; cancel then returns its results", function()
    local log, rec = helper.log()
    fio.run(function()
      local f = fio.async(function()
        local ok, err = pcall(fio.sleep, LONG)
        rec(ok)
        rec(rawequal(err, fio.Canceled))
        fio.sleep(0.01) -- no second Canceled here
        rec("slept again")
        return "survived", 2
      end)
      fio.sleep(0.005)
      assert.same(pack("survived", 2), pack(fio.cancel(f)))
    end)
    assert.same({ false, true, "slept again" }, log)
  end)

  it("a cancel requested while the target is ready lands at its fio.yield", function()
    local log, rec = helper.log()
    fio.run(function()
      local f = fio.async(function()
        rec("target runs")
        local ok, err = pcall(fio.yield)
        rec(ok)
        rec(rawequal(err, fio.Canceled))
      end)
      fio.yield() -- the target runs and yields; it is ready again
      rec("canceling")
      fio.cancel(f)
    end)
    assert.same({ "target runs", "canceling", false, true }, log)
  end)

  it("interrupts a fiber waiting in fio.await of another fiber, which keeps running", function()
    fio.run(function()
      local inner = fio.async(function() fio.sleep(0.05) return "inner" end)
      local outer = fio.async(function() return fio.await(inner) end)
      fio.sleep(0.005)
      local dt, r = helper.timed(fio.cancel, outer)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.04), "cancel took " .. dt)
      assert.is_false(inner:done())
      assert.equal("inner", fio.await(inner))
    end)
  end)

  it("interrupts a fiber waiting in fio.select", function()
    fio.run(function()
      local a = fio.async(fio.sleep, LONG)
      local waiter = fio.async(function() return fio.select(a) end)
      fio.sleep(0.005)
      local dt, r = helper.timed(fio.cancel, waiter)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      assert.is_false(a:done())
      fio.cancel(a)
    end)
  end)

  it("pcall around a canceled sleep returns false, Canceled", function()
    fio.run(function()
      local f = fio.async(function() return pcall(fio.sleep, LONG) end)
      fio.sleep(0.005)
      assert.same(pack(false, fio.Canceled), pack(fio.cancel(f)))
    end)
  end)
end)

describe("<close> variables on cancel", function()
  it("closes every <close> variable of a canceled sleeping fiber, innermost first, with Canceled", function()
    local log, rec = helper.log()
    local outer, inner = helper.closer("outer", rec), helper.closer("inner", rec)
    fio.run(function()
      local f = fio.async(function()
        local guard <close> = outer
        do
          local guard_inner <close> = inner
          fio.sleep(LONG)
          rec("not reached")
        end
      end)
      fio.sleep(0.005)
      assert.same(pack(nil, fio.Canceled), pack(fio.cancel(f)))
    end)
    assert.same({ "inner", "outer" }, log)
    assert.is_true(rawequal(fio.Canceled, inner.err))
    assert.is_true(rawequal(fio.Canceled, outer.err))
  end)

  it("closes a plain setmetatable({}, {__close = ...}) variable when the fiber is canceled", function()
    local closed_with
    local f = fio.async(function()
      local guard <close> = setmetatable({}, { __close = function(_, e) closed_with = e end })
      fio.sleep(LONG)
    end)
    fio.sleep(0.005)
    f:cancel()
    assert.is_true(rawequal(fio.Canceled, closed_with))
  end)
end)

describe("fio.canceled and fio.checkcancel", function()
  it("fio.canceled() is false in the main chunk", function()
    assert.is_false(fio.canceled())
  end)

  it("fio.canceled() is false in a fiber with no cancel pending, and checkcancel does nothing", function()
    local r = pack(fio.run(function()
      return fio.canceled(), select("#", fio.checkcancel()), "after"
    end))
    assert.same(pack(false, 0, "after"), r)
  end)

  it("report and raise a cancel that arrived during a shield", function()
    local got
    fio.run(function()
      local f = fio.async(function()
        fio.shield(function() fio.sleep(0.02) end)
        local pending = fio.canceled()
        local ok, err = pcall(fio.checkcancel)
        got = { pending, ok, rawequal(err, fio.Canceled) }
        return "caught"
      end)
      fio.sleep(0.005)
      assert.equal("caught", fio.cancel(f))
    end)
    assert.same({ true, false, true }, got)
  end)

  it("checkcancel stops a CPU-bound loop", function()
    local iterations
    fio.run(function()
      local f = fio.async(function()
        fio.shield(fio.sleep, 0.02)
        local n = 0
        local _, err = pcall(function()
          while true do
            fio.checkcancel()
            n = n + 1
            if n > 1e6 then return end
          end
        end)
        iterations = n
        error(err, 0)
      end)
      fio.sleep(0.005)
      assert.same(pack(nil, fio.Canceled), pack(fio.cancel(f)))
    end)
    assert.equal(0, iterations)
  end)
end)

describe("fio.shield", function()
  it("returns all of fn's results", function()
    local r = pack(fio.run(function()
      return fio.shield(function(a, b) return b, nil, a, nil end, 1, 2)
    end))
    assert.same(pack(2, nil, 1, nil), r)
  end)

  it("re-raises fn's error with the same value", function()
    local e = {}
    local ok, err = pcall(fio.run, function()
      return fio.shield(function() error(e) end)
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
  end)

  it("holds off a cancel until fn returns; the cancel lands at the next suspension point after", function()
    local log, rec = helper.log()
    local shielded_for
    fio.run(function()
      local f = fio.async(function()
        local t0 = fio.now()
        fio.shield(function()
          fio.sleep(0.03)
          rec("shielded sleep done")
        end)
        shielded_for = fio.now() - t0
        rec("after shield")
        local ok, err = pcall(fio.sleep, LONG)
        rec(ok)
        rec(rawequal(err, fio.Canceled))
        error(err, 0)
      end)
      fio.sleep(0.005)
      local dt, r = helper.timed(fio.cancel, f)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(1), "cancel took " .. dt)
    end)
    assert.same({ "shielded sleep done", "after shield", false, true }, log)
    assert.is_true(shielded_for >= 0.029, "the shielded sleep lasted " .. shielded_for)
  end)

  it("does not deliver the cancel inside fn even when fn yields", function()
    local inside
    fio.run(function()
      local f = fio.async(function()
        fio.shield(function()
          local delivered = 0
          for _ = 1, 5 do
            if not pcall(fio.yield) then delivered = delivered + 1 end
          end
          fio.sleep(0.005)
          inside = delivered
        end)
        fio.sleep(LONG)
      end)
      fio.yield() -- the target enters the shield and yields
      local dt, r = helper.timed(fio.cancel, f)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(1), "cancel took " .. dt)
    end)
    assert.equal(0, inside)
  end)

  it("after a delivered Canceled was caught, later shields and sleeps run normally", function()
    local log, rec = helper.log()
    fio.run(function()
      local f = fio.async(function()
        local ok = pcall(fio.yield) -- the cancel lands here, outside any shield
        rec(ok)
        fio.shield(function() fio.sleep(0.001) rec("shield ran") end)
        fio.sleep(0.001)
        rec("slept")
        return "ended"
      end)
      fio.yield()
      assert.equal("ended", fio.cancel(f))
    end)
    assert.same({ false, "shield ran", "slept" }, log)
  end)
end)

describe("fio.timeout", function()
  it("returns all of fn's results when fn ends in time", function()
    local r = pack(fio.run(function()
      return fio.timeout(1, function(a) fio.sleep(0.001) return a, nil, "z", nil end, "x")
    end))
    assert.same(pack("x", nil, "z", nil), r)
  end)

  it("returns nil, 'timeout' after canceling fn, which saw Canceled", function()
    local c = helper.closer("fn")
    local dt, r = helper.timed(fio.run, function()
      return fio.timeout(0.02, function()
        local guard <close> = c
        fio.sleep(LONG)
        return "not reached"
      end)
    end)
    assert.same(pack(nil, "timeout"), r)
    assert.is_true(c.closed)
    assert.is_true(rawequal(fio.Canceled, c.err))
    assert.is_true(dt >= 0.019, "returned after " .. dt)
    assert.is_true(dt < helper.bound(1), "returned after " .. dt)
  end)

  it("re-raises fn's error with the same value", function()
    local e = {}
    local ok, err = pcall(fio.run, function()
      return fio.timeout(1, function() error(e) end)
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(e, err))
  end)

  it("works from the main chunk", function()
    assert.same(pack(nil, "timeout"), pack(fio.timeout(0.01, fio.sleep, LONG)))
    assert.same(pack("quick"), pack(fio.timeout(1, function() return "quick" end)))
  end)

  it("is itself cancelable, canceling fn too", function()
    local c = helper.closer("fn")
    local total = helper.timed(fio.run, function()
      local f = fio.async(function()
        return fio.timeout(LONG, function()
          local guard <close> = c
          fio.sleep(LONG)
        end)
      end)
      fio.sleep(0.005)
      local dt, r = helper.timed(fio.cancel, f)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
    end)
    assert.is_true(c.closed)
    assert.is_true(rawequal(fio.Canceled, c.err))
    assert.is_true(total < helper.bound(1), "run took " .. total)
  end)
end)
