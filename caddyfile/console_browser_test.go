package caddyfile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickstartExample runs the quickstart's promises over plain HTTP, as a
// mobile client (no Origin) would: it needs no browser.
func TestQuickstartExample(t *testing.T) {
	data := loadQuickstart(t)
	q := newQuickstartClient(t)

	res, body := q.expect(http.StatusOK, "GET", "/api/login", "")
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("console CSP = %q", csp)
	}
	if !strings.Contains(body, "jwt_issuer console") {
		t.Errorf("GET /api/login did not serve the console")
	}
	if res, _ := q.expect(http.StatusFound, "GET", "/", ""); res.Header.Get("Location") != "/api/login" {
		t.Errorf("GET / redirects to %q, want /api/login", res.Header.Get("Location"))
	}

	// Anonymous: the public route greets a stranger, the protected one refuses.
	if _, body := q.expect(http.StatusOK, "GET", "/hello", ""); !strings.HasPrefix(body, "Hello, stranger!") {
		t.Errorf("anonymous /hello = %q", body)
	}
	q.expect(http.StatusUnauthorized, "GET", "/api/protected/json", "")
	q.expect(http.StatusUnauthorized, "POST", "/api/authenticate", `{"login":"demo","password":"wrong"}`)

	_, body = q.expect(http.StatusOK, "POST", "/api/authenticate", `{"login":"demo","password":"demo"}`)
	auth := decodeJSONObject(t, "authenticate", body)
	access, _ := auth["access_token"].(string)
	refresh, _ := auth["refreshToken"].(string)
	if access == "" || refresh == "" || auth["user_id"] != 1.0 || auth["token_type"] != "Bearer" {
		t.Fatalf("authenticate answered %s", body)
	}

	for _, hdr := range [][]string{{"Authorization", "Bearer " + access}, {"access_token", access}} {
		res, body := q.expect(http.StatusOK, "GET", "/api/protected/json", "", hdr...)
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("protected/json Content-Type = %q", ct)
		}
		got := decodeJSONObject(t, "protected/json", body)
		if len(got) != 2 || got["user_id"] != 1.0 || got["login"] != "demo" {
			t.Errorf("protected/json with %s = %s, want {\"user_id\": 1, \"login\": \"demo\"}", hdr[0], body)
		}
	}
	if _, body := q.expect(http.StatusOK, "GET", "/hello", "", "Authorization", "Bearer "+access); body != "Hello, demo (user_id 1)!" {
		t.Errorf("known /hello = %q", body)
	}
	// A bad token is refused even on the public route.
	q.expect(http.StatusUnauthorized, "GET", "/hello", "", "Authorization", "Bearer "+access[:len(access)-4]+"AAAA")

	// The refresh token (header transport) gives a new access token.
	_, body = q.expect(http.StatusOK, "POST", "/api/update/access-token", `{"user_id":1}`, "refreshToken", refresh)
	if next := decodeJSONObject(t, "update/access-token", body)["access_token"]; next == "" || next == access {
		t.Errorf("update/access-token answered %s", body)
	}

	// Everything was written under JWTAUTH_DATA, 0600, and no file holds the
	// refresh token or the password.
	var files []string
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files = append(files, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(refresh)) {
			t.Errorf("%s contains the raw refresh token", path)
		}
		if bytes.Contains(b, []byte(`"demo"}`)) || bytes.Contains(b, []byte(`"password"`)) {
			t.Errorf("%s looks like it holds a login request", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "jwtauth", "demo")); err != nil {
		t.Errorf("the issuer's store_dir is not under JWTAUTH_DATA: %v (files: %v)", err, files)
	}
}

