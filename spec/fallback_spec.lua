-- The fallback ladder of DESIGN.md §2, rung by rung. Where this kernel has
-- what a rung is about, an environment switch stands in for a kernel that
-- lacks it (each spec says which).
local helper = require "helper"
local fio = helper.fio

local noring = os.getenv("FIBERIO_NORING")

local shquote = helper.shquote
local child = helper.child

-- A script that uses timers, pipes, files and paths and prints what it saw.
local WORKLOAD = [[
  local fio = require "fiberio"
  local dir = assert(fio.mkdtemp())
  local out = fio.run(function()
    local r, w = fio.pipe()
    local reader = fio.async(function() return r:read(5) end)
    fio.sleep(0.01)
    w:write("hello")
    assert(fio.writefile(dir .. "/f", "one\ntwo\n"))
    local lines = {}
    for l in fio.lines(dir .. "/f") do lines[#lines + 1] = l end
    local st = assert(fio.stat(dir .. "/f"))
    assert(fio.unlink(dir .. "/f"))
    return reader:await() .. " " .. table.concat(lines, ",") .. " " .. st.size
  end)
  assert(fio.rmdir(dir))
  print(fio.backend(), out)
]]

describe("io_uring refused by seccomp", function()
  if not noring then
    pending("FIBERIO_NORING is not set: run the suite with tools/runspecs.sh")
    return
  end
  for _, errno in ipairs { "EPERM", "ENOSYS", "ENOMEM" } do
    it("io_uring_setup failing with " .. errno .. " falls back to the threads backend, silently", function()
      local out, rc = child(WORKLOAD, { env = { FIBERIO_BACKEND = "auto" }, wrapper = shquote(noring) .. " -e " .. errno })
      assert.equal(0, rc, out)
      assert.equal("threads\thello one,two 8\n", out)
    end)
  end

  it("an explicit FIBERIO_BACKEND=io_uring that cannot start is a clear error", function()
    local out, rc = child([[
      local fio = require "fiberio"
      print(pcall(fio.sleep, 0))
    ]], { env = { FIBERIO_BACKEND = "io_uring" }, wrapper = shquote(noring) })
    assert.equal(0, rc, out)
    assert.matches("false\tfiberio: cannot start the io_uring backend: Operation not permitted", out, 1, true)
  end)
end)

describe("the ladder on a working ring", function()
  if fio.backend() ~= "io_uring" then
    pending("these rungs are about io_uring; this run uses " .. fio.backend())
    return
  end

  it("setup flags the kernel refuses are dropped one at a time (FIBERIO_TEST_REFUSE_FLAGS stands in for an older kernel)", function()
    local out, rc = child([[
      local fio = require "fiberio"
      fio.sleep(0)
      print(fio._info().ring_flags)
    ]], { env = { FIBERIO_TEST_REFUSE_FLAGS = "defer_taskrun" } })
    assert.equal(0, rc, out)
    assert.equal("single_issuer coop_taskrun \n", out)
    out, rc = child([[
      local fio = require "fiberio"
      fio.sleep(0)
      print(fio._info().ring_flags)
    ]], { env = { FIBERIO_TEST_REFUSE_FLAGS = "defer_taskrun,single_issuer,coop_taskrun" } })
    assert.equal(0, rc, out)
    assert.equal("\n", out)
  end)

  it("a refused setup flag does not drop a worker ring's ATTACH_WQ", function()
    -- Refusing DEFER_TASKRUN fails the first setup of a worker's ring with
    -- EINVAL, as a wq_fd that is no ring would: only the flag may go.
    local out, rc = child([[
      local fio = require "fiberio"
      print(fio.parallel(function() return require("fiberio")._info().ring_flags end):await())
    ]], { env = { FIBERIO_TEST_REFUSE_FLAGS = "defer_taskrun" } })
    assert.equal(0, rc, out)
    assert.equal("single_issuer coop_taskrun attach_wq \n", out)
  end)

  it("the whole workload works with every ring flag refused", function()
    local out, rc = child(WORKLOAD, { env = { FIBERIO_TEST_REFUSE_FLAGS = "defer_taskrun,single_issuer,coop_taskrun" } })
    assert.equal(0, rc, out)
    assert.equal("io_uring\thello one,two 8\n", out)
  end)

  it("an opcode missing from the probe runs that call on the pool (FIBERIO_NO_RING_OPS stands in for the missing opcode)", function()
    local code = WORKLOAD .. [[
      print(fio._info().pooled)
    ]]
    local function pooled(env)
      local out, rc = child(code, { env = env })
      assert.equal(0, rc, out)
      local n = out:match("^io_uring\thello one,two 8\n(%d+)\n$")
      assert(n, out)
      return tonumber(n)
    end
    -- the workload's opens, stat, unlink and pipe read and write at least
    local ring = pooled()
    assert.is_true(pooled { FIBERIO_NO_RING_OPS = "openat,statx,read,write,close,unlinkat,mkdirat" } >= ring + 5)
  end)

  it("FIBERIO_NO_RING_OPS names whole opcodes: masking unlinkat leaves linkat on the ring", function()
    local out, rc = child([[
      local fio = require "fiberio"
      local d = assert(fio.mkdtemp("/tmp/fiberio-mask-XXXXXX"))
      assert(fio.writefile(d .. "/a", "x"))
      local before = fio._info().pooled
      for i = 1, 10 do assert(fio.link(d .. "/a", d .. "/b" .. i)) end
      local links = fio._info().pooled - before
      for i = 1, 10 do assert(fio.unlink(d .. "/b" .. i)) end
      local unlinks = fio._info().pooled - before - links
      assert(fio.unlink(d .. "/a")) assert(fio.rmdir(d))
      print(links, unlinks)
    ]], { env = { FIBERIO_NO_RING_OPS = "unlinkat" } })
    assert.equal(0, rc, out)
    assert.equal("0\t10\n", out)
  end)

  it("wakes go through MSG_RING, or the eventfd where the kernel has no ring-less MSG_RING (FIBERIO_TEST_NO_MSG_RING stands in for a kernel before 6.13)", function()
    local code = WORKLOAD .. [[
      -- a pool completion and a parallel task's result wake this loop
      assert(fio.readlink("/proc/self/exe"))
      assert(fio.parallel(function() return 1 end):await() == 1)
      local i = fio._info()
      print(i.msg_ring_wakes > 0, i.eventfd_wakes > 0)
    ]]
    local out, rc = child(code)
    assert.equal(0, rc, out)
    -- (a MSG_RING without a ring of one's own: Linux 6.13)
    local msg_ring = helper.kernel_at_least(6, 13)
    assert.equal("io_uring\thello one,two 8\n" .. (msg_ring and "true\tfalse" or "false\ttrue") .. "\n", out)
    out, rc = child(code, { env = { FIBERIO_TEST_NO_MSG_RING = "1" } })
    assert.equal(0, rc, out)
    assert.equal("io_uring\thello one,two 8\nfalse\ttrue\n", out)
  end)

  -- readfile on the ring needs a registered file table (Linux 5.19) and a
  -- free slot in it; the direct openat can be refused like any opcode.
  local READFILES = [[
    local fio = require "fiberio"
    fio.config{inline = false} -- (else the loop thread reads one itself)
    local dir = assert(fio.mkdtemp())
    local want = {}
    for i = 1, 6 do
      want[i] = ("%d"):format(i):rep(i * 20000)
      assert(fio.writefile(dir .. "/" .. i, want[i]))
    end
    local i0 = fio._info()
    local ok = fio.run(function()
      local fs = {}
      for i = 1, 6 do fs[i] = fio.async(fio.readfile, dir .. "/" .. i) end
      for i = 1, 6 do if fs[i]:await() ~= want[i] then return false end end
      return true
    end)
    local i1 = fio._info()
    print(ok, i1.readfile_slots, i1.ring_readfiles - i0.ring_readfiles,
          i1.pooled - i0.pooled, i1.reruns - i0.reruns)
    for i = 1, 6 do assert(fio.unlink(dir .. "/" .. i)) end
    assert(fio.rmdir(dir))
  ]]

  it("readfile runs on the ring, on the pool where there is no file table (FIBERIO_TEST_RF_SLOTS=0 stands in for a kernel before 5.19) or no free slot, and reruns there when the direct openat is refused", function()
    local new, release = helper.kernel_at_least(5, 19)
    if not new then
      pending("readfile on the ring needs a registered file table (Linux 5.19); this kernel is " .. release)
      return
    end
    -- 256 slots on one CPU, 16 on more (the rest go to the pool, read on
    -- the other CPUs), or fewer if RLIMIT_NOFILE is lower (the kernel's bound)
    local p = assert(io.popen("ulimit -n; getconf _NPROCESSORS_ONLN"))
    local limit, ncpu = p:read("l", "n")
    p:close()
    local want = ncpu > 1 and 16 or 256
    local slots = limit == "unlimited" and want or math.min(want, math.tointeger(tonumber(limit)))
    local out, rc = child(READFILES)
    assert.equal(0, rc, out)
    assert.equal("true\t" .. slots .. "\t6\t0\t0\n", out)
    out, rc = child(READFILES, { env = { FIBERIO_TEST_RF_SLOTS = "0" } })
    assert.equal(0, rc, out)
    assert.equal("true\t0\t0\t6\t0\n", out)
    -- six readfiles started in one turn, two slots: four go to the pool
    out, rc = child(READFILES, { env = { FIBERIO_TEST_RF_SLOTS = "2" } })
    assert.equal(0, rc, out)
    assert.equal("true\t2\t2\t4\t0\n", out)
    out, rc = child(READFILES, { env = { FIBERIO_TEST_RING_EINVAL = "openat" } })
    assert.equal(0, rc, out)
    assert.equal("true\t" .. slots .. "\t0\t0\t6\n", out)
  end)

  it("a completion of -EINVAL for a probed opcode reruns the call on the pool (FIBERIO_TEST_RING_EINVAL stands in for the refusing kernel)", function()
    local out, rc = child([[
      local fio = require "fiberio"
      local st = fio.stat("/")
      local missing, msg, errno = fio.stat("/nonexistent-fiberio")
      print(st.type, missing, msg, errno, fio._info().reruns)
    ]], { env = { FIBERIO_TEST_RING_EINVAL = "statx" } })
    assert.equal(0, rc, out)
    assert.equal("directory\tnil\t/nonexistent-fiberio: No such file or directory\t2\t2\n", out)
  end)
end)
