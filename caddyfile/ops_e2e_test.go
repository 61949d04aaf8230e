package caddyfile_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// End-to-end tests of the operator's side of jwt_issuer in a real Caddy
// (caddytest, admin on localhost:2999): the sessions CLI against the admin
// API, and the metrics a scrape of the admin /metrics endpoint shows after
// a scripted flow. Port 9120. Run them under
// `flock /tmp/jwtauth-caddytest.lock go test ./caddyfile/ -run E2EOps`.

const opsSite = "http://localhost:9120"

// opsConfig: %[1]s is the directory with users.json and the store, %[2]s
// the metrics global option or nothing, %[3]s the issuer's name.
const opsConfig = `{
	admin localhost:2999
	http_port 9120
	https_port 9121
	grace_period 1ns
	auto_https off
	%[2]s
	jwtauth {
		issuer %[3]s {
			users_file %[1]s/users.json
			store_dir %[1]s/store
			login_limit 3 1m
			revoke_access_tokens
			users_reload_interval 1h
		}
		validator %[3]sapi {
			issuer_keys %[3]s
		}
	}
}

http://localhost:9120 {
	jwt_issuer %[3]s {
		path_prefix /api
	}
	handle /protected {
		jwt_auth %[3]sapi
		respond "ok {http.auth.user.login}"
	}
	respond 404
}
`

// runCLI runs `caddy jwtauth ARGS...` as caddy's main would, and returns
// what it printed on stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c, ok := caddycmd.Commands()["jwtauth"]
	if !ok {
		t.Fatal("the jwtauth command is not registered")
	}
	root := &cobra.Command{Use: "jwtauth", SilenceUsage: true, SilenceErrors: true}
	c.CobraFunc(root)
	root.SetArgs(args)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stdout
	os.Stdout = w
	out := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); out <- b }()
	err = root.Execute()
	os.Stdout = orig
	w.Close()
	return string(<-out), err
}

