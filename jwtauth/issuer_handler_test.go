package jwtauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// TestIssuerRequestErrors covers the protocol errors of the endpoints.
func TestIssuerRequestErrors(t *testing.T) {
	e := newIssuerEnv(t, nil)
	login := `{"login":"alice","password":"alice-password"}`
	big := `{"login":"alice","password":"alice-password","pad":"` + strings.Repeat("x", maxIssuerBody) + `"}`
	for _, tc := range []struct {
		name   string
		rq     issuerReq
		status int
		code   string
	}{
		{"GET", issuerReq{method: http.MethodGet, path: "/authenticate"}, 405, "invalid_request"},
		{"PUT", issuerReq{method: http.MethodPut, path: "/revoke/token", body: "{}"}, 405, "invalid_request"},
		{"no content type", issuerReq{path: "/authenticate", body: login, ctype: "-"}, 415, "invalid_request"},
		{"form", issuerReq{path: "/authenticate", body: "login=alice", ctype: "application/x-www-form-urlencoded"}, 415, "invalid_request"},
		{"text/plain", issuerReq{path: "/authenticate", body: login, ctype: "text/plain"}, 415, "invalid_request"},
		{"latin1", issuerReq{path: "/authenticate", body: login, ctype: "application/json; charset=iso-8859-1"}, 415, "invalid_request"},
		{"too large", issuerReq{path: "/authenticate", body: big}, 413, "invalid_request"},
		{"malformed", issuerReq{path: "/authenticate", body: `{"login":`}, 400, "invalid_request"},
		{"trailing data", issuerReq{path: "/authenticate", body: login + `{}`}, 400, "invalid_request"},
		{"array", issuerReq{path: "/authenticate", body: `[1]`}, 400, "invalid_request"},
		{"duplicate member", issuerReq{path: "/authenticate", body: `{"login":"bob","login":"alice","password":"alice-password"}`}, 400, "invalid_request"},
		{"login not a string", issuerReq{path: "/authenticate", body: `{"login":7,"password":"x"}`}, 400, "invalid_request"},
		{"missing password", issuerReq{path: "/authenticate", body: `{"login":"alice"}`}, 400, "invalid_request"},
		{"bad jsonrpc version", issuerReq{path: "/authenticate", body: `{"jsonrpc":"1.0","params":` + login + `}`}, 400, "invalid_request"},
		{"no refresh token", issuerReq{path: "/update/access-token", body: `{}`}, 400, "invalid_request"},
		{"refresh token not a string", issuerReq{path: "/update/access-token", body: `{"refreshToken":5}`}, 400, "invalid_request"},
		{"conflicting refresh tokens", issuerReq{path: "/revoke/token", body: `{"refreshToken":"a"}`, header: map[string]string{"refreshToken": "b"}}, 400, "invalid_request"},
		{"unknown refresh token", issuerReq{path: "/update/access-token", body: `{}`, header: map[string]string{"refreshToken": strings.Repeat("A", 43)}}, 401, "invalid_grant"},
		{"garbage refresh token", issuerReq{path: "/update/access-token", body: `{}`, header: map[string]string{"refreshToken": "x.y.z"}}, 401, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(tc.rq)
			res.expect(t, tc.status, tc.code)
			if tc.status == 405 && res.Header().Get("Allow") != "POST" {
				t.Fatalf("Allow %q", res.Header().Get("Allow"))
			}
			if res.called {
				t.Fatal("an endpoint request reached next")
			}
		})
	}
	// a chunked body over the cap, without Content-Length
	rq := issuerReq{path: "/authenticate", body: big}
	res := e.doChunked(rq)
	res.expect(t, 413, "invalid_request")

	// in the envelope, errors found in it are answered in it
	m := e.do(issuerReq{path: "/authenticate", body: `{"jsonrpc":"2.0","id":"x","params":{"login":"alice"}}`}).expect(t, 200, "")
	errObj, _ := m["error"].(map[string]any)
	if m["id"] != "x" || errObj == nil || errObj["code"] != float64(200) || errObj["message"] != "Odoo Server Error" {
		t.Fatalf("envelope %v", m)
	}
	if data := errObj["data"].(map[string]any); data["http_status"] != float64(400) || data["name"] != "werkzeug.exceptions.BadRequest" {
		t.Fatalf("data %v", data)
	}
	m = e.do(issuerReq{path: "/authenticate", body: `{"jsonrpc":"2.0","params":[1]}`}).expect(t, 200, "")
	if m["id"] != nil || m["error"] == nil {
		t.Fatalf("envelope %v", m)
	}
}

