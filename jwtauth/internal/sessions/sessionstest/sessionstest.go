// Package sessionstest is the conformance suite of sessions.Store. Every
// backend runs it, unchanged, before it is wired into the issuer:
//
//	func TestConformance(t *testing.T) {
//		sessionstest.Run(t, func(t *testing.T) sessionstest.Backend { ... })
//	}
//
// The suite pins time: every operation gets a time derived from the real
// clock at the start of each test (truncated to the millisecond) and moved
// only forward, never a fixed date, so that an engine that lets its keys
// expire (Redis PEXPIREAT) keeps them for the whole test. The policy is
// enforced by the operations themselves, against the time they are given.
//
// The semantics it pins, beyond the doc comments of sessions.Store:
//   - a session ends at exactly Policy.Expires (live strictly before it);
//   - the replaced token is within the grace window strictly before
//     rotation time + Grace; at that instant it is reuse;
//   - a refused expired session is ErrEnded and not a revocation; Revoke of
//     its token reports found == false;
//   - an ended family's tokens (revoked, reused, bound) are ErrUnknown,
//     including the successor and the token within its grace window;
//   - Sweep returns either 0 (the engine expires keys itself) or exactly the
//     number of dead sessions, and never touches a live one.
package sessionstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// Backend is the data of one store under test.
type Backend interface {
	// Open opens a store on the backend's data: empty the first time, and
	// after the previous store's Close, what that store left.
	Open() (sessions.Store, error)
}

// Policy is the policy of the suite. Its durations are long enough that an
// engine expiring keys on the real clock keeps them for a whole test.
var Policy = sessions.Policy{
	RefreshTTL:  24 * time.Hour,
	IdleTimeout: time.Hour,
	MaxPerLogin: 3,
	Grace:       10 * time.Second,
	Retain:      15 * time.Minute,
}

// Run runs the conformance suite. newBackend returns fresh, empty data for
// each test.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newEnv(t, newBackend(t)))
		})
	}
}

var tests = []struct {
	name string
	run  func(*testing.T, *env)
}{
	{"Login", testLogin},
	{"FindDoesNotRecordUse", testFindDoesNotRecordUse},
	{"UseRecordsUse", testUseRecordsUse},
	{"Rotate", testRotate},
	{"RotateMismatch", testRotateMismatch},
	{"Reuse", testReuse},
	{"Grace", testGrace},
	{"ConcurrentRotations", testConcurrentRotations},
	{"ConcurrentLogins", testConcurrentLogins},
	{"IdleExpiry", testIdleExpiry},
	{"AbsoluteExpiry", testAbsoluteExpiry},
	{"PolicyPerOperation", testPolicyPerOperation},
	{"PerLoginBound", testPerLoginBound},
	{"Revoke", testRevoke},
	{"RevokeSID", testRevokeSID},
	{"RevokeLogin", testRevokeLogin},
	{"GetListCount", testGetListCount},
	{"Sweep", testSweep},
	{"Malformed", testMalformed},
	{"Reopen", testReopen},
	{"Closed", testClosed},
}

// env is one test's store, its data and its clock origin.
type env struct {
	t      *testing.T
	b      Backend
	s      sessions.Store
	closed bool
	base   time.Time
	ctx    context.Context
}

func newEnv(t *testing.T, b Backend) *env {
	s, err := b.Open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	e := &env{t: t, b: b, s: s, base: time.Now().Truncate(time.Millisecond), ctx: context.Background()}
	t.Cleanup(func() {
		if !e.closed {
			if err := e.s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	})
	return e
}

// at is the test's time base + d.
func (e *env) at(d time.Duration) time.Time { return e.base.Add(d) }

// reopen closes the store and opens a new one on the same data.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.s.Close(); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	e.closed = true
	s, err := e.b.Open()
	if err != nil {
		e.t.Fatalf("reopen: %v", err)
	}
	e.s, e.closed = s, false
}

func newUser(login string) sessions.New {
	return sessions.New{Login: login, UserID: "uid-" + login, FP: "fp-" + login}
}

// create logs login in at now and checks what Create returns.
func (e *env) create(login string, now time.Time) (sessions.Session, string) {
	e.t.Helper()
	s, tok, revs, err := e.s.Create(e.ctx, Policy, newUser(login), now)
	if err != nil {
		e.t.Fatalf("create %s: %v", login, err)
	}
	if len(revs) != 0 {
		e.t.Fatalf("create %s: revocations %v, want none", login, revs)
	}
	return s, tok
}

