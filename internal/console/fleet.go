package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Fleet table page sizes.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// fleetFilter is the Fleet page's query.
type fleetFilter struct {
	Status string // pending, approved, rejected, revoked or ""
	Health string // healthy, suspect, unreachable or ""
	Label  string // k=v[,k=v]
	Page   string // the service's page token
	Size   int
}

func parseFleetFilter(q url.Values) (fleetFilter, error) {
	f := fleetFilter{Status: q.Get("status"), Health: q.Get("health"), Label: strings.TrimSpace(q.Get("label")), Page: q.Get("page"), Size: defaultPageSize}
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return f, status.Errorf(codes.InvalidArgument, "size must be a number from 1 to %d", maxPageSize)
		}
		f.Size = n
	}
	if _, ok := berthv1.NodeStatus_value["NODE_STATUS_"+strings.ToUpper(f.Status)]; f.Status != "" && !ok {
		return f, status.Errorf(codes.InvalidArgument, "status %q is not one of pending, approved, rejected, revoked", f.Status)
	}
	if _, ok := berthv1.LivenessState_value["LIVENESS_STATE_"+strings.ToUpper(f.Health)]; f.Health != "" && !ok {
		return f, status.Errorf(codes.InvalidArgument, "health %q is not one of healthy, suspect, unreachable", f.Health)
	}
	if _, err := f.labels(); err != nil {
		return f, err
	}
	return f, nil
}

func (f fleetFilter) status() berthv1.NodeStatus {
	return berthv1.NodeStatus(berthv1.NodeStatus_value["NODE_STATUS_"+strings.ToUpper(f.Status)])
}

func (f fleetFilter) health() berthv1.LivenessState {
	return berthv1.LivenessState(berthv1.LivenessState_value["LIVENESS_STATE_"+strings.ToUpper(f.Health)])
}

func (f fleetFilter) labels() (map[string]string, error) {
	if f.Label == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(f.Label, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, status.Errorf(codes.InvalidArgument, "label filter %q is not key=value[,key=value]", f.Label)
		}
		out[k] = v
	}
	return out, nil
}

// query renders the filter as a Fleet URL query, with another page token.
func (f fleetFilter) query(page string) string {
	q := url.Values{}
	for k, v := range map[string]string{"status": f.Status, "health": f.Health, "label": f.Label, "page": page} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Size != defaultPageSize {
		q.Set("size", strconv.Itoa(f.Size))
	}
	return q.Encode()
}

// fleetRow is one node of the table.
type fleetRow struct {
	Node   *berthv1.Node
	Health *berthv1.NodeHealth // nil when the node never beat
}

type fleetData struct {
	Filter   fleetFilter
	Rows     []fleetRow
	Next     string // query of the next page, "" on the last
	First    string // query of the first page, "" on it
	Counts   counts
	CountErr string
	// After is where the page's live updates follow on: the logs'
	// cursors just before the table was read, so that no change between
	// reading and following is missed.
	After string
}

func (s *Console) fleetPage(w http.ResponseWriter, r *http.Request, ss *session) {
	f, err := parseFleetFilter(r.URL.Query())
	if err != nil {
		s.fail(w, r, ss, httpStatus(err), errorText(err))
		return
	}
	ctx, cancel := callContext(r)
	defer cancel()
	ctx = as(ctx, ss.principal)
	var d fleetData
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := s.counts.get(ctx, s.api, ss.principal, true)
		if err != nil {
			d.CountErr = errorText(err)
			return
		}
		d.Counts = c
	})
	after := map[string]int64{}
	if c, err := s.api.newest(ctx, logNode); err == nil {
		after[logNode] = c
	}
	rows, next, healthCursor, err := s.fleetRows(ctx, f)
	wg.Wait()
	after[logHealth] = healthCursor
	d.After = cursorsParam(after)
	if err != nil {
		s.fail(w, r, ss, httpStatus(err), errorText(err))
		return
	}
	d.Filter, d.Rows = f, rows
	if next != "" {
		d.Next = f.query(next)
	}
	if f.Page != "" {
		d.First = f.query("")
	}
	s.render(w, r, http.StatusOK, "fleet", ss, d)
}

