package jwtauth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler enforces validators of the jwtauth app on requests. A request
// passes when any one of its validators accepts the request's token (or
// identity cookie); otherwise it is answered with 401 and an RFC 6750
// WWW-Authenticate challenge, or 403 when the token lacks a required claim
// value, and the next handler is not called.
//
// On success it sets {http.auth.user.id}, {http.auth.user.<claim>},
// {http.auth.jwt.validator}, {http.auth.jwt.partner_id} and
// {http.auth.jwt.claims.<claim>}. On failure it sets {http.auth.jwt.error} to
// a short reason: missing, malformed, invalid, expired or forbidden.
type Handler struct {
	// Names of validators defined in the jwtauth app; any of them may
	// accept. Required.
	Validators []string `json:"validators,omitempty"`

	// Public fallback (OCA public_or_jwt): a request with no credential
	// at all passes anonymously; a bad credential is still refused.
	// Default: false.
	Public bool `json:"public,omitempty"`

	// Claims copied into request headers for the next handler or an
	// upstream. Any header of the same name sent by the client (also with
	// '_' for '-' or in other case) is deleted first, on every request.
	// Default: none.
	ForwardClaims []ForwardClaim `json:"forward_claims,omitempty"`

	// Header that receives the verified payload as base64url JSON (OCA's
	// request.jwt_payload). Client-sent copies are deleted first.
	// Default: none.
	ForwardPayload string `json:"forward_payload,omitempty"`

	// Remove the token from the request before calling the next handler.
	// Default: false.
	StripToken bool `json:"strip_token,omitempty"`

	// Let CORS preflight requests (OPTIONS with Origin and
	// Access-Control-Request-Method) through unauthenticated.
	// Default: false.
	AllowCORSPreflight bool `json:"allow_cors_preflight,omitempty"`

	// Realm in WWW-Authenticate challenges. Default: restricted.
	Realm string `json:"realm,omitempty"`

	validators []*Validator
	strip      []string // normalized header names to delete from requests
	cop        *http.CrossOriginProtection
	logger     *zap.Logger
}

