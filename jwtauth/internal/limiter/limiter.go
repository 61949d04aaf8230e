// Package limiter is the login limiter of the jwtauth issuer: it decides,
// before a password is checked, whether a login attempt may run and how
// long to make it wait. It knows nothing of Caddy or HTTP; the issuer gives
// it the client IP (already resolved through trusted_proxies) and the login.
//
// # Model
//
// Failures are counted in fixed windows of Config.Per, each starting at the
// first failure it counts, under three keys:
//
//   - the (client IP, login) pair: after Config.Max failures, that pair is
//     refused (RetryAfter: until its window ends). This stops one client
//     guessing one password, without touching anyone else: the owner of the
//     login, from another IP, is never refused because of it.
//   - the client IP, over all logins: after Config.IPMax failures (default
//     4 × Max), the IP is refused for every login. This stops one client
//     spraying many logins with a few passwords each.
//   - the login, over all IPs: never a refusal, which would let anyone lock
//     anyone out, but a slowdown against guessing one login from many IPs.
//     Once the login has Config.SlowAfter failures (default Max) in its
//     window, each attempt waits Config.Delay (default 500ms) before its
//     password is checked, doubling with every further failure, up to
//     Config.MaxDelay (default 4s). The wait is the same whatever the
//     password, so it reveals nothing.
//
// So a correct password from an IP with no recent failures (for that login,
// and fewer than IPMax overall) is always let through, at worst after the
// login's slowdown.
//
// # Protocol
//
// Call Before for each attempt. When it refuses (Decision.OK false),
// nothing is recorded. When it allows, it has already counted the attempt
// as a failure of the pair and of the IP: reserving before the password
// check makes the bounds hold for concurrent attempts, however many arrive
// at once. Then call exactly one of Failed (the password was wrong, or the
// attempt was abandoned: it counts the failure for the login's slowdown)
// and Succeeded (it takes the attempt back and forgets the pair's failures;
// the IP keeps its other failures, and the login's slowdown decays only
// with time, so a valid account does not reset a guesser's counts).
//
// Implementations share state however they like (in memory here; through
// Redis for several nodes), but each call must be atomic, and they must
// pass the limitertest conformance suite. Methods take a context and return
// an error for implementations that cross a network; an error means the
// limiter could not decide, and the caller must refuse the attempt (503),
// never let it through.
package limiter

import (
	"context"
	"errors"
	"time"
)

// Limiter is a login limiter. Its methods are safe for concurrent use.
type Limiter interface {
	// Before is called before the password check of a login attempt. When
	// the attempt is refused, the decision's OK is false, RetryAfter says
	// for how long, and nothing is recorded. Otherwise the attempt is
	// reserved as a failure of ip and of (ip, login), and Delay is the
	// per-login slowdown to wait before checking the password.
	Before(ctx context.Context, ip, login string, now time.Time) (Decision, error)
	// Failed records that an attempt allowed by Before failed (or was
	// abandoned), for the login's slowdown.
	Failed(ctx context.Context, ip, login string, now time.Time) error
	// Succeeded records that an attempt allowed by Before succeeded: the
	// reservation is taken back and the pair's failures forgotten.
	Succeeded(ctx context.Context, ip, login string, now time.Time) error
}

// Decision is the answer of Limiter.Before.
type Decision struct {
	// OK reports whether the attempt may run.
	OK bool
	// RetryAfter is, when OK is false, how long until the bound that
	// refused the attempt frees up (at least 1ns).
	RetryAfter time.Duration
	// Delay is, when OK is true, how long to wait before checking the
	// password: the per-login slowdown, 0 when there is none.
	Delay time.Duration
}

// Config is the limiter's model; see the package doc.
type Config struct {
	// Max is the number of failures allowed per (IP, login) pair within
	// Per. Required (> 0).
	Max int
	// Per is the length of a counting window, from the first failure it
	// counts. Required (> 0).
	Per time.Duration
	// IPMax is the number of failures allowed per IP, over all logins,
	// within Per. Default: 4 × Max.
	IPMax int
	// SlowAfter is the number of failures of a login (from any IP) within
	// Per after which its attempts are slowed down. Default: Max.
	SlowAfter int
	// Delay is the first slowdown; each further failure doubles it.
	// Default: 500ms.
	Delay time.Duration
	// MaxDelay caps the slowdown. Default: 4s.
	MaxDelay time.Duration
}

// Defaults of Config.
const (
	DefaultIPFactor = 4
	DefaultDelay    = 500 * time.Millisecond
	DefaultMaxDelay = 4 * time.Second
)

// WithDefaults returns c with its defaults filled in, or an error if it is
// unusable.
func (c Config) WithDefaults() (Config, error) {
	if c.Max < 1 || c.Per <= 0 {
		return c, errors.New("limiter: expected a positive count and period")
	}
	if c.IPMax == 0 {
		c.IPMax = DefaultIPFactor * c.Max
	}
	if c.SlowAfter == 0 {
		c.SlowAfter = c.Max
	}
	if c.Delay == 0 {
		c.Delay = DefaultDelay
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.IPMax < c.Max || c.SlowAfter < 0 || c.Delay < 0 || c.MaxDelay < c.Delay {
		return c, errors.New("limiter: ip_max must be at least max, and delays must not be negative or above their cap")
	}
	return c, nil
}

// SlowdownFor is the wait of an attempt on a login that has failures
// failures in its window, under c (with defaults): 0 below SlowAfter, then
// Delay doubling per failure, capped at MaxDelay. Implementations use it so
// that they all slow down alike.
func (c Config) SlowdownFor(failures int) time.Duration {
	if failures < c.SlowAfter || c.Delay <= 0 {
		return 0
	}
	d := c.Delay
	for i := c.SlowAfter; i < failures && d < c.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxDelay)
}
