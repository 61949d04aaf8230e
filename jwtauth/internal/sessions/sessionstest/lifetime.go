package sessionstest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// The cases of expiry, policy, bounds, revocation, listing, sweeping,
// malformed input, reopening and closing.

func testIdleExpiry(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	end := e.at(Policy.IdleTimeout)
	e.find(tok, end.Add(-time.Millisecond))
	if _, ok := e.get(s.SID, end.Add(-time.Millisecond)); !ok {
		t.Fatal("get: live session not found")
	}
	e.wantRefused(tok, s.SID, end, sessions.ErrEnded)
	if _, ok := e.get(s.SID, end); ok {
		t.Fatal("get finds an idle session")
	}
	if n := e.count(end); n != 0 {
		t.Fatalf("count = %d, want 0", n)
	}
	wantSIDs(t, "list", e.list("alice", end))
	wantSIDs(t, "list all", e.list("", end))
	e.wantRefused(tok, s.SID, end.Add(time.Hour), sessions.ErrEnded)
	// Expiry is no revocation: a logout of the token finds nothing.
	if r, found, err := e.s.Revoke(e.ctx, Policy, tok, end.Add(time.Hour)); err != nil || found {
		t.Fatalf("revoke of an idle session = %+v, %v, %v", r, found, err)
	}
}

func testAbsoluteExpiry(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	end := e.at(Policy.RefreshTTL)
	// Used every 50 minutes, it never idles, and rotation does not extend
	// its life.
	for d := 50 * time.Minute; d < Policy.RefreshTTL; d += 50 * time.Minute {
		if d == 10*50*time.Minute {
			_, tok = e.rotate(tok, s.SID, e.at(d))
		} else {
			e.use(tok, e.at(d))
		}
	}
	e.use(tok, end.Add(-time.Millisecond))
	if got := e.find(tok, end.Add(-time.Millisecond)); !got.Created.Equal(s.Created) {
		t.Fatalf("Created moved to %v", got.Created)
	}
	e.wantRefused(tok, s.SID, end, sessions.ErrEnded)
	if _, ok := e.get(s.SID, end); ok {
		t.Fatal("get finds a session past its lifetime")
	}
	if n := e.count(end); n != 0 {
		t.Fatalf("count = %d, want 0", n)
	}
}

// testPolicyPerOperation applies the policy passed to each operation, so a
// reload takes effect at once. An operation refuses a session that is dead
// under its policy but does not delete it: another config (the one being
// loaded, or another node's) may still honour it; only Sweep deletes.
func testPolicyPerOperation(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	long := Policy
	long.IdleTimeout = 2 * time.Hour
	now := e.at(90 * time.Minute)
	if _, _, err := e.s.Find(e.ctx, Policy, tok, now); !errors.Is(err, sessions.ErrEnded) {
		t.Fatalf("find under a 1h idle timeout after 90m = %v, want ErrEnded", err)
	}
	got, _, err := e.s.Use(e.ctx, long, tok, now)
	if err != nil || got.SID != s.SID {
		t.Fatalf("use under a 2h idle timeout after 90m = %+v, %v", got, err)
	}
	short := Policy
	short.RefreshTTL = time.Hour
	if _, _, err := e.s.Find(e.ctx, short, tok, now); !errors.Is(err, sessions.ErrEnded) {
		t.Fatalf("find under a 1h refresh_ttl after 90m = %v, want ErrEnded", err)
	}
	if n, err := e.s.Count(e.ctx, short, now); err != nil || n != 0 {
		t.Fatalf("count under a 1h refresh_ttl = %d, %v", n, err)
	}
	if n := e.count(now); n != 1 {
		t.Fatalf("count = %d, want 1", n)
	}
}

