package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// algFamily is the kind of key an algorithm verifies with. A key belongs to
// exactly one family, so a token can never choose to have an RSA public key
// used as an HMAC secret (the classic algorithm-confusion attack).
type algFamily uint8

const (
	famNone algFamily = iota
	famHMAC
	famRSA
	famP256
	famP384
	famP521
	famEd25519
)

func (f algFamily) String() string {
	return [...]string{"none", "HMAC secret", "RSA key", "EC P-256 key", "EC P-384 key", "EC P-521 key", "Ed25519 key"}[f]
}

// algInfo describes one supported JWS algorithm.
type algInfo struct {
	name   string
	bit    uint16 // position in an algSet
	family algFamily
	method jwt.SigningMethod
	minKey int // HMAC only: minimum secret length in bytes (RFC 7518 §3.2)
}

// algSet is a set of algorithms, one bit each.
type algSet uint16

func (s algSet) has(a *algInfo) bool { return s&(1<<a.bit) != 0 }

func (s algSet) names() []string {
	var out []string
	for _, a := range algorithms {
		if s.has(a) {
			out = append(out, a.name)
		}
	}
	return out
}

// algorithms lists every algorithm we accept. "none" is deliberately absent
// and can never be configured.
var algorithms = []*algInfo{
	{name: "HS256", family: famHMAC, method: jwt.SigningMethodHS256, minKey: 32},
	{name: "HS384", family: famHMAC, method: jwt.SigningMethodHS384, minKey: 48},
	{name: "HS512", family: famHMAC, method: jwt.SigningMethodHS512, minKey: 64},
	{name: "RS256", family: famRSA, method: jwt.SigningMethodRS256},
	{name: "RS384", family: famRSA, method: jwt.SigningMethodRS384},
	{name: "RS512", family: famRSA, method: jwt.SigningMethodRS512},
	{name: "PS256", family: famRSA, method: jwt.SigningMethodPS256},
	{name: "PS384", family: famRSA, method: jwt.SigningMethodPS384},
	{name: "PS512", family: famRSA, method: jwt.SigningMethodPS512},
	{name: "ES256", family: famP256, method: jwt.SigningMethodES256},
	{name: "ES384", family: famP384, method: jwt.SigningMethodES384},
	{name: "ES512", family: famP521, method: jwt.SigningMethodES512},
	{name: "EdDSA", family: famEd25519, method: jwt.SigningMethodEdDSA},
}

func init() {
	for i, a := range algorithms {
		a.bit = uint16(i)
	}
}

// lookupAlg finds an algorithm by its exact, case-sensitive JWS name (RFC 7515
// §4.1.1 says alg is case-sensitive, so "none", "None" and "NONE" all miss).
func lookupAlg(name string) *algInfo {
	for _, a := range algorithms {
		if a.name == name {
			return a
		}
	}
	return nil
}

// lookupAlgRaw is lookupAlg for a raw JSON string value, without allocating.
func lookupAlgRaw(raw []byte) *algInfo {
	if hasEscape(raw) {
		name, ok := decodeString(raw)
		if !ok {
			return nil
		}
		return lookupAlg(name)
	}
	name := raw[1 : len(raw)-1]
	for _, a := range algorithms {
		if string(name) == a.name {
			return a
		}
	}
	return nil
}

// familyAlgs is the set of algorithms a key of family f can verify.
func familyAlgs(f algFamily) algSet {
	var s algSet
	for _, a := range algorithms {
		if a.family == f {
			s |= 1 << a.bit
		}
	}
	return s
}

// verKey is one verification key.
type verKey struct {
	kid    string
	key    any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	family algFamily
	algs   algSet           // the algorithms this key may verify: its family ∩ configuration
	source string           // where it came from, for error messages
	hmacs  [3]*hmacVerifier // HMAC keys: keyed states for HS256/384/512, by alg bit
}

