package loadgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
)

// StepCASignConfig is one run of the stepca-sign scenario.
type StepCASignConfig struct {
	// Dir is what StepCAInit wrote, for a step-ca started on it.
	Dir string
	// Nodes is how many certificates are asked for, one per fresh key.
	Nodes int
	// Concurrency caps the signs in flight. Default DefaultConcurrency.
	Concurrency int
	// ServerProcs is step-ca's process, whose CPU and memory are reported.
	ServerProcs []Proc
	// Log receives progress. Default discards it.
	Log *slog.Logger
}

// ottLifetime is how long a one-time token is valid, as step ca token
// makes them.
const ottLifetime = 5 * time.Minute

// signNode is one simulated node of the stepca-sign scenario: a fresh key
// and its CSR, made before the timed phase.
type signNode struct {
	name   string
	key    *ecdsa.PrivateKey
	csrPEM string
}

// stepCAClient signs certificates with step-ca as a node would with
// step ca certificate: a fresh one-time token per request, minted with the
// provisioner's key, and a fresh TLS connection per request (no
// keep-alive, no session resumption).
type stepCAClient struct {
	url, provisioner string
	signer           jose.Signer
	http             *http.Client
	handshakes       atomic.Int64
}

func newStepCAClient(s *stepCABench, jwk *jose.JSONWebKey, roots *x509.CertPool, timeout time.Duration) (*stepCAClient, error) {
	so := new(jose.SignerOptions).WithType("JWT").WithHeader("kid", jwk.KeyID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(jwk.Algorithm), Key: jwk.Key}, so)
	if err != nil {
		return nil, fmt.Errorf("provisioner key: %w", err)
	}
	c := &stepCAClient{url: strings.TrimSuffix(s.URL, "/"), provisioner: s.Provisioner, signer: signer}
	// Without a ClientSessionCache nothing is resumed: every connection
	// is a full handshake, which VerifyConnection counts.
	tlsCfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, VerifyConnection: func(tls.ConnectionState) error {
		c.handshakes.Add(1)
		return nil
	}}
	c.http = &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
	return c, nil
}

// ottClaims are the claims of a JWK provisioner's one-time token for
// /1.0/sign: subject and SANs name the certificate.
type ottClaims struct {
	jose.Claims
	SANs []string `json:"sans"`
}

// token mints a one-time token for a certificate named name: issuer the
// provisioner, audience the CA's /1.0/sign, a random ID that step-ca
// records so that the token cannot be used twice.
func (c *stepCAClient) token(name string, now time.Time) (string, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	claims := ottClaims{
		Claims: jose.Claims{
			ID: hex.EncodeToString(id), Issuer: c.provisioner, Subject: name,
			Audience:  jose.Audience{c.url + "/1.0/sign"},
			NotBefore: jose.NewNumericDate(now), IssuedAt: jose.NewNumericDate(now),
			Expiry: jose.NewNumericDate(now.Add(ottLifetime)),
		},
		SANs: []string{name},
	}
	return jose.Signed(c.signer).Claims(claims).CompactSerialize()
}

// httpStatusError is a sign step-ca refused or failed.
type httpStatusError struct {
	code int
	msg  string
}

func (e *httpStatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

// sign asks step-ca for n's certificate and checks what comes back: a
// certificate for n's key and name.
func (c *stepCAClient) sign(ctx context.Context, n *signNode) error {
	ott, err := c.token(n.name, time.Now())
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"csr": n.csrPEM, "ott": ott})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/1.0/sign", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return &httpStatusError{code: resp.StatusCode, msg: e.Message}
	}
	return checkSigned(b, n)
}

// checkSigned checks step-ca's answer to a sign: the certificate is for
// n's public key and carries n's name.
func checkSigned(body []byte, n *signNode) error {
	var sr struct {
		Crt string `json:"crt"`
	}
	if err := json.Unmarshal(body, &sr); err != nil {
		return fmt.Errorf("sign response: %w", err)
	}
	cert, err := pemutil.ParseCertificate([]byte(sr.Crt))
	if err != nil {
		return fmt.Errorf("sign response: %w", err)
	}
	if !n.key.PublicKey.Equal(cert.PublicKey) {
		return errors.New("sign response: the certificate is not for the CSR's key")
	}
	if cert.Subject.CommonName != n.name || len(cert.DNSNames) != 1 || cert.DNSNames[0] != n.name {
		return fmt.Errorf("sign response: certificate names %q %v, want %q", cert.Subject.CommonName, cert.DNSNames, n.name)
	}
	return nil
}

// newSignNode makes node i's fresh key and its CSR, named as the node
// would be.
func newSignNode(i int) (*signNode, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("sign-%06d", i)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
	}, key)
	if err != nil {
		return nil, err
	}
	return &signNode{name: name, key: key, csrPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}, nil
}

