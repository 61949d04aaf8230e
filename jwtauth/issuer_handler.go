package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/limiter"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

func init() {
	caddy.RegisterModule(IssuerHandler{})
}

// IssuerHandler serves an issuer's endpoints under PathPrefix, in the shape
// of the Odoo module odoo_jwt, and passes every other request to the next
// handler:
//
//   - POST <prefix>/authenticate, /update/access-token,
//     /update/refresh-token and /revoke/token, taking JSON or Odoo's
//     JSON-RPC envelope;
//   - GET <prefix>/.well-known/jwks.json (asymmetric algorithms);
//   - GET <prefix>/login, the test console, with Console.
type IssuerHandler struct {
	// Name of an issuer in the jwtauth app. Required.
	Issuer string `json:"issuer,omitempty"`

	// Path under which the endpoints are served, e.g. /api serves
	// /api/authenticate. Default: /api.
	PathPrefix string `json:"path_prefix,omitempty"`

	// Serve the test console at <path_prefix>/login. Default: false.
	Console bool `json:"console,omitempty"`

	issuer     *Issuer
	prefix     string
	cookiePath string
	cop        *http.CrossOriginProtection
	logger     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (IssuerHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_issuer",
		New: func() caddy.Module { return new(IssuerHandler) },
	}
}

// Provision finds the issuer and sets defaults.
func (h *IssuerHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Issuer == "" {
		return errors.New("jwt_issuer: an issuer name is required")
	}
	appIface, err := ctx.AppIfConfigured("jwtauth")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return errors.New("jwt_issuer: the jwtauth app is not configured (define issuers in the jwtauth global option)")
	}
	if err != nil {
		return fmt.Errorf("jwt_issuer: %w", err)
	}
	is, err := appIface.(*App).issuer(h.Issuer)
	if err != nil {
		return fmt.Errorf("jwt_issuer: %w", err)
	}
	return h.setup(is)
}

// setup binds the handler to its issuer and sets defaults.
func (h *IssuerHandler) setup(is *Issuer) error {
	h.issuer = is
	if h.PathPrefix == "" {
		h.PathPrefix = "/api"
	}
	h.prefix = strings.TrimRight(h.PathPrefix, "/")
	h.cookiePath = is.cookie.Path
	if h.cookiePath == "" {
		h.cookiePath = h.prefix
		if h.cookiePath == "" || strings.HasPrefix(is.cookie.Name, "__Host-") {
			h.cookiePath = "/"
		}
	}
	h.cop = http.NewCrossOriginProtection()
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	return nil
}

// Validate checks the handler's options.
func (h *IssuerHandler) Validate() error {
	if !strings.HasPrefix(h.PathPrefix, "/") {
		return fmt.Errorf("jwt_issuer: path_prefix %q must start with /", h.PathPrefix)
	}
	if strings.ContainsAny(h.PathPrefix, "*?#%{}") || strings.Contains(h.PathPrefix, "//") || strings.Contains(h.PathPrefix, "/../") {
		return fmt.Errorf("jwt_issuer: path_prefix %q must be a plain path", h.PathPrefix)
	}
	if err := checkCookieAttrs(h.issuer.cookie.Name, h.cookiePath, h.issuer.cookie.Insecure, h.issuer.sameSite); err != nil {
		return fmt.Errorf("jwt_issuer: refresh_cookie: %w", err)
	}
	return nil
}

