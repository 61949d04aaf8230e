package caddyfile_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"

	"github.com/jwtauth/caddy-jwtauth/jwtauth"
)

// ---- running Caddy ----

// adaptedHandlers adapts the Caddyfile cf and lists the handlers of its
// routes, in order.
func adaptedHandlers(t *testing.T, cf string) []string {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string `json:"handler"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				order = append(order, h.Handler)
			}
		}
	}
	return order
}

// hermeticHome points Caddy's data and config directories at a temporary
// directory for the test.
func hermeticHome(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
}

// loadCaddyfile starts the config and unloads it when the test ends, which frees
// its ports for the next test.
func loadCaddyfile(t *testing.T, config string) *caddytest.Tester {
	t.Helper()
	hermeticHome(t)
	if strings.Contains(config, "SITE_CERT") {
		cert, key := writeSiteCertificate(t)
		config = strings.NewReplacer("SITE_CERT", cert, "SITE_KEY", key).Replace(config)
	}
	tc := caddytest.NewTester(t)
	tc.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		res, err := http.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader("{\n\tadmin localhost:2999\n}\n"))
		if err != nil {
			t.Errorf("unloading: %v", err)
			return
		}
		res.Body.Close()
	})
	return tc
}

// writeSiteCertificate writes a self-signed certificate for caddy.localhost. The
// files end in .pem: caddytest rewrites paths ending in .crt or .key.
func writeSiteCertificate(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "caddy.localhost"},
		DNSNames:     []string{"caddy.localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "site-cert.pem"), filepath.Join(dir, "site-key.pem")
	writePEMFile(t, certPath, "CERTIFICATE", der)
	writePEMFile(t, keyPath, "PRIVATE KEY", keyDER)
	return certPath, keyPath
}

// The quickstart tests load examples/Caddyfile itself, with JWTAUTH_PORT
// and JWTAUTH_DATA set, and only two edits: the admin endpoint caddytest
// needs, and an absolute users_file path (caddytest runs in this package's
// directory, the quickstart in the repository's root).
const (
	quickstartPort = "9130"
	quickstartBase = "http://localhost:" + quickstartPort
)

// loadQuickstart starts the quickstart Caddyfile in caddytest with a fresh
// data directory, which it returns. The config is unloaded when the test
// ends, before the directory is removed. extra edits, each to be found
// exactly once, are applied after the usual ones.
func loadQuickstart(t *testing.T, extra ...quickstartEdit) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "examples", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	users, err := filepath.Abs(filepath.Join("..", "examples", "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	config := string(raw)
	for _, edit := range append([]quickstartEdit{
		{"\tadmin off\n", "\tadmin localhost:2999\n"},
		{"users_file examples/users.json\n", "users_file " + users + "\n"},
	}, extra...) {
		if n := strings.Count(config, edit.old); n != 1 {
			t.Fatalf("examples/Caddyfile: %q appears %d times, want once (update loadQuickstart)", edit.old, n)
		}
		config = strings.Replace(config, edit.old, edit.new, 1)
	}

	data := t.TempDir()
	t.Setenv("JWTAUTH_PORT", quickstartPort)
	t.Setenv("JWTAUTH_DATA", data)
	tester := caddytest.NewTester(t)
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		// Stop the issuer (and release its store lock) before the
		// temporary data directory is removed.
		res, err := http.Post("http://localhost:2999/load", "text/caddyfile",
			strings.NewReader("{\n\tadmin localhost:2999\n}\n"))
		if err != nil {
			t.Errorf("unloading the quickstart: %v", err)
			return
		}
		res.Body.Close()
	})
	return data
}

// quickstartEdit replaces old by new in the quickstart Caddyfile.
type quickstartEdit struct{ old, new string }

// ---- users and keys ----

// plainUser is a users-file entry with a plain password, hashed on write.
type plainUser struct {
	login, password, userID string
	disabled                bool
}

// userHashes caches a bcrypt hash by password: an unchanged password keeps
// its hash, since a new salt would be a change of the users file.
var userHashes = map[string]string{}

// writeUsers writes a users file of users at path, as the CLI does, each
// with the claim email LOGIN@example.com and its password hashed at
// bcrypt's minimum cost.
func writeUsers(t *testing.T, path string, users ...plainUser) {
	t.Helper()
	var uf jwtauth.UsersFile
	for _, x := range users {
		h, ok := userHashes[x.password]
		if !ok {
			b, err := bcrypt.GenerateFromPassword([]byte(x.password), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			h = string(b)
			userHashes[x.password] = h
		}
		uf.Users = append(uf.Users, jwtauth.User{Login: x.login, PasswordHash: h, UserID: json.Number(x.userID), Disabled: x.disabled,
			Claims: json.RawMessage(`{"email":"` + x.login + `@example.com"}`)})
	}
	if err := uf.Save(path); err != nil {
		t.Fatal(err)
	}
}

// writePEMFile writes one PEM block of type typ to path.
func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeSigningKey writes a fresh Ed25519 private key (PKCS #8 PEM) to path,
// for an issuer's key_file.
func writeSigningKey(t *testing.T, path string) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, path, "PRIVATE KEY", der)
}

// ---- answers ----

// decodeJSONObject decodes s, the answer to what, as a JSON object.
func decodeJSONObject(t *testing.T, what, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%s: not a JSON object: %v: %q", what, err, s)
	}
	return m
}
