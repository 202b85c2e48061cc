-- The release (issue 19): make dist's source rock installs with luarocks
-- into a fresh tree, with no network, and the installed fiberio loads
-- from outside the checkout, its editor types installed with it.
local helper = require "helper"
local q = helper.shquote

describe("make dist", function()
  it("gives a source rock that luarocks installs offline into a new tree", function()
    if helper.wanted_backend() == "threads" then
      return pending("the same on both backends: run on the io_uring pass only")
    end
    for _, tool in ipairs { "git", "zip", "luarocks", "gcc" } do
      if not helper.sh("command -v " .. tool):match("%S") then
        return pending(tool .. " is not installed (make dist installs zip; make deps the others)")
      end
    end
    local _, _, incheckout = helper.sh("git rev-parse --is-inside-work-tree")
    if incheckout ~= 0 then return pending("not a git checkout: make dist archives HEAD") end
    local dir = helper.mktempdir("dist")
    local out, err, code = helper.sh("DIST_DIR=" .. q(dir) .. " sh tools/dist.sh")
    assert.equal(0, code, out .. err)
    local rock = dir .. "/fiberio-0.1.0-1.src.rock"
    assert.is_true(helper.exists(rock))
    out, err, code = helper.sh("cd " .. q(dir) .. " && luarocks --lua-version 5.4 --tree " .. q(dir .. "/tree")
      .. " install " .. q(rock))
    assert.equal(0, code, out .. err)
    assert.matches("fiberio 0.1.0%-1 is now installed", out)
    -- from outside the checkout, with only the tree's paths
    out, err, code = helper.sh("cd " .. q(dir) .. " && eval \"$(luarocks --lua-version 5.4 --tree "
      .. q(dir .. "/tree") .. " path)\" && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 -e "
      .. q('local fio = require "fiberio"; print(fio._VERSION, package.searchpath("fiberio", package.path));'
        .. ' print(fio.run(function() return fio.stat("/").type end))'))
    assert.equal(0, code, out .. err)
    assert.matches("^fiberio 0%.1%.0\t" .. dir:gsub("%p", "%%%0") .. "/tree/", out)
    assert.matches("\ndirectory\n$", out)
    assert.is_true(helper.exists(dir .. "/tree/lib/luarocks/rocks-5.4/fiberio/0.1.0-1/library/fiberio.lua"))
    assert.is_true(helper.exists(dir .. "/tree/lib/luarocks/rocks-5.4/fiberio/0.1.0-1/docs/REFERENCE.md"))
    helper.rmtree(dir)
  end)
end)
