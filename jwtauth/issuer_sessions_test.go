package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// observeWarnings routes the issuer's audit log into an observer.
func (e *issuerEnv) observeWarnings() *observer.ObservedLogs {
	core, logs := observer.New(zapcore.WarnLevel)
	e.is.audit = zap.New(core)
	return logs
}

// TestIssuerReuseRevokesFamily presents a rotated-out refresh token: the
// whole family ends (its current token too), it is logged at Warn without
// the token, and the user's other sessions are untouched.
func TestIssuerReuseRevokesFamily(t *testing.T) {
	for _, endpoint := range []string{"/update/access-token", "/update/refresh-token", "/revoke/token"} {
		t.Run(strings.TrimPrefix(endpoint, "/"), func(t *testing.T) {
			e := newIssuerEnv(t, nil)
			logs := e.observeWarnings()
			access, rt1 := e.login("alice", "alice-password")
			otherAccess, otherRT := e.login("alice", "alice-password")
			sid, otherSID := e.sidOf(access), e.sidOf(otherAccess)
			rt2 := e.mustRotate(rt1, access)
			e.clock.Add(time.Minute)
			m := e.do(issuerReq{path: endpoint, body: "{}", header: map[string]string{"refreshToken": rt1, "access_token": access}})
			if endpoint == "/revoke/token" {
				m.expect(t, 200, "") // a logout, even with a stale token
			} else if d := m.expect(t, 401, "invalid_grant")["error_description"]; !strings.Contains(d.(string), "reused") {
				t.Fatalf("description %q", d)
			}
			e.refresh(rt2).expect(t, 401, "invalid_grant")
			if e.live(sid) {
				t.Fatal("the reused family is still stored")
			}
			if logs.Len() != 1 || !strings.Contains(logs.All()[0].Message, "reuse") {
				t.Fatalf("warnings %v", logs.All())
			}
			for _, entry := range logs.All() {
				for _, f := range entry.Context {
					if strings.Contains(fmt.Sprint(f.String, f.Interface), rt1) || strings.Contains(f.String, rt2) {
						t.Fatal("a refresh token was logged")
					}
				}
			}
			e.refresh(otherRT).expect(t, 200, "")
			if otherSID == sid {
				t.Fatal("two logins share a session")
			}
		})
	}
}

// TestIssuerRotationGrace: the token a rotation just replaced still
// refreshes for 2 seconds, a second rotation with it (a retry whose answer
// was lost) gets the same successor without ending the family, and after
// the grace it is reuse.
func TestIssuerRotationGrace(t *testing.T) {
	e := newIssuerEnv(t, nil)
	access, rt1 := e.login("bob", "bob-password")
	rt2 := e.mustRotate(rt1, access)
	e.clock.Add(time.Second)
	e.refresh(rt1).expect(t, 200, "")
	if again := e.mustRotate(rt1, access); again != rt2 {
		t.Fatal("a retried rotation within the grace got another successor")
	}
	e.refresh(rt2).expect(t, 200, "")
	e.clock.Add(1500 * time.Millisecond) // 2.5s after the rotation
	e.refresh(rt1).expect(t, 401, "invalid_grant")
	e.refresh(rt2).expect(t, 401, "invalid_grant")
}

// TestIssuerRotationNeedsSameSession refuses a rotation with another
// session's access token, or none.
func TestIssuerRotationNeedsSameSession(t *testing.T) {
	e := newIssuerEnv(t, nil)
	access1, rt1 := e.login("alice", "alice-password")
	access2, _ := e.login("alice", "alice-password")
	if d := e.rotate(rt1, access2).expect(t, 401, "invalid_grant")["error_description"]; !strings.Contains(d.(string), "another session") {
		t.Fatalf("description %q", d)
	}
	e.do(issuerReq{path: "/update/refresh-token", body: "{}", header: map[string]string{"refreshToken": rt1}}).expect(t, 401, "invalid_token")
	e.rotate(rt1, "not.a.token").expect(t, 401, "invalid_token")
	e.rotate(rt1, rt1).expect(t, 401, "invalid_token")
	e.clock.Add(2 * time.Minute) // access1 expired
	e.rotate(rt1, access1).expect(t, 401, "invalid_token")
	// nothing happened to the family
	e.refresh(rt1).expect(t, 200, "")
}

