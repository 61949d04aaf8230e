package jwtauth

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// TestDenyList keeps each sid until its retention ends, prunes what expired,
// and applies a floor to tokens issued before it.
func TestDenyList(t *testing.T) {
	var d denyList
	now := testNow
	iat := now.Unix()
	if d.denied("a", iat, now.UnixNano()) {
		t.Fatal("an empty list denies")
	}
	d.add("a", now.Add(90*time.Second), now)
	d.add("a", now.Add(10*time.Second), now) // an earlier end never shortens it
	if !d.denied("a", iat, now.Add(89*time.Second).UnixNano()) || d.denied("b", iat, now.UnixNano()) {
		t.Fatal("a must be denied, b not")
	}
	if d.denied("a", iat, now.Add(90*time.Second).UnixNano()) {
		t.Fatal("a is denied after its retention")
	}
	d.add("b", now.Add(200*time.Second), now.Add(100*time.Second)) // prunes a
	if d.len() != 1 {
		t.Fatalf("%d entries after pruning, want 1", d.len())
	}

	// the floor: tokens issued before at, until until
	at := now.Add(1500 * time.Millisecond)
	d.refuseIssuedBefore(at, at.Add(time.Minute))
	for _, tc := range []struct {
		iat    int64
		sid    string
		when   time.Time
		denied bool
	}{
		{now.Unix(), "x", at, true},                                // issued before the floor
		{now.Unix() + 1, "x", at, true},                            // the floor's second, session from before
		{now.Unix() + 2, "x", at, false},                           // after the floor
		{now.Unix(), "x", at.Add(time.Minute), false},              // the floor expired
		{0, "x", at, true},                                         // no iat
		{now.Unix() + 1, "fresh", at.Add(time.Millisecond), false}, // created after the floor, same second
	} {
		if tc.sid == "fresh" {
			d.created("fresh", at.Add(100*time.Millisecond))
			d.created("late", at.Add(time.Second)) // next second: not recorded
		}
		if got := d.denied(tc.sid, tc.iat, tc.when.UnixNano()); got != tc.denied {
			t.Errorf("iat %d sid %s at %v: denied %v, want %v", tc.iat, tc.sid, tc.when.Sub(now), got, tc.denied)
		}
	}
	if _, ok := d.fresh["late"]; ok {
		t.Error("a session created after the floor's second was recorded")
	}
}

// TestDenyListBounded evicts the oldest entry when full, and the floor
// then refuses every token that the evicted entry could have denied.
func TestDenyListBounded(t *testing.T) {
	var d denyList
	now := testNow
	for i := range maxDenied {
		d.add("s"+strconv.Itoa(i), now.Add(time.Minute), now)
	}
	if d.len() != maxDenied || d.floor.Load() != nil {
		t.Fatalf("%d entries, floor %v", d.len(), d.floor.Load())
	}
	later := now.Add(time.Second)
	d.add("one-more", later.Add(time.Minute), later)
	if d.len() != maxDenied {
		t.Fatalf("%d entries, want the bound %d", d.len(), maxDenied)
	}
	// s0 was evicted, yet its tokens (issued before now) are refused
	if !d.denied("s0", now.Unix(), later.UnixNano()) {
		t.Fatal("an evicted sid's token is accepted")
	}
	if !d.denied("one-more", later.Unix(), later.UnixNano()) {
		t.Fatal("the new entry is not denied")
	}
	if d.denied("unrelated", later.Unix()+1, later.UnixNano()) {
		t.Fatal("a token issued after the floor is refused")
	}
	if d.denied("s0", now.Unix(), now.Add(time.Minute).UnixNano()) {
		t.Fatal("the floor outlives the evicted entry")
	}
}

// feedEnv is an issuer with revoke_access_tokens whose store is shared:
// its revocations arrive through the sessions.FeedHandler calls the test
// makes, on the pinned clock.
func feedEnv(t *testing.T) (*issuerEnv, *sharedStore) {
	e := newIssuerEnv(t, func(is *Issuer) {
		is.RevokeAccessTokens = true
		is.RevocationMaxStaleness = caddy.Duration(time.Second)
	})
	run := e.is.run.Load()
	ss := &sharedStore{store: run.shared.store, feed: true, issuer: "test", logger: zap.NewNop(), now: e.clock.Now}
	p := e.is.policy()
	ss.policy.Store(&p)
	e.is.run.Store(&issuerRun{signer: run.signer, shared: ss})
	t.Cleanup(func() { e.is.run.Store(run) })
	return e, ss
}

