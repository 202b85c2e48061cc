-- Make the input of bench/readfiles.*: N files of SIZE bytes named DIR/0 ..
-- DIR/N-1 (DIR must exist). Plain Lua io, so it needs nothing under test.
--
--   lua5.4 bench/mkfiles.lua DIR [N [SIZE]]    defaults 10000 4096
local dir = assert(arg[1], "usage: lua5.4 bench/mkfiles.lua DIR [N [SIZE]]")
local n = math.tointeger(tonumber(arg[2] or "10000"))
local size = math.tointeger(tonumber(arg[3] or "4096"))
assert(n and n > 0 and size and size >= 0, "bad N or SIZE")
-- Different bytes in every file (its index, then a pattern), so no two are
-- alike, though nothing here depends on that.
local pattern = {}
for i = 0, 255 do pattern[#pattern + 1] = string.char((i * 97 + 13) % 256) end
pattern = string.rep(table.concat(pattern), size // 256 + 1)
for i = 0, n - 1 do
  local head = i .. "\n"
  local body = (head .. pattern):sub(1, size)
  local f = assert(io.open(dir .. "/" .. i, "wb"))
  assert(f:write(body))
  assert(f:close())
end
