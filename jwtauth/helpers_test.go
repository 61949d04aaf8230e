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
	"encoding/json"
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
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// ---- clock and provisioning ----

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

// provisionErr provisions a (at testNow, without starting it), cleans it
// up, and returns the provisioning error.
func provisionErr(t testing.TB, a *App) error {
	t.Helper()
	a.now = func() time.Time { return testNow }
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := a.Provision(ctx)
	if cerr := a.Cleanup(); cerr != nil {
		t.Fatalf("cleanup: %v", cerr)
	}
	return err
}

// hsValidator is a minimal HS256 validator config.
func hsValidator() *Validator {
	return &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, Secret: testSecret}
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

// ---- tokens ----

// unixAt renders testNow+d as a JSON NumericDate.
func unixAt(d time.Duration) string { return strconv.FormatInt(testNow.Add(d).Unix(), 10) }

// claims returns valid claims at testNow.
func claims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "iss", "aud": "aud", "sub": "alice",
		"exp": testNow.Add(time.Hour).Unix(), "iat": testNow.Add(-time.Minute).Unix(),
	}
}

// sign signs c with m and key, adding hdr to the header.
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

// hs256 signs c with the test secret.
func hs256(t testing.TB, c jwt.Claims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, nil)
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

// userClaims returns valid claims at testNow for user sub, with extra claims.
func userClaims(sub string, extra map[string]any) jwt.MapClaims {
	c := claims()
	c["sub"] = sub
	for k, v := range extra {
		c[k] = v
	}
	return c
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

// b64url encodes s as a JWS segment (base64url, no padding).
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

// ---- keys and key files ----

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

// ---- jwt_auth handler ----

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

// bearerRequest is a GET carrying tok as a Bearer token (none when empty).
func bearerRequest(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

// ---- issuer ----

// cheapHashes caches cost-4 bcrypt hashes by password, to keep tests fast.
var cheapHashes sync.Map

// cheapHash is a bcrypt hash of password at the minimum cost.
func cheapHash(t testing.TB, password string) string {
	t.Helper()
	if h, ok := cheapHashes.Load(password); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cheapHashes.Store(password, string(h))
	return string(h)
}

// plainUser is a users-file entry with a plain password, hashed on write.
type plainUser struct {
	login, password, userID string
	disabled                bool
	claims                  string
}

// writeUsers writes a users file of users, their passwords hashed with
// cheapHash.
func writeUsers(t testing.TB, path string, users ...plainUser) {
	t.Helper()
	hashed := []User{}
	for _, u := range users {
		uu := User{Login: u.login, PasswordHash: cheapHash(t, u.password), UserID: json.Number(u.userID), Disabled: u.disabled}
		if u.claims != "" {
			uu.Claims = json.RawMessage(u.claims)
		}
		hashed = append(hashed, uu)
	}
	saveUsers(t, path, hashed...)
}

// saveUsers writes a users file of users as they are, hashes included.
func saveUsers(t testing.TB, path string, users ...User) {
	t.Helper()
	uf := UsersFile{Users: append([]User{}, users...)}
	if err := uf.Save(path); err != nil {
		t.Fatal(err)
	}
}

var defaultUsers = []plainUser{
	{login: "alice", password: "alice-password", userID: "7", claims: `{"email":"alice@example.com","partner_id":70,"roles":["admin"]}`},
	{login: "bob", password: "bob-password", userID: "8"},
}

// issuerEnv is an issuer named "test" with a jwt_issuer handler at /api, a
// validator "api" bound to it with issuer_keys, and a jwt_auth handler
// using that validator.
type issuerEnv struct {
	t     *testing.T
	clock *testClock
	dir   string // store_dir
	users string // users file
	app   *App
	is    *Issuer
	h     *IssuerHandler
	auth  *Handler
	waits waitRecorder // the login slowdowns the issuer applied
	// auditLog, if set, receives the issuer's audit log from the next
	// load on (revocations at start included).
	auditLog *zap.Logger
	// realTime runs the next loads on the real clock (Redis expires keys
	// on it).
	realTime bool
}

func newIssuerEnv(t *testing.T, mutate func(*Issuer)) *issuerEnv {
	t.Helper()
	base := t.TempDir()
	e := &issuerEnv{t: t, clock: newTestClock(), dir: filepath.Join(base, "store"), users: filepath.Join(base, "users.json")}
	writeUsers(t, e.users, defaultUsers...)
	e.load(mutate)
	return e
}

// load provisions a new config (app) over the same store and users file,
// as a reload does; the previous app stays until its test cleanup, or until
// the caller cleans it up.
func (e *issuerEnv) load(mutate func(*Issuer)) *App {
	t := e.t
	t.Helper()
	is := &Issuer{UsersFile: e.users, StoreDir: e.dir}
	if mutate != nil {
		mutate(is)
	}
	v := &Validator{
		IssuerKeys: "test",
		Sources: []TokenSource{
			{From: "header", Name: "Authorization", Prefix: "Bearer"},
			{From: "header", Name: "access_token"},
		},
	}
	a := &App{Issuers: map[string]*Issuer{"test": is}, Validators: map[string]*Validator{"api": v}}
	a.now = e.clock.Now
	if e.realTime {
		a.now = time.Now
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() { _ = a.Stop(); _ = a.Cleanup(); cancel() })
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	is.audit = zap.NewNop() // tests that look at logs observe them
	if e.auditLog != nil {
		is.audit = e.auditLog
	}
	if err := a.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	h := &IssuerHandler{Issuer: "test", Console: true}
	if err := h.setup(is); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	e.app, e.is, e.h = a, is, h
	is.wait = e.waits.wait
	e.auth = provisionHandler(t, a, &Handler{Validators: []string{"api"}})
	return a
}

// count returns the number of live sessions.
func (e *issuerEnv) count() int {
	e.t.Helper()
	n, err := e.is.countSessions(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// live reports whether sid is a live session of the store.
func (e *issuerEnv) live(sid string) bool {
	e.t.Helper()
	_, ok, err := e.store().Get(context.Background(), e.is.policy(), sid, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return ok
}

// store returns the issuer's open session store.
func (e *issuerEnv) store() sessions.Store { return e.is.shared().store }

// kid returns the kid of the issuer's signing key.
func (e *issuerEnv) kid() string { return e.is.run.Load().signer.kid }

// issuerReq describes one request to the issuer handler.
type issuerReq struct {
	method  string // default POST
	path    string // under /api
	body    string
	ctype   string // default application/json; "-" for none
	header  map[string]string
	cookies []*http.Cookie
	ip      string // client IP as Caddy resolved it; default 192.0.2.1
}

type issuerRes struct {
	*httptest.ResponseRecorder
	called bool
	err    error
}

// do sends rq to the jwt_issuer handler.
func (e *issuerEnv) do(rq issuerReq) issuerRes {
	e.t.Helper()
	return e.doWith(rq, nil)
}

// doWith is do with a last change to the request.
func (e *issuerEnv) doWith(rq issuerReq, change func(*http.Request)) issuerRes {
	e.t.Helper()
	if rq.method == "" {
		rq.method = http.MethodPost
	}
	r := httptest.NewRequest(rq.method, "/api"+rq.path, strings.NewReader(rq.body))
	switch rq.ctype {
	case "":
		r.Header.Set("Content-Type", "application/json")
	case "-":
	default:
		r.Header.Set("Content-Type", rq.ctype)
	}
	for k, v := range rq.header {
		r.Header.Set(k, v)
	}
	for _, c := range rq.cookies {
		r.AddCookie(c)
	}
	if rq.ip == "" {
		rq.ip = "192.0.2.1"
	}
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: rq.ip})
	r = r.WithContext(ctx)
	if change != nil {
		change(r)
	}
	res := issuerRes{ResponseRecorder: httptest.NewRecorder()}
	res.err = e.h.ServeHTTP(res, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		res.called = true
		return nil
	}))
	return res
}

// json decodes the response body.
func (res issuerRes) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(res.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", res.Body.String(), err)
	}
	return m
}

