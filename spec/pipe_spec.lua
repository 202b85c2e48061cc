-- Pipes: fio.pipe(), File read/write/close on a pipe, cancellation of a
-- blocked read, reads from callers that cannot yield, and fd leaks.
-- (DESIGN.md section 1; the pipe is the first I/O the core exposes.)
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack
local send = helper.send

describe("fio.pipe", function()
  it("returns a read end and a write end, two userdata", function()
    local r, w = fio.pipe()
    assert.equal("userdata", type(r))
    assert.equal("userdata", type(w))
    assert.is_false(rawequal(r, w))
    r:close()
    w:close()
  end)

  it("w:write returns w, so writes chain", function()
    local r, w = fio.pipe()
    assert.is_true(rawequal(w, w:write("ab")))
    assert.is_true(rawequal(w, w:write("cd"):write("ef")))
    if w.flush then w:flush() end
    assert.equal("abcdef", r:read(6))
    r:close()
    w:close()
  end)

  it("w:write(s, ...) writes every argument in order", function()
    local r, w = fio.pipe()
    send(w, "one")
    w:write("-", "two", "-", "three")
    if w.flush then w:flush() end
    assert.equal("one-two-three", r:read(13))
    r:close()
    w:close()
  end)

  it("r:read(n) returns n bytes when more are there, and leaves the rest", function()
    local r, w = fio.pipe()
    send(w, "hello world")
    assert.equal("hello", r:read(5))
    assert.equal(" world", r:read(6))
    r:close()
    w:close()
  end)

  it("r:read(n) waits until n bytes have arrived", function()
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      local reader = fio.async(function() return r:read(10) end)
      send(w, "abc")
      fio.sleep(0.02)
      assert.is_false(reader:done())
      send(w, "defghij")
      assert.equal("abcdefghij", fio.await(reader))
      r:close()
      w:close()
    end)
  end)

  it("r:read(n) returns the bytes left at EOF, then nil", function()
    local r, w = fio.pipe()
    send(w, "abc")
    assert.is_true(w:close())
    assert.equal("abc", r:read(10))
    assert.same(pack(nil), pack(r:read(10)))
    assert.is_nil(r:read(1))
    r:close()
  end)

  it("a reader blocked on an empty pipe gets nil when the write end closes", function()
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      local reader = fio.async(function() return pack(r:read(4)) end)
      fio.sleep(0.01)
      assert.is_false(reader:done())
      w:close()
      local got = fio.await(reader)
      assert.is_nil(got[1])
      r:close()
    end)
  end)

  it("r:read('a') reads everything up to EOF, then returns ''", function()
    local got
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      fio.async(function()
        for _, part in ipairs({ "first,", "second,", "third" }) do
          send(w, part)
          fio.sleep(0.005)
        end
        w:close()
      end)
      got = { r:read("a"), r:read("a") }
      r:close()
    end)
    assert.same({ "first,second,third", "" }, got)
  end)

  it("carries 1 MiB between two fibers intact (the writer blocks on a full pipe)", function()
    local chunk = {}
    for i = 0, 255 do chunk[#chunk + 1] = string.char(i) end
    chunk = table.concat(chunk):rep(16) -- 4 KiB
    local data = chunk:rep(256)       -- 1 MiB
    local got, reads
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      fio.async(function()
        w:write(data)
        w:close()
      end)
      local parts = {}
      while true do
        local s = r:read(65536)
        if s == nil then break end
        parts[#parts + 1] = s
      end
      r:close()
      got, reads = table.concat(parts), #parts
    end)
    assert.equal(#data, #got)
    assert.is_true(got == data)
    assert.equal(16, reads)
  end)

  it("the main chunk can write and read a pipe, driving the loop while it waits", function()
    local r, w = fio.pipe()
    local guard <close> = helper.closing(r, w)
    send(w, "direct")
    assert.equal("direct", r:read(6))
    local writer = fio.async(function()
      fio.sleep(0.01)
      send(w, "from a fiber")
    end)
    assert.equal("from a fiber", r:read(12))
    fio.await(writer)
    r:close()
    w:close()
  end)
end)

describe("closing pipe handles", function()
  it("close() returns true", function()
    local r, w = fio.pipe()
    assert.same(pack(true), pack(r:close()))
    assert.same(pack(true), pack(w:close()))
  end)

  it("a closed handle raises when used", function()
    local r, w = fio.pipe()
    r:close()
    w:close()
    assert.has_error(function() r:read(1) end)
    assert.has_error(function() r:read("a") end)
    assert.has_error(function() w:write("x") end)
  end)

  it("closing a closed handle raises, as io does", function()
    local r, w = fio.pipe()
    r:close()
    w:close()
    assert.has_error(function() r:close() end)
    assert.has_error(function() w:close() end)
  end)
end)

describe("canceling pipe I/O", function()
  it("cancel interrupts a fiber blocked reading an empty pipe within a few milliseconds", function()
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      local c = helper.closer("reader")
      local reader = fio.async(function()
        local guard_reader <close> = c
        return r:read(5)
      end)
      fio.sleep(0.01)
      assert.is_false(reader:done())
      local dt, res = helper.timed(fio.cancel, reader)
      assert.same(pack(nil, fio.Canceled), res)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      assert.is_true(rawequal(fio.Canceled, c.err))
      r:close()
      w:close()
    end)
  end)

  it("after a canceled read the pipe still works: a later write is read whole", function()
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      local reader = fio.async(function() return r:read(5) end)
      fio.sleep(0.01)
      assert.same(pack(nil, fio.Canceled), pack(fio.cancel(reader)))
      -- Were the read still pending in the kernel, it would take these bytes.
      send(w, "after")
      fio.sleep(0.01)
      assert.equal("after", r:read(5))
      -- and a new fiber can block on it and be woken by a writer
      local again = fio.async(function() return r:read(3) end)
      fio.sleep(0.005)
      send(w, "xyz")
      assert.equal("xyz", fio.await(again))
      r:close()
      w:close()
    end)
  end)

  it("cancel from the main chunk interrupts a fiber blocked reading a pipe", function()
    local r, w = fio.pipe()
    local guard <close> = helper.closing(r, w)
    local reader = fio.async(function() return r:read("a") end)
    fio.sleep(0.01)
    local dt, res = helper.timed(reader.cancel, reader)
    assert.same(pack(nil, fio.Canceled), res)
    assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
    send(w, "ok")
    assert.equal("ok", r:read(2))
    r:close()
    w:close()
  end)

  it("a reader that catches Canceled can read the pipe again", function()
    local got
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      local reader = fio.async(function()
        local ok, err = pcall(r.read, r, 4)
        assert(not ok and err == fio.Canceled)
        return r:read(4)
      end)
      fio.sleep(0.01)
      local canceler = fio.async(fio.cancel, reader)
      fio.sleep(0.01)
      send(w, "more")
      got = pack(fio.await(canceler))
      r:close()
      w:close()
    end)
    assert.same(pack("more"), got)
  end)

  it("cancel interrupts a fiber blocked writing to a full pipe", function()
    fio.run(function()
      local r, w = fio.pipe()
      local guard <close> = helper.closing(r, w)
      local writer = fio.async(function()
        w:write(string.rep("z", 4 * 1024 * 1024))
        if w.flush then w:flush() end
        return "wrote all"
      end)
      fio.sleep(0.02)
      assert.is_false(writer:done())
      local dt, res = helper.timed(fio.cancel, writer)
      assert.same(pack(nil, fio.Canceled), res)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      -- The write end first: closing the read end under a write still in
      -- flight would raise SIGPIPE.
      pcall(w.close, w) -- may report EPIPE for data left in a buffer
      r:close()
    end)
  end)
