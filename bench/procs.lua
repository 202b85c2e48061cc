-- Subprocess benchmarks (issue 16), one variant per process:
--
--   lua5.4 bench/procs.lua spawn-fiberio [N] [P]  N /bin/true, P at a time,
--                                                 fio.spawn + wait in a
--                                                 fio.group{limit = P}
--   lua5.4 bench/procs.lua spawn-luv [N] [P]      the same with uv.spawn
--   lua5.4 bench/procs.lua pipe-fiberio [MiB]     MiB through `cat` and back:
--                                                 one fiber writes, one reads
--
-- Each prints "<variant> <seconds>" (wall time of the work, from the first
-- spawn to the last exit; bench/procs.sh times whole processes too and runs
-- the anchors: xargs -P and a shell pipeline).
local variant = arg[1]

if variant == "spawn-fiberio" then
  local fio = require "fiberio"
  local N, P = tonumber(arg[2] or 2000), tonumber(arg[3] or 20)
  local t0 = fio.now()
  local bad = 0
  local g = fio.group { limit = P }
  for _ = 1, N do
    g:async(function()
      local p = assert(fio.spawn { "/bin/true" })
      local how, code = p:wait()
      p:close()
      if how ~= "exit" or code ~= 0 then bad = bad + 1 end
    end)
  end
  g:wait()
  assert(bad == 0, bad .. " failed")
  print(variant, fio.now() - t0)
elseif variant == "spawn-luv" then
  local uv = require "luv"
  local N, P = tonumber(arg[2] or 2000), tonumber(arg[3] or 20)
  local t0 = uv.hrtime()
  local started, running, bad = 0, 0, 0
  local function start()
    started = started + 1
    running = running + 1
    local handle
    handle = uv.spawn("/bin/true", { args = {}, stdio = { nil, nil, nil } }, function(code, sig)
      if code ~= 0 or sig ~= 0 then bad = bad + 1 end
      handle:close()
      running = running - 1
      if started < N then start() end
    end)
    assert(handle)
  end
  for _ = 1, math.min(P, N) do start() end
  uv.run()
  assert(bad == 0, bad .. " failed")
  print(variant, (uv.hrtime() - t0) / 1e9)
elseif variant == "pipe-fiberio" then
  local fio = require "fiberio"
  local MiB = tonumber(arg[2] or 1024)
  local chunk = ("x"):rep(1 << 20)
  local t0 = fio.now()
  local p = assert(fio.spawn({ "cat" }, { stdin = "pipe", stdout = "pipe" }))
  local writer = fio.async(function()
    for _ = 1, MiB do assert(p.stdin:write(chunk)) end
    p.stdin:close()
  end)
  local n = 0
  while true do
    local s = p.stdout:read(1 << 20)
    if not s then break end
    n = n + #s
  end
  writer:await()
  p:wait()
  p:close()
  assert(n == MiB << 20, "got " .. n)
  print(variant, fio.now() - t0)
else
  io.stderr:write("usage: lua5.4 bench/procs.lua spawn-fiberio|spawn-luv|pipe-fiberio [...]\n")
  os.exit(2)
end
