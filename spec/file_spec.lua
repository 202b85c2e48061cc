-- Files: fio.open and every File method, held against what Lua's own io
-- handles return for the same calls on a copy of the same file (DESIGN.md
-- section 1, "Files — compatible with Lua's io handles"): modes, read
-- formats, write, lines, seek, flush, setvbuf, close, pread, pwrite, sync,
-- datasync, stat, truncate, fd, fio.type, fio.lines, the standard files;
-- errors (missing file, permission denied, directory, exclusive create),
-- odd names, a sparse file over 2 GiB, fibers sharing a handle, canceled and
-- interrupted reads, and fd hygiene.
--
-- Reads that block in the kernel (a FIFO or pipe with no writer) run in a
-- child process under `timeout`, so that a backend which blocks the loop
-- thread fails those specs instead of hanging the suite.
local helper = require "helper"
local fio = helper.fio
local pack = helper.pack

local octal = helper.octal

local shq = helper.shquote

-- Fixtures are made and checked with io and os, not with the code under test.
local put, get, rmtree = helper.put, helper.get, helper.rmtree
local function mktempdir() return helper.mktempdir("file") end

-- A value made comparable: numbers keep their subtype (read("n") must give
-- an integer where io gives one), handles become tags.
local function val(v, self)
  if v ~= nil and self ~= nil and rawequal(v, self) then return "<the file>" end
  if math.type(v) then return ("%s %.17g"):format(math.type(v), v) end
  if io.type(v) then return "<io " .. io.type(v) .. ">" end
  if type(v) == "userdata" and fio.type(v) then return "<fio " .. fio.type(v) .. ">" end
  if type(v) == "string" then return v end
  if v == nil or type(v) == "boolean" then return v end
  if type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[k] = k == "n" and x or val(x, self) end
    return t
  end
  return "<" .. type(v) .. ">"
end

local function norm(r, self)
  local t = { n = r.n }
  for i = 1, r.n do t[i] = val(r[i], self) end
  return t
end

-- s with the first plain occurrence of what replaced by with.
local function replace(s, what, with)
  local i, j = s:find(what, 1, true)
  if not i then return s end
  return s:sub(1, i - 1) .. with .. s:sub(j + 1)
end

-- An error message with the function name taken out: io's functions are
-- named io.open, fiberio's fiberio.open.
local function unname(msg)
  if type(msg) ~= "string" then return msg end
  return (msg:gsub("to '[^']*'", "to '?'"))
end

