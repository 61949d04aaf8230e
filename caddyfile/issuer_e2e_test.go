package caddyfile_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// End-to-end tests of jwt_issuer in a real Caddy (caddytest, admin on
// localhost:2999), with the odoo_jwt flow. Ports: 9110 (the API, no trusted
// proxies) and 9112 (behind a trusted proxy). Run them with
// `flock /tmp/caddytest.lock go test ./caddyfile/ -run E2EIssuer`.

const (
	issuerSite  = "http://localhost:9110"
	proxiedSite = "http://localhost:9112"
)

// issuerConfig is the Caddyfile; %[1]s is a directory with users.json and the
// stores, %[2]s varies to force a reload.
const issuerConfig = `{
	admin localhost:2999
	http_port 9110
	https_port 9111
	grace_period 1ns
	auto_https off
	# Caddy drops request headers with underscores unless listed: odoo_jwt
	# clients send the access token in access_token.
	servers :9110 {
		expected_underscore_headers access_token
	}
	servers :9112 {
		trusted_proxies static 127.0.0.1/32
	}
	jwtauth {
		issuer main {
			users_file %[1]s/users.json
			store_dir %[1]s/main
			refresh_cookie {
				insecure
			}
			login_limit 5 %[2]s
		}
		issuer revoking {
			users_file %[1]s/users.json
			store_dir %[1]s/revoking
			algorithm HS256
			revoke_access_tokens
			refresh_cookie {
				insecure
			}
		}
		issuer limited {
			users_file %[1]s/users.json
			store_dir %[1]s/limited
			login_limit 3 1m
		}
		issuer proxied {
			users_file %[1]s/users.json
			store_dir %[1]s/proxied
			login_limit 3 1m
		}
		validator api {
			issuer_keys main
			from_header Authorization Bearer
			from_header access_token
		}
		validator revapi {
			issuer_keys revoking
		}
	}
}

http://localhost:9110 {
	jwt_issuer main {
		path_prefix /api
		console
	}
	jwt_issuer revoking {
		path_prefix /rev
	}
	jwt_issuer limited {
		path_prefix /limited
	}
	handle /api/protected/json {
		jwt_auth api
		header Content-Type application/json
		respond ` + "`" + `{"user_id": {http.auth.user.id}, "login": "{http.auth.user.login}", "sid": "{http.auth.jwt.claims.sid}"}` + "`" + `
	}
	handle /rev/protected {
		jwt_auth revapi
		respond "ok {http.auth.user.login}"
	}
	respond "next {path}" 404
}

http://localhost:9112 {
	jwt_issuer proxied {
		path_prefix /api
	}
	respond 404
}
`

// loadIssuer loads the config and unloads it at the end of the test.
func loadIssuer(t *testing.T, dir, period string) {
	t.Helper()
	loadCaddyfile(t, fmt.Sprintf(issuerConfig, dir, period))
}

