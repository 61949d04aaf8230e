package jwtauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
)

// hs256Raw signs payload with the test secret under the standard HS256 header.
func hs256Raw(t testing.TB, payload fmt.Stringer) string {
	return signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), hs256Header, payload.String())
}

// verifyCase is one row of a verify table.
type verifyCase struct {
	name   string
	tok    string
	ok     bool
	is     error  // sentinel the error must wrap
	reason string // expected reject(err).reason; empty: not checked
	desc   string // substring of the error; empty: not checked
}

// runVerifyCases verifies each case's token with v, as a subtest.
func runVerifyCases(t *testing.T, v *Validator, cases []verifyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.verify(tc.tok)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id == nil || id.token != tc.tok {
					t.Fatalf("identity %+v does not carry the token", id)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted (user %q)", id.userID)
			}
			if id != nil {
				t.Fatalf("identity returned with error %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %q does not wrap %q", err, tc.is)
			}
			ae := reject(err)
			if ae.status != http.StatusUnauthorized || ae.code != "invalid_token" {
				t.Fatalf("reject: status %d code %q, want 401 invalid_token", ae.status, ae.code)
			}
			if tc.reason != "" && ae.reason != tc.reason {
				t.Fatalf("reason %q, want %q (%v)", ae.reason, tc.reason, err)
			}
			if tc.desc != "" && !strings.Contains(err.Error(), tc.desc) {
				t.Fatalf("error %q lacks %q", err, tc.desc)
			}
		})
	}
}

// rsaPEMValidator provisions a validator over rsaKey's public key file
// with algs, and returns it with the file's path.
func rsaPEMValidator(t *testing.T, algs ...string) (*Validator, string) {
	testKeys(t)
	p := writePEM(t, rsaKey.Public())
	v := provisionValidator(t, newTestClock().Now, &Validator{
		Issuers: []string{"iss"}, Audiences: []string{"aud"},
		PublicKeyFiles: []PublicKeyFile{{Path: p}}, Algorithms: algs,
	})
	return v, p
}

// ---- algorithms ----

func TestVerifyAlgNone(t *testing.T) {
	t.Parallel()
	hv := provisionValidator(t, newTestClock().Now, hsValidator())
	rv, _ := rsaPEMValidator(t)
	p := rawPayload().String()
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		hdr := `{"alg":"` + alg + `","typ":"JWT"}`
		in := b64url(hdr) + "." + b64url(p)
		hmacSig, err := jwt.SigningMethodHS256.Sign(in, []byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		cases := []verifyCase{
			{name: alg + "/unsigned", tok: in + ".", is: ErrTokenUnverifiable, desc: "algorithm not allowed"},
			{name: alg + "/signed", tok: in + "." + base64.RawURLEncoding.EncodeToString(hmacSig), is: ErrTokenUnverifiable, desc: "algorithm not allowed"},
			{name: alg + "/junk-sig", tok: in + ".AAAA", is: ErrTokenUnverifiable, desc: "algorithm not allowed"},
		}
		t.Run("hs", func(t *testing.T) { runVerifyCases(t, hv, cases) })
		t.Run("rsa", func(t *testing.T) { runVerifyCases(t, rv, cases) })
	}
	// control: the same payload, properly signed, passes
	runVerifyCases(t, hv, []verifyCase{{name: "control", tok: hs256Raw(t, rawPayload()), ok: true}})
}

