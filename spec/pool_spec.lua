-- The thread pool and the `threads` backend (DESIGN.md section 2: the
-- fallback ladder, the pool): pipes served without parking pool threads, the
-- deadlock that would otherwise follow, cancellation of queued and running
-- pool work, the pool's limit and shrinking, and closing a state with work in
-- flight. Every spec here needs the threads backend (FIBERIO_BACKEND=threads)
-- and is pending under another.
--
-- FIBERIO_THREADS_POLL=0 (in child processes) sends pipe I/O to the pool
-- instead of polling it on the loop thread: the only way to put blocking
-- syscalls on pool threads until the bindings open regular files.
local helper = require "helper"
local fio = helper.fio
local pack = helper.pack
local send = helper.send

local function threads_backend()
  local b = fio.backend()
  if b ~= "threads" then
    pending("needs the threads backend; this run uses " .. tostring(b)
            .. " (set FIBERIO_BACKEND=threads)")
    return false
  end
  return true
end

local shquote = helper.shquote

-- Children run on the threads backend: every call gives them
-- FIBERIO_BACKEND=threads with the rest of their environment.
local child = helper.child

-- Lua source for child processes: pool_threads(), the number of this
-- process's threads named "fiberio-pool" (a sanitizer may add threads of its
-- own, so threads are counted by name).
local THREADS = [[
local function pool_threads()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  local p = assert(io.popen("cat /proc/" .. pid .. "/task/*/comm 2>/dev/null"))
  local n = 0
  for name in p:lines() do
    if name == "fiberio-pool" then n = n + 1 end
  end
  p:close()
  return n
end
]]
load(THREADS .. "_G.pool_threads_ = pool_threads")()
local pool_threads = _G.pool_threads_
_G.pool_threads_ = nil

describe("the threads backend on pipes", function()
  it("carries 1,000 round trips between two fibers intact", function()
    if not threads_backend() then return end
    local got = pack(fio.run(function()
      local r1, w1 = fio.pipe()
      local r2, w2 = fio.pipe()
      local echo = fio.async(function()
        for _ = 1, 1000 do send(w2, r1:read(6)) end
      end)
      local ok = 0
      for i = 1, 1000 do
        local msg = string.format("%06d", i)
        send(w1, msg)
        if r2:read(6) == msg then ok = ok + 1 end
      end
      fio.await(echo)
      for _, h in ipairs { r1, w1, r2, w2 } do h:close() end
      return ok
    end))
    assert.same(pack(1000), got)
  end)

  it("200 fibers blocked reading 200 empty pipes all finish when one more fiber writes to each", function()
    if not threads_backend() then return end
    local before = pool_threads()
    local res = pack(fio.timeout(helper.bound(10), function()
      local pipes, readers = {}, {}
      for i = 1, 200 do
        local r, w = fio.pipe()
        pipes[i] = { r, w }
        readers[i] = fio.async(function() return r:read(4) end)
      end
      fio.yield() -- every reader is blocked now
      local writer = fio.async(function()
        for i = 1, 200 do send(pipes[i][2], string.format("%04d", i)) end
      end)
      fio.await(writer)
      local ok = 0
      for i = 1, 200 do
        if readers[i]:await() == string.format("%04d", i) then ok = ok + 1 end
        pipes[i][1]:close()
        pipes[i][2]:close()
      end
      return ok
    end))
    assert.same(pack(200), res)
    -- Waiting for a pipe parks no pool thread: none was started for them.
    local after = pool_threads()
    assert.is_true(after <= before, "pool threads grew from " .. before .. " to " .. after)
  end)

  it("cancel of a fiber blocked reading an empty pipe is prompt, and the pipe still works", function()
    if not threads_backend() then return end
    fio.run(function()
      local r, w = fio.pipe()
      local reader = fio.async(function() return r:read(5) end)
      fio.sleep(0.01)
      assert.is_false(reader:done())
      local dt, res = helper.timed(fio.cancel, reader)
      assert.same(pack(nil, fio.Canceled), res)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      send(w, "after")
      assert.equal("after", r:read(5))
      r:close()
      w:close()
    end)
  end)

  it("cancel of a fiber blocked writing to a full pipe is prompt, and the pipe still works", function()
    if not threads_backend() then return end
    fio.run(function()
      local r, w = fio.pipe()
      local writer = fio.async(function() return w:write(string.rep("z", 1 << 20)) end)
      fio.sleep(0.02)
      assert.is_false(writer:done())
      local dt, res = helper.timed(fio.cancel, writer)
      assert.same(pack(nil, fio.Canceled), res)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      -- What the canceled write put in the pipe is whole, and a new message
      -- gets through after it.
      local tail = fio.async(function() send(w, "next") w:close() end)
      local all = r:read("a")
      fio.await(tail)
      assert.equal("next", all:sub(-4))
      assert.is_nil(all:sub(1, -5):find("[^z]"))
      r:close()
    end)
  end)

  it("a reader sees EOF when the write end closes while it waits", function()
    if not threads_backend() then return end
    local got = pack(fio.run(function()
      local r, w = fio.pipe()
      local reader = fio.async(function() return pack(r:read(4)) end)
      fio.sleep(0.01)
      w:close()
      local res = fio.await(reader)
      r:close()
      return res.n, res[1]
    end))
    assert.same(pack(1, nil), got)
  end)
end)