func testPerLoginBound(t *testing.T, e *env) {
	var ss []sessions.Session
	var toks []string
	for i := range Policy.MaxPerLogin {
		s, tok := e.create("alice", e.at(time.Duration(i)*time.Millisecond))
		ss, toks = append(ss, s), append(toks, tok)
	}
	other, otherTok := e.create("bob", e.at(time.Second))
	now := e.at(time.Minute)
	s, tok, revs, err := e.s.Create(e.ctx, Policy, newUser("alice"), now)
	if err != nil {
		t.Fatal(err)
	}
	wantRevs(t, "bound", revs, rev(ss[0], sessions.ReasonBound, now))
	e.wantRefused(toks[0], ss[0].SID, now, sessions.ErrUnknown)
	e.find(tok, now)
	wantSIDs(t, "list alice", e.list("alice", now), ss[1].SID, ss[2].SID, s.SID)
	if got := e.find(otherTok, now); got.SID != other.SID {
		t.Fatal("another login lost its session")
	}
	if n := e.count(now); n != Policy.MaxPerLogin+1 {
		t.Fatalf("count = %d", n)
	}

	// Dead sessions do not count toward the bound: carol's two sessions
	// idle out, then three new logins end none, and a fourth ends the
	// oldest live one.
	e.create("carol", now)
	e.create("carol", now.Add(time.Millisecond))
	later := now.Add(Policy.IdleTimeout + time.Minute)
	var live []sessions.Session
	for i := range Policy.MaxPerLogin {
		s, _ := e.create("carol", later.Add(time.Duration(i)*time.Millisecond))
		live = append(live, s)
	}
	at := later.Add(time.Second)
	_, _, revs, err = e.s.Create(e.ctx, Policy, newUser("carol"), at)
	if err != nil {
		t.Fatal(err)
	}
	wantRevs(t, "bound with dead sessions", revs, rev(live[0], sessions.ReasonBound, at))
	if l := e.list("carol", at); len(l) != Policy.MaxPerLogin {
		t.Fatalf("carol holds %d live sessions", len(l))
	}
}

func testRevoke(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	keep, keepTok := e.create("alice", e.at(time.Millisecond))
	now := e.at(time.Minute)
	r, found, err := e.s.Revoke(e.ctx, Policy, tok, now)
	if err != nil || !found {
		t.Fatalf("revoke = %v, %v", found, err)
	}
	wantRevs(t, "logout", []sessions.Revocation{r}, rev(s, sessions.ReasonLogout, now))
	e.wantRefused(tok, s.SID, now, sessions.ErrUnknown)
	if _, ok := e.get(s.SID, now); ok {
		t.Fatal("get finds a revoked session")
	}
	if r, found, err := e.s.Revoke(e.ctx, Policy, tok, now); err != nil || found {
		t.Fatalf("second revoke = %+v, %v, %v", r, found, err)
	}
	if r, found, err := e.s.Revoke(e.ctx, Policy, unknownToken(t), now); err != nil || found {
		t.Fatalf("revoke of an unknown token = %+v, %v, %v", r, found, err)
	}
	if got := e.find(keepTok, now); got.SID != keep.SID {
		t.Fatal("logout ended another session")
	}
	if n := e.count(now); n != 1 {
		t.Fatalf("count = %d, want 1", n)
	}
}

func testRevokeSID(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	_, tok = e.rotate(tok, s.SID, e.at(time.Second))
	keep, keepTok := e.create("alice", e.at(2*time.Second))
	for _, reason := range []sessions.Reason{sessions.ReasonAdmin, sessions.ReasonUserChanged} {
		t.Run(string(reason), func(t *testing.T) {
			e.t = t
			s, tok := s, tok
			if reason != sessions.ReasonAdmin {
				s, tok = e.create("bob", e.at(3*time.Second))
			}
			now := e.at(time.Minute)
			r, found, err := e.s.RevokeSID(e.ctx, s.SID, reason, now)
			if err != nil || !found {
				t.Fatalf("revoke sid = %v, %v", found, err)
			}
			wantRevs(t, "revoke sid", []sessions.Revocation{r}, rev(s, reason, now))
			e.wantRefused(tok, s.SID, now, sessions.ErrUnknown)
			if r, found, err := e.s.RevokeSID(e.ctx, s.SID, reason, now); err != nil || found {
				t.Fatalf("second revoke sid = %+v, %v, %v", r, found, err)
			}
		})
	}
	e.t = t
	if r, found, err := e.s.RevokeSID(e.ctx, "no-such-sid", sessions.ReasonAdmin, e.at(time.Minute)); err != nil || found {
		t.Fatalf("revoke of an unknown sid = %+v, %v, %v", r, found, err)
	}
	if got := e.find(keepTok, e.at(time.Minute)); got.SID != keep.SID {
		t.Fatal("revoke sid ended another session")
	}
}

