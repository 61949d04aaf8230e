package jwtauth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	// Names of validators defined in the jwtauth app, tried in order; the
	// first that accepts the token and whose require rules hold wins.
	// Required: there is no default validator.
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

	// Remove the credential that authenticated the request (the token's
	// header, cookie or query parameter, or the identity cookie) before
	// calling the next handler, so upstreams never see it. Default: false.
	StripToken bool `json:"strip_token,omitempty"`

	// Let CORS preflight requests (OPTIONS with Origin and
	// Access-Control-Request-Method) through unauthenticated.
	// Default: false.
	AllowCORSPreflight bool `json:"allow_cors_preflight,omitempty"`

	// Realm in WWW-Authenticate challenges. Default: restricted.
	Realm string `json:"realm,omitempty"`

	validators []*Validator
	strip      []string              // normalized header names to delete from requests
	challenges map[*authError]string // WWW-Authenticate of each static refusal
	cop        *http.CrossOriginProtection
	logger     *zap.Logger
	// debug: the logger takes Debug entries. Caddy's log levels are
	// fixed for the life of a config (a new one provisions a new
	// handler), so this spares every request a Check.
	debug bool
}

// ForwardClaim copies one claim to a request header.
type ForwardClaim struct {
	// Name of the claim to copy; a string claim is copied as is, any other
	// JSON value as its JSON text. A token without the claim (or whose value
	// holds a control character) leaves the header absent. Required.
	Claim string `json:"claim"`
	// Name of the request header that receives it. Client-sent copies,
	// also with '_' for '-' or in another case, are deleted first.
	// Required.
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
	if len(h.Validators) == 0 {
		return errors.New("jwt_auth: at least one validator is required")
	}
	appIface, err := ctx.AppIfConfigured("jwtauth")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return errors.New("jwt_auth: the jwtauth app is not configured: define validators in the jwtauth global option")
	}
	if err != nil {
		return fmt.Errorf("jwt_auth: %w", err)
	}
	if err := h.setup(appIface.(*App), ctx.Logger()); err != nil {
		return err
	}
	// the HTTP server provisions its routes with itself in the context
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil {
		h.checkHeaderSources(srv)
	}
	return nil
}

// checkHeaderSources warns about from_header sources the server will never
// let through: Caddy drops request headers whose name holds '_' or '.'
// unless the server lists them in expected_underscore_headers or
// expected_dot_headers, and a token sent in them would be silently ignored.
// The warning gives the line to add. Each validator warns once per server
// and header.
func (h *Handler) checkHeaderSources(srv *caddyhttp.Server) {
	for _, v := range h.validators {
		for _, s := range v.Sources {
			if s.From != "header" {
				continue
			}
			under, dot := strings.ContainsRune(s.Name, '_'), strings.ContainsRune(s.Name, '.')
			var kept bool
			switch {
			case under && dot:
				kept = headerAllowlisted(srv.ExpectedUnderscoreHeaders, s.canonical, true) || headerAllowlisted(srv.ExpectedDotHeaders, s.canonical, true)
			case under:
				kept = headerAllowlisted(srv.ExpectedUnderscoreHeaders, s.canonical, false)
			case dot:
				kept = headerAllowlisted(srv.ExpectedDotHeaders, s.canonical, false)
			default:
				continue
			}
			if kept || !v.firstHeaderWarning(srv, s.canonical) {
				continue
			}
			option, list := "expected_underscore_headers", srv.ExpectedUnderscoreHeaders
			if !under {
				option, list = "expected_dot_headers", srv.ExpectedDotHeaders
			}
			line := strings.Join(append(append([]string{option}, list...), s.Name), " ")
			h.logger.Warn("from_header "+s.Name+": Caddy drops request headers whose name contains '_' or '.' unless the server expects them, so a token sent in it is never seen; add this line to the servers block of the global options (JSON: apps.http.servers.NAME."+option+")",
				zap.String("validator", v.name), zap.String("header", s.Name), zap.Strings("listen", srv.Listen), zap.String("add", line))
		}
	}
}

