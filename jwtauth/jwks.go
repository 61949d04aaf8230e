package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// RemoteJWKS configures keys fetched from a JWKS endpoint.
type RemoteJWKS struct {
	// URL of the JWK Set. It is the only address ever contacted for keys:
	// jku, x5u, jwk and x5c token headers are ignored. https is required
	// unless the host is a loopback address.
	URL string `json:"url"`

	// How often the set is fetched again. Default: 1h.
	RefreshInterval caddy.Duration `json:"refresh_interval,omitempty"`

	// A token with a kid that is not in the set triggers at most one
	// refresh per this interval, so garbage kids cannot make us hammer the
	// endpoint. Default: 5m.
	UnknownKIDInterval caddy.Duration `json:"unknown_kid_interval,omitempty"`

	// How long a request whose token has an unknown kid waits for the
	// refresh it triggers (or for one already under way) before it is
	// refused. The fetch itself goes on in the background, bounded by
	// timeout, and a request whose client goes away stops waiting at once.
	// Default: 2s.
	UnknownKIDWait caddy.Duration `json:"unknown_kid_wait,omitempty"`

	// Timeout of one fetch. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// When the endpoint keeps failing, the last good keys are used for at
	// most this long after the last successful fetch; past it every token
	// is refused (fail closed). Default: 24h.
	MaxStale caddy.Duration `json:"max_stale,omitempty"`

	// Largest response body accepted, in bytes. Default: 1048576 (1 MiB).
	MaxBytes int64 `json:"max_bytes,omitempty"`
}

func (r *RemoteJWKS) setDefaults() {
	if r.RefreshInterval <= 0 {
		r.RefreshInterval = caddy.Duration(time.Hour)
	}
	if r.UnknownKIDInterval <= 0 {
		r.UnknownKIDInterval = caddy.Duration(5 * time.Minute)
	}
	if r.UnknownKIDWait <= 0 {
		r.UnknownKIDWait = caddy.Duration(2 * time.Second)
	}
	if r.Timeout <= 0 {
		r.Timeout = caddy.Duration(10 * time.Second)
	}
	if r.MaxStale <= 0 {
		r.MaxStale = caddy.Duration(24 * time.Hour)
	}
	if r.MaxBytes <= 0 {
		r.MaxBytes = 1 << 20
	}
}

func (r *RemoteJWKS) validate() error {
	u, err := url.Parse(r.URL)
	if err != nil {
		return fmt.Errorf("jwks_url: %w", err)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("jwks_url %q: must be an absolute http(s) URL", r.URL)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("jwks_url %q: keys must be fetched over https (plain http is allowed only for loopback hosts)", r.URL)
	}
	if time.Duration(r.MaxStale) < time.Duration(r.RefreshInterval) {
		return fmt.Errorf("jwks_url: max_stale (%s) shorter than refresh_interval (%s) would drop keys between refreshes", time.Duration(r.MaxStale), time.Duration(r.RefreshInterval))
	}
	return nil
}

// redactURL drops the credentials, query and fragment of a URL, which may
// hold secrets (an API key in the query), so it can be logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return u.String()
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// jwksPool shares remote key sets across config reloads, so a reload neither
// drops the cached keys nor fetches them again, and refresh goroutines stop
// when the last config that uses them is unloaded.
var jwksPool = caddy.NewUsagePool()

// retryPolicy is how a remote set without usable keys is fetched again:
// after about min, then twice as long each time up to max. Tests shorten it
// and drive its timer.
type retryPolicy struct {
	min, max time.Duration
	after    func(time.Duration) <-chan time.Time
}

// defaultRetry retries 1s after a failed start, doubling up to a minute.
var defaultRetry = retryPolicy{min: time.Second, max: time.Minute, after: time.After}

// next returns the backoff after prev (0 for the first retry).
func (p retryPolicy) next(prev time.Duration) time.Duration {
	if prev <= 0 {
		return p.min
	}
	return min(2*prev, p.max)
}

