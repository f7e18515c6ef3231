package agent

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// ClockWarnOffset is the clock offset from the registration server above
// which the agent warns: beyond it a node's view of certificate validity
// differs from the servers' by more than certificates are backdated for.
const ClockWarnOffset = time.Minute

// clockOffset is how far the server's clock is ahead of the local one.
// The server read its clock somewhere between sent and received, on
// average half-way, so that is the local time it is compared with.
func clockOffset(sent, received time.Time, server time.Time) time.Duration {
	rtt := max(received.Sub(sent), 0)
	return server.Sub(sent.Add(rtt / 2))
}

// noteClock records and logs the offset of the server's clock from an
// answer sent at sent and received at received; it warns when the offset
// exceeds ClockWarnOffset. An answer without the server's time (an older
// server) changes nothing.
func (a *Agent) noteClock(sent, received time.Time, server *timestamppb.Timestamp) {
	if server == nil || server.CheckValid() != nil {
		return
	}
	off := clockOffset(sent, received, server.AsTime())
	first := a.clockOffset == nil
	a.clockOffset = &off
	rtt := received.Sub(sent)
	large := off > ClockWarnOffset || off < -ClockWarnOffset
	switch {
	case large && !a.clockWarned:
		a.clockWarned = true
		a.log.Warn("this node's clock differs from the registration server's by more than a minute; certificates may look not yet valid or expired to it: fix its time (NTP)",
			"offset", off.Round(time.Millisecond), "rtt", rtt.Round(time.Millisecond))
	case first:
		a.log.Info("clock offset from the registration server", "offset", off.Round(time.Millisecond), "rtt", rtt.Round(time.Millisecond))
	default:
		a.log.Debug("clock offset from the registration server", "offset", off.Round(time.Millisecond), "rtt", rtt.Round(time.Millisecond))
	}
}
