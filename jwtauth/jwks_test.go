package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// newECKey is a fresh signing key on curve c.
func newECKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// es256Token signs a token valid at the clock's current time.
func es256Token(t testing.TB, k *ecdsa.PrivateKey, kid string, clock *testClock) string {
	now := clock.Now()
	pl := rawObject{{"iss", `"iss"`}, {"aud", `"aud"`}, {"sub", `"alice"`},
		{"exp", fmt.Sprint(now.Add(time.Hour).Unix())}, {"iat", fmt.Sprint(now.Add(-time.Minute).Unix())}}
	hdr := `{"alg":"ES256","typ":"JWT"}`
	if kid != "" {
		hdr = `{"alg":"ES256","typ":"JWT","kid":"` + kid + `"}`
	}
	return signRaw(t, jwt.SigningMethodES256, k, hdr, pl.String())
}

// jwksURLValidator provisions a jwks_url validator under a unique name (metrics
// are labelled by it).
func jwksURLValidator(t *testing.T, name string, clock *testClock, url string, mod func(*Validator)) *Validator {
	t.Helper()
	v := &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, JWKSURL: &RemoteJWKS{URL: url}}
	// no background retries unless the test asks: they would make fetch
	// counts depend on the scheduler
	v.retry = &retryPolicy{min: 24 * time.Hour, max: 24 * time.Hour, after: time.After}
	if mod != nil {
		mod(v)
	}
	provisionApp(t, clock.Now, map[string]*Validator{name: v})
	return v
}

// jwksFetchCount reads caddy_jwtauth_jwks_fetches_total{validator=name,result}.
// (It does what prometheus/testutil.ToFloat64 does; testutil would add a
// module to go.mod only for this.)
func jwksFetchCount(name, result string) float64 {
	var m dto.Metric
	if err := jwksFetches.WithLabelValues(name, result).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func mustAccept(t *testing.T, v *Validator, tok, what string) {
	t.Helper()
	if _, err := v.verify(tok); err != nil {
		t.Fatalf("%s: refused: %v", what, err)
	}
}

func mustRefuse(t *testing.T, v *Validator, tok, what string, is error) {
	t.Helper()
	_, err := v.verify(tok)
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if is != nil && !errors.Is(err, is) {
		t.Fatalf("%s: %v, want %v", what, err, is)
	}
	if ae := reject(err); ae.status != http.StatusUnauthorized {
		t.Fatalf("%s: status %d", what, ae.status)
	}
}

func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256")))
	clock := newTestClock()
	v := jwksURLValidator(t, "jwks-rotation", clock, srv.URL, nil)
	srv.expectHits(t, 1, "after provision")

	old := es256Token(t, k1, "k1", clock)
	mustAccept(t, v, old, "k1 token")
	mustAccept(t, v, old, "k1 token again (cached)")
	srv.expectHits(t, 1, "known kid")

	// rotation: k2 appears, k1 is removed
	srv.set(200, jwkSet(ecJWK("k2", k2, "ES256")))
	mustAccept(t, v, es256Token(t, k2, "k2", clock), "k2 token (unknown kid refresh)")
	srv.expectHits(t, 2, "after the new kid")

	mustRefuse(t, v, old, "cached k1 token after rotation", ErrTokenUnverifiable)
	mustRefuse(t, v, es256Token(t, k1, "k1", clock), "fresh k1 token after rotation", ErrTokenUnverifiable)
	// k1 signing with k2's kid
	mustRefuse(t, v, es256Token(t, k1, "k2", clock), "k1 key under k2 kid", ErrTokenSignature)
	srv.expectHits(t, 2, "old kid refused within unknown_kid_interval")
	if ok := jwksFetchCount("jwks-rotation", "ok"); ok != 2 {
		t.Fatalf("ok fetches metric %v", ok)
	}
}

func TestJWKSUnknownKIDRateLimit(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256")))
	clock := newTestClock()
	v := jwksURLValidator(t, "jwks-ratelimit", clock, srv.URL, func(v *Validator) {
		v.JWKSURL.UnknownKIDInterval = caddy.Duration(5 * time.Minute)
	})
	srv.expectHits(t, 1, "after provision")
	random := func() string {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		return es256Token(t, k1, fmt.Sprintf("%x", b), clock)
	}
	for i := 0; i < 20; i++ {
		mustRefuse(t, v, random(), "random kid", ErrTokenUnverifiable)
		clock.Add(10 * time.Second) // 200s in all: still within the interval
	}
	srv.expectHits(t, 2, "20 random kids within the interval")
	clock.Add(5 * time.Minute)
	mustRefuse(t, v, random(), "random kid after the interval", ErrTokenUnverifiable)
	mustRefuse(t, v, random(), "second random kid after the interval", ErrTokenUnverifiable)
	srv.expectHits(t, 3, "after the interval")

	// the real kid never needs a fetch
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "known kid")
	srv.expectHits(t, 3, "known kid")
}