// consoleRun is what testdata/browser/console.js prints.
type consoleRun struct {
	PageStatus int    `json:"pageStatus"`
	CSP        string `json:"csp"`
	Defaults   struct {
		Host, Prefix, ProtectedURL, Origin string
	} `json:"defaults"`
	Steps []struct {
		Step, Status, Body, Headers, UserID, TokenState, Claims string
	} `json:"steps"`
	ConsoleErrors     []string `json:"consoleErrors"`
	PageErrors        []string `json:"pageErrors"`
	CookiesAfterLogin []struct {
		Name     string `json:"name"`
		HTTPOnly bool   `json:"httpOnly"`
		SameSite string `json:"sameSite"`
		Path     string `json:"path"`
	} `json:"cookiesAfterLogin"`
	PageCookie         string   `json:"pageCookie"`
	WebStorage         int      `json:"webStorage"`
	CookiesAfterRevoke []string `json:"cookiesAfterRevoke"`
}

// browserPrereqs returns the chromium and node binaries and the driver's
// directory, or skips the test saying what is missing; under CI=true, where
// .ci/run installs them, a missing one fails the test instead, as a missing
// redis-server does.
func browserPrereqs(t *testing.T) (chromium, node, dir string) {
	t.Helper()
	const hint = "; run .ci/install-browser.sh to install it (the console's browser test needs it)"
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	chromium = os.Getenv("JWTAUTH_CHROMIUM") // another binary, for other systems
	if chromium == "" {
		chromium = "chromium"
	}
	chromium, err := exec.LookPath(chromium)
	if err != nil {
		skip("chromium is not installed (Debian package chromium): %v%s", err, hint)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		skip("node is not installed%s", hint)
	}
	dir, err = filepath.Abs(filepath.Join("testdata", "browser"))
	if err != nil {
		t.Fatal(err)
	}
	check := exec.Command(node, "-e", "require.resolve('playwright-core')")
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil {
		why := err.Error()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "Error:") {
				why = line
				break
			}
		}
		skip("playwright-core is not installed in %s/node_modules (%s)%s", dir, why, hint)
	}
	return chromium, node, dir
}