// verify reports whether sig is a's signature of signingInput under k.
func (k *verKey) verify(a *algInfo, signingInput string, sig []byte) bool {
	if int(a.bit) < len(k.hmacs) && k.hmacs[a.bit] != nil {
		return k.hmacs[a.bit].verify(signingInput, sig)
	}
	return a.method.Verify(signingInput, sig, k.key) == nil
}

// hmacVerifier checks HMAC signatures with keyed states kept in a pool: a
// verification costs a Reset, not hmac.New's two hash allocations and key
// schedule, and no allocation for its input or output.
type hmacVerifier struct {
	pool sync.Pool // of *hmacState
}

type hmacState struct {
	mac hash.Hash
	in  []byte   // the signing input, copied: hash.Hash takes bytes
	out [64]byte // room for the largest MAC (HS512)
}

func newHMACVerifier(h crypto.Hash, secret []byte) *hmacVerifier {
	hv := new(hmacVerifier)
	hv.pool.New = func() any { return &hmacState{mac: hmac.New(h.New, secret)} }
	return hv
}

func (hv *hmacVerifier) verify(signingInput string, sig []byte) bool {
	st := hv.pool.Get().(*hmacState)
	st.in = append(st.in[:0], signingInput...)
	st.mac.Write(st.in)
	ok := hmac.Equal(sig, st.mac.Sum(st.out[:0]))
	st.mac.Reset()
	if cap(st.in) <= maxTokenSize {
		hv.pool.Put(st)
	}
	return ok
}

// keyFamily classifies a public key or secret.
func keyFamily(k any) (algFamily, error) {
	switch k := k.(type) {
	case []byte:
		return famHMAC, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return famNone, fmt.Errorf("RSA key of %d bits is too short; 2048 is the minimum", k.N.BitLen())
		}
		return famRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return famP256, nil
		case elliptic.P384():
			return famP384, nil
		case elliptic.P521():
			return famP521, nil
		}
		return famNone, fmt.Errorf("unsupported EC curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return famEd25519, nil
	}
	return famNone, fmt.Errorf("unsupported key type %T", k)
}

// newVerKey classifies key and restricts it to the configured algorithms. An
// empty allowed set means "derive from the key". jwkAlg, when a JWK names its
// algorithm, narrows the key to that one algorithm.
func newVerKey(kid string, key any, allowed algSet, jwkAlg, source string) (*verKey, error) {
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public() // every private key type of crypto/* has Public
	}
	fam, err := keyFamily(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	algs := familyAlgs(fam)
	if allowed != 0 {
		algs &= allowed
	}
	if algs == 0 {
		return nil, fmt.Errorf("%s: none of the configured algorithms (%s) verifies a %s", source, strings.Join(allowed.names(), ", "), fam)
	}
	if fam == famHMAC {
		secret := key.([]byte)
		for _, a := range algorithms {
			if algs.has(a) && len(secret) < a.minKey {
				if allowed != 0 {
					return nil, fmt.Errorf("%s: secret is %d bytes, shorter than the %d that %s requires", source, len(secret), a.minKey, a.name)
				}
				algs &^= 1 << a.bit // derived: drop what the secret is too short for
			}
		}
		if algs == 0 {
			return nil, fmt.Errorf("%s: secret is %d bytes, shorter than the 32 that HS256 requires", source, len(secret))
		}
	}
	if jwkAlg != "" {
		a := lookupAlg(jwkAlg)
		if a == nil || !algs.has(a) {
			return nil, fmt.Errorf("%s: key alg %q does not fit a %s or the configured algorithms", source, jwkAlg, fam)
		}
		algs = 1 << a.bit
	}
	k := &verKey{kid: kid, key: key, family: fam, algs: algs, source: source}
	if fam == famHMAC {
		for _, a := range algorithms {
			if algs.has(a) {
				k.hmacs[a.bit] = newHMACVerifier(a.method.(*jwt.SigningMethodHMAC).Hash, key.([]byte))
			}
		}
	}
	return k, nil
}

// keySet is an immutable collection of keys, indexed by kid.
type keySet struct {
	byKID  map[string][]*verKey
	noKID  []*verKey // keys without a kid match tokens with any kid
	all    []*verKey
	perAlg [16]uint16 // how many keys may verify each algorithm, by bit
}

