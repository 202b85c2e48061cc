-- The standard files: fio.stdout is the same stream as io.stdout (print,
-- io.write), so mixed output keeps program order through a pipe; a read of
-- fio.stdin shows what was written to stdout first (a prompt); setvbuf on
-- them takes what io's takes (issue 12).
local helper = require "helper"
local shq = helper.shquote

if helper.backend_gate(describe, it, pending) then return end

-- Run code in a child lua5.4 (this build, this backend) with its stdout a
-- pipe; stdin from the shell words `input` (e.g. "< file"), under a time
-- bound. Returns its stdout, then its stderr and exit code.
local function run(code, input)
  local errf = os.tmpname()
  local out, rc = helper.child(code, {
    redirect = (input or "</dev/null") .. " 2>" .. shq(errf), timeout = helper.bound(20),
  })
  local err = helper.get(errf)
  os.remove(errf)
  return out, err, rc
end

local MIX = [[
  local fio = require "fiberio"
  local function mix()
    fio.stdout:write("a") print("b") fio.stdout:write("c\n") print("d")
    io.write("e") fio.stdout:write("f", 1, "\n") io.stdout:write("g")
    fio.stdout:write("h") io.write("\n")
  end
]]
local MIXED = "ab\nc\nd\nef1\ngh\n"

describe("fio.stdout and print", function()
  it("keep program order through a pipe, in the main chunk and in fibers", function()
    local out, err, rc = run(MIX .. [[
      mix()
      fio.run(mix)
      fio.async(mix):await()
    ]])
    assert.equal(0, rc, err)
    assert.equal(MIXED:rep(3), out)
  end)

  it("keep program order after setvbuf('no'), setvbuf('line') and setvbuf('full') on either", function()
    local out, err, rc = run(MIX .. [[
      fio.stdout:setvbuf("no") mix()
      fio.stdout:setvbuf("line") mix()
      io.stdout:setvbuf("no") mix()
      fio.stdout:setvbuf("full", 1 << 20) mix()
    ]])
    assert.equal(0, rc, err)
    assert.equal(MIXED:rep(4), out)
  end)

  it("fio.stderr stays unbuffered: it comes out before stdout that was not flushed", function()
    local out = helper.child([[
      local fio = require "fiberio"
      fio.stdout:write("out ")
      fio.stderr:write("err ")
      fio.stdout:flush()
      fio.stderr:write("err2 ")
    ]])
    assert.equal("err out err2 ", out)
  end)

  it("fio.stdout:write returns the file, and flush returns true, as io.stdout's", function()
    local out, err, rc = run([[
      local fio = require "fiberio"
      print(rawequal(fio.stdout:write("x"), fio.stdout), fio.stdout:flush())
    ]])
    assert.equal(0, rc, err)
    assert.equal("xtrue\ttrue\n", out)
  end)

  it("a write to a stdout that cannot be written fails as io.stdout's does", function()
    -- (stdout closed, then fd 1 taken by a file open for reading only)
    local out, err, rc = run([[
      local hold = assert(io.open("/dev/null", "r"))
      local fio = require "fiberio"
      local a = table.pack(io.stdout:write("x"))
      local ai = table.pack(io.stdout:flush())
      local b = table.pack(fio.stdout:write("y"))
      local bi = table.pack(fio.stdout:flush())
      io.stderr:write(tostring(a[2]), " ", tostring(ai[2]), " ", tostring(ai[3]), "\n")
      io.stderr:write(tostring(b[2]), " ", tostring(bi[2]), " ", tostring(bi[3]), "\n")
    ]], "</dev/null >&-")
    assert.equal(0, rc, err)
    assert.equal("", out)
    local l1, l2 = err:match("^([^\n]*)\n([^\n]*)\n$")
    assert.equal(l1, l2)
    assert.matches("Bad file descriptor", l1, 1, true)
  end)
end)

describe("a read of fio.stdin", function()
  it("writes out a prompt left in stdout first, so the other end can answer it", function()
    -- The child's stdin answers "Ada" once the prompt has reached its
    -- stdout file; without the flush it gives up after a time bound and
    -- answers "late".
    local dir = helper.mktempdir("stdio")
    local out = dir .. "/out"
    local answer = "(i=0; while [ ! -s " .. shq(out) .. " ] && [ $i -lt " .. math.floor(helper.bound(10) * 100) ..
      " ]; do sleep 0.01; i=$((i + 1)); done; if [ -s " .. shq(out) .. " ]; then echo Ada; else echo late; fi)"
    local errs, rc = helper.child([[
      local fio = require "fiberio"
      fio.stdout:setvbuf("line")
      fio.stdout:write("Name: ")
      local name = fio.stdin:read("l")
      fio.stdout:write("[", tostring(name), "]\n")
    ]], { prefix = answer .. " | ", redirect = "> " .. shq(out) })
    local got = helper.get(out)
    helper.rmtree(dir)
    assert.equal(0, rc, errs)
    assert.equal("Name: [Ada]\n", got)
  end)
end)

describe("setvbuf on the standard files", function()
  it("takes a size of 0 and a huge size as io's does", function()
    local out, err, rc = run([[
      local fio = require "fiberio"
      for _, h in ipairs { io.stdout, fio.stdout, fio.stderr } do
        io.stderr:write(tostring(h:setvbuf("no", 0)), tostring(h:setvbuf("full", 0)),
          tostring(h:setvbuf("line", 2^62)), "\n")
      end
      fio.stdout:write("ok\n")
    ]])
    assert.equal(0, rc, err)
    assert.equal("ok\n", out)
    assert.equal(("truetruetrue\n"):rep(3), err)
  end)
end)