// ServeHTTP serves the issuer's endpoints and passes other requests on.
func (h *IssuerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	var endpoint func(http.ResponseWriter, *http.Request, *apiRequest) (any, error)
	switch rest {
	case "/authenticate":
		endpoint = h.authenticate
	case "/update/access-token":
		endpoint = h.refreshAccess
	case "/update/refresh-token":
		endpoint = h.rotate
	case "/revoke/token":
		endpoint = h.revoke
	case "/.well-known/jwks.json":
		return h.serveJWKS(w, r)
	case "/login":
		if !h.Console {
			return next.ServeHTTP(w, r)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return methodNotAllowed(w, "GET, HEAD")
		}
		serveConsole(w, r)
		return nil
	default:
		return next.ServeHTTP(w, r)
	}
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, "POST")
	}
	// only /authenticate needs fields: the others take the refresh token
	// from a header or the cookie, and then need no body at all
	rq, e := readAPIRequest(w, r, rest != "/authenticate")
	if e != nil {
		return h.answerError(w, rq, e)
	}
	if h.issuer.run.Load() == nil {
		return h.answerError(w, rq, errNotReady)
	}
	result, err := endpoint(w, r, rq)
	if err != nil {
		return h.answerError(w, rq, err)
	}
	return rq.reply(w, result)
}

// answerError answers an endpoint's error: an *endpointError as it is, a
// session operation's error (sessionFailure) as sessionError maps it, and
// anything else as a 500 that Caddy's error handling answers.
func (h *IssuerHandler) answerError(w http.ResponseWriter, rq *apiRequest, err error) error {
	var e *endpointError
	var sf sessionFailure
	switch {
	case errors.As(err, &e):
	case errors.As(err, &sf):
		e = h.issuer.sessionError(sf.err)
	default:
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	rq.fail(w, e)
	return nil
}

// sessionFailure is the error of a session operation, which the dispatch
// answers as sessionError maps it: a refused token 401, a failed store 503.
type sessionFailure struct{ err error }

func (f sessionFailure) Error() string { return f.err.Error() }
func (f sessionFailure) Unwrap() error { return f.err }

// sessionFailed counts a session operation's error (noteSessionError) and
// returns it for the dispatch to answer.
func (is *Issuer) sessionFailed(err error, op string) error {
	is.noteSessionError(err, op)
	return sessionFailure{err}
}

// sessionError maps a session operation's error to its answer: a refusal of
// the token is 401, anything else a failure of the store, 503 (never 401,
// never 500), logged at Error once per burst (logStoreFailure).
func (is *Issuer) sessionError(err error) *endpointError {
	invalid := func(desc string) *endpointError {
		return &endpointError{status: http.StatusUnauthorized, code: "invalid_grant", desc: desc, session: true}
	}
	switch {
	case errors.Is(err, sessions.ErrUnknown), errors.Is(err, sessions.ErrEnded):
		return invalid("invalid or expired refresh token")
	case errors.Is(err, sessions.ErrReused):
		return invalid("refresh token reused: the session is revoked")
	case errors.Is(err, sessions.ErrMismatch):
		return invalid("the access token belongs to another session")
	case errors.Is(err, errNotStarted):
		return errNotReady
	}
	is.logStoreFailure(err)
	return errStoreDown
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	writeEndpointError(w, &endpointError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "method not allowed; use " + allow})
	return nil
}

// opContext bounds a store operation by the request and, with Redis, by the
// store's timeout.
func (is *Issuer) opContext(r *http.Request) (context.Context, context.CancelFunc) {
	if is.redis != nil {
		return context.WithTimeout(r.Context(), is.redis.timeout)
	}
	return r.Context(), func() {}
}

// sessionParams reads what a refresh or a rotation carries: the refresh
// token, counted by count as a refused one when missing or refused, and the
// optional user_id.
func (h *IssuerHandler) sessionParams(r *http.Request, rq *apiRequest, count func(error)) (tok, uid string, hasUID bool, err error) {
	if tok, err = h.refreshToken(r, rq); err != nil {
		count(sessions.ErrUnknown)
		return "", "", false, err
	}
	uid, hasUID, err = userIDParam(rq)
	return tok, uid, hasUID, err
}

// refuseStale ends session sid, whose user changed since the login, and
// returns the refusal to answer: the session's end, or the store's failure.
func (is *Issuer) refuseStale(ctx context.Context, ss *sharedStore, sid string) error {
	if err := is.endStale(ctx, ss, sid); err != nil {
		return sessionFailure{err}
	}
	return sessionFailure{sessions.ErrEnded}
}

