package jwtauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// referenceHeaderTokens is the reference reading of the header sources of
// multiSources: the tokens that Authorization (scheme Bearer) and X-Api-Token
// (bare) carry, in order, and whether a value of ours with no token (the
// Bearer scheme alone, or a blank X-Api-Token) comes before any conflict.
func referenceHeaderTokens(auth []string, api []string) (out []string, empty bool) {
	conflict := func() bool {
		for _, t := range out {
			if t != out[0] {
				return true
			}
		}
		return false
	}
	for _, v := range auth {
		v = strings.TrimSpace(v)
		if strings.EqualFold(v, "bearer") {
			return out, !conflict()
		}
		if len(v) > 7 && strings.EqualFold(v[:6], "bearer") && (v[6] == ' ' || v[6] == '\t') {
			tok := strings.TrimSpace(v[7:])
			if tok == "" {
				return out, !conflict()
			}
			out = append(out, tok)
		}
	}
	for _, v := range api {
		v = strings.TrimSpace(v)
		if v == "" {
			return out, !conflict()
		}
		if !strings.ContainsAny(v, " \t") {
			out = append(out, v)
		}
	}
	return out, false
}

// referenceOnly is the reference reading of a repeated cookie or query parameter:
// its one distinct non-empty value, "" for none, ok=false for several.
func referenceOnly(vals []string) (string, bool) {
	distinct := map[string]bool{}
	for _, v := range vals {
		if v != "" {
			distinct[v] = true
		}
	}
	if len(distinct) > 1 {
		return "", false
	}
	for v := range distinct {
		return v, true
	}
	return "", true
}

// FuzzExtractToken feeds arbitrary header and cookie values and raw query
// strings to extractToken. It must never panic; a returned token must come
// from the request; two different header tokens, or a cookie or query
// parameter repeated with different values, must be refused, as must the
// Bearer scheme without a token; and cookie and
// query sources may only be used when no header carries a token. Cookie and
// query parsing is the standard library's and serves as the reference.
func FuzzExtractToken(f *testing.F) {
	f.Add("Bearer abc", "", "", "", "")
	f.Add("Bearer abc", "Bearer xyz", "", "", "")
	f.Add("bearer abc", "", "abc", "c", "access_token=q")
	f.Add("Basic dXNlcjpwYXNz", "", "", "c1", "access_token=q1")
	f.Add("", "", "", "\"quoted\"", "")
	f.Add("Bearer\t a.b.c ", "", "a.b.c", "", "access_token=a+b&c=d")
	f.Add("", "", "Bearer x", "a;tok=b", "access_token=%zz")
	f.Add("", "", "", "", "access_token=a&access_token=b")
	sources := multiSources()
	f.Fuzz(func(t *testing.T, auth1, auth2, api, cookie, rawQuery string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		var auth []string
		for _, v := range []string{auth1, auth2} {
			if v != "" {
				auth = append(auth, v)
			}
		}
		if len(auth) > 0 {
			r.Header["Authorization"] = auth
		}
		var apis []string
		if api != "" {
			apis = []string{api}
			r.Header["X-Api-Token"] = apis
		}
		if cookie != "" {
			r.Header["Cookie"] = []string{"tok=" + cookie}
		}
		r.URL.RawQuery = rawQuery

		// the reference, computed before extractToken sees the request
		want, empty := referenceHeaderTokens(auth, apis)
		distinct := map[string]bool{}
		for _, w := range want {
			distinct[w] = true
		}
		var cookieVals []string
		for _, c := range r.CookiesNamed("tok") {
			cookieVals = append(cookieVals, c.Value)
		}
		wantCookie, cookieOK := referenceOnly(cookieVals)
		wantQuery, queryOK := referenceOnly(r.URL.Query()["access_token"])

		ex, err := extractToken(r, sources)
		switch {
		case empty:
			if !errors.Is(err, ErrTokenMalformed) || ex.token != "" {
				t.Fatalf("header %q / %q without a token: got %q, %v; want an empty-token refusal", auth, apis, ex.token, err)
			}
			return
		case len(distinct) > 1:
			if !errors.Is(err, ErrConflictingTokens) {
				t.Fatalf("header tokens %q: got %q, %v; want a conflict", want, ex.token, err)
			}
			return
		case len(distinct) == 1:
			if err != nil || ex.token != want[0] || ex.src.From != "header" {
				t.Fatalf("header token %q: got %q, %v", want[0], ex.token, err)
			}
		case !cookieOK || (wantCookie == "" && !queryOK):
			if !errors.Is(err, ErrConflictingTokens) {
				t.Fatalf("cookies %q / query %q: got %q, %v; want a conflict", cookieVals, rawQuery, ex.token, err)
			}
			return
		case wantCookie != "":
			if err != nil || ex.token != wantCookie || ex.src.From != "cookie" {
				t.Fatalf("cookie %q: got %q, %v", wantCookie, ex.token, err)
			}
			if !strings.Contains(cookie, ex.token) {
				t.Fatalf("cookie token %q not from cookie %q", ex.token, cookie)
			}
		case wantQuery != "":
			if err != nil || ex.token != wantQuery || ex.src.From != "query" {
				t.Fatalf("query %q: got %q, %v", wantQuery, ex.token, err)
			}
		default:
			if !errors.Is(err, ErrTokenMissing) || ex.token != "" {
				t.Fatalf("no token sent: got %q, %v", ex.token, err)
			}
			return
		}
		// stripping must never panic, and must remove what it found
		stripHeaders(r.Header, []string{"x-user-id"})
		ex.strip(r)
		if again, err := extractToken(r, []TokenSource{*ex.src}); err == nil {
			t.Fatalf("token %q still present after strip", again.token)
		}
	})
}

