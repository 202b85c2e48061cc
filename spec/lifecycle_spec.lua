-- The script's life: fibers left when the main chunk ends, the state's
-- close, os.exit, and Ctrl-C. Each spec runs a child lua5.4 (the backend
-- is the one the suite runs: FIBERIO_BACKEND is inherited).
local helper = require "helper"
local fio = helper.fio

local shquote = helper.shquote

local child = helper.child

-- A child that sends itself SIGINT after delay seconds (from a shell in
-- the background, as a terminal's Ctrl-C would come), then runs body.
local function interrupted(delay, body)
  return ([[
    local fio = require "fiberio"
    local pid = io.open("/proc/self/stat"):read("n")
    io.popen("(sleep %s; kill -INT " .. pid .. ") &"):close()
  ]]):format(delay) .. body
end

describe("fibers left when the main chunk ends", function()
  local dir
  before_each(function() dir = helper.mktempdir("life") end)
  after_each(function() if dir then helper.rmtree(dir) end end)

  it("run to their end before the process exits (a writefile nobody awaited writes its file)", function()
    local p = dir .. "/out"
    local out, rc = child(([[
      local fio = require "fiberio"
      fio.async(fio.writefile, %q, "written")
      fio.async(function() fio.sleep(0.05); fio.writefile(%q .. ".2", "later") end)
    ]]):format(p, p))
    assert.equal("", out)
    assert.equal(0, rc)
    assert.equal("written", helper.get(p))
    assert.equal("later", helper.get(p .. ".2"))
  end)

  it("run in the order they were started, after the last line of the chunk", function()
    local out, rc = child([[
      local fio = require "fiberio"
      fio.async(function() print("a") fio.sleep(0.01) print("c") end)
      fio.async(function() print("b") end)
      print("end of chunk")
    ]])
    assert.equal("end of chunk\na\nb\nc\n", out)
    assert.equal(0, rc)
  end)

  it("end the script with status 1 and the fiber's traceback when one raised and nobody awaited it", function()
    local out, rc = child([[
      local fio = require "fiberio"
      local function deep_in_the_fiber() fio.sleep(0.01) error("boom") end
      fio.async(function() deep_in_the_fiber() end)
    ]])
    assert.equal(1, rc, out)
    assert.matches("boom", out)
    assert.matches("deep_in_the_fiber", out)
  end)

  it("that wait for what can never come are canceled, their cleanups run, and the exit says so", function()
    local out, rc = child([[
      local fio = require "fiberio"
      local q = fio.queue()
      fio.async(function()
        local ok, err = pcall(q.get, q)
        print("cleanup", ok, err == fio.Canceled)
      end)
    ]])
    assert.equal(0, rc, out)
    assert.matches("cleanup\tfalse\ttrue\n", out, 1, true)
    assert.matches("fiberio: 1 fiber waited for what nothing could bring (a deadlock): canceled", out, 1, true)
  end)

  it("that wait on a pipe whose writer nobody can reach end when the writer is collected", function()
    local out, rc = child([[
      local fio = require "fiberio"
      do
        local r, w = fio.pipe()
        fio.async(function() print("read", r:read("a")) end)
      end
    ]])
    assert.equal(0, rc, out)
    assert.equal("read\t\n", out)
  end)
end)

describe("the state's close with fibers not ended", function()
  it("cancels them after an error in the main chunk: their <close> runs, and stderr says how many", function()
    local out, rc = child([[
      local fio = require "fiberio"
      fio.async(function()
        local c <close> = setmetatable({}, { __close = function() print("closed") end })
        fio.sleep(10)
        print("never")
      end)
      fio.sleep(0.01)
      error("main fails", 0)
    ]])
    assert.equal(1, rc, out)
    assert.matches("main fails", out, 1, true)
    assert.matches("closed\n", out, 1, true)
    assert.not_matches("never", out, 1, true)
    assert.matches("fiberio: 1 fiber had not finished when the Lua state was closed: canceled", out, 1, true)
  end)

  it("cancels them on os.exit(code, true)", function()
    local out, rc = child([[
      local fio = require "fiberio"
      fio.async(function()
        local c <close> = setmetatable({}, { __close = function() print("closed") end })
        fio.sleep(10)
      end)
      fio.sleep(0.01)
      os.exit(3, true)
    ]])
    assert.equal(3, rc, out)
    assert.equal("closed\nfiberio: 1 fiber had not finished when the Lua state was closed: canceled\n", out)
  end)

  it("reports on os.exit without close how many fibers never finished", function()
    local out, rc = child([[
      local fio = require "fiberio"
      for i = 1, 2 do fio.async(function() fio.sleep(10) end) end
      fio.sleep(0.01)
      os.exit(0)
    ]])
    assert.equal(0, rc, out)
    assert.equal("fiberio: 2 fibers never finished (the process exited without closing the Lua state)\n", out)
  end)
end)

describe("a C host that closes state after state", function()
  local dir
  before_each(function() dir = helper.mktempdir("life") end)
  after_each(function() if dir then helper.rmtree(dir) end end)

  it("keeps no op or buffer of fibers whose I/O was in flight or done when the state closed", function()
    local why = helper.host_missing()
    if why then pending(why) return end
    local big = dir .. "/big"
    helper.put(big, string.rep("x", 256 * 1024))
    -- readfiles started, some done and some not when the state closes
    local out = helper.host(([[
      local fio = require "fiberio"
      local big = %q
      for i = 1, 20 do fio.async(fio.readfile, big) end
      fio.readfile(big) -- its completion comes with theirs: they are ready, not run
      error("closing", 0)
    ]]):format(big), "200 rss")
    local rss = {}
    for kib in out:gmatch("rss (%d+)") do rss[#rss + 1] = tonumber(kib) end
    assert.equal(200, #rss, out:sub(1, 300))
    assert.not_matches("fds [^0]", out)
    assert.not_matches("LeakSanitizer", out, 1, true)
    -- (under a sanitizer its leak check above is the measure: its
    -- quarantine of freed memory grows the RSS anyway)
    if os.getenv("FIBERIO_SANITIZE") then return end
    -- (20 rounds warm the allocator; a leak of the readfiles' 256 KiB
    -- buffers would add about 1 GiB over the rest)
    local growth = rss[200] - rss[20]
    assert.is_true(growth < 16 * 1024, "RSS grew by " .. growth .. " KiB")
  end)
end)

describe("Ctrl-C (SIGINT) with no signal code in the script", function()
  local dir
  before_each(function() dir = helper.mktempdir("life") end)
  after_each(function() if dir then helper.rmtree(dir) end end)

  -- Runs code, interrupted 0.2 s in; returns its output, status, seconds.
  local function run(body)
    local t0 = fio.now()
    local out, rc = child(interrupted(0.2, body))
    return out, rc, fio.now() - t0
  end

  local function assert_interrupted(out, rc, dt)
    assert.equal(1, rc, out)
    assert.matches("lua5.4: interrupted!", out, 1, true)
    assert.is_true(dt < helper.bound(3), "took " .. dt .. " s: " .. out)
  end

  it("stops fio.run at once; the fibers' <close> and pcall cleanups run", function()
    local out, rc, dt = run([[
      fio.run(function()
        fio.async(function()
          local c <close> = setmetatable({}, { __close = function() print("closed") end })
          fio.sleep(10)
        end)
        local ok, err = pcall(fio.sleep, 10)
        print("pcall", ok, err == fio.Canceled)
        fio.checkcancel()
      end)
      print("never")
    ]])
    assert_interrupted(out, rc, dt)
    assert.matches("closed\n", out, 1, true)
    assert.matches("pcall\tfalse\ttrue\n", out, 1, true)
    assert.not_matches("never", out, 1, true)
  end)

  it("stops a fiber that makes one lone call after another (each run at once, with no suspension)", function()
    local out, rc, dt = run([[
      fio.run(function()
        local n = 0
        local ok, err = pcall(function()
          while true do assert(fio.stat("/")); n = n + 1 end
        end)
        print("fiber", ok, err == fio.Canceled, n > 0)
        fio.checkcancel()
      end)
      print("never")
    ]])
    assert_interrupted(out, rc, dt)
    assert.matches("fiber\tfalse\ttrue\ttrue\n", out, 1, true)
    assert.not_matches("never", out, 1, true)
  end)

  it("stops a sleep in the main chunk", function()
    local out, rc, dt = run([[ fio.sleep(10) print("never") ]])
    assert_interrupted(out, rc, dt)
    assert.not_matches("never", out, 1, true)
  end)

  it("stops an idle pipe read in the main chunk", function()
    local out, rc, dt = run([[ local r, w = fio.pipe() print(r:read("l")) ]])
    assert_interrupted(out, rc, dt)
  end)

  it("stops an await of a busy fiber in the main chunk, and the fiber is canceled", function()
    local out, rc, dt = run([[
      local f = fio.async(function()
        local ok, err = pcall(fio.sleep, 10)
        print("fiber", ok, err == fio.Canceled)
      end)
      f:await()
    ]])
    assert_interrupted(out, rc, dt)
    assert.matches("fiber\tfalse\ttrue\n", out, 1, true)
  end)

  it("leaves no temporary file behind a copyfile it stops", function()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. shquote(fifo)))
    -- a writer that keeps the FIFO open and writes nothing for 3 s (opened
    -- read-write, which does not wait for a reader: a writer waiting to open
    -- would hold the child's stdout, and so this spec, forever if the
    -- SIGINT came before copyfile opened the FIFO)
    local out, rc, dt = run(([[
      os.execute("exec sleep 3 1<>%s 2>/dev/null &")
      assert(fio.copyfile(%q, %q))
    ]]):format(shquote(fifo), fifo, dir .. "/copy"))
    assert_interrupted(out, rc, dt)
    local left = {}
    for name in io.popen("ls -A " .. shquote(dir)):lines() do
      if name ~= "fifo" then left[#left + 1] = name end
    end
    assert.same({}, left)
  end)

  it("is taken by a script that took SIGINT itself with fio.signal", function()
    local out, rc = child(interrupted(0.2, [[
      local sig = fio.signal("INT")
      print("got", sig:wait(5))
    ]]))
    assert.equal(0, rc, out)
    assert.equal("got\tINT\n", out)
  end)
end)
