#!/bin/bash
# dracut module: run berth-agent --once in the initramfs, so a stateless
# node has its credentials in /run/berth and its bundle applied under the
# real root before switch_root. The berth-agent.service unit of the real
# root then resumes the node and stays up (heartbeats, renewal, live
# bundles). Install: copy this directory to /usr/lib/dracut/modules.d/95berth
# and run dracut --add berth (the agent binary must be at
# /usr/local/bin/berth-agent or /usr/bin/berth-agent).

check() {
	require_binaries berth-agent || return 1
	# Only when asked for: dracut --add berth.
	return 255
}

depends() {
	# The registration server is reached over the network.
	echo network
	return 0
}

install() {
	inst_multiple berth-agent
	inst_hook pre-pivot 50 "$moddir/berth-once.sh"
	# The agent reads berth.* from /proc/cmdline itself; the seed comes
	# from the per-node PXE config or USB stick, copied here by whatever
	# fetched it.
	inst_dir /run/initramfs/berth
}
