package sessionstest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// The cases of logins, use and rotation of a refresh-token family, reuse,
// the grace window, and concurrent rotations and logins.

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
