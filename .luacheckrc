-- luacheck over lua/, spec/, examples/, bench/, tools/ and library/
-- (make check runs it: `luacheck .` from the repository's root).
std = "lua54"
max_line_length = 130
codes = true
include_files = { "lua/**/*.lua", "spec/*.lua", "examples/*.lua", "bench/*.lua", "tools/*.lua",
  "library/*.lua", ".luacheckrc", ".busted" }
ignore = {
  "211/guard.*", -- (a <close> variable, there for its __close: luacheck 1.1
                 -- does not count that as a use)
}

-- (specs: long literal expectations and messages stay on one line)
files["spec/"] = { std = "+busted", max_line_length = false }
files[".busted"] = { std = "+busted" }
-- fio.parallel's tasks run in another Lua state: a task's `local fio =
-- require "fiberio"` and its arguments shadow this state's names on
-- purpose, and a worker keeps what it computed once in a global
files["spec/parallel_spec.lua"] = { globals = { "PARALLEL_SPEC_GLOBAL" }, ignore = { "431", "432", "433" } }
files["examples/grep.lua"] = { globals = { "GREP_LIB" } }
files["examples/treesum.lua"] = { globals = { "TREESUM_LIB" } }
files["bench/parallel.lua"] = { globals = { "ADLER32" } }
-- the type definitions: declarations with empty bodies
files["library/"] = { ignore = { "212", "241" } }
