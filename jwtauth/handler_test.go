package jwtauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestHandlerRequiredMode(t *testing.T) {
	clock := newTestClock()
	v := hsValidator()
	v.Require = []ClaimRequirement{{Claim: "scope", Values: []string{"read"}}}
	h, _ := newHandler(t, clock, "test", v, &Handler{Realm: `api "v1"`})

	t.Run("missing", func(t *testing.T) {
		res := serve(t, h, bearerRequest(""), nil)
		requireRefused(t, res, http.StatusUnauthorized, "missing")
		// RFC 6750 §3.1: no error code when the request has no credential
		if got := res.w.Header().Get("WWW-Authenticate"); got != `Bearer realm="api 'v1'"` {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	})
	t.Run("other scheme", func(t *testing.T) {
		r := bearerRequest("")
		r.Header.Set("Authorization", "Basic YWxpY2U6c2VjcmV0")
		requireRefused(t, serve(t, h, r, nil), http.StatusUnauthorized, "missing")
	})
	bad := []struct {
		name, token, reason, desc string
	}{
		{"bad signature", flipSignature(hs256(t, userClaims("alice", map[string]any{"scope": "read"}))), "invalid", "signature invalid"},
		{"wrong key", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), userClaims("alice", map[string]any{"scope": "read"}), nil), "invalid", "signature invalid"},
		{"expired", hs256(t, userClaims("alice", map[string]any{"scope": "read", "exp": testNow.Add(-time.Hour).Unix()})), "expired", "token expired"},
		{"garbage", "not-a-token", "malformed", "not a compact JWS"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			res := serve(t, h, bearerRequest(tt.token), nil)
			requireRefused(t, res, http.StatusUnauthorized, tt.reason)
			got := res.w.Header().Get("WWW-Authenticate")
			if !strings.HasPrefix(got, `Bearer realm="api 'v1'", error="invalid_token", error_description="`) {
				t.Fatalf("WWW-Authenticate %q", got)
			}
			if tt.desc != "" && !strings.Contains(got, `error_description="`+tt.desc+`"`) {
				t.Fatalf("WWW-Authenticate %q lacks description %q", got, tt.desc)
			}
			if strings.Contains(got, tt.token) {
				t.Fatal("the challenge echoes the token")
			}
		})
	}
	t.Run("insufficient scope", func(t *testing.T) {
		res := serve(t, h, bearerRequest(hs256(t, userClaims("alice", map[string]any{"scope": "write admin"}))), nil)
		requireRefused(t, res, http.StatusForbidden, "forbidden")
		if got := res.w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="api 'v1'", error="insufficient_scope", error_description="`) {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	})
	t.Run("ok", func(t *testing.T) {
		res := serve(t, h, bearerRequest(hs256(t, userClaims("alice", map[string]any{"scope": "write read"}))), nil)
		requirePassed(t, res)
		if res.w.Header().Get("WWW-Authenticate") != "" {
			t.Fatal("challenge on success")
		}
		if _, ok := res.placeholder("http.auth.jwt.error"); ok {
			t.Fatal("{http.auth.jwt.error} set on success")
		}
	})
}

func TestHandlerPublicMode(t *testing.T) {
	clock := newTestClock()
	v := hsValidator()
	v.Cookie = &CookieConfig{}
	h, _ := newHandler(t, clock, "test", v, &Handler{Public: true, ForwardClaims: []ForwardClaim{{Claim: "sub", Header: "X-User-Id"}}})

	t.Run("anonymous", func(t *testing.T) {
		r := bearerRequest("")
		r.Header.Set("X-User-Id", "eve")
		r.Header["x_user_id"] = []string{"eve"}
		res := serve(t, h, r, nil)
		requirePassed(t, res)
		for _, k := range []string{"http.auth.user.id", "http.auth.user.sub", "http.auth.jwt.validator", "http.auth.jwt.partner_id", "http.auth.jwt.claims.sub", "http.auth.jwt.error"} {
			if val, ok := res.placeholder(k); ok {
				t.Errorf("{%s} = %q on an anonymous request", k, val)
			}
		}
		//lint:ignore SA1008 the test put this raw, non-canonical key in the map itself
		if len(res.seen.Header.Values("X-User-Id")) != 0 || len(res.seen.Header["x_user_id"]) != 0 {
			t.Fatalf("spoofed identity reached next: %v", res.seen.Header)
		}
		if len(res.w.Result().Cookies()) != 0 {
			t.Fatal("cookie set for an anonymous request")
		}
	})
	t.Run("bad token", func(t *testing.T) {
		requireRefused(t, serve(t, h, bearerRequest("a.b.c"), nil), http.StatusUnauthorized, "malformed")
	})
	// the Bearer scheme without a token is a credential that fails, never
	// the anonymous path; another scheme is no credential for us
	for _, val := range []string{"Bearer", "Bearer ", "Bearer    ", "bearer\t", " BEARER  "} {
		t.Run("empty bearer "+strconv.Quote(val), func(t *testing.T) {
			r := bearerRequest("")
			r.Header.Set("Authorization", val)
			res := serve(t, h, r, nil)
			requireRefused(t, res, http.StatusUnauthorized, "malformed")
			if got := res.w.Header().Get("WWW-Authenticate"); got != `Bearer realm="restricted", error="invalid_token", error_description="empty token"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
		})
	}
	t.Run("Basic is no credential", func(t *testing.T) {
		r := bearerRequest("")
		r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
		requirePassed(t, serve(t, h, r, nil))
	})
	t.Run("expired token", func(t *testing.T) {
		tok := hs256(t, userClaims("alice", map[string]any{"exp": testNow.Add(-time.Hour).Unix()}))
		requireRefused(t, serve(t, h, bearerRequest(tok), nil), http.StatusUnauthorized, "expired")
	})
	t.Run("invalid identity cookie", func(t *testing.T) {
		r := bearerRequest("")
		r.AddCookie(&http.Cookie{Name: "__Host-jwtauth", Value: "eyJzdWIiOiJldmUifQ.9999999999.AAAA"})
		requireRefused(t, serve(t, h, r, nil), http.StatusUnauthorized, "invalid")
	})
	t.Run("valid token", func(t *testing.T) {
		res := serve(t, h, bearerRequest(hs256(t, userClaims("alice", nil))), nil)
		requirePassed(t, res)
		if id, _ := res.placeholder("http.auth.user.id"); id != "alice" {
			t.Fatalf("user id %q", id)
		}
		if got := res.seen.Header.Get("X-User-Id"); got != "alice" {
			t.Fatalf("X-User-Id %q", got)
		}
	})
}

func TestHandlerPlaceholders(t *testing.T) {
	clock := newTestClock()
	v := hsValidator()
	v.PartnerID = &PartnerIDSource{Claim: "partner"}
	h, _ := newHandler(t, clock, "staff", v, &Handler{})
	tok := hs256(t, userClaims("alice", map[string]any{
		"email": "alice@example.com", "partner": 42, "roles": []string{"a", "b"}, "name": "Alice",
	}))
	res := serve(t, h, bearerRequest(tok), nil)
	requirePassed(t, res)
	want := map[string]string{
		"http.auth.user.id":             "alice",
		"http.auth.user.email":          "alice@example.com",
		"http.auth.user.name":           "Alice",
		"http.auth.jwt.validator":       "staff",
		"http.auth.jwt.partner_id":      "42",
		"http.auth.jwt.claims.email":    "alice@example.com",
		"http.auth.jwt.claims.partner":  "42",
		"http.auth.jwt.claims.roles":    `["a","b"]`,
		"http.auth.jwt.claims.iss":      "iss",
		"http.auth.jwt.claims.sub":      "alice",
		"http.auth.user.iss":            "iss",
		"http.auth.jwt.claims.nonexist": "",
	}
	for k, w := range want {
		got, ok := res.placeholder(k)
		if got != w || ok != (w != "") {
			t.Errorf("{%s} = %q (known %v), want %q", k, got, ok, w)
		}
	}
	// as respond and header_up would expand them
	if got := res.repl.ReplaceAll("{http.auth.user.id}/{http.auth.user.email}/{http.auth.jwt.partner_id}", "-"); got != "alice/alice@example.com/42" {
		t.Fatalf("ReplaceAll: %q", got)
	}

	// user_id static: the id is fixed, the claims still available
	v2 := hsValidator()
	v2.UserID = &UserIDSource{Static: "service"}
	h2, _ := newHandler(t, clock, "svc", v2, &Handler{})
	res = serve(t, h2, bearerRequest(tok), nil)
	requirePassed(t, res)
	if id, _ := res.placeholder("http.auth.user.id"); id != "service" {
		t.Fatalf("static user id %q", id)
	}
	if sub, _ := res.placeholder("http.auth.user.sub"); sub != "alice" {
		t.Fatalf("sub %q", sub)
	}
	if p, _ := res.placeholder("http.auth.jwt.partner_id"); p != "" {
		t.Fatalf("partner id %q without partner_id", p)
	}
}

func TestHandlerForwardHeaders(t *testing.T) {
	clock := newTestClock()
	h, _ := newHandler(t, clock, "test", hsValidator(), &Handler{
		ForwardClaims: []ForwardClaim{
			{Claim: "sub", Header: "X-User-Id"},
			{Claim: "email", Header: "X-User-Email"},
			{Claim: "note", Header: "X-Note"},
		},
		ForwardPayload: "X-Jwt-Payload",
	})
	spoof := func(r *http.Request) {
		// every spelling a backend might fold into X-User-Id
		r.Header["X-User-Id"] = []string{"eve"}
		r.Header["x_user_id"] = []string{"eve"}
		r.Header["X_User_Id"] = []string{"eve"}
		r.Header["X-USER-ID"] = []string{"eve"}
		r.Header["x-user-email"] = []string{"eve@example.com"}
		r.Header["X-Jwt-Payload"] = []string{"e30"}
		r.Header["X_JWT_PAYLOAD"] = []string{"e30"}
		r.Header["X-Note"] = []string{"forged"}
	}
	spoofed := func(t *testing.T, hdr http.Header) {
		t.Helper()
		for k := range hdr {
			if n := normalizeHeaderName(k); n == "x-user-id" || n == "x-user-email" || n == "x-jwt-payload" || n == "x-note" {
				if k != http.CanonicalHeaderKey(k) || len(hdr[k]) != 1 {
					t.Errorf("spoofed header %q = %q reached next", k, hdr[k])
				}
			}
		}
	}

	c := userClaims("alice", map[string]any{"email": "alice@example.com", "note": "line1\nline2"})
	tok := hs256(t, c)
	r := bearerRequest(tok)
	spoof(r)
	res := serve(t, h, r, nil)
	requirePassed(t, res)
	spoofed(t, res.seen.Header)
	if got := res.seen.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "alice" {
		t.Fatalf("X-User-Id %q", got)
	}
	if got := res.seen.Header.Get("X-User-Email"); got != "alice@example.com" {
		t.Fatalf("X-User-Email %q", got)
	}
	if got := res.seen.Header.Values("X-Note"); len(got) != 0 {
		t.Fatalf("a claim with a control character was forwarded: %q", got)
	}
	raw, err := base64.RawURLEncoding.DecodeString(res.seen.Header.Get("X-Jwt-Payload"))
	if err != nil {
		t.Fatalf("payload header: %v", err)
	}
	var payload map[string]any
	if err := json.Unmarshal(raw, &payload); err != nil || payload["sub"] != "alice" || payload["email"] != "alice@example.com" {
		t.Fatalf("payload %s (%v)", raw, err)
	}
	if seg := strings.Split(tok, ".")[1]; res.seen.Header.Get("X-Jwt-Payload") != seg {
		t.Fatal("the forwarded payload is not the token's verified payload segment")
	}

	// a claim the token lacks: the header is absent, not left spoofed
	tok = hs256(t, userClaims("bob", nil))
	r = bearerRequest(tok)
	spoof(r)
	res = serve(t, h, r, nil)
	requirePassed(t, res)
	spoofed(t, res.seen.Header)
	if got := res.seen.Header.Values("X-User-Email"); len(got) != 0 {
		t.Fatalf("X-User-Email %q for a token without email", got)
	}

	// refused requests never reach next, and the spoofed headers are gone
	// from the request all the same
	r = bearerRequest("")
	spoof(r)
	res = serve(t, h, r, nil)
	requireRefused(t, res, http.StatusUnauthorized, "missing")
	for k := range r.Header {
		if strings.Contains(strings.ToLower(k), "user") {
			t.Errorf("header %q kept on the refused request", k)
		}
	}
}

func TestHandlerStripToken(t *testing.T) {
	clock := newTestClock()
	v := hsValidator()
	sources := []TokenSource{
		{From: "header", Name: "Authorization", Prefix: "Bearer"},
		{From: "cookie", Name: "access_token"},
		{From: "query", Name: "access_token"},
	}
	v.Sources = append([]TokenSource{}, sources...)
	strip, _ := newHandler(t, clock, "test", v, &Handler{StripToken: true})
	v2 := hsValidator()
	v2.Sources = append([]TokenSource{}, sources...)
	keep, _ := newHandler(t, clock, "test", v2, &Handler{})
	tok := hs256(t, userClaims("alice", nil))

	t.Run("header", func(t *testing.T) {
		r := bearerRequest(tok)
		r.Header.Set("X-Other", "1")
		res := serve(t, strip, r, nil)
		requirePassed(t, res)
		if res.seen.Header.Get("Authorization") != "" || res.seen.Header.Get("X-Other") != "1" {
			t.Fatalf("headers after strip: %v", res.seen.Header)
		}
		res = serve(t, keep, bearerRequest(tok), nil)
		requirePassed(t, res)
		if res.seen.Header.Get("Authorization") == "" {
			t.Fatal("token stripped without strip_token")
		}
	})
	t.Run("same token in two headers", func(t *testing.T) {
		v3 := hsValidator()
		v3.Sources = []TokenSource{
			{From: "header", Name: "Authorization", Prefix: "Bearer"},
			{From: "header", Name: "X-Access-Token"},
		}
		both, _ := newHandler(t, clock, "test", v3, &Handler{StripToken: true})
		r := bearerRequest(tok)
		r.Header.Set("X-Access-Token", tok)
		res := serve(t, both, r, nil)
		requirePassed(t, res)
		if res.seen.Header.Get("Authorization") != "" || res.seen.Header.Get("X-Access-Token") != "" {
			t.Fatalf("a copy of the token survived strip_token: %v", res.seen.Header)
		}
	})
	t.Run("cookie", func(t *testing.T) {
		mk := func() *http.Request {
			r := bearerRequest("")
			r.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
			r.AddCookie(&http.Cookie{Name: "access_token", Value: tok})
			r.AddCookie(&http.Cookie{Name: "lang", Value: "fr"})
			return r
		}
		res := serve(t, strip, mk(), nil)
		requirePassed(t, res)
		if _, err := res.seen.Cookie("access_token"); err == nil {
			t.Fatal("token cookie kept")
		}
		if c, err := res.seen.Cookie("theme"); err != nil || c.Value != "dark" {
			t.Fatal("other cookie lost")
		}
		if c, err := res.seen.Cookie("lang"); err != nil || c.Value != "fr" {
			t.Fatal("other cookie lost")
		}
		res = serve(t, keep, mk(), nil)
		requirePassed(t, res)
		if _, err := res.seen.Cookie("access_token"); err != nil {
			t.Fatal("token cookie stripped without strip_token")
		}
	})
	t.Run("query", func(t *testing.T) {
		mk := func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "https://example.com/p?a=1&access_token="+tok+"&b=2", nil)
		}
		res := serve(t, strip, mk(), nil)
		requirePassed(t, res)
		if res.seen.URL.RawQuery != "a=1&b=2" || strings.Contains(res.seen.RequestURI, tok) || res.seen.RequestURI != "/p?a=1&b=2" {
			t.Fatalf("query %q, RequestURI %q", res.seen.URL.RawQuery, res.seen.RequestURI)
		}
		res = serve(t, keep, mk(), nil)
		requirePassed(t, res)
		if res.seen.URL.Query().Get("access_token") != tok {
			t.Fatal("query token stripped without strip_token")
		}
	})
}

func TestHandlerCORSPreflight(t *testing.T) {
	clock := newTestClock()
	allow, _ := newHandler(t, clock, "test", hsValidator(), &Handler{AllowCORSPreflight: true, ForwardClaims: []ForwardClaim{{Claim: "sub", Header: "X-User-Id"}}})
	a := provisionApp(t, clock.Now, map[string]*Validator{"deny": hsValidator()})
	deny := provisionHandler(t, a, &Handler{Validators: []string{"deny"}})

	preflight := func() *http.Request {
		r := httptest.NewRequest(http.MethodOptions, "https://example.com/api", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("X-User-Id", "eve")
		return r
	}
	res := serve(t, allow, preflight(), nil)
	requirePassed(t, res)
	if res.seen.Header.Get("X-User-Id") != "" {
		t.Fatal("spoofed header passed on a preflight")
	}
	if _, ok := res.placeholder("http.auth.user.id"); ok {
		t.Fatal("preflight authenticated")
	}
	requireRefused(t, serve(t, deny, preflight(), nil), http.StatusUnauthorized, "missing")

	// an OPTIONS that is not a preflight is authenticated as usual
	r := preflight()
	r.Header.Del("Access-Control-Request-Method")
	requireRefused(t, serve(t, allow, r, nil), http.StatusUnauthorized, "missing")
	r = preflight()
	r.Header.Del("Origin")
	requireRefused(t, serve(t, allow, r, nil), http.StatusUnauthorized, "missing")
}

func TestHandlerUserConflict(t *testing.T) {
	h, _ := newHandler(t, newTestClock(), "test", hsValidator(), &Handler{})
	tok := hs256(t, userClaims("alice", nil))

	other := caddy.NewReplacer()
	other.Set("http.auth.user.id", "bob") // e.g. basic_auth ran before
	res := serve(t, h, bearerRequest(tok), other)
	if res.status() != http.StatusUnauthorized || res.called {
		t.Fatalf("status %d called %v", res.status(), res.called)
	}
	if !errors.Is(res.err, ErrUserConflict) {
		t.Fatalf("err %v", res.err)
	}
	if id, _ := other.GetString("http.auth.user.id"); id != "bob" {
		t.Fatalf("user id overwritten: %q", id)
	}

	same := caddy.NewReplacer()
	same.Set("http.auth.user.id", "alice")
	requirePassed(t, serve(t, h, bearerRequest(tok), same))

	empty := caddy.NewReplacer()
	empty.Set("http.auth.user.id", "")
	requirePassed(t, serve(t, h, bearerRequest(tok), empty))
}

func TestHandlerConflictingTokens(t *testing.T) {
	v := hsValidator()
	v.Sources = []TokenSource{
		{From: "header", Name: "Authorization", Prefix: "Bearer"},
		{From: "header", Name: "X-Api-Token"},
	}
	h, _ := newHandler(t, newTestClock(), "test", v, &Handler{Public: true})
	alice, bob := hs256(t, userClaims("alice", nil)), hs256(t, userClaims("bob", nil))

	r := bearerRequest(alice)
	r.Header.Set("X-Api-Token", bob)
	res := serve(t, h, r, nil)
	if res.err == nil || res.called || !errors.Is(res.err, ErrConflictingTokens) {
		t.Fatalf("two tokens: err %v called %v", res.err, res.called)
	}
	if res.status() != http.StatusBadRequest {
		t.Fatalf("status %d", res.status())
	}

	r = bearerRequest(alice)
	r.Header.Add("Authorization", "Bearer "+bob)
	if res := serve(t, h, r, nil); res.called || !errors.Is(res.err, ErrConflictingTokens) {
		t.Fatalf("repeated header: err %v called %v", res.err, res.called)
	}

	// the same token twice is not ambiguous
	r = bearerRequest(alice)
	r.Header.Set("X-Api-Token", alice)
	requirePassed(t, serve(t, h, r, nil))
}

func TestHandlerMultipleValidators(t *testing.T) {
	clock := newTestClock()
	first := &Validator{Issuers: []string{"first"}, Audiences: []string{"aud"}, Secret: strings.Repeat("1", 32)}
	second := &Validator{Issuers: []string{"second"}, Audiences: []string{"aud"}, Secret: strings.Repeat("2", 32)}
	admin := &Validator{Issuers: []string{"second"}, Audiences: []string{"aud"}, Secret: strings.Repeat("2", 32),
		Require: []ClaimRequirement{{Claim: "roles", Values: []string{"admin"}}}}
	a := provisionApp(t, clock.Now, map[string]*Validator{"mv-first": first, "mv-second": second, "mv-admin": admin})
	h := provisionHandler(t, a, &Handler{Validators: []string{"mv-first", "mv-second"}})

	c := userClaims("carol", map[string]any{"iss": "second"})
	res := serve(t, h, bearerRequest(sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("2", 32)), c, nil)), nil)
	requirePassed(t, res)
	if name, _ := res.placeholder("http.auth.jwt.validator"); name != "mv-second" {
		t.Fatalf("validator %q", name)
	}
	c = userClaims("dave", map[string]any{"iss": "first"})
	res = serve(t, h, bearerRequest(sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("1", 32)), c, nil)), nil)
	requirePassed(t, res)
	if name, _ := res.placeholder("http.auth.jwt.validator"); name != "mv-first" {
		t.Fatalf("validator %q", name)
	}
	// accepted by none: 401
	c = userClaims("eve", map[string]any{"iss": "second"})
	res = serve(t, h, bearerRequest(sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("3", 32)), c, nil)), nil)
	requireRefused(t, res, http.StatusUnauthorized, "invalid")

	// a validator whose require rules fail does not stop a later one
	// from accepting; alone, it answers 403
	h2 := provisionHandler(t, a, &Handler{Validators: []string{"mv-admin", "mv-second"}})
	tok := sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("2", 32)), userClaims("carol", map[string]any{"iss": "second", "roles": []string{"user"}}), nil)
	res = serve(t, h2, bearerRequest(tok), nil)
	requirePassed(t, res)
	if name, _ := res.placeholder("http.auth.jwt.validator"); name != "mv-second" {
		t.Fatalf("validator %q", name)
	}
	h3 := provisionHandler(t, a, &Handler{Validators: []string{"mv-admin"}})
	requireRefused(t, serve(t, h3, bearerRequest(tok), nil), http.StatusForbidden, "forbidden")
	tok = sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("2", 32)), userClaims("carol", map[string]any{"iss": "second", "roles": []string{"user", "admin"}}), nil)
	res = serve(t, h2, bearerRequest(tok), nil)
	requirePassed(t, res)
	if name, _ := res.placeholder("http.auth.jwt.validator"); name != "mv-admin" {
		t.Fatalf("validator %q", name)
	}
}

func TestHandlerMetrics(t *testing.T) {
	clock := newTestClock()
	v := hsValidator()
	v.Require = []ClaimRequirement{{Claim: "scope", Values: []string{"read"}}}
	h, _ := newHandler(t, clock, "metrics-test", v, &Handler{})
	a := provisionApp(t, clock.Now, map[string]*Validator{"metrics-public": hsValidator()})
	pub := provisionHandler(t, a, &Handler{Validators: []string{"metrics-public"}, Public: true})

	// the value as a scrape would read it (prometheus/testutil.ToFloat64
	// does the same, but needs a module this go.mod does not list)
	count := func(validator, result string) float64 {
		var m dto.Metric
		if err := requestsTotal.WithLabelValues(validator, result).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	good := hs256(t, userClaims("alice", map[string]any{"scope": "read"}))
	steps := []struct {
		h      *Handler
		token  string
		name   string
		result string
	}{
		{h, good, "metrics-test", "ok"},
		{h, good, "metrics-test", "ok"},
		{h, "", "metrics-test", "missing"},
		{h, "x.y", "metrics-test", "malformed"},
		{h, hs256(t, userClaims("alice", map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), "metrics-test", "expired"},
		{h, hs256(t, userClaims("alice", map[string]any{"iss": "other"})), "metrics-test", "invalid"},
		{h, hs256(t, userClaims("alice", nil)), "metrics-test", "forbidden"},
		{pub, "", "metrics-public", "anonymous"},
		{pub, good, "metrics-public", "ok"},
	}
	for i, s := range steps {
		before := count(s.name, s.result)
		serve(t, s.h, bearerRequest(s.token), nil)
		if got := count(s.name, s.result); got != before+1 {
			t.Errorf("step %d: %s/%s went from %v to %v", i, s.name, s.result, before, got)
		}
	}
	if got := count("metrics-test", "ok"); got != 2 {
		t.Errorf("metrics-test ok = %v, want 2", got)
	}
}

// A from_header name with '_' (or '.') is dropped by Caddy's server unless
// listed in expected_underscore_headers (expected_dot_headers): provisioning
// warns, once per validator, server and header, with the line to add, which
// keeps the entries the server already has.
func TestHandlerWarnsAboutDroppedHeaderSources(t *testing.T) {
	v := hsValidator()
	v.Sources = []TokenSource{
		{From: "header", Name: "Authorization", Prefix: "Bearer"},
		{From: "header", Name: "access_token"},
		{From: "header", Name: "x.token"},
		{From: "header", Name: "odd_x.tok"},
		{From: "query", Name: "access_token"},
	}
	a := provisionApp(t, newTestClock().Now, map[string]*Validator{"api": v})
	core, logs := observer.New(zapcore.WarnLevel)
	mk := func() *Handler {
		h := &Handler{Validators: []string{"api"}}
		if err := h.setup(a, zap.New(core)); err != nil {
			t.Fatal(err)
		}
		return h
	}
	added := func() map[string]string {
		out := map[string]string{}
		for _, e := range logs.TakeAll() {
			f := e.ContextMap()
			if f["validator"] != "api" || !strings.Contains(e.Message, "from_header") {
				t.Fatalf("entry %v %v", e.Message, f)
			}
			out[f["header"].(string)] = f["add"].(string)
		}
		return out
	}

	bare := &caddyhttp.Server{Listen: []string{":443"}}
	mk().checkHeaderSources(bare)
	want := map[string]string{
		"access_token": "expected_underscore_headers access_token",
		"x.token":      "expected_dot_headers x.token",
		"odd_x.tok":    "expected_underscore_headers odd_x.tok",
	}
	if got := added(); !reflect.DeepEqual(got, want) {
		t.Fatalf("warnings %v, want %v", got, want)
	}
	mk().checkHeaderSources(bare) // a second handler on the same server
	if got := added(); len(got) != 0 {
		t.Fatalf("warned again: %v", got)
	}

	other := &caddyhttp.Server{ExpectedUnderscoreHeaders: []string{"x_user_id"}}
	mk().checkHeaderSources(other)
	if got := added(); got["access_token"] != "expected_underscore_headers x_user_id access_token" {
		t.Fatalf("line for a server with a list: %v", got)
	}

	for _, srv := range []*caddyhttp.Server{
		{ExpectedUnderscoreHeaders: []string{"ACCESS_TOKEN", "odd_x.tok"}, ExpectedDotHeaders: []string{"x.*"}},
		{ExpectedUnderscoreHeaders: []string{"access_*"}, ExpectedDotHeaders: []string{"X.Token", "odd_x.tok"}},
	} {
		mk().checkHeaderSources(srv)
		if got := added(); len(got) != 0 {
			t.Fatalf("warned although the server keeps the headers (%v %v): %v", srv.ExpectedUnderscoreHeaders, srv.ExpectedDotHeaders, got)
		}
	}
	// a glob never covers a name with both '_' and '.'
	mk().checkHeaderSources(&caddyhttp.Server{ExpectedUnderscoreHeaders: []string{"access_token", "odd_*"}, ExpectedDotHeaders: []string{"x.*", "odd_x.*"}})
	if got := added(); len(got) != 1 || got["odd_x.tok"] == "" {
		t.Fatalf("warnings %v", got)
	}
}
