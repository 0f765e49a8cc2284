#!/bin/sh
# Add the extra source addresses in LAB_CLIENT_EXTRA_IPS to the interface that holds
# LAB_CLIENT_IP (as /32s: the subnet route stays on the primary address), then idle.
# The healthcheck waits for /run/lab-client-ready.
set -eu
dev=$(ip -o -4 addr show | awk -v ip="${LAB_CLIENT_IP:?}" 'index($4, ip "/") == 1 { print $2; exit }')
if [ -z "$dev" ]; then
    echo "lab-client: no interface holds $LAB_CLIENT_IP" >&2
    exit 1
fi
for addr in ${LAB_CLIENT_EXTRA_IPS:-}; do
    ip addr replace "$addr/32" dev "$dev"
done
echo "lab-client: $dev holds $LAB_CLIENT_IP and ${LAB_CLIENT_EXTRA_IPS:-no extra addresses}"
touch /run/lab-client-ready
trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $! || true
done
