package jwtauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The per-request Debug lines: written when the logger takes Debug, with
// the reason and never the token, also for a refusal answered from the
// negative cache; absent at Info.
func TestHandlerDebugLog(t *testing.T) {
	a := provisionApp(t, newTestClock().Now, map[string]*Validator{"api": hsValidator()})
	good := hs256(t, claims())
	forged := sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-01"), claims(), nil)

	for _, level := range []zapcore.Level{zapcore.DebugLevel, zapcore.InfoLevel} {
		t.Run(level.String(), func(t *testing.T) {
			core, logs := observer.New(level)
			h := &Handler{Validators: []string{"api"}}
			if err := h.setup(a, zap.New(core)); err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{good, forged, forged} { // the second forged one is a remembered refusal
				r := httptest.NewRequest(http.MethodGet, "/p?q=1", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				serve(t, h, r, nil)
			}
			entries := logs.TakeAll()
			if level != zapcore.DebugLevel {
				if len(entries) != 0 {
					t.Fatalf("%d entries at %v, want none", len(entries), level)
				}
				return
			}
			var got []string
			for _, e := range entries {
				f := e.ContextMap()
				for _, tok := range []string{good, forged} {
					if strings.Contains(fmt.Sprint(f), tok) || strings.Contains(e.Message, tok) {
						t.Fatalf("entry %q holds a token: %v", e.Message, f)
					}
				}
				got = append(got, fmt.Sprintf("%s %v %v", e.Message, f["user_id"], f["reason"]))
			}
			want := []string{"authenticated alice <nil>", "request refused <nil> invalid", "request refused <nil> invalid"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("entries %q, want %q", got, want)
			}
		})
	}
}

// A refusal hands Caddy a HandlerError with its status, the same one for a
// repeated static refusal, and the challenge is unchanged by the reuse.
func TestHandlerRefusalError(t *testing.T) {
	a := provisionApp(t, newTestClock().Now, map[string]*Validator{"api": hsValidator()})
	h := provisionHandler(t, a, &Handler{Validators: []string{"api"}})
	forged := sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-01"), claims(), nil)
	var first error
	for i := range 2 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+forged)
		res := serve(t, h, r, nil)
		w, repl, called, err := res.w, res.repl, res.called, res.err
		var he caddyhttp.HandlerError
		if called || !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || !errors.Is(err, ErrTokenSignature) {
			t.Fatalf("round %d: called %v, err %#v", i, called, err)
		}
		if got, want := w.Header().Get("WWW-Authenticate"), `Bearer realm="restricted", error="invalid_token", error_description="signature invalid"`; got != want {
			t.Fatalf("round %d: challenge %q, want %q", i, got, want)
		}
		if reason, _ := repl.GetString("http.auth.jwt.error"); reason != reasonInvalid {
			t.Fatalf("round %d: reason %q", i, reason)
		}
		if i == 0 {
			first = err
		} else if err != first {
			t.Fatalf("a repeated static refusal returned a new error value")
		}
	}
}
