package jwtauth

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// This file is the verification pipeline, top-down: the cached entry point
// (verifyCtx) and the negative-cache policy, the uncached verification
// (verifyUncached), the registered claims (one function each), the
// signature, and the identity. The strict JOSE and JSON reading it relies on
// (the compact form and the header, the JSON scanner) is in jose.go and
// claims.go, the keys and algorithms in keys.go.

// maxTokenSize bounds a token before any parsing: no legitimate access token
// comes near it, and a bound keeps decoding cost predictable.
const maxTokenSize = 8 << 10

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

// verify checks a token and returns the identity it carries. It never
// consults the token for anything but the kid and an alg that must already be
// allowed: cheap structural and claim checks run first, so an expired or
// foreign token never costs a key lookup, a JWKS fetch or a signature check.
func (v *Validator) verify(tok string) (*identity, error) {
	return v.verifyCtx(context.Background(), tok)
}

// verifyCtx is verify for a request: a JWKS refresh for an unknown kid is
// waited for only while ctx lasts. It is the token cache around
// verifyUncached: a cached identity is re-checked (stillValid) instead of
// verified again, and a refusal that cannot heal is remembered.
func (v *Validator) verifyCtx(ctx context.Context, tok string) (*identity, error) {
	return v.verifyAt(ctx, tok, time.Time{})
}

// verifyAt is verifyCtx at the time now: the caller's clock reading when
// it has one (the handler's timing reads the clock once), or the zero time
// for the validator's clock, read only when needed: a remembered refusal
// is answered without it.
func (v *Validator) verifyAt(ctx context.Context, tok string, now time.Time) (*identity, error) {
	if len(tok) > maxTokenSize {
		return nil, ErrTokenTooLarge
	}
	if v.cache == nil {
		return v.verifyUncached(ctx, tok, v.orNow(now))
	}
	k := v.cache.key(tok)
	// The negative cache: a refusal that neither passing time nor the
	// same keys can turn into an acceptance is remembered, so a repeated
	// bad token is refused without being parsed again. Such a token is
	// never in the positive cache as well: it would have been refused.
	gen := v.keyGeneration()
	if err := v.cache.refused(k, gen); err != nil {
		return nil, err
	}
	now = v.orNow(now)
	if id := v.cache.get(k); id != nil {
		err := v.stillValid(id, now)
		if err == nil {
			return id, nil
		}
		if v.issuer != nil && err == error(v.unavailable) {
			return nil, err // still cached for when the issuer can tell again
		}
		v.cache.remove(k)
	}
	id, err := v.verifyUncached(ctx, tok, now)
	if err != nil {
		if v.lastingRefusal(err) {
			v.cache.putRefused(k, gen, err)
		}
		return nil, err
	}
	v.cache.put(k, id)
	return id, nil
}

// orNow is now, or the validator's clock when now is the zero time.
func (v *Validator) orNow(now time.Time) time.Time {
	if now.IsZero() {
		return v.now()
	}
	return now
}

// keyGeneration identifies the current remote key set (0 without one), so
// refusals remembered under other keys are not used.
func (v *Validator) keyGeneration() uint64 {
	if v.remote == nil {
		return 0
	}
	return v.remote.generation.Load()
}

// lastingRefusal reports whether a refusal cannot change while the keys stay
// the same and time moves forward, so the negative cache may remember it: a
// malformed token, a wrong iss or aud, a missing claim, an expired token
// (expiry only gets truer), a bad signature. A token that is not valid yet
// (nbf, iat), one that is unverifiable (an unknown kid, whose key a refresh
// may bring, or an alg or typ outside the allow-list), a revoked session and
// an unavailable revocation list are not lasting; nor is a bad signature against a local issuer, whose keys
// carry no generation.
func (v *Validator) lastingRefusal(err error) bool {
	ae, ok := err.(*authError)
	if !ok {
		return false
	}
	switch ae.err {
	case ErrTokenNotValidYet, ErrTokenUsedBeforeIAT, ErrTokenUnverifiable, ErrRevoked, ErrRevocationUnavailable:
		return false
	case ErrTokenSignature:
		return v.issuer == nil
	}
	return true
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
	return v.checkRevoked(id, now)
}