func TestVerifyAlgorithmConfusion(t *testing.T) {
	t.Parallel()
	testKeys(t)
	rv, pemPath := rsaPEMValidator(t)
	rvExplicit, _ := rsaPEMValidator(t, "RS256")
	pemBytes, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	pl := rawPayload().String()
	var cases []verifyCase
	for name, secret := range map[string][]byte{
		"pem":         pemBytes,
		"pem-trimmed": []byte(strings.TrimSpace(string(pemBytes))),
		"der":         der,
	} {
		for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
			for _, hdr := range []string{`{"alg":"` + m.Alg() + `"}`, `{"alg":"` + m.Alg() + `","kid":"rsa"}`} {
				cases = append(cases, verifyCase{
					name: name + "/" + hdr, tok: signRaw(t, m, secret, hdr, pl),
					is: ErrTokenUnverifiable, desc: "algorithm not allowed",
				})
			}
		}
	}
	cases = append(cases, verifyCase{name: "control RS256", tok: signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256"}`, pl), ok: true})
	runVerifyCases(t, rv, cases)
	runVerifyCases(t, rvExplicit, cases)

	// A validator holding both a secret and an RSA key must still never use
	// the RSA key as an HMAC secret, whatever the kid says.
	mixed := provisionValidator(t, newTestClock().Now, &Validator{
		Issuers: []string{"iss"}, Audiences: []string{"aud"}, Secret: testSecret,
		PublicKeyFiles: []PublicKeyFile{{Path: pemPath, KID: "rsa"}},
	})
	runVerifyCases(t, mixed, []verifyCase{
		{name: "kid rsa", tok: signRaw(t, jwt.SigningMethodHS256, pemBytes, `{"alg":"HS256","kid":"rsa"}`, pl), is: ErrTokenUnverifiable},
		{name: "no kid", tok: signRaw(t, jwt.SigningMethodHS256, pemBytes, `{"alg":"HS256"}`, pl), is: ErrTokenSignature},
		{name: "control HS256", tok: signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256"}`, pl), ok: true},
		{name: "control RS256", tok: signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256","kid":"rsa"}`, pl), ok: true},
	})
}

func TestVerifyWrongFamily(t *testing.T) {
	t.Parallel()
	testKeys(t)
	hv := provisionValidator(t, newTestClock().Now, hsValidator())
	pl := rawPayload().String()
	runVerifyCases(t, hv, []verifyCase{
		{name: "RS256", tok: signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256"}`, pl), is: ErrTokenUnverifiable, desc: "algorithm not allowed"},
		{name: "PS256", tok: signRaw(t, jwt.SigningMethodPS256, rsaKey, `{"alg":"PS256"}`, pl), is: ErrTokenUnverifiable},
		{name: "ES256", tok: signRaw(t, jwt.SigningMethodES256, ecKey, `{"alg":"ES256"}`, pl), is: ErrTokenUnverifiable},
		{name: "EdDSA", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, `{"alg":"EdDSA"}`, pl), is: ErrTokenUnverifiable},
		{name: "HS384 not derivable from 32 bytes", tok: signRaw(t, jwt.SigningMethodHS384, []byte(testSecret), `{"alg":"HS384"}`, pl), is: ErrTokenUnverifiable},
		{name: "alg as number", tok: signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":256}`, pl), is: ErrTokenMalformed},
		{name: "alg lower case", tok: signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"hs256"}`, pl), is: ErrTokenUnverifiable},
		{name: "wrong secret", tok: signRaw(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), `{"alg":"HS256"}`, pl), is: ErrTokenSignature},
		{name: "control", tok: signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256"}`, pl), ok: true},
	})
}

// ---- time claims ----

func TestVerifyTimeClaims(t *testing.T) {
	t.Parallel()
	v := provisionValidator(t, newTestClock().Now, hsValidator()) // leeway 30s
	zero := caddy.Duration(0)
	v0 := hsValidator()
	v0.Leeway = &zero
	v0 = provisionValidator(t, newTestClock().Now, v0)
	b := rawPayload()
	runVerifyCases(t, v, []verifyCase{
		{name: "valid", tok: hs256Raw(t, b), ok: true},
		{name: "expired", tok: hs256Raw(t, b.set("exp", unixAt(-time.Hour))), is: ErrTokenExpired, reason: reasonExpired},
		{name: "expired inside leeway", tok: hs256Raw(t, b.set("exp", unixAt(-10*time.Second))), ok: true},
		{name: "1s before boundary", tok: hs256Raw(t, b.set("exp", unixAt(-29*time.Second))), ok: true},
		{name: "exactly at boundary", tok: hs256Raw(t, b.set("exp", unixAt(-30*time.Second))), is: ErrTokenExpired, reason: reasonExpired},
		{name: "nbf far in the future", tok: hs256Raw(t, b.add("nbf", unixAt(time.Hour))), is: ErrTokenNotValidYet, reason: reasonInvalid},
		{name: "nbf beyond leeway", tok: hs256Raw(t, b.add("nbf", unixAt(31*time.Second))), is: ErrTokenNotValidYet},
		{name: "nbf at leeway", tok: hs256Raw(t, b.add("nbf", unixAt(30*time.Second))), ok: true},
		{name: "nbf within leeway", tok: hs256Raw(t, b.add("nbf", unixAt(10*time.Second))), ok: true},
		{name: "nbf past", tok: hs256Raw(t, b.add("nbf", unixAt(-time.Hour))), ok: true},
		{name: "nbf string", tok: hs256Raw(t, b.add("nbf", `"0"`)), is: ErrTokenInvalidClaims},
		{name: "iat in the future", tok: hs256Raw(t, b.set("iat", unixAt(time.Minute))), is: ErrTokenUsedBeforeIAT},
		{name: "iat within leeway", tok: hs256Raw(t, b.set("iat", unixAt(20*time.Second))), ok: true},
		{name: "iat missing", tok: hs256Raw(t, b.del("iat")), ok: true},
		{name: "iat string", tok: hs256Raw(t, b.set("iat", `"`+unixAt(0)+`"`)), is: ErrTokenInvalidClaims},
	})
	// NumericDates outside 0 ... 253402300799 (the end of year 9999) are
	// refused: negative, not finite, or absurdly far.
	for _, claim := range []string{"exp", "nbf", "iat"} {
		for _, bad := range []string{`-1`, `-0.5`, `-1e10`, `2.001e+206`, `253402300800`, `253402300799.5`, `1e999`, `99999999999999999999999`} {
			runVerifyCases(t, v, []verifyCase{{name: claim + " " + bad, tok: hs256Raw(t, b.set(claim, bad)), is: ErrTokenInvalidClaims}})
		}
	}
	runVerifyCases(t, v, []verifyCase{
		{name: "exp at the end of 9999", tok: hs256Raw(t, b.set("exp", `253402300799`)), ok: true},
		{name: "nbf 0", tok: hs256Raw(t, b.add("nbf", `0`)), ok: true},
		{name: "iat 0", tok: hs256Raw(t, b.set("iat", `0`)), ok: true},
		{name: "iat -0", tok: hs256Raw(t, b.set("iat", `-0`)), ok: true},
	})
	runVerifyCases(t, v0, []verifyCase{
		{name: "leeway 0: exp == now", tok: hs256Raw(t, b.set("exp", unixAt(0))), is: ErrTokenExpired},
		{name: "leeway 0: exp == now+1s", tok: hs256Raw(t, b.set("exp", unixAt(time.Second))), ok: true},
		{name: "leeway 0: expired 10s ago", tok: hs256Raw(t, b.set("exp", unixAt(-10*time.Second))), is: ErrTokenExpired},
		{name: "leeway 0: nbf now+1s", tok: hs256Raw(t, b.add("nbf", unixAt(time.Second))), is: ErrTokenNotValidYet},
		{name: "leeway 0: iat now+1s", tok: hs256Raw(t, b.set("iat", unixAt(time.Second))), is: ErrTokenUsedBeforeIAT},
	})

	ml := hsValidator()
	ml.MaxLifetime = caddy.Duration(time.Hour)
	ml = provisionValidator(t, newTestClock().Now, ml)
	runVerifyCases(t, ml, []verifyCase{
		{name: "lifetime 1h", tok: hs256Raw(t, b.set("iat", unixAt(-time.Minute)).set("exp", unixAt(59*time.Minute))), ok: true},
		{name: "lifetime exceeded", tok: hs256Raw(t, b.set("iat", unixAt(-time.Minute)).set("exp", unixAt(2*time.Hour))), is: ErrTokenInvalidClaims, desc: "max_lifetime"},
		{name: "lifetime exceeded by 1s", tok: hs256Raw(t, b.set("iat", unixAt(0)).set("exp", unixAt(time.Hour+time.Second))), is: ErrTokenInvalidClaims, desc: "max_lifetime"},
		{name: "iat missing", tok: hs256Raw(t, b.del("iat")), is: ErrTokenInvalidClaims, desc: "iat claim required"},
	})
}

// ---- iss and aud ----

func TestVerifyIssuerAudience(t *testing.T) {
	t.Parallel()
	v := provisionValidator(t, newTestClock().Now, hsValidator())
	b := rawPayload()
	runVerifyCases(t, v, []verifyCase{
		{name: "wrong iss", tok: hs256Raw(t, b.set("iss", `"evil"`)), is: ErrInvalidIssuer},
		{name: "iss differs in case", tok: hs256Raw(t, b.set("iss", `"ISS"`)), is: ErrInvalidIssuer},
		{name: "iss with trailing space", tok: hs256Raw(t, b.set("iss", `"iss "`)), is: ErrInvalidIssuer},
		{name: "missing iss", tok: hs256Raw(t, b.del("iss")), is: ErrInvalidIssuer},
		{name: "iss number", tok: hs256Raw(t, b.set("iss", `123`)), is: ErrInvalidIssuer},
		{name: "iss array", tok: hs256Raw(t, b.set("iss", `["iss"]`)), is: ErrInvalidIssuer},
		{name: "iss null", tok: hs256Raw(t, b.set("iss", `null`)), is: ErrInvalidIssuer},
		{name: "escaped iss value", tok: hs256Raw(t, b.set("iss", `"\u0069ss"`)), ok: true},
		{name: "wrong aud", tok: hs256Raw(t, b.set("aud", `"other"`)), is: ErrInvalidAudience},
		{name: "missing aud", tok: hs256Raw(t, b.del("aud")), is: ErrInvalidAudience},
		{name: "aud array with accepted", tok: hs256Raw(t, b.set("aud", `["x","aud"]`)), ok: true},
		{name: "aud array without", tok: hs256Raw(t, b.set("aud", `["x","y"]`)), is: ErrInvalidAudience},
		{name: "aud empty array", tok: hs256Raw(t, b.set("aud", `[]`)), is: ErrInvalidAudience},
		{name: "aud nested array", tok: hs256Raw(t, b.set("aud", `[["aud"]]`)), is: ErrInvalidAudience},
		{name: "aud number", tok: hs256Raw(t, b.set("aud", `1`)), is: ErrInvalidAudience},
		{name: "aud object", tok: hs256Raw(t, b.set("aud", `{"aud":"aud"}`)), is: ErrInvalidAudience},
		{name: "aud empty string", tok: hs256Raw(t, b.set("aud", `""`)), is: ErrInvalidAudience},
	})
	// RFC 7519 §4.1.3: aud is a string or an array of strings. An array
	// with anything else in it is refused even when a string in it
	// matches, wherever the odd element stands.
	for _, odd := range []string{`5`, `null`, `true`, `false`, `{"a":"aud"}`, `["aud"]`, `1.5`, `-0`} {
		runVerifyCases(t, v, []verifyCase{
			{name: "aud non-string after " + odd, tok: hs256Raw(t, b.set("aud", `["aud",`+odd+`]`)), is: ErrInvalidAudience, desc: "aud must be a string or an array of strings"},
			{name: "aud non-string before " + odd, tok: hs256Raw(t, b.set("aud", `[`+odd+`,"aud"]`)), is: ErrInvalidAudience, desc: "aud must be a string or an array of strings"},
			{name: "aud non-string between " + odd, tok: hs256Raw(t, b.set("aud", `["x", `+odd+` ,"aud"]`)), is: ErrInvalidAudience, desc: "aud must be a string or an array of strings"},
		})
	}
	runVerifyCases(t, v, []verifyCase{
		{name: "aud strings with spaces", tok: hs256Raw(t, b.set("aud", `[ "x" , "aud" ]`)), ok: true},
		{name: "aud escaped element", tok: hs256Raw(t, b.set("aud", `["x","\u0061ud"]`)), ok: true},
	})
	multi := hsValidator()
	multi.Issuers = []string{"a", "b"}
	multi.Audiences = []string{"x", "y"}
	multi = provisionValidator(t, newTestClock().Now, multi)
	runVerifyCases(t, multi, []verifyCase{
		{name: "second iss, second aud", tok: hs256Raw(t, b.set("iss", `"b"`).set("aud", `"y"`)), ok: true},
		{name: "first iss, aud array", tok: hs256Raw(t, b.set("iss", `"a"`).set("aud", `["z","x"]`)), ok: true},
		{name: "iss of another validator", tok: hs256Raw(t, b), is: ErrInvalidIssuer},
	})
}

// ---- exp shapes and duplicated / colliding claims ----

func TestVerifyClaimShapes(t *testing.T) {
	t.Parallel()
	v := hsValidator()
	v.UserID = &UserIDSource{Claim: "uid"}
	v = provisionValidator(t, newTestClock().Now, v)
	b := rawPayload().add("uid", `"u1"`)
	future, past := unixAt(time.Hour), unixAt(-time.Hour)
	runVerifyCases(t, v, []verifyCase{
		{name: "control", tok: hs256Raw(t, b), ok: true},
		{name: "exp missing", tok: hs256Raw(t, b.del("exp")), is: ErrTokenInvalidClaims, desc: "exp claim required"},
		{name: "exp 0", tok: hs256Raw(t, b.set("exp", `0`)), is: ErrTokenExpired},
		{name: "exp -1", tok: hs256Raw(t, b.set("exp", `-1`)), is: ErrTokenInvalidClaims, desc: "exp out of range"},
		{name: "exp string", tok: hs256Raw(t, b.set("exp", `"9999999999"`)), is: ErrTokenInvalidClaims, desc: "exp is not a number"},
		{name: "exp float future", tok: hs256Raw(t, b.set("exp", future+".5")), ok: true},
		{name: "exp float past", tok: hs256Raw(t, b.set("exp", past+".5")), is: ErrTokenExpired},
		{name: "exp exponent", tok: hs256Raw(t, b.set("exp", `9.999999999e9`)), ok: true},
		{name: "exp overflow", tok: hs256Raw(t, b.set("exp", `1e999`)), is: ErrTokenInvalidClaims},
		{name: "exp huge", tok: hs256Raw(t, b.set("exp", `99999999999999999999999`)), is: ErrTokenInvalidClaims, desc: "exp out of range"},
		{name: "exp null", tok: hs256Raw(t, b.set("exp", `null`)), is: ErrTokenInvalidClaims},
		{name: "exp true", tok: hs256Raw(t, b.set("exp", `true`)), is: ErrTokenInvalidClaims},
		{name: "exp array", tok: hs256Raw(t, b.set("exp", `[`+future+`]`)), is: ErrTokenInvalidClaims},
		{name: "exp object", tok: hs256Raw(t, b.set("exp", `{"v":`+future+`}`)), is: ErrTokenInvalidClaims},
		{name: "EXP alone", tok: hs256Raw(t, b.del("exp").add("EXP", future)), is: ErrTokenMalformed, desc: "collides"},
		{name: "exp and EXP", tok: hs256Raw(t, b.add("EXP", past)), is: ErrTokenMalformed, desc: "collides"},
		{name: "Exp before exp", tok: hs256Raw(t, b.del("exp").add("Exp", future).add("exp", future)), is: ErrTokenMalformed},
		{name: "duplicate exp future last", tok: hs256Raw(t, b.set("exp", past).add("exp", future)), is: ErrTokenMalformed, desc: "duplicate exp"},
		{name: "duplicate exp past last", tok: hs256Raw(t, b.add("exp", past)), is: ErrTokenMalformed, desc: "duplicate exp"},
		{name: "escaped exp duplicate", tok: hs256Raw(t, b.addRawKey(`"\u0065xp"`, past)), is: ErrTokenMalformed, desc: "duplicate exp"},
		{name: "escaped exp alone", tok: hs256Raw(t, b.del("exp").addRawKey(`"\u0065xp"`, future)), ok: true},
		{name: "escaped EXP variant", tok: hs256Raw(t, b.addRawKey(`"\u0045XP"`, future)), is: ErrTokenMalformed, desc: "collides"},
		{name: "duplicate iss", tok: hs256Raw(t, b.add("iss", `"iss"`)), is: ErrTokenMalformed, desc: "duplicate iss"},
		{name: "duplicate aud", tok: hs256Raw(t, b.add("aud", `"evil"`)), is: ErrTokenMalformed},
		{name: "Aud variant", tok: hs256Raw(t, b.add("Aud", `"evil"`)), is: ErrTokenMalformed},
		{name: "duplicate nbf", tok: hs256Raw(t, b.add("nbf", past).add("nbf", future)), is: ErrTokenMalformed},
		{name: "duplicate sub", tok: hs256Raw(t, b.add("sub", `"bob"`)), is: ErrTokenMalformed},
		{name: "duplicate user id claim", tok: hs256Raw(t, b.add("uid", `"u2"`)), is: ErrTokenMalformed, desc: "duplicate uid"},
		{name: "UID variant", tok: hs256Raw(t, b.add("UID", `"u2"`)), is: ErrTokenMalformed},
		{name: "duplicate sid", tok: hs256Raw(t, b.add("sid", `"a"`).add("sid", `"b"`)), is: ErrTokenMalformed},
		{name: "duplicate jti", tok: hs256Raw(t, b.add("jti", `"a"`).add("jti", `"a"`)), is: ErrTokenMalformed},
		{name: "nested exp is not exp", tok: hs256Raw(t, b.del("exp").add("x", `{"exp":`+future+`}`)), is: ErrTokenInvalidClaims, desc: "exp claim required"},
		{name: "whitespace around members", tok: hs256Raw(t, stringer(" {\n \"iss\" : \"iss\" ,\t\"aud\":\"aud\",\"uid\":\"u1\",\"exp\":"+future+" } ")), ok: true},
		{name: "payload array", tok: hs256Raw(t, stringer(`[`+b.String()+`]`)), is: ErrTokenMalformed},
		{name: "payload not JSON", tok: hs256Raw(t, stringer(`{"exp":`+future+`,}`)), is: ErrTokenMalformed},
		{name: "payload trailing data", tok: hs256Raw(t, stringer(b.String()+`{}`)), is: ErrTokenMalformed},
		{name: "payload empty", tok: hs256Raw(t, stringer(``)), is: ErrTokenMalformed},
	})
}

// flip returns a base64url character other than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

type stringer string

func (s stringer) String() string { return string(s) }

// ---- structure ----

func TestVerifyStructure(t *testing.T) {
	t.Parallel()
	v := provisionValidator(t, newTestClock().Now, hsValidator())
	pl := rawPayload().String()
	hs := func(hdr string) string { return signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), hdr, pl) }
	good := hs(`{"alg":"HS256","typ":"JWT"}`)
	parts := strings.Split(good, ".")

	// padding: pick a header whose encoding needs padding
	padHdr := `{"alg":"HS256" }` // 16 bytes: standard encoding pads with ==
	padded := base64.URLEncoding.EncodeToString([]byte(padHdr))
	if !strings.Contains(padded, "=") {
		t.Fatalf("test header %q does not need padding", padHdr)
	}
	unpaddedTok := hs(padHdr)
	up := strings.Split(unpaddedTok, ".")
	paddedTok := padded + "." + up[1] + "." + up[2]

	// non-canonical base64: set the unused low bits of the last character
	nonCanon := func(seg string) string {
		const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		last := strings.IndexByte(alpha, seg[len(seg)-1])
		unused := map[int]int{2: 4, 3: 2}[len(seg)%4] // bits per final char that carry nothing
		if unused == 0 {
			t.Fatalf("segment of length %d has no unused bits", len(seg))
		}
		alt := seg[:len(seg)-1] + string(alpha[last|1])
		if alt == seg {
			t.Fatalf("last char already has low bit set")
		}
		a, err1 := base64.RawURLEncoding.DecodeString(seg)
		b, err2 := base64.RawURLEncoding.DecodeString(alt)
		if err1 != nil || err2 != nil || string(a) != string(b) {
			t.Fatalf("non-canonical variant does not decode to the same bytes")
		}
		return alt
	}
	if len(parts[2])%4 == 0 || len(parts[1])%4 == 0 {
		t.Fatalf("segment lengths %d/%d leave no unused bits", len(parts[1]), len(parts[2]))
	}

	big := rawPayload().add("pad", `"`+strings.Repeat("x", 9000)+`"`)
	bigTok := hs256Raw(t, big)

	runVerifyCases(t, v, []verifyCase{
		{name: "control", tok: good, ok: true},
		{name: "control unpadded header", tok: unpaddedTok, ok: true},
		{name: "crit", tok: hs(`{"alg":"HS256","crit":["exp"]}`), is: ErrTokenMalformed, desc: "crit"},
		{name: "crit empty", tok: hs(`{"alg":"HS256","crit":[]}`), is: ErrTokenMalformed, desc: "crit"},
		{name: "CRIT variant", tok: hs(`{"alg":"HS256","CRIT":["x"]}`), is: ErrTokenMalformed},
		{name: "duplicate alg", tok: hs(`{"alg":"HS256","alg":"HS256"}`), is: ErrTokenMalformed, desc: "duplicate alg"},
		{name: "duplicate alg none last", tok: hs(`{"alg":"HS256","alg":"none"}`), is: ErrTokenMalformed},
		{name: "duplicate alg none first", tok: hs(`{"alg":"none","alg":"HS256"}`), is: ErrTokenMalformed},
		{name: "escaped duplicate alg", tok: hs(`{"alg":"HS256","\u0061lg":"HS256"}`), is: ErrTokenMalformed, desc: "duplicate alg"},
		{name: "ALG variant", tok: hs(`{"alg":"HS256","ALG":"none"}`), is: ErrTokenMalformed, desc: "collides"},
		{name: "duplicate kid", tok: hs(`{"alg":"HS256","kid":"a","kid":"b"}`), is: ErrTokenMalformed},
		{name: "duplicate typ", tok: hs(`{"alg":"HS256","typ":"JWT","typ":"JWT"}`), is: ErrTokenMalformed},
		{name: "kid number", tok: hs(`{"alg":"HS256","kid":1}`), is: ErrTokenMalformed},
		{name: "alg missing", tok: hs(`{"typ":"JWT"}`), is: ErrTokenMalformed, desc: "alg missing"},
		{name: "header array", tok: hs(`["alg","HS256"]`), is: ErrTokenMalformed},
		{name: "header not JSON", tok: hs(`{"alg":"HS256"`), is: ErrTokenMalformed},
		{name: "header empty", tok: "." + parts[1] + "." + parts[2], is: ErrTokenMalformed},
		{name: "1 segment", tok: parts[0], is: ErrTokenMalformed, desc: "compact"},
		{name: "2 segments", tok: parts[0] + "." + parts[1], is: ErrTokenMalformed, desc: "compact"},
		{name: "4 segments", tok: good + "." + parts[2], is: ErrTokenMalformed, desc: "too many"},
		{name: "4 segments empty last", tok: good + ".", is: ErrTokenMalformed},
		{name: "5 segments (JWE shape)", tok: parts[0] + "." + parts[1] + ".x." + parts[2] + ".y", is: ErrTokenMalformed},
		{name: "empty", tok: "", is: ErrTokenMalformed},
		{name: "dots only", tok: "..", is: ErrTokenMalformed},
		{name: "padded header", tok: paddedTok, is: ErrTokenMalformed},
		{name: "padded signature", tok: good + "=", is: ErrTokenMalformed},
		{name: "padded payload", tok: parts[0] + "." + parts[1] + "==." + parts[2], is: ErrTokenMalformed},
		{name: "std alphabet +", tok: parts[0] + "." + parts[1] + ".+" + parts[2][1:], is: ErrTokenMalformed, desc: "base64url"},
		{name: "std alphabet /", tok: parts[0] + "./" + parts[1][1:] + "." + parts[2], is: ErrTokenMalformed, desc: "base64url"},
		{name: "non-canonical signature", tok: parts[0] + "." + parts[1] + "." + nonCanon(parts[2]), is: ErrTokenMalformed},
		{name: "non-canonical payload", tok: parts[0] + "." + nonCanon(parts[1]) + "." + parts[2], is: ErrTokenMalformed},
		{name: "newline inside", tok: parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2], is: ErrTokenMalformed},
		{name: "trailing newline", tok: good + "\n", is: ErrTokenMalformed},
		{name: "space inside", tok: parts[0] + ". " + parts[1] + "." + parts[2], is: ErrTokenMalformed},
		{name: "leading space", tok: " " + good, is: ErrTokenMalformed},
		{name: "tab inside", tok: parts[0] + "\t." + parts[1] + "." + parts[2], is: ErrTokenMalformed},
		{name: "NUL inside", tok: parts[0] + "." + parts[1] + "\x00." + parts[2], is: ErrTokenMalformed},
		{name: "empty signature", tok: parts[0] + "." + parts[1] + ".", is: ErrTokenSignature},
		{name: "truncated signature", tok: good[:len(good)-2], is: ErrTokenMalformed},
		{name: "tampered signature", tok: good[:len(good)-10] + flip(good[len(good)-10]) + good[len(good)-9:], is: ErrTokenSignature},
		{name: "payload swapped", tok: parts[0] + "." + strings.Split(hs256Raw(t, rawPayload().set("sub", `"mallory"`)), ".")[1] + "." + parts[2], is: ErrTokenSignature},
		{name: "oversized signed", tok: bigTok, is: ErrTokenTooLarge, reason: reasonMalformed},
		{name: "oversized garbage", tok: strings.Repeat("!", maxTokenSize+1), is: ErrTokenTooLarge},
		{name: "oversized no dots", tok: strings.Repeat("A", 1<<20), is: ErrTokenTooLarge},
		{name: "oversized 4 segments", tok: good + "." + strings.Repeat("A", maxTokenSize), is: ErrTokenTooLarge},
	})
	if len(bigTok) <= maxTokenSize {
		t.Fatalf("oversized token is only %d bytes", len(bigTok))
	}

	// the size limit is inclusive: a token of exactly 8 KiB is verified
	var exact string
	for n := 5000; n < 7000 && exact == ""; n++ {
		for _, hdr := range []string{`{"alg":"HS256"}`, `{"alg":"HS256","typ":"JWT"}`} {
			tok := signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), hdr, rawPayload().add("pad", `"`+strings.Repeat("x", n)+`"`).String())
			if len(tok) == maxTokenSize {
				exact = tok
				break
			}
		}
	}
	if exact == "" {
		t.Fatal("could not build a token of exactly maxTokenSize bytes")
	}
	runVerifyCases(t, v, []verifyCase{
		{name: "exactly 8 KiB", tok: exact, ok: true},
		{name: "8 KiB + 1", tok: exact + "A", is: ErrTokenTooLarge},
	})
}

