package jwtauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// maxTokenSize bounds a token before any parsing: no legitimate access token
// comes near it, and a bound keeps decoding cost predictable.
const maxTokenSize = 8 << 10

// Validator is a named set of rules a token must satisfy. Validators are
// defined once in the jwtauth app and referenced by name from jwt_auth
// handlers. Every field is checked when Caddy loads the config: a validator
// that cannot be enforced safely stops Caddy from starting.
type Validator struct {
	// Accepted values of the iss claim; the claim must equal one of them
	// exactly. Required, unless IssuerKeys supplies it.
	Issuers []string `json:"issuers,omitempty"`

	// Accepted audiences; the aud claim (a string or an array) must contain
	// at least one. Required, unless IssuerKeys supplies them.
	Audiences []string `json:"audiences,omitempty"`

	// Allow-list of JWS algorithms. The alg in a token's header only
	// selects among these; it never widens them. "none" cannot be listed.
	// Default: derived from the configured keys (HS256/384/512 as far as
	// the secret is long enough; RS*/PS* for RSA; ES256/384/512 by curve;
	// EdDSA for Ed25519; for a remote JWKS, per key from its type and alg).
	Algorithms []string `json:"algorithms,omitempty"`

	// HMAC secret. Supports {env.*} and {file.*} placeholders, which must
	// resolve to a non-empty value. It must be at least 32, 48 or 64 bytes
	// for HS256, HS384 or HS512. Never logged. Default: none.
	Secret string `json:"secret,omitempty"`

	// PEM files with public keys (PKIX, PKCS#1 or a certificate): RSA of
	// at least 2048 bits, EC P-256/384/521 or Ed25519. Default: none.
	PublicKeyFiles []PublicKeyFile `json:"public_key_files,omitempty"`

	// A local JWK Set file, read at load. Default: none.
	JWKSFile string `json:"jwks_file,omitempty"`

	// A remote JWK Set, refreshed in the background. Default: none.
	JWKSURL *RemoteJWKS `json:"jwks_url,omitempty"`

	// Name of a jwt_issuer in this app whose keys, iss and audiences to
	// trust, without any network round trip. Default: none.
	IssuerKeys string `json:"issuer_keys,omitempty"`

	// Clock skew tolerated when checking exp, nbf and iat. Default: 30s.
	Leeway *caddy.Duration `json:"leeway,omitempty"`

	// If set, tokens whose exp minus iat exceeds it are refused, and iat
	// becomes required. Default: no limit.
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`

	// Allow-list for the typ header, compared case-insensitively, with or
	// without an "application/" prefix (RFC 8725 §3.11), e.g. "at+jwt".
	// Default: any typ, or none.
	Types []string `json:"types,omitempty"`

	// Where the user id comes from. Default: the sub claim.
	UserID *UserIDSource `json:"user_id,omitempty"`

	// Where the partner id comes from. Default: no partner id.
	PartnerID *PartnerIDSource `json:"partner_id,omitempty"`

	// Authorization rules: every rule must hold, or the request is refused
	// with 403 insufficient_scope. Default: none.
	Require []ClaimRequirement `json:"require,omitempty"`

	// Ordered token sources. Default: the Authorization header with the
	// Bearer scheme.
	Sources []TokenSource `json:"sources,omitempty"`

	// Cookie mode: after a token is accepted from a header, the verified
	// identity is returned as a signed HttpOnly cookie that authenticates
	// later requests. Default: off.
	Cookie *CookieConfig `json:"cookie,omitempty"`

	// Largest number of verified tokens remembered, so a token that is sent
	// again is not verified again. 0 disables the cache. Default: 10000.
	CacheSize *int `json:"cache_size,omitempty"`

	name      string
	allowed   algSet // union of algorithms any key may verify
	static    *keySet
	remote    *remoteKeys
	remoteKey string // usage pool key
	issuer    localIssuer
	// unavailable answers a token whose revocation the issuer cannot
	// check now (503).
	unavailable *authError
	leeway      time.Duration
	tracked     []string // claims whose duplicates or case-variants are refused
	now         func() time.Time
	logger      *zap.Logger
	cookieKey   *lateKey
	cache       *tokenCache
	counters    resultCounters
	internal    bool // the issuer's own verifier: no metrics
	retry       *retryPolicy // tests: the remote set's retry schedule
	validatorMetrics

	warnedCookieSize atomic.Int64 // unix nanoseconds of the last warning
	warnedCookieHTTP atomic.Int64
	warnedHeaders    sync.Map // headerWarning -> struct{}: header sources a server drops
}

// headerWarning is a header source that a server drops, warned about once.
type headerWarning struct {
	srv    any // the *caddyhttp.Server
	header string
}

// firstHeaderWarning reports whether the header warning for srv and header
// has not been given yet for this validator, and marks it given.
func (v *Validator) firstHeaderWarning(srv any, header string) bool {
	_, given := v.warnedHeaders.LoadOrStore(headerWarning{srv, header}, struct{}{})
	return !given
}

// PublicKeyFile is a PEM public key, optionally with the kid it answers to.
type PublicKeyFile struct {
	// Path of the PEM file. Required.
	Path string `json:"path"`
	// Key ID; tokens whose kid matches use this key. Default: matches any
	// kid.
	KID string `json:"kid,omitempty"`
}

// UserIDSource chooses the user id: from a claim or a fixed value (the OCA
// auth_jwt "static" strategy).
type UserIDSource struct {
	// Claim holding the user id; its string or number value is used.
	// Default: sub.
	Claim string `json:"claim,omitempty"`
	// Fixed user id for every accepted token. Default: none.
	Static string `json:"static,omitempty"`
}

// PartnerIDSource chooses the partner id (OCA partner_id_strategy).
type PartnerIDSource struct {
	// Claim holding the partner id. Required.
	Claim string `json:"claim"`
	// If true, a token without the claim is refused with 401. Default:
	// false.
	Required bool `json:"required,omitempty"`
}

// ClaimRequirement demands that a claim holds one of the values.
type ClaimRequirement struct {
	// Claim name. For scope and scp, a space-delimited string is split.
	// Required.
	Claim string `json:"claim"`
	// Accepted values; a string claim must equal one, an array claim must
	// contain one. At least one is required.
	Values []string `json:"values"`
}

// localIssuer is what a validator bound with issuer_keys needs from a local
// jwt_issuer.
type localIssuer interface {
	// verificationKeys returns the issuer's keys; nil until the issuer
	// has a signing key (it may be generated at start).
	verificationKeys() *keySet
	// signingAlgs is the algorithm the issuer signs with.
	signingAlgs() algSet
	issuerClaim() string
	issuedAudiences() []string
	// revoked tells whether the access tokens of session sid issued at
	// iat (Unix seconds, 0 if absent) are refused at now: revoked (401),
	// unknown (503: the issuer cannot tell yet or now) or not. It is
	// notRevoked for every sid when revoke_access_tokens is off, and
	// never allocates.
	revoked(sid string, iat int64, now time.Time) revocationState
	// revocationRetry is the Retry-After of a revocationUnknown answer.
	revocationRetry() time.Duration
}

// registeredClaims are always guarded against duplicates and case variants;
// sid is included because revocation keys on it.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid"}

// provision prepares v. The owning app calls it.
func (v *Validator) provision(ctx caddy.Context, name string, app *App) error {
	v.name = name
	v.logger = app.logger
	v.now = app.now
	if v.now == nil {
		v.now = time.Now
	}
	v.leeway = 30 * time.Second
	if v.Leeway != nil {
		v.leeway = time.Duration(*v.Leeway)
	}
	if v.UserID == nil {
		v.UserID = &UserIDSource{Claim: "sub"}
	}
	if len(v.Sources) == 0 {
		v.Sources = []TokenSource{{From: "header", Name: "Authorization", Prefix: "Bearer"}}
	}
	for i := range v.Sources {
		v.Sources[i].provision()
	}

	v.tracked = append([]string{}, registeredClaims...)
	if v.UserID.Claim != "" && !contains(v.tracked, v.UserID.Claim) {
		v.tracked = append(v.tracked, v.UserID.Claim)
	}
	if v.PartnerID != nil && !contains(v.tracked, v.PartnerID.Claim) {
		v.tracked = append(v.tracked, v.PartnerID.Claim)
	}
	for _, rq := range v.Require {
		if !contains(v.tracked, rq.Claim) {
			v.tracked = append(v.tracked, rq.Claim)
		}
	}
	if len(v.tracked) > 64 {
		return fmt.Errorf("too many distinct claims configured (%d > 64)", len(v.tracked))
	}

	var configured algSet
	for _, n := range v.Algorithms {
		a := lookupAlg(n)
		if a == nil {
			if strings.EqualFold(n, "none") {
				return fmt.Errorf(`algorithm "none" is never accepted`)
			}
			return fmt.Errorf("unknown algorithm %q", n)
		}
		configured |= 1 << a.bit
	}

	var keys []*verKey
	if v.Secret != "" {
		secret, err := caddy.NewReplacer().ReplaceOrErr(v.Secret, true, true)
		if err != nil {
			return fmt.Errorf("secret: %w", err)
		}
		k, err := newVerKey("", []byte(secret), configured, "", "secret")
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	for _, f := range v.PublicKeyFiles {
		pub, err := loadPEMKey(f.Path)
		if err != nil {
			return fmt.Errorf("public_key_file: %w", err)
		}
		k, err := newVerKey(f.KID, pub, configured, "", "public_key_file "+f.Path)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	if v.JWKSFile != "" {
		raw, err := os.ReadFile(v.JWKSFile)
		if err != nil {
			return fmt.Errorf("jwks_file: %w", err)
		}
		fk, problems, err := parseJWKS(raw, configured, "jwks_file "+v.JWKSFile)
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			return problems[0]
		}
		if len(fk) == 0 {
			return fmt.Errorf("jwks_file %s: no signing key", v.JWKSFile)
		}
		keys = append(keys, fk...)
	}
	for _, k := range keys {
		v.allowed |= k.algs
	}
	if len(keys) > 0 {
		v.static = newKeySet(keys)
	}

	if v.IssuerKeys != "" {
		iss, err := app.localIssuer(v.IssuerKeys)
		if err != nil {
			return fmt.Errorf("issuer_keys: %w", err)
		}
		v.issuer = iss
		v.unavailable = revocationUnavailable(v.IssuerKeys, iss.revocationRetry())
		if len(v.Issuers) == 0 {
			v.Issuers = []string{iss.issuerClaim()}
		}
		if len(v.Audiences) == 0 {
			v.Audiences = iss.issuedAudiences()
		}
		algs := iss.signingAlgs()
		if configured != 0 && algs&configured == 0 {
			return fmt.Errorf("issuer_keys %q signs with %s, which the configured algorithms exclude", v.IssuerKeys, strings.Join(algs.names(), ", "))
		}
		v.allowed |= algs
	}

	if v.JWKSURL != nil {
		cfg := *v.JWKSURL
		cfg.setDefaults()
		if err := cfg.validate(); err != nil {
			return err
		}
		*v.JWKSURL = cfg
		raw, _ := json.Marshal(cfg)
		v.remoteKey = name + "\x00" + string(raw) + "\x00" + fmt.Sprint(configured)
		val, _, err := jwksPool.LoadOrNew(v.remoteKey, func() (caddy.Destructor, error) {
			rk := newRemoteKeys(cfg, configured, name, v.logger, v.now)
			if v.retry != nil {
				rk.retry = *v.retry
			}
			rk.start()
			return rk, nil
		})
		if err != nil {
			return err
		}
		v.remote = val.(*remoteKeys)
		if configured != 0 {
			v.allowed |= configured
		} else {
			v.allowed |= ^algSet(0) &^ familyAlgs(famHMAC)
		}
	}

	if v.static == nil && v.remote == nil && v.issuer == nil {
		return fmt.Errorf("no key: set secret, public_key_file, jwks_file, jwks_url or issuer_keys")
	}
	// every configured algorithm must be verifiable by some key, unless
	// keys arrive later from a remote set
	if configured != 0 && v.remote == nil {
		for _, a := range algorithms {
			if configured.has(a) && !v.allowed.has(a) {
				return fmt.Errorf("algorithm %s is configured but no key can verify it", a.name)
			}
		}
	}
	if len(v.Issuers) == 0 {
		return fmt.Errorf("issuer is required")
	}
	for _, s := range v.Issuers {
		if s == "" {
			return fmt.Errorf("issuer must not be empty")
		}
	}
	if len(v.Audiences) == 0 {
		return fmt.Errorf("audience is required")
	}
	for _, s := range v.Audiences {
		if s == "" {
			return fmt.Errorf("audience must not be empty")
		}
	}
	if v.UserID.Claim == "" && v.UserID.Static == "" {
		return fmt.Errorf("user_id: a claim or a static value is required")
	}
	if v.UserID.Claim != "" && v.UserID.Static != "" {
		return fmt.Errorf("user_id: claim and static are exclusive")
	}
	if v.PartnerID != nil && v.PartnerID.Claim == "" {
		return fmt.Errorf("partner_id: claim is required")
	}
	for _, rq := range v.Require {
		if rq.Claim == "" || len(rq.Values) == 0 {
			return fmt.Errorf("require: a claim and at least one value are required")
		}
	}
	for _, s := range v.Sources {
		if err := s.validate(); err != nil {
			return err
		}
	}
	if v.Cookie != nil {
		if err := v.Cookie.provision(); err != nil {
			return fmt.Errorf("cookie: %w", err)
		}
		v.cookieKey = app.cookieKey
	}
	size := 10000
	if v.CacheSize != nil {
		size = *v.CacheSize
	}
	if size < 0 {
		return fmt.Errorf("cache_size must not be negative")
	}
	if size > 0 {
		v.cache = newTokenCache(size)
	}
	v.provisionMetrics(name, app)
	return nil
}

// cleanup releases the shared remote key set.
func (v *Validator) cleanup() {
	if v.remote != nil {
		_, _ = jwksPool.Delete(v.remoteKey)
		v.remote = nil
	}
}

// identity is a verified token (or identity cookie). It is immutable once
// built, so it can be shared by the cache and concurrent requests.
type identity struct {
	v          *Validator
	token      string     // the exact token; empty for a cookie
	payloadB64 string     // the token's payload segment
	payload    jsonObject // its decoded JSON
	exp        time.Time
	iat        int64 // Unix seconds; 0 without iat
	userID     string
	partnerID  string
	sid        string
	key        *verKey // the key that verified it; nil for a cookie
	gen        uint64  // remote key generation at verification
}

// claim returns a claim rendered as a string.
func (id *identity) claim(name string) (string, bool) {
	raw, ok := id.payload.get(name)
	if !ok {
		return "", false
	}
	return claimString(raw), true
}

var b64 = base64.RawURLEncoding.Strict()

// header holds what we read from a JOSE header.
type header struct {
	alg *algInfo
	kid []byte // points into the decoded header, which is never reused
}

// jwsChars is the alphabet of a compact JWS: base64url and the dots. A table
// lookup per byte is several times faster than the equivalent comparisons.
var jwsChars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") {
		t[c] = true
	}
	return t
}()

// verify checks a token and returns the identity it carries. It never
// consults the token for anything but the kid and an alg that must already be
// allowed: cheap structural and claim checks run first, so an expired or
// foreign token never costs a key lookup, a JWKS fetch or a signature check.
func (v *Validator) verify(tok string) (*identity, error) {
	return v.verifyAt(context.Background(), tok, v.now())
}

// verifyCtx is verify for a request: a JWKS refresh for an unknown kid is
// waited for only while ctx lasts.
func (v *Validator) verifyCtx(ctx context.Context, tok string) (*identity, error) {
	return v.verifyAt(ctx, tok, v.now())
}

// verifyAt is verifyCtx at the time now.
func (v *Validator) verifyAt(ctx context.Context, tok string, now time.Time) (_ *identity, err error) {
	if len(tok) > maxTokenSize {
		return nil, ErrTokenTooLarge
	}
	var th uint64 // the token's cache hash, computed once
	if v.cache != nil {
		th = v.cache.hash(tok)
		if id := v.cache.getH(th, tok); id != nil {
			err := v.stillValid(id, now)
			if err == nil {
				return id, nil
			}
			if v.issuer != nil && err == error(v.unavailable) {
				return nil, err // still cached for when the issuer can tell again
			}
			v.cache.removeH(th, tok)
		}
		// The negative cache: a refusal that neither passing time nor
		// the same keys can turn into an acceptance is remembered, so a
		// repeated bad token is refused without being parsed again.
		gen := v.keyGeneration()
		if err := v.cache.refusedH(th, tok, gen); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				v.cache.rememberRefusalH(th, tok, gen, err, v.issuer != nil)
			}
		}()
	}
	d1 := strings.IndexByte(tok, '.')
	if d1 < 0 {
		return nil, malformed("not a compact JWS")
	}
	d2 := strings.IndexByte(tok[d1+1:], '.')
	if d2 < 0 {
		return nil, malformed("not a compact JWS")
	}
	d2 += d1 + 1
	if strings.IndexByte(tok[d2+1:], '.') >= 0 {
		return nil, malformed("not a compact JWS: too many segments")
	}
	for i := 0; i < len(tok); i++ {
		if !jwsChars[tok[i]] {
			return nil, malformed("token is not base64url")
		}
	}

	// The header and the signature share one short-lived buffer, sized
	// exactly (stack arrays would escape through parseHeader and Verify);
	// the payload gets its own, as the identity keeps it.
	buf := make([]byte, b64.DecodedLen(d1)+b64.DecodedLen(len(tok)-d2-1))
	hdr, err := decodeSegment(buf, tok[:d1])
	if err != nil {
		return nil, malformed("header is not strict base64url")
	}
	h, err := v.parseHeader(hdr)
	if err != nil {
		return nil, err
	}

	payload, err := b64.DecodeString(tok[d1+1 : d2])
	if err != nil {
		return nil, malformed("payload is not strict base64url")
	}
	id := &identity{v: v, token: tok, payloadB64: tok[d1+1 : d2], payload: payload}
	if err := v.checkClaims(id, now); err != nil {
		return nil, err
	}

	sig, err := decodeSegment(buf[len(hdr):], tok[d2+1:])
	if err != nil {
		return nil, malformed("signature is not strict base64url")
	}
	key, gen, err := v.findKeyAndVerify(ctx, h, tok[:d2], sig)
	if err != nil {
		return nil, err
	}
	id.key, id.gen = key, gen
	if err := v.checkIdentity(id, now); err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.putH(th, id)
	}
	return id, nil
}

func malformed(desc string) error {
	return invalidToken(reasonMalformed, ErrTokenMalformed, desc)
}

func decodeSegment(buf []byte, seg string) ([]byte, error) {
	if b64.DecodedLen(len(seg)) > len(buf) {
		return b64.DecodeString(seg)
	}
	n, err := b64.Decode(buf, []byte(seg))
	return buf[:n], err
}

// parseHeader reads alg and kid, refusing crit, duplicated or case-colliding
// members, an alg outside the allow-list and an unexpected typ. jku, x5u, jwk
// and x5c are ignored: keys come only from configuration.
func (v *Validator) parseHeader(raw []byte) (header, error) {
	var h header
	if !json.Valid(raw) {
		return h, malformed("header is not JSON")
	}
	var alg, typ []byte
	var seen uint8
	var bad string
	err := jsonObject(raw).each(func(k, val []byte) bool {
		name := rawKey(k)
		for i, want := range [...]string{"alg", "kid", "typ", "crit"} {
			if string(name) == want {
				if seen&(1<<i) != 0 {
					bad = "duplicate " + want + " header"
					return false
				}
				seen |= 1 << i
				switch i {
				case 0:
					alg = val
				case 1:
					if len(val) < 2 || val[0] != '"' {
						bad = "kid is not a string"
						return false
					}
					h.kid = rawKey(val) // a string value decodes like a key
				case 2:
					typ = val
				case 3:
					bad = "crit header is not supported"
					return false
				}
			} else if strings.EqualFold(string(name), want) {
				bad = "header " + string(name) + " collides with " + want
				return false
			}
		}
		return true
	})
	if err != nil {
		return h, malformed("header is not a JSON object")
	}
	if bad != "" {
		return h, malformed(bad)
	}
	if len(alg) < 2 || alg[0] != '"' {
		return h, malformed("alg missing")
	}
	h.alg = lookupAlgRaw(alg)
	if h.alg == nil || !v.allowed.has(h.alg) {
		return h, invalidToken(reasonInvalid, ErrTokenUnverifiable, "algorithm not allowed")
	}
	if len(v.Types) > 0 {
		t, ok := decodeString(typ)
		if !ok || !typeAllowed(v.Types, t) {
			return h, invalidToken(reasonInvalid, ErrTokenUnverifiable, "typ not allowed")
		}
	}
	return h, nil
}

func typeAllowed(allowed []string, t string) bool {
	t = strings.TrimPrefix(strings.ToLower(t), "application/")
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimPrefix(strings.ToLower(a), "application/"), t) {
			return true
		}
	}
	return false
}

// checkClaims validates the payload before any key is touched: structure,
// duplicates, exp/nbf/iat, iss and aud. It fills id.exp and id.sid.
func (v *Validator) checkClaims(id *identity, now time.Time) error {
	if !json.Valid(id.payload) {
		return malformed("payload is not JSON")
	}
	var exp, nbf, iat, iss, aud, sid []byte
	var seen uint64
	var bad string
	err := id.payload.each(func(k, val []byte) bool {
		name := rawKey(k)
		for i, want := range v.tracked {
			if string(name) == want {
				if seen&(1<<i) != 0 {
					bad = "duplicate " + want + " claim"
					return false
				}
				seen |= 1 << i
			} else if strings.EqualFold(string(name), want) {
				bad = "claim " + string(name) + " collides with " + want
				return false
			}
		}
		switch string(name) {
		case "exp":
			exp = val
		case "nbf":
			nbf = val
		case "iat":
			iat = val
		case "iss":
			iss = val
		case "aud":
			aud = val
		case "sid":
			sid = val
		}
		return true
	})
	if err != nil {
		return malformed("payload is not a JSON object")
	}
	if bad != "" {
		return malformed(bad)
	}

	if exp == nil {
		return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "exp claim required")
	}
	expF, err := numericDateClaim(exp, "exp")
	if err != nil {
		return err
	}
	id.exp = numericDate(expF)
	if !now.Before(id.exp.Add(v.leeway)) {
		return invalidToken(reasonExpired, ErrTokenExpired, "token expired")
	}
	if nbf != nil {
		f, err := numericDateClaim(nbf, "nbf")
		if err != nil {
			return err
		}
		if now.Add(v.leeway).Before(numericDate(f)) {
			return invalidToken(reasonInvalid, ErrTokenNotValidYet, "token not valid yet")
		}
	}
	if iat != nil {
		f, err := numericDateClaim(iat, "iat")
		if err != nil {
			return err
		}
		issued := numericDate(f)
		id.iat = issued.Unix()
		if now.Add(v.leeway).Before(issued) {
			return invalidToken(reasonInvalid, ErrTokenUsedBeforeIAT, "token used before issued")
		}
		if v.MaxLifetime > 0 && id.exp.Sub(issued) > time.Duration(v.MaxLifetime) {
			return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "token lifetime exceeds max_lifetime")
		}
	} else if v.MaxLifetime > 0 {
		return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "iat claim required by max_lifetime")
	}
	if !stringIn(iss, v.Issuers) {
		return invalidToken(reasonInvalid, ErrInvalidIssuer, "issuer not accepted")
	}
	if aud != nil && !stringOrStrings(aud) {
		return invalidToken(reasonInvalid, ErrInvalidAudience, "aud must be a string or an array of strings")
	}
	if aud == nil || !claimHas(aud, false, v.Audiences) {
		return invalidToken(reasonInvalid, ErrInvalidAudience, "audience not accepted")
	}
	if sid != nil {
		id.sid, _ = decodeString(sid)
	}
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z. No real token is dated beyond it,
// and refusing it keeps every accepted date exact in a time.Time.
const maxNumericDate = 253402300799

// numericDateClaim reads the exp, nbf or iat claim raw: a JSON number from 0
// to maxNumericDate. A negative, non-finite or absurdly large date is
// refused, not clamped: it can only come from a broken or hostile issuer.
func numericDateClaim(raw []byte, name string) (float64, error) {
	f, ok := decodeNumber(raw)
	if !ok {
		return 0, invalidToken(reasonInvalid, ErrTokenInvalidClaims, name+" is not a number")
	}
	if !(f >= 0 && f <= maxNumericDate) { // also false for NaN
		return 0, invalidToken(reasonInvalid, ErrTokenInvalidClaims, name+" out of range")
	}
	return f, nil
}

// numericDate converts seconds since the epoch, clamping absurd values.
func numericDate(f float64) time.Time {
	if f > 1e12 || math.IsNaN(f) {
		f = 1e12
	}
	if f < -1e12 {
		f = -1e12
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// findKeyAndVerify checks the signature with the configured keys that may
// verify h.alg, refreshing a remote set once (rate limited) for an unknown
// kid. A token without a kid is refused when the remote set holds more than
// one key for its algorithm: trying each would let one forged token cost N
// signature checks.
func (v *Validator) findKeyAndVerify(ctx context.Context, h header, signingInput string, sig []byte) (*verKey, uint64, error) {
	tried := false
	try := func(ks *keySet) (*verKey, error) {
		for _, k := range ks.candidates(string(h.kid)) {
			if !k.algs.has(h.alg) {
				continue
			}
			tried = true
			if err := h.alg.method.Verify(signingInput, sig, k.key); err == nil {
				return k, nil
			}
		}
		return nil, nil
	}
	if k, _ := try(v.static); k != nil {
		return k, 0, nil
	}
	if v.issuer != nil {
		if k, _ := try(v.issuer.verificationKeys()); k != nil {
			return k, 0, nil
		}
	}
	if v.remote != nil {
		gen := v.remote.generation.Load()
		ks := v.remote.current()
		if len(h.kid) == 0 && ks.keysFor(h.alg) > 1 {
			return nil, 0, errKIDRequired
		}
		if k, _ := try(ks); k != nil {
			return k, gen, nil
		}
		// an unknown kid, or no usable keys at all (the endpoint was down
		// at start-up or is past max_stale): one rate-limited refresh
		if !tried && (len(h.kid) > 0 || ks == nil) && v.remote.refreshForUnknownKID(ctx, gen) {
			gen = v.remote.generation.Load()
			ks = v.remote.current()
			if len(h.kid) == 0 && ks.keysFor(h.alg) > 1 {
				return nil, 0, errKIDRequired
			}
			if k, _ := try(ks); k != nil {
				return k, gen, nil
			}
		}
	}
	if !tried {
		return nil, 0, invalidToken(reasonInvalid, ErrTokenUnverifiable, "no key for this kid and alg")
	}
	return nil, 0, invalidToken(reasonInvalid, ErrTokenSignature, "signature invalid")
}

// errKIDRequired refuses a kid-less token that several keys of a remote set
// could have signed.
var errKIDRequired = invalidToken(reasonInvalid, ErrTokenUnverifiable, "kid required")

// checkIdentity resolves user and partner ids and the revocation list.
func (v *Validator) checkIdentity(id *identity, now time.Time) error {
	if v.UserID.Static != "" {
		id.userID = v.UserID.Static
	} else {
		raw, ok := id.payload.get(v.UserID.Claim)
		if !ok || !isScalar(raw) {
			return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "token has no usable "+v.UserID.Claim+" claim")
		}
		id.userID = claimString(raw)
		if id.userID == "" {
			return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "empty "+v.UserID.Claim+" claim")
		}
	}
	if v.PartnerID != nil {
		raw, ok := id.payload.get(v.PartnerID.Claim)
		if ok && isScalar(raw) {
			id.partnerID = claimString(raw)
		}
		if id.partnerID == "" && v.PartnerID.Required {
			return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "token has no "+v.PartnerID.Claim+" claim")
		}
	}
	if v.issuer != nil && id.sid != "" {
		return v.checkRevoked(id, now)
	}
	return nil
}

// errRevoked and the unavailable answer are built once: the hot path
// refuses without allocating.
var errRevoked = invalidToken(reasonInvalid, ErrRevoked, "token revoked")

// revocationUnavailable is the answer to a token whose revocation issuer
// cannot check now: 503 with Retry-After, never 401, never a pass.
func revocationUnavailable(issuer string, retry time.Duration) *authError {
	return &authError{
		status: http.StatusServiceUnavailable, code: "temporarily_unavailable", reason: reasonUnavailable,
		desc: "the revocation list of issuer " + issuer + " is not available; retry later",
		err:  ErrRevocationUnavailable, retryAfter: retry,
	}
}

// checkRevoked asks the bound issuer about the token's session.
func (v *Validator) checkRevoked(id *identity, now time.Time) error {
	switch v.issuer.revoked(id.sid, id.iat, now) {
	case sessionRevoked:
		return errRevoked
	case revocationUnknown:
		return v.unavailable
	}
	return nil
}

func isScalar(raw []byte) bool {
	return len(raw) > 0 && raw[0] != '{' && raw[0] != '[' && string(raw) != "null" && string(raw) != "true" && string(raw) != "false"
}

// authorize applies the require rules.
func (v *Validator) authorize(id *identity) error {
	for _, rq := range v.Require {
		raw, ok := id.payload.get(rq.Claim)
		if !ok || !claimHas(raw, rq.Claim == "scope" || rq.Claim == "scp", rq.Values) {
			return &authError{
				status: 403, code: "insufficient_scope", reason: reasonForbidden,
				desc: "claim " + rq.Claim + " lacks a required value", err: ErrInsufficientScope,
			}
		}
	}
	return nil
}

// stillValid re-checks a cached identity: its exp (with leeway), that its
// key is still published, and that its session is not revoked. Keys from a
// remote JWKS (withdrawn, or all of them past max_stale) or from a local
// issuer can go away; configured keys cannot.
func (v *Validator) stillValid(id *identity, now time.Time) error {
	if !now.Before(id.exp.Add(v.leeway)) {
		return ErrTokenExpired
	}
	if k := id.key; k != nil && (v.remote != nil || v.issuer != nil) && !v.static.contains(k) {
		published := v.issuer != nil && v.issuer.verificationKeys().contains(k)
		if !published && v.remote != nil {
			published = v.remote.current().contains(k)
		}
		if !published {
			return ErrTokenUnverifiable
		}
	}
	if v.issuer != nil && id.sid != "" {
		return v.checkRevoked(id, now)
	}
	return nil
}
