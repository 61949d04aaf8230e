package jwtauth

import (
	"net"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"go.uber.org/zap"
)

// The audit log: one structured line per security event, at Info (reuse at
// Warn), in the jwtauth logger with the issuer's name. A line never holds a
// password, a token, a token hash or a secret. The messages are stable, for
// log filters (fail2ban and the like):
//
//	login succeeded          login, user_id, sid, client_ip
//	login failed             login, client_ip, reason (bad_credentials, disabled)
//	login rate limited       login, client_ip, retry_after
//	refresh token reuse detected: session revoked   sid, login   (Warn)
//	session revoked          sid, login, reason (logout, user_changed, admin, bound)
//	sessions ended: user changed                    login, sessions
const (
	auditLoginOK      = "login succeeded"
	auditLoginFailed  = "login failed"
	auditRateLimited  = "login rate limited"
	auditReuse        = "refresh token reuse detected: session revoked"
	auditRevoked      = "session revoked"
	auditUserChanged  = "sessions ended: user changed"
	maxAuditLoginSize = 128
)

// auditLogin bounds a login name as the audit log shows it: a failed
// login's name is whatever the client sent.
func auditLogin(login string) zap.Field {
	if len(login) > maxAuditLoginSize {
		login = login[:maxAuditLoginSize] + "…"
	}
	return zap.String("login", login)
}

// clientIP is the client address Caddy resolved (through trusted_proxies
// only), unreduced, for the audit log.
func clientIP(r *http.Request) zap.Field {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip = r.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
	}
	return zap.String("client_ip", ip)
}

func (is *Issuer) auditLoginOK(r *http.Request, u *issuerUser, sid string) {
	is.audit.Info(auditLoginOK, auditLogin(u.login), zap.String("user_id", u.userID.String()),
		zap.String("sid", sid), clientIP(r))
}

func (is *Issuer) auditLoginFailed(r *http.Request, login, reason string) {
	is.audit.Info(auditLoginFailed, auditLogin(login), clientIP(r), zap.String("reason", reason))
}

func (is *Issuer) auditRateLimited(r *http.Request, login string, wait time.Duration) {
	is.audit.Info(auditRateLimited, auditLogin(login), clientIP(r), zap.Duration("retry_after", wait))
}

// recordRevocations counts and logs sessions that an operation ended. Every
// revocation goes through it: logout, reuse, a changed user, the admin API,
// the per-login bound.
func (is *Issuer) recordRevocations(revs []sessions.Revocation) {
	for _, rev := range revs {
		is.countRevocation(rev.Reason)
		if rev.Reason == sessions.ReasonReuse {
			is.audit.Warn(auditReuse, zap.String("sid", rev.SID), auditLogin(rev.Login))
			continue
		}
		is.audit.Info(auditRevoked, zap.String("sid", rev.SID), auditLogin(rev.Login), zap.String("reason", string(rev.Reason)))
	}
}

// auditUserChanged logs the sessions a users-file change ended for login.
func (is *Issuer) auditUserChanged(login string, n int) {
	is.audit.Info(auditUserChanged, auditLogin(login), zap.Int("sessions", n))
}
