package jwtauth

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile reads an issuer block; the dispenser is on its name:
//
//	issuer NAME {
//		iss VALUE
//		audience AUD...
//		users_file PATH
//		store_dir PATH
//		algorithm EdDSA|ES256|RS256|HS256
//		key_file PATH
//		access_ttl DURATION
//		refresh_ttl DURATION
//		idle_timeout DURATION
//		rotation_period DURATION
//		refresh_cookie [NAME] {
//			same_site strict|lax|none
//			path PATH
//			insecure
//		}
//		login_limit N PER
//		store redis {
//			address HOST:PORT|unix/PATH
//			username USER
//			password SECRET
//			db N
//			tls {
//				ca_file PATH
//				server_name NAME
//			}
//			sentinel MASTER_NAME
//			key_prefix PREFIX
//			timeout DURATION
//		}
//		revoke_access_tokens {
//			max_staleness DURATION
//		}
//		users_reload_interval DURATION|off
//	}
//
// audience adds to the list when repeated; every other option may be given
// once per block, as in a validator block.
func (is *Issuer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt != "audience" {
			if err := once(d, seen, "issuer"); err != nil {
				return err
			}
		}
		var err error
		switch opt {
		case "iss":
			err = oneArg(d, &is.Iss)
		case "audience":
			err = moreArgs(d, &is.Audience)
		case "users_file":
			err = oneArg(d, &is.UsersFile)
		case "store_dir":
			err = oneArg(d, &is.StoreDir)
		case "algorithm":
			if err = oneArg(d, &is.Algorithm); err == nil && !slices.Contains(issuerAlgorithms, is.Algorithm) {
				err = d.Errf("algorithm %q: must be one of %s", is.Algorithm, strings.Join(issuerAlgorithms, ", "))
			}
		case "key_file":
			err = oneArg(d, &is.KeyFile)
		case "access_ttl":
			err = durationArg(d, &is.AccessTTL)
		case "refresh_ttl":
			err = durationArg(d, &is.RefreshTTL)
		case "idle_timeout":
			err = durationArg(d, &is.IdleTimeout)
		case "rotation_period":
			err = durationArg(d, &is.RotationPeriod)
		case "refresh_cookie":
			c := new(RefreshCookie)
			if d.NextArg() {
				c.Name = d.Val()
				if d.NextArg() {
					return d.Errf("refresh_cookie: unexpected argument %q; options go in a block", d.Val())
				}
			}
			if err = c.unmarshalCaddyfile(d); err == nil {
				is.RefreshCookie = c
			}
		case "login_limit":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("login_limit: expected N PER, e.g. login_limit 5 1m")
			}
			n, aerr := strconv.Atoi(args[0])
			if aerr != nil || n < 1 {
				return d.Errf("login_limit: %q is not a positive integer", args[0])
			}
			per, perr := caddy.ParseDuration(args[1])
			if perr != nil || per <= 0 {
				return d.Errf("login_limit: %q is not a positive duration", args[1])
			}
			is.LoginLimit = &LoginLimit{Max: n, Per: caddy.Duration(per)}
		case "store":
			is.Store = new(SessionStore)
			err = is.Store.unmarshalCaddyfile(d)
		case "revoke_access_tokens":
			if err = noArgs(d, &is.RevokeAccessTokens); err == nil {
				err = is.unmarshalRevokeBlock(d)
			}
		case "users_reload_interval":
			var s string
			if err = oneArg(d, &s); err == nil {
				iv, perr := parseUsersReloadInterval(s)
				if perr != nil {
					return d.Errf("users_reload_interval %q: %v", s, perr)
				}
				is.UsersReloadInterval = &iv
			}
		default:
			return d.Errf("unrecognized issuer option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalRevokeBlock reads the optional block of revoke_access_tokens.
func (is *Issuer) unmarshalRevokeBlock(d *caddyfile.Dispenser) error {
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		if err := once(d, seen, "revoke_access_tokens"); err != nil {
			return err
		}
		switch d.Val() {
		case "max_staleness":
			if err := durationArg(d, &is.RevocationMaxStaleness); err != nil {
				return err
			}
			if is.RevocationMaxStaleness == 0 {
				return d.Err("max_staleness: must be positive")
			}
		default:
			return d.Errf("unrecognized revoke_access_tokens option %q", d.Val())
		}
	}
	return nil
}

// unmarshalCaddyfile reads the block of refresh_cookie; the dispenser is
// past its optional name:
//
//	refresh_cookie [NAME] {
//		same_site strict|lax|none
//		path PATH
//		insecure
//	}
func (c *RefreshCookie) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		if err := once(d, seen, "refresh_cookie"); err != nil {
			return err
		}
		known, err := cookieAttr(d, &c.SameSite, &c.Path, &c.Insecure)
		if !known {
			return d.Errf("unrecognized refresh_cookie option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalCaddyfile reads a store block; the dispenser is on "store":
//
//	store redis {
//		address HOST:PORT|unix/PATH
//		username USER
//		password SECRET
//		db N
//		tls {
//			ca_file PATH
//			server_name NAME
//		}
//		sentinel MASTER_NAME
//		key_prefix PREFIX
//		timeout DURATION
//	}
//
// address adds to the list when repeated; every other option may be given
// once.
func (st *SessionStore) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("store: expected a backend: store redis { address HOST:PORT }")
	}
	if kind := d.Val(); kind != "redis" {
		return d.Errf("store: unknown backend %q; expected redis (without store, sessions live in store_dir)", kind)
	}
	if d.NextArg() {
		return d.Errf("store redis: unexpected argument %q; options go in a block", d.Val())
	}
	rs := new(RedisStore)
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		opt := d.Val()
		if opt != "address" {
			if err := once(d, seen, "store redis"); err != nil {
				return err
			}
		}
		var err error
		switch opt {
		case "address":
			var a string
			if err = oneArg(d, &a); err == nil {
				rs.Addresses = append(rs.Addresses, a)
			}
		case "username":
			err = oneArg(d, &rs.Username)
		case "password":
			err = oneArg(d, &rs.Password)
		case "db":
			var s string
			if err = oneArg(d, &s); err == nil {
				n, aerr := strconv.Atoi(s)
				if aerr != nil || n < 0 {
					return d.Errf("db: %q is not a non-negative integer", s)
				}
				rs.DB = n
			}
		case "tls":
			if d.NextArg() {
				return d.Errf("tls: unexpected argument %q; options go in a block", d.Val())
			}
			rs.TLS = new(RedisTLS)
			err = rs.TLS.unmarshalCaddyfile(d)
		case "sentinel":
			err = oneArg(d, &rs.Sentinel)
		case "key_prefix":
			err = oneArg(d, &rs.KeyPrefix)
		case "timeout":
			if err = durationArg(d, &rs.Timeout); err == nil && rs.Timeout == 0 {
				err = d.Err("timeout: must be positive")
			}
		default:
			return d.Errf("unrecognized store redis option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if len(rs.Addresses) == 0 {
		return d.Err("store redis: at least one address is required")
	}
	st.Redis = rs
	return nil
}

// unmarshalCaddyfile reads the tls block of a Redis store:
//
//	tls {
//		ca_file PATH
//		server_name NAME
//	}
func (t *RedisTLS) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		if err := once(d, seen, "tls"); err != nil {
			return err
		}
		opt := d.Val()
		var err error
		switch opt {
		case "ca_file":
			err = oneArg(d, &t.CAFile)
		case "server_name":
			err = oneArg(d, &t.ServerName)
		default:
			return d.Errf("unrecognized tls option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	jwt_issuer [<matcher>] NAME {
//		path_prefix /api
//		console
//	}
//
// The path prefix is a subdirective: Caddy would read a first argument
// starting with / as a matcher. Each option may be given once.
func (h *IssuerHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if !d.NextArg() {
		return d.Err("jwt_issuer: an issuer name is required (jwt_issuer NAME { path_prefix /api })")
	}
	h.Issuer = d.Val()
	if d.NextArg() {
		return d.Errf("jwt_issuer: unexpected argument %q; set the path with the path_prefix subdirective", d.Val())
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		if err := once(d, seen, "jwt_issuer"); err != nil {
			return err
		}
		switch d.Val() {
		case "path_prefix":
			if err := oneArg(d, &h.PathPrefix); err != nil {
				return err
			}
		case "console":
			if err := noArgs(d, &h.Console); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized jwt_issuer option %q", d.Val())
		}
	}
	return nil
}