// Concurrent requests with random kids still cause exactly one fetch, and
// concurrent requests with a newly published kid are all accepted: the ones
// that do not trigger the refresh wait for it instead of failing.
func TestJWKSUnknownKIDConcurrent(t *testing.T) {
	t.Parallel()
	k1, k2 := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256")))
	clock := newTestClock()
	v := jwksURLValidator(t, "jwks-concurrent", clock, srv.URL, nil)

	const n = 16
	run := func(tok func(i int) string) []error {
		errs := make([]error, n)
		var started, done sync.WaitGroup
		started.Add(n)
		done.Add(n)
		for i := 0; i < n; i++ {
			go func() {
				defer done.Done()
				tk := tok(i)
				started.Done()
				started.Wait()
				_, errs[i] = v.verify(tk)
			}()
		}
		done.Wait()
		return errs
	}
	for i, err := range run(func(i int) string { return es256Token(t, k1, fmt.Sprintf("rnd-%d", i), clock) }) {
		if err == nil {
			t.Fatalf("random kid %d accepted", i)
		}
	}
	srv.expectHits(t, 2, "concurrent random kids")

	// a new key is published; every concurrent request with its kid must
	// be accepted, with one fetch between them
	clock.Add(6 * time.Minute)
	srv.set(200, jwkSet(ecJWK("k1", k1, "ES256"), ecJWK("k2", k2, "ES256")))
	for i, err := range run(func(int) string { return es256Token(t, k2, "k2", clock) }) {
		if err != nil {
			t.Fatalf("request %d with the new kid refused: %v", i, err)
		}
	}
	srv.expectHits(t, 3, "concurrent new kid")
}

func TestJWKSDownAtStartup(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, http.StatusServiceUnavailable, "down")
	clock := newTestClock()
	const name = "jwks-down-start"
	v := jwksURLValidator(t, name, clock, srv.URL, nil) // provisions although the endpoint is down
	srv.expectHits(t, 1, "after provision")
	if v.remote.current() != nil {
		t.Fatal("keys without a successful fetch")
	}
	if e := jwksFetchCount(name, "error"); e != 1 {
		t.Fatalf("error metric %v", e)
	}
	tok := es256Token(t, k1, "k1", clock)
	mustRefuse(t, v, tok, "while down", ErrTokenUnverifiable)
	mustRefuse(t, v, es256Token(t, k1, "", clock), "while down, no kid", ErrTokenUnverifiable)
	srv.expectHits(t, 2, "one unknown-kid refresh while down")

	srv.set(200, jwkSet(ecJWK("k1", k1, "ES256")))
	mustRefuse(t, v, tok, "up, but within unknown_kid_interval", ErrTokenUnverifiable)
	srv.expectHits(t, 2, "rate limited")
	clock.Add(5*time.Minute + time.Second)
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "after the endpoint came up")
	srv.expectHits(t, 3, "recovered")
	if ok, e := jwksFetchCount(name, "ok"), jwksFetchCount(name, "error"); ok != 1 || e != 2 {
		t.Fatalf("metrics ok=%v error=%v", ok, e)
	}
}

// With no keys at all, a token without a kid also triggers the (rate
// limited) refresh, so a validator whose endpoint was down at start-up
// recovers before the next periodic refresh.
func TestJWKSDownAtStartupNoKID(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, http.StatusBadGateway, "")
	clock := newTestClock()
	v := jwksURLValidator(t, "jwks-down-nokid", clock, srv.URL, nil)
	srv.set(200, jwkSet(ecJWK("k1", k1, "ES256")))
	mustAccept(t, v, es256Token(t, k1, "", clock), "kid-less token once the endpoint is up")
	srv.expectHits(t, 2, "one refresh")
}

