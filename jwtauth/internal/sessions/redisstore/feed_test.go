package redisstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

func hasSID(revs []sessions.Revocation, sid string, reason sessions.Reason) bool {
	return slices.ContainsFunc(revs, func(r sessions.Revocation) bool { return r.SID == sid && r.Reason == reason })
}

// TestFeedAcrossStores: every kind of revocation made through one store
// reaches a Follow on another store of the same issuer, and nothing of
// another issuer does.
// revokedSession creates a session of login u at at and revokes it (admin)
// at the same time, returning its sid.
func revokedSession(t testing.TB, a *Store, at time.Time) string {
	t.Helper()
	ctx := context.Background()
	s, _, _, err := a.Create(ctx, policy, sessions.New{Login: "u"}, at)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, _, err := a.RevokeSID(ctx, s.SID, sessions.ReasonAdmin, at); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	return s.SID
}

func TestFeedAcrossStores(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, Config{})
	b := open(t, srv, Config{})
	other := open(t, srv, Config{Issuer: "other"})
	ctx := context.Background()
	now := time.Now()
	r, _ := follow(t, b, now.Add(-policy.Retain), 50*time.Millisecond)
	r.wait(t, 5*time.Second, "first Heard", func(r *recorder) bool { return len(r.heard) > 0 })

	n := sessions.New{Login: "alice", UserID: "1", FP: "fp"}
	// logout
	s1, tok1, _, err := a.Create(ctx, policy, n, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := a.Revoke(ctx, policy, tok1, now); err != nil || !found {
		t.Fatalf("revoke: %v %v", found, err)
	}
	// reuse
	s2, tok2, _, _ := a.Create(ctx, policy, n, now)
	if _, _, _, err := a.Rotate(ctx, policy, tok2, s2.SID, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Use(ctx, policy, tok2, now.Add(policy.Grace)); err == nil {
		t.Fatal("reuse accepted")
	}
	// admin, then user_changed for a whole login, then the per-login bound
	s3, _, _, _ := a.Create(ctx, policy, n, now)
	if _, found, err := a.RevokeSID(ctx, s3.SID, sessions.ReasonAdmin, now); err != nil || !found {
		t.Fatalf("revoke sid: %v %v", found, err)
	}
	bob := sessions.New{Login: "bob"}
	s4, _, _, _ := a.Create(ctx, policy, bob, now)
	if revs, err := a.RevokeLogin(ctx, "bob", sessions.ReasonUserChanged, now); err != nil || len(revs) != 1 {
		t.Fatalf("revoke login: %v %v", revs, err)
	}
	var carol []sessions.Session
	for i := range policy.MaxPerLogin + 1 {
		s, _, _, err := a.Create(ctx, policy, sessions.New{Login: "carol"}, now.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		carol = append(carol, s)
	}
	// another issuer's revocation
	so, _, _, _ := other.Create(ctx, policy, n, now)
	if _, _, err := other.RevokeSID(ctx, so.SID, sessions.ReasonAdmin, now); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		sid    string
		reason sessions.Reason
	}{
		{s1.SID, sessions.ReasonLogout}, {s2.SID, sessions.ReasonReuse}, {s3.SID, sessions.ReasonAdmin},
		{s4.SID, sessions.ReasonUserChanged}, {carol[0].SID, sessions.ReasonBound},
	}
	r.wait(t, 5*time.Second, "every revocation", func(r *recorder) bool { return len(r.revs) >= len(want) })
	got := r.revoked()
	for _, w := range want {
		if !hasSID(got, w.sid, w.reason) {
			t.Errorf("revocation %s (%s) not delivered; got %+v", w.sid, w.reason, got)
		}
	}
	if hasSID(got, so.SID, sessions.ReasonAdmin) {
		t.Error("another issuer's revocation was delivered")
	}
	for _, g := range got {
		want := now
		switch g.SID {
		case s2.SID:
			want = now.Add(policy.Grace)
		case carol[0].SID:
			want = carol[len(carol)-1].Created
		}
		if !g.At.Equal(want) || g.Login == "" {
			t.Errorf("revocation %+v, want at %v", g, want)
		}
	}
}

// TestFeedRetainedWindow: a Follow first delivers what was revoked before
// it started, from since on.
func TestFeedRetainedWindow(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, Config{})
	now := time.Now()
	var sids []string
	for _, at := range []time.Time{now.Add(-time.Hour), now.Add(-time.Minute), now} {
		sids = append(sids, revokedSession(t, a, at))
	}
	b := open(t, srv, Config{})
	r, _ := follow(t, b, now.Add(-2*time.Minute), time.Second)
	r.wait(t, 5*time.Second, "the retained window", func(r *recorder) bool { return len(r.revs) >= 2 && len(r.heard) > 0 })
	got := r.revoked()
	if len(got) != 2 || got[0].SID != sids[1] || got[1].SID != sids[2] {
		t.Fatalf("retained window delivered %+v, want the last two of %v in order", got, sids)
	}
}

