package jwtauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the sessions of the running jwtauth app's issuers on
// Caddy's admin endpoint, as admin.api.pki serves the PKI app, under the
// admin endpoint's own access control:
//
//	GET    /jwtauth/issuers                          the issuers' names
//	GET    /jwtauth/issuers/NAME/sessions[?login=L]  live sessions
//	DELETE /jwtauth/issuers/NAME/sessions/SID        revoke one session
//	DELETE /jwtauth/issuers/NAME/sessions?login=L    revoke a user's sessions
//
// A session is shown with its sid, login, user_id, creation, last use,
// expiry and generation (rotations); never a token or a hash. Revocations
// behave as /revoke/token does (with revoke_access_tokens, the session's
// access tokens are refused at once) and are logged and counted with
// reason admin.
type adminAPI struct {
	// app finds the running jwtauth app; tests set it.
	app func() (*App, error)
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.jwtauth",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision looks the app up at each request, in the running config: the
// admin endpoint is set up before the config's apps, and a config that
// fails to load must not be provisioned from here.
func (a *adminAPI) Provision(caddy.Context) error {
	if a.app == nil {
		a.app = runningApp
	}
	return nil
}

// runningApp returns the jwtauth app of the running config.
func runningApp() (*App, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("jwtauth")
	if err != nil {
		return nil, err
	}
	a, ok := app.(*App)
	if !ok {
		return nil, errors.New("the jwtauth app has an unexpected type")
	}
	return a, nil
}

// Routes returns the admin routes of the jwtauth app.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/jwtauth/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminSession is a session as the admin API shows it.
type adminSession struct {
	SID        string    `json:"sid"`
	Login      string    `json:"login"`
	UserID     any       `json:"user_id"`
	Created    time.Time `json:"created"`
	LastUsed   time.Time `json:"last_used"`
	Expires    time.Time `json:"expires"`
	Generation uint64    `json:"generation"`
}

type adminSessions struct {
	Issuer   string         `json:"issuer"`
	Sessions []adminSession `json:"sessions"`
}

type adminRevoked struct {
	Issuer  string `json:"issuer"`
	Revoked int    `json:"revoked"`
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/jwtauth/"), "/")
	if len(parts) == 0 || parts[0] != "issuers" {
		return apiError(http.StatusNotFound, "resource not found: %s", r.URL.Path)
	}
	app, err := a.app()
	if err != nil {
		return apiError(http.StatusNotFound, "no jwtauth app is running: %v", err)
	}
	switch {
	case len(parts) == 1 || (len(parts) == 2 && parts[1] == ""):
		if r.Method != http.MethodGet {
			return methodError(r, "GET")
		}
		return writeAPIJSON(w, struct {
			Issuers []string `json:"issuers"`
		}{slices.Sorted(maps.Keys(app.Issuers))})
	case len(parts) < 3 || parts[2] != "sessions" || len(parts) > 4:
		return apiError(http.StatusNotFound, "resource not found: %s", r.URL.Path)
	}
	name := parts[1]
	is, ok := app.Issuers[name]
	if !ok || is == nil {
		return apiError(http.StatusNotFound, "no issuer named %q", name)
	}
	if len(parts) == 4 && parts[3] != "" {
		if r.Method != http.MethodDelete {
			return methodError(r, "DELETE")
		}
		return a.revokeSID(w, r, is, parts[3])
	}
	switch r.Method {
	case http.MethodGet:
		return a.list(w, r, is)
	case http.MethodDelete:
		return a.revokeLogin(w, r, is)
	}
	return methodError(r, "GET, DELETE")
}

func methodError(r *http.Request, allow string) error {
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use %s", r.Method, allow)}
}

func (a *adminAPI) list(w http.ResponseWriter, r *http.Request, is *Issuer) error {
	list, err := is.listSessions(r.Context(), r.URL.Query().Get("login"))
	if err != nil {
		is.countStoreError("admin")
		return storeAPIError(err)
	}
	p := sessions.Policy{RefreshTTL: time.Duration(is.RefreshTTL), IdleTimeout: time.Duration(is.IdleTimeout)}
	out := adminSessions{Issuer: is.name, Sessions: make([]adminSession, 0, len(list))}
	for _, s := range list {
		out.Sessions = append(out.Sessions, adminSession{
			SID: s.SID, Login: s.Login, UserID: jsonUserID(s.UserID),
			Created: s.Created.UTC(), LastUsed: s.LastUsed.UTC(), Expires: p.Expires(s).UTC(),
			Generation: s.Gen,
		})
	}
	return writeAPIJSON(w, out)
}

func (a *adminAPI) revokeSID(w http.ResponseWriter, r *http.Request, is *Issuer, sid string) error {
	found, err := is.revokeSID(r.Context(), sid, sessions.ReasonAdmin)
	if err != nil {
		is.countStoreError("admin")
		return storeAPIError(err)
	}
	if !found {
		return apiError(http.StatusNotFound, "issuer %q has no live session %q", is.name, sid)
	}
	is.audit.Info("admin revocation", zap.String("sid", sid), zap.Int("sessions", 1), zap.String("remote_ip", remoteIP(r)))
	return writeAPIJSON(w, adminRevoked{Issuer: is.name, Revoked: 1})
}

func (a *adminAPI) revokeLogin(w http.ResponseWriter, r *http.Request, is *Issuer) error {
	login := r.URL.Query().Get("login")
	if login == "" {
		return apiError(http.StatusBadRequest, "DELETE .../sessions needs ?login=LOGIN (or /sessions/SID)")
	}
	n, err := is.revokeLogin(r.Context(), login, sessions.ReasonAdmin)
	if err != nil {
		is.countStoreError("admin")
		return storeAPIError(err)
	}
	is.audit.Info("admin revocation", auditLogin(login), zap.Int("sessions", n), zap.String("remote_ip", remoteIP(r)))
	return writeAPIJSON(w, adminRevoked{Issuer: is.name, Revoked: n})
}

// storeAPIError is a failing store: 503, as on the issuer's endpoints.
func storeAPIError(err error) error {
	return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("session store: %w", err)}
}

func remoteIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func writeAPIJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(v)
}

// jsonUserID renders a user_id as the users file holds it: a number when
// it is one, a string otherwise.
func jsonUserID(s string) any {
	if s != "" && json.Valid([]byte(s)) && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
		return json.Number(s)
	}
	return s
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
