#!/bin/sh
# `lab reload`'s check of a staged config and zone (lab/reload.py), before anything switches:
# the zone is loaded into a scratch LMDB database with the staged settings, so a zone or a
# setting PowerDNS refuses stops the reload with its own words and the running server untouched.
set -eu
conf=$1
zone=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed -e "s|^lmdb-filename=.*|lmdb-filename=$scratch/db|" -e "/^include-dir=/d" "$conf" > "$scratch/pdns.conf"
pdnsutil --config-dir="$scratch" load-zone lab.test "$zone" > /dev/null
