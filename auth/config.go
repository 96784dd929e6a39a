package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Config says which tokens a Verifier accepts. The zero value configures
// no key at all: Enabled reports false and the server then authenticates
// nothing (the library's backward-compatible default; the CLI insists on
// an explicit --insecure-no-auth instead).
type Config struct {
	// HMACSecret, when set, verifies tokens signed with HS256, HS384 or
	// HS512 (see HMACAlgorithms). At least MinHMACSecretBytes long. Empty
	// means no shared secret.
	HMACSecret []byte
	// HMACAlgorithms restricts the HMAC algorithms accepted with
	// HMACSecret. Empty means HS256, HS384 and HS512.
	HMACAlgorithms []string
	// PublicKeyFile is a PEM file of one or more public keys ("PUBLIC KEY"
	// blocks, or "CERTIFICATE" blocks whose keys are taken): RSA keys verify
	// RS256, ECDSA keys the ES algorithm of their curve (P-256: ES256),
	// Ed25519 keys EdDSA. These keys have no key id and match any token.
	// Re-read by Verifier.Reload. Empty means none.
	PublicKeyFile string
	// JWKSFile is a JSON Web Key Set (RFC 7517) of public signature keys
	// (kty RSA, EC or OKP/Ed25519); a key's "kid" must match a token's
	// "kid" header when both are set, and its "alg", when set, is the only
	// algorithm it verifies. Re-read by Verifier.Reload, so keys rotate
	// without a restart. Empty means none.
	JWKSFile string
	// Issuer, when set, must equal the token's iss claim. Empty means iss
	// is not checked.
	Issuer string
	// Audience, when set, must be one of the token's aud values. Empty
	// means aud is not checked.
	Audience string
	// Leeway is the clock skew tolerated when checking exp, nbf and iat. 0
	// means none; DefaultLeeway is what the CLI uses.
	Leeway time.Duration
	// ReloadInterval is how often the server re-reads PublicKeyFile and
	// JWKSFile. 0 means only when asked (SIGHUP in the CLI).
	ReloadInterval time.Duration
}

// Defaults and bounds.
const (
	// DefaultLeeway is the clock skew the CLI tolerates by default.
	DefaultLeeway = 30 * time.Second
	// MinHMACSecretBytes is the shortest HMAC secret accepted (RFC 7518
	// asks for a key at least as long as the hash: 32 bytes for HS256).
	MinHMACSecretBytes = 32
	// MaxTokenBytes bounds the size of a bearer token.
	MaxTokenBytes = 16 << 10
	// maxKeyFileBytes bounds a PEM or JWKS file.
	maxKeyFileBytes = 1 << 20
)

// DefaultConfig returns the settings that have a recommended value
// (Leeway: DefaultLeeway) and no key: add an HMAC secret, a public key
// file or a JWKS file to enable it.
func DefaultConfig() Config { return Config{Leeway: DefaultLeeway} }

// hmacAlgorithms are the HMAC algorithms this package knows.
var hmacAlgorithms = []string{"HS256", "HS384", "HS512"}

// Enabled reports whether c configures any key, that is whether tokens
// are to be required.
func (c Config) Enabled() bool {
	return len(c.HMACSecret) > 0 || c.PublicKeyFile != "" || c.JWKSFile != ""
}

// Validate reports everything that is wrong with c. It does not read the
// key files (NewVerifier does).
func (c Config) Validate() error {
	var errs []error
	if len(c.HMACSecret) > 0 && len(c.HMACSecret) < MinHMACSecretBytes {
		errs = append(errs, fmt.Errorf("%w: the HMAC secret is %d bytes, at least %d are required", ErrConfig, len(c.HMACSecret), MinHMACSecretBytes))
	}
	for _, a := range c.HMACAlgorithms {
		if !slices.Contains(hmacAlgorithms, a) {
			errs = append(errs, fmt.Errorf("%w: HMAC algorithm %q is not one of HS256, HS384, HS512", ErrConfig, a))
		}
	}
	if len(c.HMACAlgorithms) > 0 && len(c.HMACSecret) == 0 {
		errs = append(errs, fmt.Errorf("%w: HMAC algorithms are set but no HMAC secret", ErrConfig))
	}
	if c.Leeway < 0 || c.ReloadInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: durations must not be negative", ErrConfig))
	}
	if c.Leeway > 10*time.Minute {
		errs = append(errs, fmt.Errorf("%w: leeway %s is over the 10 minute ceiling", ErrConfig, c.Leeway))
	}
	if c.ReloadInterval > 0 && c.ReloadInterval < time.Second {
		errs = append(errs, fmt.Errorf("%w: reload interval %s is under 1 s", ErrConfig, c.ReloadInterval))
	}
	return errors.Join(errs...)
}
