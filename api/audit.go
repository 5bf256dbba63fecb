package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// The auditor's routes (read by auditors and the operator): reports, the journal, the
// checkpoints, verification and the audit log (which the stores write, each change with
// its record, under the actor authenticate puts on the request's context).

// CodeCheckpointKeyMissing: the server was started without a checkpoint signing key (503).
const CodeCheckpointKeyMissing ledger.Code = "checkpoint_key_missing"

// Limits of the auditor's routes.
const (
	defaultJournalPage = 100
	maxJournalPage     = 1000
	// streamFlushEvery is how many lines a streamed report writes between flushes.
	streamFlushEvery = 500
)

// registerAuditRoutes registers the auditor's routes on /v1.
func (s *Server) registerAuditRoutes(v1 *echo.Group) {
	operator := requireRole(partners.RoleOperator)
	reader := requireRole(partners.RoleOperator, partners.RoleAuditor)
	v1.GET("/trial-balance", s.trialBalance, reader)
	v1.GET("/accounts/:name", s.accountStatement, reader)
	v1.GET("/members/:member/statement", s.memberStatement, reader)
	v1.GET("/journal", s.journal, reader)
	v1.GET("/checkpoints", s.listCheckpoints, reader)
	v1.POST("/checkpoints", s.createCheckpoint, operator)
	v1.GET("/verify", s.verify, reader)
	v1.GET("/reports/roll-forward", s.rollForward, reader)
	v1.GET("/reports/breakage", s.breakage, reader)
	v1.GET("/audit-log", s.auditLog, reader)
}

func (s *Server) reports() *audit.Reports { return audit.NewReports(s.cfg.Ledger.Pool()) }

// period reads the query's from and to (positions or record times); as_of, if given,
// is the end.
func (s *Server) period(c echo.Context) (from, to int64, err error) {
	end := c.QueryParam("to")
	if asOf := c.QueryParam("as_of"); asOf != "" {
		end = asOf
	}
	p, err := s.reports().ParsePeriod(c.Request().Context(), c.QueryParam("from"), end)
	return p.From, p.To, err
}

// trialBalance answers the trial balance as of a record time (as_of) or a journal position
// (position); partner narrows the accounts to one partner's.
func (s *Server) trialBalance(c echo.Context) error {
	if err := knownQuery(c, "as_of", "position", "partner"); err != nil {
		return writeError(c, err)
	}
	ctx := c.Request().Context()
	var pos int64
	var err error
	switch {
	case c.QueryParam("as_of") != "":
		if pos, err = s.reports().ParseBound(ctx, c.QueryParam("as_of"), false); err != nil {
			return writeError(c, err)
		}
		if pos == 0 {
			pos = ledger.BeforeFirstEntry // every balance was zero then
		}
	case c.QueryParam("position") != "":
		if pos, err = strconv.ParseInt(c.QueryParam("position"), 10, 64); err != nil || pos < 1 {
			return writeError(c, ledger.Errorf(ledger.CodeInvalid, "position must be a journal position, a whole number ≥ 1").With("field", "position"))
		}
	}
	partner := c.QueryParam("partner")
	tb, err := s.reports().TrialBalance(ctx, pos, partner)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, tb)
}

// stream writes a JSON object whose one array field is written element by element: the
// head's fields, then the array under name, then the tail's fields.
type stream struct {
	c       echo.Context
	name    string
	n       int
	started bool
}

// head starts the answer (200) with the head object's fields and opens the array.
func (st *stream) head(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	res := st.c.Response()
	res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	res.WriteHeader(http.StatusOK)
	st.started = true
	raw = bytes.TrimSuffix(raw, []byte("}"))
	if len(raw) > 1 {
		raw = append(raw, ',')
	}
	raw = append(raw, []byte(strconv.Quote(st.name)+":[")...)
	_, err = res.Write(raw)
	return err
}

// item writes one element of the array.
func (st *stream) item(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if st.n > 0 {
		raw = append([]byte{','}, raw...)
	}
	st.n++
	if _, err := st.c.Response().Write(raw); err != nil {
		return err
	}
	if st.n%streamFlushEvery == 0 {
		st.c.Response().Flush()
	}
	return nil
}

// end closes the array and writes the tail object's fields.
func (st *stream) end(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	raw = bytes.TrimPrefix(raw, []byte("{"))
	if len(raw) > 1 {
		raw = append([]byte("],"), raw...)
	} else {
		raw = []byte("]}")
	}
	_, err = st.c.Response().Write(append(raw, '\n'))
	return err
}

