package main

import (
	"os"
	"testing"
)

// TestMainIsXcaddys: main.go is what xcaddy v0.4.7 generates for
// `xcaddy build --with github.com/jwtauth/caddy-jwtauth`, byte for byte, so
// that `go build ./xcaddy` builds the same Caddy (time/tzdata included).
func TestMainIsXcaddys(t *testing.T) {
	const want = `package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/jwtauth/caddy-jwtauth"
)

func main() {
	caddycmd.Main()
}
`
	got, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("main.go differs from xcaddy v0.4.7's template:\n%s\nwant:\n%s", got, want)
	}
}
