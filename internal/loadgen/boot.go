package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/keys"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// boot is one agent ready to boot a node.
type boot struct {
	n     *node
	agent *agent.Agent
	keys  keys.Source
	// out receives the agent's JSON result, which says what the boot did.
	out bytes.Buffer
}

// bootOpts shape the agents of a phase.
type bootOpts struct {
	token string
	// noHeartbeat leaves out the first heartbeat (setup boots).
	noHeartbeat bool
	// noBootBeat boots without the first heartbeat but beats (the
	// heartbeat scenario: its nodes connect at once, no mass boot).
	noBootBeat bool
	// heartbeater, if set, makes long-running agents whose heartbeats it
	// sends; otherwise the agents boot once (--once).
	heartbeater func(b *boot) agent.Heartbeater
}

// prepareBoots makes an agent per node: keys derived, a clean cert dir and
// root, configured as berth-agent --identity seed --once would be (or
// long-running, with o.heartbeater). The work is done before the barrier,
// so that the timed phase holds the boots alone; the agents read nothing
// of this machine (no kernel command line, resolver or hardware facts).
func (r *runner) prepareBoots(ctx context.Context, nodes []*node, o bootOpts) ([]*boot, error) {
	boots := make([]*boot, len(nodes))
	for i, n := range nodes {
		boots[i] = &boot{n: n}
	}
	byNode := make(map[*node]*boot, len(nodes))
	for _, b := range boots {
		byNode[b.n] = b
	}
	err := forEach(ctx, nodes, runtime.NumCPU(), func(_ context.Context, n *node) error {
		b := byNode[n]
		if err := n.prepareDirs(); err != nil {
			return err
		}
		src, err := n.keys()
		if err != nil {
			return fmt.Errorf("keys of %s: %w", n.hostname, err)
		}
		cfg := agent.Config{
			Server:         r.cfg.Conn.Server,
			CAHash:         r.cfg.Conn.CAHash,
			Token:          o.token,
			Keys:           src,
			IdentitySource: keys.AssuranceSeedFile, // a seed per simulated node
			CertDir:        n.certDir(),
			Root:           n.root(),
			Wait:           r.cfg.Wait,
			Once:           o.heartbeater == nil,
			Output:         agent.OutputJSON,
			Stdout:         &b.out,
			CmdlineFile:    r.missingFile(),
			ResolvConfFile: r.missingFile(),
			Facts:          n.facts(),
			NoHeartbeat:    o.noHeartbeat,
			NoBootBeat:     o.noBootBeat,
			BootID:         r.bootID(n),
		}
		if o.heartbeater != nil {
			cfg.Heartbeater = o.heartbeater(b)
		}
		a, err := agent.New(cfg)
		if err != nil {
			src.Close()
			return fmt.Errorf("agent of %s: %w", n.hostname, err)
		}
		b.agent, b.keys = a, src
		return nil
	})
	if err != nil {
		for _, b := range boots {
			if b.keys != nil {
				b.keys.Close()
			}
		}
		return nil, err
	}
	return boots, nil
}

// bootStats collects the outcomes of a phase's boots.
type bootStats struct {
	ok, done   atomic.Int64
	errs       *tally
	mu         sync.Mutex
	lat        []time.Duration // of the successful boots
	actions    counter
	sources    counter // where applied bundles came from
	renewed    atomic.Int64
	bundles    atomic.Int64
	heartbeats atomic.Int64
	// recorded counts the boots the registration service recorded as the
	// node's first heartbeat; follow, when set, opens their streams later.
	recorded atomic.Int64
	follow   *follower
	ctx      context.Context
}

func newBootStats() *bootStats { return &bootStats{errs: newTally()} }

// record notes a finished boot and learns the node's ID from its result.
func (s *bootStats) record(b *boot, err error, d time.Duration) {
	defer s.done.Add(1)
	if err != nil {
		s.errs.add(err)
		return
	}
	var res agent.Result
	if err := json.Unmarshal(b.out.Bytes(), &res); err != nil {
		s.errs.add(fmt.Errorf("agent of %s printed no result: %w", b.n.hostname, err))
		return
	}
	b.n.id = res.NodeID
	s.actions.add(res.Action)
	if res.Renewed {
		s.renewed.Add(1)
	}
	if res.Bundle == agent.BundleApplied {
		s.bundles.Add(1)
		s.sources.add(res.BundleSource)
	}
	if res.Heartbeat == agent.HeartbeatAcked {
		s.heartbeats.Add(1)
	}
	if res.Heartbeat == agent.HeartbeatRecorded {
		s.recorded.Add(1)
		if s.follow != nil {
			s.follow.schedule(s.ctx, b.n, res)
		}
	}
	s.ok.Add(1)
	s.mu.Lock()
	s.lat = append(s.lat, d)
	s.mu.Unlock()
}

