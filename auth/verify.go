package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks bearer tokens against the configured keys. Its methods
// are safe for concurrent use; Reload swaps the keys atomically, so a
// verification sees either the old keys or the new ones, never a mix.
type Verifier struct {
	cfg      Config
	keys     atomic.Pointer[keySet]
	reloadMu sync.Mutex
}

// keySet is one generation of keys.
type keySet struct {
	hmac     []byte
	hmacAlgs []string
	keys     []verifyKey
	algs     []string // every algorithm some key accepts
}

// NewVerifier returns a verifier for cfg, with its key files read. cfg
// must be Enabled.
func NewVerifier(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%w: no HMAC secret, public key file or JWKS file", ErrConfig)
	}
	cfg.HMACSecret = slices.Clone(cfg.HMACSecret)
	v := &Verifier{cfg: cfg}
	if err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Reload re-reads the public key file and the JWKS file. On any error the
// keys in use stay as they were and the error says why; on success tokens
// signed by a key that is gone are refused from now on, and tokens signed
// by a new key accepted.
func (v *Verifier) Reload() error {
	v.reloadMu.Lock()
	defer v.reloadMu.Unlock()
	ks := &keySet{}
	if len(v.cfg.HMACSecret) > 0 {
		ks.hmac = v.cfg.HMACSecret
		ks.hmacAlgs = v.cfg.HMACAlgorithms
		if len(ks.hmacAlgs) == 0 {
			ks.hmacAlgs = hmacAlgorithms
		}
	}
	for _, src := range []struct {
		path  string
		parse func([]byte) ([]verifyKey, error)
	}{{v.cfg.PublicKeyFile, parsePEMKeys}, {v.cfg.JWKSFile, parseJWKS}} {
		if src.path == "" {
			continue
		}
		b, err := readKeyFile(src.path)
		if err != nil {
			return err
		}
		keys, err := src.parse(b)
		if err != nil {
			return fmt.Errorf("%s: %w", src.path, err)
		}
		ks.keys = append(ks.keys, keys...)
	}
	ks.algs = append(ks.algs, ks.hmacAlgs...)
	for _, k := range ks.keys {
		if !slices.Contains(ks.algs, k.alg) {
			ks.algs = append(ks.algs, k.alg)
		}
	}
	v.keys.Store(ks)
	return nil
}

// KeyCount returns how many public keys are in use (the HMAC secret not
// counted).
func (v *Verifier) KeyCount() int { return len(v.keys.Load().keys) }

// ReloadInterval returns the configured reload interval (0: none).
func (v *Verifier) ReloadInterval() time.Duration { return v.cfg.ReloadInterval }

// claims are the claims of a cairn token.
type claims struct {
	Role       string        `json:"role"`
	Namespaces namespaceList `json:"namespaces"`
	jwt.RegisteredClaims
}

// Verify checks token (the bearer token without its "Bearer " prefix):
// its algorithm against the configured keys, its signature, exp (required),
// nbf and iat (with the leeway), iss and aud (when configured), and the
// role claim. The error wraps one of the package's verification sentinels
// and holds no key material.
func (v *Verifier) Verify(token string) (*Identity, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit is %d", ErrMalformed, len(token), MaxTokenBytes)
	}
	// A compact JWT is base64url segments joined by dots. Go's base64
	// decoders skip CR and LF, so without this check a signed token with
	// line breaks inserted would verify as a different string.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return nil, fmt.Errorf("%w: a token holds only base64url characters and dots", ErrMalformed)
		}
	}
	ks := v.keys.Load()
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(ks.algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithStrictDecoding(),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	var c claims
	tok, err := jwt.NewParser(opts...).ParseWithClaims(token, &c, ks.keyFunc)
	if err != nil {
		return nil, classify(tok, ks, err)
	}
	role, err := ParseRole(c.Role)
	if err != nil {
		return nil, err
	}
	id := &Identity{Subject: c.Subject, Role: role, Namespaces: c.Namespaces, Token: token}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
	}
	return id, nil
}

// keyFunc picks the key that verifies t: the HMAC secret for an HMAC
// algorithm it is configured for; otherwise the public keys whose
// algorithm is t's and whose key id matches t's (a key without an id
// matches any token, a token without an id any key).
func (ks *keySet) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if slices.Contains(hmacAlgorithms, alg) {
		if len(ks.hmac) > 0 && slices.Contains(ks.hmacAlgs, alg) {
			return ks.hmac, nil
		}
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
	}
	kid, _ := t.Header["kid"].(string)
	matches := func(k verifyKey) bool { return kid == "" || k.kid == "" || k.kid == kid }
	if kid != "" && !slices.ContainsFunc(ks.keys, matches) {
		return nil, fmt.Errorf("%w: no key has id %q", ErrUnknownKey, short(kid))
	}
	var set jwt.VerificationKeySet
	algKnown := false
	for _, k := range ks.keys {
		if k.alg != alg {
			continue
		}
		algKnown = true
		if matches(k) {
			set.Keys = append(set.Keys, k.key)
		}
	}
	switch {
	case len(set.Keys) == 1:
		return set.Keys[0], nil
	case len(set.Keys) > 1:
		return set, nil
	case algKnown:
		return nil, fmt.Errorf("%w: no %s key has id %q", ErrUnknownKey, alg, short(kid))
	}
	return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
}

// classify turns the parser's error into one of this package's.
func classify(tok *jwt.Token, ks *keySet, err error) error {
	for _, own := range []error{ErrAlgorithm, ErrUnknownKey} {
		if errors.Is(err, own) {
			var detail error = own
			var target interface{ Unwrap() []error }
			if errors.As(err, &target) {
				for _, e := range target.Unwrap() {
					if errors.Is(e, own) {
						detail = e
					}
				}
			}
			return detail
		}
	}
	alg := ""
	if tok != nil {
		alg, _ = tok.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// An algorithm the library does not know, or none at all.
		return fmt.Errorf("%w: %q", ErrAlgorithm, short(alg))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if !slices.Contains(ks.algs, alg) {
			return fmt.Errorf("%w: %q", ErrAlgorithm, short(alg))
		}
		return ErrSignature
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The library says which claim in its message only.
		switch msg := err.Error(); {
		case strings.Contains(msg, "iss claim"):
			return fmt.Errorf("%w: iss is missing", ErrIssuer)
		case strings.Contains(msg, "aud claim"):
			return fmt.Errorf("%w: aud is missing", ErrAudience)
		}
		return fmt.Errorf("%w: exp is required", ErrClaims)
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fmt.Errorf("%w: nbf is in the future", ErrNotYetValid)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%w: iat is in the future", ErrNotYetValid)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ErrAudience
	}
	return ErrClaims
}

// short bounds an attacker-chosen string quoted in an error.
func short(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