type authenticateResult struct {
	Token              string      `json:"token"`
	AccessToken        string      `json:"access_token"`
	TokenType          string      `json:"token_type"`
	ExpiresIn          int64       `json:"expires_in"`
	UserID             json.Number `json:"user_id"`
	RotationPeriod     int64       `json:"rotation_period"`
	LongTermTokenSpan  int64       `json:"long_term_token_span"`
	ShortTermTokenSpan int64       `json:"short_term_token_span"`
	RefreshToken       string      `json:"refreshToken,omitempty"`
}

// authenticate is POST <prefix>/authenticate: {"db"?, "login", "password"}.
func (h *IssuerHandler) authenticate(w http.ResponseWriter, r *http.Request, rq *apiRequest) (any, error) {
	is := h.issuer
	login, err := rq.stringParam("login")
	if err != nil {
		return nil, err
	}
	password, err := rq.stringParam("password")
	if err != nil {
		return nil, err
	}
	// a login from another site would plant the attacker's session
	// (login CSRF)
	if isBrowserRequest(r) && h.cop.Check(r) != nil {
		return nil, errCrossOriginRefused
	}
	run := is.run.Load()
	u, err := h.checkLogin(r, is.loginLimiter(run), login, password)
	if err != nil {
		return nil, err
	}
	now := is.now()
	ctx, cancel := is.opContext(r)
	defer cancel()
	p, st := is.policy(), run.shared
	s, rt, revs, err := st.store.Create(ctx, p, sessions.New{Login: u.login, UserID: u.userID.String(), FP: u.fp}, now)
	is.ended(revs)
	if err != nil {
		is.countLogin(resultError)
		return nil, is.sessionFailed(err, "create")
	}
	st.deny.created(s.SID, now)
	end := p.End(s)
	at, exp, err := is.mintAccess(run.signer, u, s.SID, now, end)
	if err != nil {
		is.countLogin(resultError)
		return nil, err
	}
	is.countLogin(resultOK)
	is.auditLoginOK(r, u, s.SID)
	h.setRefreshCookie(w, rt, end, now)
	res := authenticateResult{
		Token: at, AccessToken: at, TokenType: "Bearer",
		ExpiresIn:          expiresIn(exp, now),
		UserID:             u.userID,
		RotationPeriod:     int64(is.rotation / time.Second),
		LongTermTokenSpan:  int64(time.Duration(is.RefreshTTL) / time.Second),
		ShortTermTokenSpan: int64(is.accessTTL / time.Second),
	}
	if !isBrowserRequest(r) {
		res.RefreshToken = rt
	}
	return res, nil
}

// checkLogin checks login and password under the login limiter: the user,
// or the refusal to answer (rate limited, bad credentials, limiter down).
func (h *IssuerHandler) checkLogin(r *http.Request, lim limiter.Limiter, login, password string) (*issuerUser, error) {
	is := h.issuer
	addr, ctx := clientAddr(r), r.Context()
	d, err := lim.Before(ctx, addr, login, is.now())
	if err != nil {
		is.countLogin(resultError)
		return nil, errLimiterDown
	}
	if !d.OK {
		is.countLogin(resultRateLimited)
		is.auditRateLimited(r, login, d.RetryAfter)
		return nil, &endpointError{status: http.StatusTooManyRequests, code: "too_many_requests", desc: "too many failed logins; retry later", retryAfter: d.RetryAfter}
	}
	if d.Delay > 0 {
		// the login's slowdown, the same whatever the password
		if c := h.logger.Check(zapcore.DebugLevel, "login slowed down"); c != nil {
			c.Write(zap.String("client", addr), zap.Duration("delay", d.Delay))
		}
		if err := is.wait(ctx, d.Delay); err != nil {
			// the client went away: the attempt counts as failed
			_ = lim.Failed(context.WithoutCancel(ctx), addr, login, is.now())
			return nil, errLoginAbandoned
		}
	}
	u, result := is.checkPassword(login, password)
	if u == nil {
		if err := lim.Failed(ctx, addr, login, is.now()); err != nil {
			is.countLogin(resultError)
			return nil, errLimiterDown
		}
		is.countLogin(result)
		is.auditLoginFailed(r, login, result)
		return nil, errBadCredentials
	}
	if err := lim.Succeeded(ctx, addr, login, is.now()); err != nil {
		is.countLogin(resultError)
		return nil, errLimiterDown
	}
	return u, nil
}

