---@meta fiberio
-- LuaLS type definitions for fiberio: point your editor at this folder
-- (.luarc.json: { "workspace.library": ["library"] }, or the rock's
-- installed copy). docs/REFERENCE.md is generated from this file
-- (tools/gendoc.lua), and spec/annotations_spec.lua checks that it names
-- what the module exports, no more and no less.

---@class fiberio
---@field _VERSION string "fiberio 0.1.0"
---@field Canceled fiberio.Canceled The value a canceled fiber sees raised.
---@field errno table<string, integer> The errno numbers of this platform by name (`fio.errno.ENOENT`).
---@field stdin fiberio.File Standard input, as `io.stdin`.
---@field stdout fiberio.File C's stdout, the stream `print` and `io.write` use.
---@field stderr fiberio.File Standard error, unbuffered.
local fio = {}

---@class fiberio.Canceled
---The cancellation value; `tostring` gives `"fiberio: canceled"`.

-- Fibers --------------------------------------------------------------------

---@class fiberio.Future
local Future = {}

---Wait for the fiber; its results, or its error re-raised (the same value).
---@return any ...
function Future:await() end

---Request cancellation, then await: `nil, fio.Canceled` if it ended by
---the cancel, its results if it finished anyway.
---@return any ...
function Future:cancel() end

---Whether the fiber has ended.
---@return boolean
function Future:done() end

---The traceback of the error the fiber ended with (message first), or nil.
---@return string?
function Future:traceback() end

---Run `fn(...)` as a new fiber; it starts when the caller next suspends.
---@param fn function
---@param ... any
---@return fiberio.Future
function fio.async(fn, ...) end

---Wait for `f`: its results, or its error re-raised.
---@param f fiberio.Future
---@return any ...
function fio.await(f) end

---Request cancellation of `f`, then await it (`nil, fio.Canceled` if the
---cancel ended it).
---@param f fiberio.Future
---@return any ...
function fio.cancel(f) end

---Wait for the first of the futures to end: its index and results.
---@param ... fiberio.Future
---@return integer index
---@return any ...
function fio.select(...) end

---Let the other ready fibers run.
function fio.yield() end

---Whether a cancel is pending on the running fiber.
---@return boolean
function fio.canceled() end

---Raise `fio.Canceled` if a cancel is pending on the running fiber.
function fio.checkcancel() end

---Run `fn(...)` with cancellation held off; a cancel that arrives lands at
---the next suspension point after it.
---@param fn function
---@param ... any
---@return any ...
function fio.shield(fn, ...) end

---Sleep `s` seconds (cancelable).
---@param s number
function fio.sleep(s) end

---The monotonic clock, in seconds.
---@return number
function fio.now() end

---`fn(...)` in a fiber with a deadline: its results, or `nil, "timeout"`
---after canceling it.
---@param s number
---@param fn function
---@param ... any
---@return any ...
function fio.timeout(s, fn, ...) end

---Run `fn` as the root fiber; its results once it and every fiber started
---under it have ended. An error in a fiber nobody awaited is raised here.
---@param fn function
---@param ... any
---@return any ...
function fio.run(fn, ...) end

---@class fiberio.ConfigOptions
---@field threads? integer pool and `fio.parallel` threads (default: the CPU count)
---@field backend? "io_uring"|"threads"
---@field ring_entries? integer
---@field inline? boolean run lone calls on the loop thread (default true)
---@field slow_call? number seconds: an inline call slower than this pauses inlining of its kind
---@field slow_pause? number seconds such a pause lasts

---Tuning, before any other call; unknown keys raise.
---@param opts fiberio.ConfigOptions
function fio.config(opts) end

---The backend in use.
---@return "io_uring"|"threads"
function fio.backend() end

---@class fiberio.GroupOptions
---@field limit? integer at most this many members run at once

---@class fiberio.Group
local Group = {}

---Start a member (waits, cancelably, for a slot when the group has a limit).
---@param fn function
---@param ... any
---@return fiberio.Future
function Group:async(fn, ...) end

---Wait for every member; the first error cancels the rest and is re-raised.
function Group:wait() end

---Cancel every member and wait for them.
function Group:cancel() end