// ---- unknown kid ----

func TestVerifyUnknownKIDIs401(t *testing.T) {
	t.Parallel()
	testKeys(t)
	p := writePEM(t, rsaKey.Public())
	a := provisionApp(t, newTestClock().Now, map[string]*Validator{"kids": {
		Issuers: []string{"iss"}, Audiences: []string{"aud"},
		PublicKeyFiles: []PublicKeyFile{{Path: p, KID: "k1"}},
	}})
	v, _ := a.validator("kids")
	pl := rawPayload().String()
	unknown := signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256","kid":"k2"}`, pl)
	runVerifyCases(t, v, []verifyCase{
		{name: "known kid", tok: signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256","kid":"k1"}`, pl), ok: true},
		{name: "no kid", tok: signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256"}`, pl), ok: true},
		{name: "unknown kid", tok: unknown, is: ErrTokenUnverifiable, desc: "no key"},
		{name: "empty kid", tok: signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256","kid":""}`, pl), ok: true},
		{name: "huge kid", tok: signRaw(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256","kid":"`+strings.Repeat("k", 4000)+`"}`, pl), is: ErrTokenUnverifiable},
	})

	// through the handler: 401 with an RFC 6750 challenge, never 500
	h := provisionHandler(t, a, &Handler{Validators: []string{"kids"}})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+unknown)
	res := serve(t, h, r, nil)
	w, repl, called, err := res.w, res.repl, res.called, res.err
	if called {
		t.Fatal("next handler called")
	}
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("error %v, want a 401 HandlerError", err)
	}
	if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	if reason, _ := repl.GetString("http.auth.jwt.error"); reason != reasonInvalid {
		t.Fatalf("reason %q", reason)
	}
}

// ---- typ ----

func TestVerifyTypAllowList(t *testing.T) {
	t.Parallel()
	pl := rawPayload().String()
	hs := func(hdr string) string { return signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), hdr, pl) }
	for _, allowed := range [][]string{{"at+jwt"}, {"application/at+jwt"}} {
		v := hsValidator()
		v.Types = allowed
		v = provisionValidator(t, newTestClock().Now, v)
		t.Run(allowed[0], func(t *testing.T) {
			runVerifyCases(t, v, []verifyCase{
				{name: "at+jwt", tok: hs(`{"alg":"HS256","typ":"at+jwt"}`), ok: true},
				{name: "application/at+jwt", tok: hs(`{"alg":"HS256","typ":"application/at+jwt"}`), ok: true},
				{name: "AT+JWT", tok: hs(`{"alg":"HS256","typ":"AT+JWT"}`), ok: true},
				{name: "JWT", tok: hs(`{"alg":"HS256","typ":"JWT"}`), is: ErrTokenUnverifiable, desc: "typ"},
				{name: "application/jwt", tok: hs(`{"alg":"HS256","typ":"application/jwt"}`), is: ErrTokenUnverifiable},
				{name: "at+jwt with suffix", tok: hs(`{"alg":"HS256","typ":"at+jwt2"}`), is: ErrTokenUnverifiable},
				{name: "missing", tok: hs(`{"alg":"HS256"}`), is: ErrTokenUnverifiable, desc: "typ"},
				{name: "number", tok: hs(`{"alg":"HS256","typ":1}`), is: ErrTokenUnverifiable},
				{name: "TYP variant", tok: hs(`{"alg":"HS256","typ":"at+jwt","TYP":"x"}`), is: ErrTokenMalformed},
			})
		})
	}
	// without an allow-list any typ (or none) is accepted
	v := provisionValidator(t, newTestClock().Now, hsValidator())
	runVerifyCases(t, v, []verifyCase{
		{name: "any typ", tok: hs(`{"alg":"HS256","typ":"whatever"}`), ok: true},
		{name: "no typ", tok: hs(`{"alg":"HS256"}`), ok: true},
	})
}

// ---- require ----

func TestAuthorizeRequire(t *testing.T) {
	t.Parallel()
	mk := func(reqs ...ClaimRequirement) *Validator {
		v := hsValidator()
		v.Require = reqs
		return provisionValidator(t, newTestClock().Now, v)
	}
	roles := mk(ClaimRequirement{Claim: "roles", Values: []string{"admin", "ops"}})
	scope := mk(ClaimRequirement{Claim: "scope", Values: []string{"write"}})
	scp := mk(ClaimRequirement{Claim: "scp", Values: []string{"write"}})
	both := mk(ClaimRequirement{Claim: "roles", Values: []string{"admin"}}, ClaimRequirement{Claim: "scope", Values: []string{"write"}})
	b := rawPayload()
	cases := []struct {
		name string
		v    *Validator
		pl   rawObject
		ok   bool
	}{
		{"roles array has admin", roles, b.add("roles", `["user","admin"]`), true},
		{"roles array has ops", roles, b.add("roles", `["ops"]`), true},
		{"roles array lacks", roles, b.add("roles", `["user","Admin"]`), false},
		{"roles string admin", roles, b.add("roles", `"admin"`), true},
		{"roles string not split", roles, b.add("roles", `"user admin"`), false},
		{"roles number", roles, b.add("roles", `1`), false},
		{"roles object", roles, b.add("roles", `{"admin":true}`), false},
		{"roles nested array", roles, b.add("roles", `[["admin"]]`), false},
		{"roles missing", roles, b, false},
		{"roles null", roles, b.add("roles", `null`), false},
		{"scope string", scope, b.add("scope", `"read write"`), true},
		{"scope string single", scope, b.add("scope", `"write"`), true},
		{"scope string extra spaces", scope, b.add("scope", `"  read   write "`), true},
		{"scope string lacks", scope, b.add("scope", `"read writer"`), false},
		{"scope array", scope, b.add("scope", `["read","write"]`), true},
		{"scope array with joined string", scope, b.add("scope", `["read write"]`), false},
		{"scope missing", scope, b, false},
		{"scp array", scp, b.add("scp", `["read","write"]`), true},
		{"scp string", scp, b.add("scp", `"read write"`), true},
		{"scp lacks", scp, b.add("scp", `["read"]`), false},
		{"scp missing", scp, b.add("scope", `"write"`), false},
		{"both hold", both, b.add("roles", `["admin"]`).add("scope", `"write"`), true},
		{"only one holds", both, b.add("roles", `["admin"]`).add("scope", `"read"`), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.v.verify(hs256Raw(t, tc.pl))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			err = tc.v.authorize(id)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("authorized")
			}
			ae := reject(err)
			if ae.status != http.StatusForbidden || ae.code != "insufficient_scope" || ae.reason != reasonForbidden || !errors.Is(err, ErrInsufficientScope) {
				t.Fatalf("reject: %d %q %q (%v)", ae.status, ae.code, ae.reason, err)
			}
		})
	}
	// a duplicated required claim cannot smuggle a second value past the check
	if _, err := roles.verify(hs256Raw(t, b.add("roles", `["user"]`).add("roles", `["admin"]`))); !errors.Is(err, ErrTokenMalformed) {
		t.Fatalf("duplicate roles: %v", err)
	}
}