func testRevokeLogin(t *testing.T, e *env) {
	var alice []sessions.Session
	var toks []string
	for i := range 3 {
		s, tok := e.create("alice", e.at(time.Duration(i)*time.Millisecond))
		alice, toks = append(alice, s), append(toks, tok)
	}
	// One of them rotated: its replaced token, within grace, dies too.
	replaced := toks[1]
	_, toks[1] = e.rotate(toks[1], alice[1].SID, e.at(time.Second))
	bob, bobTok := e.create("bob", e.at(time.Second))
	// A login that is a prefix of another one's is another login.
	ali, aliTok := e.create("ali", e.at(time.Second))

	now := e.at(2 * time.Second)
	revs, err := e.s.RevokeLogin(e.ctx, "alice", sessions.ReasonUserChanged, now)
	if err != nil {
		t.Fatal(err)
	}
	var want []sessions.Revocation
	for _, s := range alice {
		want = append(want, rev(s, sessions.ReasonUserChanged, now))
	}
	wantRevs(t, "revoke login", revs, want...)
	for i, tok := range append(toks, replaced) {
		if _, _, err := e.s.Find(e.ctx, Policy, tok, now); !errors.Is(err, sessions.ErrUnknown) {
			t.Fatalf("token %d of a revoked login: %v, want ErrUnknown", i, err)
		}
	}
	wantSIDs(t, "list alice", e.list("alice", now))
	if got := e.find(bobTok, now); got.SID != bob.SID {
		t.Fatal("bob lost his session")
	}
	if got := e.find(aliTok, now); got.SID != ali.SID {
		t.Fatal("ali lost her session")
	}
	if revs, err := e.s.RevokeLogin(e.ctx, "alice", sessions.ReasonAdmin, now); err != nil || len(revs) != 0 {
		t.Fatalf("second revoke login = %v, %v", revs, err)
	}
	if revs, err := e.s.RevokeLogin(e.ctx, "nobody", sessions.ReasonAdmin, now); err != nil || len(revs) != 0 {
		t.Fatalf("revoke of an unknown login = %v, %v", revs, err)
	}
	if n := e.count(now); n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
}

func testGetListCount(t *testing.T, e *env) {
	now := e.at(0)
	if n := e.count(now); n != 0 {
		t.Fatalf("empty store: count %d", n)
	}
	wantSIDs(t, "empty list", e.list("", now))
	// Created out of login order, so that oldest first is not by login.
	logins := []string{"bob", "alice", "bob", "alice", "alice"}
	var ss []sessions.Session
	var toks []string
	for i, l := range logins {
		s, tok := e.create(l, e.at(time.Duration(i)*time.Second))
		ss, toks = append(ss, s), append(toks, tok)
	}
	now = e.at(time.Minute)
	wantSIDs(t, "list all", e.list("", now), ss[0].SID, ss[1].SID, ss[2].SID, ss[3].SID, ss[4].SID)
	wantSIDs(t, "list alice", e.list("alice", now), ss[1].SID, ss[3].SID, ss[4].SID)
	wantSIDs(t, "list bob", e.list("bob", now), ss[0].SID, ss[2].SID)
	wantSIDs(t, "list nobody", e.list("nobody", now))
	if n := e.count(now); n != 5 {
		t.Fatalf("count = %d, want 5", n)
	}
	if _, ok := e.get("no-such-sid", now); ok {
		t.Fatal("get finds an unknown sid")
	}

	// Use all but ss[3]; rotate ss[4]. Then ss[3] idles out.
	used := e.at(30 * time.Minute)
	for i := range ss {
		switch i {
		case 3:
		case 4:
			ss[4], _ = e.rotate(toks[4], ss[4].SID, used)
		default:
			ss[i] = e.use(toks[i], used)
		}
	}
	now = e.at(Policy.IdleTimeout + 3*time.Second)
	l := e.list("", now)
	wantSIDs(t, "list all after idle", l, ss[0].SID, ss[1].SID, ss[2].SID, ss[4].SID)
	for i, j := range []int{0, 1, 2, 4} {
		wantSession(t, "list entry", l[i], ss[j])
		g, ok := e.get(ss[j].SID, now)
		if !ok {
			t.Fatalf("get %d: not found", j)
		}
		wantSession(t, "get", g, ss[j])
	}
	wantSIDs(t, "list alice after idle", e.list("alice", now), ss[1].SID, ss[4].SID)
	if _, ok := e.get(ss[3].SID, now); ok {
		t.Fatal("get finds an idle session")
	}
	if n := e.count(now); n != 4 {
		t.Fatalf("count = %d, want 4", n)
	}
}

