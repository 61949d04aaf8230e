package jwtauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

var (
	ktOnce           sync.Once
	ktEC384, ktEC521 *ecdsa.PrivateKey
	ktEC224          *ecdsa.PrivateKey
	ktRSA1024        *rsa.PrivateKey
	ktKeysErr        error
)

// ktKeys generates the extra keys the key tests need, once.
func ktKeys(t testing.TB) {
	t.Helper()
	testKeys(t)
	ktOnce.Do(func() {
		if ktEC384, ktKeysErr = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); ktKeysErr != nil {
			return
		}
		if ktEC521, ktKeysErr = ecdsa.GenerateKey(elliptic.P521(), rand.Reader); ktKeysErr != nil {
			return
		}
		if ktEC224, ktKeysErr = ecdsa.GenerateKey(elliptic.P224(), rand.Reader); ktKeysErr != nil {
			return
		}
		ktRSA1024, ktKeysErr = rsa.GenerateKey(rand.Reader, 1024)
	})
	if ktKeysErr != nil {
		t.Fatal(ktKeysErr)
	}
}

// ktWrite writes a PEM block to a temporary file.
func ktWrite(t testing.TB, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ktCert(t testing.TB, priv *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "issuer"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestPublicKeyFiles(t *testing.T) {
	t.Parallel()
	ktKeys(t)
	pkcs1 := x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)
	pl := vtBase().String()
	cases := []struct {
		name    string
		path    string
		algs    []string
		derived string // expected allowed set when algs is empty
		m       jwt.SigningMethod
		priv    any
	}{
		{"RSA PKIX RS256", writePEM(t, rsaKey.Public()), nil, "RS256 RS384 RS512 PS256 PS384 PS512", jwt.SigningMethodRS256, rsaKey},
		{"RSA PKIX PS512", writePEM(t, rsaKey.Public()), nil, "", jwt.SigningMethodPS512, rsaKey},
		{"RSA PKCS1", ktWrite(t, "RSA PUBLIC KEY", pkcs1), nil, "RS256 RS384 RS512 PS256 PS384 PS512", jwt.SigningMethodRS384, rsaKey},
		{"RSA certificate", ktWrite(t, "CERTIFICATE", ktCert(t, rsaKey)), nil, "", jwt.SigningMethodRS512, rsaKey},
		{"RSA restricted to PS256", writePEM(t, rsaKey.Public()), []string{"PS256"}, "", jwt.SigningMethodPS256, rsaKey},
		{"EC P-256", writePEM(t, ecKey.Public()), nil, "ES256", jwt.SigningMethodES256, ecKey},
		{"EC P-384", writePEM(t, ktEC384.Public()), nil, "ES384", jwt.SigningMethodES384, ktEC384},
		{"EC P-521", writePEM(t, ktEC521.Public()), nil, "ES512", jwt.SigningMethodES512, ktEC521},
		{"Ed25519", writePEM(t, edKey.Public()), nil, "EdDSA", jwt.SigningMethodEdDSA, edKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := provisionValidator(t, newTestClock().Now, &Validator{
				Issuers: []string{"iss"}, Audiences: []string{"aud"},
				PublicKeyFiles: []PublicKeyFile{{Path: tc.path}}, Algorithms: tc.algs,
			})
			if tc.derived != "" {
				if got := strings.Join(v.allowed.names(), " "); got != tc.derived {
					t.Fatalf("derived algorithms %q, want %q", got, tc.derived)
				}
			}
			tok := vtSignRaw(t, tc.m, tc.priv, `{"alg":"`+tc.m.Alg()+`"}`, pl)
			if _, err := v.verify(tok); err != nil {
				t.Fatalf("own token refused: %v", err)
			}
			// a token for another algorithm of another family is refused
			other := vtSignRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256"}`, pl)
			if _, err := v.verify(other); err == nil {
				t.Fatal("HS256 token accepted by a public-key validator")
			}
		})
	}

	// ES256 against a P-384 key: the curve fixes the algorithm
	v := provisionValidator(t, newTestClock().Now, &Validator{
		Issuers: []string{"iss"}, Audiences: []string{"aud"},
		PublicKeyFiles: []PublicKeyFile{{Path: writePEM(t, ktEC384.Public())}},
	})
	tok := vtSignRaw(t, jwt.SigningMethodES256, ecKey, `{"alg":"ES256"}`, pl)
	if _, err := v.verify(tok); err == nil {
		t.Fatal("ES256 accepted by a P-384 validator")
	}
}