// expect fails unless the answer has status and, for errors, the error code.
func (res issuerRes) expect(t testing.TB, status int, code string) map[string]any {
	t.Helper()
	if res.err != nil {
		t.Fatalf("handler error: %v", res.err)
	}
	if res.Code != status {
		t.Fatalf("status %d, want %d; body %s", res.Code, status, res.Body.String())
	}
	if cc := res.Header().Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q", cc)
	}
	m := res.json(t)
	if code != "" && m["error"] != code {
		t.Fatalf("error %v, want %q; body %s", m["error"], code, res.Body.String())
	}
	return m
}

// refreshCookie returns the refresh cookie the response set, or nil.
func (res issuerRes) refreshCookie(name string) *http.Cookie {
	for _, c := range (&http.Response{Header: res.Header()}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// login authenticates and returns the access and refresh tokens.
func (e *issuerEnv) login(login, password string) (access, refresh string) {
	e.t.Helper()
	m := e.do(issuerReq{path: "/authenticate", body: `{"db":"x","login":` + jsonQuote(login) + `,"password":` + jsonQuote(password) + `}`}).expect(e.t, 200, "")
	return m["access_token"].(string), m["refreshToken"].(string)
}

// jsonQuote renders s as a JSON string.
func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// protected calls the jwt_auth handler with an access token and reports
// whether it passed.
func (e *issuerEnv) protected(access string) bool {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/api/protected/json", nil)
	r.Header.Set("access_token", access)
	return serve(e.t, e.auth, r, nil).called
}

// storeFiles returns the contents of every file under the store dir.
func (e *issuerEnv) storeFiles() map[string][]byte {
	e.t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(e.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// refresh asks for a new access token with refresh token rt.
func (e *issuerEnv) refresh(rt string) issuerRes {
	e.t.Helper()
	return e.do(issuerReq{path: "/update/access-token", body: "{}", header: map[string]string{"refreshToken": rt}})
}

// rotate asks for a successor of refresh token rt.
func (e *issuerEnv) rotate(rt, access string) issuerRes {
	e.t.Helper()
	return e.do(issuerReq{path: "/update/refresh-token", body: "{}", header: map[string]string{"refreshToken": rt, "Authorization": "Bearer " + access}})
}

// mustRotate rotates and returns the new refresh token.
func (e *issuerEnv) mustRotate(rt, access string) string {
	e.t.Helper()
	m := e.rotate(rt, access).expect(e.t, 200, "")
	return m["refreshToken"].(string)
}

// sidOf returns the sid claim of an access token (read, not verified: the
// token may be expired or revoked).
func (e *issuerEnv) sidOf(access string) string {
	e.t.Helper()
	parts := strings.Split(access, ".")
	if len(parts) != 3 {
		e.t.Fatalf("not a JWS: %q", access)
	}
	raw, err := b64.DecodeString(parts[1])
	var c struct {
		SID string `json:"sid"`
	}
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil || c.SID == "" {
		e.t.Fatalf("no sid: %v", err)
	}
	return c.SID
}

// failingStore makes every operation of a store fail as a full disk would,
// while fail is set.
type failingStore struct {
	sessions.Store
	fail atomic.Bool
}

func (f *failingStore) err() error {
	if f.fail.Load() {
		return fmt.Errorf("%w: write sessions.db: %w", sessions.ErrUnavailable, syscall.ENOSPC)
	}
	return nil
}

func (f *failingStore) Create(ctx context.Context, p sessions.Policy, n sessions.New, now time.Time) (sessions.Session, string, []sessions.Revocation, error) {
	if err := f.err(); err != nil {
		return sessions.Session{}, "", nil, err
	}
	return f.Store.Create(ctx, p, n, now)
}

func (f *failingStore) Find(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Session, []sessions.Revocation, error) {
	if err := f.err(); err != nil {
		return sessions.Session{}, nil, err
	}
	return f.Store.Find(ctx, p, tok, now)
}

func (f *failingStore) Use(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Session, []sessions.Revocation, error) {
	if err := f.err(); err != nil {
		return sessions.Session{}, nil, err
	}
	return f.Store.Use(ctx, p, tok, now)
}

func (f *failingStore) Rotate(ctx context.Context, p sessions.Policy, tok, sid string, now time.Time) (sessions.Session, string, []sessions.Revocation, error) {
	if err := f.err(); err != nil {
		return sessions.Session{}, "", nil, err
	}
	return f.Store.Rotate(ctx, p, tok, sid, now)
}

func (f *failingStore) Revoke(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Revocation, bool, error) {
	if err := f.err(); err != nil {
		return sessions.Revocation{}, false, err
	}
	return f.Store.Revoke(ctx, p, tok, now)
}

// failStore puts a failingStore in front of the issuer's store.
func (e *issuerEnv) failStore() *failingStore {
	ss := e.is.shared()
	f := &failingStore{Store: ss.store}
	ss.store = f
	e.t.Cleanup(func() { ss.store = f.Store })
	return f
}

// status serves a request with the access token through jwt_auth.
func (e *issuerEnv) status(access string) (int, http.Header) {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/api/protected/json", nil)
	r.Header.Set("access_token", access)
	res := serve(e.t, e.auth, r, nil)
	w, err := res.w, res.err
	code := http.StatusOK
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		code = he.StatusCode
	}
	return code, w.Header()
}

// waitRecorder stands in for the issuer's wait: it records each slowdown
// and returns at once, or fails when told to (a client that went away).
type waitRecorder struct {
	mu    sync.Mutex
	got   []time.Duration
	abort bool
}

func (w *waitRecorder) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, d)
	if w.abort {
		return context.Canceled
	}
	return ctx.Err()
}

// take returns and forgets the recorded waits.
func (w *waitRecorder) take() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.got
	w.got = nil
	return got
}

