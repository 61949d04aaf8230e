package jwtauth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// TestIssuerFlow runs the odoo_jwt flow against the handler: authenticate,
// call a protected route, refresh the access token, rotate the refresh
// token, revoke; in plain JSON and in the JSON-RPC envelope, with the
// non-browser transport (refreshToken in the body or header) and the
// browser one (cookie only).
func TestIssuerFlow(t *testing.T) {
	for _, envelope := range []bool{false, true} {
		for _, browser := range []bool{false, true} {
			name := map[bool]string{false: "json", true: "jsonrpc"}[envelope] + "/" + map[bool]string{false: "mobile", true: "browser"}[browser]
			t.Run(name, func(t *testing.T) {
				e := newIssuerEnv(t, nil)
				wrap := func(params string) string {
					if envelope {
						return `{"jsonrpc":"2.0","method":"call","id":42,"params":` + params + `}`
					}
					return params
				}
				result := func(res issuerRes) map[string]any {
					t.Helper()
					m := res.expect(t, 200, "")
					if !envelope {
						return m
					}
					if m["jsonrpc"] != "2.0" || m["id"] != float64(42) || m["error"] != nil {
						t.Fatalf("envelope %v", m)
					}
					return m["result"].(map[string]any)
				}
				hdr := map[string]string{}
				if browser {
					hdr["Origin"] = "http://example.com"
					hdr["Sec-Fetch-Site"] = "same-origin"
				}

				res := e.do(issuerReq{path: "/authenticate", body: wrap(`{"db":"odoo","login":"alice","password":"alice-password"}`), header: hdr})
				m := result(res)
				for _, k := range []string{"token", "access_token", "token_type", "expires_in", "user_id", "rotation_period", "long_term_token_span", "short_term_token_span"} {
					if _, ok := m[k]; !ok {
						t.Fatalf("authenticate result lacks %q: %v", k, m)
					}
				}
				if m["token"] != m["access_token"] || m["token_type"] != "Bearer" || m["expires_in"] != float64(60) ||
					m["user_id"] != float64(7) || m["short_term_token_span"] != float64(60) ||
					m["long_term_token_span"] != float64(720*3600) || m["rotation_period"] != float64(540*3600) {
					t.Fatalf("authenticate result %v", m)
				}
				cookie := res.refreshCookie("refreshToken")
				if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/api" || cookie.MaxAge != 720*3600 {
					t.Fatalf("refresh cookie %+v", cookie)
				}
				rt, inBody := m["refreshToken"].(string)
				if browser {
					if inBody {
						t.Fatal("a browser request got the refresh token in the body")
					}
					rt = cookie.Value
				} else if rt != cookie.Value {
					t.Fatal("body and cookie refresh tokens differ")
				}
				if !sessions.ValidToken(rt) {
					t.Fatalf("refresh token %q is not 256 bits of base64url", rt)
				}
				access := m["access_token"].(string)
				if !e.protected(access) {
					t.Fatal("protected route refused the access token")
				}
				if e.protected(rt) {
					t.Fatal("a refresh token passed jwt_auth")
				}

				// refresh the access token; a browser sends only the cookie
				refreshReq := func(path, params string, extra map[string]string) issuerReq {
					rq := issuerReq{path: path, body: wrap(params), header: map[string]string{}}
					for k, v := range hdr {
						rq.header[k] = v
					}
					for k, v := range extra {
						rq.header[k] = v
					}
					if browser {
						rq.cookies = []*http.Cookie{{Name: "refreshToken", Value: rt}}
					} else {
						rq.header["refreshToken"] = rt
					}
					return rq
				}
				e.clock.Add(30 * time.Second)
				m = result(e.do(refreshReq("/update/access-token", `{"user_id":7}`, nil)))
				access2, _ := m["access_token"].(string)
				if access2 == "" || access2 == access || m["expires_in"] != float64(60) {
					t.Fatalf("update/access-token result %v", m)
				}
				if !e.protected(access2) {
					t.Fatal("refreshed access token refused")
				}

				// rotate: needs the access token of the same session
				res = e.do(refreshReq("/update/refresh-token", `{"user_id":7}`, map[string]string{"access_token": access2}))
				m = result(res)
				if m["status"] != "done" {
					t.Fatalf("update/refresh-token result %v", m)
				}
				cookie = res.refreshCookie("refreshToken")
				if cookie == nil || cookie.Value == rt {
					t.Fatalf("rotation set no new cookie: %+v", cookie)
				}
				newRT, inBody := m["refreshToken"].(string)
				if browser == inBody {
					t.Fatalf("browser=%v but refreshToken in body=%v", browser, inBody)
				}
				if !browser && newRT != cookie.Value {
					t.Fatal("body and cookie refresh tokens differ after rotation")
				}
				oldRT := rt
				rt = cookie.Value

				// the new token refreshes
				m = result(e.do(refreshReq("/update/access-token", `{"user_id":"7"}`, nil)))
				access3 := m["access_token"].(string)

				// revoke (logout) clears the cookie and ends the session
				res = e.do(refreshReq("/revoke/token", `{}`, nil))
				if m = result(res); m["status"] != "done" {
					t.Fatalf("revoke result %v", m)
				}
				if c := res.refreshCookie("refreshToken"); c == nil || c.MaxAge >= 0 || c.Value != "" {
					t.Fatalf("revoke did not clear the cookie: %+v", c)
				}
				res = e.do(refreshReq("/update/access-token", `{}`, nil))
				if envelope {
					m = res.expect(t, 200, "")
					errObj, _ := m["error"].(map[string]any)
					if errObj == nil || errObj["code"] != float64(100) {
						t.Fatalf("refresh after revoke: %v", m)
					}
					data := errObj["data"].(map[string]any)
					if data["error"] != "invalid_grant" || data["http_status"] != float64(401) || data["message"] == "" {
						t.Fatalf("odoo error data %v", data)
					}
				} else {
					res.expect(t, 401, "invalid_grant")
				}
				// without revoke_access_tokens, access tokens live until exp
				if !e.protected(access3) {
					t.Fatal("access token refused after logout without revoke_access_tokens")
				}
				// the secrets never reach the store's files
				for p, b := range e.storeFiles() {
					for _, secret := range []string{rt, oldRT, "alice-password"} {
						if bytes.Contains(b, []byte(secret)) {
							t.Fatalf("%s contains a secret", p)
						}
					}
				}
				if n := e.count(); n != 0 {
					t.Fatalf("%d sessions left after logout", n)
				}
			})
		}
	}
}