func testSweep(t *testing.T, e *env) {
	now := e.at(0)
	if n, err := e.s.Sweep(e.ctx, Policy, now); err != nil || n != 0 {
		t.Fatalf("sweep of an empty store = %d, %v", n, err)
	}
	type sess struct {
		s   sessions.Session
		tok string
	}
	var live, dead []sess
	for i := range 6 {
		s, tok := e.create(fmt.Sprintf("user%d", i%2), e.at(time.Duration(i)*time.Millisecond))
		if i%3 == 0 {
			dead = append(dead, sess{s, tok})
		} else {
			live = append(live, sess{s, tok})
		}
	}
	// One live session rotated, so that its family has two hashes.
	used := e.at(40 * time.Minute)
	for i := range live {
		if i == 0 {
			live[i].s, live[i].tok = e.rotate(live[i].tok, live[i].s.SID, used)
		} else {
			live[i].s = e.use(live[i].tok, used)
		}
	}
	now = e.at(Policy.IdleTimeout + time.Minute)
	n, err := e.s.Sweep(e.ctx, Policy, now)
	if err != nil || (n != 0 && n != len(dead)) {
		t.Fatalf("sweep = %d, %v; want %d (or 0 for an engine that expires keys itself)", n, err, len(dead))
	}
	for _, d := range dead {
		if _, _, err := e.s.Find(e.ctx, Policy, d.tok, now); !errors.Is(err, sessions.ErrEnded) && !errors.Is(err, sessions.ErrUnknown) {
			t.Fatalf("swept session: find = %v", err)
		}
	}
	for _, l := range live {
		wantSession(t, "live session after sweep", e.find(l.tok, now), l.s)
	}
	if c := e.count(now); c != len(live) {
		t.Fatalf("count = %d, want %d", c, len(live))
	}
	if n, err := e.s.Sweep(e.ctx, Policy, now); err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v", n, err)
	}
	// The live sessions keep working: rotation and the bound still see the
	// right families.
	_, next := e.rotate(live[0].tok, live[0].s.SID, now)
	e.find(next, now)
}

func testMalformed(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	// A last character that sets the unused low bit: not canonical
	// base64url, though it decodes to the same bytes leniently.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	noncanon := tok[:len(tok)-1] + string(alphabet[strings.IndexByte(alphabet, tok[len(tok)-1])|1])
	bad := []string{
		"", "x", tok[:len(tok)-1], tok + "A", tok + "=", " " + tok, tok + "\n",
		strings.Repeat("+", len(tok)), strings.Repeat("/", len(tok)), strings.Repeat("é", len(tok)/2),
		strings.Repeat("A", 1<<16), "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
		noncanon,
	}
	now := e.at(time.Second)
	for _, b := range bad {
		if b == tok {
			continue
		}
		e.wantRefused(b, s.SID, now, sessions.ErrUnknown)
		if r, found, err := e.s.Revoke(e.ctx, Policy, b, now); err != nil || found {
			t.Fatalf("revoke of %.20q = %+v, %v, %v", b, r, found, err)
		}
	}
	// A well-formed token nobody issued.
	e.wantRefused(unknownToken(t), s.SID, now, sessions.ErrUnknown)
	if got := e.find(tok, now); got.SID != s.SID || got.Gen != 0 {
		t.Fatalf("the real token after malformed ones: %+v", got)
	}
}

