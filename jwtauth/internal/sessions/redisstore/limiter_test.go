package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter/limitertest"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

// TestLimiterConformance runs the limiter conformance suite against Redis,
// each case on an issuer of its own.
func TestLimiterConformance(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int64
	limitertest.Run(t, func(t *testing.T, cfg limiter.Config) limiter.Limiter {
		s := open(t, srv, Config{Issuer: fmt.Sprintf("limiter-%d", n.Add(1))})
		l, err := s.Limiter(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// TestLimiterShared: failures counted through one node refuse on another,
// and a frozen Redis gives an error (the issuer answers 503), never a pass.
func TestLimiterShared(t *testing.T) {
	srv := redistest.Start(t)
	cfg := limiter.Config{Max: 2, Per: time.Minute}
	a, err := open(t, srv, Config{Issuer: "shared"}).Limiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := open(t, srv, Config{Issuer: "shared", Timeout: 200 * time.Millisecond}).Limiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	for range cfg.Max {
		d, err := a.Before(ctx, "192.0.2.1", "alice", now)
		if err != nil || !d.OK {
			t.Fatalf("before on A = %+v, %v", d, err)
		}
		if err := a.Failed(ctx, "192.0.2.1", "alice", now); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := b.Before(ctx, "192.0.2.1", "alice", now.Add(time.Second)); err != nil || d.OK || d.RetryAfter != cfg.Per-time.Second {
		t.Fatalf("before on B after A's failures = %+v, %v; want refused for %v", d, err, cfg.Per-time.Second)
	}
	// The keys hold hashes of the IP and login, under the issuer's tag.
	keys := allKeys(t, raw(t, srv))
	if len(keys) != 3 {
		t.Fatalf("%d limiter keys, want 3 (pair, ip, login)", len(keys))
	}
	for k, v := range keys {
		if !strings.HasPrefix(k, "{jwtauth:shared}:lim:") || strings.Contains(k+string(v), "alice") || strings.Contains(k+string(v), "192.0.2.1") {
			t.Fatalf("limiter key %q (%q) is not a hash under the issuer's tag", k, v)
		}
	}
	srv.Pause()
	defer srv.Resume()
	if d, err := b.Before(ctx, "192.0.2.9", "bob", now); !errors.Is(err, sessions.ErrUnavailable) || d.OK {
		t.Fatalf("before on a frozen Redis = %+v, %v; want ErrUnavailable", d, err)
	}
}
