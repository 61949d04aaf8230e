package jwtauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// responseCookie returns the identity cookie a response set, or nil.
func responseCookie(t *testing.T, res serveResult, name string) *http.Cookie {
	t.Helper()
	var found *http.Cookie
	for _, c := range res.w.Result().Cookies() {
		if c.Name == name {
			if found != nil {
				t.Fatalf("cookie %s set twice", name)
			}
			found = c
		}
	}
	return found
}

// cookieRequest is a request carrying only the identity cookie.
func cookieRequest(method string, c *http.Cookie) *http.Request {
	r := httptest.NewRequest(method, "https://example.com/app", nil)
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	return r
}

// newCookieHandler provisions a cookie-mode validator "web" (partner_id from the
// partner claim) and a handler over it.
func newCookieHandler(t *testing.T, cc *CookieConfig, h *Handler) (*Handler, *testClock) {
	t.Helper()
	clock := newTestClock()
	v := hsValidator()
	v.Cookie = cc
	v.PartnerID = &PartnerIDSource{Claim: "partner"}
	h, _ = newHandler(t, clock, "web", v, h)
	return h, clock
}

// loginByHeader authenticates by header and returns the identity cookie set.
func loginByHeader(t *testing.T, h *Handler, tok string) *http.Cookie {
	t.Helper()
	res := serve(t, h, bearerRequest(tok), nil)
	requirePassed(t, res)
	c := responseCookie(t, res, h.validators[0].Cookie.Name)
	if c == nil {
		t.Fatalf("no identity cookie after header authentication; Set-Cookie: %q", res.w.Header().Values("Set-Cookie"))
	}
	return c
}

func TestCookieSetAfterHeaderAuth(t *testing.T) {
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{})
	res := serve(t, h, bearerRequest(hs256(t, userClaims("alice", nil))), nil)
	requirePassed(t, res)
	raw := res.w.Header().Values("Set-Cookie")
	if len(raw) != 1 {
		t.Fatalf("Set-Cookie %q", raw)
	}
	for _, attr := range []string{"__Host-jwtauth=", "; Path=/", "; Max-Age=3600", "; HttpOnly", "; Secure", "; SameSite=Strict"} {
		if !strings.Contains(raw[0], attr) {
			t.Errorf("Set-Cookie %q lacks %q", raw[0], attr)
		}
	}
	if strings.Contains(raw[0], "Domain=") {
		t.Errorf("a __Host- cookie must not have a Domain: %q", raw[0])
	}
	c := responseCookie(t, res, "__Host-jwtauth")
	if !c.Expires.Equal(testNow.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("Expires %v", c.Expires)
	}

	// the cookie is not a bearer token: it cannot be replayed as one
	requireRefused(t, serve(t, h, bearerRequest(c.Value), nil), http.StatusUnauthorized, "malformed")
}

func TestCookieMaxAge(t *testing.T) {
	tests := []struct {
		name   string
		maxAge time.Duration
		exp    time.Duration
		want   string
	}{
		{"token exp caps", 0, 90 * time.Minute, "Max-Age=5400"},
		{"max_age caps", 10 * time.Minute, time.Hour, "Max-Age=600"},
		{"exp below max_age", 10 * time.Minute, 5 * time.Minute, "Max-Age=300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newCookieHandler(t, &CookieConfig{MaxAge: caddy.Duration(tt.maxAge), Name: "sid", Path: "/app", SameSite: "lax"}, &Handler{})
			res := serve(t, h, bearerRequest(hs256(t, userClaims("alice", map[string]any{"exp": testNow.Add(tt.exp).Unix()}))), nil)
			requirePassed(t, res)
			raw := res.w.Header().Get("Set-Cookie")
			for _, attr := range []string{"sid=", tt.want, "; Path=/app", "; SameSite=Lax", "; Secure", "; HttpOnly"} {
				if !strings.Contains(raw, attr) {
					t.Errorf("Set-Cookie %q lacks %q", raw, attr)
				}
			}
		})
	}

	// a token inside its leeway (exp passed) gets no cookie
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{})
	res := serve(t, h, bearerRequest(hs256(t, userClaims("alice", map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()}))), nil)
	requirePassed(t, res)
	if got := res.w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("cookie for a token past its exp: %q", got)
	}

	// insecure drops Secure, and only that
	h, _ = newCookieHandler(t, &CookieConfig{Name: "dev", Insecure: true}, &Handler{})
	res = serve(t, h, bearerRequest(hs256(t, userClaims("alice", nil))), nil)
	requirePassed(t, res)
	if raw := res.w.Header().Get("Set-Cookie"); strings.Contains(raw, "Secure") || !strings.Contains(raw, "HttpOnly") || !strings.Contains(raw, "SameSite=Strict") {
		t.Fatalf("insecure Set-Cookie %q", raw)
	}
}

