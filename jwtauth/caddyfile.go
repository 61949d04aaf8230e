package jwtauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the app from the jwtauth global option:
//
//	jwtauth {
//		cookie_secret VALUE
//		validator NAME { ... }
//		issuer NAME { ... }
//	}
//
// Each validator and issuer name may be defined once, and cookie_secret
// given once. The validator block is described at Validator's
// UnmarshalCaddyfile, the issuer block at Issuer's.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.Errf("jwtauth: unexpected argument %q; options go in a block", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "validator":
			name, err := blockName(d)
			if err != nil {
				return err
			}
			if _, dup := a.Validators[name]; dup {
				return d.Errf("validator %q defined twice", name)
			}
			v := new(Validator)
			if err := v.UnmarshalCaddyfile(d); err != nil {
				return err
			}
			if a.Validators == nil {
				a.Validators = make(map[string]*Validator)
			}
			a.Validators[name] = v
		case "issuer":
			name, err := blockName(d)
			if err != nil {
				return err
			}
			if _, dup := a.Issuers[name]; dup {
				return d.Errf("issuer %q defined twice", name)
			}
			is := new(Issuer)
			if err := is.UnmarshalCaddyfile(d); err != nil {
				return err
			}
			if a.Issuers == nil {
				a.Issuers = make(map[string]*Issuer)
			}
			a.Issuers[name] = is
		case "cookie_secret":
			if a.CookieSecret != "" {
				return d.Err("cookie_secret defined twice")
			}
			if err := oneArg(d, &a.CookieSecret); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized jwtauth option %q", d.Val())
		}
	}
	return nil
}

// blockName reads the NAME of "validator NAME {" or "issuer NAME {" and
// leaves the dispenser on it, ready for the block.
func blockName(d *caddyfile.Dispenser) (string, error) {
	kind := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s: a name is required", kind)
	}
	name := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s %s: unexpected argument %q", kind, name, d.Val())
	}
	return name, nil
}

