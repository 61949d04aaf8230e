package jwtauth

import (
	"errors"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Issuer is a token issuer (jwt_issuer). SCAFFOLD: replaced by the issuer
// implementation.
type Issuer struct{}

func (is *Issuer) provision(ctx caddy.Context, name string, a *App) error {
	return errors.New("issuers are not implemented yet")
}

func (is *Issuer) cleanup() error            { return nil }
func (is *Issuer) verificationKeys() *keySet { return nil }
func (is *Issuer) issuerClaim() string       { return "" }
func (is *Issuer) issuedAudiences() []string { return nil }
func (is *Issuer) revoked(sid string) bool   { return false }
func (is *Issuer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return d.Err("issuers are not implemented yet")
}

// IssuerHandler SCAFFOLD.
type IssuerHandler struct{}

func (IssuerHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.jwt_issuer", New: func() caddy.Module { return new(IssuerHandler) }}
}
func (h *IssuerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}
func (h *IssuerHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return d.Err("jwt_issuer is not implemented yet")
}
