package jwtauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func tokenCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "token --issuer-dir <dir> --sub <sub> [--claim <k=v>]... [--ttl <duration>]",
		Short: "Mints a test access token with an issuer's signing key",
		Long: `
Prints an access token signed with the key of the issuer whose store_dir is
--issuer-dir, with that issuer's iss and aud, so that validators trusting the
issuer accept it. The issuer must have started once with that store_dir.

The token belongs to no session (it has no sid): it cannot be revoked and
lives until it expires. Keep --ttl short.

--sub
    The sub claim. user_id defaults to it (a number when it is an integer).

--claim k=v
    An extra claim; the value is read as JSON when it is valid JSON, as a
    string otherwise. user_id=N overrides the default; other claims the
    issuer sets itself are refused. Repeatable.

--ttl
    The token's lifetime. Default: 5m; 0 means the issuer's access_ttl.
`,
		Args: cobra.NoArgs,
	}
	c.Flags().String("issuer-dir", "", "The issuer's store_dir; required")
	c.Flags().String("sub", "", "The sub claim; required")
	c.Flags().StringArray("claim", nil, "An extra claim, k=v (v is JSON or a string); repeatable")
	c.Flags().String("ttl", "5m", "The token's lifetime (0: the issuer's access_ttl)")
	c.RunE = caddycmd.WrapCommandFuncForCobra(cmdToken)
	return c
}

// cmdToken implements `caddy jwtauth token`.
func cmdToken(fl caddycmd.Flags) (int, error) {
	dir, sub := fl.String("issuer-dir"), fl.String("sub")
	if dir == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--issuer-dir is required")
	}
	if sub == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--sub is required")
	}
	ttl, err := caddy.ParseDuration(fl.String("ttl"))
	if err != nil || ttl < 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--ttl %q: want a non-negative duration", fl.String("ttl"))
	}
	claimArgs, err := fl.GetStringArray("claim")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	extra, err := parseClaimArgs(claimArgs)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	token, err := mintFromIssuerDir(dir, sub, extra, ttl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Fprintln(os.Stdout, token)
	return caddy.ExitCodeSuccess, nil
}

// mintFromIssuerDir mints an access token as the issuer whose store_dir is
// dir would, from its signing key and issuer.json. It serves `caddy jwtauth
// token`: the token has no sid, so it belongs to no session and cannot be
// revoked; it lives until exp. user_id defaults to sub (a number when sub is
// an integer) and may be set in extra; any other registered claim in extra
// is refused. ttl 0 means the issuer's access_ttl.
func mintFromIssuerDir(dir, sub string, extra map[string]any, ttl time.Duration) (string, error) {
	if sub == "" {
		return "", errors.New("sub is required")
	}
	if ttl < 0 {
		return "", errors.New("ttl must not be negative")
	}
	raw, err := os.ReadFile(filepath.Join(dir, issuerMetaFile))
	if err != nil {
		return "", fmt.Errorf("%w (has the issuer started once with this store_dir?)", err)
	}
	var m issuerMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Join(dir, issuerMetaFile), err)
	}
	if m.Iss == "" || len(m.Audience) == 0 {
		return "", fmt.Errorf("%s: iss and audience are required", filepath.Join(dir, issuerMetaFile))
	}
	keyPath := filepath.Join(dir, signingKeyFile)
	if m.KeyFile != "" {
		keyPath = m.KeyFile
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return "", err
	}
	key, err := parseSigningKey(keyPEM, keyPath)
	if err != nil {
		return "", err
	}
	s, err := newSigner(m.Algorithm, key, keyPath)
	if err != nil {
		return "", err
	}
	if m.KID != "" && m.KID != s.kid {
		return "", fmt.Errorf("%s does not match the kid in %s", keyPath, issuerMetaFile)
	}
	if ttl == 0 {
		if ttl, err = time.ParseDuration(m.AccessTTL); err != nil || ttl <= 0 {
			return "", fmt.Errorf("%s: bad access_ttl %q", issuerMetaFile, m.AccessTTL)
		}
	}
	var userID any = sub
	if n, err := strconv.ParseInt(sub, 10, 64); err == nil {
		userID = n
	}
	rest := make(map[string]any, len(extra))
	for k, v := range extra {
		if k == "user_id" {
			userID = v
			continue
		}
		if isReservedClaim(k) {
			return "", fmt.Errorf("claim %q is set by the issuer", k)
		}
		rest[k] = v
	}
	jti, err := randomID(16)
	if err != nil {
		return "", err
	}
	now := time.Now()
	c := accessTokenClaims(m.Iss, m.Audience, sub, userID, "", now, now.Add(ttl), jti, "", rest)
	return s.sign(c)
}