---A group of fibers.
---@param opts? fiberio.GroupOptions
---@return fiberio.Group
function fio.group(opts) end

---Run `fn(...)` on a worker thread with its own Lua state; arguments and
---results are copied (nil, booleans, numbers, strings, tables of those).
---@param fn function a function with no upvalues but _ENV
---@param ... any
---@return fiberio.Future
function fio.parallel(fn, ...) end

-- Files ----------------------------------------------------------------------

---@class fiberio.Stream
---What a File and a Socket both have: io's methods.
local Stream = {}

---@class fiberio.File: fiberio.Stream
local File = {}

---Read by io's formats (`"a" "l" "L" "n"` or a count), several at once.
---@param ... string|integer
---@return string|number|nil ...
function Stream:read(...) end

---Write strings and numbers; returns the handle, or `nil, msg, errno`.
---@param ... string|number
---@return fiberio.Stream?
---@return string? msg
---@return integer? errno
function Stream:write(...) end

---An iterator over the file's contents by io's formats (default `"l"`).
---@param ... string|integer
---@return fun(): string|number|nil
function Stream:lines(...) end

---As `file:seek`: the new position, or `nil, msg, errno`.
---@param whence? "set"|"cur"|"end"
---@param offset? integer
---@return integer? position
---@return string? msg
---@return integer? errno
function File:seek(whence, offset) end

---Write out the buffered bytes.
---@return fiberio.Stream?
---@return string? msg
---@return integer? errno
function Stream:flush() end

---@param mode "no"|"full"|"line"
---@param size? integer
---@return boolean
function Stream:setvbuf(mode, size) end

---Close the file (its buffered bytes written first).
---@return boolean?
---@return string? msg
---@return integer? errno
function Stream:close() end

---Up to `n` bytes at offset `off` (nil at the end); the position is untouched.
---@param n integer
---@param off integer
---@return string?
---@return string? msg
---@return integer? errno
function File:pread(n, off) end

---All of `s` at offset `off`.
---@param s string
---@param off integer
---@return fiberio.File?
---@return string? msg
---@return integer? errno
function File:pwrite(s, off) end

---fsync(2).
---@return boolean?
---@return string? msg
---@return integer? errno
function File:sync() end

---fdatasync(2).
---@return boolean?
---@return string? msg
---@return integer? errno
function File:datasync() end

---The file's stat table (see `fio.stat`).
---@return fiberio.Stat?
---@return string? msg
---@return integer? errno
function Stream:stat() end

---Truncate (or extend) the file to `n` bytes.
---@param n? integer
---@return boolean?
---@return string? msg
---@return integer? errno
function File:truncate(n) end

---The file descriptor.
---@return integer
function Stream:fd() end

---Open a file with io.open's modes (plus "x": create, fail if it exists).
---@param path string
---@param mode? string
---@param perm? integer|string permissions of a new file (default 0666 less the umask)
---@return fiberio.File?
---@return string? msg "path: message"
---@return integer? errno
function fio.open(path, mode, perm) end

---As `io.lines`: an iterator over the file's lines (or formats), closed at the end.
---@param path string
---@param ... string|integer
---@return fun(): string|number|nil
function fio.lines(path, ...) end

---`"file"`, `"closed file"`, or nil (as io.type); a Socket or Server is a file.
---@param x any
---@return "file"|"closed file"|nil
function fio.type(x) end

---A pipe: the read end and the (unbuffered) write end.
---@return fiberio.File reader
---@return fiberio.File writer
function fio.pipe() end

---@class fiberio.Stat
---@field size integer
---@field mode integer
---@field type "file"|"directory"|"link"|"fifo"|"socket"|"char"|"block"
---@field perm integer
---@field nlink integer
---@field uid integer
---@field gid integer
---@field ino integer
---@field dev integer
---@field rdev integer
---@field atime number
---@field mtime number
---@field ctime number
---@field atime_ns integer
---@field mtime_ns integer
---@field ctime_ns integer
---@field blocks integer

---The stat of `path` (following links).
---@param path string
---@return fiberio.Stat?
---@return string? msg
---@return integer? errno
function fio.stat(path) end