// TestFeedTrim: the stream keeps what Policy.Retain asks and is trimmed
// beyond it.
func TestFeedTrim(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, Config{})
	c := raw(t, srv)
	ctx := context.Background()
	now := time.Now()
	const n = 300
	for range n {
		revokedSession(t, a, now)
	}
	key := a.Base() + ":rev"
	if l, err := c.XLen(ctx, key).Result(); err != nil || l != n {
		t.Fatalf("stream length %d (%v) within retain, want %d", l, err, n)
	}
	short := policy
	short.Retain = 0
	if _, _, _, err := a.Create(ctx, short, sessions.New{Login: "v"}, now); err != nil {
		t.Fatal(err)
	}
	// MINID ~ trims whole stream nodes (100 entries): at least two of them
	// are older than now - 0.
	if l, err := c.XLen(ctx, key).Result(); err != nil || l > n-200 {
		t.Fatalf("stream length %d (%v) after retain 0, want at most %d", l, err, n-200)
	}
}

// TestFeedHeartbeat: on a quiet stream, Heard comes every interval.
func TestFeedHeartbeat(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Config{})
	const interval = 50 * time.Millisecond
	start := time.Now()
	r, stop := follow(t, s, start, interval)
	r.wait(t, 5*time.Second, "five heartbeats", func(r *recorder) bool { return len(r.heard) >= 5 })
	stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.revs) != 0 || len(r.resets) != 0 {
		t.Fatalf("quiet stream: revocations %v, resets %v", r.revs, r.resets)
	}
	// Each read blocks for the interval: heartbeats are not a busy loop.
	if d := r.heard[4].Sub(r.heard[0]); d < 3*interval {
		t.Fatalf("five heartbeats within %v: the reads do not block", d)
	}
}

// TestFeedReset: Redis restarted empty is noticed by the epoch check, and
// the feed goes on with the new stream.
func TestFeedReset(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, Config{})
	b := open(t, srv, Config{})
	ctx := context.Background()
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	r, _ := follow(t, b, time.Now().Add(-time.Minute), 50*time.Millisecond)
	r.wait(t, 5*time.Second, "first Heard", func(r *recorder) bool { return len(r.heard) > 0 })
	before := time.Now()
	srv.Restart()
	r.wait(t, 10*time.Second, "Reset", func(r *recorder) bool { return len(r.resets) > 0 })
	r.mu.Lock()
	resets := append([]time.Time(nil), r.resets...)
	r.mu.Unlock()
	if len(resets) != 1 || resets[0].Before(before) {
		t.Fatalf("resets %v, want one after %v", resets, before)
	}
	// The same stores work on the new Redis without a reconnect by the
	// caller, and the feed delivers from the new stream.
	sid := revokedSession(t, a, time.Now())
	r.wait(t, 5*time.Second, "revocation after the restart", func(r *recorder) bool {
		return hasSID(r.revs, sid, sessions.ReasonAdmin)
	})
	// A store that pinged before the restart sees the new epoch too, and
	// no second Reset comes for the same restart.
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 5*time.Second, "heartbeats after the restart", func(r *recorder) bool { return len(r.heard) > 3 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.resets) != 1 {
		t.Fatalf("%d resets for one restart", len(r.resets))
	}
}

// TestFeedHeardAfterWindow: the first Heard comes at once (the catch-up
// reads do not block for the interval) and only after the whole retained
// window, several batches long, was delivered: a caller that trusts Heard
// never misses a retained revocation.
func TestFeedHeardAfterWindow(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, Config{})
	now := time.Now()
	const n = 2*feedBatch + 10
	for range n {
		revokedSession(t, a, now)
	}
	r, _ := follow(t, open(t, srv, Config{}), now.Add(-time.Minute), time.Hour)
	r.wait(t, 10*time.Second, "first Heard", func(r *recorder) bool { return len(r.heard) > 0 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revsAtHeard[0] != n || len(r.revs) != n {
		t.Fatalf("first Heard after %d of %d retained revocations (%d in all)", r.revsAtHeard[0], n, len(r.revs))
	}
}
