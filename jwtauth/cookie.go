package jwtauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// CookieConfig is the OCA auth_jwt cookie mode, made safe: the cookie carries
// the verified claims signed with a server-side key, it is always HttpOnly
// with an explicit SameSite, it never outlives the token it came from, and
// unsafe requests it authenticates must be same-origin. It is set only after
// a token from a header source is accepted.
type CookieConfig struct {
	// Cookie name. The __Host- prefix makes browsers require Secure and
	// Path=/ and forbid Domain. Default: __Host-jwtauth.
	Name string `json:"name,omitempty"`

	// Lifetime of the cookie, capped at the token's exp. The server
	// enforces it too: the expiry is part of the signed cookie value.
	// Default: the token's remaining lifetime.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// SameSite attribute: strict, lax or none. none requires Secure.
	// Default: strict.
	SameSite string `json:"same_site,omitempty"`

	// Cookie path. Default: /.
	Path string `json:"path,omitempty"`

	// Drops the Secure attribute. Only for plain-HTTP development: the
	// cookie then travels in clear text. Default: false.
	Insecure bool `json:"insecure,omitempty"`

	sameSite http.SameSite
}

func (c *CookieConfig) provision() error {
	if c.Name == "" {
		c.Name = "__Host-jwtauth"
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.SameSite == "" {
		c.SameSite = "strict"
	}
	ss, err := parseSameSite(c.SameSite)
	if err != nil {
		return err
	}
	c.sameSite = ss
	return checkCookieAttrs(c.Name, c.Path, c.Insecure, ss)
}

func parseSameSite(s string) (http.SameSite, error) {
	switch strings.ToLower(s) {
	case "strict":
		return http.SameSiteStrictMode, nil
	case "lax":
		return http.SameSiteLaxMode, nil
	case "none":
		return http.SameSiteNoneMode, nil
	}
	return 0, fmt.Errorf("same_site %q: must be strict, lax or none", s)
}

// checkCookieAttrs refuses attribute combinations that browsers would reject
// silently, which would leave users logged out without any error.
func checkCookieAttrs(name, path string, insecure bool, ss http.SameSite) error {
	if !isCookieName(name) {
		return fmt.Errorf("name %q is not a valid cookie name", name)
	}
	if strings.HasPrefix(name, "__Host-") && (insecure || path != "/") {
		return fmt.Errorf("a __Host- cookie must be Secure with path /: choose another name to use insecure or a path")
	}
	if strings.HasPrefix(name, "__Secure-") && insecure {
		return fmt.Errorf("a __Secure- cookie cannot be insecure")
	}
	if ss == http.SameSiteNoneMode && insecure {
		return fmt.Errorf("same_site none requires Secure: it cannot be combined with insecure")
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("path %q must start with /", path)
	}
	return nil
}

func isCookieName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// cookieMAC authenticates a cookie payload and its expiry for one validator:
// a cookie minted for one validator is refused by every other, even under
// the same key.
func cookieMAC(key []byte, validator, payloadB64, expiry string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("jwtauth-cookie-v2\x00"))
	m.Write([]byte(validator))
	m.Write([]byte{0})
	m.Write([]byte(payloadB64))
	m.Write([]byte{0})
	m.Write([]byte(expiry))
	return m.Sum(nil)
}

// maxCookieLine is the largest identity cookie set: its name, value and
// attributes as one Set-Cookie line. RFC 6265 §6.1 asks browsers to keep
// at least 4096 bytes per cookie, and larger ones are dropped without a
// word, which would send the browser back to its login again and again.
const maxCookieLine = 4096

// cookieWarnEvery rate-limits the warnings about identity cookies that
// cannot work, per validator.
const cookieWarnEvery = time.Hour

// The identity cookie's value is PAYLOAD.EXPIRY.MAC: the token's payload
// segment, the cookie's own expiry in Unix seconds (the token's exp, or
// sooner under max_age) and an HMAC-SHA256 of both. The server enforces the
// expiry itself, so a copied cookie value is no longer accepted than the
// browser would keep it.

