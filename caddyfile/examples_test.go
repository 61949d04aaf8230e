package caddyfile_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// exampleFiles lists the Caddyfiles under examples/: every file whose name
// contains "Caddyfile" or ends in ".caddyfile", at any depth, relative to
// the repository root.
func exampleFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join("..", "examples"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.Contains(d.Name(), "Caddyfile") || strings.HasSuffix(d.Name(), ".caddyfile")) {
			rel, err := filepath.Rel("..", p)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Caddyfile under examples/")
	}
	return files
}

// exampleEnv provides what the examples read from their environment: the
// quickstart's JWTAUTH_DATA, the benchmark's BENCH_DIR (the public keys its
// mint tool writes) and JWTAUTH_BENCH_SECRET, and the cluster's users file,
// signing key and Redis password (no Redis is needed: provisioning opens
// nothing). An example that needs more must add it here.
func exampleEnv(t *testing.T) {
	t.Helper()
	t.Setenv("JWTAUTH_DATA", t.TempDir())
	t.Setenv("JWTAUTH_USERS", "examples/users.json")
	t.Setenv("REDIS_PASSWORD", "example-redis-password")
	keyFile := filepath.Join(t.TempDir(), "signing.pem")
	writeSigningKey(t, keyFile)
	t.Setenv("JWTAUTH_KEY_FILE", keyFile)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JWTAUTH_BENCH_SECRET", hex.EncodeToString(secret))
	dir := t.TempDir()
	t.Setenv("BENCH_DIR", dir)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]any{"rs256.pem": rsaKey.Public(), "es256.pem": ecKey.Public(), "eddsa.pem": edPub} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		writePEMFile(t, filepath.Join(dir, name), "PUBLIC KEY", der)
	}
}

// TestExamplesAdapt adapts every example Caddyfile from the repository root,
// as the README runs them, and provisions the result without starting it
// (as `caddy validate` does): every validator, issuer and handler the
// example defines must load. Examples must also be formatted (caddy fmt),
// since the adapter's warnings fail the test. Data goes to a temporary
// JWTAUTH_DATA and Caddy data directory; exampleEnv provides the keys and
// secrets. (The quickstart is also run for real in TestQuickstartExample.)
func TestExamplesAdapt(t *testing.T) {
	files := exampleFiles(t)
	for _, file := range files {
		t.Run(filepath.ToSlash(file), func(t *testing.T) {
			hermeticHome(t)
			exampleEnv(t)
			t.Chdir("..")
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(raw, map[string]any{"filename": file})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("%s:%d: %s", w.File, w.Line, w.Message)
			}
			var probe struct {
				Apps map[string]json.RawMessage `json:"apps"`
			}
			if err := json.Unmarshal(out, &probe); err != nil {
				t.Fatal(err)
			}
			if _, ok := probe.Apps["jwtauth"]; !ok {
				t.Error("the example configures no jwtauth app")
			}
			var cfg caddy.Config
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("provision: %v", err)
			}
		})
	}
}
