package auth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grant describes a token to mint.
type Grant struct {
	// Role is the granted role. Required.
	Role Role
	// Namespaces are the granted namespaces; AllNamespaces grants every
	// one. Empty grants none (enough for cluster operations).
	Namespaces []string
	// TTL is how long the token is valid from now. Required.
	TTL time.Duration
	// Subject, Issuer and Audience set sub, iss and aud; empty leaves them
	// out.
	Subject  string
	Issuer   string
	Audience string
}

// MintHS256 returns a token for g signed with HS256 under secret, with iat
// now, exp now+TTL and a random jti.
func MintHS256(secret []byte, g Grant) (string, error) {
	if len(secret) < MinHMACSecretBytes {
		return "", fmt.Errorf("%w: the HMAC secret is %d bytes, at least %d are required", ErrConfig, len(secret), MinHMACSecretBytes)
	}
	if g.Role == RoleNone || g.Role > RoleAdmin {
		return "", fmt.Errorf("%w: a token needs a role", ErrConfig)
	}
	if g.TTL <= 0 {
		return "", fmt.Errorf("%w: a token needs a positive TTL", ErrConfig)
	}
	jti := make([]byte, 12)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	now := time.Now()
	c := claims{
		Role:       g.Role.String(),
		Namespaces: namespaceList(g.Namespaces),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   g.Subject,
			Issuer:    g.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(g.TTL)),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
	}
	if c.Namespaces == nil {
		c.Namespaces = namespaceList{}
	}
	if g.Audience != "" {
		c.Audience = jwt.ClaimStrings{g.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// NewSecret returns a fresh random HMAC secret of 32 bytes, base64url
// encoded (43 characters), suitable for Config.HMACSecret as it is.
func NewSecret() (string, error) {
	b := make([]byte, MinHMACSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