// fuzzSignedTokens are the tokens FuzzVerify signs; nothing else may be accepted.
func fuzzSignedTokens(t testing.TB) []string {
	p := rawPayload().String()
	return []string{
		signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), hs256Header, p),
		signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256"}`, p),
		signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256","kid":"k"}`, rawPayload().add("scope", `"a b"`).String()),
	}
}

// FuzzVerify feeds arbitrary strings to an HS256 validator at a pinned time.
// It must never panic, every refusal must map to a 401, and only the exact
// tokens signed here may be accepted: no re-encoding, padding, case change
// or header edit of a signed token passes.
func FuzzVerify(f *testing.F) {
	signed := fuzzSignedTokens(f)
	for _, s := range signed {
		f.Add(s)
		parts := strings.Split(s, ".")
		f.Add(s + "=")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(b64url(`{"alg":"none"}`) + "." + parts[1] + ".")
		f.Add(b64url(`{"alg":"HS256","crit":["x"]}`) + "." + parts[1] + "." + parts[2])
		f.Add(parts[0] + "." + b64url(rawPayload().set("exp", unixAt(1000*time.Hour)).String()) + "." + parts[2])
	}
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	v := provisionValidator(f, newTestClock().Now, hsValidator())
	accepted := map[string]bool{}
	for _, s := range signed {
		accepted[s] = true
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.verify(tok)
		if err != nil {
			if id != nil {
				t.Fatal("identity with an error")
			}
			if ae := reject(err); ae.status != http.StatusUnauthorized || ae.code != "invalid_token" || ae.reason == "" {
				t.Fatalf("refusal %v maps to %d %q %q", err, ae.status, ae.code, ae.reason)
			}
			return
		}
		if !accepted[tok] {
			t.Fatalf("accepted a token that was never signed: %q", tok)
		}
		if id.userID != "alice" || id.token != tok {
			t.Fatalf("identity %q for %q", id.userID, tok)
		}
	})
}

// TestFuzzVerifyCorpusValidSeed keeps the committed corpus meaningful: its
// "valid" seed must be one of the signed tokens and be accepted, so the
// fuzzer starts from an acceptance and mutates away from it.
func TestFuzzVerifyCorpusValidSeed(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerify", "valid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "string(") {
		t.Fatalf("unexpected corpus file %q", raw)
	}
	tok, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	if tok != fuzzSignedTokens(t)[0] {
		t.Fatalf("corpus seed %q is not the token FuzzVerify signs", tok)
	}
	v := provisionValidator(t, newTestClock().Now, hsValidator())
	if _, err := v.verify(tok); err != nil {
		t.Fatalf("corpus seed refused: %v", err)
	}
}
