package jwtauth

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// TestScanClaimsFoldedPath: the lower-case fast path of scanClaims reaches
// the same verdict, with the same message, as the EqualFold loop it stands
// in for, on exact names, case variants, duplicates, escaped names and
// non-ASCII names that fold onto ASCII ones (U+017F, U+212A).
func TestScanClaimsFoldedPath(t *testing.T) {
	v := hsValidator()
	v.Require = []ClaimRequirement{{Claim: "roles", Values: []string{"a"}}}
	provisionValidator(t, newTestClock().Now, v)
	if v.trackedFold == nil {
		t.Fatal("the fast path is off for plain ASCII claims")
	}
	payloads := []string{
		`{"iss":"iss","aud":"aud","sub":"alice","exp":1,"roles":"a","x":1}`,
		`{"ISS":"iss"}`, `{"Sub":"a"}`, `{"roLes":"a"}`, `{"sub":"a","sub":"b"}`,
		`{"su\u0062":"a","sub":"b"}`, `{"\u017fub":"a"}`, `{"\u212aid":1,"jti":"x"}`,
		`{"j\u0054i":"x"}`, `{"` + strings.Repeat("s", 70) + `":1}`, `{"exp":1,"EXP":2}`,
	}
	for _, p := range payloads {
		fast, errFast := v.scanClaims(jsonObject(p))
		fold := v.trackedFold
		v.trackedFold = nil
		slow, errSlow := v.scanClaims(jsonObject(p))
		v.trackedFold = fold
		if (errFast == nil) != (errSlow == nil) || (errFast != nil && errFast.Error() != errSlow.Error()) {
			t.Errorf("%s: fast %v, slow %v", p, errFast, errSlow)
		}
		if string(fast.iss) != string(slow.iss) || string(fast.exp) != string(slow.exp) || string(fast.user) != string(slow.user) {
			t.Errorf("%s: fast and slow paths read different values", p)
		}
	}
	if _, err := v.scanClaims(jsonObject(`{"Sub":"a"}`)); err == nil || !strings.Contains(err.Error(), "collides with sub") {
		t.Fatalf("case variant: %v", err)
	}

	// tracked names that fold onto each other turn the fast path off
	w := hsValidator()
	w.Require = []ClaimRequirement{{Claim: "Sub", Values: []string{"a"}}}
	provisionValidator(t, newTestClock().Now, w)
	if w.trackedFold != nil {
		t.Fatal("fast path on for tracked names sub and Sub")
	}
	if _, err := w.scanClaims(jsonObject(`{"sub":"a"}`)); err == nil || !strings.Contains(err.Error(), "collides with Sub") {
		t.Fatalf("sub beside a tracked Sub: %v", err)
	}
}

// TestHMACVerifier: the pooled keyed states agree with golang-jwt's HMAC
// check for every HS algorithm, refuse a flipped bit, a truncated MAC and
// another algorithm's MAC, and stay correct when used concurrently.
func TestHMACVerifier(t *testing.T) {
	secret := []byte(strings.Repeat("k", 64))
	k, err := newVerKey("", secret, 0, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	input := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0"
	var wg sync.WaitGroup
	for _, name := range []string{"HS256", "HS384", "HS512"} {
		a := lookupAlg(name)
		if k.hmacs[a.bit] == nil {
			t.Fatalf("%s: no pooled verifier", name)
		}
		sig, err := a.method.Sign(input, secret)
		if err != nil {
			t.Fatal(err)
		}
		if !k.verify(a, input, sig) || a.method.Verify(input, sig, secret) != nil {
			t.Fatalf("%s: a valid MAC is refused", name)
		}
		bad := append([]byte{}, sig...)
		bad[3] ^= 1
		if k.verify(a, input, bad) || k.verify(a, input, sig[:len(sig)-1]) || k.verify(a, input+"x", sig) {
			t.Fatalf("%s: a wrong MAC is accepted", name)
		}
		other := lookupAlg("HS256")
		if a != other && k.verify(other, input, sig) {
			t.Fatalf("%s's MAC accepted as HS256", name)
		}
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					in := input + strings.Repeat("a", i%7)
					want, _ := a.method.Sign(in, secret)
					if !k.verify(a, in, want) || k.verify(a, in, bad) {
						t.Errorf("%s: concurrent verification disagrees", name)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	// an HMAC state is never shared with a key of another secret
	k2, _ := newVerKey("", []byte(strings.Repeat("j", 64)), 0, "", "test")
	a := lookupAlg("HS256")
	sig, _ := a.method.Sign(input, secret)
	if k2.verify(a, input, sig) {
		t.Fatal("a MAC under one secret verifies under another")
	}
}

// FuzzValidJSON: validJSON, which stands in for json.Valid on every header
// and payload, agrees with it on any input.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : [1, -0.5e+3, "x\u00e9\n", true, false, null, {}] } `, `{"a":1,}`, `{"a"}`,
		`[1 2]`, `01`, `-`, `1.`, `1e`, `.5`, `"\x"`, `"\u12g4"`, "\"\x01\"", `tru`, `nul`,
		`{"a":1}x`, `"abc`, `[`, `{"a":{"b":[[]]}}`, "\"\xff\"", `1E+9`, `-0`, `--1`, `{"a":1 "b":2}`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}
