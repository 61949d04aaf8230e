package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/redisstore"
)

// Issuer issues the tokens that jwt_auth checks, keeping the API of the Odoo
// module odoo_jwt: a login gives a short-lived JWT access token and an opaque
// refresh token; the refresh token obtains new access tokens, is rotated,
// and is revoked on logout. Issuers are defined once in the jwtauth app and
// served by jwt_issuer handlers; a validator with issuer_keys trusts one
// without any network round trip.
//
// The signing key and issuer.json live in StoreDir, and so do sessions
// unless Store puts them in Redis. Refresh tokens are 256 random bits,
// stored only as their SHA-256. Each login starts its
// own session (a family of refresh tokens): rotation replaces the family's
// token, and presenting a replaced token again (reuse) revokes the family.
type Issuer struct {
	// The iss claim of issued tokens. Default: the issuer's name.
	Iss string `json:"iss,omitempty"`

	// The aud claim of issued access tokens: a string for one audience, an
	// array for more. Default: the issuer's name.
	Audience []string `json:"audience,omitempty"`

	// Path of the JSON users file:
	// {"users":[{"login","password_hash","user_id","disabled","claims"}]},
	// with bcrypt or argon2id hashes as `caddy hash-password` prints them.
	// It is read at every config load and, while Caddy runs, checked every
	// users_reload_interval; a user whose hash, user_id, claims or
	// disabled flag changed, or who was removed, loses every session as
	// soon as the change is applied. Claims may not use a registered name
	// (iss, sub, aud, exp, nbf, iat, jti, sid, user_id, login) in any
	// letter case. Supports {env.*} placeholders. Required.
	UsersFile string `json:"users_file,omitempty"`

	// Directory of the embedded session store (sessions.db, a bbolt
	// database), the generated signing key (signing.key) and
	// issuer.json; created at start with mode 0700, files 0600. One
	// process at a time may open the embedded store. Supports {env.*}
	// placeholders. Default: jwtauth/NAME in Caddy's data directory.
	StoreDir string `json:"store_dir,omitempty"`

	// Signing algorithm: EdDSA, ES256, RS256 (a 2048-bit key) or HS256 (a
	// 32-byte secret). Without key_file, the key is generated from
	// crypto/rand on first start and kept in store_dir/signing.key; it is never replaced, so
	// changing the algorithm later is refused until that file is moved
	// away. Asymmetric public keys are published at
	// <path_prefix>/.well-known/jwks.json. Default: EdDSA.
	Algorithm string `json:"algorithm,omitempty"`

	// PEM private key (PKCS#8, SEC 1 or PKCS#1; for HS256 a "JWTAUTH HMAC
	// KEY" block of at least 32 bytes) to sign with instead of the
	// generated one. It must suit algorithm. Required with store redis.
	// Default: none.
	KeyFile string `json:"key_file,omitempty"`

	// Lifetime of access tokens, never beyond their session's end.
	// Default: 60s (as odoo_jwt).
	AccessTTL caddy.Duration `json:"access_ttl,omitempty"`

	// Absolute lifetime of a session (the long_term_token_span): no refresh
	// token of the family works after it. Default: 720h.
	RefreshTTL caddy.Duration `json:"refresh_ttl,omitempty"`

	// A session whose refresh token was not used this long is dead.
	// Default: 168h.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// How often clients should rotate their refresh token
	// (/update/refresh-token); advertised as rotation_period in the login
	// answer, not enforced. Default: 3/4 of refresh_ttl.
	RotationPeriod caddy.Duration `json:"rotation_period,omitempty"`

	// The refresh-token cookie. It is always HttpOnly, Secure unless
	// insecure, and has an explicit SameSite. Default: a cookie named
	// refreshToken (as odoo_jwt), SameSite strict, on the jwt_issuer's
	// path_prefix.
	RefreshCookie *RefreshCookie `json:"refresh_cookie,omitempty"`

	// Failed logins allowed per (client IP, login) pair within a period
	// before that pair's attempts, even with the right password, are
	// answered 429 with Retry-After. A client IP is refused the same way
	// after 4 × max failures over all logins. Failures of one login from
	// many IPs never refuse it (that would let anyone lock its owner out):
	// past max of them, each attempt on the login waits 500ms before its
	// password is checked, doubling per failure up to 4s. The counts live in
	// memory and survive reloads that keep login_limit. Default: 5 per 1m.
	LoginLimit *LoginLimit `json:"login_limit,omitempty"`

	// Where sessions live. Default: the embedded bbolt store,
	// store_dir/sessions.db, for one Caddy process; use Redis to share
	// the issuer's sessions among several nodes.
	Store *SessionStore `json:"store,omitempty"`

	// Make validators bound with issuer_keys refuse the access tokens of
	// a session as soon as it is revoked (logout, reuse, a changed,
	// disabled or removed user, an admin's revocation, the per-user
	// bound), through a deny-list of revoked session ids kept in memory
	// until their tokens have expired (access_ttl plus the validators'
	// leeway): an O(1) lookup on every verification, cached tokens
	// included. With Redis, every node follows the store's revocation
	// feed, so a revocation on one node reaches all within
	// revocation_max_staleness; while the feed is silent for longer, these
	// validators answer 503 with Retry-After for this issuer's tokens
	// (never 401, never a pass). After a restart of the embedded store,
	// whose revocations are not retained, the access tokens issued before
	// the start are refused until they expire. Verifiers elsewhere, which
	// use the JWKS, still accept tokens until exp. Without it, as in
	// odoo_jwt, access tokens are self-contained and live until exp
	// (access_ttl, 60s by default) after logout, and clients must discard
	// them. Default: false.
	RevokeAccessTokens bool `json:"revoke_access_tokens,omitempty"`

	// How often the running issuer checks users_file for changes (size,
	// mtime and content hash) and applies them without a config reload. A
	// changed file is parsed completely first; one that fails to parse is
	// ignored with an error log and the previous users stay in force. 0
	// (off in the Caddyfile) disables the check. Default: 5s.
	UsersReloadInterval *caddy.Duration `json:"users_reload_interval,omitempty"`

	// With revoke_access_tokens and a shared store (Redis): how long the
	// revocation feed may stay silent before validators bound to this
	// issuer answer 503 for its tokens. Shorter bounds how late a
	// revocation may arrive from another node; longer rides out brief
	// network stalls without refusals. Default: 1s.
	RevocationMaxStaleness caddy.Duration `json:"revocation_max_staleness,omitempty"`

	name         string
	storeDir     string
	accessTTL    time.Duration
	rotation     time.Duration
	cookie       RefreshCookie
	sameSite     http.SameSite
	limitMax     int
	limitPer     time.Duration
	ops          *issuerOps    // users, users-file watcher, counters
	redis        *redisOptions // nil: the embedded store
	poolKey      string
	maxStaleness time.Duration
	pol          sessions.Policy
	// signer is the key found at provision; start generates it if
	// there was none.
	signer *signer
	*issuerLive
	acquired bool       // start took sharedStores[poolKey]
	self     *Validator // verifies our own access tokens, for rotation
	now      func() time.Time
	logger   *zap.Logger
	audit    *zap.Logger

	// the login limiter, from limiterPool under limiterKey
	limiter    limiter.Limiter
	limiterKey string
	// wait applies the limiter's slowdown; tests replace it
	wait func(ctx context.Context, d time.Duration) error
	// storeErrs rate-limits the log of store write failures
	storeErrs *burstLog
}