describe("the pool", function()
  it("cancel interrupts a pool thread blocked in read(2) on a pipe, and the pipe still works", function()
    if not threads_backend() then return end
    local out, rc = child([[
      local fio = require "fiberio"
      local r, w = fio.pipe()
      local reader = fio.async(function() return r:read(5) end)
      fio.sleep(0.05) -- the read is blocked in the kernel on a pool thread
      print("blocked", reader:done())
      local t0 = fio.now()
      print("cancel", reader:cancel())
      print("prompt", fio.now() - t0 < ]] .. helper.bound(0.5) .. [[)
      w:write("after")
      print("read", r:read(5))
      r:close(); w:close()
    ]], { env = { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0 } })
    assert.equal(0, rc, out)
    assert.equal("blocked\tfalse\ncancel\tnil\tfiberio: canceled\nprompt\ttrue\nread\tafter\n", out)
  end)

  it("cancel of an op still queued behind a busy thread ends it at once; it never runs", function()
    if not threads_backend() then return end
    local out, rc = child([[
      local fio = require "fiberio"
      local r1, w1 = fio.pipe()
      local r2, w2 = fio.pipe()
      local a = fio.async(function() return r1:read(1) end) -- takes the only thread
      fio.sleep(0.05)
      local b = fio.async(function() return r2:read(4) end) -- queued behind a
      fio.sleep(0.05)
      local t0 = fio.now()
      print("b", b:cancel())
      print("prompt", fio.now() - t0 < ]] .. helper.bound(0.5) .. [[)
      print("a still blocked", not a:done())
      print("a", a:cancel())
      -- Had b's read run, it would take these bytes and the read below would
      -- block for ever.
      w2:write("data")
      print("r2", r2:read(4))
      for _, h in ipairs { r1, w1, r2, w2 } do h:close() end
    ]], { env = { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_SIZE = 1 } })
    assert.equal(0, rc, out)
    assert.equal("b\tnil\tfiberio: canceled\nprompt\ttrue\na still blocked\ttrue\n"
                 .. "a\tnil\tfiberio: canceled\nr2\tdata\n", out)
  end)

  it("runs 200 concurrent ops on a pool of FIBERIO_POOL_SIZE=2 threads, never more", function()
    if not threads_backend() then return end
    local out, rc = child(THREADS .. [[
      local fio = require "fiberio"
      local most = 0
      local ok = fio.run(function()
        local fs = {}
        for i = 1, 100 do -- a write and a read each: 200 ops at once
          fs[i] = fio.async(function()
            local r, w = fio.pipe()
            local msg = string.format("%08d", i)
            w:write(msg)
            local got = r:read(8)
            r:close(); w:close()
            return got == msg
          end)
        end
        fio.yield() -- every fiber has submitted its write
        most = math.max(most, pool_threads())
        local n = 0
        for i = 1, 100 do if fs[i]:await() then n = n + 1 end end
        return n
      end)
      -- Threads live on idle for seconds, so this sees every one started.
      most = math.max(most, pool_threads())
      print("ok", ok)
      print("pool threads", most >= 1 and most <= 2 or most)
    ]], { env = { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_SIZE = 2 } })
    assert.equal(0, rc, out)
    assert.equal("ok\t100\npool threads\ttrue\n", out)
  end)

  it("starts threads past FIBERIO_POOL_EAGER when every thread is blocked, up to FIBERIO_POOL_SIZE", function()
    if not threads_backend() then return end
    -- One thread is started at once; three reads of empty pipes block one
    -- thread each, and the writes that end them are queued behind. Only the
    -- monitor, seeing no work finish, can start the threads they need.
    local out, rc = child(THREADS .. [[
      local fio = require "fiberio"
      fio.run(function()
        local pipes, readers = {}, {}
        for i = 1, 3 do
          local r, w = fio.pipe()
          pipes[i] = { r, w }
          readers[i] = fio.async(function() return r:read(2) end)
        end
        fio.sleep(0.05)
        local writer = fio.async(function()
          for i = 1, 3 do assert(pipes[i][2]:write(("%02d"):format(i))) end
        end)
        for i = 1, 3 do io.write(readers[i]:await(), " ") end
        writer:await()
        print()
        print("threads", pool_threads())
        for i = 1, 3 do pipes[i][1]:close(); pipes[i][2]:close() end
      end)
    ]], { env = { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_EAGER = 1, FIBERIO_POOL_SIZE = 4 } })
    assert.equal(0, rc, out)
    assert.equal("01 02 03 \nthreads\t4\n", out)
  end)

  it("the loop thread reads queued regular files itself while the only pool thread is blocked", function()
    if not threads_backend() then return end
    local dir = helper.mktempdir("pool")
    for i = 1, 20 do helper.put(dir .. "/" .. i, ("%d;"):format(i):rep(1000 + i)) end
    local out, rc = child(([[
      local fio = require "fiberio"
      fio.config{inline = false} -- (the help path, not the inline queue)
      local dir = %q
      fio.run(function()
        local r, w = fio.pipe()
        local blocked = fio.async(function() return r:read(2) end)
        fio.sleep(0.05) -- the only pool thread is in that read
        local i0 = fio._info()
        local fs = {}
        for i = 1, 20 do fs[i] = fio.async(fio.readfile, dir .. "/" .. i) end
        local ok = 0
        for i = 1, 20 do
          if fs[i]:await() == ("%%d;"):format(i):rep(1000 + i) then ok = ok + 1 end
        end
        local i1 = fio._info()
        print(ok, i1.helped - i0.helped, blocked:done())
        -- (a write would queue behind the read: a cancel ends it)
        local a, b = fio.cancel(blocked)
        print(a, rawequal(b, fio.Canceled))
        r:close(); w:close()
      end)
    ]]):format(dir), { env = { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_SIZE = 1 } })
    helper.rmtree(dir)
    assert.equal(0, rc, out)
    assert.equal("20\t20\tfalse\nnil\ttrue\n", out)
  end)

  it("a readfile of a FIFO the loop took back goes to the pool still open: a writer that came and went meanwhile is read", function()
    if not threads_backend() then return end
    local dir = helper.mktempdir("pool")
    local fifo = dir .. "/p"
    assert(os.execute("mkfifo " .. shquote(fifo)))
    local out, rc = child(([[
      local fio = require "fiberio"
      fio.config{inline = false} -- (the help path, not the inline queue)
      local p = %q
      fio.run(function()
        local r, w = fio.pipe()
        local blocked = fio.async(function() return r:read(1) end)
        fio.sleep(0.05) -- the only pool thread is in that read
        local pooled = fio._info().pooled
        local rf = fio.async(fio.readfile, p)
        fio.sleep(0.05)
        -- The loop opened the FIFO without waiting, and gave the readfile
        -- back to the pool: the pipe read, then this one, and again.
        print("back to the pool", fio._info().pooled - pooled)
        -- A writer now opens at once (a reader exists), writes, and leaves,
        -- all before the readfile has a thread.
        local f = assert(io.open(p, "w"))
        f:write("came and went")
        f:close()
        fio.cancel(blocked) -- frees the thread (a write would queue behind)
        print(rf:await())
        -- The same, canceled while it waits on the pool for a writer.
        blocked = fio.async(function() return r:read(1) end)
        fio.sleep(0.05)
        pooled = fio._info().pooled
        rf = fio.async(fio.readfile, p)
        fio.sleep(0.05)
        print("back to the pool", fio._info().pooled - pooled)
        fio.cancel(blocked)
        fio.sleep(0.05) -- now in its wait for a writer
        local t0 = fio.now()
        local a, b = fio.cancel(rf)
        print("canceled", a, rawequal(b, fio.Canceled), fio.now() - t0 < %s)
        r:close(); w:close()
      end)
    ]]):format(fifo, helper.bound(0.5)), { env = { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_SIZE = 1 } })
    helper.rmtree(dir)
    assert.equal(0, rc, out)
    assert.equal("back to the pool\t2\ncame and went\nback to the pool\t2\n"
                 .. "canceled\tnil\ttrue\ttrue\n", out)
  end)

  it("a loop asleep on pool work is woken by each completion: 20,000 calls in a row, and calls racing timers", function()
    if not threads_backend() then return end
    -- Wakes are off while the loop is awake and turned on just before it
    -- sleeps: a wake lost in between would leave this child asleep until
    -- its time bound kills it.
    local out, rc = child([[
      local fio = require "fiberio"
      fio.run(function()
        for _ = 1, 20000 do assert(fio.stat("/")) end
        for k = 1, 2000 do
          local a = fio.async(fio.stat, "/")
          fio.sleep(1e-5 * (k % 7))
          assert(a:await())
        end
        print("ok")
      end)
    ]])
    assert.equal(0, rc, out)
    assert.equal("ok\n", out)
  end)

  it("idle pool threads leave after FIBERIO_POOL_IDLE_MS", function()
    if not threads_backend() then return end
    local out, rc = child(THREADS .. [[
      local fio = require "fiberio"
      local started = fio.run(function()
        local fs = {}
        for i = 1, 8 do
          fs[i] = fio.async(function()
            local r, w = fio.pipe()
            w:write("x")
            local s = r:read(1)
            r:close(); w:close()
            return s
          end)
        end
        for i = 1, 8 do assert(fs[i]:await() == "x") end
        return pool_threads()
      end)
      print("started", started > 0)
      local deadline = fio.now() + ]] .. helper.bound(5) .. [[
      while pool_threads() > 0 and fio.now() < deadline do fio.sleep(0.02) end
      print("left", pool_threads() == 0)
    ]], { env = { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_IDLE_MS = 50 } })
    assert.equal(0, rc, out)
    assert.equal("started\ttrue\nleft\ttrue\n", out)
  end)
end)

