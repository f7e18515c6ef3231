// Package systemd holds berth-agent's systemd unit, berth-agent.service;
// its test checks the unit with systemd-analyze verify.
package systemd
