package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"
)

// End-to-end tests of jwt_issuer in a real Caddy (caddytest, admin on
// localhost:2999), with the odoo_jwt flow. Ports: 9110 (the API, no trusted
// proxies) and 9112 (behind a trusted proxy). Run them with
// `flock /tmp/caddytest.lock go test ./caddyfile/ -run E2EIssuer`.

const (
	ie2eSite  = "http://localhost:9110"
	ie2eProxy = "http://localhost:9112"
)

// ie2eConfig is the Caddyfile; %[1]s is a directory with users.json and the
// stores, %[2]s varies to force a reload.
const ie2eConfig = `{
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

var ie2eHashes = map[string]string{}

type ie2eUser struct {
	login, password, userID string
	disabled                bool
}

func ie2eWriteUsers(t *testing.T, dir string, users ...ie2eUser) {
	t.Helper()
	type u struct {
		Login    string          `json:"login"`
		Hash     string          `json:"password_hash"`
		UserID   json.Number     `json:"user_id"`
		Disabled bool            `json:"disabled,omitempty"`
		Claims   json.RawMessage `json:"claims,omitempty"`
	}
	var list []u
	for _, x := range users {
		// an unchanged password keeps its hash: a new salt is a change
		h, ok := ie2eHashes[x.password]
		if !ok {
			b, err := bcrypt.GenerateFromPassword([]byte(x.password), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			h = string(b)
			ie2eHashes[x.password] = h
		}
		list = append(list, u{Login: x.login, Hash: h, UserID: json.Number(x.userID), Disabled: x.disabled,
			Claims: json.RawMessage(`{"email":"` + x.login + `@example.com"}`)})
	}
	b, _ := json.Marshal(map[string]any{"users": list})
	if err := os.WriteFile(filepath.Join(dir, "users.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ie2eLoad loads the config and unloads it at the end of the test.
func ie2eLoad(t *testing.T, dir, period string) {
	t.Helper()
	e2eLoad(t, fmt.Sprintf(ie2eConfig, dir, period))
}

// ie2eClient sends requests without a cookie jar: cookies are explicit.
type ie2eClient struct {
	t *testing.T
	c *http.Client
}

type ie2eRes struct {
	*http.Response
	body string
}

// do sends a request; headers alternate name and value.
func (c ie2eClient) do(method, url, body string, headers ...string) ie2eRes {
	c.t.Helper()
	res, b, err := e2eSend(c.c, method, url, body, headers...)
	if res == nil { // a failed read of the body is not the test's concern
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	return ie2eRes{res, b}
}

// expect checks the status and decodes a JSON body.
func (r ie2eRes) expect(t *testing.T, status int) map[string]any {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.body)
	}
	var m map[string]any
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") && r.body != "" {
		if err := json.Unmarshal([]byte(r.body), &m); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
	}
	return m
}

func (r ie2eRes) cookie(name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestE2EIssuer(t *testing.T) {
	dir := t.TempDir()
	ie2eWriteUsers(t, dir,
		ie2eUser{"alice", "alice-pw", "7", false},
		ie2eUser{"bob", "bob-pw", "8", false},
		ie2eUser{"carol", "carol-pw", "9", false},
		ie2eUser{"dave", "dave-pw", "10", false},
	)
	ie2eLoad(t, dir, "1m")
	c := ie2eClient{t, &http.Client{Transport: caddytest.CreateTestingTransport()}}
	var secrets []string // every refresh token handed out

	t.Run("odoo_jwt flow", func(t *testing.T) {
		for _, envelope := range []bool{false, true} {
			for _, browser := range []bool{false, true} {
				name := fmt.Sprintf("jsonrpc=%v/browser=%v", envelope, browser)
				t.Run(name, func(t *testing.T) {
					secrets = append(secrets, ie2eFlow(t, c, envelope, browser)...)
				})
			}
		}
	})

	t.Run("access token revocation", func(t *testing.T) {
		for _, prefix := range []string{"/api", "/rev"} {
			m := c.do("POST", ie2eSite+prefix+"/authenticate", `{"login":"bob","password":"bob-pw"}`).expect(t, 200)
			access, rt := m["access_token"].(string), m["refreshToken"].(string)
			secrets = append(secrets, rt)
			protected := ie2eSite + "/api/protected/json"
			if prefix == "/rev" {
				protected = ie2eSite + "/rev/protected"
			}
			for range 2 { // the second is a token-cache hit
				c.do("GET", protected, "", "Authorization", "Bearer "+access).expect(t, 200)
			}
			c.do("POST", ie2eSite+prefix+"/revoke/token", `{}`, "refreshToken", rt).expect(t, 200)
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
		m := c.do("POST", ie2eSite+"/api/authenticate", `{"login":"alice","password":"alice-pw"}`).expect(t, 200)
		rt := m["refreshToken"].(string)
		secrets = append(secrets, rt)
		cookie := "refreshToken=" + rt
		for _, p := range []string{"/update/access-token", "/update/refresh-token", "/revoke/token"} {
			m := c.do("POST", ie2eSite+"/api"+p, `{}`, "Cookie", cookie, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site").expect(t, 403)
			if m["error"] != "invalid_request" {
				t.Fatalf("%s: %v", p, m)
			}
		}
		c.do("POST", ie2eSite+"/api/update/access-token", `{}`, "Cookie", cookie, "Origin", ie2eSite, "Sec-Fetch-Site", "same-origin").expect(t, 200)
	})

	t.Run("protocol errors", func(t *testing.T) {
		r := c.do("GET", ie2eSite+"/api/authenticate", "")
		r.expect(t, 405)
		if r.Header.Get("Allow") != "POST" {
			t.Fatalf("Allow %q", r.Header.Get("Allow"))
		}
		c.do("POST", ie2eSite+"/api/authenticate", `{"login":"alice","password":"x","pad":"`+strings.Repeat("a", 70000)+`"}`).expect(t, 413)
		r = c.do("POST", ie2eSite+"/api/authenticate", "login=alice", "Content-Type", "text/plain")
		r.expect(t, 415)
		c.do("POST", ie2eSite+"/api/authenticate", `{"login":`).expect(t, 400)
		if r := c.do("GET", ie2eSite+"/api/other", ""); r.StatusCode != 404 || r.body != "next /api/other" {
			t.Fatalf("other path: %d %q", r.StatusCode, r.body)
		}
		r = c.do("GET", ie2eSite+"/api/login", "")
		if r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") == "" || !strings.Contains(r.body, "<html") {
			t.Fatalf("console: %d", r.StatusCode)
		}
		m := c.do("GET", ie2eSite+"/api/.well-known/jwks.json", "").expect(t, 200)
		if m != nil {
			t.Fatal("unexpected JSON content type")
		}
		c.do("GET", ie2eSite+"/rev/.well-known/jwks.json", "").expect(t, 404) // HS256: nothing to publish
	})

	t.Run("login limit ignores X-Forwarded-For without trusted proxies", func(t *testing.T) {
		for i := range 3 {
			c.do("POST", ie2eSite+"/limited/authenticate", `{"login":"carol","password":"wrong"}`, "X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i)).expect(t, 401)
		}
		// another forged address, the right password: the client
		// (127.0.0.1) is over the limit for this login
		r := c.do("POST", ie2eSite+"/limited/authenticate", `{"login":"carol","password":"carol-pw"}`, "X-Forwarded-For", "10.9.9.9")
		if m := r.expect(t, 429); m["error"] != "too_many_requests" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After: %v %v", m, r.Header)
		}
	})

	t.Run("login limit behind a trusted proxy", func(t *testing.T) {
		for i := range 3 {
			c.do("POST", ie2eProxy+"/api/authenticate", `{"login":"carol","password":"wrong"}`, "X-Forwarded-For", "10.0.0.1").expect(t, 401)
			_ = i
		}
		// a different client behind the proxy is not limited...
		c.do("POST", ie2eProxy+"/api/authenticate", `{"login":"dave","password":"dave-pw"}`, "X-Forwarded-For", "10.0.0.2").expect(t, 200)
		// ...nor is the login's owner from another client (strangers
		// cannot lock an account out; it is only slowed down)...
		c.do("POST", ie2eProxy+"/api/authenticate", `{"login":"carol","password":"carol-pw"}`, "X-Forwarded-For", "10.0.0.3").expect(t, 200)
		// ...but the client that failed is, for that login
		c.do("POST", ie2eProxy+"/api/authenticate", `{"login":"carol","password":"carol-pw"}`, "X-Forwarded-For", "10.0.0.1").expect(t, 429)
	})

	t.Run("users file change ends families at reload", func(t *testing.T) {
		ma := c.do("POST", ie2eSite+"/api/authenticate", `{"login":"alice","password":"alice-pw"}`).expect(t, 200)
		mb := c.do("POST", ie2eSite+"/api/authenticate", `{"login":"bob","password":"bob-pw"}`).expect(t, 200)
		mc := c.do("POST", ie2eSite+"/api/authenticate", `{"login":"carol","password":"carol-pw"}`).expect(t, 200)
		secrets = append(secrets, ma["refreshToken"].(string), mb["refreshToken"].(string), mc["refreshToken"].(string))
		ie2eWriteUsers(t, dir,
			ie2eUser{"alice", "alice-pw", "7", false},
			ie2eUser{"bob", "bob-new-pw", "8", false}, // password changed
			ie2eUser{"carol", "carol-pw", "9", true},  // disabled
			ie2eUser{"dave", "dave-pw", "10", false},
		)
		// the file alone changes nothing until the reload
		c.do("POST", ie2eSite+"/api/update/access-token", `{}`, "refreshToken", mb["refreshToken"].(string)).expect(t, 200)
		ie2eLoad(t, dir, "61s")
		c.do("POST", ie2eSite+"/api/update/access-token", `{}`, "refreshToken", ma["refreshToken"].(string)).expect(t, 200)
		c.do("POST", ie2eSite+"/api/update/access-token", `{}`, "refreshToken", mb["refreshToken"].(string)).expect(t, 401)
		c.do("POST", ie2eSite+"/api/update/access-token", `{}`, "refreshToken", mc["refreshToken"].(string)).expect(t, 401)
		c.do("POST", ie2eSite+"/api/authenticate", `{"login":"bob","password":"bob-new-pw"}`).expect(t, 200)
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

// ie2eFlow runs authenticate, protected call, access-token refresh, rotation
// and revocation, and returns the refresh tokens it saw.
func ie2eFlow(t *testing.T, c ie2eClient, envelope, browser bool) []string {
	wrap := func(params string) string {
		if envelope {
			return `{"jsonrpc":"2.0","method":"call","id":1,"params":` + params + `}`
		}
		return params
	}
	result := func(r ie2eRes) map[string]any {
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
		hdr = []string{"Origin", ie2eSite, "Sec-Fetch-Site", "same-origin"}
	}
	with := func(extra ...string) []string { return append(append([]string{}, hdr...), extra...) }

	r := c.do("POST", ie2eSite+"/api/authenticate", wrap(`{"db":"odoo","login":"alice","password":"alice-pw"}`), hdr...)
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
	p := c.do("GET", ie2eSite+"/api/protected/json", "", "Authorization", "Bearer "+access).expect(t, 200)
	if p["user_id"] != float64(7) || p["login"] != "alice" || p["sid"] == "" {
		t.Fatalf("protected %v", p)
	}
	c.do("GET", ie2eSite+"/api/protected/json", "", "Authorization", "Bearer "+rt).expect(t, 401)

	// the refresh token: only the cookie for a browser, the header otherwise
	carry := func(tok string) []string {
		if browser {
			return with("Cookie", "refreshToken="+tok)
		}
		return with("refreshToken", tok)
	}
	m = result(c.do("POST", ie2eSite+"/api/update/access-token", wrap(`{"user_id":7}`), carry(rt)...))
	access = m["access_token"].(string)
	c.do("GET", ie2eSite+"/api/protected/json", "", "access_token", access).expect(t, 200)

	r = c.do("POST", ie2eSite+"/api/update/refresh-token", wrap(`{"user_id":7}`), append(carry(rt), "access_token", access)...)
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
		m = result(c.do("POST", ie2eSite+"/api/update/access-token", wrap(`{"user_id":7,"refreshToken":"`+rt+`"}`)))
	} else {
		m = result(c.do("POST", ie2eSite+"/api/update/access-token", wrap(`{"user_id":7}`), carry(rt)...))
	}
	if m["access_token"] == "" {
		t.Fatal("no access token after rotation")
	}

	r = c.do("POST", ie2eSite+"/api/revoke/token", wrap(`{}`), carry(rt)...)
	if m = result(r); m["status"] != "done" {
		t.Fatalf("revoke %v", m)
	}
	if ck = r.cookie("refreshToken"); ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("revoke cookie %+v", ck)
	}
	r = c.do("POST", ie2eSite+"/api/update/access-token", wrap(`{}`), carry(rt)...)
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
