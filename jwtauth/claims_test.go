package jwtauth

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestJSONObjectEach(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		keys []string // decoded keys in order; nil with err
		vals []string
		err  bool
	}{
		{in: `{}`, keys: []string{}},
		{in: ` { } `, keys: []string{}},
		{in: `{"a":1}`, keys: []string{"a"}, vals: []string{"1"}},
		{in: `{"a" : "x" , "b":[1,{"c":"]}"}],"d":{"e":"}"} ,"f":null}`, keys: []string{"a", "b", "d", "f"}, vals: []string{`"x"`, `[1,{"c":"]}"}]`, `{"e":"}"}`, `null`}},
		{in: `{"q\"k":"v\\","\u0065xp":-1.5e3}`, keys: []string{`q"k`, "exp"}, vals: []string{`"v\\"`, `-1.5e3`}},
		{in: "{\n\t\"a\"\r\n:\ttrue\n}", keys: []string{"a"}, vals: []string{"true"}},
		{in: `[]`, err: true},
		{in: `"s"`, err: true},
		{in: ``, err: true},
	}
	for _, tc := range cases {
		var keys, vals []string
		err := jsonObject(tc.in).each(func(k, v []byte) bool {
			keys = append(keys, decodeKey(k))
			vals = append(vals, string(v))
			return true
		})
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if strings.Join(keys, "|") != strings.Join(tc.keys, "|") || strings.Join(vals, "|") != strings.Join(tc.vals, "|") {
			t.Errorf("%q: keys %q vals %q, want %q %q", tc.in, keys, vals, tc.keys, tc.vals)
		}
	}

	// early stop
	n := 0
	_ = jsonObject(`{"a":1,"b":2,"c":3}`).each(func(k, v []byte) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("each did not stop: %d calls", n)
	}
}

// The walker must agree with encoding/json on every top-level member of a
// valid object.
func TestJSONObjectEachMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	docs := []string{
		`{"iss":"https://x","aud":["a","b"],"exp":1700000000,"n":{"deep":[1,2,{"x":"}"}]},"s":"a\"b\\c","u":"\u00e9\ud83d\ude00","f":1.5e-3,"t":true,"z":null}`,
		`{"":""," ":[],"[":"{","a b":{}}`,
	}
	for _, d := range docs {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(d), &want); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		if err := jsonObject(d).each(func(k, v []byte) bool { got[decodeKey(k)] = string(v); return true }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d members, want %d", len(got), len(want))
		}
		for k, v := range want {
			if got[k] != string(v) {
				t.Errorf("%q: %q, want %q", k, got[k], v)
			}
		}
	}
}

func TestJSONObjectGet(t *testing.T) {
	t.Parallel()
	o := jsonObject(`{"a":"first","b":2,"\u0063":"esc","a":"last","nested":{"b":9}}`)
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{
		// duplicates: the last member wins, as RFC 7519 §4 allows and as
		// encoding/json (hence most upstreams reading forward_payload)
		// behaves
		{"a", `"last"`, true},
		{"b", `2`, true},
		{"c", `"esc"`, true},
		{"nested", `{"b":9}`, true},
		{"A", ``, false},
		{"d", ``, false},
	} {
		got, ok := o.get(tc.name)
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("get(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(o, &m)
	if m["a"] != "last" {
		t.Fatalf("encoding/json sees %v", m["a"])
	}
}

func TestDecodeString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`"abc"`, "abc", true},
		{`""`, "", true},
		{`"a\"b"`, `a"b`, true},
		{`"\u0041\n"`, "A\n", true},
		{`"\ud83d\ude00"`, "😀", true},
		{`1`, "", false},
		{`null`, "", false},
		{`"`, "", false},
		{``, "", false},
		{`["a"]`, "", false},
	} {
		got, ok := decodeString([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("decodeString(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDecodeNumber(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{`0`, 0, true},
		{`1700000000`, 1700000000, true},
		{`999999999999999`, 999999999999999, true},   // 15 digits: fast path
		{`9999999999999999`, 9999999999999999, true}, // 16 digits: ParseFloat
		{`-5`, -5, true},
		{`1.5`, 1.5, true},
		{`1e3`, 1000, true},
		{`1E+3`, 1000, true},
		{`1e999`, 0, false},
		{`"1"`, 0, false},
		{`true`, 0, false},
		{`null`, 0, false},
		{`[1]`, 0, false},
		{``, 0, false},
		{`NaN`, 0, false},
		{`Infinity`, 0, false},
		{`-Infinity`, 0, false},
		{`0x10`, 0, false},
		{`0x1p4`, 0, false},
		{`-0x1p4`, 0, false},
		{`1_000`, 0, false},
		{`-`, 0, false},
	} {
		got, ok := decodeNumber([]byte(tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("decodeNumber(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNumericDate(t *testing.T) {
	t.Parallel()
	if got := numericDate(1.5); got.Unix() != 1 || got.Nanosecond() != 5e8 {
		t.Fatalf("1.5 -> %v", got)
	}
	for _, f := range []float64{math.Inf(1), 1e300, math.NaN()} {
		if got := numericDate(f); got.Unix() != 1e12 {
			t.Errorf("%v -> %v, want clamped to 1e12", f, got.Unix())
		}
	}
	if got := numericDate(math.Inf(-1)); got.Unix() != -1e12 {
		t.Errorf("-Inf -> %v", got.Unix())
	}
}

func TestClaimHas(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw   string
		space bool
		want  []string
		ok    bool
	}{
		{`"a"`, false, []string{"a"}, true},
		{`"a b"`, false, []string{"a"}, false},
		{`"a b"`, true, []string{"b"}, true},
		{`"a  b "`, true, []string{"b"}, true},
		{`"a\tb"`, true, []string{"b"}, true},
		{`"ab"`, true, []string{"a"}, false},
		{`["x","a"]`, false, []string{"a"}, true},
		{`[ "x" , "a" ]`, false, []string{"a"}, true},
		{`["a b"]`, true, []string{"a"}, false},
		{`[1,"a"]`, false, []string{"a"}, true},
		{`[{"a":"a"},["a"]]`, false, []string{"a"}, false},
		{`[]`, false, []string{"a"}, false},
		{`1`, false, []string{"1"}, false},
		{`null`, false, []string{"null"}, false},
		{`{"a":"a"}`, false, []string{"a"}, false},
		{`"\u0061"`, false, []string{"a"}, true},
		{`""`, false, []string{""}, true},
	} {
		if got := claimHas([]byte(tc.raw), tc.space, tc.want); got != tc.ok {
			t.Errorf("claimHas(%s, %v, %q) = %v", tc.raw, tc.space, tc.want, got)
		}
	}
}

func TestClaimString(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`"alice"`:         "alice",
		`"a\u0062"`:       "ab",
		`42`:              "42",
		`true`:            "true",
		`["a","b"]`:       `["a","b"]`,
		`{"k":"v"}`:       `{"k":"v"}`,
		`-1.5e3`:          "-1.5e3",
		`"with\nnl"`:      "with\nnl",
		`"quote\"q"`:      `quote"q`,
		`"sp ace"`:        "sp ace",
		`null`:            "null",
		`"\u00e9t\u00e9"`: "été",
	} {
		if got := claimString([]byte(in)); got != want {
			t.Errorf("claimString(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestIsScalar(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		`"a"`: true, `1`: true, `-1.5`: true,
		`true`: false, `false`: false, `null`: false, `[]`: false, `{}`: false, ``: false,
	} {
		if got := isScalar([]byte(in)); got != want {
			t.Errorf("isScalar(%q) = %v", in, got)
		}
	}
}