// doChunked sends the body without a Content-Length.
func (e *issuerEnv) doChunked(rq issuerReq) issuerRes {
	e.t.Helper()
	rq.header = map[string]string{"Transfer-Encoding": "chunked"}
	return e.doWith(rq, func(r *http.Request) { r.ContentLength = -1 })
}

// TestIssuerCrossOriginCookieRefused refuses cookie-carried refresh,
// rotation and revocation from another origin, and cross-origin browser
// logins; the family survives.
func TestIssuerCrossOriginCookieRefused(t *testing.T) {
	e := newIssuerEnv(t, nil)
	access, rt := e.login("alice", "alice-password")
	cookie := &http.Cookie{Name: "refreshToken", Value: rt}
	crossSite := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "access_token": access}
	originOnly := map[string]string{"Origin": "https://evil.example", "access_token": access}
	for _, p := range []string{"/update/access-token", "/update/refresh-token", "/revoke/token"} {
		for _, hdr := range []map[string]string{crossSite, originOnly} {
			e.do(issuerReq{path: p, body: "{}", header: hdr, cookies: []*http.Cookie{cookie}}).expect(t, 403, "invalid_request")
		}
	}
	e.do(issuerReq{path: "/authenticate", body: `{"login":"alice","password":"alice-password"}`, header: crossSite}).expect(t, 403, "invalid_request")
	// same origin passes
	same := map[string]string{"Origin": "http://example.com", "Sec-Fetch-Site": "same-origin"}
	m := e.do(issuerReq{path: "/update/access-token", body: "{}", header: same, cookies: []*http.Cookie{cookie}}).expect(t, 200, "")
	if _, ok := m["refreshToken"]; ok {
		t.Fatal("refresh token in a body")
	}
	// a token sent explicitly is no cookie: a cross-site page cannot know it
	e.do(issuerReq{path: "/update/access-token", body: "{}", header: map[string]string{"Sec-Fetch-Site": "cross-site", "refreshToken": rt}}).expect(t, 200, "")
}

// TestIssuerUserIDMustMatch refuses a user_id that is not the session's,
// before anything changes.
func TestIssuerUserIDMustMatch(t *testing.T) {
	e := newIssuerEnv(t, nil)
	access, rt := e.login("alice", "alice-password")
	hdr := map[string]string{"refreshToken": rt, "access_token": access}
	e.do(issuerReq{path: "/update/access-token", body: `{"user_id":8}`, header: hdr}).expect(t, 401, "invalid_grant")
	e.do(issuerReq{path: "/update/refresh-token", body: `{"user_id":"8"}`, header: hdr}).expect(t, 401, "invalid_grant")
	e.do(issuerReq{path: "/update/refresh-token", body: `{"user_id":{}}`, header: hdr}).expect(t, 400, "invalid_request")
	e.do(issuerReq{path: "/update/refresh-token", body: `{"user_id":7}`, header: hdr}).expect(t, 200, "")
}

// TestIssuerAnswerError maps each kind of endpoint error to its answer in
// the one place that does: an endpoint error as it is, a session refusal
// 401, a failed store 503, anything else a 500 for Caddy's error handling.
func TestIssuerAnswerError(t *testing.T) {
	h := &IssuerHandler{issuer: new(Issuer)}
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"endpoint error", errBadCredentials, http.StatusUnauthorized, "invalid_grant"},
		{"wrapped endpoint error", fmt.Errorf("login: %w", errLimiterDown), http.StatusServiceUnavailable, "temporarily_unavailable"},
		{"session refused", sessionFailure{sessions.ErrReused}, http.StatusUnauthorized, "invalid_grant"},
		{"session unknown", sessionFailure{sessions.ErrUnknown}, http.StatusUnauthorized, "invalid_grant"},
		{"store failed", sessionFailure{errors.New("disk full")}, http.StatusServiceUnavailable, "temporarily_unavailable"},
		{"not started", sessionFailure{errNotStarted}, http.StatusServiceUnavailable, "temporarily_unavailable"},
	} {
		w := httptest.NewRecorder()
		if err := h.answerError(w, new(apiRequest), tc.err); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var body map[string]string
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tc.status || body["error"] != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, w.Code, body["error"], tc.status, tc.code)
		}
	}
	w := httptest.NewRecorder()
	err := h.answerError(w, new(apiRequest), errors.New("signing failed"))
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusInternalServerError || w.Body.Len() != 0 {
		t.Fatalf("other error: %v, body %q; want a 500 HandlerError and nothing written", err, w.Body.String())
	}
}
