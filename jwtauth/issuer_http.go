package jwtauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// maxIssuerBody caps the body of an issuer endpoint request.
const maxIssuerBody = 64 << 10

// endpointError is an error answer of an issuer endpoint.
type endpointError struct {
	status     int
	code       string // {"error": code}
	desc       string // {"error_description": desc}; never a secret
	retryAfter time.Duration
	// session marks a refused refresh token or session: in the JSON-RPC
	// envelope it is Odoo's "session expired" (code 100), on which old
	// clients log in again.
	session bool
}

func badRequest(desc string) *endpointError {
	return &endpointError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

var (
	errCrossOriginRefused = &endpointError{status: http.StatusForbidden, code: "invalid_request", desc: "cross-origin request refused"}
	errBadCredentials     = &endpointError{status: http.StatusUnauthorized, code: "invalid_grant", desc: "invalid login or password"}
	errNoRefreshToken     = badRequest("a refresh token is required (the refresh cookie, a refreshToken header or refreshToken field)")
	errStoreDown          = &endpointError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the session store is unavailable; retry later", retryAfter: 5 * time.Second}
	errLimiterDown        = &endpointError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the login limiter is unavailable; retry later", retryAfter: 5 * time.Second}
	errLoginAbandoned     = &endpointError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the login was interrupted; retry", retryAfter: time.Second}
	errNotReady           = &endpointError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the issuer is starting; retry later", retryAfter: time.Second}
	errUserMismatch       = &endpointError{status: http.StatusUnauthorized, code: "invalid_grant", desc: "the refresh token does not belong to user_id", session: true}
)

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

// apiRequest is a parsed endpoint request: plain JSON or Odoo's JSON-RPC
// envelope {"jsonrpc":"2.0","method":"call","params":{...},"id":...}.
type apiRequest struct {
	envelope bool
	id       json.RawMessage
	params   map[string]json.RawMessage
}

// ServeHTTP serves the issuer's endpoints and passes other requests on.
func (h *IssuerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	var endpoint func(http.ResponseWriter, *http.Request, *apiRequest) error
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
		rq.fail(w, e)
		return nil
	}
	if h.issuer.run.Load() == nil {
		rq.fail(w, errNotReady)
		return nil
	}
	return endpoint(w, r, rq)
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	writeEndpointError(w, &endpointError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "method not allowed; use " + allow})
	return nil
}

// readAPIRequest checks the media type and size, and parses the body. The
// returned request is never nil: once the envelope is recognized, errors in
// it are answered in the envelope. With emptyOK, a request without a
// Content-Type is accepted when its body is empty (curl -X POST with only a
// refreshToken header); any body must still be JSON.
func readAPIRequest(w http.ResponseWriter, r *http.Request, emptyOK bool) (*apiRequest, *endpointError) {
	rq := new(apiRequest)
	notJSON := &endpointError{status: http.StatusUnsupportedMediaType, code: "invalid_request", desc: "Content-Type must be application/json"}
	_, typed := r.Header["Content-Type"]
	if typed || !emptyOK {
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return rq, notJSON
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return rq, &endpointError{status: http.StatusUnsupportedMediaType, code: "invalid_request", desc: "the body must be UTF-8"}
		}
	}
	tooLarge := &endpointError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", desc: "body larger than 64 KiB"}
	if r.ContentLength > maxIssuerBody {
		return rq, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxIssuerBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return rq, tooLarge
		}
		return rq, badRequest("cannot read the body")
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	} else if !typed {
		return rq, notJSON
	}
	if !json.Valid(body) {
		return rq, badRequest("malformed JSON")
	}
	top, e := objectMembers(body)
	if e != nil {
		return rq, e
	}
	rq.params = top
	raw, ok := top["jsonrpc"]
	if !ok {
		return rq, nil
	}
	if v, ok := decodeString(raw); !ok || v != "2.0" {
		return rq, badRequest(`jsonrpc must be "2.0"`)
	}
	rq.envelope = true
	rq.id = top["id"]
	rq.params = map[string]json.RawMessage{}
	if m, ok := top["method"]; ok {
		if _, ok := decodeString(m); !ok {
			return rq, badRequest("method must be a string")
		}
	}
	if p, ok := top["params"]; ok && string(p) != "null" {
		members, e := objectMembers(p)
		if e != nil {
			return rq, e
		}
		rq.params = members
	}
	return rq, nil
}