func TestDerivedHMACAlgorithms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		want string
	}{
		{32, "HS256"}, {47, "HS256"}, {48, "HS256 HS384"}, {63, "HS256 HS384"}, {64, "HS256 HS384 HS512"}, {100, "HS256 HS384 HS512"},
	} {
		v := hsValidator()
		v.Secret = strings.Repeat("s", tc.n)
		v = provisionValidator(t, newTestClock().Now, v)
		if got := strings.Join(v.allowed.names(), " "); got != tc.want {
			t.Errorf("%d-byte secret derives %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestProvisionErrors checks that Caddy refuses an unsafe or broken
// validator and that the error names the validator and what is wrong.
func TestProvisionErrors(t *testing.T) {
	ktKeys(t)
	dir := t.TempDir()
	rsaPEM := writePEM(t, rsaKey.Public())
	privDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	jwksPath := func(body string) string {
		p := filepath.Join(t.TempDir(), "jwks.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("JWTAUTH_TEST_SECRET", testSecret)
	t.Setenv("JWTAUTH_TEST_SHORT", "short")
	os.Unsetenv("JWTAUTH_TEST_UNSET_VAR")
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	base := func(mod func(v *Validator)) *Validator {
		v := hsValidator()
		mod(v)
		return v
	}
	rsaV := func(mod func(v *Validator)) *Validator {
		v := &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, PublicKeyFiles: []PublicKeyFile{{Path: rsaPEM}}}
		mod(v)
		return v
	}
	cases := []struct {
		name string
		v    *Validator
		want []string // substrings of the error; nil: provisions
	}{
		// secrets
		{"HS256 31 bytes", base(func(v *Validator) { v.Secret = strings.Repeat("s", 31) }), []string{"31 bytes", "32", "HS256"}},
		{"HS256 32 bytes", base(func(v *Validator) { v.Secret = strings.Repeat("s", 32); v.Algorithms = []string{"HS256"} }), nil},
		{"HS384 47 bytes", base(func(v *Validator) { v.Secret = strings.Repeat("s", 47); v.Algorithms = []string{"HS384"} }), []string{"47 bytes", "48", "HS384"}},
		{"HS384 48 bytes", base(func(v *Validator) { v.Secret = strings.Repeat("s", 48); v.Algorithms = []string{"HS384"} }), nil},
		{"HS512 63 bytes", base(func(v *Validator) { v.Secret = strings.Repeat("s", 63); v.Algorithms = []string{"HS512"} }), []string{"63 bytes", "64", "HS512"}},
		{"HS512 64 bytes", base(func(v *Validator) { v.Secret = strings.Repeat("s", 64); v.Algorithms = []string{"HS512"} }), nil},
		{"HS256+HS512 with 32 bytes", base(func(v *Validator) { v.Algorithms = []string{"HS256", "HS512"} }), []string{"64", "HS512"}},
		{"env secret", base(func(v *Validator) { v.Secret = "{env.JWTAUTH_TEST_SECRET}" }), nil},
		{"env secret too short", base(func(v *Validator) { v.Secret = "{env.JWTAUTH_TEST_SHORT}" }), []string{"5 bytes", "32"}},
		{"env secret unset", base(func(v *Validator) { v.Secret = "{env.JWTAUTH_TEST_UNSET_VAR}" }), []string{"secret", "JWTAUTH_TEST_UNSET_VAR", "empty"}},
		{"file secret", base(func(v *Validator) { v.Secret = "{file." + secretFile + "}" }), nil},
		{"file secret missing", base(func(v *Validator) { v.Secret = "{file." + filepath.Join(dir, "nope") + "}" }), []string{"secret", "nope"}},
		{"unknown placeholder", base(func(v *Validator) { v.Secret = "{nope.x}" + testSecret }), []string{"secret", "nope.x"}},
		// algorithms
		{"unknown algorithm", base(func(v *Validator) { v.Algorithms = []string{"XS256"} }), []string{`unknown algorithm "XS256"`}},
		{"lower-case algorithm", base(func(v *Validator) { v.Algorithms = []string{"hs256"} }), []string{`unknown algorithm "hs256"`}},
		{"none", base(func(v *Validator) { v.Algorithms = []string{"none"} }), []string{`"none" is never accepted`}},
		{"NONE", base(func(v *Validator) { v.Algorithms = []string{"HS256", "NONE"} }), []string{`"none" is never accepted`}},
		{"ES256 with an RSA key", rsaV(func(v *Validator) { v.Algorithms = []string{"ES256"} }), []string{"ES256", "RSA key", rsaPEM}},
		{"HS256 with an RSA key", rsaV(func(v *Validator) { v.Algorithms = []string{"HS256"} }), []string{"HS256", "RSA key"}},
		{"RS256 with a secret", base(func(v *Validator) { v.Algorithms = []string{"RS256"} }), []string{"RS256", "HMAC secret"}},
		{"RS256 configured, only a secret", base(func(v *Validator) { v.Algorithms = []string{"HS256", "RS256"} }), []string{"RS256", "no key can verify it"}},
		{"ES384 with a P-256 key", &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, Algorithms: []string{"ES384"}, PublicKeyFiles: []PublicKeyFile{{Path: writePEM(t, ecKey.Public())}}}, []string{"ES384", "P-256"}},
		// key files
		{"RSA 1024", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = writePEM(t, ktRSA1024.Public()) }), []string{"1024 bits", "2048"}},
		{"missing key file", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = filepath.Join(dir, "missing.pem") }), []string{"public_key_file", "missing.pem", "no such file"}},
		{"not PEM", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = secretFile }), []string{"no PEM block"}},
		{"private key PEM", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = ktWrite(t, "PRIVATE KEY", privDER) }), []string{"PRIVATE KEY", "not a public key"}},
		{"corrupt PKIX", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = ktWrite(t, "PUBLIC KEY", []byte("junk")) }), []string{"public_key_file"}},
		{"P-224 key", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = writePEM(t, ktEC224.Public()) }), []string{"unsupported EC curve", "P-224"}},
		{"missing jwks_file", base(func(v *Validator) { v.Secret = ""; v.JWKSFile = filepath.Join(dir, "none.json") }), []string{"jwks_file", "none.json"}},
		{"jwks_file with oct", base(func(v *Validator) {
			v.Secret = ""
			v.JWKSFile = jwksPath(`{"keys":[{"kty":"oct","kid":"h","k":"` + base64.RawURLEncoding.EncodeToString([]byte(testSecret)) + `"}]}`)
		}), []string{"symmetric (oct) keys are refused"}},
		{"jwks_file garbage", base(func(v *Validator) { v.Secret = ""; v.JWKSFile = jwksPath(`{"keys":`) }), []string{"jwks_file"}},
		{"jwks_file empty set", base(func(v *Validator) { v.Secret = ""; v.JWKSFile = jwksPath(`{"keys":[]}`) }), []string{"no signing key"}},
		{"jwks_file ok", base(func(v *Validator) {
			v.Secret = ""
			v.JWKSFile = jwksPath(`{"keys":[` + vtECJWK("e1", ecKey, "ES256") + `]}`)
		}), nil},
		{"jwks_file alg mismatch", base(func(v *Validator) {
			v.Secret = ""
			v.JWKSFile = jwksPath(`{"keys":[` + vtECJWK("e1", ecKey, "RS256") + `]}`)
		}), []string{"RS256", "P-256"}},
		// structure
		{"no key", base(func(v *Validator) { v.Secret = "" }), []string{"no key"}},
		{"no issuer", base(func(v *Validator) { v.Issuers = nil }), []string{"issuer is required"}},
		{"empty issuer", base(func(v *Validator) { v.Issuers = []string{""} }), []string{"issuer must not be empty"}},
		{"one empty issuer", base(func(v *Validator) { v.Issuers = []string{"a", ""} }), []string{"issuer must not be empty"}},
		{"no audience", base(func(v *Validator) { v.Audiences = nil }), []string{"audience is required"}},
		{"empty audience", base(func(v *Validator) { v.Audiences = []string{""} }), []string{"audience must not be empty"}},
		{"user_id claim and static", base(func(v *Validator) { v.UserID = &UserIDSource{Claim: "sub", Static: "x"} }), []string{"user_id", "exclusive"}},
		{"user_id empty", base(func(v *Validator) { v.UserID = &UserIDSource{} }), []string{"user_id"}},
		{"partner_id without claim", base(func(v *Validator) { v.PartnerID = &PartnerIDSource{} }), []string{"partner_id"}},
		{"require without values", base(func(v *Validator) { v.Require = []ClaimRequirement{{Claim: "roles"}} }), []string{"require"}},
		{"bad source", base(func(v *Validator) { v.Sources = []TokenSource{{From: "body", Name: "t"}} }), []string{"body"}},
		{"source without name", base(func(v *Validator) { v.Sources = []TokenSource{{From: "cookie"}} }), []string{"name is required"}},
		{"cookie source with prefix", base(func(v *Validator) { v.Sources = []TokenSource{{From: "cookie", Name: "t", Prefix: "Bearer"}} }), []string{"prefix"}},
		{"negative cache", base(func(v *Validator) { n := -1; v.CacheSize = &n }), []string{"cache_size"}},
		// jwks_url
		{"jwks_url http remote", base(func(v *Validator) { v.Secret = ""; v.JWKSURL = &RemoteJWKS{URL: "http://keys.example.com/jwks"} }), []string{"https"}},
		{"jwks_url relative", base(func(v *Validator) { v.Secret = ""; v.JWKSURL = &RemoteJWKS{URL: "/jwks"} }), []string{"absolute"}},
		{"jwks_url file scheme", base(func(v *Validator) { v.Secret = ""; v.JWKSURL = &RemoteJWKS{URL: "file:///etc/passwd"} }), []string{"absolute http(s)"}},
		{"jwks_url max_stale < refresh", base(func(v *Validator) {
			v.Secret = ""
			v.JWKSURL = &RemoteJWKS{URL: "https://keys.example.com/jwks", RefreshInterval: caddy.Duration(time.Hour), MaxStale: caddy.Duration(time.Minute)}
		}), []string{"max_stale"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := provisionErr(tc.v)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("provisioned")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, `validator "test": `) {
				t.Errorf("error %q does not name the validator", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, testSecret) {
				t.Errorf("error %q leaks the secret", msg)
			}
		})
	}
}