// fleetRows reads one page: the service pages, the console never holds
// the whole fleet. With a health filter the heartbeat service pages and
// the nodes are fetched by ID; the status and label filters apply before
// paging (fleetRowsByHealth), so pages are full but for the last.
func (s *Console) fleetRows(ctx context.Context, f fleetFilter) ([]fleetRow, string, int64, error) {
	labels, _ := f.labels()
	if f.Health != "" {
		return s.fleetRowsByHealth(ctx, f, labels)
	}
	// The health log's cursor comes from before the nodes are read.
	hc, err := s.api.newest(ctx, logHealth)
	if err != nil {
		return nil, "", 0, err
	}
	resp, err := s.api.nodes.ListNodes(ctx, &berthv1.ListNodesRequest{
		Status: f.status(), Labels: labels, PageSize: int32(f.Size), PageToken: f.Page,
	})
	if err != nil {
		return nil, "", 0, err
	}
	rows := make([]fleetRow, len(resp.GetNodes()))
	ids := make([]string, len(rows))
	for i, n := range resp.GetNodes() {
		rows[i].Node, ids[i] = n, n.GetId()
	}
	if len(ids) > 0 {
		h, err := s.api.health.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{NodeIds: ids, PageSize: int32(len(ids))})
		if err != nil {
			return nil, "", 0, err
		}
		byID := map[string]*berthv1.NodeHealth{}
		for _, nh := range h.GetNodes() {
			byID[nh.GetNodeId()] = nh
		}
		for i := range rows {
			rows[i].Health = byID[ids[i]]
		}
	}
	return rows, resp.GetNextPageToken(), hc, nil
}

// fetchParallel bounds the GetNode calls of one health-filtered page.
const fetchParallel = 16

// maxHealthScans bounds the heartbeat pages one health-filtered page of
// the Fleet table reads: with a filter that few nodes of that health
// match, the page comes out short (its Next link goes on from where it
// stopped) rather than reading the whole fleet at once.
const maxHealthScans = 20

func (s *Console) fleetRowsByHealth(ctx context.Context, f fleetFilter, labels map[string]string) ([]fleetRow, string, int64, error) {
	var (
		out    []fleetRow
		token  = f.Page
		cursor int64
	)
	// Each read asks for as many nodes as the page still lacks, so that
	// it is consumed whole and its next_page_token is where the next page
	// starts: no node is skipped or shown twice.
	for scan := 0; scan < maxHealthScans && len(out) < f.Size; scan++ {
		h, err := s.api.health.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{State: f.health(), PageSize: int32(f.Size - len(out)), PageToken: token})
		if err != nil {
			return nil, "", 0, err
		}
		if scan == 0 {
			// ListNodeHealth's cursor is the log's newest just before it
			// read: the first read's is where live updates follow on.
			cursor = h.GetCursor()
		}
		rows, err := s.nodesOf(ctx, h.GetNodes())
		if err != nil {
			return nil, "", 0, err
		}
		for _, row := range rows {
			if f.Status != "" && row.Node.GetStatus() != f.status() || !hasLabels(row.Node, labels) {
				continue
			}
			out = append(out, row)
		}
		if token = h.GetNextPageToken(); token == "" {
			break
		}
	}
	return out, token, cursor, nil
}

// nodesOf fetches the nodes of health records, in parallel; a node
// deleted since it last beat is left out.
func (s *Console) nodesOf(ctx context.Context, hs []*berthv1.NodeHealth) ([]fleetRow, error) {
	rows := make([]fleetRow, len(hs))
	errs := make([]error, len(rows))
	sem := make(chan struct{}, fetchParallel)
	var wg sync.WaitGroup
	for i, nh := range hs {
		rows[i].Health = nh
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			resp, err := s.api.nodes.GetNode(ctx, &berthv1.GetNodeRequest{Id: nh.GetNodeId()})
			rows[i].Node, errs[i] = resp.GetNode(), err
		})
	}
	wg.Wait()
	out := rows[:0]
	for i, row := range rows {
		if status.Code(errs[i]) == codes.NotFound {
			continue
		}
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, row)
	}
	return out, nil
}

func hasLabels(n *berthv1.Node, want map[string]string) bool {
	for k, v := range want {
		if got, ok := n.GetLabels()[k]; !ok || got != v {
			return false
		}
	}
	return true
}
