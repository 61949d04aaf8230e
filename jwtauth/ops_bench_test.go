package jwtauth

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkHandlerVerifyTiming measures the cached HS256 handler path as
// Caddy runs it (the wall clock), with verify_duration_seconds off (no
// clock read, the default without the `metrics` option) and on (one more
// clock read and a histogram observation), in the same run; x_untimed is
// the ratio.
func BenchmarkHandlerVerifyTiming(b *testing.B) {
	v := hsValidator()
	a := &App{Validators: map[string]*Validator{"timing": v}} // a.now unset: time.Now, as in Caddy
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(func() { _ = a.Cleanup(); cancel() })
	if err := a.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	if !v.wallClock {
		b.Fatal("the validator does not know it runs on the wall clock")
	}
	h := provisionHandler(b, a, &Handler{Validators: []string{"timing"}})
	now := time.Now()
	hh := newBenchHarness(hs256(b, jwt.MapClaims{"iss": "iss", "aud": "aud", "sub": "alice",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Add(-time.Minute).Unix()}))
	if err := hh.serve(h); err != nil {
		b.Fatal(err)
	}
	var off benchPerOp
	for _, timed := range []bool{false, true} {
		name := map[bool]string{false: "untimed", true: "timed"}[timed]
		b.Run(name, func(b *testing.B) {
			v.timed.Store(timed)
			m := benchMeasure(b, func() {
				if err := hh.serve(h); err != nil {
					b.Fatal(err)
				}
			})
			if !timed {
				off = m
			} else if off.ns > 0 {
				b.ReportMetric(m.ns/off.ns, "x_untimed")
				b.ReportMetric(m.allocs-off.allocs, "allocs_over_untimed")
			}
		})
	}
	v.timed.Store(false)
}
