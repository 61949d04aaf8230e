package jwtauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
)

// Rejection reasons. Each is a short, stable code: it is the value of the
// {http.auth.jwt.error} placeholder and the "result" label of the
// caddy_jwtauth_requests_total metric, so handle_errors and dashboards can
// branch on it. The descriptions sent to clients never contain the token.
const (
	reasonMissing   = "missing"
	reasonMalformed = "malformed"
	reasonInvalid   = "invalid"
	reasonExpired   = "expired"
	reasonForbidden = "forbidden"
	// reasonUnavailable: the token's revocation cannot be checked now
	// (503), e.g. a shared session store's revocation feed is silent.
	reasonUnavailable = "unavailable"
)

// Sentinel errors. They wrap golang-jwt's sentinels where one exists, so
// callers can test either with errors.Is.
var (
	ErrTokenMissing       = errors.New("no token in request")
	ErrTokenTooLarge      = errors.New("token too large")
	ErrTokenMalformed     = jwt.ErrTokenMalformed
	ErrTokenExpired       = jwt.ErrTokenExpired
	ErrTokenNotValidYet   = jwt.ErrTokenNotValidYet
	ErrTokenUsedBeforeIAT = jwt.ErrTokenUsedBeforeIssued
	ErrTokenSignature     = jwt.ErrTokenSignatureInvalid
	ErrTokenUnverifiable  = jwt.ErrTokenUnverifiable
	ErrTokenInvalidClaims = jwt.ErrTokenInvalidClaims
	ErrInvalidIssuer      = jwt.ErrTokenInvalidIssuer
	ErrInvalidAudience    = jwt.ErrTokenInvalidAudience
	ErrInsufficientScope  = errors.New("insufficient scope")
	ErrConflictingTokens  = errors.New("request carries more than one token")
	ErrUserConflict       = errors.New("request already authenticated as another user")
	ErrCookieInvalid      = errors.New("invalid identity cookie")
	ErrCrossOrigin        = errors.New("cross-origin request authenticated by cookie")
	ErrRevoked            = errors.New("token revoked")
	// ErrRevocationUnavailable: the issuer cannot tell whether the
	// token's session was revoked; answered 503 with Retry-After.
	ErrRevocationUnavailable = errors.New("revocation status unavailable")
)

// The pipeline's refusals whose text never varies are built once, so that
// refusing a token allocates nothing for its error. They are never
// modified.
var (
	errHeaderB64        = malformed("header is not strict base64url")
	errPayloadB64       = malformed("payload is not strict base64url")
	errSignatureB64     = malformed("signature is not strict base64url")
	errPayloadNotJSON   = malformed("payload is not JSON")
	errPayloadNotObject = malformed("payload is not a JSON object")
	errExpRequired      = invalidToken(reasonInvalid, ErrTokenInvalidClaims, "exp claim required")
	errExpired          = invalidToken(reasonExpired, ErrTokenExpired, "token expired")
	errNotValidYet      = invalidToken(reasonInvalid, ErrTokenNotValidYet, "token not valid yet")
	errIATRequired      = invalidToken(reasonInvalid, ErrTokenInvalidClaims, "iat claim required by max_lifetime")
	errUsedBeforeIAT    = invalidToken(reasonInvalid, ErrTokenUsedBeforeIAT, "token used before issued")
	errLifetime         = invalidToken(reasonInvalid, ErrTokenInvalidClaims, "token lifetime exceeds max_lifetime")
	errIssuer           = invalidToken(reasonInvalid, ErrInvalidIssuer, "issuer not accepted")
	errAudienceType     = invalidToken(reasonInvalid, ErrInvalidAudience, "aud must be a string or an array of strings")
	errAudience         = invalidToken(reasonInvalid, ErrInvalidAudience, "audience not accepted")
	errNoKey            = invalidToken(reasonInvalid, ErrTokenUnverifiable, "no key for this kid and alg")
	errSignature        = invalidToken(reasonInvalid, ErrTokenSignature, "signature invalid")
	errRevoked          = invalidToken(reasonInvalid, ErrRevoked, "token revoked")
	errNotJWS           = malformed("not a compact JWS")
	errTooManySegments  = malformed("not a compact JWS: too many segments")
	errNotB64           = malformed("token is not base64url")
	errHeaderNotJSON    = malformed("header is not JSON")
	errHeaderNotObject  = malformed("header is not a JSON object")
	errAlgMissing       = malformed("alg missing")
	errAlgNotAllowed    = invalidToken(reasonInvalid, ErrTokenUnverifiable, "algorithm not allowed")
	errTypNotAllowed    = invalidToken(reasonInvalid, ErrTokenUnverifiable, "typ not allowed")
	errCookieInvalid    = invalidToken(reasonInvalid, ErrCookieInvalid, "invalid identity cookie")
	errCookieExpired    = invalidToken(reasonExpired, ErrTokenExpired, "identity cookie expired")
	// errKIDRequired refuses a kid-less token that several keys of a
	// remote set could have signed.
	errKIDRequired = invalidToken(reasonInvalid, ErrTokenUnverifiable, "kid required")
)

// errMissing answers a request that carries no token.
var errMissing = &authError{status: http.StatusUnauthorized, reason: reasonMissing, desc: "no token", err: ErrTokenMissing}

