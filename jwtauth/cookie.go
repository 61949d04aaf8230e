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
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// CookieConfig is the OCA auth_jwt cookie mode, made safe: the cookie carries
// the verified claims signed with a server-side key, it is always HttpOnly
// with an explicit SameSite, it never outlives the token it came from, and
// unsafe requests it authenticates must be same-origin.
type CookieConfig struct {
	// Cookie name. The __Host- prefix makes browsers require Secure and
	// Path=/ and forbid Domain. Default: __Host-jwtauth.
	Name string `json:"name,omitempty"`

	// Lifetime of the cookie, capped at the token's exp. Default: the
	// token's remaining lifetime.
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

// cookieMAC authenticates a cookie payload for one validator.
func cookieMAC(key []byte, validator, payloadB64 string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("jwtauth-cookie-v1\x00"))
	m.Write([]byte(validator))
	m.Write([]byte{0})
	m.Write([]byte(payloadB64))
	return m.Sum(nil)
}

// maxCookieValue keeps the whole Set-Cookie line under the 4096 bytes every
// browser accepts.
const maxCookieValue = 3800

// identityCookie builds the cookie for a header-authenticated identity, or
// nil when it would not fit or the token is about to expire.
func (v *Validator) identityCookie(id *identity, now time.Time) *http.Cookie {
	c := v.Cookie
	life := id.exp.Sub(now)
	if c.MaxAge > 0 && time.Duration(c.MaxAge) < life {
		life = time.Duration(c.MaxAge)
	}
	secs := int(life / time.Second)
	if secs <= 0 {
		return nil
	}
	value := id.payloadB64 + "." + b64.EncodeToString(cookieMAC(v.cookieKey, v.name, id.payloadB64))
	if len(value) > maxCookieValue {
		return nil
	}
	return &http.Cookie{
		Name:     c.Name,
		Value:    value,
		Path:     c.Path,
		MaxAge:   secs,
		Expires:  now.Add(time.Duration(secs) * time.Second),
		Secure:   !c.Insecure,
		HttpOnly: true,
		SameSite: c.sameSite,
	}
}

// verifyCookie authenticates a request by its identity cookie. The cookie's
// MAC stands in for the token signature; every claim check runs again, and
// exp is enforced without leeway, so the cookie never outlives the token.
func (v *Validator) verifyCookie(value string) (*identity, error) {
	bad := invalidToken(reasonInvalid, ErrCookieInvalid, "invalid identity cookie")
	dot := strings.LastIndexByte(value, '.')
	if dot < 0 || len(value) > maxCookieValue {
		return nil, bad
	}
	payloadB64 := value[:dot]
	mac, err := b64.DecodeString(value[dot+1:])
	if err != nil || !hmac.Equal(mac, cookieMAC(v.cookieKey, v.name, payloadB64)) {
		return nil, bad
	}
	payload, err := b64.DecodeString(payloadB64)
	if err != nil {
		return nil, bad
	}
	id := &identity{v: v, payloadB64: payloadB64, payload: payload}
	now := v.now()
	if err := v.checkClaims(id, now); err != nil {
		return nil, err
	}
	if !now.Before(id.exp) {
		return nil, invalidToken(reasonExpired, ErrTokenExpired, "token expired")
	}
	if err := v.checkIdentity(id); err != nil {
		return nil, err
	}
	return id, nil
}

// loadOrCreateKey reads a 32-byte key file, creating it with mode 0600 (in a
// 0700 directory) on first use. Creation is exclusive, so two processes
// starting together agree on one key.
func loadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < 32 {
			return nil, fmt.Errorf("%s: key shorter than 32 bytes", path)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// link fails if another process created the key first: use theirs
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateKey(path)
		}
		return nil, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return key, nil
}