---The stat of `path` itself (a link is not followed).
---@param path string
---@return fiberio.Stat?
---@return string? msg
---@return integer? errno
function fio.lstat(path) end

---The entries of a directory: an array of `{name=, type=}`.
---@param path string
---@return {name: string, type: string}[]?
---@return string? msg
---@return integer? errno
function fio.readdir(path) end

---An iterator of `name, type` over a directory's entries.
---@param path string
---@return fun(): string?, string?
function fio.scandir(path) end

---@param path string
---@param perm? integer|string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.mkdir(path, perm) end

---`path` and its missing parents.
---@param path string
---@param perm? integer|string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.mkdirp(path, perm) end

---@param path string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.rmdir(path) end

---@param path string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.unlink(path) end

---@param from string
---@param to string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.rename(from, to) end

---A hard link `to` of `from`.
---@param from string
---@param to string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.link(from, to) end

---A symbolic link `path` holding `target`.
---@param target string
---@param path string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.symlink(target, path) end

---@param path string
---@return string? target
---@return string? msg
---@return integer? errno
function fio.readlink(path) end

---Whether the calling process may access `path` (`how`: letters of "rwx"; none: exists).
---@param path string
---@param how? string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.access(path, how) end

---@param path string
---@param perm integer|string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.chmod(path, perm) end

---@param path string
---@param n? integer (default 0)
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.truncate(path, n) end

---The absolute path with no link, `.` or `..` left.
---@param path string
---@return string?
---@return string? msg
---@return integer? errno
function fio.realpath(path) end

---A new directory from a template ending in XXXXXX (default under $TMPDIR).
---@param template? string
---@return string? path
---@return string? msg
---@return integer? errno
function fio.mkdtemp(template) end

---The whole file.
---@param path string
---@return string?
---@return string? msg
---@return integer? errno
function fio.readfile(path) end

---Create or truncate `path` and write `data`.
---@param path string
---@param data string
---@param perm? integer|string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.writefile(path, data, perm) end

---Copy a file in the kernel, into a temporary beside `dst` renamed over it.
---@param src string
---@param dst string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.copyfile(src, dst) end

---Set the times (seconds; nil: now; false: unchanged), or copy a stat table's.
---@param path string
---@param atime? number|false|fiberio.Stat
---@param mtime? number|false
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.utime(path, atime, mtime) end

---`utime` of a symbolic link itself.
---@param path string
---@param atime? number|false|fiberio.Stat
---@param mtime? number|false
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.lutime(path, atime, mtime) end

---Numeric ids; nil leaves one as it is.
---@param path string
---@param uid? integer
---@param gid? integer
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.chown(path, uid, gid) end

---`chown` of a symbolic link itself.
---@param path string
---@param uid? integer
---@param gid? integer
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.lchown(path, uid, gid) end

---@param path string
---@param perm? integer|string
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.mkfifo(path, perm) end

---@param path string
---@param type "fifo"|"char"|"block"|"file"|"socket"
---@param perm? integer|string
---@param dev? integer as `st.rdev`
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.mknod(path, type, perm, dev) end

---An extended attribute's value (`nil, msg, 61` when there is none).
---@param path string
---@param name string
---@return string?
---@return string? msg
---@return integer? errno
function fio.getxattr(path, name) end

---@param path string
---@param name string
---@param value string
---@param how? "create"|"replace"
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.setxattr(path, name, value, how) end

---The names of a file's extended attributes.
---@param path string
---@return string[]?
---@return string? msg
---@return integer? errno
function fio.listxattr(path) end

---`getxattr` of a symbolic link itself.
---@param path string
---@param name string
---@return string?
---@return string? msg
---@return integer? errno
function fio.lgetxattr(path, name) end

---`setxattr` of a symbolic link itself.
---@param path string
---@param name string
---@param value string
---@param how? "create"|"replace"
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.lsetxattr(path, name, value, how) end

---`listxattr` of a symbolic link itself.
---@param path string
---@return string[]?
---@return string? msg
---@return integer? errno
function fio.llistxattr(path) end

---@class fiberio.StatVFS
---@field bsize integer
---@field frsize integer
---@field blocks integer
---@field bfree integer
---@field bavail integer
---@field files integer
---@field ffree integer
---@field favail integer
---@field fsid integer
---@field flag integer
---@field namemax integer

