package jwtauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
)

func TestExtractToken(t *testing.T) {
	t.Parallel()
	type req struct {
		headers  map[string][]string // raw header map entries, not canonicalized
		cookie   string
		query    string
		rawQuery string // used verbatim when set
	}
	cases := []struct {
		name string
		r    req
		tok  string // expected token
		src  string // expected source name
		err  error
	}{
		{name: "none", r: req{}, err: ErrTokenMissing},
		{name: "Bearer", r: req{headers: map[string][]string{"Authorization": {"Bearer abc"}}}, tok: "abc", src: "Authorization"},
		{name: "bearer lower", r: req{headers: map[string][]string{"Authorization": {"bearer abc"}}}, tok: "abc", src: "Authorization"},
		{name: "BEARER upper", r: req{headers: map[string][]string{"Authorization": {"BEARER abc"}}}, tok: "abc", src: "Authorization"},
		{name: "tab after scheme", r: req{headers: map[string][]string{"Authorization": {"Bearer\tabc"}}}, tok: "abc", src: "Authorization"},
		{name: "extra spaces", r: req{headers: map[string][]string{"Authorization": {"  Bearer   abc  "}}}, tok: "abc", src: "Authorization"},
		// the configured scheme with no token is a failed credential, not
		// an absent one
		{name: "scheme only", r: req{headers: map[string][]string{"Authorization": {"Bearer"}}}, err: ErrTokenMalformed},
		{name: "scheme and space", r: req{headers: map[string][]string{"Authorization": {"Bearer "}}}, err: ErrTokenMalformed},
		{name: "scheme and spaces", r: req{headers: map[string][]string{"Authorization": {"Bearer     "}}}, err: ErrTokenMalformed},
		{name: "scheme and tab", r: req{headers: map[string][]string{"Authorization": {"bearer\t"}}}, err: ErrTokenMalformed},
		{name: "scheme only, cookie present", r: req{headers: map[string][]string{"Authorization": {"Bearer"}}, cookie: "c1"}, err: ErrTokenMalformed},
		{name: "scheme only beside Basic", r: req{headers: map[string][]string{"Authorization": {"Basic x", "Bearer "}}}, err: ErrTokenMalformed},
		{name: "scheme only beside a token", r: req{headers: map[string][]string{"Authorization": {"Bearer abc", "Bearer"}}}, err: ErrTokenMalformed},
		{name: "bare header empty", r: req{headers: map[string][]string{"X-Api-Token": {""}}}, err: ErrTokenMalformed},
		{name: "bare header blank", r: req{headers: map[string][]string{"X-Api-Token": {"   "}}}, err: ErrTokenMalformed},
		{name: "Basic alone", r: req{headers: map[string][]string{"Authorization": {"Basic"}}}, err: ErrTokenMissing},
		{name: "scheme glued", r: req{headers: map[string][]string{"Authorization": {"Bearerabc"}}}, err: ErrTokenMissing},
		{name: "Basic ignored", r: req{headers: map[string][]string{"Authorization": {"Basic dXNlcjpwYXNz"}}}, err: ErrTokenMissing},
		{name: "Basic ignored, cookie used", r: req{headers: map[string][]string{"Authorization": {"Basic dXNlcjpwYXNz"}}, cookie: "c1"}, tok: "c1", src: "tok"},
		{name: "Basic and Bearer", r: req{headers: map[string][]string{"Authorization": {"Basic x", "Bearer abc"}}}, tok: "abc", src: "Authorization"},
		{name: "bare header", r: req{headers: map[string][]string{"X-Api-Token": {"abc"}}}, tok: "abc", src: "x-api-token"},
		{name: "bare header trimmed", r: req{headers: map[string][]string{"X-Api-Token": {" abc "}}}, tok: "abc", src: "x-api-token"},
		{name: "bare header with a scheme is not a token", r: req{headers: map[string][]string{"X-Api-Token": {"Bearer abc"}}}, err: ErrTokenMissing},
		{name: "two header sources, different", r: req{headers: map[string][]string{"Authorization": {"Bearer abc"}, "X-Api-Token": {"xyz"}}}, err: ErrConflictingTokens},
		{name: "two header sources, same", r: req{headers: map[string][]string{"Authorization": {"Bearer abc"}, "X-Api-Token": {"abc"}}}, tok: "abc", src: "Authorization"},
		{name: "Authorization repeated, different", r: req{headers: map[string][]string{"Authorization": {"Bearer abc", "Bearer xyz"}}}, err: ErrConflictingTokens},
		{name: "Authorization repeated, same", r: req{headers: map[string][]string{"Authorization": {"Bearer abc", "bearer abc"}}}, tok: "abc", src: "Authorization"},
		{name: "bare header repeated, different", r: req{headers: map[string][]string{"X-Api-Token": {"a", "b"}}}, err: ErrConflictingTokens},
		{name: "cookie", r: req{cookie: "c1"}, tok: "c1", src: "tok"},
		{name: "query", r: req{query: "q1"}, tok: "q1", src: "access_token"},
		{name: "cookie before query", r: req{cookie: "c1", query: "q1"}, tok: "c1", src: "tok"},
		{name: "header beats cookie and query", r: req{headers: map[string][]string{"Authorization": {"Bearer h1"}}, cookie: "c1", query: "q1"}, tok: "h1", src: "Authorization"},
		{name: "header conflict beats cookie", r: req{headers: map[string][]string{"Authorization": {"Bearer a"}, "X-Api-Token": {"b"}}, cookie: "c1"}, err: ErrConflictingTokens},
		{name: "query encoded", r: req{query: "a b+c"}, tok: "a b+c", src: "access_token"},
		{name: "cookie repeated, different (cookie tossing)", r: req{headers: map[string][]string{"Cookie": {"tok=evil; tok=c1"}}}, err: ErrConflictingTokens},
		{name: "cookie repeated in two headers", r: req{headers: map[string][]string{"Cookie": {"tok=c1", "tok=evil"}}}, err: ErrConflictingTokens},
		{name: "cookie repeated, same", r: req{headers: map[string][]string{"Cookie": {"tok=c1; other=x; tok=c1"}}}, tok: "c1", src: "tok"},
		{name: "cookie repeated, one empty", r: req{headers: map[string][]string{"Cookie": {"tok=; tok=c1"}}}, tok: "c1", src: "tok"},
		{name: "cookie empty", r: req{headers: map[string][]string{"Cookie": {"tok="}}}, err: ErrTokenMissing},
		{name: "other cookie", r: req{headers: map[string][]string{"Cookie": {"toke=c1"}}}, err: ErrTokenMissing},
		{name: "query repeated, different", r: req{rawQuery: "access_token=a&access_token=b"}, err: ErrConflictingTokens},
		{name: "query repeated, same", r: req{rawQuery: "access_token=a&x=1&access_token=a"}, tok: "a", src: "access_token"},
		{name: "query repeated, one empty", r: req{rawQuery: "access_token=&access_token=a"}, tok: "a", src: "access_token"},
		{name: "query empty", r: req{rawQuery: "access_token="}, err: ErrTokenMissing},
		{name: "query conflict after a good cookie is not read", r: req{cookie: "c1", rawQuery: "access_token=a&access_token=b"}, tok: "c1", src: "tok"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for k, v := range tc.r.headers {
				r.Header[k] = v
			}
			if tc.r.cookie != "" {
				r.AddCookie(&http.Cookie{Name: "tok", Value: tc.r.cookie})
			}
			if tc.r.query != "" {
				r.URL.RawQuery = url.Values{"access_token": {tc.r.query}}.Encode()
			}
			if tc.r.rawQuery != "" {
				r.URL.RawQuery = tc.r.rawQuery
			}
			ex, err := extractToken(r, multiSources())
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v (token %q)", err, tc.err, ex.token)
				}
				if ex.token != "" {
					t.Fatalf("token %q returned with an error", ex.token)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if ex.token != tc.tok || ex.src.Name != tc.src {
				t.Fatalf("got %q from %s, want %q from %s", ex.token, ex.src.Name, tc.tok, tc.src)
			}
		})
	}
}

