package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/boltstore"
)

// TestIssuerKeys generates, persists and publishes the key of each
// algorithm, and verifies issued tokens through issuer_keys and through the
// published JWKS.
func TestIssuerKeys(t *testing.T) {
	for _, alg := range issuerAlgorithms {
		t.Run(alg, func(t *testing.T) {
			e := newIssuerEnv(t, func(is *Issuer) { is.Algorithm = alg })
			checkMode(t, e.dir, 0o700)
			keyPath := filepath.Join(e.dir, signingKeyFile)
			checkMode(t, keyPath, 0o600)
			checkMode(t, filepath.Join(e.dir, issuerMetaFile), 0o600)
			for p := range e.storeFiles() {
				checkMode(t, p, 0o600)
			}
			raw, _ := os.ReadFile(keyPath)
			block, _ := pem.Decode(raw)
			wantType := "PRIVATE KEY"
			if alg == "HS256" {
				wantType = hmacPEMType
			}
			if block == nil || block.Type != wantType || (alg == "HS256" && len(block.Bytes) != 32) {
				t.Fatalf("signing.key: %v", block)
			}
			var meta issuerMeta
			metaRaw, _ := os.ReadFile(filepath.Join(e.dir, issuerMetaFile))
			if err := json.Unmarshal(metaRaw, &meta); err != nil {
				t.Fatal(err)
			}
			if meta.Iss != "test" || len(meta.Audience) != 1 || meta.Audience[0] != "test" || meta.Algorithm != alg || meta.KID != e.kid() || meta.AccessTTL != "1m0s" {
				t.Fatalf("issuer.json %+v", meta)
			}

			access, _ := e.login("bob", "bob-password")
			if !e.protected(access) {
				t.Fatal("issuer_keys validator refused the token")
			}
			kid := e.kid()
			e.load(func(is *Issuer) { is.Algorithm = alg })
			if e.kid() != kid {
				t.Fatal("a reload changed the key")
			}

			res := e.do(issuerReq{method: http.MethodGet, path: "/.well-known/jwks.json"})
			if alg == "HS256" {
				res.expect(t, 404, "not_found")
				if strings.Contains(res.Body.String(), string(block.Bytes)) {
					t.Fatal("secret published")
				}
				return
			}
			if res.Code != 200 || res.Header().Get("Content-Type") != "application/jwk-set+json" {
				t.Fatalf("jwks: %d %s", res.Code, res.Header().Get("Content-Type"))
			}
			if strings.Contains(res.Body.String(), `"d"`) {
				t.Fatal("the JWKS holds private key material")
			}
			keys, problems, err := parseJWKS(res.Body.Bytes(), 0, "jwks")
			if err != nil || len(problems) > 0 || len(keys) != 1 || keys[0].kid != kid {
				t.Fatalf("jwks: %v %v %d keys", err, problems, len(keys))
			}
			jwksFile := filepath.Join(t.TempDir(), "jwks.json")
			_ = os.WriteFile(jwksFile, res.Body.Bytes(), 0o600)
			v := provisionValidator(t, e.clock.Now, &Validator{Issuers: []string{"test"}, Audiences: []string{"test"}, JWKSFile: jwksFile})
			if _, err := v.verify(access); err != nil {
				t.Fatalf("verify through the published JWKS: %v", err)
			}
			if res := e.do(issuerReq{path: "/.well-known/jwks.json", body: "{}"}); res.Code != 405 || res.Header().Get("Allow") != "GET, HEAD" {
				t.Fatalf("POST jwks: %d", res.Code)
			}
		})
	}
}

