package jwtauth

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// inlineBlocks returns the contents of every <tag ...>...</tag> element.
func inlineBlocks(t *testing.T, page, tag string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?is)<` + tag + `(\s[^>]*)?>(.*?)</` + tag + `\s*>`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		if strings.TrimSpace(m[1]) != "" {
			t.Errorf("<%s%s>: inline elements must not carry attributes (src, nonce, ...)", tag, m[1])
		}
		out = append(out, m[2])
	}
	return out
}

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// cspDirectives splits a policy into directive -> source list.
func cspDirectives(policy string) map[string][]string {
	d := make(map[string][]string)
	for _, part := range strings.Split(policy, ";") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		d[f[0]] = f[1:]
	}
	return d
}

// TestConsoleCSPHashes binds consoleCSP to console.html: the single inline
// script and the single inline style must be exactly what the policy allows,
// so the two cannot drift apart.
func TestConsoleCSPHashes(t *testing.T) {
	page := string(consoleHTML)
	scripts := inlineBlocks(t, page, "script")
	styles := inlineBlocks(t, page, "style")
	if len(scripts) != 1 || len(styles) != 1 {
		t.Fatalf("console.html has %d <script> and %d <style> elements; want exactly one of each", len(scripts), len(styles))
	}
	d := cspDirectives(consoleCSP)
	want := map[string][]string{
		"script-src": {cspHash(scripts[0])},
		"style-src":  {cspHash(styles[0])},
	}
	for dir, sources := range want {
		if strings.Join(d[dir], " ") != strings.Join(sources, " ") {
			t.Errorf("consoleCSP %s = %q; console.html needs %q (update the constant in console.go)",
				dir, strings.Join(d[dir], " "), strings.Join(sources, " "))
		}
	}
	for dir, sources := range map[string]string{
		"default-src":     "'none'",
		"connect-src":     "'self'",
		"form-action":     "'none'",
		"frame-ancestors": "'none'",
		"base-uri":        "'none'",
	} {
		if got := strings.Join(d[dir], " "); got != sources {
			t.Errorf("consoleCSP %s = %q, want %q", dir, got, sources)
		}
	}
	if strings.Contains(consoleCSP, "unsafe-") {
		t.Errorf("consoleCSP must not allow unsafe-*: %s", consoleCSP)
	}
}

// TestConsolePageIsSelfContained checks the page for what the CSP would
// block at runtime (inline handlers, style attributes, external assets) and
// for places a token could leak to (web storage, document.cookie).
func TestConsolePageIsSelfContained(t *testing.T) {
	page := string(consoleHTML)
	for _, re := range []struct{ pattern, why string }{
		{`(?i)<[a-z][^>]*\son[a-z]+\s*=`, "inline event handler (blocked by the CSP)"},
		{`(?i)<[a-z][^>]*\sstyle\s*=`, "style attribute (blocked by the CSP)"},
		{`(?i)\s(src|href|action)\s*=`, "external resource or form action"},
		{`(?i)https?://`, "absolute URL"},
		{`localStorage|sessionStorage|indexedDB`, "web storage (tokens must stay in memory)"},
		{`document\.cookie`, "cookie access (the refresh token is HttpOnly)"},
		{`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function`, "HTML or code injection sink"},
	} {
		if loc := regexp.MustCompile(re.pattern).FindStringIndex(page); loc != nil {
			t.Errorf("console.html: %s at %q", re.why, page[loc[0]:min(loc[1]+20, len(page))])
		}
	}
	if style := inlineBlocks(t, page, "style"); len(style) != 1 || regexp.MustCompile(`(?i)@import|url\(`).MatchString(style[0]) {
		t.Errorf("console.html: the style must be one block that loads nothing")
	}
	// Every button the browser test and users rely on is present.
	for _, id := range []string{"host", "prefix", "headers", "body", "status", "response-headers", "response-body",
		"btn-authenticate", "btn-refresh", "btn-rotate", "btn-revoke", "btn-protected"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("console.html: no element with id %q", id)
		}
	}
}

func TestServeConsole(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		serveConsole(rec, httptest.NewRequest(method, "/api/login", nil))
		res := rec.Result()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", method, res.StatusCode)
		}
		for k, v := range map[string]string{
			"Content-Security-Policy": consoleCSP,
			"Content-Type":            "text/html; charset=utf-8",
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-store",
		} {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", method, k, got, v)
			}
		}
		wantBody := len(consoleHTML)
		if method == http.MethodHead {
			wantBody = 0
		}
		if rec.Body.Len() != wantBody {
			t.Errorf("%s: body is %d bytes, want %d", method, rec.Body.Len(), wantBody)
		}
	}
}
