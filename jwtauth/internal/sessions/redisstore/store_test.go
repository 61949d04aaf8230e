package redisstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{Issuer: "i"}, "no address"},
		{"bad address", Config{Addrs: []string{"localhost"}, Issuer: "i"}, "want host:port"},
		{"empty socket", Config{Addrs: []string{"unix/"}, Issuer: "i"}, "no socket path"},
		{"no issuer", Config{Addrs: []string{"127.0.0.1:6379"}}, "no issuer"},
		{"brace in issuer", Config{Addrs: []string{"127.0.0.1:6379"}, Issuer: "a}b"}, "must not contain"},
		{"brace in prefix", Config{Addrs: []string{"127.0.0.1:6379"}, Issuer: "a", KeyPrefix: "{x"}, "must not contain"},
		{"negative timeout", Config{Addrs: []string{"127.0.0.1:6379"}, Issuer: "a", Timeout: -time.Second}, "negative timeout"},
		{"negative db", Config{Addrs: []string{"127.0.0.1:6379"}, Issuer: "a", DB: -1}, "negative db"},
		{"cluster db", Config{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, Issuer: "a", DB: 2}, "Redis Cluster"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, %v; want an error containing %q", s, err, c.want)
			}
		})
	}
	// New does no I/O: nothing listens there, and it still succeeds.
	s, err := New(Config{Addrs: []string{"127.0.0.1:1"}, Issuer: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Base() != "{jwtauth:a}" {
		t.Fatalf("base %q, want {jwtauth:a}", s.Base())
	}
	if err := s.Ping(context.Background()); !errors.Is(err, sessions.ErrUnavailable) {
		t.Fatalf("Ping of nothing = %v, want ErrUnavailable", err)
	}
}

// ops runs one of each store operation, returning their errors by name.
func ops(ctx context.Context, s *Store, tok, sid string, now time.Time) map[string]error {
	errs := map[string]error{}
	_, _, _, errs["Create"] = s.Create(ctx, policy, sessions.New{Login: "x"}, now)
	_, _, errs["Find"] = s.Find(ctx, policy, tok, now)
	_, _, errs["Use"] = s.Use(ctx, policy, tok, now)
	_, _, _, errs["Rotate"] = s.Rotate(ctx, policy, tok, sid, now)
	_, _, errs["Revoke"] = s.Revoke(ctx, policy, tok, now)
	_, _, errs["RevokeSID"] = s.RevokeSID(ctx, sid, sessions.ReasonAdmin, now)
	_, errs["RevokeLogin"] = s.RevokeLogin(ctx, "x", sessions.ReasonAdmin, now)
	_, _, errs["Get"] = s.Get(ctx, policy, sid, now)
	_, errs["List"] = s.List(ctx, policy, "", now)
	_, errs["Count"] = s.Count(ctx, policy, now)
	_, errs["Sweep"] = s.Sweep(ctx, policy, now)
	errs["Ping"] = s.Ping(ctx)
	return errs
}

// TestFrozenRedis: a SIGSTOPped Redis makes every operation fail with
// ErrUnavailable within the timeout, and the feed stops hearing; after
// SIGCONT the same store and feed work again, with no reconnect by the
// caller.
func TestFrozenRedis(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 200 * time.Millisecond
	s := open(t, srv, Config{Timeout: timeout})
	ctx := context.Background()
	now := time.Now()
	sess, tok, _, err := s.Create(ctx, policy, sessions.New{Login: "alice"}, now)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := follow(t, s, now, 50*time.Millisecond)
	r.wait(t, 5*time.Second, "first Heard", func(r *recorder) bool { return len(r.heard) > 0 })

	srv.Pause()
	paused := time.Now()
	r.mu.Lock()
	heardBefore := len(r.heard)
	r.mu.Unlock()
	for name, op := range map[string]func() error{
		"Create": func() error { _, _, _, err := s.Create(ctx, policy, sessions.New{Login: "bob"}, now); return err },
		"Use":    func() error { _, _, err := s.Use(ctx, policy, tok, now); return err },
		"Rotate": func() error { _, _, _, err := s.Rotate(ctx, policy, tok, sess.SID, now); return err },
		"Revoke": func() error { _, _, err := s.Revoke(ctx, policy, tok, now); return err },
		"Count":  func() error { _, err := s.Count(ctx, policy, now); return err },
		"Ping":   func() error { return s.Ping(ctx) },
	} {
		start := time.Now()
		err := op()
		took := time.Since(start)
		if !errors.Is(err, sessions.ErrUnavailable) {
			t.Errorf("%s on a frozen Redis = %v, want ErrUnavailable", name, err)
		}
		// The bound is the point: an operation never hangs on Redis.
		if took > timeout+300*time.Millisecond {
			t.Errorf("%s on a frozen Redis took %v, timeout %v", name, took, timeout)
		}
	}
	// The feed's blocked read ends within interval + timeout, and no
	// Heard comes while Redis is frozen.
	r.mu.Lock()
	heardFrozen := 0
	for _, h := range r.heard[heardBefore:] {
		if h.After(paused.Add(50*time.Millisecond + timeout)) {
			heardFrozen++
		}
	}
	r.mu.Unlock()
	if heardFrozen != 0 {
		t.Errorf("%d heartbeats from a frozen Redis", heardFrozen)
	}

	srv.Resume()
	resumed := time.Now()
	// The caller just retries: the pool dials afresh. The rotation sent
	// while frozen may have run after SIGCONT; a retry within grace gets
	// the same successor either way.
	var next string
	for range 3 {
		_, next, _, err = s.Rotate(ctx, policy, tok, sess.SID, now.Add(time.Second))
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("rotate after SIGCONT: %v", err)
	}
	if _, _, err := s.Find(ctx, policy, next, now.Add(time.Second)); err != nil {
		t.Fatalf("find of the successor after SIGCONT: %v", err)
	}
	r.wait(t, 5*time.Second, "Heard after SIGCONT", func(r *recorder) bool {
		return len(r.heard) > 0 && r.heard[len(r.heard)-1].After(resumed)
	})
}

// TestDeadRedis: a killed Redis gives ErrUnavailable at once, for every
// operation; a restarted one is used again by the same store.
func TestDeadRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.TCP())
	s := open(t, srv, Config{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	now := time.Now()
	sess, tok, _, err := s.Create(ctx, policy, sessions.New{Login: "alice"}, now)
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	for name, err := range ops(ctx, s, tok, sess.SID, now) {
		if !errors.Is(err, sessions.ErrUnavailable) {
			t.Errorf("%s on a dead Redis = %v, want ErrUnavailable", name, err)
		}
	}
	srv.Restart()
	// Redis restarted empty: the session is gone, and the store works.
	if _, _, err := s.Find(ctx, policy, tok, now); !errors.Is(err, sessions.ErrUnknown) {
		t.Fatalf("find after an empty restart = %v, want ErrUnknown", err)
	}
	if _, _, _, err := s.Create(ctx, policy, sessions.New{Login: "alice"}, now); err != nil {
		t.Fatalf("create after restart: %v", err)
	}
}

// allKeys returns every key in the Redis, with a dump of its value.
func allKeys(t *testing.T, c *redis.Client) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var b bytes.Buffer
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			v, _ := c.Get(ctx, k).Bytes()
			b.Write(v)
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				b.WriteString(f + "=" + v + "\n")
			}
		case "zset":
			for _, z := range c.ZRangeWithScores(ctx, k, 0, -1).Val() {
				b.WriteString(z.Member.(string) + "\n")
			}
		case "stream":
			for _, m := range c.XRange(ctx, k, "-", "+").Val() {
				for f, v := range m.Values {
					b.WriteString(f + "=" + v.(string) + "\n")
				}
			}
		default:
			t.Fatalf("key %q of unexpected type %s", k, typ)
		}
		out[k] = b.Bytes()
	}
	return out
}

