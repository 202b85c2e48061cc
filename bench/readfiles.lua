-- Readfiles benchmark: read N small files (default 10,000 of 4 KiB, named
-- DIR/0 .. DIR/N-1; bench/mkfiles.lua makes them) whole, 64 at a time where
-- the library allows, and check the total bytes.
--
--   lua5.4 bench/readfiles.lua fiberio DIR [N]  inside fio.run, 64 fibers;
--                                        fiber k reads files k, k+64, ...
--                                        each with fio.readfile(path)
--   lua5.4 bench/readfiles.lua io DIR [N]       one loop: io.open(path, "rb"),
--                                        f:read("a"), f:close()
--   lua5.4 bench/readfiles.lua luv DIR [N]      64 coroutines, coroutine k
--                                        reads files k, k+64, ... with
--                                        uv.fs_open, uv.fs_read (64 KiB at the
--                                        file's offset, again while a read
--                                        fills the 64 KiB) and uv.fs_close,
--                                        each callback resuming it; uv.run()
--
-- The plain C baseline is bench/readfiles.c (64 files in flight on one
-- io_uring, openat -> read -> close). The paths are built once, before any
-- timing, the same way for every variant. One untimed pass warms the page and
-- dentry caches; then BENCH_REPS (default 5) timed passes, best reported.
-- BENCH_FILE_SIZE (default 4096) is the size every file must have.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local util = dofile(dir .. "/util.lua")

local variant, tree = arg[1], arg[2]
local N = math.tointeger(tonumber(arg[3] or "10000"))
local _, REPS = util.settings()
local SIZE = math.tointeger(tonumber(os.getenv("BENCH_FILE_SIZE") or "4096"))
local INFLIGHT = 64
local BUF = 64 * 1024
local clock = util.clock

if not (tree and N and N > 0) then
  io.stderr:write("usage: lua5.4 bench/readfiles.lua fiberio|io|luv DIR [N]\n")
  os.exit(2)
end

local paths = {}
for i = 1, N do
  paths[i] = tree .. "/" .. (i - 1)
end
local WANT = N * SIZE

local variants = {}

function variants.fiberio()
  local fio = require "fiberio"
  local readfile = fio.readfile
  local function worker(k)
    local total = 0
    for i = k, N, INFLIGHT do
      local s, err = readfile(paths[i])
      if not s then error(err, 0) end
      total = total + #s
    end
    return total
  end
  return function()
    local total, heap = 0, nil
    local t0 = clock()
    fio.run(function()
      local futs = {}
      for k = 1, INFLIGHT do
        futs[k] = fio.async(worker, k)
      end
      for k = 1, INFLIGHT do
        total = total + futs[k]:await()
      end
      heap = collectgarbage("count")
    end)
    return clock() - t0, heap, total
  end, { "backend=" .. fio.backend() }
end

function variants.io()
  local open = io.open
  return function()
    local total = 0
    local t0 = clock()
    for i = 1, N do
      local f = assert(open(paths[i], "rb"))
      local s = f:read("a")
      f:close()
      total = total + #s
    end
    return clock() - t0, collectgarbage("count"), total
  end, {}
end

function variants.luv()
  local uv = require "luv"
  local fs_open, fs_read, fs_close = uv.fs_open, uv.fs_read, uv.fs_close
  local yield = coroutine.yield
  local failure
  local function fail(e)
    failure = failure or e
  end
  local function worker(k, add)
    local co = coroutine.running()
    -- One callback per coroutine, reused for all its requests.
    local function resume(err, res)
      local ok, e = coroutine.resume(co, err, res)
      if not ok then fail(e) end
    end
    local total = 0
    for i = k, N, INFLIGHT do
      local path = paths[i]
      fs_open(path, "r", 0, resume)
      local err, fd = yield()
      if err then error(err, 0) end
      local got = 0
      repeat
        fs_read(fd, BUF, got, resume)
        local rerr, data = yield()
        if rerr then error(rerr, 0) end
        got = got + #data
      until #data < BUF
      fs_close(fd, resume)
      local cerr = yield()
      if cerr then error(cerr, 0) end
      total = total + got
    end
    add(total)
  end
  return function()
    local total = 0
    local function add(t)
      total = total + t
    end
    failure = nil
    local t0 = clock()
    for k = 1, INFLIGHT do
      local co = coroutine.create(worker)
      local ok, e = coroutine.resume(co, k, add)
      if not ok then fail(e) end
    end
    uv.run()
    local wall = clock() - t0
    if failure then error(failure, 0) end
    return wall, collectgarbage("count"), total
  end, { "threadpool=" .. (os.getenv("UV_THREADPOOL_SIZE") or "4") }
end

local make = variants[variant]
if not make then
  io.stderr:write("usage: lua5.4 bench/readfiles.lua fiberio|io|luv DIR [N]\n")
  os.exit(2)
end

local pass, extra = make()
local function once()
  local wall, heap, total = pass()
  if total ~= WANT then
    error(("readfiles/%s: read %d bytes, expected %d"):format(variant, total, WANT))
  end
  return wall, heap
end
once() -- warm the page and dentry caches (and the library)
local r = util.measure(REPS, once)
extra[#extra + 1] = "bytes=" .. WANT
util.report("readfiles", variant, N, REPS, r, extra)