// TestSecretPlaceholderVerifies proves the resolved secret, not the
// placeholder text, is the key.
func TestSecretPlaceholderVerifies(t *testing.T) {
	t.Setenv("JWTAUTH_TEST_SECRET2", testSecret)
	v := hsValidator()
	v.Secret = "{env.JWTAUTH_TEST_SECRET2}"
	v = provisionValidator(t, newTestClock().Now, v)
	if _, err := v.verify(hs256(t, claims())); err != nil {
		t.Fatalf("token signed with the env secret refused: %v", err)
	}
	forged := sign(t, jwt.SigningMethodHS256, []byte("{env.JWTAUTH_TEST_SECRET2}"), claims(), nil)
	if _, err := v.verify(forged); err == nil {
		t.Fatal("token signed with the placeholder text accepted")
	}
}

func TestKeySetCandidates(t *testing.T) {
	t.Parallel()
	mk := func(kid string) *verKey { return &verKey{kid: kid} }
	a, b, any1 := mk("a"), mk("b"), mk("")
	s := newKeySet([]*verKey{a, b, any1})
	for _, tc := range []struct {
		kid  string
		want []*verKey
	}{
		{"a", []*verKey{a}},
		{"b", []*verKey{b}},
		{"c", []*verKey{any1}},
		{"", []*verKey{a, b, any1}},
	} {
		got := s.candidates(tc.kid)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("candidates(%q) = %v, want %v", tc.kid, got, tc.want)
		}
	}
	if !s.contains(a) || !s.contains(any1) || s.contains(mk("a")) {
		t.Fatal("contains must compare identity")
	}
	var nilSet *keySet
	if nilSet.candidates("a") != nil || nilSet.contains(a) {
		t.Fatal("nil set must be empty")
	}
}

func TestLookupAlgIsCaseSensitive(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"none", "None", "NONE", "hs256", "Hs256", "rs256", "EDDSA", "ES256K", ""} {
		if lookupAlg(n) != nil {
			t.Errorf("lookupAlg(%q) found an algorithm", n)
		}
	}
	for _, a := range algorithms {
		if lookupAlg(a.name) != a || a.method.Alg() != a.name {
			t.Errorf("%s: table inconsistent", a.name)
		}
	}
}
