package jwtauth

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalHandler(t *testing.T) {
	tests := []struct {
		input string
		want  Handler
	}{
		{`jwt_auth api`, Handler{Validators: []string{"api"}}},
		{`jwt_auth api mobile`, Handler{Validators: []string{"api", "mobile"}}},
		{"jwt_auth {\n\tvalidator api mobile\n\tvalidator web\n}", Handler{Validators: []string{"api", "mobile", "web"}}},
		{"jwt_auth api {\n\tpublic\n\tforward_claim sub X-User-Id\n\tforward_claim email X-Email\n\tforward_payload X-Jwt\n\tstrip_token\n\tallow_cors_preflight\n\trealm \"my realm\"\n}", Handler{
			Validators:         []string{"api"},
			Public:             true,
			ForwardClaims:      []ForwardClaim{{Claim: "sub", Header: "X-User-Id"}, {Claim: "email", Header: "X-Email"}},
			ForwardPayload:     "X-Jwt",
			StripToken:         true,
			AllowCORSPreflight: true,
			Realm:              "my realm",
		}},
	}
	for _, tt := range tests {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
			t.Errorf("%q: %v", tt.input, err)
			continue
		}
		if !reflect.DeepEqual(h, tt.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tt.input, h, tt.want)
		}
	}
}

func TestUnmarshalApp(t *testing.T) {
	input := `jwtauth {
	cookie_secret {env.COOKIE}
	validator api {
		issuer https://a https://b
		audience api
		algorithms ES256
		public_key_file /k.pem kid1
		public_key_file /k2.pem
		jwks_url https://a/jwks {
			refresh_interval 2h
			unknown_kid_interval 1m
			unknown_kid_wait 500ms
			timeout 3s
			max_stale 2d
			max_bytes 1024
		}
		leeway 0
		max_lifetime 1h
		typ at+jwt
		user_id claim email
		partner_id claim org required
		require roles admin ops
		from_header X-Token
		from_header Authorization Bearer
		from_cookie tok
		from_query tok
		cookie {
			name sid
			max_age 30m
			same_site None
			path /
		}
		cache_size 7
	}
	validator web {
		issuer https://w
		audience w
		secret s
		user_id static svc
	}
}`
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	zero, seven := caddy.Duration(0), 7
	want := App{
		CookieSecret: "{env.COOKIE}",
		Validators: map[string]*Validator{
			"api": {
				Issuers:        []string{"https://a", "https://b"},
				Audiences:      []string{"api"},
				Algorithms:     []string{"ES256"},
				PublicKeyFiles: []PublicKeyFile{{Path: "/k.pem", KID: "kid1"}, {Path: "/k2.pem"}},
				JWKSURL: &RemoteJWKS{
					URL: "https://a/jwks", RefreshInterval: caddy.Duration(2 * time.Hour), UnknownKIDInterval: caddy.Duration(time.Minute),
					UnknownKIDWait: caddy.Duration(500 * time.Millisecond), Timeout: caddy.Duration(3 * time.Second), MaxStale: caddy.Duration(48 * time.Hour), MaxBytes: 1024,
				},
				Leeway:      &zero,
				MaxLifetime: caddy.Duration(time.Hour),
				Types:       []string{"at+jwt"},
				UserID:      &UserIDSource{Claim: "email"},
				PartnerID:   &PartnerIDSource{Claim: "org", Required: true},
				Require:     []ClaimRequirement{{Claim: "roles", Values: []string{"admin", "ops"}}},
				Sources: []TokenSource{
					{From: "header", Name: "X-Token"},
					{From: "header", Name: "Authorization", Prefix: "Bearer"},
					{From: "cookie", Name: "tok"},
					{From: "query", Name: "tok"},
				},
				Cookie:    &CookieConfig{Name: "sid", MaxAge: caddy.Duration(30 * time.Minute), SameSite: "None", Path: "/"},
				CacheSize: &seven,
			},
			"web": {
				Issuers:   []string{"https://w"},
				Audiences: []string{"w"},
				Secret:    "s",
				UserID:    &UserIDSource{Static: "svc"},
			},
		},
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got  %#v\nwant %#v", a, want)
	}
	if a.Validators["api"].Cookie.sameSite != 0 {
		t.Fatal("parsing provisioned the cookie")
	}
}