// fail answers an error, or, once the answer has started, logs it and cuts the answer
// short (the client sees invalid JSON, never a wrong figure).
func (st *stream) fail(s *Server, err error) error {
	if !st.started {
		return writeError(st.c, err)
	}
	s.log.Error("streamed report failed", zap.String("request_id", requestIDOf(st.c)), zap.Error(err))
	return nil
}

// accountStatement streams an account's opening balance, postings and closing balance
// for the period (from, to or as_of).
func (s *Server) accountStatement(c echo.Context) error {
	if err := knownQuery(c, "from", "to", "as_of"); err != nil {
		return writeError(c, err)
	}
	name, err := pathParam(c, "name")
	if err != nil {
		return writeError(c, err)
	}
	from, to, err := s.period(c)
	if err != nil {
		return writeError(c, err)
	}
	st := &stream{c: c, name: "postings"}
	tail, err := s.reports().AccountStatement(c.Request().Context(), name, from, to,
		func(h audit.StatementHead) error { return st.head(h) },
		func(p audit.StatementPosting) error { return st.item(p) })
	if err != nil {
		return st.fail(s, err)
	}
	return st.end(tail)
}

// memberStatement streams a member's entries with the lots each touched, for the period.
func (s *Server) memberStatement(c echo.Context) error {
	if err := knownQuery(c, "from", "to", "as_of"); err != nil {
		return writeError(c, err)
	}
	ctx := c.Request().Context()
	ref, err := memberParam(c)
	if err != nil {
		return writeError(c, err)
	}
	m, err := s.service().Store.FindMember(ctx, ref, s.service().PhoneRegion)
	if err != nil {
		return writeError(c, err)
	}
	from, to, err := s.period(c)
	if err != nil {
		return writeError(c, err)
	}
	st := &stream{c: c, name: "entries"}
	tail, err := s.reports().MemberStatement(ctx, m.ID, from, to,
		func(h audit.MemberHead) error { return st.head(h) },
		func(l audit.MemberLine) error { return st.item(l) })
	if err != nil {
		return st.fail(s, err)
	}
	return st.end(tail)
}

// journalPage is a page of the journal.
type journalPage struct {
	Entries []*audit.EntryRecord `json:"entries"`
	// Next is the after of the next page; equal to Head when this page reaches it.
	Next int64 `json:"next"`
	Head int64 `json:"head"`
}

// journal answers up to limit entries after a position, each with every hashed field.
func (s *Server) journal(c echo.Context) error {
	if err := knownQuery(c, "after", "limit"); err != nil {
		return writeError(c, err)
	}
	ctx := c.Request().Context()
	limit := defaultJournalPage
	after, err := afterParam(c, "a journal position")
	if err != nil {
		return writeError(c, err)
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxJournalPage {
			return writeError(c, ledger.Errorf(ledger.CodeInvalid, "limit must be 1 to %d", maxJournalPage).With("field", "limit"))
		}
		limit = n
	}
	head, err := s.cfg.Ledger.Head(ctx)
	if err != nil {
		return writeError(c, err)
	}
	page := journalPage{Entries: []*audit.EntryRecord{}, Next: after, Head: head.Position}
	units, err := s.cfg.Ledger.Units(ctx)
	if err != nil {
		return writeError(c, err)
	}
	if after < head.Position {
		entries, err := s.cfg.Ledger.Journal(ctx, after, min(limit, int(head.Position-after)))
		if err != nil {
			return writeError(c, err)
		}
		for i := range entries {
			page.Entries = append(page.Entries, audit.NewEntryRecord(&entries[i], units))
			page.Next = entries[i].Position
		}
	}
	return c.JSON(http.StatusOK, page)
}

// checkpointList is the answer listing the checkpoints.
type checkpointList struct {
	// PublicKey is the server's signing key's public half (PEM), when it has one. An
	// auditor checks signatures against the key the operator published, not this one.
	PublicKey   string             `json:"public_key,omitempty"`
	Checkpoints []audit.Checkpoint `json:"checkpoints"`
}

// listCheckpoints answers the checkpoints after an id (after), oldest first, at most
// audit.MaxCheckpoints.
func (s *Server) listCheckpoints(c echo.Context) error {
	if err := knownQuery(c, "after"); err != nil {
		return writeError(c, err)
	}
	after, err := afterParam(c, "a checkpoint id")
	if err != nil {
		return writeError(c, err)
	}
	cps, err := audit.Checkpoints(c.Request().Context(), s.cfg.Ledger.Pool(), after, audit.MaxCheckpoints)
	if err != nil {
		return writeError(c, err)
	}
	out := checkpointList{Checkpoints: cps}
	if s.cfg.Checkpointer != nil {
		out.PublicKey = audit.PublicKeyPEM(s.cfg.Checkpointer.PublicKey())
	}
	return c.JSON(http.StatusOK, out)
}