func newKeySet(keys []*verKey) *keySet {
	s := &keySet{byKID: make(map[string][]*verKey), all: keys}
	for _, k := range keys {
		for _, a := range algorithms {
			if k.algs.has(a) && s.perAlg[a.bit] < ^uint16(0) {
				s.perAlg[a.bit]++
			}
		}
		if k.kid == "" {
			s.noKID = append(s.noKID, k)
		} else {
			s.byKID[k.kid] = append(s.byKID[k.kid], k)
		}
	}
	return s
}

// candidates returns the keys that may have signed a token with this kid.
func (s *keySet) candidates(kid string) []*verKey {
	if s == nil {
		return nil
	}
	if kid == "" {
		return s.all
	}
	if ks := s.byKID[kid]; len(ks) > 0 {
		return ks
	}
	return s.noKID
}

// keysFor reports how many keys of the set may verify alg.
func (s *keySet) keysFor(a *algInfo) int {
	if s == nil {
		return 0
	}
	return int(s.perAlg[a.bit])
}

// duplicateKIDs returns each kid that more than one of keys (sorted by kid,
// as parseJWKS returns them) carries.
func duplicateKIDs(keys []*verKey) []string {
	var dups []string
	for i := 1; i < len(keys); i++ {
		if k := keys[i].kid; k != "" && k == keys[i-1].kid && (len(dups) == 0 || dups[len(dups)-1] != k) {
			dups = append(dups, k)
		}
	}
	return dups
}

// contains reports whether k is still part of the set.
func (s *keySet) contains(k *verKey) bool {
	if s == nil {
		return false
	}
	return slices.Contains(s.candidates(k.kid), k)
}

// loadPEMKey reads a PEM file with one public key or certificate.
func loadPEMKey(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block found", path)
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("%s: PEM block %q is not a public key or certificate (a private key does not belong on a verifier)", path, block.Type)
}

// parseJWKS turns a JWK Set document into verification keys through keyfunc
// and jwkset. Symmetric (oct) keys are refused: a published JWKS that holds a
// shared secret is either broken or hostile, and accepting one would let
// anybody who can read the set mint tokens. Keys whose "use" is not "sig" are
// skipped. Keys that cannot be used (oct, an unknown kty, a malformed key, a
// weak RSA modulus, an alg outside the configuration) are returned as
// problems, so the caller can fail (a local file) or skip them (a remote
// set): each key is parsed on its own, so one key the library does not
// understand does not take the whole set down.
func parseJWKS(raw []byte, allowed algSet, source string) (keys []*verKey, problems []error, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, nil, fmt.Errorf("%s: not a JWK Set: %w", source, err)
	}
	for i, rawKey := range set.Keys {
		one, err := json.Marshal(struct {
			Keys []json.RawMessage `json:"keys"`
		}{[]json.RawMessage{rawKey}})
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: key #%d: %w", source, i, err))
			continue
		}
		kf, err := keyfunc.NewJWKSetJSON(one)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: key #%d: %w", source, i, err))
			continue
		}
		jwks, err := kf.Storage().KeyReadAll(context.Background())
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: key #%d: %w", source, i, err))
			continue
		}
		for _, j := range jwks {
			m := j.Marshal()
			if m.KTY == jwkset.KtyOct {
				problems = append(problems, fmt.Errorf("%s: kid %q: symmetric (oct) keys are refused", source, m.KID))
				continue
			}
			if m.USE != "" && m.USE != jwkset.UseSig {
				continue
			}
			k, err := newVerKey(m.KID, j.Key(), allowed, m.ALG.String(), fmt.Sprintf("%s: kid %q", source, m.KID))
			if err != nil {
				problems = append(problems, err)
				continue
			}
			keys = append(keys, k)
		}
	}
	slices.SortStableFunc(keys, func(a, b *verKey) int { return strings.Compare(a.kid, b.kid) })
	return keys, problems, nil
}
