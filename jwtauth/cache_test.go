package jwtauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

// Token-keyed forms of the cache methods, for tests; verify computes the
// key once and calls the plain forms.
func (c *tokenCache) getToken(tok string) *identity { return c.get(c.key(tok)) }
func (c *tokenCache) putToken(id *identity)         { c.put(c.key(id.token), id) }
func (c *tokenCache) removeToken(tok string)        { c.remove(c.key(tok)) }

// checkCacheInvariants verifies the cache's internal invariants: the index and the slots
// agree, every slot is either used or free, and the entry and byte counts
// are within their bounds.
func checkCacheInvariants(t testing.TB, c *tokenCache) {
	t.Helper()
	for si := range c.shards {
		s := &c.shards[si]
		s.mu.RLock()
		used, bytes := 0, 0
		for i := range s.slots {
			sl := &s.slots[i]
			if sl.id == nil {
				continue
			}
			used++
			bytes += entryCost(sl.id)
			if j, ok := s.index[sl.hash]; !ok || int(j) != i {
				t.Errorf("shard %d: slot %d (hash %x) not indexed (index says %d, %v)", si, i, sl.hash, j, ok)
			}
			if c.hash(sl.id.token) != sl.hash {
				t.Errorf("shard %d: slot %d holds a token of another hash", si, i)
			}
		}
		if used != len(s.index) {
			t.Errorf("shard %d: %d used slots, %d index entries", si, used, len(s.index))
		}
		if used+len(s.free) != len(s.slots) {
			t.Errorf("shard %d: %d used + %d free != %d slots", si, used, len(s.free), len(s.slots))
		}
		if bytes != s.bytes {
			t.Errorf("shard %d: accounted %d bytes, holds %d", si, s.bytes, bytes)
		}
		if s.bytes > s.maxBytes {
			t.Errorf("shard %d: %d bytes over the %d budget", si, s.bytes, s.maxBytes)
		}
		s.mu.RUnlock()
	}
}

// cacheHolds reports whether id is cached, without marking it used.
func cacheHolds(c *tokenCache, id *identity) bool {
	h := c.hash(id.token)
	s := c.shard(h)
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.index[h]
	return ok && s.slots[i].id == id
}

// syntheticIdentity is an identity with a made-up token of about n bytes.
func syntheticIdentity(i, n int) *identity {
	tok := fmt.Sprintf("tok-%d-", i)
	if pad := n - len(tok); pad > 0 {
		tok += strings.Repeat("x", pad)
	}
	return &identity{token: tok, userID: fmt.Sprint("u", i), payload: jsonObject(`{"sub":"u"}`)}
}

func TestCacheSizeIsExact(t *testing.T) {
	for _, size := range []int{1, 7, 63, 64, 100, 1000, 1023, 10000, 12345} {
		c := newTokenCache(size)
		_, _, maxEntries, _ := c.stats()
		if maxEntries != size {
			t.Errorf("size %d: capacity %d", size, maxEntries)
		}
		if len(c.shards)&(len(c.shards)-1) != 0 || len(c.shards) > maxCacheShards {
			t.Errorf("size %d: %d shards", size, len(c.shards))
		}
		for i := 0; i < 3*size; i++ {
			c.putToken(syntheticIdentity(i, 200))
		}
		if n := c.len(); n != size {
			t.Errorf("size %d: %d entries after filling it three times over", size, n)
		}
		checkCacheInvariants(t, c)
	}
	zero := 0
	v := hsValidator()
	v.CacheSize = &zero
	provisionValidator(t, newTestClock().Now, v)
	if v.cache != nil {
		t.Fatal("cache_size 0 must disable the cache")
	}
}

