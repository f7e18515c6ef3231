package daemon

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store/regstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// benchNodes is the fleet the front door benchmarks list.
const benchNodes = 10_000

// preloadPending registers n pending nodes straight into the registration
// store (its own RegisterNode, in parallel), so that listing and approving
// run against a fleet of that size.
func preloadPending(b *testing.B, dsn string, n int) {
	b.Helper()
	ctx := context.Background()
	st, err := regstore.Open(ctx, db.Postgres, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	tok := regstore.Token{ID: "benchpreload", SecretHash: make([]byte, 32), ExpiresAt: now.Add(time.Hour), UsesLeft: n, CreatedAt: now}
	if err := st.CreateToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				key := make([]byte, 32)
				rand.Read(key)
				node := regstore.Node{
					ID: fmt.Sprintf("bench-%06d", i), Status: regstore.StatusPending, KeySHA256: key,
					HardwareUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Hostname: fmt.Sprintf("hv%06d.rack%d", i, i%40),
					MACs: []string{fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)}, Serial: fmt.Sprintf("SN%08d", i),
					Labels: map[string]string{"rack": strconv.Itoa(int(i % 40)), "role": "hypervisor"}, IdentitySource: "seed-file",
					BundleKEM: 0x647a, BundleKey: make([]byte, 1216), CSR: make([]byte, 300), CreatedAt: now, UpdatedAt: now,
				}
				if _, err := st.RegisterNode(ctx, tok.ID, now, node, ""); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFrontDoor measures, on PostgreSQL with the services run apart
// and berthd serve --role api before them, the two things an engine does
// most: list the whole fleet (10,000 nodes) and follow the event log. Each
// is measured over REST through the front door, over gRPC through the
// front door, and over gRPC straight to the registration service.
//
//	go test -run '^$' -bench BenchmarkFrontDoor -benchtime 20x ./internal/daemon
//
// list: one op lists all 10,000 nodes, following the pages; ms/page is
// the latency of one page. follow: one op approves a node and waits for
// its event on a stream opened before; ms/event is from the approval's
// answer to the event's arrival.
func BenchmarkFrontDoor(b *testing.B) {
	cluster := pgtest.NewCluster(b)
	l := newPKI(b, "")
	d := startSplit(b, l, cluster.DSN())
	preloadPending(b, cluster.DSN(), benchNodes)
	adminCert, err := l.AdminCertificate()
	if err != nil {
		b.Fatal(err)
	}
	rest := newRESTClient(b, l, d.front, adminCert)
	rest.http.Timeout = 10 * time.Minute
	paths := []struct {
		name string
		conn *grpc.ClientConn
	}{
		{"grpc-front-door", d.dialFront(b, pki.ServiceRegistration, adminCert)},
		{"grpc-direct", d.dial(b, RoleRegistration, adminCert)},
	}

	for _, size := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("list/rest-front-door/page=%d", size), func(b *testing.B) {
			pages := 0
			for b.Loop() {
				n, p := restListAll(b, rest, size)
				if n != benchNodes {
					b.Fatalf("listed %d nodes, want %d", n, benchNodes)
				}
				pages += p
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(pages), "ms/page")
		})
		for _, p := range paths {
			b.Run(fmt.Sprintf("list/%s/page=%d", p.name, size), func(b *testing.B) {
				c := berthv1.NewNodeAdminServiceClient(p.conn)
				pages := 0
				for b.Loop() {
					n, token := 0, ""
					for {
						resp, err := c.ListNodes(context.Background(), &berthv1.ListNodesRequest{PageSize: int32(size), PageToken: token})
						if err != nil {
							b.Fatal(err)
						}
						pages++
						n += len(resp.GetNodes())
						if token = resp.GetNextPageToken(); token == "" {
							break
						}
					}
					if n != benchNodes {
						b.Fatalf("listed %d nodes, want %d", n, benchNodes)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(pages), "ms/page")
			})
		}
	}

	// Follow: every approval's event, as the engine sees it.
	admin := berthv1.NewNodeAdminServiceClient(paths[1].conn)
	var approved atomic.Int64
	approveNext := func(b *testing.B) string {
		id := fmt.Sprintf("bench-%06d", approved.Add(1))
		if _, err := admin.ApproveNode(context.Background(), &berthv1.ApproveNodeRequest{Id: id}); err != nil {
			b.Fatal(err)
		}
		return id
	}
	follow := func(b *testing.B, events <-chan string) {
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			id := approveNext(b)
			for got := range events {
				if got == id {
					break
				}
			}
			lat = append(lat, time.Since(start))
		}
		reportLatency(b, lat)
	}
	b.Run("follow/rest-front-door", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", rest.base+"/v1/events?type=approved&from_now=true", nil)
		events := make(chan string, 1024)
		// The request is read on its own goroutine while the approvals
		// start.
		go func() {
			defer close(events)
			resp, err := rest.http.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				return
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var line struct {
					Result struct {
						Event struct {
							NodeID string `json:"node_id"`
						} `json:"event"`
					} `json:"result"`
				}
				if json.Unmarshal(sc.Bytes(), &line) == nil {
					events <- line.Result.Event.NodeID
				}
			}
			resp.Body.Close()
		}()
		follow(b, events)
	})
	for _, p := range paths {
		b.Run("follow/"+p.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := berthv1.NewNodeAdminServiceClient(p.conn).WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{
				Filter: &berthv1.LifecycleFilter{FromNow: true, Types: []string{"approved"}}})
			if err != nil {
				b.Fatal(err)
			}
			events := make(chan string, 1024)
			go func() {
				defer close(events)
				for {
					resp, err := stream.Recv()
					if err != nil {
						return
					}
					events <- resp.GetEvent().GetNodeId()
				}
			}()
			follow(b, events)
		})
	}
}

// reportLatency reports the median and the 99th percentile.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}

// restListAll lists every node over REST, following the pages, and
// returns how many nodes and pages it read.
func restListAll(b *testing.B, c *restClient, size int) (nodes, pages int) {
	token := ""
	for {
		path := "/v1/nodes?page_size=" + strconv.Itoa(size)
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		code, raw := c.raw(b, "GET", path, "")
		if code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, code, raw)
		}
		var page struct {
			Nodes []struct {
				ID string `json:"id"`
			} `json:"nodes"`
			Next string `json:"next_page_token"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			b.Fatal(err)
		}
		pages++
		nodes += len(page.Nodes)
		if token = page.Next; token == "" {
			return nodes, pages
		}
	}
}
