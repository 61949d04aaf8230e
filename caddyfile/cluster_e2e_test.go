package caddyfile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

// End-to-end test of two Caddy processes sharing one Redis: each node runs
// the same issuers (main with revoke_access_tokens, plain without) on a
// free loopback port, with one key_file per issuer. It builds Caddy once
// (./xcaddy) and starts the processes itself, so it needs no fixed port;
// run it with the other e2e tests under
// `flock /tmp/jwtauth-caddytest.lock go test ./caddyfile/ -run E2ECluster`.

// clusterConfig is one node's Caddyfile: %[1]s the test directory, %[2]s the
// node's name, %[3]d its port, %[4]s the Redis address.
const clusterConfig = `{
	admin off
	auto_https off
	persist_config off
	grace_period 1ns
	storage file_system %[1]s/data-%[2]s
	jwtauth {
		issuer main {
			users_file %[1]s/users.json
			store_dir %[1]s/%[2]s/main
			key_file %[1]s/main.pem
			access_ttl 30s
			store redis {
				address %[4]s
				timeout 300ms
			}
			revoke_access_tokens {
				max_staleness 1s
			}
		}
		issuer plain {
			users_file %[1]s/users.json
			store_dir %[1]s/%[2]s/plain
			key_file %[1]s/plain.pem
			store redis {
				address %[4]s
				timeout 300ms
			}
		}
		validator rev {
			issuer_keys main
		}
		validator plain {
			issuer_keys plain
		}
	}
}

http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	jwt_issuer main {
		path_prefix /api
	}
	jwt_issuer plain {
		path_prefix /plain
	}
	handle /api/protected {
		jwt_auth rev
		respond "ok {http.auth.user.login}"
	}
	handle /plain/protected {
		jwt_auth plain
		respond "ok {http.auth.user.login}"
	}
	respond 404
}
`

// caddyNode is one Caddy process.
type caddyNode struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  *nodeLog
	done chan struct{}
}

// nodeLog collects a process's output.
type nodeLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *nodeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *nodeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// errorLines returns the log's Error lines that contain every one of
// words.
func (l *nodeLog) errorLines(words ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if !strings.Contains(line, `"level":"error"`) {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// buildCaddy builds Caddy with this module once, into dir.
func buildCaddy(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./xcaddy")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building caddy: %v\n%s", err, out)
	}
	return bin
}

// startNode starts a node and waits until it answers HTTP; it is killed
// when owner ends.
func startNode(t *testing.T, owner testing.TB, bin, dir, name, redisAddr string) *caddyNode {
	t.Helper()
	port := freePort(t)
	cfg := filepath.Join(dir, name+".caddyfile")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, clusterConfig, dir, name, port, redisAddr), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home-"+name)
	n := &caddyNode{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", port), log: &nodeLog{}, done: make(chan struct{})}
	n.cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	n.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home+"/data", "XDG_CONFIG_HOME="+home+"/config")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = n.cmd.Wait()
		close(n.done)
	}()
	owner.Cleanup(func() {
		n.kill()
		if owner.Failed() {
			owner.Logf("caddy %s log:\n%s", name, n.log.String())
		}
	})
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		res, err := c.Get(n.url + "/")
		if err == nil {
			res.Body.Close()
			return n
		}
		select {
		case <-n.done:
			t.Fatalf("caddy %s exited at start:\n%s", name, n.log.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy %s does not answer within 30s: %v\n%s", name, err, n.log.String())
		}
	}
}

// ready waits until the node validates its own access tokens: a node that
// has just started answers 503 for an issuer with revoke_access_tokens
// until its revocation feed has answered once.
func (n *caddyNode) ready(t *testing.T) {
	t.Helper()
	access, _ := n.login(t, "/api", "alice")
	poll(t, n.name+" validates", 5*time.Second, func() bool { return n.protected("/api", access).status == 200 })
}

// kill ends the node with SIGKILL and waits for it.
func (n *caddyNode) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

// nodeRes is an answer with its body.
type nodeRes struct {
	status int
	header http.Header
	body   string
	json   map[string]any
	err    error
}

var nodeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

// do sends a request; headers alternate name and value. Transport errors
// are returned in the result, not fatal: a killed node gives them.
func (n *caddyNode) do(method, path, body string, headers ...string) nodeRes {
	res, b, err := send(nodeClient, method, n.url+path, body, headers...)
	if res == nil {
		return nodeRes{err: err}
	}
	r := nodeRes{status: res.StatusCode, header: res.Header, body: b, err: err}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal([]byte(b), &r.json)
	}
	return r
}

func (r nodeRes) str(field string) string {
	s, _ := r.json[field].(string)
	return s
}