func (e *env) find(tok string, now time.Time) sessions.Session {
	e.t.Helper()
	s, revs, err := e.s.Find(e.ctx, Policy, tok, now)
	if err != nil || len(revs) != 0 {
		e.t.Fatalf("find: %v, revocations %v", err, revs)
	}
	return s
}

func (e *env) use(tok string, now time.Time) sessions.Session {
	e.t.Helper()
	s, revs, err := e.s.Use(e.ctx, Policy, tok, now)
	if err != nil || len(revs) != 0 {
		e.t.Fatalf("use: %v, revocations %v", err, revs)
	}
	return s
}

func (e *env) rotate(tok, sid string, now time.Time) (sessions.Session, string) {
	e.t.Helper()
	s, next, revs, err := e.s.Rotate(e.ctx, Policy, tok, sid, now)
	if err != nil || len(revs) != 0 {
		e.t.Fatalf("rotate: %v, revocations %v", err, revs)
	}
	if !sessions.ValidToken(next) || next == tok {
		e.t.Fatalf("rotate returned successor %q for %q", next, tok)
	}
	return s, next
}

// wantRefused checks that Find, Use and Rotate of tok all fail with want,
// without revocations (ErrUnknown, ErrEnded refuse without ending
// anything).
func (e *env) wantRefused(tok, sid string, now time.Time, want error) {
	e.t.Helper()
	if s, revs, err := e.s.Find(e.ctx, Policy, tok, now); !errors.Is(err, want) || len(revs) != 0 {
		e.t.Fatalf("find = %+v, %v, %v; want %v", s, revs, err, want)
	}
	if s, revs, err := e.s.Use(e.ctx, Policy, tok, now); !errors.Is(err, want) || len(revs) != 0 {
		e.t.Fatalf("use = %+v, %v, %v; want %v", s, revs, err, want)
	}
	if s, next, revs, err := e.s.Rotate(e.ctx, Policy, tok, sid, now); !errors.Is(err, want) || len(revs) != 0 || next != "" {
		e.t.Fatalf("rotate = %+v, %q, %v, %v; want %v", s, next, revs, err, want)
	}
}

func (e *env) get(sid string, now time.Time) (sessions.Session, bool) {
	e.t.Helper()
	s, ok, err := e.s.Get(e.ctx, Policy, sid, now)
	if err != nil {
		e.t.Fatalf("get %s: %v", sid, err)
	}
	return s, ok
}

func (e *env) count(now time.Time) int {
	e.t.Helper()
	n, err := e.s.Count(e.ctx, Policy, now)
	if err != nil {
		e.t.Fatalf("count: %v", err)
	}
	return n
}

func (e *env) list(login string, now time.Time) []sessions.Session {
	e.t.Helper()
	l, err := e.s.List(e.ctx, Policy, login, now)
	if err != nil {
		e.t.Fatalf("list %q: %v", login, err)
	}
	return l
}

// wantSession compares two sessions field by field, times with Equal.
func wantSession(t *testing.T, what string, got, want sessions.Session) {
	t.Helper()
	if got.SID != want.SID || got.Login != want.Login || got.UserID != want.UserID || got.FP != want.FP ||
		!got.Created.Equal(want.Created) || !got.LastUsed.Equal(want.LastUsed) || got.Gen != want.Gen {
		t.Fatalf("%s: session\n got %+v\nwant %+v", what, got, want)
	}
}

// wantSIDs checks that l holds exactly the sessions sids, in that order.
func wantSIDs(t *testing.T, what string, l []sessions.Session, sids ...string) {
	t.Helper()
	got := make([]string, len(l))
	for i, s := range l {
		got[i] = s.SID
	}
	if !slices.Equal(got, sids) {
		t.Fatalf("%s: sessions %v, want %v", what, got, sids)
	}
}