// UnmarshalCaddyfile reads a validator block; the dispenser is on its name:
//
//	validator NAME {
//		issuer ISS...
//		audience AUD...
//		algorithms ALG...
//		typ TYP...
//		secret VALUE
//		public_key_file PATH [KID]
//		jwks_file PATH
//		jwks_url URL {
//			refresh_interval DURATION
//			unknown_kid_interval DURATION
//			unknown_kid_wait DURATION
//			timeout DURATION
//			max_stale DURATION
//			max_bytes N
//		}
//		issuer_keys ISSUER
//		leeway DURATION
//		max_lifetime DURATION
//		user_id claim CLAIM | static VALUE
//		partner_id claim CLAIM [required]
//		require CLAIM VALUE...
//		from_header NAME [PREFIX]
//		from_cookie NAME
//		from_query NAME
//		cookie {
//			name NAME
//			max_age DURATION
//			same_site strict|lax|none
//			path PATH
//			insecure
//		}
//		cache_size N
//	}
//
// Options that take a list (issuer, audience, algorithms, typ) accumulate
// when repeated; public_key_file, require and the from_* sources add one
// entry each time. Every other option may be given once per block.
func (v *Validator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "secret", "jwks_file", "issuer_keys", "leeway", "max_lifetime", "user_id", "partner_id", "cache_size":
			if err := once(d, seen, "validator"); err != nil {
				return err
			}
		}
		switch opt {
		case "issuer":
			if err := moreArgs(d, &v.Issuers); err != nil {
				return err
			}
		case "audience":
			if err := moreArgs(d, &v.Audiences); err != nil {
				return err
			}
		case "algorithms":
			if err := moreArgs(d, &v.Algorithms); err != nil {
				return err
			}
		case "typ":
			if err := moreArgs(d, &v.Types); err != nil {
				return err
			}
		case "secret":
			if err := oneArg(d, &v.Secret); err != nil {
				return err
			}
		case "public_key_file":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("public_key_file: expected PATH [KID]")
			}
			f := PublicKeyFile{Path: args[0]}
			if len(args) == 2 {
				f.KID = args[1]
			}
			v.PublicKeyFiles = append(v.PublicKeyFiles, f)
		case "jwks_file":
			if err := oneArg(d, &v.JWKSFile); err != nil {
				return err
			}
		case "jwks_url":
			if v.JWKSURL != nil {
				return d.Err("jwks_url: only one per validator")
			}
			r := new(RemoteJWKS)
			if err := r.unmarshalCaddyfile(d); err != nil {
				return err
			}
			v.JWKSURL = r
		case "issuer_keys":
			if err := oneArg(d, &v.IssuerKeys); err != nil {
				return err
			}
		case "leeway":
			var l caddy.Duration
			if err := durationArg(d, &l); err != nil {
				return err
			}
			v.Leeway = &l
		case "max_lifetime":
			if err := durationArg(d, &v.MaxLifetime); err != nil {
				return err
			}
		case "user_id":
			args := d.RemainingArgs()
			if len(args) != 2 || (args[0] != "claim" && args[0] != "static") {
				return d.Err("user_id: expected 'claim CLAIM' or 'static VALUE'")
			}
			if args[0] == "claim" {
				v.UserID = &UserIDSource{Claim: args[1]}
			} else {
				v.UserID = &UserIDSource{Static: args[1]}
			}
		case "partner_id":
			args := d.RemainingArgs()
			if len(args) < 2 || len(args) > 3 || args[0] != "claim" || (len(args) == 3 && args[2] != "required") {
				return d.Err("partner_id: expected 'claim CLAIM [required]'")
			}
			v.PartnerID = &PartnerIDSource{Claim: args[1], Required: len(args) == 3}
		case "require":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Err("require: expected CLAIM VALUE...")
			}
			v.Require = append(v.Require, ClaimRequirement{Claim: args[0], Values: args[1:]})
		case "from_header":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Err("from_header: expected NAME [PREFIX]")
			}
			s := TokenSource{From: "header", Name: args[0]}
			if len(args) == 2 {
				s.Prefix = args[1]
			}
			v.Sources = append(v.Sources, s)
		case "from_cookie", "from_query":
			var name string
			if err := oneArg(d, &name); err != nil {
				return err
			}
			v.Sources = append(v.Sources, TokenSource{From: opt[len("from_"):], Name: name})
		case "cookie":
			if v.Cookie != nil {
				return d.Err("cookie: only one per validator")
			}
			if d.NextArg() {
				return d.Errf("cookie: unexpected argument %q; options go in a block", d.Val())
			}
			c := new(CookieConfig)
			if err := c.unmarshalCaddyfile(d); err != nil {
				return err
			}
			v.Cookie = c
		case "cache_size":
			var s string
			if err := oneArg(d, &s); err != nil {
				return err
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return d.Errf("cache_size: %q is not a non-negative integer", s)
			}
			v.CacheSize = &n
		default:
			return d.Errf("unrecognized validator option %q", opt)
		}
	}
	return nil
}