end)

describe("pipe reads that cannot yield", function()
  it("a coroutine.wrap inside a fiber reads a pipe a writer fiber fills later", function()
    local got
    fio.run(function()
      local r, w = fio.pipe()
      local writer = fio.async(function()
        fio.sleep(0.01)
        send(w, "hello")
      end)
      local co = coroutine.wrap(function() return r:read(5) end)
      got = pack(co())
      fio.await(writer)
      r:close()
      w:close()
    end)
    assert.same(pack("hello"), got)
  end)

  it("a coroutine.wrap inside a fiber reads data already in the pipe", function()
    local got = pack(fio.run(function()
      local r, w = fio.pipe()
      send(w, "ready")
      local s = coroutine.wrap(function() return r:read(5) end)()
      r:close()
      w:close()
      return s
    end))
    assert.same(pack("ready"), got)
  end)

  it("a coroutine.wrap keeps its own yields while it reads a pipe in between", function()
    local got = pack(fio.run(function()
      local r, w = fio.pipe()
      local writer = fio.async(function() fio.sleep(0.005) send(w, "mid") end)
      local co = coroutine.wrap(function()
        coroutine.yield("before")
        coroutine.yield(r:read(3))
        return "after"
      end)
      local a, b, c = co(), co(), co()
      fio.await(writer)
      r:close()
      w:close()
      return a, b, c
    end))
    assert.same(pack("before", "mid", "after"), got)
  end)

  it("a table.sort comparator inside a fiber reads a pipe", function()
    local order = pack(fio.run(function()
      local r, w = fio.pipe()
      local writer = fio.async(function()
        for _ = 1, 2 do
          fio.sleep(0.005)
          send(w, "k")
        end
      end)
      local t = { 3, 1, 2 }
      local reads = 0
      table.sort(t, function(a, b)
        if reads < 2 then
          assert(r:read(1) == "k")
          reads = reads + 1
        end
        return a < b
      end)
      fio.await(writer)
      r:close()
      w:close()
      return reads, t[1], t[2], t[3]
    end))
    assert.same(pack(2, 1, 2, 3), order)
  end)
end)

