-- fio.walk (DESIGN.md section 1, "Files"; issue 15): the tree walker in C.
-- find(1) is the oracle: the set of paths and their types, the order with
-- `sort`, maxdepth, -prune, -xdev, -L. Trees are made with the shell.
local helper = require "helper"
local fio = helper.fio
local pack = helper.pack
local shq = helper.shquote
local sh = helper.sh_ok
local put = helper.put


local ENOENT = "No such file or directory"
local FINDTYPE = { f = "file", d = "directory", l = "link", p = "fifo", s = "socket", c = "char", b = "block" }

-- A tree with nested directories, files, symlinks (one to a directory,
-- one making a loop, one dangling), a FIFO, an empty directory and names
-- with spaces, a newline, a backslash, a leading '-' and non-UTF-8 bytes.
local function build(root)
  sh("mkdir -p " .. shq(root .. "/a/b/c/d") .. " " .. shq(root .. "/empty")
    .. " " .. shq(root .. "/with space/caf\xe9 \xff") .. " " .. shq(root .. "/.hidden"))
  for _, f in ipairs { "/top", "/a/f1", "/a/b/f2", "/a/b/c/d/deep", "/with space/x y.txt",
    "/with space/caf\xe9 \xff/\xfe", "/.hidden/.dot", "/new\nline", "/back\\slash", "/-dash" } do
    put(root .. f, f)
  end
  sh("ln -s ../a " .. shq(root .. "/a/b/up") .. " && ln -s a " .. shq(root .. "/to-a")
    .. " && ln -s nowhere " .. shq(root .. "/dangling") .. " && mkfifo " .. shq(root .. "/fifo"))
  for i = 1, 40 do put(root .. "/a/b/many" .. i, "") end
end