func TestJWKSFailsLaterMaxStale(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256")))
	clock := newTestClock()
	const name = "jwks-max-stale"
	v := jwksURLValidator(t, name, clock, srv.URL, func(v *Validator) {
		v.JWKSURL.RefreshInterval = caddy.Duration(time.Hour)
		v.JWKSURL.MaxStale = caddy.Duration(2 * time.Hour)
	})
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "endpoint up")

	srv.set(http.StatusInternalServerError, "boom")
	clock.Add(time.Hour)
	if err := v.remote.refresh(context.Background()); err == nil {
		t.Fatal("refresh against a failing endpoint succeeded")
	}
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "1h after the last good fetch")

	clock.Add(59 * time.Minute) // 1h59m after the last good fetch
	cached := es256Token(t, k1, "k1", clock)
	mustAccept(t, v, cached, "just before max_stale")
	srv.expectHits(t, 2, "before max_stale")

	clock.Add(2 * time.Minute) // past max_stale
	mustRefuse(t, v, cached, "cached token past max_stale", ErrTokenUnverifiable)
	mustRefuse(t, v, es256Token(t, k1, "k1", clock), "fresh token past max_stale", ErrTokenUnverifiable)
	srv.expectHits(t, 3, "one refresh attempt past max_stale")
	if v.remote.current() != nil {
		t.Fatal("stale keys still served")
	}

	// the endpoint recovers: the next allowed refresh restores service
	srv.set(200, jwkSet(ecJWK("k1", k1, "ES256")))
	clock.Add(6 * time.Minute)
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "after recovery")
	if ok, e := jwksFetchCount(name, "ok"), jwksFetchCount(name, "error"); ok != 2 || e != 2 {
		t.Fatalf("metrics ok=%v error=%v", ok, e)
	}
}

func TestJWKSBadDocuments(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	good := jwkSet(ecJWK("k1", k1, "ES256"))
	for i, tc := range []struct {
		name, body string
		status     int
	}{
		{"garbage", "this is not json", 200},
		{"truncated", good[:len(good)-5], 200},
		{"html", "<html><body>login</body></html>", 200},
		{"keys not an array", `{"keys":"k1"}`, 200},
		{"array", `[` + ecJWK("k1", k1, "ES256") + `]`, 200},
		{"empty object", `{}`, 200},
		{"no keys", `{"keys":[]}`, 200},
		{"only encryption keys", strings.Replace(good, `"use":"sig"`, `"use":"enc"`, 1), 200},
		{"404", good, 404},
		{"500", good, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("jwks-bad-%d", i)
			clock := newTestClock()
			// bad at start-up: provisions, refuses
			srv := newJWKSServer(t, tc.status, tc.body)
			v := jwksURLValidator(t, name, clock, srv.URL, nil)
			if v.remote.current() != nil {
				t.Fatal("keys from a bad document")
			}
			mustRefuse(t, v, es256Token(t, k1, "k1", clock), "bad at start-up", ErrTokenUnverifiable)
			// good, then bad: the previous keys are kept
			srv.set(200, good)
			if err := v.remote.refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			srv.set(tc.status, tc.body)
			if err := v.remote.refresh(context.Background()); err == nil {
				t.Fatal("bad document accepted")
			}
			mustAccept(t, v, es256Token(t, k1, "k1", clock), "previous keys kept")
			if ok, e := jwksFetchCount(name, "ok"), jwksFetchCount(name, "error"); ok != 1 || e != 3 {
				t.Fatalf("metrics ok=%v error=%v", ok, e)
			}
		})
	}
}

func TestJWKSOctKeyRefused(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	secret := []byte(strings.Repeat("k", 64))
	oct := `{"kty":"oct","kid":"h1","alg":"HS256","k":"` + base64.RawURLEncoding.EncodeToString(secret) + `"}`
	srv := newJWKSServer(t, 200, jwkSet(oct, ecJWK("e1", k1, "ES256")))
	clock := newTestClock()
	hsTok := func(kid string) string {
		return signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256","kid":"`+kid+`"}`, rawPayload().String())
	}
	derived := jwksURLValidator(t, "jwks-oct-derived", clock, srv.URL, nil)
	explicit := jwksURLValidator(t, "jwks-oct-explicit", clock, srv.URL, func(v *Validator) { v.Algorithms = []string{"HS256", "ES256"} })
	for _, v := range []*Validator{derived, explicit} {
		mustRefuse(t, v, hsTok("h1"), "HS256 token signed with the oct key", nil)
		mustRefuse(t, v, hsTok(""), "HS256 token without kid", nil)
		mustAccept(t, v, es256Token(t, k1, "e1", clock), "EC key of the same set")
	}
	// a set holding only a symmetric key yields no key at all
	only := newJWKSServer(t, 200, jwkSet(oct))
	v := jwksURLValidator(t, "jwks-oct-only", clock, only.URL, func(v *Validator) { v.Algorithms = []string{"HS256"} })
	if v.remote.current() != nil {
		t.Fatal("oct-only set produced keys")
	}
	mustRefuse(t, v, hsTok("h1"), "oct-only set", nil)
	if e := jwksFetchCount("jwks-oct-only", "error"); e < 1 {
		t.Fatalf("error metric %v", e)
	}
}

