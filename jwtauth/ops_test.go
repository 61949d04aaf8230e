package jwtauth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// observeAll routes the issuer's and its state's logs into one observer,
// from Debug up.
func (e *issuerEnv) observeAll() *observer.ObservedLogs {
	core, logs := observer.New(zapcore.DebugLevel)
	e.is.logger = zap.New(core).With(zap.String("issuer", "test"))
	e.is.audit = e.is.logger
	return logs
}

// entries returns the observed lines with message msg.
func entries(logs *observer.ObservedLogs, msg string) []observer.LoggedEntry {
	return logs.FilterMessage(msg).AllUntimed()
}

func fields(en observer.LoggedEntry) map[string]any { return en.ContextMap() }

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestUsersReloadApplies changes the users file under a running issuer and
// has the watcher look at it (checkUsers, which its ticker calls): changed
// and removed users lose their sessions at once, access tokens included
// with revoke_access_tokens; unchanged users keep theirs; new users can log
// in; one Info line per affected login gives the number of sessions ended.
func TestUsersReloadApplies(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.RevokeAccessTokens = true })
	logs := e.observeAll()
	aliceAT, aliceRT := e.login("alice", "alice-password")
	bobAT, bobRT := e.login("bob", "bob-password")
	_, bobRT2 := e.login("bob", "bob-password")

	// an unchanged file (rewritten, same content) changes nothing
	writeUsers(t, e.users, defaultUsers...)
	e.is.checkUsers()
	if n := len(entries(logs, "users_file reloaded")); n != 0 {
		t.Fatalf("an identical users file was applied %d times", n)
	}

	writeUsers(t, e.users,
		defaultUsers[0],
		plainUser{login: "bob", password: "bob-new-password", userID: "8"},
		plainUser{login: "carol", password: "carol-password", userID: "9"},
	)
	e.is.checkUsers()
	e.refresh(bobRT).expect(t, 401, "invalid_grant")
	e.refresh(bobRT2).expect(t, 401, "invalid_grant")
	if e.protected(bobAT) {
		t.Fatal("a changed user's access token still passes with revoke_access_tokens")
	}
	if list, err := e.is.listSessions(context.Background(), "bob"); err != nil || len(list) != 0 {
		t.Fatalf("bob still has %d sessions in the store (%v)", len(list), err)
	}
	e.refresh(aliceRT).expect(t, 200, "")
	if !e.protected(aliceAT) {
		t.Fatal("an unchanged user's access token was refused")
	}
	e.login("carol", "carol-password")
	e.login("bob", "bob-new-password")
	e.do(issuerReq{path: "/authenticate", body: `{"login":"bob","password":"bob-password"}`}).expect(t, 401, "invalid_grant")

	ended := entries(logs, auditUserChanged)
	if len(ended) != 1 || ended[0].Level != zapcore.InfoLevel || fields(ended[0])["login"] != "bob" || fields(ended[0])["sessions"] != int64(2) {
		t.Fatalf("user-change lines %+v", ended)
	}
	if got := entries(logs, "users_file reloaded"); len(got) != 1 || fields(got[0])["changed"] != int64(1) {
		t.Fatalf("reload lines %+v", got)
	}

	// removing alice ends her session too
	writeUsers(t, e.users, plainUser{login: "bob", password: "bob-new-password", userID: "8"})
	e.is.checkUsers()
	e.refresh(aliceRT).expect(t, 401, "invalid_grant")
	ended = entries(logs, auditUserChanged)
	var logins []string
	for _, en := range ended {
		logins = append(logins, fields(en)["login"].(string))
	}
	if strings.Join(logins, ",") != "bob,alice,carol" {
		t.Fatalf("user-change lines for %v", logins)
	}
}

