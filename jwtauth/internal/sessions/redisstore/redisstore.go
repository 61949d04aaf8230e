package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// DefaultTimeout bounds each Redis command when Config.Timeout is zero.
const DefaultTimeout = 500 * time.Millisecond

// sweepBatch bounds the index entries one Sweep prunes.
const sweepBatch = 10000

// DefaultKeyPrefix starts every key when Config.KeyPrefix is empty.
const DefaultKeyPrefix = "jwtauth"

// Config says where the Redis of an issuer is and how to reach it.
type Config struct {
	// Addrs are host:port or unix/PATH addresses. With Sentinel they are
	// the sentinels; several addresses without Sentinel are the seed
	// nodes of a Redis Cluster. Required.
	Addrs []string
	// Username and Password authenticate to Redis (to the master with
	// Sentinel; the sentinels themselves are reached without credentials).
	Username, Password string
	// DB selects the database. Default: 0. Redis Cluster has only 0.
	DB int
	// TLS, when set, wraps every connection in TLS with this config. An
	// empty ServerName defaults to the address's host.
	TLS *tls.Config
	// Sentinel is the master name that the sentinels in Addrs watch; empty
	// for a plain Redis or a Cluster.
	Sentinel string
	// KeyPrefix starts every key, in the hash tag {KeyPrefix:Issuer}.
	// Default: jwtauth.
	KeyPrefix string
	// Issuer names the issuer whose sessions these are; issuers sharing
	// one Redis are kept apart by it. Required.
	Issuer string
	// Timeout bounds each command, from the dial to the answer.
	// Default: 500ms.
	Timeout time.Duration
}

// Store is the session table of one issuer in Redis. It implements
// sessions.Store and sessions.Feed.
type Store struct {
	client  redis.UniversalClient
	opts    redis.UniversalOptions // for the feed's own connection
	base    string                 // {prefix:issuer}
	timeout time.Duration

	// retain is the Policy.Retain (ms) of the last operation that carried
	// a policy, used to trim the stream when a revocation comes without
	// one (RevokeSID, RevokeLogin); -1 until then.
	retain atomic.Int64

	mu    sync.Mutex
	epoch string // the epoch value last seen, "" before the first
}

// New returns a Store for cfg. It does no network I/O: connections are made
// by the first command (see Ping).
func New(cfg Config) (*Store, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redis: no address")
	}
	for _, a := range cfg.Addrs {
		if p, ok := strings.CutPrefix(a, "unix/"); ok {
			if p == "" {
				return nil, fmt.Errorf("redis: address %q: no socket path", a)
			}
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("redis: address %q: want host:port or unix/PATH: %v", a, err)
		}
	}
	if cfg.Issuer == "" {
		return nil, errors.New("redis: no issuer name")
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	for _, s := range []string{cfg.KeyPrefix, cfg.Issuer} {
		if strings.ContainsAny(s, "{}") {
			return nil, fmt.Errorf("redis: key prefix and issuer name must not contain { or }: %q", s)
		}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("redis: negative timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.DB < 0 {
		return nil, fmt.Errorf("redis: negative db %d", cfg.DB)
	}
	if cfg.Sentinel == "" && len(cfg.Addrs) > 1 && cfg.DB != 0 {
		return nil, errors.New("redis: several addresses without sentinel are a Redis Cluster, which has only db 0")
	}
	s := &Store{
		opts: redis.UniversalOptions{
			Addrs:      slices.Clone(cfg.Addrs),
			MasterName: cfg.Sentinel,
			Username:   cfg.Username,
			Password:   cfg.Password,
			DB:         cfg.DB,
			Dialer:     dialer(cfg.Timeout, cfg.TLS),
			// RESP2 is spoken by every Redis and Valkey we support; no
			// identity or push handshakes that old servers refuse.
			Protocol:        2,
			DisableIdentity: true,
			// A command that may have run is never sent twice: the caller
			// gets ErrUnavailable and decides (a rotation retried within
			// grace gets its successor again).
			MaxRetries:            -1,
			DialerRetries:         1,
			DialTimeout:           cfg.Timeout,
			ReadTimeout:           cfg.Timeout,
			WriteTimeout:          cfg.Timeout,
			PoolTimeout:           cfg.Timeout,
			ContextTimeoutEnabled: true,
		},
		base:    "{" + cfg.KeyPrefix + ":" + cfg.Issuer + "}",
		timeout: cfg.Timeout,
	}
	s.client = redis.NewUniversalClient(&s.opts)
	s.retain.Store(-1)
	return s, nil
}

// dialer connects to host:port over TCP or to unix/PATH, then runs the TLS
// handshake if conf is set, all within timeout.
func dialer(timeout time.Duration, conf *tls.Config) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p, ok := strings.CutPrefix(addr, "unix/"); ok {
			network, addr = "unix", p
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		d := net.Dialer{KeepAlive: 30 * time.Second}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || conf == nil {
			return c, err
		}
		tc := conf.Clone()
		if tc.ServerName == "" && network != "unix" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				tc.ServerName = host
			}
		}
		t := tls.Client(c, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, err
		}
		return t, nil
	}
}

