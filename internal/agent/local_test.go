package agent

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestUpdateReported(t *testing.T) {
	long := strings.Repeat("v", maxReportedValue+1)
	tests := []struct {
		name      string
		set       map[string]string
		unset     []string
		want      map[string]string
		wantField string
	}{
		{name: "set", set: map[string]string{"maintenance": "true", "vms_running": "12"}, want: map[string]string{"a": "1", "b": "2", "maintenance": "true", "vms_running": "12"}},
		{name: "replace and unset", set: map[string]string{"a": "2"}, unset: []string{"b", "never"}, want: map[string]string{"a": "2"}},
		{name: "empty value", set: map[string]string{"a": ""}, want: map[string]string{"a": "", "b": "2"}},
		{name: "nothing", wantField: "set"},
		{name: "bad key", set: map[string]string{"Bad Key": "x"}, wantField: "set"},
		{name: "bad unset key", unset: []string{"../x"}, wantField: "unset"},
		{name: "control character", set: map[string]string{"a": "x\ny"}, wantField: "set"},
		{name: "value too long", set: map[string]string{"a": long}, wantField: "set"},
		{name: "set and unset", set: map[string]string{"a": "1"}, unset: []string{"a"}, wantField: "unset"},
		{name: "too many keys", set: manyKeys(maxReportedKeys - 1), wantField: "set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newNodeState(newFakeClock(), 0, "seed-file")
			if _, err := s.updateReported(map[string]string{"a": "1", "b": "2"}, nil); err != nil {
				t.Fatal(err)
			}
			gen := s.reportedGen
			<-s.kick
			got, err := s.updateReported(tt.set, tt.unset)
			if tt.wantField != "" {
				var inv *invalidInput
				if !errors.As(err, &inv) || inv.field != tt.wantField {
					t.Fatalf("err = %v, want invalid %s", err, tt.wantField)
				}
				if s.reportedGen != gen || !maps.Equal(s.reported, map[string]string{"a": "1", "b": "2"}) || len(s.kick) != 0 {
					t.Errorf("a refused change changed something: %v", s.reported)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) || !maps.Equal(s.reported, tt.want) {
				t.Errorf("reported = %v, want %v", got, tt.want)
			}
			if s.reportedGen != gen+1 || len(s.kick) != 1 {
				t.Error("a change did not wake the heartbeater")
			}
		})
	}
}

func manyKeys(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m["k"+strings.Repeat("x", i)] = "v"
	}
	return m
}

// TestEventQueue: events queue in order; a full queue drops the oldest
// and counts them, and the count reaches the server as an event of its
// own, after the events queued before it.
func TestEventQueue(t *testing.T) {
	s := newNodeState(newFakeClock(), 3, "tpm")
	for i, typ := range []string{"a", "b", "c", "d", "e"} {
		e, n, dropped, err := s.addEvent(typ, 0, "m")
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) || n != min(i+1, 3) || dropped != uint64(max(i-2, 0)) {
			t.Errorf("event %s: seq %d queued %d dropped %d", typ, e.Seq, n, dropped)
		}
		if e.Severity != berthv1.EventSeverity_EVENT_SEVERITY_INFO {
			t.Errorf("default severity %v, want info", e.Severity)
		}
	}
	_, _, events := s.pending(0, false)
	var got []string
	for _, e := range events {
		got = append(got, e.Type)
	}
	if want := []string{"c", "d", "e", eventsDropped}; !slices.Equal(got, want) {
		t.Fatalf("pending = %v, want %v", got, want)
	}
	if events[3].Seq != 6 || !strings.HasPrefix(events[3].Message, "2 node events were dropped") {
		t.Errorf("drop notice = %+v", events[3])
	}
	// Sent again until acknowledged; then gone.
	_, _, again := s.pending(0, false)
	if len(again) != 4 {
		t.Errorf("unacknowledged events not sent again: %v", again)
	}
	s.acked(4)
	if _, _, rest := s.pending(0, false); len(rest) != 2 || rest[0].Seq != 5 {
		t.Errorf("after ack of 4: %v", rest)
	}
	for _, bad := range []struct {
		typ, msg string
		sev      berthv1.EventSeverity
		field    string
	}{
		{"", "m", 0, "type"},
		{"Bad", "m", 0, "type"},
		{"ok", strings.Repeat("m", maxEventMessage+1), 0, "message"},
		{"ok", "a\x00b", 0, "message"},
		{"ok", "m", 9, "severity"},
	} {
		var inv *invalidInput
		if _, _, _, err := s.addEvent(bad.typ, bad.sev, bad.msg); !errors.As(err, &inv) || inv.field != bad.field {
			t.Errorf("addEvent(%q, %v, %.10q) = %v, want invalid %s", bad.typ, bad.sev, bad.msg, err, bad.field)
		}
	}
	if s.nextSeq != 7 {
		t.Errorf("refused events took sequence numbers: next %d", s.nextSeq)
	}
}

