package jwtauth

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/redisstore"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

// redisNodes starts a real redis-server and two issuers sharing it, as two
// Caddy nodes would: each has its own store client, feed follower and
// deny-list (node B opens its own, as its process would), one signing key
// and one users file.
func redisNodes(t *testing.T, srv *redistest.Server) (a, b *issuerEnv) {
	t.Helper()
	base := t.TempDir()
	keyFile := filepath.Join(base, "signing.pem")
	key, err := generateSigningKey("EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	pemKey, _ := encodeSigningKey(key)
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(base, "users.json")
	writeUsers(t, users, defaultUsers...)
	mutate := func(is *Issuer) {
		is.KeyFile = keyFile
		is.RevokeAccessTokens = true
		is.RevocationMaxStaleness = caddy.Duration(300 * time.Millisecond)
		is.Store = &SessionStore{Redis: &RedisStore{Addresses: []string{srv.Addr()}, Timeout: caddy.Duration(200 * time.Millisecond)}}
	}
	node := func(name string) *issuerEnv {
		e := &issuerEnv{t: t, clock: newTestClock(), dir: filepath.Join(base, name), users: users, realTime: true}
		e.load(mutate)
		return e
	}
	a, b = node("a"), node("b")
	// node B's own store, follower and deny-list, as in its own process
	ss, err := b.is.openShared()
	if err != nil {
		t.Fatal(err)
	}
	lim, err := ss.store.(*redisstore.Store).Limiter(limiterConfig(b.is.limitMax, b.is.limitPer))
	if err != nil {
		t.Fatal(err)
	}
	shared := b.is.run.Load()
	b.is.run.Store(&issuerRun{signer: shared.signer, shared: ss, limiter: lim})
	t.Cleanup(func() { b.is.run.Store(shared); _ = ss.Destruct() })
	if a.is.shared() == b.is.shared() {
		t.Fatal("the nodes share a store in memory")
	}
	return a, b
}

// TestIssuerRedisLoginLimitShared: with store redis, login_limit counts
// across nodes: failures through node A refuse the same client and login on
// node B, while another client still logs in there.
func TestIssuerRedisLoginLimitShared(t *testing.T) {
	srv := redistest.Start(t)
	a, b := redisNodes(t, srv)
	for i := range 5 {
		a.do(issuerReq{path: "/authenticate", ip: "203.0.113.9", body: `{"login":"bob","password":"wrong-` + strconv.Itoa(i) + `"}`}).expect(t, 401, "invalid_grant")
	}
	b.do(issuerReq{path: "/authenticate", ip: "203.0.113.9", body: `{"login":"bob","password":"bob-password"}`}).expect(t, 429, "too_many_requests")
	b.do(issuerReq{path: "/authenticate", ip: "203.0.113.10", body: `{"login":"bob","password":"bob-password"}`}).expect(t, 200, "")
}

// eventually polls cond every 10ms until it holds or within passes, and
// returns how long it took.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not standing in for one
	}
	return time.Since(start)
}

// TestIssuerRedisNodes runs the issuer on Redis across two nodes: a session
// made on one refreshes and rotates on the other, a revocation on one
// reaches the other's validator within 1s, Redis frozen gives 503 (never
// 401) on the endpoints within the timeout and, after max_staleness, on
// validators with revoke_access_tokens, and both recover when it thaws; a
// Redis restarted empty is noticed, logged at Error, and the access tokens
// issued before it are refused.
func TestIssuerRedisNodes(t *testing.T) {
	srv := redistest.Start(t)
	a, b := redisNodes(t, srv)
	va, vb := a.app.Validators["api"], b.app.Validators["api"]
	heard := func(v *Validator, tok string) func() bool {
		return func() bool { _, err := v.verify(tok); return err == nil }
	}

	access, rt := a.login("alice", "alice-password")
	eventually(t, 5*time.Second, "both feeds heard", func() bool { return heard(va, access)() && heard(vb, access)() })
	access = b.refresh(rt).expect(t, 200, "")["access_token"].(string)
	rt = a.mustRotate(rt, access)
	if again := b.mustRotate(strings.Clone(rt), access); again == rt {
		t.Fatal("rotating the new token on B gave the same token")
	} else {
		rt = again
	}
	access = a.refresh(rt).expect(t, 200, "")["access_token"].(string)
	if _, err := va.verify(access); err != nil {
		t.Fatal(err)
	}

	// revoke on B: A refuses the access token within 1s
	b.do(issuerReq{path: "/revoke/token", body: "{}", header: map[string]string{"refreshToken": rt}}).expect(t, 200, "")
	took := eventually(t, 2*time.Second, "revocation reaches A", func() bool {
		_, err := va.verify(access)
		return errors.Is(err, ErrRevoked)
	})
	if took > time.Second {
		t.Fatalf("revocation took %v to reach the other node, want < 1s", took)
	}
	a.refresh(rt).expect(t, 401, "invalid_grant")

	// Redis frozen: 503 within the timeout, never 401
	access2, rt2 := a.login("bob", "bob-password")
	eventually(t, 2*time.Second, "B hears of bob's session", heard(vb, access2))
	srv.Pause()
	start := time.Now()
	a.refresh(rt2).expect(t, 503, "temporarily_unavailable")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("503 took %v with a 200ms timeout", d)
	}
	b.do(issuerReq{path: "/authenticate", body: `{"login":"bob","password":"bob-password"}`}).expect(t, 503, "temporarily_unavailable")
	eventually(t, 2*time.Second, "validators refuse with 503 after max_staleness", func() bool {
		_, err := va.verify(access2)
		return errors.Is(err, ErrRevocationUnavailable)
	})
	if code, hdr := a.status(access2); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("jwt_auth while the feed is silent: %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}
	srv.Resume()
	eventually(t, 5*time.Second, "A recovers", heard(va, access2))
	eventually(t, 5*time.Second, "B recovers", heard(vb, access2))
	a.refresh(rt2).expect(t, 200, "")

	// Redis restarted empty: noticed, logged, older tokens refused
	core, logs := observer.New(zapcore.ErrorLevel)
	a.is.shared().logger = zap.New(core)
	srv.Restart()
	eventually(t, 5*time.Second, "A notices the data loss", func() bool {
		_, err := va.verify(access2)
		return errors.Is(err, ErrRevoked)
	})
	if logs.FilterMessageSnippet("lost its data").Len() == 0 {
		t.Fatalf("no Error line for the data loss: %v", logs.All())
	}
	a.refresh(rt2).expect(t, 401, "invalid_grant") // the session is gone with the data
	fresh, _ := a.login("bob", "bob-password")
	eventually(t, 5*time.Second, "a token issued after the loss passes", heard(va, fresh))
	if n, err := a.is.countSessions(context.Background()); err != nil || n != 1 {
		t.Fatalf("count after the loss: %d, %v", n, err)
	}
}
