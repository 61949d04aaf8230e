package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/jwtauth/caddy-jwtauth/caddyfile"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of testdata/*.caddyfiletest from the current output")

var crlf = regexp.MustCompile(`\r?\n`)

// TestCaddyfileAdapt adapts every testdata/*.caddyfiletest (a Caddyfile, a
// line of dashes, then the expected JSON) and compares the result, in the
// style of caddy's and caddy-l4's integration tests. An expected part that
// does not start with '{' is an error substring the adapter must return.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.caddyfiletest files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfileText, expected, ok := strings.Cut(crlf.ReplaceAllString(string(data), "\n"), "----------")
			if !ok {
				t.Fatalf("%s: no ---------- separator", file)
			}
			caddyfileText = strings.TrimSpace(caddyfileText) + "\n"
			expected = strings.TrimSpace(expected)

			if *update && (expected == "" || expected[0] == '{') {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), nil)
				if err != nil {
					t.Fatalf("adapt: %v", err)
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(caddyfileText+"----------\n"+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}

			if len(expected) > 0 && expected[0] == '{' {
				if !caddytest.CompareAdapt(t, file, caddyfileText, "caddyfile", expected) {
					t.Errorf("adapting %s does not give the expected JSON (diff above)", file)
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), nil)
			if err == nil {
				t.Fatalf("expected an error containing %q, got none", expected)
			}
			if !strings.Contains(err.Error(), expected) {
				t.Fatalf("error %q does not contain %q", err, expected)
			}
		})
	}
}

// TestDirectiveOrder checks that jwt_auth runs before basic_auth whatever
// the order in the site block.
func TestDirectiveOrder(t *testing.T) {
	const cf = `{
	jwtauth {
		validator api {
			issuer https://id.example.com
			audience api
			secret {env.JWT_SECRET}
		}
	}
}
:8080 {
	respond "ok"
	basic_auth {
		alice $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
	}
	jwt_auth api
}
`
	order := adaptedHandlers(t, cf)
	want := []string{"jwt_auth", "authentication", "static_response"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("handler order %v, want %v", order, want)
	}
}

// validatorCaddyfile wraps validator options in a complete Caddyfile; the
// options start on line 5.
func validatorCaddyfile(opts string) string {
	return "{\n\tjwtauth {\n\t\tvalidator api {\n\t\t\tissuer https://id.example.com\n" + opts + "\n\t\t}\n\t}\n}\n:8080 {\n\tjwt_auth api\n}\n"
}

// issuerCaddyfile wraps issuer options in a complete Caddyfile; the
// options start on line 5.
func issuerCaddyfile(opts string) string {
	return "{\n\tjwtauth {\n\t\tissuer shop {\n\t\t\tusers_file users.json\n" + opts + "\n\t\t}\n\t}\n}\n:8080 {\n\tjwt_issuer shop\n}\n"
}

// siteCaddyfile puts a jwt_auth directive, which starts on line 11, in a
// site after a valid validator.
func siteCaddyfile(directive string) string {
	return "{\n\tjwtauth {\n\t\tvalidator api {\n\t\t\tissuer https://id.example.com\n\t\t\taudience api\n\t\t\tsecret {env.S}\n\t\t}\n\t}\n}\n:8080 {\n" + directive + "\n}\n"
}

