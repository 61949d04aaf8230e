package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Files an issuer keeps in its store_dir, next to the store's own files.
const (
	// signingKeyFile holds the generated signing key: a PKCS#8 "PRIVATE
	// KEY" PEM block for EdDSA, ES256 and RS256, or a hmacPEMType block of
	// 32 random bytes for HS256. Mode 0600.
	signingKeyFile = "signing.key"
	// issuerMetaFile describes the issuer for `caddy jwtauth token`:
	// iss, audience, algorithm, kid and access_ttl. Mode 0600.
	issuerMetaFile = "issuer.json"
	// hmacPEMType is the PEM block type of an HS256 secret.
	hmacPEMType = "JWTAUTH HMAC KEY"
	// rsaKeyBits is the size of a generated RS256 key.
	rsaKeyBits = 2048
)

// issuerAlgorithms are the algorithms an issuer signs with.
var issuerAlgorithms = []string{"EdDSA", "ES256", "RS256", "HS256"}

// reservedClaims are set by the issuer. A user's claims in the users file may
// not use them, in any letter case (validators refuse tokens with
// case-colliding claims).
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "user_id", "login"}

func isReservedClaim(name string) bool {
	for _, r := range reservedClaims {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// signer holds an issuer's signing key and what is derived from it once.
type signer struct {
	alg  *algInfo
	key  any     // ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey or []byte
	ver  *verKey // the matching verification key
	kid  string
	jwks []byte // the public JWK Set; nil for HS256
}

// newSigner checks that key suits algorithm and derives its kid, its
// verification key and, for asymmetric keys, the JWK Set.
func newSigner(algorithm string, key any, source string) (*signer, error) {
	alg := lookupAlg(algorithm)
	if alg == nil || !slices.Contains(issuerAlgorithms, algorithm) {
		return nil, fmt.Errorf("algorithm %q: must be one of %s", algorithm, strings.Join(issuerAlgorithms, ", "))
	}
	var pub any
	switch k := key.(type) {
	case ed25519.PrivateKey:
		pub = k.Public()
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case []byte:
		pub = k
	default:
		return nil, fmt.Errorf("%s: unsupported key type %T", source, key)
	}
	fam, err := keyFamily(pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if fam != alg.family {
		return nil, fmt.Errorf("%s holds an %s, but algorithm %s needs an %s", source, fam, alg.name, alg.family)
	}
	s := &signer{alg: alg, key: key}
	if fam == famHMAC {
		secret := key.([]byte)
		if len(secret) < alg.minKey {
			return nil, fmt.Errorf("%s: secret is %d bytes, shorter than the %d that %s requires", source, len(secret), alg.minKey, alg.name)
		}
		sum := sha256.Sum256(append([]byte("jwtauth-hmac-kid\x00"), secret...))
		s.kid = b64.EncodeToString(sum[:16])
	} else {
		members, err := jwkMembers(pub)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		s.kid = thumbprint(members)
		members["kid"] = s.kid
		members["alg"] = alg.name
		members["use"] = "sig"
		s.jwks, err = json.Marshal(map[string]any{"keys": []any{members}})
		if err != nil {
			return nil, err
		}
	}
	s.ver, err = newVerKey(s.kid, pub, 1<<alg.bit, "", source)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// jwkMembers returns the required public members of a key's JWK (RFC 7517,
// RFC 8037).
func jwkMembers(pub any) (map[string]any, error) {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(k)}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("unsupported EC curve %s", k.Curve.Params().Name)
		}
		e, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		raw := e.Bytes() // 0x04 || X || Y, fixed width
		return map[string]any{"kty": "EC", "crv": "P-256", "x": enc(raw[1:33]), "y": enc(raw[33:])}, nil
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

// thumbprint is the RFC 7638 JWK thumbprint: SHA-256 over the required
// members in lexicographic order (json.Marshal sorts map keys and adds no
// whitespace), base64url.
func thumbprint(members map[string]any) string {
	raw, _ := json.Marshal(members)
	sum := sha256.Sum256(raw)
	return b64.EncodeToString(sum[:])
}

// sign returns a compact JWS of claims with the at+jwt typ and the kid.
func (s *signer) sign(claims jwt.MapClaims) (string, error) {
	tok := jwt.NewWithClaims(s.alg.method, claims)
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = s.kid
	return tok.SignedString(s.key)
}

// generateSigningKey makes a fresh key for algorithm from crypto/rand.
func generateSigningKey(algorithm string) (any, error) {
	switch algorithm {
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		return rsa.GenerateKey(rand.Reader, rsaKeyBits)
	case "HS256":
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		return k, nil
	}
	return nil, fmt.Errorf("algorithm %q: must be one of %s", algorithm, strings.Join(issuerAlgorithms, ", "))
}

// encodeSigningKey renders a signing key as PEM.
func encodeSigningKey(key any) ([]byte, error) {
	if secret, ok := key.([]byte); ok {
		return pem.EncodeToMemory(&pem.Block{Type: hmacPEMType, Bytes: secret}), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseSigningKey reads a PEM private key (PKCS#8, SEC 1 or PKCS#1) or an
// HMAC secret block. source names the file in errors; key material never
// appears in them.
func parseSigningKey(data []byte, source string) (any, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block found", source)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("%s: more than one PEM block", source)
	}
	if _, enc := block.Headers["Proc-Type"]; enc {
		return nil, fmt.Errorf("%s: encrypted PEM keys are not supported", source)
	}
	var key any
	var err error
	switch block.Type {
	case hmacPEMType:
		if len(block.Bytes) < 32 {
			return nil, fmt.Errorf("%s: HMAC secret shorter than 32 bytes", source)
		}
		return append([]byte(nil), block.Bytes...), nil
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", source, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: cannot parse the private key", source)
	}
	if k, ok := key.(*ed25519.PrivateKey); ok {
		key = *k
	}
	return key, nil
}

// readSigningKey reads store_dir/signing.key if it exists (nil, nil if
// not), without changing anything: `caddy validate` runs it beside a
// running server.
func readSigningKey(dir string) (any, error) {
	path := filepath.Join(dir, signingKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseSigningKey(data, path)
}

// loadOrCreateSigningKey reads store_dir/signing.key, generating it for
// algorithm on first start. The key is created exclusively, with mode 0600,
// so it is never replaced: changing algorithm later is refused by newSigner
// with a message naming the file.
func loadOrCreateSigningKey(dir, algorithm string) (any, error) {
	path := filepath.Join(dir, signingKeyFile)
	return loadOrCreateFile(path, func(data []byte) (any, error) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return nil, fmt.Errorf("%s is readable by other users and cannot be restricted: %w", path, err)
			}
		}
		return parseSigningKey(data, path)
	}, func() ([]byte, any, error) {
		key, err := generateSigningKey(algorithm)
		if err != nil {
			return nil, nil, err
		}
		pemBytes, err := encodeSigningKey(key)
		return pemBytes, key, err
	})
}

// issuerMeta is issuer.json: what `caddy jwtauth token` needs to mint a
// token as the issuer would. It holds no secret.
type issuerMeta struct {
	Iss       string   `json:"iss"`
	Audience  []string `json:"audience"`
	Algorithm string   `json:"algorithm"`
	KID       string   `json:"kid"`
	AccessTTL string   `json:"access_ttl"`
	// KeyFile is set when the issuer signs with a configured key_file
	// rather than store_dir/signing.key.
	KeyFile string `json:"key_file,omitempty"`
}

// writeIssuerMeta updates issuer.json when it differs.
func writeIssuerMeta(dir string, m issuerMeta) error {
	data, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	path := filepath.Join(dir, issuerMetaFile)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	return writeFileAtomic(path, data, 0o600)
}

// accessTokenClaims assembles an access token's claims. Extra claims come
// first and can never replace a registered one.
func accessTokenClaims(iss string, aud []string, sub string, userID any, login string, iat, exp time.Time, jti, sid string, extra map[string]any) jwt.MapClaims {
	c := make(jwt.MapClaims, len(extra)+10)
	for k, v := range extra {
		if !isReservedClaim(k) {
			c[k] = v
		}
	}
	c["iss"] = iss
	if len(aud) == 1 {
		c["aud"] = aud[0]
	} else {
		c["aud"] = aud
	}
	c["sub"] = sub
	c["user_id"] = userID
	if login != "" {
		c["login"] = login
	}
	c["iat"] = iat.Unix()
	c["exp"] = exp.Unix()
	c["jti"] = jti
	if sid != "" {
		c["sid"] = sid
	}
	return c
}

// randomID returns n random bytes from crypto/rand, base64url.
func randomID(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}

// mintAccess signs an access token for u in session sid. Its exp never
// passes the session's end.
func (is *Issuer) mintAccess(sg *signer, u *issuerUser, sid string, now, sessionEnd time.Time) (string, time.Time, error) {
	exp := now.Add(is.accessTTL)
	if sessionEnd.Before(exp) {
		exp = sessionEnd
	}
	jti, err := randomID(16)
	if err != nil {
		return "", time.Time{}, err
	}
	c := accessTokenClaims(is.Iss, is.Audience, u.userID.String(), u.userID, u.login, now, exp, jti, sid, u.claims)
	tok, err := sg.sign(c)
	return tok, exp.Truncate(time.Second), err
}