// verifyUncached checks a token without the cache: structure, header,
// claims, signature, identity, in that order.
func (v *Validator) verifyUncached(ctx context.Context, tok string, now time.Time) (*identity, error) {
	d1, d2, err := splitJWS(tok)
	if err != nil {
		return nil, err
	}
	// The header and the signature share one short-lived buffer, sized
	// exactly (stack arrays would escape through parseHeader and Verify);
	// the payload gets its own, as the identity keeps it.
	buf := make([]byte, b64.DecodedLen(d1)+b64.DecodedLen(len(tok)-d2-1))
	hdr, err := decodeSegment(buf, tok[:d1])
	if err != nil {
		return nil, errHeaderB64
	}
	h, err := v.parseHeader(hdr)
	if err != nil {
		return nil, err
	}

	payload, err := b64.DecodeString(tok[d1+1 : d2])
	if err != nil {
		return nil, errPayloadB64
	}
	id := &identity{v: v, token: tok, payloadB64: tok[d1+1 : d2], payload: payload}
	c, err := v.checkClaims(id, now)
	if err != nil {
		return nil, err
	}

	sig, err := decodeSegment(buf[len(hdr):], tok[d2+1:])
	if err != nil {
		return nil, errSignatureB64
	}
	key, gen, err := v.findKeyAndVerify(ctx, h, tok[:d2], sig)
	if err != nil {
		return nil, err
	}
	id.key, id.gen = key, gen
	if err := v.checkIdentity(id, &c, now); err != nil {
		return nil, err
	}
	return id, nil
}

// registered holds the raw values the checks read, found in one pass: the
// registered claims and the user and partner id claims.
type registered struct {
	exp, nbf, iat, iss, aud, sid []byte
	user, partner                []byte
}

// set records the value of the tracked claim at index i.
func (c *registered) set(v *Validator, i int, val []byte) {
	switch i {
	case claimISS:
		c.iss = val
	case claimAUD:
		c.aud = val
	case claimEXP:
		c.exp = val
	case claimNBF:
		c.nbf = val
	case claimIAT:
		c.iat = val
	case claimSID:
		c.sid = val
	}
	if i == v.userClaim {
		c.user = val
	}
	if i == v.partnerClaim {
		c.partner = val
	}
}

// checkClaims validates the payload before any key is touched: structure,
// duplicates, then each registered claim (exp, nbf, iat, iss, aud). It
// fills id.exp and id.sid, and returns the claim values checkIdentity needs.
func (v *Validator) checkClaims(id *identity, now time.Time) (registered, error) {
	if !validJSON(id.payload) {
		return registered{}, errPayloadNotJSON
	}
	c, err := v.scanClaims(id.payload)
	if err != nil {
		return c, err
	}
	if err := v.verifyExpiresAt(id, c.exp, now); err != nil {
		return c, err
	}
	if err := v.verifyNotBefore(c.nbf, now); err != nil {
		return c, err
	}
	if err := v.verifyIssuedAt(id, c.iat, now); err != nil {
		return c, err
	}
	if err := v.verifyIssuer(c.iss); err != nil {
		return c, err
	}
	if err := v.verifyAudience(c.aud); err != nil {
		return c, err
	}
	if c.sid != nil {
		id.sid, _ = decodeString(c.sid)
	}
	return c, nil
}

// maxFoldedName bounds the claim names scanClaims folds on the stack.
const maxFoldedName = 64

// scanClaims reads the tracked claims in one pass over the payload,
// refusing a duplicate of any of them and a name that differs from one
// only in case (strings.EqualFold).
func (v *Validator) scanClaims(payload jsonObject) (registered, error) {
	var c registered
	var seen uint64
	var bad string
	mark := func(i int, val []byte) bool {
		if seen&(1<<i) != 0 {
			bad = "duplicate " + v.tracked[i] + " claim"
			return false
		}
		seen |= 1 << i
		c.set(v, i, val)
		return true
	}
	err := payload.each(func(k, val []byte) bool {
		name := rawKey(k)
		if i, exact, ok := v.foldedClaim(name); ok {
			if i >= 0 && !exact {
				bad = "claim " + string(name) + " collides with " + v.tracked[i]
				return false
			}
			return i < 0 || mark(i, val)
		}
		for i, want := range v.tracked {
			if string(name) == want {
				if !mark(i, val) {
					return false
				}
			} else if strings.EqualFold(string(name), want) {
				bad = "claim " + string(name) + " collides with " + want
				return false
			}
		}
		return true
	})
	if err != nil {
		return c, errPayloadNotObject
	}
	if bad != "" {
		return c, malformed(bad)
	}
	return c, nil
}

// foldedClaim is the fast path of scanClaims. When every tracked name is
// ASCII and they differ pairwise in more than case (trackedFold), an ASCII
// name can equal at most one of them, exactly or case-insensitively, and
// comparing lower-case forms finds it: i is its index, or -1. ok is false
// when the fast path does not apply.
func (v *Validator) foldedClaim(name []byte) (i int, exact, ok bool) {
	if v.trackedFold == nil || len(name) > maxFoldedName {
		return 0, false, false
	}
	var buf [maxFoldedName]byte
	lower, ok := asciiLower(buf[:len(name)], name)
	if !ok {
		return 0, false, false
	}
	for i, want := range v.trackedFold {
		if string(lower) == want {
			return i, string(name) == v.tracked[i], true
		}
	}
	return -1, false, true
}

