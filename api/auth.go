package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// ctxPrincipal is the context key of the request's partners.Principal.
const ctxPrincipal = "coalition.principal"

// maxSecretLength bounds a bearer secret: longer ones are refused without a database look-up.
const maxSecretLength = 256

// errUnauthorized is the 401 of a request without a usable key.
func errUnauthorized(format string, args ...any) *ledger.Error {
	return ledger.Errorf(CodeUnauthorized, format, args...)
}

// errForbidden is the 403 of a key whose role or partner may not do what it asks.
func errForbidden(format string, args ...any) *ledger.Error {
	return ledger.Errorf(ledger.CodeForbidden, format, args...)
}

// authenticate verifies the bearer key of every request to a route that needs one and
// leaves its principal in the context. Public routes (/healthz, /metrics) and requests
// that match no route (answered 404 or 405) pass without a key.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.protected[routeKey(c.Request().Method, c.Path())] {
			return next(c)
		}
		header := c.Request().Header.Get(echo.HeaderAuthorization)
		if header == "" {
			return errUnauthorized("this route needs an API key: send the header Authorization: Bearer <secret>")
		}
		scheme, secret, ok := strings.Cut(header, " ")
		secret = strings.TrimSpace(secret)
		if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
			return errUnauthorized("the Authorization header must be \"Bearer <secret>\"")
		}
		if len(secret) > maxSecretLength {
			return errUnauthorized("the API key is unknown or revoked")
		}
		p, err := s.cfg.Keys.Verify(c.Request().Context(), secret)
		if errors.Is(err, partners.ErrUnknownKey) {
			return errUnauthorized("the API key is unknown or revoked")
		}
		if err != nil {
			return err
		}
		c.Set(ctxPrincipal, p)
		// The stores record each operator action in the audit log with this actor, in the
		// action's own transaction.
		c.SetRequest(c.Request().WithContext(audit.WithActor(c.Request().Context(), actorOf(c))))
		return next(c)
	}
}

// reauthorize returns a check that the request's key is still live, read from the
// database when the cache has just been emptied (as it has when a write comes back for
// changed terms): a write decided again because the terms changed is decided only for a
// key that may still act, since the change may be the key's revocation.
func (s *Server) reauthorize(c echo.Context) func(context.Context) error {
	return func(ctx context.Context) error {
		_, secret, _ := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		p, err := s.cfg.Keys.Verify(ctx, strings.TrimSpace(secret))
		if errors.Is(err, partners.ErrUnknownKey) || err == nil && p.KeyID != principal(c).KeyID {
			return errUnauthorized("the API key is unknown or revoked")
		}
		return err
	}
}

// principal returns who the request acts as; the zero Principal (Role "") when the request
// carried no key (only on public routes).
func principal(c echo.Context) partners.Principal {
	p, _ := c.Get(ctxPrincipal).(partners.Principal)
	return p
}

// requireRole is route middleware that lets through only keys of one of the roles: 401
// without a key, 403 for another role.
func requireRole(roles ...partners.Role) echo.MiddlewareFunc {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	allowed := strings.Join(names, " or ")
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := principal(c)
			if p.Role == "" {
				return errUnauthorized("this route needs an API key: send the header Authorization: Bearer <secret>")
			}
			if !slices.Contains(roles, p.Role) {
				return errForbidden("this route needs a key whose role is %s; this key's role is %s", allowed, p.Role).With("role", string(p.Role))
			}
			return next(c)
		}
	}
}

// isRead reports whether the request only reads.
func isRead(c echo.Context) bool {
	m := c.Request().Method
	return m == http.MethodGet || m == http.MethodHead
}

// authorisePartner checks that the request's key may act on partnerID: the operator may
// act for any partner, an auditor may read any partner's side, a partner key may use only
// its own partner. It returns a 401 or 403 error to answer with, or nil.
func authorisePartner(c echo.Context, partnerID string) error {
	p := principal(c)
	switch p.Role {
	case partners.RoleOperator:
		return nil
	case partners.RoleAuditor:
		if isRead(c) {
			return nil
		}
		return errForbidden("an auditor key only reads").With("role", string(p.Role))
	case partners.RolePartner:
		if p.Partner == partnerID {
			return nil
		}
		return errForbidden("this key acts for partner %s, not %s", p.Partner, partnerID).With("partner", p.Partner)
	}
	return errUnauthorized("this route needs an API key: send the header Authorization: Bearer <secret>")
}

// authorisePartnerWrite is authorisePartner for a write, whatever its method: the partner
// itself or the operator; never an auditor.
func authorisePartnerWrite(c echo.Context, partnerID string) error {
	if p := principal(c); p.Role == partners.RoleAuditor {
		return errForbidden("an auditor key only reads").With("role", string(p.Role))
	}
	return authorisePartner(c, partnerID)
}

// partnerWriter is authorisePartnerWrite for the route's partner, as middleware: for a
// route whose idempotency middleware must not answer before the key may write.
func partnerWriter(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := authorisePartnerWrite(c, c.Param("partner")); err != nil {
			return writeError(c, err)
		}
		return next(c)
	}
}