// runBoots starts every boot as a goroutine, waits until all of them are
// parked on one barrier, and releases them at once; at most concurrency
// run at a time. It returns when the last is done, with the moment of the
// release.
func runBoots(ctx context.Context, boots []*boot, concurrency int, s *bootStats) (start time.Time, elapsed time.Duration) {
	barrier := make(chan struct{})
	sem := make(chan struct{}, concurrency)
	var parked, wg sync.WaitGroup
	for _, b := range boots {
		parked.Add(1)
		wg.Go(func() {
			defer func() {
				b.keys.Close()
				b.agent = nil
			}()
			parked.Done()
			<-barrier
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.record(b, fmt.Errorf("not started: %w", ctx.Err()), 0)
				return
			}
			t := time.Now()
			err := b.agent.Run(ctx)
			d := time.Since(t)
			<-sem
			s.record(b, err, d)
		})
	}
	parked.Wait()
	start = time.Now()
	close(barrier)
	wg.Wait()
	return start, time.Since(start)
}

// timed runs a timed phase of boots and fills the result. With follow,
// the boots recorded as first heartbeats open their streams later, as the
// agent does; the phase's time and CPU are the boots', and the figures
// "total" also count those streams, until the last was acknowledged.
func (r *runner) timed(ctx context.Context, boots []*boot, follow *follower) error {
	if r.cfg.Probe > 0 {
		p, err := Ceiling(ctx, CeilingConfig{Duration: r.cfg.Probe, TempDir: r.cfg.TempDir, Log: r.log})
		if err != nil {
			return fmt.Errorf("ceiling just before the timed boots: %w", err)
		}
		r.res.Probe = p
	}
	s := newBootStats()
	s.follow, s.ctx = follow, ctx
	r.log.Info("timed phase: releasing all boots at once", "scenario", r.cfg.Scenario, "nodes", len(boots), "concurrency", r.cfg.Concurrency)
	rss := startRSS(r.cfg.ServerProcs, r.cfg.DBPID)
	stop := progress(r.log, "boots", len(boots), func() int { return int(s.done.Load()) })
	stopProfile := r.profileSelf()
	start, elapsed := runBoots(ctx, boots, r.cfg.Concurrency, s)
	stopProfile()
	stop()
	var duringBoots, retriedDuring int64
	if follow != nil {
		// A stream is counted once acknowledged, a moment after its
		// handshake; one begun and deferred is not.
		duringBoots, retriedDuring = follow.acked.Load(), follow.retried.Load()
	}
	rss.windowEnd()
	var total map[string]time.Duration
	if follow != nil && follow.started.Load() > 0 {
		r.log.Info("boots done; waiting for the heartbeat streams they open later", "streams", follow.started.Load())
		if err := follow.wait(ctx); err != nil {
			return err
		}
		total = rss.cpuNow()
	}
	rss.finish(r.res)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.fillBoots(s, elapsed)
	if total != nil {
		r.fillFollow(s, follow, start, rss.cpuFrom, total)
		r.res.HeartbeatsDuringBoots = &duringBoots
		r.res.HeartbeatRetriesDuringBoots = &retriedDuring
	}
	certs, err := r.adm.issuedSince(ctx, start)
	if err != nil {
		r.res.Notes = append(r.res.Notes, err.Error())
	} else {
		r.res.CertsIssued = &certs
	}
	r.log.Info("timed phase done", "ok", r.res.OK, "errors", len(boots)-r.res.OK, "elapsed", elapsed.Round(time.Millisecond))
	return nil
}