// jitter spreads a backoff d over [0.75d, 0.95d), so that many Caddy
// instances started together do not retry in step. It never waits the whole
// of d: the retries of a 1s-doubling schedule fall at most 0.95×(2ⁿ−1)s after
// start, so an endpoint back at any time t is seen by about 1.9t.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// remoteKeys is a live, refreshed copy of a remote JWK Set.
type remoteKeys struct {
	cfg     RemoteJWKS
	allowed algSet
	client  *http.Client
	logger  *zap.Logger
	now     func() time.Time
	label   string // validator name, for metrics
	logURL  string // cfg.URL without credentials or query, for logs
	retry   retryPolicy

	keys        atomic.Pointer[keySet]
	lastOK      atomic.Int64 // unix nanoseconds of the last successful fetch
	lastUnknown atomic.Int64 // unix nanoseconds of the last unknown-kid refresh
	generation  atomic.Uint64

	mu       sync.Mutex // guards inflight and the start of fetches
	inflight *fetchCall // the fetch under way, if any
	fetches  sync.WaitGroup

	// startOnce starts the first fetch and the refresh loop: when the app
	// starts, or at the first token if it has not (never in Provision,
	// so `caddy validate` fetches nothing and starts no goroutine).
	startOnce sync.Once
	started   atomic.Bool

	cancel context.CancelFunc
	ctx    context.Context
	done   chan struct{}
}

// fetchCall is one fetch, shared by everyone who waits for it.
type fetchCall struct {
	done chan struct{}
	err  error // set before done is closed
}