// TestCacheBoundedUnderChurn puts tokens of every size into a small cache
// and checks after each put that entries and bytes stay within bounds, and
// that a token that is used between puts survives the churn (CLOCK gives it
// a second chance).
func TestCacheBoundedUnderChurn(t *testing.T) {
	const size = 100
	c := newTokenCache(size)
	hot := syntheticIdentity(-1, 300)
	c.putToken(hot)
	_, _, maxEntries, maxBytes := c.stats()
	for i := 0; i < 5000; i++ {
		n := 100 + (i*997)%(maxTokenSize-100) // 100 B .. 8 KiB
		if i%2 == 0 {
			n = 300 // most tokens are small
		}
		id := syntheticIdentity(i, n)
		c.putToken(id)
		if !cacheHolds(c, id) {
			t.Fatalf("put %d: the newest entry is not cached", i)
		}
		if c.getToken(hot.token) != hot {
			t.Fatalf("put %d: the hot entry was evicted", i)
		}
		entries, bytes, _, _ := c.stats()
		if entries > maxEntries || bytes > maxBytes {
			t.Fatalf("put %d: %d entries (max %d), %d bytes (max %d)", i, entries, maxEntries, bytes, maxBytes)
		}
	}
	checkCacheInvariants(t, c)
	if maxBytes > size*cacheEntryBudget {
		t.Fatalf("byte budget %d over %d", maxBytes, size*cacheEntryBudget)
	}
}

// TestCacheExpiryBoundary: a cached token is served until just before
// exp+leeway and refused at exactly exp+leeway, even though it is a hit.
func TestCacheExpiryBoundary(t *testing.T) {
	clock := newTestClock()
	v := provisionValidator(t, clock.Now, hsValidator())
	tok := hs256(t, claims()) // exp = testNow + 1h; leeway 30s
	first, err := v.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if v.cache.getToken(tok) != first {
		t.Fatal("a verified token is not cached")
	}
	clock.Add(time.Hour + 30*time.Second - time.Nanosecond)
	id, err := v.verify(tok)
	if err != nil || id != first {
		t.Fatalf("1ns before exp+leeway: id %p (cached %p), err %v", id, first, err)
	}
	clock.Add(time.Nanosecond)
	id, err = v.verify(tok)
	if !errors.Is(err, ErrTokenExpired) || id != nil {
		t.Fatalf("at exp+leeway: id %v, err %v; want ErrTokenExpired", id, err)
	}
	if v.cache.getToken(tok) != nil {
		t.Fatal("the expired entry is still cached")
	}
	if err := v.stillValid(first, clock.Now()); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("stillValid at exp+leeway: %v", err)
	}
}

// TestCacheCollisionCannotAuthenticate forces every token to the same hash:
// a token never gets another token's identity, and a forged token that
// collides with a cached one is still verified, and refused.
func TestCacheCollisionCannotAuthenticate(t *testing.T) {
	v := provisionValidator(t, newTestClock().Now, hsValidator())
	v.cache.hash = func(string) uint64 { return 42 }

	c := claims()
	c["sub"] = "bob"
	alice, bob := hs256(t, claims()), hs256(t, c)
	forged := sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-000"), claims(), nil)

	idA, err := v.verify(alice)
	if err != nil || idA.userID != "alice" {
		t.Fatalf("alice: %v %v", idA, err)
	}
	if got := v.cache.getToken(bob); got != nil {
		t.Fatalf("bob's token found alice's entry (%s)", got.userID)
	}
	if _, err := v.verify(forged); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("forged token colliding with a cached one: %v", err)
	}
	idB, err := v.verify(bob)
	if err != nil || idB.userID != "bob" {
		t.Fatalf("bob: %v %v", idB, err)
	}
	if got := v.cache.getToken(alice); got != nil {
		t.Fatalf("alice's token found bob's entry (%s)", got.userID)
	}
	idA2, err := v.verify(alice)
	if err != nil || idA2.userID != "alice" || idA2.token != alice {
		t.Fatalf("alice again: %v %v", idA2, err)
	}
	for range 3 {
		for _, tc := range []struct{ tok, user string }{{alice, "alice"}, {bob, "bob"}} {
			id, err := v.verify(tc.tok)
			if err != nil || id.userID != tc.user || id.token != tc.tok {
				t.Fatalf("%s: got %v, %v", tc.user, id, err)
			}
		}
	}
	checkCacheInvariants(t, v.cache)
}

