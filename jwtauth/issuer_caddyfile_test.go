package jwtauth

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestIssuerCaddyfile parses every issuer option.
func TestIssuerCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`jwtauth {
		issuer mobile {
			iss https://auth.example.com
			audience mobile web
			users_file /etc/caddy/users.json
			store_dir /var/lib/jwtauth
			algorithm ES256
			key_file /etc/caddy/key.pem
			access_ttl 2m
			refresh_ttl 24h
			idle_timeout 1h
			rotation_period 12h
			refresh_cookie rt {
				same_site lax
				path /api/auth
				insecure
			}
			login_limit 10 5m
			store redis {
				address sentinel-1:26379
				address sentinel-2:26379
				username caddy
				password {env.REDIS_PASSWORD}
				db 2
				tls {
					ca_file /etc/caddy/redis-ca.pem
					server_name redis.internal
				}
				sentinel mymaster
				key_prefix auth
				timeout 250ms
			}
			revoke_access_tokens {
				max_staleness 2s
			}
		}
		issuer bare {
			users_file u.json
			store redis {
				address unix//run/redis.sock
			}
			revoke_access_tokens
		}
		issuer plain {
			users_file u.json
			refresh_cookie {
				insecure
			}
		}
	}`)
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a.Issuers)
	want := `{"bare":{"users_file":"u.json","store":{"redis":{"addresses":["unix//run/redis.sock"]}},"revoke_access_tokens":true},` +
		`"mobile":{"iss":"https://auth.example.com","audience":["mobile","web"],"users_file":"/etc/caddy/users.json",` +
		`"store_dir":"/var/lib/jwtauth","algorithm":"ES256","key_file":"/etc/caddy/key.pem","access_ttl":120000000000,` +
		`"refresh_ttl":86400000000000,"idle_timeout":3600000000000,"rotation_period":43200000000000,` +
		`"refresh_cookie":{"name":"rt","same_site":"lax","path":"/api/auth","insecure":true},` +
		`"login_limit":{"max":10,"per":300000000000},` +
		`"store":{"redis":{"addresses":["sentinel-1:26379","sentinel-2:26379"],"username":"caddy","password":"{env.REDIS_PASSWORD}",` +
		`"db":2,"tls":{"ca_file":"/etc/caddy/redis-ca.pem","server_name":"redis.internal"},"sentinel":"mymaster",` +
		`"key_prefix":"auth","timeout":250000000}},"revoke_access_tokens":true,"revocation_max_staleness":2000000000},` +
		`"plain":{"users_file":"u.json","refresh_cookie":{"insecure":true}}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestIssuerCaddyfileErrors names the line of each mistake.
func TestIssuerCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"issuer x {\n\tbogus 1\n}", `Testfile:2 unrecognized issuer option "bogus"`},
		{"issuer x {\n\talgorithm HS512\n}", "Testfile:2 algorithm \"HS512\""},
		{"issuer x {\n\titer\n}", "Testfile:2"},
		{"issuer x {\n\tiss\n}", "Testfile:2 iss: expected one argument"},
		{"issuer x {\n\tiss a\n\tiss b\n}", "Testfile:3 issuer: iss given twice"},
		{"issuer x {\n\taccess_ttl soon\n}", "Testfile:2"},
		{"issuer x {\n\tlogin_limit 5\n}", "Testfile:2 login_limit: expected N PER"},
		{"issuer x {\n\tlogin_limit 0 1m\n}", "Testfile:2 login_limit: \"0\""},
		{"issuer x {\n\tlogin_limit 5 -1m\n}", "Testfile:2 login_limit: \"-1m\""},
		{"issuer x {\n\trevoke_access_tokens yes\n}", "Testfile:2 revoke_access_tokens: unexpected argument"},
		{"issuer x {\n\trevoke_access_tokens {\n\t\tmax_staleness\n\t}\n}", "Testfile:3 max_staleness: expected one argument"},
		{"issuer x {\n\trevoke_access_tokens {\n\t\tmax_staleness 0s\n\t}\n}", "Testfile:3 max_staleness: must be positive"},
		{"issuer x {\n\trevoke_access_tokens {\n\t\tmax_staleness 1s\n\t\tmax_staleness 2s\n\t}\n}", "Testfile:4 revoke_access_tokens: max_staleness given twice"},
		{"issuer x {\n\trevoke_access_tokens {\n\t\tstaleness 1s\n\t}\n}", `Testfile:3 unrecognized revoke_access_tokens option "staleness"`},
		{"issuer x {\n\tstore\n}", "Testfile:2 store: expected a backend"},
		{"issuer x {\n\tstore bolt\n}", `Testfile:2 store: unknown backend "bolt"`},
		{"issuer x {\n\tstore redis localhost:6379\n}", `Testfile:2 store redis: unexpected argument "localhost:6379"; options go in a block`},
		{"issuer x {\n\tstore redis {\n\t}\n}", "Testfile:3 store redis: at least one address is required"},
		{"issuer x {\n\tstore redis {\n\t\taddress\n\t}\n}", "Testfile:3 address: expected one argument"},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1 b:2\n\t}\n}", `Testfile:3 address: expected one argument, got also "b:2"`},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\tdb one\n\t}\n}", `Testfile:4 db: "one" is not a non-negative integer`},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\tdb -1\n\t}\n}", `Testfile:4 db: "-1" is not a non-negative integer`},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\ttimeout soon\n\t}\n}", `Testfile:4 timeout: "soon" is not a duration`},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\ttimeout 0s\n\t}\n}", "Testfile:4 timeout: must be positive"},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\tpassword a\n\t\tpassword b\n\t}\n}", "Testfile:5 store redis: password given twice"},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\tsentinel m\n\t\tsentinel n\n\t}\n}", "Testfile:5 store redis: sentinel given twice"},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\tport 1\n\t}\n}", `Testfile:4 unrecognized store redis option "port"`},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\ttls on\n\t}\n}", `Testfile:4 tls: unexpected argument "on"`},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\ttls {\n\t\t\tcert_file c\n\t\t}\n\t}\n}", `Testfile:5 unrecognized tls option "cert_file"`},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t\ttls {\n\t\t\tca_file a\n\t\t\tca_file b\n\t\t}\n\t}\n}", "Testfile:6 tls: ca_file given twice"},
		{"issuer x {\n\tstore redis {\n\t\taddress a:1\n\t}\n\tstore redis {\n\t\taddress b:1\n\t}\n}", "Testfile:5 issuer: store given twice"},
		{"issuer x {\n\trefresh_cookie a b\n}", "Testfile:2 refresh_cookie: unexpected argument"},
		{"issuer x {\n\trefresh_cookie {\n\t\tsame_site loose\n\t}\n}", "Testfile:3"},
		{"issuer x {\n\trefresh_cookie {\n\t\tdomain a\n\t}\n}", "Testfile:3 unrecognized refresh_cookie option \"domain\""},
		{"issuer x {\n\trefresh_cookie {\n\t\tsame_site lax\n\t\tsame_site none\n\t}\n}", "Testfile:4 refresh_cookie: same_site given twice"},
		{"issuer x {\n\tusers_file a\n\tusers_file b\n}", "Testfile:3 issuer: users_file given twice"},
		{"issuer {\n}", "a name is required"},
	} {
		d := caddyfile.NewTestDispenser(tc.in)
		d.Next() // "issuer", as the app's parser leaves it
		_, err := blockName(d)
		if err == nil {
			err = new(Issuer).UnmarshalCaddyfile(d)
		}
		if err == nil {
			t.Errorf("%q: no error", tc.in)
			continue
		}
		if !caddyfileErrMatches(err, tc.want) {
			t.Errorf("%q: error %q, want %q", tc.in, err, tc.want)
		}
	}
}

// TestIssuerCaddyfileLists accumulates the list options when repeated, as
// in a validator block.
func TestIssuerCaddyfileLists(t *testing.T) {
	d := caddyfile.NewTestDispenser("issuer x {\n\taudience a b\n\taudience c\n\tstore redis {\n\t\taddress h:1\n\t\taddress h:2\n\t}\n}")
	d.Next()
	if _, err := blockName(d); err != nil {
		t.Fatal(err)
	}
	var is Issuer
	if err := is.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(is.Audience, ","); got != "a,b,c" {
		t.Errorf("audience %q, want a,b,c", got)
	}
	if is.Store == nil || is.Store.Redis == nil || strings.Join(is.Store.Redis.Addresses, ",") != "h:1,h:2" {
		t.Errorf("store %+v", is.Store)
	}
}

// TestIssuerHandlerCaddyfile parses the jwt_issuer directive.
func TestIssuerHandlerCaddyfile(t *testing.T) {
	var h IssuerHandler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_issuer mobile {\n\tpath_prefix /auth\n\tconsole\n}")); err != nil {
		t.Fatal(err)
	}
	if h.Issuer != "mobile" || h.PathPrefix != "/auth" || !h.Console {
		t.Fatalf("%+v", h)
	}
	h = IssuerHandler{}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_issuer mobile")); err != nil || h.Issuer != "mobile" || h.PathPrefix != "" {
		t.Fatalf("%+v %v", h, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"jwt_issuer", "an issuer name is required"},
		{"jwt_issuer a /api", "set the path with the path_prefix subdirective"},
		{"jwt_issuer a {\n\tpath_prefix\n}", "Testfile:2 path_prefix: expected one argument"},
		{"jwt_issuer a {\n\tpath_prefix /a\n\tpath_prefix /b\n}", "Testfile:3 jwt_issuer: path_prefix given twice"},
		{"jwt_issuer a {\n\tconsole on\n}", "Testfile:2 console: unexpected argument"},
		{"jwt_issuer a {\n\tconsole\n\tconsole\n}", "Testfile:3 jwt_issuer: console given twice"},
		{"jwt_issuer a {\n\tprefix /a\n}", `Testfile:2 unrecognized jwt_issuer option "prefix"`},
	} {
		var h IssuerHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if err == nil || !caddyfileErrMatches(err, tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestIssuerHandlerValidate refuses bad prefixes and cookie paths.
func TestIssuerHandlerValidate(t *testing.T) {
	e := newIssuerEnv(t, nil)
	for _, p := range []string{"api", "/a/*", "/a//b", "/a/../b", "/{x}"} {
		h := &IssuerHandler{Issuer: "test", PathPrefix: p}
		_ = h.setup(e.is)
		if err := h.Validate(); err == nil {
			t.Errorf("path_prefix %q accepted", p)
		}
	}
	h := &IssuerHandler{Issuer: "test", PathPrefix: "/"}
	_ = h.setup(e.is)
	if err := h.Validate(); err != nil || h.prefix != "" || h.cookiePath != "/" {
		t.Fatalf("prefix / : %v %q %q", err, h.prefix, h.cookiePath)
	}
}

// caddyfileErrMatches checks a Caddyfile error: want is "Testfile:LINE MESSAGE",
// "Testfile:LINE" or a bare message.
func caddyfileErrMatches(err error, want string) bool {
	msg := err.Error()
	if !strings.HasPrefix(want, "Testfile:") {
		return strings.Contains(msg, want)
	}
	at, text, _ := strings.Cut(want, " ")
	return strings.Contains(msg, text) && (strings.HasSuffix(msg, ", at "+at) || strings.Contains(msg, ", at "+at+" "))
}