// Base is the hash tag that starts every key of this issuer.
func (s *Store) Base() string { return s.base }

func unavailable(err error) error {
	return fmt.Errorf("%w: redis: %w", sessions.ErrUnavailable, err)
}

// Ping checks that Redis answers and records its dataset's epoch (see
// Follow). The Caddy side calls it when the app starts.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	e, err := s.readEpoch(ctx, s.client)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.epoch == "" {
		s.epoch = e
	}
	s.mu.Unlock()
	return nil
}

// readEpoch returns the dataset's epoch, setting a new one if there is
// none.
func (s *Store) readEpoch(ctx context.Context, c redis.Scripter) (string, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	e, err := epochScript.Run(ctx, c, []string{s.base + ":epoch"},
		strconv.FormatInt(time.Now().UnixMilli(), 10)+"-"+hex.EncodeToString(b)).Text()
	if err != nil {
		return "", unavailable(err)
	}
	return e, nil
}

// Close closes the connections. Operations after Close fail with
// ErrUnavailable.
func (s *Store) Close() error { return s.client.Close() }

// ns formats a time as the scripts store it: Unix nanoseconds, 20 digits.
func ns(t time.Time) string {
	n := t.UnixNano()
	if n < 0 {
		n = 0
	}
	var b [20]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[:])
}

func micros(d time.Duration) int64 { return d.Microseconds() }

// args returns the scripts' common arguments for p at now, then extra.
func (s *Store) args(p *sessions.Policy, now time.Time, extra ...any) []any {
	a := make([]any, 0, 10+len(extra))
	a = append(a, ns(now), now.UnixMicro())
	if p == nil {
		a = append(a, "", "", "", 0, 0, 0, 0, s.retain.Load())
	} else {
		retain := p.Retain.Milliseconds()
		s.retain.Store(retain)
		a = append(a, ns(now.Add(-p.RefreshTTL)), ns(now.Add(-p.IdleTimeout)), ns(now.Add(-p.Grace)),
			micros(p.RefreshTTL), micros(p.IdleTimeout), micros(p.Grace), p.MaxPerLogin, retain)
	}
	return append(a, extra...)
}

// run runs one script within the timeout.
func (s *Store) run(ctx context.Context, sc *redis.Script, args []any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := sc.Run(ctx, s.client, []string{s.base}, args...).Slice()
	if err != nil {
		return nil, unavailable(err)
	}
	return v, nil
}

func hashHex(tok string) string {
	h := sessions.HashToken(tok)
	return hex.EncodeToString(h[:])
}

// Create implements sessions.Store.
func (s *Store) Create(ctx context.Context, p sessions.Policy, n sessions.New, now time.Time) (sessions.Session, string, []sessions.Revocation, error) {
	tok, sid, err := sessions.NewFamily()
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	v, err := s.run(ctx, createScript, s.args(&p, now, sid, n.Login, n.UserID, n.FP, hashHex(tok)))
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	if len(v) != 2 {
		return sessions.Session{}, "", nil, badReply(v)
	}
	ss, err := parseSession(v[0])
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	revs, err := parseRevocations(v[1])
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	return ss, tok, revs, nil
}

// Find implements sessions.Store.
func (s *Store) Find(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Session, []sessions.Revocation, error) {
	return s.find(ctx, p, tok, now, "0")
}

// Use implements sessions.Store.
func (s *Store) Use(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Session, []sessions.Revocation, error) {
	return s.find(ctx, p, tok, now, "1")
}

