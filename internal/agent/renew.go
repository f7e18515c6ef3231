package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// renewRetry is the least a long-running agent waits between renewals
// that gave it the same certificate back: the server decides when a
// certificate is due, and the two clocks may disagree.
const renewRetry = time.Minute

// RenewalTime is when the agent renews cert: at two thirds of its
// lifetime counted from its issuance, by the rule the server uses
// (mtls.RenewalTime), so a renewal is not asked for before it is due.
func RenewalTime(cert *x509.Certificate) time.Time {
	return mtls.RenewalTime(cert.NotBefore, cert.NotAfter)
}

// serve keeps a booted node's credentials fresh and, with heartbeats, sends
// them until ctx ends, or until the node is found revoked, which is
// returned as an ErrDenied error. It pings systemd's watchdog meanwhile,
// and applies the new bundle versions the heartbeat service announces.
func (a *Agent) serve(ctx context.Context, c *conn, t Target, creds *Credentials, heartbeats bool, log *slog.Logger) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		current atomic.Pointer[Credentials]
		hbErr   error // set before done is closed
		done    = make(chan struct{})
	)
	current.Store(creds)
	healthy := func() bool { return true }
	if !heartbeats {
		close(done)
	} else {
		hb := a.cfg.Heartbeater
		if hb == nil {
			h := a.newHeartbeater(log)
			h.state = a.state
			h.followBoot(creds)
			hb, healthy = h, h.healthy
		}
		go func() {
			defer close(done)
			if err := hb.Run(ctx, current.Load); err != nil && ctx.Err() == nil {
				log.Error("heartbeats stopped; stopping the agent", logErr, err)
				hbErr = err
				stop()
			}
		}()
	}
	wdDone, liveDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(wdDone)
		a.watchdog(ctx, healthy, log)
	}()
	go func() {
		defer close(liveDone)
		a.keepBundlesLive(ctx, current.Load, log)
	}()
	err := a.keepRenewed(ctx, c, t, creds, &current, log)
	stop()
	<-done
	<-wdDone
	<-liveDone
	if hbErr != nil {
		return hbErr
	}
	return err
}

// keepRenewed renews the certificate at two thirds of its lifetime until
// ctx ends, storing each new one in current.
func (a *Agent) keepRenewed(ctx context.Context, c *conn, t Target, creds *Credentials, current *atomic.Pointer[Credentials], log *slog.Logger) error {
	client := berthv1.NewRegistrationServiceClient(c.cc)
	same := false
	for {
		leaf := creds.Leaf()
		wait := RenewalTime(leaf).Sub(a.cfg.Clock.Now())
		if same {
			wait = max(wait, renewRetry)
		}
		log.Info("certificate renewal scheduled", "in", max(wait, 0).Round(time.Second), logSerial, leaf.SerialNumber.Text(16))
		if err := a.cfg.Clock.Sleep(ctx, max(wait, 0)); err != nil {
			return nil // stopped
		}
		next, err := a.renew(ctx, c, t, client, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		same = next.Leaf().Equal(leaf)
		if !same {
			if err := WriteCredentials(a.cfg.CertDir, next, a.cfg.Keys.Identity()); err != nil {
				return err
			}
			c.certs.setIssued(next)
			current.Store(next)
			a.state.setCreds(next)
			log.Info("certificate renewed", logSerial, next.Leaf().SerialNumber.Text(16),
				logExpires, next.Leaf().NotAfter.UTC().Format(time.RFC3339))
			a.onRenew(ctx, next, log)
		}
		creds = next
	}
}

// renew calls Renew until it succeeds, retrying anything but a denial, a
// deleted node or an untrusted server: a running node must not give up on
// its certificate because the server had a bad minute.
func (a *Agent) renew(ctx context.Context, c *conn, t Target, client berthv1.RegistrationServiceClient, log *slog.Logger) (*Credentials, error) {
	for n := 0; ; n++ {
		actx, done := c.attempt(ctx, a.cfg.AttemptTimeout)
		sent := a.cfg.Clock.Now()
		resp, err := client.Renew(actx, &berthv1.RenewRequest{})
		if err == nil {
			a.noteClock(sent, a.cfg.Clock.Now(), resp.GetServerTime())
		}
		err = c.classify(ctx, actx, t.Server, err)
		done()
		if err == nil {
			var creds *Credentials
			creds, err = parseCredentials(resp.GetCredentials(), a.cfg.Keys.Identity().Public(), c.watch.serverChain())
			if err == nil {
				switch creds.Status {
				case berthv1.NodeStatus_NODE_STATUS_APPROVED:
					return creds, nil
				case berthv1.NodeStatus_NODE_STATUS_REJECTED, berthv1.NodeStatus_NODE_STATUS_REVOKED:
					return nil, &deniedError{status: StatusName(creds.Status)}
				}
				err = fmt.Errorf("renew: server returned node status %v", creds.Status)
			}
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case status.Code(err) == codes.PermissionDenied:
			return nil, deniedFromStatus(err)
		case status.Code(err) == codes.NotFound:
			return nil, rpcError("renew", err)
		case errors.Is(err, ErrUntrusted):
			return nil, err
		}
		_, floor := retryable(err)
		d := max(a.cfg.Backoff.Delay(n), floor)
		log.Warn("renewal failed; retrying", logErr, err, logDelay, d)
		if err := a.cfg.Clock.Sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}
