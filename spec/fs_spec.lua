-- Paths, whole files and trees (DESIGN.md section 1, "Files"): stat, lstat,
-- readdir, scandir, mkdir, mkdirp, rmdir, unlink, rename, link, symlink,
-- readlink, access, chmod, truncate, realpath, mkdtemp; readfile, writefile,
-- copyfile (walk: walk_spec.lua). Failures are compared with what os.remove, os.rename and
-- io.open return for the same case where one of them does the same thing;
-- fixtures are made and checked with the shell, io and os, not with the code
-- under test. Every call is also run from fio.run, fibers and callers that
-- cannot yield.
local helper = require "helper"
local fio = helper.fio
local pack = helper.pack

local octal = helper.octal

local shq = helper.shquote

local sh = helper.sh_ok

local lines_of = helper.lines_of

local put, get = helper.put, helper.get

local exists = helper.exists

local function perm_of(path)
  return tonumber(lines_of("stat -c %a " .. shq(path))[1], 8)
end

local function mktempdir() return helper.mktempdir("fs") end
local rmtree = helper.rmtree

local function umask()
  return tonumber(lines_of("umask")[1], 8)
end

-- How the children run (helper.child): stdout unbuffered, so that a child
-- killed by its timeout shows what it printed before.
local CHILD = { unbuffered = true }

-- A directory chmod 000 holding a file and a subdirectory, and whether its
-- mode stops this process (not when running as root).
local function locked_dir(dir)
  local locked = dir .. "/locked"
  sh("mkdir " .. shq(locked) .. " " .. shq(locked .. "/sub"))
  put(locked .. "/file", "secret")
  sh("chmod 000 " .. shq(locked))
  local f, _, err = io.open(locked .. "/file")
  if f then
    f:close()
    return locked, "running as root: io.open succeeds in a directory with mode 000"
  end
  if err ~= 13 then return locked, "io.open fails there with errno " .. tostring(err) .. ", not EACCES" end
  return locked
end

local ENOENT = "No such file or directory"

