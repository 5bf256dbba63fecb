// Package api owns HTTP: the routes of the versioned JSON API under /v1, its middleware
// (request ids, logging, metrics, panic recovery, body limits, bearer-key authentication)
// and the one mapping from domain errors to HTTP statuses. Handlers decode, authorise, call
// the domain (packages partners and ledger) and encode.
//
// It must never hold SQL or a business rule: prices, balances, lots, limits of the books and
// who may post what are decided in the domain packages; a handler only translates.
package api