// TestCacheFailuresNotCached: tokens refused at any stage leave no entry,
// and are refused again on the next attempt.
func TestCacheFailuresNotCached(t *testing.T) {
	clock := newTestClock()
	v := hsValidator()
	v.PartnerID = &PartnerIDSource{Claim: "pid", Required: true}
	provisionValidator(t, clock.Now, v)

	withPID := func(c jwt.MapClaims) jwt.MapClaims { c["pid"] = "p1"; return c }
	expired := withPID(claims())
	expired["exp"] = testNow.Add(-time.Hour).Unix()
	noSub := withPID(claims())
	delete(noSub, "sub")
	for name, tok := range map[string]string{
		"forged":     sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-000"), withPID(claims()), nil),
		"expired":    hs256(t, expired),
		"no sub":     hs256(t, noSub),                   // fails after the signature check
		"no partner": hs256(t, claims()),                // partner_id required
		"garbage":    "abc.def.ghi",                     // structure
		"tampered":   hs256(t, withPID(claims())) + "x", // signature bytes
	} {
		for range 2 {
			if id, err := v.verify(tok); err == nil {
				t.Fatalf("%s: accepted as %s", name, id.userID)
			}
		}
		if v.cache.getToken(tok) != nil || v.cache.len() != 0 {
			t.Fatalf("%s: a refused token was cached", name)
		}
	}
	good := hs256(t, withPID(claims()))
	if _, err := v.verify(good); err != nil || v.cache.len() != 1 {
		t.Fatalf("control: err %v, %d entries", err, v.cache.len())
	}
}

// fakeIssuer is a local issuer whose keys and revoked sessions a test changes.
type fakeIssuer struct {
	mu          sync.Mutex
	keys        *keySet
	revokedSIDs map[string]bool
	unknown     bool // the issuer cannot tell (revocationUnknown)
}

func (f *fakeIssuer) verificationKeys() *keySet {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys
}
func (f *fakeIssuer) signingAlgs() algSet            { return familyAlgs(famHMAC) }
func (f *fakeIssuer) issuerClaim() string            { return "iss" }
func (f *fakeIssuer) issuedAudiences() []string      { return []string{"aud"} }
func (f *fakeIssuer) revocationRetry() time.Duration { return time.Second }
func (f *fakeIssuer) revoked(sid string, _ int64, _ time.Time) revocationState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unknown {
		return revocationUnknown
	}
	if f.revokedSIDs[sid] {
		return sessionRevoked
	}
	return notRevoked
}
func (f *fakeIssuer) revoke(sid string) {
	f.mu.Lock()
	f.revokedSIDs[sid] = true
	f.mu.Unlock()
}

// fakeIssuerValidator returns a validator that trusts a fake local issuer,
// whose key is the test secret. The validator's own secret is different, so
// every token verifies through the issuer's keys.
func fakeIssuerValidator(t *testing.T, clock func() time.Time) (*Validator, *fakeIssuer) {
	t.Helper()
	v := &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, Secret: "an-unrelated-secret-an-unrelated-0"}
	provisionValidator(t, clock, v)
	k, err := newVerKey("", []byte(testSecret), 0, "", "fake issuer")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIssuer{keys: newKeySet([]*verKey{k}), revokedSIDs: map[string]bool{}}
	v.issuer = f
	v.unavailable = revocationUnavailable("fake", f.revocationRetry())
	return v, f
}

// TestCacheRevocationOnHit: with a local issuer that revokes sessions, a
// cached token of a revoked session is refused, while other sessions keep
// their cache entries.
func TestCacheRevocationOnHit(t *testing.T) {
	v, iss := fakeIssuerValidator(t, newTestClock().Now)
	c1, c2 := claims(), claims()
	c1["sid"], c2["sid"] = "s1", "s2"
	t1, t2 := hs256(t, c1), hs256(t, c2)
	id1, err := v.verify(t1)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := v.verify(t2)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.verify(t1); err != nil || id != id1 {
		t.Fatalf("not a cache hit before revocation: %v", err)
	}
	iss.revoke("s1")
	if _, err := v.verify(t1); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked session on a cache hit: %v", err)
	}
	if v.cache.getToken(t1) != nil {
		t.Fatal("the revoked entry is still cached")
	}
	if id, err := v.verify(t2); err != nil || id != id2 {
		t.Fatalf("another session lost its entry: %v", err)
	}
}