// One key that cannot be used (unknown kty, weak, wrong alg) does not take
// the others down with it.
func TestJWKSUnusableKeySkipped(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(
		`{"kty":"XYZ","kid":"odd"}`,
		`{"kty":"EC","crv":"P-256","kid":"broken","x":"AAAA","y":"AAAA"}`,
		ecJWK("wrongalg", k1, "RS256"),
		ecJWK("k1", k1, "ES256"),
	))
	clock := newTestClock()
	v := jwksURLValidator(t, "jwks-skip", clock, srv.URL, nil)
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "usable key")
	mustRefuse(t, v, es256Token(t, k1, "wrongalg", clock), "key whose alg does not fit", nil)
}

func TestJWKSOversizedBody(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	good := jwkSet(ecJWK("k1", k1, "ES256"))
	const limit = 4096
	srv := newJWKSServer(t, 200, good)
	clock := newTestClock()
	const name = "jwks-oversized"
	v := jwksURLValidator(t, name, clock, srv.URL, func(v *Validator) { v.JWKSURL.MaxBytes = limit })
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "small set")

	exact := good + strings.Repeat(" ", limit-len(good))
	srv.set(200, exact)
	if err := v.remote.refresh(context.Background()); err != nil {
		t.Fatalf("body of exactly max_bytes refused: %v", err)
	}
	srv.set(200, exact+" ")
	err := v.remote.refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized body: %v", err)
	}
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "previous keys kept")
	if ok, e := jwksFetchCount(name, "ok"), jwksFetchCount(name, "error"); ok != 2 || e != 1 {
		t.Fatalf("metrics ok=%v error=%v", ok, e)
	}

	// oversized at start-up: no keys
	big := newJWKSServer(t, 200, good+strings.Repeat(" ", 1<<20))
	v2 := jwksURLValidator(t, "jwks-oversized-start", clock, big.URL, nil) // default 1 MiB
	if v2.remote.current() != nil {
		t.Fatal("keys from an oversized body")
	}
}

func TestJWKSRedirects(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	good := jwkSet(ecJWK("k1", k1, "ES256"))
	clock := newTestClock()

	other := newJWKSServer(t, 200, good)
	cross := newJWKSServer(t, 200, good)
	cross.location = other.URL + "/jwks"
	v := jwksURLValidator(t, "jwks-redirect-cross", clock, cross.URL, nil)
	cross.expectHits(t, 1, "redirecting server")
	other.expectHits(t, 0, "other host")
	mustRefuse(t, v, es256Token(t, k1, "k1", clock), "keys behind a cross-host redirect", ErrTokenUnverifiable)
	other.expectHits(t, 0, "other host after an unknown-kid refresh")

	// a redirect within the same origin is followed
	var hits atomic.Int64
	same := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/jwks", http.StatusMovedPermanently)
			return
		}
		_, _ = w.Write([]byte(good))
	}))
	t.Cleanup(same.Close)
	v2 := jwksURLValidator(t, "jwks-redirect-same", clock, same.URL+"/old", nil)
	mustAccept(t, v2, es256Token(t, k1, "k1", clock), "same-origin redirect")
	if hits.Load() != 2 {
		t.Fatalf("same-origin: %d requests", hits.Load())
	}
}

