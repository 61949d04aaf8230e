package jwtauth

import (
	"net/http/httptest"
	"testing"
)

func TestSmoke(t *testing.T) {
	a := provisionApp(t, newTestClock().Now, map[string]*Validator{"test": hsValidator()})
	h := provisionHandler(t, a, &Handler{Validators: []string{"test"}})
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+hs256(t, claims()))
	w, repl, called, err := serve(t, h, r)
	if err != nil || !called {
		t.Fatalf("err=%v called=%v hdr=%v", err, called, w.Header())
	}
	if id, _ := repl.GetString("http.auth.user.id"); id != "alice" {
		t.Fatalf("user id %q", id)
	}
	if iss, _ := repl.GetString("http.auth.jwt.claims.iss"); iss != "iss" {
		t.Fatalf("iss %q", iss)
	}
}