-- What find prints (NUL-separated, so that a newline in a name is safe):
-- path -> type, and the paths in find's order.
local function find(root, args)
  local p = assert(io.popen("find " .. (args and args.pre or "") .. " " .. shq(root) ..
    " -mindepth 1 " .. (args and args.post or "") .. " -printf '%y %p\\0' 2>/dev/null"))
  local out = p:read("a")
  p:close()
  local t, order = {}, {}
  for rec in out:gmatch("([^%z]*)%z") do
    local path = rec:sub(3)
    t[path] = FINDTYPE[rec:sub(1, 1)]
    order[#order + 1] = path
  end
  return t, order
end

local function walked(root, opts)
  local t, order = {}, {}
  for path, ty in fio.walk(root, opts) do
    assert.is_nil(t[path], "walked twice: " .. path)
    t[path] = ty
    order[#order + 1] = path
  end
  return t, order
end

-- Paths in pre-order with each directory's entries in byte order: sorting
-- whole paths with '/' made the smallest byte gives exactly that.
local function preorder_sorted(paths)
  local keyed = {}
  for i, p in ipairs(paths) do keyed[i] = { p:gsub("/", "\0"), p } end
  table.sort(keyed, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i, k in ipairs(keyed) do out[i] = k[2] end
  return out
end

describe("fio.walk", function()
  local dir
  before_each(function() dir = helper.mktempdir("walk") end)
  after_each(function() helper.rmtree(dir) end)

  it("visits every entry below root once, with the path and type find prints", function()
    build(dir)
    assert.same((find(dir)), (walked(dir)))
  end)

  it("gives the same set with concurrency 1 and 64, from the main chunk and a fiber", function()
    build(dir)
    local want = find(dir)
    assert.same(want, (walked(dir, { concurrency = 1 })))
    assert.same(want, (walked(dir, { concurrency = 64 })))
    assert.same(want, (fio.run(walked, dir)))
  end)

  it("goes depth first: each directory's subtree follows it, contiguous", function()
    build(dir)
    local _, order = walked(dir)
    local pos = {}
    for i, p in ipairs(order) do pos[p] = i end
    for i, p in ipairs(order) do
      local j = i + 1
      while order[j] and order[j]:sub(1, #p + 1) == p .. "/" do j = j + 1 end
      -- nothing below p comes after its run
      for k = j, #order do
        assert(order[k]:sub(1, #p + 1) ~= p .. "/", order[k] .. " is apart from " .. p)
      end
      local parent = p:match("^(.*)/[^/]*$")
      if parent ~= dir then assert(pos[parent] < i, p .. " before its directory") end
    end
  end)

  it("sort = true: each directory's entries in byte order, in find's pre-order", function()
    build(dir)
    local want, order = find(dir)
    local _, got = walked(dir, { sort = true })
    assert.same(preorder_sorted(order), got)
    assert.same(want, (walked(dir, { sort = true, concurrency = 1 })))
    -- the same order every time
    assert.same(got, select(2, walked(dir, { sort = true, concurrency = 8 })))
  end)

  it("path is root .. '/' .. the relative path, and a root ending in / gets no second one", function()
    build(dir)
    for path in fio.walk(dir) do assert.equal(dir .. "/", path:sub(1, #dir + 1)) end
    for path in fio.walk(dir .. "/") do
      assert.equal(dir .. "/", path:sub(1, #dir + 1))
      assert.is_nil(path:find("//", 1, true))
    end
  end)

  it("does not follow symlinks: a link to a directory is reported as a link", function()
    build(dir)
    local got = walked(dir)
    assert.equal("link", got[dir .. "/to-a"])
    assert.equal("link", got[dir .. "/a/b/up"])
    assert.is_nil(got[dir .. "/to-a/f1"])
  end)

  it("follow = true walks into linked directories as find -L; a link to an ancestor stays a link", function()
    build(dir)
    local want = find(dir, { pre = "-L" })
    local calls = {}
    local got = walked(dir, { follow = true, onerror = function(...) calls[#calls + 1] = pack(...) end })
    assert.same(want, got)
    assert.equal("directory", got[dir .. "/to-a"])
    assert.equal("file", got[dir .. "/to-a/f1"])
    assert.equal("link", got[dir .. "/a/b/up"]) -- a loop: not walked into
    assert.equal("link", got[dir .. "/to-a/b/up"])
    assert.equal("link", got[dir .. "/dangling"])
    assert.same({}, calls)
  end)

  it("maxdepth = N lists as find -maxdepth N (0: nothing)", function()
    build(dir)
    for _, n in ipairs { 1, 2, 3, 5 } do
      assert.same((find(dir, { post = "-maxdepth " .. n })), (walked(dir, { maxdepth = n })))
    end
    assert.same({}, (walked(dir, { maxdepth = 0 })))
  end)

  it("enter(path) -> false skips a directory's contents, as find -prune", function()
    build(dir)
    local asked = {}
    local got = walked(dir, { enter = function(p)
      asked[#asked + 1] = p
      return p ~= dir .. "/a/b"
    end })
    local want = {}
    local all = find(dir)
    for p, t in pairs(all) do
      if p:sub(1, #dir + 5) ~= dir .. "/a/b/" then want[p] = t end
    end
    assert.same(want, got)
    -- asked once per directory reached
    local dirs = 0
    for p, t in pairs(got) do if t == "directory" and p:sub(1, #dir + 5) ~= dir .. "/a/b/" then dirs = dirs + 1 end end
    assert.equal(dirs, #asked)
  end)

  it("enter may wait (it runs between entries, in the walking fiber)", function()
    build(dir)
    local want = find(dir)
    local function go()
      return (walked(dir, { enter = function() fio.sleep(0) return true end }))
    end
    assert.same(want, go())
    assert.same(want, fio.run(go))
  end)

  it("a directory removed before it is read calls onerror and the walk goes on", function()
    build(dir)
    sh("mkdir " .. shq(dir .. "/vanishing"))
    local calls = {}
    local got = walked(dir, {
      enter = function(p) if p == dir .. "/vanishing" then assert(os.remove(p)) end return true end,
      onerror = function(...) calls[#calls + 1] = pack(...) end,
    })
    assert.same({ pack(dir .. "/vanishing", dir .. "/vanishing: " .. ENOENT, 2) }, calls)
    local want = find(dir)
    want[dir .. "/vanishing"] = "directory"
    assert.same(want, got)
  end)

  it("stat = true gives each entry lstat's fields, in one table refilled", function()
    build(dir)
    local seen, tables = 0, {}
    for path, ty, st in fio.walk(dir, { stat = true }) do
      local want = assert(fio.lstat(path))
      tables[st] = true
      assert.equal(want.type, ty)
      for _, k in ipairs { "size", "mode", "perm", "nlink", "uid", "gid", "ino", "dev", "mtime", "ctime", "blocks", "type" } do
        assert.equal(want[k], st[k], k .. " of " .. path)
      end
      seen = seen + 1
    end
    local all = 0
    for _ in pairs(find(dir)) do all = all + 1 end
    assert.equal(all, seen)
    local n = 0
    for _ in pairs(tables) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("stat with follow gives the target's fields for a followed link", function()
    build(dir)
    for path, ty, st in fio.walk(dir, { stat = true, follow = true, onerror = function() end }) do
      if path == dir .. "/to-a" then
        assert.equal("directory", ty)
        assert.equal(fio.stat(dir .. "/a").ino, st.ino)
      elseif path == dir .. "/dangling" then
        assert.equal("link", ty)
        assert.equal("link", st.type)
      end
    end
  end)

  it("xdev = true does not read directories on another file system (find -xdev)", function()
    -- a mount point below a directory this process can walk: a tmpfs made
    -- here when allowed, else one /dev or /proc already holds
    local root, mnt = dir, dir .. "/mnt"
    sh("mkdir " .. shq(mnt))
    local mounted = os.execute("mount -t tmpfs fiberio-walk " .. shq(mnt) .. " 2>/dev/null")
    if mounted then
      put(mnt .. "/inside", "x")
      put(dir .. "/outside", "x")
    else
      root = "/dev"
      local devdev = fio.stat("/dev").dev
      local other
      for path, ty, st in fio.walk("/dev", { maxdepth = 1, stat = true }) do
        if ty == "directory" and st.dev ~= devdev then other = path end
      end
      if not other then pending("no mount point to cross: mount refused and none below /dev") return end
    end
    local ok, err = pcall(function()
      local want = find(root, { post = "-xdev" })
      local got = walked(root, { xdev = true, onerror = function() end })
      assert.same(want, got)
      if mounted then
        assert.equal("directory", got[mnt])
        assert.is_nil(got[mnt .. "/inside"])
        assert.equal("file", (walked(root))[mnt .. "/inside"])
      end
    end)
    if mounted then helper.umount(mnt) end
    assert(ok, err)
  end)

  it("walks a tree 50 directories deep and a directory of 10,000 entries", function()
    sh("cd " .. shq(dir) .. " && p=deep && for i in $(seq 1 50); do p=$p/d$i; done && mkdir -p $p && : > $p/leaf"
      .. " && mkdir wide && cd wide && seq 1 10000 | xargs touch")
    local want = find(dir)
    local got, order = walked(dir, { sort = true })
    assert.same(want, got)
    assert.equal(51 + 1 + 1 + 10000, #order)
    assert.matches("/d50/leaf$", order[51 + 1])
  end)

  it("breaking out of the loop leaves no fd open and nothing running", function()
    build(dir)
    sh("cd " .. shq(dir) .. " && for i in $(seq 1 30); do mkdir -p x$i/y/z; : > x$i/y/z/f; done")
    helper.warm()
    local before = helper.open_fds()
    for round = 1, 20 do
      local n = 0
      for _ in fio.walk(dir, { concurrency = 4, stat = round % 2 == 0 }) do
        n = n + 1
        if n == round then break end
      end
    end
    assert.same(find(dir), (walked(dir)))
    fio.sleep(0.05)
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)

  it("a fiber canceled while its walk waits raises Canceled and leaves no fd", function()
    sh("cd " .. shq(dir) .. " && for i in $(seq 1 200); do mkdir -p x$i/y; : > x$i/y/f; done")
    helper.warm()
    local before = helper.open_fds()
    fio.run(function()
      for _ = 1, 10 do
        local f = fio.async(function()
          local n = 0
          for _ in fio.walk(dir) do n = n + 1 end
          return n
        end)
        fio.yield()
        f:cancel()
        local ok, err = pcall(f.await, f)
        if not ok then assert.matches("canceled", tostring(err)) end
      end
    end)
    fio.sleep(0.05)
    helper.fullgc()
    assert.equal(before, helper.open_fds())
  end)

  it("two walks at once in two fibers each see their own tree", function()
    build(dir .. "/one")
    sh("mkdir -p " .. shq(dir .. "/two/p/q") .. " && touch " .. shq(dir .. "/two/p/q/r"))
    local a, b = fio.run(function()
      local fa = fio.async(walked, dir .. "/one")
      local fb = fio.async(walked, dir .. "/two")
      return fa:await(), fb:await()
    end)
    assert.same((find(dir .. "/one")), a)
    assert.same((find(dir .. "/two")), b)
  end)

  it("a missing root raises 'root: No such file or directory' without onerror", function()
    local ok, err = pcall(function()
      for _ in fio.walk(dir .. "/missing") do end
    end)
    assert.is_false(ok)
    assert.matches(dir .. "/missing: " .. ENOENT, err, 1, true)
  end)

  it("a missing root calls onerror(root, msg, errno) and yields nothing", function()
    local calls = {}
    local got = walked(dir .. "/missing", { onerror = function(...) calls[#calls + 1] = pack(...) end })
    assert.same({}, got)
    assert.same({ pack(dir .. "/missing", dir .. "/missing: " .. ENOENT, 2) }, calls)
  end)

  it("a file as root raises 'Not a directory' (onerror gets errno 20)", function()
    put(dir .. "/f", "")
    assert.is_false(pcall(function() for _ in fio.walk(dir .. "/f") do end end))
    local calls = {}
    walked(dir .. "/f", { onerror = function(...) calls[#calls + 1] = pack(...) end })
    assert.same({ pack(dir .. "/f", dir .. "/f: Not a directory", 20) }, calls)
  end)

  it("an unreadable directory calls onerror, or raises without it (as nobody when root)", function()
    build(dir)
    local locked = dir .. "/locked"
    sh("mkdir -p " .. shq(locked .. "/sub") .. " && chmod 000 " .. shq(locked) .. " && chmod -R a+rX " .. shq(dir)
      .. " && chmod 000 " .. shq(locked))
    local wrapper
    if io.open(locked .. "/x", "w") then -- root: mode 000 stops nothing
      if not os.execute("command -v setpriv >/dev/null") then pending("root without setpriv") return end
      os.remove(locked .. "/x")
      wrapper = "setpriv --reuid=nobody --regid=nogroup --clear-groups"
    end
    local code = ([[
      local fio = require "fiberio"
      local calls, got = {}, {}
      for p, t in fio.walk(%q, { onerror = function(...) calls[#calls + 1] = table.concat({ ... }, "|") end }) do
        got[#got + 1] = t .. " " .. p
      end
      table.sort(got)
      print(table.concat(calls, ";"))
      print(#got)
      print(pcall(function() for _ in fio.walk(%q) do end end))
    ]]):format(dir, dir)
    local out = helper.child(code, { wrapper = wrapper, file = dir .. "/child.lua" })
    local calls, n, raised = out:match("^(.-)\n(%d+)\n(.-)\n$")
    assert.equal(locked .. "|" .. locked .. ": Permission denied|13", calls, out)
    local want = 0
    for _ in pairs(find(dir)) do want = want + 1 end
    -- all that find lists (as root) but locked/sub, plus the child's own
    -- file (removed since)
    assert.equal(want - 1 + 1, tonumber(n))
    assert.matches("^false\t.*" .. locked:gsub("%p", "%%%0") .. ": Permission denied", raised)
  end)

  it("reads on the pool only with fio.config{inline = false}: the same entries, order and no fd left", function()
    build(dir)
    local code = [[
      local fio = require "fiberio"
      fio.config { inline = false }
      local n, out = 0, {}
      for path, ty in fio.walk(%q, { sort = true }) do out[#out + 1] = ty .. " " .. path end
      for i = 1, 5 do
        for _ in fio.walk(%q) do n = n + 1; if n %% 7 == 0 then break end end
      end
      io.write(table.concat(out, "\0"))
    ]]
    local out = helper.child(code:format(dir, dir))
    local want, order = find(dir)
    local lines = {}
    for rec in (out .. "\0"):gmatch("([^%z]*)%z") do lines[#lines + 1] = rec end
    local sorted = preorder_sorted(order)
    assert.equal(#sorted, #lines)
    for i, p in ipairs(sorted) do assert.equal(want[p] .. " " .. p, lines[i]) end
  end)

  it("reads directories on the loop thread when nothing else runs, and not while a fiber is ready", function()
    build(dir)
    local code = [[
      local fio = require "fiberio"
      local n = 0
      local before = fio._info().walk_here
      for _ in fio.walk(%q) do n = n + 1 end
      local alone = fio._info().walk_here - before
      -- a busy loop: another fiber always ready
      local stop = false
      local spinner = fio.async(function() while not stop do fio.yield() end end)
      before = fio._info().walk_here
      local m = 0
      for _ in fio.walk(%q) do m = m + 1 end
      local busy = fio._info().walk_here - before
      stop = true
      spinner:await()
      print(n, m, alone, busy)
    ]]
    local out = helper.child(code:format(dir, dir))
    local n, m, alone, busy = out:match("^(%d+)\t(%d+)\t(%d+)\t(%d+)")
    local off = helper.child(([[
      local fio = require "fiberio"
      fio.config { inline = false }
      for _ in fio.walk(%q) do end
      io.write(fio._info().walk_here)
    ]]):format(dir))
    local want = 0
    for _ in pairs(find(dir)) do want = want + 1 end
    assert.equal(tostring(want), n)
    assert.equal(n, m)
    assert.is_true(tonumber(alone) >= 1, out) -- the root at least
    assert.equal("0", busy)
    assert.equal("0", off)
  end)

  it("checks its options at the caller's line", function()
    assert.has_error(function() fio.walk(dir, { maxdepth = -1 }) end)
    assert.has_error(function() fio.walk(dir, { enter = 1 }) end)
    assert.has_error(function() fio.walk(dir, { concurrency = 0 }) end)
    assert.has_error(function() fio.walk(dir, { nope = true }) end)
    assert.is_false(pcall(fio.walk))
    assert.is_false(pcall(fio.walk, {}))
  end)
end)
