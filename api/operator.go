package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// The operator's routes: the coalition's settings, partners, contract versions and keys.

// getCoalition answers the coalition's settings.
func (s *Server) getCoalition(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	coal, err := s.cfg.Store.Coalition(c.Request().Context())
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, coal)
}

// putCoalition replaces the coalition's settings and answers them as stored. The
// currency, points scale and time zone freeze at the first entry (409 settings_frozen).
func (s *Server) putCoalition(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return writeError(c, err)
	}
	coal, err := decodeSettings(body, partners.DecodeCoalition)
	if err != nil {
		return writeError(c, err)
	}
	ctx := c.Request().Context()
	if err := s.cfg.Store.SetCoalition(ctx, coal); err != nil {
		return writeError(c, err)
	}
	stored, err := s.cfg.Store.Coalition(ctx)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, stored)
}

// settingsError keeps the domain's verdict on settings and turns a decoder's complaint
// into a malformed_json error.
func settingsError(err error) error {
	var lerr *ledger.Error
	if errors.As(err, &lerr) {
		return lerr
	}
	return jsonError(err)
}

// partnerJSON is the body that creates a partner.
type partnerJSON struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// createPartner adds an active partner: 201 with the partner, 409 if the id is taken.
func (s *Server) createPartner(c echo.Context) error {
	var in partnerJSON
	if err := decode(c, &in); err != nil {
		return writeError(c, err)
	}
	p, err := s.cfg.Store.CreatePartner(c.Request().Context(), in.ID, in.Name)
	if err != nil {
		return writeError(c, err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/partners/"+p.ID)
	return c.JSON(http.StatusCreated, p)
}

// partnerList is the answer listing partners.
type partnerList struct {
	Partners []partners.Partner `json:"partners"`
}

// listPartners answers every partner by id.
func (s *Server) listPartners(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	list, err := s.cfg.Store.Partners(c.Request().Context())
	if err != nil {
		return writeError(c, err)
	}
	if list == nil {
		list = []partners.Partner{}
	}
	return c.JSON(http.StatusOK, partnerList{Partners: list})
}

// getPartner answers one partner, to the operator, an auditor or the partner itself.
func (s *Server) getPartner(c echo.Context) error {
	id := c.Param("partner")
	if err := authorisePartner(c, id); err != nil {
		return writeError(c, err)
	}
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	p, err := s.cfg.Store.Partner(c.Request().Context(), id)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, p)
}

// partnerStatusJSON is the body that suspends or reactivates a partner.
type partnerStatusJSON struct {
	Status string `json:"status"`
}

// setPartnerStatus suspends ("suspended") or reactivates ("active") a partner.
func (s *Server) setPartnerStatus(c echo.Context) error {
	var in partnerStatusJSON
	if err := decode(c, &in); err != nil {
		return writeError(c, err)
	}
	p, err := s.cfg.Store.SetPartnerStatus(c.Request().Context(), c.Param("partner"), in.Status)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, p)
}

// addContract adds a contract version for the partner, recorded now: 201 with the
// version. Without effective_from the version takes effect now.
func (s *Server) addContract(c echo.Context) error {
	id := c.Param("partner")
	body, err := readBody(c)
	if err != nil {
		return writeError(c, err)
	}
	k, err := DecodeContract(body)
	if err != nil {
		return writeError(c, err)
	}
	v, err := s.cfg.Store.AddContract(c.Request().Context(), id, k, s.cfg.Now())
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusCreated, v)
}

// DecodeContract reads a contract version as POST /v1/partners/{p}/contracts does, for
// every client of it (the CLI's contracts add too): one JSON object, strictly, and a
// failure as a *ledger.Error that says what to fix.
func DecodeContract(body []byte) (partners.Contract, error) {
	return decodeSettings(body, partners.DecodeContract)
}

// decodeSettings reads an operator's settings body: its shape first, as every body is
// read (400), then with the domain's decoder, which checks the amounts as decimal
// strings and the required fields (422).
func decodeSettings[T any](body []byte, decode func([]byte) (T, error)) (T, error) {
	var v T
	if err := decodeBytes(body, &v); err != nil {
		return v, err
	}
	v, err := decode(body)
	if err != nil {
		return v, settingsError(err)
	}
	return v, nil
}

// contractList is the answer listing a partner's contract versions.
type contractList struct {
	Contracts []partners.ContractVersion `json:"contracts"`
}

// listContracts answers a partner's contract versions, oldest first, to the operator, an
// auditor or the partner itself.
func (s *Server) listContracts(c echo.Context) error {
	id := c.Param("partner")
	if err := authorisePartner(c, id); err != nil {
		return writeError(c, err)
	}
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	list, err := s.cfg.Store.Contracts(c.Request().Context(), id)
	if err != nil {
		return writeError(c, err)
	}
	if list == nil {
		list = []partners.ContractVersion{}
	}
	return c.JSON(http.StatusOK, contractList{Contracts: list})
}

// keyJSON is the body that creates an API key.
type keyJSON struct {
	Role    string `json:"role"`
	Partner string `json:"partner"`
}

// createdKey is the answer to a new key: the only time its secret is shown.
type createdKey struct {
	ID      string  `json:"id"`
	Role    string  `json:"role"`
	Partner *string `json:"partner"`
	Secret  string  `json:"secret"`
}

// createKey makes an API key and answers its secret, once.
func (s *Server) createKey(c echo.Context) error {
	var in keyJSON
	if err := decode(c, &in); err != nil {
		return writeError(c, err)
	}
	id, secret, err := s.cfg.Keys.Create(c.Request().Context(), partners.Role(in.Role), in.Partner)
	if err != nil {
		return writeError(c, err)
	}
	out := createdKey{ID: id, Role: in.Role, Secret: secret}
	if in.Partner != "" {
		out.Partner = &in.Partner
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, out)
}

// keyList is the answer listing the API keys.
type keyList struct {
	Keys []partners.APIKey `json:"keys"`
}

// listKeys answers every API key without its secret, revoked ones included, oldest first.
func (s *Server) listKeys(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	list, err := s.cfg.Keys.List(c.Request().Context())
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, keyList{Keys: list})
}

// revokeKey revokes a key: 204, or 404 if it does not exist or is revoked already.
func (s *Server) revokeKey(c echo.Context) error {
	if err := s.cfg.Keys.Revoke(c.Request().Context(), c.Param("key")); err != nil {
		return writeError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}
