package loadgen

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc"
	"github.com/berth-dev/berth/internal/telemetry"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// floorServerEnv, when set (to "SCENARIO:PKI_DIR"), makes the process a
// floor's bare server: see floorServer.
const floorServerEnv = "BERTH_LOADGEN_FLOOR_SERVER"

// floorServer serves a floor until stdin closes: rpc.NewServer, as berthd
// builds its server (berthd serve's telemetry, make bench's limits), with
// the registration service's certificate (grpc and boot floors) or the
// heartbeat service's (stream floor), health, an echo in place of the
// heartbeat service and, for the boot floor, Resume answered from memory
// (floorResume). Each line on stdin is a command answered with one line
// on stdout (floorCommand).
func floorServer(v string, stdin io.Reader, stdout, stderr io.Writer) error {
	scenario, dir, _ := strings.Cut(v, ":")
	svc := map[string]string{ScenarioGRPCFloor: pki.ServiceRegistration, ScenarioBootFloor: pki.ServiceRegistration,
		ScenarioRegisterFloor: pki.ServiceRegistration, ScenarioStreamFloor: pki.ServiceHeartbeat}[scenario]
	if svc == "" || dir == "" {
		return fmt.Errorf("%s=%q: want SCENARIO:PKI_DIR", floorServerEnv, v)
	}
	layout, err := pki.Load(dir)
	if err != nil {
		return err
	}
	cert, err := layout.ServiceCertificate(svc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	tel, err := telemetry.New(ctx, "berth-"+svc)
	if err != nil {
		return err
	}
	defer tel.Shutdown(ctx)
	srv := rpc.NewServer(rpc.ServerConfig{
		Name: svc, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		TrustDomain: layout.TrustDomain, Cert: cert, Roots: layout.RootPool(),
		Policy: rpc.Policy{
			berthv1.HeartbeatService_Heartbeat_FullMethodName:   rpc.Authenticated,
			berthv1.RegistrationService_Resume_FullMethodName:   rpc.NodeKey,
			berthv1.RegistrationService_Register_FullMethodName: rpc.NodeKey,
		},
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagator: tel.Propagator,
		// As make bench serves: every simulated node connects from
		// 127.0.0.1 (berthd --max-unauthenticated-per-source 0).
		Limits: rpc.Limits{MaxUnauthenticatedPerSource: -1},
	})
	berthv1.RegisterHeartbeatServiceServer(srv.Server, floorEcho{})
	switch scenario {
	case ScenarioBootFloor:
		answers, err := loadAnswers(filepath.Join(dir, bootFloorDir))
		if err != nil {
			return err
		}
		berthv1.RegisterRegistrationServiceServer(srv.Server, floorResume{answers: answers})
	case ScenarioRegisterFloor:
		ca, err := floorSigner(layout)
		if err != nil {
			return err
		}
		berthv1.RegisterRegistrationServiceServer(srv.Server, floorRegister{ca: ca, trust: [][]byte{layout.Root.Raw}})
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	if _, err := fmt.Fprintf(stdout, "listening %s\n", lis.Addr()); err != nil {
		return err
	}
	var prof *os.File
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if _, err := fmt.Fprintln(stdout, floorCommand(sc.Text(), &prof)); err != nil {
			break
		}
	}
	srv.Stop()
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// floorCommand runs one command of the floor's server: "mem" collects
// garbage and answers "heap BYTES stack BYTES" (the live heap and the
// goroutine stacks); "profile PATH" starts
// a CPU profile into PATH and "stop-profile" ends it, each answering "ok".
// Anything that fails answers "error ...".
func floorCommand(line string, prof **os.File) string {
	cmd, arg, _ := strings.Cut(line, " ")
	switch cmd {
	case "mem":
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return fmt.Sprintf("heap %d stack %d", m.HeapAlloc, m.StackInuse)
	case "profile":
		if *prof != nil {
			return "error a profile is running"
		}
		f, err := os.Create(arg)
		if err != nil {
			return "error " + err.Error()
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return "error " + err.Error()
		}
		*prof = f
		return "ok"
	case "stop-profile":
		if *prof == nil {
			return "error no profile is running"
		}
		pprof.StopCPUProfile()
		err := (*prof).Close()
		*prof = nil
		if err != nil {
			return "error " + err.Error()
		}
		return "ok"
	}
	return fmt.Sprintf("error unknown command %q", cmd)
}

// floorEcho answers each heartbeat's message with its acknowledgement and
// the interval, as the heartbeat service does, and does nothing else.
type floorEcho struct {
	berthv1.UnimplementedHeartbeatServiceServer
}

func (floorEcho) Heartbeat(s berthv1.HeartbeatService_HeartbeatServer) error {
	iv := durationpb.New(DefaultFloorInterval)
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&berthv1.HeartbeatResponse{Interval: iv, AckSequence: req.GetSequence()}); err != nil {
			return err
		}
	}
}

