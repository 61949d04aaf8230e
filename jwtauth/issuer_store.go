package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// SessionStore chooses where an issuer keeps its sessions. Without it (the
// default), they live in an embedded bbolt database, sessions.db in
// store_dir, which one Caddy process at a time may open. With Redis, several
// Caddy nodes share the issuer's sessions and revocations.
type SessionStore struct {
	// A Redis (or Valkey) server, or a Sentinel-managed group, shared by
	// every node that serves this issuer. The issuer then requires
	// key_file, so that every node signs with the same key. Default: none
	// (the embedded store).
	Redis *RedisStore `json:"redis,omitempty"`
}

// RedisStore configures the Redis session store (Redis 6.2+ or Valkey).
// Each issuer operation is one Lua script, so atomic and one round trip;
// only SHA-256 hashes of refresh tokens are stored.
type RedisStore struct {
	// Server addresses, HOST:PORT or unix/PATH for a Unix socket. With
	// sentinel, these are the Sentinels'; several without sentinel are
	// the seed nodes of a Redis Cluster. Supports {env.*} placeholders.
	// Required.
	Addresses []string `json:"addresses,omitempty"`

	// ACL user name. Supports {env.*} placeholders. Default: none.
	Username string `json:"username,omitempty"`

	// Password (AUTH). Supports {env.*} and {file.*} placeholders, which
	// must resolve; keep it out of the config file. Never logged.
	// Default: none.
	Password string `json:"password,omitempty"`

	// Database number. Default: 0.
	DB int `json:"db,omitempty"`

	// Connect with TLS. Default: plain TCP (or the Unix socket).
	TLS *RedisTLS `json:"tls,omitempty"`

	// Name of the master that the Sentinels at addresses monitor; the
	// client follows failovers. Default: none (addresses is the server).
	Sentinel string `json:"sentinel,omitempty"`

	// Prefix of every key. The issuer's keys are {PREFIX:ISSUER}:..., one
	// hash tag, so its scripts stay atomic on Redis Cluster too.
	// Default: jwtauth.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Bound of each command, connection included: past it, the issuer's
	// endpoints answer 503. Default: 500ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// PEM file of the certificate authorities to trust. Default: the
	// system's roots.
	CAFile string `json:"ca_file,omitempty"`
	// Name to verify the server certificate against. Default: the host of
	// the address.
	ServerName string `json:"server_name,omitempty"`
}

const (
	defaultRedisPrefix  = "jwtauth"
	defaultRedisTimeout = 500 * time.Millisecond
	// sessionsDBFile is the embedded store's database in store_dir.
	sessionsDBFile = "sessions.db"
	// sweepInterval is how often the embedded store deletes dead sessions.
	sweepInterval = time.Minute
	// maxSessionsPerLogin bounds the sessions one user holds: a login
	// beyond it ends the user's oldest session, so that valid credentials
	// cannot grow the store without limit.
	maxSessionsPerLogin = 100
	// rotationGrace is how long the token a rotation just replaced still
	// refreshes, and a retried rotation with it gets the same successor.
	rotationGrace = 2 * time.Second
)

// redisOptions is a RedisStore with placeholders resolved and defaults set.
type redisOptions struct {
	RedisStore
	timeout time.Duration
}

// setDefaults resolves placeholders and fills in defaults.
func (rs *RedisStore) setDefaults(repl *caddy.Replacer) (*redisOptions, error) {
	o := &redisOptions{RedisStore: *rs}
	o.Addresses = append([]string(nil), rs.Addresses...)
	if rs.TLS != nil {
		t := *rs.TLS
		o.TLS = &t
	}
	fields := []*string{&o.Username, &o.Password, &o.Sentinel, &o.KeyPrefix}
	for i := range o.Addresses {
		fields = append(fields, &o.Addresses[i])
	}
	if o.TLS != nil {
		fields = append(fields, &o.TLS.CAFile, &o.TLS.ServerName)
	}
	for _, p := range fields {
		s, err := repl.ReplaceOrErr(*p, true, true)
		if err != nil {
			return nil, fmt.Errorf("store redis: %w", err)
		}
		*p = s
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = defaultRedisPrefix
	}
	o.timeout = time.Duration(o.Timeout)
	if o.timeout == 0 {
		o.timeout = defaultRedisTimeout
	}
	return o, nil
}

