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
