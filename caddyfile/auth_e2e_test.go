package caddyfile_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/golang-jwt/jwt/v5"
)

// End-to-end tests of jwt_auth in a real Caddy (caddytest runs it in this
// process, admin on localhost:2999). Ports: 9100 (HTTP), 9101 (HTTPS, the
// protected site), 9102 (the backend) and 9103 (a plain-HTTP site that
// lets underscore headers through). They run on the real clock, so
// tokens expire a day from now.

const (
	e2eSecret = "e2e-secret-0123456789abcdef-0123456789"
	e2eSite   = "https://caddy.localhost:9101"
)

// The backend echoes what reached it; the protected site proxies to it.
// The site serves a certificate the test makes (SITE_CERT and SITE_KEY are
// replaced by e2eLoad; caddytest's client does not verify it): one issued by
// Caddy at start-up would race the first request.
const e2eConfig = `{
	admin localhost:2999
	http_port 9100
	https_port 9101
	grace_period 1ns
	skip_install_trust
	# Caddy drops request headers with underscores unless allowed (and then
	# drops their hyphenated spelling): allow them on :9103, so that there
	# jwt_auth alone keeps the underscore spellings out, as it keeps the
	# hyphenated ones out on :9101.
	servers :9103 {
		expected_underscore_headers x_user_id x_user_email
	}
	jwtauth {
		cookie_secret e2e-cookie-secret-0123456789abcdef
		validator web {
			issuer https://id.e2e.test
			audience web
			secret ` + e2eSecret + `
			cookie
		}
		validator api {
			issuer https://id.e2e.test
			audience web
			secret ` + e2eSecret + `
		}
	}
}

https://caddy.localhost:9101 {
	tls SITE_CERT SITE_KEY
	handle /public/* {
		jwt_auth api {
			public
			forward_claim sub X-User-Id
			forward_claim email X-User-Email
			forward_payload X-Jwt-Payload
		}
		reverse_proxy 127.0.0.1:9102
	}
	handle {
		jwt_auth web {
			forward_claim sub X-User-Id
			forward_claim email X-User-Email
			forward_payload X-Jwt-Payload
		}
		reverse_proxy 127.0.0.1:9102
	}
}

http://localhost:9103 {
	jwt_auth api {
		public
		forward_claim sub X-User-Id
		forward_claim email X-User-Email
	}
	# the backend's server drops underscore headers: show it what the
	# proxy would send
	reverse_proxy 127.0.0.1:9102 {
		header_up X-Seen-Under "{http.request.header.x_user_id}|{http.request.header.x_user_email}"
	}
}

http://:9102 {
	respond "user={http.request.header.X-User-Id} email={http.request.header.X-User-Email} under={http.request.header.X-Seen-Under} payload={http.request.header.X-Jwt-Payload} auth={http.request.header.Authorization}"
}
`

// e2eLoad starts the config and unloads it when the test ends, which frees
// its ports for the next test.
func e2eLoad(t *testing.T, config string) *caddytest.Tester {
	t.Helper()
	hermeticHome(t)
	if strings.Contains(config, "SITE_CERT") {
		cert, key := e2eCertificate(t)
		config = strings.NewReplacer("SITE_CERT", cert, "SITE_KEY", key).Replace(config)
	}
	tc := caddytest.NewTester(t)
	tc.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		res, err := http.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader("{\n\tadmin localhost:2999\n}\n"))
		if err != nil {
			t.Errorf("unloading: %v", err)
			return
		}
		res.Body.Close()
	})
	return tc
}

