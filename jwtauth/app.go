// Package jwtauth implements the caddy-jwtauth modules: the jwtauth app,
// which holds named validators and issuers, the jwt_auth handler, which
// enforces validators on routes, and the jwt_issuer handler, which issues the
// tokens.
package jwtauth

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
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

	logger    *zap.Logger
	now       func() time.Time
	cookieKey []byte
	metrics   appMetrics
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
	if a.now == nil {
		a.now = time.Now
		a.metrics.wallClock = true
	}
	if err := a.provisionMetrics(ctx); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	for _, name := range sortedKeys(a.Issuers) {
		if err := a.Issuers[name].provision(ctx, name, a); err != nil {
			return fmt.Errorf("issuer %q: %w", name, err)
		}
	}
	needCookieKey := false
	for _, v := range a.Validators {
		if v != nil && v.Cookie != nil {
			needCookieKey = true
		}
	}
	if needCookieKey {
		if err := a.loadCookieKey(); err != nil {
			return fmt.Errorf("cookie key: %w", err)
		}
	}
	cookieOwner := make(map[string]string) // identity cookie name -> validator
	for _, name := range sortedKeys(a.Validators) {
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
	return nil
}

func (a *App) loadCookieKey() error {
	if a.CookieSecret != "" {
		s, err := caddy.NewReplacer().ReplaceOrErr(a.CookieSecret, true, true)
		if err != nil {
			return err
		}
		if len(s) < 32 {
			return errors.New("cookie_secret shorter than 32 bytes")
		}
		a.cookieKey = []byte(s)
		return nil
	}
	key, err := loadOrCreateKey(filepath.Join(caddy.AppDataDir(), "jwtauth", "cookie.key"))
	if err != nil {
		return err
	}
	a.cookieKey = key
	return nil
}

// Start implements caddy.App: it starts the users-file watchers and the
// per-request metrics.
func (a *App) Start() error { return a.startOps() }

// Stop implements caddy.App.
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

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
