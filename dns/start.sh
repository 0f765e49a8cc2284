#!/bin/sh
# The DNS server's start (Route 53's stand-in): the zone as `lab` rendered it, loaded into a
# fresh LMDB database, so every start (and `lab reload`) begins from the rendered records;
# record changes after that go through the HTTP API (lab/dnsapi.py), as Route 53's go
# through ChangeResourceRecordSets. The API key is made here, for this start only: it lives
# in this container (0600, root) and nowhere on the host, and the API listens on this
# container's loopback, so only the operator (`docker exec`) reaches it.
set -eu
conf=/etc/powerdns/lab
run=/run/lab-dns
umask 077
mkdir -p "$run"
key=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
printf 'api-key=%s\n' "$key" > "$run/api.conf"
printf 'X-API-Key: %s\n' "$key" > "$run/api.header"
rm -f /var/lib/powerdns/lab.lmdb /var/lib/powerdns/lab.lmdb-*
pdnsutil --config-dir="$conf" load-zone lab.test "$conf/lab.test.zone"
chown -R pdns:pdns /var/lib/powerdns
exec pdns_server --config-dir="$conf" --guardian=no --daemon=no --disable-syslog --write-pid=no
