package caddyfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A stand-in for caddy-ratelimit's directive, registered as it registers
// its own (before basic_auth), and after ours, as an xcaddy build imports
// github.com/jwtauth/... before github.com/mholt/caddy-ratelimit. It adapts
// to a vars handler, easy to tell apart.
func init() {
	httpcaddyfile.RegisterHandlerDirective("rate_limit", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return caddyhttp.VarsMiddleware{"rate_limited": true}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("rate_limit", httpcaddyfile.Before, "basic_auth")
}

// TestRateLimitOrder: beside caddy-ratelimit, rate_limit lands after
// jwt_issuer unless the README's `order rate_limit before jwt_issuer` is
// given, with which it runs first and can slow down login floods.
func TestRateLimitOrder(t *testing.T) {
	handlers := func(globals string) string {
		t.Helper()
		cf := "{\n" + globals + "\tjwtauth {\n\t\tissuer demo {\n\t\t\tusers_file users.json\n\t\t}\n\t}\n}\n:8080 {\n\tjwt_issuer demo\n\trate_limit\n\trespond 404\n}\n"
		return strings.Join(adaptedHandlers(t, cf), ",")
	}
	if got := handlers(""); got != "jwt_issuer,vars,static_response" {
		t.Fatalf("without an order, handlers %s (the README's advice may no longer be needed)", got)
	}
	if got := handlers("\torder rate_limit before jwt_issuer\n"); got != "vars,jwt_issuer,static_response" {
		t.Fatalf("with order rate_limit before jwt_issuer, handlers %s", got)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "order rate_limit before jwt_issuer") {
		t.Fatal("the README does not say to order rate_limit before jwt_issuer")
	}
}
