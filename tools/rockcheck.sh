#!/bin/sh
# The rockspec builds what the Makefile builds: every C source under csrc/
# (and nothing else) is in fiberio.core's sources, every Lua file under
# lua/fiberio/ is a module, and every module the rockspec names exists.
#   tools/rockcheck.sh [ROCKSPEC]
spec=${1:-$(ls fiberio-*.rockspec | head -1)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# C sources: quoted "csrc/....c" strings in the rockspec
grep -o '"csrc/[^"]*\.c"' "$spec" | tr -d '"' | sort >"$tmp/rock_c"
find csrc -name '*.c' | sort >"$tmp/tree_c"
# Lua modules: ["name"] = "lua/....lua"
grep -o '"lua/[^"]*\.lua"' "$spec" | tr -d '"' | sort >"$tmp/rock_lua"
find lua -name '*.lua' | sort >"$tmp/tree_lua"
bad=0
for kind in c lua; do
  if ! cmp -s "$tmp/rock_$kind" "$tmp/tree_$kind"; then
    echo "rockcheck: $spec and the tree disagree on the $kind files:" >&2
    diff "$tmp/rock_$kind" "$tmp/tree_$kind" | sed -n 's/^< /  only in the rockspec: /p; s/^> /  not in the rockspec: /p' >&2
    bad=1
  fi
done
# each module name matches its path (fiberio.x = lua/fiberio/x.lua)
grep -o '\["fiberio[^"]*"\] *= *"lua/[^"]*"' "$spec" | while IFS= read -r line; do
  name=$(echo "$line" | sed 's/\["\([^"]*\)".*/\1/')
  path=$(echo "$line" | sed 's/.*= *"\([^"]*\)"/\1/')
  want="lua/$(echo "$name" | tr . /).lua"
  [ "$name" = fiberio ] && want=lua/fiberio/init.lua
  [ "$path" = "$want" ] || { echo "rockcheck: module $name is at $path, not $want" >&2; exit 1; }
done || bad=1
[ $bad = 0 ] && echo "rockcheck: ok ($(wc -l <"$tmp/tree_c") C sources, $(wc -l <"$tmp/tree_lua") Lua modules)"
exit $bad