func (s *Store) find(ctx context.Context, p sessions.Policy, tok string, now time.Time, use string) (sessions.Session, []sessions.Revocation, error) {
	if !sessions.ValidToken(tok) {
		return sessions.Session{}, nil, sessions.ErrUnknown
	}
	v, err := s.run(ctx, findScript, s.args(&p, now, hashHex(tok), use))
	if err != nil {
		return sessions.Session{}, nil, err
	}
	st, revs, err := status(v)
	if err != nil {
		return sessions.Session{}, revs, err
	}
	if st != "ok" || len(v) != 2 {
		return sessions.Session{}, nil, badReply(v)
	}
	ss, err := parseSession(v[1])
	return ss, nil, err
}

// status reads a script's answer: the refusals become their errors, with
// the revocation of a reuse.
func status(v []any) (string, []sessions.Revocation, error) {
	if len(v) == 0 {
		return "", nil, badReply(v)
	}
	st, _ := v[0].(string)
	switch st {
	case "unknown", "lost":
		return st, nil, sessions.ErrUnknown
	case "ended":
		return st, nil, sessions.ErrEnded
	case "mismatch":
		return st, nil, sessions.ErrMismatch
	case "reused":
		if len(v) != 2 {
			return st, nil, badReply(v)
		}
		r, err := parseRevocation(v[1])
		if err != nil {
			return st, nil, err
		}
		return st, []sessions.Revocation{r}, sessions.ErrReused
	}
	return st, nil, nil
}

// Rotate implements sessions.Store.
func (s *Store) Rotate(ctx context.Context, p sessions.Policy, tok, sid string, now time.Time) (sessions.Session, string, []sessions.Revocation, error) {
	if !sessions.ValidToken(tok) {
		return sessions.Session{}, "", nil, sessions.ErrUnknown
	}
	next, err := sessions.NewToken()
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	sealed, err := sessions.SealSuccessor(tok, next, sid)
	if err != nil {
		return sessions.Session{}, "", nil, fmt.Errorf("%w: sealing the successor: %w", sessions.ErrUnavailable, err)
	}
	v, err := s.run(ctx, rotateScript, s.args(&p, now, hashHex(tok), sid, hashHex(next), sealed))
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	st, revs, err := status(v)
	if err != nil {
		return sessions.Session{}, "", revs, err
	}
	switch {
	case st == "rotated" && len(v) == 2:
		ss, err := parseSession(v[1])
		if err != nil {
			return sessions.Session{}, "", nil, err
		}
		return ss, next, nil, nil
	case st == "again" && len(v) == 3:
		ss, err := parseSession(v[1])
		if err != nil {
			return sessions.Session{}, "", nil, err
		}
		b, _ := v[2].(string)
		prev, err := sessions.OpenSuccessor(tok, []byte(b), ss.SID)
		if err != nil {
			return sessions.Session{}, "", nil, fmt.Errorf("%w: opening the successor: %w", sessions.ErrUnavailable, err)
		}
		return ss, prev, nil, nil
	}
	return sessions.Session{}, "", nil, badReply(v)
}

// Revoke implements sessions.Store.
func (s *Store) Revoke(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Revocation, bool, error) {
	if !sessions.ValidToken(tok) {
		return sessions.Revocation{}, false, nil
	}
	return s.revokeOne(ctx, revokeScript, s.args(&p, now, hashHex(tok)))
}

// RevokeSID implements sessions.Store.
func (s *Store) RevokeSID(ctx context.Context, sid string, reason sessions.Reason, now time.Time) (sessions.Revocation, bool, error) {
	return s.revokeOne(ctx, revokeSIDScript, s.args(nil, now, sid, string(reason)))
}

func (s *Store) revokeOne(ctx context.Context, sc *redis.Script, args []any) (sessions.Revocation, bool, error) {
	v, err := s.run(ctx, sc, args)
	if err != nil {
		return sessions.Revocation{}, false, err
	}
	switch st, _ := v[0].(string); {
	case st == "unknown":
		return sessions.Revocation{}, false, nil
	case st == "revoked" && len(v) == 2:
		r, err := parseRevocation(v[1])
		return r, err == nil, err
	}
	return sessions.Revocation{}, false, badReply(v)
}