func TestCookieAuthenticates(t *testing.T) {
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{ForwardClaims: []ForwardClaim{{Claim: "sub", Header: "X-User-Id"}}})
	tok := hs256(t, userClaims("alice", map[string]any{"partner": "p7", "email": "alice@example.com"}))
	byHeader := serve(t, h, bearerRequest(tok), nil)
	requirePassed(t, byHeader)
	c := responseCookie(t, byHeader, "__Host-jwtauth")

	r := cookieRequest(http.MethodGet, c)
	r.Header.Set("X-User-Id", "eve")
	byCookie := serve(t, h, r, nil)
	requirePassed(t, byCookie)
	for _, k := range []string{"http.auth.user.id", "http.auth.user.email", "http.auth.jwt.validator", "http.auth.jwt.partner_id", "http.auth.jwt.claims.email", "http.auth.jwt.claims.exp"} {
		want, _ := byHeader.placeholder(k)
		got, ok := byCookie.placeholder(k)
		if !ok || got != want || got == "" {
			t.Errorf("{%s}: %q by cookie, %q by header", k, got, want)
		}
	}
	if got := byCookie.seen.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "alice" {
		t.Fatalf("X-User-Id %q", got)
	}
	// not re-extended: a cookie-authenticated request sets no cookie
	if got := byCookie.w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("Set-Cookie on a cookie-authenticated request: %q", got)
	}
	// nor does a header request with the same token that already has it
	r = bearerRequest(tok)
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	res := serve(t, h, r, nil)
	requirePassed(t, res)
	if got := res.w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("Set-Cookie when the request carries the cookie for this token: %q", got)
	}
}

func TestCookieHeaderWins(t *testing.T) {
	h, clock := newCookieHandler(t, &CookieConfig{}, &Handler{})
	c := loginByHeader(t, h, hs256(t, userClaims("alice", nil)))

	r := bearerRequest(hs256(t, userClaims("bob", nil)))
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	res := serve(t, h, r, nil)
	requirePassed(t, res)
	if id, _ := res.placeholder("http.auth.user.id"); id != "bob" {
		t.Fatalf("user %q: the cookie won over the header", id)
	}
	if nc := responseCookie(t, res, c.Name); nc == nil || nc.Value == c.Value {
		t.Fatal("no new cookie for the header's user")
	}

	// a bad header is not rescued by a good cookie
	r = bearerRequest(flipSignature(hs256(t, userClaims("bob", nil))))
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	requireRefused(t, serve(t, h, r, nil), http.StatusUnauthorized, "invalid")

	// nor an expired header
	clock.Add(time.Minute)
	r = bearerRequest(hs256(t, userClaims("bob", map[string]any{"exp": testNow.Add(-time.Hour).Unix()})))
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	requireRefused(t, serve(t, h, r, nil), http.StatusUnauthorized, "expired")
}

func TestCookieExpiry(t *testing.T) {
	h, clock := newCookieHandler(t, &CookieConfig{}, &Handler{})
	tok := hs256(t, userClaims("alice", nil)) // exp = testNow + 1h; leeway 30s
	c := loginByHeader(t, h, tok)

	clock.Add(time.Hour - time.Second)
	requirePassed(t, serve(t, h, cookieRequest(http.MethodGet, c), nil))

	clock.Add(2 * time.Second) // 1s past exp: inside the token's leeway
	requirePassed(t, serve(t, h, bearerRequest(tok), nil))
	res := serve(t, h, cookieRequest(http.MethodGet, c), nil)
	requireRefused(t, res, http.StatusUnauthorized, "expired")
	if got := res.w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q", got)
	}

	// max_age is enforced by the server too, not only by the browser
	h, clock = newCookieHandler(t, &CookieConfig{MaxAge: caddy.Duration(10 * time.Minute)}, &Handler{})
	c = loginByHeader(t, h, hs256(t, userClaims("alice", nil)))
	clock.Add(10*time.Minute - time.Second)
	requirePassed(t, serve(t, h, cookieRequest(http.MethodGet, c), nil))
	clock.Add(time.Second)
	requireRefused(t, serve(t, h, cookieRequest(http.MethodGet, c), nil), http.StatusUnauthorized, "expired")
}