// issuerLive is the state of a provisioned issuer that requests read while
// start may write it.
type issuerLive struct {
	keys atomic.Pointer[keySet]
	// run is set by start: until then the endpoints answer 503 and
	// bound validators cannot tell revoked sessions.
	run atomic.Pointer[issuerRun]
}

// issuerRun is what a started issuer serves with.
type issuerRun struct {
	signer *signer
	shared *sharedStore
	// limiter is the login limiter shared through the store (Redis);
	// nil: the issuer's own, in memory
	limiter limiter.Limiter
}

// RefreshCookie configures the refresh-token cookie.
type RefreshCookie struct {
	// Cookie name. Default: refreshToken.
	Name string `json:"name,omitempty"`

	// SameSite attribute: strict, lax or none; none requires Secure.
	// Default: strict.
	SameSite string `json:"same_site,omitempty"`

	// Cookie path. Default: the jwt_issuer's path_prefix (/ for a
	// __Host- name), so the cookie reaches only the issuer's endpoints.
	Path string `json:"path,omitempty"`

	// Drops the Secure attribute, for plain-HTTP development only: the
	// refresh token then travels in clear text. Default: false.
	Insecure bool `json:"insecure,omitempty"`
}

// LoginLimit is a number of failed logins per period; see
// Issuer.LoginLimit for how it is applied.
type LoginLimit struct {
	// Failed logins allowed per period and (client IP, login) pair; a
	// client IP gets 4 times as many over all logins, and a login is slowed
	// down past as many from all IPs. Default: 5.
	Max int `json:"max,omitempty"`
	// Period, counted from the first failure. Default: 1m.
	Per caddy.Duration `json:"per,omitempty"`
}

