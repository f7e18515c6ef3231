package rpc

import (
	"context"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/buildinfo"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

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