// wantRevs checks revocations as a set (sid, login, reason, time).
func wantRevs(t *testing.T, what string, got []sessions.Revocation, want ...sessions.Revocation) {
	t.Helper()
	key := func(r sessions.Revocation) string {
		return fmt.Sprintf("%s/%s/%s/%d", r.SID, r.Login, r.Reason, r.At.UnixMilli())
	}
	g := make([]string, len(got))
	for i, r := range got {
		g[i] = key(r)
	}
	w := make([]string, len(want))
	for i, r := range want {
		w[i] = key(r)
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: revocations\n got %v\nwant %v", what, g, w)
	}
	for _, r := range got {
		for _, x := range want {
			if r.SID == x.SID && !r.At.Equal(x.At) {
				t.Fatalf("%s: revocation of %s at %v, want %v", what, r.SID, r.At, x.At)
			}
		}
	}
}

func rev(s sessions.Session, reason sessions.Reason, at time.Time) sessions.Revocation {
	return sessions.Revocation{SID: s.SID, Login: s.Login, Reason: reason, At: at}
}

// unknownToken is a well-formed token that no store issued.
func unknownToken(t *testing.T) string {
	tok, err := sessions.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func testLogin(t *testing.T, e *env) {
	now := e.at(0)
	s, tok := e.create("alice", now)
	want := sessions.Session{SID: s.SID, Login: "alice", UserID: "uid-alice", FP: "fp-alice", Created: now, LastUsed: now}
	wantSession(t, "create", s, want)
	if s.SID == "" || !sessions.ValidToken(tok) {
		t.Fatalf("create returned sid %q, token %q", s.SID, tok)
	}
	wantSession(t, "find", e.find(tok, e.at(time.Second)), want)
	if g, ok := e.get(s.SID, e.at(time.Second)); !ok {
		t.Fatal("get: session not found")
	} else {
		wantSession(t, "get", g, want)
	}

	// A second login of the same user is another session with another
	// token.
	s2, tok2 := e.create("alice", e.at(2*time.Second))
	if s2.SID == s.SID || tok2 == tok {
		t.Fatalf("two logins share sid %q or token", s.SID)
	}
	if got := e.find(tok2, e.at(2*time.Second)); got.SID != s2.SID {
		t.Fatalf("second token finds %s, want %s", got.SID, s2.SID)
	}
	if got := e.find(tok, e.at(2*time.Second)); got.SID != s.SID {
		t.Fatalf("first token finds %s after a second login, want %s", got.SID, s.SID)
	}
	if n := e.count(e.at(2 * time.Second)); n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
}

func testFindDoesNotRecordUse(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	if got := e.find(tok, e.at(30*time.Minute)); !got.LastUsed.Equal(s.Created) {
		t.Fatalf("find changed LastUsed to %v", got.LastUsed)
	}
	// Find recorded nothing: the session idles out IdleTimeout after its
	// creation.
	e.find(tok, e.at(Policy.IdleTimeout-time.Millisecond))
	e.wantRefused(tok, s.SID, e.at(Policy.IdleTimeout), sessions.ErrEnded)
}

func testUseRecordsUse(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	used := e.at(30 * time.Minute)
	got := e.use(tok, used)
	want := s
	want.LastUsed = used
	wantSession(t, "use", got, want)
	// The same token keeps working; nothing rotated.
	wantSession(t, "find after use", e.find(tok, e.at(31*time.Minute)), want)
	if g, _ := e.get(s.SID, e.at(31*time.Minute)); !g.LastUsed.Equal(used) {
		t.Fatalf("get: LastUsed %v, want %v", g.LastUsed, used)
	}
	// The use keeps the session from idling out until used + IdleTimeout.
	e.find(tok, used.Add(Policy.IdleTimeout-time.Millisecond))
	e.wantRefused(tok, s.SID, used.Add(Policy.IdleTimeout), sessions.ErrEnded)
}

func testRotate(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	now := e.at(time.Minute)
	r1, tok1 := e.rotate(tok, s.SID, now)
	want := s
	want.Gen, want.LastUsed = 1, now
	wantSession(t, "rotate", r1, want)
	wantSession(t, "find successor", e.find(tok1, now), want)

	now2 := e.at(20 * time.Minute)
	r2, tok2 := e.rotate(tok1, s.SID, now2)
	want.Gen, want.LastUsed = 2, now2
	wantSession(t, "second rotate", r2, want)
	if tok2 == tok || tok2 == tok1 {
		t.Fatal("rotation returned an earlier token")
	}
	wantSession(t, "find second successor", e.find(tok2, now2), want)
	if g, _ := e.get(s.SID, now2); g.Gen != 2 {
		t.Fatalf("get: Gen %d, want 2", g.Gen)
	}
	// Rotation records a use: the session lives IdleTimeout past it.
	e.find(tok2, now2.Add(Policy.IdleTimeout-time.Millisecond))
	if n := e.count(now2); n != 1 {
		t.Fatalf("count = %d after rotations, want 1", n)
	}
}

func testRotateMismatch(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	other, _ := e.create("bob", e.at(time.Millisecond))
	for _, sid := range []string{other.SID, "", "no-such-sid", s.SID + "x"} {
		if got, next, revs, err := e.s.Rotate(e.ctx, Policy, tok, sid, e.at(time.Minute)); !errors.Is(err, sessions.ErrMismatch) || next != "" || len(revs) != 0 {
			t.Fatalf("rotate with sid %q = %+v, %q, %v, %v; want ErrMismatch", sid, got, next, revs, err)
		}
	}
	// Nothing rotated: the token is still the current one.
	if got := e.find(tok, e.at(time.Hour-time.Millisecond)); got.Gen != 0 {
		t.Fatalf("Gen %d after refused rotations", got.Gen)
	}
	e.rotate(tok, s.SID, e.at(time.Hour-time.Millisecond))
}

// testReuse presents a replaced token, outside its grace window, to each
// operation: the family ends, the successor with it.
func testReuse(t *testing.T, e *env) {
	type op func(e *env, tok, sid string, now time.Time) ([]sessions.Revocation, error)
	ops := []struct {
		name string
		do   op
	}{
		{"Find", func(e *env, tok, _ string, now time.Time) ([]sessions.Revocation, error) {
			_, revs, err := e.s.Find(e.ctx, Policy, tok, now)
			return revs, err
		}},
		{"Use", func(e *env, tok, _ string, now time.Time) ([]sessions.Revocation, error) {
			_, revs, err := e.s.Use(e.ctx, Policy, tok, now)
			return revs, err
		}},
		{"Rotate", func(e *env, tok, sid string, now time.Time) ([]sessions.Revocation, error) {
			_, next, revs, err := e.s.Rotate(e.ctx, Policy, tok, sid, now)
			if next != "" {
				return revs, fmt.Errorf("reuse got a successor (err %v)", err)
			}
			return revs, err
		}},
		{"Revoke", func(e *env, tok, _ string, now time.Time) ([]sessions.Revocation, error) {
			r, found, err := e.s.Revoke(e.ctx, Policy, tok, now)
			if err != nil {
				return nil, err
			}
			if !found {
				return nil, errors.New("revoke: not found")
			}
			if r.Reason != sessions.ReasonReuse {
				return []sessions.Revocation{r}, fmt.Errorf("revoke: reason %q, want reuse", r.Reason)
			}
			return []sessions.Revocation{r}, sessions.ErrReused
		}},
	}
	// Each chain rotates at the given offsets and presents token number
	// present (0 = the login's) at the offset at.
	chains := []struct {
		name      string
		rotations []time.Duration
		present   int
		at        time.Duration
	}{
		{"ReplacedAfterGrace", []time.Duration{time.Minute}, 0, time.Minute + Policy.Grace},
		{"ReplacedLongAfter", []time.Duration{time.Minute}, 0, 50 * time.Minute},
		// Within the grace of the last rotation, but not the token it
		// replaced.
		{"OlderWithinGrace", []time.Duration{time.Minute, time.Minute + time.Second}, 0, time.Minute + 2*time.Second},
		{"OlderAfterMany", []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute}, 1, 5 * time.Minute},
	}
	for _, o := range ops {
		for _, c := range chains {
			t.Run(o.name+"/"+c.name, func(t *testing.T) {
				e.t = t
				login := "reuse-" + o.name + "-" + c.name
				s, tok := e.create(login, e.at(0))
				bystander, btok := e.create(login, e.at(time.Millisecond))
				toks := []string{tok}
				for _, d := range c.rotations {
					_, next := e.rotate(toks[len(toks)-1], s.SID, e.at(d))
					toks = append(toks, next)
				}
				now := e.at(c.at)
				revs, err := o.do(e, toks[c.present], s.SID, now)
				if !errors.Is(err, sessions.ErrReused) {
					t.Fatalf("%s of a replaced token = %v, want ErrReused", o.name, err)
				}
				wantRevs(t, "reuse", revs, rev(s, sessions.ReasonReuse, now))
				// The whole family is gone: every token, the successor too.
				for i, tk := range toks {
					if _, _, err := e.s.Find(e.ctx, Policy, tk, now); !errors.Is(err, sessions.ErrUnknown) {
						t.Fatalf("token %d of the reused family: find = %v, want ErrUnknown", i, err)
					}
				}
				e.wantRefused(toks[len(toks)-1], s.SID, now, sessions.ErrUnknown)
				if _, ok := e.get(s.SID, now); ok {
					t.Fatal("get finds the reused session")
				}
				// Another session of the same login is untouched.
				if got := e.find(btok, now); got.SID != bystander.SID {
					t.Fatalf("bystander token finds %s", got.SID)
				}
				wantSIDs(t, "list", e.list(login, now), bystander.SID)
			})
		}
	}
}