// objectMembers splits a valid JSON object into its members, refusing
// duplicated names, which parsers resolve differently.
func objectMembers(raw []byte) (map[string]json.RawMessage, *endpointError) {
	m := make(map[string]json.RawMessage)
	dup := ""
	err := jsonObject(raw).each(func(k, v []byte) bool {
		name := decodeKey(k)
		if _, ok := m[name]; ok {
			dup = name
			return false
		}
		m[name] = v
		return true
	})
	if err != nil {
		return nil, badRequest("the body must be a JSON object")
	}
	if dup != "" {
		return nil, badRequest("duplicate member " + strconv.Quote(dup))
	}
	return m, nil
}

// stringParam reads a required string parameter.
func (rq *apiRequest) stringParam(name string) (string, *endpointError) {
	raw, ok := rq.params[name]
	if !ok || string(raw) == "null" {
		return "", badRequest(name + " is required")
	}
	s, ok := decodeString(raw)
	if !ok {
		return "", badRequest(name + " must be a string")
	}
	return s, nil
}

func setNoStore(w http.ResponseWriter) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Pragma", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
}

// reply answers 200 with result, in the envelope when the request used it.
func (rq *apiRequest) reply(w http.ResponseWriter, result any) error {
	setNoStore(w)
	w.Header().Set("Content-Type", "application/json")
	var body any = result
	if rq.envelope {
		body = rpcResponse{JSONRPC: "2.0", ID: rq.rpcID(), Result: result}
	}
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(body)
}

func (rq *apiRequest) rpcID() json.RawMessage {
	if len(rq.id) == 0 {
		return json.RawMessage("null")
	}
	return rq.id
}

// fail answers an error: {"error","error_description"} with its status, or,
// in the envelope, Odoo's shape with HTTP 200.
func (rq *apiRequest) fail(w http.ResponseWriter, e *endpointError) {
	if rq == nil || !rq.envelope {
		writeEndpointError(w, e)
		return
	}
	setNoStore(w)
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.retryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(rpcResponse{JSONRPC: "2.0", ID: rq.rpcID(), Error: e.rpcError()})
}

func writeEndpointError(w http.ResponseWriter, e *endpointError) {
	setNoStore(w)
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.retryAfter))
	}
	if e.status == http.StatusUnauthorized {
		challenge := `Bearer realm="jwt_issuer"`
		if e.code == "invalid_token" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeJSONError(w, e.status, e.code, e.desc)
}

func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// rpcError is Odoo's JSON-RPC error object, with our error code and
// description, and the HTTP status the plain API would have used, in data.
type rpcError struct {
	Code    int          `json:"code"`
	Message string       `json:"message"`
	Data    rpcErrorData `json:"data"`
}

type rpcErrorData struct {
	Name             string   `json:"name"`
	Debug            string   `json:"debug"`
	Message          string   `json:"message"`
	Arguments        []string `json:"arguments"`
	Context          struct{} `json:"context"`
	Error            string   `json:"error"`
	ErrorDescription string   `json:"error_description"`
	HTTPStatus       int      `json:"http_status"`
}

