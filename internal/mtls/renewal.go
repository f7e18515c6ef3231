package mtls

import "time"

// NodeBackdate is how far before its issuance a node certificate's
// NotBefore lies. A stateless node may boot with its clock a few minutes
// behind (no RTC battery, no NTP yet); without backdating, the certificate
// it was just given would not be valid yet on its own clock.
const NodeBackdate = 5 * time.Minute

// RenewalTime is when a node certificate valid from notBefore to notAfter
// is due for renewal: two thirds into its lifetime, counted from when it
// was issued (notBefore + NodeBackdate), not from the backdated notBefore,
// so that backdating never makes a short-lived certificate due at once.
// The agent and the registration service use this one rule.
func RenewalTime(notBefore, notAfter time.Time) time.Time {
	issued := notBefore.Add(NodeBackdate)
	if issued.After(notAfter) {
		// Not issued with NodeBackdate (a shorter backdate, a lifetime
		// shorter than it): count from notBefore.
		issued = notBefore
	}
	return issued.Add(notAfter.Sub(issued) * 2 / 3)
}
