package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// testNow is the pinned clock of every unit test.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const testSecret = "0123456789abcdef0123456789abcdef" // 32 bytes

// testClock is a settable clock for tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: testNow} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// provisionApp provisions an app with the given validators, a pinned clock
// and a fixed cookie secret.
func provisionApp(t testing.TB, clock func() time.Time, validators map[string]*Validator) *App {
	t.Helper()
	a := &App{Validators: validators, CookieSecret: "cookie-secret-cookie-secret-0123456789"}
	a.now = clock
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() { _ = a.Stop(); _ = a.Cleanup(); cancel() })
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	return a
}

// provisionValidator provisions a single validator named "test".
func provisionValidator(t testing.TB, clock func() time.Time, v *Validator) *Validator {
	t.Helper()
	provisionApp(t, clock, map[string]*Validator{"test": v})
	return v
}

// provisionErr returns the provisioning error of a validator.
func provisionErr(v *Validator) error {
	a := &App{Validators: map[string]*Validator{"test": v}}
	a.now = func() time.Time { return testNow }
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := a.Provision(ctx)
	_ = a.Cleanup()
	return err
}

// hsValidator is a minimal HS256 validator config.
func hsValidator() *Validator {
	return &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, Secret: testSecret}
}

// claims returns valid claims at testNow.
func claims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "iss", "aud": "aud", "sub": "alice",
		"exp": testNow.Add(time.Hour).Unix(), "iat": testNow.Add(-time.Minute).Unix(),
	}
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.Claims, hdr map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func hs256(t testing.TB, c jwt.Claims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, nil)
}

// test keys, generated once per test binary
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func testKeys(t testing.TB) {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

// writePEM writes a public key as a PEM file and returns its path.
func writePEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return writePEMBlock(t, "PUBLIC KEY", der)
}

// serveResult is what one pass through the handler produced.
type serveResult struct {
	w      *httptest.ResponseRecorder
	repl   *caddy.Replacer
	err    error
	called bool
	seen   *http.Request // the request as next saw it
}

// status is the HTTP status of the handler's error, or 0 when it passed.
func (res serveResult) status() int {
	if res.err == nil {
		return 0
	}
	var he caddyhttp.HandlerError
	if errors.As(res.err, &he) {
		return he.StatusCode
	}
	return -1
}

func (res serveResult) placeholder(key string) (string, bool) {
	return res.repl.GetString(key)
}

// serve runs h on r with repl (a fresh one when nil) in its context, as
// Caddy's server does, and records whether and with what request next was
// called.
func serve(t testing.TB, h *Handler, r *http.Request, repl *caddy.Replacer) serveResult {
	t.Helper()
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	res := serveResult{w: httptest.NewRecorder(), repl: repl}
	res.err = h.ServeHTTP(res.w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.called = true
		res.seen = r
		return nil
	}))
	return res
}

// requireRefused fails unless the request was refused with status and the
// {http.auth.jwt.error} reason, without calling next.
func requireRefused(t *testing.T, res serveResult, status int, reason string) {
	t.Helper()
	if res.status() != status {
		t.Fatalf("status %d (err %v), want %d", res.status(), res.err, status)
	}
	if res.called {
		t.Fatal("next was called on a refused request")
	}
	if got, _ := res.placeholder("http.auth.jwt.error"); got != reason {
		t.Fatalf("{http.auth.jwt.error} = %q, want %q", got, reason)
	}
	if _, ok := res.placeholder("http.auth.user.id"); ok {
		t.Fatal("{http.auth.user.id} set on a refused request")
	}
}

// requirePassed fails unless next was called without error.
func requirePassed(t *testing.T, res serveResult) {
	t.Helper()
	if res.err != nil || !res.called {
		t.Fatalf("refused: err=%v called=%v WWW-Authenticate=%q", res.err, res.called, res.w.Header().Get("WWW-Authenticate"))
	}
}