describe("fio.stat and fio.lstat", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  local INTS = { "size", "mode", "perm", "nlink", "uid", "gid", "ino", "dev", "blocks" }
  local TIMES = { "atime", "mtime", "ctime" }

  it("return a table with every field, integers and times in seconds", function()
    put(dir .. "/f", "12345")
    for _, st in ipairs { fio.stat(dir .. "/f"), fio.lstat(dir .. "/f"), fio.stat(dir) } do
      assert.equal("table", type(st))
      for _, k in ipairs(INTS) do assert.equal("integer", math.type(st[k]), k) end
      for _, k in ipairs(TIMES) do assert.equal("number", type(st[k]), k) end
      assert.equal("string", type(st.type))
    end
  end)

  it("agree with stat(1) for a file, a directory and a symlink", function()
    put(dir .. "/f", ("x"):rep(10000))
    sh("chmod 640 " .. shq(dir .. "/f") .. " && ln -s f " .. shq(dir .. "/l"))
    local cases = {
      { fio.stat, "stat -L", dir .. "/f" }, { fio.stat, "stat -L", dir },
      { fio.lstat, "stat", dir .. "/l" }, { fio.stat, "stat -L", dir .. "/l" },
    }
    for _, c in ipairs(cases) do
      local st = assert(c[1](c[3]))
      local w = lines_of(c[2] .. " -c '%s %a %h %u %g %i %d %b %f %Y %Z' " .. shq(c[3]))[1]
      local size, perm, nlink, uid, gid, ino, dev, blocks, mode, mtime, ctime =
        w:match("^(%d+) (%x+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%x+) (%d+) (%d+)$")
      local what = c[2] .. " " .. c[3]
      assert.equal(tonumber(size), st.size, what)
      assert.equal(tonumber(perm, 8), st.perm, what)
      assert.equal(tonumber(nlink), st.nlink, what)
      assert.equal(tonumber(uid), st.uid, what)
      assert.equal(tonumber(gid), st.gid, what)
      assert.equal(tonumber(ino), st.ino, what)
      assert.equal(tonumber(dev), st.dev, what)
      assert.equal(tonumber(blocks), st.blocks, what)
      assert.equal(tonumber(mode, 16), st.mode, what)
      assert.equal(tonumber(mtime), math.floor(st.mtime), what)
      assert.equal(tonumber(ctime), math.floor(st.ctime), what)
      assert.equal(st.mode & octal("7777"), st.perm, what)
    end
  end)

  it("times keep their fraction of a second", function()
    put(dir .. "/f", "")
    sh("touch -d @1234567890.25 " .. shq(dir .. "/f"))
    local st = fio.stat(dir .. "/f")
    assert.equal(1234567890.25, st.mtime)
    assert.equal(1234567890.25, st.atime)
  end)

  it("type names the kind: file, directory, link, fifo, char", function()
    put(dir .. "/f", "")
    sh("mkfifo " .. shq(dir .. "/p") .. " && ln -s f " .. shq(dir .. "/l"))
    assert.equal("file", fio.stat(dir .. "/f").type)
    assert.equal("directory", fio.stat(dir).type)
    assert.equal("link", fio.lstat(dir .. "/l").type)
    assert.equal("file", fio.stat(dir .. "/l").type)
    assert.equal("fifo", fio.stat(dir .. "/p").type)
    assert.equal("char", fio.stat("/dev/null").type)
    assert.equal("file", fio.lstat(dir .. "/f").type)
  end)

  it("type is 'socket' for a Unix socket", function()
    local sock = dir .. "/s"
    if not os.execute("command -v python3 >/dev/null") then pending("python3 is needed to make a socket") end
    sh("python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' " .. shq(sock))
    assert.equal("socket", fio.stat(sock).type)
  end)

  it("type is 'block' for a block device", function()
    local dev = lines_of("find /dev -maxdepth 1 -type b 2>/dev/null | head -n 1")[1]
    if not dev then pending("no block device in /dev here") end
    assert.equal("block", fio.stat(dev).type)
  end)

  it("stat follows a dangling link to ENOENT; lstat reports the link, size the target's length", function()
    sh("ln -s no/such/target " .. shq(dir .. "/dangling"))
    assert.same(pack(nil, dir .. "/dangling: " .. ENOENT, 2), pack(fio.stat(dir .. "/dangling")))
    local st = assert(fio.lstat(dir .. "/dangling"))
    assert.equal("link", st.type)
    assert.equal(#"no/such/target", st.size)
  end)

  it("a missing path gives io.open's nil, 'path: No such file or directory', 2", function()
    for _, p in ipairs { dir .. "/missing", dir .. "/no/such/dir", "" } do
      local want = pack(io.open(p))
      assert.same(want, pack(fio.stat(p)))
      assert.same(want, pack(fio.lstat(p)))
    end
  end)

  it("a path through a file gives io.open's 'Not a directory'", function()
    put(dir .. "/f", "")
    local want = pack(io.open(dir .. "/f/x"))
    assert.equal(20, want[3])
    assert.same(want, pack(fio.stat(dir .. "/f/x")))
    assert.same(want, pack(fio.lstat(dir .. "/f/x")))
  end)

  it("permission denied gives io.open's nil, 'path: Permission denied', 13", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    local want = pack(io.open(locked .. "/file"))
    assert.same(want, pack(fio.stat(locked .. "/file")))
    assert.same(want, pack(fio.lstat(locked .. "/file")))
  end)

  it("work on names with spaces and non-UTF-8 bytes", function()
    local p = dir .. "/caf\xe9 \xff.txt"
    put(p, "abc")
    assert.equal(3, fio.stat(p).size)
    assert.equal("file", fio.lstat(p).type)
    assert.same(pack(io.open(p .. "x")), pack(fio.stat(p .. "x")))
  end)

  it("raise on a bad argument", function()
    assert.is_false(pcall(fio.stat))
    assert.is_false(pcall(fio.stat, {}))
    assert.is_false(pcall(fio.lstat, nil))
  end)
end)

describe("fio.readdir and fio.scandir", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  local FINDTYPE = { f = "file", d = "directory", l = "link", p = "fifo", s = "socket", c = "char", b = "block" }

  -- What find(1) lists in d: name -> type.
  local function find_entries(d)
    local t = {}
    for _, l in ipairs(lines_of("find " .. shq(d) .. " -mindepth 1 -maxdepth 1 -printf '%y %f\\n'")) do
      t[l:sub(3)] = FINDTYPE[l:sub(1, 1)]
    end
    return t
  end

  it("a finalizer that calls fiberio while readdir builds its list: both answers whole", function()
    -- Building 3,000 entries runs GC steps, whose finalizers call fio.stat
    -- there (a call that cannot yield: it runs in place). Its op and the
    -- readdir's must stay apart (ASan and valgrind watch the memory).
    assert(os.execute("cd " .. shq(dir) .. " && seq 3000 | xargs touch"))
    local out, rc = helper.child(([[
      local fio = require "fiberio"
      collectgarbage("incremental", 10, 1000)
      local stats = 0
      local mt = { __gc = function() if fio.stat(%q).type == "directory" then stats = stats + 1 end end }
      local lists = 0
      for _ = 1, 20 do
        for _ = 1, 200 do setmetatable({}, mt) end
        local t = fio.readdir(%q)
        local seen = {}
        for _, e in ipairs(t) do seen[e.name] = true end
        if #t == 3000 and seen["1"] and seen["3000"] then lists = lists + 1 end
      end
      collectgarbage()
      print(lists, stats > 0)
    ]]):format(dir, dir))
    assert.equal(0, rc, out)
    assert.equal("20\ttrue\n", out)
  end)

  local function build(d)
    sh("mkdir " .. shq(d .. "/sub") .. " " .. shq(d .. "/empty dir") .. " " .. shq(d .. "/.hidden"))
    put(d .. "/file", "x")
    put(d .. "/with space", "")
    put(d .. "/caf\xe9 \xff", "")
    sh("ln -s file " .. shq(d .. "/link") .. " && ln -s nowhere " .. shq(d .. "/dangling")
      .. " && mkfifo " .. shq(d .. "/fifo"))
  end

  it("readdir lists every entry as {name=, type=}, without . and .., as find does", function()
    build(dir)
    local list = assert(fio.readdir(dir))
    local got = {}
    for _, e in ipairs(list) do
      assert.equal("table", type(e))
      assert.is_nil(got[e.name], "listed twice: " .. e.name)
      got[e.name] = e.type
      assert.is_true(e.name ~= "." and e.name ~= "..", "lists " .. e.name)
    end
    assert.same(find_entries(dir), got)
  end)

  it("readdir of an empty directory is an empty table", function()
    assert.same({}, fio.readdir(dir))
  end)

  it("readdir lists 3000 entries with long names, more than one getdents buffer", function()
    sh("cd " .. shq(dir) .. " && for i in $(seq 1 3000); do : > \"entry-$i-" .. ("n"):rep(60) .. "\"; done")
    local list = assert(fio.readdir(dir))
    assert.equal(3000, #list)
    local seen = {}
    for _, e in ipairs(list) do
      assert.equal("file", e.type)
      local i = tonumber(e.name:match("^entry%-(%d+)%-"))
      assert.is_truthy(i, e.name)
      assert.is_nil(seen[i])
      seen[i] = true
    end
  end)

  it("scandir yields the same name, type pairs as readdir", function()
    build(dir)
    local want, got = {}, {}
    for _, e in ipairs(fio.readdir(dir)) do want[e.name] = e.type end
    local it = assert(fio.scandir(dir))
    for name, t in it do
      assert.is_nil(got[name])
      got[name] = t
    end
    assert.same(want, got)
    assert.same(find_entries(dir), got)
    assert.is_nil(it())
  end)

  it("scandir of an empty directory yields nothing", function()
    for _ in assert(fio.scandir(dir)) do error("yielded an entry") end
  end)

  it("a missing directory gives io.open's nil, 'path: No such file or directory', 2", function()
    local p = dir .. "/missing"
    local want = pack(io.open(p))
    assert.same(want, pack(fio.readdir(p)))
    assert.same(want, pack(fio.scandir(p)))
  end)

  it("a file gives nil, 'path: Not a directory', 20", function()
    put(dir .. "/f", "")
    local want = pack(nil, dir .. "/f: Not a directory", 20)
    assert.same(want, pack(fio.readdir(dir .. "/f")))
    assert.same(want, pack(fio.scandir(dir .. "/f")))
  end)

  it("an unreadable directory gives nil, 'path: Permission denied', 13", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    local want = pack(nil, locked .. ": Permission denied", 13)
    assert.same(want, pack(fio.readdir(locked)))
    assert.same(want, pack(fio.scandir(locked)))
  end)
end)

describe("fio.mkdir, fio.mkdirp and fio.rmdir", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("mkdir creates a directory with 0777 less the umask, as mkdir(1) does", function()
    assert.same(pack(true), pack(fio.mkdir(dir .. "/d")))
    sh("mkdir " .. shq(dir .. "/by-shell"))
    assert.equal("directory", fio.stat(dir .. "/d").type)
    assert.equal(perm_of(dir .. "/by-shell"), fio.stat(dir .. "/d").perm)
    assert.equal(octal("777") & ~umask(), fio.stat(dir .. "/d").perm)
  end)

  it("mkdir(path, perm) uses perm (less the umask)", function()
    assert.is_true(fio.mkdir(dir .. "/d", octal("700")))
    assert.equal(octal("700"), perm_of(dir .. "/d"))
    assert.is_true(fio.mkdir(dir .. "/e", octal("750")))
    assert.equal(octal("750") & ~umask(), perm_of(dir .. "/e"))
  end)

  it("mkdir fails with nil, 'path: msg', errno: exists, missing parent, through a file", function()
    put(dir .. "/f", "")
    assert.same(pack(nil, dir .. ": File exists", 17), pack(fio.mkdir(dir)))
    assert.same(pack(nil, dir .. "/f: File exists", 17), pack(fio.mkdir(dir .. "/f")))
    assert.same(pack(nil, dir .. "/a/b: " .. ENOENT, 2), pack(fio.mkdir(dir .. "/a/b")))
    assert.same(pack(nil, dir .. "/f/x: Not a directory", 20), pack(fio.mkdir(dir .. "/f/x")))
  end)

  it("mkdir in an unwritable directory fails as io.open(path, 'w') does", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    local want = pack(io.open(locked .. "/new", "w"))
    assert.same(want, pack(fio.mkdir(locked .. "/new")))
  end)

  it("mkdir raises on an invalid mode", function()
    assert.is_false(pcall(fio.mkdir, dir .. "/d", -1))
    assert.is_false(pcall(fio.mkdir, dir .. "/d", octal("10000")))
    assert.is_false(pcall(fio.mkdir, dir .. "/d", "rwx"))
    assert.is_false(pcall(fio.mkdir))
    assert.is_false(exists(dir .. "/d"))
  end)

  it("mkdirp creates every missing parent and returns true", function()
    assert.same(pack(true), pack(fio.mkdirp(dir .. "/a/b/c/d")))
    assert.equal("directory", fio.stat(dir .. "/a/b/c/d").type)
    assert.same(pack(true), pack(fio.mkdirp(dir .. "/a/b/c/d")))
    assert.same(pack(true), pack(fio.mkdirp(dir .. "/a/x")))
    assert.same(pack(true), pack(fio.mkdirp(dir)))
    assert.same(pack(true), pack(fio.mkdirp("/")))
  end)

  it("mkdirp takes trailing and repeated slashes and names with spaces", function()
    assert.is_true(fio.mkdirp(dir .. "/p//q/"))
    assert.equal("directory", fio.stat(dir .. "/p/q").type)
    assert.is_true(fio.mkdirp(dir .. "/with space/caf\xe9 \xff/x"))
    assert.equal("directory", fio.stat(dir .. "/with space/caf\xe9 \xff/x").type)
  end)

  it("mkdirp(path, perm) gives each new directory perm", function()
    assert.is_true(fio.mkdirp(dir .. "/a/b", octal("700")))
    assert.equal(octal("700"), perm_of(dir .. "/a"))
    assert.equal(octal("700"), perm_of(dir .. "/a/b"))
  end)

  it("mkdirp over a file fails with 'File exists', through a file with 'Not a directory'", function()
    put(dir .. "/f", "")
    assert.same(pack(nil, dir .. "/f: File exists", 17), pack(fio.mkdirp(dir .. "/f")))
    local r = pack(fio.mkdirp(dir .. "/f/g/h"))
    assert.is_nil(r[1])
    assert.matches(": Not a directory$", r[2])
    assert.equal(20, r[3])
    assert.equal("", get(dir .. "/f"))
  end)

  it("rmdir removes an empty directory", function()
    sh("mkdir " .. shq(dir .. "/d"))
    assert.same(pack(true), pack(fio.rmdir(dir .. "/d")))
    assert.is_false(exists(dir .. "/d"))
  end)

  it("rmdir of a non-empty or missing directory fails as os.remove does", function()
    sh("mkdir " .. shq(dir .. "/d"))
    put(dir .. "/d/f", "")
    local want = pack(os.remove(dir .. "/d"))
    assert.equal(39, want[3])
    assert.same(want, pack(fio.rmdir(dir .. "/d")))
    want = pack(os.remove(dir .. "/missing"))
    assert.same(want, pack(fio.rmdir(dir .. "/missing")))
    assert.is_true(exists(dir .. "/d/f"))
  end)

  it("rmdir of a file fails with nil, 'path: Not a directory', 20 and keeps it", function()
    put(dir .. "/f", "x")
    assert.same(pack(nil, dir .. "/f: Not a directory", 20), pack(fio.rmdir(dir .. "/f")))
    assert.equal("x", get(dir .. "/f"))
  end)

  it("rmdir in a locked directory fails as os.remove does", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    assert.same(pack(os.remove(locked .. "/sub")), pack(fio.rmdir(locked .. "/sub")))
  end)
end)

describe("fio.unlink", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("removes a file and returns true", function()
    put(dir .. "/f", "x")
    assert.same(pack(true), pack(fio.unlink(dir .. "/f")))
    assert.is_false(exists(dir .. "/f"))
  end)

  it("removes a symlink, not its target", function()
    put(dir .. "/f", "x")
    sh("ln -s f " .. shq(dir .. "/l"))
    assert.is_true(fio.unlink(dir .. "/l"))
    assert.is_false(exists(dir .. "/l"))
    assert.equal("x", get(dir .. "/f"))
  end)

  it("a missing file fails as os.remove does", function()
    for _, p in ipairs { dir .. "/missing", dir .. "/no/dir/f", "" } do
      assert.same(pack(os.remove(p)), pack(fio.unlink(p)))
    end
  end)

  it("a directory is refused with nil, 'path: Is a directory', 21, as unlink(2)", function()
    sh("mkdir " .. shq(dir .. "/d"))
    assert.same(pack(nil, dir .. "/d: Is a directory", 21), pack(fio.unlink(dir .. "/d")))
    assert.is_true(exists(dir .. "/d"))
  end)

  it("a file in a locked directory fails as os.remove does", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    assert.same(pack(os.remove(locked .. "/file")), pack(fio.unlink(locked .. "/file")))
  end)

  it("an open handle still reads the unlinked file", function()
    put(dir .. "/f", "still here")
    local f = assert(fio.open(dir .. "/f"))
    assert.is_true(fio.unlink(dir .. "/f"))
    assert.equal("still here", f:read("a"))
    f:close()
  end)

  it("removes names with spaces and non-UTF-8 bytes", function()
    local p = dir .. "/caf\xe9 \xff.txt"
    put(p, "")
    assert.is_true(fio.unlink(p))
    assert.is_false(exists(p))
  end)
end)

describe("fio.rename", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("moves a file and returns true", function()
    put(dir .. "/a", "content")
    assert.same(pack(true), pack(fio.rename(dir .. "/a", dir .. "/b")))
    assert.is_false(exists(dir .. "/a"))
    assert.equal("content", get(dir .. "/b"))
  end)

  it("replaces an existing file", function()
    put(dir .. "/a", "new")
    put(dir .. "/b", "old and longer")
    assert.is_true(fio.rename(dir .. "/a", dir .. "/b"))
    assert.equal("new", get(dir .. "/b"))
  end)

  it("moves a directory with its contents, and names with spaces and non-UTF-8 bytes", function()
    sh("mkdir -p " .. shq(dir .. "/d/sub"))
    put(dir .. "/d/sub/f", "x")
    assert.is_true(fio.rename(dir .. "/d", dir .. "/caf\xe9 \xff dir"))
    assert.equal("x", get(dir .. "/caf\xe9 \xff dir/sub/f"))
  end)

  -- Each case: a setup, then the two paths. os.rename runs first; as it
  -- fails, nothing changes before fio.rename runs the same case.
  local cases = {
    { "a missing source", function() end, "missing", "x" },
    { "a missing destination directory", function(d) put(d .. "/a", "") end, "a", "no/such/b" },
    { "a directory onto a non-empty directory", function(d)
        sh("mkdir -p " .. shq(d .. "/d1") .. " " .. shq(d .. "/d2/x"))
      end, "d1", "d2" },
    { "a file onto a directory", function(d)
        put(d .. "/a", "")
        sh("mkdir " .. shq(d .. "/d"))
      end, "a", "d" },
    { "a directory onto a file", function(d)
        put(d .. "/a", "")
        sh("mkdir " .. shq(d .. "/d"))
      end, "d", "a" },
    { "a directory into itself", function(d) sh("mkdir -p " .. shq(d .. "/d/sub")) end, "d", "d/sub/d" },
    { "a path through a file", function(d) put(d .. "/f", "") end, "f/x", "y" },
  }
  for _, c in ipairs(cases) do
    it("fails as os.rename does, with no path in the message: " .. c[1], function()
      c[2](dir)
      local a, b = dir .. "/" .. c[3], dir .. "/" .. c[4]
      local want = pack(os.rename(a, b))
      assert.is_nil(want[1])
      assert.same(want, pack(fio.rename(a, b)))
    end)
  end

  it("fails as os.rename does in a locked directory", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    local want = pack(os.rename(locked .. "/file", dir .. "/out"))
    assert.same(want, pack(fio.rename(locked .. "/file", dir .. "/out")))
  end)

  it("raises on bad arguments", function()
    assert.is_false(pcall(fio.rename, dir .. "/a"))
    assert.is_false(pcall(fio.rename, nil, dir .. "/a"))
  end)
end)

describe("fio.link, fio.symlink and fio.readlink", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("link makes a hard link: the same inode, two links", function()
    put(dir .. "/f", "shared")
    assert.same(pack(true), pack(fio.link(dir .. "/f", dir .. "/h")))
    local a, b = fio.stat(dir .. "/f"), fio.stat(dir .. "/h")
    assert.equal(a.ino, b.ino)
    assert.equal(2, b.nlink)
    assert.equal("shared", get(dir .. "/h"))
  end)

  it("link fails with nil, msg, errno: missing source, existing destination, a directory", function()
    put(dir .. "/f", "")
    put(dir .. "/g", "")
    sh("mkdir " .. shq(dir .. "/d"))
    assert.same(pack(nil, dir .. "/missing: " .. ENOENT, 2), pack(fio.link(dir .. "/missing", dir .. "/h")))
    local r = pack(fio.link(dir .. "/f", dir .. "/g"))
    assert.is_nil(r[1])
    assert.matches(": File exists$", r[2])
    assert.equal(17, r[3])
    r = pack(fio.link(dir .. "/d", dir .. "/dl"))
    assert.is_nil(r[1])
    assert.matches(": Operation not permitted$", r[2])
    assert.equal(1, r[3])
  end)

  it("symlink(target, linkpath) makes a link whose readlink is target, verbatim", function()
    put(dir .. "/f", "x")
    local targets = { "f", dir .. "/f", "../" .. dir:match("[^/]+$") .. "/f", "no/such/target",
      "with space", "caf\xe9 \xff", ("t"):rep(1000), ("s/"):rep(2047) .. "x",
      ("u"):rep(255), ("v"):rep(256), ("w"):rep(257) } -- (a first read takes 256)
    for i, t in ipairs(targets) do
      local l = dir .. "/l" .. i
      assert.same(pack(true), pack(fio.symlink(t, l)))
      assert.equal("link", fio.lstat(l).type)
      assert.same(pack(t), pack(fio.readlink(l)))
      assert.equal(t, lines_of("readlink " .. shq(l))[1])
    end
    assert.equal("x", get(dir .. "/l1"))
  end)

  it("symlink onto an existing path fails with nil, 'linkpath: File exists', 17", function()
    put(dir .. "/f", "")
    put(dir .. "/taken", "keep")
    assert.same(pack(nil, dir .. "/taken: File exists", 17), pack(fio.symlink("f", dir .. "/taken")))
    assert.equal("keep", get(dir .. "/taken"))
  end)

  it("symlink into a missing directory fails with nil, 'linkpath: No such file or directory', 2", function()
    local l = dir .. "/no/such/l"
    assert.same(pack(nil, l .. ": " .. ENOENT, 2), pack(fio.symlink("target", l)))
  end)

  it("readlink of a non-link fails with nil, 'path: Invalid argument', 22; of a missing path with ENOENT", function()
    put(dir .. "/f", "")
    assert.same(pack(nil, dir .. "/f: Invalid argument", 22), pack(fio.readlink(dir .. "/f")))
    assert.same(pack(nil, dir .. ": Invalid argument", 22), pack(fio.readlink(dir)))
    assert.same(pack(io.open(dir .. "/missing")), pack(fio.readlink(dir .. "/missing")))
  end)

  it("raise on bad arguments", function()
    assert.is_false(pcall(fio.symlink, "t"))
    assert.is_false(pcall(fio.link, dir .. "/f"))
    assert.is_false(pcall(fio.readlink))
  end)
end)

describe("fio.access and fio.chmod", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("access(path) is true when the path exists; letters r, w, x test those rights", function()
    put(dir .. "/f", "")
    sh("chmod 755 " .. shq(dir .. "/f"))
    assert.same(pack(true), pack(fio.access(dir .. "/f")))
    for _, m in ipairs { "", "r", "w", "x", "rw", "rx", "rwx", "xwr" } do
      assert.same(pack(true), pack(fio.access(dir .. "/f", m)), m)
    end
    assert.same(pack(true), pack(fio.access(dir, "rwx")))
  end)

  it("access(path, 'x') on a file without any x bit fails with 'Permission denied', 13", function()
    put(dir .. "/f", "")
    sh("chmod 644 " .. shq(dir .. "/f"))
    assert.same(pack(nil, dir .. "/f: Permission denied", 13), pack(fio.access(dir .. "/f", "x")))
    assert.same(pack(nil, dir .. "/f: Permission denied", 13), pack(fio.access(dir .. "/f", "rx")))
  end)

  it("access of a missing path gives io.open's nil, 'path: No such file or directory', 2", function()
    assert.same(pack(io.open(dir .. "/missing")), pack(fio.access(dir .. "/missing")))
    assert.same(pack(io.open(dir .. "/missing")), pack(fio.access(dir .. "/missing", "r")))
  end)

  it("access in a locked directory fails with 'Permission denied', 13", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    assert.same(pack(nil, locked .. "/file: Permission denied", 13), pack(fio.access(locked .. "/file")))
  end)

  it("access raises on letters other than r, w, x", function()
    put(dir .. "/f", "")
    assert.is_false(pcall(fio.access, dir .. "/f", "q"))
    assert.is_false(pcall(fio.access, dir .. "/f", "rwxa"))
  end)

  it("chmod sets the permission bits, setuid, setgid and sticky included, and returns true", function()
    put(dir .. "/f", "")
    for _, m in ipairs { "600", "755", "0", "4755", "2750", "1777", "7777" } do
      assert.same(pack(true), pack(fio.chmod(dir .. "/f", octal(m))), m)
      assert.equal(octal(m), perm_of(dir .. "/f"), m)
      assert.equal(octal(m), fio.stat(dir .. "/f").perm, m)
    end
  end)

  it("chmod follows a symlink to its target", function()
    put(dir .. "/f", "")
    sh("chmod 644 " .. shq(dir .. "/f") .. " && ln -s f " .. shq(dir .. "/l"))
    assert.is_true(fio.chmod(dir .. "/l", octal("600")))
    assert.equal(octal("600"), perm_of(dir .. "/f"))
  end)

  it("chmod of a missing path gives io.open's nil, 'path: No such file or directory', 2", function()
    assert.same(pack(io.open(dir .. "/missing")), pack(fio.chmod(dir .. "/missing", octal("644"))))
  end)

  it("chmod raises without a mode or with an invalid one", function()
    put(dir .. "/f", "")
    assert.is_false(pcall(fio.chmod, dir .. "/f"))
    assert.is_false(pcall(fio.chmod, dir .. "/f", -1))
    assert.is_false(pcall(fio.chmod, dir .. "/f", octal("10000")))
    assert.is_false(pcall(fio.chmod, dir .. "/f", "rw"))
  end)
end)

describe("permission arguments (open, writefile, mkdir, mkdirp, chmod)", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  -- Each call that takes a perm, making or changing dir .. "/" .. name;
  -- whether the umask applies.
  local calls = {
    { "open", function(p, perm) return assert(fio.open(p, "w", perm)):close() end, true },
    { "writefile", function(p, perm) return fio.writefile(p, "x", perm) end, true },
    { "mkdir", function(p, perm) return fio.mkdir(p, perm) end, true },
    { "mkdirp", function(p, perm) return fio.mkdirp(p, perm) end, true },
    { "chmod", function(p, perm) put(p, "") return fio.chmod(p, perm) end, false },
  }

  it("an octal string (\"0755\", \"755\", \"0640\") is read as octal by every call, as an integer is", function()
    local mask = umask()
    for _, c in ipairs(calls) do
      for i, perm in ipairs { "0755", "755", "0640", "00600", octal("750"), 0x1ed } do
        local p = dir .. "/" .. c[1] .. i
        assert.is_truthy(c[2](p, perm), c[1])
        local want = type(perm) == "string" and octal(perm) or perm
        if c[3] then want = want & ~mask end
        assert.equal(want, fio.stat(p).perm, c[1] .. " " .. perm)
        assert.equal(want, perm_of(p), c[1] .. " " .. perm)
      end
    end
    put(dir .. "/s", "")
    for _, m in ipairs { "4755", "2750", "1777", "7777", "0" } do
      assert.is_true(fio.chmod(dir .. "/s", m))
      assert.equal(octal(m), perm_of(dir .. "/s"), m)
    end
  end)

  -- The error fn(...) raises when called from a line of this file, and that
  -- line.
  local function raised(fn, ...)
    local args, line = pack(...), nil
    local ok, err = pcall(function()
      line = debug.getinfo(1, "l").currentline fn(table.unpack(args, 1, args.n))
    end)
    assert.is_false(ok, "did not raise")
    return tostring(err), line
  end

  it("anything else raises a bad-argument error at the caller's line and makes nothing", function()
    local bad = { "0855", "rwxr-xr-x", "", "0x1ed", " 755", "755 ", "010000", "12345",
                  -1, octal("10000"), 493.5, true, {} }
    local cases = { -- name, the perm's position, the call, its argument before perm
      { "open", 3, fio.open, "w" },
      { "writefile", 3, fio.writefile, "x" },
      { "mkdir", 2, fio.mkdir },
      { "chmod", 2, fio.chmod },
    }
    put(dir .. "/keep", "")
    sh("chmod 600 " .. shq(dir .. "/keep"))
    for _, c in ipairs(cases) do
      for _, perm in ipairs(bad) do
        local p = c[1] == "chmod" and dir .. "/keep" or dir .. "/new"
        local err, line
        if c[4] then err, line = raised(c[3], p, c[4], perm) else err, line = raised(c[3], p, perm) end
        local where = "fs_spec.lua:" .. line .. ": bad argument #" .. c[2] .. " to '"
        assert.is_truthy(err:find(where, 1, true), c[1] .. " " .. tostring(perm) .. ": " .. err)
        assert.is_truthy(err:find("permission", 1, true), err)
        assert.is_false(exists(dir .. "/new"), c[1] .. " " .. tostring(perm))
      end
    end
    assert.equal(octal("600"), perm_of(dir .. "/keep"))
    local err = raised(fio.open, dir .. "/new", "w", "0855")
    assert.is_truthy(err:find('octal string such as "0644"', 1, true), err)
    err = raised(fio.chmod, dir .. "/keep", octal("10000"))
    assert.is_truthy(err:find("07777", 1, true), err)
  end)
end)

describe("fio.truncate and fio.realpath", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("truncate(path, n) shrinks or extends with zero bytes; without n to 0; returns true", function()
    put(dir .. "/f", "0123456789")
    assert.same(pack(true), pack(fio.truncate(dir .. "/f", 4)))
    assert.equal("0123", get(dir .. "/f"))
    assert.same(pack(true), pack(fio.truncate(dir .. "/f", 6)))
    assert.equal("0123\0\0", get(dir .. "/f"))
    assert.same(pack(true), pack(fio.truncate(dir .. "/f")))
    assert.equal("", get(dir .. "/f"))
  end)

  it("truncate to 3 GiB makes a sparse file of that size", function()
    put(dir .. "/f", "")
    local G3 = 3 * 1024 * 1024 * 1024
    assert.is_true(fio.truncate(dir .. "/f", G3))
    assert.equal(G3, fio.stat(dir .. "/f").size)
    assert.equal(tostring(G3), lines_of("stat -c %s " .. shq(dir .. "/f"))[1])
  end)

  it("truncate fails with nil, 'path: msg', errno on a missing file and on a directory", function()
    assert.same(pack(io.open(dir .. "/missing")), pack(fio.truncate(dir .. "/missing", 1)))
    assert.same(pack(io.open(dir, "w")), pack(fio.truncate(dir, 1)))
    assert.is_false(exists(dir .. "/missing"))
  end)

  it("truncate raises on a negative size", function()
    put(dir .. "/f", "abc")
    assert.is_false(pcall(fio.truncate, dir .. "/f", -1))
    assert.equal("abc", get(dir .. "/f"))
  end)

  it("realpath resolves ., .., repeated slashes and symlinks as realpath(1)", function()
    sh("mkdir -p " .. shq(dir .. "/a/b") .. " && ln -s a/b " .. shq(dir .. "/lb")
      .. " && ln -s " .. shq(dir .. "/a") .. " " .. shq(dir .. "/abs"))
    put(dir .. "/a/b/f", "")
    for _, p in ipairs { dir, dir .. "/a/./b/../b//f", dir .. "/lb/f", dir .. "/abs/b/", dir .. "/lb/.." } do
      assert.same(pack(lines_of("realpath " .. shq(p))[1]), pack(fio.realpath(p)), p)
    end
    assert.equal(lines_of("pwd -P")[1], fio.realpath("."))
  end)

  it("realpath fails with nil, 'path: msg', errno: missing, and a loop of symlinks", function()
    assert.same(pack(io.open(dir .. "/missing")), pack(fio.realpath(dir .. "/missing")))
    sh("ln -s l2 " .. shq(dir .. "/l1") .. " && ln -s l1 " .. shq(dir .. "/l2"))
    assert.same(pack(nil, dir .. "/l1: Too many levels of symbolic links", 40), pack(fio.realpath(dir .. "/l1")))
  end)
end)

describe("fio.mkdtemp", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("without a template makes a new empty directory, mode 0700, a different one each call", function()
    local a = assert(fio.mkdtemp())
    local b = assert(fio.mkdtemp())
    assert.are_not.equal(a, b)
    for _, d in ipairs { a, b } do
      assert.equal("directory", fio.stat(d).type)
      assert.equal(octal("700"), fio.stat(d).perm)
      assert.same({}, fio.readdir(d))
      assert.equal((os.getenv("TMPDIR") or "/tmp"):gsub("/$", ""), (d:match("^(.*)/[^/]+$")))
      rmtree(d)
    end
  end)

  it("without a template uses $TMPDIR", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local d = assert(fio.mkdtemp())
      print(d:match("^(.*)/[^/]+$"))
    ]], { unbuffered = true, env = { TMPDIR = dir } })
    assert.equal(dir .. "\n", out)
  end)

  it("fills the XXXXXX of a template and keeps the rest", function()
    local d = assert(fio.mkdtemp(dir .. "/my tmp.XXXXXX"))
    assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/my tmp%.%w%w%w%w%w%w$", d)
    assert.are_not.equal(dir .. "/my tmp.XXXXXX", d)
    assert.equal("directory", fio.stat(d).type)
    assert.equal(octal("700"), fio.stat(d).perm)
  end)

  it("fails with nil, 'template: No such file or directory', 2 in a missing directory", function()
    local t = dir .. "/no/such/XXXXXX"
    assert.same(pack(nil, t .. ": " .. ENOENT, 2), pack(fio.mkdtemp(t)))
  end)

  it("raises on a template that does not end in XXXXXX", function()
    for _, t in ipairs { dir .. "/x", dir .. "/XXXXX", dir .. "/XXXXXXa", "" } do
      assert.is_false(pcall(fio.mkdtemp, t), t)
    end
    assert.same({}, fio.readdir(dir))
  end)