// checkpointJSON is the optional body of a new checkpoint.
type checkpointJSON struct {
	Reason string `json:"reason"`
}

// createCheckpoint signs the journal's head now: 201 with the checkpoint. It is recorded
// in the audit log in the same transaction.
func (s *Server) createCheckpoint(c echo.Context) error {
	if s.cfg.Checkpointer == nil {
		return writeError(c, ledger.Errorf(CodeCheckpointKeyMissing, "this server has no checkpoint signing key: start it with --checkpoint-key or COALITION_CHECKPOINT_KEY"))
	}
	in := checkpointJSON{Reason: "on demand"}
	body, err := readBody(c)
	if err != nil {
		return writeError(c, err)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeBytes(body, &in); err != nil {
			return writeError(c, err)
		}
	}
	ctx := c.Request().Context()
	var cp *audit.Checkpoint
	err = pg.InTx(ctx, s.cfg.Ledger.Pool(), func(tx pgx.Tx) error {
		var err error
		if cp, err = s.cfg.Checkpointer.CheckpointTx(ctx, tx, in.Reason); err != nil {
			return err
		}
		return audit.RecordAs(ctx, tx, audit.ActionCheckpointSigned, cp)
	})
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusCreated, cp)
}

// verify verifies the journal in the database and answers what it found: 200 with ok
// true, or ok false and the first failure. A large journal may outlast the request's
// deadline; `coalition verify` has none.
func (s *Server) verify(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	opts := audit.VerifyOptions{}
	if s.cfg.Checkpointer != nil {
		opts.PublicKey = s.cfg.Checkpointer.PublicKey()
	}
	v, err := audit.VerifyDatabase(c.Request().Context(), s.cfg.Ledger.Pool(), opts)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, v)
}

// rollForward answers the liability roll-forward for the period.
func (s *Server) rollForward(c echo.Context) error {
	if err := knownQuery(c, "from", "to", "as_of"); err != nil {
		return writeError(c, err)
	}
	from, to, err := s.period(c)
	if err != nil {
		return writeError(c, err)
	}
	rf, err := s.reports().RollForward(c.Request().Context(), from, to)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, rf)
}

// breakage answers the points expired per issuer in the period, with their value.
func (s *Server) breakage(c echo.Context) error {
	if err := knownQuery(c, "from", "to", "as_of"); err != nil {
		return writeError(c, err)
	}
	from, to, err := s.period(c)
	if err != nil {
		return writeError(c, err)
	}
	b, err := s.reports().Breakage(c.Request().Context(), from, to)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, b)
}

// auditLogPage is a page of the audit log.
type auditLogPage struct {
	Events []audit.Event `json:"events"`
	Next   int64         `json:"next"` // the after of the next page
}

// auditLog answers the operator's recorded actions after an id (after), at most limit,
// optionally of one action.
func (s *Server) auditLog(c echo.Context) error {
	if err := knownQuery(c, "after", "limit", "action"); err != nil {
		return writeError(c, err)
	}
	limit := 100
	after, err := afterParam(c, "an audit event id")
	if err != nil {
		return writeError(c, err)
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxAuditLogPage {
			return writeError(c, ledger.Errorf(ledger.CodeInvalid, "limit must be 1 to %d", audit.MaxAuditLogPage).With("field", "limit"))
		}
		limit = n
	}
	events, err := audit.Log(c.Request().Context(), s.cfg.Ledger.Pool(), after, limit, c.QueryParam("action"))
	if err != nil {
		return writeError(c, err)
	}
	page := auditLogPage{Events: events, Next: after}
	if len(events) > 0 {
		page.Next = events[len(events)-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

// actorOf names who the request acts as, for the audit log: "key:<id> (<role>)".
func actorOf(c echo.Context) string {
	p := principal(c)
	return "key:" + p.KeyID + " (" + string(p.Role) + ")"
}

// afterParam reads the query's after, where a page starts: what names the thing it
// counts ("a journal position"). Absent, it is 0, the start.
func afterParam(c echo.Context, what string) (int64, error) {
	v := c.QueryParam("after")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, ledger.Errorf(ledger.CodeInvalid, "after must be %s, a whole number ≥ 0", what).With("field", "after")
	}
	return n, nil
}