func TestE2EIssuer(t *testing.T) {
	dir := t.TempDir()
	writeUsers(t, filepath.Join(dir, "users.json"),
		plainUser{"alice", "alice-pw", "7", false},
		plainUser{"bob", "bob-pw", "8", false},
		plainUser{"carol", "carol-pw", "9", false},
		plainUser{"dave", "dave-pw", "10", false},
	)
	loadIssuer(t, dir, "1m")
	c := apiClient{t, &http.Client{Transport: caddytest.CreateTestingTransport()}}
	var secrets []string // every refresh token handed out

	t.Run("odoo_jwt flow", func(t *testing.T) {
		for _, envelope := range []bool{false, true} {
			for _, browser := range []bool{false, true} {
				name := fmt.Sprintf("jsonrpc=%v/browser=%v", envelope, browser)
				t.Run(name, func(t *testing.T) {
					secrets = append(secrets, runIssuerFlow(t, c, envelope, browser)...)
				})
			}
		}
	})

	t.Run("access token revocation", func(t *testing.T) {
		for _, prefix := range []string{"/api", "/rev"} {
			m := c.do("POST", issuerSite+prefix+"/authenticate", `{"login":"bob","password":"bob-pw"}`).expect(t, 200)
			access, rt := m["access_token"].(string), m["refreshToken"].(string)
			secrets = append(secrets, rt)
			protected := issuerSite + "/api/protected/json"
			if prefix == "/rev" {
				protected = issuerSite + "/rev/protected"
			}
			for range 2 { // the second is a token-cache hit
				c.do("GET", protected, "", "Authorization", "Bearer "+access).expect(t, 200)
			}
			c.do("POST", issuerSite+prefix+"/revoke/token", `{}`, "refreshToken", rt).expect(t, 200)
			want := 200 // odoo_jwt: the access token lives until exp
			if prefix == "/rev" {
				want = 401 // revoke_access_tokens
			}
			for range 2 {
				c.do("GET", protected, "", "Authorization", "Bearer "+access).expect(t, want)
			}
		}
	})

	t.Run("cross-origin cookie refused", func(t *testing.T) {
		m := c.do("POST", issuerSite+"/api/authenticate", `{"login":"alice","password":"alice-pw"}`).expect(t, 200)
		rt := m["refreshToken"].(string)
		secrets = append(secrets, rt)
		cookie := "refreshToken=" + rt
		for _, p := range []string{"/update/access-token", "/update/refresh-token", "/revoke/token"} {
			m := c.do("POST", issuerSite+"/api"+p, `{}`, "Cookie", cookie, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site").expect(t, 403)
			if m["error"] != "invalid_request" {
				t.Fatalf("%s: %v", p, m)
			}
		}
		c.do("POST", issuerSite+"/api/update/access-token", `{}`, "Cookie", cookie, "Origin", issuerSite, "Sec-Fetch-Site", "same-origin").expect(t, 200)
	})

	t.Run("protocol errors", func(t *testing.T) {
		r := c.do("GET", issuerSite+"/api/authenticate", "")
		r.expect(t, 405)
		if r.Header.Get("Allow") != "POST" {
			t.Fatalf("Allow %q", r.Header.Get("Allow"))
		}
		c.do("POST", issuerSite+"/api/authenticate", `{"login":"alice","password":"x","pad":"`+strings.Repeat("a", 70000)+`"}`).expect(t, 413)
		r = c.do("POST", issuerSite+"/api/authenticate", "login=alice", "Content-Type", "text/plain")
		r.expect(t, 415)
		c.do("POST", issuerSite+"/api/authenticate", `{"login":`).expect(t, 400)
		if r := c.do("GET", issuerSite+"/api/other", ""); r.StatusCode != 404 || r.body != "next /api/other" {
			t.Fatalf("other path: %d %q", r.StatusCode, r.body)
		}
		r = c.do("GET", issuerSite+"/api/login", "")
		if r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") == "" || !strings.Contains(r.body, "<html") {
			t.Fatalf("console: %d", r.StatusCode)
		}
		m := c.do("GET", issuerSite+"/api/.well-known/jwks.json", "").expect(t, 200)
		if m != nil {
			t.Fatal("unexpected JSON content type")
		}
		c.do("GET", issuerSite+"/rev/.well-known/jwks.json", "").expect(t, 404) // HS256: nothing to publish
	})

	t.Run("login limit ignores X-Forwarded-For without trusted proxies", func(t *testing.T) {
		for i := range 3 {
			c.do("POST", issuerSite+"/limited/authenticate", `{"login":"carol","password":"wrong"}`, "X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i)).expect(t, 401)
		}
		// another forged address, the right password: the client
		// (127.0.0.1) is over the limit for this login
		r := c.do("POST", issuerSite+"/limited/authenticate", `{"login":"carol","password":"carol-pw"}`, "X-Forwarded-For", "10.9.9.9")
		if m := r.expect(t, 429); m["error"] != "too_many_requests" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After: %v %v", m, r.Header)
		}
	})

	t.Run("login limit behind a trusted proxy", func(t *testing.T) {
		for i := range 3 {
			c.do("POST", proxiedSite+"/api/authenticate", `{"login":"carol","password":"wrong"}`, "X-Forwarded-For", "10.0.0.1").expect(t, 401)
			_ = i
		}
		// a different client behind the proxy is not limited...
		c.do("POST", proxiedSite+"/api/authenticate", `{"login":"dave","password":"dave-pw"}`, "X-Forwarded-For", "10.0.0.2").expect(t, 200)
		// ...nor is the login's owner from another client (strangers
		// cannot lock an account out; it is only slowed down)...
		c.do("POST", proxiedSite+"/api/authenticate", `{"login":"carol","password":"carol-pw"}`, "X-Forwarded-For", "10.0.0.3").expect(t, 200)
		// ...but the client that failed is, for that login
		c.do("POST", proxiedSite+"/api/authenticate", `{"login":"carol","password":"carol-pw"}`, "X-Forwarded-For", "10.0.0.1").expect(t, 429)
	})

	t.Run("users file change ends families at reload", func(t *testing.T) {
		ma := c.do("POST", issuerSite+"/api/authenticate", `{"login":"alice","password":"alice-pw"}`).expect(t, 200)
		mb := c.do("POST", issuerSite+"/api/authenticate", `{"login":"bob","password":"bob-pw"}`).expect(t, 200)
		mc := c.do("POST", issuerSite+"/api/authenticate", `{"login":"carol","password":"carol-pw"}`).expect(t, 200)
		secrets = append(secrets, ma["refreshToken"].(string), mb["refreshToken"].(string), mc["refreshToken"].(string))
		writeUsers(t, filepath.Join(dir, "users.json"),
			plainUser{"alice", "alice-pw", "7", false},
			plainUser{"bob", "bob-new-pw", "8", false}, // password changed
			plainUser{"carol", "carol-pw", "9", true},  // disabled
			plainUser{"dave", "dave-pw", "10", false},
		)
		// the file alone changes nothing until the reload
		c.do("POST", issuerSite+"/api/update/access-token", `{}`, "refreshToken", mb["refreshToken"].(string)).expect(t, 200)
		loadIssuer(t, dir, "61s")
		c.do("POST", issuerSite+"/api/update/access-token", `{}`, "refreshToken", ma["refreshToken"].(string)).expect(t, 200)
		c.do("POST", issuerSite+"/api/update/access-token", `{}`, "refreshToken", mb["refreshToken"].(string)).expect(t, 401)
		c.do("POST", issuerSite+"/api/update/access-token", `{}`, "refreshToken", mc["refreshToken"].(string)).expect(t, 401)
		c.do("POST", issuerSite+"/api/authenticate", `{"login":"bob","password":"bob-new-pw"}`).expect(t, 200)
	})

	t.Run("no secret in the stores", func(t *testing.T) {
		if len(secrets) < 8 {
			t.Fatalf("only %d refresh tokens collected", len(secrets))
		}
		secrets = append(secrets, "alice-pw", "bob-pw", "bob-new-pw", "carol-pw", "dave-pw")
		files := 0
		err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() || filepath.Base(p) == "users.json" {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s contains a secret", p)
				}
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %o", p, fi.Mode().Perm())
			}
			return nil
		})
		if err != nil || files < 8 {
			t.Fatalf("walk: %v, %d files", err, files)
		}
	})
}