describe("closing a state with work in flight", function()
  local SCRIPT = [[
    local fio = require "fiberio"
    local keep = {}
    for i = 1, 20 do -- readers of pipes nobody writes
      local r, w = fio.pipe()
      keep[#keep + 1] = { r, w }
      fio.async(function() return r:read(1) end)
    end
    local r, w = fio.pipe() -- a writer blocked on a full pipe
    keep[#keep + 1] = { r, w }
    fio.async(function() return w:write(string.rep("x", 1 << 20)) end)
    fio.sleep(0.05)
    print("closing")
    %s
  ]]

  for _, case in ipairs {
    { "readiness waits on the loop thread", { FIBERIO_BACKEND = "threads" } },
    { "syscalls blocked on pool threads", { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0 } },
    { "syscalls blocked on a one-thread pool, the rest queued",
      { FIBERIO_BACKEND = "threads", FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_SIZE = 1 } },
  } do
    -- (A main chunk that returns runs its fibers to their end, and these
    -- never end: it is the close of the state that must not wait.)
    local CANCELED = "fiberio: 21 fibers had not finished when the Lua state was closed: canceled\n"
    it("ends promptly when the main chunk raises, its fibers canceled (" .. case[1] .. ")", function()
      if not threads_backend() then return end
      local out, rc, dt = child(SCRIPT:format("error('the end', 0)"), { env = case[2] })
      assert.equal(1, rc, out)
      assert.matches("^closing\n[^\n]*lua5%.4: the end\n", out) -- (TSan runs /usr/bin/lua5.4)
      assert.equal(CANCELED, out:sub(-#CANCELED))
      assert.is_true(dt < helper.bound(5), "took " .. dt)
    end)

    it("exits 0 promptly on os.exit(0, true), its fibers canceled (" .. case[1] .. ")", function()
      if not threads_backend() then return end
      local out, rc, dt = child(SCRIPT:format("os.exit(0, true)"), { env = case[2] })
      assert.equal(0, rc, out)
      assert.equal("closing\n" .. CANCELED, out)
      assert.is_true(dt < helper.bound(5), "took " .. dt)
    end)
  end
end)
