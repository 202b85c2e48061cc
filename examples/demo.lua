-- demo.lua — what fiberio does, in one screen.
-- Run: make demo   (or: lua5.4 examples/demo.lua with fiberio installed)
local fio = require "fiberio"

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") end

fio.run(function()
  say("backend: %s", fio.backend())

  -- Three fibers sleep concurrently: the whole takes ~0.3 s, not 0.6 s.
  local t0 = fio.now()
  local fs = {}
  for i, d in ipairs { 0.1, 0.2, 0.3 } do
    fs[i] = fio.async(function() fio.sleep(d) return i, d end)
  end
  for _, f in ipairs(fs) do say("  fiber %d slept %.1f s", f:await()) end
  say("three sleeps, concurrently: %.2f s", fio.now() - t0)

  -- A reader blocked on an empty pipe, canceled: the read is canceled in
  -- the kernel, and the reader sees fio.Canceled.
  local r, w = fio.pipe()
  local reader = fio.async(function() return r:read(10) end)
  fio.sleep(0.05)
  local res, why = reader:cancel()
  say("blocked pipe read, canceled: %s, %s", tostring(res), tostring(why))

  -- The pipe still works afterwards; a producer and a consumer fiber.
  local consumer = fio.async(function() return r:read("a") end)
  for i = 1, 3 do w:write("line ", i, "\n"); fio.sleep(0.01) end
  w:close()
  say("consumer read %d bytes: %s", #consumer:await(), (consumer:await():gsub("\n", " ")))

  -- A deadline on slow work.
  say("timeout: %s", select(2, fio.timeout(0.05, fio.sleep, 5)))

  -- Structured concurrency: the first error cancels the siblings.
  local g = fio.group()
  g:async(function() fio.sleep(0.02); error("disk full", 0) end)
  g:async(function() fio.sleep(10) end)
  local ok, err = pcall(g.wait, g)
  say("group: %s, %s (the 10 s sibling was canceled)", tostring(ok), err)
end)
say("done")
