package jwtauth

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestIssuerHandlerProvisionError: jwt_issuer says "not configured" only
// when the jwtauth app is absent; an app that fails to load is reported
// with its own error.
func TestIssuerHandlerProvisionError(t *testing.T) {
	hermeticHome(t)
	handler := `{"handler":"jwt_issuer","issuer":"x"}`
	http := `"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + handler + `]}]}}}`
	validate := func(apps string) error {
		var cfg caddy.Config
		if err := json.Unmarshal([]byte(`{"admin":{"disabled":true},"apps":{`+apps+`}}`), &cfg); err != nil {
			t.Fatal(err)
		}
		return caddy.Validate(&cfg)
	}
	err := validate(http)
	if err == nil || !strings.Contains(err.Error(), "the jwtauth app is not configured") {
		t.Fatalf("no jwtauth app: %v", err)
	}
	// Caddy provisions apps in map order: retry until the handler, not the
	// app loop, is the one that meets the failing app.
	broken := `"jwtauth":{"issuers":{"x":{"store_dir":"` + t.TempDir() + `"}}},` + http
	for range 64 {
		err := validate(broken)
		if err == nil {
			t.Fatal("a broken jwtauth app was accepted")
		}
		if !strings.Contains(err.Error(), "jwt_issuer:") {
			continue
		}
		if strings.Contains(err.Error(), "not configured") || !strings.Contains(err.Error(), "users_file is required") {
			t.Fatalf("jwt_issuer reported %q, want the app's own error", err)
		}
		return
	}
	t.Fatal("the handler never provisioned before the app")
}

// hermeticHome keeps Caddy's data directory out of the real home.
func hermeticHome(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
}

// TestIssuerStoreDirSymlinkRefused refuses a store_dir that is a symbolic
// link, as the store refuses a symlinked store file, naming the path.
func TestIssuerStoreDirSymlinkRefused(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(base, "users.json")
	writeUsers(t, users, defaultUsers...)
	a := &App{Issuers: map[string]*Issuer{"test": {UsersFile: users, StoreDir: link}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	err := a.Provision(ctx)
	_ = a.Cleanup()
	if err == nil || !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("provision with a symlinked store_dir: %v", err)
	}
	if entries, _ := os.ReadDir(real); len(entries) != 0 {
		t.Fatalf("the link's target was written: %v", entries)
	}
}

// TestIssuerEmptyBodyWithoutContentType: endpoints that need no JSON field
// take an empty body without a Content-Type; a body must still be JSON,
// and /authenticate, which needs fields, still wants JSON.
func TestIssuerEmptyBodyWithoutContentType(t *testing.T) {
	e := newIssuerEnv(t, nil)
	_, rt := e.login("alice", "alice-password")
	e.do(issuerReq{path: "/update/access-token", ctype: "-", header: map[string]string{"refreshToken": rt}}).expect(t, 200, "")
	e.do(issuerReq{path: "/revoke/token", ctype: "-", body: `{"refreshToken":"` + rt + `"}`}).expect(t, 415, "invalid_request")
	e.do(issuerReq{path: "/revoke/token", ctype: "text/plain", header: map[string]string{"refreshToken": rt}}).expect(t, 415, "invalid_request")
	e.do(issuerReq{path: "/authenticate", ctype: "-"}).expect(t, 415, "invalid_request")
	_, rt2 := e.login("alice", "alice-password")
	e.do(issuerReq{path: "/revoke/token", ctype: "-", header: map[string]string{"refreshToken": rt2}}).expect(t, 200, "")
	e.do(issuerReq{path: "/update/access-token", body: "{}", header: map[string]string{"refreshToken": rt2}}).expect(t, 401, "invalid_grant")
}

// TestIssuerStoreFailureLogged: a 503 because the store cannot write is
// logged at Error, once per failure burst (again only after
// storeErrorLogInterval while failures continue), with the file and the OS
// error, and never with a token or a password.
func TestIssuerStoreFailureLogged(t *testing.T) {
	e := newIssuerEnv(t, nil)
	core, logs := observer.New(zapcore.DebugLevel)
	e.is.logger = zap.New(core)
	_, rt := e.login("alice", "alice-password")
	st := e.failStore()
	st.fail.Store(true)

	login := `{"login":"bob","password":"bob-password"}`
	for range 3 {
		e.do(issuerReq{path: "/authenticate", body: login}).expect(t, 503, "temporarily_unavailable")
		e.clock.Add(10 * time.Second)
	}
	e.do(issuerReq{path: "/revoke/token", header: map[string]string{"refreshToken": rt}}).expect(t, 503, "temporarily_unavailable")
	errs := logs.FilterLevelExact(zapcore.ErrorLevel).AllUntimed()
	if len(errs) != 1 {
		t.Fatalf("%d Error entries for one burst, want 1: %v", len(errs), errs)
	}
	f := errs[0].ContextMap()
	if file, _ := f["file"].(string); file != filepath.Join(e.dir, sessionsDBFile) {
		t.Fatalf("file %q, want the session store under %s", f["file"], e.dir)
	}
	if f["os_error"] != syscall.ENOSPC.Error() {
		t.Fatalf("os_error %v", f["os_error"])
	}

	// still failing a while later: logged once more, with the count of
	// failures not logged
	e.clock.Add(storeErrorLogInterval)
	e.do(issuerReq{path: "/authenticate", body: login}).expect(t, 503, "temporarily_unavailable")
	errs = logs.FilterLevelExact(zapcore.ErrorLevel).AllUntimed()
	if len(errs) != 2 || errs[1].ContextMap()["suppressed"] != int64(3) {
		t.Fatalf("after the interval: %v", errs)
	}
	for _, entry := range logs.AllUntimed() {
		line := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, secret := range []string{rt, "bob-password", "alice-password"} {
			if strings.Contains(line, secret) {
				t.Fatalf("a log entry holds a secret: %s", line)
			}
		}
	}
}
