package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/store/regstore"
)

// The gauges that count what a store holds (nodes by status, by health;
// the event logs' heads and so the watchers' lag) are refreshed in the
// background every GaugePeriod, each with a query or two on an index,
// rather than on each scrape: a scrape costs the stores nothing however
// often Prometheus comes, and many replicas scraping add no load.

// refreshTimeout bounds one store's refresh when GaugePeriod is shorter.
const refreshTimeout = 10 * time.Second

// gauge refreshes one store's gauges.
type gauge struct {
	store   string
	refresh func(context.Context) error
}

func registrationGauges(m *metrics.Metrics, s regstore.Store) gauge {
	return gauge{store: "registration", refresh: func(ctx context.Context) error {
		counts, err := s.CountNodes(ctx)
		if err != nil {
			return err
		}
		out := make([]metrics.NodeCount, len(counts))
		for i, c := range counts {
			out[i] = metrics.NodeCount{Status: string(c.Status), IdentitySource: c.IdentitySource, N: c.N}
		}
		m.SetNodes(out)
		return setHead(ctx, m, "registration", s.Events())
	}}
}

func heartbeatGauges(m *metrics.Metrics, s heartbeatstore.Store) gauge {
	return gauge{store: "heartbeat", refresh: func(ctx context.Context) error {
		counts, err := s.CountByState(ctx)
		if err != nil {
			return err
		}
		byState := map[string]int64{}
		for st, n := range counts {
			byState[string(st)] = n
		}
		m.SetHealth(byState)
		return setHead(ctx, m, "heartbeat", s.Events())
	}}
}

func headGauge(m *metrics.Metrics, service string, l eventlog.Log) gauge {
	return gauge{store: service, refresh: func(ctx context.Context) error { return setHead(ctx, m, service, l) }}
}

func setHead(ctx context.Context, m *metrics.Metrics, service string, l eventlog.Log) error {
	b, err := l.Bounds(ctx)
	if err != nil {
		return err
	}
	m.SetHead(service, b.Head)
	return nil
}

// refreshGauges refreshes every gauge now and every period until ctx ends.
// A store that fails is counted and tried again next time; its gauges keep
// their last values, dated by berth_gauges_refreshed_timestamp_seconds.
func refreshGauges(ctx context.Context, c Config, gs []gauge) {
	period := c.GaugePeriod
	if period <= 0 {
		period = DefaultGaugePeriod
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		for _, g := range gs {
			qctx, cancel := context.WithTimeout(ctx, max(period, refreshTimeout))
			err := g.refresh(qctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				c.Logger.Debug("metrics gauges not refreshed", "store", g.store, "error", err)
			}
			c.metrics.Refreshed(g.store, float64(time.Now().UnixNano())/1e9, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