func TestCookieTampered(t *testing.T) {
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{Public: true})
	c := loginByHeader(t, h, hs256(t, userClaims("alice", nil)))
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		t.Fatalf("cookie value has %d parts", len(parts))
	}
	eve := userClaims("eve", nil)
	evePayload := strings.Split(hs256(t, eve), ".")[1]
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tampered := map[string]string{
		"payload swapped":    evePayload + "." + parts[1] + "." + parts[2],
		"payload bit":        flip(parts[0], 5) + "." + parts[1] + "." + parts[2],
		"expiry extended":    parts[0] + ".99999999999." + parts[2],
		"mac flipped":        parts[0] + "." + parts[1] + "." + flip(parts[2], 3),
		"mac dropped":        parts[0] + "." + parts[1],
		"mac empty":          parts[0] + "." + parts[1] + ".",
		"only payload":       parts[0],
		"empty":              "",
		"dots":               "..",
		"padded mac":         c.Value + "=",
		"oversized":          strings.Repeat("A", 5000) + "." + parts[1] + "." + parts[2],
		"bearer token":       hs256(t, userClaims("alice", nil)),
		"non-numeric expiry": parts[0] + ".soon." + parts[2],
	}
	for name, val := range tampered {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
			r.Header.Set("Cookie", "__Host-jwtauth="+val)
			res := serve(t, h, r, nil)
			if val == "" { // an empty cookie is no cookie: anonymous in public mode
				requirePassed(t, res)
				if _, ok := res.placeholder("http.auth.user.id"); ok {
					t.Fatal("empty cookie authenticated")
				}
				return
			}
			requireRefused(t, res, http.StatusUnauthorized, "invalid")
		})
	}
	// untouched, it passes
	res := serve(t, h, cookieRequest(http.MethodGet, c), nil)
	requirePassed(t, res)
	if id, _ := res.placeholder("http.auth.user.id"); id != "alice" {
		t.Fatalf("user %q", id)
	}
}

func TestCookieBoundToValidator(t *testing.T) {
	clock := newTestClock()
	mk := func(name string) *Validator {
		v := hsValidator() // same secret, iss and aud
		v.Cookie = &CookieConfig{Name: name}
		return v
	}
	a := provisionApp(t, clock.Now, map[string]*Validator{"ck-a": mk("__Host-a"), "ck-b": mk("__Host-b")})
	ha := provisionHandler(t, a, &Handler{Validators: []string{"ck-a"}})
	hb := provisionHandler(t, a, &Handler{Validators: []string{"ck-b"}})
	hab := provisionHandler(t, a, &Handler{Validators: []string{"ck-b", "ck-a"}})

	c := loginByHeader(t, ha, hs256(t, userClaims("alice", nil)))
	requirePassed(t, serve(t, ha, cookieRequest(http.MethodGet, c), nil))
	// the same value under B's cookie name: the MAC binds it to A (same key)
	forged := &http.Cookie{Name: "__Host-b", Value: c.Value}
	requireRefused(t, serve(t, hb, cookieRequest(http.MethodGet, forged), nil), http.StatusUnauthorized, "invalid")
	// a handler listing both finds the validator that minted it
	res := serve(t, hab, cookieRequest(http.MethodGet, c), nil)
	requirePassed(t, res)
	if name, _ := res.placeholder("http.auth.jwt.validator"); name != "ck-a" {
		t.Fatalf("validator %q", name)
	}
}