// headerAllowlisted reports whether a server whose allow-list is entries
// keeps the request header canonical, matching as caddyhttp.Server does:
// case-insensitively, a trailing '*' as a prefix glob, and only exact
// entries for a name with both '_' and '.' (exactOnly).
func headerAllowlisted(entries []string, canonical string, exactOnly bool) bool {
	for _, e := range entries {
		if p, glob := strings.CutSuffix(e, "*"); glob {
			if !exactOnly && strings.HasPrefix(canonical, http.CanonicalHeaderKey(p)) {
				return true
			}
		} else if http.CanonicalHeaderKey(e) == canonical {
			return true
		}
	}
	return false
}

// setup binds the handler to the app's validators and derives its runtime
// state from the config.
func (h *Handler) setup(app *App, logger *zap.Logger) error {
	h.logger = logger
	h.debug = logger.Core().Enabled(zapcore.DebugLevel)
	if h.Realm == "" {
		h.Realm = "restricted"
	}
	for _, name := range h.Validators {
		v, err := app.validator(name)
		if err != nil {
			return fmt.Errorf("jwt_auth: %w", err)
		}
		h.validators = append(h.validators, v)
	}
	for _, fc := range h.ForwardClaims {
		h.strip = append(h.strip, normalizeHeaderName(fc.Header))
	}
	if h.ForwardPayload != "" {
		h.strip = append(h.strip, normalizeHeaderName(h.ForwardPayload))
	}
	slices.Sort(h.strip)
	h.strip = slices.Compact(h.strip)
	h.cop = http.NewCrossOriginProtection()
	h.challenges = make(map[*authError]string, len(staticRefusals))
	for _, ae := range staticRefusals {
		h.challenges[ae] = ae.wwwAuthenticate(h.Realm)
	}
	return nil
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
	// Spoofed copies of the headers we set go first, on every path, so
	// that not even an anonymous or preflight request can forge them.
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

	res, err := h.authenticate(r)
	if err != nil {
		ae := reject(err)
		if ae.reason == reasonMissing && h.Public {
			res.v.counters.anonymous.Inc()
			return next.ServeHTTP(w, r)
		}
		return h.refuse(w, r, repl, res.v, ae)
	}
	id, v := res.id, res.v
	// A credential the browser attaches by itself (the identity cookie or
	// a token taken from a cookie) could be riding a cross-site request:
	// unsafe methods must then be same-origin.
	if res.ambient() && !isSafeMethod(r.Method) {
		if err := h.cop.Check(r); err != nil {
			return h.refuse(w, r, repl, v, reject(fmt.Errorf("%w: %v", ErrCrossOrigin, err)))
		}
	}
	if prev, ok := repl.GetString("http.auth.user.id"); ok && prev != "" && prev != id.userID {
		return h.refuse(w, r, repl, v, reject(invalidToken(reasonInvalid, ErrUserConflict, "request already authenticated as another user")))
	}

	setPlaceholders(repl, id)
	for _, fc := range h.ForwardClaims {
		if val, ok := id.claim(fc.Claim); ok && validHeaderValue(val) {
			r.Header.Set(fc.Header, val)
		}
	}
	if h.ForwardPayload != "" {
		r.Header.Set(h.ForwardPayload, id.payloadB64)
	}
	if v.Cookie != nil && res.ex.src != nil && res.ex.src.From == "header" {
		h.setIdentityCookie(w, r, id)
	}
	if h.StripToken {
		if res.ex.src != nil {
			res.ex.strip(r)
		}
		if res.cookie {
			removeCookie(r, v.Cookie.Name)
		}
	}
	v.counters.ok.Inc()
	if h.debug {
		if c := h.logger.Check(zapcore.DebugLevel, "authenticated"); c != nil {
			c.Write(zap.String("validator", v.name), zap.String("user_id", id.userID), zap.Bool("cookie", res.cookie))
		}
	}
	return next.ServeHTTP(w, r)
}

// authResult is the outcome of authenticate: on success the identity, the
// validator that accepted it and where the credential came from; on failure
// the validator whose error is reported.
type authResult struct {
	id     *identity
	v      *Validator
	ex     extracted // the token and its source; empty for the identity cookie
	cookie bool      // authenticated by the identity cookie
}

// ambient reports whether the credential is one a browser sends on its own.
func (res authResult) ambient() bool {
	return res.cookie || (res.ex.src != nil && res.ex.src.From == "cookie")
}

