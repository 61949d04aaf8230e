package jwtauth

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
)

func limitAuth(e *issuerEnv, login, password, ip string, hdr map[string]string) issuerRes {
	return e.do(issuerReq{path: "/authenticate", body: `{"login":"` + login + `","password":"` + password + `"}`, ip: ip, header: hdr})
}

// expectLimitedWhateverXFF checks that login with the right password from
// ip is refused 429 with Retry-After retry, whatever X-Forwarded-For says
// (none, another address, a chain).
func expectLimitedWhateverXFF(t *testing.T, e *issuerEnv, login, password, ip, retry string) {
	t.Helper()
	for _, xff := range []string{"", "10.9.9.9", "192.0.2.77, 10.0.0.1"} {
		res := limitAuth(e, login, password, ip, map[string]string{"X-Forwarded-For": xff})
		res.expect(t, 429, "too_many_requests")
		if ra := res.Header().Get("Retry-After"); ra != retry {
			t.Fatalf("Retry-After %q, want %s", ra, retry)
		}
	}
}

// TestIssuerLoginLimit: past login_limit failures a (client IP, login) pair
// is answered 429 with Retry-After, even with the right password, and so is
// a client IP past 4 × login_limit over all logins; X-Forwarded-For does not
// change the address.
func TestIssuerLoginLimit(t *testing.T) {
	t.Run("per pair", func(t *testing.T) {
		e := newIssuerEnv(t, nil)
		for i := range 5 {
			limitAuth(e, "alice", "wrong", "203.0.113.5", map[string]string{"X-Forwarded-For": "10.0.0." + strconv.Itoa(i+1)}).expect(t, 401, "invalid_grant")
			e.clock.Add(time.Second)
		}
		expectLimitedWhateverXFF(t, e, "alice", "alice-password", "203.0.113.5", "55")
		// the same address, another login; another address, the same login
		limitAuth(e, "bob", "bob-password", "203.0.113.5", nil).expect(t, 200, "")
		limitAuth(e, "alice", "alice-password", "203.0.113.6", nil).expect(t, 200, "")
		e.clock.Add(55 * time.Second)
		limitAuth(e, "alice", "alice-password", "203.0.113.5", nil).expect(t, 200, "")
	})
	t.Run("per address", func(t *testing.T) {
		e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 2} })
		for i := range 8 { // 4 × max, over many logins, whatever X-Forwarded-For says
			limitAuth(e, "user"+strconv.Itoa(i), "wrong", "203.0.113.5", map[string]string{"X-Forwarded-For": "10.0.0." + strconv.Itoa(i+1)}).expect(t, 401, "invalid_grant")
		}
		expectLimitedWhateverXFF(t, e, "bob", "bob-password", "203.0.113.5", "60")
		limitAuth(e, "bob", "bob-password", "203.0.113.6", nil).expect(t, 200, "")
	})
	t.Run("envelope", func(t *testing.T) {
		e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 1} })
		limitAuth(e, "alice", "wrong", "198.51.100.1", nil).expect(t, 401, "invalid_grant")
		res := e.do(issuerReq{path: "/authenticate", body: `{"jsonrpc":"2.0","id":3,"params":{"login":"alice","password":"alice-password"}}`, ip: "198.51.100.1"})
		m := res.expect(t, 200, "")
		if d := m["error"].(map[string]any)["data"].(map[string]any); d["http_status"] != float64(429) || res.Header().Get("Retry-After") != "60" {
			t.Fatalf("envelope %v, Retry-After %q", m, res.Header().Get("Retry-After"))
		}
	})
	t.Run("ipv6 /64", func(t *testing.T) {
		e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 2} })
		limitAuth(e, "alice", "wrong", "2001:db8:1:2::1", nil).expect(t, 401, "invalid_grant")
		limitAuth(e, "alice", "wrong", "2001:db8:1:2:ffff::9", nil).expect(t, 401, "invalid_grant")
		limitAuth(e, "alice", "alice-password", "2001:db8:1:2::abcd", nil).expect(t, 429, "too_many_requests")
		limitAuth(e, "alice", "alice-password", "2001:db8:1:3::1", nil).expect(t, 200, "")
	})
	t.Run("concurrent guesses", func(t *testing.T) {
		e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 3} })
		const n = 16
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = limitAuth(e, "alice", "wrong", "203.0.113.9", nil).Code
			}()
		}
		wg.Wait()
		count := map[int]int{}
		for _, c := range codes {
			count[c]++
		}
		if count[401] != 3 || count[429] != n-3 {
			t.Fatalf("answers %v: the limit must hold for concurrent attempts", count)
		}
	})
	t.Run("success resets the pair only", func(t *testing.T) {
		e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 2} })
		limitAuth(e, "alice", "wrong", "192.0.2.10", nil).expect(t, 401, "invalid_grant")
		limitAuth(e, "alice", "alice-password", "192.0.2.10", nil).expect(t, 200, "")
		limitAuth(e, "alice", "wrong", "192.0.2.10", nil).expect(t, 401, "invalid_grant")
		limitAuth(e, "alice", "wrong", "192.0.2.10", nil).expect(t, 401, "invalid_grant")
		limitAuth(e, "alice", "alice-password", "192.0.2.10", nil).expect(t, 429, "too_many_requests")
	})
}

