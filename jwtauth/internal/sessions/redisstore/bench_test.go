package redisstore

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/boltstore"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

// benchClients is the number of concurrent clients of each benchmark.
const benchClients = 32

// benchPolicy is the issuer's default policy.
var benchPolicy = sessions.Policy{
	RefreshTTL:  7 * 24 * time.Hour,
	IdleTimeout: 24 * time.Hour,
	MaxPerLogin: 100,
	Grace:       2 * time.Second,
	Retain:      10 * time.Minute,
}

// benchResult is the last run of one backend and operation, for the
// Redis/bbolt ratios.
type benchResult struct{ p50, p99, opsPerSec float64 }

var (
	benchMu      sync.Mutex
	benchResults = map[string]benchResult{}
)

// BenchmarkStores runs login, refresh, rotate and revoke with 32 concurrent
// clients against the bbolt store (the baseline) and then against Redis on
// loopback TCP, reporting p50 and p99 latency and ops/s; the Redis runs
// also report their ratios to bbolt's.
func BenchmarkStores(b *testing.B) {
	srv := redistest.Start(b, redistest.TCP())
	backends := []struct {
		name string
		open func(b *testing.B) sessions.Store
	}{
		{"bolt", func(b *testing.B) sessions.Store {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "sessions", "sessions.db"), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"redis", func(b *testing.B) sessions.Store {
			s, err := New(Config{Addrs: []string{srv.Addr()}, Issuer: fmt.Sprintf("bench-%d", time.Now().UnixNano())})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, op := range []string{"login", "refresh", "rotate", "revoke"} {
		for _, be := range backends {
			b.Run(op+"/"+be.name, func(b *testing.B) {
				s := be.open(b)
				defer s.Close()
				r := benchOp(b, s, op)
				benchMu.Lock()
				benchResults[op+"/"+be.name] = r
				base, ok := benchResults[op+"/bolt"]
				benchMu.Unlock()
				if be.name == "redis" && ok && base.p50 > 0 && base.opsPerSec > 0 {
					b.ReportMetric(r.p50/base.p50, "p50/bolt")
					b.ReportMetric(r.opsPerSec/base.opsPerSec, "ops/s/bolt")
				}
			})
		}
	}
}

// benchOp runs b.N operations op on s from benchClients goroutines.
func benchOp(b *testing.B, s sessions.Store, op string) benchResult {
	ctx := context.Background()
	now := time.Now()
	var logins atomic.Int64
	login := func() (sessions.Session, string) {
		i := logins.Add(1)
		sess, tok, _, err := s.Create(ctx, benchPolicy, sessions.New{Login: fmt.Sprintf("user%d", i%10000), UserID: "1", FP: "fp"}, now)
		if err != nil {
			b.Fatal(err)
		}
		return sess, tok
	}
	// Sessions that the measured operations use: one per client for
	// refresh and rotate, one per operation for revoke.
	type fam struct {
		sid, tok string
	}
	n := benchClients
	if op == "revoke" {
		n = b.N
	}
	fams := make(chan fam, n)
	var wg sync.WaitGroup
	for range benchClients {
		wg.Go(func() {
			for logins.Load() < int64(n) {
				sess, tok := login()
				select {
				case fams <- fam{sess.SID, tok}:
				default:
				}
			}
		})
	}
	wg.Wait()

	var mu sync.Mutex
	var durs []time.Duration
	var clock atomic.Int64 // rotations move time on past the grace window
	b.SetParallelism((benchClients + 1) / 2)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		var f fam
		if op != "revoke" && op != "login" {
			f = <-fams
		}
		for pb.Next() {
			t0 := time.Now()
			var err error
			switch op {
			case "login":
				_, _, _, err = s.Create(ctx, benchPolicy, sessions.New{Login: fmt.Sprintf("user%d", logins.Add(1)%10000), UserID: "1", FP: "fp"}, now)
			case "refresh":
				_, _, err = s.Use(ctx, benchPolicy, f.tok, now)
			case "rotate":
				var next string
				at := now.Add(time.Duration(clock.Add(1)) * time.Millisecond)
				_, next, _, err = s.Rotate(ctx, benchPolicy, f.tok, f.sid, at)
				f.tok = next
			case "revoke":
				g := <-fams
				_, _, err = s.Revoke(ctx, benchPolicy, g.tok, now)
			}
			local = append(local, time.Since(t0))
			if err != nil {
				b.Error(err)
				return
			}
		}
		mu.Lock()
		durs = append(durs, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(durs) == 0 {
		return benchResult{}
	}
	slices.Sort(durs)
	r := benchResult{
		p50:       float64(durs[len(durs)/2]) / 1e3,
		p99:       float64(durs[len(durs)*99/100]) / 1e3,
		opsPerSec: float64(len(durs)) / elapsed.Seconds(),
	}
	b.ReportMetric(r.p50, "p50-µs")
	b.ReportMetric(r.p99, "p99-µs")
	b.ReportMetric(r.opsPerSec, "ops/s")
	return r
}

// sidRecorder hands each revoked sid to a channel.
type sidRecorder chan string

func (r sidRecorder) Revoked(v sessions.Revocation) { r <- v.SID }
func (sidRecorder) Heard(time.Time)                 {}
func (sidRecorder) Reset(time.Time)                 {}

// BenchmarkRevocationPropagation measures the time from a revocation on
// one node (store A) to its delivery by the feed on another (store B),
// beside its baseline, the revocation's own round trip on A.
func BenchmarkRevocationPropagation(b *testing.B) {
	srv := redistest.Start(b, redistest.TCP())
	cfg := Config{Addrs: []string{srv.Addr()}, Issuer: "propagation"}
	a, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	nb, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(sidRecorder, 16)
	done := make(chan struct{})
	now := time.Now()
	go func() {
		defer close(done)
		_ = nb.Follow(ctx, now, time.Second, got)
	}()
	var prop, rtt []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s, _, _, err := a.Create(context.Background(), benchPolicy, sessions.New{Login: "p"}, now)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		if _, _, err := a.RevokeSID(context.Background(), s.SID, sessions.ReasonAdmin, now); err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, time.Since(t0))
		select {
		case sid := <-got:
			if sid != s.SID {
				b.Fatalf("delivered %s, want %s", sid, s.SID)
			}
		case <-time.After(5 * time.Second):
			b.Fatal("revocation not delivered within 5s")
		}
		prop = append(prop, time.Since(t0))
	}
	b.StopTimer()
	cancel()
	<-done
	slices.Sort(prop)
	slices.Sort(rtt)
	p50, p99 := float64(prop[len(prop)/2])/1e3, float64(prop[len(prop)*99/100])/1e3
	b.ReportMetric(p50, "p50-µs")
	b.ReportMetric(p99, "p99-µs")
	b.ReportMetric(float64(rtt[len(rtt)/2])/1e3, "revoke-p50-µs")
	b.ReportMetric(p50/(float64(rtt[len(rtt)/2])/1e3), "p50/revoke")
}
