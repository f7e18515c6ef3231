package console

import (
	"net/http"
	"sync"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// eventTableData is what the shared event table template shows.
type eventTableData struct {
	Events []event
	// After, Node and Type configure the table's live stream.
	After, Node, Type string
}

func eventTable(evs []event, after, node, typ string) eventTableData {
	return eventTableData{Events: evs, After: after, Node: node, Type: typ}
}

type eventsData struct {
	Filter eventFilter
	Types  map[string][]string
	Table  eventTableData
	Err    string
}

func (s *Console) eventsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	f, _, err := streamFilter(r)
	if err != nil {
		s.fail(w, r, ss, httpStatus(err), errorText(err))
		return
	}
	f.After = nil
	evs, after, err := s.recentAll(r, ss, f)
	d := eventsData{
		Filter: f,
		Types:  map[string][]string{"Node lifecycle": nodeTypes, "Health": healthTypes, "Bundles": bundleTypes},
		Table:  eventTable(evs, after, f.Node, f.Type),
		Err:    errText(err),
	}
	s.render(w, r, http.StatusOK, "events", ss, d)
}

type settingsData struct {
	Heartbeat *berthv1.HeartbeatSettings
	Err       string
	Bundles   *berthv1.BundleSettings
	BundleErr string
}

func (s *Console) settingsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := callContext(r)
	defer cancel()
	ctx = as(ctx, ss.principal)
	var d settingsData
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := s.api.health.GetHeartbeatSettings(ctx, &berthv1.GetHeartbeatSettingsRequest{})
		d.Heartbeat, d.Err = resp.GetSettings(), errText(err)
	})
	wg.Go(func() {
		resp, err := s.api.bundles.GetBundleSettings(ctx, &berthv1.GetBundleSettingsRequest{})
		d.Bundles, d.BundleErr = resp.GetSettings(), errText(err)
	})
	wg.Wait()
	s.render(w, r, http.StatusOK, "settings", ss, d)
}
