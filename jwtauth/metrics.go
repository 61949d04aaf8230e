package jwtauth

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics live in package variables, as Caddy's own do, and are registered
// into each config's registry; counters therefore survive reloads.
//
// What is exported follows Caddy's rule: the per-request series
// (requests_total, verify_duration_seconds) exist only when HTTP metrics are
// on (the `metrics` global option, or `metrics` in a server's options), as
// caddy_http_* do; the issuer's event counters, the sessions gauge and the
// JWKS fetches are always exported, as Caddy's admin and reverse-proxy
// upstream metrics are.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "requests_total",
		Help:      "Requests seen by jwt_auth, by validator and result (ok, anonymous, missing, malformed, invalid, expired, forbidden).",
	}, []string{"validator", "result"})

	verifyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "verify_duration_seconds",
		Help:      "Time jwt_auth spends verifying a token, by validator, cache hits included.",
		// 250ns to 33ms: a cache hit takes well under a microsecond, an
		// RSA signature check tens of microseconds.
		Buckets: prometheus.ExponentialBuckets(250e-9, 2, 18),
	}, []string{"validator"})

	jwksFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "jwks_fetches_total",
		Help:      "Remote JWKS fetches, by validator and result (ok, error).",
	}, []string{"validator", "result"})

	loginsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "logins_total",
		Help:      "Logins at a jwt_issuer, by issuer and result (ok, bad_credentials, rate_limited, disabled, error).",
	}, []string{"issuer", "result"})

	refreshesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "refreshes_total",
		Help:      "Access-token refreshes, by issuer and result (ok, invalid, reuse, unavailable).",
	}, []string{"issuer", "result"})

	rotationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "rotations_total",
		Help:      "Refresh-token rotations, by issuer and result (ok, invalid, reuse, unavailable).",
	}, []string{"issuer", "result"})

	revocationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "revocations_total",
		Help:      "Sessions ended early, by issuer and reason (logout, reuse, user_changed, admin, bound).",
	}, []string{"issuer", "reason"})

	storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "store_errors_total",
		Help:      "Failed session-store operations, by issuer and operation (create, use, rotate, revoke, admin, reload, count).",
	}, []string{"issuer", "op"})

	sessionsDesc = prometheus.NewDesc("caddy_jwtauth_sessions", "Live sessions of a jwt_issuer.", []string{"issuer"}, nil)
)

// registerMetrics registers the metrics that are always exported.
func registerMetrics(reg *prometheus.Registry) error {
	return register(reg, jwksFetches, loginsTotal, refreshesTotal, rotationsTotal, revocationsTotal, storeErrors)
}

func register(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// appMetrics is the app's part of the metrics: its registry, and the
// context to look the http app up in at start.
type appMetrics struct {
	ctx caddy.Context
	reg *prometheus.Registry
	// wallClock: the app's clock is time.Now, so a verification's start
	// time can serve as its clock reading too
	wallClock bool
}

// provisionMetrics registers the metrics that are always exported, and the
// sessions gauge of this config's issuers.
func (a *App) provisionMetrics(ctx caddy.Context) error {
	a.metrics.ctx, a.metrics.reg = ctx, ctx.GetMetricsRegistry()
	if err := registerMetrics(a.metrics.reg); err != nil {
		return err
	}
	if a.metrics.reg != nil && len(a.Issuers) > 0 {
		return a.metrics.reg.Register(sessionsCollector{a})
	}
	return nil
}

// startMetrics exports the per-request series when the http app collects
// HTTP metrics, and only then starts timing verifications. It runs in
// Start, once every app is provisioned.
func (a *App) startMetrics() error {
	if a.metrics.reg == nil || !httpMetricsOn(a.metrics.ctx) {
		return nil
	}
	if err := register(a.metrics.reg, requestsTotal, verifyDuration); err != nil {
		return err
	}
	for _, v := range a.Validators {
		if v != nil && v.verifyObs != nil {
			v.timed.Store(true)
		}
	}
	return nil
}

// httpMetricsOn reports whether the http app of ctx's config collects
// metrics: the rule caddyhttp applies to its own per-request metrics.
func httpMetricsOn(ctx caddy.Context) bool {
	if ctx.Context == nil {
		return false
	}
	app, err := ctx.AppIfConfigured("http")
	if err != nil {
		return false
	}
	h, ok := app.(*caddyhttp.App)
	return ok && h.Metrics != nil
}

// sessionsCollector reports caddy_jwtauth_sessions for a config's issuers,
// counted at each scrape.
type sessionsCollector struct{ a *App }

func (c sessionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sessionsDesc }

func (c sessionsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range slices.Sorted(maps.Keys(c.a.Issuers)) {
		is := c.a.Issuers[name]
		if is == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := is.countSessions(ctx)
		cancel()
		if err != nil {
			is.countStoreError("count")
			continue
		}
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(n), name)
	}
}

// resultCounters holds a validator's request counters, resolved once so the
// hot path does no label lookup.
type resultCounters struct {
	ok, anonymous, missing, malformed, invalid, expired, forbidden prometheus.Counter
}

