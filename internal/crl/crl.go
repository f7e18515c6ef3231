// Package crl publishes berth's certificate revocation list: an X.509 CRL
// (RFC 5280) signed by the intermediate that issues node certificates,
// built from the CA's revocation log. It lets software outside berth
// (libvirt, nginx, an engine's TLS stack) refuse a revoked node's
// certificate with nothing but the CA certificates and this file.
//
// A Publisher keeps the current CRL and rebuilds it when a revocation is
// recorded (Refresh), when the log it reads has changed, which is how a
// revocation made through another CA replica shows up, and well before
// its nextUpdate. It is transport-free: services/ca serves it over gRPC
// and HTTP.
package crl

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/clock"
)

// Defaults of Config.
const (
	// DefaultValidity is the span from thisUpdate to nextUpdate. A checker
	// holding a CRL older than that refuses every certificate (OpenSSL:
	// "CRL has expired"), so it must fetch again well before.
	DefaultValidity = 7 * 24 * time.Hour
	// DefaultRefresh is how old the CRL may get before it is rebuilt even
	// if nothing was revoked, so that checkers always find one that is
	// days from expiry.
	DefaultRefresh = time.Hour
	// DefaultCheckInterval is how often Current reads the revocation log
	// for revocations made elsewhere. It also bounds what a flood of CRL
	// requests costs the database.
	DefaultCheckInterval = 5 * time.Second
)

// ReasonSuperseded is the revocation reason berth records for a replaced
// machine's certificate; the CRL gives it as RFC 5280's superseded (4).
// Any other reason is free text and the CRL gives none (unspecified).
const ReasonSuperseded = "superseded"

// Entry is one revoked certificate.
type Entry struct {
	// Serial is the serial number in hexadecimal.
	Serial    string
	RevokedAt time.Time
	Reason    string
}

// Source reads the whole revocation log.
type Source func(ctx context.Context) ([]Entry, error)

// ErrNotPublished means no CRL could be built and no valid one is held.
var ErrNotPublished = errors.New("no revocation list can be published")

// Config configures a Publisher.
type Config struct {
	// Issuer and Key sign the CRL: the intermediate that issues node
	// certificates. Required; Issuer must be allowed to sign CRLs.
	Issuer *x509.Certificate
	Key    crypto.Signer
	// Source is the revocation log. Required.
	Source Source
	// Validity, Refresh and CheckInterval default to DefaultValidity,
	// DefaultRefresh and DefaultCheckInterval; Refresh must be shorter
	// than Validity.
	Validity, Refresh, CheckInterval time.Duration
	// Clock dates the CRL; the system clock when nil.
	Clock  clock.Clock
	Logger *slog.Logger
}

// CRL is a signed revocation list.
type CRL struct {
	// DER is the CRL itself.
	DER []byte
	// Number is the CRL number extension.
	Number                 *big.Int
	ThisUpdate, NextUpdate time.Time
	// Entries is how many certificates it lists.
	Entries int
	// digest identifies the set of revocations it was built from.
	digest [32]byte
}

// Publisher holds the current CRL. It is safe for concurrent use.
type Publisher struct {
	c Config

	// build serialises reading the log and signing.
	build sync.Mutex
	mu    sync.Mutex
	cur   *CRL
	// checked is when the log was last found to match cur.
	checked time.Time
}

