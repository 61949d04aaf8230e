package jwtauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func selfSignedCert(t testing.TB, priv *rsa.PrivateKey) []byte {
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
	extraKeys(t)
	pkcs1 := x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)
	pl := rawPayload().String()
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
		{"RSA PKCS1", writePEMBlock(t, "RSA PUBLIC KEY", pkcs1), nil, "RS256 RS384 RS512 PS256 PS384 PS512", jwt.SigningMethodRS384, rsaKey},
		{"RSA certificate", writePEMBlock(t, "CERTIFICATE", selfSignedCert(t, rsaKey)), nil, "", jwt.SigningMethodRS512, rsaKey},
		{"RSA restricted to PS256", writePEM(t, rsaKey.Public()), []string{"PS256"}, "", jwt.SigningMethodPS256, rsaKey},
		{"EC P-256", writePEM(t, ecKey.Public()), nil, "ES256", jwt.SigningMethodES256, ecKey},
		{"EC P-384", writePEM(t, ecP384Key.Public()), nil, "ES384", jwt.SigningMethodES384, ecP384Key},
		{"EC P-521", writePEM(t, ecP521Key.Public()), nil, "ES512", jwt.SigningMethodES512, ecP521Key},
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
			tok := signRaw(t, tc.m, tc.priv, `{"alg":"`+tc.m.Alg()+`"}`, pl)
			if _, err := v.verify(tok); err != nil {
				t.Fatalf("own token refused: %v", err)
			}
			// a token for another algorithm of another family is refused
			other := signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256"}`, pl)
			if _, err := v.verify(other); err == nil {
				t.Fatal("HS256 token accepted by a public-key validator")
			}
		})
	}

	// ES256 against a P-384 key: the curve fixes the algorithm
	v := provisionValidator(t, newTestClock().Now, &Validator{
		Issuers: []string{"iss"}, Audiences: []string{"aud"},
		PublicKeyFiles: []PublicKeyFile{{Path: writePEM(t, ecP384Key.Public())}},
	})
	tok := signRaw(t, jwt.SigningMethodES256, ecKey, `{"alg":"ES256"}`, pl)
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
