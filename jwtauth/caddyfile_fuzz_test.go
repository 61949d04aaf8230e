package jwtauth

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile feeds arbitrary text to the jwtauth global option
// and jwt_auth directive parsers: they must return an error or a config,
// never panic or hang, and a parsed config must survive a JSON round trip
// (what Caddy does with it next). The seed corpus in
// testdata/fuzz/FuzzUnmarshalCaddyfile holds the golden Caddyfiles' blocks.
//
// The input is tokenized like caddyfile.NewTestDispenser does, but without
// its log.Fatalf on lexer errors (an unterminated quote or heredoc), which
// would end the fuzzer instead of rejecting the input.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"jwtauth {\n\tvalidator api {\n\t\tissuer https://id\n\t\taudience api\n\t\tsecret {env.S}\n\t}\n}",
		"jwt_auth api mobile",
		"jwt_auth {\n\tvalidator a b\n\tpublic\n\tforward_claim sub X-User-Id\n\tforward_payload X-Jwt\n\tstrip_token\n\tallow_cors_preflight\n\trealm r\n}",
		"jwtauth {\n\tvalidator v {\n\t\tjwks_url https://x {\n\t\t\tmax_bytes 10\n\t\t}\n\t\tcookie {\n\t\t\tsame_site lax\n\t\t}\n\t}\n}",
		"jwtauth {\n\tvalidator v {\n\t\tcookie {\n\t\t\t{\n\t\t}\n\t}\n}",
		"jwtauth {\n\tvalidator v {\n\t\tuser_id claim sub {\n\t\t}\n\t}\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Testfile")
		if err != nil {
			return
		}
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err == nil {
			fuzzJSONRoundTrip(t, &a, new(App))
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err == nil {
			if len(h.Validators) == 0 {
				t.Fatalf("jwt_auth parsed without a validator: %q", input)
			}
			fuzzJSONRoundTrip(t, &h, new(Handler))
		}
	})
}

// fuzzJSONRoundTrip checks that v, once marshaled to JSON, unmarshals into fresh to
// the same value.
func fuzzJSONRoundTrip[T any](t *testing.T, v, fresh *T) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if err := json.Unmarshal(raw, fresh); err != nil {
		t.Fatalf("unmarshal %s: %v", raw, err)
	}
	again, err := json.Marshal(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(raw, again) {
		t.Fatalf("JSON round trip differs:\n%s\n%s", raw, again)
	}
}