// validate checks the options; it opens nothing.
func (o *redisOptions) validate() error {
	if len(o.Addresses) == 0 {
		return errors.New("store redis: at least one address is required")
	}
	for _, a := range o.Addresses {
		if path, ok := strings.CutPrefix(a, "unix/"); ok {
			if path == "" {
				return fmt.Errorf("store redis: address %q: a socket path is required", a)
			}
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return fmt.Errorf("store redis: address %q: expected HOST:PORT or unix/PATH", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("store redis: address %q: bad port", a)
		}
	}
	if o.Sentinel == "" && len(o.Addresses) > 1 && o.DB != 0 {
		return errors.New("store redis: several addresses without sentinel are a Redis Cluster, which has only db 0")
	}
	if o.DB < 0 {
		return errors.New("store redis: db must not be negative")
	}
	if o.timeout < 0 {
		return errors.New("store redis: timeout must not be negative")
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return fmt.Errorf("store redis: key_prefix %q must not contain braces (they delimit the hash tag)", o.KeyPrefix)
	}
	if o.TLS != nil {
		if _, err := o.TLS.config(); err != nil {
			return err
		}
	}
	return nil
}

// poolKey names the shared store in sharedStores: the Redis deployment,
// prefix and issuer, never the password.
func (o *redisOptions) poolKey(issuer string) string {
	return "redis\x00" + strings.Join(o.Addresses, ",") + "\x00" + strconv.Itoa(o.DB) + "\x00" + o.Sentinel + "\x00" + o.KeyPrefix + "\x00" + issuer
}

// sharedStores holds the open session stores across config reloads, keyed
// by the bbolt file or the Redis deployment, prefix and issuer: a reload,
// whose new config starts before the old one stops, shares the open store
// instead of waiting on bbolt's file lock.
var sharedStores = caddy.NewUsagePool()

// sharedStore is an open session store with what lives as long as it: the
// deny-list of revoked sessions, the feed follower or the sweeper, and the
// login limiter. It holds no caddy.Context: its goroutines run on their own
// context, cancelled in Destruct when the last config using it is gone.
type sharedStore struct {
	store sessions.Store
	deny  denyList
	// feed is set when the store is shared by several nodes: revocations
	// then arrive through its Feed, and a silent feed makes validators
	// with revoke_access_tokens answer 503.
	feed bool
	// heard is when the feed last answered, Unix nanoseconds.
	heard atomic.Int64
	// policy is the policy of the config that started last; the sweeper
	// applies it.
	policy atomic.Pointer[sessions.Policy]
	// fps are the fingerprints (login -> fp) of the enabled users of the
	// config that started last, to find the users a reload changed.
	fps atomic.Pointer[map[string]string]

	issuer string
	logger *zap.Logger
	now    func() time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

// openShared opens the store that is configures, and starts its
// background work: the feed follower for Redis, the sweeper for bbolt.
func (is *Issuer) openShared() (*sharedStore, error) {
	ss := &sharedStore{issuer: is.name, logger: is.logger, now: is.now, done: make(chan struct{})}
	p := is.policy()
	ss.policy.Store(&p)
	ctx, cancel := context.WithCancel(context.Background())
	ss.cancel = cancel
	var err error
	if is.redis != nil {
		ss.store, err = openRedisStore(is.redis, is.name)
	} else {
		if err = os.MkdirAll(is.storeDir, 0o700); err == nil {
			ss.store, err = openBoltStore(filepath.Join(is.storeDir, sessionsDBFile))
		}
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if f, ok := ss.store.(sessions.Feed); ok {
		ss.feed = true
		interval := max(is.maxStaleness/4, 10*time.Millisecond)
		go ss.follow(ctx, f, p.Retain, interval)
	} else {
		// Revocations made before this process started are unknown
		// here: refuse the access tokens issued before now, which are
		// the only ones that may belong to them, until they expire.
		ss.deny.refuseIssuedBefore(ss.now(), ss.now().Add(p.Retain))
		go ss.sweep(ctx)
	}
	return ss, nil
}

// Destruct stops the background work and closes the store.
func (ss *sharedStore) Destruct() error {
	ss.cancel()
	<-ss.done
	return ss.store.Close()
}

// sweep deletes dead sessions of the embedded store periodically.
func (ss *sharedStore) sweep(ctx context.Context) {
	defer close(ss.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := ss.store.Sweep(ctx, *ss.policy.Load(), ss.now()); err != nil && ctx.Err() == nil {
				ss.logger.Warn("deleting ended sessions", zap.Error(err))
			}
		}
	}
}

// follow reads the store's revocation feed into the deny-list until ctx
// ends, starting over (with backoff) if the feed ever returns early.
func (ss *sharedStore) follow(ctx context.Context, f sessions.Feed, retain, interval time.Duration) {
	defer close(ss.done)
	since := ss.now().Add(-retain)
	backoff := interval
	for ctx.Err() == nil {
		err := f.Follow(ctx, since, interval, ss)
		if ctx.Err() != nil {
			return
		}
		ss.logger.Error("following the revocation feed", zap.Error(err))
		since = ss.now().Add(-retain)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Revoked implements sessions.FeedHandler.
func (ss *sharedStore) Revoked(r sessions.Revocation) {
	ss.deny.add(r.SID, r.At.Add(ss.policy.Load().Retain), ss.now())
}

// Heard implements sessions.FeedHandler. The local clock is recorded, not
// the engine's, so that staleness is measured on one clock.
func (ss *sharedStore) Heard(time.Time) {
	ss.heard.Store(ss.now().UnixNano())
}

// Reset implements sessions.FeedHandler: the engine lost its data, so
// revocations made before at may be missing, and every access token issued
// before at is refused until it has expired.
func (ss *sharedStore) Reset(at time.Time) {
	retain := ss.policy.Load().Retain
	ss.logger.Error("the session store lost its data (restarted empty?): sessions are gone and access tokens issued before the loss are refused until they expire",
		zap.String("issuer", ss.issuer), zap.Time("at", at), zap.Duration("for", retain))
	ss.deny.refuseIssuedBefore(at, at.Add(retain))
}

// stale reports whether validators must not trust the deny-list at now:
// the store is shared and its feed has not answered for longer than
// maxStale.
func (ss *sharedStore) stale(now int64, maxStale time.Duration) bool {
	return ss.feed && now-ss.heard.Load() > int64(maxStale)
}

// Interface guards
var (
	_ caddy.Destructor     = (*sharedStore)(nil)
	_ sessions.FeedHandler = (*sharedStore)(nil)
)