// staticRefusals are the refusals built once, whose challenges a handler
// renders at setup.
var staticRefusals = []*authError{
	errHeaderB64, errPayloadB64, errSignatureB64, errPayloadNotJSON, errPayloadNotObject, errExpRequired, errExpired, errNotValidYet, errIATRequired, errUsedBeforeIAT, errLifetime, errIssuer, errAudienceType, errAudience, errNoKey, errSignature, errRevoked, errNotJWS, errTooManySegments, errNotB64, errHeaderNotJSON, errHeaderNotObject, errAlgMissing, errAlgNotAllowed, errTypNotAllowed, errCookieInvalid, errCookieExpired, errKIDRequired, errMissing, errEmptyToken,
}

// authError is a rejection with everything needed to answer it.
type authError struct {
	status int    // HTTP status
	code   string // RFC 6750 error code, empty when the token is missing
	reason string // short reason code, see the reason* constants
	desc   string // human-readable, never contains the token
	err    error  // wrapped sentinel
	// retryAfter, when set, is sent as Retry-After (503 answers).
	retryAfter time.Duration
	// boxed is the static refusals' handlerError, built once at init.
	boxed error
}

func (e *authError) Error() string { return e.desc }
func (e *authError) Unwrap() error { return e.err }

func init() {
	for _, ae := range staticRefusals {
		ae.boxed = ae.newHandlerError()
	}
}

// handlerError is the error a refusal hands to Caddy's error handling (and
// handle_errors): a HandlerError with its status, built once for a static
// refusal so that refusing it allocates nothing.
func (e *authError) handlerError() error {
	if e.boxed != nil {
		return e.boxed
	}
	return e.newHandlerError()
}

// newHandlerError sets the trace itself: caddyhttp.Error would walk the
// stack to find one, on every refused request.
func (e *authError) newHandlerError() error {
	return caddyhttp.HandlerError{Err: e, StatusCode: e.status, Trace: "jwtauth.(*Handler).refuse"}
}

func malformed(desc string) *authError {
	return invalidToken(reasonMalformed, ErrTokenMalformed, desc)
}

func invalidToken(reason string, err error, desc string) *authError {
	return &authError{status: http.StatusUnauthorized, code: "invalid_token", reason: reason, desc: desc, err: err}
}

// reject classifies err as an authError.
func reject(err error) *authError {
	if ae, ok := err.(*authError); ok { // the common case, without errors.As's allocation
		return ae
	}
	if err == ErrTokenMissing {
		return errMissing
	}
	var ae *authError
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, ErrTokenMissing):
		return &authError{status: http.StatusUnauthorized, reason: reasonMissing, desc: "no token", err: err}
	case errors.Is(err, ErrTokenExpired):
		return invalidToken(reasonExpired, err, "token expired")
	case errors.Is(err, ErrTokenMalformed), errors.Is(err, ErrTokenTooLarge):
		return invalidToken(reasonMalformed, err, err.Error())
	case errors.Is(err, ErrInsufficientScope):
		return &authError{status: http.StatusForbidden, code: "insufficient_scope", reason: reasonForbidden, desc: err.Error(), err: err}
	case errors.Is(err, ErrConflictingTokens):
		return &authError{status: http.StatusBadRequest, code: "invalid_request", reason: reasonMalformed, desc: err.Error(), err: err}
	case errors.Is(err, ErrCrossOrigin):
		return &authError{status: http.StatusForbidden, code: "invalid_request", reason: reasonForbidden, desc: err.Error(), err: err}
	}
	return invalidToken(reasonInvalid, err, err.Error())
}

// boxedReason returns reason as an interface value without allocating, for
// the {http.auth.jwt.error} placeholder.
func boxedReason(reason string) any {
	switch reason {
	case reasonMissing:
		return boxedReasons[0]
	case reasonMalformed:
		return boxedReasons[1]
	case reasonInvalid:
		return boxedReasons[2]
	case reasonExpired:
		return boxedReasons[3]
	case reasonForbidden:
		return boxedReasons[4]
	}
	return reason
}

var boxedReasons = [...]any{reasonMissing, reasonMalformed, reasonInvalid, reasonExpired, reasonForbidden}

// wwwAuthenticate renders the RFC 6750 §3 challenge.
func (e *authError) wwwAuthenticate(realm string) string {
	var b strings.Builder
	b.Grow(len(realm) + len(e.code) + len(e.desc) + 48)
	b.WriteString(`Bearer realm="`)
	b.WriteString(quoteEscape(realm))
	b.WriteByte('"')
	if e.code != "" {
		b.WriteString(`, error="`)
		b.WriteString(e.code)
		b.WriteString(`", error_description="`)
		b.WriteString(quoteEscape(e.desc))
		b.WriteByte('"')
	}
	return b.String()
}

// quoteEscape makes s safe inside a quoted-string: RFC 6750 restricts
// error_description to printable ASCII without '"' and '\'.
func quoteEscape(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '\''
		}
	}
	return string(b)
}

// writeJSONError answers an endpoint error as
// {"error": CODE, "error_description": TEXT} (RFC 6749 §5.2 shape).
func writeJSONError(w http.ResponseWriter, status int, code, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
}