// identityCookie builds the cookie for a header-authenticated identity, or
// nil when the token is about to expire or no cookie key is loaded. Whether
// it fits in a browser is checked by the caller, on the Set-Cookie line.
func (v *Validator) identityCookie(id *identity, now time.Time) *http.Cookie {
	c := v.Cookie
	key := v.cookieKey.get()
	if len(key) < 32 {
		return nil
	}
	life := id.exp.Sub(now)
	if c.MaxAge > 0 && time.Duration(c.MaxAge) < life {
		life = time.Duration(c.MaxAge)
	}
	secs := int64(life / time.Second)
	if secs <= 0 {
		return nil
	}
	expires := now.Add(time.Duration(secs) * time.Second)
	expiry := strconv.FormatInt(expires.Unix(), 10)
	value := id.payloadB64 + "." + expiry + "." + b64.EncodeToString(cookieMAC(key, v.name, id.payloadB64, expiry))
	return &http.Cookie{
		Name:     c.Name,
		Value:    value,
		Path:     c.Path,
		MaxAge:   int(secs),
		Expires:  expires,
		Secure:   !c.Insecure,
		HttpOnly: true,
		SameSite: c.sameSite,
	}
}

// warnCookie logs a cookie problem at Warn, at most once per
// cookieWarnEvery for each kind (last) of problem.
func (v *Validator) warnCookie(last *atomic.Int64, msg string, fields ...zap.Field) {
	now := v.now().UnixNano()
	prev := last.Load()
	if prev != 0 && now-prev < int64(cookieWarnEvery) || !last.CompareAndSwap(prev, now) {
		return
	}
	if c := v.logger.Check(zap.WarnLevel, msg); c != nil {
		c.Write(append(fields, zap.String("validator", v.name))...)
	}
}

// openCookie checks a cookie value's MAC and returns its payload segment and
// expiry.
func (v *Validator) openCookie(value string) (payloadB64 string, expires time.Time, ok bool) {
	key := v.cookieKey.get()
	if len(key) < 32 || len(value) > maxCookieLine {
		return "", time.Time{}, false
	}
	d2 := strings.LastIndexByte(value, '.')
	if d2 < 0 {
		return "", time.Time{}, false
	}
	d1 := strings.LastIndexByte(value[:d2], '.')
	if d1 < 0 {
		return "", time.Time{}, false
	}
	payloadB64, expiry := value[:d1], value[d1+1:d2]
	mac, err := b64.DecodeString(value[d2+1:])
	if err != nil || !hmac.Equal(mac, cookieMAC(key, v.name, payloadB64, expiry)) {
		return "", time.Time{}, false
	}
	secs, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return payloadB64, time.Unix(secs, 0), true
}

// cookieCarries reports whether value is a valid identity cookie of v,
// still within its expiry, for the token whose payload segment is
// payloadB64.
func (v *Validator) cookieCarries(value, payloadB64 string) bool {
	p, expires, ok := v.openCookie(value)
	return ok && p == payloadB64 && v.now().Before(expires)
}

// verifyCookie authenticates a request by its identity cookie. The cookie's
// MAC stands in for the token signature; every claim check runs again, and
// exp and the cookie's own expiry are enforced without leeway, so the cookie
// never outlives the token.
func (v *Validator) verifyCookie(value string) (*identity, error) {
	payloadB64, expires, ok := v.openCookie(value)
	if !ok {
		return nil, errCookieInvalid
	}
	now := v.now()
	if !now.Before(expires) {
		return nil, errCookieExpired
	}
	payload, err := b64.DecodeString(payloadB64)
	if err != nil {
		return nil, errCookieInvalid
	}
	id := &identity{v: v, payloadB64: payloadB64, payload: payload}
	c, err := v.checkClaims(id, now)
	if err != nil {
		return nil, err
	}
	if !now.Before(id.exp) {
		return nil, errExpired
	}
	if err := v.checkIdentity(id, &c, now); err != nil {
		return nil, err
	}
	return id, nil
}

// readKeyFile reads a generated key: nil without error when it does not
// exist yet, an error when it cannot be read or is too short.
func readKeyFile(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return checkKey(path, key)
}

// checkKey refuses a generated key that is too short.
func checkKey(path string, key []byte) ([]byte, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("%s: key shorter than 32 bytes", path)
	}
	return key, nil
}

// loadOrCreateKey reads a 32-byte key file, creating it with mode 0600 (in a
// 0700 directory) on first use. Creation is exclusive, so two processes
// starting together agree on one key.
func loadOrCreateKey(path string) ([]byte, error) {
	parse := func(key []byte) ([]byte, error) { return checkKey(path, key) }
	return loadOrCreateFile(path, parse, func() ([]byte, []byte, error) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, nil, err
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, nil, err
		}
		return key, key, nil
	})
}
