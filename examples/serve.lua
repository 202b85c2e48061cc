-- serve.lua — a static HTTP/1.1 file server.
--
--   lua5.4 examples/serve.lua [-b HOST] [-w N] DIR [PORT]
--
-- Serves the files below DIR on http://HOST:PORT/ (HOST 127.0.0.1, PORT
-- 8000 by default; PORT 0: any free port). Says where on stderr, one line:
-- "serve: DIR at http://HOST:PORT/". -w N: N threads, each a loop with its
-- own listener on the same port (SO_REUSEPORT: the kernel spreads the
-- connections), as nginx's worker processes.
--
-- HTTP: GET and HEAD; keep-alive (HTTP/1.1's default; HTTP/1.0 with
-- "Connection: keep-alive"); one byte range ("Range: bytes=a-b", "a-",
-- "-n": 206, or 416); If-Modified-Since (304); a directory's index.html,
-- or a listing; "/dir" redirected to "/dir/".
--
-- Safe: the path is decoded first, then any ".." segment is refused (403),
-- so "/../x" and "/%2e%2e/x" are; so is a file whose real path (symbolic
-- links followed) is outside DIR.
--
-- Each request: a stat, a realpath and a readfile of the file (or a read
-- loop for one over 1 MiB), and one write of head and body together.
local PROG = "serve"

