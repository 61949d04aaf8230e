package sessions

import "testing"

func TestSealSuccessor(t *testing.T) {
	tok, _ := NewToken()
	next, _ := NewToken()
	sealed, err := SealSuccessor(tok, next, "sid1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenSuccessor(tok, sealed, "sid1"); err != nil || got != next {
		t.Fatalf("open = %q, %v; want the successor", got, err)
	}
	other, _ := NewToken()
	if _, err := OpenSuccessor(other, sealed, "sid1"); err == nil {
		t.Fatal("another token opened the successor")
	}
	if _, err := OpenSuccessor(tok, sealed, "sid2"); err == nil {
		t.Fatal("the successor opened under another sid")
	}
	if _, err := OpenSuccessor(tok, sealed[:5], "sid1"); err == nil {
		t.Fatal("a truncated seal opened")
	}
}

func TestValidToken(t *testing.T) {
	tok, _ := NewToken()
	for _, c := range []struct {
		tok  string
		want bool
	}{{tok, true}, {"", false}, {tok[:len(tok)-1], false}, {tok[:len(tok)-1] + "=", false}, {tok + "A", false}} {
		if got := ValidToken(c.tok); got != c.want {
			t.Errorf("ValidToken(%q) = %v, want %v", c.tok, got, c.want)
		}
	}
}
