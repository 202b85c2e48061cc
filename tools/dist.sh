#!/bin/sh
# make dist: the release tarball of HEAD (git archive: what is committed)
# and the source rock, which carries the tarball, so that
#   luarocks --lua-version 5.4 install fiberio-VERSION-1.src.rock
# builds and installs fiberio with no network. DIST_DIR: where they go
# (default: the repository's root).
set -e
cd "$(dirname "$0")/.."
out=${DIST_DIR:-.}
spec=$(ls fiberio-*-1.rockspec)
v=$(sed -n 's/^version = "\(.*\)-1"$/\1/p' "$spec")
[ -n "$v" ] || { echo "dist: no version in $spec" >&2; exit 1; }
git diff --quiet HEAD -- . || echo "dist: uncommitted changes are left out (git archive HEAD)" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive --format=tar.gz --prefix="fiberio-$v/" -o "$tmp/fiberio-$v.tar.gz" HEAD
cp "$spec" "$tmp/"
(cd "$tmp" && zip -q "fiberio-$v-1.src.rock" "$spec" "fiberio-$v.tar.gz")
mv "$tmp/fiberio-$v.tar.gz" "$tmp/fiberio-$v-1.src.rock" "$out/"
echo "dist: $out/fiberio-$v.tar.gz $out/fiberio-$v-1.src.rock"