// TestIssuerConcurrentRotations races rotations of the same token, over
// several generations: exactly one rotation happens per generation (every
// racer gets the same successor, and the family's generation grows by one),
// refreshes racing with them succeed, and afterwards the store reopens with
// the same sessions.
func TestIssuerConcurrentRotations(t *testing.T) {
	e := newIssuerEnv(t, nil)
	access, rt := e.login("alice", "alice-password")
	_, other := e.login("bob", "bob-password")
	sid := e.sidOf(access)
	const racers = 12
	for gen := 0; gen < 5; gen++ {
		var wg sync.WaitGroup
		results := make([]issuerRes, racers)
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%3 == 2 { // refreshes race too
					results[i] = e.refresh(rt)
				} else {
					results[i] = e.rotate(rt, access)
				}
			}()
		}
		wg.Wait()
		successors := map[string]bool{}
		for i, res := range results {
			m := res.expect(t, 200, "") // current, or within the grace period
			if i%3 != 2 {
				successors[m["refreshToken"].(string)] = true
			}
		}
		if len(successors) != 1 {
			t.Fatalf("gen %d: %d different successors", gen, len(successors))
		}
		for next := range successors {
			rt = next
		}
		if s := e.session(sid); s.Gen != uint64(gen+1) {
			t.Fatalf("gen %d: the family is at generation %d", gen, s.Gen)
		}
		e.clock.Add(30 * time.Second)
		access = e.refresh(rt).expect(t, 200, "")["access_token"].(string)
	}
	e.refresh(other).expect(t, 200, "")

	// close everything, reopen the store: the same sessions
	want := e.sessions("")
	if len(want) != 2 {
		t.Fatalf("%d sessions, want 2", len(want))
	}
	if err := e.app.Cleanup(); err != nil {
		t.Fatal(err)
	}
	e.load(nil)
	if got := e.sessions(""); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reopened store differs:\n got %v\nwant %v", got, want)
	}
	e.refresh(rt).expect(t, 200, "")
	e.refresh(other).expect(t, 200, "")
}

// sessions lists the live sessions of login ("" for all).
func (e *issuerEnv) sessions(login string) []sessions.Session {
	e.t.Helper()
	list, err := e.is.listSessions(context.Background(), login)
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// session returns the live session sid.
func (e *issuerEnv) session(sid string) sessions.Session {
	e.t.Helper()
	s, ok, err := e.store().Get(context.Background(), e.is.policy(), sid, e.clock.Now())
	if err != nil || !ok {
		e.t.Fatalf("session %s: %v, found %v", sid, err, ok)
	}
	return s
}

// TestIssuerOldTokensRefused: however many rotations ago it was replaced, a
// token refreshes nothing, while the family's current token still does or
// the family ended as reuse; never a success.
func TestIssuerOldTokensRefused(t *testing.T) {
	e := newIssuerEnv(t, nil)
	access, rt := e.login("bob", "bob-password")
	first := rt
	for range 19 {
		rt = e.mustRotate(rt, access)
		e.clock.Add(10 * time.Second)
		access = e.refresh(rt).expect(t, 200, "")["access_token"].(string)
	}
	if s := e.session(e.sidOf(access)); s.Gen != 19 {
		t.Fatalf("generation %d", s.Gen)
	}
	e.refresh(first).expect(t, 401, "invalid_grant")
}

// TestIssuerSessionLifetimes ends sessions at refresh_ttl and idle_timeout,
// and the sweeper deletes them.
func TestIssuerSessionLifetimes(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) {
		is.RefreshTTL = caddy.Duration(time.Hour)
		is.IdleTimeout = caddy.Duration(20 * time.Minute)
	})
	_, busy := e.login("alice", "alice-password")
	_, idle := e.login("bob", "bob-password")
	for range 5 { // 50 minutes of use every 10 minutes
		e.clock.Add(10 * time.Minute)
		e.refresh(busy).expect(t, 200, "")
	}
	e.refresh(idle).expect(t, 401, "invalid_grant")
	e.clock.Add(10 * time.Minute) // 60 minutes: refresh_ttl
	e.refresh(busy).expect(t, 401, "invalid_grant")

	// dead sessions are not counted, and the sweeper deletes them
	_, late := e.login("bob", "bob-password")
	if n := e.count(); n != 1 {
		t.Fatalf("%d live sessions, want 1", n)
	}
	if n := e.sweep(); n != 2 {
		t.Fatalf("sweep deleted %d, want 2", n)
	}
	e.clock.Add(21 * time.Minute)
	if n := e.sweep(); n != 1 || e.count() != 0 {
		t.Fatalf("sweep deleted %d, %d left", n, e.count())
	}
	e.refresh(late).expect(t, 401, "invalid_grant")
}