func TestClassifyKmsg(t *testing.T) {
	tests := []struct {
		line, typ string
		sev       berthv1.EventSeverity
		msg       string
	}{
		{"2,1234,5678,-;mce: [Hardware Error]: Machine check events logged", EventMCE, berthv1.EventSeverity_EVENT_SEVERITY_WARNING, "mce: [Hardware Error]: Machine check events logged"},
		{"0,1,2,-;mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4: uncorrected error", EventMCE, berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL, ""},
		{"[   12.345678] EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0", EventHardwareError, berthv1.EventSeverity_EVENT_SEVERITY_WARNING, "EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0"},
		{"EDAC MC1: 1 UE memory scrubbing error on DIMM_B1", EventHardwareError, berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL, ""},
		{"3,99,100,-;{1}[Hardware Error]: Hardware error from APEI Generic Hardware Error Source: 0", EventHardwareError, berthv1.EventSeverity_EVENT_SEVERITY_WARNING, ""},
		{"6,1,2,-;e1000e: eth0 NIC Link is Up 1000 Mbps", "", 0, ""},
		{" SUBSYSTEM=pci", "", 0, ""},
		{"usb 1-1: new high-speed USB device; hardware errors: none", EventHardwareError, berthv1.EventSeverity_EVENT_SEVERITY_WARNING, ""},
	}
	for _, tt := range tests {
		typ, sev, msg, ok := classifyKmsg(tt.line)
		if ok != (tt.typ != "") || typ != tt.typ || (ok && sev != tt.sev) || (tt.msg != "" && msg != tt.msg) {
			t.Errorf("classifyKmsg(%q) = %q %v %q %v, want %q %v %q", tt.line, typ, sev, msg, ok, tt.typ, tt.sev, tt.msg)
		}
	}
	if got := cleanMessage("a\tb" + strings.Repeat("é", 600)); len(got) > maxEventMessage || strings.ContainsRune(got, '\t') {
		t.Errorf("cleanMessage kept %d bytes or a tab", len(got))
	}
}

