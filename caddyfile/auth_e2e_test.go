package caddyfile_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
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
	webSecret     = "e2e-secret-0123456789abcdef-0123456789"
	protectedSite = "https://caddy.localhost:9101"
)

// The backend echoes what reached it; the protected site proxies to it.
// The site serves a certificate the test makes (SITE_CERT and SITE_KEY are
// replaced by loadCaddyfile; caddytest's client does not verify it): one issued by
// Caddy at start-up would race the first request.
const authConfig = `{
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
			secret ` + webSecret + `
			cookie
		}
		validator api {
			issuer https://id.e2e.test
			audience web
			secret ` + webSecret + `
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

// webToken is a token for validator web and user sub, valid for a day.
func webToken(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://id.e2e.test", "aud": "web", "sub": sub, "email": sub + "@example.com",
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
	}).SignedString([]byte(webSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// doProtected sends a request with the tester's client (and its cookie jar) to
// path on protectedSite, or to path when it is a URL; headers alternate name and
// value, and are set verbatim.
func doProtected(t *testing.T, c *http.Client, method, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = protectedSite + path
	}
	res, b, err := send(c, method, path, "", headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res, b
}

// expectProtected is doProtected, failing the test unless the status is
// want.
func expectProtected(t *testing.T, c *http.Client, want int, method, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	res, body := doProtected(t, c, method, path, headers...)
	if res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; WWW-Authenticate %q; body %q", method, path, res.StatusCode, want, res.Header.Get("WWW-Authenticate"), body)
	}
	return res, body
}

// echoField returns NAME's value in the backend's echo "a=1 b=2 ...".
func echoField(t *testing.T, body, name string) string {
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
	tc := loadCaddyfile(t, authConfig)
	c := tc.Client
	alice := webToken(t, "alice")

	// required mode
	res, _ := expectProtected(t, c, http.StatusUnauthorized, "GET", "/")
	if got := res.Header.Get("WWW-Authenticate"); got != `Bearer realm="restricted"` {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	res, _ = expectProtected(t, c, http.StatusUnauthorized, "GET", "/", "Authorization", "Bearer "+alice[:len(alice)-4]+"AAAA")
	if got := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="restricted", error="invalid_token", error_description=`) {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	_, body := expectProtected(t, c, http.StatusOK, "GET", "/", "Authorization", "Bearer "+alice)
	if echoField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}

	// public mode
	_, body = expectProtected(t, c, http.StatusOK, "GET", "/public/page")
	if echoField(t, body, "user") != "" {
		t.Fatalf("anonymous request reached the backend as %q", body)
	}
	expectProtected(t, c, http.StatusUnauthorized, "GET", "/public/page", "Authorization", "Bearer not.a.token")
	expectProtected(t, c, http.StatusUnauthorized, "GET", "/public/page", "Authorization", "Bearer "+alice[:len(alice)-4]+"AAAA")
	_, body = expectProtected(t, c, http.StatusOK, "GET", "/public/page", "Authorization", "Bearer "+alice)
	if echoField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}
}