// e2eCertificate writes a self-signed certificate for caddy.localhost. The
// files end in .pem: caddytest rewrites paths ending in .crt or .key.
func e2eCertificate(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "caddy.localhost"},
		DNSNames:     []string{"caddy.localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "site-cert.pem"), filepath.Join(dir, "site-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func e2eToken(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://id.e2e.test", "aud": "web", "sub": sub, "email": sub + "@example.com",
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
	}).SignedString([]byte(e2eSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// e2eDo sends a request with the tester's client (and its cookie jar) to
// path on e2eSite, or to path when it is a URL; headers alternate name and
// value, and are set verbatim.
func e2eDo(t *testing.T, c *http.Client, method, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = e2eSite + path
	}
	res, b, err := e2eSend(c, method, path, "", headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res, b
}

func e2eExpect(t *testing.T, c *http.Client, want int, method, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	res, body := e2eDo(t, c, method, path, headers...)
	if res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; WWW-Authenticate %q; body %q", method, path, res.StatusCode, want, res.Header.Get("WWW-Authenticate"), body)
	}
	return res, body
}

// e2eField returns NAME's value in the backend's echo "a=1 b=2 ...".
func e2eField(t *testing.T, body, name string) string {
	t.Helper()
	for _, f := range strings.Fields(body) {
		if k, v, ok := strings.Cut(f, "="); ok && k == name {
			return v
		}
	}
	t.Fatalf("no %s= in backend echo %q", name, body)
	return ""
}

func TestE2ERequiredAndPublic(t *testing.T) {
	tc := e2eLoad(t, e2eConfig)
	c := tc.Client
	alice := e2eToken(t, "alice")

	// required mode
	res, _ := e2eExpect(t, c, http.StatusUnauthorized, "GET", "/")
	if got := res.Header.Get("WWW-Authenticate"); got != `Bearer realm="restricted"` {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	res, _ = e2eExpect(t, c, http.StatusUnauthorized, "GET", "/", "Authorization", "Bearer "+alice[:len(alice)-4]+"AAAA")
	if got := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="restricted", error="invalid_token", error_description=`) {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	_, body := e2eExpect(t, c, http.StatusOK, "GET", "/", "Authorization", "Bearer "+alice)
	if e2eField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}

	// public mode
	_, body = e2eExpect(t, c, http.StatusOK, "GET", "/public/page")
	if e2eField(t, body, "user") != "" {
		t.Fatalf("anonymous request reached the backend as %q", body)
	}
	e2eExpect(t, c, http.StatusUnauthorized, "GET", "/public/page", "Authorization", "Bearer not.a.token")
	e2eExpect(t, c, http.StatusUnauthorized, "GET", "/public/page", "Authorization", "Bearer "+alice[:len(alice)-4]+"AAAA")
	_, body = e2eExpect(t, c, http.StatusOK, "GET", "/public/page", "Authorization", "Bearer "+alice)
	if e2eField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}
}

func TestE2EForwardedHeaders(t *testing.T) {
	tc := e2eLoad(t, e2eConfig)
	c := tc.Client
	alice := e2eToken(t, "alice")
	// Caddy drops x_user_id itself here; jwt_auth must drop the rest
	spoof := []string{"X-User-Id", "eve", "X-USER-ID", "mallory", "X-User-Email", "eve@evil.example", "X-Jwt-Payload", "e30"}

	_, body := e2eExpect(t, c, http.StatusOK, "GET", "/", append([]string{"Authorization", "Bearer " + alice}, spoof...)...)
	// spoofed copies would be joined: "alice,eve,mallory"
	if got := e2eField(t, body, "user"); got != "alice" {
		t.Fatalf("backend's X-User-Id %q: %q", got, body)
	}
	if got := e2eField(t, body, "email"); got != "alice@example.com" {
		t.Fatalf("backend's X-User-Email %q: %q", got, body)
	}
	payload, err := base64.RawURLEncoding.DecodeString(e2eField(t, body, "payload"))
	if err != nil {
		t.Fatalf("payload header: %v in %q", err, body)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims["sub"] != "alice" || claims["iss"] != "https://id.e2e.test" {
		t.Fatalf("payload %s (%v)", payload, err)
	}
	// without strip_token the token goes on to the backend
	if got := e2eField(t, body, "auth"); got != "Bearer" {
		t.Fatalf("Authorization at the backend: %q", got)
	}

	// the public, anonymous path strips the spoofed headers too
	_, body = e2eExpect(t, c, http.StatusOK, "GET", "/public/x", spoof...)
	if e2eField(t, body, "user") != "" || e2eField(t, body, "email") != "" || e2eField(t, body, "payload") != "" {
		t.Fatalf("spoofed identity reached the backend anonymously: %q", body)
	}

	// where Caddy lets underscore spellings through, jwt_auth drops them,
	// authenticated or anonymous
	under := []string{"x_user_id", "eve", "x_user_email", "eve@evil.example"}
	_, body = e2eExpect(t, c, http.StatusOK, "GET", "http://localhost:9103/", append([]string{"Authorization", "Bearer " + alice}, under...)...)
	if e2eField(t, body, "user") != "alice" || e2eField(t, body, "email") != "alice@example.com" || e2eField(t, body, "under") != "|" {
		t.Fatalf("backend saw %q", body)
	}
	_, body = e2eExpect(t, c, http.StatusOK, "GET", "http://localhost:9103/", under...)
	if e2eField(t, body, "user") != "" || e2eField(t, body, "email") != "" || e2eField(t, body, "under") != "|" {
		t.Fatalf("backend saw %q", body)
	}
}

func TestE2ECookieMode(t *testing.T) {
	tc := e2eLoad(t, e2eConfig)
	c := tc.Client
	site, _ := url.Parse(e2eSite + "/")
	alice, bob := e2eToken(t, "alice"), e2eToken(t, "bob")

	// 1. header authentication sets the identity cookie
	res, body := e2eExpect(t, c, http.StatusOK, "GET", "/", "Authorization", "Bearer "+alice)
	if e2eField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}
	set := res.Header.Values("Set-Cookie")
	if len(set) != 1 {
		t.Fatalf("Set-Cookie %q", set)
	}
	for _, attr := range []string{"__Host-jwtauth=", "; Path=/", "; Max-Age=", "; HttpOnly", "; Secure", "; SameSite=Strict"} {
		if !strings.Contains(set[0], attr) {
			t.Errorf("Set-Cookie %q lacks %q", set[0], attr)
		}
	}
	jar := c.Jar.Cookies(site)
	if len(jar) != 1 || jar[0].Name != "__Host-jwtauth" {
		t.Fatalf("cookie jar %v", jar)
	}

	// 2. the cookie alone authenticates, and is not re-set
	res, body = e2eExpect(t, c, http.StatusOK, "GET", "/")
	if e2eField(t, body, "user") != "alice" {
		t.Fatalf("cookie request reached the backend as %q", body)
	}
	if got := res.Header.Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("cookie re-set on a cookie request: %q", got)
	}

	// 3. cross-origin unsafe requests carried by the cookie are refused
	res, _ = e2eExpect(t, c, http.StatusForbidden, "POST", "/", "Origin", "https://evil.example")
	if got := res.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_request"`) {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	e2eExpect(t, c, http.StatusForbidden, "POST", "/", "Sec-Fetch-Site", "cross-site")
	e2eExpect(t, c, http.StatusForbidden, "DELETE", "/", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	_, body = e2eExpect(t, c, http.StatusOK, "POST", "/", "Origin", e2eSite, "Sec-Fetch-Site", "same-origin")
	if e2eField(t, body, "user") != "alice" {
		t.Fatalf("same-origin POST reached the backend as %q", body)
	}
	e2eExpect(t, c, http.StatusOK, "GET", "/", "Sec-Fetch-Site", "cross-site")
	// a header token is not ambient: no origin check
	_, body = e2eExpect(t, c, http.StatusOK, "POST", "/", "Authorization", "Bearer "+alice, "Sec-Fetch-Site", "cross-site")
	if e2eField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}

	// 4. a header wins over the cookie (the jar still sends alice's)
	if jar := c.Jar.Cookies(site); len(jar) != 1 {
		t.Fatalf("cookie jar %v", jar)
	}
	res, body = e2eExpect(t, c, http.StatusOK, "GET", "/", "Authorization", "Bearer "+bob)
	if e2eField(t, body, "user") != "bob" {
		t.Fatalf("header and cookie: backend saw %q", body)
	}
	if got := res.Header.Values("Set-Cookie"); len(got) != 1 {
		t.Fatalf("no cookie for the header's user: %q", got)
	}
	_, body = e2eExpect(t, c, http.StatusOK, "GET", "/")
	if e2eField(t, body, "user") != "bob" {
		t.Fatalf("after bob's login the cookie says %q", body)
	}

	// 5. a forged cookie is refused, also on the public route
	other := caddytest.NewTester(t).Client
	other.Jar.SetCookies(site, []*http.Cookie{{Name: "__Host-jwtauth", Value: "eyJzdWIiOiJldmUifQ.9999999999.AAAA"}})
	e2eExpect(t, other, http.StatusUnauthorized, "GET", "/")
}

// TestE2ELoadError loads a config through the admin API whose jwt_auth
// names no validator of the app.
func TestE2ELoadError(t *testing.T) {
	hermeticHome(t)
	caddytest.AssertLoadError(t, `{
	admin localhost:2999
	jwtauth {
		validator api {
			issuer i
			audience a
			secret `+e2eSecret+`
		}
	}
}
http://localhost:9100 {
	jwt_auth api nope
}
`, "caddyfile", `jwt_auth: no validator named \"nope\" in the jwtauth app`)
}

// The Bearer scheme without a token is a credential that fails, on a public
// route too: 401 invalid_token, never the anonymous path. Another scheme is
// no credential for jwt_auth.
func TestE2EEmptyBearerOnPublicRoute(t *testing.T) {
	tc := e2eLoad(t, e2eConfig)
	c := tc.Client
	for _, val := range []string{"Bearer", "Bearer ", "bearer \t "} {
		res, body := e2eExpect(t, c, http.StatusUnauthorized, "GET", "/public/page", "Authorization", val)
		if got := res.Header.Get("WWW-Authenticate"); got != `Bearer realm="restricted", error="invalid_token", error_description="empty token"` {
			t.Fatalf("%q: WWW-Authenticate %q (body %q)", val, got, body)
		}
	}
	_, body := e2eExpect(t, c, http.StatusOK, "GET", "/public/page", "Authorization", "Basic dXNlcjpwYXNz")
	if e2eField(t, body, "user") != "" {
		t.Fatalf("backend saw %q", body)
	}
}

// Two identity cookies of one name are ambiguous: 400 invalid_request,
// whichever comes first.
func TestE2EDuplicateIdentityCookie(t *testing.T) {
	tc := e2eLoad(t, e2eConfig)
	login := func(sub string) string {
		res, _ := e2eExpect(t, caddytest.NewTester(t).Client, http.StatusOK, "GET", "/", "Authorization", "Bearer "+e2eToken(t, sub))
		for _, c := range res.Cookies() {
			if c.Name == "__Host-jwtauth" {
				return c.Value
			}
		}
		t.Fatalf("no identity cookie for %s", sub)
		return ""
	}
	alice, bob := login("alice"), login("bob")
	for _, cookie := range []string{
		"__Host-jwtauth=" + alice + "; __Host-jwtauth=" + bob,
		"__Host-jwtauth=" + bob + "; __Host-jwtauth=" + alice,
	} {
		res, _ := e2eExpect(t, tc.Client, http.StatusBadRequest, "GET", "/", "Cookie", cookie)
		if got := res.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_request"`) {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	}
	_, body := e2eExpect(t, tc.Client, http.StatusOK, "GET", "/", "Cookie", "__Host-jwtauth="+alice)
	if e2eField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}
}

// A from_header source named with '_' is warned about at load, with the line
// to add, for the server that would drop it, and only for that one; with
// the line, the header authenticates.
func TestE2EUnderscoreHeaderSource(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	tc := e2eLoad(t, `{
	admin localhost:2999
	http_port 9100
	https_port 9101
	grace_period 1ns
	skip_install_trust
	log {
		output file `+logFile+`
		format json
		level WARN
	}
	servers :9103 {
		expected_underscore_headers access_token
	}
	jwtauth {
		validator api {
			issuer https://id.e2e.test
			audience web
			secret `+e2eSecret+`
			from_header access_token
		}
	}
}

http://localhost:9103 {
	jwt_auth api
	respond "user={http.auth.user.id}"
}

http://localhost:9104 {
	jwt_auth api
	respond "user={http.auth.user.id}"
}
`)
	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var warns []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if msg, _ := e["msg"].(string); strings.Contains(msg, "from_header access_token") {
			warns = append(warns, e)
		}
	}
	if len(warns) != 1 {
		t.Fatalf("%d warnings about access_token; log:\n%s", len(warns), raw)
	}
	w := warns[0]
	if w["level"] != "warn" || w["add"] != "expected_underscore_headers access_token" || w["validator"] != "api" || fmt.Sprint(w["listen"]) != "[:9104]" {
		t.Fatalf("warning %v", w)
	}

	tok := e2eToken(t, "alice")
	_, body := e2eExpect(t, tc.Client, http.StatusOK, "GET", "http://localhost:9103/", "access_token", tok)
	if body != "user=alice" {
		t.Fatalf("body %q", body)
	}
	e2eExpect(t, tc.Client, http.StatusUnauthorized, "GET", "http://localhost:9104/", "access_token", tok)
}