// runIssuerFlow runs authenticate, protected call, access-token refresh, rotation
// and revocation, and returns the refresh tokens it saw.
func runIssuerFlow(t *testing.T, c apiClient, envelope, browser bool) []string {
	wrap := func(params string) string {
		if envelope {
			return `{"jsonrpc":"2.0","method":"call","id":1,"params":` + params + `}`
		}
		return params
	}
	result := func(r apiRes) map[string]any {
		t.Helper()
		m := r.expect(t, 200)
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("Cache-Control %q", r.Header.Get("Cache-Control"))
		}
		if !envelope {
			return m
		}
		if m["error"] != nil || m["jsonrpc"] != "2.0" || m["id"] != float64(1) {
			t.Fatalf("envelope %v", m)
		}
		return m["result"].(map[string]any)
	}
	var hdr []string
	if browser {
		hdr = []string{"Origin", issuerSite, "Sec-Fetch-Site", "same-origin"}
	}
	with := func(extra ...string) []string { return append(append([]string{}, hdr...), extra...) }

	r := c.do("POST", issuerSite+"/api/authenticate", wrap(`{"db":"odoo","login":"alice","password":"alice-pw"}`), hdr...)
	m := result(r)
	ck := r.cookie("refreshToken")
	if ck == nil || !ck.HttpOnly || ck.Path != "/api" || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", ck)
	}
	rt, inBody := m["refreshToken"].(string)
	if browser == inBody {
		t.Fatalf("browser=%v, refreshToken in body=%v", browser, inBody)
	}
	if browser {
		rt = ck.Value
	}
	seen := []string{rt}
	access := m["access_token"].(string)
	if m["token"] != access || m["user_id"] != float64(7) || m["token_type"] != "Bearer" || m["expires_in"] != float64(60) {
		t.Fatalf("authenticate %v", m)
	}
	p := c.do("GET", issuerSite+"/api/protected/json", "", "Authorization", "Bearer "+access).expect(t, 200)
	if p["user_id"] != float64(7) || p["login"] != "alice" || p["sid"] == "" {
		t.Fatalf("protected %v", p)
	}
	c.do("GET", issuerSite+"/api/protected/json", "", "Authorization", "Bearer "+rt).expect(t, 401)

	// the refresh token: only the cookie for a browser, the header otherwise
	carry := func(tok string) []string {
		if browser {
			return with("Cookie", "refreshToken="+tok)
		}
		return with("refreshToken", tok)
	}
	m = result(c.do("POST", issuerSite+"/api/update/access-token", wrap(`{"user_id":7}`), carry(rt)...))
	access = m["access_token"].(string)
	c.do("GET", issuerSite+"/api/protected/json", "", "access_token", access).expect(t, 200)

	r = c.do("POST", issuerSite+"/api/update/refresh-token", wrap(`{"user_id":7}`), append(carry(rt), "access_token", access)...)
	m = result(r)
	if m["status"] != "done" {
		t.Fatalf("rotate %v", m)
	}
	ck = r.cookie("refreshToken")
	if ck == nil || ck.Value == rt {
		t.Fatalf("rotation cookie %+v", ck)
	}
	if newRT, ok := m["refreshToken"].(string); browser == ok || (ok && newRT != ck.Value) {
		t.Fatalf("rotation body %v", m)
	}
	rt = ck.Value
	seen = append(seen, rt)

	if !browser { // the body field is accepted too
		m = result(c.do("POST", issuerSite+"/api/update/access-token", wrap(`{"user_id":7,"refreshToken":"`+rt+`"}`)))
	} else {
		m = result(c.do("POST", issuerSite+"/api/update/access-token", wrap(`{"user_id":7}`), carry(rt)...))
	}
	if m["access_token"] == "" {
		t.Fatal("no access token after rotation")
	}

	r = c.do("POST", issuerSite+"/api/revoke/token", wrap(`{}`), carry(rt)...)
	if m = result(r); m["status"] != "done" {
		t.Fatalf("revoke %v", m)
	}
	if ck = r.cookie("refreshToken"); ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("revoke cookie %+v", ck)
	}
	r = c.do("POST", issuerSite+"/api/update/access-token", wrap(`{}`), carry(rt)...)
	if envelope {
		m = r.expect(t, 200)
		e, _ := m["error"].(map[string]any)
		if e == nil || e["code"] != float64(100) {
			t.Fatalf("after revoke: %v", m)
		}
	} else if m = r.expect(t, 401); m["error"] != "invalid_grant" {
		t.Fatalf("after revoke: %v", m)
	}
	return seen
}