// sweep runs the embedded store's sweeper once.
func (e *issuerEnv) sweep() int {
	e.t.Helper()
	n, err := e.store().Sweep(context.Background(), e.is.policy(), e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestIssuerUsersFileChangeEndsFamilies reloads with a changed users file:
// the families of changed, disabled and removed users end at once under the
// new config, and are deleted when the old config goes; the others live on.
func TestIssuerUsersFileChangeEndsFamilies(t *testing.T) {
	for _, revokeAccess := range []bool{false, true} {
		t.Run(fmt.Sprint("revoke_access_tokens=", revokeAccess), func(t *testing.T) {
			users := []plainUser{
				{login: "keep", password: "keep-pw", userID: "1", claims: `{"a":1}`},
				{login: "passwd", password: "old-pw", userID: "2"},
				{login: "disable", password: "dis-pw", userID: "3"},
				{login: "claims", password: "cl-pw", userID: "4", claims: `{"roles":["user"]}`},
				{login: "remove", password: "rm-pw", userID: "5"},
				{login: "uid", password: "uid-pw", userID: "6"},
			}
			mutate := func(is *Issuer) { is.RevokeAccessTokens = revokeAccess }
			e := newIssuerEnv(t, mutate)
			writeUsers(t, e.users, users...)
			oldApp := e.load(mutate)
			access, refresh := map[string]string{}, map[string]string{}
			for _, u := range users {
				access[u.login], refresh[u.login] = e.login(u.login, u.password)
			}
			changed := []plainUser{
				{login: "keep", password: "keep-pw", userID: "1", claims: `{ "a" : 1 }`}, // same claims, reformatted
				{login: "passwd", password: "new-pw", userID: "2"},
				{login: "disable", password: "dis-pw", userID: "3", disabled: true},
				{login: "claims", password: "cl-pw", userID: "4", claims: `{"roles":["admin"]}`},
				{login: "uid", password: "uid-pw", userID: "60"},
			}
			writeUsers(t, e.users, changed...)
			e.load(mutate)
			for _, u := range users {
				res := e.refresh(refresh[u.login])
				if u.login == "keep" {
					res.expect(t, 200, "")
					continue
				}
				res.expect(t, 401, "invalid_grant")
				if got := e.protected(access[u.login]); got == revokeAccess {
					t.Errorf("%s: access token accepted=%v with revoke_access_tokens=%v", u.login, got, revokeAccess)
				}
			}
			if !e.protected(access["keep"]) {
				t.Fatal("an unchanged user's access token was refused")
			}
			// the old config goes: only the unchanged user's session is left
			if err := oldApp.Cleanup(); err != nil {
				t.Fatal(err)
			}
			if n := e.count(); n != 1 {
				t.Fatalf("%d sessions stored, want 1", n)
			}
			e.login("passwd", "new-pw")
			e.do(issuerReq{path: "/authenticate", body: `{"login":"disable","password":"dis-pw"}`}).expect(t, 401, "invalid_grant")
		})
	}
}

// TestIssuerRevokeAccessTokens: with revoke_access_tokens, a validator bound
// with issuer_keys refuses the access tokens of a revoked session at once,
// also from its token cache; without it they live until exp.
func TestIssuerRevokeAccessTokens(t *testing.T) {
	for _, revokeAccess := range []bool{false, true} {
		t.Run(fmt.Sprint("revoke_access_tokens=", revokeAccess), func(t *testing.T) {
			e := newIssuerEnv(t, func(is *Issuer) { is.RevokeAccessTokens = revokeAccess })
			v := e.app.Validators["api"]
			access, rt := e.login("alice", "alice-password")
			otherAccess, _ := e.login("alice", "alice-password")
			for i := range 2 {
				if _, err := v.verify(access); err != nil {
					t.Fatalf("verify %d: %v", i, err)
				}
			}
			if v.cache == nil || v.cache.getToken(access) == nil {
				t.Fatal("the token is not cached: the test would not cover cache hits")
			}
			e.do(issuerReq{path: "/revoke/token", body: "{}", header: map[string]string{"refreshToken": rt}}).expect(t, 200, "")
			for i := range 2 {
				_, err := v.verify(access)
				if revokeAccess && !errors.Is(err, ErrRevoked) {
					t.Fatalf("verify %d after revoke: %v, want ErrRevoked", i, err)
				}
				if !revokeAccess && err != nil {
					t.Fatalf("verify %d after revoke: %v", i, err)
				}
			}
			if e.protected(access) == revokeAccess {
				t.Fatal("jwt_auth disagrees with verify")
			}
			if _, err := v.verify(otherAccess); err != nil {
				t.Fatalf("the user's other session: %v", err)
			}
			// the deny-list: a sid never revoked is not, a revoked one is
			// until its tokens have all expired (access_ttl + leeway)
			sid, iat := e.sidOf(access), e.clock.Now().Unix()
			want := map[bool]revocationState{false: notRevoked, true: sessionRevoked}[revokeAccess]
			if got := e.is.revoked(sid, iat, e.clock.Now()); got != want {
				t.Fatalf("revoked(%s) = %v, want %v", sid, got, want)
			}
			if got := e.is.revoked("no-such-sid", iat, e.clock.Now()); got != notRevoked {
				t.Fatalf("a sid never revoked: %v", got)
			}
			e.clock.Add(89 * time.Second)
			if got := e.is.revoked(sid, iat, e.clock.Now()); got != want {
				t.Fatalf("revoked(%s) 89s later = %v, want %v", sid, got, want)
			}
			e.clock.Add(time.Second)
			if got := e.is.revoked(sid, iat, e.clock.Now()); got != notRevoked {
				t.Fatalf("revoked(%s) after access_ttl + leeway = %v", sid, got)
			}
		})
	}
}

// TestIssuerStoreUnavailable answers 503 with Retry-After when the store
// fails, logs it at Error once per burst without a token, and leaves the
// previous state intact: nothing the store did not acknowledge happened.
func TestIssuerStoreUnavailable(t *testing.T) {
	e := newIssuerEnv(t, nil)
	core, errLogs := observer.New(zapcore.ErrorLevel)
	e.is.logger = zap.New(core)
	access, rt := e.login("alice", "alice-password")
	st := e.failStore()
	st.fail.Store(true)

	res := e.do(issuerReq{path: "/authenticate", body: `{"login":"bob","password":"bob-password"}`})
	res.expect(t, 503, "temporarily_unavailable")
	if res.Header().Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	m := e.do(issuerReq{path: "/authenticate", body: `{"jsonrpc":"2.0","id":1,"params":{"login":"bob","password":"bob-password"}}`}).expect(t, 200, "")
	if data := m["error"].(map[string]any)["data"].(map[string]any); data["http_status"] != float64(503) {
		t.Fatalf("envelope %v", m)
	}
	e.rotate(rt, access).expect(t, 503, "temporarily_unavailable")
	e.refresh(rt).expect(t, 503, "temporarily_unavailable")
	e.do(issuerReq{path: "/revoke/token", body: "{}", header: map[string]string{"refreshToken": rt}}).expect(t, 503, "temporarily_unavailable")
	if errLogs.Len() != 1 {
		t.Fatalf("%d Error lines for one burst, want 1: %v", errLogs.Len(), errLogs.All())
	}
	for _, f := range errLogs.All()[0].Context {
		if strings.Contains(fmt.Sprint(f.String, f.Interface), rt) {
			t.Fatal("the refresh token was logged")
		}
	}
	if !strings.Contains(fmt.Sprint(errLogs.All()[0].ContextMap()), "no space left") {
		t.Fatalf("the Error line lacks the OS error: %v", errLogs.All()[0].ContextMap())
	}

	// the store is back: the same session, unchanged, and the failed
	// logout did not happen
	st.fail.Store(false)
	if n := e.count(); n != 1 {
		t.Fatalf("%d sessions after failed writes", n)
	}
	e.refresh(rt).expect(t, 200, "")
	rt2 := e.mustRotate(rt, access)
	e.do(issuerReq{path: "/revoke/token", body: "{}", header: map[string]string{"refreshToken": rt2}}).expect(t, 200, "")
	e.refresh(rt2).expect(t, 401, "invalid_grant")
	if n := e.count(); n != 0 {
		t.Fatalf("%d sessions after logout", n)
	}
}

// TestIssuerNotStarted: before the app starts, the endpoints answer 503
// with the JSON error body, and validators bound with issuer_keys cannot
// verify its tokens yet; Provision created nothing.
func TestIssuerNotStarted(t *testing.T) {
	base := t.TempDir()
	users := filepath.Join(base, "users.json")
	writeUsers(t, users, defaultUsers...)
	dir := filepath.Join(base, "store")
	is := &Issuer{UsersFile: users, StoreDir: dir, RevokeAccessTokens: true}
	a := &App{Issuers: map[string]*Issuer{"test": is}, Validators: map[string]*Validator{"api": {IssuerKeys: "test"}}}
	a.now = func() time.Time { return testNow }
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() { _ = a.Cleanup(); cancel() })
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("provision created store_dir: %v", err)
	}
	e := &issuerEnv{t: t, clock: newTestClock(), app: a, is: is, h: &IssuerHandler{Issuer: "test"}}
	if err := e.h.setup(is); err != nil {
		t.Fatal(err)
	}
	for _, rq := range []issuerReq{
		{path: "/authenticate", body: `{"login":"alice","password":"alice-password"}`},
		{path: "/update/access-token", body: "{}", header: map[string]string{"refreshToken": "x"}},
		{method: http.MethodGet, path: "/.well-known/jwks.json"},
	} {
		res := e.do(rq)
		res.expect(t, 503, "temporarily_unavailable")
		if res.Header().Get("Retry-After") == "" {
			t.Fatalf("%s: 503 without Retry-After", rq.path)
		}
	}
	if _, err := is.countSessions(context.Background()); !errors.Is(err, sessions.ErrUnavailable) {
		t.Fatalf("countSessions before start: %v", err)
	}
	if got := is.revoked("sid", testNow.Unix(), testNow); got != revocationUnknown {
		t.Fatalf("revoked before start: %v", got)
	}
}