// floorResume answers Resume with the answer loaded for the caller's key,
// and does nothing else: no store, no checks beyond the handshake's.
type floorResume struct {
	berthv1.UnimplementedRegistrationServiceServer
	answers map[[32]byte]*berthv1.ResumeResponse
}

func (f floorResume) Resume(ctx context.Context, _ *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
	id, _, ok := mtls.PeerIdentity(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "boot floor: no client certificate")
	}
	r := f.answers[id.KeySHA256]
	if r == nil {
		return nil, status.Error(codes.NotFound, "boot floor: unknown key")
	}
	return r, nil
}

// floorRegister answers Register by signing the caller's CSR at once with
// the CA's key, as the CA service signs (pki.Signer: the CSR's signature
// and the policy checked), and does nothing else: no token, no store, no
// issuance intent, no hop to another service.
type floorRegister struct {
	berthv1.UnimplementedRegistrationServiceServer
	ca    *pki.Signer
	trust [][]byte
}

func (f floorRegister) Register(ctx context.Context, req *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
	id, _, ok := mtls.PeerIdentity(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "register floor: no client certificate")
	}
	nodeID := ident.NewNodeID()
	signed, err := f.ca.Sign(ctx, pki.SignRequest{NodeID: nodeID, Hostname: req.GetFacts().GetHostname(), CSR: req.GetCsr()})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "register floor: %v", err)
	}
	// Checked on the leaf Sign made, so that the CSR is parsed once; a
	// certificate for another key is never sent.
	if sum, err := mtls.KeyHash(signed.Leaf.PublicKey); err != nil || sum != id.KeySHA256 {
		return nil, status.Error(codes.PermissionDenied, "register floor: the CSR is not for the key of the handshake")
	}
	return &berthv1.RegisterResponse{Credentials: &berthv1.NodeCredentials{
		NodeId: nodeID, Status: berthv1.NodeStatus_NODE_STATUS_APPROVED, CertificateChain: signed.Chain, TrustBundle: f.trust,
	}}, nil
}

// loadAnswers reads the boot floor's answers (bootFloorDir), by key.
func loadAnswers(dir string) (map[[32]byte]*berthv1.ResumeResponse, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.pb"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("boot floor: no answers in %s", dir)
	}
	out := make(map[[32]byte]*berthv1.ResumeResponse, len(files))
	for _, f := range files {
		var key [32]byte
		k, err := hex.DecodeString(strings.TrimSuffix(filepath.Base(f), ".pb"))
		if err != nil || len(k) != len(key) {
			return nil, fmt.Errorf("boot floor: %s is not named by a key hash", f)
		}
		copy(key[:], k)
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		nc := &berthv1.NodeCredentials{}
		if err := proto.Unmarshal(b, nc); err != nil {
			return nil, fmt.Errorf("boot floor: %s: %w", f, err)
		}
		out[key] = &berthv1.ResumeResponse{Credentials: nc}
	}
	return out, nil
}