func newResultCounters(validator string) resultCounters {
	c := func(r string) prometheus.Counter { return requestsTotal.WithLabelValues(validator, r) }
	return resultCounters{
		ok: c("ok"), anonymous: c("anonymous"), missing: c(reasonMissing), malformed: c(reasonMalformed),
		invalid: c(reasonInvalid), expired: c(reasonExpired), forbidden: c(reasonForbidden),
	}
}

func (rc *resultCounters) count(reason string) {
	switch reason {
	case reasonMissing:
		rc.missing.Inc()
	case reasonMalformed:
		rc.malformed.Inc()
	case reasonExpired:
		rc.expired.Inc()
	case reasonForbidden:
		rc.forbidden.Inc()
	default:
		rc.invalid.Inc()
	}
}

// validatorMetrics is a validator's part of the metrics. The observer is
// resolved at provision; timed is set at start when the series is
// exported, so that otherwise verifications read no clock.
type validatorMetrics struct {
	verifyObs prometheus.Observer
	timed     atomic.Bool
	wallClock bool // v.now is time.Now
}

// provisionMetrics resolves the validator's series. The issuer's own
// verifier (internal) has none: it serves no request of jwt_auth.
func (v *Validator) provisionMetrics(name string, app *App) {
	if v.internal {
		return
	}
	v.wallClock = app != nil && app.metrics.wallClock
	v.counters = newResultCounters(name)
	v.verifyObs = verifyDuration.WithLabelValues(name)
}

// verifyTimed is verify, observed in verify_duration_seconds when that
// series is exported. With the wall clock, the start time is also the
// verification's clock reading, so timing adds a single clock read.
func (v *Validator) verifyTimed(ctx context.Context, tok string) (id *identity, err error) {
	if !v.timed.Load() {
		return v.verifyCtx(ctx, tok)
	}
	start := time.Now()
	if v.wallClock {
		id, err = v.verifyAt(ctx, tok, start)
	} else {
		id, err = v.verifyCtx(ctx, tok)
	}
	v.verifyObs.Observe(time.Since(start).Seconds())
	return id, err
}

// issuerCounters holds an issuer's counters, resolved once.
type issuerCounters struct {
	logins      map[string]prometheus.Counter
	refreshes   map[string]prometheus.Counter
	rotations   map[string]prometheus.Counter
	revocations map[sessions.Reason]prometheus.Counter
}

// Results of the issuer's counters.
const (
	resultOK             = "ok"
	resultBadCredentials = "bad_credentials"
	resultRateLimited    = "rate_limited"
	resultDisabled       = "disabled"
	resultError          = "error"
	resultInvalid        = "invalid"
	resultReuse          = "reuse"
	resultUnavailable    = "unavailable"
)

func newIssuerCounters(issuer string) *issuerCounters {
	ic := &issuerCounters{
		logins:      make(map[string]prometheus.Counter),
		refreshes:   make(map[string]prometheus.Counter),
		rotations:   make(map[string]prometheus.Counter),
		revocations: make(map[sessions.Reason]prometheus.Counter),
	}
	for _, r := range []string{resultOK, resultBadCredentials, resultRateLimited, resultDisabled, resultError} {
		ic.logins[r] = loginsTotal.WithLabelValues(issuer, r)
	}
	for _, r := range []string{resultOK, resultInvalid, resultReuse, resultUnavailable} {
		ic.refreshes[r] = refreshesTotal.WithLabelValues(issuer, r)
		ic.rotations[r] = rotationsTotal.WithLabelValues(issuer, r)
	}
	for _, r := range []sessions.Reason{sessions.ReasonLogout, sessions.ReasonReuse, sessions.ReasonUserChanged, sessions.ReasonAdmin, sessions.ReasonBound} {
		ic.revocations[r] = revocationsTotal.WithLabelValues(issuer, string(r))
	}
	return ic
}

// counters returns the issuer's counters, resolved on first use.
func (is *Issuer) counters() *issuerCounters {
	is.ops.countersOnce.Do(func() { is.ops.counters = newIssuerCounters(is.name) })
	return is.ops.counters
}

func (is *Issuer) countLogin(result string) { is.counters().logins[result].Inc() }

// countSession counts the outcome of a refresh or a rotation: ok, or the
// refusal err is.
func countSession(m map[string]prometheus.Counter, err error) {
	r := resultOK
	switch {
	case err == nil:
	case errors.Is(err, sessions.ErrReused):
		r = resultReuse
	case storeFailed(err):
		r = resultUnavailable
	default:
		r = resultInvalid
	}
	m[r].Inc()
}

func (is *Issuer) countRefresh(err error)  { countSession(is.counters().refreshes, err) }
func (is *Issuer) countRotation(err error) { countSession(is.counters().rotations, err) }

// noteSessionError counts err if it is a failure of the store (a 503), not
// a refusal of the client's token.
func (is *Issuer) noteSessionError(err error, op string) {
	if storeFailed(err) {
		is.countStoreError(op)
	}
}

// countStoreError counts a failed store operation.
func (is *Issuer) countStoreError(op string) {
	storeErrors.WithLabelValues(is.name, op).Inc()
}

// countRevocation counts a session ended early.
func (is *Issuer) countRevocation(reason sessions.Reason) {
	if c := is.counters().revocations[reason]; c != nil {
		c.Inc()
	}
}