func TestCookieCrossOrigin(t *testing.T) {
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{})
	tok := hs256(t, userClaims("alice", nil))
	c := loginByHeader(t, h, tok)

	tests := []struct {
		name    string
		method  string
		cookie  bool
		header  bool
		headers map[string]string
		want    int // 0: passes
	}{
		{"cross-site POST by cookie", http.MethodPost, true, false, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site POST by cookie", http.MethodPost, true, false, map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"cross-site DELETE by cookie", http.MethodDelete, true, false, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign Origin PUT by cookie", http.MethodPut, true, false, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"foreign Origin PATCH by cookie", http.MethodPatch, true, false, map[string]string{"Origin": "http://example.com.evil.example"}, http.StatusForbidden},
		{"same-origin POST by cookie", http.MethodPost, true, false, map[string]string{"Sec-Fetch-Site": "same-origin"}, 0},
		{"matching Origin POST by cookie", http.MethodPost, true, false, map[string]string{"Origin": "https://example.com"}, 0},
		{"non-browser POST by cookie", http.MethodPost, true, false, nil, 0},
		{"cross-site GET by cookie", http.MethodGet, true, false, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 0},
		{"cross-site HEAD by cookie", http.MethodHead, true, false, map[string]string{"Sec-Fetch-Site": "cross-site"}, 0},
		{"cross-site POST by header", http.MethodPost, false, true, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 0},
		{"cross-site POST by header with cookie", http.MethodPost, true, true, map[string]string{"Sec-Fetch-Site": "cross-site"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://example.com/app", nil)
			if tt.cookie {
				r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			}
			if tt.header {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			res := serve(t, h, r, nil)
			if tt.want == 0 {
				requirePassed(t, res)
				return
			}
			requireRefused(t, res, tt.want, "forbidden")
			if !strings.Contains(res.err.Error(), "cross-origin") {
				t.Fatalf("err %v", res.err)
			}
		})
	}

	// a token read from a cookie source is just as ambient
	v := hsValidator()
	v.Sources = []TokenSource{{From: "cookie", Name: "access_token"}}
	hc, _ := newHandler(t, newTestClock(), "test", v, &Handler{})
	r := httptest.NewRequest(http.MethodPost, "https://example.com/app", nil)
	r.AddCookie(&http.Cookie{Name: "access_token", Value: tok})
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	requireRefused(t, serve(t, hc, r, nil), http.StatusForbidden, "forbidden")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	res := serve(t, hc, r, nil)
	requirePassed(t, res)
	if got := res.w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("identity cookie set for a token that came from a cookie: %q", got)
	}
}

func TestCookieOnlyAfterHeaderSources(t *testing.T) {
	clock := newTestClock()
	v := hsValidator()
	v.Cookie = &CookieConfig{}
	v.Sources = []TokenSource{{From: "header", Name: "Authorization", Prefix: "Bearer"}, {From: "query", Name: "token"}}
	h, _ := newHandler(t, clock, "test", v, &Handler{})
	tok := hs256(t, userClaims("alice", nil))
	res := serve(t, h, httptest.NewRequest(http.MethodGet, "https://example.com/?token="+tok, nil), nil)
	requirePassed(t, res)
	if got := res.w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("identity cookie set after a query token: %q", got)
	}
}

func TestCookieStripToken(t *testing.T) {
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{StripToken: true})
	c := loginByHeader(t, h, hs256(t, userClaims("alice", nil)))
	r := cookieRequest(http.MethodGet, c)
	r.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
	res := serve(t, h, r, nil)
	requirePassed(t, res)
	if _, err := res.seen.Cookie(c.Name); err == nil {
		t.Fatal("identity cookie passed on with strip_token")
	}
	if tc, err := res.seen.Cookie("theme"); err != nil || tc.Value != "dark" {
		t.Fatal("other cookie lost")
	}
}

func TestCookieWithoutKey(t *testing.T) {
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{})
	tok := hs256(t, userClaims("alice", nil))
	c := loginByHeader(t, h, tok)
	v := h.validators[0]
	key := v.cookieKey
	v.cookieKey = nil
	t.Cleanup(func() { v.cookieKey = key })
	// with no key nothing is minted and nothing verifies, not even a
	// cookie MACed with the empty key
	id, err := v.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if v.identityCookie(id, testNow) != nil {
		t.Fatal("cookie minted without a key")
	}
	if _, err := v.verifyCookie(c.Value); err == nil {
		t.Fatal("cookie verified without a key")
	}
	p := id.payloadB64
	forged := p + ".99999999999." + b64.EncodeToString(cookieMAC(nil, v.name, p, "99999999999"))
	if _, err := v.verifyCookie(forged); err == nil {
		t.Fatal("cookie MACed with an empty key accepted")
	}
}

func TestCookieKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "jwtauth", "cookie.key")
	key, err := loadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("key of %d bytes", len(key))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("key directory mode %v (%v)", di.Mode().Perm(), err)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(onDisk, key) {
		t.Fatal("returned key differs from the file")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}

	// second start: the same key
	again, err := loadOrCreateKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("second start: %v, same key %v", err, bytes.Equal(again, key))
	}
	// a key from another start would differ
	other, err := loadOrCreateKey(filepath.Join(t.TempDir(), "cookie.key"))
	if err != nil || bytes.Equal(other, key) {
		t.Fatalf("independent keys are equal (%v)", err)
	}

	// a too-short file is refused, not extended or replaced
	short := filepath.Join(t.TempDir(), "cookie.key")
	if err := os.WriteFile(short, []byte("only-16-bytes..."), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateKey(short); err == nil || !strings.Contains(err.Error(), "shorter than 32 bytes") {
		t.Fatalf("short key: %v", err)
	}
	if b, _ := os.ReadFile(short); string(b) != "only-16-bytes..." {
		t.Fatal("short key file rewritten")
	}

}

// TestCookieKeyPersisted starts the app twice without cookie_secret, as two
// starts of Caddy: the key is created in Caddy's data directory once, at
// the first Start (Provision alone, as `caddy validate`, creates nothing),
// and a cookie from the first start authenticates after the second.
func TestCookieKeyPersisted(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	path := filepath.Join(data, "caddy", "jwtauth", "cookie.key")
	start := func() *Handler {
		v := hsValidator()
		v.Cookie = &CookieConfig{}
		a := &App{Validators: map[string]*Validator{"test": v}}
		a.now = newTestClock().Now
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(func() { _ = a.Cleanup(); cancel() })
		if err := a.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		return provisionHandler(t, a, &Handler{Validators: []string{"test"}})
	}
	validate := func() {
		v := hsValidator()
		v.Cookie = &CookieConfig{}
		a := &App{Validators: map[string]*Validator{"test": v}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		if err := a.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		_ = a.Cleanup()
	}
	validate()
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Provision created %s: %v", filepath.Dir(path), err)
	}
	h1 := start()
	c := loginByHeader(t, h1, hs256(t, userClaims("alice", nil)))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
	h2 := start()
	res := serve(t, h2, cookieRequest(http.MethodGet, c), nil)
	requirePassed(t, res)
	if id, _ := res.placeholder("http.auth.user.id"); id != "alice" {
		t.Fatalf("user %q", id)
	}
	if err := os.WriteFile(path, make([]byte, 31), 0o600); err != nil {
		t.Fatal(err)
	}
	// a key file that exists is checked at Provision
	v := hsValidator()
	v.Cookie = &CookieConfig{}
	if err := provisionErr(t, &App{Validators: map[string]*Validator{"test": v}}); err == nil || !strings.Contains(err.Error(), "shorter than 32 bytes") {
		t.Fatalf("a short cookie.key: %v", err)
	}
	if err := os.WriteFile(path, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	h3 := start() // a new key: old cookies are void
	requireRefused(t, serve(t, h3, cookieRequest(http.MethodGet, c), nil), http.StatusUnauthorized, "invalid")
}

// Two identity cookies of one name (one may have been tossed in from a
// sibling subdomain) are ambiguous: 400 invalid_request, whichever comes
// first, as for from_cookie sources. Two copies of one value are not.
func TestCookieDuplicateIdentityCookie(t *testing.T) {
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{})
	alice := loginByHeader(t, h, hs256(t, userClaims("alice", nil)))
	bob := loginByHeader(t, h, hs256(t, userClaims("bob", nil)))
	for _, order := range [][]*http.Cookie{{alice, bob}, {bob, alice}} {
		r := httptest.NewRequest(http.MethodGet, "https://example.com/app", nil)
		r.Header.Set("Cookie", order[0].Name+"="+order[0].Value+"; "+order[1].Name+"="+order[1].Value)
		res := serve(t, h, r, nil)
		requireRefused(t, res, http.StatusBadRequest, "malformed")
		if got := res.w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_request"`) {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	}
	// in two Cookie headers
	r := httptest.NewRequest(http.MethodGet, "https://example.com/app", nil)
	r.Header["Cookie"] = []string{alice.Name + "=" + alice.Value, bob.Name + "=" + bob.Value}
	requireRefused(t, serve(t, h, r, nil), http.StatusBadRequest, "malformed")

	r = httptest.NewRequest(http.MethodGet, "https://example.com/app", nil)
	r.Header.Set("Cookie", alice.Name+"="+alice.Value+"; "+alice.Name+"="+alice.Value)
	res := serve(t, h, r, nil)
	requirePassed(t, res)
	if id, _ := res.placeholder("http.auth.user.id"); id != "alice" {
		t.Fatalf("user %q", id)
	}
}

// observeValidator routes the validator's log into an observer.
func observeValidator(t *testing.T, v *Validator) *observer.ObservedLogs {
	core, logs := observer.New(zapcore.WarnLevel)
	old := v.logger
	v.logger = zap.New(core)
	t.Cleanup(func() { v.logger = old })
	return logs
}

// An identity cookie whose Set-Cookie line (name, value, attributes) is
// over the 4096 bytes browsers keep is not set, and that is logged at Warn
// with its size: once per validator per hour, not on every login.
func TestCookieTooLargeWarned(t *testing.T) {
	h, clock := newCookieHandler(t, &CookieConfig{}, &Handler{})
	v := h.validators[0]
	logs := observeValidator(t, v)
	big := hs256(t, userClaims("alice", map[string]any{"pad": strings.Repeat("x", 3000)}))
	for i := 0; i < 3; i++ {
		res := serve(t, h, bearerRequest(big), nil)
		requirePassed(t, res)
		if got := res.w.Header().Values("Set-Cookie"); len(got) != 0 {
			t.Fatalf("oversized cookie set: %d bytes", len(got[0]))
		}
	}
	warns := logs.FilterMessageSnippet("identity cookie").All()
	if len(warns) != 1 {
		t.Fatalf("%d warnings for 3 oversized cookies: %v", len(warns), logs.All())
	}
	f := warns[0].ContextMap()
	if size, _ := f["size"].(int64); f["validator"] != "web" || size <= 4096 || f["limit"] != int64(4096) {
		t.Fatalf("fields %v", f)
	}
	if strings.Contains(fmt.Sprint(f), big) || strings.Contains(fmt.Sprint(f), strings.Repeat("x", 100)) {
		t.Fatal("the token or its claims were logged")
	}
	clock.Add(61 * time.Minute)
	requirePassed(t, serve(t, h, bearerRequest(hs256(t, userClaims("alice", map[string]any{"pad": strings.Repeat("x", 3000), "exp": clock.Now().Add(time.Hour).Unix()}))), nil))
	if n := logs.FilterMessageSnippet("identity cookie").Len(); n != 2 {
		t.Fatalf("%d warnings an hour later, want 2", n)
	}
	// a cookie that fits is set as before
	loginByHeader(t, h, hs256(t, userClaims("alice", map[string]any{"pad": strings.Repeat("x", 2000), "exp": clock.Now().Add(time.Hour).Unix()})))
}

// A Secure identity cookie set in answer to a plain-HTTP request will never
// come back from the browser: Warn once. Not for an insecure cookie, nor
// behind a trusted proxy that says the client used https.
func TestCookieSecureOverPlainHTTPWarned(t *testing.T) {
	plain := func(tok string, vars map[string]any, hdr ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		if vars != nil {
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
		}
		return r
	}
	h, _ := newCookieHandler(t, &CookieConfig{}, &Handler{})
	logs := observeValidator(t, h.validators[0])
	tok := hs256(t, userClaims("alice", nil))
	trusted := map[string]any{caddyhttp.TrustedProxyVarKey: true}
	requirePassed(t, serve(t, h, bearerRequest(tok), nil))
	requirePassed(t, serve(t, h, plain(tok, trusted, "X-Forwarded-Proto", "https"), nil))
	if n := logs.Len(); n != 0 {
		t.Fatalf("warnings for https requests: %v", logs.All())
	}
	for i := 0; i < 3; i++ {
		res := serve(t, h, plain(tok, nil, "X-Forwarded-Proto", "https"), nil) // untrusted: ignored
		requirePassed(t, res)
		if len(res.w.Header().Values("Set-Cookie")) != 1 {
			t.Fatal("cookie not set on plain HTTP")
		}
	}
	warns := logs.FilterMessageSnippet("plain-HTTP").All()
	if len(warns) != 1 || warns[0].ContextMap()["validator"] != "web" || logs.Len() != 1 {
		t.Fatalf("warnings %v", logs.All())
	}

	hi, _ := newCookieHandler(t, &CookieConfig{Name: "dev", Insecure: true}, &Handler{})
	logs = observeValidator(t, hi.validators[0])
	requirePassed(t, serve(t, hi, plain(tok, nil), nil))
	if logs.Len() != 0 {
		t.Fatalf("warning for an insecure cookie: %v", logs.All())
	}
}