// expect fails the test unless r has status want.
func (r nodeRes) expect(t *testing.T, what string, want int) nodeRes {
	t.Helper()
	if r.err != nil || r.status != want {
		t.Fatalf("%s: status %d (%v), want %d; body %s", what, r.status, r.err, want, r.body)
	}
	return r
}

// login authenticates on prefix and returns the access and refresh tokens.
func (n *caddyNode) login(t *testing.T, prefix, user string) (access, refresh string) {
	t.Helper()
	r := n.do("POST", prefix+"/authenticate", `{"login":"`+user+`","password":"`+user+`-pw"}`).expect(t, n.name+" login", 200)
	access, refresh = r.str("access_token"), r.str("refreshToken")
	if access == "" || refresh == "" {
		t.Fatalf("%s login: %s", n.name, r.body)
	}
	return access, refresh
}

func (n *caddyNode) refresh(prefix, rt string) nodeRes {
	return n.do("POST", prefix+"/update/access-token", `{}`, "refreshToken", rt)
}

func (n *caddyNode) rotate(prefix, rt, access string) nodeRes {
	return n.do("POST", prefix+"/update/refresh-token", `{}`, "refreshToken", rt, "Authorization", "Bearer "+access)
}

func (n *caddyNode) revoke(prefix, rt string) nodeRes {
	return n.do("POST", prefix+"/revoke/token", `{}`, "refreshToken", rt)
}

func (n *caddyNode) protected(prefix, access string) nodeRes {
	return n.do("GET", prefix+"/protected", "", "Authorization", "Bearer "+access)
}

// poll calls f every 10ms until it returns true, and returns how long
// that took; it fails the test after limit.
func poll(t *testing.T, what string, limit time.Duration, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !f() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		<-tick.C
	}
	return time.Since(start)
}

