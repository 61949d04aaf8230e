package jwtauth

import (
	_ "embed"
	"net/http"
	"strconv"
)

// consoleHTML is the test console that jwt_issuer serves at
// <path_prefix>/login when `console` is set. It is one self-contained page:
// no external assets, one inline <style> and one inline <script>, both
// allowed by hash in consoleCSP.
//
//go:embed console.html
var consoleHTML []byte

// consoleCSP is the Content-Security-Policy of the console. Nothing is
// allowed by default; the inline script and style are allowed by their
// SHA-256 (TestConsoleCSPHashes fails when console.html changes without
// this constant, and prints the value to paste here).
//
// connect-src is 'self': the console calls the origin that served it, and
// nothing else. Its "host" field defaults to that origin, and the page refuses
// another origin up front with a message pointing to that server's own
// console. Allowing arbitrary hosts would need connect-src *, and would not
// work anyway: the refresh token is a SameSite cookie, and the cookie
// endpoints refuse cross-origin requests.
//
// require-trusted-types-for makes any HTML-injection sink (innerHTML and
// friends) throw: the page only ever writes textContent.
const consoleCSP = "default-src 'none'; " +
	"script-src 'sha256-08TpWZQ5a3EIJcRlJRAj4/GeaCb6vInZzWyeh9Cd/Jk='; " +
	"style-src 'sha256-lMCkWycTN6Byjyzy+kOcaJYObWEnNM/xewyibuFLvds='; " +
	"connect-src 'self'; " +
	"img-src 'none'; " +
	"form-action 'none'; " +
	"frame-ancestors 'none'; " +
	"base-uri 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// serveConsole writes the console page with its security headers. It is
// the body of GET (and HEAD) <path_prefix>/login.
func serveConsole(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(consoleHTML)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(consoleHTML)
	}
}
