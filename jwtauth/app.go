package jwtauth

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the jwtauth app. It holds validators and issuers defined once and
// referenced by name from jwt_auth and jwt_issuer handlers, as the pki app
// holds certificate authorities.
type App struct {
	// Named validators, referenced by jwt_auth handlers. Default: none.
	Validators map[string]*Validator `json:"validators,omitempty"`

	// Named token issuers, referenced by jwt_issuer handlers and by
	// validators' issuer_keys. Default: none.
	Issuers map[string]*Issuer `json:"issuers,omitempty"`

	// Key that signs identity cookies (cookie mode). Supports {env.*} and
	// {file.*} placeholders; at least 32 bytes. Default: a random key
	// generated on first start and kept with mode 0600 in Caddy's data
	// directory, at jwtauth/cookie.key.
	CookieSecret string `json:"cookie_secret,omitempty"`

	logger        *zap.Logger
	now           func() time.Time
	needCookieKey bool
	cookieKey     *lateKey
	metrics       appMetrics
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwtauth",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets up issuers, then the validators that may refer to them.
// Any error names the validator or issuer at fault.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.cookieKey = new(lateKey)
	if a.now == nil {
		a.now = time.Now
		a.metrics.wallClock = true
	}
	if err := a.provisionMetrics(ctx); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	for _, name := range slices.Sorted(maps.Keys(a.Issuers)) {
		if err := a.Issuers[name].provision(ctx, name, a); err != nil {
			return fmt.Errorf("issuer %q: %w", name, err)
		}
	}
	for _, v := range a.Validators {
		if v != nil && v.Cookie != nil {
			a.needCookieKey = true
		}
	}
	if a.needCookieKey {
		if err := a.readCookieKey(); err != nil {
			return fmt.Errorf("cookie key: %w", err)
		}
	}
	cookieOwner := make(map[string]string) // identity cookie name -> validator
	for _, name := range slices.Sorted(maps.Keys(a.Validators)) {
		v := a.Validators[name]
		if v == nil {
			return fmt.Errorf("validator %q: empty", name)
		}
		if err := v.provision(ctx, name, a); err != nil {
			return fmt.Errorf("validator %q: %w", name, err)
		}
		if v.Cookie == nil {
			continue
		}
		// A cookie is bound to the validator that minted it, so two
		// validators sharing a name would refuse each other's cookies.
		if other, dup := cookieOwner[v.Cookie.Name]; dup {
			return fmt.Errorf("validator %q: cookie name %q is already used by validator %q; give each cookie-mode validator its own cookie name", name, v.Cookie.Name, other)
		}
		cookieOwner[v.Cookie.Name] = name
		for _, src := range v.Sources {
			if src.From == "cookie" && src.Name == v.Cookie.Name {
				return fmt.Errorf("validator %q: from_cookie %q is also the identity cookie's name", name, src.Name)
			}
		}
	}
	// An issuer keeps each revocation as long as the longest leeway of
	// the validators bound to it may still accept the session's tokens.
	for name, is := range a.Issuers {
		leeway := time.Duration(0)
		for _, v := range a.Validators {
			if v != nil && v.IssuerKeys == name {
				leeway = max(leeway, v.leeway)
			}
		}
		is.setRetention(leeway)
	}
	return nil
}

// cookieKeyPath is where the generated cookie key is kept.
func cookieKeyPath() string { return filepath.Join(caddy.AppDataDir(), "jwtauth", "cookie.key") }

// readCookieKey resolves cookie_secret, or reads the generated key if it
// exists; a missing one is generated at Start.
func (a *App) readCookieKey() error {
	if a.CookieSecret != "" {
		s, err := caddy.NewReplacer().ReplaceOrErr(a.CookieSecret, true, true)
		if err != nil {
			return err
		}
		if len(s) < 32 {
			return errors.New("cookie_secret shorter than 32 bytes")
		}
		a.cookieKey.set([]byte(s))
		return nil
	}
	key, err := readKeyFile(cookieKeyPath())
	if err != nil || key == nil {
		return err
	}
	a.cookieKey.set(key)
	return nil
}

// Start implements caddy.App: it generates the keys that do not exist yet
// and opens the issuers' session stores, then starts the users-file
// watchers and the per-request metrics. Until then, validators bound to an
// issuer answer 503 for its tokens, and its endpoints 503.
func (a *App) Start() error {
	if a.needCookieKey && a.cookieKey.get() == nil {
		key, err := loadOrCreateKey(cookieKeyPath())
		if err != nil {
			return fmt.Errorf("cookie key: %w", err)
		}
		a.cookieKey.set(key)
	}
	for _, name := range slices.Sorted(maps.Keys(a.Issuers)) {
		if err := a.Issuers[name].start(); err != nil {
			return fmt.Errorf("issuer %q: %w", name, err)
		}
	}
	for _, v := range a.Validators {
		if v != nil {
			v.start()
		}
	}
	return a.startOps()
}

// Stop implements caddy.App: it stops the users-file watchers. The stores
// stay open until Cleanup: requests of this config may still be finishing.
func (a *App) Stop() error { a.stopOps(); return nil }

// Cleanup releases shared state (remote key sets, issuer stores) held for
// this config; the usage pools keep what the next config still uses.
func (a *App) Cleanup() error {
	a.stopOps()
	var errs []error
	for _, v := range a.Validators {
		if v != nil {
			v.cleanup()
		}
	}
	for _, is := range a.Issuers {
		if is != nil {
			errs = append(errs, is.cleanup())
		}
	}
	return errors.Join(errs...)
}

// lateKey is a key that may arrive at Start, after the validators using it
// were provisioned and while requests may already be served.
type lateKey struct{ p atomic.Pointer[[]byte] }

func (k *lateKey) get() []byte {
	if k == nil {
		return nil
	}
	if p := k.p.Load(); p != nil {
		return *p
	}
	return nil
}

func (k *lateKey) set(key []byte) { k.p.Store(&key) }

// validator returns the named validator.
func (a *App) validator(name string) (*Validator, error) {
	v, ok := a.Validators[name]
	if !ok || v == nil {
		return nil, fmt.Errorf("no validator named %q in the jwtauth app", name)
	}
	return v, nil
}

// localIssuer returns the named issuer, for issuer_keys.
func (a *App) localIssuer(name string) (localIssuer, error) {
	is, ok := a.Issuers[name]
	if !ok || is == nil {
		return nil, fmt.Errorf("no issuer named %q in the jwtauth app", name)
	}
	return is, nil
}

// issuer returns the named issuer, for jwt_issuer handlers.
func (a *App) issuer(name string) (*Issuer, error) {
	is, ok := a.Issuers[name]
	if !ok || is == nil {
		return nil, fmt.Errorf("no issuer named %q in the jwtauth app", name)
	}
	return is, nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
