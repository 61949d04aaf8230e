package jwtauth

import (
	"testing"
)

// BenchmarkHandlerVerifyTiming measures the cached HS256 handler path with
// verify_duration_seconds off (no clock read, the default without the
// `metrics` option) and on (two monotonic clock reads and one histogram
// observation), in the same run; timed/untimed is the ratio.
func BenchmarkHandlerVerifyTiming(b *testing.B) {
	clock := newTestClock().Now
	v := hsValidator()
	app := provisionApp(b, clock, map[string]*Validator{"timing": v})
	h := provisionHandler(b, app, &Handler{Validators: []string{"timing"}})
	hh := newBenchHarness(hs256(b, claims()))
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