// Cheap checks run before any key lookup: tokens that fail them never cause
// a JWKS fetch, even with a kid the set does not know.
func TestCheapChecksBeforeFetch(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256")))
	clock := newTestClock()
	v := jwksURLValidator(t, "jwks-cheap", clock, srv.URL, func(v *Validator) { v.Types = []string{"at+jwt"} })
	srv.expectHits(t, 1, "after provision")
	es := func(hdr string, pl rawObject) string { return signRaw(t, jwt.SigningMethodES256, k1, hdr, pl.String()) }
	const unk = `{"alg":"ES256","typ":"at+jwt","kid":"unknown"}`
	b := rawPayload()
	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"expired", es(unk, b.set("exp", unixAt(-time.Hour)))},
		{"exp missing", es(unk, b.del("exp"))},
		{"not yet valid", es(unk, b.add("nbf", unixAt(time.Hour)))},
		{"issued in the future", es(unk, b.set("iat", unixAt(time.Hour)))},
		{"wrong iss", es(unk, b.set("iss", `"evil"`))},
		{"wrong aud", es(unk, b.set("aud", `"evil"`))},
		{"duplicate exp", es(unk, b.add("exp", unixAt(time.Hour)))},
		{"alg none", b64url(`{"alg":"none","typ":"at+jwt","kid":"unknown"}`) + "." + b64url(b.String()) + "."},
		{"alg HS256", signRaw(t, jwt.SigningMethodHS256, []byte(testSecret), `{"alg":"HS256","typ":"at+jwt","kid":"unknown"}`, b.String())},
		{"wrong typ", es(`{"alg":"ES256","typ":"JWT","kid":"unknown"}`, b)},
		{"crit", es(`{"alg":"ES256","typ":"at+jwt","kid":"unknown","crit":["x"]}`, b)},
		{"4 segments", es(unk, b) + ".x"},
		{"oversized", es(unk, b.add("pad", `"`+strings.Repeat("x", maxTokenSize)+`"`))},
		{"payload not JSON", b64url(unk) + "." + b64url("nope") + ".AAAA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustRefuse(t, v, tc.tok, tc.name, nil)
		})
	}
	srv.expectHits(t, 1, "after the cheap failures")
	// control: the same unknown kid on an otherwise valid token does fetch
	mustRefuse(t, v, es(unk, b), "valid token, unknown kid", ErrTokenUnverifiable)
	srv.expectHits(t, 2, "after a valid token with an unknown kid")
}

// TestJWKSNotFetchedAtProvision: provisioning (all that `caddy validate`
// does) fetches nothing and starts no refresh loop; the app's Start does.
func TestJWKSNotFetchedAtProvision(t *testing.T) {
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256")))
	v := &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, JWKSURL: &RemoteJWKS{URL: srv.URL}}
	a := &App{Validators: map[string]*Validator{"jwks-provision-only": v}}
	a.now = newTestClock().Now
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	srv.expectHits(t, 0, "after provision")
	if v.remote.started.Load() {
		t.Fatal("provision started the refresh loop")
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	srv.expectHits(t, 1, "after start")
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSUsagePool(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256")))
	clock := newTestClock()
	mk := func() *Validator {
		return &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, JWKSURL: &RemoteJWKS{URL: srv.URL}}
	}
	a1 := provisionApp(t, clock.Now, map[string]*Validator{"jwks-pool": mk()})
	a2 := provisionApp(t, clock.Now, map[string]*Validator{"jwks-pool": mk()}) // a reload
	srv.expectHits(t, 1, "two provisions of one config")
	v1, v2 := a1.Validators["jwks-pool"], a2.Validators["jwks-pool"]
	if v1.remote == nil || v1.remote != v2.remote {
		t.Fatal("the two configs do not share one remote key set")
	}
	rk, key := v1.remote, v1.remoteKey
	if n, ok := jwksPool.References(key); !ok || n != 2 {
		t.Fatalf("references %d, %v", n, ok)
	}
	mustAccept(t, v2, es256Token(t, k1, "k1", clock), "shared keys")

	// a different config gets its own set
	a3 := provisionApp(t, clock.Now, map[string]*Validator{"jwks-pool": {Issuers: []string{"iss"}, Audiences: []string{"aud"},
		JWKSURL: &RemoteJWKS{URL: srv.URL, UnknownKIDInterval: caddy.Duration(time.Minute)}}})
	if a3.Validators["jwks-pool"].remote == rk {
		t.Fatal("a different config shares the key set")
	}
	srv.expectHits(t, 2, "a different config")
	_ = a3.Cleanup()

	_ = a1.Cleanup() // the old config is unloaded
	if n, ok := jwksPool.References(key); !ok || n != 1 {
		t.Fatalf("after the first cleanup: references %d, %v", n, ok)
	}
	if rk.ctx.Err() != nil {
		t.Fatal("refresh loop stopped while still in use")
	}
	mustAccept(t, v2, es256Token(t, k1, "k1", clock), "after the old config is gone")

	_ = a2.Cleanup()
	if _, ok := jwksPool.References(key); ok {
		t.Fatal("the pool still holds the key set after its last user")
	}
	if rk.ctx.Err() == nil {
		t.Fatal("refresh context not cancelled")
	}
	select {
	case <-rk.done:
	default:
		t.Fatal("refresh goroutine still running after Destruct")
	}
}

