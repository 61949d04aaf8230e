package jwtauth

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// TokenSource is one place a token may be found in a request.
type TokenSource struct {
	// One of "header", "cookie" or "query". Required.
	From string `json:"from"`

	// Header, cookie or query parameter name. Required.
	Name string `json:"name"`

	// For headers: the authentication scheme that must precede the token,
	// compared case-insensitively (RFC 7235), e.g. "Bearer". Empty means
	// the whole header value is the token. Default: empty.
	Prefix string `json:"prefix,omitempty"`

	canonical string
}

func (s *TokenSource) provision() {
	if s.From == "header" {
		s.canonical = textproto.CanonicalMIMEHeaderKey(s.Name)
	}
}

func (s *TokenSource) validate() error {
	switch s.From {
	case "header", "cookie", "query":
	default:
		return fmt.Errorf("token source %q: must be header, cookie or query", s.From)
	}
	if s.Name == "" {
		return fmt.Errorf("token source %s: name is required", s.From)
	}
	if s.From != "header" && s.Prefix != "" {
		return fmt.Errorf("token source %s %s: only headers take a prefix", s.From, s.Name)
	}
	if strings.ContainsAny(s.Prefix, " \t") {
		return fmt.Errorf("token source header %s: prefix %q must be a single word", s.Name, s.Prefix)
	}
	return nil
}

// fromHeaderValue returns the token in one header value and whether the
// value is for this source at all. A value with another scheme, or with a
// scheme where none is expected, is not (ours is false): it is some other
// kind of credential. A value with the configured scheme and nothing after
// it, or a bare source's blank value, is ours with an empty token: a failed
// credential, not an absent one.
func (s *TokenSource) fromHeaderValue(val string) (tok string, ours bool) {
	val = strings.TrimSpace(val)
	if s.Prefix == "" {
		if strings.ContainsAny(val, " \t") {
			return "", false
		}
		return val, true
	}
	if len(val) == len(s.Prefix) && strings.EqualFold(val, s.Prefix) {
		return "", true
	}
	if len(val) <= len(s.Prefix) || !strings.EqualFold(val[:len(s.Prefix)], s.Prefix) || (val[len(s.Prefix)] != ' ' && val[len(s.Prefix)] != '\t') {
		return "", false
	}
	return strings.TrimSpace(val[len(s.Prefix)+1:]), true
}

// errEmptyToken refuses a header that has the configured scheme (or, for a
// bare source, is present) but carries no token. It is a token that fails
// (RFC 6750 §3.1 invalid_token), so a public route never takes it for an
// anonymous request.
var errEmptyToken = invalidToken(reasonMalformed, ErrTokenMalformed, "empty token")

// extracted is a token and the source it came from.
type extracted struct {
	token   string
	src     *TokenSource
	sources []TokenSource // all of the validator's sources, for strip
}

// extractToken finds the request's token. All header sources are read: two
// different tokens, or one header repeated with different tokens, make the
// request ambiguous, and it is refused rather than guessed at (RFC 6750 §3.1
// invalid_request). A header with the configured scheme but no token is
// refused as an empty token. Cookie and query sources are read, in order,
// only when no header carries a token; a cookie or query parameter repeated
// with different values is refused the same way.
func extractToken(r *http.Request, sources []TokenSource) (extracted, error) {
	var found extracted
	for i := range sources {
		s := &sources[i]
		if s.From != "header" {
			continue
		}
		for _, val := range r.Header[s.canonical] {
			tok, ours := s.fromHeaderValue(val)
			if !ours {
				continue
			}
			if tok == "" {
				return extracted{}, errEmptyToken
			}
			if found.token != "" && found.token != tok {
				return extracted{}, ErrConflictingTokens
			}
			if found.token == "" {
				found = extracted{token: tok, src: s, sources: sources}
			}
		}
	}
	if found.token != "" {
		return found, nil
	}
	var query url.Values // parsed once, for the first query source that needs it
	for i := range sources {
		s := &sources[i]
		var tok string
		var err error
		switch s.From {
		case "cookie":
			tok, err = onlyCookie(r, s.Name)
		case "query":
			if r.URL.RawQuery == "" {
				continue
			}
			if query == nil {
				query = r.URL.Query()
			}
			tok, err = onlyValue(query[s.Name])
		}
		if err != nil {
			return extracted{}, err
		}
		if tok != "" {
			return extracted{token: tok, src: s}, nil
		}
	}
	return extracted{}, ErrTokenMissing
}

// onlyCookie returns the value of the cookie name. Several cookies of that
// name with different values are refused rather than one picked: that is
// what cookie tossing from a sibling subdomain looks like.
func onlyCookie(r *http.Request, name string) (string, error) {
	tok := ""
	for _, c := range r.CookiesNamed(name) {
		if c.Value == "" {
			continue
		}
		if tok != "" && c.Value != tok {
			return "", ErrConflictingTokens
		}
		tok = c.Value
	}
	return tok, nil
}

// onlyValue returns the one non-empty value in vals; different non-empty
// values make the request ambiguous.
func onlyValue(vals []string) (string, error) {
	tok := ""
	for _, v := range vals {
		if v == "" {
			continue
		}
		if tok != "" && v != tok {
			return "", ErrConflictingTokens
		}
		tok = v
	}
	return tok, nil
}

// strip removes the token from the request, so the next handler and any
// upstream never see it.
func (e extracted) strip(r *http.Request) {
	switch e.src.From {
	case "header":
		r.Header.Del(e.src.canonical)
		// and every other header source that carries the same token (it
		// may come twice, e.g. in Authorization and access_token)
		for i := range e.sources {
			s := &e.sources[i]
			if s.From != "header" {
				continue
			}
			for _, val := range r.Header[s.canonical] {
				if tok, _ := s.fromHeaderValue(val); tok == e.token {
					r.Header.Del(s.canonical)
					break
				}
			}
		}
	case "cookie":
		removeCookie(r, e.src.Name)
	case "query":
		q := r.URL.Query()
		q.Del(e.src.Name)
		r.URL.RawQuery = q.Encode()
		r.RequestURI = r.URL.RequestURI()
	}
}

// removeCookie rewrites the Cookie header without the named cookie.
func removeCookie(r *http.Request, name string) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
}

// normalizeHeaderName folds a header name so that spellings a backend might
// treat alike (case, '_' versus '-') compare equal.
func normalizeHeaderName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// sameHeaderName reports whether header name k equals norm (already passed
// through normalizeHeaderName) once normalized, without allocating.
func sameHeaderName(k, norm string) bool {
	if len(k) != len(norm) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
}

// stripHeaders deletes every incoming header whose name matches one of names
// (normalized), so a client cannot pass a header that upstreams would take
// for one we set.
func stripHeaders(h http.Header, names []string) {
	for k := range h {
		for _, n := range names {
			if sameHeaderName(k, n) {
				delete(h, k)
				break
			}
		}
	}
}
