// Package limitertest is the conformance suite of limiter.Limiter
// implementations: every implementation runs it unchanged and passes it
// before it is wired into the issuer.
package limitertest

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
)

// Start is the time the suite's clock starts at. Time is passed to the
// limiter explicitly; the suite never sleeps.
var Start = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// Run runs the suite. newLimiter returns a new, empty limiter with cfg (the
// suite sets Max and Per, and leaves the other fields to their defaults
// unless a case needs them); each case gets its own, so a shared backend
// must give each call a fresh namespace.
func Run(t *testing.T, newLimiter func(t *testing.T, cfg limiter.Config) limiter.Limiter) {
	base := limiter.Config{Max: 3, Per: time.Minute}
	cases := []struct {
		name string
		cfg  limiter.Config
		run  func(t *testing.T, c *checker)
	}{
		{"pair bound and its window", base, pairBound},
		{"strangers cannot lock a login out", base, noLockout},
		{"ip bound over all logins", base, ipBound},
		{"per-login slowdown", base, slowdown},
		{"slowdown options", limiter.Config{Max: 2, Per: time.Minute, SlowAfter: 1, Delay: time.Second, MaxDelay: 3 * time.Second}, slowdownOptions},
		{"success forgets the pair only", base, success},
		{"refusals record nothing", base, refusalsRecordNothing},
		{"concurrent attempts hold the bound", base, concurrent},
		{"keys are exact", base, exactKeys},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, tc.cfg)
			cfg, err := tc.cfg.WithDefaults()
			if err != nil {
				t.Fatal(err)
			}
			tc.run(t, &checker{t: t, l: l, cfg: cfg, now: Start})
		})
	}
}

type checker struct {
	t   *testing.T
	l   limiter.Limiter
	cfg limiter.Config
	now time.Time
}

func (c *checker) advance(d time.Duration) { c.now = c.now.Add(d) }

func (c *checker) before(ip, login string) limiter.Decision {
	c.t.Helper()
	d, err := c.l.Before(context.Background(), ip, login, c.now)
	if err != nil {
		c.t.Fatalf("Before(%s, %s): %v", ip, login, err)
	}
	if d.OK && d.RetryAfter != 0 || !d.OK && (d.Delay != 0 || d.RetryAfter <= 0) {
		c.t.Fatalf("Before(%s, %s) = %+v: inconsistent decision", ip, login, d)
	}
	return d
}

// allowed expects Before to allow, with the given delay.
func (c *checker) allowed(ip, login string, delay time.Duration) {
	c.t.Helper()
	if d := c.before(ip, login); !d.OK || d.Delay != delay {
		c.t.Fatalf("Before(%s, %s) at +%v = %+v, want allowed with delay %v", ip, login, c.now.Sub(Start), d, delay)
	}
}

// refused expects Before to refuse, with the given Retry-After.
func (c *checker) refused(ip, login string, retry time.Duration) {
	c.t.Helper()
	if d := c.before(ip, login); d.OK || d.RetryAfter != retry {
		c.t.Fatalf("Before(%s, %s) at +%v = %+v, want refused for %v", ip, login, c.now.Sub(Start), d, retry)
	}
}

func (c *checker) failed(ip, login string) {
	c.t.Helper()
	if err := c.l.Failed(context.Background(), ip, login, c.now); err != nil {
		c.t.Fatalf("Failed: %v", err)
	}
}

func (c *checker) succeeded(ip, login string) {
	c.t.Helper()
	if err := c.l.Succeeded(context.Background(), ip, login, c.now); err != nil {
		c.t.Fatalf("Succeeded: %v", err)
	}
}

// fail runs one allowed, failed attempt, whatever its delay.
func (c *checker) fail(ip, login string) {
	c.t.Helper()
	if d := c.before(ip, login); !d.OK {
		c.t.Fatalf("Before(%s, %s) at +%v refused (%v), want allowed", ip, login, c.now.Sub(Start), d.RetryAfter)
	}
	c.failed(ip, login)
}

func ip(i int) string { return "192.0.2." + strconv.Itoa(i) }

// pairBound: Max failures of one pair, then refusals until the window that
// began at the first failure ends.
func pairBound(t *testing.T, c *checker) {
	for range c.cfg.Max {
		c.fail(ip(1), "alice")
		c.advance(time.Second)
	}
	c.refused(ip(1), "alice", c.cfg.Per-time.Duration(c.cfg.Max)*time.Second)
	c.advance(c.cfg.Per - time.Duration(c.cfg.Max)*time.Second - time.Nanosecond)
	c.refused(ip(1), "alice", time.Nanosecond)
	c.advance(time.Nanosecond)
	c.allowed(ip(1), "alice", 0)
	c.succeeded(ip(1), "alice")
}

// noLockout: many IPs failing one login never refuse its owner's fresh IP,
// and the slowdown stays capped.
func noLockout(t *testing.T, c *checker) {
	for i := range 10 * c.cfg.Max {
		c.fail(ip(100+i%10), "alice")
	}
	d := c.before(ip(1), "alice")
	if !d.OK || d.Delay <= 0 || d.Delay > c.cfg.MaxDelay {
		t.Fatalf("the owner's fresh IP got %+v, want allowed with a slowdown of at most %v", d, c.cfg.MaxDelay)
	}
	c.succeeded(ip(1), "alice")
	// another login is not slowed down
	c.allowed(ip(2), "bob", 0)
	c.succeeded(ip(2), "bob")
	// the pairs that failed are refused
	c.refused(ip(100), "alice", c.cfg.Per)
}

