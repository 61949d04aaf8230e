package jwtauth

import (
	"crypto/sha256"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// maxLimiterEntries bounds each table of the login limiter. Expired windows
// are pruned when a table is full; if it is still full, an arbitrary entry
// makes room, so memory stays bounded under a flood of addresses.
const maxLimiterEntries = 100_000

// loginLimiter counts failed logins per client address and per login in
// fixed windows: after max failures within per of the first, every attempt
// is refused with 429 until the window ends, even one with the right
// password, so the answer never tells a guess apart. It lives in the pooled
// issuer state, so a config reload does not reset it.
type loginLimiter struct {
	mu     sync.Mutex
	ips    map[string]*limitWindow
	logins map[[32]byte]*limitWindow
}

type limitWindow struct {
	start time.Time
	n     int
}

// loginKey keys a login by its hash, so long logins cost no memory.
func loginKey(login string) [32]byte { return sha256.Sum256([]byte(login)) }

// attempt reserves a login attempt for ip and login, counting it as a
// failure until succeeded says otherwise. When either is over the limit, it
// reserves nothing and returns how long to wait. Reserving before the
// password check makes the limit hold for concurrent attempts too: at most
// max of them run per period, however many arrive at once.
func (l *loginLimiter) attempt(ip string, login [32]byte, max int, per time.Duration, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, w := range []*limitWindow{l.ips[ip], l.logins[login]} {
		if w == nil || w.n < max {
			continue
		}
		if left := w.start.Add(per).Sub(now); left > wait {
			wait = left
		}
	}
	if wait > 0 {
		return wait, false
	}
	if l.ips == nil {
		l.ips = make(map[string]*limitWindow)
		l.logins = make(map[[32]byte]*limitWindow)
	}
	countFailure(l.ips, ip, per, now)
	countFailure(l.logins, login, per, now)
	return 0, true
}

// succeeded takes back the attempt of a login that succeeded, and forgets
// the login's failures. The address keeps its other failures: a valid
// account must not reset the count of an address that guesses at others.
func (l *loginLimiter) succeeded(ip string, login [32]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.logins, login)
	if w := l.ips[ip]; w != nil && w.n > 0 {
		w.n--
	}
}

func countFailure[K comparable](m map[K]*limitWindow, k K, per time.Duration, now time.Time) {
	w := m[k]
	if w != nil && now.Before(w.start.Add(per)) {
		w.n++
		return
	}
	if w == nil && len(m) >= maxLimiterEntries {
		for key, v := range m {
			if !now.Before(v.start.Add(per)) {
				delete(m, key)
			}
		}
		for key := range m {
			if len(m) < maxLimiterEntries {
				break
			}
			delete(m, key)
		}
	}
	m[k] = &limitWindow{start: now, n: 1}
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