// ---- user and partner id ----

func TestVerifyUserAndPartnerID(t *testing.T) {
	t.Parallel()
	mk := func(u *UserIDSource, p *PartnerIDSource) *Validator {
		v := hsValidator()
		v.UserID, v.PartnerID = u, p
		return provisionValidator(t, newTestClock().Now, v)
	}
	def := mk(nil, nil)
	uid := mk(&UserIDSource{Claim: "uid"}, nil)
	static := mk(&UserIDSource{Static: "svc"}, nil)
	popt := mk(nil, &PartnerIDSource{Claim: "pid"})
	preq := mk(nil, &PartnerIDSource{Claim: "pid", Required: true})
	b := rawPayload()
	cases := []struct {
		name          string
		v             *Validator
		pl            rawObject
		user, partner string
		fail          string // error substring; empty: accepted
	}{
		{"default sub", def, b, "alice", "", ""},
		{"default sub missing", def, b.del("sub"), "", "", "no usable sub"},
		{"default sub empty", def, b.set("sub", `""`), "", "", "empty sub"},
		{"default sub object", def, b.set("sub", `{"a":1}`), "", "", "no usable sub"},
		{"claim string", uid, b.add("uid", `"u-7"`), "u-7", "", ""},
		{"claim number", uid, b.add("uid", `42`), "42", "", ""},
		{"claim escaped string", uid, b.add("uid", `"a\"b"`), `a"b`, "", ""},
		{"claim missing", uid, b, "", "", "no usable uid"},
		{"claim bool", uid, b.add("uid", `true`), "", "", "no usable uid"},
		{"claim null", uid, b.add("uid", `null`), "", "", "no usable uid"},
		{"claim array", uid, b.add("uid", `["u"]`), "", "", "no usable uid"},
		{"static", static, b, "svc", "", ""},
		{"static without sub", static, b.del("sub"), "svc", "", ""},
		{"partner optional missing", popt, b, "alice", "", ""},
		{"partner optional string", popt, b.add("pid", `"p1"`), "alice", "p1", ""},
		{"partner optional number", popt, b.add("pid", `7`), "alice", "7", ""},
		{"partner required present", preq, b.add("pid", `"p1"`), "alice", "p1", ""},
		{"partner required missing", preq, b, "", "", "no pid"},
		{"partner required empty", preq, b.add("pid", `""`), "", "", "no pid"},
		{"partner required object", preq, b.add("pid", `{}`), "", "", "no pid"},
		{"partner duplicated", preq, b.add("pid", `"p1"`).add("pid", `"p2"`), "", "", "duplicate pid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.v.verify(hs256Raw(t, tc.pl))
			if tc.fail != "" {
				if err == nil {
					t.Fatalf("accepted as %q/%q", id.userID, id.partnerID)
				}
				ae := reject(err)
				if ae.status != http.StatusUnauthorized || !strings.Contains(err.Error(), tc.fail) {
					t.Fatalf("got %d %v, want 401 containing %q", ae.status, err, tc.fail)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if id.userID != tc.user || id.partnerID != tc.partner {
				t.Fatalf("user %q partner %q, want %q %q", id.userID, id.partnerID, tc.user, tc.partner)
			}
		})
	}
}

// ---- key-carrying headers are ignored ----

func TestVerifyIgnoresKeyHeaders(t *testing.T) {
	t.Parallel()
	testKeys(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer srv.Close()

	v := provisionValidator(t, newTestClock().Now, &Validator{
		Issuers: []string{"iss"}, Audiences: []string{"aud"},
		PublicKeyFiles: []PublicKeyFile{{Path: writePEM(t, ecKey.Public())}},
	})
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := attacker.PublicKey.ECDH()
	pt := raw.Bytes()
	jwk := fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`,
		base64.RawURLEncoding.EncodeToString(pt[1:33]), base64.RawURLEncoding.EncodeToString(pt[33:]))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil"}, NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &attacker.PublicKey, attacker)
	if err != nil {
		t.Fatal(err)
	}
	x5c, _ := json.Marshal([]string{base64.StdEncoding.EncodeToString(certDER)})
	pl := rawPayload().String()
	headers := map[string]string{
		"jwk": `{"alg":"ES256","jwk":` + jwk + `}`,
		"jku": `{"alg":"ES256","jku":"` + srv.URL + `/jwks"}`,
		"x5u": `{"alg":"ES256","x5u":"` + srv.URL + `/cert"}`,
		"x5c": `{"alg":"ES256","x5c":` + string(x5c) + `}`,
		"all": `{"alg":"ES256","kid":"evil","jwk":` + jwk + `,"jku":"` + srv.URL + `/jwks","x5u":"` + srv.URL + `/c","x5c":` + string(x5c) + `}`,
	}
	var cases []verifyCase
	for name, hdr := range headers {
		cases = append(cases,
			verifyCase{name: name + "/attacker key", tok: signRaw(t, jwt.SigningMethodES256, attacker, hdr, pl), is: ErrTokenSignature},
			// the headers are merely ignored: the configured key still works
			verifyCase{name: name + "/configured key", tok: signRaw(t, jwt.SigningMethodES256, ecKey, hdr, pl), ok: true},
		)
	}
	runVerifyCases(t, v, cases)
	if n := hits.Load(); n != 0 {
		t.Fatalf("a URL from a token header was fetched %d times", n)
	}
}

// TestProvisionErrors checks that Caddy refuses an unsafe or broken
// validator and that the error names the validator and what is wrong.
func TestProvisionErrors(t *testing.T) {
	extraKeys(t)
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
		{"RSA 1024", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = writePEM(t, rsa1024Key.Public()) }), []string{"1024 bits", "2048"}},
		{"missing key file", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = filepath.Join(dir, "missing.pem") }), []string{"public_key_file", "missing.pem", "no such file"}},
		{"not PEM", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = secretFile }), []string{"no PEM block"}},
		{"private key PEM", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = writePEMBlock(t, "PRIVATE KEY", privDER) }), []string{"PRIVATE KEY", "not a public key"}},
		{"corrupt PKIX", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = writePEMBlock(t, "PUBLIC KEY", []byte("junk")) }), []string{"public_key_file"}},
		{"P-224 key", rsaV(func(v *Validator) { v.PublicKeyFiles[0].Path = writePEM(t, ecP224Key.Public()) }), []string{"unsupported EC curve", "P-224"}},
		{"missing jwks_file", base(func(v *Validator) { v.Secret = ""; v.JWKSFile = filepath.Join(dir, "none.json") }), []string{"jwks_file", "none.json"}},
		{"jwks_file with oct", base(func(v *Validator) {
			v.Secret = ""
			v.JWKSFile = jwksPath(`{"keys":[{"kty":"oct","kid":"h","k":"` + base64.RawURLEncoding.EncodeToString([]byte(testSecret)) + `"}]}`)
		}), []string{"symmetric (oct) keys are refused"}},
		{"jwks_file garbage", base(func(v *Validator) { v.Secret = ""; v.JWKSFile = jwksPath(`{"keys":`) }), []string{"jwks_file"}},
		{"jwks_file empty set", base(func(v *Validator) { v.Secret = ""; v.JWKSFile = jwksPath(`{"keys":[]}`) }), []string{"no signing key"}},
		{"jwks_file ok", base(func(v *Validator) {
			v.Secret = ""
			v.JWKSFile = jwksPath(`{"keys":[` + ecJWK("e1", ecKey, "ES256") + `]}`)
		}), nil},
		{"jwks_file alg mismatch", base(func(v *Validator) {
			v.Secret = ""
			v.JWKSFile = jwksPath(`{"keys":[` + ecJWK("e1", ecKey, "RS256") + `]}`)
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
			err := provisionErr(t, &App{Validators: map[string]*Validator{"test": tc.v}})
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