---The file system's figures.
---@param path string
---@return fiberio.StatVFS?
---@return string? msg
---@return integer? errno
function fio.statvfs(path) end

---@class fiberio.RmtreeOptions
---@field cross? boolean enter other file systems too

---`path` and everything below it, as `rm -rf`.
---@param path string
---@param opts? fiberio.RmtreeOptions
---@return boolean?
---@return string? msg
---@return integer? errno
function fio.rmtree(path, opts) end

---@class fiberio.WalkOptions
---@field maxdepth? integer entries at most this many levels below root
---@field enter? fun(path: string): boolean false: do not read this directory
---@field follow? boolean follow symbolic links to directories (find -L)
---@field xdev? boolean stay on root's file system
---@field stat? boolean a third value: the entry's stat (one table, refilled)
---@field sort? boolean each directory's entries in byte order
---@field onerror? fun(path: string, msg: string, errno: integer) a directory that cannot be read
---@field concurrency? integer directories read at once (default 4)

---Every entry below `root`, depth-first: `path, type [, st]`.
---@param root string
---@param opts? fiberio.WalkOptions
---@return fun(): string?, string?, fiberio.Stat?
function fio.walk(root, opts) end

-- Coordination ---------------------------------------------------------------

---@class fiberio.Semaphore
local Semaphore = {}

---Take a permit (nil timeout: wait for ever).
---@param timeout? number
---@return boolean? ok
---@return string? why "timeout"
function Semaphore:acquire(timeout) end

---Give a permit back (or add one).
function Semaphore:release() end

---`fn(...)` holding a permit.
---@param fn function
---@param ... any
---@return any ...
function Semaphore:with(fn, ...) end

---The permits free now.
---@return integer
function Semaphore:available() end

---@param n integer
---@return fiberio.Semaphore
function fio.semaphore(n) end

---@class fiberio.Mutex
local Mutex = {}

---@param timeout? number
---@return boolean? ok
---@return string? why "timeout"
function Mutex:lock(timeout) end

function Mutex:unlock() end

---`fn(...)` holding the lock.
---@param fn function
---@param ... any
---@return any ...
function Mutex:with(fn, ...) end

---@return fiberio.Mutex
function fio.mutex() end

---@class fiberio.Condition
local Condition = {}

---Release `mutex`, wait to be signaled, take it again.
---@param mutex fiberio.Mutex
---@param timeout? number
---@return boolean? ok
---@return string? why "timeout"
function Condition:wait(mutex, timeout) end

---Wake one waiter.
function Condition:signal() end

---Wake every waiter.
function Condition:broadcast() end

---@return fiberio.Condition
function fio.condition() end

---@class fiberio.Queue
local Queue = {}

---Add an item; waits while the queue is full.
---@param item any
---@param timeout? number
---@return boolean? ok
---@return string? why "timeout" or "closed"
function Queue:put(item, timeout) end

---The next item; nil once closed and drained.
---@param timeout? number
---@return any item
---@return string? why "timeout"
function Queue:get(timeout) end

---No more puts; gets drain what is left.
function Queue:close() end

---Items waiting.
---@return integer
function Queue:len() end

---A FIFO queue; capacity 0: every put waits for a get.
---@param capacity? integer
---@return fiberio.Queue
function fio.queue(capacity) end

---@class fiberio.Signal
local Signal = {}

---Wait for the signal: its name.
---@param timeout? number
---@return string? name
---@return string? why "timeout"
function Signal:wait(timeout) end

---Give the signal back to its default handling.
function Signal:close() end

---Take a signal ("INT", "TERM", "HUP", ...) from its default action.
---@param name string
---@return fiberio.Signal
function fio.signal(name) end

-- Processes ------------------------------------------------------------------

---@class fiberio.SpawnOptions
---@field stdin? "inherit"|"pipe"|"null"|fiberio.File
---@field stdout? "inherit"|"pipe"|"null"|fiberio.File
---@field stderr? "inherit"|"pipe"|"null"|"stdout"|fiberio.File
---@field env? table<string, string> the whole environment
---@field addenv? table<string, string> added to this process's
---@field cwd? string
---@field umask? integer|string
---@field detach? boolean a new session
---@field pgroup? boolean a new process group
---@field kill_on_cancel? boolean a canceled wait kills the child (TERM, then KILL after grace)
---@field grace? number seconds between TERM and KILL (default 1)

