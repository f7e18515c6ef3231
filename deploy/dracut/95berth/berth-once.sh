#!/bin/sh
# pre-pivot hook of the berth dracut module: the real root is mounted at
# $NEWROOT; the node's bundle is applied under it and its credentials go
# to /run/berth, which survives switch_root. A failure is a warning: the
# berth-agent.service unit of the real root tries again, and keeps trying.

type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

# berth.server= is the sign that this node is a berth node at all.
getarg berth.server= >/dev/null || return 0

seed=/run/initramfs/berth/seed
identity=$(getarg berth.identity=)
[ -n "$identity" ] || identity=seed
# How long the initramfs waits for the server and for approval before it
# boots on without berth (berth.wait=, a Go duration).
wait=$(getarg berth.wait=)
[ -n "$wait" ] || wait=5m

info "berth: resuming this node's identity"
mkdir -p /run/berth
if BERTH_IDENTITY="$identity" BERTH_SEED_FILE="$seed" \
	berth-agent --once --cert-dir /run/berth --root "${NEWROOT:-/sysroot}" \
	--wait "$wait" --output json >/run/berth/initramfs.json 2>/run/berth/initramfs.log; then
	info "berth: node credentials written to /run/berth"
else
	warn "berth: berth-agent --once failed (exit $?); see /run/berth/initramfs.log; berth-agent.service will try again"
fi