// New checks c and returns a Publisher; it builds nothing yet.
func New(c Config) (*Publisher, error) {
	switch {
	case c.Issuer == nil || c.Key == nil:
		return nil, errors.New("crl: Config.Issuer and Config.Key are required")
	case c.Source == nil:
		return nil, errors.New("crl: Config.Source is required")
	case c.Issuer.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, errors.New("crl: the issuer certificate may not sign CRLs (no cRLSign key usage)")
	}
	c.Validity = orDefault(c.Validity, DefaultValidity)
	c.Refresh = orDefault(c.Refresh, DefaultRefresh)
	c.CheckInterval = orDefault(c.CheckInterval, DefaultCheckInterval)
	if c.Refresh >= c.Validity {
		return nil, fmt.Errorf("crl: refresh period %v must be shorter than the validity %v", c.Refresh, c.Validity)
	}
	c.Clock = clock.Or(c.Clock)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Publisher{c: c}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Current returns the CRL to hand out. It reads the revocation log at
// most once per CheckInterval and rebuilds the CRL when the log changed
// or the CRL is due for refresh. When the log cannot be read, the CRL
// held is still returned while it is valid: it is signed and dated, and a
// checker judges its age itself.
func (p *Publisher) Current(ctx context.Context) (CRL, error) {
	if c, ok := p.fresh(); ok {
		return c, nil
	}
	p.build.Lock()
	defer p.build.Unlock()
	if c, ok := p.fresh(); ok { // another caller just checked
		return c, nil
	}
	c, err := p.rebuild(ctx, false)
	if err == nil {
		return c, nil
	}
	p.mu.Lock()
	held := p.cur
	p.mu.Unlock()
	if held != nil && p.c.Clock.Now().Before(held.NextUpdate) {
		p.c.Logger.Warn("serving the revocation list held; the revocation log cannot be read", "error", err, "crl_number", held.Number)
		return *held, nil
	}
	return CRL{}, fmt.Errorf("%w: %w", ErrNotPublished, err)
}

// fresh returns the CRL held if the log was checked recently and the CRL
// is not due for refresh.
func (p *Publisher) fresh() (CRL, bool) {
	now := p.c.Clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || now.Sub(p.checked) >= p.c.CheckInterval || !now.Before(p.cur.ThisUpdate.Add(p.c.Refresh)) {
		return CRL{}, false
	}
	return *p.cur, true
}

// Refresh reads the log now and signs a new CRL if the log changed (or
// the CRL is due). The CA calls it after recording a revocation, so that
// the CRL lists it at once.
func (p *Publisher) Refresh(ctx context.Context) (CRL, error) {
	p.build.Lock()
	defer p.build.Unlock()
	return p.rebuild(ctx, false)
}

// resign reads the log and signs a new CRL, changed or not.
func (p *Publisher) resign(ctx context.Context) (CRL, error) {
	p.build.Lock()
	defer p.build.Unlock()
	return p.rebuild(ctx, true)
}

// rebuild reads the log and, if it changed, the CRL is due or force is
// set, signs a new CRL. The caller holds p.build.
func (p *Publisher) rebuild(ctx context.Context, force bool) (CRL, error) {
	// The time is taken before the read: a revocation committed after it
	// is missing from this CRL, and dated (by its own replica) after it.
	now := p.c.Clock.Now()
	entries, err := p.c.Source(ctx)
	if err != nil {
		return CRL{}, fmt.Errorf("read revocation log: %w", err)
	}
	digest := digestOf(entries)
	p.mu.Lock()
	prev := p.cur
	p.mu.Unlock()
	if !force && prev != nil && prev.digest == digest && now.Before(prev.ThisUpdate.Add(p.c.Refresh)) {
		p.mu.Lock()
		p.checked = now
		p.mu.Unlock()
		return *prev, nil
	}
	c, err := p.sign(entries, digest, now, prev)
	if err != nil {
		return CRL{}, err
	}
	p.mu.Lock()
	p.cur, p.checked = &c, now
	p.mu.Unlock()
	p.c.Logger.Info("revocation list signed", "crl_number", c.Number, "entries", c.Entries, "next_update", c.NextUpdate)
	return c, nil
}

// Number returns the CRL number of a CRL made at now from entries after
// prev: the Unix time in microseconds of now or of the newest revocation,
// whichever is later, and above prev's. It is derived from the log and the
// clock rather than a counter, so every CA replica numbers alike, a
// restart never goes back, and a CRL that lists a revocation is numbered
// after the moment that revocation was made.
func Number(entries []Entry, now time.Time, prev *big.Int) *big.Int {
	n := now.UnixMicro()
	for _, e := range entries {
		n = max(n, e.RevokedAt.UnixMicro())
	}
	out := big.NewInt(n)
	if prev != nil && out.Cmp(prev) <= 0 {
		out.Add(prev, big.NewInt(1))
	}
	return out
}

func (p *Publisher) sign(entries []Entry, digest [32]byte, now time.Time, prev *CRL) (CRL, error) {
	var prevNumber *big.Int
	if prev != nil {
		prevNumber = prev.Number
	}
	tmpl := &x509.RevocationList{
		Number:     Number(entries, now, prevNumber),
		ThisUpdate: now.UTC().Truncate(time.Second),
	}
	tmpl.NextUpdate = tmpl.ThisUpdate.Add(p.c.Validity)
	for _, e := range entries {
		serial, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok || serial.Sign() <= 0 {
			return CRL{}, fmt.Errorf("revocation log holds serial %q, which is not a positive hexadecimal number", e.Serial)
		}
		entry := x509.RevocationListEntry{SerialNumber: serial, RevocationTime: e.RevokedAt.UTC()}
		if e.Reason == ReasonSuperseded {
			entry.ReasonCode = 4
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, entry)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.c.Issuer, p.c.Key)
	if err != nil {
		return CRL{}, fmt.Errorf("sign revocation list: %w", err)
	}
	return CRL{DER: der, Number: tmpl.Number, ThisUpdate: tmpl.ThisUpdate, NextUpdate: tmpl.NextUpdate, Entries: len(entries), digest: digest}, nil
}

// digestOf identifies a set of revocations, whatever order it comes in.
func digestOf(entries []Entry) [32]byte {
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = fmt.Sprintf("%s\x00%d\x00%s", strings.ToLower(strings.TrimLeft(e.Serial, "0")), e.RevokedAt.UnixMicro(), e.Reason)
	}
	slices.Sort(keys)
	return sha256.Sum256([]byte(strings.Join(keys, "\x01")))
}

// Run rebuilds the CRL now and then every Refresh period, so that one is
// always ready and always days from its nextUpdate, until ctx ends. A
// failed build is retried after CheckInterval.
func (p *Publisher) Run(ctx context.Context) {
	for {
		wait := p.c.Refresh
		if _, err := p.resign(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.c.Logger.Error("revocation list not refreshed", "error", err)
			wait = p.c.CheckInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-p.c.Clock.After(wait):
		}
	}
}