func (e *endpointError) rpcError() *rpcError {
	code, msg := 200, "Odoo Server Error"
	var name string
	switch e.status {
	case http.StatusBadRequest:
		name = "werkzeug.exceptions.BadRequest"
	case http.StatusUnauthorized:
		name = "odoo.exceptions.AccessDenied"
		if e.session {
			code, msg, name = 100, "Odoo Session Expired", "odoo.http.SessionExpiredException"
		}
	case http.StatusForbidden:
		name = "werkzeug.exceptions.Forbidden"
	case http.StatusTooManyRequests:
		name = "werkzeug.exceptions.TooManyRequests"
	case http.StatusServiceUnavailable:
		name = "werkzeug.exceptions.ServiceUnavailable"
	default:
		name = "werkzeug.exceptions.InternalServerError"
	}
	return &rpcError{Code: code, Message: msg, Data: rpcErrorData{
		Name: name, Message: e.desc, Arguments: []string{e.desc},
		Error: e.code, ErrorDescription: e.desc, HTTPStatus: e.status,
	}}
}

// isBrowserRequest reports whether a browser sent r: browsers add
// Sec-Fetch-Site or Origin. Browsers get the refresh token only as the
// HttpOnly cookie, never in a body that scripts could read.
func isBrowserRequest(r *http.Request) bool {
	_, site := r.Header["Sec-Fetch-Site"]
	_, origin := r.Header["Origin"]
	return site || origin
}

// refreshToken finds the request's refresh token: a refreshToken header or
// body field (which must agree), else the refresh cookie. A token the
// cookie carried, which a browser attaches by itself, is only accepted from
// a same-origin request (as jwt_auth's cookie mode).
func (h *IssuerHandler) refreshToken(r *http.Request, rq *apiRequest) (string, *endpointError) {
	tok, fromCookie, e := h.findRefreshToken(r, rq)
	if e == nil && fromCookie && h.cop.Check(r) != nil {
		return "", errCrossOriginRefused
	}
	return tok, e
}

func (h *IssuerHandler) findRefreshToken(r *http.Request, rq *apiRequest) (tok string, fromCookie bool, e *endpointError) {
	conflict := badRequest("the request carries different refresh tokens")
	for _, v := range r.Header.Values("refreshToken") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		if tok != "" && tok != v {
			return "", false, conflict
		}
		tok = v
	}
	if raw, ok := rq.params["refreshToken"]; ok && string(raw) != "null" {
		v, ok := decodeString(raw)
		if !ok {
			return "", false, badRequest("refreshToken must be a string")
		}
		if v != "" {
			if tok != "" && tok != v {
				return "", false, conflict
			}
			tok = v
		}
	}
	if tok != "" {
		return tok, false, nil
	}
	for _, c := range r.CookiesNamed(h.issuer.cookie.Name) {
		if c.Value != "" {
			return c.Value, true, nil
		}
	}
	return "", false, errNoRefreshToken
}

// userIDParam reads the optional user_id parameter, a number or a string,
// which must then be the session's.
func userIDParam(rq *apiRequest) (string, bool, *endpointError) {
	raw, ok := rq.params["user_id"]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	switch {
	case len(raw) > 0 && raw[0] == '"':
		given, _ := decodeString(raw)
		return given, true, nil
	case isScalar(raw):
		return string(raw), true, nil
	}
	return "", false, badRequest("user_id must be a number or a string")
}