// expiresIn is the lifetime in whole seconds, as the token's integer iat
// and exp show it.
func expiresIn(exp, now time.Time) int64 {
	return max(exp.Unix()-now.Unix(), 0)
}

// refreshAccess is POST <prefix>/update/access-token: a new access token for
// the session of the refresh token.
func (h *IssuerHandler) refreshAccess(w http.ResponseWriter, r *http.Request, rq *apiRequest) (any, error) {
	is := h.issuer
	run := is.run.Load()
	tok, uid, hasUID, err := h.sessionParams(r, rq, is.countRefresh)
	if err != nil {
		return nil, err
	}
	ctx, cancel := is.opContext(r)
	defer cancel()
	now, p := is.now(), is.policy()
	if hasUID {
		// a user_id that is not the session's changes nothing
		s, revs, err := run.shared.store.Find(ctx, p, tok, now)
		is.ended(revs)
		if err == nil && s.UserID != uid {
			return nil, errUserMismatch
		}
	}
	s, revs, err := run.shared.store.Use(ctx, p, tok, now)
	is.ended(revs)
	is.countRefresh(err)
	if err != nil {
		return nil, is.sessionFailed(err, "use")
	}
	u, ok := is.userCurrent(s)
	if !ok { // the user changed since the login: never mint for them
		return nil, is.refuseStale(ctx, run.shared, s.SID)
	}
	at, exp, err := is.mintAccess(run.signer, u, s.SID, now, p.End(s))
	if err != nil {
		return nil, err
	}
	return struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}{at, expiresIn(exp, now)}, nil
}

// rotate is POST <prefix>/update/refresh-token: a new refresh token for the
// family, given its current one and a valid access token of the same
// session. A rotation retried with the same token within the grace window
// (its answer was lost) gets the same successor.
func (h *IssuerHandler) rotate(w http.ResponseWriter, r *http.Request, rq *apiRequest) (any, error) {
	is := h.issuer
	run := is.run.Load()
	tok, uid, hasUID, err := h.sessionParams(r, rq, is.countRotation)
	if err != nil {
		return nil, err
	}
	ctx, cancel := is.opContext(r)
	defer cancel()
	now, p := is.now(), is.policy()
	// a rotated-out token ends its family whatever else the request holds
	s, revs, err := run.shared.store.Find(ctx, p, tok, now)
	is.ended(revs)
	switch {
	case errors.Is(err, sessions.ErrReused), storeFailed(err):
		is.countRotation(err)
		return nil, is.sessionFailed(err, "rotate")
	case err == nil && hasUID && s.UserID != uid:
		return nil, errUserMismatch
	}
	sid, err := h.accessSession(r)
	if err != nil {
		return nil, err
	}
	s, newTok, revs, err := run.shared.store.Rotate(ctx, p, tok, sid, now)
	is.ended(revs)
	is.countRotation(err)
	if err != nil {
		return nil, is.sessionFailed(err, "rotate")
	}
	if _, ok := is.userCurrent(s); !ok {
		return nil, is.refuseStale(ctx, run.shared, s.SID)
	}
	h.setRefreshCookie(w, newTok, p.End(s), now)
	res := struct {
		Status       string `json:"status"`
		RefreshToken string `json:"refreshToken,omitempty"`
	}{Status: "done"}
	if !isBrowserRequest(r) {
		res.RefreshToken = newTok
	}
	return res, nil
}