// asciiLower writes the lower-case form of an ASCII name into dst (of the
// same length); ok is false if name holds a byte outside ASCII.
func asciiLower(dst, name []byte) (_ []byte, ok bool) {
	for i, b := range name {
		if b >= 0x80 {
			return nil, false
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst[i] = b
	}
	return dst, true
}

// verifyExpiresAt requires exp and refuses a token past it (with leeway).
// It sets id.exp.
func (v *Validator) verifyExpiresAt(id *identity, exp []byte, now time.Time) error {
	if exp == nil {
		return errExpRequired
	}
	f, err := numericDateClaim(exp, "exp")
	if err != nil {
		return err
	}
	id.exp = numericDate(f)
	if !now.Before(id.exp.Add(v.leeway)) {
		return errExpired
	}
	return nil
}

// verifyNotBefore refuses a token used before its nbf (with leeway).
func (v *Validator) verifyNotBefore(nbf []byte, now time.Time) error {
	if nbf == nil {
		return nil
	}
	f, err := numericDateClaim(nbf, "nbf")
	if err != nil {
		return err
	}
	if now.Add(v.leeway).Before(numericDate(f)) {
		return errNotValidYet
	}
	return nil
}

// verifyIssuedAt refuses a token used before its iat (with leeway) and,
// under max_lifetime, one without iat or living longer. It needs id.exp.
func (v *Validator) verifyIssuedAt(id *identity, iat []byte, now time.Time) error {
	if iat == nil {
		if v.MaxLifetime > 0 {
			return errIATRequired
		}
		return nil
	}
	f, err := numericDateClaim(iat, "iat")
	if err != nil {
		return err
	}
	issued := numericDate(f)
	id.iat = issued.Unix()
	if now.Add(v.leeway).Before(issued) {
		return errUsedBeforeIAT
	}
	if v.MaxLifetime > 0 && id.exp.Sub(issued) > time.Duration(v.MaxLifetime) {
		return errLifetime
	}
	return nil
}

// verifyIssuer requires iss to equal one of the accepted issuers exactly.
func (v *Validator) verifyIssuer(iss []byte) error {
	if !stringIn(iss, v.Issuers) {
		return errIssuer
	}
	return nil
}

// verifyAudience requires aud, a string or an array of strings, to hold one
// of the accepted audiences.
func (v *Validator) verifyAudience(aud []byte) error {
	if aud != nil && !stringOrStrings(aud) {
		return errAudienceType
	}
	if aud == nil || !claimHas(aud, false, v.Audiences) {
		return errAudience
	}
	return nil
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
			if k.verify(h.alg, signingInput, sig) {
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
		v.remote.start() // a no-op once the app started it
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
		return nil, 0, errNoKey
	}
	return nil, 0, errSignature
}

// checkIdentity resolves the user and partner ids from the claim values
// checkClaims found, and checks revocation.
func (v *Validator) checkIdentity(id *identity, c *registered, now time.Time) error {
	if err := v.resolveUserID(id, c.user); err != nil {
		return err
	}
	if err := v.resolvePartnerID(id, c.partner); err != nil {
		return err
	}
	return v.checkRevoked(id, now)
}

// resolveUserID sets id.userID from the configured static value or the
// user id claim's raw value (nil when absent).
func (v *Validator) resolveUserID(id *identity, raw []byte) error {
	if v.UserID.Static != "" {
		id.userID = v.UserID.Static
		return nil
	}
	if raw == nil || !isScalar(raw) {
		return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "token has no usable "+v.UserID.Claim+" claim")
	}
	id.userID = claimString(raw)
	if id.userID == "" {
		return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "empty "+v.UserID.Claim+" claim")
	}
	return nil
}

// resolvePartnerID sets id.partnerID from the partner claim's raw value
// (nil when absent), when a partner claim is configured.
func (v *Validator) resolvePartnerID(id *identity, raw []byte) error {
	if v.PartnerID == nil {
		return nil
	}
	if raw != nil && isScalar(raw) {
		id.partnerID = claimString(raw)
	}
	if id.partnerID == "" && v.PartnerID.Required {
		return invalidToken(reasonInvalid, ErrTokenInvalidClaims, "token has no "+v.PartnerID.Claim+" claim")
	}
	return nil
}

// checkRevoked asks the bound issuer about the token's session. It is the
// one place the pipeline asks about revocation, for a fresh token and for a
// cache hit alike.
func (v *Validator) checkRevoked(id *identity, now time.Time) error {
	if v.issuer == nil || id.sid == "" {
		return nil
	}
	switch v.issuer.revoked(id.sid, id.iat, now) {
	case sessionRevoked:
		return errRevoked
	case revocationUnknown:
		return v.unavailable
	}
	return nil
}

// revocationUnavailable is the answer to a token whose revocation issuer
// cannot check now: 503 with Retry-After, never 401, never a pass.
func revocationUnavailable(issuer string, retry time.Duration) *authError {
	return &authError{
		status: http.StatusServiceUnavailable, code: "temporarily_unavailable", reason: reasonUnavailable,
		desc: "the revocation list of issuer " + issuer + " is not available; retry later",
		err:  ErrRevocationUnavailable, retryAfter: retry,
	}
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
