-- fetch.lua — plain-HTTP GET of many URLs at once.
--
--   lua5.4 examples/fetch.lua [-c N] [-o DIR] URL...
--
-- Fetches every URL (http://host[:port]/path; no https), N at a time
-- (default 16), following redirects (up to 5). Without -o the bodies go to
-- stdout, each whole and in the order of the arguments (as `curl URL...`
-- prints them); with -o DIR each is saved as DIR/NAME, NAME the last part
-- of its path ("index.html" when that is empty).
--
-- A URL that fails (no connection, a status other than 2xx, a body cut
-- short) is reported as "fetch: URL: message" on stderr, and the exit
-- status is 1; the others are still fetched.
local fio = require "fiberio"

local PROG = "fetch"
local MAX_REDIRECTS = 5

local USAGE, ABOUT = "[-c N] [-o DIR] URL...",
  "  GET each http:// URL, N at a time (default 16), redirects followed; the\n" ..
  "  bodies to stdout in order, or each to DIR/NAME with -o"
local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg)

local usage = cli.usage(PROG, USAGE)

-- "http://host:port/path?q" -> host, port, "/path?q"; nil, msg if not one.
local function parse_url(url)
  local rest = url:match("^[hH][tT][tT][pP]://(.+)$")
  if not rest then return nil, "not an http:// URL" end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  path = path:gsub("#.*$", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$") -- [v6]:port
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host then return nil, "no host" end
  port = port ~= "" and tonumber(port) or 80
  if port > 65535 then return nil, "bad port" end
  return host, port, path
end

-- Read a chunked body from s into t; true, or nil, msg.
local function read_chunked(s, t)
  while true do
    local line = s:read("l")
    if not line then return nil, "body cut short" end
    local n = tonumber(line:match("^%x+"), 16)
    if not n then return nil, "bad chunk" end
    if n == 0 then
      repeat line = s:read("l") until not line or line == "" or line == "\r" -- (trailers)
      return true
    end
    local data = s:read(n)
    if not data or #data < n then return nil, "body cut short" end
    t[#t + 1] = data
    s:read("l") -- (the CRLF after each chunk)
  end
end

-- GET url: body, or nil, msg (following redirects).
local function get(url, redirects)
  local host, port, path = parse_url(url)
  if not host then return nil, port end
  local s, msg = fio.connect(host, port, { timeout = 30 })
  if not s then return nil, msg end
  local hosthdr = (host:find(":") and "[" .. host .. "]" or host) .. (port ~= 80 and ":" .. port or "")
  s:setvbuf("full")
  s:write("GET ", path, " HTTP/1.1\r\nHost: ", hosthdr,
    "\r\nUser-Agent: fiberio-fetch\r\nAccept: */*\r\nConnection: close\r\n\r\n")
  local ok, werr = s:flush()
  if not ok then s:close(); return nil, werr end
  local status = s:read("l")
  if not status then s:close(); return nil, "no response" end
  local code, reason = status:match("^HTTP/1%.[01] (%d%d%d) ?(.-)\r?$")
  if not code then s:close(); return nil, "not an HTTP response" end
  code = tonumber(code)
  local headers = {}
  while true do
    local h = s:read("l")
    if not h then s:close(); return nil, "headers cut short" end
    if h == "" or h == "\r" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*\r?$")
    if k then headers[k:lower()] = v end
  end
  if code >= 300 and code < 400 and headers.location then
    s:close()
    if redirects >= MAX_REDIRECTS then return nil, "too many redirects" end
    local loc = headers.location
    if not loc:match("^[hH][tT][tT][pP]://") then
      loc = loc:sub(1, 1) == "/" and ("http://" .. hosthdr .. loc)
        or ("http://" .. hosthdr .. path:gsub("[^/]*$", "") .. loc)
    end
    return get(loc, redirects + 1)
  end
  local t = {}
  local len = tonumber(headers["content-length"] or "")
  local err
  if (headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    ok, err = read_chunked(s, t)
  elseif len then
    local body = len > 0 and s:read(len) or ""
    if not body or #body < len then ok, err = nil, "body cut short" else t[1] = body; ok = true end
  else
    t[1] = s:read("a") -- (until the server closes)
    ok = t[1] ~= nil
    err = "read failed"
  end
  s:close()
  if not ok then return nil, err end
  if code < 200 or code > 299 then return nil, code .. " " .. reason end
  return table.concat(t)
end

-- The arguments.
local args, i = { ... }, 1
local conc, outdir = 16, nil
local urls = {}
while args[i] do
  local a = args[i]
  if a == "-c" then
    conc = math.tointeger(tonumber(args[i + 1] or "")) or usage("-c needs a number")
    if conc < 1 then usage("-c needs a number of at least 1") end
    i = i + 2
  elseif a == "-o" then
    outdir = args[i + 1] or usage("-o needs a directory")
    i = i + 2
  elseif a:sub(1, 1) == "-" then
    usage("unknown option " .. a)
  else
    urls[#urls + 1] = a
    i = i + 1
  end
end
if #urls == 0 then usage("no URL") end

local status = 0
fio.run(function()
  local slots = fio.semaphore(conc)
  local results = {} -- [i] = future of body, or nil, msg
  for k, url in ipairs(urls) do
    results[k] = fio.async(function()
      slots:acquire()
      local body, msg = get(url, 0)
      slots:release()
      if body and outdir then
        local name = url:match("^[^?#]*/([^/?#]*)") or ""
        if name == "" then name = "index.html" end
        local ok, werr = fio.writefile(outdir .. "/" .. name, body)
        if not ok then return nil, werr end
        return true
      end
      return body, msg
    end)
  end
  for k, f in ipairs(results) do -- (in order: stdout gets each body whole)
    local body, msg = f:await()
    if not body then
      io.stderr:write(PROG, ": ", urls[k], ": ", tostring(msg), "\n")
      status = 1
    elseif not outdir then
      io.stdout:write(body)
    end
  end
end)
io.stdout:flush()
os.exit(status)