// TestUnmarshalErrors checks parse errors at the dispenser level: each
// names the option and the line (NewTestDispenser calls the file Testfile).
func TestUnmarshalErrors(t *testing.T) {
	app := func(lines ...string) string {
		return "jwtauth {\n\tvalidator v {\n\t\t" + strings.Join(lines, "\n\t\t") + "\n\t}\n}"
	}
	tests := []struct {
		handler bool
		input   string
		want    string
	}{
		{false, app("issuer a", "nonsense"), `unrecognized validator option "nonsense", at Testfile:4`},
		{false, app("secret"), `secret: expected one argument, at Testfile:3`},
		{false, app("secret a b"), `secret: expected one argument, got also "b", at Testfile:3`},
		{false, app("leeway 3 days"), `leeway: expected one argument, got also "days", at Testfile:3`},
		{false, app("leeway 3days"), `leeway: "3days" is not a duration such as 30s, 5m, 1h or 1d, at Testfile:3`},
		{false, app("cookie {", "\tsame_site always", "}"), `same_site "always": must be strict, lax or none, at Testfile:4`},
		{false, app("user_id foo bar"), `user_id: expected 'claim CLAIM' or 'static VALUE', at Testfile:3`},
		{false, app("user_id static a b"), `user_id: expected 'claim CLAIM' or 'static VALUE', at Testfile:3`},
		{false, app("partner_id claim x maybe"), `partner_id: expected 'claim CLAIM [required]', at Testfile:3`},
		{false, app("partner_id claim x required extra"), `partner_id: expected 'claim CLAIM [required]', at Testfile:3`},
		{false, app("cache_size 1.5"), `cache_size: "1.5" is not a non-negative integer, at Testfile:3`},
		{false, app("jwks_url https://x {", "\tmax_bytes -1", "}"), `max_bytes: "-1" is not a positive integer, at Testfile:4`},
		{false, "jwtauth {\n\tvalidator a {\n\t}\n\tvalidator a {\n\t}\n}", `validator "a" defined twice, at Testfile:4`},
		{false, "jwtauth {\n\tcookie_secret\n}", `cookie_secret: expected one argument, at Testfile:2`},
		{false, "jwtauth {\n\tcookie_secret a\n\tcookie_secret b\n}", `cookie_secret defined twice, at Testfile:3`},
		{false, app("secret a", "leeway 1s", "secret b"), `validator: secret given twice, at Testfile:5`},
		{false, app("leeway 1s", "leeway 2s"), `validator: leeway given twice, at Testfile:4`},
		{false, app("user_id claim a", "user_id static b"), `validator: user_id given twice, at Testfile:4`},
		{false, app("cache_size 1", "cache_size 2"), `validator: cache_size given twice, at Testfile:4`},
		{false, app("jwks_url https://x {", "\ttimeout 1s", "\ttimeout 2s", "}"), `jwks_url: timeout given twice, at Testfile:5`},
		{false, app("cookie {", "\tname a", "\tname b", "}"), `cookie: name given twice, at Testfile:5`},
		{false, app("issuer a", "issuer b", "audience x", "audience y", "from_cookie c", "from_cookie d", "require r 1", "require r 2", "nonsense"), `unrecognized validator option "nonsense", at Testfile:11`},
		{true, "jwt_auth", `jwt_auth: at least one validator name is required, at Testfile:1`},
		{true, "jwt_auth api {\n\trealm a\n\trealm b\n}", `jwt_auth: realm given twice, at Testfile:3`},
		{true, "jwt_auth api {\n\tpublic\n\tstrip_token\n\tpublic\n}", `jwt_auth: public given twice, at Testfile:4`},
		{true, "jwt_auth api {\n\tvalidator b\n\tvalidator c\n\tforward_claim a A\n\tforward_claim b B\n\tnonsense\n}", `unrecognized jwt_auth option "nonsense", at Testfile:6`},
		{true, "jwt_auth {\n\tpublic\n}", `jwt_auth: at least one validator name is required, at Testfile:3`},
		{true, "jwt_auth api {\n\tlogin /x\n}", `unrecognized jwt_auth option "login", at Testfile:2`},
		{true, "jwt_auth api {\n\tforward_claim a b c\n}", `forward_claim: expected CLAIM HEADER, at Testfile:2`},
		{true, "jwt_auth api {\n\tallow_cors_preflight now\n}", `allow_cors_preflight: unexpected argument "now", at Testfile:2`},
	}
	for _, tt := range tests {
		var err error
		if tt.handler {
			err = new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		} else {
			err = new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got %v\nwant %q", tt.input, err, tt.want)
		}
	}
}