// Refresh failures go to zap at error level, naming the validator and the
// URL, and skipped keys are warned about.
func TestJWKSRefreshErrorsLogged(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, 500, "")
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := RemoteJWKS{URL: srv.URL}
	cfg.setDefaults()
	clock := newTestClock()
	rk := newRemoteKeys(cfg, 0, "jwks-logged", zap.New(core), clock.Now)
	defer rk.cancel()
	if err := rk.refresh(context.Background()); err == nil {
		t.Fatal("no error")
	}
	errs := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(errs) != 1 {
		t.Fatalf("%d error entries", len(errs))
	}
	f := errs[0].ContextMap()
	if f["validator"] != "jwks-logged" || f["url"] != srv.URL || !strings.Contains(fmt.Sprint(f["error"]), "500") {
		t.Fatalf("fields %v", f)
	}

	secret := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("z", 32)))
	srv.set(200, jwkSet(`{"kty":"oct","kid":"h","k":"`+secret+`"}`, ecJWK("e", newECKey(t, elliptic.P256()), "ES256")))
	if err := rk.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 || !strings.Contains(fmt.Sprint(warns[0].ContextMap()["error"]), "oct") {
		t.Fatalf("warnings %v", warns)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), secret) {
			t.Fatal("a key secret was logged")
		}
	}

	// credentials and query parameters of the URL are never logged, for
	// an HTTP error and for a connection error
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	for _, base := range []string{srv.URL, dead.URL} {
		srv.set(500, "")
		u := strings.Replace(base, "http://", "http://user:SECRETPASS@", 1) + "/jwks?api_key=SECRETQUERY#frag"
		cfg := RemoteJWKS{URL: u}
		cfg.setDefaults()
		core, logs := observer.New(zapcore.DebugLevel)
		rk := newRemoteKeys(cfg, 0, "jwks-logged", zap.New(core), clock.Now)
		if err := rk.refresh(context.Background()); err == nil {
			t.Fatal("no error")
		}
		rk.cancel()
		entries := logs.All()
		if len(entries) != 1 {
			t.Fatalf("%d entries", len(entries))
		}
		all := fmt.Sprint(entries[0].Message, entries[0].ContextMap())
		if strings.Contains(all, "SECRET") {
			t.Fatalf("URL secret logged: %s", all)
		}
		if entries[0].ContextMap()["url"] != base+"/jwks" {
			t.Fatalf("logged url %v", entries[0].ContextMap()["url"])
		}
	}
}

// watchdog fails the test when ch yields nothing for a long while: it
// catches a hang, it does not time anything.
func watchdog[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("still waiting: %s", what)
	}
	var zero T
	return zero
}

// retryWait is one wait the refresh loop asked its timer for.
type retryWait struct {
	d    time.Duration
	fire chan time.Time
}

// fakeRetryTimer returns a retry policy with the production schedule whose
// timer the test drives: every wait the loop asks for arrives on the
// channel, and the loop sleeps until the test fires it.
func fakeRetryTimer() (*retryPolicy, chan retryWait) {
	waits := make(chan retryWait, 16)
	p := defaultRetry
	p.after = func(d time.Duration) <-chan time.Time {
		w := retryWait{d: d, fire: make(chan time.Time, 1)}
		waits <- w
		return w.fire
	}
	return &p, waits
}

// The JWKS endpoint is down when Caddy starts, and a token arrives during
// the outage. The endpoint comes back 10s after start: with the retry
// schedule of production (1s doubling, with jitter), the first fetch after
// that happens within 5s, and it serves tokens at once, without waiting for
// unknown_kid_interval or refresh_interval. Time is simulated: the test
// drives the loop's timer.
func TestJWKSRetryAfterStartupOutage(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, http.StatusServiceUnavailable, "down")
	clock := newTestClock()
	retry, waits := fakeRetryTimer()
	v := jwksURLValidator(t, "jwks-retry-outage", clock, srv.URL, func(v *Validator) { v.retry = retry })
	tok := es256Token(t, k1, "k1", clock)
	mustRefuse(t, v, tok, "during the outage", ErrTokenUnverifiable)

	const upAt = 10 * time.Second
	var sim time.Duration // simulated time since start
	want := time.Second
	for up := false; !up; {
		w := watchdog(t, waits, "the loop's next retry")
		if lo, hi := want*3/4, want*95/100; w.d < lo || w.d > hi {
			t.Fatalf("retry at +%v waits %v, want %v..%v", sim, w.d, lo, hi)
		}
		want = min(2*want, time.Minute)
		if sim+w.d >= upAt {
			srv.set(200, jwkSet(ecJWK("k1", k1, "ES256")))
			up = true
		}
		sim += w.d
		w.fire <- time.Time{}
	}
	// the loop asks for its next wait once the fetch is stored: now the
	// periodic one
	if w := watchdog(t, waits, "the wait after the recovery"); w.d != time.Duration(v.JWKSURL.RefreshInterval) {
		t.Fatalf("after recovery the loop waits %v, want refresh_interval", w.d)
	}
	if late := sim - upAt; late > 5*time.Second {
		t.Fatalf("keys fetched %v after the endpoint came back", late)
	}
	hits := srv.hits.Load()
	mustAccept(t, v, tok, "the token refused during the outage, after the recovery")
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "a fresh token")
	srv.expectHits(t, hits, "serving after the recovery")
}

