package ledger

import (
	"regexp"
	"strings"
)

// AccountKind says what an account is in the chart of accounts; the kind fixes the
// account's unit and whether the engine checks it against going below zero.
type AccountKind string

// The chart of accounts of DESIGN.md.
const (
	KindMember              AccountKind = "member"                // member:<id>, PTS the coalition owes the member
	KindMemberHeld          AccountKind = "member_held"           // member:<id>:held, PTS reserved by open holds
	KindPartnerIssued       AccountKind = "partner_issued"        // partner:<p>:issued
	KindPartnerRedeemed     AccountKind = "partner_redeemed"      // partner:<p>:redeemed
	KindPartnerExpired      AccountKind = "partner_expired"       // partner:<p>:expired
	KindPartnerSettlement   AccountKind = "partner_settlement"    // partner:<p>:settlement, money
	KindPartnerInSettlement AccountKind = "partner_in_settlement" // partner:<p>:in_settlement, money
	KindOperatorFees        AccountKind = "operator_fees"         // operator:fees, money
	KindOperatorBank        AccountKind = "operator_bank"         // operator:bank, money
	KindOperatorAwards      AccountKind = "operator_awards"       // operator:awards, money
)

// OperatorIssuer is the reserved issuer id of awards and goodwill points.
const OperatorIssuer = "operator"

var (
	memberIDPattern  = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$`)
	partnerIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// ValidMemberID reports whether id can name a member in an account path.
func ValidMemberID(id string) bool { return memberIDPattern.MatchString(id) }

// ValidPartnerID reports whether id is a partner slug such as "fuelco".
func ValidPartnerID(id string) bool { return partnerIDPattern.MatchString(id) }

// Account is a parsed account name of the chart.
type Account struct {
	Name    string
	Kind    AccountKind
	Member  string // set for member accounts
	Partner string // set for partner accounts
}

// IsMoney reports whether the account holds the coalition's currency rather than points.
func (a Account) IsMoney() bool {
	switch a.Kind {
	case KindMember, KindMemberHeld, KindPartnerIssued, KindPartnerRedeemed, KindPartnerExpired:
		return false
	}
	return true
}

// Unit returns the account's unit in the coalition's units.
func (a Account) Unit(u Units) string {
	if a.IsMoney() {
		return u.Currency
	}
	return Points
}

// IsMemberOwned reports whether the account belongs to a member (and is checked against
// going below zero under the member's lock).
func (a Account) IsMemberOwned() bool { return a.Kind == KindMember || a.Kind == KindMemberHeld }

// ParseAccount parses an account name of the chart, such as "member:01J...:held" or
// "partner:fuelco:settlement".
func ParseAccount(name string) (Account, *Error) {
	parts := strings.Split(name, ":")
	bad := func() (Account, *Error) {
		return Account{}, Errorf(CodeInvalidAccount, "%q is not an account of the chart (member:<id>, member:<id>:held, partner:<p>:issued|redeemed|expired|settlement|in_settlement, operator:fees|bank|awards)", name)
	}
	switch parts[0] {
	case "member":
		if len(parts) < 2 || len(parts) > 3 || !ValidMemberID(parts[1]) {
			return bad()
		}
		if len(parts) == 2 {
			return Account{Name: name, Kind: KindMember, Member: parts[1]}, nil
		}
		if parts[2] == "held" {
			return Account{Name: name, Kind: KindMemberHeld, Member: parts[1]}, nil
		}
	case "partner":
		if len(parts) != 3 || !ValidPartnerID(parts[1]) {
			return bad()
		}
		kinds := map[string]AccountKind{
			"issued": KindPartnerIssued, "redeemed": KindPartnerRedeemed, "expired": KindPartnerExpired,
			"settlement": KindPartnerSettlement, "in_settlement": KindPartnerInSettlement,
		}
		if k, ok := kinds[parts[2]]; ok {
			return Account{Name: name, Kind: k, Partner: parts[1]}, nil
		}
	case "operator":
		kinds := map[string]AccountKind{"fees": KindOperatorFees, "bank": KindOperatorBank, "awards": KindOperatorAwards}
		if len(parts) == 2 {
			if k, ok := kinds[parts[1]]; ok {
				return Account{Name: name, Kind: k}, nil
			}
		}
	}
	return bad()
}

// MemberAccount names the account of the points the coalition owes member m.
func MemberAccount(m string) string { return "member:" + m }

// MemberHeldAccount names the account of member m's points reserved by open holds.
func MemberHeldAccount(m string) string { return "member:" + m + ":held" }

// PartnerAccount names partner p's account of the given kind ("issued", "settlement", ...).
func PartnerAccount(p, kind string) string { return "partner:" + p + ":" + kind }

// SettlementAccount names the money account that pays for points issued by issuer when
// another partner consumes them: the issuer's settlement account, or operator:awards for
// points the operator awarded.
func SettlementAccount(issuer string) string {
	if issuer == OperatorIssuer {
		return "operator:awards"
	}
	return PartnerAccount(issuer, "settlement")
}
