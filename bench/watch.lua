-- Watch benchmarks (issue 17), one variant per process:
--
--   lua5.4 bench/watch.lua latency-fiberio [N]  N appends of one byte to a
--   lua5.4 bench/watch.lua latency-luv [N]      file (io, unbuffered), each
--                                               timed from the write to its
--                                               event: fio.watch's next, or
--                                               luv's new_fs_event callback
--   lua5.4 bench/watch.lua burst-fiberio [N]    N files created by another
--   lua5.4 bench/watch.lua burst-luv [N]        process (xargs touch) in a
--                                               watched directory: events
--                                               seen, per second
--
-- Prints "<variant> median_us p99_us" or "<variant> events seconds
-- overflows cpu_seconds" (the CPU time of the watching process, from
-- start to end: the producer paces the burst, so this tells the cost).
local variant, N = arg[1], tonumber(arg[2])
-- (on tmpfs where there is one: a disk's own pace is not what is measured)
local shm = io.open("/dev/shm/.", "r")
local tmp = os.getenv("TMPDIR") or (shm and "/dev/shm") or "/tmp"
if shm then shm:close() end

local function tempdir()
  local p = io.popen("mktemp -d " .. tmp .. "/fio-watch-XXXXXX")
  local d = p:read("l")
  p:close()
  return d
end

local function stats(t)
  table.sort(t)
  return t[(#t + 1) // 2] * 1e6, t[math.ceil(#t * 0.99)] * 1e6
end

local dir = tempdir()
local function cleanup() os.execute("rm -rf " .. dir) end

if variant == "latency-fiberio" or variant == "latency-luv" then
  N = N or 10000
  local path = dir .. "/log"
  local f = assert(io.open(path, "ab"))
  f:setvbuf("no")
  local t = {}
  if variant == "latency-fiberio" then
    local fio = require "fiberio"
    local w = assert(fio.watch(path, { kinds = { "modify" } }))
    for i = 1, N do
      local t0 = fio.now()
      f:write("x")
      local ev = assert(w:next(5))
      t[i] = fio.now() - t0
      assert(ev.kind == "modify")
    end
    w:close()
  else
    local uv = require "luv"
    local ev = uv.new_fs_event()
    local seen
    ev:start(path, {}, function(err) assert(not err, err) seen = true end)
    for i = 1, N do
      seen = false
      local t0 = uv.hrtime()
      f:write("x")
      while not seen do uv.run("once") end
      t[i] = (uv.hrtime() - t0) / 1e9
    end
    ev:stop()
    ev:close()
    uv.run() -- (the close's callback: luv crashes at exit without it)
  end
  f:close()
  local med, p99 = stats(t)
  print(("%s %.1f %.1f"):format(variant, med, p99))
elseif variant == "burst-fiberio" or variant == "burst-luv" then
  N = N or 100000
  local cmd = "cd " .. dir .. " && seq 1 " .. N .. " | xargs touch"
  local seen, overflows, t0, t1 = 0, 0, nil, nil
  local cpu0 = os.clock() -- (this process's CPU time: what each event costs)
  if variant == "burst-fiberio" then
    local fio = require "fiberio"
    local w = assert(fio.watch(dir, { kinds = { "create" } }))
    local p = assert(fio.spawn { "sh", "-c", cmd })
    while seen + overflows * 0 < N do
      local ev = w:next(1)
      if not ev then break end
      t0 = t0 or fio.now()
      if ev.kind == "overflow" then overflows = overflows + 1 else seen = seen + 1 end
      t1 = fio.now()
    end
    p:wait()
    p:close()
    w:close()
  else
    local uv = require "luv"
    local ev = uv.new_fs_event()
    ev:start(dir, {}, function(err, _, events)
      assert(not err, err)
      t0 = t0 or uv.hrtime() / 1e9
      if events.rename then seen = seen + 1 end -- (a create is a "rename")
      t1 = uv.hrtime() / 1e9
      if seen >= N then ev:stop() end
    end)
    local proc
    proc = uv.spawn("sh", { args = { "-c", cmd } }, function() proc:close() end)
    assert(proc)
    local idle = uv.new_timer()
    local last = -1
    idle:start(1000, 1000, function() -- (stop once nothing came for 1 s)
      if seen == last then ev:stop(); idle:stop(); idle:close() end
      last = seen
    end)
    uv.run()
    if not ev:is_closing() then ev:close() end
    uv.run() -- (the close's callback: luv crashes at exit without it)
  end
  print(("%s %d %.3f %d %.3f"):format(variant, seen, (t1 or 0) - (t0 or 0), overflows, os.clock() - cpu0))
else
  io.stderr:write("usage: lua5.4 bench/watch.lua latency-fiberio|latency-luv|burst-fiberio|burst-luv [N]\n")
  cleanup()
  os.exit(2)
end
cleanup()