// The same on real timers with a short schedule: the loop retries by
// itself, backing off up to its maximum, and stops retrying once it has keys.
func TestJWKSRetryRealTimer(t *testing.T) {
	t.Parallel()
	k1 := newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, http.StatusBadGateway, "")
	clock := newTestClock()
	waits := make(chan time.Duration, 64)
	retry := &retryPolicy{min: 4 * time.Millisecond, max: 16 * time.Millisecond, after: func(d time.Duration) <-chan time.Time {
		waits <- d
		return time.After(d)
	}}
	v := jwksURLValidator(t, "jwks-retry-real", clock, srv.URL, func(v *Validator) { v.retry = retry })
	var got []time.Duration
	for len(got) < 5 {
		got = append(got, watchdog(t, waits, "a retry"))
	}
	for i, d := range got {
		base := min(4*time.Millisecond<<i, 16*time.Millisecond)
		if d < base*3/4 || d >= base {
			t.Fatalf("retry %d waits %v, want about %v (all: %v)", i, d, base, got)
		}
	}
	srv.set(200, jwkSet(ecJWK("k1", k1, "ES256")))
	for d := time.Duration(0); d != time.Duration(v.JWKSURL.RefreshInterval); {
		d = watchdog(t, waits, "the periodic wait after the recovery")
	}
	hits := srv.hits.Load()
	mustAccept(t, v, es256Token(t, k1, "k1", clock), "after the recovery")
	srv.expectHits(t, hits, "no fetch for a known kid")
}

// hangingJWKSServer serves a JWK Set until hang is set; then it answers nothing
// until the test ends, signalling each request that reaches it.
type hangingJWKSServer struct {
	*jwksServer
	hang    atomic.Bool
	entered chan struct{}
}

func newHangingJWKSServer(t *testing.T, body string) *hangingJWKSServer {
	hs := &hangingJWKSServer{entered: make(chan struct{}, 64)}
	release := make(chan struct{})
	hs.jwksServer = &jwksServer{status: 200, body: body}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.hits.Add(1)
		if hs.hang.Load() {
			hs.entered <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		hs.mu.Lock()
		body := hs.body
		hs.mu.Unlock()
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(release) }) // first: Close waits for handlers
	return hs
}