---@class fiberio.ExecOptions: fiberio.SpawnOptions
---@field input? string written to the child's stdin

---@class fiberio.Process
---@field pid integer
---@field stdin fiberio.File?
---@field stdout fiberio.File?
---@field stderr fiberio.File?
local Process = {}

---How the child ended: `"exit", code` or `"signal", name, number`.
---@return "exit"|"signal" how
---@return integer|string code_or_name
---@return integer? signum
function Process:wait() end

---How it ended, or nil while it runs (never waits).
---@return "exit"|"signal"|nil how
---@return integer|string|nil code_or_name
function Process:status() end

---Send a signal (default "TERM") through the child's pidfd (by its pid,
---before Linux 5.3, and only until it is reaped).
---@param sig? string|integer
---@return boolean?
---@return string? msg
---@return integer? errno
function Process:kill(sig) end

---Close its pipes; a child still running is reaped when it ends.
function Process:close() end

---Start a program (argv[1] looked up on PATH unless it holds a "/").
---@param argv string[]
---@param opts? fiberio.SpawnOptions
---@return fiberio.Process?
---@return string? msg
---@return integer? errno
function fio.spawn(argv, opts) end

---Run a program to its end: its whole output, and how it ended.
---@param argv string[]
---@param opts? fiberio.ExecOptions
---@return string? stdout
---@return string? stderr
---@return "exit"|"signal"|nil how
---@return integer|string|nil code
function fio.exec(argv, opts) end

---`io.popen` through `/bin/sh -c`, without blocking the loop.
---@param cmd string
---@param mode? "r"|"w"
---@return fiberio.File?
---@return string? msg
---@return integer? errno
function fio.popen(cmd, mode) end

-- Watches --------------------------------------------------------------------

---@alias fiberio.WatchKind
---| "create"
---| "delete"
---| "modify"
---| "attrib"
---| "move_from"
---| "move_to"
---| "close_write"
---| "delete_self"
---| "move_self"
---| "overflow" # the kernel's queue overflowed: events were lost
---| "error" # a directory of a recursive watch could not be watched

---@class fiberio.WatchEvent
---@field kind fiberio.WatchKind what happened
---@field path string
---@field name string
---@field cookie? integer pairs a move_from with its move_to
---@field dir boolean

---@class fiberio.WatchOptions
---@field kinds? string[] the kinds to keep (default all)
---@field recursive? boolean every directory below, new ones too
---@field links? boolean false: watch a symbolic link itself

---@class fiberio.Watcher
local Watcher = {}

---The next event, or `nil, "timeout"` (or `nil, "closed"`).
---@param timeout? number
---@return fiberio.WatchEvent?
---@return string? why
function Watcher:next(timeout) end

---An iterator over the events.
---@return fun(): fiberio.WatchEvent?
function Watcher:events() end

---Remove the watches.
function Watcher:close() end

---Watch a file or a directory's entries (inotify).
---@param path string
---@param opts? fiberio.WatchOptions
---@return fiberio.Watcher?
---@return string? msg
---@return integer? errno
function fio.watch(path, opts) end

-- Sockets --------------------------------------------------------------------

---@class fiberio.Socket: fiberio.Stream
local Socket = {}

---All of `data[i..j]`: the bytes sent, or `nil, msg, errno, sent_before`.
---@param data string
---@param i? integer
---@param j? integer
---@return integer? sent
---@return string? msg
---@return integer? errno
---@return integer? sent_before
function Socket:send(data, i, j) end

---What comes, up to `max` bytes (64 KiB); `""` at the end of the stream.
---@param max? integer
---@return string?
---@return string? msg
---@return integer? errno
function Socket:recv(max) end

---One datagram to a numeric address (host nil on a connected socket).
---@param data string
---@param host? string
---@param port? integer
---@return integer? sent
---@return string? msg
---@return integer? errno
function Socket:sendto(data, host, port) end