func newRemoteKeys(cfg RemoteJWKS, allowed algSet, label string, logger *zap.Logger, now func() time.Time) *remoteKeys {
	ctx, cancel := context.WithCancel(context.Background())
	rk := &remoteKeys{
		cfg:     cfg,
		allowed: allowed,
		logger:  logger,
		now:     now,
		label:   label,
		retry:   defaultRetry,
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	rk.logURL = redactURL(cfg.URL)
	origin, _ := url.Parse(cfg.URL)
	rk.client = &http.Client{
		Timeout: time.Duration(cfg.Timeout),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// follow only same-origin redirects, never a downgrade
			if req.URL.Scheme != origin.Scheme || req.URL.Host != origin.Host {
				return fmt.Errorf("refusing redirect from %s to another origin %s", origin.Host, req.URL.Host)
			}
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
	return rk
}

// start fetches once and launches the refresh loop. A failing first fetch
// does not stop Caddy from starting: no key means every token is refused
// (fail closed), and the loop retries with backoff until keys arrive.
func (rk *remoteKeys) start() {
	rk.startOnce.Do(func() {
		rk.started.Store(true)
		_ = rk.refresh(rk.ctx) // errors already logged and counted
		go rk.loop()
	})
}

// loop refreshes the set every refresh_interval. While there are no usable
// keys (the endpoint was down at start-up, or has failed past max_stale) it
// retries sooner, with exponential backoff and jitter, so that service
// resumes soon after the endpoint does.
func (rk *remoteKeys) loop() {
	defer close(rk.done)
	var backoff time.Duration
	for {
		wait := time.Duration(rk.cfg.RefreshInterval)
		if rk.current() == nil {
			backoff = rk.retry.next(backoff)
			wait = min(jitter(backoff), wait)
		} else {
			backoff = 0
		}
		select {
		case <-rk.ctx.Done():
			return
		case <-rk.retry.after(wait):
			_ = rk.refresh(rk.ctx)
		}
	}
}

// Destruct stops the refresh loop and waits for fetches under way; the
// usage pool calls it when the last config using these keys is unloaded.
func (rk *remoteKeys) Destruct() error {
	rk.mu.Lock()
	rk.cancel() // under mu: no fetch starts after this
	rk.mu.Unlock()
	if rk.started.Load() {
		<-rk.done
	}
	rk.fetches.Wait()
	return nil
}

// startFetchLocked returns the fetch under way, or starts one in the
// background. The fetch runs on rk's own context, bounded by timeout, so a
// waiter that gives up does not cut it short for the others. The caller
// holds rk.mu.
func (rk *remoteKeys) startFetchLocked() *fetchCall {
	if c := rk.inflight; c != nil {
		return c
	}
	c := &fetchCall{done: make(chan struct{})}
	if err := rk.ctx.Err(); err != nil {
		c.err = err
		close(c.done)
		return c
	}
	rk.inflight = c
	rk.fetches.Add(1)
	go func() {
		defer rk.fetches.Done()
		c.err = rk.fetchAndStore()
		rk.mu.Lock()
		rk.inflight = nil
		rk.mu.Unlock()
		close(c.done)
	}()
	return c
}

// refresh fetches the set and waits for the result, or for ctx. Concurrent
// callers share one fetch.
func (rk *remoteKeys) refresh(ctx context.Context) error {
	rk.mu.Lock()
	c := rk.startFetchLocked()
	rk.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetchAndStore fetches the set once and publishes it.
func (rk *remoteKeys) fetchAndStore() error {
	keys, err := rk.fetch(rk.ctx)
	if err != nil {
		jwksFetches.WithLabelValues(rk.label, "error").Inc()
		if c := rk.logger.Check(zap.ErrorLevel, "fetching JWKS failed; keeping the previous keys until max_stale"); c != nil {
			c.Write(zap.String("validator", rk.label), zap.String("url", rk.logURL), zap.Error(err))
		}
		return err
	}
	jwksFetches.WithLabelValues(rk.label, "ok").Inc()
	rk.keys.Store(newKeySet(keys))
	rk.lastOK.Store(rk.now().UnixNano())
	rk.generation.Add(1) // last: a reader that sees it sees the rest
	return nil
}

func (rk *remoteKeys) fetch(ctx context.Context) ([]*verKey, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(rk.cfg.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rk.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := rk.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = rk.logURL // the error is logged
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("unexpected status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, rk.cfg.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > rk.cfg.MaxBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", rk.cfg.MaxBytes)
	}
	keys, problems, err := parseJWKS(body, rk.allowed, "jwks_url")
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		if c := rk.logger.Check(zap.WarnLevel, "skipping unusable JWKS key"); c != nil {
			c.Write(zap.String("validator", rk.label), zap.Error(p))
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no usable signing key")
	}
	for _, kid := range duplicateKIDs(keys) {
		if c := rk.logger.Check(zap.WarnLevel, "JWKS holds several keys under one kid; tokens with it are checked against each"); c != nil {
			c.Write(zap.String("validator", rk.label), zap.String("url", rk.logURL), zap.String("kid", kid))
		}
	}
	return keys, nil
}

// current returns the keys, or nil once they are older than max_stale.
func (rk *remoteKeys) current() *keySet {
	last := rk.lastOK.Load()
	if last == 0 || rk.now().UnixNano()-last > int64(rk.cfg.MaxStale) {
		return nil
	}
	return rk.keys.Load()
}

// refreshForUnknownKID refreshes the set for a kid we do not know, at most
// once per unknown_kid_interval, and reports whether the keys may have
// changed since the caller read generation seen. A request that finds a
// fetch already under way waits for it rather than failing: when a new key
// is published, every concurrent request carrying its kid is served by the
// one fetch. A request waits at most unknown_kid_wait, and not at all once
// ctx (its client) is gone; the fetch goes on for the next requests.
func (rk *remoteKeys) refreshForUnknownKID(ctx context.Context, seen uint64) bool {
	rk.mu.Lock()
	if rk.generation.Load() != seen {
		rk.mu.Unlock()
		return true // new keys arrived since the caller looked
	}
	if rk.inflight == nil {
		now := rk.now().UnixNano()
		last := rk.lastUnknown.Load()
		if last != 0 && now-last < int64(rk.cfg.UnknownKIDInterval) {
			rk.mu.Unlock()
			return false
		}
		rk.lastUnknown.Store(now)
	}
	c := rk.startFetchLocked()
	rk.mu.Unlock()
	t := time.NewTimer(time.Duration(rk.cfg.UnknownKIDWait))
	defer t.Stop()
	select {
	case <-c.done:
	case <-ctx.Done():
	case <-t.C:
	}
	return rk.generation.Load() != seen
}
