package jwtauth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics live in package variables, as Caddy's own do, and are registered
// into each config's registry; counters therefore survive reloads.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "requests_total",
		Help:      "Requests seen by jwt_auth, by validator and result (ok, anonymous, missing, malformed, invalid, expired, forbidden).",
	}, []string{"validator", "result"})

	jwksFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "jwtauth",
		Name:      "jwks_fetches_total",
		Help:      "Remote JWKS fetches, by validator and result (ok, error).",
	}, []string{"validator", "result"})
)

func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{requestsTotal, jwksFetches} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
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