const (
	defaultAccessTTL   = 60 * time.Second
	defaultRefreshTTL  = 720 * time.Hour
	defaultIdleTimeout = 168 * time.Hour
	defaultCookieName  = "refreshToken"
)

// provision sets the issuer up: defaults, checks, users and, if they
// exist, the signing key. It creates nothing: start generates the key,
// writes issuer.json and opens the store, so that `caddy validate` can run
// beside a running server. The app calls it before provisioning
// validators, which may bind to it.
func (is *Issuer) provision(ctx caddy.Context, name string, a *App) error {
	is.name = name
	is.issuerLive = new(issuerLive)
	is.now = a.now
	if is.now == nil {
		is.now = time.Now
	}
	is.logger = a.logger
	if is.logger == nil {
		is.logger = zap.NewNop()
	}
	is.logger = is.logger.With(zap.String("issuer", name))
	is.audit = is.logger
	if err := is.setDefaults(); err != nil {
		return err
	}
	if err := is.validate(); err != nil {
		return err
	}
	for other, o := range a.Issuers {
		if o != nil && o != is && o.storeDir == is.storeDir {
			return fmt.Errorf("store_dir %s is already used by issuer %q", is.storeDir, other)
		}
	}
	if err := is.loadUsers(); err != nil {
		return err
	}
	if err := is.loadLimiter(); err != nil {
		return err
	}
	is.wait = waitCtx
	is.storeErrs = new(burstLog)

	if err := checkStoreDir(is.storeDir); err != nil {
		return err
	}
	var key any
	var err error
	source := filepath.Join(is.storeDir, signingKeyFile)
	if is.KeyFile != "" {
		source = is.KeyFile
		data, err := os.ReadFile(is.KeyFile)
		if err != nil {
			return fmt.Errorf("key_file: %w", err)
		}
		if key, err = parseSigningKey(data, is.KeyFile); err != nil {
			return fmt.Errorf("key_file: %w", err)
		}
		if fi, err := os.Stat(is.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			is.logger.Warn("key_file is readable by other users; restrict it to mode 0600",
				zap.String("key_file", is.KeyFile), zap.String("mode", fi.Mode().Perm().String()))
		}
	} else if key, err = readSigningKey(is.storeDir); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if key != nil {
		if is.signer, err = newSigner(is.Algorithm, key, source); err != nil {
			if is.KeyFile == "" {
				err = fmt.Errorf("%w; move %s away to generate a new key for %s", err, source, is.Algorithm)
			}
			return err
		}
		is.keys.Store(newKeySet([]*verKey{is.signer.ver}))
	}
	is.setRetention(0)

	// the validator that checks our own access tokens when a client
	// rotates its refresh token
	zero, noCache := caddy.Duration(0), 0
	is.self = &Validator{
		internal:   true,
		IssuerKeys: name,
		Types:      []string{"at+jwt"},
		Leeway:     &zero,
		CacheSize:  &noCache,
		Sources: []TokenSource{
			{From: "header", Name: "Authorization", Prefix: "Bearer"},
			{From: "header", Name: "Authorization"},
			{From: "header", Name: "access_token"},
		},
	}
	if err := is.self.provision(ctx, "jwt_issuer "+name, a); err != nil {
		return fmt.Errorf("access token verifier: %w", err)
	}
	return nil
}

// setRetention sets the session policy, keeping each revocation for
// access_ttl plus leeway, the longest leeway of the validators bound to
// the issuer.
func (is *Issuer) setRetention(leeway time.Duration) {
	is.pol = sessions.Policy{
		RefreshTTL:  time.Duration(is.RefreshTTL),
		IdleTimeout: time.Duration(is.IdleTimeout),
		MaxPerLogin: maxSessionsPerLogin,
		Grace:       rotationGrace,
		Retain:      is.accessTTL + leeway,
	}
}