-- Run fn(handle) on an io handle and on a fiberio handle, each opened with
-- mode over its own copy of content (no file when content is nil). Returns
-- for io and for fiberio { r = normalized pcall results (or open's failure,
-- the path replaced by PATH), data = the file's bytes afterwards }.
local function both(dir, content, mode, fn)
  local out = {}
  for _, lib in ipairs { io, fio } do
    local name = lib == io and "io" or "fio"
    local p = dir .. "/" .. name
    os.remove(p)
    if content then put(p, content) end
    local f, msg, err = lib.open(p, mode)
    local r
    if f then
      r = pack(pcall(fn, f))
      if not r[1] then r[2] = unname(r[2]) end
      r = norm(r, f)
      pcall(f.close, f)
    else
      r = norm(pack(f, replace(msg, p, "PATH"), err))
    end
    out[name] = { r = r, data = get(p) }
  end
  return out.io, out.fio
end

local function same_as_io(dir, content, mode, fn)
  local i, f = both(dir, content, mode, fn)
  assert.same(i.r, f.r)
  assert.same(i.data, f.data)
  return i, f
end

-- How the children run (helper.child): stdout unbuffered, so that a child
-- killed by its timeout (a blocked loop?) shows what it printed before.
local CHILD = { unbuffered = true, timeout = helper.bound(20) }

-- Two paths in a directory chmod 000: an existing file and a new name,
-- where io.open fails with EACCES; or nil and why not (the suite may run as
-- root, which the mode bits do not stop).
local function eacces_paths(dir)
  local locked = dir .. "/locked"
  os.execute("mkdir " .. shq(locked))
  put(locked .. "/file", "secret")
  os.execute("chmod 000 " .. shq(locked))
  local f, _, err = io.open(locked .. "/file")
  if f then
    f:close()
    return nil, "running as root: io.open succeeds in a directory with mode 000"
  end
  if err ~= 13 then return nil, "io.open fails with errno " .. tostring(err) .. ", not EACCES" end
  return locked .. "/file", locked .. "/new"
end

local CONTENT = "hello\nworld\n\n12 3.5 -0x1F 1e3\nlast line without newline"

describe("fio.open", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("opens an existing file for reading by default and returns a File", function()
    put(dir .. "/f", "abc")
    local f = fio.open(dir .. "/f")
    assert.equal("file", fio.type(f))
    assert.equal("abc", f:read("a"))
    assert.is_true(f:close())
  end)

  for _, mode in ipairs { "r", "w", "a", "r+", "w+", "a+", "rb", "wb", "ab", "r+b", "w+b", "a+b" } do
    it("mode '" .. mode .. "' gives io.open's results for a sequence of reads, writes and seeks", function()
      same_as_io(dir, CONTENT, mode, function(f)
        local r = {}
        local function step(...) r[#r + 1] = norm(pack(...), f) end
        step(f:read("l"))
        step(f:seek("cur"))
        step(f:write("XY"))
        step(f:seek("cur"))
        step(f:read("l"))
        step(f:seek("set", 2))
        step(f:write("Z"))
        step(f:seek("end"))
        step(f:seek("set"))
        step(f:read("a"))
        step(f:close())
        return r
      end)
    end)
  end

  it("mode 'a' starts at the end of the file, as io's handle does", function()
    same_as_io(dir, CONTENT, "a", function(f) return f:seek("cur") end)
    same_as_io(dir, CONTENT, "ab", function(f) return f:seek("cur") end)
  end)

  it("mode 'a' appends every write even after a seek to the start", function()
    same_as_io(dir, "0123", "a", function(f)
      f:write("a")
      f:seek("set", 0)
      f:write("b")
      return f:seek("cur")
    end)
  end)

  it("mode 'a+' reads from the start and appends writes", function()
    same_as_io(dir, "line1\nline2\n", "a+", function(f)
      return f:seek("cur"), f:read("l"), f:write("new\n"):seek("cur"), f:seek("set"), f:read("a")
    end)
  end)

  it("mode 'w' truncates, 'r+' does not", function()
    same_as_io(dir, CONTENT, "w", function(f) return f:seek("end") end)
    same_as_io(dir, CONTENT, "r+", function(f) return f:seek("end") end)
  end)

  it("modes 'w', 'a', 'w+' and 'a+' create a missing file; 'r' and 'r+' fail as io.open does", function()
    for _, mode in ipairs { "r", "r+", "w", "a", "w+", "a+" } do
      same_as_io(dir, nil, mode, function(f) return f:write("made"):seek("cur") end)
    end
  end)

  it("a missing file gives io.open's nil, 'path: No such file or directory', 2", function()
    local p = dir .. "/missing"
    local want = pack(io.open(p))
    assert.equal(2, want[3])
    assert.same(want, pack(fio.open(p)))
    assert.same(pack(io.open(p, "r+")), pack(fio.open(p, "r+")))
    assert.same(pack(io.open(dir .. "/no/dir/f", "w")), pack(fio.open(dir .. "/no/dir/f", "w")))
  end)

  it("a path through a file gives io.open's 'Not a directory'", function()
    put(dir .. "/f", "")
    local p = dir .. "/f/x"
    local want = pack(io.open(p, "w"))
    assert.equal(20, want[3])
    assert.same(want, pack(fio.open(p, "w")))
    assert.same(pack(io.open(p)), pack(fio.open(p)))
  end)

  it("a directory opened for writing gives io.open's nil, 'path: Is a directory', 21", function()
    for _, mode in ipairs { "w", "a", "r+", "w+", "a+" } do
      local want = pack(io.open(dir, mode))
      assert.equal(21, want[3])
      assert.same(want, pack(fio.open(dir, mode)))
    end
  end)

  it("a directory opens for reading as with io.open, and reading it fails as io's read does", function()
    local i = assert(io.open(dir))
    local f = assert(fio.open(dir))
    local want = pack(i:read("a"))
    assert.equal(21, want[3])
    assert.same(want, pack(f:read("a")))
    assert.same(pack(i:read("l")), pack(f:read("l")))
    assert.same(pack(i:read(1)), pack(f:read(1)))
    i:close()
    assert.is_true(f:close())
  end)

  it("the empty path fails as io.open('') does", function()
    assert.same(pack(io.open("")), pack(fio.open("")))
    assert.same(pack(io.open("", "w")), pack(fio.open("", "w")))
  end)

  it("permission denied gives io.open's nil, 'path: Permission denied', 13", function()
    local p, q = eacces_paths(dir)
    if not p then pending(q) end
    local want = pack(io.open(p))
    assert.equal(13, want[3])
    assert.same(want, pack(fio.open(p)))
    assert.same(pack(io.open(p, "r+")), pack(fio.open(p, "r+")))
    assert.same(pack(io.open(q, "w")), pack(fio.open(q, "w")))
  end)

  it("'x' with 'w' or 'a' creates a new file exclusively", function()
    for _, mode in ipairs { "wx", "ax", "w+x", "a+x", "wbx", "wxb", "w+bx" } do
      local p = dir .. "/new-" .. mode
      local f = assert(fio.open(p, mode))
      assert.is_true(rawequal(f, f:write("data")))
      assert.is_true(f:close())
      assert.equal("data", get(p))
    end
  end)

  it("'x' on an existing file returns nil, 'path: File exists', 17 and leaves the file alone", function()
    for _, mode in ipairs { "wx", "ax", "w+x", "a+x" } do
      local p = dir .. "/exists"
      put(p, "keep me")
      assert.same(pack(nil, p .. ": File exists", 17), pack(fio.open(p, mode)))
      assert.equal("keep me", get(p))
    end
  end)

  it("'x' refuses an existing symlink even when its target is missing (O_EXCL)", function()
    os.execute("ln -s nowhere " .. shq(dir .. "/dangling"))
    assert.same(pack(nil, dir .. "/dangling: File exists", 17), pack(fio.open(dir .. "/dangling", "wx")))
    assert.is_nil(get(dir .. "/nowhere"))
  end)

  it("an invalid mode raises, as io.open's does", function()
    for _, mode in ipairs { "", "rw", "rb+", "+", "ww", "a++", "r+r", "bw", "wt", "W" } do
      local iok, ierr = pcall(io.open, dir .. "/m", mode)
      local fok, ferr = pcall(fio.open, dir .. "/m", mode)
      assert.is_false(iok, mode)
      assert.is_false(fok, "fio.open accepted mode '" .. mode .. "'")
      assert.equal(unname(ierr), unname(ferr))
    end
  end)

  it("'x' is refused where it makes no sense (without w or a)", function()
    for _, mode in ipairs { "x", "rx", "r+x", "xw", "+x" } do
      local ok, err = pcall(fio.open, dir .. "/m", mode)
      assert.is_false(ok, "fio.open accepted mode '" .. mode .. "'")
      assert.matches("invalid mode", err, 1, true)
    end
    assert.is_nil(get(dir .. "/m"))
  end)

  it("perm sets a new file's permission bits; an existing file keeps its own", function()
    local p = dir .. "/p"
    assert(fio.open(p, "w", octal("600"))):close()
    assert.equal(octal("600"), fio.stat(p).perm)
    assert(fio.open(p, "w", octal("644"))):close()
    assert.equal(octal("600"), fio.stat(p).perm)
    local ok = pcall(fio.open, dir .. "/q", "w", -1)
    assert.is_false(ok)
    ok = pcall(fio.open, dir .. "/q", "w", octal("10000"))
    assert.is_false(ok)
  end)

  it("bad argument types raise", function()
    assert.is_false(pcall(fio.open))
    assert.is_false(pcall(fio.open, {}))
    assert.is_false(pcall(fio.open, dir .. "/f", {}))
  end)

  it("opens, writes and reads names with spaces and non-UTF-8 bytes", function()
    local p = dir .. "/caf\xe9 \xff.txt"
    local f = assert(fio.open(p, "w"))
    f:write("bytes \0 and \xff")
    assert.is_true(f:close())
    assert.equal("bytes \0 and \xff", get(p))
    f = assert(fio.open(p, "r"))
    assert.equal("bytes \0 and \xff", f:read("a"))
    f:close()
    local missing = dir .. "/caf\xe9 \xff missing"
    assert.same(pack(io.open(missing)), pack(fio.open(missing)))
  end)
end)

describe("File:read", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  -- Each call is a list of formats; the results of every call are compared.
  local function reads_as_io(content, calls)
    same_as_io(dir, content, "r", function(f)
      local r = {}
      for i, formats in ipairs(calls) do
        r[i] = norm(pack(f:read(table.unpack(formats))), f)
      end
      return r
    end)
  end

  local cases = {
    { "an empty file", "", { { "a" }, { "a" }, { "l" }, { "L" }, { "n" }, { 0 }, { 1 }, { "l" } } },
    { "one line without newline", "hello", { { "l" }, { "l" }, { "a" }, { 0 } } },
    { "one line with newline", "hello\n", { { "L" }, { "L" }, { "l" }, { "a" } } },
    { "empty lines", "\n\n\na\n\n", { { "l" }, { "L" }, { "l", "l", "l" }, { "l" }, { "l" } } },
    { "counts", "0123456789", { { 0 }, { 3 }, { 0 }, { 100 }, { 0 }, { 1 }, { 5 } } },
    { "several formats at once", "ab\ncd\n42 x", { { 2, "L", 0, "l", "n", "n", "l" }, { "a" } } },
    { "formats stop at the first failure", "7\n", { { "n", "n", "l", "a" }, { "l" } } },
    { "numbers", "1 -2 +3 0x1F -0X1p4 3.25 .5 1e3 2E-2 0x.8 00012 9007199254740993 1e400",
      { { "n", "n", "n", "n", "n", "n", "n" }, { "n", "n", "n", "n", "n", "n", "n" }, { "n" } } },
    { "a number followed by text", "12abc\n", { { "n" }, { "a" } } },
    { "a failed number consumes what io's does", "0x\n--1 1e+ . 5", { { "n" }, { "l" }, { "n" }, { "l" }, { "n" }, { "a" } } },
    { "numbers across lines and blank space", " \t\n 42\n\n\n-7 ", { { "n", "n" }, { "n" }, { "a" } } },
    { "'n' does not read 'nan' or 'inf'", "nan inf", { { "n" }, { "a" } } },
    { "a numeral of exactly 200 characters", ("1"):rep(200) .. "x", { { "n" }, { "a" } } },
    { "a numeral longer than 200 characters", ("1"):rep(201) .. "x", { { "n" }, { "a" } } },
    { "a hex numeral of 200 characters", "0x" .. ("f"):rep(198) .. " 5", { { "n" }, { "n" } } },
    { "old-style formats with '*'", "a\nb\nc", { { "*l" }, { "*L" }, { "*a" }, { "*n" } } },
    { "no format reads a line", "first\nsecond", { {}, {}, {} } },
    { "binary bytes", "\0\1\2\n\255\254\0\n", { { "l" }, { 2 }, { "L" }, { 0 } } },
    { "carriage returns are kept", "a\r\nb\r\n", { { "l" }, { "L" } } },
  }
  for _, c in ipairs(cases) do
    it("gives io's results: " .. c[1], function()
      reads_as_io(c[2], c[3])
    end)
  end

  it("gives io's results for lines longer than the 64 KiB buffer", function()
    local long = ("x"):rep(200000)
    reads_as_io(long .. "\n" .. long .. "tail", { { "l" }, { "L" }, { 5 }, { "a" } })
  end)

  it("gives io's results for a 1 MiB file read in 7-byte counts, lines and numbers", function()
    local parts = {}
    -- (1.1 MiB; the 3000 calls take about half of it, "a" the rest)
    for i = 1, 190000 do parts[i] = tostring(i * 7919 % 100003) .. (i % 3 == 0 and "\n" or " ") end
    local s = table.concat(parts)
    assert(#s > 1024 * 1024)
    local calls = {}
    for i = 1, 3000 do
      calls[i] = ({ { 7 }, { "l" }, { "n" }, { "L", 3 }, { 0 }, { 1000 } })[i % 6 + 1]
    end
    calls[#calls + 1] = { "a" }
    reads_as_io(s, calls)
  end)

  it("read('a') reads a 5 MiB file whole and then returns ''", function()
    local s = ("0123456789abcdef"):rep(5 * 65536)
    put(dir .. "/big", s)
    local f = assert(fio.open(dir .. "/big"))
    assert.is_true(f:read("a") == s)
    assert.same(pack(""), pack(f:read("a")))
    f:close()
  end)

  it("short reads: a count past EOF returns what is there, then nil", function()
    put(dir .. "/f", "0123456789")
    local f = assert(fio.open(dir .. "/f"))
    assert.same(pack("01234"), pack(f:read(5)))
    assert.same(pack("56789"), pack(f:read(100)))
    assert.same(pack(nil), pack(f:read(100)))
    assert.same(pack(nil), pack(f:read(0)))
    assert.same(pack(nil), pack(f:read("l")))
    assert.same(pack(nil), pack(f:read("L")))
    assert.same(pack(nil), pack(f:read("n")))
    assert.same(pack(""), pack(f:read("a")))
    f:close()
  end)

  it("read(0) is '' before EOF and nil at EOF", function()
    put(dir .. "/f", "x")
    local f = assert(fio.open(dir .. "/f"))
    assert.same(pack(""), pack(f:read(0)))
    assert.same(pack("x"), pack(f:read(1)))
    assert.same(pack(nil), pack(f:read(0)))
    f:close()
  end)

  it("reads what another handle appended after EOF once the position is set again", function()
    same_as_io(dir, "a\n", "r", function(f)
      local r = { f:read("l"), f:read("l") }
      local w = assert(io.open(dir .. "/" .. (io.type(f) and "io" or "fio"), "a"))
      w:write("b\n")
      w:close()
      f:seek("cur")
      r[3] = f:read("l")
      return r
    end)
  end)

  it("invalid formats raise as io's read does", function()
    for _, bad in ipairs { { "x" }, { "" }, { {} }, { true }, { "l", "q" } } do
      same_as_io(dir, "abc", "r", function(f) return f:read(table.unpack(bad)) end)
    end
  end)

  it("a non-integral count raises io's 'number has no integer representation'", function()
    same_as_io(dir, "abc", "r", function(f) return f:read(1.5) end)
  end)

  it("reading a handle opened 'w' fails as io's does: nil, 'Bad file descriptor', 9", function()
    for _, fmt in ipairs { "a", "l", "n", 1, 0 } do
      local i = same_as_io(dir, "abc", "w", function(f) return f:read(fmt) end)
      assert.same(norm(pack(true, nil, "Bad file descriptor", 9)), i.r)
    end
  end)
end)

describe("File:read on a pipe", function()
  it("read('n') returns a number as soon as it has ended, without waiting for more input", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local r, w = fio.pipe()
      w:write("42\n")
      print(fio.timeout(2, function() return r:read("n") end))
      w:write("7 ")
      print(fio.timeout(2, function() return r:read("n") end))
      w:close()
      print(r:read("n"))
    ]], CHILD)
    assert.equal("42\n7\nnil\n", out)
  end)
end)

describe("File:write", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("returns the file, so writes chain, and writes every argument in order", function()
    local f = assert(fio.open(dir .. "/f", "w"))
    assert.is_true(rawequal(f, f:write("a")))
    assert.is_true(rawequal(f, f:write("b", "c"):write("d")))
    assert.is_true(rawequal(f, f:write()))
    f:close()
    assert.equal("abcd", get(dir .. "/f"))
  end)

  it("formats numbers as io's write does", function()
    local values = { 1, -1, 0, 1.0, -0.0, 0.1, 1 / 3, 1e100, 1e-300, 2 ^ 53, 2 ^ 63, math.maxinteger,
      math.mininteger, math.huge, -math.huge, 0 / 0, 123456789012345, 3.14159265358979 }
    same_as_io(dir, nil, "w", function(f)
      for _, v in ipairs(values) do f:write(v, "|") end
      f:write(table.unpack(values))
    end)
  end)

  it("raises on arguments that are neither strings nor numbers, as io's write does", function()
    for _, bad in ipairs { { {} }, { true }, { nil }, { print } } do
      local i, f = both(dir, nil, "w", function(h) return h:write(bad[1]) end)
      assert.same(i.r, f.r)
    end
  end)

  it("writes binary data and a 3 MiB string intact", function()
    local chunk = {}
    for i = 0, 255 do chunk[#chunk + 1] = string.char(i) end
    local s = table.concat(chunk):rep(3 * 4096)
    local f = assert(fio.open(dir .. "/f", "wb"))
    f:write("\0\255", s, "end")
    assert.is_true(f:close())
    assert.is_true(get(dir .. "/f") == "\0\255" .. s .. "end")
  end)

  it("many small writes larger in sum than the buffer arrive in order", function()
    same_as_io(dir, nil, "w", function(f)
      for i = 1, 30000 do f:write(i, i % 10 == 0 and "\n" or ",") end
    end)
  end)

  it("writing a handle opened 'r' fails at once as io's does: nil, 'Bad file descriptor', 9", function()
    local i = same_as_io(dir, "abc", "r", function(f)
      return norm(pack(f:write("X")), f), norm(pack(f:seek("cur")), f), norm(pack(f:close()), f)
    end)
    assert.same(norm(pack(nil, "Bad file descriptor", 9)), i.r[2])
  end)

  it("buffered writes reach the file by flush, seek, close and collection", function()
    local p = dir .. "/f"
    local f = assert(fio.open(p, "w"))
    f:write("one")
    f:flush()
    assert.equal("one", get(p))
    f:write("two")
    f:seek("cur")
    assert.equal("onetwo", get(p))
    f:write("three")
    f:close()
    assert.equal("onetwothree", get(p))
    f = assert(fio.open(p, "a"))
    f:write("four")
    f = nil -- luacheck: ignore 311 (the handle dropped: collected below)
    helper.fullgc()
    assert.equal("onetwothreefour", get(p))
  end)
end)

describe("File:setvbuf", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("returns true for 'no', 'full' and 'line' (with or without a size), as io's does", function()
    same_as_io(dir, "", "w", function(f)
      return f:setvbuf("no"), f:setvbuf("full"), f:setvbuf("full", 16), f:setvbuf("line", 1024)
    end)
  end)

  it("raises on an invalid mode as io's does", function()
    same_as_io(dir, "", "w", function(f) return f:setvbuf("some") end)
    same_as_io(dir, "", "w", function(f) return f:setvbuf() end)
  end)

  it("'no': each write reaches the file at once", function()
    local p = dir .. "/f"
    local f = assert(fio.open(p, "w"))
    f:setvbuf("no")
    f:write("a")
    assert.equal("a", get(p))
    f:write("b", "c")
    assert.equal("abc", get(p))
    f:close()
  end)

  it("'line': a write that ends a line reaches the file at once", function()
    local p = dir .. "/f"
    local f = assert(fio.open(p, "w"))
    f:setvbuf("line")
    f:write("a\n")
    assert.equal("a\n", get(p))
    f:write("b\nc\n")
    assert.equal("a\nb\nc\n", get(p))
    f:close()
  end)

  it("'full' with a small size keeps every byte in order", function()
    same_as_io(dir, nil, "w+", function(f)
      f:setvbuf("full", 7)
      for i = 1, 500 do f:write(("%d-"):format(i)) end
      f:seek("set")
      return f:read("a")
    end)
  end)
end)

describe("File:lines", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("iterates over lines as io's lines does", function()
    same_as_io(dir, CONTENT, "r", function(f)
      local r = {}
      for l in f:lines() do r[#r + 1] = l end
      return r
    end)
  end)

  it("takes formats as io's lines does", function()
    same_as_io(dir, "1 2\n3 4\n5 6\nrest\n", "r", function(f)
      local r = {}
      for a, b, c in f:lines("n", "n", "L") do r[#r + 1] = { val(a), val(b), val(c) } end
      return r, f:read("a")
    end)
    same_as_io(dir, "abcdefghij", "r", function(f)
      local r = {}
      for s in f:lines(3) do r[#r + 1] = s end
      return r
    end)
  end)

  it("the iterator returns nothing at EOF, as io's does", function()
    same_as_io(dir, "a\n", "r", function(f)
      local it = f:lines()
      return norm(pack(it())), norm(pack(it())), norm(pack(it()))
    end)
  end)

  it("leaves the file open at EOF", function()
    put(dir .. "/f", "a\nb\n")
    local f = assert(fio.open(dir .. "/f"))
    for _ in f:lines() do end
    assert.equal("file", fio.type(f))
    f:seek("set")
    assert.equal("a", f:read("l"))
    f:close()
  end)

  it("raises on a read error, as io's iterator does", function()
    local i = assert(io.open(dir))
    local f = assert(fio.open(dir))
    local iok, ierr = pcall(i:lines())
    local fok, ferr = pcall(f:lines())
    assert.is_false(iok)
    assert.is_false(fok)
    assert.equal(ierr, ferr)
    i:close()
    f:close()
  end)

  it("the iterator raises 'file is already closed' after the file is closed", function()
    put(dir .. "/f", "a\nb\n")
    local f = assert(fio.open(dir .. "/f"))
    local it = f:lines()
    assert.equal("a", it())
    f:close()
    local ok, err = pcall(it)
    assert.is_false(ok)
    assert.matches("file is already closed", err, 1, true)
  end)

  it("takes invalid formats, and raises 'invalid format' when called, as io's lines does", function()
    for _, lib in ipairs { io, fio } do
      local p = dir .. "/f"
      put(p, "abc")
      local f = assert(lib.open(p))
      local it = f:lines("x")
      local ok, err = pcall(it)
      assert.is_false(ok)
      assert.matches("invalid format", err, 1, true)
      f:close()
    end
  end)
end)

describe("fio.lines", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("iterates over a file's lines as io.lines does", function()
    put(dir .. "/f", CONTENT)
    local want, got = {}, {}
    for l in io.lines(dir .. "/f") do want[#want + 1] = l end
    for l in fio.lines(dir .. "/f") do got[#got + 1] = l end
    assert.same(want, got)
  end)

  it("takes formats as io.lines does", function()
    put(dir .. "/f", "1 2\n3 4\nend")
    local want, got = {}, {}
    for a, b in io.lines(dir .. "/f", "n", "L") do want[#want + 1] = { val(a), val(b) } end
    for a, b in fio.lines(dir .. "/f", "n", "L") do got[#got + 1] = { val(a), val(b) } end
    assert.same(want, got)
  end)

  it("closes the file at EOF", function()
    put(dir .. "/f", "a\nb\n")
    helper.warm()
    local before = helper.open_fds()
    local it = fio.lines(dir .. "/f")
    assert.equal("a", it())
    assert.equal(before + 1, helper.open_fds())
    assert.equal("b", it())
    assert.is_nil(it())
    assert.equal(before, helper.open_fds())
    local ok, err = pcall(it)
    assert.is_false(ok)
    assert.matches("file is already closed", err, 1, true)
  end)

  it("closes the file when a for loop over it is left early (io.lines's to-be-closed value)", function()
    put(dir .. "/f", "a\nb\nc\n")
    helper.warm()
    local before = helper.open_fds()
    for l in fio.lines(dir .. "/f") do
      if l == "a" then break end
    end
    assert.equal(before, helper.open_fds())
    local ok = pcall(function()
      for _ in fio.lines(dir .. "/f") do error("stop") end
    end)
    assert.is_false(ok)
    assert.equal(before, helper.open_fds())
  end)

  it("raises, naming the path and the reason, when the file cannot be opened", function()
    local p = dir .. "/missing"
    assert.is_false(pcall(io.lines, p))
    local ok, err = pcall(fio.lines, p)
    assert.is_false(ok)
    assert.matches(p, err, 1, true)
    assert.matches("No such file or directory", err, 1, true)
  end)

  it("without a path iterates over fio.stdin, as io.lines() over io.stdin", function()
    put(dir .. "/in", "x\ny\n\nz")
    local out = helper.child([[
      local fio = require "fiberio"
      for l in fio.lines() do io.write("[", l, "]") end
      print(fio.type(fio.stdin))
    ]], { unbuffered = true, timeout = helper.bound(20), redirect = "< " .. shq(dir .. "/in") })
    assert.equal("[x][y][][z]file\n", out)
  end)
end)

describe("File:seek", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("gives io's positions for set, cur and end with offsets, and defaults to ('cur', 0)", function()
    same_as_io(dir, CONTENT, "r", function(f)
      return f:seek(), f:seek("set", 3), f:seek("cur", 2), f:seek("cur", -1), f:seek("end"),
        f:seek("end", -4), f:read("a"), f:seek("set"), f:seek("cur")
    end)
  end)

  it("accounts for buffered reads: the position is what the caller has read", function()
    same_as_io(dir, CONTENT, "r", function(f)
      return f:read(1), f:seek("cur"), f:read("l"), f:seek(), f:seek("cur", -3), f:read("l")
    end)
  end)

  it("accounts for buffered writes", function()
    same_as_io(dir, CONTENT, "r+", function(f)
      return f:write("abc"):seek("cur"), f:write("de"):seek("cur", -1), f:read(3)
    end)
  end)

  it("past the end, then a write, leaves a hole of zero bytes, as io does", function()
    same_as_io(dir, "abc", "r+", function(f)
      return f:seek("set", 10), f:write("z"):seek("end"), f:seek("set", 2), f:read("a")
    end)
  end)

  it("a negative position fails as io's does: nil, 'Invalid argument', 22, and the position stays", function()
    local i = same_as_io(dir, "abcdef", "r", function(f)
      return norm(pack(f:read(2))), norm(pack(f:seek("set", -1))), norm(pack(f:seek("cur", -10))), f:read(1)
    end)
    assert.same(norm(pack(nil, "Invalid argument", 22)), i.r[3])
  end)

  it("raises on an invalid whence or offset, as io's does", function()
    same_as_io(dir, "abc", "r", function(f) return f:seek("here") end)
    same_as_io(dir, "abc", "r", function(f) return f:seek("set", 1.5) end)
    same_as_io(dir, "abc", "r", function(f) return f:seek("set", "x") end)
  end)

  it("on a pipe fails as io's does: nil, 'Illegal seek', 29", function()
    local p = assert(io.popen("true"))
    local want = pack(p:seek())
    p:close()
    assert.equal(29, want[3])
    local r, w = fio.pipe()
    assert.same(want, pack(r:seek()))
    assert.same(want, pack(w:seek("set", 0)))
    r:close()
    w:close()
  end)
end)

describe("File:flush", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("returns what io's flush returns", function()
    same_as_io(dir, nil, "w", function(f) return f:write("x"):flush() end)
    same_as_io(dir, "abc", "r", function(f) return f:flush() end)
  end)

  it("makes buffered writes visible to other readers", function()
    local p = dir .. "/f"
    local f = assert(fio.open(p, "w"))
    f:write("abc")
    f:flush()
    assert.equal("abc", get(p))
    f:close()
  end)
end)

describe("File:close", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("returns the error of its flush while another op on the file is in flight", function()
    -- /dev/full takes no byte: the flush of the buffered write fails, and
    -- close must say so even though the sync's op keeps the fd for later.
    local got = {}
    fio.run(function()
      for i = 1, 20 do
        local f = assert(fio.open("/dev/full", "w"))
        local s = fio.async(function() return f:sync() end)
        local c = fio.async(function() f:write("x"); return f:close() end)
        local r1, r2 = c:await()
        s:await()
        got[i] = tostring(r1) .. " " .. tostring(r2)
      end
    end)
    for i = 1, 20 do assert.equal("nil No space left on device", got[i]) end
  end)

  it("with an op still running on the fd, the fd number is not reused until that op ends", function()
    -- A sync of 64 MiB of dirty data runs for a while (on the pool or in
    -- io-wq, and cannot be stopped); close returns at once, but the fd stays
    -- open until the sync completes, so a new open cannot get its number
    -- while the sync may still use it.
    local p, q = dir .. "/f", dir .. "/g"
    put(q, "g")
    local checked = false
    fio.run(function()
      local f = assert(fio.open(p, "w"))
      assert(f:write(("x"):rep(64 * 1024 * 1024)))
      assert(f:flush())
      local old = f:fd()
      local s = fio.async(function() return f:sync() end)
      fio.yield()
      assert.is_true(f:close())
      local g = assert(fio.open(q, "r"))
      if not s:done() then
        checked = true
        assert.are_not.equal(old, g:fd())
      end
      local ok = s:await() -- true, or nil and an error: never a crash
      assert.is_true(ok == true or ok == nil)
      assert(g:close())
      -- once the sync has ended, the fd is closed
      assert.are_not.equal(p, fio.readlink("/proc/self/fd/" .. old))
    end)
    if not checked then pending("the sync ended before the new open: the fd-reuse check did not run") end
  end)

  it("returns true, as io's close does", function()
    same_as_io(dir, "abc", "r", function(f) return f:close() end)
    same_as_io(dir, nil, "w", function(f) return f:write("x"):close() end)
  end)

  it("closing twice raises as io's does", function()
    same_as_io(dir, "abc", "r", function(f)
      f:close()
      return f:close()
    end)
  end)

  it("every method of a closed file raises 'attempt to use a closed file'", function()
    put(dir .. "/f", "abc")
    local f = assert(fio.open(dir .. "/f", "r+"))
    assert.is_true(f:close())
    local calls = {
      read = { "a" }, write = { "x" }, lines = {}, seek = {}, flush = {}, setvbuf = { "no" },
      close = {}, pread = { 1, 0 }, pwrite = { "x", 0 }, sync = {}, datasync = {}, stat = {},
      truncate = { 0 }, fd = {},
    }
    for name, args in pairs(calls) do
      local ok, err = pcall(f[name], f, table.unpack(args))
      assert.is_false(ok, name .. " did not raise")
      assert.equal("attempt to use a closed file", err, name)
    end
  end)

  it("a closed file prints and types as io's: 'file (closed)', 'closed file'", function()
    put(dir .. "/f", "abc")
    local f = assert(fio.open(dir .. "/f"))
    assert.matches("^file %(0x%x+%)$", tostring(f))
    f:close()
    assert.equal("file (closed)", tostring(f))
    assert.equal("closed file", fio.type(f))
  end)

  it("the standard files refuse to close, as io's do, and stay usable", function()
    for _, name in ipairs { "stdin", "stdout", "stderr" } do
      assert.same(pack(io[name]:close()), pack(fio[name]:close()))
      assert.equal("file", fio.type(fio[name]))
    end
    assert.same(pack(nil, "cannot close standard file"), pack(fio.stdout:close()))
  end)

  it("a <close> variable closes the file", function()
    put(dir .. "/f", "abc")
    local f
    do
      local h <close> = assert(fio.open(dir .. "/f"))
      f = h
      assert.equal("abc", h:read("a"))
    end
    assert.equal("closed file", fio.type(f))
  end)
end)

describe("File:pread and File:pwrite", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("pread(n, off) returns up to n bytes at off, and nil at or past EOF", function()
    put(dir .. "/f", "0123456789")
    local f = assert(fio.open(dir .. "/f"))
    assert.same(pack("234"), pack(f:pread(3, 2)))
    assert.same(pack("89"), pack(f:pread(10, 8)))
    assert.same(pack(nil), pack(f:pread(1, 10)))
    assert.same(pack(nil), pack(f:pread(5, 1000)))
    assert.same(pack(""), pack(f:pread(0, 3)))
    f:close()
  end)

  it("pread does not move the position or disturb buffered reads", function()
    put(dir .. "/f", "line1\nline2\nline3\n")
    local f = assert(fio.open(dir .. "/f"))
    assert.equal("line1", f:read("l"))
    assert.equal("line3", f:pread(5, 12))
    assert.equal(6, f:seek("cur"))
    assert.equal("line2", f:read("l"))
    f:close()
  end)

  it("pwrite(s, off) writes at off, returns the file and leaves the position", function()
    put(dir .. "/f", "0123456789")
    local f = assert(fio.open(dir .. "/f", "r+"))
    assert.equal("01", f:read(2))
    assert.is_true(rawequal(f, f:pwrite("AB", 5)))
    assert.equal(2, f:seek("cur"))
    assert.equal("234AB789", f:read("a"))
    assert.is_true(rawequal(f, f:pwrite("", 3)))
    f:close()
    assert.equal("01234AB789", get(dir .. "/f"))
  end)

  it("pwrite past the end extends the file with zero bytes", function()
    local f = assert(fio.open(dir .. "/f", "w+"))
    f:pwrite("end", 5)
    assert.equal("\0\0\0\0\0end", f:pread(100, 0))
    f:close()
    assert.equal("\0\0\0\0\0end", get(dir .. "/f"))
  end)

  it("pwrite of 3 MiB writes all of it", function()
    local s = ("abcdefgh"):rep(3 * 131072)
    local f = assert(fio.open(dir .. "/f", "w+"))
    f:pwrite(s, 1)
    assert.is_true(f:pread(#s, 1) == s)
    f:close()
    assert.is_true(get(dir .. "/f") == "\0" .. s)
  end)

  it("pread on a write-only file and pwrite on a read-only file fail: nil, 'Bad file descriptor', 9", function()
    put(dir .. "/f", "abc")
    local w = assert(fio.open(dir .. "/f", "a"))
    assert.same(pack(nil, "Bad file descriptor", 9), pack(w:pread(1, 0)))
    w:close()
    local r = assert(fio.open(dir .. "/f"))
    assert.same(pack(nil, "Bad file descriptor", 9), pack(r:pwrite("x", 0)))
    r:close()
    assert.equal("abc", get(dir .. "/f"))
  end)

  it("on a pipe fail as pread(2) and pwrite(2) do: nil, 'Illegal seek', 29", function()
    -- In a child: were pread a plain read, it would wait on the empty pipe.
    local out = helper.child([[
      local fio = require "fiberio"
      local r, w = fio.pipe()
      print(w:pwrite("x", 0))
      print(r:pread(1, 0))
      print(r:pread(1, 0))
    ]], CHILD)
    assert.equal("nil\tIllegal seek\t29\n" .. "nil\tIllegal seek\t29\n" .. "nil\tIllegal seek\t29\n", out)
  end)

  it("raise on bad arguments", function()
    put(dir .. "/f", "abc")
    local f = assert(fio.open(dir .. "/f", "r+"))
    assert.is_false(pcall(f.pread, f, -1, 0))
    assert.is_false(pcall(f.pread, f, 1, -1))
    assert.is_false(pcall(f.pread, f, 1))
    assert.is_false(pcall(f.pwrite, f, "x", -1))
    assert.is_false(pcall(f.pwrite, f, "x"))
    assert.is_false(pcall(f.pwrite, f, {}, 0))
    f:close()
  end)
end)

describe("File:sync, datasync, stat, truncate and fd", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("sync() and datasync() return true and write buffered data first", function()
    local p = dir .. "/f"
    local f = assert(fio.open(p, "w"))
    f:write("abc")
    assert.same(pack(true), pack(f:sync()))
    assert.equal("abc", get(p))
    f:write("def")
    assert.same(pack(true), pack(f:datasync()))
    assert.equal("abcdef", get(p))
    f:close()
  end)

  it("sync() on a pipe fails with nil, msg, errno", function()
    local r, w = fio.pipe()
    local res = pack(w:sync())
    assert.is_nil(res[1])
    assert.equal("string", type(res[2]))
    assert.equal("number", type(res[3]))
    r:close()
    w:close()
  end)

  it("stat() returns the table fio.stat gives for the file's path", function()
    local p = dir .. "/f"
    put(p, "12345")
    local f = assert(fio.open(p))
    local st, want = f:stat(), fio.stat(p)
    assert.equal("table", type(st))
    for _, k in ipairs { "size", "mode", "type", "perm", "nlink", "uid", "gid", "ino", "dev", "mtime", "ctime", "blocks" } do
      assert.equal(want[k], st[k], k)
    end
    assert.equal(5, st.size)
    assert.equal("file", st.type)
    f:close()
  end)

  it("stat() sees the size after a flush, and on an unlinked file still works", function()
    local p = dir .. "/f"
    local f = assert(fio.open(p, "w"))
    f:write(("x"):rep(1000)):flush()
    assert.equal(1000, f:stat().size)
    os.remove(p)
    local st = f:stat()
    assert.equal(1000, st.size)
    assert.equal(0, st.nlink)
    f:close()
  end)

  it("truncate(n) returns true and sets the size; the position stays", function()
    local p = dir .. "/f"
    put(p, "0123456789")
    local f = assert(fio.open(p, "r+"))
    assert.equal("01", f:read(2))
    assert.same(pack(true), pack(f:truncate(4)))
    assert.equal("0123", get(p))
    assert.equal(2, f:seek("cur"))
    assert.equal("23", f:read("a"))
    assert.same(pack(true), pack(f:truncate(6)))
    assert.equal("0123\0\0", get(p))
    assert.same(pack(true), pack(f:truncate()))
    assert.equal("", get(p))
    f:close()
  end)

  it("truncate writes buffered data first", function()
    local p = dir .. "/f"
    local f = assert(fio.open(p, "w"))
    f:write("abcdef")
    assert.is_true(f:truncate(3))
    f:close()
    assert.equal("abc", get(p))
  end)

  it("truncate on a read-only file fails with nil, msg, errno; a negative size raises", function()
    put(dir .. "/f", "abc")
    local f = assert(fio.open(dir .. "/f"))
    local res = pack(f:truncate(1))
    assert.is_nil(res[1])
    assert.equal("string", type(res[2]))
    assert.equal("number", type(res[3]))
    assert.is_false(pcall(f.truncate, f, -1))
    f:close()
    assert.equal("abc", get(dir .. "/f"))
  end)

  it("fd() is the descriptor the file is open on", function()
    local p = dir .. "/f"
    put(p, "abc")
    local f = assert(fio.open(p))
    local fd = f:fd()
    assert.equal("integer", math.type(fd))
    assert.is_true(fd > 2)
    assert.equal(p, fio.readlink("/proc/self/fd/" .. fd))
    f:close()
    assert.equal(0, fio.stdin:fd())
    assert.equal(1, fio.stdout:fd())
    assert.equal(2, fio.stderr:fd())
  end)
end)

describe("fio.type and the standard files", function()
  it("fio.type is 'file', 'closed file' or nil, as io.type", function()
    local r, w = fio.pipe()
    assert.equal("file", fio.type(r))
    r:close()
    assert.equal("closed file", fio.type(r))
    assert.is_nil(fio.type(io.stdout))
    assert.is_nil(io.type(w))
    assert.is_nil(fio.type(1))
    assert.is_nil(fio.type("file"))
    assert.is_nil(fio.type({}))
    assert.is_false(pcall(fio.type))
    w:close()
  end)

  it("fio.stdin, fio.stdout and fio.stderr are open files", function()
    for _, name in ipairs { "stdin", "stdout", "stderr" } do
      assert.equal("file", fio.type(fio[name]))
    end
  end)

  it("fio.stdout and fio.stderr write to the process's stdout and stderr", function()
    local out = helper.child([[
      local fio = require "fiberio"
      fio.stdout:write("out1 ", 2, "\n")
      fio.stdout:flush()
      fio.stderr:write("err\n")
      fio.stdout:write("out3\n")
    ]], CHILD)
    assert.equal("out1 2\nerr\nout3\n", out)
  end)

  it("fio.stdin reads the process's stdin", function()
    local d = mktempdir()
    put(d .. "/in", "first line\n42 rest")
    local out = helper.child([[
      local fio = require "fiberio"
      print(fio.stdin:read("l"), fio.stdin:read("n"), fio.stdin:read("a"))
    ]], { unbuffered = true, timeout = helper.bound(20), redirect = "< " .. shq(d .. "/in") })
    rmtree(d)
    assert.equal("first line\t42\t rest\n", out)
  end)

  it("buffered output to fio.stdout and to files is written out at os.exit, as io's is", function()
    local d = mktempdir()
    local out = helper.child(([[
      local fio = require "fiberio"
      fio.stdout:write("to stdout")
      local f = fio.open(%q, "w")
      f:write("to a file")
      os.exit(0)
    ]]):format(d .. "/f"), CHILD)
    local data = get(d .. "/f")
    rmtree(d)
    assert.equal("to stdout", out)
    assert.equal("to a file", data)
  end)
end)

describe("a sparse file over 2 GiB", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("truncates to 3 GiB, and seeks, reads and writes near the end and across 2^31 and 2^32", function()
    local G3 = 3 * 1024 * 1024 * 1024
    local p = dir .. "/sparse"
    local f = assert(fio.open(p, "w+"))
    assert.is_true(f:truncate(G3))
    assert.equal(G3, f:stat().size)
    assert.equal(G3, fio.stat(p).size)
    assert.equal(G3, f:seek("end"))
    assert.equal(G3 - 5, f:seek("end", -5))
    assert.equal(("\0"):rep(5), f:read("a"))
    f:write("tail!")
    assert.equal(G3 + 5, f:seek("cur"))
    assert.is_true(rawequal(f, f:pwrite("XY", G3 - 2)))
    assert.equal("\0\0\0XYtail!", f:pread(100, G3 - 5))
    assert.is_nil(f:pread(1, G3 + 5))
    local B31 = 1 << 31
    assert.equal(B31 - 2, f:seek("set", B31 - 2))
    f:write("abcd")
    assert.equal(B31 + 2, f:seek("cur"))
    assert.equal("abcd", f:pread(4, B31 - 2))
    assert.equal(G3 + 5, f:stat().size)
    -- past the end, over 4 GiB
    f:pwrite("efgh", (1 << 32) - 2)
    f:seek("set", (1 << 32) - 3)
    assert.equal("\0efgh", f:read(6))
    assert.is_nil(f:read(1))
    assert.equal((1 << 32) + 2, f:seek("cur"))
    assert.equal((1 << 32) + 2, f:stat().size)
    assert.is_true(f:close())
    local i = assert(io.open(p, "rb"))
    i:seek("set", B31 - 2)
    assert.equal("abcd", i:read(4))
    assert.equal((1 << 32) + 2, i:seek("end"))
    i:close()
    assert.is_true(fio.stat(p).blocks * 512 < 64 * 1024 * 1024, "the file is not sparse")
  end)

  it("fio.readfile reads all of a file over 2 GiB (one read(2) moves at most 2 GiB - 4 KiB)", function()
    if os.getenv("FIBERIO_SANITIZE") == "valgrind" then
      pending("4 GiB of memory under valgrind: left to make test and make check")
    end
    local B31 = 1 << 31
    local p = dir .. "/big"
    local f = assert(fio.open(p, "w"))
    assert(f:pwrite("abcdef", B31))
    assert(f:close())
    local s = assert(fio.readfile(p))
    assert.equal(B31 + 6, #s)
    assert.equal("abcdef", s:sub(-6))
    assert.equal(("\0"):rep(16), s:sub(B31 - 15, B31))
    s = nil -- luacheck: ignore 311 (the string dropped)
    collectgarbage()
  end)
end)

describe("fibers sharing a handle", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  -- 20 fibers each write 50 lines of sizes up to 200 KB (most larger than
  -- the buffer); every line must arrive whole and none be lost.
  local function concurrent_writes(setup)
    local p = dir .. "/shared"
    local function line(i, j)
      local n = (i * 997 + j * 131) % 200000
      return ("<%02d:%02d:%s>\n"):format(i, j, string.char(64 + i):rep(n))
    end
    fio.run(function()
      local f = assert(fio.open(p, "w"))
      if setup then setup(f) end
      local g = fio.group()
      for i = 1, 20 do
        g:async(function()
          for j = 1, 50 do
            assert(rawequal(f, f:write(line(i, j))))
            if j % 7 == 0 then fio.yield() end
          end
        end)
      end
      g:wait()
      assert(f:close())
    end)
    local seen, n = {}, 0
    for l in io.lines(p, "L") do
      local i, j = l:match("^<(%d+):(%d+):")
      assert(i, "a torn line starts with " .. l:sub(1, 20))
      i, j = tonumber(i), tonumber(j)
      assert(l == line(i, j), "line " .. i .. ":" .. j .. " is torn")
      assert(not seen[i * 100 + j], "line " .. i .. ":" .. j .. " twice")
      seen[i * 100 + j] = true
      n = n + 1
    end
    assert.equal(1000, n)
  end

  it("concurrent writes from 20 fibers each arrive whole and none is lost", function()
    concurrent_writes()
  end)

  it("the same with the handle unbuffered", function()
    concurrent_writes(function(f) f:setvbuf("no") end)
  end)

  it("the same with a small buffer", function()
    concurrent_writes(function(f) f:setvbuf("full", 100) end)
  end)

  it("concurrent line reads from 10 fibers hand every line out exactly once", function()
    local p = dir .. "/lines"
    local want = {}
    for i = 1, 20000 do want[i] = ("line %05d %s"):format(i, ("y"):rep(i % 50)) end
    put(p, table.concat(want, "\n") .. "\n")
    local got = {}
    fio.run(function()
      local f = assert(fio.open(p))
      local g = fio.group()
      for _ = 1, 10 do
        g:async(function()
          while true do
            local l = f:read("l")
            if not l then break end
            got[#got + 1] = l
            if #got % 97 == 0 then fio.yield() end
          end
        end)
      end
      g:wait()
      f:close()
    end)
    table.sort(got)
    assert.equal(#want, #got)
    assert.is_true(table.concat(want, "\n") == table.concat(got, "\n"))
  end)

  it("pread and pwrite from many fibers at once each land at their offsets", function()
    local p = dir .. "/pio"
    local f = assert(fio.open(p, "w+"))
    fio.run(function()
      local g = fio.group()
      for i = 0, 99 do
        g:async(function()
          f:pwrite(("%04d"):format(i):rep(256), i * 1024)
          assert(f:pread(1024, i * 1024) == ("%04d"):format(i):rep(256))
        end)
      end
      g:wait()
    end)
    f:close()
    local s = get(p)
    assert.equal(100 * 1024, #s)
    for i = 0, 99 do
      assert.equal(("%04d"):format(i):rep(256), s:sub(i * 1024 + 1, i * 1024 + 1024))
    end
  end)
end)

-- Reads and writes of regular files may run on the loop thread when the
-- loop would otherwise sleep (the first such call of a turn; the others of
-- that turn go to the ring or the pool): fio._info().inlined counts them.
-- On io_uring only writes are held back (reads of cached data complete
-- inline in the ring anyway); on the threads backend both are.
describe("file I/O when the loop would sleep", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  local function inlined() return fio._info().inlined end

  it("a lone copy loop runs its file writes on the loop thread, and the copy is exact", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    local data = {}
    for i = 1, 64 do data[i] = string.char(i % 256):rep(65536 + i) end
    put(src, table.concat(data))
    local n0 = inlined()
    local writes = 0
    fio.run(function()
      local r = assert(fio.open(src, "rb"))
      local w = assert(fio.open(dst, "wb"))
      while true do
        local s = r:read(256 * 1024)
        if not s then break end
        assert(w:write(s))
        writes = writes + 1
      end
      assert(r:close())
      assert(w:close())
    end)
    assert.is_true(get(dst) == table.concat(data))
    assert.is_true(writes >= 16)
    -- every write was larger than the buffer, so each was one call
    assert.is_true(inlined() - n0 >= writes, ("inlined %d of %d writes"):format(inlined() - n0, writes))
  end)

  it("concurrent writers do not all run on the loop thread, and every file is whole", function()
    local n0 = inlined()
    local chunk = ("0123456789abcdef"):rep(16384) -- 256 KiB, over the buffer
    local N, W = 8, 4
    fio.run(function()
      -- opened first, so that the writers' first writes come in one turn
      local files = {}
      for k = 1, W do files[k] = assert(fio.open(dir .. "/w" .. k, "wb")) end
      local g = fio.group()
      for k = 1, W do
        g:async(function()
          local f = files[k]
          for _ = 1, N do assert(f:write(chunk:sub(1, -2) .. string.char(64 + k))) end
          assert(f:close())
        end)
      end
      g:wait()
    end)
    for k = 1, W do
      assert.is_true(get(dir .. "/w" .. k) == (chunk:sub(1, -2) .. string.char(64 + k)):rep(N))
    end
    local used = inlined() - n0
    assert.is_true(used < N * W, ("%d of %d writes inlined"):format(used, N * W))
  end)

  it("a write canceled before the loop ran it never happens", function()
    local p = dir .. "/f"
    put(p, "before")
    local res
    fio.run(function()
      local f = assert(fio.open(p, "r+b"))
      f:setvbuf("no")
      local w = fio.async(function() return f:write("XXXXXX") end)
      fio.yield() -- w runs up to its write, held until the loop waits
      res = table.pack(fio.cancel(w))
      assert(f:close())
    end)
    assert.equal(nil, res[1])
    assert.is_true(rawequal(res[2], fio.Canceled))
    assert.equal("before", get(p))
  end)

  it("a deadline on a held write cancels it cleanly (fio.timeout 0)", function()
    local p = dir .. "/f"
    put(p, "keep")
    local ok
    fio.run(function()
      local f = assert(fio.open(p, "r+b"))
      f:setvbuf("no")
      ok = fio.timeout(0, function() return f:write("gone") end)
      assert(f:close())
    end)
    -- either the write ran before the deadline fired, or it never ran
    if ok then assert.equal("gone", get(p)) else assert.equal("keep", get(p)) end
  end)
end)

describe("reads that block: cancel and close", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("a fiber blocked reading a FIFO is canceled with nil, fio.Canceled, and the handle still reads after", function()
    os.execute("mkfifo " .. shq(dir .. "/fifo"))
    local out = helper.child(([[
      local fio = require "fiberio"
      fio.run(function()
        local r = assert(fio.open(%q, "r+"))
        local reader = fio.async(function() return r:read(5) end)
        fio.sleep(0.02)
        print("done before cancel", reader:done())
        local t0 = fio.now()
        local a, b = fio.cancel(reader)
        print("canceled", a, rawequal(b, fio.Canceled), fio.now() - t0 < 1)
        local w = assert(io.open(%q, "w"))
        w:setvbuf("no")
        w:write("after")
        print("read", r:read(5))
        local again = fio.async(function() return r:read("l") end)
        fio.sleep(0.01)
        w:write("xyz\n")
        print("again", again:await())
        w:close()
        print("close", r:close())
      end)
    ]]):format(dir .. "/fifo", dir .. "/fifo"), CHILD)
    assert.equal("done before cancel\tfalse\ncanceled\tnil\ttrue\ttrue\nread\tafter\nagain\txyz\nclose\ttrue\n", out)
  end)

  it("a read canceled from the main chunk on a FIFO opened with fio.open", function()
    os.execute("mkfifo " .. shq(dir .. "/fifo"))
    local out = helper.child(([[
      local fio = require "fiberio"
      local r = assert(fio.open(%q, "r+"))
      local reader = fio.async(function() return r:read("l") end)
      fio.sleep(0.02)
      local a, b = reader:cancel()
      print(a, rawequal(b, fio.Canceled))
      r:close()
    ]]):format(dir .. "/fifo"), CHILD)
    assert.equal("nil\ttrue\n", out)
  end)

  it("closing a handle while another fiber reads a pipe ends that read with nil, msg, errno", function()
    local out = helper.child([[
      local fio = require "fiberio"
      fio.run(function()
        local r, w = fio.pipe()
        local reader = fio.async(function() return r:read(5) end)
        fio.sleep(0.02)
        local t0 = fio.now()
        print("close", r:close())
        local a, b, c = reader:await()
        print("reader", a, type(b), math.type(c), fio.now() - t0 < 1)
        print("type", fio.type(r))
        w:close()
      end)
    ]], CHILD)
    assert.equal("close\ttrue\nreader\tnil\tstring\tinteger\ttrue\ntype\tclosed file\n", out)
  end)

  it("closing a FIFO handle while another fiber reads it ends that read with nil, msg, errno", function()
    os.execute("mkfifo " .. shq(dir .. "/fifo"))
    local out = helper.child(([[
      local fio = require "fiberio"
      fio.run(function()
        local r = assert(fio.open(%q, "r+"))
        local reader = fio.async(function() return r:read("a") end)
        fio.sleep(0.02)
        print("close", r:close())
        local a, b, c = reader:await()
        print("reader", a, type(b), math.type(c))
      end)
    ]]):format(dir .. "/fifo"), CHILD)
    assert.equal("close\ttrue\nreader\tnil\tstring\tinteger\n", out)
  end)

  it("opening a FIFO for reading waits for a writer, as io.open does", function()
    os.execute("mkfifo " .. shq(dir .. "/fifo"))
    local out = helper.child(([[
      local fio = require "fiberio"
      local p = %q
      -- With the path's lookup cached (a stat just before is common), a
      -- nonblocking attempt at the open would succeed at once.
      assert(fio.stat(p).type == "fifo")
      fio.run(function()
        local opener = fio.async(fio.open, p, "r")
        fio.sleep(0.05)
        print("waiting", not opener:done())
        local w = assert(io.open(p, "w"))
        w:write("from the writer")
        w:close()
        local f = assert(opener:await())
        print("read", f:read("a"))
        f:close()
      end)
    ]]):format(dir .. "/fifo"), CHILD)
    assert.equal("waiting\ttrue\nread\tfrom the writer\n", out)
  end)

  it("an open of a FIFO that waits for a reader is canceled with nil, fio.Canceled, and leaves no fd", function()
    os.execute("mkfifo " .. shq(dir .. "/fifo"))
    local out = helper.child(([[
      local fio = require "fiberio"
      local fds = require("helper").open_fds
      local p = %q
      fio.run(function() fio.stat(p) end)
      collectgarbage() collectgarbage()
      local before = fds()
      fio.run(function()
        local opener = fio.async(function() return fio.open(p, "w") end)
        fio.sleep(0.02)
        print("waiting", not opener:done())
        local a, b, c = fio.cancel(opener)
        print("canceled", a, rawequal(b, fio.Canceled) or b, c)
        -- A reader lets an open still pending in the kernel complete: its
        -- fd must then be closed by the loop. (r+ never blocks on a FIFO.)
        local r = io.open(p, "r+")
        fio.sleep(0.05)
        r:close()
      end)
      collectgarbage() collectgarbage()
      print("fds", fds() - before)
    ]]):format(dir .. "/fifo"), CHILD)
    assert.equal("waiting\ttrue\ncanceled\tnil\ttrue\tnil\nfds\t0\n", out)
  end)

  it("an open of a FIFO for reading returns when a writer came, wrote and left while it waited for a pool thread", function()
    if fio.backend() ~= "io_uring" then
      pending("only io_uring opens a FIFO in two steps (a reader at once, the blocking open on the pool); "
              .. "on " .. fio.backend() .. " the open is one open(2), before which no writer gets in")
      return
    end
    os.execute("mkfifo " .. shq(dir .. "/a") .. " " .. shq(dir .. "/b"))
    local out = helper.child(([[
      local fio = require "fiberio"
      local a, b = %q, %q
      local big = os.tmpname()
      assert(io.open(big, "w")):write(("x"):rep(1 << 20)):close()
      fio.run(function()
        -- the only pool thread blocks in a copy into FIFO a, which has a
        -- reader that never reads
        local ra = assert(io.open(a, "r+"))
        local cf = fio.async(fio.copyfile, big, a)
        fio.sleep(0.05)
        -- this open gets its first reader at once, and queues its blocking
        -- open behind the copy
        local rb = fio.async(fio.open, b, "r")
        fio.sleep(0.05)
        -- a writer gets in (a reader exists), writes and leaves
        local w = assert(io.open(b, "w"))
        w:write("came and went")
        w:close()
        fio.cancel(cf) -- frees the pool thread
        local fb = assert(rb:await())
        print(fb:read("a"))
        fb:close()
        ra:close()
      end)
      os.remove(big)
    ]]):format(dir .. "/a", dir .. "/b"), { unbuffered = true, timeout = helper.bound(10), env = { FIBERIO_POOL_SIZE = 1 } })
    assert.equal("came and went\n", out)
  end)
end)

describe("fd hygiene", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("200 open/read/write/close rounds return the fd count to where it was", function()
    helper.warm()
    local before = helper.open_fds()
    for i = 1, 200 do
      local f = assert(fio.open(dir .. "/f" .. (i % 5), "w+"))
      f:write("x", i):seek("set")
      assert(f:read("a") == "x" .. i)
      assert(f:close())
    end
    assert.equal(before, helper.open_fds())
  end)

  it("handles dropped without close release their fds when collected", function()
    helper.warm()
    local before = helper.open_fds()
    for i = 1, 200 do
      local f = assert(fio.open(dir .. "/f" .. (i % 5), "w+"))
      f:write("x")
      f:pread(1, 0)
    end
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)

  it("opens of a FIFO for reading canceled while they wait for a writer leave no fd behind", function()
    -- (on io_uring the first, nonblocking open has a reader fd already when
    -- the blocking one is queued: the cancel must close it)
    os.execute("mkfifo " .. shq(dir .. "/fifo"))
    helper.warm()
    local before = helper.open_fds()
    local canceled = 0
    fio.run(function()
      for _ = 1, 50 do
        local a = fio.async(fio.open, dir .. "/fifo", "r")
        fio.yield()
        local r1, r2 = a:cancel()
        if r1 == nil and rawequal(r2, fio.Canceled) then canceled = canceled + 1 end
        if fio.type(r1) == "file" then r1:close() end
      end
    end)
    helper.fullgc()
    assert.equal(50, canceled)
    assert.equal(before, helper.open_fds())
  end)

  it("failed opens and fio.lines loops leave no fd behind", function()
    put(dir .. "/f", "a\nb\n")
    helper.warm()
    local before = helper.open_fds()
    for _ = 1, 100 do
      assert.is_nil(fio.open(dir .. "/missing"))
      assert.is_nil(fio.open(dir .. "/f", "wx"))
      for _ in fio.lines(dir .. "/f") do end
    end
    assert.equal(before, helper.open_fds())
  end)

  it("handles used by fibers whose futures were dropped leave no fd behind", function()
    helper.warm()
    local before = helper.open_fds()
    local done = 0
    for i = 1, 100 do
      fio.async(function()
        local f = assert(fio.open(dir .. "/g" .. i, "w+"))
        f:write("abc"):seek("set")
        assert(f:read(3) == "abc")
        f:close()
        done = done + 1
      end)
    end
    helper.fullgc()
    local deadline = fio.now() + helper.bound(5)
    while done < 100 and fio.now() < deadline do fio.sleep(0.001) end
    assert.equal(100, done)
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)

  it("a C host's lua_close releases every fd fiberio opened, with work in flight or queued, state after state", function()
    -- tools/host.c runs each script in a new lua_State and closes it, three
    -- times, printing how many more fds the process has open than before.
    local why = helper.host_missing()
    if why then pending(why) return end
    os.execute("mkfifo " .. shq(dir .. "/fifo"))
    local scripts = {
      -- files, pipes and readfile, all ended before the state closes
      plain = [[
        fio.run(function()
          local f = assert(fio.open("/etc/hostname")); f:read("a"); f:close()
          local r, w = fio.pipe(); w:write("x"); r:read(1); r:close(); w:close()
          fio.readfile("/etc/hostname")
        end)
      ]],
      -- reads of pipes nobody writes and an open of a FIFO nobody writes
      -- to, in flight; handles still open
      inflight = [[
        local keep = {}
        for i = 1, 5 do
          local r, w = fio.pipe()
          keep[i] = { r, w }
          fio.async(function() return r:read(1) end)
        end
        keep.f = assert(fio.open("/etc/hostname"))
        fio.async(function() return fio.open(FIFO) end)
        fio.sleep(0.05)
        error("closing", 0) -- (a chunk that returns runs its fibers to their end)
      ]],
      -- on a one-thread pool: closes queued behind a read that blocks it
      queued = [[
        local files = {}
        for i = 1, 10 do files[i] = assert(fio.open("/etc/hostname")) end
        local r, w = fio.pipe()
        fio.async(function() return r:read(1) end)
        fio.sleep(0.05)
        for i = 1, 10 do fio.async(function() files[i]:close() end) end
        fio.sleep(0.05)
        error("closing", 0)
      ]],
    }
    local env = { FIBERIO_THREADS_POLL = 0, FIBERIO_POOL_SIZE = 1, FIFO = dir .. "/fifo" }
    for name, body in pairs(scripts) do
      local out = helper.host('local fio = require "fiberio"\nlocal FIFO = os.getenv("FIFO")\n' .. body,
                              "3", env)
      local closing = name == "plain" and "" or "host: closing\n"
      assert.equal(("%sround 1 fds 0\n%sround 2 fds 0\n%sround 3 fds 0\n"):format(closing, closing, closing),
                   (out:gsub("fiberio: %d+ fibers? had not finished[^\n]*\n", "")), name)
    end
  end)

  it("a collected handle with buffered data writes it out, as io's does", function()
    local p = dir .. "/f"
    do
      local f = assert(fio.open(p, "w"))
      f:write("kept")
    end
    helper.fullgc()
    assert.equal("kept", get(p))
  end)
end)

describe("files from every context", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  -- One scenario touching every method; returns a summary to compare.
  local function scenario(p)
    local f = assert(fio.open(p, "w+"))
    f:write("alpha\n", 42, " beta\n")
    f:flush()
    f:seek("set")
    local a = f:read("l")
    local n = f:read("n")
    local rest = f:read("a")
    f:pwrite("A", 0)
    local pr = f:pread(5, 0)
    local size = f:stat().size
    assert(f:sync() and f:datasync())
    assert(f:truncate(6))
    f:seek("set")
    local lines = {}
    for l in f:lines() do lines[#lines + 1] = l end
    assert(f:close())
    local fl = {}
    for l in fio.lines(p) do fl[#fl + 1] = l end
    return table.concat({ a, n, rest, pr, size, table.concat(lines, ","), table.concat(fl, ",") }, "|")
  end
  local want = "alpha|42| beta\n|Alpha|14|Alpha|Alpha"

  it("the main chunk", function()
    assert.equal(want, scenario(dir .. "/f"))
  end)

  it("fio.run", function()
    assert.equal(want, fio.run(scenario, dir .. "/f"))
  end)

  it("a fiber", function()
    assert.equal(want, fio.async(scenario, dir .. "/f"):await())
  end)

  it("ten fibers at once, each on its own file", function()
    fio.run(function()
      local fs = {}
      for i = 1, 10 do fs[i] = fio.async(scenario, dir .. "/f" .. i) end
      for i = 1, 10 do assert.equal(want, fs[i]:await()) end
    end)
  end)

  it("a coroutine.wrap (not a fiber) inside a fiber and in the main chunk", function()
    assert.equal(want, fio.run(function() return coroutine.wrap(scenario)(dir .. "/f") end))
    assert.equal(want, coroutine.wrap(scenario)(dir .. "/g"))
  end)

  it("a table.sort comparator inside a fiber and in the main chunk", function()
    local function in_sort()
      local got
      table.sort({ 3, 1, 2 }, function(a, b)
        if not got then got = scenario(dir .. "/f") end
        return a < b
      end)
      return got
    end
    assert.equal(want, fio.run(in_sort))
    assert.equal(want, in_sort())
  end)
end)

describe("end of file does not stick (issue 12)", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  -- The same steps on a handle of lib: reads past EOF, then appends by a
  -- second handle and by another process, each followed by reads without a
  -- seek. Returns every result, normalized.
  local function follow(lib, p)
    put(p, "one\n")
    local app = assert(io.open(p, "ab"))
    local function append(s) app:write(s) app:flush() end
    local function shell_append(s) assert(os.execute("printf '%s' " .. shq(s) .. " >> " .. shq(p))) end
    local f = assert(lib.open(p, "rb"))
    local r = {}
    local function step(...) r[#r + 1] = norm(pack(...)) end
    step(f:read("a"))
    step(f:read("l"))
    append("two\n")
    step(f:read("l"))
    step(f:read("l"))
    shell_append("3 4\n")
    step(f:read("n", "n"))
    step(f:read("l"))
    step(f:read(0))
    append("x")
    step(f:read(0))
    step(f:read(1))
    step(f:read(1))
    shell_append("five\nsix")
    step(f:read("a"))
    step(f:read("a"))
    step(f:read("a", 0))
    append("\nseven\n")
    step(f:read("L", "L", "L"))
    shell_append("8\n")
    step(f:read("n"))
    local it = f:lines()
    step(it())
    append("nine\nten\n")
    step(it())
    step(it())
    step(it())
    shell_append("eleven\n")
    local ls = {}
    for l in f:lines() do ls[#ls + 1] = l end
    step(table.concat(ls, ","))
    app:close()
    f:close()
    return r
  end

  it("reads, read(0) and lines after an append by another handle or process give io's results", function()
    local want = follow(io, dir .. "/io")
    assert.same(want, follow(fio, dir .. "/fio"))
    assert.same(want, fio.run(follow, fio, dir .. "/fio2"))
  end)

  it("a pipe read after EOF asks again and sees nothing more, as io's does", function()
    local r, w = fio.pipe()
    helper.send(w, "a")
    w:close()
    assert.equal("a", r:read("a"))
    assert.is_nil(r:read("l"))
    assert.equal("", r:read("a"))
    assert.is_nil(r:read(0))
    r:close()
  end)
end)

describe("invalid formats of lines (issue 12)", function()
  it("f:lines({})() and fio.lines(p, true) raise io's argument errors instead of crashing", function()
    local out, code = helper.child([[
      local fio = require "fiberio"
      local p = os.tmpname()
      local h = io.open(p, "w") h:write("abc\n") h:close()
      local function try(lib)
        local f = assert(lib.open(p))
        local r = {}
        r[#r + 1] = select(2, pcall(function() return f:lines({})() end))
        r[#r + 1] = select(2, pcall(function() return f:lines("l", true)() end))
        r[#r + 1] = select(2, pcall(function() for _ in f:lines("x") do end end))
        r[#r + 1] = select(2, pcall(function() for _ in f:lines(1.5) do end end))
        r[#r + 1] = select(2, pcall(function() for _ in lib.lines(p, true) do end end))
        r[#r + 1] = select(2, pcall(function() for _ in lib.lines(p, "l", {}) do end end))
        r[#r + 1] = select(2, pcall(function() return lib.lines(p, "l", "x")() end))
        f:close()
        return r
      end
      local a, b = try(io), try(fio)
      for i = 1, #a do print(a[i] == b[i] and "same" or ("io: " .. a[i] .. " / fiberio: " .. tostring(b[i]))) end
      os.remove(p)
    ]])
    assert.equal(0, code, out)
    assert.equal(("same\n"):rep(7), out)
  end)
end)

describe("File:seek arithmetic (issue 12)", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("seek('cur', math.mininteger) with unread bytes fails as io's does: nil, 'Invalid argument', 22", function()
    same_as_io(dir, "hello world", "r", function(f)
      local a = f:read(2)
      return a, f:seek("cur", math.mininteger), f:seek("cur", math.mininteger + 1), f:seek("cur"), f:read(1)
    end)
  end)

  it("seek('end', math.maxinteger) and ('set', math.mininteger) fail as io's do", function()
    same_as_io(dir, "hello world", "r", function(f)
      f:read(3)
      return f:seek("end", math.maxinteger), f:seek("set", math.mininteger), f:seek("cur"), f:read(1)
    end)
  end)
end)

describe("File:setvbuf sizes (issue 12)", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("a size of 0 is accepted as io's setvbuf accepts it, and the handle then works", function()
    for _, mode in ipairs { "full", "line", "no" } do
      same_as_io(dir, "abc\n", "r+", function(f)
        local ok = f:setvbuf(mode, 0)
        f:seek("end")
        f:write("def\n", 42, "\n")
        f:seek("set")
        return ok, f:read("a")
      end)
    end
  end)

  it("a huge size (2^62) does not break later calls", function()
    for _, mode in ipairs { "full", "line" } do
      same_as_io(dir, ("x"):rep(100) .. "\n", "r+", function(f)
        local ok = f:setvbuf(mode, 2 ^ 62)
        local a = f:read("l")
        f:seek("end")
        f:write(("y"):rep(70000), "\n")
        f:seek("set")
        return ok, a, #f:read("a"), f:seek("cur")
      end)
    end
  end)
end)

describe("a write that runs out of space (issue 12)", function()
  -- A 1 MiB tmpfs mounted on a new directory: mount needs root; without it
  -- the spec is pending.
  local function with_small_fs(fn)
    local dir = mktempdir()
    local ok = os.execute("mount -t tmpfs -o size=1m tmpfs " .. shq(dir) .. " 2>/dev/null")
    if not ok then
      rmtree(dir)
      return false
    end
    local okf, err = pcall(fn, dir)
    helper.umount(dir)
    rmtree(dir)
    if not okf then error(err, 0) end
    return true
  end

  local DATA
  local function data()
    if not DATA then
      local t = {}
      for i = 1, 3 * 1024 * 1024 / 16 do t[i] = ("%15d\n"):format(i) end
      DATA = table.concat(t)
    end
    return DATA
  end

  -- Write 3 MiB in one call or in 64 KiB pieces, in a fiber while another
  -- fiber keeps the loop busy (so that the writes go to the ring, not to a
  -- plain write(2) on the loop thread): nil, msg, 28 and a prefix of the data.
  local function fill(dir, mode, pieces)
    local s, p = data(), dir .. "/f"
    local r
    fio.run(function()
      local stop = false
      fio.async(function() while not stop do fio.yield() end end)
      local f = assert(fio.open(p, "w"))
      f:setvbuf(mode)
      if pieces then
        for i = 1, #s, 65536 do
          r = pack(f:write(s:sub(i, i + 65535)))
          if not r[1] then break end
        end
        if r[1] then r = pack(f:flush()) end
      else
        r = pack(f:write(s))
      end
      f:close()
      stop = true
    end)
    local got = get(p)
    os.remove(p)
    return r, got
  end

  for _, c in ipairs { { "no", false }, { "full", false }, { "full", true }, { "no", true } } do
    it(("returns nil, 'No space left on device', 28 and leaves a prefix of the data (setvbuf %q, %s)"):format(
      c[1], c[2] and "64 KiB writes" or "one 3 MiB write"), function()
      local ran = with_small_fs(function(dir)
        local r, got = fill(dir, c[1], c[2])
        assert.same({ n = 3, nil, "No space left on device", 28 }, r)
        assert.is_true(#got > 0 and #got < #data())
        assert.is_true(got == data():sub(1, #got), "the file is not a prefix of the data written")
      end)
      if not ran then pending("cannot mount a tmpfs here (mount needs root)") end
    end)
  end
end)

describe("canceled closes and canceled multi-step calls (issue 12)", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("a close canceled during its flush still closes the file (200 rounds, no fd left)", function()
    helper.warm()
    local before = helper.open_fds()
    local handles = {}
    fio.run(function()
      for i = 1, 200 do
        local f = assert(fio.open(dir .. "/f" .. (i % 5), "w"))
        handles[i] = f
        f:write(("x"):rep(1000))
        local c = fio.async(function() return f:close() end)
        fio.yield() -- c runs up to its flush
        fio.cancel(c)
      end
    end)
    local open = 0
    for _, f in ipairs(handles) do if fio.type(f) ~= "closed file" then open = open + 1 end end
    assert.equal(0, open)
    assert.equal(before, helper.open_fds())
  end)

  it("a close canceled while its flush waits on a full pipe ends and closes the fd", function()
    helper.warm()
    local before = helper.open_fds()
    local res, wtype
    fio.run(function()
      local r, w = fio.pipe()
      w:setvbuf("full", 700000)
      w:write(("x"):rep(600000)) -- more than a pipe holds (256 KiB), nobody reads
      local c = fio.async(function() return w:close() end)
      fio.sleep(0.01)
      local t0 = fio.now()
      res = pack(fio.cancel(c))
      assert.is_true(fio.now() - t0 < helper.bound(2))
      wtype = fio.type(w)
      if wtype ~= "closed file" then -- (failing: let it end without SIGPIPE)
        local d = fio.async(function() return r:read("a") end)
        w:close()
        d:await()
      end
      r:close()
    end)
    assert.equal(nil, res[1])
    assert.is_true(rawequal(fio.Canceled, res[2]))
    assert.equal("closed file", wtype)
    assert.equal(before, helper.open_fds())
  end)

  -- Memory of this process (resident set), in KiB.
  local function rss()
    local s = get("/proc/self/statm")
    local pages = tonumber(s:match("^%d+ (%d+)"))
    return pages * 4
  end

  it("reads and writes canceled between two steps free their operations (memory stays flat)", function()
    local function rounds(n)
      fio.run(function()
        for _ = 1, n do
          local r, w = fio.pipe()
          -- a read("a") needs many steps: its first completes with data,
          -- then the cancel lands before the next
          local rd = fio.async(function() return r:read("a") end)
          fio.yield()
          w:write("data")
          fio.cancel(rd)
          w:close()
          r:close()
          -- a write through a small buffer: several flushes
          local f = assert(fio.open(dir .. "/f", "w"))
          f:setvbuf("full", 16)
          local wr = fio.async(function() return f:write(("y"):rep(100)) end)
          fio.yield()
          fio.cancel(wr)
          f:close()
        end
      end)
      helper.fullgc()
    end
    if os.getenv("FIBERIO_SANITIZE") then
      -- ASan keeps freed memory in quarantine, so the resident set says
      -- nothing here; LeakSanitizer (valgrind) reports a leaked op at exit.
      rounds(500)
      return
    end
    rounds(2000) -- warm up
    local m0 = rss()
    rounds(20000)
    local grew = rss() - m0
    assert.is_true(grew < 3000, ("grew by %d KiB over 20000 rounds"):format(grew))
  end)
end)
