package jwtauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/spf13/cobra"
)

func TestCommandUserRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")
	// demoPass is exactly bcrypt's 72-byte limit: the add below checks the
	// boundary and bcrypt at once. bcrypt at caddy's cost 14 takes ~20s
	// under -race, so the rest of the test uses argon2id.
	demoPass := strings.Repeat("correct horse battery staple ", 3)[:72]
	const (
		demoPass2 = "Tr0ub4dor&3-second"
		opsPass   = "ops-argon-password"
	)

	// add: creates the file, 0600.
	if err := runCmd(t, cmdUserAdd, demoPass+"\n", "user", "add", "--file", path, "--user-id", "7",
		"--claim", "email=demo@example.com", "--claim", `roles=["admin","dev"]`, "--claim", "partner_id=3",
		"--claim", `code="0042"`, "demo"); err != nil {
		t.Fatalf("add demo: %v", err)
	}
	checkMode(t, path, 0o600)
	uf, err := LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	demo := uf.Find("demo")
	if demo == nil || demo.UserID != "7" || demo.Disabled {
		t.Fatalf("demo after add = %+v", demo)
	}
	if !strings.HasPrefix(demo.PasswordHash, "$2a$14$") {
		t.Errorf("bcrypt hash %q: want caddy hash-password's format and cost 14", demo.PasswordHash)
	}
	if !verifies(t, demo, demoPass) {
		t.Error("demo's hash does not verify the password it was given")
	}
	var claims map[string]any
	if err := json.Unmarshal(demo.Claims, &claims); err != nil {
		t.Fatal(err)
	}
	wantClaims := map[string]any{"email": "demo@example.com", "roles": []any{"admin", "dev"}, "partner_id": 3.0, "code": "0042"}
	if got, want := mustJSON(t, claims), mustJSON(t, wantClaims); got != want {
		t.Errorf("claims = %s, want %s", got, want)
	}

	// add with argon2id, a \r\n line ending, and the next free user_id.
	if err := runCmd(t, cmdUserAdd, opsPass+"\r\n", "user", "add", "-f", path, "--algorithm", "argon2id", "ops"); err != nil {
		t.Fatalf("add ops: %v", err)
	}
	uf, err = LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ops := uf.Find("ops")
	if ops == nil || ops.UserID != "8" {
		t.Fatalf("ops = %+v, want user_id 8", ops)
	}
	if !strings.HasPrefix(ops.PasswordHash, "$argon2id$v=19$m=47104,t=1,p=1$") {
		t.Errorf("argon2id hash %q: want caddy hash-password's defaults", ops.PasswordHash)
	}
	if !verifies(t, ops, opsPass) {
		t.Error("ops's argon2id hash does not verify (was the \\r\\n line ending stripped?)")
	}

	// Refusals leave the file untouched.
	before := readFile(t, path)
	for name, tc := range map[string]struct {
		fn    caddycmd.CommandFunc
		stdin string
		args  []string
		want  string
	}{
		"duplicate login":      {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "demo"}, "already exists"},
		"duplicate user_id":    {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "--user-id", "7", "eve"}, "already used"},
		"bad user_id":          {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "--user-id", "1e3", "eve"}, "integer"},
		"reserved claim":       {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "--claim", "sub=root", "eve"}, "issuer sets"},
		"reserved, other case": {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "--claim", "User_ID=3", "eve"}, "issuer sets"},
		"claim without =":      {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "--claim", "email", "eve"}, "key=value"},
		"empty password":       {cmdUserAdd, "\n", []string{"user", "add", "--file", path, "eve"}, "empty"},
		"long bcrypt password": {cmdUserAdd, strings.Repeat("p", 73) + "\n", []string{"user", "add", "--file", path, "eve"}, "at most 72"},
		"unknown algorithm":    {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "-a", "md5", "eve"}, "unknown --algorithm"},
		"no file flag":         {cmdUserAdd, "x\n", []string{"user", "add", "eve"}, "--file is required"},
		"control char login":   {cmdUserAdd, "x\n", []string{"user", "add", "--file", path, "ev\x01e"}, "control"},
		"passwd unknown user":  {cmdUserPasswd, "x\n", []string{"user", "passwd", "--file", path, "eve"}, "no user"},
		"passwd missing file":  {cmdUserPasswd, "x\n", []string{"user", "passwd", "--file", filepath.Join(dir, "nope.json"), "demo"}, "no such file"},
	} {
		err := runCmd(t, tc.fn, tc.stdin, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Error("a refused command changed the users file")
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.json")); !os.IsNotExist(err) {
		t.Errorf("passwd created a missing file: %v", err)
	}

	// passwd: the new password verifies, the old one no longer does, the
	// other user is untouched.
	os.Chmod(path, 0o644) // Save must put the mode back to 0600
	if err := runCmd(t, cmdUserPasswd, demoPass2+"\n", "user", "passwd", "--file", path, "-a", "argon2id", "demo"); err != nil {
		t.Fatalf("passwd: %v", err)
	}
	checkMode(t, path, 0o600)
	uf, err = LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	demo = uf.Find("demo")
	if !verifies(t, demo, demoPass2) || verifies(t, demo, demoPass) {
		t.Error("after passwd, the new password must verify and the old one must not")
	}
	if uf.Find("ops").PasswordHash != ops.PasswordHash {
		t.Error("passwd of demo changed ops's hash")
	}
	if mustJSON(t, demo.Claims) != mustJSON(t, wantClaims) || demo.UserID != "7" {
		t.Errorf("passwd changed demo's other fields: %+v", demo)
	}

	// disable, then enable.
	for _, step := range []struct {
		args []string
		want bool
	}{{[]string{"user", "disable", "--file", path, "demo"}, true}, {[]string{"user", "enable", "--file", path, "demo"}, false}} {
		disabled := step.want
		if err := runCmd(t, func(fl caddycmd.Flags) (int, error) { return cmdUserSetDisabled(fl, disabled) }, "", step.args...); err != nil {
			t.Fatalf("%v: %v", step.args, err)
		}
		uf, err = LoadUsersFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if uf.Find("demo").Disabled != step.want || uf.Find("ops").Disabled {
			t.Errorf("%v: demo.disabled = %v, want %v", step.args, uf.Find("demo").Disabled, step.want)
		}
	}

	// The plain passwords never reach the file; no temporary file is left.
	raw := readFile(t, path)
	for _, p := range []string{demoPass, demoPass2, opsPass} {
		if bytes.Contains(raw, []byte(p)) {
			t.Errorf("the users file contains the plain password %q", p)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only users.json", names)
	}
}

// TestCommandTreeRunsDisable executes the registered cobra tree end to end
// (flag parsing, argument count, RunE wiring).
func TestCommandTreeRunsDisable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	hash, err := hashPassword("argon2id", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	saveUsers(t, path, User{Login: "demo", PasswordHash: hash, UserID: "1"})
	root := jwtauthRoot(t)
	root.SetArgs([]string{"user", "disable", "--file", path, "demo"})
	root.SetOut(new(bytes.Buffer))
	root.SetErr(new(bytes.Buffer))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	got, err := LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Find("demo").Disabled {
		t.Error("`jwtauth user disable` did not disable the user")
	}

	root = jwtauthRoot(t)
	root.SetArgs([]string{"user", "disable", "--file", path})
	root.SetOut(new(bytes.Buffer))
	root.SetErr(new(bytes.Buffer))
	if err := root.Execute(); err == nil {
		t.Error("`jwtauth user disable` without LOGIN succeeded")
	}
}

// TestHashDefaultsMatchCaddy keeps our argon2id parameters equal to the
// defaults of `caddy hash-password`, read from its registered flags.
func TestHashDefaultsMatchCaddy(t *testing.T) {
	c, ok := caddycmd.Commands()["hash-password"]
	if !ok {
		t.Fatal("hash-password is not registered")
	}
	cmd := &cobra.Command{Use: "hash-password"}
	c.CobraFunc(cmd)
	for flag, want := range map[string]int{
		"bcrypt-cost":      14, // BcryptHash{}'s default cost, which we rely on
		"argon2id-time":    argon2idTime,
		"argon2id-memory":  argon2idMemory,
		"argon2id-threads": argon2idThreads,
		"argon2id-keylen":  argon2idKeyLen,
	} {
		f := cmd.Flags().Lookup(flag)
		if f == nil {
			t.Errorf("hash-password has no --%s", flag)
			continue
		}
		if f.DefValue != strings.TrimSpace(jsonInt(want)) {
			t.Errorf("hash-password --%s defaults to %s; jwtauth uses %d", flag, f.DefValue, want)
		}
	}
	// Two argon2id hashes of one password differ (fresh salts) and both verify.
	h1, err := hashPassword("argon2id", []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	h2, err := hashPassword("argon2id", []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	if h1 == h2 {
		t.Error("two argon2id hashes are identical: the salt is not fresh")
	}
	for _, h := range []string{h1, h2} {
		if ok, err := (caddyauth.Argon2idHash{}).Compare([]byte(h), []byte("same")); err != nil || !ok {
			t.Errorf("argon2id hash %q does not verify: %v", h, err)
		}
	}
}

func TestParseClaimArgs(t *testing.T) {
	got, err := parseClaimArgs([]string{"a=1", "b=true", "c=x y", `d={"k":[1]}`, "e=", "f=a=b", `g="7"`})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":1,"b":true,"c":"x y","d":{"k":[1]},"e":"","f":"a=b","g":"7"}`
	if s := mustJSON(t, got); s != want {
		t.Errorf("got %s, want %s", s, want)
	}
	for _, bad := range [][]string{{"=v"}, {"novalue"}, {"a=1", "a=2"}} {
		if _, err := parseClaimArgs(bad); err == nil {
			t.Errorf("parseClaimArgs(%q) succeeded", bad)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	if raw, ok := v.(json.RawMessage); ok {
		var x any
		if err := json.Unmarshal(raw, &x); err != nil {
			t.Fatal(err)
		}
		v = x
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// captureStdout runs fn with os.Stdout sent to a pipe and returns what it
// wrote.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	func() {
		defer func() { os.Stdout = orig; w.Close() }()
		fn()
	}()
	out := <-done
	r.Close()
	return string(out)
}

// TestCommandToken mints a token with `caddy jwtauth token` from the store_dir
// of a provisioned issuer, and checks that a validator bound to that issuer
// with issuer_keys accepts it, with the requested claims and lifetime.
func TestCommandToken(t *testing.T) {
	base := t.TempDir()
	users, store := filepath.Join(base, "users.json"), filepath.Join(base, "store")
	hash, err := hashPassword("argon2id", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	saveUsers(t, users, User{Login: "demo", PasswordHash: hash, UserID: "1"})
	clock := newTestClock()
	v := &Validator{IssuerKeys: "cli"}
	a := &App{
		Issuers:    map[string]*Issuer{"cli": {UsersFile: users, StoreDir: store}},
		Validators: map[string]*Validator{"api": v},
	}
	a.now = clock.Now
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() { _ = a.Cleanup(); cancel() })
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := a.Start(); err != nil { // writes issuer.json
		t.Fatalf("start: %v", err)
	}

	var runErr error
	out := captureStdout(t, func() {
		runErr = runCmd(t, cmdToken, "", "token", "--issuer-dir", store, "--sub", "42",
			"--claim", "email=cli@example.com", "--claim", `roles=["ops"]`, "--ttl", "2m")
	})
	if runErr != nil {
		t.Fatalf("token: %v", runErr)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("token printed %q, want one JWT", out)
	}
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	c := decodeClaims(t, payload)
	iat, _ := c["iat"].(float64)
	exp, _ := c["exp"].(float64)
	if exp-iat != 120 || c["sub"] != "42" || c["user_id"] != 42.0 || c["email"] != "cli@example.com" || c["sid"] != nil {
		t.Errorf("claims = %s", payload)
	}

	// Verify at the token's own issue time (the CLI mints with the real
	// clock), then past its expiry.
	clock.Add(time.Unix(int64(iat), 0).Sub(clock.Now()))
	id, err := v.verify(tok)
	if err != nil {
		t.Fatalf("the validator bound to the issuer refused the CLI token: %v", err)
	}
	if id.userID != "42" {
		t.Errorf("user id = %q, want 42", id.userID)
	}
	clock.Add(2*time.Minute + time.Hour)
	if _, err := v.verify(tok); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("after exp: err = %v, want ErrTokenExpired", err)
	}

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no issuer dir":   {[]string{"token", "--sub", "1"}, "--issuer-dir is required"},
		"no sub":          {[]string{"token", "--issuer-dir", store}, "--sub is required"},
		"bad ttl":         {[]string{"token", "--issuer-dir", store, "--sub", "1", "--ttl", "soon"}, "--ttl"},
		"reserved claim":  {[]string{"token", "--issuer-dir", store, "--sub", "1", "--claim", "sid=x"}, "sid"},
		"not a store dir": {[]string{"token", "--issuer-dir", base, "--sub", "1"}, "started once"},
	} {
		var err error
		out := captureStdout(t, func() { err = runCmd(t, cmdToken, "", tc.args...) })
		if err == nil || !strings.Contains(err.Error(), tc.want) || out != "" {
			t.Errorf("%s: err = %v, stdout %q; want an error containing %q and no output", name, err, out, tc.want)
		}
	}
}

func decodeClaims(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