// unmarshalCaddyfile reads "jwks_url URL { ... }"; the dispenser is on
// jwks_url.
func (r *RemoteJWKS) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := oneArg(d, &r.URL); err != nil {
		return err
	}
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		if err := once(d, seen, "jwks_url"); err != nil {
			return err
		}
		var err error
		switch d.Val() {
		case "refresh_interval":
			err = durationArg(d, &r.RefreshInterval)
		case "unknown_kid_interval":
			err = durationArg(d, &r.UnknownKIDInterval)
		case "unknown_kid_wait":
			err = durationArg(d, &r.UnknownKIDWait)
		case "timeout":
			err = durationArg(d, &r.Timeout)
		case "max_stale":
			err = durationArg(d, &r.MaxStale)
		case "max_bytes":
			var s string
			if err = oneArg(d, &s); err == nil {
				r.MaxBytes, err = strconv.ParseInt(s, 10, 64)
				if err != nil || r.MaxBytes <= 0 {
					err = d.Errf("max_bytes: %q is not a positive integer", s)
				}
			}
		default:
			err = d.Errf("unrecognized jwks_url option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalCaddyfile reads a cookie block.
func (c *CookieConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		if err := once(d, seen, "cookie"); err != nil {
			return err
		}
		var err error
		switch d.Val() {
		case "name":
			err = oneArg(d, &c.Name)
		case "max_age":
			err = durationArg(d, &c.MaxAge)
		default:
			var known bool
			if known, err = cookieAttr(d, &c.SameSite, &c.Path, &c.Insecure); !known {
				err = d.Errf("unrecognized cookie option %q", d.Val())
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// cookieAttr reads the attributes that identity and refresh cookies share
// (same_site, path, insecure); known is false for any other option.
func cookieAttr(d *caddyfile.Dispenser, sameSite, path *string, insecure *bool) (known bool, err error) {
	switch d.Val() {
	case "same_site":
		if err = oneArg(d, sameSite); err == nil {
			if _, perr := parseSameSite(*sameSite); perr != nil {
				err = d.Err(perr.Error())
			}
		}
	case "path":
		err = oneArg(d, path)
	case "insecure":
		err = noArgs(d, insecure)
	default:
		return false, nil
	}
	return true, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	jwt_auth [<matcher>] NAME...
//	jwt_auth [<matcher>] [NAME...] {
//		validator NAME...
//		public
//		forward_claim CLAIM HEADER
//		forward_payload HEADER
//		strip_token
//		allow_cors_preflight
//		realm VALUE
//	}
//
// validator and forward_claim add to their lists when repeated; every other
// option may be given once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	h.Validators = append(h.Validators, d.RemainingArgs()...)
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		switch d.Val() {
		case "public", "forward_payload", "strip_token", "allow_cors_preflight", "realm":
			if err := once(d, seen, "jwt_auth"); err != nil {
				return err
			}
		}
		switch d.Val() {
		case "validator":
			if err := moreArgs(d, &h.Validators); err != nil {
				return err
			}
		case "public":
			if err := noArgs(d, &h.Public); err != nil {
				return err
			}
		case "forward_claim":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("forward_claim: expected CLAIM HEADER")
			}
			h.ForwardClaims = append(h.ForwardClaims, ForwardClaim{Claim: args[0], Header: args[1]})
		case "forward_payload":
			if err := oneArg(d, &h.ForwardPayload); err != nil {
				return err
			}
		case "strip_token":
			if err := noArgs(d, &h.StripToken); err != nil {
				return err
			}
		case "allow_cors_preflight":
			if err := noArgs(d, &h.AllowCORSPreflight); err != nil {
				return err
			}
		case "realm":
			if err := oneArg(d, &h.Realm); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized jwt_auth option %q", d.Val())
		}
	}
	if len(h.Validators) == 0 {
		return d.Err("jwt_auth: at least one validator name is required")
	}
	return nil
}

// once is the rule for an option that takes a single value: given a second
// time in the same block (seen), it is an error at the second one's line,
// never a silent override.
func once(d *caddyfile.Dispenser, seen map[string]bool, block string) error {
	opt := d.Val()
	if seen[opt] {
		return d.Errf("%s: %s given twice", block, opt)
	}
	seen[opt] = true
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: expected one argument", opt)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s: expected one argument, got also %q", opt, d.Val())
	}
	return nil
}

func moreArgs(d *caddyfile.Dispenser, dst *[]string) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s: expected at least one argument", opt)
	}
	*dst = append(*dst, args...)
	return nil
}

func noArgs(d *caddyfile.Dispenser, dst *bool) error {
	opt := d.Val()
	if d.NextArg() {
		return d.Errf("%s: unexpected argument %q", opt, d.Val())
	}
	*dst = true
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		// not err itself: caddy rewrites "d" units before parsing, so
		// "3days" would be reported as "72hays"
		return d.Errf("%s: %q is not a duration such as 30s, 5m, 1h or 1d", opt, s)
	}
	if dur < 0 {
		return d.Errf("%s: %s must not be negative", opt, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Validator)(nil)
)