// policy returns the session policy of this config.
func (is *Issuer) policy() sessions.Policy { return is.pol }

// start generates the signing key if there is none, writes issuer.json,
// opens (or shares) the session store and ends the sessions of users that
// changed. The app calls it from Start.
func (is *Issuer) start() error {
	if is.acquired {
		return nil // started already
	}
	sg := is.signer
	if sg == nil {
		if err := os.MkdirAll(is.storeDir, 0o700); err != nil {
			return fmt.Errorf("store_dir: %w", err)
		}
		key, err := loadOrCreateSigningKey(is.storeDir, is.Algorithm)
		if err != nil {
			return fmt.Errorf("signing key: %w", err)
		}
		source := filepath.Join(is.storeDir, signingKeyFile)
		if sg, err = newSigner(is.Algorithm, key, source); err != nil {
			return fmt.Errorf("%w; move %s away to generate a new key for %s", err, source, is.Algorithm)
		}
		is.keys.Store(newKeySet([]*verKey{sg.ver}))
	}
	if err := os.MkdirAll(is.storeDir, 0o700); err != nil {
		return fmt.Errorf("store_dir: %w", err)
	}
	if err := writeIssuerMeta(is.storeDir, issuerMeta{
		Iss: is.Iss, Audience: is.Audience, Algorithm: is.Algorithm, KID: sg.kid,
		AccessTTL: is.accessTTL.String(), KeyFile: is.KeyFile,
	}); err != nil {
		return fmt.Errorf("store_dir: %w", err)
	}

	fresh := false
	val, _, err := sharedStores.LoadOrNew(is.poolKey, func() (caddy.Destructor, error) {
		fresh = true
		return is.openShared()
	})
	if err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	is.acquired = true
	ss := val.(*sharedStore)
	p := is.policy()
	ss.policy.Store(&p)
	run := &issuerRun{signer: sg, shared: ss}
	if rs, ok := ss.store.(*redisstore.Store); ok {
		// with Redis, every node counts the same login failures
		l, err := rs.Limiter(limiterConfig(is.limitMax, is.limitPer))
		if err != nil {
			return fmt.Errorf("login_limit: %w", err)
		}
		run.limiter = l
	}
	is.run.Store(run)
	is.endChangedUsers(ss, fresh)
	return nil
}

// setDefaults fills in defaults and resolves placeholders.
func (is *Issuer) setDefaults() error {
	if is.Iss == "" {
		is.Iss = is.name
	}
	if len(is.Audience) == 0 {
		is.Audience = []string{is.name}
	}
	if is.Algorithm == "" {
		is.Algorithm = "EdDSA"
	}
	if is.AccessTTL == 0 {
		is.AccessTTL = caddy.Duration(defaultAccessTTL)
	}
	if is.RefreshTTL == 0 {
		is.RefreshTTL = caddy.Duration(defaultRefreshTTL)
	}
	if is.IdleTimeout == 0 {
		is.IdleTimeout = caddy.Duration(defaultIdleTimeout)
	}
	if is.RotationPeriod == 0 {
		is.RotationPeriod = is.RefreshTTL / 4 * 3
	}
	is.accessTTL = time.Duration(is.AccessTTL)
	is.rotation = time.Duration(is.RotationPeriod)
	if is.RefreshCookie != nil {
		is.cookie = *is.RefreshCookie
	}
	if is.cookie.Name == "" {
		is.cookie.Name = defaultCookieName
	}
	if is.cookie.SameSite == "" {
		is.cookie.SameSite = "strict"
	}
	is.limitMax, is.limitPer = 5, time.Minute
	if is.LoginLimit != nil {
		if is.LoginLimit.Max != 0 {
			is.limitMax = is.LoginLimit.Max
		}
		if is.LoginLimit.Per != 0 {
			is.limitPer = time.Duration(is.LoginLimit.Per)
		}
	}

	is.maxStaleness = time.Duration(is.RevocationMaxStaleness)
	if is.maxStaleness == 0 {
		is.maxStaleness = time.Second
	}

	repl := caddy.NewReplacer()
	if is.Store != nil && is.Store.Redis != nil {
		o, err := is.Store.Redis.setDefaults(repl)
		if err != nil {
			return err
		}
		is.redis = o
	}
	for _, p := range []*string{&is.UsersFile, &is.StoreDir, &is.KeyFile} {
		s, err := repl.ReplaceOrErr(*p, true, true)
		if err != nil {
			return err
		}
		*p = s
	}
	dir := is.StoreDir
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "jwtauth", is.name)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("store_dir: %w", err)
	}
	is.storeDir = abs
	if is.KeyFile != "" {
		if is.KeyFile, err = filepath.Abs(is.KeyFile); err != nil {
			return fmt.Errorf("key_file: %w", err)
		}
	}
	if is.redis != nil {
		is.poolKey = is.redis.poolKey(is.name)
	} else {
		is.poolKey = "bolt\x00" + filepath.Join(is.storeDir, sessionsDBFile)
	}
	return nil
}

