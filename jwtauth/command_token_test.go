package jwtauth

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestMintFromIssuerDir mints tokens as the issuer would, which a validator
// bound to the issuer accepts.
func TestMintFromIssuerDir(t *testing.T) {
	for _, alg := range []string{"EdDSA", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			e := newIssuerEnv(t, func(is *Issuer) { is.Algorithm = alg; is.AccessTTL = caddy.Duration(5 * time.Minute) })
			tok, err := mintFromIssuerDir(e.dir, "12", map[string]any{"email": "x@example.com", "roles": []string{"a"}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			// the CLI uses the real clock
			pv := e.app.Validators["api"]
			pv.now = time.Now
			id, err := pv.verify(tok)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			var c map[string]any
			_ = json.Unmarshal(id.payload, &c)
			if c["sub"] != "12" || c["user_id"] != float64(12) || c["email"] != "x@example.com" || c["iss"] != "test" || c["sid"] != nil {
				t.Fatalf("claims %v", c)
			}
			if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 {
				t.Fatalf("lifetime %v", exp-iat)
			}
			tok, err = mintFromIssuerDir(e.dir, "alice", map[string]any{"user_id": 7}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			id, _ = pv.verify(tok)
			if id == nil || id.userID != "alice" {
				t.Fatalf("identity %+v", id)
			}
			if _, err := mintFromIssuerDir(e.dir, "x", map[string]any{"iss": "evil"}, 0); err == nil {
				t.Fatal("a registered claim was accepted")
			}
			if _, err := mintFromIssuerDir(t.TempDir(), "x", nil, 0); err == nil {
				t.Fatal("minted without issuer.json")
			}
		})
	}
}