// exercise runs every operation on s and returns every refresh token it
// handed out.
func exercise(t *testing.T, s *Store, now time.Time) []string {
	t.Helper()
	ctx := context.Background()
	var toks []string
	for i, login := range []string{"alice", "bob", "{weird}:login", "alice", "alice", "alice"} {
		sess, tok, _, err := s.Create(ctx, policy, sessions.New{Login: login, UserID: "7", FP: "fp"}, now.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		if _, _, err := s.Use(ctx, policy, tok, now); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			_, next, _, err := s.Rotate(ctx, policy, tok, sess.SID, now)
			if err != nil {
				t.Fatal(err)
			}
			toks, tok = append(toks, next), next
		}
	}
	if _, _, err := s.Revoke(ctx, policy, toks[len(toks)-1], now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeLogin(ctx, "bob", sessions.ReasonAdmin, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sweep(ctx, policy, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	return toks
}

// TestKeysUnderHashTag: every key an issuer writes starts with its hash
// tag {prefix:issuer}, so all share one Cluster slot, and two issuers (or
// prefixes) on one Redis never share a key.
func TestKeysUnderHashTag(t *testing.T) {
	srv := redistest.Start(t)
	now := time.Now()
	stores := []*Store{
		open(t, srv, Config{Issuer: "main"}),
		open(t, srv, Config{Issuer: "mobile"}),
		open(t, srv, Config{Issuer: "main", KeyPrefix: "staging"}),
	}
	for _, s := range stores {
		exercise(t, s, now)
	}
	keys := allKeys(t, raw(t, srv))
	perTag := map[string]int{}
	for k := range keys {
		found := false
		for _, s := range stores {
			if strings.HasPrefix(k, s.Base()+":") {
				perTag[s.Base()]++
				found = true
			}
		}
		if !found {
			t.Errorf("key %q is under no issuer's hash tag", k)
		}
	}
	for _, want := range []string{"{jwtauth:main}", "{jwtauth:mobile}", "{staging:main}"} {
		if perTag[want] < 5 {
			t.Errorf("%d keys under %s", perTag[want], want)
		}
	}
	// Redis (Cluster) hashes only what is between the first { and the
	// first } after it: for every key that is the issuer's tag, whatever
	// the login in the rest of the key holds.
	for k := range keys {
		if !strings.HasPrefix(k, "{") {
			t.Errorf("key %q does not start with a hash tag", k)
			continue
		}
		tag := k[:strings.IndexByte(k, '}')+1]
		if tag != "{jwtauth:main}" && tag != "{jwtauth:mobile}" && tag != "{staging:main}" {
			t.Errorf("key %q hashes on %q", k, tag)
		}
	}
}

// TestNoRawTokens: no refresh token, successor or not, appears in Redis in
// any form (text or decoded bytes); only their hashes do.
func TestNoRawTokens(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Config{})
	toks := exercise(t, s, time.Now())
	keys := allKeys(t, raw(t, srv))
	var dump bytes.Buffer
	for k, v := range keys {
		dump.WriteString(k + "\n")
		dump.Write(v)
		dump.WriteString("\n")
	}
	hashes := 0
	for i, tok := range toks {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(dump.Bytes(), []byte(tok)) || bytes.Contains(dump.Bytes(), b) ||
			bytes.Contains(dump.Bytes(), []byte(hex.EncodeToString(b))) {
			t.Fatalf("token %d is in Redis", i)
		}
		h := sessions.HashToken(tok)
		if bytes.Contains(dump.Bytes(), []byte(hex.EncodeToString(h[:]))) {
			hashes++
		}
	}
	// The scan sees the store's data: the live families' hashes are there.
	if hashes < 10 {
		t.Fatalf("only %d token hashes found in the dump: the scan misses data", hashes)
	}
}

// TestTLSAndAuth: the store reaches a TLS-only Redis that requires a
// password, verifying its certificate; a wrong password, a wrong CA or no
// TLS give ErrUnavailable, within the timeout.
func TestTLSAndAuth(t *testing.T) {
	srv := redistest.Start(t, redistest.TLS(), redistest.Password("s3cret"))
	ctx := context.Background()
	const timeout = 300 * time.Millisecond
	good := Config{Addrs: []string{srv.Addr()}, Issuer: "tls", Password: "s3cret", TLS: srv.ClientTLS(), Timeout: timeout}
	s, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping over TLS: %v", err)
	}
	sess, tok, _, err := s.Create(ctx, policy, sessions.New{Login: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Find(ctx, policy, tok, time.Now()); err != nil || got.SID != sess.SID {
		t.Fatalf("find over TLS: %+v, %v", got, err)
	}

	wrongPass, noTLS, wrongName := good, good, good
	wrongPass.Password = "nope"
	noTLS.TLS = nil
	wrongName.TLS = srv.ClientTLS()
	wrongName.TLS.ServerName = "redis.example"
	for name, cfg := range map[string]Config{"wrong password": wrongPass, "no TLS": noTLS, "wrong server name": wrongName} {
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = s.Ping(ctx)
		if !errors.Is(err, sessions.ErrUnavailable) {
			t.Errorf("%s: ping = %v, want ErrUnavailable", name, err)
		}
		if took := time.Since(start); took > timeout+300*time.Millisecond {
			t.Errorf("%s: ping took %v, timeout %v", name, took, timeout)
		}
		_ = s.Close()
	}
}

// TestSentinel: with Sentinel set, Addrs are sentinels, and the store
// works on the master they name; an unknown master name is ErrUnavailable.
func TestSentinel(t *testing.T) {
	master := redistest.Start(t, redistest.TCP())
	sentinel := redistest.Start(t, redistest.Sentinel("mymaster", master.Addr()))
	ctx := context.Background()
	s, err := New(Config{Addrs: []string{sentinel.Addr()}, Sentinel: "mymaster", Issuer: "sentinel"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping through the sentinel: %v", err)
	}
	sess, tok, _, err := s.Create(ctx, policy, sessions.New{Login: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Find(ctx, policy, tok, time.Now()); err != nil || got.SID != sess.SID {
		t.Fatalf("find through the sentinel: %+v, %v", got, err)
	}
	if n, err := raw(t, master).Exists(ctx, s.Base()+":s:"+sess.SID).Result(); err != nil || n != 1 {
		t.Fatalf("the session is not on the master: %d, %v", n, err)
	}
	bad, err := New(Config{Addrs: []string{sentinel.Addr()}, Sentinel: "nosuchmaster", Issuer: "sentinel", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(ctx); !errors.Is(err, sessions.ErrUnavailable) {
		t.Fatalf("ping of an unknown master = %v, want ErrUnavailable", err)
	}
}
