package jwtauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzIssuerRequest feeds arbitrary bodies to the endpoint parser: it never
// panics, accepts only JSON objects, and a parsed request agrees with
// encoding/json about every member it kept.
func FuzzIssuerRequest(f *testing.F) {
	for _, s := range []string{
		`{"login":"a","password":"b"}`,
		`{"jsonrpc":"2.0","method":"call","id":1,"params":{"login":"a","password":"b"}}`,
		`{"jsonrpc":"2.0","params":null}`,
		`{"a":1,"a":2}`,
		`{"jsonrpc":"1.0"}`,
		`[1,2]`,
		``,
		`{"refreshToken":"\u0041"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/api/authenticate", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		rq, e := readAPIRequest(httptest.NewRecorder(), r, false)
		if rq == nil {
			t.Fatal("nil request")
		}
		if e != nil {
			if e.status < 400 || e.status > 499 {
				t.Fatalf("status %d", e.status)
			}
			return
		}
		if strings.TrimSpace(body) != "" && !json.Valid([]byte(body)) {
			t.Fatalf("invalid JSON accepted: %q", body)
		}
		for k, v := range rq.params {
			if !json.Valid(v) {
				t.Fatalf("member %q holds invalid JSON %q", k, v)
			}
		}
		if rq.envelope && rq.params == nil {
			t.Fatal("envelope without params")
		}
	})
}