// accessSession verifies the access token a rotation must carry and returns
// its session, or the refusal to answer (counted as the rotation's result).
func (h *IssuerHandler) accessSession(r *http.Request) (string, error) {
	is := h.issuer
	ex, err := extractToken(r, is.self.Sources)
	if err != nil {
		is.countRotation(sessions.ErrMismatch)
		if errors.Is(err, ErrConflictingTokens) {
			return "", badRequest("the request carries different access tokens")
		}
		return "", &endpointError{status: http.StatusUnauthorized, code: "invalid_token", desc: "a valid access token of the session is required (Authorization or access_token header)", session: true}
	}
	id, err := is.self.verify(ex.token)
	if errors.Is(err, ErrRevocationUnavailable) {
		// the revocation feed is silent: the session may be revoked
		// elsewhere, so neither refuse nor rotate; the client retries
		is.countRotation(sessions.ErrUnavailable)
		return "", errRevocationsUnknown
	}
	if err != nil || id.sid == "" {
		is.countRotation(sessions.ErrMismatch)
		return "", &endpointError{status: http.StatusUnauthorized, code: "invalid_token", desc: "the access token is invalid or expired", session: true}
	}
	return id.sid, nil
}

// revoke is POST <prefix>/revoke/token: logout. The session of the refresh
// token ends and the cookie is cleared. As RFC 7009 advises, an unknown
// token is answered like a known one.
func (h *IssuerHandler) revoke(w http.ResponseWriter, r *http.Request, rq *apiRequest) (any, error) {
	is := h.issuer
	run := is.run.Load()
	tok, err := h.refreshToken(r, rq)
	if err != nil {
		return nil, err
	}
	ctx, cancel := is.opContext(r)
	defer cancel()
	rev, found, err := run.shared.store.Revoke(ctx, is.policy(), tok, is.now())
	if found {
		is.ended([]sessions.Revocation{rev})
	}
	if err != nil {
		return nil, is.sessionFailed(err, "revoke")
	}
	h.clearRefreshCookie(w)
	return struct {
		Status string `json:"status"`
	}{"done"}, nil
}

func (h *IssuerHandler) setRefreshCookie(w http.ResponseWriter, tok string, end, now time.Time) {
	secs := int64(end.Sub(now) / time.Second)
	if secs <= 0 {
		h.clearRefreshCookie(w)
		return
	}
	c := h.issuer.cookie
	http.SetCookie(w, &http.Cookie{
		Name: c.Name, Value: tok, Path: h.cookiePath,
		MaxAge: int(secs), Expires: now.Add(time.Duration(secs) * time.Second),
		Secure: !c.Insecure, HttpOnly: true, SameSite: h.issuer.sameSite,
	})
}

func (h *IssuerHandler) clearRefreshCookie(w http.ResponseWriter) {
	c := h.issuer.cookie
	http.SetCookie(w, &http.Cookie{
		Name: c.Name, Value: "", Path: h.cookiePath, MaxAge: -1, Expires: time.Unix(0, 0),
		Secure: !c.Insecure, HttpOnly: true, SameSite: h.issuer.sameSite,
	})
}

// serveJWKS is GET <prefix>/.well-known/jwks.json.
func (h *IssuerHandler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(w, "GET, HEAD")
	}
	run := h.issuer.run.Load()
	if run == nil {
		writeEndpointError(w, errNotReady)
		return nil
	}
	jwks := run.signer.jwks
	if jwks == nil {
		writeEndpointError(w, &endpointError{status: http.StatusNotFound, code: "not_found", desc: "this issuer signs with a shared secret, which is never published"})
		return nil
	}
	setNoStore(w)
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(jwks)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(jwks)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*IssuerHandler)(nil)
	_ caddy.Validator             = (*IssuerHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*IssuerHandler)(nil)
	_ caddyfile.Unmarshaler       = (*IssuerHandler)(nil)
)
