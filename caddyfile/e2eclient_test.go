package caddyfile_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// send is the one HTTP client of the end-to-end tests: it sends a
// request with c and reads the whole answer. A non-empty body goes as JSON
// unless headers set Content-Type; headers alternate name and value and
// are added in order, verbatim, so a test can repeat one. res is nil when
// the request failed; a failed read returns res with err.
func send(c *http.Client, method, url, body string, headers ...string) (res *http.Response, b string, err error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, "", err
	}
	typed := false
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1])
		typed = typed || strings.EqualFold(headers[i], "Content-Type")
	}
	if body != "" && !typed {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err = c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res, string(raw), err
}

// ---- a client of the issuer's API, cookies explicit ----

// apiClient sends requests without a cookie jar: cookies are explicit.
type apiClient struct {
	t *testing.T
	c *http.Client
}

// apiRes is an answer of the issuer's API with its body.
type apiRes struct {
	*http.Response
	body string
}

// do sends a request; headers alternate name and value.
func (c apiClient) do(method, url, body string, headers ...string) apiRes {
	c.t.Helper()
	res, b, err := send(c.c, method, url, body, headers...)
	if res == nil { // a failed read of the body is not the test's concern
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	return apiRes{res, b}
}

// expect checks the status and decodes a JSON body.
func (r apiRes) expect(t *testing.T, status int) map[string]any {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.body)
	}
	var m map[string]any
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") && r.body != "" {
		if err := json.Unmarshal([]byte(r.body), &m); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
	}
	return m
}

// cookie returns the cookie name the answer set, or nil.
func (r apiRes) cookie(name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ---- a client of the quickstart site ----

// quickstartClient sends requests to the quickstart site; it follows no
// redirect.
type quickstartClient struct {
	t *testing.T
	c *http.Client
}

func newQuickstartClient(t *testing.T) *quickstartClient {
	return &quickstartClient{t: t, c: &http.Client{
		Timeout:       2 * time.Minute, // logins hash a password: slow under -race
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends one request; headers alternate name, value.
func (q *quickstartClient) do(method, path, body string, headers ...string) (*http.Response, string) {
	q.t.Helper()
	res, b, err := send(q.c, method, quickstartBase+path, body, headers...)
	if err != nil {
		q.t.Fatalf("%s %s: %v", method, path, err)
	}
	return res, b
}

// expect is do, failing the test unless the status is want.
func (q *quickstartClient) expect(want int, method, path, body string, headers ...string) (*http.Response, string) {
	q.t.Helper()
	res, b := q.do(method, path, body, headers...)
	if res.StatusCode != want {
		q.t.Fatalf("%s %s: status %d, want %d; WWW-Authenticate %q; body: %s",
			method, path, res.StatusCode, want, res.Header.Get("WWW-Authenticate"), b)
	}
	return res, b
}