func TestExtractConflictIsBadRequest(t *testing.T) {
	t.Parallel()
	ae := reject(ErrConflictingTokens)
	if ae.status != http.StatusBadRequest || ae.code != "invalid_request" {
		t.Fatalf("conflict: %d %q", ae.status, ae.code)
	}
	if ae := reject(ErrTokenMissing); ae.status != http.StatusUnauthorized || ae.code != "" || ae.reason != reasonMissing {
		t.Fatalf("missing: %d %q %q", ae.status, ae.code, ae.reason)
	}
}

func TestExtractedStrip(t *testing.T) {
	t.Parallel()
	src := multiSources()
	r := httptest.NewRequest(http.MethodGet, "/p?access_token=q1&keep=1", nil)
	r.Header.Set("Authorization", "Bearer h1")
	r.AddCookie(&http.Cookie{Name: "tok", Value: "c1"})
	r.AddCookie(&http.Cookie{Name: "other", Value: "o"})

	extracted{token: "h1", src: &src[0]}.strip(r)
	if r.Header.Get("Authorization") != "" {
		t.Fatal("header not stripped")
	}
	extracted{token: "c1", src: &src[2]}.strip(r)
	if _, err := r.Cookie("tok"); err == nil {
		t.Fatal("cookie not stripped")
	}
	if c, err := r.Cookie("other"); err != nil || c.Value != "o" {
		t.Fatal("other cookie lost")
	}
	extracted{token: "q1", src: &src[3]}.strip(r)
	if r.URL.Query().Has("access_token") || r.URL.Query().Get("keep") != "1" || strings.Contains(r.RequestURI, "q1") {
		t.Fatalf("query not stripped: %q %q", r.URL.RawQuery, r.RequestURI)
	}
}

func TestStripHeaders(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	// raw map entries: a client (or a lenient proxy) can send any spelling
	for _, k := range []string{"X-User-Id", "x_user_id", "X_USER-ID", "x-user-id", "X-USER_ID", "X-Jwt-Payload", "x_jwt_payload"} {
		h[k] = []string{"spoofed"}
	}
	h["X-User-Idx"] = []string{"keep"}
	h["X-User"] = []string{"keep"}
	h["Authorization"] = []string{"keep"}
	stripHeaders(h, []string{normalizeHeaderName("X-User-Id"), normalizeHeaderName("X_JWT-Payload")})
	var left []string
	for k := range h {
		left = append(left, k)
	}
	sort.Strings(left)
	if strings.Join(left, ",") != "Authorization,X-User,X-User-Idx" {
		t.Fatalf("left %v", left)
	}
}

func TestTokenSourceValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s   TokenSource
		bad string
	}{
		{TokenSource{From: "header", Name: "Authorization", Prefix: "Bearer"}, ""},
		{TokenSource{From: "cookie", Name: "c"}, ""},
		{TokenSource{From: "query", Name: "q"}, ""},
		{TokenSource{From: "body", Name: "b"}, "must be header, cookie or query"},
		{TokenSource{From: "header"}, "name is required"},
		{TokenSource{From: "query", Name: "q", Prefix: "Bearer"}, "only headers take a prefix"},
		{TokenSource{From: "header", Name: "A", Prefix: "Bearer token"}, "single word"},
	} {
		err := tc.s.validate()
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.bad)
		}
	}
}