// TestRevocationFeed: validators with revoke_access_tokens answer 503 with
// Retry-After until the feed is heard, and again once it has been silent
// for longer than max_staleness; revocations from the feed are refused with
// 401; a Reset refuses every token issued before it, and is logged at
// Error.
func TestRevocationFeed(t *testing.T) {
	e, ss := feedEnv(t)
	v := e.app.Validators["api"]
	access, _ := e.login("alice", "alice-password")
	other, _ := e.login("bob", "bob-password")

	// never heard: unknown, 503, and the token stays cached for later
	if _, err := v.verify(access); !errors.Is(err, ErrRevocationUnavailable) {
		t.Fatalf("before the feed answered: %v", err)
	}
	code, hdr := e.status(access)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" {
		t.Fatalf("jwt_auth before the feed answered: %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}

	ss.Heard(time.Time{})
	if _, err := v.verify(access); err != nil {
		t.Fatalf("after the feed answered: %v", err)
	}
	e.clock.Add(time.Second) // exactly max_staleness: still fresh
	if _, err := v.verify(access); err != nil {
		t.Fatalf("at max_staleness: %v", err)
	}
	e.clock.Add(time.Millisecond)
	if _, err := v.verify(access); !errors.Is(err, ErrRevocationUnavailable) {
		t.Fatalf("past max_staleness: %v", err)
	}
	ss.Heard(time.Time{})

	// a revocation made on another node
	ss.Revoked(sessions.Revocation{SID: e.sidOf(access), Login: "alice", Reason: sessions.ReasonLogout, At: e.clock.Now()})
	if _, err := v.verify(access); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked through the feed: %v", err)
	}
	if code, _ := e.status(access); code != http.StatusUnauthorized {
		t.Fatalf("jwt_auth for a revoked session: %d", code)
	}
	if _, err := v.verify(other); err != nil {
		t.Fatalf("another session: %v", err)
	}

	// Redis lost its data: tokens issued before are refused, and logged
	core, logs := observer.New(zapcore.ErrorLevel)
	ss.logger = zap.New(core)
	e.clock.Add(2 * time.Second)
	ss.Heard(time.Time{})
	ss.Reset(e.clock.Now())
	if logs.Len() != 1 {
		t.Fatalf("%d Error lines for a reset", logs.Len())
	}
	if _, err := v.verify(other); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a token issued before the reset: %v", err)
	}
	e.clock.Add(e.is.policy().Retain)
	ss.Heard(time.Time{})
	if _, err := v.verify(other); errors.Is(err, ErrRevoked) {
		t.Fatalf("the reset still refuses after retain: %v", err)
	}
}

// TestRotationWhileFeedSilent: a rotation whose access token cannot be
// checked for revocation (the feed is silent) is 503 with Retry-After, not
// 401: the session may be fine, and the client keeps it and retries.
func TestRotationWhileFeedSilent(t *testing.T) {
	e, ss := feedEnv(t)
	ss.Heard(time.Time{})
	access, rt := e.login("alice", "alice-password")
	e.clock.Add(2 * time.Second) // silent past max_staleness
	res := e.rotate(rt, access)
	res.expect(t, http.StatusServiceUnavailable, "temporarily_unavailable")
	if res.Header().Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	ss.Heard(time.Time{})
	e.mustRotate(rt, access)
}

// TestStartupScanEndsChangedUsers: a store that this process opens for the
// first time (a restart) is searched for sessions of users that changed
// meanwhile; those end with reason user_changed.
func TestStartupScanEndsChangedUsers(t *testing.T) {
	e := newIssuerEnv(t, nil)
	_, alice := e.login("alice", "alice-password")
	_, bob := e.login("bob", "bob-password")
	if err := e.app.Cleanup(); err != nil { // the process stops
		t.Fatal(err)
	}
	writeUsers(t, e.users, plainUser{login: "alice", password: "alice-password", userID: "7", claims: `{"email":"alice@example.com","partner_id":70,"roles":["admin"]}`})
	core, logs := observer.New(zapcore.InfoLevel)
	e.auditLog = zap.New(core)
	e.load(nil)
	e.refresh(alice).expect(t, 200, "")
	e.refresh(bob).expect(t, 401, "invalid_grant")
	if n := e.count(); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	changed := logs.FilterField(zap.String("reason", string(sessions.ReasonUserChanged)))
	if changed.Len() != 1 || changed.All()[0].ContextMap()["login"] != "bob" {
		t.Fatalf("user_changed revocations logged: %v", logs.All())
	}
}

