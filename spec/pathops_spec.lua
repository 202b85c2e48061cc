-- What cp -a, rsync -a and rm -r need (issue 15): utime/lutime, chown/
-- lchown, mkfifo/mknod, getxattr/setxattr/listxattr and their link forms,
-- statvfs, rmtree. Checked with coreutils' stat and attr's getfattr.
local helper = require "helper"
local fio = helper.fio
local pack = helper.pack
local shq = helper.shquote
local sh = helper.sh_ok
local put = helper.put

local function out(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return (s:gsub("\n$", ""))
end

local function is_root() return out("id -u") == "0" end

describe("path operations for copying trees", function()
  local dir
  before_each(function() dir = helper.mktempdir("pathops") end)
  after_each(function() helper.rmtree(dir) end)

  describe("utime and lutime", function()
    it("set atime and mtime in seconds, fractions kept to what a double holds", function()
      put(dir .. "/f", "x")
      assert.same(pack(true), pack(fio.utime(dir .. "/f", 1000, 2000.5)))
      assert.equal("1000.000000000 2000.500000000", out("stat -c '%.9X %.9Y' " .. shq(dir .. "/f")))
    end)

    it("copy times to the nanosecond from a stat table", function()
      put(dir .. "/a", "x")
      put(dir .. "/b", "y")
      sh("touch -d '2001-02-03 04:05:06.123456789' " .. shq(dir .. "/a"))
      local st = assert(fio.stat(dir .. "/a"))
      assert.is_true(fio.utime(dir .. "/b", st))
      assert.equal(out("stat -c '%.9X %.9Y' " .. shq(dir .. "/a")), out("stat -c '%.9X %.9Y' " .. shq(dir .. "/b")))
      assert.equal(981173106123456789, st.mtime_ns)
    end)

    it("nil is now, false leaves a time as it is", function()
      put(dir .. "/f", "x")
      assert(fio.utime(dir .. "/f", 1000, 2000))
      assert(fio.utime(dir .. "/f", false, nil))
      local st = fio.stat(dir .. "/f")
      assert.equal(1000, st.atime)
      assert.is_true(math.abs(st.mtime - os.time()) < 5)
    end)

    it("lutime sets a symbolic link's own times, utime its target's", function()
      put(dir .. "/t", "x")
      sh("ln -s t " .. shq(dir .. "/l"))
      assert(fio.utime(dir .. "/t", 5, 5))
      assert(fio.lutime(dir .. "/l", 7, 7))
      assert.equal(5, fio.stat(dir .. "/t").mtime)
      assert.equal(7, fio.lstat(dir .. "/l").mtime)
    end)

    it("fail with nil, 'path: message', errno; misuse raises", function()
      assert.same(pack(nil, dir .. "/no: No such file or directory", 2), pack(fio.utime(dir .. "/no", 1, 1)))
      assert.has_error(function() fio.utime(dir, "x") end)
      assert.has_error(function() fio.utime(dir, {}) end)
      assert.has_error(function() fio.utime(dir, 0 / 0) end)
    end)
  end)

  describe("chown and lchown", function()
    it("set the owner and group (nil leaves one as it is)", function()
      put(dir .. "/f", "x")
      if not is_root() then
        local _, _, err = fio.chown(dir .. "/f", 0, 0)
        assert.equal(1, err) -- EPERM
        return
      end
      assert.is_true(fio.chown(dir .. "/f", 12, 34))
      assert.equal("12:34", out("stat -c %u:%g " .. shq(dir .. "/f")))
      assert.is_true(fio.chown(dir .. "/f", nil, 56))
      assert.equal("12:56", out("stat -c %u:%g " .. shq(dir .. "/f")))
    end)

    it("lchown changes the link, chown its target", function()
      if not is_root() then pending("not root: only root gives files away") return end
      put(dir .. "/t", "x")
      sh("ln -s t " .. shq(dir .. "/l"))
      assert(fio.lchown(dir .. "/l", 7, 8))
      assert.equal("7:8", out("stat -c %u:%g " .. shq(dir .. "/l")))
      assert.equal("0:0", out("stat -c %u:%g " .. shq(dir .. "/t")))
      assert(fio.chown(dir .. "/l", 9, 10))
      assert.equal("9:10", out("stat -c %u:%g " .. shq(dir .. "/t")))
    end)

    it("fail on a missing path; bad ids raise", function()
      assert.same(pack(nil, dir .. "/no: No such file or directory", 2), pack(fio.chown(dir .. "/no", 1, 1)))
      assert.has_error(function() fio.chown(dir, "root") end)
      assert.has_error(function() fio.chown(dir, -5) end)
    end)
  end)

  describe("mkfifo and mknod", function()
    it("mkfifo makes a FIFO with the permission asked (less the umask)", function()
      assert.is_true(fio.mkfifo(dir .. "/p", "0600"))
      assert.equal("fifo 600", out("stat -c '%F %a' " .. shq(dir .. "/p")))
      assert.same(pack(nil, dir .. "/p: File exists", 17), pack(fio.mkfifo(dir .. "/p")))
    end)

    it("mknod makes FIFOs, files and, as root, devices with the given number", function()
      assert.is_true(fio.mknod(dir .. "/p", "fifo"))
      assert.is_true(fio.mknod(dir .. "/f", "file", "0640"))
      assert.equal("fifo", fio.lstat(dir .. "/p").type)
      assert.equal("regular empty file 640", out("stat -c '%F %a' " .. shq(dir .. "/f")))
      local null = fio.stat("/dev/null")
      local ok, _, err = fio.mknod(dir .. "/c", "char", "0600", null.rdev)
      if not is_root() then assert.equal(1, err) return end
      assert.is_true(ok)
      assert.equal(out("stat -c '%F %t:%T' /dev/null"), out("stat -c '%F %t:%T' " .. shq(dir .. "/c")))
      assert.equal(null.rdev, fio.lstat(dir .. "/c").rdev)
    end)

    it("a bad type raises", function()
      assert.has_error(function() fio.mknod(dir .. "/x", "pipe") end)
    end)
  end)

  describe("extended attributes", function()
    local function user_xattrs(path)
      local ok = fio.setxattr(path, "user.probe", "1")
      return ok
    end

    it("setxattr, getxattr and listxattr agree with getfattr", function()
      put(dir .. "/f", "x")
      if not user_xattrs(dir .. "/f") then pending("this file system takes no user.* attributes") return end
      local big = ("v"):rep(3000) -- (longer than the first read's room)
      assert.is_true(fio.setxattr(dir .. "/f", "user.a", "hello"))
      assert.is_true(fio.setxattr(dir .. "/f", "user.big", big))
      assert.equal("hello", fio.getxattr(dir .. "/f", "user.a"))
      assert.equal(big, fio.getxattr(dir .. "/f", "user.big"))
      local names = fio.listxattr(dir .. "/f")
      table.sort(names)
      assert.same({ "user.a", "user.big", "user.probe" }, names)
      assert.equal('user.a="hello"', out("getfattr --only-values -n user.a " .. shq(dir .. "/f") .. " | sed 's/^/user.a=\"/;s/$/\"/'"))
      assert.equal("user.a\nuser.big\nuser.probe", out("getfattr -m - " .. shq(dir .. "/f") .. " | grep '^user' | sort"))
    end)

    it("create and replace say EEXIST and ENODATA; a missing one is ENODATA", function()
      put(dir .. "/f", "x")
      if not user_xattrs(dir .. "/f") then pending("this file system takes no user.* attributes") return end
      assert.same(pack(nil, dir .. "/f: File exists", 17), pack(fio.setxattr(dir .. "/f", "user.probe", "2", "create")))
      local r = pack(fio.setxattr(dir .. "/f", "user.none", "2", "replace"))
      assert.equal(61, r[3])
      r = pack(fio.getxattr(dir .. "/f", "user.none"))
      assert.same(pack(nil, dir .. "/f: No data available", 61), r)
      assert.has_error(function() fio.setxattr(dir .. "/f", "user.x", "v", "sometimes") end)
    end)

    it("the l- forms look at a link itself, the others at its target", function()
      put(dir .. "/t", "x")
      if not user_xattrs(dir .. "/t") then pending("this file system takes no user.* attributes") return end
      sh("ln -s t " .. shq(dir .. "/l"))
      assert.equal("1", fio.getxattr(dir .. "/l", "user.probe"))
      assert.equal(61, select(3, fio.lgetxattr(dir .. "/l", "user.probe")))
      assert.same({}, (fio.llistxattr(dir .. "/l")))
      assert.same({ "user.probe" }, (fio.listxattr(dir .. "/l")))
      -- (Linux takes no user.* attribute on a link: EPERM)
      assert.equal(1, select(3, fio.lsetxattr(dir .. "/l", "user.x", "v")))
    end)

    it("run on the backend too (fibers at once, no call inline)", function()
      put(dir .. "/f", "x")
      if not user_xattrs(dir .. "/f") then pending("this file system takes no user.* attributes") return end
      local code = [[
        local fio = require "fiberio"
        fio.config { inline = false }
        local f = %q
        local before
        local got = fio.run(function()
          local fs = {}
          for i = 1, 8 do
            fs[i] = fio.async(function()
              -- (one file each: ext4 keeps a file's attributes in a block)
              assert(fio.writefile(f .. i, ""))
              assert(fio.setxattr(f .. i, "user.k", ("x"):rep(i * 400)))
              return #assert(fio.getxattr(f .. i, "user.k"))
            end)
          end
          local t = {}
          for i = 1, 8 do t[i] = fs[i]:await() end
          before = fio._info().pooled or 0
          for i = 1, 8 do
            fs[i] = fio.async(function() return #assert(fio.getxattr(f .. i, "user.k")) end)
          end
          for i = 1, 8 do assert(fs[i]:await() == i * 400) end
          return table.concat(t, ",")
        end)
        print(got, (fio._info().pooled or 0) - before, fio.backend())
      ]]
      local res = helper.child(code:format(dir .. "/f"))
      local got, pooled, backend = res:match("^(%S+)\t(%d+)\t(%S+)")
      assert.equal("400,800,1200,1600,2000,2400,2800,3200", got)
      if backend == "io_uring" and helper.kernel_at_least(5, 19) then
        assert.equal("0", pooled) -- on the ring: IORING_OP_SETXATTR, GETXATTR
      end
    end)
  end)

  it("statvfs gives what stat -f says", function()
    local v = assert(fio.statvfs(dir))
    assert.equal(out("stat -f -c '%S %b %l' " .. shq(dir)), ("%d %d %d"):format(v.frsize, v.blocks, v.namemax))
    assert.is_true(v.bavail <= v.bfree)
    assert.same(pack(nil, dir .. "/no: No such file or directory", 2), pack(fio.statvfs(dir .. "/no")))
  end)

  describe("rmtree", function()
    it("removes a tree: files, links, FIFOs, awkward names, deep directories", function()
      sh("cd " .. shq(dir) .. " && mkdir -p t/a/b/c/d t/e && touch t/a/f t/a/b/g 't/new\nline' t/-x"
        .. " && ln -s nowhere t/e/dangling && mkfifo t/a/p && for i in $(seq 1 300); do : > t/e/n$i; done")
      assert.same(pack(true), pack(fio.rmtree(dir .. "/t")))
      assert.equal("", out("ls -A " .. shq(dir)))
    end)

    it("a file or link is unlinked; a missing path is an error", function()
      put(dir .. "/f", "x")
      sh("ln -s " .. shq(dir) .. " " .. shq(dir .. "/l"))
      assert.is_true(fio.rmtree(dir .. "/f"))
      assert.is_true(fio.rmtree(dir .. "/l")) -- the link, not what it names
      assert.equal("", out("ls -A " .. shq(dir)))
      assert.same(pack(nil, dir .. "/f: No such file or directory", 2), pack(fio.rmtree(dir .. "/f")))
    end)

    it("refuses to cross into another file system unless asked", function()
      sh("mkdir -p " .. shq(dir .. "/t/mnt") .. " && touch " .. shq(dir .. "/t/x"))
      if not os.execute("mount -t tmpfs fiberio-rmtree " .. shq(dir .. "/t/mnt") .. " 2>/dev/null") then
        pending("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        return
      end
      put(dir .. "/t/mnt/keep", "x")
      local ok, msg, err = fio.rmtree(dir .. "/t")
      local left = out("find " .. shq(dir .. "/t") .. " | sort")
      local ok2, _, err2 = fio.rmtree(dir .. "/t", { cross = true })
      local left2 = out("find " .. shq(dir .. "/t") .. " | sort")
      helper.umount(dir .. "/t/mnt")
      assert.is_nil(ok)
      assert.equal(18, err) -- EXDEV
      assert.matches("mnt: is on another file system", msg, 1, true)
      assert.equal(table.concat({ dir .. "/t", dir .. "/t/mnt", dir .. "/t/mnt/keep" }, "\n"), left)
      -- cross: what is inside goes; the mount point itself cannot (EBUSY)
      assert.is_nil(ok2)
      assert.equal(16, err2)
      assert.equal(dir .. "/t\n" .. dir .. "/t/mnt", left2)
    end)

    it("checks its arguments", function()
      assert.has_error(function() fio.rmtree(1) end)
      assert.has_error(function() fio.rmtree(dir, { xdev = true }) end)
    end)
  end)
end)