// TestIssuerSharedAcrossReloads: a reload reuses the open store; the last
// config to go closes it, and the directory can be opened again.
func TestIssuerSharedAcrossReloads(t *testing.T) {
	e := newIssuerEnv(t, nil)
	first := e.is.shared()
	a1 := e.app
	_, rt := e.login("bob", "bob-password")
	a2 := e.load(nil)
	if e.is.shared() != first {
		t.Fatal("a reload opened the store again")
	}
	if err := a1.Cleanup(); err != nil {
		t.Fatal(err)
	}
	e.refresh(rt).expect(t, 200, "")
	if err := a2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.done:
	default:
		t.Fatal("the sweeper still runs after the last config went")
	}
	e.load(nil)
	if e.is.shared() == first {
		t.Fatal("a closed store was reused")
	}
	e.refresh(rt).expect(t, 200, "")
}

// TestIssuerSessionsPerLoginBounded ends a user's oldest session when a
// login goes past maxSessionsPerLogin, and logs that revocation.
func TestIssuerSessionsPerLoginBounded(t *testing.T) {
	e := newIssuerEnv(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	e.is.audit = zap.New(core)
	firstAccess, first := e.login("bob", "bob-password")
	_, alice := e.login("alice", "alice-password")
	var last string
	for range maxSessionsPerLogin {
		e.clock.Add(time.Second)
		_, last = e.login("bob", "bob-password")
	}
	if n := len(e.sessions("bob")); n != maxSessionsPerLogin {
		t.Fatalf("bob holds %d sessions", n)
	}
	if n := e.count(); n != maxSessionsPerLogin+1 {
		t.Fatalf("%d sessions stored", n)
	}
	e.refresh(first).expect(t, 401, "invalid_grant")
	e.refresh(last).expect(t, 200, "")
	e.refresh(alice).expect(t, 200, "")
	bound := logs.FilterField(zap.String("reason", string(sessions.ReasonBound)))
	if bound.Len() != 1 || bound.All()[0].ContextMap()["sid"] != e.sidOf(firstAccess) {
		t.Fatalf("bound revocations logged: %v", bound.All())
	}
}

// TestIssuerProvisionBesideRunning: provisioning a config over the store
// of a running one, as `caddy validate` does, succeeds without its lock,
// checks the existing signing key, and changes no file.
func TestIssuerProvisionBesideRunning(t *testing.T) {
	e := newIssuerEnv(t, nil)
	_, rt := e.login("alice", "alice-password")
	before := e.storeFiles()
	a := &App{Issuers: map[string]*Issuer{"test": {UsersFile: e.users, StoreDir: e.dir}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("provision beside the running config: %v", err)
	}
	if a.Issuers["test"].signer == nil || a.Issuers["test"].signer.kid != e.kid() {
		t.Fatal("provision did not read the existing signing key")
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	cancel()
	after := e.storeFiles()
	if len(after) != len(before) {
		t.Fatalf("files before %d, after %d", len(before), len(after))
	}
	for p, b := range before {
		if string(after[p]) != string(b) {
			t.Fatalf("%s changed", p)
		}
	}
	e.refresh(rt).expect(t, 200, "") // the running config is undisturbed
}