// A token with an unknown kid while the endpoint hangs is refused after
// unknown_kid_wait, not after the fetch timeout; a client that goes away
// stops the wait at once. The hanging fetch goes on in the background.
func TestJWKSUnknownKIDWait(t *testing.T) {
	t.Parallel()
	var d RemoteJWKS
	d.setDefaults()
	if d.UnknownKIDWait != caddy.Duration(2*time.Second) {
		t.Fatalf("default unknown_kid_wait %v", time.Duration(d.UnknownKIDWait))
	}
	k1 := newECKey(t, elliptic.P256())
	srv := newHangingJWKSServer(t, jwkSet(ecJWK("k1", k1, "ES256")))
	clock := newTestClock()

	t.Run("bounded by unknown_kid_wait", func(t *testing.T) {
		v := jwksURLValidator(t, "jwks-kid-wait", clock, srv.URL, func(v *Validator) {
			v.JWKSURL.Timeout = caddy.Duration(time.Hour)
			v.JWKSURL.UnknownKIDWait = caddy.Duration(20 * time.Millisecond)
		})
		mustAccept(t, v, es256Token(t, k1, "k1", clock), "before the hang")
		srv.hang.Store(true)
		defer srv.hang.Store(false)
		done := make(chan error, 1)
		go func() {
			_, err := v.verify(es256Token(t, k1, "k2", clock))
			done <- err
		}()
		watchdog(t, srv.entered, "the refresh to reach the endpoint")
		err := watchdog(t, done, "the request, with the fetch still hanging (timeout 1h)")
		if !errors.Is(err, ErrTokenUnverifiable) || reject(err).status != http.StatusUnauthorized {
			t.Fatalf("unknown kid during the hang: %v", err)
		}
		mustAccept(t, v, es256Token(t, k1, "k1", clock), "a known kid during the hang")
	})

	t.Run("client gone", func(t *testing.T) {
		v := &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, JWKSURL: &RemoteJWKS{URL: srv.URL,
			Timeout: caddy.Duration(time.Hour), UnknownKIDWait: caddy.Duration(time.Hour)}}
		h, _ := newHandler(t, clock, "jwks-kid-gone", v, &Handler{})
		requirePassed(t, serve(t, h, bearerRequest(es256Token(t, k1, "k1", clock)), nil))
		srv.hang.Store(true)
		defer srv.hang.Store(false)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan serveResult, 1)
		go func() {
			done <- serve(t, h, bearerRequest(es256Token(t, k1, "k2", clock)).WithContext(ctx), nil)
		}()
		watchdog(t, srv.entered, "the refresh to reach the endpoint")
		cancel()
		res := watchdog(t, done, "the request after its client went away (unknown_kid_wait 1h)")
		requireRefused(t, res, http.StatusUnauthorized, "invalid")
	})
}

// A kid-less token against a remote set with several keys of its algorithm
// is refused without trying them: "kid required". With one key of its
// algorithm (other keys being of other families) it is verified.
func TestJWKSKIDRequired(t *testing.T) {
	t.Parallel()
	testKeys(t)
	k1, k2 := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("k1", k1, "ES256"), ecJWK("k2", k2, "ES256")))
	clock := newTestClock()
	v := jwksURLValidator(t, "jwks-kid-required", clock, srv.URL, nil)
	for _, k := range []*ecdsa.PrivateKey{k1, k2} {
		_, err := v.verify(es256Token(t, k, "", clock))
		if !errors.Is(err, ErrTokenUnverifiable) || !strings.Contains(err.Error(), "kid required") {
			t.Fatalf("kid-less token: %v", err)
		}
		if ae := reject(err); ae.status != 401 || ae.code != "invalid_token" || ae.desc != "kid required" {
			t.Fatalf("reject: %+v", ae)
		}
	}
	mustAccept(t, v, es256Token(t, k2, "k2", clock), "with its kid")
	srv.expectHits(t, 1, "no refresh for a kid-less token")

	srv2 := newJWKSServer(t, 200, jwkSet(ecJWK("e", k1, "ES256"), ecJWK("p384", newECKey(t, elliptic.P384()), "ES384")))
	v2 := jwksURLValidator(t, "jwks-kid-one-per-alg", clock, srv2.URL, nil)
	mustAccept(t, v2, es256Token(t, k1, "", clock), "kid-less token, one ES256 key")
}

// Two keys under one kid are warned about, naming the kid, at every
// refresh that sees them.
func TestJWKSDuplicateKIDWarned(t *testing.T) {
	t.Parallel()
	k1, k2 := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256())
	srv := newJWKSServer(t, 200, jwkSet(ecJWK("dup", k1, "ES256"), ecJWK("ok", k1, "ES256"), ecJWK("dup", k2, "ES256"), ecJWK("dup", k2, "ES256")))
	core, logs := observer.New(zapcore.WarnLevel)
	cfg := RemoteJWKS{URL: srv.URL}
	cfg.setDefaults()
	clock := newTestClock()
	rk := newRemoteKeys(cfg, 0, "jwks-dup-kid", zap.New(core), clock.Now)
	defer rk.cancel()
	for i := 1; i <= 2; i++ {
		if err := rk.refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		warns := logs.FilterMessageSnippet("several keys under one kid").All()
		if len(warns) != i {
			t.Fatalf("after refresh %d: %d warnings (%v)", i, len(warns), logs.All())
		}
		if f := warns[i-1].ContextMap(); f["kid"] != "dup" || f["validator"] != "jwks-dup-kid" {
			t.Fatalf("fields %v", f)
		}
	}
	srv.set(200, jwkSet(ecJWK("a", k1, "ES256"), ecJWK("b", k2, "ES256")))
	if err := rk.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessageSnippet("several keys under one kid").Len(); n != 2 {
		t.Fatalf("%d warnings after a set without duplicates", n)
	}
}