func testGrace(t *testing.T, e *env) {
	s, tok := e.create("alice", e.at(0))
	rotated := e.at(time.Minute)
	r1, next := e.rotate(tok, s.SID, rotated)
	within := rotated.Add(Policy.Grace - time.Millisecond)

	// Within the grace window the replaced token refreshes...
	if got := e.find(tok, rotated.Add(time.Second)); got.SID != s.SID || got.Gen != 1 {
		t.Fatalf("find of the replaced token within grace: %+v", got)
	}
	if got := e.use(tok, rotated.Add(2*time.Second)); got.SID != s.SID || got.Gen != 1 {
		t.Fatalf("use of the replaced token within grace: %+v", got)
	}
	// ... and a retried rotation gets the same successor, without a new
	// generation.
	for _, at := range []time.Time{rotated.Add(2 * time.Second), rotated.Add(3 * time.Second), within} {
		got, again := e.rotate(tok, s.SID, at)
		if again != next {
			t.Fatalf("retried rotation at +%v returned another successor", at.Sub(rotated))
		}
		if got.SID != s.SID || got.Gen != r1.Gen {
			t.Fatalf("retried rotation: %+v, want Gen %d", got, r1.Gen)
		}
	}
	// A retry with another sid is a mismatch, not a reuse.
	if _, n, _, err := e.s.Rotate(e.ctx, Policy, tok, "other", within); !errors.Is(err, sessions.ErrMismatch) || n != "" {
		t.Fatalf("retried rotation with another sid = %v", err)
	}
	if got := e.find(next, within); got.Gen != 1 {
		t.Fatalf("successor Gen %d, want 1", got.Gen)
	}
	// At rotation + Grace, it is reuse.
	after := rotated.Add(Policy.Grace)
	_, _, revs, err := e.s.Rotate(e.ctx, Policy, tok, s.SID, after)
	if !errors.Is(err, sessions.ErrReused) {
		t.Fatalf("rotation retried after grace = %v, want ErrReused", err)
	}
	wantRevs(t, "reuse after grace", revs, rev(s, sessions.ReasonReuse, after))
	e.wantRefused(next, s.SID, after, sessions.ErrUnknown)

	// A logout with the replaced token within grace ends the family as a
	// logout.
	s2, tok2 := e.create("bob", after)
	_, next2 := e.rotate(tok2, s2.SID, after.Add(time.Second))
	r, found, err := e.s.Revoke(e.ctx, Policy, tok2, after.Add(2*time.Second))
	if err != nil || !found {
		t.Fatalf("revoke within grace = %v, %v", found, err)
	}
	wantRevs(t, "logout within grace", []sessions.Revocation{r}, rev(s2, sessions.ReasonLogout, after.Add(2*time.Second)))
	e.wantRefused(next2, s2.SID, after.Add(2*time.Second), sessions.ErrUnknown)
}