// ---- files and the CLI ----

// jwtauthRoot builds the registered `caddy jwtauth` command tree, exactly as
// caddy's main does.
func jwtauthRoot(t *testing.T) *cobra.Command {
	t.Helper()
	c, ok := caddycmd.Commands()["jwtauth"]
	if !ok {
		t.Fatal("the jwtauth command is not registered")
	}
	root := &cobra.Command{Use: "jwtauth"}
	c.CobraFunc(root)
	return root
}

// withStdin runs fn with os.Stdin reading input from a pipe (not a
// terminal, so the command reads one line as `caddy hash-password` does).
func withStdin(t *testing.T, input string, fn func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString(input); err != nil {
		t.Fatal(err)
	}
	w.Close()
	orig := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = orig; r.Close() }()
	fn()
}

// runCmd parses args with the flags of the registered subcommand they name
// and calls fn with them, feeding stdin.
func runCmd(t *testing.T, fn caddycmd.CommandFunc, stdin string, args ...string) error {
	t.Helper()
	sub, rest, err := jwtauthRoot(t).Find(args)
	if err != nil {
		t.Fatalf("find %v: %v", args, err)
	}
	if err := sub.ParseFlags(rest); err != nil {
		return err
	}
	var runErr error
	withStdin(t, stdin, func() {
		code, err := fn(caddycmd.Flags{FlagSet: sub.Flags()})
		if (err == nil) != (code == 0) {
			t.Errorf("%v: exit code %d with error %v", args, code, err)
		}
		runErr = err
	})
	return runErr
}

// verifies reports whether password matches u's stored hash.
func verifies(t *testing.T, u *User, password string) bool {
	t.Helper()
	cmp, err := hashKind(u.PasswordHash)
	if err != nil {
		t.Fatalf("user %q: %v", u.Login, err)
	}
	ok, err := cmp.Compare([]byte(u.PasswordHash), []byte(password))
	if err != nil {
		t.Fatalf("user %q: compare: %v", u.Login, err)
	}
	return ok
}

// checkMode fails unless path has exactly the permission bits want.
func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s has mode %o, want %o", path, fi.Mode().Perm(), want)
	}
}