// TestUsersReloadRefusesBadFile writes users files that fail to parse:
// nothing of them is applied, an Error is logged once per content, and the
// previous users stay in force until a good file comes.
func TestUsersReloadRefusesBadFile(t *testing.T) {
	e := newIssuerEnv(t, nil)
	logs := e.observeAll()
	_, aliceRT := e.login("alice", "alice-password")
	before := e.is.usersTab()

	bad := map[string]string{
		"not json": `{"users": [`,
		// alice removed, bob changed, but one entry is invalid: the
		// file is refused whole
		"one bad user": `{"users": [{"login": "bob", "password_hash": "` + cheapHash(t, "x") + `", "user_id": 8},
			{"login": "eve", "password_hash": "plain", "user_id": 9}]}`,
		"reserved claim": `{"users": [{"login": "bob", "password_hash": "` + cheapHash(t, "x") + `", "user_id": 8, "claims": {"Sub": "x"}}]}`,
	}
	for name, content := range bad {
		if err := os.WriteFile(e.users, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		errorsBefore := len(logs.FilterLevelExact(zapcore.ErrorLevel).All())
		e.is.checkUsers()
		e.is.checkUsers() // the same bad content is reported once
		if n := len(logs.FilterLevelExact(zapcore.ErrorLevel).All()) - errorsBefore; n != 1 {
			t.Fatalf("%s: %d error lines, want 1", name, n)
		}
		if e.is.usersTab() != before {
			t.Fatalf("%s: the users table was replaced", name)
		}
		e.refresh(aliceRT).expect(t, 200, "")
		e.login("bob", "bob-password")
	}
	// a missing file also keeps the users
	if err := os.Remove(e.users); err != nil {
		t.Fatal(err)
	}
	e.is.checkUsers()
	e.refresh(aliceRT).expect(t, 200, "")
	if n := len(entries(logs, "users_file cannot be read; the previous users stay in force")); n != 1 {
		t.Fatalf("%d unreadable-file lines", n)
	}
	// then a good file applies
	writeUsers(t, e.users, defaultUsers[1])
	e.is.checkUsers()
	e.refresh(aliceRT).expect(t, 401, "invalid_grant")
}

// TestUsersReloadSameSizeAndMtime rewrites the file with content of the same
// size and restores its mtime: the content hash still sees the change while
// the file is recent (within racyWindow of its last read).
func TestUsersReloadSameSizeAndMtime(t *testing.T) {
	e := newIssuerEnv(t, nil)
	_, rt := e.login("bob", "bob-password")
	fi, err := os.Stat(e.users)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(e.users)
	changed := strings.Replace(string(data), `"user_id": 8`, `"user_id": 9`, 1)
	if changed == string(data) {
		t.Fatalf("fixture: no user_id 8 in %s", data)
	}
	if err := os.WriteFile(e.users, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(e.users, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	e.is.checkUsers()
	e.refresh(rt).expect(t, 401, "invalid_grant")
}

// TestUsersWatcherLifecycle drives the watcher with an injected tick: it
// does not run after Provision, runs after Start, applies a change at a
// tick, and is gone after Stop; with the interval off, Start starts none.
func TestUsersWatcherLifecycle(t *testing.T) {
	pa := &App{Issuers: map[string]*Issuer{"test": {UsersFile: filepath.Join(t.TempDir(), "users.json"), StoreDir: t.TempDir()}}}
	writeUsers(t, pa.Issuers["test"].UsersFile, defaultUsers...)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := pa.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if pa.Issuers["test"].ops.cancel != nil {
		t.Fatal("Provision started the watcher")
	}
	_ = pa.Cleanup()

	// the test env starts its app; restart its watcher on a driven tick
	e := newIssuerEnv(t, nil)
	if err := e.app.Stop(); err != nil {
		t.Fatal(err)
	}
	tick := make(chan time.Time)
	e.is.ops.tick = tick
	if err := e.app.Start(); err != nil {
		t.Fatal(err)
	}
	_, rt := e.login("bob", "bob-password")
	writeUsers(t, e.users, defaultUsers[0], plainUser{login: "bob", password: "bob-password", userID: "8", disabled: true})
	tick <- testNow
	tick <- testNow // received only once the first check is done
	e.refresh(rt).expect(t, 401, "invalid_grant")
	done := e.is.ops.done
	if err := e.app.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	default:
		t.Fatal("the watcher still runs after Stop")
	}
	if e.is.ops.cancel != nil {
		t.Fatal("Stop left the watcher registered")
	}
	if err := e.app.Stop(); err != nil { // idempotent, as Cleanup calls it again
		t.Fatal(err)
	}

	off := caddy.Duration(0)
	e2 := newIssuerEnv(t, func(is *Issuer) { is.UsersReloadInterval = &off })
	if err := e2.app.Start(); err != nil {
		t.Fatal(err)
	}
	if e2.is.ops.cancel != nil {
		t.Fatal("users_reload_interval 0 started a watcher")
	}
	if got := (&Issuer{}).usersReloadInterval(); got != 5*time.Second {
		t.Fatalf("default interval %v", got)
	}
}

func TestUsersReloadIntervalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *caddy.Duration
		err  string
	}{
		{in: "users_reload_interval 10s", want: ptr(caddy.Duration(10 * time.Second))},
		{in: "users_reload_interval off", want: ptr(caddy.Duration(0))},
		{in: "users_reload_interval 0s", err: "want off or a positive duration"},
		{in: "users_reload_interval soon", err: "want off or a positive duration"},
		{in: "users_reload_interval", err: "expected one argument"},
	} {
		d := caddyfile.NewTestDispenser("issuer x {\n" + tc.in + "\n}")
		d.Next()
		d.Next()
		var is Issuer
		err := is.UnmarshalCaddyfile(d)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "Testfile:2") {
				t.Errorf("%q: error %v, want %q at line 2", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case is.UsersReloadInterval == nil || *is.UsersReloadInterval != *tc.want:
			t.Errorf("%q: got %v", tc.in, is.UsersReloadInterval)
		}
	}
	neg := caddy.Duration(-time.Second)
	if err := provisionErr(t, &App{Issuers: map[string]*Issuer{"test": {UsersFile: "x", UsersReloadInterval: &neg}}}); err == nil || !strings.Contains(err.Error(), "users_reload_interval") {
		t.Fatalf("negative interval: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// adminDo calls the admin API module for the env's app.
func (e *issuerEnv) adminDo(method, target string) (*httptest.ResponseRecorder, error) {
	a := &adminAPI{app: func() (*App, error) { return e.app, nil }}
	if err := a.Provision(caddy.Context{}); err != nil {
		e.t.Fatal(err)
	}
	routes := a.Routes()
	if len(routes) != 1 || routes[0].Pattern != "/jwtauth/" {
		e.t.Fatalf("routes %+v", routes)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(method, target, nil)
	return w, routes[0].Handler.ServeHTTP(w, r)
}

func apiStatus(t *testing.T, err error, want int) {
	t.Helper()
	var ae caddy.APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != want {
		t.Fatalf("error %v, want an APIError with status %d", err, want)
	}
}

// TestAdminAPISessions lists and revokes sessions through admin.api.jwtauth:
// the listing has the session's fields and no token or hash; revocations
// act as /revoke/token does, access tokens included with
// revoke_access_tokens; unknown issuers and sids are 404.
func TestAdminAPISessions(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.RevokeAccessTokens = true })
	logs := e.observeAll()
	a1, r1 := e.login("alice", "alice-password")
	r1 = e.mustRotate(r1, a1)
	sid1 := e.sidOf(a1)
	e.clock.Add(time.Minute)
	a2, r2 := e.login("alice", "alice-password")
	e.clock.Add(time.Second)
	b1, r3 := e.login("bob", "bob-password")

	w, err := e.adminDo(http.MethodGet, "/jwtauth/issuers")
	if err != nil || strings.TrimSpace(w.Body.String()) != `{"issuers":["test"]}` {
		t.Fatalf("issuers: %v %s", err, w.Body)
	}
	w, err = e.adminDo(http.MethodGet, "/jwtauth/issuers/test/sessions")
	if err != nil {
		t.Fatal(err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	body := w.Body.String()
	for _, secret := range []string{r1, r2, r3, a1, a2, b1, "alice-password"} {
		if strings.Contains(body, secret) {
			t.Fatal("the listing holds a token or password")
		}
	}
	for _, rt := range []string{r1, r2, r3} {
		h := sessions.HashToken(rt)
		if strings.Contains(body, hex.EncodeToString(h[:])) {
			t.Fatal("the listing holds a token hash")
		}
	}
	var list sessionsListing
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if list.Issuer != "test" || len(list.Sessions) != 3 {
		t.Fatalf("listing %s", body)
	}
	first := list.Sessions[0]
	if first.SID != sid1 || first.Login != "alice" || string(first.UserID) != "7" || first.Generation != 1 ||
		!first.Created.Equal(testNow) || !first.LastUsed.Equal(testNow) || !first.Expires.Equal(testNow.Add(168*time.Hour)) {
		t.Fatalf("first session %+v", first)
	}
	if list.Sessions[1].SID != e.sidOf(a2) || list.Sessions[2].Login != "bob" {
		t.Fatalf("order %s", body)
	}
	var raw map[string][]map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &raw)
	for k := range raw["sessions"][0] {
		if !strings.Contains(" sid login user_id created last_used expires generation ", " "+k+" ") {
			t.Fatalf("unexpected field %q", k)
		}
	}

	w, _ = e.adminDo(http.MethodGet, "/jwtauth/issuers/test/sessions?login=bob")
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || len(list.Sessions) != 1 || list.Sessions[0].Login != "bob" {
		t.Fatalf("bob's sessions: %s", w.Body)
	}

	// one session
	w, err = e.adminDo(http.MethodDelete, "/jwtauth/issuers/test/sessions/"+sid1)
	if err != nil || strings.TrimSpace(w.Body.String()) != `{"issuer":"test","revoked":1}` {
		t.Fatalf("revoke sid: %v %s", err, w.Body)
	}
	e.refresh(r1).expect(t, 401, "invalid_grant")
	if e.protected(a1) {
		t.Fatal("a revoked session's access token passes with revoke_access_tokens")
	}
	e.refresh(r2).expect(t, 200, "")
	_, err = e.adminDo(http.MethodDelete, "/jwtauth/issuers/test/sessions/"+sid1)
	apiStatus(t, err, http.StatusNotFound)

	// every session of a login
	w, err = e.adminDo(http.MethodDelete, "/jwtauth/issuers/test/sessions?login=alice")
	if err != nil || strings.TrimSpace(w.Body.String()) != `{"issuer":"test","revoked":1}` {
		t.Fatalf("revoke login: %v %s", err, w.Body)
	}
	e.refresh(r2).expect(t, 401, "invalid_grant")
	if e.protected(a2) {
		t.Fatal("a revoked login's access token passes")
	}
	e.refresh(r3).expect(t, 200, "")
	w, err = e.adminDo(http.MethodDelete, "/jwtauth/issuers/test/sessions?login=nobody")
	if err != nil || !strings.Contains(w.Body.String(), `"revoked":0`) {
		t.Fatalf("revoke unknown login: %v %s", err, w.Body)
	}

	for _, tc := range []struct {
		method, target string
		status         int
	}{
		{http.MethodGet, "/jwtauth/issuers/nope/sessions", http.StatusNotFound},
		{http.MethodDelete, "/jwtauth/issuers/nope/sessions/x", http.StatusNotFound},
		{http.MethodGet, "/jwtauth/other", http.StatusNotFound},
		{http.MethodGet, "/jwtauth/issuers/test/keys", http.StatusNotFound},
		{http.MethodPost, "/jwtauth/issuers/test/sessions", http.StatusMethodNotAllowed},
		{http.MethodGet, "/jwtauth/issuers/test/sessions/x", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/jwtauth/issuers/test/sessions", http.StatusBadRequest},
	} {
		_, err := e.adminDo(tc.method, tc.target)
		apiStatus(t, err, tc.status)
	}

	admin := entries(logs, auditRevoked)
	if len(admin) != 2 {
		t.Fatalf("revocation lines %+v", admin)
	}
	for _, en := range admin {
		if en.Level != zapcore.InfoLevel || fields(en)["reason"] != "admin" || fields(en)["login"] != "alice" {
			t.Fatalf("revocation line %+v", en)
		}
	}
	if n := len(entries(logs, "admin revocation")); n != 3 {
		t.Fatalf("%d admin revocation lines, want 3", n)
	}
}

// TestAuditLog runs every audited event and checks its line: level,
// message, fields; and that no password, token or hash appears anywhere in
// the log.
func TestAuditLog(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 2, Per: caddy.Duration(time.Minute)} })
	writeUsers(t, e.users, append(append([]plainUser(nil), defaultUsers...),
		plainUser{login: "dave", password: "dave-password", userID: "10", disabled: true})...)
	e.load(func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 2, Per: caddy.Duration(time.Minute)} })
	logs := e.observeAll()

	a1, r1 := e.login("alice", "alice-password")
	sid1 := e.sidOf(a1)
	authn := func(login, password, ip string) issuerRes {
		return e.do(issuerReq{path: "/authenticate", ip: ip, body: `{"login":` + jsonQuote(login) + `,"password":` + jsonQuote(password) + `}`})
	}
	authn("bob", "wrong-password-1", "198.51.100.7").expect(t, 401, "invalid_grant")
	authn("dave", "dave-password", "198.51.100.8").expect(t, 401, "invalid_grant")
	authn("ghost", "ghost-password", "198.51.100.9").expect(t, 401, "invalid_grant")
	// the (client IP, login) pair is limited: strangers cannot lock bob out
	authn("bob", "wrong-password-2", "198.51.100.7").expect(t, 401, "invalid_grant")
	authn("bob", "bob-password", "198.51.100.7").expect(t, 429, "too_many_requests")

	r1b := e.mustRotate(r1, a1)
	_ = e.mustRotate(r1b, a1)
	e.refresh(r1).expect(t, 401, "invalid_grant") // reuse: family ended
	_, r2 := e.login("alice", "alice-password")
	e.do(issuerReq{path: "/revoke/token", body: `{}`, header: map[string]string{"refreshToken": r2}}).expect(t, 200, "")
	a3, _ := e.login("alice", "alice-password")
	sid3 := e.sidOf(a3)
	if _, err := e.adminDo(http.MethodDelete, "/jwtauth/issuers/test/sessions/"+sid3); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Minute) // bob's failures are forgotten
	_, r4 := e.login("bob", "bob-password")
	writeUsers(t, e.users, defaultUsers[0])
	e.is.checkUsers()

	check := func(msg string, level zapcore.Level, want ...map[string]any) {
		t.Helper()
		got := entries(logs, msg)
		if len(got) != len(want) {
			t.Fatalf("%q: %d lines, want %d: %+v", msg, len(got), len(want), got)
		}
		for i, w := range want {
			if got[i].Level != level {
				t.Errorf("%q: level %v", msg, got[i].Level)
			}
			f := fields(got[i])
			if f["issuer"] != "test" {
				t.Errorf("%q: issuer %v", msg, f["issuer"])
			}
			for k, v := range w {
				if f[k] != v {
					t.Errorf("%q line %d: %s = %v, want %v", msg, i, k, f[k], v)
				}
			}
		}
	}
	check(auditLoginOK, zapcore.InfoLevel,
		map[string]any{"login": "alice", "user_id": "7", "client_ip": "192.0.2.1"},
		map[string]any{"login": "alice"}, map[string]any{"login": "alice"}, map[string]any{"login": "bob"})
	check(auditLoginFailed, zapcore.InfoLevel,
		map[string]any{"login": "bob", "client_ip": "198.51.100.7", "reason": "bad_credentials"},
		map[string]any{"login": "dave", "client_ip": "198.51.100.8", "reason": "disabled"},
		map[string]any{"login": "ghost", "client_ip": "198.51.100.9", "reason": "bad_credentials"},
		map[string]any{"login": "bob", "client_ip": "198.51.100.7", "reason": "bad_credentials"})
	check(auditRateLimited, zapcore.InfoLevel, map[string]any{"login": "bob", "client_ip": "198.51.100.7", "retry_after": time.Minute})
	check(auditReuse, zapcore.WarnLevel, map[string]any{"login": "alice", "sid": sid1})
	check(auditRevoked, zapcore.InfoLevel,
		map[string]any{"login": "alice", "reason": "logout"},
		map[string]any{"login": "alice", "reason": "admin", "sid": sid3},
		map[string]any{"login": "bob", "reason": "user_changed"})
	check(auditUserChanged, zapcore.InfoLevel, map[string]any{"login": "bob", "sessions": int64(1)}, map[string]any{"login": "dave", "sessions": int64(0)})
	if got := entries(logs, auditLoginOK); fields(got[0])["sid"] != sid1 {
		t.Errorf("login line sid %v", fields(got[0])["sid"])
	}
	if n := len(logs.FilterLevelExact(zapcore.DebugLevel).All()); n != 0 {
		t.Errorf("%d audit lines at Debug", n)
	}

	secrets := []string{"alice-password", "wrong-password-1", "wrong-password-2", "dave-password", "ghost-password", "bob-password",
		r1, r1b, r2, r4, a1, a3, cheapHash(t, "alice-password"), cheapHash(t, "bob-password")}
	for _, rt := range []string{r1, r1b, r2, r4} {
		h := sessions.HashToken(rt)
		secrets = append(secrets, hex.EncodeToString(h[:]))
	}
	for _, en := range logs.All() {
		line, _ := json.Marshal(map[string]any{"msg": en.Message, "fields": en.ContextMap()})
		for _, s := range secrets {
			if strings.Contains(string(line), s) {
				t.Fatalf("log line %s holds a secret", line)
			}
		}
	}
}

