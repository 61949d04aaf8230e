package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// Limiter is the login limiter of an issuer, shared by every node through
// the issuer's Redis (limiter.Limiter). It follows the model of package
// limiter: fixed windows of Per from their first failure, counted with
// HINCRBY in a hash per key and expired with PEXPIRE when the window
// starts; each call is one script. Keys hold SHA-256 hashes of the IP and
// login, under the issuer's hash tag:
//
//	B:lim:p:HASH  the (IP, login) pair     B:lim:i:HASH  the IP
//	B:lim:l:HASH  the login (slowdown)
//
// Each hash has s (the window's start, 20-digit Unix nanoseconds) and n.
type Limiter struct {
	s   *Store
	cfg limiter.Config
}

// Limiter returns the store's login limiter under cfg.
func (s *Store) Limiter(cfg limiter.Config) (*Limiter, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	return &Limiter{s: s, cfg: cfg}, nil
}

// limPrelude: ARGV 1 now (ns), 2 now - Per (ns), 3 Per (ms, rounded up).
const limPrelude = `
local now, minS, per_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local function count(k)
	local v = redis.call('HMGET', k, 's', 'n')
	if v[1] and v[1] > minS then return tonumber(v[2]), v[1] end
	return 0, nil
end
local function add(k)
	if count(k) > 0 then
		redis.call('HINCRBY', k, 'n', 1)
	else
		redis.call('HSET', k, 's', now, 'n', 1)
		redis.call('PEXPIRE', k, per_ms)
	end
end
`

// limBeforeScript: KEYS pair, ip, login; ARGV 4 Max, 5 IPMax. It returns
// {0, starts of the windows that refuse} or {1, the login's failures}.
var limBeforeScript = redis.NewScript(limPrelude + `
local pn, ps = count(KEYS[1])
local inn, is = count(KEYS[2])
local refuse = {}
if pn >= tonumber(ARGV[4]) then refuse[#refuse + 1] = ps end
if inn >= tonumber(ARGV[5]) then refuse[#refuse + 1] = is end
if #refuse > 0 then return {0, refuse} end
add(KEYS[1])
add(KEYS[2])
local ln = count(KEYS[3])
return {1, ln}
`)

// limFailedScript: KEYS login.
var limFailedScript = redis.NewScript(limPrelude + `
add(KEYS[1])
return 1
`)

// limSucceededScript: KEYS pair, ip.
var limSucceededScript = redis.NewScript(limPrelude + `
redis.call('DEL', KEYS[1])
if count(KEYS[2]) > 0 then redis.call('HINCRBY', KEYS[2], 'n', -1) end
return 1
`)

// limKey hashes the parts of a key, each length-prefixed so that no two
// different (ip, login) pairs share one.
func (l *Limiter) limKey(kind string, parts ...string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range append([]string{kind}, parts...) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	return l.s.base + ":lim:" + kind + ":" + hex.EncodeToString(h.Sum(nil))
}

func (l *Limiter) args(now time.Time, extra ...any) []any {
	ms := int64((l.cfg.Per + time.Millisecond - 1) / time.Millisecond)
	return append([]any{ns(now), ns(now.Add(-l.cfg.Per)), ms}, extra...)
}

func (l *Limiter) run(ctx context.Context, sc *redis.Script, keys []string, args []any) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, l.s.timeout)
	defer cancel()
	v, err := sc.Run(ctx, l.s.client, keys, args...).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	return v, nil
}

// Before implements limiter.Limiter.
func (l *Limiter) Before(ctx context.Context, ip, login string, now time.Time) (limiter.Decision, error) {
	keys := []string{l.limKey("p", ip, login), l.limKey("i", ip), l.limKey("l", login)}
	v, err := l.run(ctx, limBeforeScript, keys, l.args(now, l.cfg.Max, l.cfg.IPMax))
	if err != nil {
		return limiter.Decision{}, err
	}
	r, ok := v.([]any)
	if !ok || len(r) != 2 {
		return limiter.Decision{}, badReply(v)
	}
	if ok, _ := r[0].(int64); ok == 1 {
		n, _ := r[1].(int64)
		return limiter.Decision{OK: true, Delay: l.cfg.SlowdownFor(int(n))}, nil
	}
	starts, _ := r[1].([]any)
	var wait time.Duration
	for _, s := range starts {
		str, _ := s.(string)
		n, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return limiter.Decision{}, badReply(v)
		}
		wait = max(wait, time.Unix(0, n).Add(l.cfg.Per).Sub(now))
	}
	if wait <= 0 {
		return limiter.Decision{}, fmt.Errorf("%w: redis: limiter refused without a window", sessions.ErrUnavailable)
	}
	return limiter.Decision{RetryAfter: wait}, nil
}

// Failed implements limiter.Limiter.
func (l *Limiter) Failed(ctx context.Context, _, login string, now time.Time) error {
	_, err := l.run(ctx, limFailedScript, []string{l.limKey("l", login)}, l.args(now))
	return err
}

// Succeeded implements limiter.Limiter.
func (l *Limiter) Succeeded(ctx context.Context, ip, login string, now time.Time) error {
	_, err := l.run(ctx, limSucceededScript, []string{l.limKey("p", ip, login), l.limKey("i", ip)}, l.args(now))
	return err
}

var _ limiter.Limiter = (*Limiter)(nil)
