// Package auth verifies the JWT bearer tokens that cairn's API requires
// and mints the HS256 tokens operators hand out. It knows nothing of gRPC
// or HTTP: the server extracts the token, calls Verifier.Verify, and checks
// the returned Identity against its permission table.
//
// A token carries the registered claims (exp required; nbf and iat
// honoured with a leeway; iss and aud checked when configured) and two of
// cairn's own:
//
//	"role":       "viewer" | "contributor" | "admin"
//	"namespaces": ["chat", "billing"]  or  "*"  (every namespace)
//
// The configured keys decide which algorithms are accepted: an HMAC secret
// accepts HS256/384/512 (or the configured subset) and never a public-key
// algorithm; an RSA key accepts RS256 (or the one its JWK "alg" names), an
// ECDSA key the ES algorithm of its curve, an Ed25519 key EdDSA. "none" is
// never accepted, nor is an HMAC algorithm verified with a public key.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors of token verification and key loading. Every verification error
// wraps exactly one of ErrNoToken … ErrClaims; their messages name what is
// wrong with the token and never echo a key or a secret.
var (
	// ErrNoToken: the request carries no bearer token.
	ErrNoToken = errors.New("auth: no bearer token")
	// ErrMalformed: the token is not a well-formed JWT.
	ErrMalformed = errors.New("auth: malformed token")
	// ErrAlgorithm: the token's algorithm is not accepted by any configured
	// key ("none" never is).
	ErrAlgorithm = errors.New("auth: algorithm not accepted")
	// ErrUnknownKey: no configured key matches the token's key id.
	ErrUnknownKey = errors.New("auth: unknown signing key")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("auth: signature is invalid")
	// ErrExpired: the token's exp has passed.
	ErrExpired = errors.New("auth: token expired")
	// ErrNotYetValid: the token's nbf or iat lies in the future.
	ErrNotYetValid = errors.New("auth: token not valid yet")
	// ErrIssuer: the token's iss is not the configured issuer.
	ErrIssuer = errors.New("auth: issuer not accepted")
	// ErrAudience: the token's aud does not hold the configured audience.
	ErrAudience = errors.New("auth: audience not accepted")
	// ErrClaims: a required claim is missing or invalid (exp, role,
	// namespaces).
	ErrClaims = errors.New("auth: invalid claims")

	// ErrConfig: the configuration is unusable.
	ErrConfig = errors.New("auth: invalid configuration")
	// ErrBadKey: a key file holds a key that cannot be used.
	ErrBadKey = errors.New("auth: unusable key")
)

// Role is what a token's holder may do. Roles are ordered: each may do
// what the ones below it may.
type Role int

// The roles, in increasing order of power. RoleNone is the zero value and
// is never granted.
const (
	RoleNone Role = iota
	// RoleViewer reads: keys, objects, namespaces' settings, listings,
	// watches.
	RoleViewer
	// RoleContributor also writes: puts, deletes, batches, transactions,
	// alarms.
	RoleContributor
	// RoleAdmin may do everything, including managing namespaces, cluster
	// membership and backups.
	RoleAdmin
)

// String returns the role's claim value.
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleContributor:
		return "contributor"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole parses a role claim value.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "contributor":
		return RoleContributor, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("%w: role %q is not viewer, contributor or admin", ErrClaims, s)
}

// AllNamespaces is the namespaces claim value that grants every namespace.
const AllNamespaces = "*"

// Identity is what a verified token says about its holder.
type Identity struct {
	// Subject is the token's sub claim, possibly empty.
	Subject string
	// Role is the granted role; never RoleNone.
	Role Role
	// Namespaces are the granted namespaces; AllNamespaces among them grants
	// every namespace. May be empty: then no namespace is granted.
	Namespaces []string
	// Expires is the token's exp.
	Expires time.Time
	// Token is the raw bearer token, so that a node forwarding a call to
	// the leader can pass the caller's identity on.
	Token string
}

// Can reports whether the identity's role is at least r.
func (id *Identity) Can(r Role) bool { return id != nil && id.Role >= r }

// AllowsNamespace reports whether the identity is granted namespace ns.
func (id *Identity) AllowsNamespace(ns string) bool {
	if id == nil {
		return false
	}
	return slices.Contains(id.Namespaces, AllNamespaces) || slices.Contains(id.Namespaces, ns)
}

// namespaceList is the namespaces claim: a JSON array of names, or one
// string ("*" or a single name).
type namespaceList []string

func (l *namespaceList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = namespaceList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("namespaces must be a string or a list of strings: %w", err)
	}
	*l = many
	return nil
}
