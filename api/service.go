package api

import "github.com/coalitionledger/coalition/partners"

// service returns the partners' operations over the server's store and ledger (built by
// New with the server's clock and partners.NewService's defaults).
func (s *Server) service() *partners.Service { return s.svc }