// ForwardClaim copies one claim to a request header.
type ForwardClaim struct {
	// Claim name.
	Claim string `json:"claim"`
	// Header name.
	Header string `json:"header"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves the validators by name.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Realm == "" {
		h.Realm = "restricted"
	}
	if len(h.Validators) == 0 {
		return errors.New("jwt_auth: at least one validator is required")
	}
	appIface, err := ctx.AppIfConfigured("jwtauth")
	if err != nil {
		return fmt.Errorf("jwt_auth: the jwtauth app is not configured (define validators in the jwtauth global option): %w", err)
	}
	app := appIface.(*App)
	for _, name := range h.Validators {
		v, err := app.validator(name)
		if err != nil {
			return fmt.Errorf("jwt_auth: %w", err)
		}
		h.validators = append(h.validators, v)
	}
	for _, fc := range h.ForwardClaims {
		h.strip = appendUnique(h.strip, normalizeHeaderName(fc.Header))
	}
	if h.ForwardPayload != "" {
		h.strip = appendUnique(h.strip, normalizeHeaderName(h.ForwardPayload))
	}
	h.cop = http.NewCrossOriginProtection()
	return nil
}

func appendUnique(list []string, s string) []string {
	if contains(list, s) {
		return list
	}
	return append(list, s)
}

// Validate checks the handler's own options.
func (h *Handler) Validate() error {
	for _, fc := range h.ForwardClaims {
		if fc.Claim == "" || fc.Header == "" {
			return errors.New("jwt_auth: forward_claim needs a claim and a header")
		}
		if !isCookieName(fc.Header) { // the same token grammar as header names
			return fmt.Errorf("jwt_auth: forward_claim: %q is not a valid header name", fc.Header)
		}
	}
	if h.ForwardPayload != "" && !isCookieName(h.ForwardPayload) {
		return fmt.Errorf("jwt_auth: forward_payload: %q is not a valid header name", h.ForwardPayload)
	}
	return nil
}

// ServeHTTP authenticates the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if len(h.strip) > 0 {
		stripHeaders(r.Header, h.strip)
	}
	if h.AllowCORSPreflight && r.Method == http.MethodOptions &&
		r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return next.ServeHTTP(w, r)
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("jwt_auth: no replacer in request context"))
	}

	id, ex, fromCookie, err := h.authenticate(r)
	if err != nil {
		ae := reject(err)
		if ae.reason == reasonMissing && h.Public {
			h.validators[0].counters.anonymous.Inc()
			return next.ServeHTTP(w, r)
		}
		return h.refuse(w, r, repl, h.validators[0], ae)
	}
	v := id.v
	if err := v.authorize(id); err != nil {
		return h.refuse(w, r, repl, v, reject(err))
	}
	if fromCookie && !isSafeMethod(r.Method) {
		if err := h.cop.Check(r); err != nil {
			return h.refuse(w, r, repl, v, reject(fmt.Errorf("%w: %v", ErrCrossOrigin, err)))
		}
	}
	if prev, ok := repl.GetString("http.auth.user.id"); ok && prev != "" && prev != id.userID {
		return h.refuse(w, r, repl, v, reject(invalidToken(reasonInvalid, ErrUserConflict, "request already authenticated as another user")))
	}

	setPlaceholders(repl, id)
	for _, fc := range h.ForwardClaims {
		if val, ok := id.claim(fc.Claim); ok {
			r.Header.Set(fc.Header, val)
		}
	}
	if h.ForwardPayload != "" {
		r.Header.Set(h.ForwardPayload, id.payloadB64)
	}
	if !fromCookie && v.Cookie != nil {
		h.setIdentityCookie(w, r, id)
	}
	if h.StripToken && ex.src != nil {
		ex.strip(r)
	}
	v.counters.ok.Inc()
	if c := h.logger.Check(zapcore.DebugLevel, "authenticated"); c != nil {
		c.Write(zap.String("validator", v.name), zap.String("user_id", id.userID), zap.Bool("cookie", fromCookie))
	}
	return next.ServeHTTP(w, r)
}

// authenticate tries each validator in order. It returns the first identity
// accepted. When none accepts, the error is the first real failure (a bad
// token beats a missing one), so a request with a bad credential is never
// treated as anonymous.
func (h *Handler) authenticate(r *http.Request) (*identity, extracted, bool, error) {
	var firstErr error
	for _, v := range h.validators {
		ex, err := extractToken(r, v.Sources)
		if err == nil {
			id, verr := v.verify(ex.token)
			if verr == nil {
				return id, ex, false, nil
			}
			err = verr
		} else if errors.Is(err, ErrTokenMissing) && v.Cookie != nil {
			// cookie mode: only when no header/cookie/query token
			if c, cerr := r.Cookie(v.Cookie.Name); cerr == nil {
				id, verr := v.verifyCookie(c.Value)
				if verr == nil {
					return id, extracted{}, true, nil
				}
				err = verr
			}
		}
		if firstErr == nil || (errors.Is(firstErr, ErrTokenMissing) && !errors.Is(err, ErrTokenMissing)) {
			firstErr = err
		}
	}
	return nil, extracted{}, false, firstErr
}

// refuse answers a rejection and stops the chain.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, v *Validator, ae *authError) error {
	v.counters.count(ae.reason)
	repl.Set("http.auth.jwt.error", ae.reason)
	w.Header().Set("WWW-Authenticate", ae.wwwAuthenticate(h.Realm))
	if c := h.logger.Check(zapcore.DebugLevel, "request refused"); c != nil {
		c.Write(zap.String("reason", ae.reason), zap.String("description", ae.desc), zap.String("uri", r.RequestURI))
	}
	return caddyhttp.Error(ae.status, ae)
}

func (h *Handler) setIdentityCookie(w http.ResponseWriter, r *http.Request, id *identity) {
	v := id.v
	c := v.identityCookie(id, v.now())
	if c == nil {
		return
	}
	if old, err := r.Cookie(c.Name); err == nil && old.Value == c.Value {
		return // already set from this token: do not extend it
	}
	http.SetCookie(w, c)
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// setPlaceholders publishes the identity. Claims are looked up lazily, only
// when a placeholder asks for one.
func setPlaceholders(repl *caddy.Replacer, id *identity) {
	repl.Set("http.auth.user.id", id.userID)
	repl.Set("http.auth.jwt.validator", id.v.name)
	repl.Set("http.auth.jwt.partner_id", id.partnerID)
	repl.Map(func(key string) (any, bool) {
		var name string
		switch {
		case strings.HasPrefix(key, "http.auth.jwt.claims."):
			name = key[len("http.auth.jwt.claims."):]
		case strings.HasPrefix(key, "http.auth.user."):
			name = key[len("http.auth.user."):]
		default:
			return nil, false
		}
		return id.claim(name)
	})
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