func (r *runner) fillBoots(s *bootStats, elapsed time.Duration) {
	res := r.res
	res.OK = int(s.ok.Load())
	res.Errors, res.ErrorSamples = s.errs.snapshot()
	l := summarize(s.lat)
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = l.P50, l.P90, l.P99, l.Max
	res.ElapsedS = round(elapsed.Seconds(), 3)
	if elapsed > 0 {
		res.ThroughputPerS = round(float64(res.OK)/elapsed.Seconds(), 1)
	}
	res.Actions = s.actions.get()
	res.Renewed = int(s.renewed.Load())
	res.BundlesApplied = int(s.bundles.Load())
	if src := s.sources.get(); len(src) > 0 {
		res.BundleSources = src
	}
	res.HeartbeatsAcked = int(s.heartbeats.Load())
	res.BootsRecorded = int(s.recorded.Load())
	if res.OK > 0 {
		// One for the registration connection, one per bundle fetched
		// from the bundle store and one per first heartbeat's connection
		// (a --once boot's heartbeat is on its critical path; a boot the
		// registration service recorded as the first heartbeat has none,
		// its stream comes later: fillFollow). Resumed
		// boots whose credentials were already on disk would make none;
		// the load generator's nodes always start from an empty disk.
		hs := round(float64(res.OK+res.BundleSources[agent.BundleSourceFetched]+res.HeartbeatsAcked)/float64(res.OK), 3)
		res.HandshakesPerBoot = &hs
		if res.ServerCPUMsTotal != nil {
			v := round(*res.ServerCPUMsTotal/float64(res.OK), 3)
			res.ServerCPUMsPerOp = &v
		}
		if res.LoadgenCPUMs > 0 {
			v := round(res.LoadgenCPUMs/float64(res.OK), 3)
			res.LoadgenCPUMsPerOp = &v
		}
		if res.DBCPUMs != nil {
			v := round(*res.DBCPUMs/float64(res.OK), 3)
			res.DBCPUMsPerOp = &v
		}
	}
	if res.OK > 0 && res.HeartbeatsAcked+res.BootsRecorded < res.OK {
		res.Notes = append(res.Notes, fmt.Sprintf("%d of %d boots ended without an acknowledged heartbeat: the registration service names no heartbeat endpoint (berthd serve --advertise-heartbeat)", res.OK-res.HeartbeatsAcked, res.OK))
	}
}

// fingerprintAll derives every node's key hash, in parallel.
func (r *runner) fingerprintAll(ctx context.Context, nodes []*node) error {
	return forEach(ctx, nodes, runtime.NumCPU(), func(_ context.Context, n *node) error { return n.fingerprint() })
}

// register is the register scenario: N fresh nodes boot for the first time
// at once, with an auto-approve token.
func (r *runner) register(ctx context.Context) error {
	t0 := time.Now()
	if err := r.fingerprintAll(ctx, r.nodes); err != nil {
		return err
	}
	if r.cfg.Token != "" {
		boots, err := r.prepareBoots(ctx, r.nodes, bootOpts{token: r.cfg.Token})
		if err != nil {
			return err
		}
		r.res.SetupS = round(time.Since(t0).Seconds(), 3)
		if err := r.timed(ctx, boots, nil); err != nil {
			return err
		}
		r.checkRegistered(ctx, boots)
		return nil
	}
	known, err := r.adm.listFleet(ctx, r.fleet.tag)
	if err != nil {
		return err
	}
	var existing []*node
	for _, n := range r.nodes {
		if k := known[n.keyHash]; k != nil {
			n.id = k.GetId()
			existing = append(existing, n)
		}
	}
	if len(existing) > 0 {
		if !r.cfg.Reset {
			return fmt.Errorf("%d of the %d nodes of seed %q are registered already; use another --seed, or --reset to delete them first", len(existing), len(r.nodes), r.cfg.Seed)
		}
		r.log.Info("setup: deleting the seed's registered nodes (--reset)", "nodes", len(existing))
		if err := forEach(ctx, existing, 8, func(ctx context.Context, n *node) error { return r.adm.deleteNode(ctx, n.id) }); err != nil {
			return fmt.Errorf("delete node: %w", err)
		}
	}
	tokenID, token, err := r.adm.createToken(ctx, r.fleet.tag, len(r.nodes))
	if err != nil {
		return err
	}
	defer r.revoke(ctx, tokenID)
	boots, err := r.prepareBoots(ctx, r.nodes, bootOpts{token: token})
	if err != nil {
		return err
	}
	r.res.SetupS = round(time.Since(t0).Seconds(), 3)
	if err := r.timed(ctx, boots, nil); err != nil {
		return err
	}
	r.checkRegistered(ctx, boots)
	return nil
}

func (r *runner) revoke(ctx context.Context, tokenID string) {
	if err := r.adm.revokeToken(context.WithoutCancel(ctx), tokenID); err != nil {
		r.log.Warn("cannot revoke the run's bootstrap token", "token_id", tokenID, "err", err)
	}
}