// authenticate tries each validator in order and returns the first that
// accepts the request and whose require rules hold (any validator may
// accept). When none accepts, the error is the most telling failure (a bad
// or forbidden token beats a missing one), so a request with a bad
// credential is never treated as anonymous. The identity cookie is consulted
// only when the validator's own sources find no token: a token wins.
func (h *Handler) authenticate(r *http.Request) (authResult, error) {
	var firstErr error
	failed := h.validators[0]
	for _, v := range h.validators {
		ex, err := extractToken(r, v.Sources)
		cookie := false
		var id *identity
		if err == nil {
			id, err = v.verifyTimed(r.Context(), ex.token)
		} else if errors.Is(err, ErrTokenMissing) && v.Cookie != nil {
			// two identity cookies of one name are refused, as
			// from_cookie sources refuse theirs
			if val, cerr := onlyCookie(r, v.Cookie.Name); cerr != nil {
				err = cerr
			} else if val != "" {
				id, err = v.verifyCookie(val)
				cookie = true
			}
		}
		if err == nil {
			err = v.authorize(id)
		}
		if err == nil {
			return authResult{id: id, v: v, ex: ex, cookie: cookie}, nil
		}
		if firstErr == nil || (errors.Is(firstErr, ErrTokenMissing) && !errors.Is(err, ErrTokenMissing)) {
			firstErr, failed = err, v
		}
	}
	return authResult{v: failed}, firstErr
}

// refuse answers a rejection and stops the chain.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, v *Validator, ae *authError) error {
	v.counters.count(ae.reason)
	repl.Set("http.auth.jwt.error", boxedReason(ae.reason))
	challenge, ok := h.challenges[ae]
	if !ok {
		challenge = ae.wwwAuthenticate(h.Realm)
	}
	w.Header()["Www-Authenticate"] = []string{challenge} // canonical key: no allocation
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(ae.retryAfter))
	}
	if h.debug {
		if c := h.logger.Check(zapcore.DebugLevel, "request refused"); c != nil {
			// the path only: a from_query token would be in the full URI
			c.Write(zap.String("reason", ae.reason), zap.String("description", ae.desc), zap.String("path", r.URL.Path))
		}
	}
	return ae.handlerError()
}

// setIdentityCookie returns the identity cookie after a header
// authentication, unless the request already carries a valid one for the
// same token: the cookie's lifetime is set once per token, never extended.
// A cookie too large for browsers is not set; it, and a Secure cookie sent
// over plain HTTP, which the browser will never send back, are logged.
func (h *Handler) setIdentityCookie(w http.ResponseWriter, r *http.Request, id *identity) {
	v := id.v
	if old, err := r.Cookie(v.Cookie.Name); err == nil && v.cookieCarries(old.Value, id.payloadB64) {
		return
	}
	c := v.identityCookie(id, v.now())
	if c == nil {
		return
	}
	line := c.String()
	if len(line) > maxCookieLine {
		v.warnCookie(&v.warnedCookieSize, "identity cookie too large for browsers; not set, so cookie mode cannot work for this token (keep its claims smaller)",
			zap.Int("size", len(line)), zap.Int("limit", maxCookieLine))
		return
	}
	if c.Secure && !clientUsedHTTPS(r) {
		v.warnCookie(&v.warnedCookieHTTP, "Secure identity cookie set in answer to a plain-HTTP request; browsers will not send it back over HTTP (serve the site over https, or set the cookie insecure for local development)")
	}
	w.Header().Add("Set-Cookie", line)
}

// clientUsedHTTPS reports whether the client reached us over TLS, here or
// at a trusted proxy that says so in X-Forwarded-Proto.
func clientUsedHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// validHeaderValue reports whether s can be sent as a header value: a claim
// holding a control character is not forwarded (its header stays deleted).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// setPlaceholders publishes the identity through one lazy provider: nothing
// is copied, boxed or decoded unless a placeholder is read, so a request
// that uses none pays for one small closure.
func setPlaceholders(repl *caddy.Replacer, id *identity) {
	repl.Map(func(key string) (any, bool) {
		const user, claims = "http.auth.user.", "http.auth.jwt.claims."
		switch {
		case key == "http.auth.user.id":
			return id.userID, true
		case key == "http.auth.jwt.validator":
			return id.v.name, true
		case key == "http.auth.jwt.partner_id":
			return id.partnerID, true
		case strings.HasPrefix(key, claims):
			return id.claim(key[len(claims):])
		case strings.HasPrefix(key, user):
			return id.claim(key[len(user):])
		}
		return nil, false
	})
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