end)

describe("fio.readfile and fio.writefile", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  local function all_bytes()
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    return table.concat(t)
  end

  it("readfile returns the whole content: empty, binary, 5 MiB", function()
    for _, s in ipairs { "", "x", all_bytes():rep(3), ("0123456789abcdef"):rep(5 * 65536) .. "!" } do
      put(dir .. "/f", s)
      local got = fio.readfile(dir .. "/f")
      assert.equal(#s, #got)
      assert.is_true(s == got)
    end
  end)

  -- Distinct bytes at every offset: a chunk read into the wrong place shows.
  local function numbered(n)
    local t = {}
    for i = 1, n // 8 + 1 do t[i] = ("%7d\n"):format(i) end
    return table.concat(t):sub(1, n)
  end

  it("readfile returns files of every size whole, across the edges of its reads and buffers", function()
    -- (on io_uring: a first read of 56 KiB and a probe of 8 KiB, then a
    -- buffer doubled from 64 KiB)
    for _, n in ipairs { 1, 4095, 4096, 57343, 57344, 57345, 65535, 65536, 65537,
                         98304, 131071, 131072, 131073, 1000003 } do
      local s = numbered(n)
      put(dir .. "/f", s)
      local got = fio.readfile(dir .. "/f")
      assert.equal(n, #got)
      assert.is_true(s == got, "content of a file of " .. n .. " bytes")
    end
  end)

  it("on io_uring, readfile of a small file is done on the loop thread when alone, on the ring when others are, never on the pool", function()
    if fio.backend() ~= "io_uring" then pending("no ring: this run uses " .. fio.backend()) return end
    put(dir .. "/f", "small")
    fio.readfile(dir .. "/f")
    local before = fio._info()
    for _ = 1, 10 do assert.equal("small", fio.readfile(dir .. "/f")) end
    local after = fio._info()
    assert.equal(before.inlined + 10, after.inlined)
    assert.equal(before.ring_readfiles, after.ring_readfiles)
    before = after
    fio.run(function()
      local fs = {}
      for i = 1, 10 do fs[i] = fio.async(fio.readfile, dir .. "/f") end
      for i = 1, 10 do assert.equal("small", fs[i]:await()) end
    end)
    after = fio._info()
    local ring, here = after.ring_readfiles - before.ring_readfiles, after.inlined - before.inlined
    assert.equal(10, ring + here)
    assert.is_true(ring >= 5, ring .. " of 10 on the ring")
    assert.equal(before.pooled, after.pooled)
  end)

  it("readfile of a FIFO reads what a writer sends, in pieces, up to its close, whoever opens first", function()
    sh("mkfifo " .. shq(dir .. "/p"))
    -- Ten rounds, the writer (fio.open) or the reader first: each open may
    -- first be tried without blocking, and neither side may meet a FIFO
    -- the other has left meanwhile (an early EOF, or EPIPE: SIGPIPE).
    local out = helper.child(([[
      local fio = require "fiberio"
      local p = %q
      local function writer()
        local f = assert(fio.open(p, "w"))
        for i = 1, 4 do
          assert(f:write(("piece %%d\n"):format(i)))
          assert(f:flush())
          fio.sleep(0.005)
        end
        assert(f:close())
      end
      for round = 1, 10 do
        io.write(fio.run(function()
          local w, s, err
          if round %% 2 == 1 then
            w = fio.async(writer)
            s, err = fio.readfile(p)
          else
            local r = fio.async(fio.readfile, p)
            fio.sleep(0.005)
            writer()
            s, err = r:await()
          end
          if w then w:await() end
          return s or err
        end))
      end
    ]]):format(dir .. "/p"), CHILD)
    assert.equal(("piece 1\npiece 2\npiece 3\npiece 4\n"):rep(10), out)
  end)

  it("readfile canceled while it waits for a FIFO's writer, or for its data, raises Canceled; later readfiles are whole", function()
    sh("mkfifo " .. shq(dir .. "/p"))
    put(dir .. "/f", numbered(70000))
    -- FIBERIO_TEST_RF_SLOTS=2 (io_uring): the rounds use every slot of the
    -- ring's file table more than once, so one not given back shows as a
    -- readfile sent to the pool.
    local out = helper.child(([[
      local fio = require "fiberio"
      local p, f = %q, %q
      local function try(what, setup)
        local rf = fio.async(function() return fio.readfile(p) end)
        fio.sleep(0.02)
        local held = setup and setup()
        fio.sleep(0.02)
        local a, b = fio.cancel(rf)
        print(what, rf:done(), a, rawequal(b, fio.Canceled))
        if held then held:close() end
      end
      fio.run(function()
        for _ = 1, 3 do try("no writer") end
        -- a writer that holds the FIFO open and sends nothing: the read waits
        for _ = 1, 3 do try("no data", function() return assert(io.open(p, "w")) end) end
        local pooled = fio._info().pooled
        local s = fio.readfile(f)
        print(#s, s == io.open(f):read("a"), fio.backend() ~= "io_uring" or fio._info().pooled == pooled)
      end)
    ]]):format(dir .. "/p", dir .. "/f"), { unbuffered = true, env = { FIBERIO_TEST_RF_SLOTS = 2 } })
    assert.equal(("no writer\ttrue\tnil\ttrue\n"):rep(3) .. ("no data\ttrue\tnil\ttrue\n"):rep(3)
                 .. "70000\ttrue\ttrue\n", out)
  end)

  it("readfile returns the bytes of files that are not in the page cache", function()
    -- (on io_uring the first reads, RWF_NOWAIT, then find nothing ready and
    -- the later ones get the data in pieces)
    local n = 30
    for i = 1, n do put(dir .. "/" .. i, numbered(150000 + i)) end
    local dropped = os.execute("sync; for i in $(seq 1 " .. n .. "); do dd if=" .. shq(dir)
                               .. "/$i iflag=nocache count=0 status=none || exit 1; done")
    if not dropped then pending("dd iflag=nocache (to drop the files from the page cache) failed here") return end
    local got = fio.run(function()
      local fs = {}
      for i = 1, n do fs[i] = fio.async(fio.readfile, dir .. "/" .. i) end
      local t = {}
      for i = 1, n do t[i] = fs[i]:await() end
      return t
    end)
    for i = 1, n do assert.is_true(got[i] == numbered(150000 + i), "file " .. i) end
  end)

  it("readfile canceled between the steps of a long read raises Canceled, and the loop goes on", function()
    put(dir .. "/big", numbered(4 * 1024 * 1024))
    local out = helper.child(([[
      local fio = require "fiberio"
      local p = %q
      fio.run(function()
        for round = 1, 12 do
          local rf = fio.async(fio.readfile, p)
          for _ = 1, round %% 4 do fio.yield() end
          local a, b = fio.cancel(rf)
          io.write(tostring(a == nil and rawequal(b, fio.Canceled) or #a), " ")
        end
        print(#fio.readfile(p))
      end)
    ]]):format(dir .. "/big"), CHILD)
    -- each round: canceled (true), or done before the cancel (its length)
    assert.matches("^[%w ]+\n$", out)
    local words = {}
    for w in out:gmatch("%S+") do
      assert.is_true(w == "true" or w == "4194304", out)
      words[#words + 1] = w
    end
    assert.matches("4194304\n$", out)
    -- a cancel after 1 to 3 yields comes after the readfile started: some
    -- of those must land (a cancel that never does would pass the rest)
    local landed = 0
    for round = 1, 12 do
      if round % 4 ~= 0 and words[round] == "true" then landed = landed + 1 end
    end
    assert.is_true(landed >= 1, out)
  end)

  it("readfile works on a ring too small for its linked chain (ring_entries 1 and 2)", function()
    put(dir .. "/f", numbered(100000))
    -- A step of the ring's readfile is 3 linked SQEs, which must go to the
    -- kernel together: on a smaller ring it takes the pool instead of
    -- waiting for ever for room.
    for _, n in ipairs { 1, 2 } do
      local out = helper.child(([[
        local fio = require "fiberio"
        fio.config { ring_entries = %d }
        fio.run(function()
          local s = fio.readfile(%q)
          print(#s, s == io.open(%q):read("a"))
        end)
      ]]):format(n, dir .. "/f", dir .. "/f"), CHILD)
      assert.equal("100000\ttrue\n", out)
    end
  end)

  it("readfile of a FIFO, again and again, each time with a new writer, reads each writer's data", function()
    sh("mkfifo " .. shq(dir .. "/p"))
    -- The file is closed before readfile returns: a writer started next
    -- must not find the last reader still there and write into it.
    local out = helper.child(([[
      local fio = require "fiberio"
      local p = %q
      fio.run(function()
        for round = 1, 20 do
          os.execute("printf 'round %%d;' " .. round .. " > '" .. p .. "' &")
          io.write(assert(fio.readfile(p)))
        end
      end)
      print()
    ]]):format(dir .. "/p"), CHILD)
    local want = {}
    for round = 1, 20 do want[round] = "round " .. round .. ";" end
    assert.equal(table.concat(want) .. "\n", out)
  end)

  it("readfile reads a /proc file that stat says is empty, as io's read('a')", function()
    local f = assert(io.open("/proc/version"))
    local want = f:read("a")
    f:close()
    assert.equal(0, fio.stat("/proc/version").size)
    assert.equal(want, fio.readfile("/proc/version"))
  end)

  it("readfile of a missing file gives io.open's nil, 'path: No such file or directory', 2", function()
    for _, p in ipairs { dir .. "/missing", dir .. "/no/dir/f", "" } do
      assert.same(pack(io.open(p)), pack(fio.readfile(p)))
    end
  end)

  it("readfile of a directory fails with nil, 'path: Is a directory', 21, as io's read does", function()
    local f = assert(io.open(dir))
    local want = pack(f:read("a"))
    f:close()
    assert.same(pack(nil, dir .. ": " .. want[2], want[3]), pack(fio.readfile(dir)))
  end)

  it("readfile of an unreadable file fails as io.open does", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    assert.same(pack(io.open(locked .. "/file")), pack(fio.readfile(locked .. "/file")))
  end)

  it("writefile creates a file with data and returns true", function()
    for i, s in ipairs { "", "x", all_bytes():rep(3), ("z"):rep(20 * 1024 * 1024) } do
      local p = dir .. "/f" .. i
      assert.same(pack(true), pack(fio.writefile(p, s)))
      assert.is_true(get(p) == s)
    end
  end)

  it("writefile replaces a longer file's content", function()
    put(dir .. "/f", ("old"):rep(1000))
    assert.is_true(fio.writefile(dir .. "/f", "new"))
    assert.equal("new", get(dir .. "/f"))
  end)

  it("writefile writes a number as io's write formats it", function()
    assert.is_true(fio.writefile(dir .. "/f", 42))
    assert.equal("42", get(dir .. "/f"))
  end)

  it("writefile's perm sets a new file's mode (less the umask); an existing file keeps its own", function()
    assert.is_true(fio.writefile(dir .. "/f", "x", octal("600")))
    assert.equal(octal("600"), perm_of(dir .. "/f"))
    assert.is_true(fio.writefile(dir .. "/g", "x"))
    assert.equal(octal("666") & ~umask(), perm_of(dir .. "/g"))
    assert.is_true(fio.writefile(dir .. "/f", "y", octal("644")))
    assert.equal(octal("600"), perm_of(dir .. "/f"))
  end)

  it("writefile fails as io.open(path, 'w') does: missing directory, a directory", function()
    for _, p in ipairs { dir .. "/no/dir/f", dir, "" } do
      assert.same(pack(io.open(p, "w")), pack(fio.writefile(p, "x")))
    end
  end)

  it("writefile in a locked directory fails as io.open(path, 'w') does", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    assert.same(pack(io.open(locked .. "/new", "w")), pack(fio.writefile(locked .. "/new", "x")))
  end)

  -- 3 MiB of numbered 16-byte lines: any piece at a wrong offset shows.
  local function numbered_mib(mib)
    local t = {}
    for i = 1, mib * 65536 do t[i] = ("%015d\n"):format(i) end
    return table.concat(t)
  end

  it("writefile into a full file system returns nil, 'path: No space left on device', 28; the file holds a prefix of the data", function()
    -- (io_uring once returned true here, the file position left behind by
    -- a short ring write: the last MiB written over offset 0)
    local mnt = dir .. "/mnt"
    sh("mkdir " .. shq(mnt))
    if not os.execute("mount -t tmpfs -o size=1m tmpfs " .. shq(mnt) .. " 2>/dev/null") then
      pending("mount -t tmpfs is refused here (not root, or no CAP_SYS_ADMIN)")
      return
    end
    finally(function() helper.umount(mnt) end)
    local data = numbered_mib(3)
    local p = mnt .. "/f"
    assert.same(pack(nil, p .. ": No space left on device", 28), pack(fio.writefile(p, data)))
    local got = assert(get(p))
    assert.is_true(#got < #data)
    assert.is_true(got == data:sub(1, #got), "the file is not a prefix of the data")
    -- and once more, over the full file's own content, from a fiber
    local r = fio.run(function() return pack(fio.writefile(p, data)) end)
    assert.same(pack(nil, p .. ": No space left on device", 28), r)
    got = assert(get(p))
    assert.is_true(got == data:sub(1, #got), "the file is not a prefix of the data")
  end)

  it("writefile to a FIFO, taken by its reader in pieces, writes everything in order", function()
    local data = numbered(3)
    sh("mkfifo " .. shq(dir .. "/fifo"))
    local got, res = fio.run(function()
      local reader = fio.async(fio.readfile, dir .. "/fifo")
      local r = pack(fio.writefile(dir .. "/fifo", data))
      local s = fio.timeout(helper.bound(5), function() return reader:await() end)
      if not s then reader:cancel() end
      return s, r
    end)
    assert.same(pack(true), res)
    assert.equal(#data, #got)
    assert.is_true(got == data, "the reader got the data out of order")
  end)

  it("raise on bad arguments", function()
    assert.is_false(pcall(fio.readfile))
    assert.is_false(pcall(fio.writefile, dir .. "/f"))
    assert.is_false(pcall(fio.writefile, dir .. "/f", {}))
    assert.is_false(pcall(fio.writefile, dir .. "/f", "x", -1))
    assert.is_false(exists(dir .. "/f"))
  end)
end)

describe("fio.copyfile", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("copies a 20 MiB file byte for byte and returns true", function()
    sh("head -c 20971520 /dev/urandom > " .. shq(dir .. "/src"))
    assert.same(pack(true), pack(fio.copyfile(dir .. "/src", dir .. "/dst")))
    assert.is_true(os.execute("cmp -s " .. shq(dir .. "/src") .. " " .. shq(dir .. "/dst")) == true,
      "the copy differs from the source")
  end)

  it("copies an empty file and a small binary one", function()
    put(dir .. "/e", "")
    assert.is_true(fio.copyfile(dir .. "/e", dir .. "/e2"))
    assert.equal("", get(dir .. "/e2"))
    put(dir .. "/b", "\0\1\255\n")
    assert.is_true(fio.copyfile(dir .. "/b", dir .. "/b2"))
    assert.equal("\0\1\255\n", get(dir .. "/b2"))
  end)

  it("copies a /proc file that stat says is empty", function()
    assert.is_true(fio.copyfile("/proc/version", dir .. "/v"))
    assert.equal(get("/proc/version"), get(dir .. "/v"))
  end)

  it("gives a new dst the source's permission bits", function()
    for _, m in ipairs { "640", "755", "600", "700" } do
      put(dir .. "/s" .. m, m)
      sh("chmod " .. m .. " " .. shq(dir .. "/s" .. m))
      assert.is_true(fio.copyfile(dir .. "/s" .. m, dir .. "/d" .. m))
      assert.equal(octal(m), perm_of(dir .. "/d" .. m), m)
      assert.equal(m, get(dir .. "/d" .. m))
    end
  end)

  it("replaces an existing dst, which takes the source's content and permission bits", function()
    put(dir .. "/src", "short")
    sh("chmod 750 " .. shq(dir .. "/src"))
    put(dir .. "/dst", ("long old content"):rep(100))
    sh("chmod 600 " .. shq(dir .. "/dst"))
    assert.is_true(fio.copyfile(dir .. "/src", dir .. "/dst"))
    assert.equal("short", get(dir .. "/dst"))
    assert.equal(octal("750"), perm_of(dir .. "/dst"))
  end)

  it("a missing source fails with nil, 'src: No such file or directory', 2 and makes no dst", function()
    assert.same(pack(io.open(dir .. "/missing")), pack(fio.copyfile(dir .. "/missing", dir .. "/dst")))
    assert.is_false(exists(dir .. "/dst"))
  end)

  it("a directory as source fails with nil, 'src: Is a directory', 21 and makes no dst", function()
    sh("mkdir " .. shq(dir .. "/d"))
    assert.same(pack(nil, dir .. "/d: Is a directory", 21), pack(fio.copyfile(dir .. "/d", dir .. "/dst")))
    assert.is_false(exists(dir .. "/dst"))
  end)

  it("a dst that cannot be created fails as io.open(dst, 'w') does", function()
    put(dir .. "/src", "x")
    sh("mkdir " .. shq(dir .. "/d"))
    for _, dst in ipairs { dir .. "/no/dir/dst", dir .. "/d" } do
      assert.same(pack(io.open(dst, "w")), pack(fio.copyfile(dir .. "/src", dst)))
    end
    assert.equal("directory", fio.stat(dir .. "/d").type)
    assert.equal("x", get(dir .. "/src"))
  end)

  it("an unreadable source fails as io.open does and makes no dst", function()
    local locked, why = locked_dir(dir)
    if why then pending(why) end
    assert.same(pack(io.open(locked .. "/file")), pack(fio.copyfile(locked .. "/file", dir .. "/dst")))
    assert.is_false(exists(dir .. "/dst"))
  end)

  it("a copy that fails part way (file size limit) returns nil, 'dst: File too large', 27 and removes dst", function()
    sh("head -c 4194304 /dev/urandom > " .. shq(dir .. "/src"))
    local out = helper.child(([[
      local fio = require "fiberio"
      print(fio.copyfile(%q, %q))
    ]]):format(dir .. "/src", dir .. "/dst"), { unbuffered = true, prefix = "trap '' XFSZ; ulimit -f 1024; " })
    assert.equal(("nil\t%s/dst: File too large\t27\n"):format(dir), out)
    assert.is_false(exists(dir .. "/dst"))
    assert.equal(4194304, fio.stat(dir .. "/src").size)
  end)

  it("copying a file onto itself leaves it intact", function()
    put(dir .. "/f", "precious")
    sh("ln -s f " .. shq(dir .. "/l") .. " && ln " .. shq(dir .. "/f") .. " " .. shq(dir .. "/h"))
    for _, dst in ipairs { dir .. "/f", dir .. "/l", dir .. "/h", dir .. "/../" .. dir:match("[^/]+$") .. "/f" } do
      fio.copyfile(dir .. "/f", dst)
      assert.equal("precious", get(dir .. "/f"), dst)
    end
  end)

  it("a dangling symbolic link as dst fails with ENOENT and stays; a loop fails with ELOOP (as cp)", function()
    put(dir .. "/src", "x")
    sh("ln -s nowhere " .. shq(dir .. "/dang") .. " && ln -s l1 " .. shq(dir .. "/l2")
       .. " && ln -s l2 " .. shq(dir .. "/l1"))
    assert.same(pack(nil, dir .. "/dang: No such file or directory", 2), pack(fio.copyfile(dir .. "/src", dir .. "/dang")))
    assert.equal("link", fio.lstat(dir .. "/dang").type)
    assert.is_false(exists(dir .. "/nowhere"))
    local r = pack(fio.copyfile(dir .. "/src", dir .. "/l1"))
    assert.same(pack(nil, dir .. "/l1: Too many levels of symbolic links", 40), r)
    assert.equal("link", fio.lstat(dir .. "/l1").type)
  end)

  it("a file open in this process, as /proc/self/fd/N, is written in place: the open handle reads the copy", function()
    -- (a new file renamed over it would leave the handle on the old one)
    put(dir .. "/src", "the copy")
    put(dir .. "/dst", "the old content, longer")
    local f = assert(fio.open(dir .. "/dst", "r+"))
    assert.is_true(fio.copyfile(dir .. "/src", "/proc/self/fd/" .. f:fd()))
    f:seek("set")
    assert.equal("the copy", f:read("a"))
    f:close()
    assert.equal("the copy", get(dir .. "/dst"))
  end)

  it("a symbolic link as dst stays a link: the file it names takes the copy", function()
    put(dir .. "/src", "new content")
    put(dir .. "/target", "old")
    sh("ln -s target " .. shq(dir .. "/link"))
    assert.is_true(fio.copyfile(dir .. "/src", dir .. "/link"))
    assert.equal("link", fio.lstat(dir .. "/link").type)
    assert.equal("target", fio.readlink(dir .. "/link"))
    assert.equal("new content", get(dir .. "/target"))
    local names = fio.readdir(dir)
    assert.equal(3, #names) -- no temporary left
  end)

  it("a FIFO as dst is written in place, as cp does: its reader gets the content, and it stays a FIFO", function()
    -- (a new file renamed over it would have replaced the node: for a
    -- device such as /dev/null, as root, the device itself)
    put(dir .. "/src", ("fifo data "):rep(1000))
    sh("mkfifo " .. shq(dir .. "/fifo"))
    local got, res = fio.run(function()
      local reader = fio.async(fio.readfile, dir .. "/fifo")
      local r = pack(fio.copyfile(dir .. "/src", dir .. "/fifo"))
      -- (bounded: were the FIFO replaced, no writer would ever come)
      local data = fio.timeout(helper.bound(5), function() return reader:await() end)
      if not data then reader:cancel() end
      return data, r
    end)
    assert.same(pack(true), res)
    assert.equal(("fifo data "):rep(1000), got)
    assert.equal("fifo", fio.lstat(dir .. "/fifo").type)
  end)

  it("a dst with other hard links becomes a new file; the other names keep the old content (as rsync)", function()
    put(dir .. "/src", "new")
    put(dir .. "/dst", "old")
    sh("ln " .. shq(dir .. "/dst") .. " " .. shq(dir .. "/other"))
    assert.is_true(fio.copyfile(dir .. "/src", dir .. "/dst"))
    assert.equal("new", get(dir .. "/dst"))
    assert.equal("old", get(dir .. "/other"))
    assert.equal(1, fio.stat(dir .. "/other").nlink)
  end)

  it("copies to names of 240 and 255 bytes (NAME_MAX), new and replaced, and leaves no temporary", function()
    put(dir .. "/src", "long name")
    for _, n in ipairs { 240, 255 } do
      local dst = dir .. "/" .. ("n"):rep(n)
      assert.same(pack(true), pack(fio.copyfile(dir .. "/src", dst)), n)
      assert.equal("long name", get(dst))
      put(dst, "old")
      assert.same(pack(true), pack(fio.copyfile(dir .. "/src", dst)), n)
      assert.equal("long name", get(dst))
    end
    assert.equal(3, #fio.readdir(dir))
  end)

  it("a temporary name left by another copy is stepped over, not reused", function()
    -- (the temporary is made with O_EXCL: a name taken is tried again)
    put(dir .. "/src", "new")
    put(dir .. "/dst", "old")
    local out = helper.child(([[
      local fio = require "fiberio"
      local pid = io.open("/proc/self/stat"):read("l"):match("^%%d+")
      for i = 0, 9 do
        local f = io.open(%q .. "/.fio-" .. pid .. "-" .. i .. ".tmp", "w")
        f:write("stale") f:close()
      end
      print(fio.copyfile(%q, %q))
    ]]):format(dir, dir .. "/src", dir .. "/dst"), CHILD)
    assert.equal("true\n", out)
    assert.equal("new", get(dir .. "/dst"))
    assert.equal(12, #fio.readdir(dir))
  end)

  -- Run code in a child lua5.4 as the user nobody: its output and exit
  -- code, or nil and why it cannot run here (for pending). dir is opened
  -- to others so that nobody reaches the files the spec made in it.
  local function as_nobody(code)
    if lines_of("id -u")[1] ~= "0" then return nil, "not root: cannot run a child as another user" end
    if not os.execute("setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null") then
      return nil, "setpriv cannot switch to the user nobody here"
    end
    local file = dir .. "/child.lua"
    sh("chmod 755 " .. shq(dir))
    local out, rc = helper.child(code, {
      file = file, prefix = "chmod 644 " .. shq(file) .. " && ",
      wrapper = "setpriv --reuid=65534 --regid=65534 --clear-groups",
    })
    return out, rc
  end

  it("onto a writable file in a directory it cannot write, copies in place (as cp does); a new dst there is refused", function()
    local ro = dir .. "/ro"
    sh("mkdir " .. shq(ro) .. " && chmod 755 " .. shq(ro))
    put(dir .. "/src", "new content")
    put(ro .. "/dst", ("the old content, longer"):rep(10))
    sh("chmod 644 " .. shq(dir .. "/src") .. " && chmod 666 " .. shq(ro .. "/dst"))
    put(ro .. "/theirs", "not writable")
    local ino = fio.stat(ro .. "/dst").ino
    local out, why = as_nobody(([[
      local fio = require "fiberio"
      print(fio.copyfile(%q, %q))
      print(fio.copyfile(%q, %q))
      print(fio.copyfile(%q, %q))
    ]]):format(dir .. "/src", ro .. "/dst", dir .. "/src", ro .. "/new", dir .. "/src", ro .. "/theirs"))
    if not out then pending(why) return end
    assert.equal(("true\nnil\t%s/new: Permission denied\t13\nnil\t%s/theirs: Permission denied\t13\n"):format(ro, ro), out)
    assert.equal("not writable", get(ro .. "/theirs"))
    assert.equal("new content", get(ro .. "/dst"))
    local st = fio.stat(ro .. "/dst")
    assert.equal(ino, st.ino) -- the same file, written in place
    assert.equal(octal("666"), st.perm) -- which keeps its own mode, as with cp
    assert.same({ "dst", "theirs" }, lines_of("ls -A " .. shq(ro))) -- no temporary
  end)

  it("onto another user's writable file in a sticky directory (rename refused), copies in place", function()
    local sticky = dir .. "/sticky"
    sh("mkdir " .. shq(sticky) .. " && chmod 1777 " .. shq(sticky))
    put(dir .. "/src", "new content")
    put(sticky .. "/dst", ("the old content, longer"):rep(10))
    sh("chmod 644 " .. shq(dir .. "/src") .. " && chmod 666 " .. shq(sticky .. "/dst"))
    local out, why = as_nobody(([[
      local fio = require "fiberio"
      print(fio.copyfile(%q, %q))
    ]]):format(dir .. "/src", sticky .. "/dst"))
    if not out then pending(why) return end
    assert.equal("true\n", out)
    assert.equal("new content", get(sticky .. "/dst"))
    assert.equal(0, fio.stat(sticky .. "/dst").uid)
    assert.same({ "dst" }, lines_of("ls -A " .. shq(sticky))) -- no temporary
  end)

  it("raises on bad arguments", function()
    assert.is_false(pcall(fio.copyfile, dir .. "/a"))
    assert.is_false(pcall(fio.copyfile, nil, dir .. "/a"))
  end)
end)

describe("paths from every context", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  -- Every path, whole-file and tree call once; returns a summary.
  local function scenario(d)
    assert(fio.mkdirp(d .. "/a/b"))
    assert(fio.mkdir(d .. "/c"))
    assert(fio.writefile(d .. "/a/f", "hello"))
    assert(fio.copyfile(d .. "/a/f", d .. "/a/b/g"))
    assert(fio.rename(d .. "/a/b/g", d .. "/c/g"))
    assert(fio.link(d .. "/c/g", d .. "/c/h"))
    assert(fio.symlink("g", d .. "/c/l"))
    assert(fio.chmod(d .. "/c/g", octal("600")))
    assert(fio.truncate(d .. "/c/h", 4))
    assert(fio.access(d .. "/c/l", "rw"))
    local st, lst = fio.stat(d .. "/c/l"), fio.lstat(d .. "/c/l")
    local names = {}
    for name in fio.scandir(d .. "/c") do names[#names + 1] = name end
    table.sort(names)
    local paths = {}
    for path in fio.walk(d) do paths[#paths + 1] = path:sub(#d + 2) end
    table.sort(paths)
    local t = assert(fio.mkdtemp(d .. "/tmpXXXXXX"))
    assert(fio.rmdir(t))
    local r = table.concat({
      fio.readfile(d .. "/c/g"), st.size, st.perm, lst.type, fio.readlink(d .. "/c/l"),
      fio.realpath(d .. "/c/l") == fio.realpath(d) .. "/c/g" and "real" or "unreal",
      #fio.readdir(d .. "/a"), table.concat(names, ","), table.concat(paths, ","),
    }, "|")
    assert(fio.unlink(d .. "/c/l"))
    assert(fio.unlink(d .. "/c/h"))
    assert(fio.unlink(d .. "/c/g"))
    return r
  end
  local want = "hell|4|384|link|g|real|2|g,h,l|a,a/b,a/f,c,c/g,c/h,c/l"

  it("the main chunk", function()
    assert.equal(want, scenario(dir .. "/m"))
  end)

  it("fio.run", function()
    assert.equal(want, fio.run(scenario, dir .. "/r"))
  end)

  it("fibers, ten at once", function()
    fio.run(function()
      local fs = {}
      for i = 1, 10 do fs[i] = fio.async(scenario, dir .. "/f" .. i) end
      for i = 1, 10 do assert.equal(want, fs[i]:await()) end
    end)
  end)

  it("a coroutine.wrap (not a fiber) in the main chunk and inside a fiber", function()
    assert.equal(want, coroutine.wrap(scenario)(dir .. "/w"))
    assert.equal(want, fio.run(function() return coroutine.wrap(scenario)(dir .. "/wr") end))
  end)

  it("a table.sort comparator in the main chunk and inside a fiber", function()
    local function in_sort(d)
      local got
      table.sort({ 3, 1, 2 }, function(a, b)
        if not got then got = scenario(d) end
        return a < b
      end)
      return got
    end
    assert.equal(want, in_sort(dir .. "/s"))
    assert.equal(want, fio.run(in_sort, dir .. "/sr"))
  end)
end)

describe("fd hygiene of path calls", function()
  local dir
  before_each(function() dir = mktempdir() end)
  after_each(function() rmtree(dir) end)

  it("whole-file calls, readdir and walk, successful or failing, leave no fd behind", function()
    sh("mkdir -p " .. shq(dir .. "/t/a/b"))
    put(dir .. "/t/a/f", "x")
    helper.warm()
    local before = helper.open_fds()
    for i = 1, 50 do
      assert(fio.writefile(dir .. "/f", ("x"):rep(i)))
      assert(fio.readfile(dir .. "/f"))
      assert(fio.copyfile(dir .. "/f", dir .. "/g"))
      assert(fio.readdir(dir .. "/t"))
      for _ in fio.walk(dir .. "/t") do end
      assert(not fio.readfile(dir .. "/missing"))
      assert(not fio.readfile(dir))
      assert(not fio.writefile(dir .. "/no/f", "x"))
      assert(not fio.copyfile(dir .. "/missing", dir .. "/h"))
      assert(not fio.copyfile(dir .. "/f", dir .. "/no/h"))
      assert(not fio.copyfile(dir .. "/t", dir .. "/h"))
      assert(not fio.readdir(dir .. "/missing"))
    end
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)
end)