// TestConsoleInHeadlessChromium opens the console of the quickstart in a real
// headless Chromium, logs in as demo, calls the protected route, then
// refreshes, rotates and revokes, all through the page's buttons, as a
// browser (Origin sent, refresh token only in the HttpOnly cookie).
func TestConsoleInHeadlessChromium(t *testing.T) {
	chromium, node, dir := browserPrereqs(t)
	loadQuickstart(t)

	shot := os.Getenv("JWTAUTH_CONSOLE_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "console.png")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "console.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"CONSOLE_URL="+quickstartBase+"/api/login",
		"USER_DATA_DIR="+t.TempDir(),
		"CHROMIUM="+chromium,
		"SCREENSHOT="+shot,
		"LOGIN=demo", "PASSWORD=demo",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("console.js: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var run consoleRun
	if err := json.Unmarshal(stdout.Bytes(), &run); err != nil {
		t.Fatalf("console.js output: %v\n%s", err, stdout.String())
	}
	t.Logf("console.js steps:")
	for _, s := range run.Steps {
		t.Logf("  %-24s %s", s.Step, s.Status)
	}

	if run.PageStatus != http.StatusOK || !strings.Contains(run.CSP, "default-src 'none'") {
		t.Errorf("console page: status %d, CSP %q", run.PageStatus, run.CSP)
	}
	if d := run.Defaults; d.Host != quickstartBase || d.Origin != quickstartBase || d.Prefix != "/api" || d.ProtectedURL != "/api/protected/json" {
		t.Errorf("form defaults = %+v", d)
	}
	for _, msg := range run.ConsoleErrors {
		for _, bad := range []string{"Content Security Policy", "Content-Security-Policy", "Trusted Type", "Refused to"} {
			if strings.Contains(msg, bad) {
				t.Errorf("browser console: %s", msg)
			}
		}
	}
	for _, e := range run.PageErrors {
		t.Errorf("uncaught page error: %s", e)
	}

	steps := make(map[string]int)
	for i, s := range run.Steps {
		steps[s.Step] = i
	}
	step := func(name string) (status string, body map[string]any, userID, tokenState, claims string) {
		t.Helper()
		i, ok := steps[name]
		if !ok {
			t.Fatalf("console.js did not run step %q", name)
		}
		s := run.Steps[i]
		if strings.HasPrefix(s.Body, "{") {
			body = decodeJSONObject(t, name, s.Body)
		}
		return s.Status, body, s.UserID, s.TokenState, s.Claims
	}
	wantOK := func(name, status string) {
		t.Helper()
		if !strings.HasPrefix(status, "200") {
			t.Errorf("%s: status %q, want 200", name, status)
		}
	}

	if status, _, _, _, _ := step("protected-before-login"); !strings.Contains(status, "no access token") {
		t.Errorf("protected URL before login: status %q, want a 'no access token' refusal", status)
	}

	if status, _, _, _, _ := step("other-origin"); !strings.Contains(status, "may only call its own origin") {
		t.Errorf("authenticate against another host: status %q, want the same-origin refusal", status)
	}

	status, body, userID, _, loginClaims := step("authenticate")
	wantOK("authenticate", status)
	if userID != "1" || body["access_token"] == nil || body["user_id"] != 1.0 {
		t.Errorf("authenticate: user_id shown %q, body %v", userID, body)
	}
	if rt, ok := body["refreshToken"]; ok && rt != "" {
		t.Errorf("authenticate: a browser request got the refresh token in the body")
	}

	status, body, _, _, _ = step("protected")
	wantOK("protected", status)
	if body["user_id"] != 1.0 || body["login"] != "demo" {
		t.Errorf("protected URL answered %v, want user_id 1 and login demo", body)
	}

	var refreshCookie bool
	for _, c := range run.CookiesAfterLogin {
		if c.Name == "refreshToken" {
			refreshCookie = true
			if !c.HTTPOnly {
				t.Errorf("the refresh cookie is not HttpOnly: %+v", c)
			}
		}
	}
	if !refreshCookie {
		t.Errorf("no refreshToken cookie after login: %+v", run.CookiesAfterLogin)
	}
	if strings.Contains(run.PageCookie, "refreshToken") || run.WebStorage != 0 {
		t.Errorf("the page can see tokens: document.cookie %q, web storage items %d", run.PageCookie, run.WebStorage)
	}

	status, _, _, _, refreshedClaims := step("refresh")
	wantOK("refresh", status)
	if refreshedClaims == loginClaims || !strings.Contains(refreshedClaims, `"jti"`) {
		t.Errorf("refresh did not show a new access token's claims:\n%s", refreshedClaims)
	}
	status, body, _, _, _ = step("rotate")
	wantOK("rotate", status)
	if body["status"] != "done" {
		t.Errorf("rotate answered %v", body)
	}
	if rt, ok := body["refreshToken"]; ok && rt != "" {
		t.Errorf("rotate: a browser request got the refresh token in the body")
	}
	status, _, _, _, _ = step("protected-after-rotate")
	wantOK("protected-after-rotate", status)

	status, _, _, tokenState, _ := step("revoke")
	wantOK("revoke", status)
	if tokenState != "none" {
		t.Errorf("after revoke the page still holds an access token: %q", tokenState)
	}
	for _, name := range run.CookiesAfterRevoke {
		if name == "refreshToken" {
			t.Error("the refresh cookie survived revoke")
		}
	}
	if status, _, _, _, _ := step("refresh-after-revoke"); !strings.HasPrefix(status, "4") {
		t.Errorf("refresh after revoke: status %q, want a 4xx", status)
	}
	if status, _, _, _, _ := step("protected-after-revoke"); !strings.Contains(status, "no access token") {
		t.Errorf("protected URL after revoke: status %q", status)
	}

	status, body, userID, _, _ = step("authenticate-jsonrpc")
	wantOK("authenticate-jsonrpc", status)
	if result, _ := body["result"].(map[string]any); userID != "1" || body["jsonrpc"] != "2.0" || result["access_token"] == nil {
		t.Errorf("authenticate in the JSON-RPC envelope: user_id shown %q, body %v", userID, body)
	}
	status, body, _, _, _ = step("protected-jsonrpc")
	wantOK("protected-jsonrpc", status)
	if body["user_id"] != 1.0 {
		t.Errorf("protected URL after a JSON-RPC login answered %v", body)
	}

	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("no PNG screenshot at %s: %v", shot, err)
	}
}