// TestIssuerAccessTokenClaims checks the access token's header and claims.
func TestIssuerAccessTokenClaims(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.Audience = []string{"mobile", "web"}; is.Iss = "https://auth.example" })
	access, _ := e.login("alice", "alice-password")
	id, err := e.is.self.verify(access)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := b64.DecodeString(access[:strings.IndexByte(access, '.')])
	var h map[string]any
	_ = json.Unmarshal(hdr, &h)
	if h["typ"] != "at+jwt" || h["alg"] != "EdDSA" || h["kid"] != e.kid() || h["kid"] == "" {
		t.Fatalf("header %v", h)
	}
	var c map[string]any
	_ = json.Unmarshal(id.payload, &c)
	want := map[string]any{
		"iss": "https://auth.example", "sub": "7", "user_id": float64(7), "login": "alice",
		"email": "alice@example.com", "partner_id": float64(70),
		"iat": float64(testNow.Unix()), "exp": float64(testNow.Add(time.Minute).Unix()),
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	if aud, _ := c["aud"].([]any); len(aud) != 2 || aud[0] != "mobile" || aud[1] != "web" {
		t.Errorf("aud %v", c["aud"])
	}
	if roles, _ := c["roles"].([]any); len(roles) != 1 || roles[0] != "admin" {
		t.Errorf("roles %v", c["roles"])
	}
	if jti, _ := c["jti"].(string); len(jti) < 16 {
		t.Errorf("jti %v", c["jti"])
	}
	if sid, _ := c["sid"].(string); sid == "" || !e.live(sid) {
		t.Errorf("sid %v names no session", c["sid"])
	}
}

// TestIssuerAccessTokenNeverOutlivesSession caps exp at the session's end.
func TestIssuerAccessTokenNeverOutlivesSession(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) {
		is.RefreshTTL = caddy.Duration(10 * time.Minute)
		is.IdleTimeout = caddy.Duration(10 * time.Minute)
	})
	_, rt := e.login("bob", "bob-password")
	e.clock.Add(9*time.Minute + 30*time.Second)
	m := e.do(issuerReq{path: "/update/access-token", header: map[string]string{"refreshToken": rt}}).expect(t, 200, "")
	if m["expires_in"] != float64(30) {
		t.Fatalf("expires_in %v, want 30 (the session's end)", m["expires_in"])
	}
	e.clock.Add(30 * time.Second)
	e.do(issuerReq{path: "/update/access-token", header: map[string]string{"refreshToken": rt}}).expect(t, 401, "invalid_grant")
}

// TestIssuerPassesOtherPaths lets everything else through.
func TestIssuerPassesOtherPaths(t *testing.T) {
	e := newIssuerEnv(t, nil)
	for _, p := range []string{"/protected/json", "/authenticatex", "/update", "/"} {
		if res := e.do(issuerReq{path: p, body: "{}"}); !res.called {
			t.Errorf("%s did not pass to next", p)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/other/authenticate", nil)
	w := httptest.NewRecorder()
	called := false
	_ = e.h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { called = true; return nil }))
	if !called {
		t.Error("a path outside the prefix did not pass")
	}
	e.h.Console = false
	if res := e.do(issuerReq{method: http.MethodGet, path: "/login"}); !res.called {
		t.Error("/login without console did not pass")
	}
}

// TestIssuerConsole serves the console with its headers.
func TestIssuerConsole(t *testing.T) {
	e := newIssuerEnv(t, nil)
	res := e.do(issuerReq{method: http.MethodGet, path: "/login"})
	if res.Code != 200 || res.called || !bytes.Equal(res.Body.Bytes(), consoleHTML) {
		t.Fatalf("console: %d called=%v", res.Code, res.called)
	}
	for k, v := range map[string]string{
		"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": consoleCSP,
		"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
	} {
		if got := res.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	res = e.do(issuerReq{path: "/login", body: "{}"})
	if res.Code != 405 || res.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /login: %d Allow %q", res.Code, res.Header().Get("Allow"))
	}
}
