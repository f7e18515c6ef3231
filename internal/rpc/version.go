package rpc

import (
	"context"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/buildinfo"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Authenticated allows every caller whose certificate this deployment's CA
// issued: admins, nodes and services, but not a bare key.
func Authenticated(id mtls.Identity) bool {
	switch id.Kind {
	case mtls.KindAdmin, mtls.KindNode, mtls.KindService:
		return true
	}
	return false
}

// versionPolicy lets any authenticated caller ask a server for its build,
// so that berthctl version can show it whatever role the server has.
func versionPolicy() Policy {
	return Policy{berthv1.VersionService_GetVersion_FullMethodName: Authenticated}
}

// versionService answers berth.v1.VersionService from the running
// binary's build information. Every server built by NewServer has it.
type versionService struct {
	berthv1.UnsafeVersionServiceServer
	info buildinfo.Info
}

var _ berthv1.VersionServiceServer = (*versionService)(nil)

func registerVersion(s *grpc.Server) {
	berthv1.RegisterVersionServiceServer(s, &versionService{info: buildinfo.Get()})
}

// GetVersion returns the build of this process.
func (v *versionService) GetVersion(context.Context, *berthv1.GetVersionRequest) (*berthv1.GetVersionResponse, error) {
	return &berthv1.GetVersionResponse{
		Version:   v.info.Version,
		Commit:    v.info.Commit,
		BuildDate: v.info.Date,
		GoVersion: v.info.GoVersion,
		Platform:  v.info.Platform,
	}, nil
}
