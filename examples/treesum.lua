-- treesum.lua — checksum every regular file below a directory, concurrently.
--
--   lua5.4 examples/treesum.lua [-j N] [-p N] ROOT
--
-- Prints one line per regular file below ROOT, `<sha256 hex>  <path>`, sorted
-- by path in byte order: the same lines as
--   find ROOT -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
-- and then a total line (files, bytes, time) on stderr. Symbolic links are not
-- followed (as `find -type f`). The walk (fio.walk) feeds the paths of the
-- regular files to a fio.queue; N worker fibers (default 16) take them from it
-- and read each with fio.readfile, or in 1 MiB chunks through fio.open for
-- files over 64 MiB. The queue holds at most N paths, so the walk stays just
-- ahead of the workers. SHA-256 itself is pure Lua 5.4, so hashing is CPU work
-- on this thread, overlapping with the reads the other workers have in flight.
-- With -p N (N >= 1) the reading and hashing of each file runs on fiberio's
-- worker threads (fio.parallel, at most N of them; fio.config{threads = N}):
-- SHA-256 in Lua then uses every core. -p 0 hashes on this thread.
-- Exit status: 0 if every file was summed, 1 if any could not be read,
-- 2 on bad usage. On a terminal, a progress line on stderr while it works
-- (files and bytes summed, rate, time); -q: none.
local fio = require "fiberio"

local PROG = "treesum"
local BIG = 64 * 1024 * 1024 -- above this, read in chunks
local CHUNK = 1024 * 1024

local cli -- examples/cli.lua: loaded by the script, not by a worker (below)
local USAGE, ABOUT = "[-q] [-j N] [-p N] ROOT",
  "  print `sha256sum` lines for every regular file below ROOT, sorted by path;\n" ..
  "  -j N  read at most N files at once (default 16)\n" ..
  "  -p N  hash on N worker threads (fio.parallel); 0: on this thread (default)\n" ..
  "  -q    no progress line"

local function usage(msg)
  if msg then io.stderr:write(PROG, ": ", msg, "\n") end
  io.stderr:write("usage: ", PROG, " ", USAGE, "\n", ABOUT, "\n")
  os.exit(2)
end

------------------------------------------------------------------------------
-- SHA-256 (FIPS 180-4) in pure Lua 5.4: 64-bit integers, 32-bit words masked.

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local sunpack = string.unpack
local W = {} -- the message schedule, reused (hashing never suspends mid-block)

-- Process the 64-byte blocks of s from byte i to j (j - i + 1 a multiple of 64)
-- into the state H (8 words).
local function blocks(H, s, i, j)
  local h1, h2, h3, h4, h5, h6, h7, h8 = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  local w, k = W, K
  for pos = i, j, 64 do
    w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11], w[12],
    w[13], w[14], w[15], w[16] = sunpack(">I4I4I4I4I4I4I4I4I4I4I4I4I4I4I4I4", s, pos)
    for t = 17, 64 do
      local a, b = w[t - 15], w[t - 2]
      local s0 = ((a >> 7 | a << 25) ~ (a >> 18 | a << 14) ~ (a >> 3)) & 0xffffffff
      local s1 = ((b >> 17 | b << 15) ~ (b >> 19 | b << 13) ~ (b >> 10)) & 0xffffffff
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & 0xffffffff
    end
    local a, b, c, d, e, f, g, h = h1, h2, h3, h4, h5, h6, h7, h8
    for t = 1, 64 do
      local S1 = ((e >> 6 | e << 26) ~ (e >> 11 | e << 21) ~ (e >> 25 | e << 7)) & 0xffffffff
      local ch = (e & f) ~ (~e & g)
      local t1 = h + S1 + ch + k[t] + w[t]
      local S0 = ((a >> 2 | a << 30) ~ (a >> 13 | a << 19) ~ (a >> 22 | a << 10)) & 0xffffffff
      local maj = (a & b) ~ (a & c) ~ (b & c)
      h, g, f = g, f, e
      e = (d + t1) & 0xffffffff
      d, c, b = c, b, a
      a = (t1 + S0 + maj) & 0xffffffff
    end
    h1 = (h1 + a) & 0xffffffff; h2 = (h2 + b) & 0xffffffff
    h3 = (h3 + c) & 0xffffffff; h4 = (h4 + d) & 0xffffffff
    h5 = (h5 + e) & 0xffffffff; h6 = (h6 + f) & 0xffffffff
    h7 = (h7 + g) & 0xffffffff; h8 = (h8 + h) & 0xffffffff
  end
  H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8] = h1, h2, h3, h4, h5, h6, h7, h8
