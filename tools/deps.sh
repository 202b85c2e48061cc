#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# As root: apt-get installs them. Otherwise: print the one command to run.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "fiberio: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null || {
    echo "fiberio: apt-get install$missing failed" >&2; exit 1; }
else
  echo "fiberio: missing Debian packages; run as root:" >&2
  echo "  apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