// ipBound: one IP spraying distinct logins is refused after IPMax failures,
// for every login, until the window ends; other IPs are not.
func ipBound(t *testing.T, c *checker) {
	for i := range c.cfg.IPMax {
		c.fail(ip(1), "user"+strconv.Itoa(i))
	}
	c.refused(ip(1), "fresh-login", c.cfg.Per)
	c.allowed(ip(2), "fresh-login", 0)
	c.succeeded(ip(2), "fresh-login")
	c.advance(c.cfg.Per)
	c.allowed(ip(1), "fresh-login", 0)
	c.succeeded(ip(1), "fresh-login")
}

// slowdown: past SlowAfter failures of a login, from any IPs, its attempts
// wait Delay, doubling per failure up to MaxDelay; the window's end resets
// it.
func slowdown(t *testing.T, c *checker) {
	for i := range c.cfg.SlowAfter {
		c.allowed(ip(10+i), "alice", 0)
		c.failed(ip(10+i), "alice")
	}
	want := c.cfg.Delay
	for i := range 8 {
		c.allowed(ip(50+i), "alice", min(want, c.cfg.MaxDelay))
		c.failed(ip(50+i), "alice")
		want *= 2
	}
	// a success does not lift a login's slowdown: only time does
	c.allowed(ip(90), "alice", c.cfg.MaxDelay)
	c.succeeded(ip(90), "alice")
	c.allowed(ip(91), "alice", c.cfg.MaxDelay)
	c.succeeded(ip(91), "alice")
	c.advance(c.cfg.Per)
	c.allowed(ip(92), "alice", 0)
	c.succeeded(ip(92), "alice")
}

// slowdownOptions: SlowAfter, Delay and MaxDelay are honoured.
func slowdownOptions(t *testing.T, c *checker) {
	c.allowed(ip(1), "alice", 0)
	c.failed(ip(1), "alice")
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		c.allowed(ip(2+i), "alice", want)
		c.failed(ip(2+i), "alice")
	}
}

// success forgets the pair's failures and takes the attempt back from the
// IP, but the IP keeps its other failures.
func success(t *testing.T, c *checker) {
	for range c.cfg.Max - 1 {
		c.fail(ip(1), "alice")
	}
	c.allowed(ip(1), "alice", 0)
	c.succeeded(ip(1), "alice")
	for range c.cfg.Max {
		c.fail(ip(1), "alice")
	}
	c.refused(ip(1), "alice", c.cfg.Per)
	// the IP now holds 2*Max-1 failures; successes do not lower that
	for range 5 {
		c.allowed(ip(1), "bob", 0)
		c.succeeded(ip(1), "bob")
	}
	for i := range c.cfg.IPMax - (2*c.cfg.Max - 1) {
		c.fail(ip(1), "user"+strconv.Itoa(i))
	}
	c.refused(ip(1), "dave", c.cfg.Per)
}

// refusalsRecordNothing: refused attempts neither extend nor count.
func refusalsRecordNothing(t *testing.T, c *checker) {
	for range c.cfg.Max {
		c.fail(ip(1), "alice")
	}
	for range 10 * c.cfg.IPMax {
		c.refused(ip(1), "alice", c.cfg.Per)
	}
	// the IP has Max failures, not more
	for i := range c.cfg.IPMax - c.cfg.Max {
		c.fail(ip(1), "user"+strconv.Itoa(i))
	}
	c.refused(ip(1), "other", c.cfg.Per)
	// and the login was never slowed by refusals
	c.allowed(ip(2), "alice", c.cfg.SlowdownFor(c.cfg.Max))
	c.succeeded(ip(2), "alice")
	c.advance(c.cfg.Per)
	c.allowed(ip(1), "alice", 0)
	c.succeeded(ip(1), "alice")
}

// concurrent: at most Max of many simultaneous attempts of one pair are
// allowed.
func concurrent(t *testing.T, c *checker) {
	const n = 32
	var wg sync.WaitGroup
	ok := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := c.l.Before(context.Background(), ip(1), "alice", c.now)
			ok[i], errs[i] = d.OK, err
			if err == nil && d.OK {
				errs[i] = c.l.Failed(context.Background(), ip(1), "alice", c.now)
			}
		}()
	}
	wg.Wait()
	allowed := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ok[i] {
			allowed++
		}
	}
	if allowed != c.cfg.Max {
		t.Fatalf("%d of %d concurrent attempts allowed, want %d", allowed, n, c.cfg.Max)
	}
}

// exactKeys: logins and IPs are compared exactly, whatever they contain.
func exactKeys(t *testing.T, c *checker) {
	long := string(make([]byte, 10000))
	for _, login := range []string{"alice", long} {
		for range c.cfg.Max {
			c.fail(ip(1), login)
		}
		c.refused(ip(1), login, c.cfg.Per)
	}
	slowed := c.cfg.SlowdownFor(c.cfg.Max) // alice's own slowdown
	for _, k := range []struct {
		ip, login string
		delay     time.Duration
	}{{ip(1), "Alice", 0}, {ip(1), "alice ", 0}, {ip(1), long + "x", 0}, {ip(1), "", 0}, {ip(1) + "0", "alice", slowed}, {"", "alice", slowed}} {
		c.allowed(k.ip, k.login, k.delay)
		c.succeeded(k.ip, k.login)
	}
	// an IP and a login that look alike do not share a count
	c.allowed("alice", ip(1), 0)
	c.succeeded("alice", ip(1))
}