func testReopen(t *testing.T, e *env) {
	a, aTok := e.create("alice", e.at(0))
	b, bTok := e.create("bob", e.at(time.Millisecond))
	c, cTok := e.create("carol", e.at(2*time.Millisecond))
	d, dTok := e.create("dave", e.at(3*time.Millisecond))
	rotated := e.at(2 * time.Minute)
	a, aNext := e.rotate(aTok, a.SID, rotated)
	b = e.use(bTok, rotated)
	if _, found, err := e.s.Revoke(e.ctx, Policy, cTok, rotated); err != nil || !found {
		t.Fatalf("revoke: %v, %v", found, err)
	}
	now := rotated.Add(time.Second)
	before := e.list("", now)

	e.reopen()

	wantSIDs(t, "list after reopen", e.list("", now), a.SID, b.SID, d.SID)
	for i, s := range e.list("", now) {
		wantSession(t, "reopened session", s, before[i])
	}
	if n := e.count(now); n != 3 {
		t.Fatalf("count after reopen = %d, want 3", n)
	}
	wantSession(t, "find b", e.find(bTok, now), b)
	wantSession(t, "find d", e.find(dTok, now), d)
	wantSession(t, "find a's successor", e.find(aNext, now), a)
	e.wantRefused(cTok, c.SID, now, sessions.ErrUnknown)
	// The grace window survives: the retried rotation gets the same
	// successor.
	within := rotated.Add(Policy.Grace - time.Millisecond)
	if _, again := e.rotate(aTok, a.SID, within); again != aNext {
		t.Fatal("retried rotation after reopen returned another successor")
	}

	e.reopen()

	// Reuse detection survives too.
	after := rotated.Add(Policy.Grace)
	_, revs, err := e.s.Find(e.ctx, Policy, aTok, after)
	if !errors.Is(err, sessions.ErrReused) {
		t.Fatalf("replaced token after reopen = %v, want ErrReused", err)
	}
	wantRevs(t, "reuse after reopen", revs, rev(a, sessions.ReasonReuse, after))
	e.wantRefused(aNext, a.SID, after, sessions.ErrUnknown)

	// New logins work on the reopened store, and the bound counts the
	// sessions from before the reopen.
	e.create("dave", after)
	e.create("dave", after.Add(time.Millisecond))
	_, _, revs, err = e.s.Create(e.ctx, Policy, newUser("dave"), after.Add(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	wantRevs(t, "bound after reopen", revs, rev(d, sessions.ReasonBound, after.Add(2*time.Millisecond)))

	// b's use was kept: b idles out an hour after it, not after its
	// creation.
	e.find(bTok, b.LastUsed.Add(Policy.IdleTimeout-time.Millisecond))
	e.wantRefused(bTok, b.SID, b.LastUsed.Add(Policy.IdleTimeout), sessions.ErrEnded)
}

func testClosed(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	e.closed = true
	now := e.at(time.Second)
	ctx := e.ctx
	st := e.s
	checks := map[string]func() error{
		"Create": func() error { _, _, _, err := st.Create(ctx, Policy, newUser("bob"), now); return err },
		"Find":   func() error { _, _, err := st.Find(ctx, Policy, tok, now); return err },
		"Use":    func() error { _, _, err := st.Use(ctx, Policy, tok, now); return err },
		"Rotate": func() error { _, _, _, err := st.Rotate(ctx, Policy, tok, s.SID, now); return err },
		"Revoke": func() error { _, _, err := st.Revoke(ctx, Policy, tok, now); return err },
		"RevokeSID": func() error {
			_, _, err := st.RevokeSID(ctx, s.SID, sessions.ReasonAdmin, now)
			return err
		},
		"RevokeLogin": func() error { _, err := st.RevokeLogin(ctx, "alice", sessions.ReasonAdmin, now); return err },
		"Get":         func() error { _, _, err := st.Get(ctx, Policy, s.SID, now); return err },
		"List":        func() error { _, err := st.List(ctx, Policy, "", now); return err },
		"Count":       func() error { _, err := st.Count(ctx, Policy, now); return err },
		"Sweep":       func() error { _, err := st.Sweep(ctx, Policy, now); return err },
	}
	names := make([]string, 0, len(checks))
	for name := range checks {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checks[name](); !errors.Is(err, sessions.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", name, err)
		}
	}
	// The data is intact for the next store.
	s2, err := e.b.Open()
	if err != nil {
		t.Fatal(err)
	}
	e.s, e.closed = s2, false
	if got := e.find(tok, now); got.SID != s.SID {
		t.Fatalf("after reopen: %+v", got)
	}
}
