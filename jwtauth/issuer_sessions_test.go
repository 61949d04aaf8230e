package jwtauth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func (e *itEnv) refresh(rt string) itRes {
	e.t.Helper()
	return e.do(itReq{path: "/update/access-token", body: "{}", header: map[string]string{"refreshToken": rt}})
}

func (e *itEnv) rotate(rt, access string) itRes {
	e.t.Helper()
	return e.do(itReq{path: "/update/refresh-token", body: "{}", header: map[string]string{"refreshToken": rt, "Authorization": "Bearer " + access}})
}

// mustRotate rotates and returns the new refresh token.
func (e *itEnv) mustRotate(rt, access string) string {
	e.t.Helper()
	m := e.rotate(rt, access).expect(e.t, 200, "")
	return m["refreshToken"].(string)
}

// sidOf returns the sid claim of an access token.
func (e *itEnv) sidOf(access string) string {
	e.t.Helper()
	id, err := e.is.self.verify(access)
	if err != nil {
		e.t.Fatal(err)
	}
	return id.sid
}

func (e *itEnv) stored(sid string) bool {
	_, ok := e.is.state.store.Get(sessionKeyPrefix + sid)
	return ok
}

// observeWarnings routes the state's logs into an observer.
func (e *itEnv) observeWarnings() *observer.ObservedLogs {
	core, logs := observer.New(zapcore.WarnLevel)
	e.is.state.logger = zap.New(core)
	return logs
}