// storm is the power-restore storm: every node, registered and with a
// bundle, boots at once.
func (r *runner) storm(ctx context.Context) error {
	t0 := time.Now()
	if !r.cfg.NoPrepare {
		if err := r.prepare(ctx, true); err != nil {
			return err
		}
	}
	boots, err := r.prepareBoots(ctx, r.nodes, bootOpts{})
	if err != nil {
		return err
	}
	r.res.SetupS = round(time.Since(t0).Seconds(), 3)
	var follow *follower
	if addr := r.cfg.Conn.HeartbeatServer; addr != "" {
		follow = newFollower(addr, r.bootID)
	}
	return r.timed(ctx, boots, follow)
}

// fillFollow adds the storm's figures with the streams opened after the
// boots: handshakes and server CPU per boot in total, and when the last
// first beat was acknowledged.
func (r *runner) fillFollow(s *bootStats, f *follower, start time.Time, from, to map[string]time.Duration) {
	res := r.res
	res.HeartbeatsFollowed = int(f.acked.Load())
	if n := f.errs.total(); n > 0 {
		_, samples := f.errs.snapshot()
		res.Notes = append(res.Notes, fmt.Sprintf("%d of %d heartbeat streams opened after the boots failed: %v", n, f.started.Load(), samples))
	}
	if last := f.lastAck.Load(); last > 0 {
		res.FollowS = round(time.Unix(0, last).Sub(start).Seconds(), 3)
	}
	if res.OK == 0 || res.HandshakesPerBoot == nil {
		return
	}
	hs := round(*res.HandshakesPerBoot+float64(res.HeartbeatsFollowed)/float64(res.OK), 3)
	res.HandshakesPerBootTotal = &hs
	var cpu time.Duration
	for name, t := range to {
		if f, ok := from[name]; ok && t >= f {
			cpu += t - f
		}
	}
	if cpu > 0 {
		v := round(float64(cpu)/float64(time.Millisecond)/float64(res.OK), 3)
		res.ServerCPUMsPerBootTotal = &v
	}
}

// prepare makes sure, untimed, that every node is registered and approved
// (registering the missing ones with the real agent), learns the node IDs
// and, withBundles, puts a small bundle for every node that has none.
func (r *runner) prepare(ctx context.Context, withBundles bool) error {
	if err := r.fingerprintAll(ctx, r.nodes); err != nil {
		return err
	}
	known, err := r.adm.listFleet(ctx, r.fleet.tag)
	if err != nil {
		return err
	}
	var missing []*node
	for _, n := range r.nodes {
		k := known[n.keyHash]
		if k == nil {
			missing = append(missing, n)
			continue
		}
		n.id = k.GetId()
		switch k.GetStatus() {
		case berthv1.NodeStatus_NODE_STATUS_APPROVED:
		case berthv1.NodeStatus_NODE_STATUS_PENDING:
			if err := r.adm.approve(ctx, n.id); err != nil {
				return fmt.Errorf("approve %s (%s): %w", n.hostname, n.id, err)
			}
		default:
			return fmt.Errorf("node %s (%s) of seed %q is %s; use another --seed", n.hostname, n.id, r.cfg.Seed, agent.StatusName(k.GetStatus()))
		}
	}
	if len(missing) > 0 {
		if err := r.registerMissing(ctx, missing); err != nil {
			return err
		}
	}
	if !withBundles {
		return nil
	}
	var put atomic.Int64
	err = forEach(ctx, r.nodes, 16, func(ctx context.Context, n *node) error {
		wrote, err := r.adm.ensureBundle(ctx, n)
		if wrote {
			put.Add(1)
		}
		return err
	})
	if err != nil {
		return err
	}
	if put.Load() > 0 {
		r.log.Info("setup: put a bundle as admin for the nodes that had none", "nodes", put.Load())
	}
	return nil
}

// registerMissing registers nodes with the real agent, untimed and
// without heartbeats.
func (r *runner) registerMissing(ctx context.Context, missing []*node) error {
	r.log.Info("setup: registering the nodes not registered yet (untimed)", "nodes", len(missing))
	tokenID, token, err := r.adm.createToken(ctx, r.fleet.tag, len(missing))
	if err != nil {
		return err
	}
	defer r.revoke(ctx, tokenID)
	boots, err := r.prepareBoots(ctx, missing, bootOpts{token: token, noHeartbeat: true})
	if err != nil {
		return err
	}
	s := newBootStats()
	stop := progress(r.log, "setup registrations", len(boots), func() int { return int(s.done.Load()) })
	runBoots(ctx, boots, r.cfg.Concurrency, s)
	stop()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if n := s.errs.total(); n > 0 {
		_, samples := s.errs.snapshot()
		return fmt.Errorf("setup: %d of %d registrations failed: %v", n, len(boots), samples)
	}
	return nil
}
