package jwtauth

import (
	"errors"
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	jwtauthSubcommands = append(jwtauthSubcommands, tokenCommand)
}

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