// StepCASign runs the stepca-sign scenario against the step-ca configured
// in c.Dir: c.Nodes fresh keys, each with its CSR made beforehand
// (untimed), are released at once, at most c.Concurrency in flight, and
// each mints its one-time token and asks step-ca for its certificate over
// a fresh TLS connection. The result counts signs as boots: throughput in
// signs/s, latency of one sign, step-ca's CPU per sign.
func StepCASign(ctx context.Context, c StepCASignConfig) (*Result, error) {
	if c.Nodes <= 0 {
		return nil, errors.New("--nodes must be at least 1")
	}
	if c.Concurrency < 0 {
		return nil, errors.New("--concurrency must not be negative")
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	bench, jwk, roots, err := readStepCABench(c.Dir)
	if err != nil {
		return nil, err
	}
	client, err := newStepCAClient(bench, jwk, roots, DefaultWait)
	if err != nil {
		return nil, err
	}
	res := &Result{Scenario: ScenarioStepCASign, Nodes: c.Nodes, Concurrency: c.Concurrency, Errors: map[string]int{}}
	cfg := Config{Scenario: ScenarioRegister, Nodes: c.Nodes, Concurrency: c.Concurrency}
	limit, err := raiseFDLimit(fdWanted(cfg))
	res.FDLimit = limit
	if err != nil {
		c.Log.Warn("cannot raise the file descriptor limit", "err", err)
	}

	t0 := time.Now()
	nodes := make([]*signNode, c.Nodes)
	idx := make([]int, c.Nodes)
	for i := range idx {
		idx[i] = i
	}
	if err := forEach(ctx, idx, runtime.NumCPU(), func(_ context.Context, i int) error {
		n, err := newSignNode(i)
		nodes[i] = n
		return err
	}); err != nil {
		return nil, err
	}
	res.SetupS = round(time.Since(t0).Seconds(), 3)

	c.Log.Info("timed phase: releasing all signs at once", "scenario", ScenarioStepCASign, "nodes", c.Nodes, "concurrency", c.Concurrency, "url", bench.URL)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		ok   atomic.Int64
		errs = newTally()
	)
	rss := startRSS(c.ServerProcs, 0)
	stop := progress(c.Log, "signs", c.Nodes, func() int { return int(ok.Load()) + errs.total() })
	elapsed := releaseAll(ctx, nodes, c.Concurrency, func(ctx context.Context, n *signNode) {
		t := time.Now()
		err := client.sign(ctx, n)
		d := time.Since(t)
		if err != nil {
			errs.addClass(signErrorClass(err), err)
			return
		}
		ok.Add(1)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	})
	stop()
	rss.finish(res)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	fillSigns(res, int(ok.Load()), lat, elapsed, client.handshakes.Load())
	res.Errors, res.ErrorSamples = errs.snapshot()
	res.Notes = append(res.Notes, "step-ca's /sign takes no client certificate: each connection is a server-authenticated TLS handshake, not mutual TLS as berth's boots")
	c.Log.Info("timed phase done", "ok", res.OK, "errors", c.Nodes-res.OK, "elapsed", elapsed.Round(time.Millisecond))
	return res, nil
}

// fillSigns puts the timed phase's figures into res: ok signs in elapsed,
// their latencies, handshakes made and step-ca's CPU per sign (res's
// server CPU, filled before).
func fillSigns(res *Result, ok int, lat []time.Duration, elapsed time.Duration, handshakes int64) {
	res.OK = ok
	l := summarize(lat)
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = l.P50, l.P90, l.P99, l.Max
	res.ElapsedS = round(elapsed.Seconds(), 3)
	if elapsed > 0 {
		res.ThroughputPerS = round(float64(ok)/elapsed.Seconds(), 1)
	}
	issued := int64(ok)
	res.CertsIssued = &issued
	if ok > 0 {
		hs := round(float64(handshakes)/float64(ok), 3)
		res.HandshakesPerBoot = &hs
		if res.ServerCPUMsTotal != nil {
			v := round(*res.ServerCPUMsTotal/float64(ok), 3)
			res.ServerCPUMsPerOp = &v
		}
	}
}

// signErrorClass names a failed sign: step-ca's HTTP status, or the
// classes of the other scenarios (a deadline, an unreachable CA).
func signErrorClass(err error) string {
	var he *httpStatusError
	if errors.As(err, &he) {
		return fmt.Sprintf("HTTP %d", he.code)
	}
	return errorClass(err)
}

// releaseAll starts op for every item as a goroutine, waits until all are
// parked on one barrier and releases them at once; at most concurrency
// run at a time. It returns the time from the release to the last done.
func releaseAll[T any](ctx context.Context, items []T, concurrency int, op func(context.Context, T)) time.Duration {
	barrier := make(chan struct{})
	sem := make(chan struct{}, concurrency)
	var parked, wg sync.WaitGroup
	for _, it := range items {
		parked.Add(1)
		wg.Go(func() {
			parked.Done()
			<-barrier
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			op(ctx, it)
			<-sem
		})
	}
	parked.Wait()
	start := time.Now()
	close(barrier)
	wg.Wait()
	return time.Since(start)
}