// opContext bounds a store operation by the request and, with Redis, by the
// store's timeout.
func (is *Issuer) opContext(r *http.Request) (context.Context, context.CancelFunc) {
	if is.redis != nil {
		return context.WithTimeout(r.Context(), is.redis.timeout)
	}
	return r.Context(), func() {}
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
func (h *IssuerHandler) authenticate(w http.ResponseWriter, r *http.Request, rq *apiRequest) error {
	is := h.issuer
	login, e := rq.stringParam("login")
	if e != nil {
		rq.fail(w, e)
		return nil
	}
	password, e := rq.stringParam("password")
	if e != nil {
		rq.fail(w, e)
		return nil
	}
	// a login from another site would plant the attacker's session
	// (login CSRF)
	if isBrowserRequest(r) && h.cop.Check(r) != nil {
		rq.fail(w, errCrossOriginRefused)
		return nil
	}
	run := is.run.Load()
	st := run.shared
	lim := is.loginLimiter(run)
	addr, ctx := clientAddr(r), r.Context()
	d, err := lim.Before(ctx, addr, login, is.now())
	if err != nil {
		rq.fail(w, errLimiterDown)
		return nil
	}
	if !d.OK {
		if c := h.logger.Check(zapcore.DebugLevel, "login refused: too many failures"); c != nil {
			c.Write(zap.String("client", addr))
		}
		rq.fail(w, &endpointError{status: http.StatusTooManyRequests, code: "too_many_requests", desc: "too many failed logins; retry later", retryAfter: d.RetryAfter})
		return nil
	}
	if d.Delay > 0 {
		// the login's slowdown, the same whatever the password
		if c := h.logger.Check(zapcore.DebugLevel, "login slowed down"); c != nil {
			c.Write(zap.String("client", addr), zap.Duration("delay", d.Delay))
		}
		if err := is.wait(ctx, d.Delay); err != nil {
			// the client went away: the attempt counts as failed
			_ = lim.Failed(context.WithoutCancel(ctx), addr, login, is.now())
			rq.fail(w, errLoginAbandoned)
			return nil
		}
	}
	u := is.checkPassword(login, password)
	if u == nil {
		if err := lim.Failed(ctx, addr, login, is.now()); err != nil {
			rq.fail(w, errLimiterDown)
			return nil
		}
		if c := h.logger.Check(zapcore.DebugLevel, "login failed"); c != nil {
			c.Write(zap.String("client", addr))
		}
		rq.fail(w, errBadCredentials)
		return nil
	}
	if err := lim.Succeeded(ctx, addr, login, is.now()); err != nil {
		rq.fail(w, errLimiterDown)
		return nil
	}
	now := is.now()
	ctx, cancel := is.opContext(r)
	defer cancel()
	p := is.policy()
	s, rt, revs, err := st.store.Create(ctx, p, sessions.New{Login: u.login, UserID: u.userID.String(), FP: u.fp}, now)
	is.ended(revs)
	if err != nil {
		rq.fail(w, is.sessionError(err))
		return nil
	}
	st.deny.created(s.SID, now)
	end := p.End(s)
	at, exp, err := is.mintAccess(run.signer, u, s.SID, now, end)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
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
	if c := h.logger.Check(zapcore.DebugLevel, "login"); c != nil {
		c.Write(zap.String("login", u.login), zap.String("sid", s.SID), zap.String("client", addr))
	}
	return rq.reply(w, res)
}

// expiresIn is the lifetime in whole seconds, as the token's integer iat
// and exp show it.
func expiresIn(exp, now time.Time) int64 {
	return max(exp.Unix()-now.Unix(), 0)
}

// refreshAccess is POST <prefix>/update/access-token: a new access token for
// the session of the refresh token.
func (h *IssuerHandler) refreshAccess(w http.ResponseWriter, r *http.Request, rq *apiRequest) error {
	is := h.issuer
	run := is.run.Load()
	tok, e := h.refreshToken(r, rq)
	if e != nil {
		rq.fail(w, e)
		return nil
	}
	uid, hasUID, e := userIDParam(rq)
	if e != nil {
		rq.fail(w, e)
		return nil
	}
	ctx, cancel := is.opContext(r)
	defer cancel()
	now, p := is.now(), is.policy()
	if hasUID {
		// a user_id that is not the session's changes nothing
		s, revs, err := run.shared.store.Find(ctx, p, tok, now)
		is.ended(revs)
		if err == nil && s.UserID != uid {
			rq.fail(w, errUserMismatch)
			return nil
		}
	}
	s, revs, err := run.shared.store.Use(ctx, p, tok, now)
	is.ended(revs)
	if err != nil {
		rq.fail(w, is.sessionError(err))
		return nil
	}
	u, ok := is.userCurrent(s)
	if !ok { // the user changed since the login: never mint for them
		if err := is.endStale(ctx, run.shared, s.SID); err != nil {
			rq.fail(w, is.sessionError(err))
			return nil
		}
		rq.fail(w, is.sessionError(sessions.ErrEnded))
		return nil
	}
	at, exp, err := is.mintAccess(run.signer, u, s.SID, now, p.End(s))
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	return rq.reply(w, struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}{at, expiresIn(exp, now)})
}