describe("pipe fd hygiene", function()
  it("closing pipes returns the fd count to where it was", function()
    helper.warm()
    local before = helper.open_fds()
    for _ = 1, 100 do
      local r, w = fio.pipe()
      send(w, "x")
      assert.equal("x", r:read(1))
      r:close()
      w:close()
    end
    assert.equal(before, helper.open_fds())
  end)

  it("pipes collected without close release their fds", function()
    helper.warm()
    local before = helper.open_fds()
    for _ = 1, 100 do
      local r, w = fio.pipe()
      send(w, "x")
      assert.equal("x", r:read(1))
    end
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)

  it("canceled blocked reads leave no fd behind", function()
    helper.warm()
    local before = helper.open_fds()
    fio.run(function()
      local fs, pipes = {}, {}
      local guard <close> = helper.closing()
      for i = 1, 50 do
        local r, w = fio.pipe()
        guard.add(r, w)
        pipes[i] = { r, w }
        fs[i] = fio.async(function() return r:read(1) end)
      end
      fio.sleep(0.01)
      for i = 1, 50 do
        assert.same(pack(nil, fio.Canceled), pack(fio.cancel(fs[i])))
        pipes[i][1]:close()
        pipes[i][2]:close()
      end
    end)
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)

  it("fibers whose futures were dropped leave no fd behind", function()
    helper.warm()
    local before = helper.open_fds()
    local done = 0
    for _ = 1, 200 do
      fio.async(function()
        local r, w = fio.pipe()
        send(w, "x")
        assert(r:read(1) == "x")
        r:close()
        w:close()
        done = done + 1
      end)
    end
    helper.fullgc()
    local deadline = fio.now() + helper.bound(5)
    while done < 200 and fio.now() < deadline do fio.sleep(0.001) end
    assert.equal(200, done)
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)
end)