// scrapeMetrics reads the admin /metrics endpoint into series -> value, the
// series written as name{label="v",...} with labels in exposition order.
func scrapeMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || !strings.HasPrefix(line, "caddy_jwtauth_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// authenticate logs in on opsSite, expecting status, and returns the
// tokens of a 200.
func authenticate(t *testing.T, c apiClient, login, password string, status int) (access, refresh string) {
	t.Helper()
	m := c.do("POST", opsSite+"/api/authenticate", `{"login":"`+login+`","password":"`+password+`"}`).expect(t, status)
	if status != 200 {
		return "", ""
	}
	return m["access_token"].(string), m["refreshToken"].(string)
}

// TestE2EOpsCLIAndMetrics runs logins, refreshes, rotations, a reuse, a
// logout and CLI revocations against a running Caddy with metrics on, then
// checks each counter on the admin /metrics endpoint.
func TestE2EOpsCLIAndMetrics(t *testing.T) {
	dir := t.TempDir()
	writeUsers(t, filepath.Join(dir, "users.json"),
		plainUser{login: "alice", password: "alice-pw", userID: "7"},
		plainUser{login: "bob", password: "bob-pw", userID: "8"},
		plainUser{login: "carol", password: "carol-pw", userID: "9", disabled: true})
	loadCaddyfile(t, fmt.Sprintf(opsConfig, dir, "metrics", "ops"))
	c := apiClient{t, &http.Client{}}
	protected := func(access string) int {
		return c.do("GET", opsSite+"/protected", "", "Authorization", "Bearer "+access).StatusCode
	}

	a1, r1 := authenticate(t, c, "alice", "alice-pw", 200)
	_, r2 := authenticate(t, c, "alice", "alice-pw", 200)
	_, _ = authenticate(t, c, "bob", "bob-pw", 200)
	if s := protected(a1); s != 200 {
		t.Fatalf("protected: %d", s)
	}
	c.do("POST", opsSite+"/api/update/access-token", "{}", "refreshToken", r1).expect(t, 200)
	c.do("POST", opsSite+"/api/update/access-token", "{}", "refreshToken", "bogus").expect(t, 401)
	rotate := func(rt string) string {
		m := c.do("POST", opsSite+"/api/update/refresh-token", "{}", "refreshToken", rt, "Authorization", "Bearer "+a1).expect(t, 200)
		return m["refreshToken"].(string)
	}
	_ = rotate(rotate(r1))
	c.do("POST", opsSite+"/api/update/access-token", "{}", "refreshToken", r1).expect(t, 401) // reuse
	c.do("POST", opsSite+"/api/revoke/token", "{}", "refreshToken", r2).expect(t, 200)
	a4, r4 := authenticate(t, c, "alice", "alice-pw", 200)
	_, r5 := authenticate(t, c, "alice", "alice-pw", 200)

	// the CLI, with the admin address given, then read from a config file
	out, err := runCLI(t, "sessions", "list", "--address", "localhost:2999")
	if err != nil {
		t.Fatalf("sessions list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ISSUER") || strings.Count(out, " alice ") != 2 || strings.Count(out, " bob ") != 1 {
		t.Fatalf("sessions list:\n%s", out)
	}
	for _, secret := range []string{r4, r5, a4} {
		if strings.Contains(out, secret) {
			t.Fatal("sessions list printed a token")
		}
	}
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte("{\n\tadmin localhost:2999\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "sessions", "list", "--config", cfg, "--issuer", "ops", "--login", "alice")
	if err != nil {
		t.Fatalf("sessions list --login: %v", err)
	}
	sidRE := regexp.MustCompile(`(?m)^ops\s+(\S+)\s+alice\s+7\s`)
	sids := sidRE.FindAllStringSubmatch(out, -1)
	if len(sids) != 2 || strings.Contains(out, "bob") {
		t.Fatalf("sessions list --login alice:\n%s", out)
	}
	// the oldest first: the session of a4
	out, err = runCLI(t, "sessions", "revoke", "--address", "localhost:2999", "--issuer", "ops", "--sid", sids[0][1])
	if err != nil || !strings.Contains(out, "revoked 1 session(s)") {
		t.Fatalf("sessions revoke --sid: %v %q", err, out)
	}
	if s := protected(a4); s != 401 {
		t.Fatalf("a revoked session's access token: %d, want 401", s)
	}
	c.do("POST", opsSite+"/api/update/access-token", "{}", "refreshToken", r4).expect(t, 401)
	if _, err := runCLI(t, "sessions", "revoke", "--address", "localhost:2999", "--issuer", "ops", "--sid", sids[0][1]); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("revoking a gone sid: %v", err)
	}
	if _, err := runCLI(t, "sessions", "list", "--address", "localhost:2999", "--issuer", "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("listing an unknown issuer: %v", err)
	}
	if _, err := runCLI(t, "sessions", "revoke", "--address", "localhost:2999", "--issuer", "ops"); err == nil {
		t.Fatal("revoke without --sid or --login succeeded")
	}
	out, err = runCLI(t, "sessions", "revoke", "--address", "localhost:2999", "--issuer", "ops", "--login", "alice")
	if err != nil || !strings.Contains(out, "revoked 1 session(s)") {
		t.Fatalf("sessions revoke --login: %v %q", err, out)
	}
	c.do("POST", opsSite+"/api/update/access-token", "{}", "refreshToken", r5).expect(t, 401)

	// failed logins, then the limit (3 per client address and login)
	authenticate(t, c, "ghost", "x", 401)
	authenticate(t, c, "carol", "carol-pw", 401)
	for range 3 {
		authenticate(t, c, "bob", "wrong", 401)
	}
	authenticate(t, c, "bob", "bob-pw", 429)

	m := scrapeMetrics(t)
	want := map[string]float64{
		`caddy_jwtauth_logins_total{issuer="ops",result="ok"}`:                5,
		`caddy_jwtauth_logins_total{issuer="ops",result="bad_credentials"}`:   4,
		`caddy_jwtauth_logins_total{issuer="ops",result="disabled"}`:          1,
		`caddy_jwtauth_logins_total{issuer="ops",result="rate_limited"}`:      1,
		`caddy_jwtauth_logins_total{issuer="ops",result="error"}`:             0,
		`caddy_jwtauth_refreshes_total{issuer="ops",result="ok"}`:             1,
		`caddy_jwtauth_refreshes_total{issuer="ops",result="invalid"}`:        3,
		`caddy_jwtauth_refreshes_total{issuer="ops",result="reuse"}`:          1,
		`caddy_jwtauth_refreshes_total{issuer="ops",result="unavailable"}`:    0,
		`caddy_jwtauth_rotations_total{issuer="ops",result="ok"}`:             2,
		`caddy_jwtauth_rotations_total{issuer="ops",result="reuse"}`:          0,
		`caddy_jwtauth_revocations_total{issuer="ops",reason="logout"}`:       1,
		`caddy_jwtauth_revocations_total{issuer="ops",reason="reuse"}`:        1,
		`caddy_jwtauth_revocations_total{issuer="ops",reason="admin"}`:        2,
		`caddy_jwtauth_revocations_total{issuer="ops",reason="user_changed"}`: 0,
		`caddy_jwtauth_revocations_total{issuer="ops",reason="bound"}`:        0,
		`caddy_jwtauth_sessions{issuer="ops"}`:                                1,
		`caddy_jwtauth_requests_total{result="ok",validator="opsapi"}`:        1,
		`caddy_jwtauth_requests_total{result="invalid",validator="opsapi"}`:   1,
		`caddy_jwtauth_verify_duration_seconds_count{validator="opsapi"}`:     2,
	}
	for k, w := range want {
		got, ok := m[k]
		if !ok || got != w {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, w)
		}
	}
	for k, v := range m {
		if strings.Contains(k, `jwt_issuer `) {
			t.Errorf("series %s of the issuer's own verifier", k)
		}
		if strings.HasPrefix(k, "caddy_jwtauth_store_errors_total") && v != 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	if t.Failed() {
		t.Logf("scraped: %v", m)
	}
}

// TestE2EOpsMetricsOff checks Caddy's rule without the metrics option: the
// per-request series are not exported, the issuer's counters are.
func TestE2EOpsMetricsOff(t *testing.T) {
	dir := t.TempDir()
	writeUsers(t, filepath.Join(dir, "users.json"), plainUser{login: "alice", password: "alice-pw", userID: "7"})
	loadCaddyfile(t, fmt.Sprintf(opsConfig, dir, "", "opsoff"))
	c := apiClient{t, &http.Client{}}
	a, _ := authenticate(t, c, "alice", "alice-pw", 200)
	if s := c.do("GET", opsSite+"/protected", "", "Authorization", "Bearer "+a).StatusCode; s != 200 {
		t.Fatalf("protected: %d", s)
	}
	m := scrapeMetrics(t)
	if m[`caddy_jwtauth_logins_total{issuer="opsoff",result="ok"}`] != 1 || m[`caddy_jwtauth_sessions{issuer="opsoff"}`] != 1 {
		t.Fatalf("issuer metrics missing: %v", m)
	}
	for k := range m {
		if strings.HasPrefix(k, "caddy_jwtauth_requests_total") || strings.HasPrefix(k, "caddy_jwtauth_verify_duration_seconds") {
			t.Fatalf("per-request series %s exported without the metrics option", k)
		}
	}
}