func TestE2ECluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and runs two processes")
	}
	srv := redistest.Start(t, redistest.TCP())
	dir := t.TempDir()
	bin := buildCaddy(t, dir)
	var logins []string
	for i := range 40 {
		logins = append(logins, fmt.Sprintf("user%02d", i))
	}
	var users []plainUser
	for i, l := range append(logins, "alice", "bob", "carol") {
		users = append(users, plainUser{login: l, password: l + "-pw", userID: fmt.Sprint(i + 1)})
	}
	writeUsers(t, filepath.Join(dir, "users.json"), users...)
	writeSigningKey(t, filepath.Join(dir, "main.pem"))
	writeSigningKey(t, filepath.Join(dir, "plain.pem"))
	a := startNode(t, t, bin, dir, "A", srv.Addr())
	b := startNode(t, t, bin, dir, "B", srv.Addr())
	top := t
	a.ready(t)
	b.ready(t)

	t.Run("login on A, refresh on B, rotate on A", func(t *testing.T) {
		access, rt := a.login(t, "/api", "alice")
		b.protected("/api", access).expect(t, "A's access token on B", 200)
		r := b.refresh("/api", rt).expect(t, "refresh on B", 200)
		access = r.str("access_token")
		a.protected("/api", access).expect(t, "B's access token on A", 200)
		r = a.rotate("/api", rt, access).expect(t, "rotate on A", 200)
		next := r.str("refreshToken")
		if next == "" || next == rt {
			t.Fatalf("rotation on A: %s", r.body)
		}
		b.refresh("/api", next).expect(t, "the successor on B", 200)
	})

	t.Run("50+50 concurrent rotations across A and B", func(t *testing.T) {
		access, rt := a.login(t, "/api", "bob")
		const each = 50
		var wg sync.WaitGroup
		res := make([]nodeRes, 2*each)
		start := make(chan struct{})
		for i := range res {
			n := a
			if i%2 == 1 {
				n = b
			}
			wg.Go(func() {
				<-start
				res[i] = n.rotate("/api", rt, access)
			})
		}
		close(start)
		wg.Wait()
		succ := map[string]int{}
		for i, r := range res {
			if r.err != nil || r.status != 200 {
				t.Fatalf("rotation %d: %d %v %s", i, r.status, r.err, r.body)
			}
			succ[r.str("refreshToken")]++
		}
		// One rotation won; every other caller, on either node, got the
		// same successor (the retry of a lost answer), none a reuse alarm.
		if len(succ) != 1 {
			t.Fatalf("%d distinct successors from 100 concurrent rotations", len(succ))
		}
		var next string
		for s := range succ {
			next = s
		}
		// The family is consistent: the successor works on both nodes and
		// rotates once more, and the replaced token still refreshes within
		// the grace window.
		a.refresh("/api", next).expect(t, "successor on A", 200)
		r := b.rotate("/api", next, access).expect(t, "next rotation on B", 200)
		if r.str("refreshToken") == next || r.str("refreshToken") == "" {
			t.Fatalf("second rotation: %s", r.body)
		}
	})

	t.Run("rotated-out token after grace: 401 on B, family gone on A", func(t *testing.T) {
		access, rt := a.login(t, "/api", "carol")
		rotated := time.Now()
		r := a.rotate("/api", rt, access).expect(t, "rotate on A", 200)
		next := r.str("refreshToken")
		// Within the 2s grace the replaced token refreshes; the first
		// refusal marks the end of the window: a reuse, which ends the
		// family.
		poll(t, "the replaced token refused on B", 10*time.Second, func() bool {
			r := b.refresh("/api", rt)
			if r.status != 200 && r.status != 401 {
				t.Fatalf("replaced token on B: %d %s", r.status, r.body)
			}
			return r.status == 401
		})
		if d := time.Since(rotated); d < 2*time.Second {
			t.Fatalf("the replaced token was refused %v after the rotation, within the grace window", d)
		}
		a.refresh("/api", next).expect(t, "the successor on A after reuse", 401)
	})

	t.Run("revoke on B reaches A within 1s", func(t *testing.T) {
		access, rt := a.login(t, "/api", "alice")
		a.protected("/api", access).expect(t, "before revoke", 200)
		b.revoke("/api", rt).expect(t, "revoke on B", 200)
		d := poll(t, "A refuses the revoked session's access token", 2*time.Second, func() bool {
			r := a.protected("/api", access)
			if r.status != 200 && r.status != 401 {
				t.Fatalf("protected on A: %d %s", r.status, r.body)
			}
			return r.status == 401
		})
		if d > time.Second {
			t.Fatalf("A refused the revoked token after %v, want within 1s", d)
		}
		t.Logf("revocation reached A after %v", d)
	})

	t.Run("kill -9 of A under load: B serves, nothing acknowledged lost", func(t *testing.T) {
		// Each worker owns one login and one family, and alternates its
		// node: rotate, then refresh. Acknowledged state: the last
		// successor each worker received.
		type chain struct {
			access, rt string
		}
		chains := make([]chain, len(logins))
		for i, l := range logins {
			chains[i].access, chains[i].rt = b.login(t, "/api", l)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var acked, bAfterKill atomic.Int64
		var killed atomic.Bool
		var wg sync.WaitGroup
		errs := make(chan error, len(chains)+1)
		for i := range chains {
			wg.Go(func() {
				for k := 0; ctx.Err() == nil; k++ {
					n := a
					if (i+k)%2 == 1 {
						n = b
					}
					wasKilled := killed.Load()
					r := n.rotate("/api", chains[i].rt, chains[i].access)
					switch {
					case r.err != nil && n == a:
						continue // A is gone: nothing acknowledged
					case r.err != nil || r.status != 200:
						errs <- fmt.Errorf("worker %d on %s: %d %v %s", i, n.name, r.status, r.err, r.body)
						return
					}
					chains[i].rt = r.str("refreshToken")
					acked.Add(1)
					if n == b && wasKilled {
						bAfterKill.Add(1)
					}
				}
			})
		}
		// Logins on A: every one A acknowledged must hold on B.
		var loginMu sync.Mutex
		var ackedLogins []string
		wg.Go(func() {
			for k := 0; ctx.Err() == nil; k++ {
				r := a.do("POST", "/api/authenticate", `{"login":"`+logins[k%len(logins)]+`","password":"`+logins[k%len(logins)]+`-pw"}`)
				if r.err != nil {
					if killed.Load() {
						return
					}
					continue
				}
				if r.status != 200 {
					errs <- fmt.Errorf("login on A: %d %s", r.status, r.body)
					return
				}
				loginMu.Lock()
				ackedLogins = append(ackedLogins, r.str("refreshToken"))
				loginMu.Unlock()
			}
		})
		poll(t, "load under way", 10*time.Second, func() bool { return acked.Load() > 200 })
		a.kill()
		killed.Store(true)
		n := acked.Load()
		poll(t, "B serving after the kill", 10*time.Second, func() bool { return bAfterKill.Load() > 100 })
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Every worker's last acknowledged successor is its family's
		// current token, or the one a rotation lost with A replaced
		// (within grace): rotating it on B gives a working token.
		for i, c := range chains {
			r := b.rotate("/api", c.rt, c.access).expect(t, fmt.Sprintf("worker %d's acknowledged token on B", i), 200)
			b.refresh("/api", r.str("refreshToken")).expect(t, fmt.Sprintf("worker %d's successor on B", i), 200)
		}
		if len(ackedLogins) == 0 {
			t.Fatal("no login acknowledged by A")
		}
		for i, rt := range ackedLogins {
			b.refresh("/api", rt).expect(t, fmt.Sprintf("login %d acknowledged by A, on B", i), 200)
		}
		t.Logf("%d rotations acknowledged before the kill, %d by B after it, %d logins by A", n, bAfterKill.Load(), len(ackedLogins))
		a = startNode(t, top, bin, dir, "A2", srv.Addr())
		a.ready(t)
	})

	t.Run("frozen Redis: 503 from the issuers, validation per revoke_access_tokens", func(t *testing.T) {
		revAccess, revRT := a.login(t, "/api", "alice")
		plainAccess, _ := b.login(t, "/plain", "alice")
		// Commands a timeout gave up on still run once Redis resumes: the
		// rotation and the logout tried while it is frozen use a session
		// of their own.
		otherAccess, otherRT := a.login(t, "/api", "bob")
		srv.Pause()
		paused := time.Now()
		resumed := false
		defer func() {
			if !resumed {
				srv.Resume()
			}
		}()
		for _, n := range []*caddyNode{a, b} {
			start := time.Now()
			r := n.do("POST", "/api/authenticate", `{"login":"alice","password":"alice-pw"}`)
			if r.status != 503 || r.json["error"] == nil {
				t.Fatalf("login on %s with Redis frozen: %d %s", n.name, r.status, r.body)
			}
			if d := time.Since(start); d > 300*time.Millisecond+700*time.Millisecond {
				t.Fatalf("login on %s with Redis frozen took %v (timeout 300ms)", n.name, d)
			}
			n.refresh("/api", revRT).expect(t, "refresh on "+n.name+" with Redis frozen", 503)
			n.rotate("/api", otherRT, otherAccess).expect(t, "rotation on "+n.name+" with Redis frozen", 503)
			n.revoke("/api", otherRT).expect(t, "revoke on "+n.name+" with Redis frozen", 503)
			// Validation never touches Redis without revoke_access_tokens.
			n.protected("/plain", plainAccess).expect(t, "plain validation on "+n.name, 200)
		}
		// With revoke_access_tokens, validation answers 503 once the feed
		// has been silent for max_staleness (1s).
		for _, n := range []*caddyNode{a, b} {
			poll(t, "503 from rev validation on "+n.name, 3*time.Second, func() bool {
				r := n.protected("/api", revAccess)
				switch r.status {
				case 200:
					return false
				case 503:
					if r.header.Get("Retry-After") == "" {
						t.Fatalf("503 without Retry-After on %s", n.name)
					}
					return true
				}
				t.Fatalf("rev validation on %s with Redis frozen: %d %s", n.name, r.status, r.body)
				return false
			})
			// The feed was last heard at most one interval (max_staleness/4)
			// before the freeze: no 503 comes before max_staleness - that.
			if d := time.Since(paused); d < 750*time.Millisecond {
				t.Fatalf("rev validation on %s answered 503 %v after the freeze, before max_staleness", n.name, d)
			}
		}
		srv.Resume()
		resumed = true
		for _, n := range []*caddyNode{a, b} {
			poll(t, n.name+" recovers", 5*time.Second, func() bool {
				return n.protected("/api", revAccess).status == 200 && n.refresh("/api", revRT).status == 200
			})
		}
	})

	t.Run("Redis restarted empty: Error log, older access tokens refused", func(t *testing.T) {
		access, _ := a.login(t, "/api", "bob")
		b.protected("/api", access).expect(t, "before the restart", 200)
		before := map[*caddyNode]int{a: len(a.log.errorLines()), b: len(b.log.errorLines())}
		srv.Restart()
		for _, n := range []*caddyNode{a, b} {
			poll(t, n.name+" logs the loss at Error", 10*time.Second, func() bool {
				return len(n.log.errorLines("main")) > 0 && len(n.log.errorLines()) > before[n]
			})
			poll(t, n.name+" refuses the older access token", 5*time.Second, func() bool {
				return n.protected("/api", access).status == 401
			})
		}
		// Logins after the restart work, and their access tokens are
		// accepted everywhere (once they are issued after the moment each
		// node noticed the loss).
		poll(t, "a token issued after the restart accepted on both nodes", 5*time.Second, func() bool {
			r := a.do("POST", "/api/authenticate", `{"login":"bob","password":"bob-pw"}`)
			if r.status != 200 {
				return false
			}
			fresh := r.str("access_token")
			return a.protected("/api", fresh).status == 200 && b.protected("/api", fresh).status == 200
		})
		a.protected("/api", access).expect(t, "the older token stays refused", 401)
	})
}
