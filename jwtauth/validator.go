package jwtauth

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

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
	// trackedFold is tracked in lower case, or nil (see trackedClaim)
	trackedFold  []string
	userClaim    int // index in tracked of the user id claim, or -1
	partnerClaim int // index in tracked of the partner id claim, or -1
	now          func() time.Time
	logger       *zap.Logger
	cookieKey    *lateKey
	cache        *tokenCache
	counters     resultCounters
	internal     bool         // the issuer's own verifier: no metrics
	retry        *retryPolicy // tests: the remote set's retry schedule
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

// registeredClaims are always guarded against duplicates and case variants;
// sid is included because revocation keys on it. They are the first tracked
// claims, at these indexes.
var registeredClaims = []string{
	claimISS: "iss", claimSUB: "sub", claimAUD: "aud", claimEXP: "exp",
	claimNBF: "nbf", claimIAT: "iat", claimJTI: "jti", claimSID: "sid",
}

const (
	claimISS = iota
	claimSUB
	claimAUD
	claimEXP
	claimNBF
	claimIAT
	claimJTI
	claimSID
)

// provision prepares v. The owning app calls it. Like Issuer's, it runs in
// three steps: defaults, then the key sources (which may fill iss and aud
// from a local issuer), then the checks of the rules, and last the runtime
// state (cookie, cache, counters).
func (v *Validator) provision(ctx caddy.Context, name string, app *App) error {
	if err := v.setDefaults(name, app); err != nil {
		return err
	}
	if err := v.provisionKeys(app); err != nil {
		return err
	}
	if err := v.checkRules(); err != nil {
		return err
	}
	return v.provisionState(app)
}

// setDefaults fills what the config leaves out and lists the claims whose
// duplicates or case variants are refused.
func (v *Validator) setDefaults(name string, app *App) error {
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
	v.tracked = slices.Clone(registeredClaims)
	track := func(c string) {
		if c != "" && !slices.Contains(v.tracked, c) {
			v.tracked = append(v.tracked, c)
		}
	}
	track(v.UserID.Claim)
	if v.PartnerID != nil {
		track(v.PartnerID.Claim)
	}
	for _, rq := range v.Require {
		track(rq.Claim)
	}
	if len(v.tracked) > 64 {
		return fmt.Errorf("too many distinct claims configured (%d > 64)", len(v.tracked))
	}
	v.userClaim = slices.Index(v.tracked, v.UserID.Claim) // -1 for a static user id
	v.partnerClaim = -1
	if v.PartnerID != nil {
		v.partnerClaim = slices.Index(v.tracked, v.PartnerID.Claim)
	}
	v.trackedFold = foldedNames(v.tracked)
	return nil
}

// foldedNames returns the lower-case forms of names, or nil unless every
// name is ASCII, of at most maxFoldedName bytes, and unique in that form.
func foldedNames(names []string) []string {
	folded := make([]string, len(names))
	for i, n := range names {
		lower, ok := asciiLower(make([]byte, len(n)), []byte(n))
		if !ok || len(n) > maxFoldedName || slices.Contains(folded[:i], string(lower)) {
			return nil
		}
		folded[i] = string(lower)
	}
	return folded
}