// validate checks the configuration once defaults are set.
func (is *Issuer) validate() error {
	if is.UsersFile == "" {
		return errors.New("users_file is required")
	}
	if is.Iss == "" {
		return errors.New("iss must not be empty")
	}
	for _, a := range is.Audience {
		if a == "" {
			return errors.New("audience must not be empty")
		}
	}
	if !slices.Contains(issuerAlgorithms, is.Algorithm) {
		return fmt.Errorf("algorithm %q: must be one of %s", is.Algorithm, strings.Join(issuerAlgorithms, ", "))
	}
	switch {
	case is.AccessTTL < 0, is.RefreshTTL < 0, is.IdleTimeout < 0, is.RotationPeriod < 0:
		return errors.New("durations must not be negative")
	case is.accessTTL < time.Second:
		return errors.New("access_ttl must be at least 1s")
	case is.RefreshTTL < is.AccessTTL:
		return errors.New("refresh_ttl must not be shorter than access_ttl")
	case is.IdleTimeout < is.AccessTTL:
		return errors.New("idle_timeout must not be shorter than access_ttl")
	case is.RotationPeriod > is.RefreshTTL:
		return errors.New("rotation_period must not exceed refresh_ttl")
	case is.UsersReloadInterval != nil && *is.UsersReloadInterval < 0:
		return errors.New("users_reload_interval must not be negative")
	}
	ss, err := parseSameSite(is.cookie.SameSite)
	if err != nil {
		return fmt.Errorf("refresh_cookie: %w", err)
	}
	is.sameSite = ss
	path := is.cookie.Path
	if path == "" {
		path = "/" // the handler checks the path it defaults to
	}
	if err := checkCookieAttrs(is.cookie.Name, path, is.cookie.Insecure, ss); err != nil {
		return fmt.Errorf("refresh_cookie: %w", err)
	}
	if is.limitMax < 1 || is.limitPer <= 0 {
		return errors.New("login_limit: expected a positive count and period")
	}
	if is.RevocationMaxStaleness < 0 {
		return errors.New("revocation_max_staleness must not be negative")
	}
	if is.RevocationMaxStaleness != 0 && !is.RevokeAccessTokens {
		return errors.New("revocation_max_staleness needs revoke_access_tokens")
	}
	if is.Store != nil && is.Store.Redis == nil {
		return errors.New("store: no backend configured (expected redis)")
	}
	if is.redis != nil {
		if err := is.redis.validate(); err != nil {
			return err
		}
		if strings.ContainsAny(is.name, "{}") {
			return errors.New("store redis: the issuer name must not contain { or }")
		}
		if is.KeyFile == "" {
			return errors.New("store redis requires key_file: every node must sign with the same key, or the others would refuse its tokens")
		}
	}
	return nil
}

// checkStoreDir refuses a store_dir that is a symbolic link, as the store
// refuses symlinked files: whoever can change the link would move the
// sessions and the signing key elsewhere. A missing store_dir is fine.
func checkStoreDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store_dir: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("store_dir %s is a symbolic link; refusing it (give the real path)", dir)
	}
	return nil
}

// cleanup releases the shared store. is.run stays set: a request of this
// config may still be finishing, and the store stays open while the next
// config uses it.
func (is *Issuer) cleanup() error {
	is.releaseLimiter()
	if is.self != nil {
		is.self.cleanup()
	}
	if !is.acquired {
		return nil
	}
	is.acquired = false
	_, err := sharedStores.Delete(is.poolKey)
	return err
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Issuer)(nil)
	_ localIssuer           = (*Issuer)(nil)
)