// TestCacheIssuerKeyWithdrawn: when the local issuer stops publishing the
// key that verified a cached token, the token is refused.
func TestCacheIssuerKeyWithdrawn(t *testing.T) {
	v, iss := fakeIssuerValidator(t, newTestClock().Now)
	tok := hs256(t, claims())
	id, err := v.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	other, err := newVerKey("", []byte("yet-another-secret-yet-another-0"), 0, "", "fake issuer")
	if err != nil {
		t.Fatal(err)
	}
	iss.mu.Lock()
	iss.keys = newKeySet([]*verKey{id.key, other}) // rotation keeps the old key
	iss.mu.Unlock()
	if got, err := v.verify(tok); err != nil || got != id {
		t.Fatalf("old key still published: %v", err)
	}
	iss.mu.Lock()
	iss.keys = newKeySet([]*verKey{other})
	iss.mu.Unlock()
	if _, err := v.verify(tok); err == nil {
		t.Fatal("a token whose key was withdrawn was accepted from the cache")
	}
	if v.cache.getToken(tok) != nil {
		t.Fatal("the entry of a withdrawn key is still cached")
	}
}

// edJWK renders an Ed25519 public key as a JWK.
func edJWK(kid string, k ed25519.PrivateKey) string {
	x := b64.EncodeToString(k.Public().(ed25519.PublicKey))
	return fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","x":%q,"kid":%q,"alg":"EdDSA","use":"sig"}`, x, kid)
}

func newEdKey(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCacheJWKSKeyRemoved: after a rotation that drops the key of a cached
// token, the token is refused; after a refresh that keeps the key, it is
// still accepted and cached.
func TestCacheJWKSKeyRemoved(t *testing.T) {
	k1, k2 := newEdKey(t), newEdKey(t)
	j := newJWKSServer(t, http.StatusOK, jwkSet(edJWK("k1", k1)))
	clock := newTestClock()
	v := provisionValidator(t, clock.Now, &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, JWKSURL: &RemoteJWKS{URL: j.URL}})
	tok := sign(t, jwt.SigningMethodEdDSA, k1, claims(), map[string]any{"kid": "k1"})
	if _, err := v.verify(tok); err != nil {
		t.Fatal(err)
	}

	j.set(http.StatusOK, jwkSet(edJWK("k1", k1), edJWK("k2", k2)))
	if err := v.remote.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The refreshed set holds new key objects: the entry is verified
	// again once, then served from the cache again.
	id, err := v.verify(tok)
	if err != nil {
		t.Fatalf("k1 still published: %v", err)
	}
	if got, err := v.verify(tok); err != nil || got != id {
		t.Fatalf("k1 still published, want a cache hit: %v", err)
	}

	j.set(http.StatusOK, jwkSet(edJWK("k2", k2)))
	if err := v.remote.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := v.stillValid(id, clock.Now()); err == nil {
		t.Fatal("stillValid accepts an identity whose key left the JWKS")
	}
	if _, err := v.verify(tok); err == nil {
		t.Fatal("a cached token whose key left the JWKS was accepted")
	}
	if v.cache.getToken(tok) != nil {
		t.Fatal("the entry is still cached")
	}
}

// TestCacheJWKSMaxStale: when the endpoint has been failing for longer than
// max_stale, cached tokens are refused like any other (fail closed).
func TestCacheJWKSMaxStale(t *testing.T) {
	k1 := newEdKey(t)
	j := newJWKSServer(t, http.StatusOK, jwkSet(edJWK("k1", k1)))
	clock := newTestClock()
	v := provisionValidator(t, clock.Now, &Validator{
		Issuers: []string{"iss"}, Audiences: []string{"aud"},
		JWKSURL: &RemoteJWKS{URL: j.URL, RefreshInterval: caddy.Duration(time.Hour), MaxStale: caddy.Duration(2 * time.Hour)},
	})
	c := claims()
	c["exp"] = testNow.Add(48 * time.Hour).Unix()
	tok := sign(t, jwt.SigningMethodEdDSA, k1, c, map[string]any{"kid": "k1"})
	id, err := v.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	j.set(http.StatusInternalServerError, "down")
	clock.Add(time.Hour)
	if got, err := v.verify(tok); err != nil || got != id {
		t.Fatalf("within max_stale, want a cache hit: %v", err)
	}
	clock.Add(time.Hour + time.Second)
	if _, err := v.verify(tok); err == nil {
		t.Fatal("a cached token was accepted past max_stale")
	}
	if v.cache.getToken(tok) != nil {
		t.Fatal("the entry is still cached past max_stale")
	}
}

