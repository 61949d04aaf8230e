package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
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

func (e *endpointError) Error() string { return e.code + ": " + e.desc }

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
	errRevocationsUnknown = &endpointError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "revocations cannot be checked now; retry later", retryAfter: time.Second}
	errUserMismatch       = &endpointError{status: http.StatusUnauthorized, code: "invalid_grant", desc: "the refresh token does not belong to user_id", session: true}
)

// apiRequest is a parsed endpoint request: plain JSON or Odoo's JSON-RPC
// envelope {"jsonrpc":"2.0","method":"call","params":{...},"id":...}.
type apiRequest struct {
	envelope bool
	id       json.RawMessage
	params   map[string]json.RawMessage
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
func (rq *apiRequest) stringParam(name string) (string, error) {
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
func (h *IssuerHandler) refreshToken(r *http.Request, rq *apiRequest) (string, error) {
	tok, fromCookie, err := h.findRefreshToken(r, rq)
	if err == nil && fromCookie && h.cop.Check(r) != nil {
		return "", errCrossOriginRefused
	}
	return tok, err
}

func (h *IssuerHandler) findRefreshToken(r *http.Request, rq *apiRequest) (tok string, fromCookie bool, err error) {
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
func userIDParam(rq *apiRequest) (string, bool, error) {
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
