// Package caddyjwtauth registers the caddy-jwtauth modules and Caddyfile
// directives. Build Caddy with it:
//
//	xcaddy build --with github.com/jwtauth/caddy-jwtauth
package caddyjwtauth

import (
	_ "github.com/jwtauth/caddy-jwtauth/caddyfile"
	_ "github.com/jwtauth/caddy-jwtauth/jwtauth"
)
