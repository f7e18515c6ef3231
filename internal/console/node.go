package console

import (
	"net/http"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

type nodeData struct {
	Node *berthv1.Node
	// Each section shows its own error, so that one service down still
	// shows the rest.
	Certs     []*berthv1.IssuedCertificate
	CertsErr  string
	Health    *berthv1.NodeHealth
	HealthErr string
	Bundle    *berthv1.GetBundleInfoResponse
	History   []*berthv1.BundleInfo
	BundleErr string
	Events    []event
	EventsErr string
	// After is where the page's live events follow on.
	After string
}

// ReportedKeys lists the reported status in key order.
func (d nodeData) ReportedKeys() []string {
	return slices.Sorted(mapsKeys(d.Health.GetReported()))
}

func (s *Console) nodePage(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	ctx, cancel := callContext(r)
	defer cancel()
	ctx = as(ctx, ss.principal)
	n, err := s.api.nodes.GetNode(ctx, &berthv1.GetNodeRequest{Id: id})
	if err != nil {
		s.fail(w, r, ss, httpStatus(err), errorText(err))
		return
	}
	d := nodeData{Node: n.GetNode()}
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := s.api.nodes.ListCertificates(ctx, &berthv1.ListCertificatesRequest{NodeId: id})
		d.Certs, d.CertsErr = c.GetCertificates(), errText(err)
	})
	wg.Go(func() {
		h, err := s.api.health.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: id})
		if status.Code(err) == codes.NotFound {
			err = nil // it never beat
		}
		d.Health, d.HealthErr = h.GetHealth(), errText(err)
	})
	wg.Go(func() {
		info, err := s.api.bundles.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: id})
		if status.Code(err) == codes.NotFound {
			info, err = nil, nil // no bundle
		}
		if err != nil {
			d.BundleErr = errText(err)
			return
		}
		hist, err := s.api.bundles.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: id})
		d.Bundle, d.History, d.BundleErr = info, hist.GetVersions(), errText(err)
	})
	evs, after, err := s.recentAll(r, ss, eventFilter{Node: id})
	wg.Wait()
	d.Events, d.After, d.EventsErr = evs, after, errText(err)
	s.render(w, r, http.StatusOK, "node", ss, d)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return errorText(err)
}

// recentAll reads the recent events of every log f needs, newest first,
// and the cursors to follow on from.
func (s *Console) recentAll(r *http.Request, ss *session, f eventFilter) ([]event, string, error) {
	ctx, cancel := callContext(r)
	defer cancel()
	ctx = as(ctx, ss.principal)
	logs := f.logs()
	evs := make([][]event, len(logs))
	afters := make([]int64, len(logs))
	errs := make([]error, len(logs))
	var wg sync.WaitGroup
	for i, l := range logs {
		wg.Go(func() { evs[i], afters[i], errs[i] = s.api.recent(ctx, l, f) })
	}
	wg.Wait()
	var all []event
	cursors := map[string]int64{}
	var firstErr error
	for i, l := range logs {
		if errs[i] != nil {
			firstErr = cmpOr(firstErr, errs[i])
			continue
		}
		all = append(all, evs[i]...)
		cursors[l] = afters[i]
	}
	slices.SortStableFunc(all, func(a, b event) int { return b.Time.Compare(a.Time) })
	if len(all) > replayMax {
		all = all[:replayMax]
	}
	return all, cursorsParam(cursors), firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
