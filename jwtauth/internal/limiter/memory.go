package limiter

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultMaxEntries bounds each table of a Memory limiter.
const DefaultMaxEntries = 100_000

// Memory is the in-process Limiter. Its memory is bounded: each table (pairs,
// IPs, logins) holds at most maxEntries windows; when one is full, expired
// windows are pruned, and if it is still full, arbitrary entries make room,
// so a flood of addresses or logins cannot grow it. Keys are SHA-256
// hashes, so long logins cost no memory.
type Memory struct {
	cfg        Config
	maxEntries int

	mu     sync.Mutex
	pairs  map[key]*window
	ips    map[key]*window
	logins map[key]*window
}

type key [32]byte

type window struct {
	start time.Time
	n     int
}

// NewMemory returns a Memory limiter for cfg; maxEntries 0 means
// DefaultMaxEntries.
func NewMemory(cfg Config, maxEntries int) (*Memory, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	return &Memory{
		cfg: cfg, maxEntries: maxEntries,
		pairs:  make(map[key]*window),
		ips:    make(map[key]*window),
		logins: make(map[key]*window),
	}, nil
}

// Keys are domain-separated so that an IP never collides with a login.
func ipKey(ip string) key       { return sha256.Sum256([]byte("ip\x00" + ip)) }
func loginKey(login string) key { return sha256.Sum256([]byte("login\x00" + login)) }
func pairKey(ip, login string) key {
	return sha256.Sum256([]byte("pair\x00" + ip + "\x00" + login))
}

// count returns the failures w holds at now (0 once its window ended).
func (m *Memory) count(w *window, now time.Time) int {
	if w == nil || !now.Before(w.start.Add(m.cfg.Per)) {
		return 0
	}
	return w.n
}

// Before implements Limiter.
func (m *Memory) Before(_ context.Context, ip, login string, now time.Time) (Decision, error) {
	pk, ik, lk := pairKey(ip, login), ipKey(ip), loginKey(login)
	m.mu.Lock()
	defer m.mu.Unlock()
	var wait time.Duration
	for _, c := range []struct {
		w   *window
		max int
	}{{m.pairs[pk], m.cfg.Max}, {m.ips[ik], m.cfg.IPMax}} {
		if m.count(c.w, now) >= c.max {
			wait = max(wait, c.w.start.Add(m.cfg.Per).Sub(now))
		}
	}
	if wait > 0 {
		return Decision{RetryAfter: wait}, nil
	}
	m.add(m.pairs, pk, now)
	m.add(m.ips, ik, now)
	return Decision{OK: true, Delay: m.cfg.SlowdownFor(m.count(m.logins[lk], now))}, nil
}

// Failed implements Limiter.
func (m *Memory) Failed(_ context.Context, _, login string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(m.logins, loginKey(login), now)
	return nil
}

// Succeeded implements Limiter.
func (m *Memory) Succeeded(_ context.Context, ip, login string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pairs, pairKey(ip, login))
	if w := m.ips[ipKey(ip)]; m.count(w, now) > 0 {
		w.n--
	}
	return nil
}

// add counts one failure under k, starting a new window if the last one
// ended, and keeps the table bounded.
func (m *Memory) add(t map[key]*window, k key, now time.Time) {
	w := t[k]
	if w != nil && now.Before(w.start.Add(m.cfg.Per)) {
		w.n++
		return
	}
	if w == nil && len(t) >= m.maxEntries {
		for kk, v := range t {
			if m.count(v, now) == 0 {
				delete(t, kk)
			}
		}
		for kk := range t {
			if len(t) < m.maxEntries {
				break
			}
			delete(t, kk)
		}
	}
	t[k] = &window{start: now, n: 1}
}

var _ Limiter = (*Memory)(nil)

// Sizes returns the number of entries of each table, for tests.
func (m *Memory) Sizes() (pairs, ips, logins int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pairs), len(m.ips), len(m.logins)
}