// TestLocalAPI serves the local API on a real unix socket and calls it as
// berth-agent report does.
func TestLocalAPI(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "agent.sock")
	// A stale socket from an agent that did not stop cleanly is replaced.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	state := newNodeState(newFakeClock(), 0, "seed-file")
	state.setCreds(&Credentials{NodeID: "n-0001"})
	l, err := listenLocal(sock, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != socketMode {
		t.Fatalf("socket: %v %v, want mode 0660", fi, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); serveLocal(ctx, l, state, discardLog()) }()
	defer func() { cancel(); <-done }()

	// A second agent on the same socket is refused.
	if _, err := listenLocal(sock, -1); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("second listener: %v", err)
	}

	c, closeConn, err := DialLocal(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	rep, err := c.UpdateReported(cctx, &berthv1.UpdateReportedRequest{Set: map[string]string{"maintenance": "true"}})
	if err != nil || !maps.Equal(rep.GetReported(), map[string]string{"maintenance": "true"}) {
		t.Fatalf("UpdateReported = %v, %v", rep, err)
	}
	ev, err := c.ReportEvent(cctx, &berthv1.ReportEventRequest{Type: "vm.state", Severity: berthv1.EventSeverity_EVENT_SEVERITY_WARNING, Message: "vm-1 paused"})
	if err != nil || ev.GetSequence() != 1 || ev.GetQueued() != 1 {
		t.Fatalf("ReportEvent = %v, %v", ev, err)
	}
	for _, bad := range []func() error{
		func() error {
			_, err := c.UpdateReported(cctx, &berthv1.UpdateReportedRequest{Set: map[string]string{"NO": "x"}})
			return err
		},
		func() error {
			_, err := c.ReportEvent(cctx, &berthv1.ReportEventRequest{Type: "x y"})
			return err
		},
	} {
		if err := bad(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("bad input: %v, want InvalidArgument", err)
		}
	}
	st, err := c.GetAgentStatus(cctx, &berthv1.GetAgentStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNodeId() != "n-0001" || st.GetIdentitySource() != "seed-file" || st.GetConnection() != connBooting ||
		st.GetEventsQueued() != 1 || st.GetReported()["maintenance"] != "true" {
		t.Errorf("status = %v", st)
	}
}

func TestListenLocalRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listenLocal(path, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Error("the file was replaced")
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestHeartbeatCarriesReportAndEvents: beats carry the reported status
// (on each stream's first beat and when it changes) and the queued events
// with their sequences; events of a beat that was not acknowledged go
// again on the next stream; something new to report ends the wait early,
// at a quarter of the interval.
func TestHeartbeatCarriesReportAndEvents(t *testing.T) {
	const iv = 10 * time.Second
	h := newHBHarness(t, iv)
	ctx, cancel := testContext(t)
	defer cancel()
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := a.state
	if _, err := s.updateReported(map[string]string{"maintenance": "true"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"mce", "vm.state"} {
		if _, _, _, err := s.addEvent(typ, berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL, typ+" happened"); err != nil {
			t.Fatal(err)
		}
	}
	h.fake.beat = func(_, n int) error {
		switch n {
		case 1:
			return status.Error(codes.Unavailable, "lost before the acknowledgement")
		case 4:
			cancel()
			return status.Error(codes.Unavailable, "test over")
		}
		return nil
	}
	var waits int
	h.clock.block = func(wctx context.Context, d time.Duration) error {
		if d != jittered(iv) {
			return nil
		}
		if waits++; waits > 1 {
			return nil
		}
		// While waiting after beat 2, a host daemon reports.
		if _, err := s.updateReported(map[string]string{"vms_running": "12"}, nil); err != nil {
			t.Error(err)
		}
		if _, _, _, err := s.addEvent("disk.failed", 0, "sdb"); err != nil {
			t.Error(err)
		}
		select {
		case <-wctx.Done():
			return wctx.Err()
		case <-ctx.Done():
			t.Error("the report did not end the wait")
			return ctx.Err()
		}
	}
	creds := nodeCreds(t, h.pki, h.cfg, h.addr, time.Hour)
	hb := a.newHeartbeater(a.log)
	hb.state = s
	if err := hb.Run(ctx, func() *Credentials { return creds }); err != nil {
		t.Fatal(err)
	}
	checkSequences(t, h.fake, []uint64{1}, []uint64{2, 3, 4})
	type beat struct {
		reported map[string]string
		events   []uint64
	}
	var got []beat
	instance := ""
	for _, b := range h.fake.Beats() {
		var seqs []uint64
		for _, e := range b.GetEvents() {
			seqs = append(seqs, e.GetSequence())
			if e.GetSequence() == 1 && (e.GetKind() != "mce" || e.GetSeverity() != berthv1.EventSeverity_EVENT_SEVERITY_CRITICAL || e.GetMessage() != "mce happened" || e.GetTime() == nil) {
				t.Errorf("event 1 = %v", e)
			}
		}
		got = append(got, beat{b.GetReported().GetValues(), seqs})
		if instance == "" {
			instance = b.GetAgentInstance()
		}
		if b.GetAgentInstance() != instance || instance == "" {
			t.Errorf("agent instance %q, then %q", instance, b.GetAgentInstance())
		}
	}
	want := []beat{
		{map[string]string{"maintenance": "true"}, []uint64{1, 2}},
		{map[string]string{"maintenance": "true"}, []uint64{1, 2}}, // a new stream: all again
		{map[string]string{"maintenance": "true", "vms_running": "12"}, []uint64{3}},
		{nil, nil},
	}
	if len(got) != len(want) {
		t.Fatalf("beats = %v, want %v", got, want)
	}
	for i := range want {
		if !maps.Equal(got[i].reported, want[i].reported) || !slices.Equal(got[i].events, want[i].events) ||
			(want[i].reported == nil) != (got[i].reported == nil) {
			t.Errorf("beat %d carried %v, want %v", i+1, got[i], want[i])
		}
	}
	// The early beat came a quarter of the interval after beat 3's
	// predecessor, not a whole interval.
	if sleeps := h.clock.Sleeps(); !slices.Contains(sleeps, iv/earlyBeats) {
		t.Errorf("sleeps = %v, want one of %s (an early beat)", sleeps, iv/earlyBeats)
	}
	if q := len(s.queue); q != 0 {
		t.Errorf("%d events still queued after acknowledgements", q)
	}
	if s.connection != connDisconnected || s.lastHeartbeat.IsZero() {
		t.Errorf("state: connection %q, last heartbeat %v", s.connection, s.lastHeartbeat)
	}
}
