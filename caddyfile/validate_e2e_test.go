package caddyfile_test

import (
	"bytes"
	"context"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestValidateBesideRunningServer builds Caddy, serves the quickstart
// (examples/Caddyfile) in a real process, and runs `caddy validate` on the
// same file while it serves: validate succeeds (it takes no store lock),
// creates no file and changes no key beside the running server; on a fresh
// data directory it creates nothing at all (no store_dir, no signing key, no
// cookie key).
func TestValidateBesideRunningServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "build", "-o", bin, "./xcaddy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()

	home := t.TempDir()
	env := func(data string) []string {
		return append(os.Environ(),
			"HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"),
			"JWTAUTH_PORT="+port, "JWTAUTH_DATA="+data)
	}
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serverLog bytes.Buffer
	run := exec.CommandContext(ctx, bin, "run", "--config", "examples/Caddyfile")
	run.Dir, run.Env, run.Stdout, run.Stderr = root, env(data), &serverLog, &serverLog
	run.Cancel = func() error { return run.Process.Signal(os.Interrupt) }
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = run.Wait()
	}()

	// serving: a login works, so the store is open and the key exists
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Post("http://127.0.0.1:"+port+"/api/authenticate", "application/json", strings.NewReader(`{"login":"demo","password":"demo"}`))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quickstart does not serve: %v\n%s", err, serverLog.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the server until it answers
	}
	before := snapshot(t, data, home)
	if _, err := os.Stat(filepath.Join(data, "jwtauth", "demo", "signing.key")); err != nil {
		t.Fatalf("the running server has no signing key: %v", err)
	}

	validate := func(data string) {
		t.Helper()
		cmd := exec.Command(bin, "validate", "--config", "examples/Caddyfile")
		cmd.Dir, cmd.Env = root, env(data)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("caddy validate beside the running server: %v\n%s", err, out)
		}
	}
	validate(data)
	if after := snapshot(t, data, home); after != before {
		t.Fatalf("validate created or changed files beside the running server:\nbefore %s\nafter  %s", before, after)
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	validate(fresh)
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("validate created %s (%v): %s", fresh, err, snapshot(t, fresh, fresh))
	}
	if after := snapshot(t, data, home); after != before {
		t.Fatalf("validate on a fresh directory created or changed files:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot lists the files and directories under dirs, with the contents
// of the keys and issuer.json. The running server's own writes (its
// sessions.db, Caddy's storage) may change at any time, so only their
// presence is compared.
func snapshot(t *testing.T, dirs ...string) string {
	t.Helper()
	var lines []string
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch {
			case d.IsDir():
				lines = append(lines, p+"/")
			case strings.HasSuffix(p, ".key") || strings.HasSuffix(p, "issuer.json"):
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				lines = append(lines, p+" "+strconv.Quote(string(b)))
			default:
				lines = append(lines, p)
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
