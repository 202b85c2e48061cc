-- The example tools (examples/cptree.lua, treesum.lua, grep.lua), each run as
-- a child process on real trees — /usr/share/lua and a tree built here — and
-- compared with what the standard tool gives for the same files: cp -a,
-- sha256sum, grep -rHn. The children get this process's LUA_PATH, LUA_CPATH
-- and FIBERIO_BACKEND (the specs are pending when that backend cannot start
-- in this build, as the tools could only say so).

local helper = require "helper"
local q = helper.shquote
local fio = helper.fio

local examples = helper.examples_dir()

-- The environment of a tool's run. Under a sanitizer (make check) the tools
-- run with its LD_PRELOAD, but the standard tools they are compared with do not
-- (helper.sh drops it: a leak report in mktemp or cp must not count).
local ENV = helper.lua_env()

-- Run a shell command: its stdout, stderr and exit code.
local sh = helper.sh

-- Run examples/<tool>.lua with arguments (each one quoted).
local function run(tool, ...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = q((select(i, ...))) end
  return sh(ENV .. "lua5.4 " .. q(examples .. "/" .. tool .. ".lua") .. " " .. table.concat(args, " "))
end

local function lines_sorted(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  table.sort(t)
  return t
end

local function write(path, data, mode)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  if mode then assert(select(3, sh("chmod " .. mode .. " " .. q(path))) == 0) end
end

local function mkdir(path, mode)
  local _, err, code = sh("mkdir -p " .. q(path) .. (mode and " && chmod " .. mode .. " " .. q(path) or ""))
  assert(code == 0, err)
end

-- What `find -printf '%P %m %y %l\n'` lists for a tree, sorted: relative
-- path, permission bits, type, link target.
local function listing(root)
  local out, err, code = sh("cd " .. q(root) .. " && find . -printf '%P %m %y %l\\n' | LC_ALL=C sort")
  assert(code == 0, err)
  return out
end

local function count_lines(s)
  local _, n = s:gsub("\n", "")
  return n
end

-- The tree the specs build: nested directories, an empty directory, names
-- with spaces and a backslash, an empty file, a 1 MiB file (its last line with
-- no newline), files whose sizes straddle SHA-256's padding boundaries, a
-- relative and a dangling symbolic link, a read-only file, a directory with
-- mode 0700 and a read-only directory with a file in it.
local function build_tree(root)
  mkdir(root)
  mkdir(root .. "/a/b/c")
  mkdir(root .. "/empty dir")
  mkdir(root .. "/dir with spaces/inner")
  write(root .. "/a/top.txt", "alpha\nneedle in a\nomega\n")
  write(root .. "/a/b/mid.lua", "local x = 1\n-- needle\nreturn x\n")
  write(root .. "/a/b/c/deep.txt", "deep needle\n\nneedle again, no newline at the end")
  write(root .. "/dir with spaces/file with spaces.txt", "a needle with spaces\n")
  write(root .. "/dir with spaces/inner/x", "nothing here\n")
  write(root .. "/back\\slash.txt", "needle behind a backslash\n")
  write(root .. "/empty.txt", "")
  write(root .. "/just newline", "\n")
  for _, n in ipairs { 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000 } do
    write(root .. "/a/size" .. n, string.rep("x", n - 1) .. "\n")
  end
  local big, n = {}, 0
  local size = 0
  while size < 1048576 do
    n = n + 1
    local l = n % 7 == 0 and ("row " .. n .. " has a needle\n") or ("row " .. n .. " plain text\n")
    big[#big + 1] = l
    size = size + #l
  end
  write(root .. "/big.txt", table.concat(big):sub(1, 1048576))
  write(root .. "/readonly.txt", "read only needle\n", "0444")
  mkdir(root .. "/private")
  write(root .. "/private/secret.txt", "secret needle\n", "0600")
  sh("chmod 0700 " .. q(root .. "/private"))
  mkdir(root .. "/ro dir")
  write(root .. "/ro dir/kept.txt", "kept needle\n", "0640")
  write(root .. "/a/script.sh", "#!/bin/sh\necho needle\n", "0755")
  assert(select(3, sh("ln -s b/c/deep.txt " .. q(root .. "/a/link to deep"))) == 0)
  assert(select(3, sh("ln -s ../nowhere " .. q(root .. "/a/dangling"))) == 0)
  assert(select(3, sh("ln -s 'dir with spaces' " .. q(root .. "/dirlink"))) == 0)
  sh("chmod 0555 " .. q(root .. "/ro dir"))
end

local tmp, tree
local LUA = "/usr/share/lua"

-- Set when the backend FIBERIO_BACKEND asks for cannot start in this build
-- (the tools would only print that): the specs are then pending.
local unavailable

-- `it`, pending when the backend cannot start.
local function it_(name, fn)
  it(name, function()
    if unavailable then return pending(unavailable) end
    return fn()
  end)
end

lazy_setup(function()
  local _, perr = sh(ENV .. "lua5.4 -e " .. q('require("fiberio").run(function() end)'))
  unavailable = perr:match("fiberio: (backend '[^']*' is not available)")
  tmp = helper.mktempdir("examples")
  tree = tmp .. "/tree"
  build_tree(tree)
end)

lazy_teardown(function()
  if tmp then helper.rmtree(tmp) end
end)

describe("examples/cptree.lua", function()
  -- Everything cp -a keeps: type, mode, links, owner, group, mtime to the
  -- nanosecond, link text, and the extended attributes.
  local function full_listing(root)
    local out, err, code = sh("cd " .. q(root) .. " && find . -printf '%P %y %m %n %U %G %T@ %l\\0' | LC_ALL=C sort -z | tr '\\0' '\\n'"
      .. " && getfattr -R -h -d -m - . 2>/dev/null")
    assert(code == 0, err)
    return out
  end

  local function compare_with_cp(src, name)
    local ref, mine = tmp .. "/" .. name .. ".cp", tmp .. "/" .. name .. ".cptree"
    local _, err, code = sh("cp -a " .. q(src) .. " " .. q(ref))
    assert(code == 0, err)
    local out, terr, tcode = run("cptree", src, mine)
    assert.equal("", terr)
    assert.equal("", out)
    assert.equal(0, tcode)
    local dout, derr, dcode = sh("diff -r --no-dereference " .. q(ref) .. " " .. q(mine))
    assert.equal("", dout .. derr)
    assert.equal(0, dcode)
    local want = listing(ref)
    assert.is_true(count_lines(want) > 10)
    assert.equal(want, listing(mine))
    assert.equal(full_listing(ref), full_listing(mine))
  end

  it_("copies /usr/share/lua as cp -a does (bytes, modes, symlinks, times, owners)", function()
    compare_with_cp(LUA, "usl")
  end)

  it_("copies the built tree as cp -a does (read-only file and dir, 0700 dir, links, spaces)", function()
    compare_with_cp(tree, "tree")
    local l = listing(tmp .. "/tree.cptree")
    assert.truthy(l:find("\nreadonly.txt 444 f \n", 1, true))
    assert.truthy(l:find("\nprivate 700 d \n", 1, true))
    assert.truthy(l:find("\nro dir 555 d \n", 1, true))
    assert.truthy(l:find("\na/link to deep 777 l b/c/deep.txt\n", 1, true))
    assert.truthy(l:find("\nempty dir 755 d \n", 1, true))
  end)

  it_("keeps exact modes whatever the umask (copyfile's mode is masked)", function()
    local dst = tmp .. "/umask.cptree"
    local _, err, code = sh("umask 077 && " .. ENV .. "lua5.4 " .. q(examples .. "/cptree.lua") ..
                            " " .. q(tree) .. " " .. q(dst))
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal(listing(tree), listing(dst))
  end)

  it_("copies read-only directories as a user without root's override (setpriv nobody)", function()
    -- As root, permission bits never stop a copy; as another user, a 0555
    -- directory can only be filled if its mode is set after the files.
    local uid = sh("id -u"):gsub("%s", "")
    if uid ~= "0" or select(3, sh("command -v setpriv")) ~= 0 then
      return pending("needs root and setpriv to run as nobody")
    end
    local base = tmp .. "/nobody"
    mkdir(base)
    sh("chmod 0755 " .. q(tmp) .. " && chown nobody " .. q(base))
    local function as_nobody(cmd)
      return sh("setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c " .. q("umask 022; " .. cmd))
    end
    local _, err, code = as_nobody(
      "cd " .. q(base) .. " && mkdir -p src/ro/sub src/rx && echo a > src/ro/sub/f && " ..
      "echo b > src/ro/g && echo c > src/rx/h && chmod 0444 src/ro/sub/f src/ro/g && " ..
      "chmod 0555 src/ro/sub src/ro && chmod 0500 src/rx && cp -a src ref")
    assert(code == 0, err)
    local out
    out, err, code = as_nobody(ENV .. "lua5.4 " .. q(examples .. "/cptree.lua") .. " " ..
                               q(base .. "/src") .. " " .. q(base .. "/copy"))
    assert.equal("", out .. err)
    assert.equal(0, code)
    assert.equal(listing(base .. "/ref"), listing(base .. "/copy"))
    assert.truthy(listing(base .. "/copy"):find("\nro/sub 555 d \n", 1, true))
    assert.equal("", (sh("diff -r " .. q(base .. "/ref") .. " " .. q(base .. "/copy"))))
  end)

  it_("copies a single file or link given as SRC", function()
    local _, _, code = run("cptree", tree .. "/a/script.sh", tmp .. "/one.sh")
    assert.equal(0, code)
    assert.equal(helper.get(tree .. "/a/script.sh"), helper.get(tmp .. "/one.sh"))
    assert.equal("755\n", (sh("stat -c %a " .. q(tmp .. "/one.sh"))))
    _, _, code = run("cptree", tree .. "/a/link to deep", tmp .. "/one.link")
    assert.equal(0, code)
    assert.equal("b/c/deep.txt\n", (sh("readlink " .. q(tmp .. "/one.link"))))
  end)

  it_("copies an awkward tree exactly as cp -a: FIFOs, hard links, owners, ns times, xattrs, odd names", function()
    local src = tmp .. "/awk"
    local root = sh("id -u"):gsub("%s", "") == "0"
    local _, err, code = sh("mkdir -p " .. q(src .. "/d/e") .. " && cd " .. q(src) .. " && echo a > 'new\nline' && echo b > 'back\\slash'"
      .. " && echo c > \"$(printf 'bad\\377name')\" && echo d > ./-dash && mkfifo d/pipe && ln -s nowhere dangling"
      .. " && echo e > d/hard1 && ln d/hard1 d/e/hard2 && ln d/hard1 hard3 && echo f > d/e/f"
      .. " && touch -d '2001-02-03 04:05:06.123456789' d/e/f d/hard1 && touch -h -d '2002-01-01 00:00:00.5' dangling"
      .. (root and " && chown 12:34 d/e/f && chown -h 56:78 dangling && mknod d/null c 1 3" or "")
      .. " && chmod 4755 d/e/f && chmod 0700 d") -- (after chown, which clears set-user-ID)
    assert(code == 0, err)
    local xattrs = select(3, sh("setfattr -n user.note -v hello " .. q(src .. "/d/e/f") .. " && setfattr -n user.dir -v 1 " .. q(src .. "/d"))) == 0
    _, err, code = sh("cp -a " .. q(src) .. " " .. q(tmp .. "/awk.cp"))
    assert(code == 0, err)
    local out, terr, tcode = run("cptree", src, tmp .. "/awk.cptree")
    assert.equal("", out .. terr)
    assert.equal(0, tcode)
    local want = full_listing(tmp .. "/awk.cp")
    assert.equal(want, full_listing(tmp .. "/awk.cptree"))
    assert.truthy(want:find("\nd/pipe p 644 1 ", 1, true))
    assert.truthy(want:find("\nd/hard1 f 644 3 ", 1, true))
    assert.truthy(want:find(" 981173106.123456789", 1, true))
    if xattrs then assert.truthy(want:find('user.note="hello"', 1, true)) end
    if root then assert.truthy(want:find("\nd/e/f f 4755 1 12 34 ", 1, true)) end
    -- the three names of one file are one file in the copy too
    local i1 = sh("stat -c %i " .. q(tmp .. "/awk.cptree/d/hard1"))
    assert.equal(i1, (sh("stat -c %i " .. q(tmp .. "/awk.cptree/hard3"))))
    assert.equal(i1, (sh("stat -c %i " .. q(tmp .. "/awk.cptree/d/e/hard2"))))
  end)

  it_("exits 1 when something could not be copied, copying the rest", function()
    local uid = sh("id -u"):gsub("%s", "")
    if uid ~= "0" or select(3, sh("command -v setpriv")) ~= 0 then
      return pending("needs root and setpriv to run as nobody with a file nobody can read")
    end
    local base = tmp .. "/unreadable"
    mkdir(base .. "/src")
    write(base .. "/src/ok", "fine\n")
    write(base .. "/src/secret", "no\n", "000")
    sh("chmod 0755 " .. q(tmp) .. " && chown -R nobody " .. q(base))
    local out, err, code = sh("setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c " .. q(ENV .. "lua5.4 "
      .. q(examples .. "/cptree.lua") .. " " .. q(base .. "/src") .. " " .. q(base .. "/copy")))
    assert.equal("", out)
    assert.equal(1, code)
    assert.equal("cptree: " .. base .. "/src/secret: Permission denied\n", err)
    assert.equal("fine\n", helper.get(base .. "/copy/ok"))
  end)

  it_("fails with status 1 when DST exists, leaving it alone", function()
    local dst = tmp .. "/exists"
    mkdir(dst)
    local out, err, code = run("cptree", tree, dst)
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal("cptree: " .. dst .. ": File exists\n", err)
    assert.equal("", (sh("ls -A " .. q(dst))))
  end)

  it_("fails with status 1 on a missing SRC, a missing DST parent, or DST inside SRC", function()
    local _, err, code = run("cptree", tmp .. "/nope", tmp .. "/nope.copy")
    assert.equal(1, code)
    assert.equal("cptree: " .. tmp .. "/nope: No such file or directory\n", err)
    _, err, code = run("cptree", tree, tmp .. "/no/parent")
    assert.equal(1, code)
    assert.equal("cptree: " .. tmp .. "/no/parent: No such file or directory\n", err)
    _, err, code = run("cptree", tree, tree .. "/a/inside")
    assert.equal(1, code)
    assert.matches("^cptree: cannot copy a directory", err)
    assert.equal(1, select(3, sh("test -e " .. q(tree .. "/a/inside"))))
  end)

  it_("prints usage and exits 2 on bad usage", function()
    for _, args in ipairs { {}, { "only" }, { "a", "b", "c" } } do
      local out, err, code = run("cptree", table.unpack(args))
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("usage: cptree [-q] SRC DST", err, 1, true)
    end
  end)
end)

describe("examples/treesum.lua", function()
  local function sha256sum(root)
    local out, err, code = sh("find " .. q(root) .. " -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum")
    assert(code == 0, err)
    return out
  end
  local function totals(root)
    local out = sh("find " .. q(root) .. " -type f -printf '%s\\n'")
    local n, bytes = 0, 0
    for s in out:gmatch("%d+") do n, bytes = n + 1, bytes + tonumber(s) end
    return n, bytes
  end
  local function check(root, ...)
    local want = sha256sum(root)
    assert.is_true(count_lines(want) > 5)
    local out, err, code = run("treesum", ...)
    assert.equal(0, code)
    assert.equal(want, out)
    local n, bytes = totals(root)
    local gn, gbytes = err:match("^treesum: (%d+) files, (%d+) bytes, [%d.]+ s\n$")
    assert.equal(n, tonumber(gn))
    assert.equal(bytes, tonumber(gbytes))
  end

  it_("prints what sha256sum prints for /usr/share/lua, sorted by path", function()
    check(LUA, LUA)
  end)

  it_("prints what sha256sum prints for the built tree (empty, 1 MiB, padding sizes, backslash)", function()
    check(tree, tree)
    local out = run("treesum", tree)
    assert.truthy(out:find("\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  " ..
                           tree .. "/empty.txt\n", 1, true))
    assert.truthy(out:find("\n\\%x+  " .. tree:gsub("%p", "%%%0") .. "/back\\\\slash.txt\n"))
  end)

  it_("gives the same output with -j 1, -j 3 and -j3", function()
    check(tree, "-j", "1", tree)
    check(tree, "-j", "3", tree)
    check(tree, "-j3", tree)
  end)

  it_("gives the same output hashing on worker threads (-p 1, -p 2: fio.parallel)", function()
    check(tree, "-p", "2", tree)
    check(LUA, "-p", "1", "-j", "4", LUA)
  end)

  it_("spells paths as given: a ROOT with a trailing slash", function()
    check(tree .. "/", tree .. "/")
  end)

  it_("fails with status 1 on a missing ROOT", function()
    local out, err, code = run("treesum", tmp .. "/nope")
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal("treesum: " .. tmp .. "/nope: No such file or directory\n", err)
  end)

  it_("prints usage and exits 2 on bad usage", function()
    for _, args in ipairs { {}, { "-j" }, { "-j", "0", tree }, { "-j", "x", tree },
                            { "-x", tree }, { tree, tree } } do
      local out, err, code = run("treesum", table.unpack(args))
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("usage: treesum [-q] [-j N] [-p N] ROOT", err, 1, true)
    end
  end)
end)

describe("examples/grep.lua", function()
  local function check(pattern, flags, ...)
    local paths = {}
    for i = 1, select("#", ...) do paths[i] = q((select(i, ...))) end
    local want, werr, wcode = sh("LC_ALL=C grep " .. flags .. " " .. q(pattern) .. " " .. table.concat(paths, " "))
    assert(wcode <= 1, werr)
    local args = { flags:match("^%-H(.*)$") }
    if args[1] == "" then args = {} else args[1] = "-" .. args[1] end
    args[#args + 1] = pattern
    for i = 1, select("#", ...) do args[#args + 1] = (select(i, ...)) end
    local out, err, code = run("grep", table.unpack(args))
    assert.equal("", err)
    assert.equal(wcode, code)
    assert.same(lines_sorted(want), lines_sorted(out))
    return out
  end

  it_("-rn finds what grep -rHn finds in /usr/share/lua", function()
    local out = check("require", "-Hrn", LUA)
    assert.is_true(count_lines(out) > 50)
    check("^local function", "-Hrn", LUA)
  end)

  it_("-rn on awkward names (newline, backslash, \\xff, leading -) prints what grep -rHn prints", function()
    local src = tmp .. "/grepawk"
    local _, err, code = sh("mkdir -p " .. q(src .. "/d") .. " && cd " .. q(src)
      .. " && printf 'a needle\\n' > 'new\nline' && printf 'needle b\\nno\\nneedle\\n' > 'back\\slash'"
      .. " && printf 'x needle' > \"$(printf 'bad\\377name')\" && printf 'needle\\n' > ./-dash"
      .. " && ln -s nowhere d/dangling && mkfifo d/pipe")
    assert(code == 0, err)
    local out = check("needle", "-Hrn", src)
    assert.equal(5, count_lines(out) - 1) -- (one name holds a newline)
  end)

  it_("-p 2 (on worker threads) finds the same, binary files and errors included", function()
    local want = run("grep", "-rn", "local", LUA, tree)
    local out, _, code = run("grep", "-p", "2", "-rn", "local", LUA, tree)
    assert.equal(0, code)
    assert.same(lines_sorted(want), lines_sorted(out))
    local _, werr = run("grep", "-rn", "needle", tree, tmp .. "/nope")
    local _, err
    _, err, code = run("grep", "-p", "2", "-rn", "needle", tree, tmp .. "/nope")
    assert.equal(2, code)
    assert.same(lines_sorted(werr), lines_sorted(err))
    _, err, code = run("grep", "-p", "x", "a", tree)
    assert.equal(2, code)
    assert.matches("%-p needs a whole number", err)
  end)

  it_("-r without -n finds what grep -rH finds", function()
    check("function", "-Hr", LUA)
    check("needle", "-Hr", tree)
  end)

  it_("-nr on the built tree: spaces in names, no final newline, 1 MiB file, links not followed", function()
    local out = check("needle", "-Hnr", tree)
    assert.truthy(out:find(tree .. "/a/b/c/deep.txt:3:needle again, no newline at the end\n", 1, true))
    assert.truthy(out:find(tree .. "/dir with spaces/file with spaces.txt:1:a needle with spaces\n", 1, true))
    assert.is_nil(out:find("link to deep", 1, true))
  end)

  it_("searches the files named, in any number", function()
    check("needle", "-Hn", tree .. "/a/top.txt", tree .. "/readonly.txt", tree .. "/big.txt")
    check("x", "-H", tree .. "/a/size1", tree .. "/a/size64")
  end)

  it_("prints each file's lines in one piece, in order", function()
    local out = run("grep", "-rn", "e", LUA)
    local seen, current, last = {}, nil, 0
    local n = 0
    for line in out:gmatch("[^\n]+") do
      local path, num = line:match("^(.-):(%d+):")
      assert.truthy(path, line)
      num = tonumber(num)
      if path ~= current then
        assert.is_nil(seen[path], path .. " printed in two pieces")
        seen[path], current, last = true, path, 0
      end
      assert.is_true(num > last)
      last = num
      n = n + 1
    end
    assert.is_true(n > 1000)
  end)

  it_("exits 1 when nothing matches, 0 when something does", function()
    local out, err, code = run("grep", "-r", "no such text anywhere", tree)
    assert.equal("", out .. err)
    assert.equal(1, code)
    code = select(3, run("grep", "needle", tree .. "/a/top.txt"))
    assert.equal(0, code)
  end)

  it_("exits 2 on a missing file or a directory without -r, after the other files", function()
    local out, err, code = run("grep", "needle", tmp .. "/nope", tree .. "/a/top.txt")
    assert.equal(2, code)
    assert.equal("grep: " .. tmp .. "/nope: No such file or directory\n", err)
    assert.equal(tree .. "/a/top.txt:needle in a\n", out)
    out, err, code = run("grep", "needle", tree)
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("grep: " .. tree .. ": Is a directory\n", err)
  end)

  it_("exits 2 on a malformed pattern", function()
    local out, err, code = run("grep", "[a", tree .. "/a/top.txt")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("^grep: .*malformed pattern", err)
  end)

  it_("prints usage and exits 2 on bad usage", function()
    for _, args in ipairs { {}, { "pattern" }, { "-z", "x", tree }, { "-r" } } do
      local out, err, code = run("grep", table.unpack(args))
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("usage: grep [-n] [-r] [-p N] PATTERN PATH...", err, 1, true)
    end
  end)
end)

describe("examples/du.lua", function()
  it_("prints what du -s prints, for one path and several (hard links counted once)", function()
    local src = tmp .. "/dutree"
    local _, err, code = sh("mkdir -p " .. q(src .. "/a/b") .. " && cd " .. q(src)
      .. " && head -c 100000 /dev/zero > a/big && ln a/big a/b/again && ln a/big twice"
      .. " && echo x > a/b/small && ln -s a link && mkfifo a/pipe")
    assert(code == 0, err)
    for _, args in ipairs { { LUA }, { src }, { src .. "/a", src }, { LUA, tree } } do
      local want = sh("du -s " .. table.concat((function()
        local t = {}
        for i, a in ipairs(args) do t[i] = q(a) end
        return t
      end)(), " "))
      local out, derr, dcode = run("du", table.unpack(args))
      assert.equal("", derr)
      assert.equal(0, dcode)
      assert.equal(want, out)
    end
  end)

  it_("-x stays on the file system; an unknown option exits 2", function()
    assert.equal((sh("du -sx " .. q(LUA))), (run("du", "-x", LUA)))
    local _, err, code = run("du", "-Z", LUA)
    assert.equal(2, code)
    assert.matches("unknown option %-Z", err)
  end)
end)

describe("examples/xargs.lua", function()
  -- Both tools on the same input and command: sorted output lines (with -P
  -- the order is the finishing order) and the exit status.
  local function both(input, ...)
    local args = {}
    for i = 1, select("#", ...) do args[i] = q((select(i, ...))) end
    local file = tmp .. "/xargs.in"
    write(file, input)
    local a, aerr, acode = sh("xargs " .. table.concat(args, " ") .. " < " .. q(file))
    local b, berr, bcode = sh(ENV .. "lua5.4 " .. q(examples .. "/xargs.lua") .. " " .. table.concat(args, " ") .. " < " .. q(file))
    assert.same(lines_sorted(a), lines_sorted(b))
    assert.same(lines_sorted(aerr), lines_sorted(berr))
    assert.equal(acode, bcode)
    return b, bcode
  end

  it_("splits and quotes input as GNU xargs: blanks, quotes, backslashes, -0, -d", function()
    both("a b\nc \"d e\" 'f g' h\\ i\n")
    both("x\0y z\0", "-0")
    both("a b\nc d\n", "-d", "\\n")
    both("", "echo", "nothing")
    both("", "-r", "echo", "nothing")
    both("a \"b", "echo") -- unmatched quote: what came before runs, status 1
  end)

  it_("-n and -P: the same commands, N at a time", function()
    local items = {}
    for i = 1, 200 do items[i] = "item" .. i end
    local input = table.concat(items, "\n") .. "\n"
    both(input, "-n", "3", "echo", "x")
    local out = both(input, "-P", "8", "-n", "1", "sh", "-c", "sleep 0.0$(($$ % 3)); echo $0")
    assert.equal(200, count_lines(out))
    both(input, "-P", "0", "-n", "7", "echo")
  end)

  it_("exit status: 123, 124, 125, 126, 127 as GNU xargs", function()
    local _, code = both("1 2 3\n", "-n", "1", "sh", "-c", "exit $0")
    assert.equal(123, code)
    _, code = both("255 3\n", "-n", "1", "sh", "-c", "exit $0")
    assert.equal(124, code)
    _, code = both("1 2\n", "-n", "1", "sh", "-c", "kill -9 $$")
    assert.equal(125, code)
    _, code = both("a\n", "/etc/passwd")
    assert.equal(126, code)
    _, code = both("a\n", "no-such-command-fiberio")
    assert.equal(127, code)
    _, code = both("a b\n", "-P", "4", "-n", "1", "true")
    assert.equal(0, code)
  end)

  it_("bad usage exits 1 with a message", function()
    local _, err, code = sh(ENV .. "lua5.4 " .. q(examples .. "/xargs.lua") .. " -P x echo < /dev/null")
    assert.equal(1, code)
    assert.matches("invalid number for %-P", err)
  end)
end)

describe("examples/tail.lua", function()
  local function lines(a, b)
    local t = {}
    for i = a, b do t[#t + 1] = ("line %d of the log"):format(i) end
    return table.concat(t, "\n") .. "\n"
  end
  local function append(path, s)
    local f = assert(io.open(path, "ab"))
    f:write(s)
    f:close()
  end

  it_("-n N prints the last lines as tail -n does", function()
    local f = tmp .. "/tailn"
    write(f, lines(1, 30000) .. "no newline at the end")
    for _, n in ipairs { 0, 1, 10, 29999, 40000 } do
      local want = sh("tail -n " .. n .. " " .. q(f))
      local out, err, code = run("tail", "-n", tostring(n), f)
      assert.equal("", err)
      assert.equal(0, code)
      assert.equal(want, out)
    end
    local _, err, code = run("tail", tmp .. "/nope")
    assert.equal(1, code)
    assert.matches("cannot open", err)
  end)

  -- Start tail -f and tail.lua -f (flags) on path in the background; stop()
  -- ends both and returns their stdout and stderr.
  local function both(flags, path)
    local tag = path:match("[^/]*$")
    sh("cd " .. q(tmp) .. " && (tail " .. flags .. " " .. q(path) .. " > " .. tag .. ".ref.out 2> " .. tag .. ".ref.err & echo $! > " .. tag .. ".ref.pid)")
    sh("cd " .. q(tmp) .. " && (" .. ENV .. "lua5.4 " .. q(examples .. "/tail.lua") .. " " .. flags .. " " .. q(path)
      .. " > " .. tag .. ".mine.out 2> " .. tag .. ".mine.err & echo $! > " .. tag .. ".mine.pid)")
    fio.sleep(0.5)
    -- (GNU tail started with & by sh ignores SIGINT: TERM for it)
    local function kill_both()
      for who, sig in pairs { ref = "TERM", mine = "INT" } do
        helper.sh("kill -" .. sig .. " $(cat " .. q(tmp .. "/" .. tag .. "." .. who .. ".pid") .. ") 2>/dev/null")
      end
    end
    finally(kill_both) -- (a failing spec leaves neither running)
    return function()
      fio.sleep(1.5) -- (GNU tail looks at least once a second)
      kill_both()
      fio.sleep(0.3)
      local r = {}
      for _, who in ipairs { "ref", "mine" } do
        r[who] = { helper.get(tmp .. "/" .. tag .. "." .. who .. ".out"), helper.get(tmp .. "/" .. tag .. "." .. who .. ".err") }
      end
      return r
    end
  end

  it_("-f follows 50,000 appended lines and a truncation as tail -f", function()
    local f = tmp .. "/follow.log"
    write(f, lines(1, 100))
    local stop = both("-f", f)
    for b = 0, 9 do
      append(f, lines(101 + b * 5000, 100 + (b + 1) * 5000))
      fio.sleep(0.02)
    end
    fio.sleep(1.2)
    write(f, "after the truncation\n")
    local r = stop()
    assert.equal(r.ref[1], r.mine[1])
    assert.equal(10 + 50000 + 1, count_lines(r.mine[1]))
    assert.equal("tail: " .. f .. ": file truncated\n", r.mine[2])
    assert.equal(r.ref[2], r.mine[2])
  end)

  it_("-F follows the name through a rotation (rename, new file) as tail -F", function()
    local f = tmp .. "/rotate.log"
    write(f, lines(1, 5))
    local stop = both("-F", f)
    append(f, lines(6, 8))
    fio.sleep(0.3)
    -- (the rotation as one step for the name, which never goes missing: a
    -- follower that looked between a rename and a create would rightly
    -- say "has become inaccessible", and when it looks is its own affair)
    write(f .. ".new", lines(100, 102))
    helper.sh("ln " .. q(f) .. " " .. q(f .. ".1"))
    assert(os.rename(f .. ".new", f))
    fio.sleep(1.5)
    append(f .. ".1", lines(9, 9)) -- (the old file, no longer followed)
    append(f, lines(103, 104))
    local r = stop()
    assert.equal(lines(1, 8) .. lines(100, 104), r.mine[1])
    assert.equal(r.ref[1], r.mine[1])
    assert.matches("following new file\n$", r.mine[2])
    assert.equal(r.ref[2], r.mine[2])
  end)
end)

describe("examples/onchange.lua", function()
  it_("runs CMD once per burst of changes, again after the next change; Ctrl-C ends it", function()
    local w, count = tmp .. "/watched", tmp .. "/count"
    mkdir(w)
    sh("cd " .. q(tmp) .. " && (" .. ENV .. "lua5.4 " .. q(examples .. "/onchange.lua") .. " " .. q(w)
      .. " -- sh -c " .. q("echo run >> " .. q(count)) .. " > onchange.out 2> onchange.err & echo $! > onchange.pid)")
    fio.sleep(0.4)
    for k = 1, 50 do write(w .. "/f" .. k, tostring(k)) end
    fio.sleep(0.6)
    assert.equal("run\n", helper.get(count))
    sh("mkdir -p " .. q(w .. "/new/deeper"))
    fio.sleep(0.3)
    write(w .. "/new/deeper/g", "x")
    fio.sleep(0.6)
    sh("kill -INT $(cat " .. q(tmp .. "/onchange.pid") .. ")")
    fio.sleep(0.3)
    local runs = count_lines(helper.get(count))
    assert.is_true(runs == 2 or runs == 3, "runs: " .. runs) -- (the mkdir and the write: one burst or two)
    assert.matches("^onchange: run 1\nonchange: run 2\n", helper.get(tmp .. "/onchange.err"))
    -- ended (a zombie of PID 1, which may not reap here, counts)
    local pid = helper.get(tmp .. "/onchange.pid"):match("%d+")
    local state
    local deadline = fio.now() + helper.bound(5)
    repeat
      local stat = io.open("/proc/" .. pid .. "/stat")
      state = stat and stat:read("a"):match("%) (%a)")
      if stat then stat:close() end
      if state == nil or state == "Z" then break end
      fio.sleep(0.05)
    until fio.now() > deadline
    assert.is_true(state == nil or state == "Z", "still running: " .. tostring(state))
  end)

  it_("a change during a run stops it and runs again", function()
    local w, log = tmp .. "/watched2", tmp .. "/log2"
    mkdir(w)
    sh("cd " .. q(tmp) .. " && (" .. ENV .. "lua5.4 " .. q(examples .. "/onchange.lua") .. " " .. q(w)
      .. " -- sh -c " .. q("echo start >> " .. q(log) .. "; sleep 2; echo done >> " .. q(log))
      .. " > onchange2.out 2> onchange2.err & echo $! > onchange2.pid)")
    fio.sleep(0.4)
    write(w .. "/a", "1")
    fio.sleep(0.5) -- run 1 sleeping
    write(w .. "/b", "2")
    fio.sleep(2.8) -- run 2 ends
    sh("kill -INT $(cat " .. q(tmp .. "/onchange2.pid") .. ")")
    fio.sleep(0.2)
    assert.equal("start\nstart\ndone\n", helper.get(log))
  end)
end)

describe("examples/serve.lua and examples/fetch.lua", function()
  local www, port, server

  -- One request (or several, pipelined) in raw HTTP; the whole answer, up
  -- to the server's close.
  local function http(req)
    local s = assert(fio.connect("127.0.0.1", port))
    assert(s:write(req))
    local out = s:read("a")
    s:close()
    return out
  end
  local function get(path, extra)
    return http("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n" .. (extra or "") .. "Connection: close\r\n\r\n")
  end
  local function status_of(resp) return tonumber(resp:match("^HTTP/1%.1 (%d+)")) end
  local function body_of(resp) return resp:match("\r\n\r\n(.*)$") end

  lazy_setup(function()
    if unavailable then return end
    www = tmp .. "/www"
    mkdir(www)
    mkdir(www .. "/sub")
    mkdir(www .. "/withindex")
    write(www .. "/f4k", ("0123456789abcdef"):rep(256))
    write(www .. "/sub/a.txt", "hello\n")
    write(www .. "/withindex/index.html", "<p>index</p>\n")
    write(tmp .. "/secret", "secret\n")
    assert(fio.symlink(tmp .. "/secret", www .. "/out"))
    assert(fio.symlink("sub/a.txt", www .. "/in"))
    server = assert(fio.spawn({ "sh", "-c", ENV .. "exec lua5.4 " .. q(examples .. "/serve.lua")
      .. " " .. q(www) .. " 0" }, { stderr = "pipe" }))
    local line = assert(server.stderr:read("l"))
    port = tonumber(line:match(":(%d+)/$"))
    assert(port, line)
  end)

  lazy_teardown(function()
    if server then
      server:kill()
      server:wait()
      server:close()
    end
  end)

  it_("serves a file whole, HEAD without its body, 404 for what is not there", function()
    local r = get("/f4k")
    assert.equal(200, status_of(r))
    assert.equal(helper.get(www .. "/f4k"), body_of(r))
    assert.matches("\r\nContent%-Length: 4096\r\n", r)
    assert.matches("\r\nLast%-Modified: %a+, %d+ %a+ %d+ [%d:]+ GMT\r\n", r)
    r = http("HEAD /f4k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.equal(200, status_of(r))
    assert.matches("\r\nContent%-Length: 4096\r\n", r)
    assert.equal("", body_of(r))
    assert.equal(404, status_of(get("/nothing")))
    assert.equal(405, status_of(http("POST /f4k HTTP/1.1\r\nConnection: close\r\n\r\n")))
  end)

  it_("refuses paths out of DIR: .., its encoded forms, a symlink pointing outside", function()
    for _, path in ipairs { "/../secret", "/%2e%2e/secret", "/sub/%2E%2E/%2e%2e/secret", "/sub/..%2f..%2fsecret",
      "/out" } do
      local r = get(path)
      assert.equal(403, status_of(r), path)
      assert.is_nil(r:find("secret\n", 1, true), path)
    end
    assert.equal("hello\n", body_of(get("/in"))) -- (a symlink within DIR is fine)
  end)

  it_("ranges, If-Modified-Since, keep-alive", function()
    local r = get("/f4k", "Range: bytes=16-31\r\n")
    assert.equal(206, status_of(r))
    assert.equal("0123456789abcdef", body_of(r))
    assert.matches("\r\nContent%-Range: bytes 16%-31/4096\r\n", r)
    assert.equal("cdef", body_of(get("/f4k", "Range: bytes=-4\r\n")))
    assert.equal(416, status_of(get("/f4k", "Range: bytes=5000-\r\n")))
    local lm = get("/f4k"):match("\r\nLast%-Modified: ([^\r]+)")
    r = get("/f4k", "If-Modified-Since: " .. lm .. "\r\n")
    assert.equal(304, status_of(r))
    assert.equal("", body_of(r))
    assert.equal(200, status_of(get("/f4k", "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n")))
    -- two requests on one connection (pipelined), the second closing it
    r = http("GET /sub/a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /in HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local n = 0
    for _ in r:gmatch("HTTP/1%.1 200 OK") do n = n + 1 end
    assert.equal(2, n)
    -- HTTP/1.0 closes after one
    r = http("GET /sub/a.txt HTTP/1.0\r\n\r\n")
    assert.equal(200, status_of(r))
    assert.matches("\r\nConnection: close\r\n", r)
  end)

  it_("directories: a redirect to DIR/, the index.html, else a listing", function()
    local r = get("/sub")
    assert.equal(301, status_of(r))
    assert.matches("\r\nLocation: /sub/\r\n", r)
    assert.equal("<p>index</p>\n", body_of(get("/withindex/")))
    r = get("/sub/")
    assert.equal(200, status_of(r))
    assert.matches('<a href="a.txt">a.txt</a>', r)
    assert.matches('<a href="sub/">sub/</a>', get("/"))
  end)

  it_("-w 2: two threads, each with its own listener on the one port, serve together", function()
    local two = assert(fio.spawn({ "sh", "-c", ENV .. "exec lua5.4 " .. q(examples .. "/serve.lua")
      .. " -w 2 " .. q(www) .. " 0" }, { stderr = "pipe" }))
    local p2 = tonumber(assert(two.stderr:read("l")):match(":(%d+)/$"))
    local listeners
    local deadline = fio.now() + helper.bound(5)
    repeat -- (the second worker's listener comes up in its thread)
      listeners = 0
      for line in io.lines("/proc/net/tcp") do
        local lport, state = line:match("^%s*%d+: %x+:(%x+) %x+:%x+ (%x+)")
        if lport and tonumber(lport, 16) == p2 and state == "0A" then listeners = listeners + 1 end
      end
      if listeners < 2 then fio.sleep(0.05) end
    until listeners >= 2 or fio.now() > deadline
    assert.equal(2, listeners)
    local g = fio.group()
    local ok = 0
    for _ = 1, 50 do
      g:async(function()
        local s = assert(fio.connect("127.0.0.1", p2))
        s:settimeout(helper.bound(10)) -- (a worker that never answers: a failure, not a hang)
        s:write("GET /sub/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if (s:read("a") or ""):match("\r\n\r\nhello\n$") then ok = ok + 1 end
        s:close()
      end)
    end
    g:wait()
    two:kill()
    two:wait()
    two:close()
    assert.equal(50, ok)
  end)

  it_("fetch.lua gets many URLs at once, in order on stdout; a failure is reported, exit 1", function()
    local base = "http://127.0.0.1:" .. port
    local out, err, code = run("fetch", base .. "/f4k", base .. "/sub/a.txt", base .. "/in")
    assert.same({ helper.get(www .. "/f4k") .. "hello\nhello\n", "", 0 }, { out, err, code })
    out, err, code = run("fetch", base .. "/sub/a.txt", base .. "/nothing", "http://127.0.0.1:1/")
    assert.equal("hello\n", out)
    assert.equal(1, code)
    assert.matches("fetch: " .. base:gsub("%p", "%%%0") .. "/nothing: 404 Not Found\n", err)
    assert.matches("fetch: http://127.0.0.1:1/: 127.0.0.1:1: Connection refused\n", err)
    -- a redirect followed; -o saves each by its name
    local dest = tmp .. "/fetched"
    mkdir(dest)
    out, err, code = run("fetch", "-o", dest, base .. "/sub", base .. "/f4k")
    assert.same({ "", "", 0 }, { out, err, code })
    assert.equal(helper.get(www .. "/f4k"), helper.get(dest .. "/f4k"))
    assert.matches("Index of /sub/", helper.get(dest .. "/sub"))
    -- 100 URLs, 8 at a time
    local urls = {}
    for k = 1, 100 do urls[k] = base .. (k % 2 == 0 and "/sub/a.txt" or "/in") end
    out, err, code = run("fetch", "-c", "8", table.unpack(urls))
    assert.same({ ("hello\n"):rep(100), "", 0 }, { out, err, code })
  end)
end)

describe("the example tools as command-line tools", function()
  local TOOLS = { "cptree", "treesum", "du", "grep", "xargs", "tail", "onchange", "fetch", "serve" }

  it_("--help: the usage on stdout, exit 0; --version: fiberio's version", function()
    local version = fio._VERSION:match("%S+$")
    for _, tool in ipairs(TOOLS) do
      local out, err, code = run(tool, "--help")
      assert.same({ "", 0 }, { err, code }, tool)
      assert.matches("^usage: " .. tool .. " ", out, 1, false)
      out, err, code = run(tool, "--version")
      assert.same({ tool .. ".lua (fiberio's examples) " .. version .. "\n", "", 0 }, { out, err, code })
    end
    -- (xargs: an option of CMD is CMD's)
    local out, _, code = sh("printf 'a\\n' | " .. ENV .. "lua5.4 " .. q(examples .. "/xargs.lua") .. " echo --help")
    assert.same({ "--help a\n", 0 }, { out, code })
  end)

  it_("bad usage: 'prog: message' and the usage line on stderr, the coreutils' exit status", function()
    local _, err, code = run("du", "-Z")
    assert.same({ "du: unknown option -Z\nusage: du [-q] [-x] PATH...\n", 2 }, { err, code })
    _, err, code = run("treesum")
    assert.equal(2, code)
    assert.matches("^treesum: ROOT expected\nusage: treesum ", err)
    _, err, code = run("tail", tmp .. "/no/such/file")
    assert.equal(1, code)
    assert.matches("^tail: cannot open '.*' for reading: No such file or directory\n$", err)
  end)

  it_("a progress line on stderr on a terminal (cptree, treesum, du); none when redirected or with -q", function()
    if not sh("command -v script"):match("%S") then return pending("script(1) is not installed (bsdutils)") end
    -- script(1) runs the command on a pseudo-terminal and copies what it
    -- shows: stdout and stderr together
    local function on_tty(cmd)
      local out = sh("script -qec " .. q(ENV .. cmd) .. " /dev/null")
      return out
    end
    local lua = "lua5.4 " .. q(examples) .. "/"
    local dst = tmp .. "/progress-copy"
    for _, case in ipairs {
      { "treesum.lua " .. q(tree) .. " >/dev/null", "treesum.lua -q " .. q(tree) .. " >/dev/null" },
      { "du.lua " .. q(tree), "du.lua -q " .. q(tree) },
      { "cptree.lua " .. q(tree) .. " " .. q(dst), "cptree.lua -q " .. q(tree) .. " " .. q(dst) },
    } do
      helper.rmtree(dst)
      local shown = on_tty(lua .. case[1])
      assert.matches("\r%d+ files, [%d.]+ %a+, [%d.]+ %a+/s, [%d.]+ s\27%[K", shown, 1, false)
      assert.matches("\r\27%[K", shown, 1, false) -- (erased at the end)
      helper.rmtree(dst)
      local quiet = on_tty(lua .. case[2])
      assert.is_nil(quiet:find("\r%d+ files, "), case[2])
      helper.rmtree(dst)
      local _, err = sh(ENV .. lua .. case[1])
      assert.is_nil(err:find("\r", 1, true), case[1])
    end
    helper.rmtree(dst)
  end)
end)