---One datagram: its data and sender (a Unix peer: path, nil).
---@param max? integer
---@return string? data
---@return string? host_or_msg
---@return integer? port_or_errno
function Socket:recvfrom(max) end

---Pass a descriptor over a Unix socket (SCM_RIGHTS).
---@param file fiberio.File|integer
---@param data? string
---@return integer? sent
---@return string? msg
---@return integer? errno
function Socket:sendfd(file, data) end

---A passed descriptor as a File (a Socket for a socket), and the data.
---@param max? integer
---@return fiberio.File|fiberio.Socket|nil file
---@return string? data_or_msg
---@return integer? errno
function Socket:recvfd(max) end

---A datagram socket's default peer (numeric address).
---@param host string
---@param port? integer
---@return fiberio.Socket?
---@return string? msg
---@return integer? errno
function Socket:connect(host, port) end

---@param how? "read"|"write"|"both"
---@return fiberio.Socket?
---@return string? msg
---@return integer? errno
function Socket:shutdown(how) end

---The peer's address: host, port (or a Unix path, nil).
---@return string? host
---@return integer? port
function Socket:getpeername() end

---This end's address: host, port (or a Unix path, nil).
---@return string? host
---@return integer? port
function Socket:getsockname() end

---A later call that waits `s` seconds for the socket fails with `nil, "timeout", 110`
---(nil: no limit): send, recv, connect as a whole; read, lines for each piece.
---@param s? number
---@return fiberio.Socket
function Socket:settimeout(s) end

---nodelay, keepalive, linger, rcvbuf, sndbuf, reuseaddr, broadcast, ttl,
---multicast_ttl, multicast_loop, multicast_if, add_membership, drop_membership.
---@param name string
---@param value any
---@param iface? string
---@return fiberio.Socket?
---@return string? msg
---@return integer? errno
function Socket:setoption(name, value, iface) end

---@class fiberio.Server
local Server = {}

---The next connection.
---@return fiberio.Socket?
---@return string? msg
---@return integer? errno
function Server:accept() end

---@return string? host
---@return integer? port
function Server:getsockname() end

---Bound `accept` to `s` seconds (nil: no limit).
---@param s? number
---@return fiberio.Server
function Server:settimeout(s) end

---As `Socket:setoption`.
---@param name string
---@param value any
---@return fiberio.Server?
---@return string? msg
---@return integer? errno
function Server:setoption(name, value) end

---@return boolean?
function Server:close() end

---@return integer
function Server:fd() end

---@class fiberio.ConnectOptions
---@field timeout? number seconds, for each attempt, then the socket's
---@field family? "inet"|"inet6"
---@field nodelay? boolean

---Connect to host:port (a name is resolved, each address tried), or to a
---Unix socket (a path, or "@name").
---@param host string
---@param port? integer
---@param opts? fiberio.ConnectOptions
---@return fiberio.Socket?
---@return string? msg "host:port: message"
---@return integer? errno
function fio.connect(host, port, opts) end

---@class fiberio.ListenOptions
---@field backlog? integer
---@field reuseport? boolean
---@field v6only? boolean
---@field family? "inet"|"inet6"

---Listen on host:port (no host: every address, IPv6 and IPv4), or a Unix socket.
---@param host? string|integer
---@param port? integer|fiberio.ListenOptions
---@param opts? fiberio.ListenOptions
---@return fiberio.Server?
---@return string? msg
---@return integer? errno
function fio.listen(host, port, opts) end

---@class fiberio.UdpOptions
---@field host? string address (or Unix path) to bind to
---@field port? integer
---@field family? "inet"|"inet6"|"unix"

---A datagram socket.
---@param opts? fiberio.UdpOptions
---@return fiberio.Socket?
---@return string? msg
---@return integer? errno
function fio.udp(opts) end

---Two connected Unix sockets.
---@param type? "stream"|"dgram"
---@return fiberio.Socket
---@return fiberio.Socket
function fio.socketpair(type) end

---The addresses of a name (numeric ones never wait).
---@param host string
---@param opts? {family?: "inet"|"inet6"}
---@return {family: "inet"|"inet6", host: string}[]?
---@return string? msg
---@return integer? errno
function fio.resolve(host, opts) end

return fio
