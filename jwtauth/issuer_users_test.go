package jwtauth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestIssuerCredentials: unknown users, wrong passwords and disabled users
// get the same answer; bcrypt passwords over 72 bytes are refused; the fake
// hash has the users' cost.
func TestIssuerCredentials(t *testing.T) {
	long := strings.Repeat("p", maxBcryptPassword)
	e := newIssuerEnv(t, nil)
	writeUsers(t, e.users, append([]plainUser{
		{login: "long", password: long, userID: "9"},
		{login: "off", password: "off-password", userID: "10", disabled: true},
	}, defaultUsers...)...)
	e.load(nil)
	var bodies []string
	for _, c := range [][2]string{{"nobody", "alice-password"}, {"alice", "wrong"}, {"off", "off-password"}, {"long", long + "q"}, {"alice", ""}} {
		res := e.do(issuerReq{path: "/authenticate", body: `{"login":` + jsonQuote(c[0]) + `,"password":` + jsonQuote(c[1]) + `}`, ip: "198.51.100." + c[0][:1]})
		res.expect(t, 401, "invalid_grant")
		bodies = append(bodies, res.Body.String())
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Fatalf("answers differ: %q vs %q", b, bodies[0])
		}
	}
	e.login("long", long) // exactly 72 bytes is fine
	if cost, err := bcrypt.Cost(e.is.usersTab().fake.hash); err != nil || cost != bcrypt.MinCost || !e.is.usersTab().fake.bcrypt {
		t.Fatalf("fake hash cost %d (%v), want the users' %d", cost, err, bcrypt.MinCost)
	}
	if u, _ := e.is.checkPassword("nobody", "x"); u != nil {
		t.Fatal("unknown user accepted")
	}
}

// TestIssuerFakeHashDefault uses caddyauth's fake hash for cost-14 bcrypt
// users, as `caddy hash-password` makes them.
func TestIssuerFakeHashDefault(t *testing.T) {
	u := &issuerUser{hash: []byte("$2a$14$X3ulqf/iGxnf1k6oMZ.RZeJUoqI9PX2PM4rS5lkIKJXduLGXGPrt6"), bcrypt: true}
	fc, err := fakeCredentialFor([]*issuerUser{u})
	if err != nil || string(fc.hash) != string(u.hash) {
		t.Fatalf("fake %q, %v", fc.hash, err)
	}
	u2 := &issuerUser{login: "a", hash: []byte("$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 43))}
	fc, err = fakeCredentialFor([]*issuerUser{u2})
	if err != nil || fc.bcrypt || hashParams(fc.hash) != hashParams(u2.hash) {
		t.Fatalf("argon2id fake %q (%s), %v", fc.hash, hashParams(fc.hash), err)
	}
}
