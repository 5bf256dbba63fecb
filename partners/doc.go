// Package partners owns partners, contracts, earn and redemption rules and members'
// identities: the coalition's settings, the versioned terms of each partner, the pricing
// of an earn and of a redemption, and the parsing of amounts and phone numbers.
//
// The pricing here is pure: values in, values out, no database, no HTTP and no clock
// (business time is passed in). Every price carries all of its inputs so that anyone can
// recompute it. The package never posts to the journal itself: package ledger does, with
// the points, rates and expiry times this package hands it.
package partners
