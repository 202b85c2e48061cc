#!/bin/sh
# The layering rule of csrc/ (docs/ARCHITECTURE.md): a file calls only what
# is in its own layer or below it, by name. Layers, bottom up:
#   util  io  core  par  lib
# The one way up by name: io/ may call the core functions that the backend
# seam declares (csrc/io/backend.h, between FIO_SEAM_BEGIN and FIO_SEAM_END).
# Everything else reaches up only through function pointers it was given.
# Reads the symbols each object defines and uses (nm); fails on any call
# from a lower layer to a higher one, naming it.
#   tools/layers.sh BUILD_DIR
build=${1:-build}
obj="$build/obj"
[ -d "$obj" ] || { echo "layers: no objects in $obj (build first)" >&2; exit 2; }
seam=$(sed -n '/FIO_SEAM_BEGIN/,/FIO_SEAM_END/p' csrc/io/backend.h |
  grep -o 'fio_[a-z_0-9]*(' | tr -d '(' | sort -u | tr '\n' ' ')
[ -n "$seam" ] || { echo "layers: no seam found in csrc/io/backend.h" >&2; exit 2; }
rank() {
  case $1 in util) echo 0 ;; io) echo 1 ;; core) echo 2 ;; par) echo 3 ;;
    lib) echo 4 ;; *) echo 99 ;; esac
}
defs=$(mktemp)
trap 'rm -f "$defs"' EXIT
for o in "$obj"/*/*.o; do
  layer=$(basename "$(dirname "$o")")
  [ "$(rank "$layer")" = 99 ] && { echo "layers: $o is in no known layer" >&2; exit 1; }
  nm --defined-only -g "$o" | awk -v l="$layer" -v f="$o" 'NF == 3 { print $3, l, f }'
done >"$defs"
bad=0
for o in "$obj"/*/*.o; do
  layer=$(basename "$(dirname "$o")")
  r=$(rank "$layer")
  for sym in $(nm -u "$o" | awk '{ print $2 }'); do
    def=$(awk -v s="$sym" '$1 == s { print $2, $3; exit }' "$defs")
    [ -n "$def" ] || continue # libc, Lua, liburing
    dl=${def%% *}
    dr=$(rank "$dl")
    [ "$dr" -le "$r" ] && continue
    if [ "$layer" = io ] && [ "$dl" = core ]; then
      case " $seam " in *" $sym "*) continue ;; esac
    fi
    echo "layers: ${o#$obj/} ($layer) calls $sym, defined in ${def#* }: $dl is above $layer" | sed "s|$obj/||"
    bad=1
  done
done
[ $bad = 0 ] && echo "layers: ok (util < io < core < par < lib; io calls up only through the seam: $seam)"
exit $bad