-- The server, in a function that a worker thread can run too (fio.parallel
-- copies no upvalues: it requires what it uses).
local function serve(root, host, port, reuseport, quiet, srv)
  local fio = require "fiberio"
  local msg
  if not srv then
    srv, msg = fio.listen(host, port, { reuseport = reuseport })
    if not srv then return nil, msg end
  end
  local rootreal = assert(fio.realpath(root))
  local _, bound = srv:getsockname()
  if not quiet then
    io.stderr:write(PROG, ": ", root, " at http://", host:find(":") and "[" .. host .. "]" or host,
      ":", bound, "/\n")
  end

  local TYPES = {
    html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
    txt = "text/plain; charset=utf-8", css = "text/css", js = "text/javascript",
    json = "application/json", png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg",
    gif = "image/gif", svg = "image/svg+xml", pdf = "application/pdf", lua = "text/plain; charset=utf-8",
    md = "text/plain; charset=utf-8", c = "text/plain; charset=utf-8", h = "text/plain; charset=utf-8",
  }
  local STATUS = {
    [200] = "OK", [206] = "Partial Content", [301] = "Moved Permanently", [304] = "Not Modified",
    [400] = "Bad Request", [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
    [416] = "Range Not Satisfiable", [500] = "Internal Server Error",
  }
  local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
    Oct = 10, Nov = 11, Dec = 12 }
  local BIG = 1 << 20 -- files over this are sent in pieces

  local function httpdate(t) return os.date("!%a, %d %b %Y %H:%M:%S GMT", t) end

  -- "Sun, 06 Nov 1994 08:49:37 GMT" -> seconds since the epoch, or nil.
  local function parsedate(s)
    local d, mon, y, h, mi, sec = s:match("^%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT$")
    if not d or not MONTHS[mon] then return nil end
    -- (days since the epoch by the civil calendar: no time zone involved)
    y, mon = tonumber(y), MONTHS[mon]
    local yy = mon <= 2 and y - 1 or y
    local era = yy // 400
    local yoe = yy - era * 400
    local doy = (153 * (mon + (mon > 2 and -3 or 9)) + 2) // 5 + tonumber(d) - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    local days = era * 146097 + doe - 719468
    return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
  end

  local date, date_at = nil, -1
  local function now_date()
    local t = os.time()
    if t ~= date_at then date, date_at = httpdate(t), t end
    return date
  end

  local function html_escape(s)
    return (s:gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
  end

  local function url_escape(s)
    return (s:gsub("[^%w%-._~/]", function(c) return ("%%%02X"):format(c:byte()) end))
  end

  -- Send status with headers (a table of lines) and body; HEAD: no body.
  local function respond(c, head, status, headers, body, keep, length)
    local t = { "HTTP/1.1 ", status, " ", STATUS[status], "\r\nServer: fiberio-serve\r\nDate: ",
      now_date(), "\r\n" }
    for _, h in ipairs(headers) do t[#t + 1] = h; t[#t + 1] = "\r\n" end
    if status ~= 304 then
      t[#t + 1] = "Content-Length: " .. (length or #body) .. "\r\n"
    end
    if not keep then t[#t + 1] = "Connection: close\r\n" end
    t[#t + 1] = "\r\n"
    if not head and body then t[#t + 1] = body end
    return c:write(table.concat(t))
  end

  local function fail(c, head, status, keep)
    local body = ("<html><body><h1>%d %s</h1></body></html>\n"):format(status, STATUS[status])
    return respond(c, head, status, { "Content-Type: text/html; charset=utf-8" }, body, keep)
  end

  local function listing(c, head, path, urlpath, keep)
    local it = fio.scandir(path)
    if not it then return fail(c, head, 403, keep) end
    local names, isdir = {}, {}
    for name, type in it do
      names[#names + 1] = name
      isdir[name] = type == "directory"
    end
    table.sort(names)
    local t = { "<html><head><title>Index of ", html_escape(urlpath), "</title></head><body><h1>Index of ",
      html_escape(urlpath), "</h1><ul>\n" }
    if urlpath ~= "/" then t[#t + 1] = '<li><a href="../">../</a></li>\n' end
    for _, name in ipairs(names) do
      local shown = name .. (isdir[name] and "/" or "")
      t[#t + 1] = ('<li><a href="%s">%s</a></li>\n'):format(url_escape(shown), html_escape(shown))
    end
    t[#t + 1] = "</ul></body></html>\n"
    return respond(c, head, 200, { "Content-Type: text/html; charset=utf-8" }, table.concat(t), keep)
  end

  -- The byte range asked for a file of size n: first, last (0-based,
  -- inclusive); false: not satisfiable; nil: none (or not one we serve).
  local function range_of(h, n)
    if not h then return nil end
    local a, b = h:match("^bytes=(%d*)-(%d*)$")
    if not a or (a == "" and b == "") then return nil end
    if a == "" then -- the last b bytes
      local k = tonumber(b)
      if k == 0 or n == 0 then return false end
      return math.max(n - k, 0), n - 1
    end
    a = tonumber(a)
    b = b == "" and n - 1 or math.min(tonumber(b), n - 1)
    if a >= n or a > b then return false end
    return a, b
  end

  local function send_file(c, head, path, st, headers_in, keep)
    local lm = httpdate(st.mtime // 1)
    local ims = headers_in["if-modified-since"] and parsedate(headers_in["if-modified-since"])
    local ext = path:match("%.([%w]+)$")
    local ctype = "Content-Type: " .. (ext and TYPES[ext:lower()] or "application/octet-stream")
    if ims and st.mtime // 1 <= ims then
      return respond(c, head, 304, { "Last-Modified: " .. lm }, nil, keep)
    end
    local size = st.size
    local first, last = range_of(headers_in.range, size)
    if first == false then
      return respond(c, head, 416, { "Content-Range: bytes */" .. size }, "", keep)
    end
    local status, hdrs = 200, { ctype, "Last-Modified: " .. lm, "Accept-Ranges: bytes" }
    if first then
      status = 206
      hdrs[#hdrs + 1] = ("Content-Range: bytes %d-%d/%d"):format(first, last, size)
    else
      first, last = 0, size - 1
    end
    local len = last - first + 1
    if head then return respond(c, true, status, hdrs, nil, keep, len) end
    if size <= BIG then
      local data = fio.readfile(path)
      if not data then return fail(c, head, 500, keep) end
      if first ~= 0 or last ~= #data - 1 then data = data:sub(first + 1, last + 1) end
      return respond(c, false, status, hdrs, data, keep)
    end
    local f = fio.open(path)
    if not f then return fail(c, head, 500, keep) end
    local ok = respond(c, false, status, hdrs, nil, keep, len)
    f:seek("set", first)
    local left = len
    while ok and left > 0 do
      local chunk = f:read(math.min(left, 256 * 1024))
      if not chunk then break end
      left = left - #chunk
      ok = c:write(chunk)
    end
    f:close()
    return ok and left == 0
  end

  local function decode(s)
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end

  local function handle_one(c, method, target, headers_in, keep)
    local head = method == "HEAD"
    if method ~= "GET" and not head then
      return respond(c, head, 405, { "Allow: GET, HEAD" }, "", keep)
    end
    local raw = target:match("^[^?#]*")
    local urlpath = decode(raw)
    if urlpath:sub(1, 1) ~= "/" or urlpath:find("\0", 1, true) then return fail(c, head, 400, keep) end
    for seg in urlpath:gmatch("[^/]+") do
      if seg == ".." then return fail(c, head, 403, keep) end
    end
    local path = root .. urlpath
    local st = fio.stat(path)
    if not st then return fail(c, head, 404, keep) end
    local real = fio.realpath(path)
    if not real or (real ~= rootreal and real:sub(1, #rootreal + 1) ~= rootreal .. "/") then
      return fail(c, head, 403, keep)
    end
    if st.type == "directory" then
      if urlpath:sub(-1) ~= "/" then
        return respond(c, head, 301, { "Location: " .. raw .. "/" }, "", keep)
      end
      local index = fio.stat(path .. "index.html")
      if index and index.type == "file" then
        return send_file(c, head, path .. "index.html", index, headers_in, keep)
      end
      return listing(c, head, path, urlpath, keep)
    end
    if st.type ~= "file" then return fail(c, head, 403, keep) end
    return send_file(c, head, path, st, headers_in, keep)
  end

  local function handle(c)
    while true do
      local line = c:read("l")
      if not line then break end
      local method, target, version = line:match("^(%u+) (%S+) HTTP/1%.([01])\r?$")
      if not method then
        fail(c, false, 400, false)
        break
      end
      local headers_in = {}
      while true do
        local h = c:read("l")
        if not h or h == "" or h == "\r" then break end
        local k, v = h:match("^([^:]+):%s*(.-)%s*\r?$")
        if k then headers_in[k:lower()] = v end
      end
      local conn = headers_in.connection and headers_in.connection:lower()
      local keep = (version == "1" and conn ~= "close") or conn == "keep-alive"
      if not handle_one(c, method, target, headers_in, keep) or not keep then break end
    end
    c:close()
  end

  local E = fio.errno
  local transient = { [E.EMFILE] = true, [E.ENFILE] = true, [E.ENOBUFS] = true, [E.ENOMEM] = true,
    [E.ECONNABORTED] = true, [E.EPROTO] = true }
  while true do
    local c, amsg, aerr = srv:accept()
    if not c then
      if not transient[aerr] then break end
      -- (out of fds or memory, or a client gone before its accept: say
      -- so, let the connections in hand finish, go on)
      io.stderr:write(PROG, ": accept: ", amsg, "\n")
      fio.sleep(0.05)
      goto next_connection
    end
    c:setoption("nodelay", true)
    fio.async(function()
      -- (a bug in one request is reported; the server goes on)
      local ok, err = pcall(handle, c)
      if not ok then
        io.stderr:write(PROG, ": ", tostring(err), "\n")
        c:close()
      end
    end)
    ::next_connection::
  end
  srv:close()
  return true
end

-- A worker thread's task: load this file as a module, then serve.
local function worker(script, root, host, port)
  local serve_ = assert(loadfile(script))("--module")
  return serve_(root, host, port, true, true)
end

if ... == "--module" then return serve end

local fio = require "fiberio"
local USAGE, ABOUT = "[-b HOST] [-w N] DIR [PORT]",
  "  serve the files below DIR over HTTP/1.1 on HOST (127.0.0.1) and PORT\n" ..
  "  (8000; 0: any free one), with N threads (1)"
local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg)
local host, workers, root, port = "127.0.0.1", 1, nil, 8000
local args, i = { ... }, 1
local usage = cli.usage(PROG, USAGE)
while args[i] do
  local a = args[i]
  if a == "-b" then host = args[i + 1] or usage("-b needs a host"); i = i + 2
  elseif a == "-w" then
    workers = math.tointeger(tonumber(args[i + 1] or "")) or usage("-w needs a number")
    if workers < 1 then usage("-w needs a number of at least 1") end
    i = i + 2
  elseif a:sub(1, 1) == "-" and #a > 1 then usage("unknown option " .. a)
  elseif not root then root = a; i = i + 1
  elseif port == 8000 and args[i] then
    port = math.tointeger(tonumber(a)) or usage("bad port " .. a); i = i + 1
  else usage("too many arguments") end
end
if not root then usage("no DIR") end
root = root:gsub("(.)/+$", "%1")
local st = fio.stat(root)
if not st or st.type ~= "directory" then
  io.stderr:write(PROG, ": ", root, ": not a directory\n")
  os.exit(1)
end

fio.run(function()
  -- The first listener here, which gives the port (PORT 0); the other
  -- workers listen on that port too.
  local srv, msg = fio.listen(host, port, { reuseport = workers > 1 })
  if not srv then
    io.stderr:write(PROG, ": ", msg, "\n")
    os.exit(1)
  end
  local _, bound = srv:getsockname()
  local script = debug.getinfo(1, "S").source:match("^@(.*)") or arg[0]
  local tasks = {}
  for _ = 2, workers do tasks[#tasks + 1] = fio.parallel(worker, script, root, host, bound) end
  serve(root, host, bound, workers > 1, false, srv)
  for _, t in ipairs(tasks) do t:await() end
end)
