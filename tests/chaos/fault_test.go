package chaos

import (
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// fault is one thing that goes wrong during a storm.
type fault struct {
	name string
	// before runs before the storm starts (nil: nothing).
	before func(t *testing.T, d *deployment)
	// during runs while the storm runs, and returns when the fault was
	// cleared: the replica restarted, PostgreSQL started, the disk freed.
	during func(t *testing.T, d *deployment, s *storm) time.Time
	// betweenSignAndWrite says the fault can strike between the CA's
	// Sign and the registry's write of the certificate (a CA or
	// registration replica dies, the database goes away or fills): what
	// only exactly-once issuance (intents, idempotent Sign, the
	// reconciler) gets right.
	betweenSignAndWrite bool
}

// strike waits until the storm's boots are released, and a moment more,
// so that the fault hits boots in flight.
func strike(s *storm) {
	select {
	case <-s.released:
	case <-s.done:
	}
	time.Sleep(faultAfter)
}

// Pacing of the faults. A replica stays dead, and the disk full, long
// enough for many boots to need it.
const (
	faultAfter   = 200 * time.Millisecond
	deadReplica  = time.Second
	pgDownAtBoot = 30 * time.Second
	diskFullFor  = 10 * time.Second
)

func (d *deployment) faults() []fault {
	var fs []fault
	for _, r := range d.replicas {
		fs = append(fs, fault{
			name:                "kill -9 " + r.name,
			betweenSignAndWrite: r.role == "ca" || r.role == "registration",
			during: func(t *testing.T, d *deployment, s *storm) time.Time {
				strike(s)
				r.kill9()
				time.Sleep(deadReplica)
				r.start(t)
				return time.Now()
			},
		})
	}
	fs = append(fs,
		fault{
			name:                "PostgreSQL restart",
			betweenSignAndWrite: true,
			during: func(t *testing.T, d *deployment, s *storm) time.Time {
				strike(s)
				d.cluster.Stop(t)
				d.cluster.Start(t)
				return time.Now()
			},
		},
		fault{
			name:   fmt.Sprintf("PostgreSQL down first %v", pgDownAtBoot),
			before: func(t *testing.T, d *deployment) { d.cluster.Stop(t) },
			during: func(t *testing.T, d *deployment, s *storm) time.Time {
				time.Sleep(pgDownAtBoot)
				d.cluster.Start(t)
				return time.Now()
			},
		},
		fault{
			name:                fmt.Sprintf("database disk full %v", diskFullFor),
			betweenSignAndWrite: true,
			during: func(t *testing.T, d *deployment, s *storm) time.Time {
				strike(s)
				if err := d.disk.fill(); err != nil {
					t.Fatalf("fill the database's disk: %v", err)
				}
				time.Sleep(diskFullFor)
				if err := d.disk.free(); err != nil {
					t.Fatalf("free the database's disk: %v", err)
				}
				return time.Now()
			},
		},
	)
	return fs
}

// printMatrix logs the fault matrix.
func printMatrix(t *testing.T, rows []*outcome) {
	t.Helper()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "fault\tstorm\tnodes\tbooted\tgave up\tcerts/node\tmismatched\torphans\tdup requests\tlost events\tdup events\tlost/dup by log\tcursor holes\trecover\t")
	for _, o := range rows {
		certs := fmt.Sprint(o.certsMin)
		if o.certsMax != o.certsMin {
			certs = fmt.Sprintf("%d-%d", o.certsMin, o.certsMax)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.1fs\t\n", o.fault, o.storm, o.nodes, o.booted, o.gaveUp,
			certs, o.mismatched, o.orphans, o.duplicateRequests, o.lostEvents, o.dupEvents, o.logSummary(), o.holeSummary(), o.recover.Seconds())
	}
	w.Flush()
	t.Logf("fault matrix (recover: from the fault's end until every replica is SERVING and the last node booted; lost/dup by log: node, bundle, health; cursor holes by log: rolled-back appends, expected on PostgreSQL):\n%s", b.String())
}