// TestIssuerAlgorithmChangeRefused never replaces an existing key.
func TestIssuerAlgorithmChangeRefused(t *testing.T) {
	e := newIssuerEnv(t, nil)
	before, _ := os.ReadFile(filepath.Join(e.dir, signingKeyFile))
	err := provisionErr(t, &App{Issuers: map[string]*Issuer{"test": {UsersFile: e.users, StoreDir: e.dir, Algorithm: "ES256"}}})
	if err == nil || !strings.Contains(err.Error(), signingKeyFile) {
		t.Fatalf("error %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(e.dir, signingKeyFile))
	if string(before) != string(after) {
		t.Fatal("the key changed")
	}
}

// TestIssuerConfigErrors refuses bad issuer configurations.
func TestIssuerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	writeUsers(t, users, defaultUsers...)
	keyFile := filepath.Join(dir, "ed25519.pem")
	edKey, err := generateSigningKey("EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := encodeSigningKey(edKey)
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	reserved := filepath.Join(dir, "reserved.json")
	writeUsers(t, reserved, plainUser{login: "x", password: "x", userID: "1", claims: `{"Sub":"admin"}`})
	for _, tc := range []struct {
		is   Issuer
		want string
	}{
		{Issuer{}, "users_file is required"},
		{Issuer{UsersFile: filepath.Join(dir, "missing.json")}, "users_file"},
		{Issuer{UsersFile: reserved}, `claim "Sub" is set by the issuer`},
		{Issuer{UsersFile: users, Algorithm: "HS512"}, "algorithm"},
		{Issuer{UsersFile: users, Algorithm: "none"}, "algorithm"},
		{Issuer{UsersFile: users, AccessTTL: caddy.Duration(time.Hour), RefreshTTL: caddy.Duration(time.Minute)}, "refresh_ttl"},
		{Issuer{UsersFile: users, IdleTimeout: caddy.Duration(time.Second)}, "idle_timeout"},
		{Issuer{UsersFile: users, RotationPeriod: caddy.Duration(1000 * time.Hour)}, "rotation_period"},
		{Issuer{UsersFile: users, RefreshCookie: &RefreshCookie{Name: "bad name"}}, "refresh_cookie"},
		{Issuer{UsersFile: users, RefreshCookie: &RefreshCookie{SameSite: "none", Insecure: true}}, "same_site none"},
		{Issuer{UsersFile: users, RefreshCookie: &RefreshCookie{Name: "__Host-rt", Path: "/api"}}, "__Host-"},
		{Issuer{UsersFile: users, LoginLimit: &LoginLimit{Max: -1}}, "login_limit"},
		{Issuer{UsersFile: users, KeyFile: filepath.Join(dir, "nokey.pem")}, "key_file"},
		{Issuer{UsersFile: users, Store: &SessionStore{Redis: &RedisStore{Addresses: []string{"127.0.0.1:6379"}}}}, "store redis requires key_file"},
		{Issuer{UsersFile: users, KeyFile: keyFile, Store: &SessionStore{Redis: &RedisStore{Addresses: []string{"localhost"}}}}, `address "localhost": expected HOST:PORT or unix/PATH`},
		{Issuer{UsersFile: users, KeyFile: keyFile, Store: &SessionStore{Redis: &RedisStore{Addresses: []string{"a:1"}, Password: "{env.JWTAUTH_TEST_UNSET}"}}}, "store redis: "},
		{Issuer{UsersFile: users, KeyFile: keyFile, Store: &SessionStore{Redis: &RedisStore{Addresses: []string{"a:1"}, TLS: &RedisTLS{CAFile: filepath.Join(dir, "none.pem")}}}}, "tls ca_file"},
		{Issuer{UsersFile: users, KeyFile: keyFile, Store: &SessionStore{}}, "store: no backend"},
		{Issuer{UsersFile: users, RevocationMaxStaleness: caddy.Duration(time.Second)}, "revocation_max_staleness needs revoke_access_tokens"},
	} {
		is := tc.is
		is.StoreDir = filepath.Join(t.TempDir(), "store")
		err := provisionErr(t, &App{Issuers: map[string]*Issuer{"test": &is}})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `issuer "test"`) {
			t.Errorf("%+v: error %v, want %q", tc.is, err, tc.want)
		}
	}
}

// TestIssuerStoreDirShared refuses two issuers on one store_dir, and a
// second process (here: a second open) on it.
func TestIssuerStoreDirShared(t *testing.T) {
	e := newIssuerEnv(t, nil)
	a := &App{Issuers: map[string]*Issuer{
		"one": {UsersFile: e.users, StoreDir: filepath.Join(e.dir, "x")},
		"two": {UsersFile: e.users, StoreDir: filepath.Join(e.dir, "x")},
	}}
	a.now = e.clock.Now
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := a.Provision(ctx)
	_ = a.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "already used by issuer") {
		t.Fatalf("error %v", err)
	}
	if s, err := boltstore.Open(filepath.Join(e.dir, sessionsDBFile), boltstore.Options{}); err == nil {
		_ = s.Close()
		t.Fatal("the store opened twice")
	}
}

// TestIssuerKeyFile signs with a configured key and never copies it.
func TestIssuerKeyFile(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	keyFile := filepath.Join(t.TempDir(), "es256.pem")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	e := newIssuerEnv(t, func(is *Issuer) { is.Algorithm = "ES256"; is.KeyFile = keyFile })
	if _, err := os.Stat(filepath.Join(e.dir, signingKeyFile)); err == nil {
		t.Fatal("signing.key written although key_file is set")
	}
	access, _ := e.login("alice", "alice-password")
	if _, err := jwt.Parse(access, func(*jwt.Token) (any, error) { return &k.PublicKey, nil }, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(e.clock.Now)); err != nil {
		t.Fatalf("token not signed by key_file: %v", err)
	}
	tok, err := mintFromIssuerDir(e.dir, "42", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return &k.PublicKey, nil }, jwt.WithValidMethods([]string{"ES256"})); err != nil {
		t.Fatalf("minted token: %v", err)
	}
	err = provisionErr(t, &App{Issuers: map[string]*Issuer{"test": {UsersFile: e.users, StoreDir: filepath.Join(t.TempDir(), "s"), KeyFile: keyFile}}})
	if err == nil || !strings.Contains(err.Error(), "EdDSA") {
		t.Fatalf("an ES256 key_file with EdDSA: %v", err)
	}
}

// TestThumbprintRFC7638 checks the kid derivation against RFC 7638 §3.1.
func TestThumbprintRFC7638(t *testing.T) {
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	e := "AQAB"
	nb, _ := b64.DecodeString(n)
	eb, _ := b64.DecodeString(e)
	members, err := jwkMembers(&rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: int(new(big.Int).SetBytes(eb).Int64())})
	if err != nil {
		t.Fatal(err)
	}
	if got := thumbprint(members); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("thumbprint %s", got)
	}
}