// flipSignature changes one character in the middle of a token's signature.
func flipSignature(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// bearerRequest is a GET carrying tok as a Bearer token (none when empty).
func bearerRequest(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

// userClaims returns valid claims at testNow for user sub, with extra claims.
func userClaims(sub string, extra map[string]any) jwt.MapClaims {
	c := claims()
	c["sub"] = sub
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// newHandler provisions an app with one validator named name and a handler
// over it.
func newHandler(t *testing.T, clock *testClock, name string, v *Validator, h *Handler) (*Handler, *Validator) {
	t.Helper()
	a := provisionApp(t, clock.Now, map[string]*Validator{name: v})
	h.Validators = []string{name}
	return provisionHandler(t, a, h), v
}

// provisionHandler provisions a handler over an app.
func provisionHandler(t testing.TB, a *App, h *Handler) *Handler {
	t.Helper()
	if err := h.setup(a, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	return h
}

// rawObject is an ordered JSON object of raw members, so tests can build payloads
// that encoding/json would never produce: duplicate keys, escaped keys,
// case variants.
type rawObject [][2]string

// rawPayload is a valid payload at testNow.
func rawPayload() rawObject {
	return rawObject{
		{"iss", `"iss"`}, {"aud", `"aud"`}, {"sub", `"alice"`},
		{"exp", unixAt(time.Hour)}, {"iat", unixAt(-time.Minute)},
	}
}

// unixAt renders testNow+d as a JSON NumericDate.
func unixAt(d time.Duration) string { return strconv.FormatInt(testNow.Add(d).Unix(), 10) }

// set replaces the first member named k, or appends it.
func (o rawObject) set(k, raw string) rawObject {
	out := append(rawObject{}, o...)
	for i := range out {
		if out[i][0] == k {
			out[i][1] = raw
			return out
		}
	}
	return append(out, [2]string{k, raw})
}

// add appends a member even if one of that name exists.
func (o rawObject) add(k, raw string) rawObject {
	return append(append(rawObject{}, o...), [2]string{k, raw})
}

// addRawKey appends a member whose key is written verbatim (with escapes).
func (o rawObject) addRawKey(quotedKey, raw string) rawObject {
	return append(append(rawObject{}, o...), [2]string{"\x00" + quotedKey, raw})
}

func (o rawObject) del(k string) rawObject {
	var out rawObject
	for _, m := range o {
		if m[0] != k {
			out = append(out, m)
		}
	}
	return out
}

func (o rawObject) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		if strings.HasPrefix(m[0], "\x00") {
			b.WriteString(m[0][1:])
		} else {
			b.WriteString(strconv.Quote(m[0]))
		}
		b.WriteByte(':')
		b.WriteString(m[1])
	}
	b.WriteByte('}')
	return b.String()
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signRaw signs an arbitrary header and payload (JSON text, not
// re-encoded) with m and key.
func signRaw(t testing.TB, m jwt.SigningMethod, key any, header, payload string) string {
	t.Helper()
	in := b64url(header) + "." + b64url(payload)
	sig, err := m.Sign(in, key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

const hs256Header = `{"alg":"HS256","typ":"JWT"}`

// ecJWK renders an EC public key as a JWK.
func ecJWK(kid string, k *ecdsa.PrivateKey, alg string) string {
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		panic(err)
	}
	pt := pub.Bytes() // 0x04 || X || Y
	n := (len(pt) - 1) / 2
	return fmt.Sprintf(`{"kty":"EC","crv":%q,"x":%q,"y":%q,"kid":%q,"alg":%q,"use":"sig"}`,
		k.Curve.Params().Name,
		base64.RawURLEncoding.EncodeToString(pt[1:1+n]), base64.RawURLEncoding.EncodeToString(pt[1+n:]), kid, alg)
}

var (
	extraKeysOnce        sync.Once
	ecP384Key, ecP521Key *ecdsa.PrivateKey
	ecP224Key            *ecdsa.PrivateKey
	rsa1024Key           *rsa.PrivateKey
	extraKeysErr         error
)

// extraKeys generates, once, the keys beyond testKeys that the key tests
// need: other curves and a too-short RSA key.
func extraKeys(t testing.TB) {
	t.Helper()
	testKeys(t)
	extraKeysOnce.Do(func() {
		if ecP384Key, extraKeysErr = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); extraKeysErr != nil {
			return
		}
		if ecP521Key, extraKeysErr = ecdsa.GenerateKey(elliptic.P521(), rand.Reader); extraKeysErr != nil {
			return
		}
		if ecP224Key, extraKeysErr = ecdsa.GenerateKey(elliptic.P224(), rand.Reader); extraKeysErr != nil {
			return
		}
		rsa1024Key, extraKeysErr = rsa.GenerateKey(rand.Reader, 1024)
	})
	if extraKeysErr != nil {
		t.Fatal(extraKeysErr)
	}
}

// writePEMBlock writes a PEM block to a temporary file and returns its
// path.
func writePEMBlock(t testing.TB, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// multiSources is a typical multi-source configuration.
func multiSources() []TokenSource {
	s := []TokenSource{
		{From: "header", Name: "Authorization", Prefix: "Bearer"},
		{From: "header", Name: "x-api-token"}, // bare: the whole value
		{From: "cookie", Name: "tok"},
		{From: "query", Name: "access_token"},
	}
	for i := range s {
		s[i].provision()
	}
	return s
}

// jwkSet wraps JWKs in a JWK Set.
func jwkSet(jwks ...string) string { return `{"keys":[` + strings.Join(jwks, ",") + `]}` }

// jwksServer is a JWKS endpoint whose answer tests change, counting requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu       sync.Mutex
	status   int
	body     string
	location string // when set, answer 302 to it
}

func newJWKSServer(t *testing.T, status int, body string) *jwksServer {
	s := &jwksServer{status: status, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body, loc := s.status, s.body, s.location
		s.mu.Unlock()
		if loc != "" {
			http.Redirect(w, r, loc, http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func (s *jwksServer) expectHits(t *testing.T, want int64, when string) {
	t.Helper()
	if got := s.hits.Load(); got != want {
		t.Fatalf("%s: %d fetches, want %d", when, got, want)
	}
}
