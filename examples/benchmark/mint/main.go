// Command mint writes the keys and tokens that the load benchmark in
// examples/benchmark uses: a random HMAC secret, RSA, EC P-256 and Ed25519
// key pairs (only the public halves are written), one token per algorithm, a
// forged and an expired token for the 401 path, and lists of distinct valid
// and expired HS256 tokens for the first-seen configurations.
//
//	go run ./examples/benchmark/mint -out DIR [-fresh 100000] [-ttl 24h]
//
// The files are test material: never use these keys or tokens elsewhere.
package main

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The issuer and audience the benchmark Caddyfile expects.
const (
	issuer   = "https://bench.example"
	audience = "bench"
)

func main() {
	out := flag.String("out", "", "directory to write into (created if missing)")
	fresh := flag.Int("fresh", 100000, "number of distinct tokens in each first-seen list")
	ttl := flag.Duration("ttl", 24*time.Hour, "lifetime of the tokens")
	flag.Parse()
	if err := run(*out, *fresh, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "mint:", err)
		os.Exit(1)
	}
}

func run(dir string, fresh int, ttl time.Duration) error {
	if dir == "" {
		return errors.New("-out is required")
	}
	if fresh < 1 || ttl <= 0 {
		return errors.New("-fresh and -ttl must be positive")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	secret, forgedSecret := make([]byte, 32), make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	if _, err := rand.Read(forgedSecret); err != nil {
		return err
	}
	// hex keeps the secret printable for {env.*}; 64 bytes of it
	hmacKey := []byte(hex.EncodeToString(secret))
	if err := os.WriteFile(filepath.Join(dir, "hs256.secret"), hmacKey, 0o600); err != nil {
		return err
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	for name, pub := range map[string]crypto.PublicKey{
		"rs256.pem": rsaKey.Public(), "es256.pem": ecKey.Public(), "eddsa.pem": edKey.Public(),
	} {
		if err := writePublicKey(filepath.Join(dir, name), pub); err != nil {
			return err
		}
	}

	now := time.Now()
	for _, t := range []struct {
		file   string
		method jwt.SigningMethod
		key    any
		iat    time.Time
	}{
		{"hs256.token", jwt.SigningMethodHS256, hmacKey, now},
		{"rs256.token", jwt.SigningMethodRS256, rsaKey, now},
		{"es256.token", jwt.SigningMethodES256, ecKey, now},
		{"eddsa.token", jwt.SigningMethodEdDSA, edKey, now},
		// signed with another secret: refused by the signature check
		{"forged.token", jwt.SigningMethodHS256, []byte(hex.EncodeToString(forgedSecret)), now},
		// expired an hour ago: refused before any key is touched
		{"expired.token", jwt.SigningMethodHS256, hmacKey, now.Add(-time.Hour - ttl)},
	} {
		tok, err := mint(t.method, t.key, t.iat, t.iat.Add(ttl), "")
		if err != nil {
			return fmt.Errorf("%s: %w", t.file, err)
		}
		if err := os.WriteFile(filepath.Join(dir, t.file), []byte(tok), 0o600); err != nil {
			return err
		}
	}

	// distinct tokens, valid and expired, for the first-seen configurations
	if err := writeList(filepath.Join(dir, "fresh.tokens"), fresh, hmacKey, now, ttl); err != nil {
		return err
	}
	return writeList(filepath.Join(dir, "expired.tokens"), fresh, hmacKey, now.Add(-time.Hour-ttl), ttl)
}

// writeList writes n distinct HS256 tokens issued at iat, one per line.
func writeList(path string, n int, key []byte, iat time.Time, ttl time.Duration) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		tok, err := mint(jwt.SigningMethodHS256, key, iat, iat.Add(ttl), strconv.Itoa(i))
		if err != nil {
			_ = f.Close()
			return err
		}
		_, _ = w.WriteString(tok)
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// mint signs a token shaped like a typical access token. A non-empty jti
// makes each token of the first-seen list distinct.
func mint(m jwt.SigningMethod, key any, iat, exp time.Time, jti string) (string, error) {
	c := jwt.MapClaims{
		"iss":   issuer,
		"aud":   audience,
		"sub":   "user-42",
		"scope": "read write",
		"iat":   iat.Unix(),
		"exp":   exp.Unix(),
	}
	if jti != "" {
		c["jti"] = jti
	}
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"] = "bench"
	return tok.SignedString(key)
}

func writePublicKey(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}