// TestCaddyfileErrors adapts bad Caddyfiles: each must fail with a message
// naming the problem and its file and line.
func TestCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, caddyfile, want string
	}{
		{"unknown validator option", validatorCaddyfile("\t\t\tbogus 1"), `unrecognized validator option "bogus", at Caddyfile:5`},
		{"unknown app option", "{\n\tjwtauth {\n\t\tbogus\n\t}\n}\n", `unrecognized jwtauth option "bogus", at Caddyfile:3`},
		{"app argument", "{\n\tjwtauth foo\n}\n", `jwtauth: unexpected argument "foo"; options go in a block, at Caddyfile:2`},
		{"issuer missing args", validatorCaddyfile("\t\t\taudience"), `audience: expected at least one argument, at Caddyfile:5`},
		{"secret missing arg", validatorCaddyfile("\t\t\tsecret"), `secret: expected one argument, at Caddyfile:5`},
		{"secret too many args", validatorCaddyfile("\t\t\tsecret a b"), `secret: expected one argument, got also "b", at Caddyfile:5`},
		{"public_key_file too many args", validatorCaddyfile("\t\t\tpublic_key_file a b c"), `public_key_file: expected PATH [KID], at Caddyfile:5`},
		{"public_key_file no args", validatorCaddyfile("\t\t\tpublic_key_file"), `public_key_file: expected PATH [KID], at Caddyfile:5`},
		{"bad leeway", validatorCaddyfile("\t\t\tleeway soon"), `leeway: "soon" is not a duration such as 30s, 5m, 1h or 1d, at Caddyfile:5`},
		{"negative leeway", validatorCaddyfile("\t\t\tleeway -5s"), `leeway: -5s must not be negative, at Caddyfile:5`},
		{"bad max_lifetime", validatorCaddyfile("\t\t\tmax_lifetime 1x"), `max_lifetime: "1x" is not a duration such as 30s, 5m, 1h or 1d, at Caddyfile:5`},
		{"bad same_site", validatorCaddyfile("\t\t\tcookie {\n\t\t\t\tsame_site sometimes\n\t\t\t}"), `same_site "sometimes": must be strict, lax or none, at Caddyfile:6`},
		{"bad cookie max_age", validatorCaddyfile("\t\t\tcookie {\n\t\t\t\tmax_age forever\n\t\t\t}"), `max_age: "forever" is not a duration such as 30s, 5m, 1h or 1d, at Caddyfile:6`},
		{"unknown cookie option", validatorCaddyfile("\t\t\tcookie {\n\t\t\t\tdomain example.com\n\t\t\t}"), `unrecognized cookie option "domain", at Caddyfile:6`},
		{"insecure with argument", validatorCaddyfile("\t\t\tcookie {\n\t\t\t\tinsecure yes\n\t\t\t}"), `insecure: unexpected argument "yes", at Caddyfile:6`},
		{"cookie argument", validatorCaddyfile("\t\t\tcookie on"), `cookie: unexpected argument "on"; options go in a block, at Caddyfile:5`},
		{"cookie twice", validatorCaddyfile("\t\t\tcookie\n\t\t\tcookie"), `cookie: only one per validator, at Caddyfile:6`},
		{"user_id two words", validatorCaddyfile("\t\t\tuser_id foo bar"), `user_id: expected 'claim CLAIM' or 'static VALUE', at Caddyfile:5`},
		{"user_id one word", validatorCaddyfile("\t\t\tuser_id claim"), `user_id: expected 'claim CLAIM' or 'static VALUE', at Caddyfile:5`},
		{"partner_id maybe", validatorCaddyfile("\t\t\tpartner_id claim x maybe"), `partner_id: expected 'claim CLAIM [required]', at Caddyfile:5`},
		{"partner_id static", validatorCaddyfile("\t\t\tpartner_id static 7"), `partner_id: expected 'claim CLAIM [required]', at Caddyfile:5`},
		{"require one arg", validatorCaddyfile("\t\t\trequire scope"), `require: expected CLAIM VALUE..., at Caddyfile:5`},
		{"from_header too many", validatorCaddyfile("\t\t\tfrom_header Authorization Bearer x"), `from_header: expected NAME [PREFIX], at Caddyfile:5`},
		{"from_cookie no name", validatorCaddyfile("\t\t\tfrom_cookie"), `from_cookie: expected one argument, at Caddyfile:5`},
		{"from_query two names", validatorCaddyfile("\t\t\tfrom_query a b"), `from_query: expected one argument, got also "b", at Caddyfile:5`},
		{"bad cache_size", validatorCaddyfile("\t\t\tcache_size lots"), `cache_size: "lots" is not a non-negative integer, at Caddyfile:5`},
		{"negative cache_size", validatorCaddyfile("\t\t\tcache_size -1"), `cache_size: "-1" is not a non-negative integer, at Caddyfile:5`},
		{"bad max_bytes", validatorCaddyfile("\t\t\tjwks_url https://id.example.com/jwks {\n\t\t\t\tmax_bytes 0\n\t\t\t}"), `max_bytes: "0" is not a positive integer, at Caddyfile:6`},
		{"max_bytes not a number", validatorCaddyfile("\t\t\tjwks_url https://id.example.com/jwks {\n\t\t\t\tmax_bytes 1MB\n\t\t\t}"), `max_bytes: "1MB" is not a positive integer, at Caddyfile:6`},
		{"bad refresh_interval", validatorCaddyfile("\t\t\tjwks_url https://id.example.com/jwks {\n\t\t\t\trefresh_interval often\n\t\t\t}"), `refresh_interval: "often" is not a duration such as 30s, 5m, 1h or 1d, at Caddyfile:6`},
		{"unknown jwks_url option", validatorCaddyfile("\t\t\tjwks_url https://id.example.com/jwks {\n\t\t\t\tretries 3\n\t\t\t}"), `unrecognized jwks_url option "retries", at Caddyfile:6`},
		{"jwks_url twice", validatorCaddyfile("\t\t\tjwks_url https://a/jwks\n\t\t\tjwks_url https://b/jwks"), `jwks_url: only one per validator, at Caddyfile:6`},
		{"jwks_url no url", validatorCaddyfile("\t\t\tjwks_url"), `jwks_url: expected one argument, at Caddyfile:5`},
		{"duplicate validator", "{\n\tjwtauth {\n\t\tvalidator api {\n\t\t\tissuer a\n\t\t}\n\t\tvalidator api {\n\t\t\tissuer b\n\t\t}\n\t}\n}\n", `validator "api" defined twice, at Caddyfile:6`},
		{"validator without name", "{\n\tjwtauth {\n\t\tvalidator {\n\t\t\tissuer a\n\t\t}\n\t}\n}\n", `validator: a name is required, at Caddyfile:3`},
		{"validator two names", "{\n\tjwtauth {\n\t\tvalidator a b {\n\t\t}\n\t}\n}\n", `validator a: unexpected argument "b", at Caddyfile:3`},
		{"jwt_auth without a name", siteCaddyfile("\tjwt_auth"), `jwt_auth: at least one validator name is required, at Caddyfile:11`},
		{"jwt_auth block without a name", siteCaddyfile("\tjwt_auth {\n\t\tpublic\n\t}"), `jwt_auth: at least one validator name is required, at Caddyfile:13`},
		{"unknown jwt_auth option", siteCaddyfile("\tjwt_auth api {\n\t\tredirect /login\n\t}"), `unrecognized jwt_auth option "redirect", at Caddyfile:12`},
		{"jwt_auth validator no name", siteCaddyfile("\tjwt_auth {\n\t\tvalidator\n\t}"), `validator: expected at least one argument, at Caddyfile:12`},
		{"jwt_auth public with arg", siteCaddyfile("\tjwt_auth api {\n\t\tpublic yes\n\t}"), `public: unexpected argument "yes", at Caddyfile:12`},
		{"forward_claim one arg", siteCaddyfile("\tjwt_auth api {\n\t\tforward_claim sub\n\t}"), `forward_claim: expected CLAIM HEADER, at Caddyfile:12`},
		{"forward_payload no arg", siteCaddyfile("\tjwt_auth api {\n\t\tforward_payload\n\t}"), `forward_payload: expected one argument, at Caddyfile:12`},
		{"strip_token with arg", siteCaddyfile("\tjwt_auth api {\n\t\tstrip_token all\n\t}"), `strip_token: unexpected argument "all", at Caddyfile:12`},
		{"realm two args", siteCaddyfile("\tjwt_auth api {\n\t\trealm a b\n\t}"), `realm: expected one argument, got also "b", at Caddyfile:12`},
		{"store unknown backend", issuerCaddyfile("\t\t\tstore memcached"), `store: unknown backend "memcached"; expected redis (without store, sessions live in store_dir), at Caddyfile:5`},
		{"store redis no address", issuerCaddyfile("\t\t\tstore redis {\n\t\t\t\tdb 1\n\t\t\t}"), `store redis: at least one address is required, at Caddyfile:7`},
		{"store redis key_prefix twice", issuerCaddyfile("\t\t\tstore redis {\n\t\t\t\taddress a:1\n\t\t\t\tkey_prefix a\n\t\t\t\tkey_prefix b\n\t\t\t}"), `store redis: key_prefix given twice, at Caddyfile:8`},
		{"store redis timeout twice", issuerCaddyfile("\t\t\tstore redis {\n\t\t\t\taddress a:1\n\t\t\t\ttimeout 1s\n\t\t\t\ttimeout 2s\n\t\t\t}"), `store redis: timeout given twice, at Caddyfile:8`},
		{"store redis unknown option", issuerCaddyfile("\t\t\tstore redis {\n\t\t\t\taddress a:1\n\t\t\t\tpool_size 10\n\t\t\t}"), `unrecognized store redis option "pool_size", at Caddyfile:7`},
		{"store twice", issuerCaddyfile("\t\t\tstore redis {\n\t\t\t\taddress a:1\n\t\t\t}\n\t\t\tstore redis {\n\t\t\t\taddress b:1\n\t\t\t}"), `issuer: store given twice, at Caddyfile:8`},
		{"max_staleness twice", issuerCaddyfile("\t\t\trevoke_access_tokens {\n\t\t\t\tmax_staleness 1s\n\t\t\t\tmax_staleness 2s\n\t\t\t}"), `revoke_access_tokens: max_staleness given twice, at Caddyfile:7`},
		{"bad max_staleness", issuerCaddyfile("\t\t\trevoke_access_tokens {\n\t\t\t\tmax_staleness later\n\t\t\t}"), `max_staleness: "later" is not a duration such as 30s, 5m, 1h or 1d, at Caddyfile:6`},
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := adapter.Adapt([]byte(tt.caddyfile), nil)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// provisionCaddyfile adapts a Caddyfile and provisions (without starting)
// the resulting config, as `caddy validate` does.
func provisionCaddyfile(t *testing.T, cf string) error {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

// TestLoadErrors checks that Caddy refuses to load an unsafe or broken
// validator and that the error names it.
func TestLoadErrors(t *testing.T) {
	hermeticHome(t)
	const secret = "\t\t\tsecret 0123456789abcdef0123456789abcdef\n"
	validator := func(opts string) string {
		return "{\n\tjwtauth {\n\t\tvalidator api {\n" + opts + "\t\t}\n\t}\n}\n:9109 {\n\tjwt_auth api\n}\n"
	}
	tests := []struct {
		name, caddyfile, want string
	}{
		{"short secret", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\tsecret too-short\n"),
			`validator "api": secret: secret is 9 bytes, shorter than the 32 that HS256 requires`},
		{"short secret for HS512", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\talgorithms HS512\n" + secret),
			`validator "api": secret: secret is 32 bytes, shorter than the 64 that HS512 requires`},
		{"unknown algorithm", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\talgorithms HS999\n" + secret),
			`validator "api": unknown algorithm "HS999"`},
		{"alg none", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\talgorithms none\n" + secret),
			`validator "api": algorithm "none" is never accepted`},
		{"alg NoNe", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\talgorithms HS256 NoNe\n" + secret),
			`validator "api": algorithm "none" is never accepted`},
		{"key and algorithm mismatch", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\talgorithms RS256\n" + secret),
			`validator "api": secret: none of the configured algorithms (RS256) verifies a`},
		{"missing PEM file", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\tpublic_key_file /nonexistent/jwtauth/key.pem\n"),
			`validator "api": public_key_file: open /nonexistent/jwtauth/key.pem: no such file or directory`},
		{"missing JWKS file", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\tjwks_file /nonexistent/jwtauth/jwks.json\n"),
			`validator "api": jwks_file: open /nonexistent/jwtauth/jwks.json: no such file or directory`},
		{"empty issuer", validator("\t\t\tissuer \"\"\n\t\t\taudience a\n" + secret),
			`validator "api": issuer must not be empty`},
		{"no issuer", validator("\t\t\taudience a\n" + secret),
			`validator "api": issuer is required`},
		{"empty audience", validator("\t\t\tissuer i\n\t\t\taudience \"\"\n" + secret),
			`validator "api": audience must not be empty`},
		{"no key", validator("\t\t\tissuer i\n\t\t\taudience a\n"),
			`validator "api": no key`},
		{"unset secret placeholder", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\tsecret {env.JWTAUTH_TEST_UNSET_SECRET}\n"),
			`validator "api": secret: `},
		{"__Host- cookie with insecure", validator("\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t\tcookie {\n\t\t\t\tinsecure\n\t\t\t}\n"),
			`validator "api": cookie: a __Host- cookie must be Secure with path /`},
		{"__Host- cookie with a path", validator("\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t\tcookie {\n\t\t\t\tpath /app\n\t\t\t}\n"),
			`validator "api": cookie: a __Host- cookie must be Secure with path /`},
		{"from_cookie named like the identity cookie", validator("\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t\tfrom_cookie __Host-jwtauth\n\t\t\tcookie\n"),
			`validator "api": from_cookie "__Host-jwtauth" is also the identity cookie's name`},
		{"two validators with one cookie name", "{\n\tjwtauth {\n\t\tvalidator api {\n\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t\tcookie\n\t\t}\n\t\tvalidator web {\n\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t\tcookie\n\t\t}\n\t}\n}\n:9109 {\n\tjwt_auth api web\n}\n",
			`validator "web": cookie name "__Host-jwtauth" is already used by validator "api"`},
		{"same_site none with insecure", validator("\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t\tcookie {\n\t\t\t\tname sid\n\t\t\t\tsame_site none\n\t\t\t\tinsecure\n\t\t\t}\n"),
			`validator "api": cookie: same_site none requires Secure`},
		{"issuer_keys without issuer", validator("\t\t\tissuer_keys nobody\n"),
			`validator "api": issuer_keys: no issuer named "nobody" in the jwtauth app`},
		{"jwks_url not https", validator("\t\t\tissuer i\n\t\t\taudience a\n\t\t\tjwks_url ftp://example.com/jwks\n"),
			`validator "api": jwks_url "ftp://example.com/jwks": must be an absolute http(s) URL`},
		{"short cookie_secret", "{\n\tjwtauth {\n\t\tcookie_secret short\n\t\tvalidator api {\n\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t\tcookie\n\t\t}\n\t}\n}\n:9109 {\n\tjwt_auth api\n}\n",
			`cookie key: cookie_secret shorter than 32 bytes`},
		{"unknown validator in jwt_auth", "{\n\tjwtauth {\n\t\tvalidator api {\n\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t}\n\t}\n}\n:9109 {\n\tjwt_auth api nope\n}\n",
			`jwt_auth: no validator named "nope" in the jwtauth app`},
		{"jwt_auth without the app", ":9109 {\n\tjwt_auth api\n}\n",
			`jwt_auth: the jwtauth app is not configured: define validators in the jwtauth global option`},
		{"bad forward_claim header", "{\n\tjwtauth {\n\t\tvalidator api {\n\t\t\tissuer i\n\t\t\taudience a\n" + secret + "\t\t}\n\t}\n}\n:9109 {\n\tjwt_auth api {\n\t\tforward_claim sub \"X User\"\n\t}\n}\n",
			`jwt_auth: forward_claim: "X User" is not a valid header name`},
	}
	users := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(users, []byte(`{"users":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	issuer := func(opts string) string {
		return "{\n\tjwtauth {\n\t\tissuer shop {\n\t\t\tusers_file " + users + "\n" + opts + "\t\t}\n\t}\n}\n:9109 {\n\tjwt_issuer shop\n}\n"
	}
	tests = append(tests,
		struct{ name, caddyfile, want string }{"store redis without key_file", issuer("\t\t\tstore redis {\n\t\t\t\taddress 127.0.0.1:6379\n\t\t\t}\n"),
			`issuer "shop": store redis requires key_file`},
		struct{ name, caddyfile, want string }{"store redis unset password", issuer("\t\t\tkey_file /nonexistent/key.pem\n\t\t\tstore redis {\n\t\t\t\taddress 127.0.0.1:6379\n\t\t\t\tpassword {env.JWTAUTH_TEST_UNSET_REDIS}\n\t\t\t}\n"),
			`issuer "shop": store redis: `},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := provisionCaddyfile(t, tt.caddyfile)
			if err == nil {
				t.Fatalf("loaded; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}

	// and a valid config loads
	if err := provisionCaddyfile(t, validator("\t\t\tissuer i\n\t\t\taudience a\n"+secret+"\t\t\tcookie\n")); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// TestGlobalOptionTwice: a second jwtauth block adds to the first (as
// Caddy's servers and log options do) instead of silently replacing it,
// and a validator defined in both is an error.
func TestGlobalOptionTwice(t *testing.T) {
	const twice = "{\n\tjwtauth {\n\t\tvalidator a {\n\t\t\tissuer i\n\t\t}\n\t}\n\tjwtauth {\n\t\tvalidator b {\n\t\t\tissuer i\n\t\t}\n\t}\n}\n:8080 {\n\tjwt_auth a b\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(twice), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			JWTAuth struct {
				Validators map[string]json.RawMessage `json:"validators"`
			} `json:"jwtauth"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Apps.JWTAuth.Validators["a"]; !ok || len(cfg.Apps.JWTAuth.Validators) != 2 {
		t.Fatalf("validators after two jwtauth blocks: %v, want a and b", sortedNames(cfg.Apps.JWTAuth.Validators))
	}

	dup := strings.Replace(twice, "validator b", "validator a", 1)
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(dup), nil); err == nil || !strings.Contains(err.Error(), `validator "a" defined twice, at Caddyfile:8`) {
		t.Fatalf("validator in both blocks: %v", err)
	}
}

func sortedNames(m map[string]json.RawMessage) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