// rotate is POST <prefix>/update/refresh-token: a new refresh token for the
// family, given its current one and a valid access token of the same
// session. A rotation retried with the same token within the grace window
// (its answer was lost) gets the same successor.
func (h *IssuerHandler) rotate(w http.ResponseWriter, r *http.Request, rq *apiRequest) error {
	is := h.issuer
	run := is.run.Load()
	tok, e := h.refreshToken(r, rq)
	if e != nil {
		rq.fail(w, e)
		return nil
	}
	uid, hasUID, e := userIDParam(rq)
	if e != nil {
		rq.fail(w, e)
		return nil
	}
	ctx, cancel := is.opContext(r)
	defer cancel()
	now, p := is.now(), is.policy()
	// a rotated-out token ends its family whatever else the request holds
	s, revs, err := run.shared.store.Find(ctx, p, tok, now)
	is.ended(revs)
	switch {
	case errors.Is(err, sessions.ErrReused), storeFailed(err):
		rq.fail(w, is.sessionError(err))
		return nil
	case err == nil && hasUID && s.UserID != uid:
		rq.fail(w, errUserMismatch)
		return nil
	}
	ex, err := extractToken(r, is.self.Sources)
	if err != nil {
		if errors.Is(err, ErrConflictingTokens) {
			rq.fail(w, badRequest("the request carries different access tokens"))
		} else {
			rq.fail(w, &endpointError{status: http.StatusUnauthorized, code: "invalid_token", desc: "a valid access token of the session is required (Authorization or access_token header)", session: true})
		}
		return nil
	}
	id, err := is.self.verify(ex.token)
	if err != nil || id.sid == "" {
		rq.fail(w, &endpointError{status: http.StatusUnauthorized, code: "invalid_token", desc: "the access token is invalid or expired", session: true})
		return nil
	}
	s, newTok, revs, err := run.shared.store.Rotate(ctx, p, tok, id.sid, now)
	is.ended(revs)
	if err != nil {
		rq.fail(w, is.sessionError(err))
		return nil
	}
	if _, ok := is.userCurrent(s); !ok {
		if err := is.endStale(ctx, run.shared, s.SID); err != nil {
			rq.fail(w, is.sessionError(err))
			return nil
		}
		rq.fail(w, is.sessionError(sessions.ErrEnded))
		return nil
	}
	h.setRefreshCookie(w, newTok, p.End(s), now)
	res := struct {
		Status       string `json:"status"`
		RefreshToken string `json:"refreshToken,omitempty"`
	}{Status: "done"}
	if !isBrowserRequest(r) {
		res.RefreshToken = newTok
	}
	return rq.reply(w, res)
}

// revoke is POST <prefix>/revoke/token: logout. The session of the refresh
// token ends and the cookie is cleared. As RFC 7009 advises, an unknown
// token is answered like a known one.
func (h *IssuerHandler) revoke(w http.ResponseWriter, r *http.Request, rq *apiRequest) error {
	is := h.issuer
	run := is.run.Load()
	tok, e := h.refreshToken(r, rq)
	if e != nil {
		rq.fail(w, e)
		return nil
	}
	ctx, cancel := is.opContext(r)
	defer cancel()
	rev, found, err := run.shared.store.Revoke(ctx, is.policy(), tok, is.now())
	if found {
		is.ended([]sessions.Revocation{rev})
	}
	if err != nil {
		rq.fail(w, is.sessionError(err))
		return nil
	}
	h.clearRefreshCookie(w)
	return rq.reply(w, struct {
		Status string `json:"status"`
	}{"done"})
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