// TestIssuerMetricsCount runs a scripted flow and checks each issuer counter
// moved by exactly what the flow did, the sessions gauge, and that the
// issuer's own verifier exports no request series.
func TestIssuerMetricsCount(t *testing.T) {
	e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 1, Per: caddy.Duration(time.Minute)} })
	type key struct{ vec, label string }
	vecs := map[string]*prometheus.CounterVec{"logins": loginsTotal, "refreshes": refreshesTotal, "rotations": rotationsTotal, "revocations": revocationsTotal}
	want := map[key]float64{
		{"logins", "ok"}: 3, {"logins", "bad_credentials"}: 1, {"logins", "rate_limited"}: 1, {"logins", "disabled"}: 0, {"logins", "error"}: 0,
		{"refreshes", "ok"}: 1, {"refreshes", "invalid"}: 1, {"refreshes", "reuse"}: 1,
		{"rotations", "ok"}: 2, {"rotations", "invalid"}: 1,
		{"revocations", "logout"}: 1, {"revocations", "reuse"}: 1, {"revocations", "admin"}: 1, {"revocations", "user_changed"}: 0, {"revocations", "bound"}: 0,
	}
	before := map[key]float64{}
	for k := range want {
		before[k] = counterValue(t, vecs[k.vec].WithLabelValues("test", k.label))
	}

	a1, r1 := e.login("alice", "alice-password")
	e.do(issuerReq{path: "/authenticate", ip: "198.51.100.1", body: `{"login":"bob","password":"nope"}`}).expect(t, 401, "invalid_grant")
	e.do(issuerReq{path: "/authenticate", ip: "198.51.100.1", body: `{"login":"bob","password":"bob-password"}`}).expect(t, 429, "too_many_requests")
	e.refresh(r1).expect(t, 200, "")
	e.refresh("bogus").expect(t, 401, "invalid_grant")
	r1b := e.mustRotate(r1, a1)
	_ = e.mustRotate(r1b, a1)
	e.rotate(r1b, "not-a-token").expect(t, 401, "invalid_token")
	e.refresh(r1).expect(t, 401, "invalid_grant") // reuse
	_, r2 := e.login("alice", "alice-password")
	e.do(issuerReq{path: "/revoke/token", body: `{}`, header: map[string]string{"refreshToken": r2}}).expect(t, 200, "")
	e.clock.Add(2 * time.Minute) // bob's failure is forgotten
	a3, _ := e.login("bob", "bob-password")
	if _, err := e.adminDo(http.MethodDelete, "/jwtauth/issuers/test/sessions/"+e.sidOf(a3)); err != nil {
		t.Fatal(err)
	}

	for k, w := range want {
		if got := counterValue(t, vecs[k.vec].WithLabelValues("test", k.label)) - before[k]; got != w {
			t.Errorf("%s{%s}: +%v, want +%v", k.vec, k.label, got, w)
		}
	}

	// the sessions gauge counts live sessions at each scrape
	e.login("alice", "alice-password")
	e.login("bob", "bob-password")
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(sessionsCollector{e.app}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "caddy_jwtauth_sessions" || len(mfs[0].Metric) != 1 ||
		mfs[0].Metric[0].GetGauge().GetValue() != 2 || mfs[0].Metric[0].Label[0].GetValue() != "test" {
		t.Fatalf("sessions gauge %v", mfs)
	}

	// no always-zero series for the issuer's own verifier
	if e.is.self.verifyObs != nil || e.is.self.counters.ok != nil {
		t.Fatal("the issuer's verifier has request series")
	}
	ch := make(chan prometheus.Metric, 1024)
	requestsTotal.Collect(ch)
	verifyDuration.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		_ = m.Write(&d)
		for _, l := range d.Label {
			if strings.HasPrefix(l.GetValue(), "jwt_issuer ") {
				t.Fatalf("series for %q", l.GetValue())
			}
		}
	}
}

