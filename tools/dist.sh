#!/bin/sh
# make dist: the release tarball of HEAD (git archive: what is committed)
# and the source rock, which carries the tarball, so that
#   luarocks --lua-version 5.4 install fiberio-VERSION-1.src.rock
# builds and installs fiberio with no network.
set -e
cd "$(dirname "$0")/.."
spec=$(ls fiberio-*-1.rockspec)
v=$(sed -n 's/^version = "\(.*\)-1"$/\1/p' "$spec")
[ -n "$v" ] || { echo "dist: no version in $spec" >&2; exit 1; }
git diff --quiet HEAD -- . || echo "dist: uncommitted changes are left out (git archive HEAD)" >&2
git archive --format=tar.gz --prefix="fiberio-$v/" -o "fiberio-$v.tar.gz" HEAD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$spec" "fiberio-$v.tar.gz" "$tmp/"
(cd "$tmp" && zip -q "fiberio-$v-1.src.rock" "$spec" "fiberio-$v.tar.gz")
mv "$tmp/fiberio-$v-1.src.rock" .
echo "dist: fiberio-$v.tar.gz fiberio-$v-1.src.rock"
