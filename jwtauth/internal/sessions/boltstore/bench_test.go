package boltstore

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// Every benchmark here commits each operation durably (one fsync, shared by
// the operations queued meanwhile). The 1k and 100k sizes run in the same
// process on the same file system, so their ratio is the cost of size.
// Since an fsync's latency depends on the disk and its other users, the
// login and rotation benchmarks also run with fsync off (fsync=off): the
// same transactions and page writes, which isolates what the engine's work
// costs as the store grows. Only fsync=on is what a client waits for.

var benchFP = strings.Repeat("f", 43) // a fingerprint's length

// benchStore opens a store holding n live sessions, written in one
// transaction.
func benchStore(b *testing.B, n int) (*Store, []string, []string) {
	s, _ := openTest(b)
	sids, toks := fill(b, s, n, benchFP, time.Now())
	return s, sids, toks
}

// benchSizes runs f at 1k and 100k sessions, with fsync on and off, on one
// fixture per size.
func benchSizes(b *testing.B, f func(b *testing.B, s *Store, sids, toks []string)) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			s, sids, toks := benchStore(b, n)
			for _, fsync := range []string{"on", "off"} {
				b.Run("fsync="+fsync, func(b *testing.B) {
					s.db.NoSync = fsync == "off"
					f(b, s, sids, toks)
				})
			}
		})
	}
}

// BenchmarkCreate is one login at 1k and 100k live sessions.
func BenchmarkCreate(b *testing.B) {
	benchSizes(b, func(b *testing.B, s *Store, _, _ []string) {
		now := time.Now()
		i := 0
		for b.Loop() {
			if _, _, _, err := s.Create(bg, policy, sessions.New{Login: fmt.Sprintf("bench%d", i), FP: benchFP}, now); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkRotate is one rotation at 1k and 100k live sessions, each of a
// different session's current token.
func BenchmarkRotate(b *testing.B) {
	benchSizes(b, func(b *testing.B, s *Store, sids, toks []string) {
		n := len(sids)
		now := time.Now()
		i := 0
		for b.Loop() {
			k := i % n
			_, next, _, err := s.Rotate(bg, policy, toks[k], sids[k], now)
			if err != nil {
				b.Fatal(err)
			}
			toks[k] = next
			i++
		}
	})
}

// BenchmarkRotateParallel is rotations from 32 concurrent clients at 1k
// live sessions, each client rotating its own sessions in turn; group
// commit lets them share fsyncs. It reports rotations per second.
func BenchmarkRotateParallel(b *testing.B) {
	const clients, n = 32, 1000
	s, sids, toks := benchStore(b, n)
	now := time.Now()
	var next atomic.Int64
	// RunParallel starts parallelism × GOMAXPROCS goroutines: 32 on 1,
	// 2, 4, 8... CPUs.
	par := (clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	goroutines := par * runtime.GOMAXPROCS(0)
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := int(next.Add(1) - 1)
		var mine []int
		for k := c; k < n; k += goroutines {
			mine = append(mine, k)
		}
		i := 0
		for pb.Next() {
			k := mine[i%len(mine)]
			_, tok, _, err := s.Rotate(bg, policy, toks[k], sids[k], now)
			if err != nil {
				b.Error(err)
				return
			}
			toks[k] = tok
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
}