// TestVerifyDurationObserved checks that jwt_auth observes verification
// time once timing is on, cache hits included, and reads no clock when it
// is off.
func TestVerifyDurationObserved(t *testing.T) {
	clock := newTestClock()
	h, _ := newHandler(t, clock, "timed-test", hsValidator(), &Handler{})
	v := h.validators[0]
	count := func() uint64 {
		var m dto.Metric
		if err := verifyDuration.WithLabelValues("timed-test").(prometheus.Histogram).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	tok := hs256(t, userClaims("alice", nil))
	requirePassed(t, serve(t, h, bearerRequest(tok), nil))
	if count() != 0 {
		t.Fatal("observed with timing off")
	}
	v.timed.Store(true)
	requirePassed(t, serve(t, h, bearerRequest(tok), nil)) // a cache hit
	serve(t, h, bearerRequest("x.y"), nil)
	if got := count(); got != 2 {
		t.Fatalf("%d observations, want 2", got)
	}
}

// TestStoreErrorMetrics makes the store fail writes: each failed operation
// is counted in store_errors_total by operation, and as unavailable or
// error in the operation's own counter.
func TestStoreErrorMetrics(t *testing.T) {
	e := newIssuerEnv(t, nil)
	access, rt := e.login("alice", "alice-password")
	c := func(op string) float64 { return counterValue(t, storeErrors.WithLabelValues("test", op)) }
	createBefore, rotateBefore, revokeBefore := c("create"), c("rotate"), c("revoke")
	loginErr := counterValue(t, loginsTotal.WithLabelValues("test", resultError))
	rotUnavail := counterValue(t, rotationsTotal.WithLabelValues("test", resultUnavailable))
	e.failStore().fail.Store(true)
	e.do(issuerReq{path: "/authenticate", body: `{"login":"bob","password":"bob-password"}`}).expect(t, 503, "temporarily_unavailable")
	e.rotate(rt, access).expect(t, 503, "temporarily_unavailable")
	e.do(issuerReq{path: "/revoke/token", body: "{}", header: map[string]string{"refreshToken": rt}}).expect(t, 503, "temporarily_unavailable")
	for op, before := range map[string]float64{"create": createBefore, "rotate": rotateBefore, "revoke": revokeBefore} {
		if got := c(op) - before; got != 1 {
			t.Errorf("store_errors_total{op=%q}: +%v, want +1", op, got)
		}
	}
	if got := counterValue(t, loginsTotal.WithLabelValues("test", resultError)) - loginErr; got != 1 {
		t.Errorf("logins error: +%v", got)
	}
	if got := counterValue(t, rotationsTotal.WithLabelValues("test", resultUnavailable)) - rotUnavail; got != 1 {
		t.Errorf("rotations unavailable: +%v", got)
	}
}

// TestUsersReloadConcurrent swaps the users table while logins and
// refreshes run, for the race detector: requests read one whole table.
func TestUsersReloadConcurrent(t *testing.T) {
	e := newIssuerEnv(t, nil)
	_, rt := e.login("alice", "alice-password")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if u, _ := e.is.checkPassword("alice", "alice-password"); u == nil {
				t.Error("alice refused during a reload that keeps her")
				return
			}
			e.is.checkPassword("bob", "x")
			_ = e.is.user("bob")
		}
	}()
	for i := range 10 {
		users := []plainUser{defaultUsers[0], {login: "bob", password: "bob-password", userID: strconv.Itoa(100 + i)}}
		writeUsers(t, e.users, users...)
		e.is.checkUsers()
	}
	close(stop)
	<-done
	e.refresh(rt).expect(t, 200, "")
	if u := e.is.user("bob"); u == nil || u.userID != "109" {
		t.Fatalf("bob after the reloads: %+v", u)
	}
}

// TestBoundRevocationRecorded logs a user in beyond the per-login bound:
// the oldest session's end is counted and logged with reason bound.
func TestBoundRevocationRecorded(t *testing.T) {
	e := newIssuerEnv(t, nil)
	logs := e.observeAll()
	before := counterValue(t, revocationsTotal.WithLabelValues("test", string(sessions.ReasonBound)))
	a0, _ := e.login("bob", "bob-password")
	sid0 := e.sidOf(a0)
	for range maxSessionsPerLogin {
		e.clock.Add(time.Second)
		e.login("bob", "bob-password")
	}
	if got := counterValue(t, revocationsTotal.WithLabelValues("test", string(sessions.ReasonBound))) - before; got != 1 {
		t.Fatalf("bound revocations +%v, want +1", got)
	}
	got := entries(logs, auditRevoked)
	if len(got) != 1 || fields(got[0])["reason"] != "bound" || fields(got[0])["sid"] != sid0 || fields(got[0])["login"] != "bob" {
		t.Fatalf("revocation lines %+v", got)
	}
}
