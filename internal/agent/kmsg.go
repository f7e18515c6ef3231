package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// DefaultKmsg is the kernel log device the agent reads hardware errors
// from.
const DefaultKmsg = "/dev/kmsg"

// Event types of kernel log lines.
const (
	EventMCE           = "mce"
	EventHardwareError = "hardware_error"
)

var (
	// mceRE: the x86 machine check handler's lines.
	mceRE = regexp.MustCompile(`(?i)machine check|\bmce:`)
	// hwErrRE: EDAC (memory controllers) and APEI/GHES hardware errors.
	hwErrRE = regexp.MustCompile(`(?i)\bEDAC\b|hardware error`)
	// fatalRE: an error the hardware could not correct.
	fatalRE = regexp.MustCompile(`(?i)uncorrect|fatal|panic|\bUE\b`)
	// kmsgPrefixRE: /dev/kmsg's "priority,sequence,microseconds,flags;".
	kmsgPrefixRE = regexp.MustCompile(`^\d+,\d+,\d+,[^;]*;`)
	// dmesgPrefixRE: dmesg's "[   12.345678] ".
	dmesgPrefixRE = regexp.MustCompile(`^\[\s*\d+\.\d+\]\s*`)
)

// classifyKmsg turns a kernel log line into a node event, or says it is
// none: machine checks are mce, EDAC and other hardware errors
// hardware_error; uncorrected ones are critical, the rest warnings.
func classifyKmsg(line string) (typ string, sev berthv1.EventSeverity, msg string, ok bool) {
	if strings.HasPrefix(line, " ") {
		return "", 0, "", false // a /dev/kmsg continuation (KEY=value)
	}
	msg = kmsgPrefixRE.ReplaceAllString(line, "")
	msg = dmesgPrefixRE.ReplaceAllString(msg, "")
	switch {
	case mceRE.MatchString(msg):
		typ = EventMCE
	case hwErrRE.MatchString(msg):
		typ = EventHardwareError
	default:
		return "", 0, "", false
	}
	sev = berthv1.EventSeverity_EVENT_SEVERITY_WARNING
	if fatalRE.MatchString(msg) {
		sev = berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL
	}
	return typ, sev, cleanMessage(msg), true
}

// cleanMessage makes a kernel line an acceptable event message: control
// characters become spaces, and it is cut to the limit on a rune boundary.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(strings.ToValidUTF8(s, "?")))
	for len(s) > maxEventMessage {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// kmsgPoll is how often a regular --kmsg file is looked at for new lines.
// It paces reading a file, not the node's timing, so it is real time.
const kmsgPoll = 200 * time.Millisecond

// watchKmsg turns hardware error lines of the kernel log into node events
// until ctx ends. The device (/dev/kmsg) is read from its end: what the
// kernel logged before the agent started is not reported again on every
// restart. A regular file (--kmsg FILE) is read from its start and
// followed as it grows.
func (a *Agent) watchKmsg(ctx context.Context, path string, log *slog.Logger) {
	f, err := os.Open(path)
	if err != nil {
		log.Warn("cannot read the kernel log; hardware errors are not reported", "kmsg", path, logErr, err)
		return
	}
	go func() {
		<-ctx.Done()
		f.Close() // ends a blocked read of the device
	}()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	report := func(line string) {
		if typ, sev, msg, ok := classifyKmsg(line); ok {
			if e, _, _, err := a.state.addEvent(typ, sev, msg); err == nil {
				log.Warn("hardware error in the kernel log", "type", typ, "severity", SeverityName(sev), "sequence", e.Seq)
			}
		}
	}
	if !fi.Mode().IsRegular() {
		// Each read of /dev/kmsg returns one record; EPIPE says records
		// were overwritten before they were read, which is no reason to
		// stop.
		_, _ = f.Seek(0, io.SeekEnd)
		buf := make([]byte, 8192)
		for ctx.Err() == nil {
			n, err := f.Read(buf)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
					return
				}
				if !strings.Contains(err.Error(), "broken pipe") {
					log.Warn("kernel log read failed; hardware errors are no longer reported", logErr, err)
					return
				}
				continue
			}
			line, _, _ := strings.Cut(string(buf[:n]), "\n")
			report(line)
		}
		return
	}
	r := bufio.NewReader(f)
	var partial string
	t := time.NewTicker(kmsgPoll)
	defer t.Stop()
	for {
		s, err := r.ReadString('\n')
		partial += s
		if err == nil {
			report(strings.TrimRight(partial, "\r\n"))
			partial = ""
			continue
		}
		if !errors.Is(err, io.EOF) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
