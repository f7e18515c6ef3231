package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/depwatch"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// needs is what one role's gRPC services cannot work without; build turns
// every role's into a depwatch.Watch on the process's health server.
type needs struct {
	services []string
	deps     []depwatch.Dependency
}

// storeDependency is the database of a role's store. It is probed on a
// handle of its own, one connection, so that health asks the database
// itself whether it answers, whatever the store's pool is busy with. On
// PostgreSQL every role of a process shares one such handle.
func (b *built) storeDependency(ctx context.Context, c Config, role, sqliteFile string) (depwatch.Dependency, error) {
	name := role + " store"
	d, where := db.SQLite, filepath.Join(c.DataDir, sqliteFile)
	if c.DB != "" {
		d, where = db.Postgres, c.DB
	}
	h, ok := b.probes[where]
	if !ok {
		var err error
		h, err = db.Open(ctx, d, where)
		if err != nil {
			return depwatch.Dependency{}, fmt.Errorf("open %s for health checks: %w", name, err)
		}
		h.SetMaxOpenConns(1)
		h.SetMaxIdleConns(1)
		if b.probes == nil {
			b.probes = map[string]*db.DB{}
		}
		b.probes[where] = h
		b.closers = append(b.closers, func() { h.Close() })
	}
	return depwatch.Dependency{Name: name, Check: h.Check}, nil
}

// caDependency is the CA as the registration service reaches it: SERVING
// there means the CA is up and its own store answers.
func caDependency(conn grpc.ClientConnInterface) depwatch.Dependency {
	return depwatch.Dependency{
		Name:  "CA",
		Check: depwatch.Serving(healthpb.NewHealthClient(conn), berthv1.CertificateAuthorityService_ServiceDesc.ServiceName),
	}
}

// revocationDependency is the revocation list a service enforces: it must
// have been loaded, and refreshed recently, from the CA.
func revocationDependency(known func() error) depwatch.Dependency {
	return depwatch.Dependency{Name: "revocation list", Check: func(context.Context) error { return known() }}
}