// provisionKeys resolves the configured algorithms and loads every key
// source: the static keys (secret, public_key_file, jwks_file), a local
// issuer's keys and a remote JWKS, and checks that every configured
// algorithm can be verified.
func (v *Validator) provisionKeys(app *App) error {
	configured, err := configuredAlgs(v.Algorithms)
	if err != nil {
		return err
	}
	keys, err := v.staticKeys(configured)
	if err != nil {
		return err
	}
	for _, k := range keys {
		v.allowed |= k.algs
	}
	if len(keys) > 0 {
		v.static = newKeySet(keys)
	}
	if v.IssuerKeys != "" {
		if err := v.bindIssuer(app, configured); err != nil {
			return err
		}
	}
	if v.JWKSURL != nil {
		if err := v.bindRemote(configured); err != nil {
			return err
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
	return nil
}

// configuredAlgs turns the algorithms option into a set; "none" and unknown
// names are refused.
func configuredAlgs(names []string) (algSet, error) {
	var configured algSet
	for _, n := range names {
		a := lookupAlg(n)
		if a == nil {
			if strings.EqualFold(n, "none") {
				return 0, fmt.Errorf(`algorithm "none" is never accepted`)
			}
			return 0, fmt.Errorf("unknown algorithm %q", n)
		}
		configured |= 1 << a.bit
	}
	return configured, nil
}

// staticKeys loads the keys that never change while the config runs: the
// secret, the PEM files and the JWKS file.
func (v *Validator) staticKeys(configured algSet) ([]*verKey, error) {
	var keys []*verKey
	if v.Secret != "" {
		secret, err := caddy.NewReplacer().ReplaceOrErr(v.Secret, true, true)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		k, err := newVerKey("", []byte(secret), configured, "", "secret")
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	for _, f := range v.PublicKeyFiles {
		pub, err := loadPEMKey(f.Path)
		if err != nil {
			return nil, fmt.Errorf("public_key_file: %w", err)
		}
		k, err := newVerKey(f.KID, pub, configured, "", "public_key_file "+f.Path)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if v.JWKSFile != "" {
		raw, err := os.ReadFile(v.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
		fk, problems, err := parseJWKS(raw, configured, "jwks_file "+v.JWKSFile)
		if err != nil {
			return nil, err
		}
		if len(problems) > 0 {
			return nil, problems[0]
		}
		if len(fk) == 0 {
			return nil, fmt.Errorf("jwks_file %s: no signing key", v.JWKSFile)
		}
		keys = append(keys, fk...)
	}
	return keys, nil
}

// bindIssuer trusts the local issuer named by issuer_keys: its keys, and
// its iss and audiences unless the config names them.
func (v *Validator) bindIssuer(app *App, configured algSet) error {
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
	return nil
}

// bindRemote shares the remote JWKS of identical configs through jwksPool.
func (v *Validator) bindRemote(configured algSet) error {
	cfg := *v.JWKSURL
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	*v.JWKSURL = cfg
	raw, _ := json.Marshal(cfg)
	v.remoteKey = v.name + "\x00" + string(raw) + "\x00" + fmt.Sprint(configured)
	val, _, err := jwksPool.LoadOrNew(v.remoteKey, func() (caddy.Destructor, error) {
		rk := newRemoteKeys(cfg, configured, v.name, v.logger, v.now)
		if v.retry != nil {
			rk.retry = *v.retry
		}
		return rk, nil // started by start, when the app starts
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
	return nil
}

// start fetches the remote key set, if any, and starts its refresh loop;
// the app calls it from Start. A set shared with the previous config has
// started already.
func (v *Validator) start() {
	if v.remote != nil {
		v.remote.start()
	}
}

// checkRules checks the rules: iss, aud, the identity sources, the require
// rules and the token sources.
func (v *Validator) checkRules() error {
	if len(v.Issuers) == 0 {
		return fmt.Errorf("issuer is required")
	}
	if slices.Contains(v.Issuers, "") {
		return fmt.Errorf("issuer must not be empty")
	}
	if len(v.Audiences) == 0 {
		return fmt.Errorf("audience is required")
	}
	if slices.Contains(v.Audiences, "") {
		return fmt.Errorf("audience must not be empty")
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
	return nil
}

// provisionState builds the runtime state: the cookie, the token cache and
// the request counters.
func (v *Validator) provisionState(app *App) error {
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
	v.provisionMetrics(v.name, app)
	return nil
}

// cleanup releases the shared remote key set.
func (v *Validator) cleanup() {
	if v.remote != nil {
		_, _ = jwksPool.Delete(v.remoteKey)
		v.remote = nil
	}
}
