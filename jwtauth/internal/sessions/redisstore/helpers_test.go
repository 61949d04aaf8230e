package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

// policy is the tests' policy: long enough that keys never expire on the
// real clock during a test.
var policy = sessions.Policy{
	RefreshTTL:  24 * time.Hour,
	IdleTimeout: time.Hour,
	MaxPerLogin: 3,
	Grace:       10 * time.Second,
	Retain:      15 * time.Minute,
}

func open(t testing.TB, srv *redistest.Server, cfg Config) *Store {
	t.Helper()
	cfg.Addrs = []string{srv.Addr()}
	if cfg.Issuer == "" {
		cfg.Issuer = "test"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// raw is a plain client for inspecting what the store wrote.
func raw(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: srv.Addr()}
	if srv.Socket() != "" {
		o.Network, o.Addr = "unix", srv.Socket()
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recorder is a FeedHandler that records what it is told and signals each
// call on a channel.
type recorder struct {
	mu     sync.Mutex
	revs   []sessions.Revocation
	heard  []time.Time
	resets []time.Time
	// revsAtHeard is len(revs) at each Heard.
	revsAtHeard []int
	ev          chan string
}

func newRecorder() *recorder { return &recorder{ev: make(chan string, 4096)} }

func (r *recorder) Revoked(v sessions.Revocation) {
	r.mu.Lock()
	r.revs = append(r.revs, v)
	r.mu.Unlock()
	r.signal("revoked")
}

func (r *recorder) Heard(at time.Time) {
	r.mu.Lock()
	r.heard = append(r.heard, at)
	r.revsAtHeard = append(r.revsAtHeard, len(r.revs))
	r.mu.Unlock()
	r.signal("heard")
}

func (r *recorder) Reset(at time.Time) {
	r.mu.Lock()
	r.resets = append(r.resets, at)
	r.mu.Unlock()
	r.signal("reset")
}

func (r *recorder) signal(what string) {
	select {
	case r.ev <- what:
	default:
	}
}

// wait waits for cond (checked under r.mu after every event) within d.
func (r *recorder) wait(t testing.TB, d time.Duration, what string, cond func(r *recorder) bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.ev:
		case <-deadline.C:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

func (r *recorder) revoked() []sessions.Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sessions.Revocation(nil), r.revs...)
}

// follow runs s.Follow until the test ends, and checks that it returns
// ctx's error.
func follow(t testing.TB, s *Store, since time.Time, interval time.Duration) (*recorder, context.CancelFunc) {
	t.Helper()
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Follow(ctx, since, interval, r) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != context.Canceled {
				t.Errorf("Follow returned %v, want context.Canceled", err)
			}
			done <- err
		case <-time.After(5 * time.Second):
			t.Error("Follow did not return within 5s of its context's end")
		}
	}
	t.Cleanup(stop)
	return r, stop
}
