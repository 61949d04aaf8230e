package jwtauth

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fakeBcrypt and fakeArgon2id are well-formed hashes of nothing, for the
// cost model, which reads only their parameters.
func fakeBcrypt(cost int) []byte {
	return []byte(fmt.Sprintf("$2a$%02d$%s", cost, strings.Repeat("a", 53)))
}

func fakeArgon2id(m, t int) []byte {
	return []byte("$argon2id$v=19$m=" + strconv.Itoa(m) + ",t=" + strconv.Itoa(t) + ",p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43))
}

// TestSlowestHash picks the slowest hash of a file, whatever is most common.
func TestSlowestHash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hashes [][]byte
		want   int
	}{
		{"none", nil, -1},
		{"bcrypt by cost", [][]byte{fakeBcrypt(4), fakeBcrypt(6), fakeBcrypt(4)}, 1},
		{"argon2id by memory x passes", [][]byte{fakeArgon2id(4096, 1), fakeArgon2id(1024, 8), fakeArgon2id(2048, 1)}, 1},
		{"a slow bcrypt minority", [][]byte{fakeArgon2id(1024, 1), fakeArgon2id(1024, 1), fakeBcrypt(10), fakeArgon2id(1024, 1)}, 2},
		{"a slow argon2id minority", [][]byte{fakeBcrypt(4), fakeBcrypt(4), fakeArgon2id(65536, 4)}, 2},
		{"caddy's default bcrypt over its default argon2id", [][]byte{fakeArgon2id(47104, 1), fakeBcrypt(14)}, 1},
		{"not a hash", [][]byte{[]byte("plain"), fakeBcrypt(5)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := slowestHash(tc.hashes); got != tc.want {
				t.Fatalf("slowestHash = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestUnknownLoginCostsTheSlowestHash: over a users file where most users
// have a cheap argon2id hash and one a slower bcrypt hash, an unknown login
// takes as long as a known bcrypt user with a wrong password (within 25%,
// comparing the median ratio of back-to-back pairs, so that the load of a
// busy machine weighs on both sides alike).
func TestUnknownLoginCostsTheSlowestHash(t *testing.T) {
	if testing.Short() {
		t.Skip("times password checks")
	}
	e := newIssuerEnv(t, func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 1000} })
	cheap, err := hashArgon2id([]byte("argon-password"), 256, 1, 1, 32) // well under 1 ms
	if err != nil {
		t.Fatal(err)
	}
	slow, err := bcrypt.GenerateFromPassword([]byte("bcrypt-password"), 6) // about 5 ms
	if err != nil {
		t.Fatal(err)
	}
	saveUsers(t, e.users,
		User{Login: "a1", PasswordHash: cheap, UserID: "1"},
		User{Login: "a2", PasswordHash: cheap, UserID: "2"},
		User{Login: "b", PasswordHash: string(slow), UserID: "3"},
		User{Login: "a3", PasswordHash: cheap, UserID: "4"},
	)
	e.load(func(is *Issuer) { is.LoginLimit = &LoginLimit{Max: 1000} })

	timeLogin := func(login string, i int) time.Duration {
		start := time.Now()
		e.do(issuerReq{path: "/authenticate", body: `{"login":"` + login + `","password":"wrong"}`, ip: "198.51.100." + strconv.Itoa(i%250)}).expect(t, 401, "invalid_grant")
		return time.Since(start)
	}
	const pairs = 9
	var ratio float64
	for attempt := range 3 { // a burst of load may skew one series
		ratios := make([]float64, pairs)
		for i := range pairs {
			var unknown, known time.Duration
			if i%2 == 0 {
				unknown, known = timeLogin("nobody", i), timeLogin("b", i)
			} else {
				known, unknown = timeLogin("b", i), timeLogin("nobody", i)
			}
			ratios[i] = float64(unknown) / float64(known)
		}
		slices.Sort(ratios)
		ratio = ratios[pairs/2]
		if ratio >= 0.8 && ratio <= 1.25 {
			t.Logf("median unknown/known-wrong ratio %.2f", ratio)
			return
		}
		t.Logf("attempt %d: median unknown/known-wrong ratio %.2f (%v)", attempt, ratio, ratios)
	}
	t.Fatalf("an unknown login takes %.2f times as long as a known bcrypt user's wrong password, want within 25%%", ratio)
}

// TestUserAddHashesLikeTheFile: `user add` (and `passwd`) default to the
// algorithm and parameters of the slowest hash in the file.
func TestUserAddHashesLikeTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	cheap, err := hashArgon2id([]byte("x"), 1024, 2, 1, 24)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := bcrypt.GenerateFromPassword([]byte("y"), 5)
	if err != nil {
		t.Fatal(err)
	}
	saveUsers(t, path, User{Login: "a", PasswordHash: cheap, UserID: "1"}, User{Login: "b", PasswordHash: cheap, UserID: "2"})
	hashOf := func(login string) string {
		t.Helper()
		uf, err := LoadUsersFile(path)
		if err != nil {
			t.Fatal(err)
		}
		u := uf.Find(login)
		if u == nil {
			t.Fatalf("no user %q", login)
		}
		if !verifies(t, u, login+"-password") {
			t.Fatalf("%s's hash does not verify its password", login)
		}
		return u.PasswordHash
	}
	add := func(login string, args ...string) {
		t.Helper()
		if err := runCmd(t, cmdUserAdd, login+"-password\n", append(append([]string{"user", "add", "--file", path}, args...), login)...); err != nil {
			t.Fatalf("add %s: %v", login, err)
		}
	}
	add("c")
	if h := hashOf("c"); hashParams([]byte(h)) != hashParams([]byte(cheap)) || h[len(h)-32:] == cheap[len(cheap)-32:] {
		t.Fatalf("c's hash %q, want the file's argon2id parameters (%s) with a fresh salt", h, hashParams([]byte(cheap)))
	}
	uf2, _ := LoadUsersFile(path)
	uf2.Users = append(uf2.Users, User{Login: "d", PasswordHash: string(slow), UserID: "9"})
	if err := uf2.Save(path); err != nil {
		t.Fatal(err)
	}
	add("e")
	if h := hashOf("e"); hashParams([]byte(h)) != "bcrypt$5" {
		t.Fatalf("e's hash %q, want the file's slowest, bcrypt cost 5", h)
	}
	add("f", "--algorithm", "argon2id")
	if h := hashOf("f"); hashParams([]byte(h)) != hashParams([]byte(cheap)) {
		t.Fatalf("f's hash %q, want the file's argon2id parameters", h)
	}
	if err := runCmd(t, cmdUserPasswd, "a-password\n", "user", "passwd", "--file", path, "a"); err != nil {
		t.Fatal(err)
	}
	if h := hashOf("a"); hashParams([]byte(h)) != "bcrypt$5" {
		t.Fatalf("a's new hash %q, want bcrypt cost 5", h)
	}
}

// TestSlowerMeasured: when the estimate is a close call, the comparison
// that takes longer wins; here with margins of about 20x either way, so
// that a busy machine cannot flip the verdict.
func TestSlowerMeasured(t *testing.T) {
	slowArgon, err := hashArgon2id([]byte("x"), 16*1024, 2, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	fastArgon, err := hashArgon2id([]byte("x"), 64, 1, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	b4, _ := bcrypt.GenerateFromPassword([]byte("x"), 4)
	b8, _ := bcrypt.GenerateFromPassword([]byte("x"), 8)
	if !slowerMeasured([]byte(slowArgon), b4) {
		t.Error("argon2id m=16MiB,t=2 measured faster than bcrypt 4")
	}
	if slowerMeasured([]byte(fastArgon), b8) {
		t.Error("argon2id m=64KiB,t=1 measured slower than bcrypt 8")
	}
	// the verdict is kept
	if _, ok := measured.Load(hashParams([]byte(fastArgon)) + " " + hashParams(b8)); !ok {
		t.Error("the verdict was not cached")
	}
}
