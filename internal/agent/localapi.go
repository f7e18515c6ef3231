package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// DefaultSocket is where the agent serves its local API.
const DefaultSocket = "/run/berth/agent.sock"

// socketMode lets the agent's user and the socket's group call the API.
const socketMode fs.FileMode = 0o660

// localAPI serves berthv1.AgentService over the node's unix socket. Who
// may call it is decided by the socket's mode and group, so there is no
// authentication here, and the agent never serves it on the network.
type localAPI struct {
	berthv1.UnsafeAgentServiceServer
	state *nodeState
	log   *slog.Logger
}

var _ berthv1.AgentServiceServer = (*localAPI)(nil)

// Public messages of the local API.
const msgLocalInternal = "internal error"

// localStatus maps the local API's errors to gRPC status, in one place.
// (The agent does not use internal/rpc/rpcerr, which links the servers'
// database drivers into the agent.)
func (l *localAPI) localStatus(err error) error {
	var inv *invalidInput
	if errors.As(err, &inv) {
		return status.Error(codes.InvalidArgument, inv.Error())
	}
	l.log.Error("local API", logErr, err)
	return status.Error(codes.Internal, msgLocalInternal)
}

func (l *localAPI) UpdateReported(_ context.Context, req *berthv1.UpdateReportedRequest) (*berthv1.UpdateReportedResponse, error) {
	rep, err := l.state.updateReported(req.GetSet(), req.GetUnset())
	if err != nil {
		return nil, l.localStatus(err)
	}
	return &berthv1.UpdateReportedResponse{Reported: rep}, nil
}

func (l *localAPI) ReportEvent(_ context.Context, req *berthv1.ReportEventRequest) (*berthv1.ReportEventResponse, error) {
	e, n, dropped, err := l.state.addEvent(req.GetType(), req.GetSeverity(), req.GetMessage())
	if err != nil {
		return nil, l.localStatus(err)
	}
	l.log.Info("node event queued", "type", e.Type, "severity", SeverityName(e.Severity), "sequence", e.Seq)
	return &berthv1.ReportEventResponse{Sequence: e.Seq, Queued: uint32(n), Dropped: dropped}, nil
}

func (l *localAPI) GetAgentStatus(context.Context, *berthv1.GetAgentStatusRequest) (*berthv1.GetAgentStatusResponse, error) {
	s := l.state
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &berthv1.GetAgentStatusResponse{
		NodeId:         s.nodeID,
		IdentitySource: s.identitySource,
		CertSerial:     s.certSerial,
		BundleVersion:  s.bundleVersion,
		Connection:     s.connection,
		Reported:       maps.Clone(s.reported),
		EventsQueued:   uint32(len(s.queue)),
		EventsDropped:  s.dropped,
	}
	if !s.certNotAfter.IsZero() {
		r.CertNotAfter = timestamppb.New(s.certNotAfter)
	}
	if !s.bundleAppliedAt.IsZero() {
		r.BundleAppliedAt = timestamppb.New(s.bundleAppliedAt)
	}
	if !s.lastHeartbeat.IsZero() {
		r.LastHeartbeat = timestamppb.New(s.lastHeartbeat)
	}
	if s.interval > 0 {
		r.HeartbeatInterval = durationpb.New(s.interval)
	}
	return r, nil
}

// listenLocal makes the local API's socket at path: its directory is made
// (0755) if missing, a stale socket is replaced, and the socket gets mode
// 0660 and group gid (-1 keeps the agent's).
func listenLocal(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, configErrorf("--socket %s exists and is not a socket", path)
		}
		// Left by an agent that did not stop cleanly; nobody else serves
		// there unless two agents run, which the connect below tells.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--socket %s: another agent serves there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--socket: remove stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--socket: %w", err)
	}
	// Chmod after the fact is a window of the umask's mode; the directory
	// (0755, root's) keeps others from racing to it.
	if err := os.Chmod(path, socketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("--socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("--socket-group: %w", err)
		}
	}
	return l, nil
}

// serveLocal serves the local API on l until ctx ends.
func serveLocal(ctx context.Context, l net.Listener, state *nodeState, log *slog.Logger) {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 10))
	berthv1.RegisterAgentServiceServer(srv, &localAPI{state: state, log: log})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("local API stopped", logErr, err)
		}
	}()
	<-ctx.Done()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	<-done
}

// DialLocal connects to the agent's local API at socket.
func DialLocal(socket string) (berthv1.AgentServiceClient, func() error, error) {
	cc, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return berthv1.NewAgentServiceClient(cc), cc.Close, nil
}

// startLocal serves the local API on Config.Socket and reads the kernel
// log, until the returned stop is called.
func (a *Agent) startLocal(ctx context.Context) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	var done []chan struct{}
	stop = func() {
		cancel()
		for _, d := range done {
			<-d
		}
	}
	if a.cfg.Socket != "" {
		gid := -1
		if a.cfg.SocketGroup != "" {
			if gid, err = lookupGID(a.cfg.SocketGroup); err != nil {
				cancel()
				return nil, configErrorf("--socket-group %q: %v", a.cfg.SocketGroup, err)
			}
		}
		l, err := listenLocal(a.cfg.Socket, gid)
		if err != nil {
			cancel()
			return nil, err
		}
		d := make(chan struct{})
		done = append(done, d)
		go func() {
			defer close(d)
			defer os.Remove(a.cfg.Socket)
			serveLocal(ctx, l, a.state, a.log)
		}()
		a.log.Info("local API listening", "socket", a.cfg.Socket)
	}
	if a.cfg.Kmsg != "" {
		d := make(chan struct{})
		done = append(done, d)
		go func() {
			defer close(d)
			a.watchKmsg(ctx, a.cfg.Kmsg, a.log)
		}()
	}
	return stop, nil
}
