package jwtauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func sessionsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "sessions list|revoke",
		Short: "Lists and revokes the sessions of a running jwt_issuer",
		Long: `
Lists or revokes the sessions of a running Caddy's issuers through its admin
API (admin.api.jwtauth), so they work while Caddy holds the session store.
The admin address is --address, else the one in --config (or ./Caddyfile),
else the default, as 'caddy reload' finds it.
`,
	}
	adminFlags := func(c *cobra.Command) {
		c.Flags().String("address", "", "The admin API address; default: from --config, else localhost:2019")
		c.Flags().StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
		c.Flags().StringP("adapter", "a", "", "Name of the config adapter (when --config is used)")
	}
	list := &cobra.Command{
		Use:   "list [--issuer <name>] [--login <login>] [--address <addr>]",
		Short: "Lists live sessions: sid, login, user_id, created, last used, expiry, rotations",
		Long: `
Lists the live sessions of one issuer (--issuer) or of all, optionally only
those of one user (--login). Tokens and token hashes are never shown.
`,
		Args: cobra.NoArgs,
	}
	adminFlags(list)
	list.Flags().String("issuer", "", "The issuer; default: every issuer")
	list.Flags().String("login", "", "Only the sessions of this login")
	list.RunE = caddycmd.WrapCommandFuncForCobra(cmdSessionsList)

	revoke := &cobra.Command{
		Use:   "revoke --issuer <name> (--sid <sid> | --login <login>) [--address <addr>]",
		Short: "Revokes one session, or every session of a user",
		Long: `
Revokes one session (--sid) or every session of a user (--login) of the
issuer, as a logout does: the refresh tokens stop working at once and, with
revoke_access_tokens, so do the sessions' access tokens.
`,
		Args: cobra.NoArgs,
	}
	adminFlags(revoke)
	revoke.Flags().String("issuer", "", "The issuer; required")
	revoke.Flags().String("sid", "", "The session to revoke")
	revoke.Flags().String("login", "", "Revoke every session of this login")
	revoke.RunE = caddycmd.WrapCommandFuncForCobra(cmdSessionsRevoke)

	c.AddCommand(list, revoke)
	return c
}

// adminAddress finds the admin API address as `caddy reload` does.
func adminAddress(fl caddycmd.Flags) (string, error) {
	addr, configFile := fl.String("address"), fl.String("config")
	if addr == "" && configFile == "" && caddyconfig.GetAdapter("caddyfile") != nil {
		if _, err := os.Stat("Caddyfile"); err == nil {
			configFile = "Caddyfile"
		}
	}
	return caddycmd.DetermineAdminAPIAddress(addr, nil, configFile, fl.String("adapter"))
}

// adminCall sends a request to the admin API and decodes its JSON answer.
func adminCall(fl caddycmd.Flags, method, uri string, into any) error {
	addr, err := adminAddress(fl)
	if err != nil {
		return err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(into)
}

func issuerPath(name string) string {
	return "/jwtauth/issuers/" + url.PathEscape(name) + "/sessions"
}

// cmdSessionsList implements `caddy jwtauth sessions list`.
func cmdSessionsList(fl caddycmd.Flags) (int, error) {
	issuers := []string{fl.String("issuer")}
	if issuers[0] == "" {
		var all struct {
			Issuers []string `json:"issuers"`
		}
		if err := adminCall(fl, http.MethodGet, "/jwtauth/issuers", &all); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		issuers = all.Issuers
	}
	q := ""
	if login := fl.String("login"); login != "" {
		q = "?login=" + url.QueryEscape(login)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ISSUER\tSID\tLOGIN\tUSER_ID\tCREATED\tLAST_USED\tEXPIRES\tGEN")
	for _, name := range issuers {
		var res sessionsListing
		if err := adminCall(fl, http.MethodGet, issuerPath(name)+q, &res); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		for _, s := range res.Sessions {
			uid := string(s.UserID)
			if u, err := strconv.Unquote(uid); err == nil {
				uid = u
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", name, s.SID, s.Login, uid,
				s.Created.Format(time.RFC3339), s.LastUsed.Format(time.RFC3339), s.Expires.Format(time.RFC3339), s.Generation)
		}
	}
	if err := tw.Flush(); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}

// sessionsListing is the admin API's answer to a sessions listing
// (adminSessions), as the client reads it: user_id stays raw JSON, a
// number or a string, as the users file holds it.
type sessionsListing struct {
	Issuer   string `json:"issuer"`
	Sessions []struct {
		SID        string          `json:"sid"`
		Login      string          `json:"login"`
		UserID     json.RawMessage `json:"user_id"`
		Created    time.Time       `json:"created"`
		LastUsed   time.Time       `json:"last_used"`
		Expires    time.Time       `json:"expires"`
		Generation uint64          `json:"generation"`
	} `json:"sessions"`
}

// cmdSessionsRevoke implements `caddy jwtauth sessions revoke`.
func cmdSessionsRevoke(fl caddycmd.Flags) (int, error) {
	name, sid, login := fl.String("issuer"), fl.String("sid"), fl.String("login")
	if name == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--issuer is required")
	}
	if (sid == "") == (login == "") {
		return caddy.ExitCodeFailedStartup, errors.New("give exactly one of --sid and --login")
	}
	uri := issuerPath(name) + "/" + url.PathEscape(sid)
	if login != "" {
		uri = issuerPath(name) + "?login=" + url.QueryEscape(login)
	}
	var res struct {
		Revoked int `json:"revoked"`
	}
	if err := adminCall(fl, http.MethodDelete, uri, &res); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Fprintf(os.Stdout, "revoked %d session(s) of issuer %q\n", res.Revoked, name)
	return caddy.ExitCodeSuccess, nil
}