// testConcurrentRotations rotates one token from many goroutines at once:
// exactly one rotation happens, and every caller gets its successor.
func testConcurrentRotations(t *testing.T, e *env) {
	const callers = 64
	s, tok := e.create("alice", e.at(0))
	for round := range 3 {
		now := e.at(time.Duration(round+1) * time.Minute)
		var wg sync.WaitGroup
		start := make(chan struct{})
		nexts := make([]string, callers)
		gens := make([]uint64, callers)
		errs := make([]error, callers)
		for i := range callers {
			wg.Go(func() {
				<-start
				got, next, revs, err := e.s.Rotate(e.ctx, Policy, tok, s.SID, now)
				if err == nil && len(revs) != 0 {
					err = fmt.Errorf("revocations %v", revs)
				}
				nexts[i], gens[i], errs[i] = next, got.Gen, err
			})
		}
		close(start)
		wg.Wait()
		for i := range callers {
			if errs[i] != nil {
				t.Fatalf("round %d, caller %d: %v", round, i, errs[i])
			}
			if nexts[i] != nexts[0] || !sessions.ValidToken(nexts[i]) {
				t.Fatalf("round %d: callers got different successors", round)
			}
			if gens[i] != uint64(round+1) {
				t.Fatalf("round %d, caller %d: Gen %d, want %d", round, i, gens[i], round+1)
			}
		}
		if got := e.find(nexts[0], now); got.Gen != uint64(round+1) {
			t.Fatalf("round %d: successor Gen %d", round, got.Gen)
		}
		tok = nexts[0]
	}

	// Many families rotated at once, several callers each: each family
	// advances by one generation.
	const families, per = 16, 4
	now := e.at(10 * time.Minute)
	type fam struct {
		s   sessions.Session
		tok string
	}
	fs := make([]fam, families)
	for i := range fs {
		fs[i].s, fs[i].tok = e.create(fmt.Sprintf("user%02d", i), now)
	}
	later := now.Add(time.Second)
	nexts := make([][per]string, families)
	errs := make(chan error, families*per)
	var wg sync.WaitGroup
	for i := range fs {
		for j := range per {
			wg.Go(func() {
				got, next, _, err := e.s.Rotate(e.ctx, Policy, fs[i].tok, fs[i].s.SID, later)
				if err == nil && got.Gen != 1 {
					err = fmt.Errorf("family %d: Gen %d", i, got.Gen)
				}
				if err != nil {
					errs <- err
				}
				nexts[i][j] = next
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range fs {
		for j := range per {
			if nexts[i][j] != nexts[i][0] {
				t.Fatalf("family %d: callers got different successors", i)
			}
		}
		if got := e.find(nexts[i][0], later); got.SID != fs[i].s.SID || got.Gen != 1 {
			t.Fatalf("family %d: successor finds %+v", i, got)
		}
	}
}

func testConcurrentLogins(t *testing.T, e *env) {
	const n = 64
	now := e.at(0)
	sids := make([]string, n)
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, tok, revs, err := e.s.Create(e.ctx, Policy, newUser(fmt.Sprintf("user%02d", i)), now)
			if err == nil && len(revs) != 0 {
				err = fmt.Errorf("revocations %v", revs)
			}
			sids[i], toks[i], errs[i] = s.SID, tok, err
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("login %d: %v", i, errs[i])
		}
		if seen[sids[i]] || seen[toks[i]] {
			t.Fatalf("login %d repeats a sid or token", i)
		}
		seen[sids[i]], seen[toks[i]] = true, true
		if got := e.find(toks[i], now); got.SID != sids[i] || got.Login != fmt.Sprintf("user%02d", i) {
			t.Fatalf("login %d: token finds %+v", i, got)
		}
	}
	if c := e.count(now); c != n {
		t.Fatalf("count = %d, want %d", c, n)
	}

	// Concurrent logins of one user beyond the bound: the bound holds and
	// every ended session is reported once.
	const m = 20
	revs := make(chan sessions.Revocation, m)
	errc := make(chan error, m)
	later := now.Add(time.Minute)
	for range m {
		wg.Go(func() {
			_, _, r, err := e.s.Create(e.ctx, Policy, newUser("crowd"), later)
			if err != nil {
				errc <- err
			}
			for _, x := range r {
				revs <- x
			}
		})
	}
	wg.Wait()
	close(revs)
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	ended := map[string]bool{}
	for r := range revs {
		if r.Reason != sessions.ReasonBound || r.Login != "crowd" || ended[r.SID] {
			t.Fatalf("bound revocation %+v (seen %v)", r, ended[r.SID])
		}
		ended[r.SID] = true
	}
	live := e.list("crowd", later)
	if len(live) != Policy.MaxPerLogin || len(ended) != m-Policy.MaxPerLogin {
		t.Fatalf("%d live and %d ended sessions of %d logins, want %d live", len(live), len(ended), m, Policy.MaxPerLogin)
	}
	for _, s := range live {
		if ended[s.SID] {
			t.Fatalf("session %s both ended and live", s.SID)
		}
	}
}

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
