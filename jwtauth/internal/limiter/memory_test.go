package limiter_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter/limitertest"
)

func TestMemoryConformance(t *testing.T) {
	limitertest.Run(t, func(t *testing.T, cfg limiter.Config) limiter.Limiter {
		l, err := limiter.NewMemory(cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// TestMemoryBounded keeps every table bounded under a flood of addresses
// and logins, and still counts the newest entries.
func TestMemoryBounded(t *testing.T) {
	const maxEntries = 1000
	l, err := limiter.NewMemory(limiter.Config{Max: 1, Per: time.Minute}, maxEntries)
	if err != nil {
		t.Fatal(err)
	}
	ctx, now := context.Background(), limitertest.Start
	for i := range 3 * maxEntries {
		ip, login := "ip"+strconv.Itoa(i), "login"+strconv.Itoa(i)
		d, err := l.Before(ctx, ip, login, now)
		if err != nil || !d.OK {
			t.Fatalf("first attempt %d: %+v, %v", i, d, err)
		}
		if err := l.Failed(ctx, ip, login, now); err != nil {
			t.Fatal(err)
		}
	}
	pairs, ips, logins := l.Sizes()
	if pairs > maxEntries || ips > maxEntries || logins > maxEntries {
		t.Fatalf("tables hold %d / %d / %d entries, want at most %d", pairs, ips, logins, maxEntries)
	}
	last := strconv.Itoa(3*maxEntries - 1)
	if d, _ := l.Before(ctx, "ip"+last, "login"+last, now); d.OK {
		t.Fatal("the newest pair was forgotten")
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := limiter.Config{Max: 5, Per: time.Minute}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.IPMax != 20 || c.SlowAfter != 5 || c.Delay != 500*time.Millisecond || c.MaxDelay != 4*time.Second {
		t.Fatalf("defaults %+v", c)
	}
	for _, bad := range []limiter.Config{{}, {Max: 1}, {Per: time.Second}, {Max: 5, Per: time.Minute, IPMax: 2}, {Max: 1, Per: time.Second, Delay: 5 * time.Second, MaxDelay: time.Second}} {
		if _, err := bad.WithDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
