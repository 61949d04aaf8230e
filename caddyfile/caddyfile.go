// Package caddyfile registers the Caddyfile syntax of caddy-jwtauth: the
// jwtauth global option and the jwt_issuer and jwt_auth directives. The
// parsing itself lives on the module types in package jwtauth.
package caddyfile

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtauth/caddy-jwtauth/jwtauth"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("jwtauth", parseApp)
	httpcaddyfile.RegisterHandlerDirective("jwt_issuer", parseIssuerHandler)
	httpcaddyfile.RegisterHandlerDirective("jwt_auth", parseAuthHandler)
	// The issuer's login endpoints must run before the check, and both
	// before basic_auth, so they can be combined with it.
	httpcaddyfile.RegisterDirectiveOrder("jwt_issuer", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("jwt_auth", httpcaddyfile.Before, "basic_auth")
}

func parseApp(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(jwtauth.App)
	// a second jwtauth block adds to the first (a name defined in both is
	// refused by UnmarshalCaddyfile)
	if prev, ok := existing.(httpcaddyfile.App); ok {
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, err
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{
		Name:  "jwtauth",
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

func parseAuthHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(jwtauth.Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

func parseIssuerHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(jwtauth.IssuerHandler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}
