package jwtauth

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
)

// limiterPool keeps each issuer's login limiter across config reloads,
// keyed by store_dir and the limit: a reload that keeps login_limit keeps
// the counts, one that changes it starts afresh.
var limiterPool = caddy.NewUsagePool()

// pooledLimiter is a limiter in limiterPool.
type pooledLimiter struct{ limiter.Limiter }

// Destruct implements caddy.Destructor; an in-memory limiter holds nothing
// to release.
func (pooledLimiter) Destruct() error { return nil }

// limiterConfig is the limiter model of a login_limit; see package limiter.
func limiterConfig(max int, per time.Duration) limiter.Config {
	return limiter.Config{Max: max, Per: per}
}

// loadLimiter gets the issuer's limiter from limiterPool.
func (is *Issuer) loadLimiter() error {
	cfg := limiterConfig(is.limitMax, is.limitPer)
	key := fmt.Sprintf("%s\x00%d\x00%d", is.storeDir, cfg.Max, cfg.Per)
	val, _, err := limiterPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		m, err := limiter.NewMemory(cfg, 0)
		if err != nil {
			return nil, err
		}
		return pooledLimiter{m}, nil
	})
	if err != nil {
		return fmt.Errorf("login_limit: %w", err)
	}
	is.limiter, is.limiterKey = val.(pooledLimiter).Limiter, key
	return nil
}

// loginLimiter returns the login limiter of run: the one its store shares
// between nodes, else this process's own.
func (is *Issuer) loginLimiter(run *issuerRun) limiter.Limiter {
	if run.limiter != nil {
		return run.limiter
	}
	return is.limiter
}

// releaseLimiter gives the limiter back to limiterPool.
func (is *Issuer) releaseLimiter() {
	if is.limiterKey != "" {
		_, _ = limiterPool.Delete(is.limiterKey)
		is.limiterKey = ""
	}
}

// waitCtx waits d, or until ctx is done (the client went away), which it
// returns.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// clientAddr is the key of the client for login limits: the client IP that
// Caddy resolved (through trusted_proxies only; X-Forwarded-For from an
// untrusted peer is ignored), with IPv6 addresses reduced to their /64, since
// one client commonly holds a whole /64.
func clientAddr(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip = r.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