// TestIssuerNoLockoutByStrangers: failures for a login sent from other
// client IPs never refuse its owner, from a fresh IP, with the right
// password; they slow the login down instead, with a growing, capped wait
// applied before the password check whatever the password.
func TestIssuerNoLockoutByStrangers(t *testing.T) {
	e := newIssuerEnv(t, nil) // 5 per 1m
	for i := range 5 {
		limitAuth(e, "alice", "wrong", "198.51.100."+strconv.Itoa(i+1), nil).expect(t, 401, "invalid_grant")
	}
	if got := e.waits.take(); len(got) != 0 {
		t.Fatalf("waits before the slowdown: %v", got)
	}
	limitAuth(e, "alice", "alice-password", "198.51.100.200", nil).expect(t, 200, "")
	for i := range 5 {
		limitAuth(e, "alice", "wrong", "198.51.100."+strconv.Itoa(i+10), nil).expect(t, 401, "invalid_grant")
	}
	limitAuth(e, "alice", "alice-password", "198.51.100.201", nil).expect(t, 200, "")
	want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	got := e.waits.take()
	if len(got) != len(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
	// other logins are not slowed down
	limitAuth(e, "bob", "bob-password", "198.51.100.1", nil).expect(t, 200, "")
	if got := e.waits.take(); len(got) != 0 {
		t.Fatalf("bob waited %v", got)
	}
	// the slowdown ends with the window
	e.clock.Add(time.Minute)
	limitAuth(e, "alice", "alice-password", "198.51.100.202", nil).expect(t, 200, "")
	if got := e.waits.take(); len(got) != 0 {
		t.Fatalf("alice still waits %v", got)
	}
}

// TestIssuerSlowdownAbandoned: a client that goes away during the slowdown
// gets no answer from the password check, and the attempt counts as a
// failure.
func TestIssuerSlowdownAbandoned(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 1} })
	limitAuth(e, "alice", "wrong", "198.51.100.1", nil).expect(t, 401, "invalid_grant")
	e.waits.abort = true
	limitAuth(e, "alice", "alice-password", "198.51.100.2", nil).expect(t, 503, "temporarily_unavailable")
	limitAuth(e, "alice", "alice-password", "198.51.100.2", nil).expect(t, 429, "too_many_requests")
	e.waits.abort = false
	e.waits.take()
	limitAuth(e, "alice", "alice-password", "198.51.100.3", nil).expect(t, 200, "")
	if got := e.waits.take(); len(got) != 1 || got[0] != time.Second {
		t.Fatalf("waits %v, want [1s] after two failures", got)
	}
}

// TestWaitCtx: the slowdown ends when the request's context does.
func TestWaitCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("waitCtx on a cancelled context = %v", err)
	}
	if err := waitCtx(context.Background(), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
}

// TestIssuerLimiterAcrossReloads: a reload that keeps login_limit keeps the
// counts.
func TestIssuerLimiterAcrossReloads(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 1} })
	limitAuth(e, "alice", "wrong", "198.51.100.1", nil).expect(t, 401, "invalid_grant")
	old := e.app
	e.load(func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 1} })
	_ = old.Cleanup()
	limitAuth(e, "alice", "alice-password", "198.51.100.1", nil).expect(t, 429, "too_many_requests")
}

// failingLimiter fails the calls it is told to, as a limiter shared
// through an unreachable Redis would.
type failingLimiter struct {
	limiter.Limiter
	before, failed, succeeded bool
}

var errLimiterTest = errors.New("limiter backend down")

func (f failingLimiter) Before(ctx context.Context, ip, login string, now time.Time) (limiter.Decision, error) {
	if f.before {
		return limiter.Decision{}, errLimiterTest
	}
	return f.Limiter.Before(ctx, ip, login, now)
}

func (f failingLimiter) Failed(ctx context.Context, ip, login string, now time.Time) error {
	if f.failed {
		return errLimiterTest
	}
	return f.Limiter.Failed(ctx, ip, login, now)
}

func (f failingLimiter) Succeeded(ctx context.Context, ip, login string, now time.Time) error {
	if f.succeeded {
		return errLimiterTest
	}
	return f.Limiter.Succeeded(ctx, ip, login, now)
}

// TestIssuerLimiterDown: a limiter that cannot decide is a 503, never a
// pass and never a 401.
func TestIssuerLimiterDown(t *testing.T) {
	e := newIssuerEnv(t, nil)
	real := e.is.limiter
	for _, tc := range []struct {
		f        failingLimiter
		password string
	}{
		{failingLimiter{before: true}, "alice-password"},
		{failingLimiter{failed: true}, "wrong"},
		{failingLimiter{succeeded: true}, "alice-password"},
	} {
		tc.f.Limiter = real
		e.is.limiter = tc.f
		res := limitAuth(e, "alice", tc.password, "198.51.100.1", nil)
		res.expect(t, 503, "temporarily_unavailable")
		if res.refreshCookie("refreshToken") != nil {
			t.Fatalf("%+v: a session was started", tc.f)
		}
	}
}