// RevokeLogin implements sessions.Store.
func (s *Store) RevokeLogin(ctx context.Context, login string, reason sessions.Reason, now time.Time) ([]sessions.Revocation, error) {
	v, err := s.run(ctx, revokeLoginScript, s.args(nil, now, login, string(reason)))
	if err != nil {
		return nil, err
	}
	return parseRevocations(v)
}

// Get implements sessions.Store.
func (s *Store) Get(ctx context.Context, p sessions.Policy, sid string, now time.Time) (sessions.Session, bool, error) {
	v, err := s.run(ctx, getScript, s.args(&p, now, sid))
	if err != nil || len(v) == 0 {
		return sessions.Session{}, false, err
	}
	ss, err := parseSession(v)
	return ss, err == nil, err
}

// List implements sessions.Store.
func (s *Store) List(ctx context.Context, p sessions.Policy, login string, now time.Time) ([]sessions.Session, error) {
	all := ""
	if login == "" {
		all = "all"
	}
	v, err := s.run(ctx, listScript, s.args(&p, now, login, all))
	if err != nil {
		return nil, err
	}
	out := make([]sessions.Session, 0, len(v))
	for _, e := range v {
		ss, err := parseSession(e)
		if err != nil {
			return nil, err
		}
		out = append(out, ss)
	}
	slices.SortFunc(out, func(a, b sessions.Session) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.SID, b.SID)
	})
	return out, nil
}

// Count implements sessions.Store, in O(log n) plus the sessions older
// than p.RefreshTTL that Redis has not expired yet. A session whose record
// Redis expired under a shorter policy than p, and that Sweep or a login
// has not pruned from the indexes yet, may still be counted.
func (s *Store) Count(ctx context.Context, p sessions.Policy, now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n, err := countScript.Run(ctx, s.client, []string{s.base}, s.args(&p, now)...).Int()
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// Sweep implements sessions.Store: Redis expires sessions itself, so it
// only prunes the index of sessions that have surely expired, and trims
// the revocation stream. It returns 0.
func (s *Store) Sweep(ctx context.Context, p sessions.Policy, now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := sweepScript.Run(ctx, s.client, []string{s.base}, s.args(&p, now, sweepBatch)...).Err(); err != nil {
		return 0, unavailable(err)
	}
	return 0, nil
}

func badReply(v any) error {
	return fmt.Errorf("%w: redis: unexpected script answer of type %T", sessions.ErrUnavailable, v)
}

func parseTime(v any) (time.Time, bool) {
	str, _ := v.(string)
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// parseSession reads a session tuple {sid, login, uid, fp, c, u, g}.
func parseSession(v any) (sessions.Session, error) {
	f, ok := v.([]any)
	if !ok || len(f) != 7 {
		return sessions.Session{}, badReply(v)
	}
	var str [4]string
	for i := range str {
		if str[i], ok = f[i].(string); !ok {
			return sessions.Session{}, badReply(v)
		}
	}
	c, ok1 := parseTime(f[4])
	u, ok2 := parseTime(f[5])
	gs, _ := f[6].(string)
	g, err := strconv.ParseUint(gs, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return sessions.Session{}, badReply(v)
	}
	return sessions.Session{SID: str[0], Login: str[1], UserID: str[2], FP: str[3], Created: c, LastUsed: u, Gen: g}, nil
}

// parseRevocation reads a revocation tuple {sid, login, reason, at}.
func parseRevocation(v any) (sessions.Revocation, error) {
	f, ok := v.([]any)
	if !ok || len(f) != 4 {
		return sessions.Revocation{}, badReply(v)
	}
	sid, ok1 := f[0].(string)
	login, ok2 := f[1].(string)
	reason, ok3 := f[2].(string)
	at, ok4 := parseTime(f[3])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return sessions.Revocation{}, badReply(v)
	}
	return sessions.Revocation{SID: sid, Login: login, Reason: sessions.Reason(reason), At: at}, nil
}

func parseRevocations(v any) ([]sessions.Revocation, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, badReply(v)
	}
	var out []sessions.Revocation
	for _, e := range l {
		r, err := parseRevocation(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

var (
	_ sessions.Store = (*Store)(nil)
	_ sessions.Feed  = (*Store)(nil)
)