// TestUseRefusesChangedUser: a session whose user's fingerprint is not the
// config's (another node changed nothing, but the session was made under
// other credentials) is refused and revoked at its next use.
func TestUseRefusesChangedUser(t *testing.T) {
	e := newIssuerEnv(t, nil)
	ss := e.is.shared()
	p := e.is.policy()
	_, tok, _, err := ss.store.Create(context.Background(), p, sessions.New{Login: "alice", UserID: "7", FP: "another-fingerprint"}, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.refresh(tok).expect(t, 401, "invalid_grant")
	if _, _, err := ss.store.Find(context.Background(), p, tok, e.clock.Now()); !errors.Is(err, sessions.ErrUnknown) {
		t.Fatalf("the stale session was not revoked: %v", err)
	}
}

// TestIssuerAdminMethods: the methods the admin API calls list, count and
// end sessions, each revocation through ended (the deny-list and the audit
// log).
func TestIssuerAdminMethods(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.RevokeAccessTokens = true })
	core, logs := observer.New(zapcore.InfoLevel)
	e.is.audit = zap.New(core)
	ctx := context.Background()
	a1, _ := e.login("alice", "alice-password")
	e.clock.Add(time.Second) // oldest first: distinct creation times
	a2, rt2 := e.login("alice", "alice-password")
	b1, bobRT := e.login("bob", "bob-password")
	if n, err := e.is.countSessions(ctx); err != nil || n != 3 {
		t.Fatalf("count: %d, %v", n, err)
	}
	list, err := e.is.listSessions(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].SID != e.sidOf(a1) || list[1].SID != e.sidOf(a2) {
		t.Fatalf("alice's sessions: %+v, %v", list, err)
	}
	if found, err := e.is.revokeSID(ctx, e.sidOf(a1), sessions.ReasonAdmin); err != nil || !found {
		t.Fatalf("revokeSID: %v, %v", found, err)
	}
	if found, err := e.is.revokeSID(ctx, "no-such-sid", sessions.ReasonAdmin); err != nil || found {
		t.Fatalf("revokeSID of nothing: %v, %v", found, err)
	}
	if e.protected(a1) || !e.protected(a2) {
		t.Fatal("revokeSID did not reach the validator, or reached too far")
	}
	if n, err := e.is.revokeLogin(ctx, "alice", sessions.ReasonAdmin); err != nil || n != 1 {
		t.Fatalf("revokeLogin: %d, %v", n, err)
	}
	e.refresh(rt2).expect(t, 401, "invalid_grant")
	if e.protected(a2) || !e.protected(b1) {
		t.Fatal("revokeLogin did not reach the validator, or reached too far")
	}
	e.refresh(bobRT).expect(t, 200, "")
	admin := logs.FilterField(zap.String("reason", string(sessions.ReasonAdmin)))
	if admin.Len() != 2 {
		t.Fatalf("%d admin revocations logged, want 2: %v", admin.Len(), logs.All())
	}
	for _, entry := range admin.All() {
		if m := entry.ContextMap(); m["login"] != "alice" || m["sid"] == "" {
			t.Fatalf("audit line %v", m)
		}
	}
}

// TestRevokedLookupAllocs: the revocation check on the hot path allocates
// nothing, with a full-ish deny-list and a floor in force, and a cached
// token's verification allocates no more with revoke_access_tokens than
// without.
func TestRevokedLookupAllocs(t *testing.T) {
	allocs := map[bool]float64{}
	for _, revoke := range []bool{false, true} {
		e := newIssuerEnv(t, func(is *Issuer) { is.RevokeAccessTokens = revoke })
		access, _ := e.login("alice", "alice-password")
		ss := e.is.shared()
		now := e.clock.Now()
		for i := range 1000 {
			ss.deny.add("other-"+strconv.Itoa(i), now.Add(time.Minute), now)
		}
		v := e.app.Validators["api"]
		if _, err := v.verify(access); err != nil {
			t.Fatal(err)
		}
		sid, iat := e.sidOf(access), now.Unix()
		if n := testing.AllocsPerRun(100, func() { _ = e.is.revoked(sid, iat, now) }); n != 0 {
			t.Fatalf("revoke=%v: revoked() allocates %v times", revoke, n)
		}
		allocs[revoke] = testing.AllocsPerRun(100, func() {
			if _, err := v.verify(access); err != nil {
				t.Fatal(err)
			}
		})
	}
	if allocs[true] != allocs[false] {
		t.Fatalf("a cached verification allocates %v times with revoke_access_tokens, %v without", allocs[true], allocs[false])
	}
}

// BenchmarkRevoked measures the deny-list lookup of a verification: a hit
// and a miss among 100k revoked sessions, and the empty list (no
// revocation retained) as the baseline of the same run.
func BenchmarkRevoked(b *testing.B) {
	var d denyList
	now := testNow
	for i := range 100_000 {
		d.add("sid-"+strconv.Itoa(i), now.Add(time.Minute), now)
	}
	n := now.UnixNano()
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			if !d.denied("sid-500", now.Unix(), n) {
				b.Fatal("not denied")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		for b.Loop() {
			if d.denied("live-session", now.Unix(), n) {
				b.Fatal("denied")
			}
		}
	})
	var empty denyList
	b.Run("empty", func(b *testing.B) {
		for b.Loop() {
			if empty.denied("live-session", now.Unix(), n) {
				b.Fatal("denied")
			}
		}
	})
}
