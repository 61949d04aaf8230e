package caddyfile_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickstartLoopbackAddress: the quickstart answers on 127.0.0.1 as on
// localhost, rather than with Caddy's empty 200 for an unknown host.
func TestQuickstartLoopbackAddress(t *testing.T) {
	loadQuickstart(t)
	c := newQuickstartClient(t).c
	base := "http://127.0.0.1:" + quickstartPort
	res, err := c.Get(base + "/api/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "jwt_issuer console") {
		t.Fatalf("GET %s/api/login: %d %q", base, res.StatusCode, body)
	}
	res, err = c.Post(base+"/api/authenticate", "application/json", strings.NewReader(`{"login":"demo","password":"demo"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"access_token"`) {
		t.Fatalf("POST %s/api/authenticate: %d %q", base, res.StatusCode, body)
	}
}

// TestQuickstartLogsNoTokens: the quickstart's access log records the
// requests that carry tokens in odoo_jwt's refreshToken and access_token
// headers, but not the tokens.
func TestQuickstartLogsNoTokens(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	loadQuickstart(t, quickstartEdit{"\tlog {\n", "\tlog {\n\t\toutput file " + logFile + "\n"})
	q := newQuickstartClient(t)
	_, body := q.expect(http.StatusOK, "POST", "/api/authenticate", `{"login":"demo","password":"demo"}`)
	auth := decodeJSONObject(t, "authenticate", body)
	access, _ := auth["access_token"].(string)
	refresh, _ := auth["refreshToken"].(string)
	if access == "" || refresh == "" {
		t.Fatalf("authenticate answered %s", body)
	}
	q.expect(http.StatusOK, "POST", "/api/update/access-token", "{}", "refreshToken", refresh)
	q.expect(http.StatusOK, "GET", "/api/protected/json", "", "access_token", access)
	q.expect(http.StatusOK, "GET", "/api/protected/json", "", "Authorization", "Bearer "+access)

	// Unloading the config waits for the requests, whose access log entries
	// are written when they end, and closes the log.
	res, err := http.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader("{\n\tadmin localhost:2999\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var entry struct {
			Request struct {
				URI     string              `json:"uri"`
				Headers map[string][]string `json:"headers"`
			} `json:"request"`
		}
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		seen[entry.Request.URI] = true
		for name := range entry.Request.Headers {
			if l := strings.ToLower(name); l == "refreshtoken" || l == "access_token" {
				t.Errorf("%s logged with header %s", entry.Request.URI, name)
			}
		}
	}
	for _, uri := range []string{"/api/authenticate", "/api/update/access-token", "/api/protected/json"} {
		if !seen[uri] {
			t.Errorf("no access log entry for %s; log:\n%s", uri, raw)
		}
	}
	for name, secret := range map[string]string{"access token": access, "refresh token": refresh, "password": `"demo"}`} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the access log holds the %s", name)
		}
	}
}