// TestCacheConcurrent runs get, put and remove from many goroutines on a
// small cache with coarse hashes (many collisions), checking that a get only
// ever returns the identity of the very token asked for, and the cache's
// invariants at the end. Run with -race.
func TestCacheConcurrent(t *testing.T) {
	c := newTokenCache(200)
	inner := c.hash
	c.hash = func(s string) uint64 { return inner(s) % 64 } // collisions
	ids := make([]*identity, 500)
	for i := range ids {
		ids[i] = syntheticIdentity(i, 100+(i%7)*300)
	}
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 3000 {
				id := ids[(g*7919+n*31)%len(ids)]
				switch n % 5 {
				case 0, 1:
					c.putToken(id)
				case 2:
					c.removeToken(id.token)
				default:
					if got := c.getToken(id.token); got != nil && got != id {
						bad.Add(1)
					}
				}
				if n%500 == 0 {
					if entries, bytes, me, mb := c.stats(); entries > me || bytes > mb {
						bad.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d wrong identities or bound violations", n)
	}
	checkCacheInvariants(t, c)
}

// TestCacheConcurrentVerify verifies valid and forged tokens from many
// goroutines through a small, colliding cache: every valid token yields its
// own subject, every forged one is refused. Run with -race.
func TestCacheConcurrentVerify(t *testing.T) {
	size := 16
	v := hsValidator()
	v.CacheSize = &size
	provisionValidator(t, newTestClock().Now, v)
	inner := v.cache.hash
	v.cache.hash = func(s string) uint64 { return inner(s) % 8 }

	type tc struct {
		tok, sub string
		ok       bool
	}
	var toks []tc
	for i := range 40 {
		c := claims()
		c["sub"] = fmt.Sprint("user", i)
		toks = append(toks, tc{hs256(t, c), fmt.Sprint("user", i), true})
		if i%4 == 0 {
			forged := sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-000"), c, nil)
			toks = append(toks, tc{forged, "", false})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 400 {
				x := toks[(g*13+n*7)%len(toks)]
				id, err := v.verify(x.tok)
				switch {
				case x.ok && (err != nil || id.userID != x.sub || id.token != x.tok):
					errs <- fmt.Sprintf("%s: got %v, %v", x.sub, id, err)
					return
				case !x.ok && err == nil:
					errs <- fmt.Sprintf("forged token accepted as %s", id.userID)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	checkCacheInvariants(t, v.cache)
}

// TestCacheRefusals: a token whose signature failed is refused again from
// the negative cache (the very same error, no second signature check); a
// colliding valid token is unaffected; a refusal is forgotten when the
// remote keys change, so a token that the new keys verify is accepted.
func TestCacheRefusals(t *testing.T) {
	v := provisionValidator(t, newTestClock().Now, hsValidator())
	forged := sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-000"), claims(), nil)
	_, err1 := v.verify(forged)
	_, err2 := v.verify(forged)
	if !errors.Is(err1, ErrTokenSignature) || err1 != err2 {
		t.Fatalf("second refusal is not the remembered one: %v / %v", err1, err2)
	}
	if v.cache.refused(v.cache.key(forged), 0) != err1 {
		t.Fatal("the refusal is not in the negative cache")
	}
	if v.cache.len() != 0 {
		t.Fatal("a refused token is in the positive cache")
	}

	v.cache.hash = func(string) uint64 { return 3 } // everything collides
	v.cache.putRefused(v.cache.key(forged), 0, err1)
	good := hs256(t, claims())
	if v.cache.refused(v.cache.key(good), 0) != nil {
		t.Fatal("a colliding token got another token's refusal")
	}
	if id, err := v.verify(good); err != nil || id.userID != "alice" {
		t.Fatalf("valid token colliding with a refusal: %v", err)
	}
	if _, err := v.verify(forged); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("forged token colliding with a cached identity: %v", err)
	}

	// Remote keys: kid k first names key A, then key B, which signed the
	// token.
	a, b := newEdKey(t), newEdKey(t)
	j := newJWKSServer(t, http.StatusOK, jwkSet(edJWK("k", a)))
	rv := provisionValidator(t, newTestClock().Now, &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, JWKSURL: &RemoteJWKS{URL: j.URL}})
	tok := sign(t, jwt.SigningMethodEdDSA, b, claims(), map[string]any{"kid": "k"})
	_, err1 = rv.verify(tok)
	_, err2 = rv.verify(tok)
	if !errors.Is(err1, ErrTokenSignature) || err1 != err2 {
		t.Fatalf("remote: second refusal is not the remembered one: %v / %v", err1, err2)
	}
	if rv.cache.refused(rv.cache.key(tok), rv.keyGeneration()) != err1 {
		t.Fatal("remote: the refusal is not in the negative cache")
	}
	j.set(http.StatusOK, jwkSet(edJWK("k", b)))
	if err := rv.remote.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if id, err := rv.verify(tok); err != nil || id.userID != "alice" {
		t.Fatalf("after the keys changed, the token is still refused: %v", err)
	}
}

// TestCacheRefusalsThatHeal: refusals that time or a key refresh can turn
// into acceptances are never remembered, while an expired token's is.
func TestCacheRefusalsThatHeal(t *testing.T) {
	clock := newTestClock()
	v := provisionValidator(t, clock.Now, hsValidator())

	expired := claims()
	expired["exp"] = testNow.Add(-time.Hour).Unix()
	exp := hs256(t, expired)
	_, err1 := v.verify(exp)
	_, err2 := v.verify(exp)
	if !errors.Is(err1, ErrTokenExpired) || err1 != err2 {
		t.Fatalf("an expired token's refusal is not remembered: %v / %v", err1, err2)
	}
	if v.cache.refused(v.cache.key(exp), 0) != err1 {
		t.Fatal("an expired token's refusal is not in the negative cache")
	}

	early := claims()
	early["nbf"] = testNow.Add(10 * time.Minute).Unix()
	tok := hs256(t, early)
	if _, err := v.verify(tok); !errors.Is(err, ErrTokenNotValidYet) {
		t.Fatalf("nbf in the future: %v", err)
	}
	clock.Add(10 * time.Minute)
	if _, err := v.verify(tok); err != nil {
		t.Fatalf("once nbf has passed, the token is still refused: %v", err)
	}

	// An unknown kid must keep triggering (rate-limited) refreshes.
	old, next := newEdKey(t), newEdKey(t)
	j := newJWKSServer(t, http.StatusOK, jwkSet(edJWK("old", old)))
	rv := provisionValidator(t, clock.Now, &Validator{Issuers: []string{"iss"}, Audiences: []string{"aud"}, JWKSURL: &RemoteJWKS{URL: j.URL}})
	c := claims()
	c["exp"] = testNow.Add(24 * time.Hour).Unix()
	nextTok := sign(t, jwt.SigningMethodEdDSA, next, c, map[string]any{"kid": "next"})
	for range 2 { // the first attempt refreshes, the second is rate limited
		if _, err := rv.verify(nextTok); !errors.Is(err, ErrTokenUnverifiable) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	j.set(http.StatusOK, jwkSet(edJWK("old", old), edJWK("next", next)))
	clock.Add(6 * time.Minute) // past unknown_kid_interval
	if _, err := rv.verify(nextTok); err != nil {
		t.Fatalf("after the key was published, the token is still refused: %v", err)
	}

	// A local issuer's keys carry no generation: a bad signature is not
	// remembered, and a key the issuer adds later verifies the token.
	iv, iss := fakeIssuerValidator(t, clock.Now)
	later, err := newVerKey("", []byte("a-later-secret-a-later-secret-000"), 0, "", "fake issuer")
	if err != nil {
		t.Fatal(err)
	}
	lateTok := sign(t, jwt.SigningMethodHS256, []byte("a-later-secret-a-later-secret-000"), c, nil)
	if _, err := iv.verify(lateTok); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("unknown issuer key: %v", err)
	}
	iss.mu.Lock()
	iss.keys = newKeySet(append(iss.keys.all, later))
	iss.mu.Unlock()
	if _, err := iv.verify(lateTok); err != nil {
		t.Fatalf("after the issuer added the key, the token is still refused: %v", err)
	}
}