func TestE2EForwardedHeaders(t *testing.T) {
	tc := loadCaddyfile(t, authConfig)
	c := tc.Client
	alice := webToken(t, "alice")
	// Caddy drops x_user_id itself here; jwt_auth must drop the rest
	spoof := []string{"X-User-Id", "eve", "X-USER-ID", "mallory", "X-User-Email", "eve@evil.example", "X-Jwt-Payload", "e30"}

	_, body := expectProtected(t, c, http.StatusOK, "GET", "/", append([]string{"Authorization", "Bearer " + alice}, spoof...)...)
	// spoofed copies would be joined: "alice,eve,mallory"
	if got := echoField(t, body, "user"); got != "alice" {
		t.Fatalf("backend's X-User-Id %q: %q", got, body)
	}
	if got := echoField(t, body, "email"); got != "alice@example.com" {
		t.Fatalf("backend's X-User-Email %q: %q", got, body)
	}
	payload, err := base64.RawURLEncoding.DecodeString(echoField(t, body, "payload"))
	if err != nil {
		t.Fatalf("payload header: %v in %q", err, body)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims["sub"] != "alice" || claims["iss"] != "https://id.e2e.test" {
		t.Fatalf("payload %s (%v)", payload, err)
	}
	// without strip_token the token goes on to the backend
	if got := echoField(t, body, "auth"); got != "Bearer" {
		t.Fatalf("Authorization at the backend: %q", got)
	}

	// the public, anonymous path strips the spoofed headers too
	_, body = expectProtected(t, c, http.StatusOK, "GET", "/public/x", spoof...)
	if echoField(t, body, "user") != "" || echoField(t, body, "email") != "" || echoField(t, body, "payload") != "" {
		t.Fatalf("spoofed identity reached the backend anonymously: %q", body)
	}

	// where Caddy lets underscore spellings through, jwt_auth drops them,
	// authenticated or anonymous
	under := []string{"x_user_id", "eve", "x_user_email", "eve@evil.example"}
	_, body = expectProtected(t, c, http.StatusOK, "GET", "http://localhost:9103/", append([]string{"Authorization", "Bearer " + alice}, under...)...)
	if echoField(t, body, "user") != "alice" || echoField(t, body, "email") != "alice@example.com" || echoField(t, body, "under") != "|" {
		t.Fatalf("backend saw %q", body)
	}
	_, body = expectProtected(t, c, http.StatusOK, "GET", "http://localhost:9103/", under...)
	if echoField(t, body, "user") != "" || echoField(t, body, "email") != "" || echoField(t, body, "under") != "|" {
		t.Fatalf("backend saw %q", body)
	}
}

func TestE2ECookieMode(t *testing.T) {
	tc := loadCaddyfile(t, authConfig)
	c := tc.Client
	site, _ := url.Parse(protectedSite + "/")
	alice, bob := webToken(t, "alice"), webToken(t, "bob")

	// 1. header authentication sets the identity cookie
	res, body := expectProtected(t, c, http.StatusOK, "GET", "/", "Authorization", "Bearer "+alice)
	if echoField(t, body, "user") != "alice" {
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
	res, body = expectProtected(t, c, http.StatusOK, "GET", "/")
	if echoField(t, body, "user") != "alice" {
		t.Fatalf("cookie request reached the backend as %q", body)
	}
	if got := res.Header.Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("cookie re-set on a cookie request: %q", got)
	}

	// 3. cross-origin unsafe requests carried by the cookie are refused
	res, _ = expectProtected(t, c, http.StatusForbidden, "POST", "/", "Origin", "https://evil.example")
	if got := res.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_request"`) {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	expectProtected(t, c, http.StatusForbidden, "POST", "/", "Sec-Fetch-Site", "cross-site")
	expectProtected(t, c, http.StatusForbidden, "DELETE", "/", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	_, body = expectProtected(t, c, http.StatusOK, "POST", "/", "Origin", protectedSite, "Sec-Fetch-Site", "same-origin")
	if echoField(t, body, "user") != "alice" {
		t.Fatalf("same-origin POST reached the backend as %q", body)
	}
	expectProtected(t, c, http.StatusOK, "GET", "/", "Sec-Fetch-Site", "cross-site")
	// a header token is not ambient: no origin check
	_, body = expectProtected(t, c, http.StatusOK, "POST", "/", "Authorization", "Bearer "+alice, "Sec-Fetch-Site", "cross-site")
	if echoField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}

	// 4. a header wins over the cookie (the jar still sends alice's)
	if jar := c.Jar.Cookies(site); len(jar) != 1 {
		t.Fatalf("cookie jar %v", jar)
	}
	res, body = expectProtected(t, c, http.StatusOK, "GET", "/", "Authorization", "Bearer "+bob)
	if echoField(t, body, "user") != "bob" {
		t.Fatalf("header and cookie: backend saw %q", body)
	}
	if got := res.Header.Values("Set-Cookie"); len(got) != 1 {
		t.Fatalf("no cookie for the header's user: %q", got)
	}
	_, body = expectProtected(t, c, http.StatusOK, "GET", "/")
	if echoField(t, body, "user") != "bob" {
		t.Fatalf("after bob's login the cookie says %q", body)
	}

	// 5. a forged cookie is refused, also on the public route
	other := caddytest.NewTester(t).Client
	other.Jar.SetCookies(site, []*http.Cookie{{Name: "__Host-jwtauth", Value: "eyJzdWIiOiJldmUifQ.9999999999.AAAA"}})
	expectProtected(t, other, http.StatusUnauthorized, "GET", "/")
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
			secret `+webSecret+`
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
	tc := loadCaddyfile(t, authConfig)
	c := tc.Client
	for _, val := range []string{"Bearer", "Bearer ", "bearer \t "} {
		res, body := expectProtected(t, c, http.StatusUnauthorized, "GET", "/public/page", "Authorization", val)
		if got := res.Header.Get("WWW-Authenticate"); got != `Bearer realm="restricted", error="invalid_token", error_description="empty token"` {
			t.Fatalf("%q: WWW-Authenticate %q (body %q)", val, got, body)
		}
	}
	_, body := expectProtected(t, c, http.StatusOK, "GET", "/public/page", "Authorization", "Basic dXNlcjpwYXNz")
	if echoField(t, body, "user") != "" {
		t.Fatalf("backend saw %q", body)
	}
}

// Two identity cookies of one name are ambiguous: 400 invalid_request,
// whichever comes first.
func TestE2EDuplicateIdentityCookie(t *testing.T) {
	tc := loadCaddyfile(t, authConfig)
	login := func(sub string) string {
		res, _ := expectProtected(t, caddytest.NewTester(t).Client, http.StatusOK, "GET", "/", "Authorization", "Bearer "+webToken(t, sub))
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
		res, _ := expectProtected(t, tc.Client, http.StatusBadRequest, "GET", "/", "Cookie", cookie)
		if got := res.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_request"`) {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	}
	_, body := expectProtected(t, tc.Client, http.StatusOK, "GET", "/", "Cookie", "__Host-jwtauth="+alice)
	if echoField(t, body, "user") != "alice" {
		t.Fatalf("backend saw %q", body)
	}
}

// A from_header source named with '_' is warned about at load, with the line
// to add, for the server that would drop it, and only for that one; with
// the line, the header authenticates.
func TestE2EUnderscoreHeaderSource(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	tc := loadCaddyfile(t, `{
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
			secret `+webSecret+`
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

	tok := webToken(t, "alice")
	_, body := expectProtected(t, tc.Client, http.StatusOK, "GET", "http://localhost:9103/", "access_token", tok)
	if body != "user=alice" {
		t.Fatalf("body %q", body)
	}
	expectProtected(t, tc.Client, http.StatusUnauthorized, "GET", "http://localhost:9104/", "access_token", tok)
}