// TestIssuerReuseRevokesFamily presents a rotated-out refresh token: the
// whole family ends (its current token too), it is logged at Warn without
// the token, and the user's other sessions are untouched.
func TestIssuerReuseRevokesFamily(t *testing.T) {
	for _, endpoint := range []string{"/update/access-token", "/update/refresh-token", "/revoke/token"} {
		t.Run(strings.TrimPrefix(endpoint, "/"), func(t *testing.T) {
			e := newItEnv(t, nil)
			logs := e.observeWarnings()
			access, rt1 := e.login("alice", "alice-password")
			otherAccess, otherRT := e.login("alice", "alice-password")
			sid, otherSID := e.sidOf(access), e.sidOf(otherAccess)
			rt2 := e.mustRotate(rt1, access)
			e.clock.Add(time.Minute)
			m := e.do(itReq{path: endpoint, body: "{}", header: map[string]string{"refreshToken": rt1, "access_token": access}})
			if endpoint == "/revoke/token" {
				m.expect(t, 200, "") // a logout, even with a stale token
			} else if d := m.expect(t, 401, "invalid_grant")["error_description"]; !strings.Contains(d.(string), "reused") {
				t.Fatalf("description %q", d)
			}
			e.refresh(rt2).expect(t, 401, "invalid_grant")
			if e.stored(sid) || e.is.state.get(sid) != nil {
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
// refreshes for 2 seconds, a second rotation with it is refused without
// ending the family, and after the grace it is reuse.
func TestIssuerRotationGrace(t *testing.T) {
	e := newItEnv(t, nil)
	access, rt1 := e.login("bob", "bob-password")
	rt2 := e.mustRotate(rt1, access)
	e.clock.Add(time.Second)
	e.refresh(rt1).expect(t, 200, "")
	if d := e.rotate(rt1, access).expect(t, 401, "invalid_grant")["error_description"]; !strings.Contains(d.(string), "already rotated") {
		t.Fatalf("description %q", d)
	}
	e.refresh(rt2).expect(t, 200, "")
	e.clock.Add(1500 * time.Millisecond) // 2.5s after the rotation
	e.refresh(rt1).expect(t, 401, "invalid_grant")
	e.refresh(rt2).expect(t, 401, "invalid_grant")
}

// TestIssuerRotationNeedsSameSession refuses a rotation with another
// session's access token, or none.
func TestIssuerRotationNeedsSameSession(t *testing.T) {
	e := newItEnv(t, nil)
	access1, rt1 := e.login("alice", "alice-password")
	access2, _ := e.login("alice", "alice-password")
	if d := e.rotate(rt1, access2).expect(t, 401, "invalid_grant")["error_description"]; !strings.Contains(d.(string), "another session") {
		t.Fatalf("description %q", d)
	}
	e.do(itReq{path: "/update/refresh-token", body: "{}", header: map[string]string{"refreshToken": rt1}}).expect(t, 401, "invalid_token")
	e.rotate(rt1, "not.a.token").expect(t, 401, "invalid_token")
	e.rotate(rt1, rt1).expect(t, 401, "invalid_token")
	e.clock.Add(2 * time.Minute) // access1 expired
	e.rotate(rt1, access1).expect(t, 401, "invalid_token")
	// nothing happened to the family
	e.refresh(rt1).expect(t, 200, "")
}

// TestIssuerConcurrentRotations races rotations of the same token, over
// several generations: exactly one wins each generation, the losers (within
// the grace period) are refused without ending the family, and afterwards the
// store reopens into the same indexes.
func TestIssuerConcurrentRotations(t *testing.T) {
	e := newItEnv(t, nil)
	access, rt := e.login("alice", "alice-password")
	_, other := e.login("bob", "bob-password")
	const racers = 12
	for gen := 0; gen < 5; gen++ {
		var wg sync.WaitGroup
		results := make([]itRes, racers)
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
		winners := 0
		var next string
		for i, res := range results {
			switch {
			case i%3 == 2:
				res.expect(t, 200, "") // current or within the grace period
			case res.Code == 200:
				winners++
				next = res.json(t)["refreshToken"].(string)
			default:
				if d := res.expect(t, 401, "invalid_grant")["error_description"]; !strings.Contains(d.(string), "already rotated") {
					t.Fatalf("gen %d: loser got %q", gen, d)
				}
			}
		}
		if winners != 1 {
			t.Fatalf("gen %d: %d winners", gen, winners)
		}
		rt = next
		e.clock.Add(30 * time.Second)
		access = e.refresh(rt).expect(t, 200, "")["access_token"].(string)
	}
	e.refresh(other).expect(t, 200, "")

	// snapshot the indexes, close everything, reopen the store
	st := e.is.state
	st.mu.RLock()
	want := map[string]string{}
	for sid, s := range st.sessions {
		want[sid] = fmt.Sprint(s.rec.Gen, s.cur, s.rotated)
	}
	hashes := len(st.byHash)
	st.mu.RUnlock()
	if len(want) != 2 {
		t.Fatalf("%d sessions, want 2", len(want))
	}
	if err := e.app.Cleanup(); err != nil {
		t.Fatal(err)
	}
	re, err := loadIssuerState(e.dir, zap.NewNop())
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer re.Destruct()
	got := map[string]string{}
	for sid, s := range re.sessions {
		got[sid] = fmt.Sprint(s.rec.Gen, s.cur, s.rotated)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(re.byHash) != hashes {
		t.Fatalf("reopened store differs:\n got %v (%d hashes)\nwant %v (%d hashes)", got, len(re.byHash), want, hashes)
	}
	for h, s := range re.byHash {
		if s.cur != h && !containsHash(s.rotated, h) {
			t.Fatal("byHash points to a session without that hash")
		}
	}
	if re.store.Len() != 2 {
		t.Fatalf("store holds %d keys", re.store.Len())
	}
}

func containsHash(list [][32]byte, h [32]byte) bool {
	for _, x := range list {
		if x == h {
			return true
		}
	}
	return false
}

// TestIssuerRotatedHashesBounded keeps only the last rotated-out hashes.
func TestIssuerRotatedHashesBounded(t *testing.T) {
	e := newItEnv(t, nil)
	access, rt := e.login("bob", "bob-password")
	first := rt
	for range maxRotatedHashes + 3 {
		rt = e.mustRotate(rt, access)
		e.clock.Add(10 * time.Second)
		access = e.refresh(rt).expect(t, 200, "")["access_token"].(string)
	}
	s := e.is.state.get(e.sidOf(access))
	if len(s.rotated) != maxRotatedHashes || len(s.rec.Rotated) != maxRotatedHashes {
		t.Fatalf("%d rotated hashes kept", len(s.rotated))
	}
	// the oldest token is merely unknown now: the family survives
	e.refresh(first).expect(t, 401, "invalid_grant")
	e.refresh(rt).expect(t, 200, "")
}

// TestIssuerSessionLifetimes ends sessions at refresh_ttl and idle_timeout,
// and the sweeper deletes them.
func TestIssuerSessionLifetimes(t *testing.T) {
	e := newItEnv(t, func(is *Issuer) {
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

	// refused sessions stay stored until the sweeper runs
	_, late := e.login("bob", "bob-password")
	if n, err := e.is.state.sweep(); err != nil || n != 2 || e.is.state.store.Len() != 1 {
		t.Fatalf("sweep: %d, %v; %d left", n, err, e.is.state.store.Len())
	}
	e.clock.Add(21 * time.Minute)
	n, err := e.is.state.sweep()
	if err != nil || n != 1 || e.is.state.count() != 0 || e.is.state.store.Len() != 0 {
		t.Fatalf("sweep: %d, %v; %d left", n, err, e.is.state.store.Len())
	}
	e.refresh(late).expect(t, 401, "invalid_grant")
}

// TestIssuerUsersFileChangeEndsFamilies reloads with a changed users file:
// the families of changed, disabled and removed users end at once under the
// new config, and are deleted when the old config goes; the others live on.
func TestIssuerUsersFileChangeEndsFamilies(t *testing.T) {
	for _, revokeAccess := range []bool{false, true} {
		t.Run(fmt.Sprint("revoke_access_tokens=", revokeAccess), func(t *testing.T) {
			users := []itUser{
				{login: "keep", password: "keep-pw", userID: "1", claims: `{"a":1}`},
				{login: "passwd", password: "old-pw", userID: "2"},
				{login: "disable", password: "dis-pw", userID: "3"},
				{login: "claims", password: "cl-pw", userID: "4", claims: `{"roles":["user"]}`},
				{login: "remove", password: "rm-pw", userID: "5"},
				{login: "uid", password: "uid-pw", userID: "6"},
			}
			mutate := func(is *Issuer) { is.RevokeAccessTokens = revokeAccess }
			e := newItEnv(t, mutate)
			itWriteUsers(t, e.users, users...)
			oldApp := e.load(mutate)
			access, refresh := map[string]string{}, map[string]string{}
			for _, u := range users {
				access[u.login], refresh[u.login] = e.login(u.login, u.password)
			}
			changed := []itUser{
				{login: "keep", password: "keep-pw", userID: "1", claims: `{ "a" : 1 }`}, // same claims, reformatted
				{login: "passwd", password: "new-pw", userID: "2"},
				{login: "disable", password: "dis-pw", userID: "3", disabled: true},
				{login: "claims", password: "cl-pw", userID: "4", claims: `{"roles":["admin"]}`},
				{login: "uid", password: "uid-pw", userID: "60"},
			}
			itWriteUsers(t, e.users, changed...)
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
			// the old config goes: the dead families are deleted
			if err := oldApp.Cleanup(); err != nil {
				t.Fatal(err)
			}
			if n := e.is.state.store.Len(); n != 1 {
				t.Fatalf("%d sessions stored, want 1", n)
			}
			e.login("passwd", "new-pw")
			e.do(itReq{path: "/authenticate", body: `{"login":"disable","password":"dis-pw"}`}).expect(t, 401, "invalid_grant")
		})
	}
}

// TestIssuerRevokeAccessTokens: with revoke_access_tokens, a validator bound
// with issuer_keys refuses the access tokens of a revoked session at once,
// also from its token cache; without it they live until exp.
func TestIssuerRevokeAccessTokens(t *testing.T) {
	for _, revokeAccess := range []bool{false, true} {
		t.Run(fmt.Sprint("revoke_access_tokens=", revokeAccess), func(t *testing.T) {
			e := newItEnv(t, func(is *Issuer) { is.RevokeAccessTokens = revokeAccess })
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
			e.do(itReq{path: "/revoke/token", body: "{}", header: map[string]string{"refreshToken": rt}}).expect(t, 200, "")
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
			// a token minted without a session (CLI) has no sid to revoke
			if revokeAccess {
				e.clock.Add(2 * time.Minute)
				if e.is.revoked("") != true || !e.is.revoked("no-such-sid") {
					t.Fatal("unknown sids must count as revoked")
				}
			} else if e.is.revoked("no-such-sid") {
				t.Fatal("revoked must be false without revoke_access_tokens")
			}
		})
	}
}

// TestIssuerStoreUnavailable answers 503 when the store cannot write, and
// leaves the previous state usable.
func TestIssuerStoreUnavailable(t *testing.T) {
	e := newItEnv(t, nil)
	access, rt := e.login("alice", "alice-password")
	st := e.is.state.store
	// appends fail, as on a full disk; the rollback works
	st.fault = func(op, path string) error {
		if op == "write" {
			return syscall.ENOSPC
		}
		return nil
	}
	defer func() { st.fault = nil }()

	res := e.do(itReq{path: "/authenticate", body: `{"login":"bob","password":"bob-password"}`})
	res.expect(t, 503, "temporarily_unavailable")
	if res.Header().Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	m := e.do(itReq{path: "/authenticate", body: `{"jsonrpc":"2.0","id":1,"params":{"login":"bob","password":"bob-password"}}`}).expect(t, 200, "")
	if data := m["error"].(map[string]any)["data"].(map[string]any); data["http_status"] != float64(503) {
		t.Fatalf("envelope %v", m)
	}
	e.rotate(rt, access).expect(t, 503, "temporarily_unavailable")
	e.refresh(rt).expect(t, 200, "") // reads still work; the unchanged token still refreshes
	st.fault = nil
	if n := e.is.state.count(); n != 1 {
		t.Fatalf("%d sessions after failed writes", n)
	}
	rt2 := e.mustRotate(rt, access)

	// a failed logout still ends the session at once; the sweeper deletes it
	st.fault = func(op, path string) error {
		if op == "write" {
			return syscall.EIO
		}
		return nil
	}
	e.do(itReq{path: "/revoke/token", body: "{}", header: map[string]string{"refreshToken": rt2}}).expect(t, 503, "temporarily_unavailable")
	st.fault = nil
	e.refresh(rt2).expect(t, 401, "invalid_grant")
	if _, err := e.is.state.sweep(); err != nil || e.is.state.store.Len() != 0 {
		t.Fatalf("sweep: %v, %d left", err, e.is.state.store.Len())
	}
}

// TestIssuerSharedAcrossReloads: a reload reuses the open store; the last
// config to go closes it, and the directory can be opened again.
func TestIssuerSharedAcrossReloads(t *testing.T) {
	e := newItEnv(t, nil)
	first := e.is.state
	a1 := e.app
	_, rt := e.login("bob", "bob-password")
	a2 := e.load(nil)
	if e.is.state != first {
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
	if e.is.state == first {
		t.Fatal("a closed state was reused")
	}
	e.refresh(rt).expect(t, 200, "")
}

// TestIssuerSessionsPerLoginBounded ends a user's oldest session when a
// login goes past maxSessionsPerLogin.
func TestIssuerSessionsPerLoginBounded(t *testing.T) {
	e := newItEnv(t, nil)
	_, first := e.login("bob", "bob-password")
	_, alice := e.login("alice", "alice-password")
	var last string
	for range maxSessionsPerLogin {
		e.clock.Add(time.Second)
		_, last = e.login("bob", "bob-password")
	}
	if n := len(e.is.state.byLogin["bob"]); n != maxSessionsPerLogin {
		t.Fatalf("bob holds %d sessions", n)
	}
	if n := e.is.state.store.Len(); n != maxSessionsPerLogin+1 {
		t.Fatalf("%d sessions stored", n)
	}
	e.refresh(first).expect(t, 401, "invalid_grant")
	e.refresh(last).expect(t, 200, "")
	e.refresh(alice).expect(t, 200, "")
}