end

-- A streaming hasher: h:update(s) any number of times, then h:hex().
local Sha256 = {}
Sha256.__index = Sha256

local function sha256()
  return setmetatable({
    H = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 },
    len = 0, tail = "",
  }, Sha256)
end

function Sha256:update(s)
  self.len = self.len + #s
  if #self.tail > 0 then
    local need = 64 - #self.tail
    if #s < need then self.tail = self.tail .. s return self end
    blocks(self.H, self.tail .. s:sub(1, need), 1, 64)
    s = s:sub(need + 1)
  end
  local full = #s - #s % 64
  -- big strings in 1 MiB steps, with a cancellation check between them
  for i = 1, full, CHUNK do
    blocks(self.H, s, i, math.min(i + CHUNK - 1, full))
    if fio.canceled() then fio.checkcancel() end
  end
  self.tail = s:sub(full + 1)
  return self
end

function Sha256:hex()
  local tail = self.tail .. "\x80" .. string.rep("\0", (55 - #self.tail) % 64)
     .. string.pack(">I8", self.len * 8)
  blocks(self.H, tail, 1, #tail)
  self.tail = nil -- finished
  return string.format(string.rep("%08x", 8), table.unpack(self.H))
end

------------------------------------------------------------------------------

-- The digest of one file, and its size; or nil, "path: message".
local function sum_file(path)
  local st, msg = fio.stat(path)
  if not st then return nil, msg end
  local h = sha256()
  if st.size <= BIG then
    local data, rmsg = fio.readfile(path)
    if not data then return nil, rmsg end
    return h:update(data):hex(), #data
  end
  local f, omsg = fio.open(path, "rb")
  if not f then return nil, omsg end
  local size = 0
  while true do
    local chunk, rmsg = f:read(CHUNK)
    if not chunk then
      if rmsg then f:close() return nil, path .. ": " .. rmsg end
      break
    end
    size = size + #chunk
    h:update(chunk)
  end
  f:close()
  return h:hex(), size
end

-- sha256sum's spelling of a name: with a backslash, a newline or a carriage
-- return in it, the line starts with "\" and those are escaped.
local function sumline(hex, path)
  if path:find("[\\\n\r]") then
    local esc = path:gsub("[\\\n\r]", { ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r" })
    return "\\" .. hex .. "  " .. esc .. "\n"
  end
  return hex .. "  " .. path .. "\n"
end

-- The work of one file on a worker thread: no upvalues (fio.parallel copies
-- the function), so it loads this script there, once per worker, as a
-- library (no `arg` in a worker's state: the script returns its functions).
local function remote_sum(script, path)
  local lib = TREESUM_LIB
  if not lib then
    lib = dofile(script)
    TREESUM_LIB = lib
  end
  return lib.sum_file(path)
end

-- The command line: jobs, ROOT, workers (usage() exits on a bad one).
local function parse(argv)
  local jobs, root, workers, quiet = 16, nil, 0, false
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "-q" then
      quiet = true
    elseif a == "-p" then
      workers = tonumber(argv[i + 1] or "")
      i = i + 1
      if not workers or workers < 0 or workers > 1024 or workers ~= math.floor(workers) then
        usage("-p needs a whole number, at most 1024")
      end
    elseif a == "-j" then
      jobs = tonumber(argv[i + 1] or "")
      i = i + 1
    elseif a:match("^%-j") then
      jobs = tonumber(a:sub(3))
    elseif a == "--" then
      root = argv[i + 1]
      if argv[i + 2] then usage("too many arguments") end
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      usage("unknown option " .. a)
    elseif root then
      usage("too many arguments")
    else
      root = a
    end
    i = i + 1
  end
  if not jobs or jobs < 1 or jobs ~= math.floor(jobs) then usage("-j needs a positive integer") end
  if not root then usage("ROOT expected") end
  return math.tointeger(jobs), root, math.tointeger(workers), quiet
end

local function main(jobs, root, workers, quiet)
  local summer = sum_file
  if workers > 0 then
    local script = arg and arg[0]
    summer = function(path) return fio.parallel(remote_sum, script, path):await() end
  end

  local st, msg = fio.stat(root)
  if not st then io.stderr:write(PROG, ": ", msg, "\n") return 1 end
  if st.type ~= "directory" then
    io.stderr:write(PROG, ": ", root, ": Not a directory\n")
    return 1
  end

  local t0 = fio.now()
  local status = 0
  local results = {} -- path -> output line
  local nfiles, nbytes = 0, 0
  local progress = cli.progress(quiet)

  local function fail(m)
    progress:done()
    io.stderr:write(PROG, ": ", m, "\n")
    status = 1
  end

  -- One task: sum a file, record the line. Never raises but for cancellation.
  local function task(path)
    local ok, hex, size = pcall(summer, path)
    if not ok then
      if hex == fio.Canceled then error(hex, 0) end
      return fail(path .. ": " .. tostring(hex))
    end
    if not hex then return fail(size) end
    results[path] = sumline(hex, path)
    nfiles, nbytes = nfiles + 1, nbytes + size
    progress:update(nfiles, nbytes)
  end

  -- The walk puts the paths of regular files in a queue and closes it at
  -- the end; `jobs` workers take them out until it is closed and drained.
  -- All are members of one group: should one fail, the group cancels the
  -- others (a walk blocked on a full queue included) and wait re-raises.
  local files = fio.queue(jobs)
  local function walk()
    local onerror = function(path, m) fail(m or path) end
    for epath, etype in fio.walk(root, { onerror = onerror }) do
      local t = etype
      if t == "unknown" then -- the file system did not say: ask
        local lst = fio.lstat(epath)
        t = lst and lst.type
      end
      if t == "file" then files:put(epath) end
    end
    files:close()
  end
  local function worker()
    while true do
      local path = files:get()
      if path == nil then return end
      task(path)
    end
  end
  local g = fio.group()
  g:async(walk)
  for _ = 1, jobs do g:async(worker) end
  g:wait()
  progress:done()

  local paths = {}
  for p in pairs(results) do paths[#paths + 1] = p end
  table.sort(paths) -- byte order: lua5.4 runs in the C locale
  local out = {}
  for k, p in ipairs(paths) do out[k] = results[p] end
  local ok, werr = fio.stdout:write(table.concat(out))
  if ok then ok, werr = fio.stdout:flush() end
  if not ok then
    io.stderr:write(PROG, ": stdout: ", tostring(werr), "\n")
    return 1
  end
  io.stderr:write(string.format("%s: %d files, %d bytes, %.2f s\n",
    PROG, nfiles, nbytes, fio.now() - t0))
  return status
end

if not arg then -- loaded by a worker (remote_sum): a library
  return { sum_file = sum_file }
end
cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg)
local jobs, root, workers, quiet = parse(arg)
-- -p N bounds the worker threads: configuration, before the loop runs.
if workers > 0 then fio.config{ threads = workers } end
os.exit(fio.run(main, jobs, root, workers, quiet), true) -- close the state: workers are joined
