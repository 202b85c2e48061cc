-- Opening a FIFO for reading while another fiber of the same loop opens it
-- for writing, writes and closes (issue 12, item 8): on io_uring the ring
-- opens the reader at once (nonblocking) and the open that waits for a
-- writer, as open(2) does, runs on the pool. A writer that came, wrote and
-- left between the pool's look for it and its open(2) left that open
-- waiting for a next writer for ever: once in about 700 to 7,000 rounds
-- here. Each round's open must return, with the round's data.
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack

describe("a FIFO opened for reading by one fiber while another writes it", function()
  local dir
  before_each(function() dir = helper.mktempdir("fifo") end)
  after_each(function() helper.rmtree(dir) end)

  it("returns each round's data, and no round hangs (10,000 rounds or 5 s)", function()
    local p = dir .. "/fifo"
    assert(os.execute("mkfifo " .. helper.shquote(p)))
    local ROUNDS, SECONDS = 10000, 5
    local rounds, failure, dt = 0, nil, nil
    fio.run(function()
      local t0 = fio.now()
      for i = 1, ROUNDS do
        dt = fio.now() - t0
        if dt > SECONDS then break end
        local reader = fio.async(function()
          local f = assert(fio.open(p, "r"))
          local s = f:read("a")
          f:close()
          return s
        end)
        local writer = fio.async(function()
          local f = assert(fio.open(p, "w"))
          f:write("round " .. i)
          assert(f:close())
          return true
        end)
        -- the watchdog: a hung round is canceled and fails the spec
        local got = pack(fio.timeout(helper.bound(5), reader.await, reader))
        if not reader:done() then fio.cancel(reader) end
        if not writer:done() then fio.cancel(writer) end
        if got[1] ~= "round " .. i then
          failure = ("round %d: %s, %s"):format(i, tostring(got[1]), tostring(got[2]))
          break
        end
        rounds = i
      end
    end)
    assert.is_nil(failure)
    assert.is_true(rounds == ROUNDS or dt > SECONDS, rounds .. " rounds in " .. dt .. " s")
  end)
end)
